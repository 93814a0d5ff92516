//! The identity kinds' specs checked in Rust: the CRDs' CEL rules again, for the controller
//! (which never acts on an object stored before a rule existed) and the offline `validate`.

use std::sync::LazyLock;

use regex_lite::Regex;

use super::identity::{IamUserSpec, IdentityCenterGroupSpec, IdentityCenterUserSpec};
use super::permission_set_validation::{check_tags, length};
use super::rules;
use super::validation::{FieldError, regex};

static SSO_USER_NAME: LazyLock<Regex> = LazyLock::new(|| regex(rules::SSO_USER_NAME));
static TEXT: LazyLock<Regex> = LazyLock::new(|| regex(rules::IDENTITY_TEXT));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| regex(rules::EMAIL));
static LOCALE: LazyLock<Regex> = LazyLock::new(|| regex(rules::LOCALE));
static TIMEZONE: LazyLock<Regex> = LazyLock::new(|| regex(rules::TIMEZONE));
static ACCOUNT_ID: LazyLock<Regex> = LazyLock::new(|| regex(rules::ACCOUNT_ID));
static IAM_USER_NAME: LazyLock<Regex> = LazyLock::new(|| regex(rules::IAM_USER_NAME));
static IAM_PATH: LazyLock<Regex> = LazyLock::new(|| regex(rules::IAM_PATH));
static BOUNDARY: LazyLock<Regex> = LazyLock::new(|| regex(rules::BOUNDARY_POLICY_ARN));

fn connector(name: &str, errors: &mut Vec<FieldError>) {
    if name.is_empty() {
        errors.push(FieldError::new(
            "spec.connectorRef.name",
            "spec.connectorRef.name is required",
        ));
    }
}

/// Printable text of 1-1024 characters.
fn text(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    length(field, value, 1, 1024, errors);
    if !TEXT.is_match(value) {
        errors.push(FieldError::new(
            field,
            format!("{field} must be printable text (no control characters)"),
        ));
    }
}

fn pattern(field: &str, value: &str, re: &Regex, message: &str, errors: &mut Vec<FieldError>) {
    if !re.is_match(value) {
        errors.push(FieldError::new(field, message));
    }
}

/// Every rule an IdentityCenterUser's spec breaks, each naming its field.
pub fn validate_identity_center_user(spec: &IdentityCenterUserSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    connector(&spec.connector_ref.name, &mut errors);
    pattern(
        "spec.userName",
        &spec.user_name,
        &SSO_USER_NAME,
        &rules::sso_user_name_message("spec.userName"),
        &mut errors,
    );
    text("spec.displayName", &spec.display_name, &mut errors);
    text("spec.name.givenName", &spec.name.given_name, &mut errors);
    text("spec.name.familyName", &spec.name.family_name, &mut errors);
    if spec.emails.len() != 1 || spec.emails.iter().filter(|e| e.primary).count() != 1 {
        errors.push(FieldError::new("spec.emails", rules::ONE_PRIMARY_EMAIL));
    }
    for (index, email) in spec.emails.iter().enumerate() {
        let field = format!("spec.emails[{index}].value");
        length(&field, &email.value, 3, 1024, &mut errors);
        pattern(
            &field,
            &email.value,
            &EMAIL,
            rules::EMAIL_MESSAGE,
            &mut errors,
        );
    }
    if let Some(title) = &spec.title {
        text("spec.title", title, &mut errors);
    }
    if let Some(locale) = &spec.locale {
        length("spec.locale", locale, 2, 32, &mut errors);
        pattern(
            "spec.locale",
            locale,
            &LOCALE,
            rules::LOCALE_MESSAGE,
            &mut errors,
        );
    }
    if let Some(zone) = &spec.timezone {
        length("spec.timezone", zone, 1, 64, &mut errors);
        pattern(
            "spec.timezone",
            zone,
            &TIMEZONE,
            rules::TIMEZONE_MESSAGE,
            &mut errors,
        );
    }
    errors
}

/// Every rule an IdentityCenterGroup's spec breaks, each naming its field.
pub fn validate_identity_center_group(spec: &IdentityCenterGroupSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    connector(&spec.connector_ref.name, &mut errors);
    text("spec.displayName", &spec.display_name, &mut errors);
    if let Some(description) = &spec.description {
        text("spec.description", description, &mut errors);
    }
    errors
}

