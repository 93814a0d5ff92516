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
    pub fn new(field: &str, message: impl Into<String>) -> Self {
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

pub(super) fn regex(pattern: &str) -> Regex {
    // The patterns are compile-time constants pinned by unit tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in pattern {pattern}: {e}"))
}

static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| regex(rules::ROLE_ARN));
static EXTERNAL_ID: LazyLock<Regex> = LazyLock::new(|| regex(rules::EXTERNAL_ID));
static REGION: LazyLock<Regex> = LazyLock::new(|| regex(rules::REGION));
static ACCOUNT_ID: LazyLock<Regex> = LazyLock::new(|| regex(rules::ACCOUNT_ID));
static SESSION_NAME: LazyLock<Regex> = LazyLock::new(|| regex(rules::SESSION_NAME));
static ROLE_NAME: LazyLock<Regex> = LazyLock::new(|| regex(rules::ROLE_NAME));
static ORGANIZATIONAL_UNIT: LazyLock<Regex> = LazyLock::new(|| regex(rules::ORGANIZATIONAL_UNIT));
static DURATION: LazyLock<Regex> = LazyLock::new(|| regex(rules::DURATION));
static PERMISSION_SET_NAME: LazyLock<Regex> = LazyLock::new(|| regex(rules::PERMISSION_SET_NAME));
static PERMISSION_SET_ARN: LazyLock<Regex> = LazyLock::new(|| regex(rules::PERMISSION_SET_ARN));
pub(super) static IAM_ACTION: LazyLock<Regex> = LazyLock::new(|| regex(rules::IAM_ACTION));

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
    if !DURATION.is_match(value) || duration::parse(value).is_none_or(|d| d > duration::MAX) {
        errors.push(FieldError::new(field, rules::duration_message(field)));
    }
}

