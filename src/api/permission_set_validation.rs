//! A PermissionSet's spec checked in Rust: the CRD's CEL rules again (for the controller, which
//! must never act on an object stored before a rule existed, and for the offline `validate`),
//! and what CEL cannot check, the inline policy against the IAM policy grammar.

use std::sync::LazyLock;

use regex_lite::Regex;

use super::permission_set::{CustomerManagedPolicy, PermissionSetSpec, Tag};
use super::validation::{FieldError, check_session_duration, regex};
use super::{iam_policy, rules};

static NAME: LazyLock<Regex> = LazyLock::new(|| regex(rules::PERMISSION_SET_NAME));
static DESCRIPTION: LazyLock<Regex> = LazyLock::new(|| regex(rules::PERMISSION_SET_DESCRIPTION));
static RELAY_STATE: LazyLock<Regex> = LazyLock::new(|| regex(rules::RELAY_STATE));
static MANAGED_POLICY: LazyLock<Regex> = LazyLock::new(|| regex(rules::MANAGED_POLICY_ARN));
static POLICY_NAME: LazyLock<Regex> = LazyLock::new(|| regex(rules::POLICY_NAME));
static POLICY_PATH: LazyLock<Regex> = LazyLock::new(|| regex(rules::POLICY_PATH));
static TAG_KEY: LazyLock<Regex> = LazyLock::new(|| regex(rules::TAG_KEY));
static TAG_VALUE: LazyLock<Regex> = LazyLock::new(|| regex(rules::TAG_VALUE));

pub(super) fn length(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    errors: &mut Vec<FieldError>,
) {
    let count = value.chars().count();
    if count < min || count > max {
        errors.push(FieldError::new(
            field,
            format!("{field} must be {min} to {max} characters (it is {count})"),
        ));
    }
}

fn customer_policy(field: &str, policy: &CustomerManagedPolicy, errors: &mut Vec<FieldError>) {
    if !POLICY_NAME.is_match(&policy.name) {
        let here = format!("{field}.name");
        errors.push(FieldError::new(&here, rules::policy_name_message(&here)));
    }
    if let Some(path) = &policy.path
        && (!POLICY_PATH.is_match(path) || path.len() > 512)
    {
        let here = format!("{field}.path");
        errors.push(FieldError::new(&here, rules::policy_path_message(&here)));
    }
}

/// The tags of a set or an IAM user: AWS's characters, no `aws:` prefix, no key twice, at most
/// `max`.
pub(super) fn check_tags(tags: &[Tag], max: usize, errors: &mut Vec<FieldError>) {
    if tags.len() > max {
        errors.push(FieldError::new(
            "spec.tags",
            format!("spec.tags may hold at most {max} tags"),
        ));
    }
    for (index, tag) in tags.iter().enumerate() {
        if !TAG_KEY.is_match(&tag.key) || tag.key.starts_with("aws:") {
            errors.push(FieldError::new(
                &format!("spec.tags[{index}].key"),
                rules::TAG_KEY_MESSAGE,
            ));
        }
        if !TAG_VALUE.is_match(&tag.value) {
            errors.push(FieldError::new(
                &format!("spec.tags[{index}].value"),
                rules::TAG_VALUE_MESSAGE,
            ));
        }
        if tags[..index].iter().any(|t| t.key == tag.key) {
            errors.push(FieldError::new(
                &format!("spec.tags[{index}].key"),
                format!("spec.tags[{index}].key: tag {} is given twice", tag.key),
            ));
        }
    }
}

