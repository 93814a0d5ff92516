//! The Rust side of validation: the same rules as the CRD's CEL, for the controllers (which
//! must never act on an object the apiserver would have refused, e.g. one stored before the CRD
//! carried a rule) and for the offline `validate` command.

use std::sync::LazyLock;

use regex_lite::Regex;
use serde::Serialize;

use super::conditions::{ConditionStatus, ConditionUpdate};
use super::connector::{AwsConnectorSpec, NamespacesFrom};
use super::grant::{AccessGrantSpec, PrincipalKind, TargetKind};
use super::{duration, rules};

/// One rule broken by one field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Joins the messages of several errors into one condition message.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn regex(pattern: &str) -> Regex {
    // The patterns are compile-time constants pinned by unit tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in pattern {pattern}: {e}"))
}

static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| regex(rules::ROLE_ARN));
static EXTERNAL_ID: LazyLock<Regex> = LazyLock::new(|| regex(rules::EXTERNAL_ID));
static REGION: LazyLock<Regex> = LazyLock::new(|| regex(rules::REGION));
static ACCOUNT_ID: LazyLock<Regex> = LazyLock::new(|| regex(rules::ACCOUNT_ID));
static SESSION_NAME: LazyLock<Regex> = LazyLock::new(|| regex(rules::SESSION_NAME));
static DURATION: LazyLock<Regex> = LazyLock::new(|| regex(rules::DURATION));
static PERMISSION_SET_NAME: LazyLock<Regex> = LazyLock::new(|| regex(rules::PERMISSION_SET_NAME));
static PERMISSION_SET_ARN: LazyLock<Regex> = LazyLock::new(|| regex(rules::PERMISSION_SET_ARN));

/// Checks an IAM role ARN, pushing what is wrong with it.
pub fn check_role_arn(field: &str, arn: &str, errors: &mut Vec<FieldError>) {
    if !ROLE_ARN.is_match(arn) {
        errors.push(FieldError::new(field, rules::role_arn_message(field)));
        return;
    }
    // The same arithmetic as the CEL rule: everything after "<account>:".
    let resource_len = arn
        .find(":role/")
        .map_or(arn.len(), |at| arn.len() - at - 1);
    if resource_len > rules::ROLE_RESOURCE_MAX {
        errors.push(FieldError::new(
            field,
            rules::role_arn_length_message(field),
        ));
    }
}

/// Checks an external ID without ever echoing it.
pub fn check_external_id(field: &str, id: &str, errors: &mut Vec<FieldError>) {
    if !EXTERNAL_ID.is_match(id) {
        errors.push(FieldError::new(field, rules::external_id_message(field)));
    }
}

fn check_pattern(
    field: &str,
    value: &str,
    re: &Regex,
    message: fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) {
    if !re.is_match(value) {
        errors.push(FieldError::new(field, message(field)));
    }
}

fn check_duration(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    if !DURATION.is_match(value) || duration::parse(value).is_none() {
        errors.push(FieldError::new(field, rules::duration_message(field)));
    }
}

/// The outcome of validating an AwsConnector, split by the condition each error belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectorVerdict {
    pub role_arn: Vec<FieldError>,
    pub external_id: Vec<FieldError>,
    pub other: Vec<FieldError>,
}

impl ConnectorVerdict {
    pub fn is_valid(&self) -> bool {
        self.role_arn.is_empty() && self.external_id.is_empty() && self.other.is_empty()
    }

