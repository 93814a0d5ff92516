//! `AccessGrant`: one piece of access, declared in git — an SSO user or group gets a permission
//! set on an account, or a user joins an Identity Center group or an IAM group.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::rules;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "awsaccess.io",
    version = "v1alpha1",
    kind = "AccessGrant",
    namespaced,
    status = "Box<AccessGrantStatus>",
    shortname = "agrant",
    category = "awsaccess",
    doc = "One piece of AWS access, declared in git and made real by the operator.",
    printcolumn = r#"{"name":"Principal","type":"string","jsonPath":".spec.principal.name"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target.kind"}"#,
    printcolumn = r#"{"name":"Access","type":"string","jsonPath":".spec.target.permissionSet"}"#,
    printcolumn = r#"{"name":"Group","type":"string","priority":1,"jsonPath":".spec.target.group"}"#,
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.target.accountId"}"#,
    printcolumn = r#"{"name":"OU","type":"string","priority":1,"jsonPath":".spec.target.organizationalUnit"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::permission_set_principal_rule(),
    validation = rules::sso_membership_principal_rule(),
    validation = rules::iam_membership_principal_rule(),
    validation = kube::core::Rule::new("!(has(self.duration) && has(self.expiresAt))").message(rules::ONE_EXPIRY)
)]
pub struct AccessGrantSpec {
    /// The AwsConnector that reaches the organization.
    pub connector_ref: ConnectorRef,
    /// Who receives the access.
    pub principal: Principal,
    /// What access they receive.
    pub target: Target,
    /// Lifetime from when the access is granted, e.g. `8h`; revoked when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration_rule("spec.duration"))]
    pub duration: Option<String>,
    /// Absolute expiry (RFC 3339); revoked when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,
    /// What deleting this AccessGrant does in AWS. When unset, access the operator created is
    /// revoked and access it adopted is left in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConnectorRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Defaults to the AccessGrant's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl ConnectorRef {
    /// The connector's `namespace/name`, for an object in `namespace` naming it.
    pub fn key(&self, namespace: Option<&str>) -> String {
        format!(
            "{}/{}",
            self.namespace.as_deref().or(namespace).unwrap_or_default(),
            self.name
        )
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new("has(self.name) ? !has(self.id) : has(self.id)").message(rules::PRINCIPAL_NAME_OR_ID))]
pub struct Principal {
    pub kind: PrincipalKind,
    /// UserName (SsoUser), DisplayName (SsoGroup) or IAM user name (IamUser).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
    /// The principal's id, instead of its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub id: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    SsoUser,
    SsoGroup,
    IamUser,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("self.kind != 'PermissionSet' || (has(self.permissionSet) && (has(self.accountId) || has(self.organizationalUnit)))").message(rules::PERMISSION_SET_FIELDS),
    validation = kube::core::Rule::new("!(has(self.accountId) && has(self.organizationalUnit))").message(rules::ACCOUNT_OR_UNIT),
    validation = kube::core::Rule::new("self.kind != 'PermissionSet' || !has(self.group)").message(rules::PERMISSION_SET_NO_GROUP),
    validation = kube::core::Rule::new("self.kind == 'PermissionSet' || has(self.group)").message(rules::MEMBERSHIP_NEEDS_GROUP),
    validation = kube::core::Rule::new("self.kind == 'PermissionSet' || !(has(self.permissionSet) || has(self.accountId) || has(self.organizationalUnit))").message(rules::MEMBERSHIP_NO_ACCOUNT)
)]
pub struct Target {
    pub kind: TargetKind,
    /// Permission set name or ARN (kind PermissionSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = kube::core::Rule::new(format!("self.matches('{}') || self.matches('{}')", rules::PERMISSION_SET_NAME, rules::PERMISSION_SET_ARN)).message(kube::core::Message::Message(rules::permission_set_message("spec.target.permissionSet"))))]
    pub permission_set: Option<String>,
    /// The 12-digit account (kind PermissionSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 12))]
    #[x_kube(validation = rules::matches(rules::ACCOUNT_ID, &rules::account_id_message("spec.target.accountId")))]
    pub account_id: Option<String>,
    /// Every ACTIVE account under this organizational unit, nested units included (kind
    /// PermissionSet, instead of `accountId`). Followed as accounts join or leave it, at each
    /// sync of the connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 68))]
    #[x_kube(validation = rules::matches(rules::ORGANIZATIONAL_UNIT, &rules::organizational_unit_message("spec.target.organizationalUnit")))]
    pub organizational_unit: Option<String>,
    /// Identity Center group display name or IAM group name (the two membership kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub group: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// An Identity Center account assignment.
    PermissionSet,
    /// Membership of an Identity Center group.
    SsoGroupMembership,
    /// Membership of an IAM group.
    IamGroupMembership,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Revoke the access when the AccessGrant is deleted (also adopted access).
    Revoke,
    /// Leave the access in AWS when the AccessGrant is deleted.
    Retain,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessGrantStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The AWS ids the names of the spec resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<ResolvedIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// True when the access already existed and was adopted rather than created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_id: Option<String>,
    /// The access this grant holds in AWS (what deleting or changing the grant revokes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessRecord>,
    /// Each account of an organizational-unit grant, with how its assignment stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["accountId".into()]))]
    pub accounts: Vec<AccountAccess>,
}

/// One account of an organizational-unit grant.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccountAccess {
    pub account_id: String,
    /// `Granted`, `Adopted`, `Pending`, `Kept` (held, but the account was not in the last
    /// sync), or the reason it is not granted (`NotAllowed`, `AwsError`, …).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<String>,
}

/// The access a grant holds, with every id, as recorded in status.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessRecord {
    /// `Assignment`, `SsoMembership` or `IamMembership`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_set_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_store_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedIds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_set_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_arn: Option<String>,
}
