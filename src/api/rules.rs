//! The validation patterns, written once and used twice: compiled by `regex-lite` for the
//! controller and the `validate` command, and embedded in the CRD's CEL rules so that the
//! apiserver rejects the same objects at admission. The patterns use only the syntax common to
//! RE2 (CEL's `matches`) and regex-lite.

use kube::core::Rule;

/// `arn:<partition>:iam::<12 digits>:role/<path/><name>`.
pub const ROLE_ARN: &str = r"^arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:role/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}$";
/// The longest `role/<path/><name>` resource part an IAM role ARN may have.
pub const ROLE_RESOURCE_MAX: usize = 512;
/// What STS accepts as an external ID, with our 32-character floor against guessable IDs.
pub const EXTERNAL_ID: &str = r"^[A-Za-z0-9+=,.@:/_-]{32,64}$";
/// An AWS region name: `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`.
pub const REGION: &str = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$";
/// An AWS account id.
pub const ACCOUNT_ID: &str = r"^[0-9]{12}$";
/// An STS role session name.
/// An IAM role name (no path).
pub const ROLE_NAME: &str = r"^[A-Za-z0-9+=,.@_-]{1,64}$";

/// An organizational unit id.
pub const ORGANIZATIONAL_UNIT: &str = r"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$";

pub const SESSION_NAME: &str = r"^[A-Za-z0-9+=,.@_-]{2,64}$";
/// A duration such as `90s`, `15m`, `8h` or `1h30m`.
pub const DURATION: &str = r"^([0-9]+(h|m|s))+$";
/// A permission set given by name (Identity Center allows 1–32 of these characters).
pub const PERMISSION_SET_NAME: &str = r"^[A-Za-z0-9+=,.@_-]{1,32}$";
/// A permission set given by ARN (AWS's own pattern for PermissionSetArn).
pub const PERMISSION_SET_ARN: &str = r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):sso:::permissionSet/(sso)?ins-[a-zA-Z0-9.-]{16}/ps-[a-zA-Z0-9./-]{16}$";

/// A CEL rule on a string field that must match `pattern`.
pub fn matches(pattern: &str, message: &str) -> Rule {
    Rule::new(format!("self.matches('{pattern}')"))
        .message(kube::core::Message::Message(message.to_string()))
}

/// The principal kinds each target kind takes, as CEL rules on a spec with `principal` and
/// `target` (an AccessGrant's and an AccessRequest's alike).
pub fn permission_set_principal_rule() -> Rule {
    Rule::new(
        "self.target.kind != 'PermissionSet' || self.principal.kind in ['SsoUser', 'SsoGroup']",
    )
    .message(PERMISSION_SET_PRINCIPAL)
}

pub fn sso_membership_principal_rule() -> Rule {
    Rule::new("self.target.kind != 'SsoGroupMembership' || self.principal.kind == 'SsoUser'")
        .message(SSO_MEMBERSHIP_PRINCIPAL)
}

pub fn iam_membership_principal_rule() -> Rule {
    Rule::new("self.target.kind != 'IamGroupMembership' || self.principal.kind == 'IamUser'")
        .message(IAM_MEMBERSHIP_PRINCIPAL)
}

/// The CEL rule for a role ARN's shape.
pub fn role_arn_rule(field: &str) -> Rule {
    matches(ROLE_ARN, &role_arn_message(field))
}

/// The CEL rule for the length of a role ARN's resource part (`role/<path/><name>`).
pub fn role_arn_length_rule(field: &str) -> Rule {
    Rule::new(format!(
        "size(self) - self.indexOf(':role/') - 1 <= {ROLE_RESOURCE_MAX}"
    ))
    .message(kube::core::Message::Message(role_arn_length_message(field)))
}

/// The CEL rule for an external ID field. A forbidden value is refused without being echoed
/// back (an invalid one would be quoted in the API server's answer, and from there in GitOps
/// tools' sync errors).
pub fn external_id_rule(field: &str) -> Rule {
    matches(EXTERNAL_ID, &external_id_message(field))
        .reason(kube::core::Reason::FieldValueForbidden)
}

// Messages shared by the CEL rules and the Rust checks, so both say the same thing.
pub const GLOBAL_ROLE_NEEDS_ROLE: &str =
    "spec.auth.globalRoleArn (the first hop) requires spec.auth.roleArn (the second hop)";
pub const TWO_HOP_NEEDS_EXTERNAL_ID: &str =
    "spec.auth.externalId (or externalIdSecretRef) is required when spec.auth.globalRoleArn is set";
