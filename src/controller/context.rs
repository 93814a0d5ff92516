//! What every reconciliation shares: the client, the event recorder, metrics and the per-object
//! failure counts behind error backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::metrics::Metrics;
use crate::aws::{AwsBase, RateLimits, Session};
use crate::fence::Fence;
use crate::grant::execute::AccessLocks;
use crate::grant::observations::Observations;
use crate::sync::SyncOptions;
use crate::sync::cache::SyncCache;
use tokio::sync::Semaphore;

/// The field manager of every status the operator writes.
pub const FIELD_MANAGER: &str = "aws-access-operator";

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub aws: AwsSettings,
    failures: Mutex<HashMap<String, u32>>,
    /// Role chains by connector, so that credentials are reused (and refreshed by the SDK
    /// before they expire) rather than assumed again on every reconciliation.
    sessions: Mutex<HashMap<String, (String, Session)>>,
    /// Each connector's directory of names from its last sync.
    directories: Mutex<HashMap<String, Arc<SyncCache>>>,
    /// Each connector's permits for assignment operations in flight.
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Each connector's listings shared by its grants' re-checks.
    observations: Mutex<HashMap<String, Arc<Observations>>>,
    /// Whether this replica may write now (it holds the leader lease).
    pub fence: Fence,
    /// The operator's own namespace: the ownership ledger and the connectors' ConfigMaps.
    pub home_namespace: String,
    /// Namespaces whose connectors are served; empty for all.
    pub connector_namespaces: Vec<String>,
    /// The namespaces the operator watches; empty for all. With some, it may read only there.
    pub namespaces: Vec<String>,
    /// One lock per piece of access, so that two grants declaring the same access never
    /// work on it at once.
    pub access_locks: AccessLocks,
    /// Reconciliations running now, and whether new ones may start.
    running: tokio::sync::watch::Sender<usize>,
    stopping: std::sync::atomic::AtomicBool,
}

/// A running reconciliation; counted until dropped.
pub struct Running<'a>(&'a tokio::sync::watch::Sender<usize>);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

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
        settings: &super::Settings,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            aws: settings.aws.clone(),
            failures: Mutex::default(),
            sessions: Mutex::default(),
            directories: Mutex::default(),
            slots: Mutex::default(),
            observations: Mutex::default(),
            fence,
            home_namespace: settings.home_namespace.clone(),
            namespaces: settings.namespaces.clone(),
            connector_namespaces: settings.connector_namespaces.clone(),
            access_locks: AccessLocks::default(),
            running: tokio::sync::watch::channel(0).0,
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Counts a reconciliation in, unless the operator is stopping.
    pub fn start_reconcile(&self) -> Option<Running<'_>> {
        if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.running.send_modify(|n| *n += 1);
        Some(Running(&self.running))
    }

    /// No new reconciliation starts from now on.
    pub fn stop_starting(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Resolves once no reconciliation is running.
    pub async fn idle(&self) {
        let mut running = self.running.subscribe();
        let _ = running.wait_for(|n| *n == 0).await;
    }

    pub fn directory(&self, key: &str) -> Option<Arc<SyncCache>> {
        self.directories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub fn keep_directory(&self, key: &str, cache: Arc<SyncCache>) {
        self.directories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), cache);
    }

    pub fn slots(&self, key: &str, permits: usize) -> Arc<Semaphore> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone()
    }

    /// The listings `key`'s grants share, fresh for one drift-check interval.
    pub fn observations(&self, key: &str) -> Arc<Observations> {
        self.observations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Observations::new(self.aws.grant_check)))
            .clone()
    }

    /// Frees what was kept for a connector that is gone: its session, directory, permits and
    /// listings.
    pub fn forget_connector(&self, key: &str) {
        self.forget_session(key);
        self.directories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.observations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
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

    /// The last session that worked for `key`, whatever it was built from: what a revoke uses
    /// when the connector can no longer build one (its external-ID Secret is gone).
    pub fn last_session(&self, key: &str) -> Option<Session> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(key).map(|(_, s)| s.clone())
    }

    /// The cached session of `key` if it was built for `fingerprint`.
    pub fn session(&self, key: &str, fingerprint: &str) -> Option<Session> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(key)
            .filter(|(f, _)| f == fingerprint)
            .map(|(_, s)| s.clone())
    }

    pub fn keep_session(&self, key: &str, fingerprint: String, session: Session) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.insert(key.to_string(), (fingerprint, session));
    }

    pub fn forget_session(&self, key: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(key);
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
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(object = %object.name_any(), %error, reason, "could not publish event");
        }
    }
}
