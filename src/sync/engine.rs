//! The sync engine: runs its streams at once, each stream's phases in order over every page
//! (several items of a per-item phase at once); journals what each stream learns and
//! checkpoints its cursors so that an interrupted sync resumes, and uses the cache to spare
//! calls.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::SyncCache;
use super::census::{self, Census};
use super::facts::{self, Fact};
use super::intern::Interner;
use super::inventory::{Account, Inventory};
use super::state::{AssignmentListing, KeySource, PageState, Phase, Stream, source_of};
use super::store::{StateStore, StoreError};
use crate::api::connector::{IdentityCenterRef, SyncSpec};
use crate::aws::error::ErrorKind;
use crate::aws::{AwsError, Session};

mod phases;

/// Store keys.
pub const STATE_KEY: &str = "sync-state";
pub const CACHE_KEY: &str = "cache";
/// Store keys of the journal segments: `sync-journal-<stream>-<n>`.
pub const JOURNAL_KEY: &str = "sync-journal";

#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Items per page asked of every list call (capped at each call's maximum). Small values
    /// exercise pagination in tests.
    pub page_size: i32,
    /// How often, at most, the page state is saved.
    pub checkpoint_every: Duration,
    /// How long cached permission set details are trusted.
    pub cache_ttl: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            page_size: i32::MAX,
            checkpoint_every: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync failed in phase {phase:?}: {source}")]
    Aws {
        phase: Phase,
        #[source]
        source: AwsError,
    },
    #[error("sync state: {0}")]
    Store(#[from] StoreError),
    #[error("sync stopped: {0}")]
    Stopped(String),
}

impl SyncError {
    pub fn aws(&self) -> Option<&AwsError> {
        match self {
            Self::Aws { source, .. } => Some(source),
            Self::Store(_) | Self::Stopped(_) => None,
        }
    }
}

struct Engine<'a, S> {
    session: &'a Session,
    spec: &'a SyncSpec,
    store: &'a S,
    options: &'a SyncOptions,
    /// The stream this engine runs, and whether it resumes an interrupted run.
    stream: Stream,
    resumed: bool,
    state: PageState,
    cache: SyncCache,
    cache_hits: u64,
    last_checkpoint: Instant,
    /// The facts learned since the last checkpoint, as the journal segment the next one saves
    /// (empty when the store keeps nothing).
    journal: Vec<u8>,
    /// Phases listed in full by this run: their items are fresh. Items of other phases come
    /// from a saved state and may have been deleted since.
    listed: BTreeSet<Phase>,
    /// Whether `state.next_token` came from a saved state (and may have expired).
    saved_token: bool,
    /// The Identity Center and member-account streams' view of the accounts the
    /// Organizations stream lists.
    accounts: Option<Heard<Vec<Account>>>,
    /// Items of a per-item phase fetched at once.
    in_flight: usize,
    /// Where the sign-ins are read from (`None`: all CloudTrail keeps).
    sign_ins_since: Option<String>,
    /// The Identity Center stream's view of the users and groups the Identity Store streams
    /// list.
    census: Option<census::Heard>,
    /// Where an Identity Store stream tells how far its list got.
    census_told: Option<census::Told>,
    /// One copy of each id, shared by every stream of the sync.
    interner: Interner,
    /// Where the Identity Center stream tells the instance it found.
    instance_told: Option<Told<IdentityCenterRef>>,
    /// The Identity Store streams' view of that instance.
    instance: Option<Heard<IdentityCenterRef>>,
}

/// The page state key of a stream.
fn state_key(stream: Stream) -> String {
    format!("{STATE_KEY}-{}", stream.key())
}

/// The key of a stream's journal segment `n`.
fn segment_key(stream: Stream, n: u32) -> String {
    format!("{JOURNAL_KEY}-{}-{n}", stream.key())
}

/// Deletes a stream's journal segments, from the last to the first, so that one interrupted
/// here leaves a run of segments from the first that the next call finds. Segments beyond a
/// state's count (left by a run that was not resumed) are found the same way.
async fn forget_journal<S: StateStore>(store: &S, stream: Stream) -> Result<(), StoreError> {
    let mut count = 0;
    while store.load(&segment_key(stream, count)).await?.is_some() {
        count += 1;
    }
    for n in (0..count).rev() {
        store.delete(&segment_key(stream, n)).await?;
    }
    Ok(())
}