pub const EXTERNAL_ID_ONE_SOURCE: &str =
    "spec.auth.externalId and spec.auth.externalIdSecretRef are mutually exclusive";
pub const EXTERNAL_ID_NEEDS_ROLE: &str =
    "spec.auth.externalId (or externalIdSecretRef) requires spec.auth.roleArn";
pub const GLOBAL_EXTERNAL_ID_NEEDS_GLOBAL_ROLE: &str =
    "spec.auth.globalExternalId (or globalExternalIdSecretRef) requires spec.auth.globalRoleArn";
pub const GLOBAL_EXTERNAL_ID_ONE_SOURCE: &str =
    "spec.auth.globalExternalId and spec.auth.globalExternalIdSecretRef are mutually exclusive";
pub const ALLOWED_ACCOUNTS_MESSAGE: &str =
    "spec.grantPolicy.allowedAccounts entries must be 12-digit account ids";
pub const SELECTOR_NEEDED: &str =
    "allowedNamespaces.selector is required when allowedNamespaces.from is Selector";

/// SELECTOR_NEEDED for one policy's `allowedNamespaces` (the API server names the field before
/// the CEL message; the Rust checks name it in the message).
pub fn selector_needed(policy: &str) -> String {
    format!("spec.{policy}.{SELECTOR_NEEDED}")
}
pub const RULE_NEEDS_REQUESTERS: &str =
    "spec.requestPolicy.rules[]: a rule must name users or groups who may request";
pub const REQUEST_IMMUTABLE: &str = "spec.connectorRef, spec.requester, spec.principal, spec.target, spec.duration and spec.reason of an AccessRequest cannot change once it is made: make a new request";
pub const WITHDRAWN_FINAL: &str = "spec.withdrawn cannot be taken back once true";
pub const REVIEWS_KEPT: &str = "spec.reviews: a review cannot be changed or removed once made";
pub const REVIEW_FINAL: &str = "spec.reviews: a review cannot be changed once made";
pub const REVIEWS_PER_USER: &str =
    "spec.reviews: one review per reviewer, except a Revoke of their own Approve";
pub const REASON_NEEDED: &str = "spec.reason must say why the access is needed";
pub const PERMISSION_SET_PRINCIPAL: &str =
    "spec.principal.kind must be SsoUser or SsoGroup for spec.target.kind PermissionSet";
pub const SSO_MEMBERSHIP_PRINCIPAL: &str =
    "spec.principal.kind must be SsoUser for spec.target.kind SsoGroupMembership";
pub const IAM_MEMBERSHIP_PRINCIPAL: &str =
    "spec.principal.kind must be IamUser for spec.target.kind IamGroupMembership";
pub const ONE_EXPIRY: &str = "spec.duration and spec.expiresAt are mutually exclusive";
pub const PRINCIPAL_NAME_OR_ID: &str = "spec.principal needs exactly one of name or id";
pub const PERMISSION_SET_FIELDS: &str = "spec.target.permissionSet and one of spec.target.accountId or spec.target.organizationalUnit are required for kind PermissionSet";
pub const ACCOUNT_OR_UNIT: &str =
    "spec.target.accountId and spec.target.organizationalUnit are mutually exclusive";
pub const PERMISSION_SET_NO_GROUP: &str = "spec.target.group is not used by kind PermissionSet";
pub const MEMBERSHIP_NEEDS_GROUP: &str =
    "spec.target.group is required for kinds SsoGroupMembership and IamGroupMembership";
pub const MEMBERSHIP_NO_ACCOUNT: &str = "spec.target.permissionSet, spec.target.accountId and spec.target.organizationalUnit are only used by kind PermissionSet";

pub fn region_message(field: &str) -> String {
    format!("{field} must be an AWS region such as us-east-1")
}

pub fn role_name_message(field: &str) -> String {
    format!("{field} must be an IAM role name: 1 to 64 of A-Z a-z 0-9 + = , . @ _ -")
}

pub fn organizational_unit_message(field: &str) -> String {
    format!("{field} must be an organizational unit id such as ou-ab12-cd34ef56")
}

pub const ALLOWED_UNITS_MESSAGE: &str = "spec.grantPolicy.allowedOrganizationalUnits must hold organizational unit ids such as ou-ab12-cd34ef56";

pub fn session_name_message(field: &str) -> String {
    format!("{field} must be 2-64 characters of [A-Za-z0-9+=,.@_-]")
}

/// The longest duration any field takes: a year. Past it a grant would in effect never expire
/// (and far past it the number would overflow).
pub const MAX_DURATION: &str = "8760h";

