//! `AwsConnector`: how to reach one AWS organization, what to inventory, and what AccessGrants
//! may ask of it.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::rules;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "awsaccess.io",
    version = "v1alpha1",
    kind = "AwsConnector",
    namespaced,
    status = "AwsConnectorStatus",
    shortname = "awsconn",
    category = "awsaccess",
    doc = "How the operator reaches one AWS organization, what it inventories there, and what AccessGrants may ask of it.",
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".status.identity.account"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AwsConnectorSpec {
    /// Region for IAM, STS and Organizations (the "global" region of the partition).
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::matches(rules::REGION, &rules::region_message("spec.region")))]
    pub region: String,
    /// IAM Identity Center home region; defaults to `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::matches(rules::REGION, &rules::region_message("spec.ssoRegion")))]
    pub sso_region: Option<String>,
    /// How credentials are obtained. With nothing set, the pod's own credentials (IRSA) are used.
    #[serde(default)]
    pub auth: AuthSpec,
    /// What the inventory covers and how often it is refreshed.
    #[serde(default)]
    pub sync: SyncSpec,
    /// What AccessGrants may ask of this connector.
    #[serde(default)]
    pub grant_policy: GrantPolicy,
    /// Whether and how AccessRequests are served through this connector (the grantPolicy
    /// applies to them too).
    #[serde(default, skip_serializing_if = "RequestPolicy::is_off")]
    pub request_policy: RequestPolicy,
    /// Which namespaces may declare PermissionSets through this connector, and what those may
    /// contain. Permission sets are organization-wide: by default only the connector's own
    /// namespace may declare them.
    #[serde(default, skip_serializing_if = "PermissionSetPolicy::is_default")]
    pub permission_set_policy: PermissionSetPolicy,
    /// Which namespaces may declare IdentityCenterUsers, IdentityCenterGroups and IamUsers
    /// through this connector, and which names. By default only the connector's own namespace
    /// may declare them.
    #[serde(default, skip_serializing_if = "IdentityPolicy::is_default")]
    pub identity_policy: IdentityPolicy,
    /// Observe only: sync and plan, never write to AWS.
    #[serde(default)]
    pub read_only: bool,
    /// What deleting this AwsConnector does to the access the operator created through it:
    /// `Revoke` (the default) revokes it before the connector goes; `Retain` leaves it in AWS.
    /// Access the operator adopted is never revoked by deleting the connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<super::grant::DeletionPolicy>,
}

impl AwsConnectorSpec {
    /// The Identity Center home region.
    pub fn sso_region(&self) -> &str {
        self.sso_region.as_deref().unwrap_or(&self.region)
    }
}

/// The role chain. Single-hop assumes `roleArn`; two-hop assumes `globalRoleArn` first.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("!has(self.globalRoleArn) || has(self.roleArn)").message(rules::GLOBAL_ROLE_NEEDS_ROLE),
    validation = kube::core::Rule::new("!has(self.globalRoleArn) || has(self.externalId) || has(self.externalIdSecretRef)").message(rules::TWO_HOP_NEEDS_EXTERNAL_ID),
    validation = kube::core::Rule::new("!(has(self.externalId) && has(self.externalIdSecretRef))").message(rules::EXTERNAL_ID_ONE_SOURCE),
    validation = kube::core::Rule::new("has(self.roleArn) || !(has(self.externalId) || has(self.externalIdSecretRef))").message(rules::EXTERNAL_ID_NEEDS_ROLE),
    validation = kube::core::Rule::new("has(self.globalRoleArn) || !(has(self.globalExternalId) || has(self.globalExternalIdSecretRef))").message(rules::GLOBAL_EXTERNAL_ID_NEEDS_GLOBAL_ROLE),
    validation = kube::core::Rule::new("!(has(self.globalExternalId) && has(self.globalExternalIdSecretRef))").message(rules::GLOBAL_EXTERNAL_ID_ONE_SOURCE)
)]
pub struct AuthSpec {
    /// The role that does the work, in the organization's management or delegated account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = rules::role_arn_rule("spec.auth.roleArn"),
        validation = rules::role_arn_length_rule("spec.auth.roleArn")
    )]
    pub role_arn: Option<String>,
    /// External ID for assuming `roleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = rules::external_id_rule("spec.auth.externalId"))]
    pub external_id: Option<String>,
    /// External ID for assuming `roleArn`, read from a Secret in the connector's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_secret_ref: Option<SecretKeyRef>,
    /// Optional first hop (a broker role) assumed before `roleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = rules::role_arn_rule("spec.auth.globalRoleArn"),
        validation = rules::role_arn_length_rule("spec.auth.globalRoleArn")
    )]
    pub global_role_arn: Option<String>,
    /// External ID for assuming `globalRoleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = rules::external_id_rule("spec.auth.globalExternalId"))]
    pub global_external_id: Option<String>,
    /// External ID for assuming `globalRoleArn`, read from a Secret in the connector's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_external_id_secret_ref: Option<SecretKeyRef>,
    /// The STS role session name; defaults to `aws-access-operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = rules::matches(rules::SESSION_NAME, &rules::session_name_message("spec.auth.sessionName")))]
    pub session_name: Option<String>,
}

