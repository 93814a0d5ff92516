//! People and teams declared in git: `IdentityCenterUser` and `IdentityCenterGroup` (the
//! Identity Store of the connector's Identity Center instance) and `IamUser` (an IAM user in
//! the management account or a member account). The operator creates each (or, when told,
//! adopts one that exists), keeps its attributes as declared, and deletes only what it created,
//! once no access it gave remains and nothing else declares access for it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::grant::ConnectorRef;
use super::permission_set::{ResourceDeletionPolicy, Tag};
use super::rules;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "awsaccess.io",
    version = "v1alpha1",
    kind = "IdentityCenterUser",
    namespaced,
    status = "IdentityStatus",
    shortname = "awsuser",
    category = "awsaccess",
    doc = "A user of the Identity Center instance's identity store, declared in git and kept so by the operator.",
    printcolumn = r#"{"name":"User Name","type":"string","jsonPath":".spec.userName"}"#,
    printcolumn = r#"{"name":"Display Name","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.userName == oldSelf.userName && self.connectorRef == oldSelf.connectorRef").message(rules::USER_NAME_FIXED))]
pub struct IdentityCenterUserSpec {
    /// The AwsConnector of the organization whose Identity Center holds the user; it cannot
    /// change.
    pub connector_ref: ConnectorRef,
    /// The sign-in name, unique in the identity store (1-128 of `A-Za-z0-9+=,.@_-`). It cannot
    /// change: a user of another name is another person.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = rules::matches(rules::SSO_USER_NAME, &rules::sso_user_name_message("spec.userName")))]
    pub user_name: String,
    /// The name shown in the access portal.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::matches(rules::IDENTITY_TEXT, rules::IDENTITY_TEXT_MESSAGE))]
    pub display_name: String,
    pub name: PersonName,
    /// The user's email address: exactly one, the primary one (Identity Center keeps one).
    #[schemars(length(min = 1, max = 1))]
    #[x_kube(validation = kube::core::Rule::new("size(self) == 1 && self.exists_one(e, has(e.primary) && e.primary)").message(rules::ONE_PRIMARY_EMAIL))]
    pub emails: Vec<Email>,
    /// The user's job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::matches(rules::IDENTITY_TEXT, rules::IDENTITY_TEXT_MESSAGE))]
    pub title: Option<String>,
    /// A locale such as `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32))]
    #[x_kube(validation = rules::matches(rules::LOCALE, rules::LOCALE_MESSAGE))]
    pub locale: Option<String>,
    /// A time zone of the IANA database, such as `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = rules::matches(rules::TIMEZONE, rules::TIMEZONE_MESSAGE))]
    pub timezone: Option<String>,
    /// Take over a user of this name that already exists. Without it, an existing user is
    /// someone else's and is left alone. An adopted user is never deleted by the operator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// What deleting this object does in AWS: `Delete` (the default) deletes a user the
    /// operator created, once the access it gave is revoked; `Retain` leaves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<ResourceDeletionPolicy>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PersonName {
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::matches(rules::IDENTITY_TEXT, rules::IDENTITY_TEXT_MESSAGE))]
    pub given_name: String,
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::matches(rules::IDENTITY_TEXT, rules::IDENTITY_TEXT_MESSAGE))]
    pub family_name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Email {
    #[schemars(length(min = 3, max = 1024))]
    #[x_kube(validation = rules::matches(rules::EMAIL, rules::EMAIL_MESSAGE))]
    pub value: String,
    /// `work` (the default), `home` or `other`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub kind: Option<EmailKind>,
    #[serde(default)]
    pub primary: bool,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmailKind {
    Work,
    Home,
    Other,
}

impl EmailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Work => "work",
            Self::Home => "home",
            Self::Other => "other",
        }
    }
}

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "awsaccess.io",
    version = "v1alpha1",
    kind = "IdentityCenterGroup",
    namespaced,
    status = "IdentityStatus",
    shortname = "awsgroup",
    category = "awsaccess",
    doc = "A group of the Identity Center instance's identity store, declared in git and kept so by the operator. Its members are AccessGrants of kind SsoGroupMembership.",
    printcolumn = r#"{"name":"Display Name","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.connectorRef == oldSelf.connectorRef").message(rules::GROUP_CONNECTOR_FIXED))]
