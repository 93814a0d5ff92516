//! What `apply` keeps in its state directory (the grants' ownership ledger, the records of
//! permission sets): a map in one JSON file, rewritten whole through a temporary file and a
//! rename on every change, each value with a version a write must match, as the cluster's
//! ConfigMaps are written at the resourceVersion they were read at.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(bound(deserialize = "T: DeserializeOwned"))]
struct Content<T> {
    /// key → (version, value)
    #[serde(default = "BTreeMap::new")]
    entries: BTreeMap<String, (u64, T)>,
}

impl<T> Default for Content<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileError {
    /// The value was written since it was read (its key).
    Conflict(String),
    Unavailable {
        action: &'static str,
        message: String,
    },
}

pub struct VersionedFile<T> {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
    kept: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Clone> VersionedFile<T> {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: tokio::sync::Mutex::new(()),
            kept: PhantomData,
        }
    }

    /// Whether the file at `path`, if there is one, can be read as such a map: one that cannot
    /// is never overwritten or taken as empty (what it records would be lost).
    pub fn readable(path: &Path) -> Result<(), String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Content<T>>(&bytes)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn unavailable(&self, action: &'static str, error: impl std::fmt::Display) -> FileError {
        FileError::Unavailable {
            action,
            message: format!("{}: {error}", self.path.display()),
        }
    }

    async fn read(&self) -> Result<Content<T>, FileError> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.unavailable("read", e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Content::default()),
            Err(e) => Err(self.unavailable("read", e)),
        }
    }

    async fn write(&self, content: &Content<T>) -> Result<(), FileError> {
        let bytes =
            serde_json::to_vec_pretty(content).map_err(|e| self.unavailable("written", e))?;
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| self.unavailable("written", e))?;
        }
        let temporary = self.path.with_extension("json.tmp");
        tokio::fs::write(&temporary, bytes)
            .await
            .map_err(|e| self.unavailable("written", e))?;
        tokio::fs::rename(&temporary, &self.path)
            .await
            .map_err(|e| self.unavailable("written", e))
    }

    /// The value under `key` and the version a write must match.
    pub async fn get(&self, key: &str) -> Result<Option<(T, String)>, FileError> {
        let _guard = self.lock.lock().await;
        Ok(self
            .read()
            .await?
            .entries
            .remove(key)
            .map(|(version, value)| (value, version.to_string())))
    }

    /// Every value with its version.
    pub async fn all(&self) -> Result<Vec<(T, String)>, FileError> {
        let _guard = self.lock.lock().await;
        Ok(self
            .read()
            .await?
            .entries
            .into_values()
            .map(|(version, value)| (value, version.to_string()))
            .collect())
    }

    /// Writes `value` under `key`: created when `version` is `None`, else replaced at
    /// `version`. Returns the new version.
    pub async fn put(
        &self,
        key: &str,
        value: &T,
        version: Option<&str>,
    ) -> Result<String, FileError> {
        let _guard = self.lock.lock().await;
        let mut content = self.read().await?;
        let current = content.entries.get(key).map(|(v, _)| v.to_string());
        if current.as_deref() != version {
            return Err(FileError::Conflict(key.to_string()));
        }
        let next = current.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
        content
            .entries
            .insert(key.to_string(), (next, value.clone()));
        self.write(&content).await?;
        Ok(next.to_string())
    }

    /// Removes `key` if it is still at `version`; gone already is fine.
    pub async fn remove(&self, key: &str, version: &str) -> Result<(), FileError> {
        let _guard = self.lock.lock().await;
        let mut content = self.read().await?;
        match content.entries.get(key) {
            None => return Ok(()),
            Some((v, _)) if v.to_string() == version => {}
            Some(_) => return Err(FileError::Conflict(key.to_string())),
        }
        content.entries.remove(key);
        self.write(&content).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_only_at_the_version_read() {
        let dir = tempfile::tempdir().expect("dir");
        let file = VersionedFile::<String>::new(dir.path().join("kept.json"));
        assert_eq!(file.get("a").await, Ok(None));
        let first = file.put("a", &"one".into(), None).await.expect("create");
        assert_eq!(
            file.put("a", &"again".into(), None).await,
            Err(FileError::Conflict("a".into()))
        );
        let second = file
            .put("a", &"two".into(), Some(&first))
            .await
            .expect("update");
        assert!(file.put("a", &"stale".into(), Some(&first)).await.is_err());
        assert_eq!(
            file.get("a").await,
            Ok(Some(("two".into(), second.clone())))
        );
        assert_eq!(file.all().await.expect("all").len(), 1);
        assert!(
            file.remove("a", &first).await.is_err(),
            "not at the version read"
        );
        file.remove("a", &second).await.expect("remove");
        assert_eq!(file.get("a").await, Ok(None));
        std::fs::write(dir.path().join("broken.json"), "{").expect("write");
        assert!(VersionedFile::<String>::readable(&dir.path().join("broken.json")).is_err());
        assert!(VersionedFile::<String>::readable(&dir.path().join("kept.json")).is_ok());
    }
}