/// The saved state of `stream` with what its journal segments say it learned, or why it cannot
/// be resumed.
async fn resume<S: StateStore>(
    store: &S,
    stream: Stream,
    bytes: &[u8],
    scope: &str,
    interner: &Interner,
) -> Result<Result<PageState, String>, StoreError> {
    let mut state = match PageState::resume(bytes, scope) {
        Ok(state) => state,
        Err(why) => return Ok(Err(why)),
    };
    for n in 0..state.segments {
        let Some(segment) = store.load(&segment_key(stream, n)).await? else {
            return Ok(Err(format!("its journal segment {n} is missing")));
        };
        match facts::replay(&segment) {
            Ok(facts) => facts.into_iter().for_each(|mut fact| {
                fact.intern(interner);
                state.apply(fact)
            }),
            Err(e) => return Ok(Err(format!("its journal segment {n} cannot be read ({e})"))),
        }
    }
    Ok(Ok(state))
}

/// What one stream tells another once it knows (`Some(None)`: it could not find out): the
/// account ids (Organizations to Identity Center), the instance (Identity Center to Identity
/// Store), the users and groups (Identity Store to Identity Center).
type Told<T> = tokio::sync::watch::Sender<Option<Option<T>>>;
type Heard<T> = tokio::sync::watch::Receiver<Option<Option<T>>>;

/// Waits until `heard` is told; `None` if it was told that the answer could not be had, or
/// will never be told.
async fn hear<T: Clone>(heard: &mut Heard<T>) -> Option<T> {
    let told = heard.wait_for(Option::is_some).await.ok()?;
    told.clone().flatten()
}

/// Runs one sync of the organization `session` reaches: its streams (Organizations, IAM,
/// Identity Store's users, its groups, Identity Center's sso-admin) at once, each through its
/// own rate-limit lanes and with its own page state. `scope` fingerprints the settings; a saved state of another scope is ignored.
pub async fn run<S: StateStore>(
    session: &Session,
    spec: &SyncSpec,
    scope: &str,
    store: &S,
    options: &SyncOptions,
) -> Result<Inventory, SyncError> {
    run_until(session, spec, scope, store, options, std::future::pending()).await
}