    pub fn errors(&self) -> Vec<FieldError> {
        [&self.role_arn, &self.external_id, &self.other]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The conditions the validation phase decides: `RoleArnValid`, `ExternalIdValid`, and a
    /// False `Ready` when anything is invalid.
    pub fn conditions(&self) -> Vec<ConditionUpdate> {
        let mut out = vec![
            verdict_condition("RoleArnValid", "InvalidRoleArn", &self.role_arn),
            verdict_condition("ExternalIdValid", "InvalidExternalId", &self.external_id),
        ];
        if !self.is_valid() {
            out.push(ConditionUpdate::new(
                "Ready",
                ConditionStatus::False,
                "InvalidSpec",
                describe(&self.errors()),
            ));
        }
        out
    }
}

fn verdict_condition(
    type_: &'static str,
    invalid_reason: &str,
    errors: &[FieldError],
) -> ConditionUpdate {
    if errors.is_empty() {
        ConditionUpdate::new(type_, ConditionStatus::True, "Valid", "valid")
    } else {
        ConditionUpdate::new(
            type_,
            ConditionStatus::False,
            invalid_reason,
            describe(errors),
        )
    }
}

/// Validates an AwsConnector's spec against every rule of the API.
pub fn validate_connector(spec: &AwsConnectorSpec) -> ConnectorVerdict {
    let mut verdict = ConnectorVerdict::default();
    let auth = &spec.auth;

    if let Some(arn) = &auth.role_arn {
        check_role_arn("spec.auth.roleArn", arn, &mut verdict.role_arn);
    }
    if let Some(arn) = &auth.global_role_arn {
        check_role_arn("spec.auth.globalRoleArn", arn, &mut verdict.role_arn);
        if auth.role_arn.is_none() {
            verdict.role_arn.push(FieldError::new(
                "spec.auth.globalRoleArn",
                rules::GLOBAL_ROLE_NEEDS_ROLE,
            ));
        }
    }

    let external = &mut verdict.external_id;
    if let Some(id) = &auth.external_id {
        check_external_id("spec.auth.externalId", id, external);
    }
    if let Some(id) = &auth.global_external_id {
        check_external_id("spec.auth.globalExternalId", id, external);
        if auth.global_role_arn.is_none() {
            external.push(FieldError::new(
                "spec.auth.globalExternalId",
                rules::GLOBAL_EXTERNAL_ID_NEEDS_GLOBAL_ROLE,
            ));
        }
    }
    let has_external_id = auth.external_id.is_some() || auth.external_id_secret_ref.is_some();
    if auth.external_id.is_some() && auth.external_id_secret_ref.is_some() {
        external.push(FieldError::new(
            "spec.auth.externalIdSecretRef",
            rules::EXTERNAL_ID_ONE_SOURCE,
        ));
    }
    if has_external_id && auth.role_arn.is_none() {
        external.push(FieldError::new(
            "spec.auth.externalId",
            rules::EXTERNAL_ID_NEEDS_ROLE,
        ));
    }
    if auth.global_role_arn.is_some() && !has_external_id {
        external.push(FieldError::new(
            "spec.auth.externalId",
            rules::TWO_HOP_NEEDS_EXTERNAL_ID,
        ));
    }
    if let Some(secret) = &auth.external_id_secret_ref
        && (secret.name.is_empty() || secret.key.is_empty())
    {
        external.push(FieldError::new(
            "spec.auth.externalIdSecretRef",
            "spec.auth.externalIdSecretRef needs a name and a key",
        ));
    }

    let other = &mut verdict.other;
    check_pattern(
        "spec.region",
        &spec.region,
        &REGION,
        rules::region_message,
        other,
    );
    if let Some(region) = &spec.sso_region {
        check_pattern(
            "spec.ssoRegion",
            region,
            &REGION,
            rules::region_message,
            other,
        );
    }
    if let Some(name) = &auth.session_name {
        check_pattern(
            "spec.auth.sessionName",
            name,
            &SESSION_NAME,
            rules::session_name_message,
            other,
        );
    }
    check_duration("spec.sync.interval", &spec.sync.interval, other);
    let policy = &spec.grant_policy;
    if policy.allowed_namespaces.from == NamespacesFrom::Selector
        && policy.allowed_namespaces.selector.is_none()
    {
        other.push(FieldError::new(
            "spec.grantPolicy.allowedNamespaces.selector",
            rules::SELECTOR_NEEDED,
        ));
    }
    if policy
        .allowed_accounts
        .iter()
        .any(|a| !ACCOUNT_ID.is_match(a))
    {
        other.push(FieldError::new(
            "spec.grantPolicy.allowedAccounts",
            rules::ALLOWED_ACCOUNTS_MESSAGE,
        ));
    }
    if let Some(max) = &policy.max_duration {
        check_duration("spec.grantPolicy.maxDuration", max, other);
    }
    verdict
}

/// Validates an AccessGrant's spec: the kind rules and every field's format.
pub fn validate_grant(spec: &AccessGrantSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let (principal, target) = (&spec.principal, &spec.target);

    if spec.connector_ref.name.is_empty() {
        errors.push(FieldError::new(
            "spec.connectorRef.name",
            "spec.connectorRef.name is required",
        ));
    }
    if principal.name.is_some() == principal.id.is_some() {
        errors.push(FieldError::new(
            "spec.principal",
            rules::PRINCIPAL_NAME_OR_ID,
        ));
    }
    if [&principal.name, &principal.id]
        .into_iter()
        .flatten()
        .any(|v| v.is_empty())
    {
        errors.push(FieldError::new(
            "spec.principal",
            "spec.principal.name and spec.principal.id must not be empty",
        ));
    }

    match target.kind {
        TargetKind::PermissionSet => {
            if !matches!(
                principal.kind,
                PrincipalKind::SsoUser | PrincipalKind::SsoGroup
            ) {
                errors.push(FieldError::new(
                    "spec.principal.kind",
                    rules::PERMISSION_SET_PRINCIPAL,
                ));
            }
            if target.permission_set.is_none() || target.account_id.is_none() {
                errors.push(FieldError::new("spec.target", rules::PERMISSION_SET_FIELDS));
            }
            if target.group.is_some() {
                errors.push(FieldError::new(
                    "spec.target.group",
                    rules::PERMISSION_SET_NO_GROUP,
                ));
            }
        }
        TargetKind::SsoGroupMembership | TargetKind::IamGroupMembership => {
            let (needed, message) = if target.kind == TargetKind::SsoGroupMembership {
                (PrincipalKind::SsoUser, rules::SSO_MEMBERSHIP_PRINCIPAL)
            } else {
                (PrincipalKind::IamUser, rules::IAM_MEMBERSHIP_PRINCIPAL)
            };
            if principal.kind != needed {
                errors.push(FieldError::new("spec.principal.kind", message));
            }
            if target.group.as_deref().is_none_or(str::is_empty) {
                errors.push(FieldError::new(
                    "spec.target.group",
                    rules::MEMBERSHIP_NEEDS_GROUP,
                ));
            }
            if target.permission_set.is_some() || target.account_id.is_some() {
                errors.push(FieldError::new("spec.target", rules::MEMBERSHIP_NO_ACCOUNT));
            }
        }
    }
    if let Some(ps) = &target.permission_set
        && !PERMISSION_SET_NAME.is_match(ps)
        && !PERMISSION_SET_ARN.is_match(ps)
    {
        errors.push(FieldError::new(
            "spec.target.permissionSet",
            rules::permission_set_message("spec.target.permissionSet"),
        ));
    }
    if let Some(account) = &target.account_id {
        check_pattern(
            "spec.target.accountId",
            account,
            &ACCOUNT_ID,
            rules::account_id_message,
            &mut errors,
        );
    }
    if spec.duration.is_some() && spec.expires_at.is_some() {
        errors.push(FieldError::new("spec.duration", rules::ONE_EXPIRY));
    }
    if let Some(d) = &spec.duration {
        check_duration("spec.duration", d, &mut errors);
    }
    if let Some(at) = &spec.expires_at
        && at.parse::<jiff::Timestamp>().is_err()
    {
        errors.push(FieldError::new(
            "spec.expiresAt",
            "spec.expiresAt must be an RFC 3339 time such as 2026-01-31T18:00:00Z",
        ));
    }
    errors
}

/// The conditions an invalid AccessGrant gets: `Granted` and `Ready` False with `InvalidSpec`.
pub fn grant_conditions(errors: &[FieldError]) -> Vec<ConditionUpdate> {
    let message = describe(errors);
    vec![
        ConditionUpdate::new("Granted", ConditionStatus::False, "InvalidSpec", &message),
        ConditionUpdate::new("Ready", ConditionStatus::False, "InvalidSpec", message),
    ]
}