// External IDs are shared secrets with the role's owner: never print them.
impl fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("AuthSpec")
            .field("role_arn", &self.role_arn)
            .field("external_id", &redacted(&self.external_id))
            .field("external_id_secret_ref", &self.external_id_secret_ref)
            .field("global_role_arn", &self.global_role_arn)
            .field("global_external_id", &redacted(&self.global_external_id))
            .field(
                "global_external_id_secret_ref",
                &self.global_external_id_secret_ref,
            )
            .field("session_name", &self.session_name)
            .finish()
    }
}

/// A key of a Secret in the connector's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What the inventory covers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncSpec {
    /// Period of the full inventory sync, e.g. `1h` or `30m`.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration_rule("spec.sync.interval"))]
    pub interval: String,
    /// IAM users, groups (+ members), roles (+ trusted principals).
    #[serde(default = "yes")]
    pub iam: bool,
    /// Identity Center users, groups (+ members), permission sets, account assignments.
    #[serde(default = "yes")]
    pub identity_center: bool,
    /// Accounts of the organization.
    #[serde(default = "yes")]
    pub organizations: bool,
    /// IAM access keys with their last use.
    #[serde(default)]
    pub access_keys: bool,
    /// IAM users, groups and roles of every member account of the organization, through a role
    /// assumed in each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_accounts: Option<MemberAccounts>,
    /// The managed and inline policies attached to IAM users, groups and roles (no extra call:
    /// they come with the IAM pages), and what each permission set carries (its AWS managed
    /// policies, customer managed policy references, inline policy and permissions boundary:
    /// four calls per permission set, cached with its details).
    #[serde(default)]
    pub policies: bool,
    /// When each Identity Center user last signed in, from CloudTrail in the Identity Center
    /// region (its 90 days of event history), read from where the last sync stopped.
    #[serde(default)]
    pub last_sign_in: bool,
}

/// How the member accounts of the organization are entered.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccounts {
    #[serde(default)]
    pub enabled: bool,
    /// The role assumed in each member account, by name; it must trust the operator's role.
    #[serde(default = "default_member_role")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = rules::matches(rules::ROLE_NAME, &rules::role_name_message("spec.sync.memberAccounts.roleName")))]
    pub role_name: String,
    /// External ID for assuming that role, from a Secret in the connector's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_secret_ref: Option<SecretKeyRef>,
    /// Member accounts entered at once.
    #[serde(default = "default_member_concurrency")]
    #[schemars(range(min = 1, max = 32))]
    pub concurrency: u32,
}

impl Default for MemberAccounts {
    fn default() -> Self {
        Self {
            enabled: false,
            role_name: default_member_role(),
            external_id_secret_ref: None,
            concurrency: default_member_concurrency(),
        }
    }
}

