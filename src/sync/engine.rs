//! The sync engine: runs its streams at once, each stream's phases in order over every page;
//! checkpoints each stream's page state so that an interrupted sync resumes, and uses the cache
//! to spare calls.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::cache::{SyncCache, unix_now};
use super::inventory::{Inventory, SsoGroup, SsoUser};
use super::state::{
    AssignmentListing, KeySource, PageState, PairDiscovery, Phase, Stream, choose_discovery,
    choose_listing, source_of,
};
use super::store::{StateStore, StoreError};
use crate::api::connector::{IdentityCenterRef, SyncSpec};
use crate::aws::error::ErrorKind;
use crate::aws::{AwsError, Session, credential_report, iam, identity_center, organizations};

/// Store keys.
pub const STATE_KEY: &str = "sync-state";
pub const CACHE_KEY: &str = "cache";

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
    /// Phases listed in full by this run: their items are fresh. Items of other phases come
    /// from a saved state and may have been deleted since.
    listed: BTreeSet<Phase>,
    /// Whether `state.next_token` came from a saved state (and may have expired).
    saved_token: bool,
    /// The Identity Center stream's view of the accounts the Organizations stream lists.
    accounts: Option<Heard<Vec<String>>>,
    /// The Identity Center stream's view of the users and groups of the Identity Store stream.
    principals: Option<Heard<Principals>>,
    /// Where the Identity Store stream tells the users and groups it listed.
    principals_told: Option<Told<Principals>>,
    /// Where the Identity Center stream tells the instance it found.
    instance_told: Option<Told<IdentityCenterRef>>,
    /// The Identity Store stream's view of that instance.
    instance: Option<Heard<IdentityCenterRef>>,
}

/// What to do with the item index when a page is the last of its item.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// One list for the whole phase.
    Single,
    /// One list per item of the phase.
    PerItem,
}