/// A permission set's session: a duration from 1h to 12h.
pub(super) fn check_session_duration(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    let bounds = duration::parse(rules::SESSION_MIN)..=duration::parse(rules::SESSION_MAX);
    if !DURATION.is_match(value) || !bounds.contains(&duration::parse(value)) {
        errors.push(FieldError::new(
            field,
            rules::session_duration_message(field),
        ));
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
            verdict_condition(
                "RoleArnValid",
                "InvalidRoleArn",
                "the role ARNs are valid",
                &self.role_arn,
            ),
            verdict_condition(
                "ExternalIdValid",
                "InvalidExternalId",
                "the external IDs are valid",
                &self.external_id,
            ),
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
    valid_message: &str,
    errors: &[FieldError],
) -> ConditionUpdate {
    if errors.is_empty() {
        ConditionUpdate::new(type_, ConditionStatus::True, "Valid", valid_message)
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
    }
    let has_global_external_id =
        auth.global_external_id.is_some() || auth.global_external_id_secret_ref.is_some();
    if has_global_external_id && auth.global_role_arn.is_none() {
        external.push(FieldError::new(
            "spec.auth.globalExternalId",
            rules::GLOBAL_EXTERNAL_ID_NEEDS_GLOBAL_ROLE,
        ));
    }
    if auth.global_external_id.is_some() && auth.global_external_id_secret_ref.is_some() {
        external.push(FieldError::new(
            "spec.auth.globalExternalIdSecretRef",
            rules::GLOBAL_EXTERNAL_ID_ONE_SOURCE,
        ));
    }
    if let Some(secret) = &auth.global_external_id_secret_ref
        && (secret.name.is_empty() || secret.key.is_empty())
    {
        external.push(FieldError::new(
            "spec.auth.globalExternalIdSecretRef",
            "spec.auth.globalExternalIdSecretRef needs a name and a key",
        ));
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
    if let Some(members) = &spec.sync.member_accounts {
        check_pattern(
            "spec.sync.memberAccounts.roleName",
            &members.role_name,
            &ROLE_NAME,
            rules::role_name_message,
            other,
        );
        if !(1..=32).contains(&members.concurrency) {
            other.push(FieldError::new(
                "spec.sync.memberAccounts.concurrency",
                "spec.sync.memberAccounts.concurrency must be from 1 to 32",
            ));
        }
        if let Some(secret) = &members.external_id_secret_ref
            && (secret.name.is_empty() || secret.key.is_empty())
        {
            verdict.external_id.push(FieldError::new(
                "spec.sync.memberAccounts.externalIdSecretRef",
                "spec.sync.memberAccounts.externalIdSecretRef needs a name and a key",
            ));
        }
    }
    let policy = &spec.grant_policy;
    if policy.allowed_namespaces.from == NamespacesFrom::Selector
        && policy.allowed_namespaces.selector.is_none()
    {
        other.push(FieldError::new(
            "spec.grantPolicy.allowedNamespaces.selector",
            rules::selector_needed("grantPolicy"),
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
    let sets = &spec.permission_set_policy;
    if sets.allowed_namespaces.from == NamespacesFrom::Selector
        && sets.allowed_namespaces.selector.is_none()
    {
        other.push(FieldError::new(
            "spec.permissionSetPolicy.allowedNamespaces.selector",
            rules::selector_needed("permissionSetPolicy"),
        ));
    }
    if let Some(max) = &sets.max_session_duration {
        check_session_duration("spec.permissionSetPolicy.maxSessionDuration", max, other);
    }
    for (index, action) in sets.denied_actions.iter().enumerate() {
        if !IAM_ACTION.is_match(action) {
            other.push(FieldError::new(
                &format!("spec.permissionSetPolicy.deniedActions[{index}]"),
                format!("spec.permissionSetPolicy.deniedActions[{index}] must be an action pattern such as iam:* or organizations:*"),
            ));
        }
    }
    let identities = &spec.identity_policy;
    for (rule, namespaces) in [
        ("identityPolicy.users", &identities.users.allowed_namespaces),
        (
            "identityPolicy.groups",
            &identities.groups.allowed_namespaces,
        ),
        (
            "identityPolicy.iamUsers",
            &identities.iam_users.allowed_namespaces,
        ),
    ] {
        if namespaces.from == NamespacesFrom::Selector && namespaces.selector.is_none() {
            other.push(FieldError::new(
                &format!("spec.{rule}.allowedNamespaces.selector"),
                rules::selector_needed(rule),
            ));
        }
    }
    if identities
        .iam_users
        .allowed_accounts
        .iter()
        .any(|a| !ACCOUNT_ID.is_match(a))
    {
        other.push(FieldError::new(
            "spec.identityPolicy.iamUsers.allowedAccounts",
            rules::IAM_ACCOUNTS_MESSAGE,
        ));
    }
    if policy
        .allowed_organizational_units
        .iter()
        .any(|u| !ORGANIZATIONAL_UNIT.is_match(u))
    {
        other.push(FieldError::new(
            "spec.grantPolicy.allowedOrganizationalUnits",
            rules::ALLOWED_UNITS_MESSAGE,
        ));
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
            if target.permission_set.is_none()
                || (target.account_id.is_none() && target.organizational_unit.is_none())
            {
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
            if target.permission_set.is_some()
                || target.account_id.is_some()
                || target.organizational_unit.is_some()
            {
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
    if target.account_id.is_some() && target.organizational_unit.is_some() {
        errors.push(FieldError::new(
            "spec.target.organizationalUnit",
            rules::ACCOUNT_OR_UNIT,
        ));
    }
    if let Some(unit) = &target.organizational_unit {
        check_pattern(
            "spec.target.organizationalUnit",
            unit,
            &ORGANIZATIONAL_UNIT,
            rules::organizational_unit_message,
            &mut errors,
        );
    }
    if spec.duration.is_some() && spec.expires_at.is_some() {
        errors.push(FieldError::new("spec.duration", rules::ONE_EXPIRY));
    }
    if let Some(d) = &spec.duration {
        check_duration("spec.duration", d, &mut errors);
    }
    // RFC 3339 as the API server's `format: date-time` reads it: a `T` between date and time
    // (jiff alone would also take a space).
    if let Some(at) = &spec.expires_at
        && (at.parse::<jiff::Timestamp>().is_err()
            || !matches!(at.as_bytes().get(10), Some(b'T' | b't')))
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

#[cfg(test)]
pub(crate) mod tests {
    //! Every rule, table-driven, checked twice: by the Rust validator and by evaluating the
    //! CRD's own CEL rules the way the apiserver does at admission. The two must agree.

    use super::*;
    use crate::api::{AccessGrant, AwsConnector};
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    const ACCOUNT: &str = "123456789012";
    const EXT32: &str = "abcdefghijklmnopqrstuvwxyz012345";
    const EXT64: &str = "abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz+=,.@:";

    fn role(name: &str) -> String {
        format!("arn:aws:iam::{ACCOUNT}:role/{name}")
    }

    /// The CRD's CEL rules, compiled once per kind (compiling is most of the cost).
    struct CelRules {
        validator: kube::core::cel::Validator,
        compiled: kube::core::cel::CompiledSchema,
    }

    impl CelRules {
        fn of<K: CustomResourceExt>() -> Self {
            let crd = K::crd();
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("the CRD has a schema");
            let schema = serde_json::to_value(schema).expect("schema is JSON");
            let compiled = kube::core::cel::compile_schema(&schema);
            assert!(
                !compiled.has_errors(),
                "{:?}",
                compiled.compilation_errors()
            );
            Self {
                validator: kube::core::cel::Validator::new(),
                compiled,
            }
        }

        fn verdict(&self, object: &Value) -> Result<(), String> {
            self.validator
                .validate_compiled(&self.compiled, object, None)
                .map_err(|e| format!("{e:?}"))
        }
    }

    /// Runs the CRD's CEL rules over `object`.
    pub(crate) fn cel_verdict<K: CustomResourceExt>(object: &Value) -> Result<(), String> {
        CelRules::of::<K>().verdict(object)
    }

    fn connector(spec: Value) -> Value {
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
               "metadata": {"name": "org", "namespace": "aws"}, "spec": spec})
    }

    /// Checks one connector case with both validators; returns the Rust verdict.
    fn check_connector(case: &str, spec: Value, valid: bool) -> ConnectorVerdict {
        let object = connector(spec.clone());
        let parsed: AwsConnectorSpec =
            serde_json::from_value(spec).unwrap_or_else(|e| panic!("{case}: does not decode: {e}"));
        let verdict = validate_connector(&parsed);
        assert_eq!(
            verdict.is_valid(),
            valid,
            "{case}: Rust says {:?}",
            verdict.errors()
        );
        let cel = cel_verdict::<AwsConnector>(&object);
        assert_eq!(cel.is_ok(), valid, "{case}: CEL says {cel:?}");
        verdict
    }

    fn auth(value: Value) -> Value {
        json!({"region": "us-east-1", "auth": value})
    }

    #[test]
    fn role_arns() {
        let long_path = format!("{}name", format!("{}/", "a".repeat(60)).repeat(8));
        let too_long_path = format!("{}name", format!("{}/", "a".repeat(60)).repeat(9));
        let cases: Vec<(&str, String, bool)> = vec![
            ("plain", role("access-operator"), true),
            ("with path", role("team/ops/access-operator"), true),
            ("every allowed character", role("a+=,.@_-Z9"), true),
            (
                "china partition",
                format!("arn:aws-cn:iam::{ACCOUNT}:role/x"),
                true,
            ),
            (
                "govcloud partition",
                format!("arn:aws-us-gov:iam::{ACCOUNT}:role/x"),
                true,
            ),
            ("64-character name", role(&"n".repeat(64)), true),
            ("resource of 497 characters", role(&long_path), true),
            ("empty role name", role(""), false),
            ("path without a name", role("team/"), false),
            ("empty path segment", role("team//x"), false),
            ("65-character name", role(&"n".repeat(65)), false),
            ("resource over 512 characters", role(&too_long_path), false),
            (
                "13-digit account",
                "arn:aws:iam::1234567890123:role/x".into(),
                false,
            ),
            (
                "11-digit account",
                "arn:aws:iam::12345678901:role/x".into(),
                false,
            ),
            (
                "letters in the account",
                "arn:aws:iam::12345678901a:role/x".into(),
                false,
            ),
            (
                "unknown partition",
                format!("arn:aws-xx:iam::{ACCOUNT}:role/x"),
                false,
            ),
            (
                "wrong service",
                format!("arn:aws:sts::{ACCOUNT}:role/x"),
                false,
            ),
            (
                "a region in an IAM ARN",
                format!("arn:aws:iam:us-east-1:{ACCOUNT}:role/x"),
                false,
            ),
            (
                "a user, not a role",
                format!("arn:aws:iam::{ACCOUNT}:user/alice"),
                false,
            ),
            ("space in the name", role("a b"), false),
            ("asterisk in the name", role("a*"), false),
            ("no arn prefix", format!("aws:iam::{ACCOUNT}:role/x"), false),
            ("trailing text", format!("{} ", role("x")), false),
            ("empty", String::new(), false),
        ];
        for (case, arn, valid) in cases {
            let verdict = check_connector(case, auth(json!({"roleArn": arn})), valid);
            if !valid {
                assert!(
                    !verdict.role_arn.is_empty(),
                    "{case}: error belongs to RoleArnValid"
                );
                assert!(verdict.external_id.is_empty(), "{case}");
                assert!(
                    verdict.role_arn[0].message.contains("spec.auth.roleArn"),
                    "{case}"
                );
            }
            // The same rules hold for the first hop.
            let two_hop =
                auth(json!({"globalRoleArn": arn, "roleArn": role("x"), "externalId": EXT32}));
            check_connector(&format!("{case} (globalRoleArn)"), two_hop, valid);
        }
    }

    #[test]
    fn external_ids() {
        let cases: Vec<(&str, Value, bool)> = vec![
            (
                "32 characters",
                json!({"roleArn": role("x"), "externalId": EXT32}),
                true,
            ),
            (
                "64 characters",
                json!({"roleArn": role("x"), "externalId": EXT64}),
                true,
            ),
            (
                "no external id, single hop",
                json!({"roleArn": role("x")}),
                true,
            ),
            (
                "31 characters",
                json!({"roleArn": role("x"), "externalId": &EXT32[1..]}),
                false,
            ),
            (
                "65 characters",
                json!({"roleArn": role("x"), "externalId": format!("{EXT64}a")}),
                false,
            ),
            (
                "a space",
                json!({"roleArn": role("x"), "externalId": format!("{} ", &EXT32[1..])}),
                false,
            ),
            (
                "a hash",
                json!({"roleArn": role("x"), "externalId": format!("{}#", &EXT32[1..])}),
                false,
            ),
            (
                "external id without a role",
                json!({"externalId": EXT32}),
                false,
            ),
            (
                "two-hop with both external ids",
                json!({"globalRoleArn": role("broker"), "globalExternalId": EXT64, "roleArn": role("x"), "externalId": EXT32}),
                true,
            ),
            (
                "two-hop with the external id from a Secret",
                json!({"globalRoleArn": role("broker"), "roleArn": role("x"), "externalIdSecretRef": {"name": "s", "key": "k"}}),
                true,
            ),
            (
                "two-hop without an external id",
                json!({"globalRoleArn": role("broker"), "roleArn": role("x")}),
                false,
            ),
            (
                "two-hop with only the global external id",
                json!({"globalRoleArn": role("broker"), "globalExternalId": EXT32, "roleArn": role("x")}),
                false,
            ),
            (
                "global external id without a global role",
                json!({"roleArn": role("x"), "globalExternalId": EXT32}),
                false,
            ),
            (
                "external id twice",
                json!({"roleArn": role("x"), "externalId": EXT32, "externalIdSecretRef": {"name": "s", "key": "k"}}),
                false,
            ),
            (
                "invalid global external id",
                json!({"globalRoleArn": role("broker"), "globalExternalId": "short", "roleArn": role("x"), "externalId": EXT32}),
                false,
            ),
            (
                "global external id from a Secret",
                json!({"globalRoleArn": role("broker"), "globalExternalIdSecretRef": {"name": "g", "key": "k"}, "roleArn": role("x"), "externalId": EXT32}),
                true,
            ),
            (
                "global external id twice",
                json!({"globalRoleArn": role("broker"), "globalExternalId": EXT32, "globalExternalIdSecretRef": {"name": "g", "key": "k"}, "roleArn": role("x"), "externalId": EXT32}),
                false,
            ),
            (
                "global external id Secret without a global role",
                json!({"roleArn": role("x"), "globalExternalIdSecretRef": {"name": "g", "key": "k"}}),
                false,
            ),
        ];
        for (case, value, valid) in cases {
            let verdict = check_connector(case, auth(value), valid);
            if !valid {
                assert!(
                    !verdict.external_id.is_empty(),
                    "{case}: error belongs to ExternalIdValid"
                );
            }
            // An external ID is a shared secret: no message may echo it.
            for error in verdict.errors() {
                assert!(
                    !error.message.contains(&EXT32[1..]),
                    "{case}: {}",
                    error.message
                );
            }
        }
    }

    #[test]
    fn global_role_without_role_is_a_role_arn_error() {
        let verdict = check_connector(
            "globalRoleArn alone",
            auth(json!({"globalRoleArn": role("broker"), "externalId": EXT32})),
            false,
        );
        assert!(
            verdict
                .role_arn
                .iter()
                .any(|e| e.message == rules::GLOBAL_ROLE_NEEDS_ROLE)
        );
    }

    #[test]
    fn other_connector_fields() {
        let base = |extra: Value| {
            let mut spec = json!({"region": "us-east-1"});
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            spec
        };
        let cases: Vec<(&str, Value, bool)> = vec![
            ("minimal", base(json!({})), true),
            ("sso region", base(json!({"ssoRegion": "eu-west-1"})), true),
            (
                "govcloud region",
                base(json!({"region": "us-gov-west-1"})),
                true,
            ),
            (
                "upper-case region",
                base(json!({"region": "US-EAST-1"})),
                false,
            ),
            (
                "region without dashes",
                base(json!({"region": "useast1"})),
                false,
            ),
            ("bad sso region", base(json!({"ssoRegion": "mars"})), false),
            (
                "interval 30m",
                base(json!({"sync": {"interval": "30m"}})),
                true,
            ),
            (
                "interval in days",
                base(json!({"sync": {"interval": "1d"}})),
                false,
            ),
            (
                "interval without unit",
                base(json!({"sync": {"interval": "60"}})),
                false,
            ),
            (
                "session name",
                base(json!({"auth": {"sessionName": "ops@prod"}})),
                true,
            ),
            (
                "session name too short",
                base(json!({"auth": {"sessionName": "x"}})),
                false,
            ),
            (
                "allowed accounts",
                base(json!({"grantPolicy": {"allowedAccounts": [ACCOUNT]}})),
                true,
            ),
            (
                "short allowed account",
                base(json!({"grantPolicy": {"allowedAccounts": [ACCOUNT, "12345"]}})),
                false,
            ),
            (
                "max duration",
                base(json!({"grantPolicy": {"maxDuration": "12h"}})),
                true,
            ),
            (
                "bad max duration",
                base(json!({"grantPolicy": {"maxDuration": "forever"}})),
                false,
            ),
            (
                "selector policy",
                base(
                    json!({"grantPolicy": {"allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"a": "b"}}}}}),
                ),
                true,
            ),
            (
                "selector policy without a selector",
                base(json!({"grantPolicy": {"allowedNamespaces": {"from": "Selector"}}})),
                false,
            ),
        ];
        for (case, spec, valid) in cases {
            let verdict = check_connector(case, spec, valid);
            if !valid {
                assert!(!verdict.other.is_empty(), "{case}");
                let conditions = verdict.conditions();
                let ready = conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .expect("Ready");
                assert_eq!(ready.reason, "InvalidSpec");
                assert!(
                    ready.message.contains("spec."),
                    "{case}: message names the field"
                );
            }
        }
    }

    fn grant(spec: Value) -> Value {
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessGrant",
               "metadata": {"name": "g", "namespace": "team"}, "spec": spec})
    }

    fn grant_spec(principal: Value, target: Value) -> Value {
        json!({"connectorRef": {"name": "org"}, "principal": principal, "target": target})
    }

    #[test]
    fn grant_kind_rules_and_fields() {
        let user = json!({"kind": "SsoUser", "name": "alice@example.com"});
        let group = json!({"kind": "SsoGroup", "name": "engineers"});
        let iam_user = json!({"kind": "IamUser", "name": "alice"});
        let ps =
            json!({"kind": "PermissionSet", "permissionSet": "ReadOnly", "accountId": ACCOUNT});
        let sso_member = json!({"kind": "SsoGroupMembership", "group": "engineers"});
        let iam_member = json!({"kind": "IamGroupMembership", "group": "developers"});
        let with = |base: &Value, extra: Value| {
            let mut v = base.clone();
            if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                v.extend(extra.clone());
            }
            v
        };
        let ps_arn = "arn:aws:sso:::permissionSet/ssoins-0123456789abcdef/ps-0123456789abcdef";
        let cases: Vec<(&str, Value, bool)> = vec![
            (
                "user on a permission set",
                grant_spec(user.clone(), ps.clone()),
                true,
            ),
            (
                "group on a permission set",
                grant_spec(group.clone(), ps.clone()),
                true,
            ),
            (
                "permission set by ARN",
                grant_spec(user.clone(), with(&ps, json!({"permissionSet": ps_arn}))),
                true,
            ),
            (
                "user joins an SSO group",
                grant_spec(user.clone(), sso_member.clone()),
                true,
            ),
            (
                "IAM user joins an IAM group",
                grant_spec(iam_user.clone(), iam_member.clone()),
                true,
            ),
            (
                "principal by id",
                grant_spec(json!({"kind": "SsoUser", "id": "9067-abc"}), ps.clone()),
                true,
            ),
            (
                "IAM user on a permission set",
                grant_spec(iam_user.clone(), ps.clone()),
                false,
            ),
            (
                "group joins an SSO group",
                grant_spec(group.clone(), sso_member.clone()),
                false,
            ),
            (
                "SSO user joins an IAM group",
                grant_spec(user.clone(), iam_member.clone()),
                false,
            ),
            (
                "permission set without account",
                grant_spec(
                    user.clone(),
                    json!({"kind": "PermissionSet", "permissionSet": "ReadOnly"}),
                ),
                false,
            ),
            (
                "permission set without a set",
                grant_spec(
                    user.clone(),
                    json!({"kind": "PermissionSet", "accountId": ACCOUNT}),
                ),
                false,
            ),
            (
                "permission set with a group",
                grant_spec(user.clone(), with(&ps, json!({"group": "x"}))),
                false,
            ),
            (
                "membership without a group",
                grant_spec(user.clone(), json!({"kind": "SsoGroupMembership"})),
                false,
            ),
            (
                "membership with an account",
                grant_spec(
                    user.clone(),
                    with(&sso_member, json!({"accountId": ACCOUNT})),
                ),
                false,
            ),
            (
                "13-digit account",
                grant_spec(
                    user.clone(),
                    with(&ps, json!({"accountId": "1234567890123"})),
                ),
                false,
            ),
            (
                "permission set name with a space",
                grant_spec(
                    user.clone(),
                    with(&ps, json!({"permissionSet": "Read Only"})),
                ),
                false,
            ),
            (
                "permission set name of 33 characters",
                grant_spec(
                    user.clone(),
                    with(&ps, json!({"permissionSet": "p".repeat(33)})),
                ),
                false,
            ),
            (
                "principal with name and id",
                grant_spec(
                    json!({"kind": "SsoUser", "name": "a", "id": "b"}),
                    ps.clone(),
                ),
                false,
            ),
            (
                "principal with neither",
                grant_spec(json!({"kind": "SsoUser"}), ps.clone()),
                false,
            ),
            (
                "duration",
                with(
                    &grant_spec(user.clone(), ps.clone()),
                    json!({"duration": "8h"}),
                ),
                true,
            ),
            (
                "bad duration",
                with(
                    &grant_spec(user.clone(), ps.clone()),
                    json!({"duration": "8 hours"}),
                ),
                false,
            ),
            (
                "a year is the longest duration",
                with(
                    &grant_spec(user.clone(), ps.clone()),
                    json!({"duration": "8760h"}),
                ),
                true,
            ),
            (
                "a second more than a year",
                with(
                    &grant_spec(user.clone(), ps.clone()),
                    json!({"duration": "8760h1s"}),
                ),
                false,
            ),
            (
                "a duration that would overflow",
                with(
                    &grant_spec(user.clone(), ps.clone()),
                    json!({"duration": "999999999h"}),
                ),
                false,
            ),
            (
                "duration and expiresAt",
                with(
                    &grant_spec(user.clone(), ps.clone()),
                    json!({"duration": "8h", "expiresAt": "2030-01-01T00:00:00Z"}),
                ),
                false,
            ),
            (
                "expiresAt",
                with(
                    &grant_spec(user.clone(), ps.clone()),
                    json!({"expiresAt": "2030-01-01T00:00:00Z"}),
                ),
                true,
            ),
            (
                "retain",
                with(
                    &grant_spec(user.clone(), ps.clone()),
                    json!({"deletionPolicy": "Retain"}),
                ),
                true,
            ),
        ];
        for (case, spec, valid) in cases {
            let parsed: AccessGrantSpec =
                serde_json::from_value(spec.clone()).unwrap_or_else(|e| panic!("{case}: {e}"));
            let errors = validate_grant(&parsed);
            assert_eq!(errors.is_empty(), valid, "{case}: Rust says {errors:?}");
            let cel = cel_verdict::<AccessGrant>(&grant(spec));
            assert_eq!(cel.is_ok(), valid, "{case}: CEL says {cel:?}");
            if !valid {
                let conditions = grant_conditions(&errors);
                assert!(
                    conditions
                        .iter()
                        .all(|c| c.reason == "InvalidSpec" && c.status == ConditionStatus::False)
                );
                assert!(
                    conditions[0].message.contains("spec."),
                    "{case}: {}",
                    conditions[0].message
                );
            }
        }
    }

    #[test]
    fn expiry_format_is_checked_in_rust_and_by_the_schema() {
        // The apiserver enforces `format: date-time` through the OpenAPI schema, not CEL.
        let spec = json!({"connectorRef": {"name": "org"},
            "principal": {"kind": "SsoUser", "name": "a"},
            "target": {"kind": "PermissionSet", "permissionSet": "P", "accountId": ACCOUNT},
            "expiresAt": "tomorrow"});
        let parsed: AccessGrantSpec = serde_json::from_value(spec.clone()).expect("decodes");
        let errors = validate_grant(&parsed);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.expiresAt");
        for (at, valid) in [
            ("2030-01-01 00:00:00Z", false),
            ("2030-01-01T00:00:00Z", true),
            ("2030-01-01T00:00:00+02:00", true),
        ] {
            let mut with = spec.clone();
            with["expiresAt"] = json!(at);
            let parsed: AccessGrantSpec = serde_json::from_value(with).expect("decodes");
            assert_eq!(validate_grant(&parsed).is_empty(), valid, "{at}");
        }
        let crd = serde_json::to_value(AccessGrant::crd()).expect("json");
        let format = crd.pointer(
            "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/expiresAt/format",
        );
        assert_eq!(
            format,
            Some(&json!("date-time")),
            "schema carries the format"
        );
    }

    /// A small deterministic generator (xorshift): the same cases on every run, no dependency.
    struct Cases(u64);

    impl Cases {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }

        /// `seed` with one to three edits: a character inserted, removed or replaced, or the
        /// text cut short.
        fn mutate(&mut self, seed: &str, alphabet: &[char]) -> String {
            let mut chars: Vec<char> = seed.chars().collect();
            for _ in 0..=self.below(3) {
                let at = self.below(chars.len() + 1);
                match self.below(4) {
                    0 => chars.insert(at, *self.pick(alphabet)),
                    1 if at < chars.len() => {
                        chars.remove(at);
                    }
                    2 if at < chars.len() => chars[at] = *self.pick(alphabet),
                    _ => chars.truncate(at.max(1)),
                }
            }
            chars.into_iter().collect()
        }
    }

    /// Beyond the hand-written tables: thousands of generated near-misses of valid values,
    /// each judged by the Rust rules and by the CRD's CEL rules, which must agree on every one.
    /// (A disagreement is a manifest `validate` passes and the apiserver refuses, or the
    /// reverse.)
    #[test]
    fn rust_and_cel_agree_on_generated_values() {
        let mut cases = Cases(0x5eed_1234_abcd_ef01);
        let (connector_rules, grant_rules) = (
            CelRules::of::<AwsConnector>(),
            CelRules::of::<AccessGrant>(),
        );
        let mut checked = [0usize; 2];
        let mut agree = |case: String, rust: bool, cel: Result<(), String>| {
            assert_eq!(rust, cel.is_ok(), "{case}: Rust says {rust}, CEL {cel:?}");
            checked[usize::from(rust)] += 1;
        };

        let arn_alphabet: Vec<char> = "arn:aws-cigovu/0123456789roleXYZ+=,.@_-: é*$^\\"
            .chars()
            .collect();
        let seeds = [
            role("access-operator"),
            format!("arn:aws-cn:iam::{ACCOUNT}:role/team/ops/x"),
            format!("arn:aws-us-gov:iam::{ACCOUNT}:role/a+=,.@_-Z9"),
            role(&"n".repeat(64)),
        ];
        for _ in 0..700 {
            let seed = cases.pick(&seeds).clone();
            let arn = cases.mutate(&seed, &arn_alphabet);
            let spec = auth(json!({"roleArn": arn, "externalId": EXT32}));
            let parsed: AwsConnectorSpec = serde_json::from_value(spec.clone()).expect("decodes");
            agree(
                format!("roleArn {arn:?}"),
                validate_connector(&parsed).is_valid(),
                connector_rules.verdict(&connector(spec)),
            );
        }

        let id_alphabet: Vec<char> = "aZ09+=,.@:/_- !#é\t".chars().collect();
        for _ in 0..700 {
            let id = if cases.below(2) == 0 {
                let seed = *cases.pick(&[EXT32, EXT64]);
                cases.mutate(seed, &id_alphabet)
            } else {
                (0..cases.below(70))
                    .map(|_| *cases.pick(&id_alphabet))
                    .collect()
            };
            let spec = auth(json!({"roleArn": role("x"), "externalId": id}));
            let parsed: AwsConnectorSpec = serde_json::from_value(spec.clone()).expect("decodes");
            agree(
                format!("externalId of {} characters", id.chars().count()),
                validate_connector(&parsed).is_valid(),
                connector_rules.verdict(&connector(spec)),
            );
        }

        let units = ["h", "m", "s", "ms", "us", "ns", "d", "", "H", ".5h"];
        let numbers = [
            "0", "1", "8", "30", "90", "525600", "8760", "8761", "31536000", "00", "-1", "1.5",
        ];
        for _ in 0..700 {
            let duration: String = (0..=cases.below(3))
                .map(|_| format!("{}{}", cases.pick(&numbers), cases.pick(&units)))
                .collect();
            let mut spec = grant_spec(
                json!({"kind": "SsoUser", "name": "a"}),
                json!({"kind": "PermissionSet", "permissionSet": "P", "accountId": ACCOUNT}),
            );
            spec["duration"] = json!(duration);
            let parsed: AccessGrantSpec = serde_json::from_value(spec.clone()).expect("decodes");
            agree(
                format!("duration {duration:?}"),
                validate_grant(&parsed).is_empty(),
                grant_rules.verdict(&grant(spec)),
            );
        }

        let account_alphabet: Vec<char> = "0123456789 a-".chars().collect();
        for _ in 0..300 {
            let account = cases.mutate(ACCOUNT, &account_alphabet);
            let spec = grant_spec(
                json!({"kind": "SsoUser", "name": "a"}),
                json!({"kind": "PermissionSet", "permissionSet": "P", "accountId": account}),
            );
            let parsed: AccessGrantSpec = serde_json::from_value(spec.clone()).expect("decodes");
            agree(
                format!("accountId {account:?}"),
                validate_grant(&parsed).is_empty(),
                grant_rules.verdict(&grant(spec)),
            );
        }
        // Organizational-unit targets: the id's shape, and with or without an account.
        let unit_alphabet: Vec<char> = "0123456789abcz-U".chars().collect();
        for round in 0..300 {
            let unit = cases.mutate("ou-ab12-cd34ef56", &unit_alphabet);
            let mut target =
                json!({"kind": "PermissionSet", "permissionSet": "P", "organizationalUnit": unit});
            if round % 10 == 0 {
                target["accountId"] = json!(ACCOUNT);
            }
            if round % 10 == 1 {
                target["kind"] = json!("SsoGroupMembership");
                target["group"] = json!("g");
                target.as_object_mut().map(|t| t.remove("permissionSet"));
            }
            let spec = grant_spec(json!({"kind": "SsoUser", "name": "a"}), target);
            let parsed: AccessGrantSpec = serde_json::from_value(spec.clone()).expect("decodes");
            agree(
                format!("organizationalUnit {spec}"),
                validate_grant(&parsed).is_empty(),
                grant_rules.verdict(&grant(spec)),
            );
        }
        // Both verdicts were reached often: the generator is not trivially one-sided.
        assert!(checked[0] > 300 && checked[1] > 300, "{checked:?}");
    }

    #[test]
    fn patterns_compile() {
        for pattern in [
            rules::ROLE_ARN,
            rules::EXTERNAL_ID,
            rules::REGION,
            rules::ACCOUNT_ID,
            rules::SESSION_NAME,
            rules::DURATION,
            rules::PERMISSION_SET_NAME,
            rules::PERMISSION_SET_ARN,
            rules::ORGANIZATIONAL_UNIT,
            rules::ROLE_NAME,
        ] {
            assert!(Regex::new(pattern).is_ok(), "{pattern}");
            assert!(
                !pattern.contains('\''),
                "{pattern} must embed in a CEL string literal"
            );
        }
    }
}