/// The role AWS Organizations creates in every account it creates.
pub const DEFAULT_MEMBER_ROLE: &str = "OrganizationAccountAccessRole";

fn default_member_role() -> String {
    DEFAULT_MEMBER_ROLE.to_string()
}

fn default_member_concurrency() -> u32 {
    4
}

impl SyncSpec {
    /// The member-account settings when member accounts are synced.
    pub fn members(&self) -> Option<&MemberAccounts> {
        self.member_accounts.as_ref().filter(|m| m.enabled)
    }
}

impl Default for SyncSpec {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            iam: true,
            identity_center: true,
            organizations: true,
            access_keys: false,
            member_accounts: None,
            policies: false,
            last_sign_in: false,
        }
    }
}

fn default_interval() -> String {
    "1h".to_string()
}

fn yes() -> bool {
    true
}

/// What AccessGrants may ask of a connector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrantPolicy {
    /// Which namespaces' AccessGrants may use this connector.
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,
    /// Permission set names grants may use; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(max = 32)))]
    pub allowed_permission_sets: Vec<String>,
    /// Permission set names grants may not use; wins over the allowed list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(max = 32)))]
    pub denied_permission_sets: Vec<String>,
    /// Account ids grants may target; empty allows any account of the organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 12)))]
    #[x_kube(validation = kube::core::Rule::new(format!("self.all(a, a.matches('{}'))", rules::ACCOUNT_ID)).message(rules::ALLOWED_ACCOUNTS_MESSAGE))]
    pub allowed_accounts: Vec<String>,
    /// Organizational units grants may target with `organizationalUnit` (a unit nested under
    /// one of them too); empty allows any. Each account of such a grant must also be allowed
    /// by `allowedAccounts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 68)))]
    #[x_kube(validation = kube::core::Rule::new(format!("self.all(u, u.matches('{}'))", rules::ORGANIZATIONAL_UNIT)).message(rules::ALLOWED_UNITS_MESSAGE))]
    pub allowed_organizational_units: Vec<String>,
    /// Longest lifetime a grant may have, e.g. `12h`; grants must then expire within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration_rule("spec.grantPolicy.maxDuration"))]
    pub max_duration: Option<String>,
}

/// What PermissionSets may be declared through a connector. A set that breaks it is refused
/// and nothing of it is written to AWS.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PermissionSetPolicy {
    /// Which namespaces' PermissionSets may use this connector (default: its own only).
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,
    /// AWS managed policies a set may attach (ARNs; `*` and `?` match as in IAM); empty allows
    /// any. Applies to the permissions boundary too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(max = 2048)))]
    pub allowed_managed_policies: Vec<String>,
    /// Customer managed policies a set may attach, as `<path><name>` (`/team/*`); empty
    /// allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(max = 640)))]
    pub allowed_customer_managed_policies: Vec<String>,
    /// Actions an inline policy may never allow, such as `iam:*` or `organizations:*`: an
    /// `Allow` of an action that could match one (`*`, `iam:Pass*`) is refused, and so is an
    /// `Allow` with `NotAction` that does not exclude each of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(max = 256)))]
    pub denied_actions: Vec<String>,
    /// The longest session a set may have, e.g. `4h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::session_duration_rule("spec.permissionSetPolicy.maxSessionDuration"))]
    pub max_session_duration: Option<String>,
}

impl PermissionSetPolicy {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// Who may declare identities through a connector, one rule per kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityPolicy {
    /// IdentityCenterUsers; `allowedNames` match the user name (`*@example.com`).
    #[serde(default, skip_serializing_if = "IdentityRule::is_default")]
    pub users: IdentityRule,
    /// IdentityCenterGroups; `allowedNames` match the display name (`team-*`).
    #[serde(default, skip_serializing_if = "IdentityRule::is_default")]
    pub groups: IdentityRule,
    /// IamUsers; `allowedNames` match the user name.
    #[serde(default, skip_serializing_if = "IamUserRule::is_default")]
    pub iam_users: IamUserRule,
}

