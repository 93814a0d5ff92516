//! The ownership ledger: the operator's own durable record of every piece of access it
//! manages, kept where tenants cannot write (the operator's namespace in a cluster, the
//! `--state-dir` of `apply`).
//!
//! An entry is keyed by the access itself (connector, kind, principal id, target). It lists the
//! grants that declare the access and whether the operator created it or found it. Before every
//! AWS write the entry records the intent (and, once AWS answers, its request id); after AWS
//! confirms, the intent is cleared. A restart resumes what the ledger says is under way
//! instead of deciding again from what AWS happens to show. What to revoke comes only from
//! here, never from a grant's status.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use super::access::Access;
use crate::fingerprint::short_hash;
use crate::state_file::{FileError, VersionedFile};

/// Whether the operator made the access, or found it in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// The operator created it (or is creating it): revoked when its last grant goes.
    Created,
    /// It existed before any grant asked for it: left in place unless a grant says
    /// `deletionPolicy: Revoke`.
    Adopted,
}

/// What kind of object holds a piece of access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HolderKind {
    #[default]
    AccessGrant,
    AccessRequest,
}

impl HolderKind {
    pub fn is_grant(&self) -> bool {
        *self == Self::AccessGrant
    }
}

/// A grant (or an approved AccessRequest) that declares the access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// `namespace/name`, for people.
    pub grant: String,
    /// An AccessGrant unless said otherwise.
    #[serde(default, skip_serializing_if = "HolderKind::is_grant")]
    pub kind: HolderKind,
    /// When the grant started holding the access (RFC 3339): a `duration` runs from here. Kept
    /// here, not in the grant's status, which its owner can write.
    #[serde(default)]
    pub since: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationKind {
    Grant,
    Revoke,
}

/// An AWS write the operator started and has not seen finish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub kind: OperationKind,
    /// The AWS request id of an account assignment operation, once AWS answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub started_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// The connector the access is reached through, `namespace/name`.
    pub connector: String,
    pub access: Access,
    pub origin: Origin,
    /// The grants that declare it, by uid (by `namespace/name` for `apply`, which has no uids).
    pub holders: BTreeMap<String, Holder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    pub updated_at: String,
}

impl LedgerEntry {
    pub fn new(connector: &str, access: &Access, origin: Origin) -> Self {
        Self {
            connector: connector.to_string(),
            access: access.clone(),
            origin,
            holders: BTreeMap::new(),
            operation: None,
            updated_at: String::new(),
        }
    }

    pub fn key(&self) -> String {
        key(&self.connector, &self.access)
    }

    /// The other grants that declare the access, for people.
    pub fn others(&self, holder: &str) -> Vec<String> {
        self.holders
            .iter()
            .filter(|(uid, _)| uid.as_str() != holder)
            .map(|(_, h)| h.grant.clone())
            .collect()
    }
}

/// The stable key of a piece of access reached through a connector: short enough for an
/// object name, the same in every process.
pub fn key(connector: &str, access: &Access) -> String {
    let text = serde_json::to_string(&(connector, access)).unwrap_or_default();
    short_hash(text.as_bytes())
}

/// An entry as stored, with the version a write must match.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub entry: LedgerEntry,
    pub version: String,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum LedgerError {
    /// Someone else wrote the entry since it was read: read again and decide again.
    #[error("the ledger entry {0} changed since it was read")]
    Conflict(String),
    #[error("the ledger cannot be {action}: {message}")]
    Unavailable {
        action: &'static str,
        message: String,
    },
}

/// Where the ledger lives. Writes are compare-and-swap on the version read.
pub trait LedgerStore: Sync {
    fn load(
        &self,
        connector: &str,
        access: &Access,
    ) -> impl Future<Output = Result<Option<Stored>, LedgerError>> + Send;

    /// Every entry a grant (by uid) is a holder of, through `connector`.
    fn held_by(
        &self,
        connector: &str,
        holder: &str,
    ) -> impl Future<Output = Result<Vec<Stored>, LedgerError>> + Send;

    /// Every entry of a connector.
    fn of_connector(
        &self,
        connector: &str,
    ) -> impl Future<Output = Result<Vec<Stored>, LedgerError>> + Send;

    /// Writes `entry`; `version` is `None` to create it. Returns the new version.
    fn save(
        &self,
        entry: &LedgerEntry,
        version: Option<&str>,
    ) -> impl Future<Output = Result<String, LedgerError>> + Send;

