//! What the operator keeps for each connector between reconciliations: its role chain (reused,
//! refreshed by the SDK before it expires), the names its last sync saw, the last sync it ran,
//! its permits for assignment operations in flight, and the listings its grants' re-checks
//! share. One object per connector, freed with the connector.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::api::connector::SyncSummary;
use crate::aws::Session;
use crate::grant::observations::Observations;
use crate::sync::cache::SyncCache;

/// Assignment operations in flight per connector: AWS allows 15 outstanding, and others
/// share them.
pub const ASSIGNMENTS_IN_FLIGHT: usize = 10;

/// One connector's kept state.
pub struct ConnectorRuntime {
    /// The role chain, with the fingerprint of what it was built from.
    session: Mutex<Option<(String, Session)>>,
    directory: Mutex<Option<Arc<SyncCache>>>,
    /// The last sync this replica ran: a watch's copy of the connector with an older one has
    /// not caught up with the status written since.
    last_sync: Mutex<Option<SyncSummary>>,
    pub slots: Arc<Semaphore>,
    pub observations: Arc<Observations>,
}

impl ConnectorRuntime {
    fn new(recheck: Duration) -> Self {
        Self {
            session: Mutex::default(),
            directory: Mutex::default(),
            last_sync: Mutex::default(),
            slots: Arc::new(Semaphore::new(ASSIGNMENTS_IN_FLIGHT)),
            observations: Arc::new(Observations::new(recheck)),
        }
    }

    /// The kept session if it was built for `fingerprint`.
    pub fn session(&self, fingerprint: &str) -> Option<Session> {
        let kept = self.session.lock().unwrap_or_else(|p| p.into_inner());
        kept.as_ref()
            .filter(|(f, _)| f == fingerprint)
            .map(|(_, s)| s.clone())
    }

    /// The last session that worked, whatever it was built from.
    pub fn last_session(&self) -> Option<Session> {
        let kept = self.session.lock().unwrap_or_else(|p| p.into_inner());
        kept.as_ref().map(|(_, s)| s.clone())
    }

    pub fn keep_session(&self, fingerprint: String, session: Session) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some((fingerprint, session));
    }

    pub fn forget_session(&self) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn directory(&self) -> Option<Arc<SyncCache>> {
        self.directory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn keep_directory(&self, cache: Arc<SyncCache>) {
        *self.directory.lock().unwrap_or_else(|p| p.into_inner()) = Some(cache);
    }

    /// The last sync this replica ran.
    pub fn last_sync(&self) -> Option<SyncSummary> {
        self.last_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn keep_last_sync(&self, summary: SyncSummary) {
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = Some(summary);
    }
}

/// Every connector's kept state, by connector key.
pub struct Runtimes {
    recheck: Duration,
    by_connector: Mutex<HashMap<String, Arc<ConnectorRuntime>>>,
}

impl Runtimes {
    /// Listings younger than `recheck` (the drift-check interval) answer re-checks.
    pub fn new(recheck: Duration) -> Self {
        Self {
            recheck,
            by_connector: Mutex::default(),
        }
    }

    /// The connector's kept state, made empty the first time.
    pub fn of(&self, key: &str) -> Arc<ConnectorRuntime> {
        self.by_connector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(ConnectorRuntime::new(self.recheck)))
            .clone()
    }

    /// The connector's kept state, if any.
    pub fn get(&self, key: &str) -> Option<Arc<ConnectorRuntime>> {
        self.by_connector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Frees a connector's kept state (the connector is gone).
    pub fn forget(&self, key: &str) {
        self.by_connector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// How many connectors have kept state.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_connector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_per_connector_freed_with_it() {
        let runtimes = Runtimes::new(Duration::from_secs(60));
        let a = runtimes.of("team/org");
        assert!(Arc::ptr_eq(&a, &runtimes.of("team/org")), "kept");
        assert!(runtimes.get("team/other").is_none(), "not made by looking");
        let _ = runtimes.of("team/other");
        assert_eq!(runtimes.len(), 2);
        a.keep_directory(Arc::new(SyncCache::default()));
        assert!(runtimes.of("team/org").directory().is_some());
        runtimes.forget("team/org");
        assert_eq!(runtimes.len(), 1);
        assert!(
            runtimes.of("team/org").directory().is_none(),
            "a connector made again starts empty"
        );
    }
}