/// `run`, until `stop` resolves: then the calls in flight are dropped, every stream's page
/// state is saved as it stands (each is whole between two calls), and the sync ends with
/// `Stopped`, for the next run to resume. What an operator told to stop, or a `sync`
/// interrupted, does instead of losing what it learned since the last checkpoint.
pub async fn run_until<S: StateStore>(
    session: &Session,
    spec: &SyncSpec,
    scope: &str,
    store: &S,
    options: &SyncOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Inventory, SyncError> {
    let started = Instant::now();
    let cache = SyncCache::decode(&store.load(CACHE_KEY).await?.unwrap_or_default());
    let interner = Interner::default();
    let open =
        |stream: Stream| Engine::open(session, spec, store, options, scope, stream, &interner);
    let mut organizations = open(Stream::Organizations).await?;
    let mut iam = open(Stream::Iam).await?;
    let mut users = open(Stream::IdentityStoreUsers).await?;
    // Sign-ins are read from shortly before the newest one the last sync found.
    users.sign_ins_since = cache
        .newest_sign_in()
        .and_then(crate::aws::cloudtrail::read_from);
    let mut groups = open(Stream::IdentityStoreGroups).await?;
    let mut center = open(Stream::IdentityCenter).await?;
    // The cache serves the Identity Center stream's permission set details.
    center.cache = cache;
    let mut members = open(Stream::MemberAccounts).await?;
    let (accounts_told, accounts) = tokio::sync::watch::channel(None);
    if let Some(settings) = spec.members() {
        members.in_flight = settings.concurrency as usize;
        members.accounts = Some(accounts.clone());
    }
    let (instance_told, instance) = tokio::sync::watch::channel(None);
    let (census_told, census) = tokio::sync::watch::channel(Census::default());
    center.accounts = Some(accounts);
    center.census = Some(census);
    center.instance_told = Some(instance_told);
    users.instance = Some(instance.clone());
    groups.instance = Some(instance);
    users.census_told = Some(census_told.clone());
    groups.census_told = Some(census_told);
    // Each stream's future on the heap: together they are too large for a task's stack in
    // an unoptimized build.
    let all = async {
        futures::join!(
            Box::pin(organizations.run_organizations(accounts_told)),
            Box::pin(iam.run_phases()),
            Box::pin(users.run_identity_store()),
            Box::pin(groups.run_identity_store()),
            Box::pin(center.run_identity_center()),
            Box::pin(members.run_phases()),
        )
    };
    let stopped = SyncError::Stopped(if store.keeps_state() {
        "asked to stop before it finished; every stream's page state is saved for the next run"
            .into()
    } else {
        "asked to stop before it finished".into()
    });
    let failed = tokio::select! {
        results = all => [results.0, results.1, results.2, results.3, results.4, results.5]
            .into_iter()
            .find_map(Result::err),
        () = stop => Some(stopped),
    };
    let streams = [
        &mut organizations,
        &mut iam,
        &mut users,
        &mut groups,
        &mut center,
        &mut members,
    ];
    if let Some(error) = failed {
        // Every stream's page state is kept, finished or not, so that the next run resumes
        // each where it stopped.
        for engine in streams {
            if let Err(saving) = engine.save_state().await {
                tracing::warn!(error = %saving, "could not save the page state of the failed sync");
            }
        }
        return Err(error);
    }
    let resumed = streams.iter().any(|engine| engine.resumed);
    let mut engine = center;
    engine.state.inventory.sso_users = std::mem::take(&mut users.state.inventory.sso_users);
    if spec.last_sign_in {
        // What this sync read is what happened since the last one: earlier sign-ins are the
        // cache's.
        for user in &mut engine.state.inventory.sso_users {
            let known = engine.cache.sign_ins.get(&*user.id);
            if user.last_sign_in_at.as_ref() < known {
                user.last_sign_in_at = known.cloned();
            }
        }
    }
    engine.state.inventory.sso_groups = std::mem::take(&mut groups.state.inventory.sso_groups);
    let tree = &mut organizations.state.inventory;
    engine.state.inventory.accounts = std::mem::take(&mut tree.accounts);
    engine.state.inventory.roots = std::mem::take(&mut tree.roots);
    engine.state.inventory.organizational_units = std::mem::take(&mut tree.organizational_units);
    engine.state.inventory.iam_users = std::mem::take(&mut iam.state.inventory.iam_users);
    engine.state.inventory.iam_groups = std::mem::take(&mut iam.state.inventory.iam_groups);
    engine.state.inventory.iam_roles = std::mem::take(&mut iam.state.inventory.iam_roles);
    engine.state.inventory.member_accounts =
        std::mem::take(&mut members.state.inventory.member_accounts);
    engine.state.key_source = iam.state.key_source.take();

    // What only the streams needed goes before the inventory is sorted: the principals' ids
    // the census passed between them, the interner's set, and what is left of the streams.
    engine.census = None;
    engine.interner = Interner::default();
    drop((users, groups, organizations, iam, members, interner));
    let mut inventory = std::mem::take(&mut engine.state.inventory);
    inventory.derive_iam_group_members();
    inventory.normalize();
    let stats = session.caller.stats();
    inventory.stats.api_calls = stats.by_operation();
    inventory.stats.total_calls = stats.total();
    inventory.stats.throttled = stats.throttled();
    inventory.stats.duration_seconds = started.elapsed().as_secs_f64();
    inventory.stats.resumed = resumed;
    inventory.stats.cache_hits = engine.cache_hits;
    inventory.stats.assignment_listing = engine.state.listing.map(|l| l.as_str().to_string());
    inventory.stats.pair_discovery = match engine.state.listing {
        Some(AssignmentListing::PerAccount) => {
            engine.state.discovery.map(|d| d.as_str().to_string())
        }
        _ => None,
    };
    inventory.stats.access_keys_from = engine.state.key_source.as_ref().map(|source| {
        match source {
            KeySource::Report(_) => "credentialReport",
            KeySource::PerUser(_) => "perUser",
        }
        .to_string()
    });

    // A store that keeps nothing (a one-shot sync) has no use for a cache: not even built.
    if store.keeps_state() {
        engine.cache.refresh_from(&inventory);
        store
            .save(
                CACHE_KEY,
                &serde_json::to_vec(&engine.cache).unwrap_or_default(),
            )
            .await?;
        for stream in Stream::ALL {
            forget_journal(store, stream).await?;
            store.delete(&state_key(stream)).await?;
        }
    }
    // Page states of earlier versions, kept under old names.
    store.delete(STATE_KEY).await?;
    store.delete(&format!("{STATE_KEY}-identity-store")).await?;
    tracing::info!(
        calls = inventory.stats.total_calls,
        throttled = inventory.stats.throttled,
        seconds = format!("{:.1}", inventory.stats.duration_seconds),
        accounts = inventory.accounts.len(),
        iam_users = inventory.iam_users.len(),
        sso_users = inventory.sso_users.len(),
        assignments = inventory.assignments.len(),
        "sync finished"
    );
    Ok(inventory)
}

impl<'a, S: StateStore> Engine<'a, S> {
    /// An engine for `stream`, resuming its saved page state if there is one for `scope`.
    async fn open(
        session: &'a Session,
        spec: &'a SyncSpec,
        store: &'a S,
        options: &'a SyncOptions,
        scope: &str,
        stream: Stream,
        interner: &Interner,
    ) -> Result<Self, SyncError> {
        let state = match store.load(&state_key(stream)).await? {
            Some(bytes) => resume(store, stream, &bytes, scope, interner)
                .await?
                .unwrap_or_else(|why| {
                    tracing::info!(
                        stream = stream.key(),
                        "not resuming the saved sync state: {why}; starting afresh"
                    );
                    PageState::fresh_for(scope.to_string(), stream)
                }),
            None => PageState::fresh_for(scope.to_string(), stream),
        };
        let resumed = state.is_started(stream);
        if resumed {
            tracing::info!(stream = stream.key(), phase = ?state.phase, items_in_part = state.ahead.len(), pages = state.pages, "resuming an interrupted sync");
        }
        Ok(Self {
            session,
            spec,
            store,
            options,
            stream,
            resumed,
            saved_token: state.next_token.is_some(),
            state,
            cache: SyncCache::default(),
            cache_hits: 0,
            last_checkpoint: Instant::now(),
            journal: Vec::new(),
            listed: BTreeSet::new(),
            accounts: None,
            in_flight: super::fetch::IN_FLIGHT,
            sign_ins_since: None,
            census: None,
            census_told: None,
            interner: interner.clone(),
            instance_told: None,
            instance: None,
        })
    }

    /// Runs an Identity Store stream once the instance is known, telling the Identity Center
    /// stream how far its list got as it goes: a count for its choice of listing, the ids as
    /// soon as the list is complete (the group members are not needed; they are listed
    /// meanwhile).
    async fn run_identity_store(&mut self) -> Result<(), SyncError> {
        if self.state.inventory.identity_center.is_none()
            && let Some(heard) = self.instance.as_mut()
        {
            self.state.inventory.identity_center = hear(heard).await;
        }
        self.tell_census(false);
        let result = self.run_phases().await;
        self.tell_census(result.is_err());
        result
    }

    /// Tells the Identity Center stream how many users (or groups) are listed, and their ids
    /// once the list is complete, or that it never will be (`failed`).
    fn tell_census(&self, failed: bool) {
        let Some(told) = &self.census_told else {
            return;
        };
        let inventory = &self.state.inventory;
        let users = self.stream == Stream::IdentityStoreUsers;
        let (count, complete) = if users {
            (
                inventory.sso_users.len(),
                self.state.phase > Phase::SsoUsers,
            )
        } else {
            (
                inventory.sso_groups.len(),
                self.state.phase > Phase::SsoGroups,
            )
        };
        told.send_modify(|census| {
            let listed = if users {
                &mut census.users
            } else {
                &mut census.groups
            };
            listed.count = count;
            if listed.ids.is_none() && complete {
                let ids = if users {
                    inventory.sso_users.iter().map(|u| u.id.clone()).collect()
                } else {
                    inventory
                        .sso_groups
                        .iter()
                        .map(|g| Arc::from(g.id.as_str()))
                        .collect()
                };
                listed.ids = Some(Some(ids));
            } else if listed.ids.is_none() && failed {
                listed.ids = Some(None);
            }
        });
    }

    /// Runs the Identity Center stream, telling the Identity Store stream the instance as soon
    /// as it is known (or that it will not be).
    async fn run_identity_center(&mut self) -> Result<(), SyncError> {
        if self.state.phase > Phase::Instance {
            self.tell_instance();
        }
        let result = self.run_phases().await;
        self.tell_instance();
        result
    }

    fn tell_instance(&self) {
        if let Some(told) = &self.instance_told {
            told.send_replace(Some(self.state.inventory.identity_center.clone()));
        }
    }

    /// Whether the Identity Store streams list more than `n` users and groups, waited for only
    /// until that is known, and how many were known to be listed then.
    async fn principals_more_than(&mut self, n: usize) -> (bool, usize) {
        match self.census.as_mut() {
            Some(heard) => census::more_than(heard, n).await,
            None => (false, 0),
        }
    }

    /// The ids of every user and group (kept in this stream, ids only, for the listing per
    /// principal and for a resumed run), once the Identity Store streams have listed them.
    async fn learn_principals(&mut self) -> Result<(), SyncError> {
        let inventory = &self.state.inventory;
        if !inventory.sso_users.is_empty() || !inventory.sso_groups.is_empty() {
            return Ok(());
        }
        let Some(heard) = self.census.as_mut() else {
            return Ok(());
        };
        let (users, groups) = census::ids(heard).await.ok_or_else(|| {
            SyncError::Stopped(
                "the Identity Store streams could not list the users and groups".into(),
            )
        })?;
        self.learn(Fact::Principals { users, groups });
        Ok(())
    }

    /// Runs the Organizations stream, then tells the Identity Center and member-account
    /// streams the accounts.
    async fn run_organizations(&mut self, seen: Told<Vec<Account>>) -> Result<(), SyncError> {
        let result = self.run_phases().await;
        // No root: the account is in no organization, and the accounts are not known.
        let organization = !self.state.inventory.roots.is_empty();
        let accounts = (result.is_ok() && self.spec.organizations && organization)
            .then(|| self.state.inventory.accounts.clone());
        seen.send_replace(Some(accounts));
        result
    }

    /// The organization's accounts once the Organizations stream has listed them; `None` when
    /// it does not (or could not).
    async fn organization_accounts(&mut self) -> Option<Vec<Account>> {
        hear(self.accounts.as_mut()?).await
    }

    fn size(&self) -> i32 {
        self.options.page_size.max(1)
    }

    fn failed(&self, source: AwsError) -> SyncError {
        SyncError::Aws {
            phase: self.state.phase,
            source,
        }
    }

    /// Applies what was learned, and journals it for the next checkpoint.
    fn learn(&mut self, mut fact: Fact) {
        fact.intern(&self.interner);
        if self.store.keeps_state() {
            facts::record(&mut self.journal, &fact);
        }
        self.state.apply(fact);
    }

    /// Forgets what `to` and the phases after it gathered, and lists again from `to`.
    fn rewind(&mut self, to: Phase) {
        if self.store.keeps_state() {
            facts::record(&mut self.journal, &Fact::Rewound(to));
        }
        self.state.rewind(to);
        self.saved_token = false;
    }

    /// Saves the page state, at most once per `checkpoint_every`, and a restart costs at most
    /// the pages fetched since the last one.
    async fn checkpoint(&mut self) -> Result<(), SyncError> {
        if self.last_checkpoint.elapsed() < self.options.checkpoint_every {
            return Ok(());
        }
        self.save_state().await
    }

    /// Saves what was learned since the last save as a new journal segment, written once,
    /// then the cursors, which count it: a save interrupted between the two leaves the old
    /// cursors, which do not.
    async fn save_state(&mut self) -> Result<(), SyncError> {
        if !self.store.keeps_state() {
            return Ok(());
        }
        if !self.journal.is_empty() {
            let key = segment_key(self.stream, self.state.segments);
            self.store.save(&key, &self.journal).await?;
            self.state.segments += 1;
            self.journal = Vec::new();
        }
        let bytes = serde_json::to_vec(&self.state).unwrap_or_default();
        self.store.save(&state_key(self.stream), &bytes).await?;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Counts pages fetched, with a progress line every 50.
    fn count_pages(&mut self, pages: u64) {
        let before = self.state.pages;
        self.state.pages += pages;
        if before / 50 != self.state.pages / 50 {
            tracing::info!(stream = self.stream.key(), phase = ?self.state.phase, pages = self.state.pages, calls = self.session.caller.stats().total(), "sync progress");
        }
    }

    /// Records that a page of a phase's single list was fetched and where the next one starts;
    /// whether it was the last.
    async fn after_page(&mut self, next: Option<String>) -> Result<bool, SyncError> {
        self.count_pages(1);
        self.saved_token = false;
        let done = next.is_none();
        self.state.next_token = next;
        self.checkpoint().await?;
        Ok(done)
    }

    /// Records a page of item `key` of per-item `phase`: where its next page starts, or that
    /// it is done.
    async fn after_item_page(
        &mut self,
        phase: Phase,
        key: String,
        next: Option<String>,
    ) -> Result<(), SyncError> {
        self.count_pages(1);
        match next {
            Some(token) => {
                self.state.ahead.insert(key, token);
            }
            None => {
                self.state.ahead.remove(&key);
                self.learn(Fact::ItemDone(phase, key));
            }
        }
        self.checkpoint().await
    }

    /// Records that item `key` of per-item `phase` was left out (gone since it was listed).
    fn item_left_out(&mut self, phase: Phase, key: String) {
        self.state.ahead.remove(&key);
        self.learn(Fact::ItemDone(phase, key));
    }

    /// The items of per-item `phase` not yet listed whole, each with the token of its next
    /// page (`None`: from its first).
    fn still_to_list(&self, phase: Phase, keys: Vec<String>) -> Vec<(String, Option<String>)> {
        keys.into_iter()
            .filter(|key| !self.state.done.contains(&(phase, key.clone())))
            .map(|key| {
                let token = self.state.ahead.get(&key).cloned();
                (key, token)
            })
            .collect()
    }

    /// The failure of an item's page. One asked with a token from a saved state that AWS
    /// refuses is stale state (see `stale_state`), not a failure.
    fn item_failed(&mut self, key: &str, resumed: &BTreeSet<String>, error: AwsError) -> SyncError {
        if error.kind == ErrorKind::Invalid && resumed.contains(key) {
            self.saved_token = true;
        }
        self.failed(error)
    }

    async fn run_phases(&mut self) -> Result<(), SyncError> {
        while self.state.phase != Phase::Done {
            let phase = self.state.phase;
            let before = self.session.caller.stats().total();
            if let Err(error) = self.run_phase(phase).await {
                let Some(to) = self.stale_state(phase, &error) else {
                    return Err(error);
                };
                tracing::warn!(
                    stream = self.stream.key(),
                    ?phase,
                    error = %error.aws().map_or_else(|| error.to_string(), ToString::to_string),
                    listed_again_from = ?to,
                    "the saved sync state is stale; listing the affected stream again"
                );
                self.rewind(to);
                self.checkpoint().await?;
                continue;
            }
            self.listed.insert(phase);
            tracing::info!(
                stream = self.stream.key(),
                ?phase,
                calls = self.session.caller.stats().total() - before,
                "sync phase done"
            );
            self.state.phase = self.stream.next(phase);
            self.state.next_token = None;
            self.state.ahead.clear();
            self.state.done.retain(|(done, _)| *done != phase);
            self.tell_census(false);
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Where to list again from when `error` shows that the saved state is stale: a token
    /// from an interrupted run that AWS no longer accepts restarts its own stream, and an item
    /// that no longer exists restarts the stream that listed it. `None` when the error is not
    /// about saved state (every item was listed by this run), so it is a real failure.
    fn stale_state(&self, phase: Phase, error: &SyncError) -> Option<Phase> {
        let kind = error.aws()?.kind;
        if kind == ErrorKind::Invalid && self.saved_token {
            return Some(phase);
        }
        let source = source_of(phase, self.state.listing, self.state.discovery)?;
        (kind == ErrorKind::NotFound && !self.listed.contains(&source)).then_some(source)
    }

    /// Whether `error` says that an item this run listed itself was deleted since: such an
    /// item is skipped, not a failure. (An item from a saved state is handled by listing its
    /// stream again; see `stale_state`.)
    fn deleted_since_listed(&self, phase: Phase, error: &AwsError) -> bool {
        error.kind == ErrorKind::NotFound
            && source_of(phase, self.state.listing, self.state.discovery)
                .is_some_and(|s| self.listed.contains(&s))
    }

    fn identity_center(&self) -> Option<(String, String)> {
        self.state
            .inventory
            .identity_center
            .as_ref()
            .map(|i| (i.instance_arn.clone(), i.identity_store_id.clone()))
    }
}

/// The keys of the items that start from a saved token.
fn resumed_keys(items: &[(String, Option<String>)]) -> BTreeSet<String> {
    items
        .iter()
        .filter(|(_, token)| token.is_some())
        .map(|(key, _)| key.clone())
        .collect()
}
