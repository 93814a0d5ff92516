//! What the AWS edge speaks in: the items its list calls return, a page of them, and a piece
//! of access with every name resolved to an AWS id (what is granted, checked and revoked).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One page of a list call.
pub struct Page<T> {
    pub items: T,
    /// The token of the next page; `None` on the last one.
    pub next: Option<String>,
}

impl<T> Page<T> {
    pub fn new(items: T, next: Option<String>) -> Self {
        // Some services return an empty token on the last page.
        Self {
            items,
            next: next.filter(|t| !t.is_empty()),
        }
    }
}

/// Every item of a paged list call, page after page: `page(token)` fetches one.
pub async fn every_page<T, E, F, Fut>(mut page: F) -> Result<Vec<T>, E>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<Vec<T>>, E>>,
{
    let mut items = Vec::new();
    let mut token = None;
    loop {
        let next = page(token).await?;
        items.extend(next.items);
        token = next.next;
        if token.is_none() {
            return Ok(items);
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub name: String,
    pub email: String,
    pub status: String,
    pub arn: String,
    /// The root or organizational unit the account sits in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

/// The policies attached to an IAM user, group or role.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AttachedPolicies {
    /// Managed policies (AWS or customer managed) attached to it.
    pub managed: Vec<PolicyRef>,
    /// Names of its inline policies.
    pub inline: Vec<String>,
}

/// A managed policy, by name and ARN.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    pub name: String,
    pub arn: String,
}

/// What a sync found in one member account: whether it could enter, and the account's IAM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccount {
    pub account_id: String,
    /// `Entered`, `AccessDenied` (the role could not be assumed, or IAM could not be read with
    /// it), `Failed` (any other error), or `Skipped` (the account is not ACTIVE).
    pub outcome: String,
    /// Why, when not entered: names the role or the operation, and the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub iam_users: Vec<IamUser>,
    pub iam_groups: Vec<IamGroup>,
    pub iam_roles: Vec<IamRole>,
}

/// The outcomes of a member account's sync.
pub mod member_outcome {
    pub const ENTERED: &str = "Entered";
    pub const ACCESS_DENIED: &str = "AccessDenied";
    pub const FAILED: &str = "Failed";
    pub const SKIPPED: &str = "Skipped";
}

/// The root of the organization's tree.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationRoot {
    pub id: String,
    pub name: String,
    pub arn: String,
}

/// An organizational unit, under the root or under another organizational unit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationalUnit {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub parent_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IamUser {
    /// Shared with the member lists of its groups.
    pub name: Arc<str>,
    pub id: String,
    pub arn: String,
    pub path: String,
    /// Names of the IAM groups the user belongs to (one copy of each name per sync).
    pub groups: Vec<Arc<str>>,
    /// With `sync.accessKeys` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_keys: Option<Vec<AccessKey>>,
    /// With `sync.policies` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<AttachedPolicies>,
    /// The member account it is in (member accounts' IAM only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    pub id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_service: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IamGroup {
    pub name: String,
    pub id: String,
    pub arn: String,
    pub path: String,
    /// Names of the member users, shared with the users' own.
    pub members: Vec<Arc<str>>,
    /// With `sync.policies` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<AttachedPolicies>,
    /// The member account it is in (member accounts' IAM only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IamRole {
    pub name: String,
    pub id: String,
    pub arn: String,
    pub path: String,
    /// Who may assume the role, from its trust policy: `AWS:<arn>`, `Service:<name>`,
    /// `Federated:<provider>`, or `*`.
    pub trusted_principals: Vec<String>,
    /// With `sync.policies` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<AttachedPolicies>,
    /// The member account it is in (member accounts' IAM only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SsoUser {
    /// Shared with the assignments and group memberships that name the user (a sync holds
    /// one copy of each id: see `sync::intern`).
    pub id: Arc<str>,
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The last successful sign-in CloudTrail recorded (with `sync.lastSignIn` only; none in
    /// its 90 days of history leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sign_in_at: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SsoGroup {
    pub id: String,
    pub display_name: String,
    /// Ids of the member users, shared with the users' own.
    pub members: Vec<Arc<str>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PermissionSet {
    pub arn: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<String>,
    /// Accounts where at least one assignment uses this permission set.
    pub accounts: Vec<String>,
    /// What it carries (with `sync.policies` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<PermissionSetContents>,
    /// The PermissionSet object (`namespace/name`) that declares it, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_by: Option<String>,
}

/// The policies a permission set carries into every account it is assigned on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PermissionSetContents {
    pub aws_managed_policies: Vec<PolicyRef>,
    /// Policies by name and path, created in each account the set is assigned on.
    pub customer_managed_policies: Vec<CustomerPolicyRef>,
    /// The inline policy document, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<PermissionsBoundary>,
}

/// A customer managed policy, named as a permission set names it: by name and path.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct CustomerPolicyRef {
    pub name: String,
    pub path: String,
}

/// A permission set's permissions boundary: an AWS managed policy, or a customer managed one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PermissionsBoundary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_policy_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_managed_policy: Option<CustomerPolicyRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub account_id: Arc<str>,
    pub permission_set_arn: Arc<str>,
    /// `USER` or `GROUP`.
    pub principal_type: Arc<str>,
    pub principal_id: Arc<str>,
}

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
    /// The access a listed assignment of the Identity Center instance `instance_arn` is.
    pub fn of_assignment(instance_arn: &str, assignment: &Assignment) -> Self {
        Self::Assignment {
            instance_arn: instance_arn.to_string(),
            account_id: assignment.account_id.to_string(),
            permission_set_arn: assignment.permission_set_arn.to_string(),
            principal_type: assignment.principal_type.to_string(),
            principal_id: assignment.principal_id.to_string(),
        }
    }

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
            Self::SsoMembership {
                group_id, user_id, ..
            } => {
                write!(f, "USER {user_id} in Identity Center group {group_id}")
            }
            Self::IamMembership { group, user } => {
                write!(f, "IAM user {user} in IAM group {group}")
            }
        }
    }
}