pub struct IdentityCenterGroupSpec {
    /// The AwsConnector of the organization whose Identity Center holds the group; it cannot
    /// change.
    pub connector_ref: ConnectorRef,
    /// The group's name, unique in the identity store; grants name the group by it. It may
    /// change: the group keeps its id, members and assignments.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::matches(rules::IDENTITY_TEXT, rules::IDENTITY_TEXT_MESSAGE))]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::matches(rules::IDENTITY_TEXT, rules::IDENTITY_TEXT_MESSAGE))]
    pub description: Option<String>,
    /// Take over a group of this name that already exists. An adopted group is never deleted
    /// by the operator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// What deleting this object does in AWS: `Delete` (the default) deletes a group the
    /// operator created, once the access it gave is revoked; `Retain` leaves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<ResourceDeletionPolicy>,
}

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "awsaccess.io",
    version = "v1alpha1",
    kind = "IamUser",
    namespaced,
    status = "IdentityStatus",
    shortname = "awsiamuser",
    category = "awsaccess",
    doc = "An IAM user without a console password or access keys, declared in git and kept so by the operator.",
    printcolumn = r#"{"name":"User Name","type":"string","jsonPath":".spec.userName"}"#,
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".status.account"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.userName == oldSelf.userName && self.connectorRef == oldSelf.connectorRef && (has(self.account) ? self.account : '') == (has(oldSelf.account) ? oldSelf.account : '')").message(rules::IAM_USER_FIXED))]
pub struct IamUserSpec {
    /// The AwsConnector of the organization; it cannot change.
    pub connector_ref: ConnectorRef,
    /// The account the user lives in: the connector's own (the management account) when
    /// unset, or a member account, entered through the connector's
    /// `sync.memberAccounts.roleName`. It cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 12, max = 12))]
    #[x_kube(validation = rules::matches(rules::ACCOUNT_ID, &rules::account_id_message("spec.account")))]
    pub account: Option<String>,
    /// The user's name, unique in the account regardless of case (1-64 of
    /// `A-Za-z0-9+=,.@_-`). It cannot change.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = rules::matches(rules::IAM_USER_NAME, &rules::iam_user_name_message("spec.userName")))]
    pub user_name: String,
    /// The user's path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = rules::matches(rules::IAM_PATH, &rules::iam_path_message("spec.path")))]
    pub path: Option<String>,
    /// Tags on the user in AWS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 49))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["key".into()]))]
    pub tags: Vec<Tag>,
    /// The most the user's policies can allow: the ARN of a managed policy (AWS's, or one of
    /// the user's account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = rules::matches(rules::BOUNDARY_POLICY_ARN, &rules::boundary_arn_message("spec.permissionsBoundary")))]
    pub permissions_boundary: Option<String>,
    /// Take over a user of this name that already exists. An adopted user is never deleted by
    /// the operator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// What deleting this object does in AWS: `Delete` (the default) deletes a user the
    /// operator created, once what it added to the user is removed; `Retain` leaves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<ResourceDeletionPolicy>,
}

impl IamUserSpec {
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }
}

/// The status of the three identity kinds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The id AWS gave it: the identity store's UserId or GroupId, or the IAM user's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The IAM user's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The IAM user's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// True when it existed and was adopted rather than created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
    /// What the last check found changed in AWS and put back (or, read-only, only reported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

/// An object of any of the three identity kinds: what `validate`, `plan`, `apply` and the
/// reconciler share.
#[derive(Clone, Debug)]
pub enum AnyIdentity {
    User(Box<IdentityCenterUser>),
    Group(Box<IdentityCenterGroup>),
    IamUser(Box<IamUser>),
}

impl AnyIdentity {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "IdentityCenterUser",
            Self::Group(_) => "IdentityCenterGroup",
            Self::IamUser(_) => "IamUser",
        }
    }

    pub fn metadata(&self) -> &kube::core::ObjectMeta {
        match self {
            Self::User(o) => &o.metadata,
            Self::Group(o) => &o.metadata,
            Self::IamUser(o) => &o.metadata,
        }
    }

    pub fn connector_ref(&self) -> &ConnectorRef {
        match self {
            Self::User(o) => &o.spec.connector_ref,
            Self::Group(o) => &o.spec.connector_ref,
            Self::IamUser(o) => &o.spec.connector_ref,
        }
    }

    pub fn status(&self) -> Option<&IdentityStatus> {
        match self {
            Self::User(o) => o.status.as_ref(),
            Self::Group(o) => o.status.as_ref(),
            Self::IamUser(o) => o.status.as_ref(),
        }
    }

    /// The name AWS knows it by: the user name, or the group's display name.
    pub fn aws_name(&self) -> &str {
        match self {
            Self::User(o) => &o.spec.user_name,
            Self::Group(o) => &o.spec.display_name,
            Self::IamUser(o) => &o.spec.user_name,
        }
    }

    pub fn adopt(&self) -> bool {
        match self {
            Self::User(o) => o.spec.adopt,
            Self::Group(o) => o.spec.adopt,
            Self::IamUser(o) => o.spec.adopt,
        }
    }

    pub fn deletion_policy(&self) -> ResourceDeletionPolicy {
        match self {
            Self::User(o) => o.spec.deletion_policy,
            Self::Group(o) => o.spec.deletion_policy,
            Self::IamUser(o) => o.spec.deletion_policy,
        }
        .unwrap_or(ResourceDeletionPolicy::Delete)
    }

    /// Every rule the spec breaks, each naming its field.
    pub fn validate(&self) -> Vec<super::validation::FieldError> {
        use super::identity_validation as v;
        match self {
            Self::User(o) => v::validate_identity_center_user(&o.spec),
            Self::Group(o) => v::validate_identity_center_group(&o.spec),
            Self::IamUser(o) => v::validate_iam_user(&o.spec),
        }
    }
}