impl IdentityPolicy {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// Which namespaces may declare one identity kind, and which names.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityRule {
    /// Which namespaces may declare it (default: the connector's own only).
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,
    /// The names they may declare, with `*` and `?` as wildcards, compared without regard to
    /// case; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 1024)))]
    pub allowed_names: Vec<String>,
}

impl IdentityRule {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// Which namespaces may declare IamUsers, which names and in which accounts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IamUserRule {
    /// Which namespaces may declare them (default: the connector's own only).
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,
    /// The user names they may declare, with `*` and `?` as wildcards, compared without regard
    /// to case; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 64)))]
    pub allowed_names: Vec<String>,
    /// The accounts they may be declared in (the management account is `spec.account` unset,
    /// always allowed when this is empty); empty allows any account of the organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 12)))]
    #[x_kube(validation = kube::core::Rule::new(format!("self.all(a, a.matches('{}'))", rules::ACCOUNT_ID)).message(rules::IAM_ACCOUNTS_MESSAGE))]
    pub allowed_accounts: Vec<String>,
}

impl IamUserRule {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// What AccessRequests may ask of a connector. Off unless `enabled`; a request is served only
/// when one of `rules` allows it, and the grantPolicy must allow the access too.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestPolicy {
    /// Whether AccessRequests are served at all. Turning it off ends the access requests hold.
    #[serde(default)]
    pub enabled: bool,
    /// How a requester's Kubernetes user name becomes the user name of the principal, for
    /// rules with `principals: Self`.
    #[serde(default, skip_serializing_if = "UserMapping::is_identity")]
    pub user_mapping: UserMapping,
    /// How long a request may wait for its approvals, from its creation (default `24h`); after
    /// that it expires and later approvals do nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration_rule("spec.requestPolicy.pendingExpiry"))]
    pub pending_expiry: Option<String>,
    /// Who may request what. The first rule that allows a request applies to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub rules: Vec<RequestRule>,
    /// Webhooks that hear about every request of this connector (its rule's receivers hear too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub notify: Vec<super::notify::Receiver>,
}

impl RequestPolicy {
    pub fn is_off(&self) -> bool {
        self == &Self::default()
    }
}

/// From a Kubernetes user name to a principal's user name: `stripPrefix` is removed (a user
/// name without it maps to nothing), then `suffix` appended. `oidc:alice` with `stripPrefix:
/// "oidc:"` and `suffix: "@example.com"` is `alice@example.com`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub strip_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub suffix: Option<String>,
}

impl UserMapping {
    pub fn is_identity(&self) -> bool {
        self == &Self::default()
    }
}

/// One rule of a requestPolicy. Every list allows exactly what it names (`*` allows any); an
/// empty list allows none of that kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("size(self.users) + size(self.groups) > 0").message(rules::RULE_NEEDS_REQUESTERS))]
pub struct RequestRule {
    /// Named in status and messages.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Kubernetes users who may request under this rule.
    #[serde(default)]
    #[schemars(length(max = 500), inner(length(min = 1, max = 512)))]
    pub users: Vec<String>,
    /// Kubernetes groups whose members may request under this rule (as listed in the
    /// request's `spec.requester.groups`, which admission checks).
    #[serde(default)]
    #[schemars(length(max = 500), inner(length(min = 1, max = 512)))]
    pub groups: Vec<String>,
    /// For whom: `Self` (the requester's own user, through `userMapping`) or `Any`.
    #[serde(default)]
    pub principals: PrincipalScope,
    /// Permission sets (names or ARNs) that may be requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 256)))]
    pub permission_sets: Vec<String>,
    /// Accounts a permission set may be requested on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 12)))]
    pub accounts: Vec<String>,
    /// Organizational units a permission set may be requested on (as named in the request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 68)))]
    pub organizational_units: Vec<String>,
    /// Identity Center group (display name) or IAM group memberships that may be requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 1024)))]
    pub memberships: Vec<String>,
    /// Approvals needed (default 1). `0` approves automatically: an explicit choice, logged
    /// and recorded for every request it approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub approvals: Option<u32>,
    /// Longest duration a request may ask for under this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration_rule("spec.requestPolicy.rules[].maxDuration"))]
    pub max_duration: Option<String>,
    /// Webhooks that hear about the requests this rule allows, besides the policy's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub notify: Vec<super::notify::Receiver>,
}

