//! The phases of the sync engine's streams: the list calls of each, and what each page teaches
//! the stream (as facts, see `facts`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;

use super::{Engine, SyncError, resumed_keys};
use crate::aws::error::ErrorKind;
use crate::aws::model::Page;
use crate::aws::model::member_outcome;
use crate::aws::{
    AwsError, Session, cloudtrail, credential_report, iam, identity_center, organizations,
    permission_sets,
};
use crate::sync::cache::unix_now;
use crate::sync::facts::Fact;
use crate::sync::fetch;
use crate::sync::state::{
    AssignmentListing, KeySource, PairDiscovery, Phase, choose_discovery, choose_listing,
};
use crate::sync::store::StateStore;

/// The outcome of a member account whose IAM could not be read: `AccessDenied` when the role
/// could not be assumed or IAM refused it, `Failed` otherwise.
fn member_outcome_of(error: &AwsError) -> &'static str {
    let denied = error.kind == ErrorKind::AccessDenied
        || (error.kind == ErrorKind::Credentials
            && (error.message.contains("AccessDenied")
                || error.message.contains("not authorized")));
    if denied {
        member_outcome::ACCESS_DENIED
    } else {
        member_outcome::FAILED
    }
}

/// Why a member account was not read, for people: a refused role as the hop that failed
/// (`cannot assume spec.sync.memberAccounts.roleName (<arn>): <cause>`), without the SDK's
/// wrapping; any other error as it is.
fn member_message(error: &AwsError) -> String {
    match error.message.find("cannot assume ") {
        Some(at) if error.kind == ErrorKind::Credentials => error.message[at..].to_string(),
        _ => error.to_string(),
    }
}

/// What an item of a per-item phase that AWS says does not exist means.
#[derive(Clone, Copy)]
enum WhenGone {
    /// This stream listed it: left out when this run listed it; from a saved state, the state
    /// is stale and the stream is listed again (see `stale_state`).
    ListedHere,
    /// Another stream listed it: left out.
    ListedElsewhere,
}

