//! What every reconciliation shares: the client, the event recorder, metrics and the per-object
//! failure counts behind error backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::events::Events;
use super::metrics::Metrics;
use super::runtime::{ConnectorRuntime, Runtimes};
use crate::aws::{AwsBase, RateLimits, Session};
use crate::fence::Fence;
use crate::grant::execute::AccessLocks;
use crate::grant::observations::Observations;
use crate::sync::SyncOptions;
use crate::sync::cache::SyncCache;

/// The field manager of every status the operator writes.
pub const FIELD_MANAGER: &str = "aws-access-operator";

pub struct Context {
    pub client: Client,
    events: Events,
    pub metrics: Arc<Metrics>,
    pub aws: AwsSettings,
    failures: Mutex<HashMap<String, u32>>,
    /// What is kept for each connector between reconciliations, freed with it.
    runtimes: Runtimes,
    /// Whether this replica may write now (it holds the leader lease). Writes on behalf of a
    /// connector go through `fence_for` it instead.
    pub fence: Fence,
    /// Syncs that may run at once (`--max-concurrent-syncs`), and how many that is.
    pub sync_slots: tokio::sync::Semaphore,
    pub max_concurrent_syncs: usize,
    /// With `--shard-selector`: the connectors this shard serves, and its claims on them.
    pub claims: Option<Arc<super::claims::Claims>>,
    /// The operator's own namespace: the ownership ledger and the connectors' ConfigMaps.
    pub home_namespace: String,
    /// Namespaces whose connectors are served; empty for all.
    pub connector_namespaces: Vec<String>,
    /// The namespaces the operator watches; empty for all. With some, it may read only there.
    pub namespaces: Vec<String>,
    /// One lock per piece of access, so that two grants declaring the same access never
    /// work on it at once.
    pub access_locks: AccessLocks,
    /// Whether, and since when, the admission policy that vouches for AccessRequests is
    /// enforced.
    pub admission: super::admission::AdmissionCheck,
    /// Delivers AccessRequest notices to webhook receivers.
    pub notifier: super::notifier::Notifier,
    /// The ARN of each declared permission set, by its record's key, as the PermissionSet
    /// controller last converged it: grants that name one take it from here rather than read
    /// its record at every reconciliation.
    pub declared_sets: Mutex<HashMap<String, String>>,
    /// The users and groups declared by IdentityCenterUsers, IdentityCenterGroups and
    /// IamUsers, by (kind, connector, name): their id once converged (`None` while being
    /// created) and the declaring object. Grants that name one take its id from here, or wait.
    pub declared_identities: Mutex<HashMap<IdentityKey, (Option<String>, String)>>,
    /// Reconciliations running now, and whether new ones may start.
    running: tokio::sync::watch::Sender<usize>,
    stopping: std::sync::atomic::AtomicBool,
    /// Set with `stopping`, for work under way (a sync) to save what it has and end.
    stop_requested: tokio::sync::watch::Sender<bool>,
}

/// A running reconciliation; counted until dropped.
pub struct Running<'a>(&'a tokio::sync::watch::Sender<usize>);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A declared user or group: (kind, connector `namespace/name`, user name or display name).
pub type IdentityKey = (crate::identity::record::IdentityKind, String, String);

/// How the operator reaches AWS.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// The credentials and endpoint before any role is assumed.
    pub base: AwsBase,
    pub limits: RateLimits,
    pub sync: SyncOptions,
    /// How often a granted access is checked for drift (removed outside the operator).
    pub grant_check: std::time::Duration,
    /// The share (0–1] of each rate-limit lane drift re-checks may use: with many grants, they
    /// come less often than `grant_check` rather than crowd out syncs and grants.
    pub drift_share: f64,
}

impl Context {
    pub fn new(
        client: Client,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        fence: Fence,
        claims: Option<Arc<super::claims::Claims>>,
        settings: &super::Settings,
    ) -> Self {
        Self {
            events: Events::new(client.clone(), reporter),
            client,
            metrics,
            aws: settings.aws.clone(),
            failures: Mutex::default(),
            runtimes: Runtimes::new(settings.aws.grant_check),
            fence,
            claims,
            sync_slots: tokio::sync::Semaphore::new(settings.max_concurrent_syncs.max(1)),
            max_concurrent_syncs: settings.max_concurrent_syncs.max(1),
            home_namespace: settings.home_namespace.clone(),
            namespaces: settings.namespaces.clone(),
            connector_namespaces: settings.connector_namespaces.clone(),
            access_locks: AccessLocks::default(),
            admission: super::admission::AdmissionCheck::new(
                settings.request_admission_policy.clone(),
                &settings.home_namespace,
            ),
            notifier: super::notifier::Notifier::default(),
            declared_sets: Mutex::default(),
            declared_identities: Mutex::default(),
            running: tokio::sync::watch::channel(0).0,
            stopping: std::sync::atomic::AtomicBool::new(false),
            stop_requested: tokio::sync::watch::channel(false).0,
        }
    }

    /// `wait`, but no longer than a check interval (at least a second): what is looked at
    /// again is never looked at less often than a granted access is checked.
    pub fn within_a_check(&self, wait: std::time::Duration) -> std::time::Duration {
        wait.min(self.aws.grant_check.max(std::time::Duration::from_secs(1)))
    }