impl RequestRule {
    /// Approvals needed, 1 unless said otherwise.
    pub fn approvals(&self) -> u32 {
        self.approvals.unwrap_or(1)
    }
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum PrincipalScope {
    /// Only the requester's own user (`principal.kind` SsoUser or IamUser, by name).
    #[default]
    #[serde(rename = "Self")]
    Myself,
    /// Any principal.
    Any,
}

/// Which namespaces may use a connector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.from != 'Selector' || has(self.selector)").message(rules::SELECTOR_NEEDED))]
pub struct AllowedNamespaces {
    #[serde(default)]
    pub from: NamespacesFrom,
    /// Namespaces whose labels match, with `from: Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum NamespacesFrom {
    /// Only the connector's own namespace.
    #[default]
    Same,
    /// Every namespace.
    All,
    /// Namespaces matching `selector`.
    Selector,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsConnectorStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Who the operator is in AWS after the role chain (GetCallerIdentity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<CallerIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_center: Option<IdentityCenterRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryCounts>,
    /// How the last sync fared in each member account (`spec.sync.memberAccounts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["accountId".into()]))]
    pub member_accounts: Vec<MemberAccountStatus>,
    /// The last `awsaccess.io/sync-now` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_sync_now: Option<String>,
}

/// The outcome of the last sync in one member account.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccountStatus {
    pub account_id: String,
    /// `Entered`, `AccessDenied`, `Failed` or `Skipped`.
    pub outcome: String,
    /// Why it was not entered: the role or the operation, and the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Annotating a connector with a new value of this starts a sync at once.
pub const SYNC_NOW_ANNOTATION: &str = "awsaccess.io/sync-now";

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityCenterRef {
    pub instance_arn: String,
    pub identity_store_id: String,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub api_calls: u64,
    #[serde(default)]
    pub throttled: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InventoryCounts {
    pub accounts: u64,
    #[serde(default)]
    pub organizational_units: u64,
    pub iam_users: u64,
    pub iam_groups: u64,
    pub iam_roles: u64,
    /// Member accounts whose IAM was read (`sync.memberAccounts`).
    #[serde(default)]
    pub member_accounts_entered: u64,
    #[serde(default)]
    pub member_iam_users: u64,
    #[serde(default)]
    pub member_iam_groups: u64,
    #[serde(default)]
    pub member_iam_roles: u64,
    pub sso_users: u64,
    /// Identity Center users with a sign-in in CloudTrail's history (`sync.lastSignIn`).
    #[serde(default)]
    pub sso_users_signed_in: u64,
    pub sso_groups: u64,
    pub permission_sets: u64,
    pub assignments: u64,
    pub unmanaged_assignments: u64,
    /// Access paths (a user into an account with a permission set, directly or through a
    /// group) that no AccessGrant declares whole: the assignment, and the membership when
    /// through a group.
    #[serde(default)]
    pub undeclared_access_paths: u64,
}

impl InventoryCounts {
    /// The counts of what an object names (accounts, units, users, groups, roles, permission
    /// sets), without those of what it does not (assignments, sign-ins, access paths): a change
    /// here may resolve a name that did not resolve before.
    pub fn named(&self) -> [u64; 12] {
        [
            self.accounts,
            self.organizational_units,
            self.iam_users,
            self.iam_groups,
            self.iam_roles,
            self.member_accounts_entered,
            self.member_iam_users,
            self.member_iam_groups,
            self.member_iam_roles,
            self.sso_users,
            self.sso_groups,
            self.permission_sets,
        ]
    }
}