impl<S: StateStore> Engine<'_, S> {
    /// Runs one phase of this stream (nothing for a phase the connector does not sync).
    pub(super) async fn run_phase(&mut self, phase: Phase) -> Result<(), SyncError> {
        let sso = self.spec.identity_center;
        match phase {
            Phase::Roots if self.spec.organizations => self.roots().await,
            Phase::OrganizationalUnits if self.spec.organizations => {
                self.organizational_units().await
            }
            Phase::Accounts if self.spec.organizations => self.accounts().await,
            Phase::IamDetails if self.spec.iam => self.iam_details().await,
            Phase::AccessKeys if self.spec.iam && self.spec.access_keys => self.access_keys().await,
            Phase::MemberIam if self.spec.members().is_some() => self.member_iam().await,
            Phase::Instance if sso => {
                let instance = identity_center::instance(self.session)
                    .await
                    .map_err(|e| self.failed(e))?;
                if instance.is_none() {
                    tracing::warn!("no IAM Identity Center instance: skipping Identity Center");
                }
                self.learn(Fact::Instance(instance));
                self.tell_instance();
                Ok(())
            }
            _ if !sso || self.identity_center().is_none() => Ok(()),
            Phase::SsoUsers => self.sso_users().await,
            Phase::SignIns if self.spec.last_sign_in => self.sign_ins().await,
            Phase::SsoGroups => self.sso_groups().await,
            Phase::Memberships => self.memberships().await,
            Phase::PermissionSets => self.permission_sets().await,
            Phase::PermissionSetDetails => self.permission_set_details().await,
            Phase::Provisioning => self.provisioning().await,
            Phase::Assignments => self.assignments().await,
            _ => Ok(()),
        }
    }

    /// Every page of a phase's single list, from the saved token on: each page's items learned
    /// as `fact` makes them.
    async fn each_page<T, Fut>(
        &mut self,
        list: impl Fn(Option<String>) -> Fut,
        fact: impl Fn(T) -> Fact,
    ) -> Result<(), SyncError>
    where
        Fut: Future<Output = Result<Page<T>, AwsError>>,
    {
        loop {
            let page = list(self.state.next_token.clone())
                .await
                .map_err(|e| self.failed(e))?;
            self.learn(fact(page.items));
            // The Identity Store streams tell how far they got (the others tell nobody).
            self.tell_census(false);
            if self.after_page(page.next).await? {
                return Ok(());
            }
        }
    }

    /// The organization's root; none, with a warning, for an account in no organization (then
    /// there is nothing else to list: no units, no accounts).
    async fn roots(&mut self) -> Result<(), SyncError> {
        let (session, size) = (self.session, self.size());
        let listed = self
            .each_page(
                |token| organizations::list_roots(session, token, size),
                Fact::Roots,
            )
            .await;
        match listed {
            Err(SyncError::Aws { source, .. })
                if source.code.as_deref() == Some(organizations::NOT_IN_USE) =>
            {
                tracing::warn!(error = %source, "the account is in no organization: skipping Organizations");
                Ok(())
            }
            other => other,
        }
    }

    /// The root and every organizational unit found so far: the parents of the tree.
    fn parents(&self) -> Vec<String> {
        let inventory = &self.state.inventory;
        let roots = inventory.roots.iter().map(|r| r.id.clone());
        roots
            .chain(inventory.organizational_units.iter().map(|u| u.id.clone()))
            .collect()
    }

    /// An organizational unit AWS no longer knows: deleted since it was listed (it was empty
    /// then, or it could not have been deleted).
    fn forget_unit(&mut self, unit: &str) {
        tracing::info!(%unit, "organizational unit deleted since it was listed; left out");
        self.learn(Fact::OrganizationalUnitGone(unit.to_string()));
    }

    /// The organizational units, level by level from the root: each pass lists the children
    /// of the parents found by the one before (the tree is at most five levels deep).
    async fn organizational_units(&mut self) -> Result<(), SyncError> {
        let phase = Phase::OrganizationalUnits;
        let (session, size) = (self.session, self.size());
        loop {
            let items = self.still_to_list(phase, self.parents());
            if items.is_empty() {
                return Ok(());
            }
            self.walk(
                phase,
                items,
                move |parent: String, token| async move {
                    organizations::list_organizational_units(session, &parent, token, size).await
                },
                WhenGone::ListedHere,
                |engine, unit| engine.forget_unit(unit),
                |engine, _, units| engine.learn(Fact::OrganizationalUnits(units)),
            )
            .await?;
        }
    }

    /// The accounts, parent by parent: each with the root or organizational unit it sits in.
    async fn accounts(&mut self) -> Result<(), SyncError> {
        let phase = Phase::Accounts;
        let items = self.still_to_list(phase, self.parents());
        let (session, size) = (self.session, self.size());
        self.walk(
            phase,
            items,
            move |parent: String, token| async move {
                organizations::list_accounts_for_parent(session, &parent, token, size).await
            },
            WhenGone::ListedHere,
            |engine, unit| engine.forget_unit(unit),
            |engine, _, accounts| engine.learn(Fact::Accounts(accounts)),
        )
        .await
    }

    async fn iam_details(&mut self) -> Result<(), SyncError> {
        let (session, size, policies) = (self.session, self.size(), self.spec.policies);
        self.each_page(
            |token| iam::authorization_details(session, token, size, policies),
            |details| Fact::IamDetails {
                users: details.users,
                groups: details.groups,
                roles: details.roles,
            },
        )
        .await
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
            self.learn(Fact::KeySource(source));
            self.checkpoint().await?;
        }
        let phase = Phase::AccessKeys;
        let report = match &self.state.key_source {
            Some(KeySource::Report(report)) => Some(Arc::new(report.clone())),
            _ => None,
        };
        let users = self
            .state
            .inventory
            .iam_users
            .iter()
            .map(|u| u.name.to_string())
            .collect();
        let mut to_list = Vec::new();
        for (name, token) in self.still_to_list(phase, users) {
            let no_keys = report
                .as_ref()
                .and_then(|report| report.get(&name))
                .is_some_and(Vec::is_empty);
            if no_keys && token.is_none() {
                // The report shows no keys: known without a call.
                self.learn(Fact::AccessKeys {
                    user: name.clone(),
                    keys: Vec::new(),
                });
                self.learn(Fact::ItemDone(phase, name));
            } else {
                to_list.push((name, token));
            }
        }
        let (session, size) = (self.session, self.size());
        let list = move |name: String, token| {
            let report = report.clone();
            async move {
                let mut page = iam::list_access_keys(session, &name, token, size).await?;
                // `None`: unknown (no report, or a user newer than it), so each key is asked.
                match report.as_ref().and_then(|report| report.get(&name)) {
                    Some(slots) => credential_report::fill_last_use(&mut page.items, slots),
                    None => {
                        for key in &mut page.items {
                            iam::access_key_last_used(session, key).await?;
                        }
                    }
                }
                Ok(page)
            }
        };
        self.walk(
            phase,
            to_list,
            list,
            WhenGone::ListedHere,
            |engine, user| {
                tracing::info!(%user, "IAM user deleted since it was listed; left out");
                engine.learn(Fact::IamUserGone(user.to_string()));
            },
            |engine, user, keys| {
                engine.learn(Fact::AccessKeys {
                    user: user.to_string(),
                    keys,
                })
            },
        )
        .await
    }

    /// IAM in each ACTIVE member account (the connector's own account aside: the IAM stream
    /// reads it), through the role assumed there, `concurrency` accounts at once. An account
    /// that cannot be entered or read is reported with why, never fatal to the sync.
    async fn member_iam(&mut self) -> Result<(), SyncError> {
        let Some(settings) = self.spec.members() else {
            return Ok(());
        };
        let Some(accounts) = self.organization_accounts().await else {
            tracing::warn!(
                "the organization's accounts are not known (sync.organizations off, no organization, or its listing failed): member accounts not synced"
            );
            return Ok(());
        };
        let phase = Phase::MemberIam;
        let own = self.session.identity.as_ref().map(|i| i.account.clone());
        let mut active = Vec::new();
        for account in accounts {
            if Some(&account.id) == own.as_ref()
                || self.state.done.contains(&(phase, account.id.clone()))
            {
                continue;
            }
            if account.status == "ACTIVE" {
                active.push(account.id);
            } else {
                self.learn(Fact::MemberOutcome {
                    account: account.id.clone(),
                    outcome: member_outcome::SKIPPED.into(),
                    message: format!("the account is {}, not ACTIVE", account.status),
                });
                self.learn(Fact::ItemDone(phase, account.id));
            }
        }
        let items = self.still_to_list(phase, active);
        tracing::info!(
            accounts = items.len(),
            role = %settings.role_name,
            concurrency = settings.concurrency,
            "entering member accounts"
        );
        let (session, size, policies) = (self.session, self.size(), self.spec.policies);
        let role = settings.role_name.as_str();
        // Each account's session, built once: its credentials are assumed once and refreshed
        // by the SDK before they expire.
        let entered: Arc<std::sync::Mutex<BTreeMap<String, Arc<Session>>>> = Arc::default();
        let list = move |account: String, token: Option<String>| {
            let entered = entered.clone();
            async move {
                let known = entered
                    .lock()
                    .ok()
                    .and_then(|sessions| sessions.get(&account).cloned());
                let member = match known {
                    Some(member) => member,
                    None => {
                        let member = Arc::new(session.member(&account, role).await);
                        if let Ok(mut sessions) = entered.lock() {
                            sessions.insert(account.clone(), member.clone());
                        }
                        member
                    }
                };
                // A member account's failure is its own: told as its outcome, and the walk
                // goes on with the others.
                Ok(
                    match iam::authorization_details(&member, token, size, policies).await {
                        Ok(page) => Page::new(vec![Ok(page.items)], page.next),
                        Err(error) => Page::new(vec![Err(error)], None),
                    },
                )
            }
        };
        self.walk(
            phase,
            items,
            list,
            WhenGone::ListedElsewhere,
            |_, _| {},
            |engine, account, pages| {
                for page in pages {
                    let fact = match page {
                        Ok(details) => Fact::MemberIam {
                            account: account.to_string(),
                            users: details.users,
                            groups: details.groups,
                            roles: details.roles,
                        },
                        Err(error) => {
                            let outcome = member_outcome_of(&error);
                            tracing::warn!(%account, outcome, %error, "member account not synced");
                            Fact::MemberOutcome {
                                account: account.to_string(),
                                outcome: outcome.into(),
                                message: member_message(&error),
                            }
                        }
                    };
                    engine.learn(fact);
                }
            },
        )
        .await
    }

    async fn sso_users(&mut self) -> Result<(), SyncError> {
        let Some((_, store)) = self.identity_center() else {
            return Ok(());
        };
        let (session, size) = (self.session, self.size());
        self.each_page(
            |token| identity_center::list_users(session, &store, token, size),
            Fact::SsoUsers,
        )
        .await
    }

    /// When each user last signed in: CloudTrail's `Authenticate` and `Federate` events from
    /// Identity Center, since shortly before the newest sign-in the last sync found (all 90 days
    /// the first time), each event name a list of its own.
    async fn sign_ins(&mut self) -> Result<(), SyncError> {
        let phase = Phase::SignIns;
        let events = cloudtrail::SIGN_IN_EVENTS.map(String::from).to_vec();
        let items = self.still_to_list(phase, events);
        let (session, size) = (self.session, self.size());
        let since = self.sign_ins_since.clone();
        tracing::info!(
            since = since
                .as_deref()
                .unwrap_or("the start of CloudTrail's event history"),
            "reading Identity Center sign-ins"
        );
        let since = since.as_deref();
        self.walk(
            phase,
            items,
            move |event: String, token| async move {
                match cloudtrail::sign_ins(session, &event, since, token, size).await {
                    // Sign-ins only add to the inventory: without them it is still whole.
                    Err(error) if error.kind == ErrorKind::AccessDenied => {
                        tracing::warn!(%error, "last sign-ins not read this time: allow cloudtrail:LookupEvents in the Identity Center region (the sign-ins found before are kept)");
                        Ok(Page::new(Vec::new(), None))
                    }
                    other => other,
                }
            },
            WhenGone::ListedElsewhere,
            |_, _| {},
            |engine, _, sign_ins| engine.learn(Fact::SignIns(sign_ins)),
        )
        .await
    }

    async fn sso_groups(&mut self) -> Result<(), SyncError> {
        let Some((_, store)) = self.identity_center() else {
            return Ok(());
        };
        let (session, size) = (self.session, self.size());
        self.each_page(
            |token| identity_center::list_groups(session, &store, token, size),
            Fact::SsoGroups,
        )
        .await
    }

    async fn memberships(&mut self) -> Result<(), SyncError> {
        let Some((_, store)) = self.identity_center() else {
            return Ok(());
        };
        let phase = Phase::Memberships;
        let groups = self
            .state
            .inventory
            .sso_groups
            .iter()
            .map(|g| g.id.clone())
            .collect();
        let items = self.still_to_list(phase, groups);
        let (session, size, store) = (self.session, self.size(), store.as_str());
        self.walk(
            phase,
            items,
            move |group: String, token| async move {
                identity_center::list_group_memberships(session, store, &group, token, size).await
            },
            WhenGone::ListedHere,
            |engine, group| {
                tracing::info!(%group, "Identity Center group deleted since it was listed; left out");
                engine.learn(Fact::SsoGroupGone(group.to_string()));
            },
            |engine, group, users| {
                engine.learn(Fact::Members {
                    group: group.to_string(),
                    users: users.into_iter().map(Arc::from).collect(),
                })
            },
        )
        .await
    }

    async fn permission_sets(&mut self) -> Result<(), SyncError> {
        let Some((instance, _)) = self.identity_center() else {
            return Ok(());
        };
        let (session, size) = (self.session, self.size());
        self.each_page(
            |token| identity_center::list_permission_sets(session, &instance, token, size),
            Fact::PermissionSetArns,
        )
        .await
    }

    async fn permission_set_details(&mut self) -> Result<(), SyncError> {
        let Some((instance, _)) = self.identity_center() else {
            return Ok(());
        };
        let phase = Phase::PermissionSetDetails;
        let (now, ttl) = (unix_now(), self.options.cache_ttl.as_secs() as i64);
        let policies = self.spec.policies;
        let mut to_describe = Vec::new();
        for (arn, _) in self.still_to_list(phase, self.state.permission_set_arns.clone()) {
            // Cached details without what the set carries do not do when policies are synced.
            let cached = self
                .cache
                .fresh_permission_set(&arn, now, ttl)
                .filter(|cached| !policies || cached.contents.is_some())
                .cloned();
            match cached {
                Some(mut cached) => {
                    if !policies {
                        cached.contents = None;
                    }
                    self.cache_hits += 1;
                    self.learn(Fact::PermissionSet(cached));
                    self.learn(Fact::ItemDone(phase, arn));
                }
                None => to_describe.push((arn, None)),
            }
        }
        let (session, instance) = (self.session, instance.as_str());
        self.walk(
            phase,
            to_describe,
            move |arn: String, _| async move {
                let mut details =
                    identity_center::describe_permission_set(session, instance, &arn).await?;
                if policies {
                    details.contents =
                        Some(permission_sets::contents(session, instance, &arn).await?);
                }
                Ok(Page::new(vec![details], None))
            },
            WhenGone::ListedHere,
            |engine, arn| engine.forget_permission_set(arn),
            |engine, arn, described| {
                for details in described {
                    // A one-shot sync keeps no cache (see `run_until`).
                    if engine.store.keeps_state() {
                        engine.cache.remember(arn, details.clone());
                    }
                    engine.learn(Fact::PermissionSet(details));
                }
            },
        )
        .await
    }

    /// Leaves out a permission set deleted since this run listed it.
    fn forget_permission_set(&mut self, arn: &str) {
        tracing::info!(permission_set = %arn, "permission set deleted since it was listed; left out");
        self.learn(Fact::PermissionSetGone(arn.to_string()));
    }

    async fn provisioning(&mut self) -> Result<(), SyncError> {
        let Some((instance, _)) = self.identity_center() else {
            return Ok(());
        };
        let sets = self.state.permission_set_arns.len();
        // Per-account discovery needs the accounts: wait for the Organizations stream, unless
        // the choice was made before (a resumed run) and does not need them.
        let accounts = match self.state.discovery {
            Some(PairDiscovery::PerPermissionSet) => None,
            _ if self.spec.organizations => self
                .organization_accounts()
                .await
                .map(|accounts| accounts.into_iter().map(|a| a.id).collect()),
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
        // The principals are the Identity Store streams', still being listed: a count past
        // the cost settles it as well as the whole list would.
        let (_, principals) = self.principals_more_than(cost).await;
        if let Some(listing) = choose_listing(principals, cost, None) {
            tracing::info!(
                principals,
                discovery_calls = cost,
                "assignments listed per principal: no more principals than calls to find the pairs"
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
        let (_, principals) = self.principals_more_than(pairs.saturating_sub(1)).await;
        self.state.listing = choose_listing(principals, cost, Some(pairs));
        tracing::info!(
            discovery = discovery.as_str(),
            permission_sets = sets,
            accounts = accounts.len(),
            pairs,
            principals_at_least = principals,
            listing = self.state.listing.map(AssignmentListing::as_str),
            "assignment listing chosen"
        );
        Ok(())
    }

    /// The pairs from ListAccountsForProvisionedPermissionSet, one permission set at a time.
    async fn pairs_per_permission_set(&mut self, instance: &str) -> Result<(), SyncError> {
        let phase = Phase::Provisioning;
        let items = self.still_to_list(phase, self.state.permission_set_arns.clone());
        let (session, size) = (self.session, self.size());
        self.walk(
            phase,
            items,
            move |arn: String, token| async move {
                identity_center::list_provisioned_accounts(session, instance, &arn, token, size)
                    .await
            },
            WhenGone::ListedHere,
            |engine, arn| engine.forget_permission_set(arn),
            |engine, arn, accounts| {
                engine.learn(Fact::ProvisionedTo {
                    permission_set: arn.to_string(),
                    accounts,
                })
            },
        )
        .await
    }

    /// The pairs from ListPermissionSetsProvisionedToAccount, one account at a time: fewer
    /// calls when the organization has fewer accounts than permission sets.
    async fn pairs_per_account(
        &mut self,
        instance: &str,
        accounts: &[String],
    ) -> Result<(), SyncError> {
        let phase = Phase::Provisioning;
        let items = self.still_to_list(phase, accounts.to_vec());
        let (session, size) = (self.session, self.size());
        self.walk(
            phase,
            items,
            move |account: String, token| async move {
                identity_center::list_provisioned_permission_sets(
                    session, instance, &account, token, size,
                )
                .await
            },
            // The accounts are the Organizations stream's, listed moments ago or by an
            // interrupted run: one AWS no longer knows has no pairs to find.
            WhenGone::ListedElsewhere,
            |_, account| tracing::info!(%account, "account gone since it was listed; left out"),
            |engine, account, permission_sets| {
                engine.learn(Fact::ProvisionedIn {
                    account: account.to_string(),
                    permission_sets,
                })
            },
        )
        .await
    }

    async fn assignments(&mut self) -> Result<(), SyncError> {
        let Some((instance, _)) = self.identity_center() else {
            return Ok(());
        };
        let phase = Phase::Assignments;
        let (session, size, instance) = (self.session, self.size(), instance.as_str());
        // Each item's key names what it lists: `<account>/<permission set ARN>` for a pair
        // (an account id has no slash), `USER <id>` or `GROUP <id>` for a principal.
        let per_account = self.state.listing == Some(AssignmentListing::PerAccount);
        let keys: Vec<String> = if per_account {
            self.state
                .pairs()
                .into_iter()
                .map(|(ps, account)| format!("{account}/{ps}"))
                .collect()
        } else {
            self.state.listing = Some(AssignmentListing::PerPrincipal);
            self.learn_principals().await?;
            let inventory = &self.state.inventory;
            inventory
                .sso_users
                .iter()
                .map(|u| format!("USER {}", u.id))
                .chain(
                    inventory
                        .sso_groups
                        .iter()
                        .map(|g| format!("GROUP {}", g.id)),
                )
                .collect()
        };
        let items = self.still_to_list(phase, keys);
        let list = move |key: String, token| async move {
            if let Some((account, ps)) = key.split_once('/') {
                identity_center::list_account_assignments(
                    session, instance, account, ps, token, size,
                )
                .await
            } else {
                let (kind, id) = key.split_once(' ').unwrap_or(("USER", key.as_str()));
                identity_center::list_assignments_for_principal(
                    session, instance, kind, id, token, size,
                )
                .await
            }
        };
        // A pair whose permission set or account went since it was listed, or a principal
        // (the Identity Store streams') AWS no longer knows: nothing to list.
        let when_gone = if per_account {
            WhenGone::ListedHere
        } else {
            WhenGone::ListedElsewhere
        };
        self.walk(
            phase,
            items,
            list,
            when_gone,
            |_, item| tracing::info!(%item, "gone since it was listed; left out"),
            |engine, _, assignments| engine.learn(Fact::Assignments(assignments)),
        )
        .await
    }

    /// Walks per-item `phase`: every page of each of `items` (from its token; see
    /// `fetch::pages_of`), several items at once. Each page is learned as `on_page` says; an
    /// item AWS says does not exist is left out, after `on_gone`, when `when_gone` says so.
    async fn walk<T, F, Fut>(
        &mut self,
        phase: Phase,
        items: Vec<(String, Option<String>)>,
        list: F,
        when_gone: WhenGone,
        on_gone: impl Fn(&mut Self, &str),
        on_page: impl Fn(&mut Self, &str, Vec<T>),
    ) -> Result<(), SyncError>
    where
        F: Fn(String, Option<String>) -> Fut + Clone,
        Fut: Future<Output = Result<Page<Vec<T>>, AwsError>>,
    {
        let resumed = resumed_keys(&items);
        let mut pages = std::pin::pin!(fetch::pages_of(items, self.in_flight, list));
        while let Some((key, page)) = pages.next().await {
            match page {
                Err(e) if self.is_gone(phase, when_gone, &e) => {
                    on_gone(self, &key);
                    self.item_left_out(phase, key);
                }
                Err(e) => return Err(self.item_failed(&key, &resumed, e)),
                Ok(page) => {
                    on_page(self, &key, page.items);
                    self.after_item_page(phase, key, page.next).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether `error` says an item of `phase` no longer exists and is to be left out.
    fn is_gone(&self, phase: Phase, when_gone: WhenGone, error: &AwsError) -> bool {
        match when_gone {
            WhenGone::ListedHere => self.deleted_since_listed(phase, error),
            WhenGone::ListedElsewhere => error.kind == ErrorKind::NotFound,
        }
    }
}