/// The page state key of a stream.
fn state_key(stream: Stream) -> String {
    format!("{STATE_KEY}-{}", stream.key())
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

/// The users and groups the Identity Store stream found.
type Principals = (Vec<SsoUser>, Vec<SsoGroup>);

/// Runs one sync of the organization `session` reaches: its streams (Organizations, IAM,
/// Identity Store, Identity Center's sso-admin) at once, each through its own rate-limit lanes
/// and with its own page state. `scope` fingerprints the settings; a saved state of another scope is ignored.
pub async fn run<S: StateStore>(
    session: &Session,
    spec: &SyncSpec,
    scope: &str,
    store: &S,
    options: &SyncOptions,
) -> Result<Inventory, SyncError> {
    let started = Instant::now();
    let cache = SyncCache::decode(&store.load(CACHE_KEY).await?.unwrap_or_default());
    let open = |stream: Stream, cache: SyncCache| {
        Engine::open(session, spec, store, options, scope, stream, cache)
    };
    let mut organizations = open(Stream::Organizations, SyncCache::default()).await?;
    let mut iam = open(Stream::Iam, SyncCache::default()).await?;
    let mut store_stream = open(Stream::IdentityStore, SyncCache::default()).await?;
    let mut center = open(Stream::IdentityCenter, cache).await?;
    let (accounts_told, accounts) = tokio::sync::watch::channel(None);
    let (instance_told, instance) = tokio::sync::watch::channel(None);
    let (principals_told, principals) = tokio::sync::watch::channel(None);
    center.accounts = Some(accounts);
    center.principals = Some(principals);
    center.instance_told = Some(instance_told);
    store_stream.instance = Some(instance);
    let results = futures::join!(
        organizations.run_organizations(accounts_told),
        iam.run_phases(),
        store_stream.run_identity_store(principals_told),
        center.run_identity_center(),
    );
    let failed = [results.0, results.1, results.2, results.3]
        .into_iter()
        .find_map(Result::err);
    if let Some(error) = failed {
        // Every stream's page state is kept, finished or not, so that the next run resumes
        // each where it stopped.
        for engine in [&mut organizations, &mut iam, &mut store_stream, &mut center] {
            if let Err(saving) = engine.save_state().await {
                tracing::warn!(error = %saving, "could not save the page state of the failed sync");
            }
        }
        return Err(error);
    }
    let resumed = organizations.resumed || iam.resumed || store_stream.resumed || center.resumed;
    let mut engine = center;
    engine.state.inventory.sso_users = std::mem::take(&mut store_stream.state.inventory.sso_users);
    engine.state.inventory.sso_groups =
        std::mem::take(&mut store_stream.state.inventory.sso_groups);
    engine.state.inventory.accounts = std::mem::take(&mut organizations.state.inventory.accounts);
    engine.state.inventory.iam_users = std::mem::take(&mut iam.state.inventory.iam_users);
    engine.state.inventory.iam_groups = std::mem::take(&mut iam.state.inventory.iam_groups);
    engine.state.inventory.iam_roles = std::mem::take(&mut iam.state.inventory.iam_roles);
    engine.state.key_source = iam.state.key_source.take();

    let mut inventory = std::mem::take(&mut engine.state.inventory);
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

    engine.cache.refresh_from(&inventory);
    store
        .save(
            CACHE_KEY,
            &serde_json::to_vec(&engine.cache).unwrap_or_default(),
        )
        .await?;
    for stream in Stream::ALL {
        store.delete(&state_key(stream)).await?;
    }
    // A page state of an earlier version, kept under the old name.
    store.delete(STATE_KEY).await?;
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
        cache: SyncCache,
    ) -> Result<Self, SyncError> {
        let state = match store.load(&state_key(stream)).await? {
            Some(bytes) => PageState::resume(&bytes, scope).unwrap_or_else(|why| {
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
            tracing::info!(stream = stream.key(), phase = ?state.phase, item = state.item, pages = state.pages, "resuming an interrupted sync");
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
            cache,
            cache_hits: 0,
            last_checkpoint: Instant::now(),
            listed: BTreeSet::new(),
            accounts: None,
            principals: None,
            principals_told: None,
            instance_told: None,
            instance: None,
        })
    }

    /// Runs the Identity Store stream once the instance is known, telling the Identity Center
    /// stream the users and groups as soon as they are listed: it needs their ids, not the
    /// memberships, which are listed meanwhile.
    async fn run_identity_store(&mut self, told: Told<Principals>) -> Result<(), SyncError> {
        if self.state.inventory.identity_center.is_none()
            && let Some(heard) = self.instance.as_mut()
        {
            self.state.inventory.identity_center = hear(heard).await;
        }
        if self.state.phase > Phase::SsoGroups {
            told.send_replace(Some(Some(self.principal_ids())));
        }
        self.principals_told = Some(told);
        let result = self.run_phases().await;
        if let Some(told) = self.principals_told.take()
            && told.borrow().is_none()
        {
            told.send_replace(Some(result.is_ok().then(|| self.principal_ids())));
        }
        result
    }

    /// The ids of the users and groups listed.
    fn principal_ids(&self) -> Principals {
        let inventory = &self.state.inventory;
        (
            inventory
                .sso_users
                .iter()
                .map(|u| SsoUser {
                    id: u.id.clone(),
                    ..SsoUser::default()
                })
                .collect(),
            inventory
                .sso_groups
                .iter()
                .map(|g| SsoGroup {
                    id: g.id.clone(),
                    ..SsoGroup::default()
                })
                .collect(),
        )
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

    /// The users and groups (ids only) the Identity Store stream found, waited for.
    async fn identity_store_principals(&mut self) -> Result<Principals, SyncError> {
        let Some(heard) = self.principals.as_mut() else {
            return Ok(Default::default());
        };
        hear(heard).await.ok_or_else(|| {
            SyncError::Stopped(
                "the Identity Store stream could not list the users and groups".into(),
            )
        })
    }

    /// Runs the Organizations stream, then tells the Identity Center stream the accounts.
    async fn run_organizations(&mut self, seen: Told<Vec<String>>) -> Result<(), SyncError> {
        let result = self.run_phases().await;
        let accounts = (result.is_ok() && self.spec.organizations).then(|| {
            self.state
                .inventory
                .accounts
                .iter()
                .map(|a| a.id.clone())
                .collect()
        });
        seen.send_replace(Some(accounts));
        result
    }

    /// The organization's account ids once the Organizations stream has listed them; `None`
    /// when it does not (or could not).
    async fn organization_accounts(&mut self) -> Option<Vec<String>> {
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

    /// Saves the page state, at most once per `checkpoint_every`: each save rewrites the
    /// state's ConfigMaps, and a restart costs at most the pages fetched since the last one.
    async fn checkpoint(&mut self) -> Result<(), SyncError> {
        if self.last_checkpoint.elapsed() < self.options.checkpoint_every {
            return Ok(());
        }
        self.save_state().await
    }

    async fn save_state(&mut self) -> Result<(), SyncError> {
        let bytes = serde_json::to_vec(&self.state).unwrap_or_default();
        self.store.save(&state_key(self.stream), &bytes).await?;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Records that a page was fetched and where the next one starts.
    async fn after_page(&mut self, next: Option<String>, walk: Walk) -> Result<bool, SyncError> {
        self.state.pages += 1;
        self.saved_token = false;
        let done = next.is_none();
        self.state.next_token = next;
        if done && walk == Walk::PerItem {
            self.state.item += 1;
        }
        if self.state.pages.is_multiple_of(50) {
            tracing::info!(phase = ?self.state.phase, pages = self.state.pages, calls = self.session.caller.stats().total(), "sync progress");
        }
        self.checkpoint().await?;
        Ok(done)
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
                self.state.rewind(to);
                self.saved_token = false;
                self.checkpoint().await?;
                continue;
            }
            self.listed.insert(phase);
            if phase == Phase::SsoGroups
                && let Some(told) = &self.principals_told
            {
                told.send_replace(Some(Some(self.principal_ids())));
            }
            tracing::info!(
                stream = self.stream.key(),
                ?phase,
                calls = self.session.caller.stats().total() - before,
                "sync phase done"
            );
            self.state.phase = self.stream.next(phase);
            self.state.item = 0;
            self.state.next_token = None;
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

    async fn run_phase(&mut self, phase: Phase) -> Result<(), SyncError> {
        let sso = self.spec.identity_center;
        match phase {
            Phase::Accounts if self.spec.organizations => self.accounts().await,
            Phase::IamDetails if self.spec.iam => self.iam_details().await,
            Phase::AccessKeys if self.spec.iam && self.spec.access_keys => self.access_keys().await,
            Phase::Instance if sso => {
                let instance = identity_center::instance(self.session)
                    .await
                    .map_err(|e| self.failed(e))?;
                if instance.is_none() {
                    tracing::warn!("no IAM Identity Center instance: skipping Identity Center");
                }
                self.state.inventory.identity_center = instance;
                self.tell_instance();
                Ok(())
            }
            _ if !sso || self.identity_center().is_none() => Ok(()),
            Phase::SsoUsers => self.sso_users().await,
            Phase::SsoGroups => self.sso_groups().await,
            Phase::Memberships => self.memberships().await,
            Phase::PermissionSets => self.permission_sets().await,
            Phase::PermissionSetDetails => self.permission_set_details().await,
            Phase::Provisioning => self.provisioning().await,
            Phase::Assignments => self.assignments().await,
            _ => Ok(()),
        }
    }

    async fn accounts(&mut self) -> Result<(), SyncError> {
        loop {
            let page = organizations::list_accounts(
                self.session,
                self.state.next_token.clone(),
                self.size(),
            )
            .await
            .map_err(|e| self.failed(e))?;
            self.state.inventory.accounts.extend(page.items);
            if self.after_page(page.next, Walk::Single).await? {
                return Ok(());
            }
        }
    }

    async fn iam_details(&mut self) -> Result<(), SyncError> {
        loop {
            let page = iam::authorization_details(
                self.session,
                self.state.next_token.clone(),
                self.size(),
            )
            .await
            .map_err(|e| self.failed(e))?;
            let inventory = &mut self.state.inventory;
            inventory.iam_users.extend(page.items.users);
            inventory.iam_groups.extend(page.items.groups);
            inventory.iam_roles.extend(page.items.roles);
            if self.after_page(page.next, Walk::Single).await? {
                break;
            }
        }
        // Group members come from the users' group lists: no GetGroup per group.
        let inventory = &mut self.state.inventory;
        let mut members: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for user in &inventory.iam_users {
            for group in &user.groups {
                members
                    .entry(group.as_str())
                    .or_default()
                    .push(user.name.clone());
            }
        }
        let members: BTreeMap<String, Vec<String>> = members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for group in &mut inventory.iam_groups {
            group.members = members.get(&group.name).cloned().unwrap_or_default();
        }
        Ok(())
    }

    /// Access keys with their last use. The IAM credential report says in two or three calls
    /// which users have keys and when each was last used; keys are then listed only for those
    /// users (the report has no key ids). Without the report, every user's keys are listed and
    /// each key's last use asked.
    async fn access_keys(&mut self) -> Result<(), SyncError> {
        if self.state.key_source.is_none() {
            let source = match credential_report::fetch(self.session).await {
                Ok(report) => {
                    tracing::info!(
                        users = report.len(),
                        with_keys = report.values().filter(|keys| !keys.is_empty()).count(),
                        "IAM credential report read"
                    );
                    KeySource::Report(report)
                }
                Err(error) => {
                    tracing::warn!(%error, "IAM credential report unavailable: listing the access keys of every user and asking each key's last use instead");
                    KeySource::PerUser(error.to_string())
                }
            };
            self.state.key_source = Some(source);
            self.checkpoint().await?;
        }
        while self.state.item < self.state.inventory.iam_users.len() {
            let index = self.state.item;
            let name = self.state.inventory.iam_users[index].name.clone();
            // `None`: unknown (no report, or a user newer than it), so listed and asked.
            let slots = match &self.state.key_source {
                Some(KeySource::Report(report)) => report.get(&name).cloned(),
                _ => None,
            };
            if slots.as_ref().is_some_and(Vec::is_empty) && self.state.next_token.is_none() {
                self.state.inventory.iam_users[index].access_keys = Some(Vec::new());
                self.state.item += 1;
                continue;
            }
            let listed = iam::list_access_keys(
                self.session,
                &name,
                self.state.next_token.clone(),
                self.size(),
            )
            .await;
            let mut page = match listed {
                Err(e) if self.deleted_since_listed(Phase::AccessKeys, &e) => {
                    tracing::info!(user = %name, "IAM user deleted since it was listed; left out");
                    let inventory = &mut self.state.inventory;
                    inventory.iam_users.remove(index);
                    for group in &mut inventory.iam_groups {
                        group.members.retain(|member| member != &name);
                    }
                    self.state.next_token = None;
                    continue;
                }
                other => other.map_err(|e| self.failed(e))?,
            };
            match &slots {
                Some(slots) => credential_report::fill_last_use(&mut page.items, slots),
                None => {
                    for key in &mut page.items {
                        iam::access_key_last_used(self.session, key)
                            .await
                            .map_err(|e| self.failed(e))?;
                    }
                }
            }
            self.state.inventory.iam_users[index]
                .access_keys
                .get_or_insert_with(Vec::new)
                .extend(page.items);
            self.after_page(page.next, Walk::PerItem).await?;
        }
        Ok(())
    }

    async fn sso_users(&mut self) -> Result<(), SyncError> {
        let Some((_, store)) = self.identity_center() else {
            return Ok(());
        };
        loop {
            let page = identity_center::list_users(
                self.session,
                &store,
                self.state.next_token.clone(),
                self.size(),
            )
            .await
            .map_err(|e| self.failed(e))?;
            self.state.inventory.sso_users.extend(page.items);
            if self.after_page(page.next, Walk::Single).await? {
                return Ok(());
            }
        }
    }

    async fn sso_groups(&mut self) -> Result<(), SyncError> {
        let Some((_, store)) = self.identity_center() else {
            return Ok(());
        };
        loop {
            let page = identity_center::list_groups(
                self.session,
                &store,
                self.state.next_token.clone(),
                self.size(),
            )
            .await
            .map_err(|e| self.failed(e))?;
            self.state.inventory.sso_groups.extend(page.items);
            if self.after_page(page.next, Walk::Single).await? {
                return Ok(());
            }
        }
    }

    async fn memberships(&mut self) -> Result<(), SyncError> {
        let Some((_, store)) = self.identity_center() else {
            return Ok(());
        };
        while self.state.item < self.state.inventory.sso_groups.len() {
            let index = self.state.item;
            let group = self.state.inventory.sso_groups[index].id.clone();
            let listed = identity_center::list_group_memberships(
                self.session,
                &store,
                &group,
                self.state.next_token.clone(),
                self.size(),
            )
            .await;
            let page = match listed {
                Err(e) if self.deleted_since_listed(Phase::Memberships, &e) => {
                    tracing::info!(%group, "Identity Center group deleted since it was listed; left out");
                    self.state.inventory.sso_groups.remove(index);
                    self.state.next_token = None;
                    continue;
                }
                other => other.map_err(|e| self.failed(e))?,
            };
            self.state.inventory.sso_groups[index]
                .members
                .extend(page.items);
            self.after_page(page.next, Walk::PerItem).await?;
        }
        Ok(())
    }

    async fn permission_sets(&mut self) -> Result<(), SyncError> {
        let Some((instance, _)) = self.identity_center() else {
            return Ok(());
        };
        loop {
            let page = identity_center::list_permission_sets(
                self.session,
                &instance,
                self.state.next_token.clone(),
                self.size(),
            )
            .await
            .map_err(|e| self.failed(e))?;
            self.state.permission_set_arns.extend(page.items);
            if self.after_page(page.next, Walk::Single).await? {
                return Ok(());
            }
        }
    }

    async fn permission_set_details(&mut self) -> Result<(), SyncError> {
        let Some((instance, _)) = self.identity_center() else {
            return Ok(());
        };
        let (now, ttl) = (unix_now(), self.options.cache_ttl.as_secs() as i64);
        while self.state.item < self.state.permission_set_arns.len() {
            let arn = self.state.permission_set_arns[self.state.item].clone();
            let details = match self.cache.fresh_permission_set(&arn, now, ttl) {
                Some(cached) => {
                    self.cache_hits += 1;
                    cached.clone()
                }
                None => {
                    let described =
                        identity_center::describe_permission_set(self.session, &instance, &arn)
                            .await;
                    let details = match described {
                        Err(e) if self.deleted_since_listed(Phase::PermissionSetDetails, &e) => {
                            self.forget_permission_set(&arn);
                            continue;
                        }
                        other => other.map_err(|e| self.failed(e))?,
                    };
                    self.cache.remember(&arn, details.clone());
                    details
                }
            };
            self.state.inventory.permission_sets.push(details);
            self.state.item += 1;
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Leaves out a permission set deleted since this run listed it.
    fn forget_permission_set(&mut self, arn: &str) {
        tracing::info!(permission_set = %arn, "permission set deleted since it was listed; left out");
        self.state.permission_set_arns.retain(|a| a != arn);
        self.state
            .inventory
            .permission_sets
            .retain(|p| p.arn != arn);
        self.state.provisioned.remove(arn);
        self.state.next_token = None;
    }

    /// Moves past the current item of a per-item phase without listing the rest of it.
    fn skip_item(&mut self) {
        self.state.item += 1;
        self.state.next_token = None;
    }

    fn principals(&self) -> usize {
        self.state.inventory.sso_users.len() + self.state.inventory.sso_groups.len()
    }

    async fn provisioning(&mut self) -> Result<(), SyncError> {
        let Some((instance, _)) = self.identity_center() else {
            return Ok(());
        };
        // The principals come from the Identity Store stream (kept here, ids only, for the
        // listing per principal and for a resumed run).
        if self.state.inventory.sso_users.is_empty() && self.state.inventory.sso_groups.is_empty() {
            let (users, groups) = self.identity_store_principals().await?;
            self.state.inventory.sso_users = users;
            self.state.inventory.sso_groups = groups;
        }
        let sets = self.state.permission_set_arns.len();
        // Per-account discovery needs the accounts: wait for the Organizations stream, unless
        // the choice was made before (a resumed run) and does not need them.
        let accounts = match self.state.discovery {
            Some(PairDiscovery::PerPermissionSet) => None,
            _ if self.spec.organizations => self.organization_accounts().await,
            _ => None,
        };
        let known = accounts.as_ref().map(Vec::len);
        let accounts = accounts.unwrap_or_default();
        let discovery = *self
            .state
            .discovery
            .get_or_insert_with(|| choose_discovery(sets, known));
        let cost = match discovery {
            PairDiscovery::PerPermissionSet => sets,
            PairDiscovery::PerAccount => accounts.len(),
        };
        if let Some(listing) = choose_listing(self.principals(), cost, None) {
            tracing::info!(
                principals = self.principals(),
                discovery_calls = cost,
                "assignments listed per principal: fewer principals than calls to find the pairs"
            );
            self.state.listing = Some(listing);
            return Ok(());
        }
        if discovery == PairDiscovery::PerAccount {
            self.pairs_per_account(&instance, &accounts).await?;
        } else {
            self.pairs_per_permission_set(&instance).await?;
        }
        let pairs: usize = self.state.provisioned.values().map(Vec::len).sum();
        let sets = self.state.permission_set_arns.len();
        self.state.listing = choose_listing(self.principals(), cost, Some(pairs));
        tracing::info!(
            discovery = discovery.as_str(),
            permission_sets = sets,
            accounts = accounts.len(),
            pairs,
            principals = self.principals(),
            listing = self.state.listing.map(AssignmentListing::as_str),
            "assignment listing chosen"
        );
        Ok(())
    }

    /// The pairs from ListAccountsForProvisionedPermissionSet, one permission set at a time.
    async fn pairs_per_permission_set(&mut self, instance: &str) -> Result<(), SyncError> {
        while self.state.item < self.state.permission_set_arns.len() {
            let arn = self.state.permission_set_arns[self.state.item].clone();
            let listed = identity_center::list_provisioned_accounts(
                self.session,
                instance,
                &arn,
                self.state.next_token.clone(),
                self.size(),
            )
            .await;
            let page = match listed {
                Err(e) if self.deleted_since_listed(Phase::Provisioning, &e) => {
                    self.forget_permission_set(&arn);
                    continue;
                }
                other => other.map_err(|e| self.failed(e))?,
            };
            self.state
                .provisioned
                .entry(arn)
                .or_default()
                .extend(page.items);
            self.after_page(page.next, Walk::PerItem).await?;
        }
        Ok(())
    }

    /// The pairs from ListPermissionSetsProvisionedToAccount, one account at a time: fewer
    /// calls when the organization has fewer accounts than permission sets.
    async fn pairs_per_account(
        &mut self,
        instance: &str,
        accounts: &[String],
    ) -> Result<(), SyncError> {
        while self.state.item < accounts.len() {
            let account = &accounts[self.state.item];
            let listed = identity_center::list_provisioned_permission_sets(
                self.session,
                instance,
                account,
                self.state.next_token.clone(),
                self.size(),
            )
            .await;
            let page = match listed {
                // The accounts are the Organizations stream's, listed moments ago or by an
                // interrupted run: one AWS no longer knows has no pairs to find.
                Err(e) if e.kind == ErrorKind::NotFound => {
                    tracing::info!(%account, "account gone since it was listed; left out");
                    self.skip_item();
                    continue;
                }
                other => other.map_err(|e| self.failed(e))?,
            };
            for arn in page.items {
                // Only the permission sets this sync described.
                if self.state.permission_set_arns.contains(&arn) {
                    self.state
                        .provisioned
                        .entry(arn)
                        .or_default()
                        .push(account.clone());
                }
            }
            self.after_page(page.next, Walk::PerItem).await?;
        }
        Ok(())
    }

    async fn assignments(&mut self) -> Result<(), SyncError> {
        let Some((instance, _)) = self.identity_center() else {
            return Ok(());
        };
        match self.state.listing {
            Some(AssignmentListing::PerAccount) => {
                let pairs = self.state.pairs();
                while self.state.item < pairs.len() {
                    let (ps, account) = &pairs[self.state.item];
                    let listed = identity_center::list_account_assignments(
                        self.session,
                        &instance,
                        account,
                        ps,
                        self.state.next_token.clone(),
                        self.size(),
                    )
                    .await;
                    let page = match listed {
                        Err(e) if self.deleted_since_listed(Phase::Assignments, &e) => {
                            tracing::info!(permission_set = %ps, %account, "permission set or account gone since it was listed; left out");
                            self.skip_item();
                            continue;
                        }
                        other => other.map_err(|e| self.failed(e))?,
                    };
                    self.state.inventory.assignments.extend(page.items);
                    self.after_page(page.next, Walk::PerItem).await?;
                }
            }
            Some(AssignmentListing::PerPrincipal) | None => {
                self.state.listing = Some(AssignmentListing::PerPrincipal);
                let principals: Vec<(&str, String)> = self
                    .state
                    .inventory
                    .sso_users
                    .iter()
                    .map(|u| ("USER", u.id.clone()))
                    .chain(
                        self.state
                            .inventory
                            .sso_groups
                            .iter()
                            .map(|g| ("GROUP", g.id.clone())),
                    )
                    .collect();
                while self.state.item < principals.len() {
                    let (kind, id) = &principals[self.state.item];
                    let listed = identity_center::list_assignments_for_principal(
                        self.session,
                        &instance,
                        kind,
                        id,
                        self.state.next_token.clone(),
                        self.size(),
                    )
                    .await;
                    let page = match listed {
                        // The principals are the Identity Store stream's: one AWS no longer
                        // knows has no assignments to list.
                        Err(e) if e.kind == ErrorKind::NotFound => {
                            tracing::info!(principal = %id, "principal deleted since it was listed; left out");
                            self.skip_item();
                            continue;
                        }
                        other => other.map_err(|e| self.failed(e))?,
                    };
                    self.state.inventory.assignments.extend(page.items);
                    self.after_page(page.next, Walk::PerItem).await?;
                }
            }
        }
        Ok(())
    }
}