    /// The fence for writes on behalf of the connector `namespace/name`: the leader's, and,
    /// in a shard, the connector's claim within it.
    pub fn fence_for(&self, connector_key: &str) -> Fence {
        match &self.claims {
            Some(claims) => claims.fence(connector_key),
            None => self.fence.clone(),
        }
    }

    /// Counts a reconciliation in, unless the operator is stopping.
    pub fn start_reconcile(&self) -> Option<Running<'_>> {
        if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        // Rechecks come even to an idle operator: the moment to free expired events.
        self.events.forget_expired();
        self.running.send_modify(|n| *n += 1);
        Some(Running(&self.running))
    }

    /// Whether no reconciliation is running.
    pub fn is_quiet(&self) -> bool {
        *self.running.borrow() == 0
    }

    /// No new reconciliation starts from now on.
    pub fn stop_starting(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.stop_requested.send_replace(true);
    }

    /// Resolves once the operator is stopping.
    pub async fn stop_requested(&self) {
        let mut requested = self.stop_requested.subscribe();
        let _ = requested.wait_for(|stop| *stop).await;
    }

    /// Resolves once no reconciliation is running.
    pub async fn idle(&self) {
        let mut running = self.running.subscribe();
        let _ = running.wait_for(|n| *n == 0).await;
    }

    /// The connector's kept state (session, directory, permits, shared listings).
    pub fn runtime(&self, key: &str) -> Arc<ConnectorRuntime> {
        self.runtimes.of(key)
    }

    pub fn directory(&self, key: &str) -> Option<Arc<SyncCache>> {
        self.runtimes.get(key)?.directory()
    }

    pub fn keep_directory(&self, key: &str, cache: Arc<SyncCache>) {
        self.runtimes.of(key).keep_directory(cache);
    }

    /// The listings `key`'s grants share, fresh for one drift-check interval.
    pub fn observations(&self, key: &str) -> Arc<Observations> {
        self.runtimes.of(key).observations.clone()
    }

    /// Frees what was kept for a connector that is gone: its session, directory, permits and
    /// listings.
    pub fn forget_connector(&self, key: &str) {
        self.runtimes.forget(key);
    }

    /// Every AccessGrant the operator may see: cluster-wide, or namespace by namespace when it
    /// watches some (where it has no right to list cluster-wide).
    pub async fn grants(&self) -> Result<Vec<crate::api::AccessGrant>, kube::Error> {
        let params = kube::api::ListParams::default();
        if self.namespaces.is_empty() {
            let all: kube::Api<crate::api::AccessGrant> = kube::Api::all(self.client.clone());
            return Ok(all.list(&params).await?.items);
        }
        let mut grants = Vec::new();
        for namespace in &self.namespaces {
            let api: kube::Api<crate::api::AccessGrant> =
                kube::Api::namespaced(self.client.clone(), namespace);
            grants.extend(api.list(&params).await?.items);
        }
        Ok(grants)
    }

    /// Every AccessRequest the operator may see, like `grants`.
    pub async fn requests(&self) -> Result<Vec<crate::api::AccessRequest>, kube::Error> {
        let params = kube::api::ListParams::default();
        if self.namespaces.is_empty() {
            let all: kube::Api<crate::api::AccessRequest> = kube::Api::all(self.client.clone());
            return Ok(all.list(&params).await?.items);
        }
        let mut requests = Vec::new();
        for namespace in &self.namespaces {
            let api: kube::Api<crate::api::AccessRequest> =
                kube::Api::namespaced(self.client.clone(), namespace);
            requests.extend(api.list(&params).await?.items);
        }
        Ok(requests)
    }

    /// The last session that worked for `key`, whatever it was built from: what a revoke uses
    /// when the connector can no longer build one (its external-ID Secret is gone).
    pub fn last_session(&self, key: &str) -> Option<Session> {
        self.runtimes.get(key)?.last_session()
    }

    /// The kept session of `key` if it was built for `fingerprint`.
    pub fn session(&self, key: &str, fingerprint: &str) -> Option<Session> {
        self.runtimes.get(key)?.session(fingerprint)
    }

    pub fn keep_session(&self, key: &str, fingerprint: String, session: Session) {
        self.runtimes.of(key).keep_session(fingerprint, session);
    }

    pub fn forget_session(&self, key: &str) {
        if let Some(runtime) = self.runtimes.get(key) {
            runtime.forget_session();
        }
    }

    fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
        ObjectRef::from_obj(object).to_string()
    }

    /// Counts one more failure of `object` and returns how many it has had in a row.
    pub fn record_failure<K: Resource<DynamicType = ()>>(&self, object: &K) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(Self::key(object)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// Forgets `object`'s failures after it reconciled cleanly.
    pub fn record_success<K: Resource<DynamicType = ()>>(&self, object: &K) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&Self::key(object));
    }

    /// Publishes an event about `object`. A failure to publish is logged, never fatal: events
    /// are a report, not part of the reconciliation.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.events.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(object = %object.name_any(), %error, reason, "could not publish event");
        }
    }
}
