//! `PermissionSet`: what a piece of Identity Center access means — its policies, session length
//! and boundary — declared in git beside the grants that hand it out. The operator creates (or,
//! when told, adopts) the set in AWS, puts back what is changed elsewhere, provisions every
//! change to the accounts that use it, and deletes only a set it created, once nothing is
//! assigned it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::grant::ConnectorRef;
use super::rules;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "awsaccess.io",
    version = "v1alpha1",
    kind = "PermissionSet",
    namespaced,
    status = "PermissionSetStatus",
    shortname = "awsps",
    category = "awsaccess",
    doc = "An IAM Identity Center permission set, declared in git and kept so by the operator.",
    printcolumn = r#"{"name":"AWS Name","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Session","type":"string","jsonPath":".spec.sessionDuration"}"#,
    printcolumn = r#"{"name":"Accounts","type":"integer","jsonPath":".status.accountsProvisioned"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("self.name == oldSelf.name && self.connectorRef == oldSelf.connectorRef").message(rules::PERMISSION_SET_NAME_FIXED),
    validation = kube::core::Rule::new("(has(self.managedPolicies) ? size(self.managedPolicies) : 0) + (has(self.customerManagedPolicies) ? size(self.customerManagedPolicies) : 0) <= 20").message(rules::PERMISSION_SET_POLICY_COUNT)
)]
pub struct PermissionSetSpec {
    /// The AwsConnector of the organization the set belongs to; it cannot change.
    pub connector_ref: ConnectorRef,
    /// The name in Identity Center (1-32 of `A-Za-z0-9+=,.@_-`). It cannot change: a set with
    /// another name is another set.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = rules::matches(rules::PERMISSION_SET_NAME, &rules::permission_set_name_message("spec.name")))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 700))]
    #[x_kube(validation = rules::matches(rules::PERMISSION_SET_DESCRIPTION, rules::PERMISSION_SET_DESCRIPTION_MESSAGE))]
    pub description: Option<String>,
    /// How long a session of the set lasts, from `1h` to `12h` (default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::session_duration_rule("spec.sessionDuration"))]
    pub session_duration: Option<String>,
    /// Where the AWS access portal sends a user of the set (a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 240))]
    #[x_kube(validation = rules::matches(rules::RELAY_STATE, rules::RELAY_STATE_MESSAGE))]
    pub relay_state: Option<String>,
    /// AWS managed policies, by ARN (`arn:aws:iam::aws:policy/ReadOnlyAccess`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(max = 2048)))]
    #[x_kube(
        validation = kube::core::Rule::new(format!("self.all(p, p.matches('{}'))", rules::MANAGED_POLICY_ARN)).message(rules::MANAGED_POLICIES_MESSAGE),
        validation = kube::core::Rule::new("self.all(p, self.exists_one(q, q == p))").message(rules::MANAGED_POLICIES_UNIQUE)
    )]
    pub managed_policies: Vec<String>,
    /// Customer managed policies by name and path; each must exist in every account the set
    /// is provisioned to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = kube::core::Rule::new("self.all(p, self.exists_one(q, q.name == p.name && (has(q.path) ? q.path : '/') == (has(p.path) ? p.path : '/')))").message(rules::CUSTOMER_POLICIES_UNIQUE))]
    pub customer_managed_policies: Vec<CustomerManagedPolicy>,
    /// The inline policy: an IAM policy document, written as YAML (Version, Statement, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "policy_document")]
    pub inline_policy: Option<serde_json::Value>,
    /// The most the set's policies can allow: an AWS managed policy or a customer managed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<Boundary>,
    /// Tags on the permission set in AWS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["key".into()]))]
    pub tags: Vec<Tag>,
    /// Take over a set of this name that already exists in AWS. Without it, an existing set is
    /// someone else's and is left alone. An adopted set is never deleted by the operator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// What deleting this object does in AWS: `Delete` (the default) deletes a set the
    /// operator created, once no account assignment of it remains; `Retain` leaves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<ResourceDeletionPolicy>,
}

/// The schema of a policy document: any mapping, checked by the operator (and `validate`)
/// against the IAM policy grammar rather than by a schema.
fn policy_document(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CustomerManagedPolicy {
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = rules::matches(rules::POLICY_NAME, &rules::policy_name_message("name")))]
    pub name: String,
    /// The policy's path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = rules::matches(rules::POLICY_PATH, &rules::policy_path_message("path")))]
    pub path: Option<String>,
}

impl CustomerManagedPolicy {
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.managedPolicyArn) != has(self.customerManagedPolicy)").message(rules::BOUNDARY_ONE_OF))]
pub struct Boundary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = rules::matches(rules::MANAGED_POLICY_ARN, &rules::managed_policy_message("spec.permissionsBoundary.managedPolicyArn")))]
    pub managed_policy_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_managed_policy: Option<CustomerManagedPolicy>,
}

/// One tag: AWS's key and value lengths, in the ASCII part of its character set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag {
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = kube::core::Rule::new(format!("self.matches('{}') && !self.startsWith('aws:')", rules::TAG_KEY)).message(rules::TAG_KEY_MESSAGE))]
    pub key: String,
    #[serde(default)]
    #[schemars(length(max = 256))]
    #[x_kube(validation = rules::matches(rules::TAG_VALUE, rules::TAG_VALUE_MESSAGE))]
    pub value: String,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceDeletionPolicy {
    /// Delete it from AWS (only what the operator created, once nothing depends on it).
    Delete,
    /// Leave it in AWS.
    Retain,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PermissionSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The set's ARN in AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// True when the set existed and was adopted rather than created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
    /// How many accounts the set is provisioned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts_provisioned: Option<u32>,
    /// The last provisioning's outcome in each account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["accountId".into()]))]
    pub accounts: Vec<AccountProvisioning>,
    /// When the set was last provisioned (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_at: Option<String>,
    /// What the last check found changed in AWS and put back (or, read-only, only reported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

/// One account's provisioning of the set.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccountProvisioning {
    pub account_id: String,
    /// `Provisioned` or `Failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