/// Every rule a PermissionSet's spec breaks, each naming its field.
pub fn validate_permission_set(spec: &PermissionSetSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if spec.connector_ref.name.is_empty() {
        errors.push(FieldError::new(
            "spec.connectorRef.name",
            "spec.connectorRef.name is required",
        ));
    }
    if !NAME.is_match(&spec.name) {
        errors.push(FieldError::new(
            "spec.name",
            rules::permission_set_name_message("spec.name"),
        ));
    }
    if let Some(description) = &spec.description {
        length("spec.description", description, 1, 700, &mut errors);
        if !DESCRIPTION.is_match(description) {
            errors.push(FieldError::new(
                "spec.description",
                rules::PERMISSION_SET_DESCRIPTION_MESSAGE,
            ));
        }
    }
    if let Some(session) = &spec.session_duration {
        check_session_duration("spec.sessionDuration", session, &mut errors);
    }
    if let Some(relay) = &spec.relay_state
        && (!RELAY_STATE.is_match(relay) || relay.chars().count() > 240)
    {
        errors.push(FieldError::new(
            "spec.relayState",
            rules::RELAY_STATE_MESSAGE,
        ));
    }
    for (index, arn) in spec.managed_policies.iter().enumerate() {
        if !MANAGED_POLICY.is_match(arn) {
            errors.push(FieldError::new(
                &format!("spec.managedPolicies[{index}]"),
                rules::MANAGED_POLICIES_MESSAGE,
            ));
        }
        if spec.managed_policies[..index].contains(arn) {
            errors.push(FieldError::new(
                &format!("spec.managedPolicies[{index}]"),
                rules::MANAGED_POLICIES_UNIQUE,
            ));
        }
    }
    for (index, policy) in spec.customer_managed_policies.iter().enumerate() {
        let field = format!("spec.customerManagedPolicies[{index}]");
        customer_policy(&field, policy, &mut errors);
        if spec.customer_managed_policies[..index]
            .iter()
            .any(|p| p.name == policy.name && p.path() == policy.path())
        {
            errors.push(FieldError::new(&field, rules::CUSTOMER_POLICIES_UNIQUE));
        }
    }
    if spec.managed_policies.len() + spec.customer_managed_policies.len()
        > rules::PERMISSION_SET_POLICIES_MAX
    {
        errors.push(FieldError::new(
            "spec.managedPolicies",
            rules::PERMISSION_SET_POLICY_COUNT,
        ));
    }
    if let Some(policy) = &spec.inline_policy {
        errors.extend(iam_policy::check("spec.inlinePolicy", policy));
    }
    if let Some(boundary) = &spec.permissions_boundary {
        match (
            &boundary.managed_policy_arn,
            &boundary.customer_managed_policy,
        ) {
            (Some(arn), None) => {
                if !MANAGED_POLICY.is_match(arn) {
                    let field = "spec.permissionsBoundary.managedPolicyArn";
                    errors.push(FieldError::new(field, rules::managed_policy_message(field)));
                }
            }
            (None, Some(policy)) => customer_policy(
                "spec.permissionsBoundary.customerManagedPolicy",
                policy,
                &mut errors,
            ),
            _ => errors.push(FieldError::new(
                "spec.permissionsBoundary",
                rules::BOUNDARY_ONE_OF,
            )),
        }
    }
    check_tags(&spec.tags, 50, &mut errors);
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: serde_json::Value) -> PermissionSetSpec {
        serde_json::from_value(value).expect("spec")
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_full_set_is_valid() {
        let set = spec(serde_json::json!({
            "connectorRef": {"name": "org"}, "name": "DataEngineer",
            "description": "Read the lake, write the scratch bucket", "sessionDuration": "8h",
            "relayState": "https://console.aws.amazon.com/s3/home?region=us-east-1",
            "managedPolicies": ["arn:aws:iam::aws:policy/ReadOnlyAccess",
                                "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"],
            "customerManagedPolicies": [{"name": "lake-read", "path": "/data/"}, {"name": "scratch"}],
            "inlinePolicy": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::scratch/*"}]},
            "permissionsBoundary": {"customerManagedPolicy": {"name": "boundary"}},
            "tags": [{"key": "team", "value": "data"}, {"key": "cost-center", "value": "42"}]}));
        assert_eq!(validate_permission_set(&set), []);
    }

    #[test]
    fn every_broken_rule_names_its_field() {
        let set = spec(serde_json::json!({
            "connectorRef": {"name": ""}, "name": "Data Engineer",
            "description": "", "sessionDuration": "13h", "relayState": "javascript:alert(1)",
            "managedPolicies": ["arn:aws:iam::123456789012:policy/Mine",
                                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                                "arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "customerManagedPolicies": [{"name": "a b", "path": "team"}, {"name": "x", "path": "/"}, {"name": "x"}],
            "inlinePolicy": {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*"}},
            "permissionsBoundary": {},
            "tags": [{"key": "aws:team", "value": "a"}, {"key": "t", "value": "é"}, {"key": "t", "value": "b"}]}));
        assert_eq!(
            fields(&validate_permission_set(&set)),
            [
                "spec.connectorRef.name",
                "spec.name",
                "spec.description",
                "spec.sessionDuration",
                "spec.relayState",
                "spec.managedPolicies[0]",
                "spec.managedPolicies[2]",
                "spec.customerManagedPolicies[0].name",
                "spec.customerManagedPolicies[0].path",
                "spec.customerManagedPolicies[2]",
                "spec.inlinePolicy.Statement.Resource",
                "spec.permissionsBoundary",
                "spec.tags[0].key",
                "spec.tags[1].value",
                "spec.tags[2].key",
            ]
        );
        let short = spec(
            serde_json::json!({"connectorRef": {"name": "o"}, "name": "A",
            "sessionDuration": "30m"}),
        );
        assert_eq!(
            fields(&validate_permission_set(&short)),
            ["spec.sessionDuration"]
        );
        let many: Vec<String> = (0..21)
            .map(|i| format!("arn:aws:iam::aws:policy/P{i}"))
            .collect();
        let crowded = spec(
            serde_json::json!({"connectorRef": {"name": "o"}, "name": "A",
            "managedPolicies": many}),
        );
        assert_eq!(
            fields(&validate_permission_set(&crowded)),
            ["spec.managedPolicies"]
        );
    }

    /// The CRD's CEL rules refuse what the Rust checks refuse, field by field (the inline
    /// policy's grammar is the operator's alone: CEL cannot read a free-form document).
    #[test]
    fn cel_agrees_with_rust() {
        use crate::api::PermissionSet;
        use crate::api::validation::tests::cel_verdict;
        let base = serde_json::json!({"connectorRef": {"name": "org"}, "name": "Ops"});
        let cases = [
            ("a minimal set", serde_json::json!({}), true),
            (
                "a space in the name",
                serde_json::json!({"name": "Ops Team"}),
                false,
            ),
            (
                "a 33-character name",
                serde_json::json!({"name": "x".repeat(33)}),
                false,
            ),
            (
                "twelve hours",
                serde_json::json!({"sessionDuration": "12h"}),
                true,
            ),
            (
                "ninety minutes",
                serde_json::json!({"sessionDuration": "1h30m"}),
                true,
            ),
            (
                "thirteen hours",
                serde_json::json!({"sessionDuration": "13h"}),
                false,
            ),
            (
                "half an hour",
                serde_json::json!({"sessionDuration": "30m"}),
                false,
            ),
            (
                "a relay state",
                serde_json::json!({"relayState": "https://example.com/a?b=c"}),
                true,
            ),
            (
                "a relay state that is not a URL",
                serde_json::json!({"relayState": "ftp://x"}),
                false,
            ),
            (
                "a control character",
                serde_json::json!({"description": "a\u{7}b"}),
                false,
            ),
            (
                "a Latin-1 description",
                serde_json::json!({"description": "Zugriff für\tdie Ops"}),
                true,
            ),
            (
                "an account's policy",
                serde_json::json!({"managedPolicies": ["arn:aws:iam::123456789012:policy/x"]}),
                false,
            ),
            (
                "a policy twice",
                serde_json::json!({"managedPolicies": ["arn:aws:iam::aws:policy/A", "arn:aws:iam::aws:policy/A"]}),
                false,
            ),
            (
                "a customer policy twice",
                serde_json::json!({"customerManagedPolicies": [{"name": "a", "path": "/"}, {"name": "a"}]}),
                false,
            ),
            (
                "a relative path",
                serde_json::json!({"customerManagedPolicies": [{"name": "a", "path": "team/"}]}),
                false,
            ),
            (
                "both boundaries",
                serde_json::json!({"permissionsBoundary": {"managedPolicyArn": "arn:aws:iam::aws:policy/A", "customerManagedPolicy": {"name": "b"}}}),
                false,
            ),
            (
                "a managed boundary",
                serde_json::json!({"permissionsBoundary": {"managedPolicyArn": "arn:aws:iam::aws:policy/A"}}),
                true,
            ),
            (
                "an aws: tag",
                serde_json::json!({"tags": [{"key": "aws:x", "value": "y"}]}),
                false,
            ),
            (
                "a tag value with a comma",
                serde_json::json!({"tags": [{"key": "x", "value": "a,b"}]}),
                false,
            ),
            (
                "21 policies",
                serde_json::json!({
                "managedPolicies": (0..11).map(|i| format!("arn:aws:iam::aws:policy/P{i}")).collect::<Vec<_>>(),
                "customerManagedPolicies": (0..10).map(|i| serde_json::json!({"name": format!("c{i}")})).collect::<Vec<_>>()}),
                false,
            ),
        ];
        for (case, extra, valid) in cases {
            let mut spec = base.clone();
            for (key, value) in extra.as_object().into_iter().flatten() {
                spec[key] = value.clone();
            }
            let parsed: PermissionSetSpec = serde_json::from_value(spec.clone()).expect(case);
            let rust = validate_permission_set(&parsed);
            assert_eq!(rust.is_empty(), valid, "{case}: Rust says {rust:?}");
            let object = serde_json::json!({"apiVersion": "awsaccess.io/v1alpha1",
                "kind": "PermissionSet", "metadata": {"name": "s", "namespace": "aws"}, "spec": spec});
            let cel = cel_verdict::<PermissionSet>(&object);
            assert_eq!(cel.is_ok(), valid, "{case}: CEL says {cel:?}");
        }
    }
}