pub fn duration_message(field: &str) -> String {
    format!("{field} must be a duration such as 90s, 15m, 8h or 1h30m, at most {MAX_DURATION}")
}

/// The CEL rule for a duration field: the shape, then the maximum (`duration()` parses the
/// same notation; a number too large to parse fails the rule as well).
pub fn duration_rule(field: &str) -> Rule {
    Rule::new(format!(
        "self.matches('{DURATION}') && duration(self) <= duration('{MAX_DURATION}')"
    ))
    .message(kube::core::Message::Message(duration_message(field)))
}

pub fn permission_set_message(field: &str) -> String {
    format!("{field} must be a permission set name (1-32 of [A-Za-z0-9+=,.@_-]) or ARN")
}

pub fn account_id_message(field: &str) -> String {
    format!("{field} must be a 12-digit account id")
}

pub fn role_arn_message(field: &str) -> String {
    format!(
        "{field} must be arn:<aws|aws-cn|aws-us-gov>:iam::<12-digit account>:role/<path/><name>"
    )
}

pub fn role_arn_length_message(field: &str) -> String {
    format!(
        "{field}: the role resource (role/<path/><name>) must be at most {ROLE_RESOURCE_MAX} characters"
    )
}

pub fn external_id_message(field: &str) -> String {
    format!("{field} must be 32-64 characters of [A-Za-z0-9+=,.@:/_-]")
}

// PermissionSet: AWS's formats and quotas (CreatePermissionSet, the Identity Center quotas).
pub const PERMISSION_SET_DESCRIPTION: &str = r"^[\t\n\r -~¡-ÿ]*$";
pub const PERMISSION_SET_DESCRIPTION_MESSAGE: &str =
    "spec.description must be 1-700 characters of printable Latin-1 (and tab or newline)";
/// Where the access portal sends a user: an http(s) URL.
pub const RELAY_STATE: &str = r"^https?://[A-Za-z0-9&$@#/%?=~_|!:,.;*+(){}-]+$";
pub const RELAY_STATE_MESSAGE: &str =
    "spec.relayState must be an http(s) URL of at most 240 characters";
/// An AWS managed policy: `arn:aws:iam::aws:policy/<path/><name>`.
pub const MANAGED_POLICY_ARN: &str = r"^arn:(aws|aws-cn|aws-us-gov):iam::aws:policy/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,128}$";
pub const MANAGED_POLICIES_MESSAGE: &str = "spec.managedPolicies must hold AWS managed policy ARNs such as arn:aws:iam::aws:policy/ReadOnlyAccess";
pub const MANAGED_POLICIES_UNIQUE: &str = "spec.managedPolicies must not name a policy twice";
pub const CUSTOMER_POLICIES_UNIQUE: &str =
    "spec.customerManagedPolicies must not name a policy (name and path) twice";
/// An IAM action or action pattern: `*`, or `service:Action` with IAM's `*` and `?` wildcards.
pub const IAM_ACTION: &str = r"^(\*|[A-Za-z0-9*?-]+:[A-Za-z0-9*?]+)$";
/// An IAM policy name and path.
pub const POLICY_NAME: &str = r"^[A-Za-z0-9+=,.@_-]{1,128}$";
pub const POLICY_PATH: &str = r"^/([A-Za-z0-9.,+@=_-]+/)*$";
/// A tag key and value (the ASCII part of AWS's character set; keys may not start `aws:`).
pub const TAG_KEY: &str = r"^[A-Za-z0-9 _.:/=+@-]{1,128}$";
pub const TAG_VALUE: &str = r"^[A-Za-z0-9 _.:/=+@-]{0,256}$";
pub const TAG_KEY_MESSAGE: &str =
    "spec.tags[].key must be 1-128 of A-Z a-z 0-9 space _ . : / = + @ - and not start with aws:";
pub const TAG_VALUE_MESSAGE: &str =
    "spec.tags[].value must be at most 256 of A-Z a-z 0-9 space _ . : / = + @ -";
pub const PERMISSION_SET_NAME_FIXED: &str = "spec.name and spec.connectorRef cannot change: a permission set of another name or organization is another object";
/// Identity Center's quota of AWS managed and customer managed policies per permission set.
pub const PERMISSION_SET_POLICIES_MAX: usize = 20;
pub const PERMISSION_SET_POLICY_COUNT: &str = "spec.managedPolicies and spec.customerManagedPolicies together may hold at most 20 policies (Identity Center's quota)";
pub const BOUNDARY_ONE_OF: &str =
    "spec.permissionsBoundary needs exactly one of managedPolicyArn and customerManagedPolicy";
