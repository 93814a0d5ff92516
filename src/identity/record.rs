//! The operator's record of a user or group it manages: which object declares it, whether the
//! operator created or adopted it, its id, and a create under way. Deleting in AWS is decided
//! from here (only what the record says the operator created), never from an object's status.

use serde::{Deserialize, Serialize};

use crate::fingerprint::short_hash;
use crate::grant::ledger::Origin;
use crate::permission_set::record::Declarer;
use crate::records::{FileRecords, Record};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdentityKind {
    IdentityCenterUser,
    IdentityCenterGroup,
    IamUser,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdentityCenterUser => "IdentityCenterUser",
            Self::IdentityCenterGroup => "IdentityCenterGroup",
            Self::IamUser => "IamUser",
        }
    }

    /// How messages name one in AWS.
    pub fn noun(self) -> &'static str {
        match self {
            Self::IdentityCenterUser => "Identity Center user",
            Self::IdentityCenterGroup => "Identity Center group",
            Self::IamUser => "IAM user",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityRecord {
    pub kind: IdentityKind,
    /// The connector, `namespace/name`.
    pub connector: String,
    /// The IAM user's account, when not the connector's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The user name, or the group's display name when last converged.
    pub name: String,
    pub declarer: Declarer,
    /// Created or adopted; `None` until it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// The id AWS gave it (UserId, GroupId, or the IAM user's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The IAM user's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// What marks the one this record creates: tagged on an IAM user; for the Identity Store,
    /// which has no tags, the fingerprint of the attributes the create writes.
    pub create_token: String,
    /// When a create was started and not yet seen to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating: Option<String>,
    /// The object's generation AWS was last made to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_generation: Option<i64>,
    pub updated_at: String,
}

/// The key of a record: users by name (which never changes), groups by the object that
/// declares them (their display name may change).
pub fn key(
    kind: IdentityKind,
    connector: &str,
    account: Option<&str>,
    name_or_uid: &str,
) -> String {
    let text = serde_json::to_string(&(kind, connector, account, name_or_uid)).unwrap_or_default();
    short_hash(text.as_bytes())
}

impl Record for IdentityRecord {
    const WHAT: &'static str = "identity";
    const FILE: &'static str = "identities.json";
    const CONFIG_MAP_PREFIX: &'static str = "aws-access-identity-";
    const LABEL: &'static str = "awsaccess.io/identity-record";

    fn key(&self) -> String {
        let name = match self.kind {
            IdentityKind::IdentityCenterGroup => &self.declarer.uid,
            _ => &self.name,
        };
        key(self.kind, &self.connector, self.account.as_deref(), name)
    }
}

/// The records of `apply`, in its state directory.
pub type FileIdentityRecords = FileRecords<IdentityRecord>;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: IdentityKind, name: &str, uid: &str) -> IdentityRecord {
        IdentityRecord {
            kind,
            connector: "aws/org".into(),
            account: None,
            name: name.into(),
            declarer: Declarer {
                uid: uid.into(),
                object: "aws/x".into(),
            },
            origin: None,
            id: None,
            arn: None,
            create_token: "t".into(),
            creating: None,
            converged_generation: None,
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn users_are_keyed_by_name_and_groups_by_their_object() {
        let jane = record(IdentityKind::IdentityCenterUser, "jane", "u1");
        assert_eq!(
            jane.key(),
            record(IdentityKind::IdentityCenterUser, "jane", "u2").key()
        );
        assert_ne!(
            jane.key(),
            record(IdentityKind::IamUser, "jane", "u1").key()
        );
        let group = record(IdentityKind::IdentityCenterGroup, "Data", "g1");
        assert_eq!(
            group.key(),
            record(IdentityKind::IdentityCenterGroup, "Renamed", "g1").key()
        );
        assert_ne!(
            group.key(),
            record(IdentityKind::IdentityCenterGroup, "Data", "g2").key()
        );
        let text = serde_json::to_string(&jane).expect("json");
        assert_eq!(
            serde_json::from_str::<IdentityRecord>(&text).expect("back"),
            jane
        );
    }
}
