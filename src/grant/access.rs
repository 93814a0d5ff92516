//! A piece of access with every name resolved to an AWS id: what is granted, checked and
//! revoked.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The concrete access an AccessGrant stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Access {
    /// An Identity Center account assignment.
    #[serde(rename_all = "camelCase")]
    Assignment {
        instance_arn: String,
        account_id: String,
        permission_set_arn: String,
        /// `USER` or `GROUP`.
        principal_type: String,
        principal_id: String,
    },
    /// A user's membership of an Identity Center group.
    #[serde(rename_all = "camelCase")]
    SsoMembership {
        identity_store_id: String,
        group_id: String,
        user_id: String,
    },
    /// An IAM user's membership of an IAM group.
    #[serde(rename_all = "camelCase")]
    IamMembership { group: String, user: String },
}

impl Access {
    /// Whether this is an account assignment (the operations with a shared in-flight limit).
    pub fn is_assignment(&self) -> bool {
        matches!(self, Self::Assignment { .. })
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Assignment {
                account_id,
                permission_set_arn,
                principal_type,
                principal_id,
                ..
            } => write!(
                f,
                "{principal_type} {principal_id} on account {account_id} with {permission_set_arn}"
            ),
            Self::SsoMembership { group_id, user_id, .. } => {
                write!(f, "USER {user_id} in Identity Center group {group_id}")
            }
            Self::IamMembership { group, user } => write!(f, "IAM user {user} in IAM group {group}"),
        }
    }
}