/// The shortest and longest session of a permission set.
pub const SESSION_MIN: &str = "1h";
pub const SESSION_MAX: &str = "12h";

pub fn permission_set_name_message(field: &str) -> String {
    format!("{field} must be 1-32 of [A-Za-z0-9+=,.@_-]")
}

pub fn managed_policy_message(field: &str) -> String {
    format!(
        "{field} must be an AWS managed policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess"
    )
}

pub fn policy_name_message(field: &str) -> String {
    format!("{field} must be an IAM policy name: 1-128 of [A-Za-z0-9+=,.@_-]")
}

pub fn policy_path_message(field: &str) -> String {
    format!("{field} must be an IAM path such as / or /team/")
}

pub fn session_duration_message(field: &str) -> String {
    format!("{field} must be a duration from {SESSION_MIN} to {SESSION_MAX}, such as 1h, 90m or 8h")
}

/// The CEL rule for a permission set's session duration.
pub fn session_duration_rule(field: &str) -> Rule {
    Rule::new(format!(
        "self.matches('{DURATION}') && duration(self) >= duration('{SESSION_MIN}') && duration(self) <= duration('{SESSION_MAX}')"
    ))
    .message(kube::core::Message::Message(session_duration_message(field)))
}

// The identity kinds: AWS's formats (Identity Store CreateUser/CreateGroup, IAM CreateUser).
/// An Identity Center user name.
pub const SSO_USER_NAME: &str = r"^[A-Za-z0-9+=,.@_-]{1,128}$";
/// Printable text of the Basic Multilingual Plane (no control characters but tab and
/// newline): the identity store's names, titles and descriptions.
pub const IDENTITY_TEXT: &str = concat!(r"^[\t\n\r -~", "\u{a0}-\u{fffd}", "]+$");
pub const IDENTITY_TEXT_MESSAGE: &str = "spec.displayName, spec.name, spec.title and spec.description must be printable text of at most 1024 characters";
pub const EMAIL: &str = r"^[^@ \t\n\r]+@[^@ \t\n\r]+[.][^@ \t\n\r]+$";
pub const EMAIL_MESSAGE: &str =
    "spec.emails[].value must be an email address such as jane@example.com";
pub const ONE_PRIMARY_EMAIL: &str =
    "spec.emails must hold exactly one address, marked primary: true (Identity Center keeps one)";
pub const LOCALE: &str = r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$";
pub const LOCALE_MESSAGE: &str = "spec.locale must be a locale such as en-US";
pub const TIMEZONE: &str = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$";
pub const TIMEZONE_MESSAGE: &str =
    "spec.timezone must be a time zone of the IANA database such as Europe/Berlin";
pub const USER_NAME_FIXED: &str = "spec.userName and spec.connectorRef cannot change: a user of another name or organization is another person, declared by another object";
pub const GROUP_CONNECTOR_FIXED: &str =
    "spec.connectorRef cannot change: a group of another organization is another object";
pub const IAM_USER_FIXED: &str = "spec.userName, spec.account and spec.connectorRef cannot change: a user of another name or account is another user, declared by another object";
/// An IAM user name.
pub const IAM_USER_NAME: &str = r"^[A-Za-z0-9+=,.@_-]{1,64}$";
/// An IAM path: `/` or `/a/b/` of printable ASCII.
pub const IAM_PATH: &str = r"^(/|/[!-~]+/)$";
/// A permissions boundary of an IAM user: an AWS managed policy or one of an account.
pub const BOUNDARY_POLICY_ARN: &str = r"^arn:(aws|aws-cn|aws-us-gov):iam::(aws|[0-9]{12}):policy/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,128}$";
/// IAM's quota of tags per user, less the one the operator adds to users it creates.
pub const IAM_USER_TAGS_MAX: usize = 49;

pub fn sso_user_name_message(field: &str) -> String {
    format!("{field} must be 1-128 of [A-Za-z0-9+=,.@_-]")
}

pub fn iam_user_name_message(field: &str) -> String {
    format!("{field} must be an IAM user name: 1-64 of [A-Za-z0-9+=,.@_-]")
}

pub fn iam_path_message(field: &str) -> String {
    format!("{field} must be an IAM path such as / or /people/ (at most 512 characters)")
}

pub fn boundary_arn_message(field: &str) -> String {
    format!(
        "{field} must be a managed policy ARN such as arn:aws:iam::aws:policy/PowerUserAccess or arn:aws:iam::123456789012:policy/boundary"
    )
}
pub const IAM_ACCOUNTS_MESSAGE: &str =
    "spec.identityPolicy.iamUsers.allowedAccounts must hold 12-digit account ids";
