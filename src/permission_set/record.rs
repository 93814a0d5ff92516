//! The operator's record of a permission set it manages: which object declares it, whether the
//! operator created or adopted it, its ARN, and the work under way (a create, a provisioning, a
//! delete). Kept where tenants cannot write (the operator's namespace, or `apply`'s state
//! directory); what may be deleted in AWS is decided from here, never from the object's status.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::fingerprint::short_hash;
use crate::grant::ledger::Origin;
pub use crate::records::RecordError;
use crate::records::{FileRecords, Record, Records};

/// The object that declares the set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Declarer {
    pub uid: String,
    /// `namespace/name`, for people.
    pub object: String,
}

/// A provisioning under way: each account, with the request id once AWS answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provisioning {
    pub accounts: BTreeMap<String, Option<String>>,
    pub started_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetRecord {
    /// The connector, `namespace/name`.
    pub connector: String,
    /// The set's name in Identity Center (unique in the instance).
    pub name: String,
    pub declarer: Declarer,
    /// Created or adopted; `None` until the set exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// Tagged on the set when the operator creates it: a set found by name after a restart is
    /// this record's only if it carries this token.
    pub create_token: String,
    /// When a CreatePermissionSet was started and not yet seen to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating: Option<String>,
    /// The object's generation AWS was last made to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_generation: Option<i64>,
    /// Changes were written that the accounts using the set have not been given yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provision_due: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<Provisioning>,
    /// Accounts whose last provisioning failed: provisioned again at the next check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_accounts: Vec<String>,
    /// When a DeletePermissionSet was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleting: Option<String>,
    pub updated_at: String,
}

/// The key of a set's record: one per (connector, name).
pub fn key(connector: &str, name: &str) -> String {
    let text = serde_json::to_string(&(connector, name)).unwrap_or_default();
    short_hash(text.as_bytes())
}

impl SetRecord {
    pub fn new(connector: &str, name: &str, declarer: Declarer, token: String, now: &str) -> Self {
        Self {
            connector: connector.to_string(),
            name: name.to_string(),
            declarer,
            origin: None,
            arn: None,
            create_token: token,
            creating: None,
            converged_generation: None,
            provision_due: false,
            provisioning: None,
            retry_accounts: Vec::new(),
            deleting: None,
            updated_at: now.to_string(),
        }
    }
}

impl Record for SetRecord {
    const WHAT: &'static str = "permission set";
    const FILE: &'static str = "permission-sets.json";
    const CONFIG_MAP_PREFIX: &'static str = "aws-access-permission-set-";
    const LABEL: &'static str = "awsaccess.io/permission-set-record";

    fn key(&self) -> String {
        key(&self.connector, &self.name)
    }
}

/// Where the records of sets live.
pub trait SetRecords: Records<SetRecord> {}

impl<T: Records<SetRecord>> SetRecords for T {}

/// The records of `apply`, in its state directory.
pub type FileSetRecords = FileRecords<SetRecord>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_depends_on_connector_and_name_only() {
        assert_eq!(key("aws/org", "Data"), key("aws/org", "Data"));
        assert_ne!(key("aws/org", "Data"), key("aws/other", "Data"));
        assert_ne!(key("aws/org", "Data"), key("aws/org", "Data2"));
        let record = SetRecord::new(
            "aws/org",
            "Data",
            Declarer {
                uid: "u".into(),
                object: "aws/data".into(),
            },
            "t".into(),
            "2026-01-01T00:00:00Z",
        );
        let text = serde_json::to_string(&record).expect("json");
        assert!(
            !text.contains("provisionDue") && !text.contains("deleting"),
            "{text}"
        );
        let back: SetRecord = serde_json::from_str(&text).expect("back");
        assert_eq!(back, record);
    }

    #[tokio::test]
    async fn the_file_store_writes_only_at_the_version_read() {
        let dir = tempfile::tempdir().expect("dir");
        let store = FileSetRecords::new(dir.path());
        let record = SetRecord::new(
            "aws/org",
            "Data",
            Declarer {
                uid: "u".into(),
                object: "aws/data".into(),
            },
            "t".into(),
            "2026-01-01T00:00:00Z",
        );
        assert!(store.load(&record.key()).await.expect("load").is_none());
        let first = store.save(&record, None).await.expect("create");
        assert!(matches!(
            store.save(&record, None).await,
            Err(RecordError::Conflict { .. })
        ));
        let second = store.save(&record, Some(&first)).await.expect("update");
        assert!(matches!(
            store.save(&record, Some(&first)).await,
            Err(RecordError::Conflict { .. })
        ));
        let (loaded, version) = store
            .load(&record.key())
            .await
            .expect("load")
            .expect("some");
        assert_eq!((loaded, version), (record.clone(), second.clone()));
        store.remove(&record, &second).await.expect("remove");
        assert!(store.load(&record.key()).await.expect("load").is_none());
    }
}