    fn remove(
        &self,
        entry: &LedgerEntry,
        version: &str,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// The ledger of `apply`: one JSON file in its state directory (`crate::state_file`).
pub struct FileLedger {
    file: VersionedFile<LedgerEntry>,
}

fn file_error(error: FileError) -> LedgerError {
    match error {
        FileError::Conflict(key) => LedgerError::Conflict(key),
        FileError::Unavailable { action, message } => LedgerError::Unavailable { action, message },
    }
}

impl FileLedger {
    pub const FILE: &'static str = "ledger.json";

    pub fn new(dir: &std::path::Path) -> Self {
        Self {
            file: VersionedFile::new(dir.join(Self::FILE)),
        }
    }

    /// Whether the ledger file in `dir`, if there is one, can be read: a ledger that cannot be
    /// read is never overwritten or taken as empty (what it records would be lost).
    pub fn check(dir: &std::path::Path) -> Result<(), String> {
        let path = dir.join(Self::FILE);
        VersionedFile::<LedgerEntry>::readable(&path).map_err(|e| {
            format!(
                "{}: not a ledger this version can read ({e}); it records which access apply created, so it is left as it is: restore it, or move it away to start a new ledger (access it recorded would then count as not created here)",
                path.display()
            )
        })
    }

    async fn entries(
        &self,
        keep: impl Fn(&LedgerEntry) -> bool,
    ) -> Result<Vec<Stored>, LedgerError> {
        Ok(self
            .file
            .all()
            .await
            .map_err(file_error)?
            .into_iter()
            .filter(|(entry, _)| keep(entry))
            .map(|(entry, version)| Stored { entry, version })
            .collect())
    }
}

impl LedgerStore for FileLedger {
    async fn load(&self, connector: &str, access: &Access) -> Result<Option<Stored>, LedgerError> {
        Ok(self
            .file
            .get(&key(connector, access))
            .await
            .map_err(file_error)?
            .map(|(entry, version)| Stored { entry, version }))
    }

    async fn held_by(&self, connector: &str, holder: &str) -> Result<Vec<Stored>, LedgerError> {
        self.entries(|e| e.connector == connector && e.holders.contains_key(holder))
            .await
    }

    async fn of_connector(&self, connector: &str) -> Result<Vec<Stored>, LedgerError> {
        self.entries(|e| e.connector == connector).await
    }

    async fn save(
        &self,
        entry: &LedgerEntry,
        version: Option<&str>,
    ) -> Result<String, LedgerError> {
        self.file
            .put(&entry.key(), entry, version)
            .await
            .map_err(file_error)
    }

    async fn remove(&self, entry: &LedgerEntry, version: &str) -> Result<(), LedgerError> {
        self.file
            .remove(&entry.key(), version)
            .await
            .map_err(file_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(user: &str) -> Access {
        Access::IamMembership {
            group: "deployers".into(),
            user: user.into(),
        }
    }

    #[test]
    fn keys_depend_on_the_connector_and_the_access_only() {
        let a = key("aws/org", &membership("carol"));
        assert_eq!(a, key("aws/org", &membership("carol")));
        assert_ne!(a, key("aws/other", &membership("carol")));
        assert_ne!(a, key("aws/org", &membership("dave")));
        assert_eq!(a.len(), 16);
    }

    #[tokio::test]
    async fn the_file_ledger_is_compare_and_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = FileLedger::new(dir.path());
        let mut entry = LedgerEntry::new("aws/org", &membership("carol"), Origin::Created);
        entry.holders.insert(
            "uid-1".into(),
            Holder {
                grant: "aws/carol".into(),
                since: "2026-01-01T00:00:00Z".into(),
                kind: HolderKind::AccessGrant,
            },
        );
        let v1 = ledger.save(&entry, None).await.expect("create");
        assert!(matches!(
            ledger.save(&entry, None).await,
            Err(LedgerError::Conflict(_))
        ));
        let v2 = ledger.save(&entry, Some(&v1)).await.expect("update");
        assert!(matches!(
            ledger.save(&entry, Some(&v1)).await,
            Err(LedgerError::Conflict(_))
        ));
        let again = FileLedger::new(dir.path());
        let held = again.held_by("aws/org", "uid-1").await.expect("held");
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].entry, entry);
        assert!(
            again
                .held_by("aws/org", "uid-2")
                .await
                .expect("none")
                .is_empty()
        );
        assert!(matches!(
            again.remove(&entry, &v1).await,
            Err(LedgerError::Conflict(_))
        ));
        again.remove(&entry, &v2).await.expect("remove");
        assert!(
            again
                .of_connector("aws/org")
                .await
                .expect("list")
                .is_empty()
        );
    }
}