/// Every rule an IamUser's spec breaks, each naming its field.
pub fn validate_iam_user(spec: &IamUserSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    connector(&spec.connector_ref.name, &mut errors);
    if let Some(account) = &spec.account {
        pattern(
            "spec.account",
            account,
            &ACCOUNT_ID,
            &rules::account_id_message("spec.account"),
            &mut errors,
        );
    }
    pattern(
        "spec.userName",
        &spec.user_name,
        &IAM_USER_NAME,
        &rules::iam_user_name_message("spec.userName"),
        &mut errors,
    );
    if let Some(path) = &spec.path
        && (!IAM_PATH.is_match(path) || path.len() > 512)
    {
        errors.push(FieldError::new(
            "spec.path",
            rules::iam_path_message("spec.path"),
        ));
    }
    if let Some(arn) = &spec.permissions_boundary {
        pattern(
            "spec.permissionsBoundary",
            arn,
            &BOUNDARY,
            &rules::boundary_arn_message("spec.permissionsBoundary"),
            &mut errors,
        );
    }
    check_tags(&spec.tags, rules::IAM_USER_TAGS_MAX, &mut errors);
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::validation::tests::cel_verdict;
    use crate::api::{IamUser, IdentityCenterGroup, IdentityCenterUser};
    use serde_json::{Value, json};

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    fn merged(base: &Value, extra: &Value) -> Value {
        let mut spec = base.clone();
        for (key, value) in extra.as_object().into_iter().flatten() {
            spec[key] = value.clone();
        }
        spec
    }

    fn user() -> Value {
        json!({"connectorRef": {"name": "org"}, "userName": "jane@example.com",
            "displayName": "Jane Doe", "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "jane@example.com", "type": "work", "primary": true}]})
    }

    #[test]
    fn every_broken_user_rule_names_its_field() {
        let spec: IdentityCenterUserSpec = serde_json::from_value(merged(
            &user(),
            &json!({"connectorRef": {"name": ""}, "userName": "jane doe", "displayName": "a\u{7}",
                "name": {"givenName": "", "familyName": "Doe"},
                "emails": [{"value": "jane", "primary": false}],
                "title": "x".repeat(1025), "locale": "english!", "timezone": "Europe/ Berlin"}),
        ))
        .expect("spec");
        assert_eq!(
            fields(&validate_identity_center_user(&spec)),
            [
                "spec.connectorRef.name",
                "spec.userName",
                "spec.displayName",
                "spec.name.givenName",
                "spec.name.givenName",
                "spec.emails",
                "spec.emails[0].value",
                "spec.title",
                "spec.locale",
                "spec.timezone",
            ]
        );
        let full: IdentityCenterUserSpec = serde_json::from_value(merged(
            &user(),
            &json!({"displayName": "José Müller-王", "title": "SRE", "locale": "de-DE",
                "timezone": "America/Argentina/Buenos_Aires"}),
        ))
        .expect("spec");
        assert_eq!(validate_identity_center_user(&full), []);
    }

    #[test]
    fn every_broken_iam_user_rule_names_its_field() {
        let tags: Vec<Value> = (0..50)
            .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
            .collect();
        let spec: IamUserSpec = serde_json::from_value(json!({
            "connectorRef": {"name": "org"}, "account": "12345", "userName": "a/b",
            "path": "people", "permissionsBoundary": "arn:aws:iam::aws:role/x", "tags": tags}))
        .expect("spec");
        assert_eq!(
            fields(&validate_iam_user(&spec)),
            [
                "spec.account",
                "spec.userName",
                "spec.path",
                "spec.permissionsBoundary",
                "spec.tags"
            ]
        );
        let good: IamUserSpec = serde_json::from_value(json!({
            "connectorRef": {"name": "org"}, "account": "123456789012", "userName": "break-glass",
            "path": "/emergency/", "permissionsBoundary": "arn:aws:iam::123456789012:policy/boundary",
            "tags": [{"key": "team", "value": "sre"}]}))
        .expect("spec");
        assert_eq!(validate_iam_user(&good), []);
    }

    /// The CRDs' CEL rules refuse what the Rust checks refuse.
    #[test]
    fn cel_agrees_with_rust() {
        let user_cases = [
            ("a minimal user", json!({}), true),
            (
                "a space in the name",
                json!({"userName": "jane doe"}),
                false,
            ),
            (
                "a 129-character name",
                json!({"userName": "x".repeat(129)}),
                false,
            ),
            (
                "no primary email",
                json!({"emails": [{"value": "a@b.co"}]}),
                false,
            ),
            (
                "two emails",
                json!({"emails": [{"value": "a@b.co", "primary": true}, {"value": "c@b.co"}]}),
                false,
            ),
            (
                "not an email",
                json!({"emails": [{"value": "a.b.co", "primary": true}]}),
                false,
            ),
            (
                "a Unicode display name",
                json!({"displayName": "Zoë 王"}),
                true,
            ),
            (
                "a control character",
                json!({"displayName": "a\u{1b}b"}),
                false,
            ),
            ("a locale", json!({"locale": "pt_BR"}), true),
            ("not a locale", json!({"locale": "pt BR"}), false),
            ("a time zone", json!({"timezone": "Etc/GMT+1"}), true),
            ("not a time zone", json!({"timezone": "/UTC"}), false),
        ];
        for (case, extra, valid) in user_cases {
            let spec = merged(&user(), &extra);
            let parsed: IdentityCenterUserSpec = serde_json::from_value(spec.clone()).expect(case);
            let rust = validate_identity_center_user(&parsed);
            assert_eq!(rust.is_empty(), valid, "{case}: Rust says {rust:?}");
            let object = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "IdentityCenterUser",
                "metadata": {"name": "u", "namespace": "aws"}, "spec": spec});
            let cel = cel_verdict::<IdentityCenterUser>(&object);
            assert_eq!(cel.is_ok(), valid, "{case}: CEL says {cel:?}");
        }
        let group = json!({"connectorRef": {"name": "org"}, "displayName": "Data Engineers"});
        for (case, extra, valid) in [
            ("a group", json!({}), true),
            ("a description", json!({"description": "Läuft\tgut"}), true),
            ("an empty description", json!({"description": ""}), false),
            (
                "a NUL-free control",
                json!({"displayName": "a\u{7f}"}),
                false,
            ),
        ] {
            let spec = merged(&group, &extra);
            let parsed: IdentityCenterGroupSpec = serde_json::from_value(spec.clone()).expect(case);
            let rust = validate_identity_center_group(&parsed);
            assert_eq!(rust.is_empty(), valid, "{case}: Rust says {rust:?}");
            let object = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "IdentityCenterGroup",
                "metadata": {"name": "g", "namespace": "aws"}, "spec": spec});
            let cel = cel_verdict::<IdentityCenterGroup>(&object);
            assert_eq!(cel.is_ok(), valid, "{case}: CEL says {cel:?}");
        }
        let iam = json!({"connectorRef": {"name": "org"}, "userName": "deploy"});
        for (case, extra, valid) in [
            ("an IAM user", json!({}), true),
            ("a member account", json!({"account": "123456789012"}), true),
            ("a short account", json!({"account": "1234"}), false),
            ("a path", json!({"path": "/ci/deploy/"}), true),
            ("a path without its slash", json!({"path": "/ci"}), false),
            (
                "a 65-character name",
                json!({"userName": "x".repeat(65)}),
                false,
            ),
            (
                "an account's boundary",
                json!({"permissionsBoundary": "arn:aws:iam::123456789012:policy/b"}),
                true,
            ),
            (
                "a role as boundary",
                json!({"permissionsBoundary": "arn:aws:iam::123456789012:role/b"}),
                false,
            ),
            (
                "an aws: tag",
                json!({"tags": [{"key": "aws:x", "value": "y"}]}),
                false,
            ),
        ] {
            let spec = merged(&iam, &extra);
            let parsed: IamUserSpec = serde_json::from_value(spec.clone()).expect(case);
            let rust = validate_iam_user(&parsed);
            assert_eq!(rust.is_empty(), valid, "{case}: Rust says {rust:?}");
            let object = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "IamUser",
                "metadata": {"name": "i", "namespace": "aws"}, "spec": spec});
            let cel = cel_verdict::<IamUser>(&object);
            assert_eq!(cel.is_ok(), valid, "{case}: CEL says {cel:?}");
        }
    }
}
