//! The operator's records of what it manages in AWS beyond grants (permission sets, users,
//! groups): which object declares each, whether the operator created or adopted it, and the
//! work under way. Kept where tenants cannot write (the operator's namespace, or `apply`'s
//! state directory), each written only at the version it was read at; what may be deleted in
//! AWS is decided from here, never from an object's status.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state_file::{FileError, VersionedFile};

/// One kind of record: how it is keyed and where it is kept.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + Sync {
    /// What the records are of, for messages (`permission set`).
    const WHAT: &'static str;
    /// The file of `apply`'s state directory that holds them.
    const FILE: &'static str;
    /// The prefix of their ConfigMaps' names, and the label that lists them.
    const CONFIG_MAP_PREFIX: &'static str;
    const LABEL: &'static str;

    fn key(&self) -> String;
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum RecordError {
    /// Someone else wrote the record since it was read: read again and decide again.
    #[error("the {what} record {key} changed since it was read")]
    Conflict { what: &'static str, key: String },
    #[error("the {what} record cannot be {action}: {message}")]
    Unavailable {
        what: &'static str,
        action: &'static str,
        message: String,
    },
}

/// Why a shell that writes through records (a permission set's, an identity's) stopped: AWS
/// refused, the record could not be read or written, or this replica may not write now.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Fenced(#[from] crate::fence::Fenced),
}

/// Where the records live. Writes are compare-and-swap on the version read.
pub trait Records<R: Record>: Sync {
    fn load(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(R, String)>, RecordError>> + Send;

    /// Writes `record`; `version` is `None` to create it. Returns the new version.
    fn save(
        &self,
        record: &R,
        version: Option<&str>,
    ) -> impl Future<Output = Result<String, RecordError>> + Send;

    fn remove(
        &self,
        record: &R,
        version: &str,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;
}

/// The records of `apply`: one JSON file in its state directory beside the ledger
/// (`crate::state_file`).
pub struct FileRecords<R> {
    file: VersionedFile<R>,
}

fn file_error<R: Record>(error: FileError) -> RecordError {
    match error {
        FileError::Conflict(key) => RecordError::Conflict { what: R::WHAT, key },
        FileError::Unavailable { action, message } => RecordError::Unavailable {
            what: R::WHAT,
            action,
            message,
        },
    }
}

/// Whether the file of `R`'s records in `dir`, if there is one, can be read: one that cannot is
/// never overwritten (what it records would be lost).
pub fn readable<R: Record>(dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join(R::FILE);
    VersionedFile::<R>::readable(&path).map_err(|e| format!("{}: {e}", path.display()))
}

impl<R: Record> FileRecords<R> {
    pub fn new(dir: &std::path::Path) -> Self {
        Self {
            file: VersionedFile::new(dir.join(R::FILE)),
        }
    }

    /// Every record.
    pub async fn all(&self) -> Result<Vec<R>, RecordError> {
        let all = self.file.all().await.map_err(file_error::<R>)?;
        Ok(all.into_iter().map(|(record, _)| record).collect())
    }
}

impl<R: Record> Records<R> for FileRecords<R> {
    async fn load(&self, key: &str) -> Result<Option<(R, String)>, RecordError> {
        self.file.get(key).await.map_err(file_error::<R>)
    }

    async fn save(&self, record: &R, version: Option<&str>) -> Result<String, RecordError> {
        self.file
            .put(&record.key(), record, version)
            .await
            .map_err(file_error::<R>)
    }

    async fn remove(&self, record: &R, version: &str) -> Result<(), RecordError> {
        self.file
            .remove(&record.key(), version)
            .await
            .map_err(file_error::<R>)
    }
}
