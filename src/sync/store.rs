//! Where sync state and cache live between runs: files in a directory for the CLI, ConfigMaps
//! owned by the connector in the operator. Never credentials.

use std::future::Future;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("{action} {key}: {message}")]
pub struct StoreError {
    pub action: &'static str,
    pub key: String,
    pub message: String,
}

/// A small key-value store for sync state and cache.
pub trait StateStore: Send + Sync {
    fn load(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    fn save(&self, key: &str, value: &[u8]) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Whether what is saved is kept for a later run: when not, a sync journals nothing.
    fn keeps_state(&self) -> bool {
        true
    }
}

/// Files `<dir>/<key>.json`, written atomically (a crash leaves the old or the new file).
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }
}

fn error(action: &'static str, key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        action,
        key: key.to_string(),
        message: e.to_string(),
    }
}

impl StateStore for DirStore {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error("read", key, e)),
        }
    }

    async fn save(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| error("create the directory for", key, e))?;
        let temporary = self.dir.join(format!(".{key}.json.tmp"));
        tokio::fs::write(&temporary, value)
            .await
            .map_err(|e| error("write", key, e))?;
        tokio::fs::rename(&temporary, self.path(key))
            .await
            .map_err(|e| error("replace", key, e))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(error("delete", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dir_store_round_trips_and_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path().join("state"));
        assert_eq!(store.load("state").await.expect("load"), None);
        store.save("state", b"{\"a\":1}").await.expect("save");
        assert_eq!(
            store.load("state").await.expect("load").as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        store.delete("state").await.expect("delete");
        store.delete("state").await.expect("deleting twice is fine");
        assert_eq!(store.load("state").await.expect("load"), None);
    }
}

/// Nothing kept: a one-shot sync (no --state-dir) that nothing resumes. Its page states and
/// cache would only be copies held in memory until the process ends.
#[derive(Default)]
pub struct NoStore;

impl StateStore for NoStore {
    async fn load(&self, _key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    async fn save(&self, _key: &str, _value: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn delete(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn keeps_state(&self) -> bool {
        false
    }
}
