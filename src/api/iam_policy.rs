//! The IAM policy grammar, checked before a policy document reaches AWS: a PermissionSet's
//! inline policy is written in YAML by people, and a mistake there should be a named field in a
//! condition, not a MalformedPolicyDocument from AWS after the set was half written. Also what
//! a connector's `permissionSetPolicy.deniedActions` needs: which actions an `Allow` can reach.

use serde_json::Value;

use super::validation::FieldError;

/// The policy language versions IAM knows.
pub const VERSIONS: &[&str] = &["2012-10-17", "2008-10-17"];

/// The most characters AWS takes for a permission set's inline policy
/// (PutInlinePolicyToPermissionSet), and the most of them that are not white space (the
/// Identity Center quota): the operator sends the policy minified, so the second is the bar.
pub const INLINE_POLICY_MAX: usize = 32_768;
pub const INLINE_POLICY_MAX_MINIFIED: usize = 10_240;

/// The condition operators of the IAM policy language, without the `ForAllValues:` /
/// `ForAnyValue:` qualifiers and the `IfExists` suffix, which may decorate any of them
/// (except that `Null` takes no `IfExists`).
const CONDITION_OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
];

const STATEMENT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

/// The document as AWS is sent it: JSON without white space outside strings.
pub fn minified(document: &Value) -> String {
    // Serializing a Value cannot fail: its keys are strings.
    serde_json::to_string(document).unwrap_or_default()
}

/// Everything wrong with `document` as an identity-based IAM policy, each error naming its
/// place under `field` (`spec.inlinePolicy.Statement[1].Effect`).
pub fn check(field: &str, document: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Value::Object(top) = document else {
        errors.push(FieldError::new(
            field,
            format!("{field} must be a policy document (a mapping with Version and Statement)"),
        ));
        return errors;
    };
    for key in top.keys() {
        if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
            errors.push(FieldError::new(
                &format!("{field}.{key}"),
                format!("{field}.{key}: not an element of an IAM policy (Version, Id, Statement)"),
            ));
        }
    }
    match top.get("Version") {
        Some(Value::String(v)) if VERSIONS.contains(&v.as_str()) => {}
        _ => errors.push(FieldError::new(
            &format!("{field}.Version"),
            format!("{field}.Version must be \"2012-10-17\" (or the older \"2008-10-17\")"),
        )),
    }
    if let Some(id) = top.get("Id")
        && !id.is_string()
    {
        errors.push(FieldError::new(
            &format!("{field}.Id"),
            format!("{field}.Id must be a string"),
        ));
    }
    match top.get("Statement") {
        Some(Value::Array(statements)) if !statements.is_empty() => {
            for (index, statement) in statements.iter().enumerate() {
                check_statement(
                    &format!("{field}.Statement[{index}]"),
                    statement,
                    &mut errors,
                );
            }
        }
        Some(statement @ Value::Object(_)) => {
            check_statement(&format!("{field}.Statement"), statement, &mut errors)
        }
        _ => errors.push(FieldError::new(
            &format!("{field}.Statement"),
            format!("{field}.Statement must be a statement or a non-empty list of them"),
        )),
    }
    let size = minified(document).len();
    if size > INLINE_POLICY_MAX_MINIFIED {
        errors.push(FieldError::new(
            field,
            format!(
                "{field} is {size} characters without white space; Identity Center takes at most {INLINE_POLICY_MAX_MINIFIED}"
            ),
        ));
    }
    errors
}

fn check_statement(field: &str, statement: &Value, errors: &mut Vec<FieldError>) {
    let Value::Object(map) = statement else {
        errors.push(FieldError::new(
            field,
            format!("{field} must be a mapping (Effect, Action, Resource, ...)"),
        ));
        return;
    };
    let at = |key: &str| format!("{field}.{key}");
    for key in map.keys() {
        if matches!(key.as_str(), "Principal" | "NotPrincipal") {
            errors.push(FieldError::new(
                &at(key),
                format!("{}: a permission set's policy applies to whoever holds it and names no principal", at(key)),
            ));
        } else if !STATEMENT_KEYS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                &at(key),
                format!(
                    "{}: not an element of a policy statement ({})",
                    at(key),
                    STATEMENT_KEYS.join(", ")
                ),
            ));
        }
    }
    if let Some(sid) = map.get("Sid")
        && !sid
            .as_str()
            .is_some_and(|s| s.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        errors.push(FieldError::new(
            &at("Sid"),
            format!("{} must be letters and digits only", at("Sid")),
        ));
    }
    if !matches!(
        map.get("Effect").and_then(Value::as_str),
        Some("Allow" | "Deny")
    ) {
        errors.push(FieldError::new(
            &at("Effect"),
            format!("{} must be Allow or Deny", at("Effect")),
        ));
    }
    one_of(
        field,
        map,
        "Action",
        "NotAction",
        action_ok,
        "an action such as s3:GetObject, s3:Get*, or *",
        errors,
    );
    one_of(
        field,
        map,
        "Resource",
        "NotResource",
        resource_ok,
        "an ARN (arn:partition:service:region:account:resource) or *",
        errors,
    );
    if let Some(condition) = map.get("Condition") {
        check_condition(&at("Condition"), condition, errors);
    }
}

/// Exactly one of `key` and `not_key`, a string or a non-empty list of strings, each `ok`.
fn one_of(
    field: &str,
    map: &serde_json::Map<String, Value>,
    key: &str,
    not_key: &str,
    ok: fn(&str) -> bool,
    shape: &str,
    errors: &mut Vec<FieldError>,
) {
    let (present, absent) = match (map.get(key), map.get(not_key)) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                &format!("{field}.{key}"),
                format!("{field}: {key} and {not_key} are mutually exclusive"),
            ));
            return;
        }
        (Some(value), None) => ((key, value), not_key),
        (None, Some(value)) => ((not_key, value), key),
        (None, None) => {
            errors.push(FieldError::new(
                &format!("{field}.{key}"),
                format!("{field} needs {key} or {not_key}"),
            ));
            return;
        }
    };
    let _ = absent;
    let (name, value) = present;
    let here = format!("{field}.{name}");
    let items: Vec<&Value> = match value {
        Value::Array(items) if !items.is_empty() => items.iter().collect(),
        Value::Array(_) => {
            errors.push(FieldError::new(&here, format!("{here} must not be empty")));
            return;
        }
        single => vec![single],
    };
    for (index, item) in items.iter().enumerate() {
        let place = if value.is_array() {
            format!("{here}[{index}]")
        } else {
            here.clone()
        };
        match item.as_str() {
            Some(text) if ok(text) => {}
            _ => errors.push(FieldError::new(&place, format!("{place} must be {shape}"))),
        }
    }
}

fn action_ok(action: &str) -> bool {
    super::validation::IAM_ACTION.is_match(action)
}

fn resource_ok(resource: &str) -> bool {
    if resource == "*" {
        return true;
    }
    // arn:partition:service:region:account:resource (the resource may hold more colons).
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    parts.len() == 6 && parts[0] == "arn" && !parts[1].is_empty() && !parts[5].is_empty()
}

fn check_condition(field: &str, condition: &Value, errors: &mut Vec<FieldError>) {
    let Value::Object(operators) = condition else {
        errors.push(FieldError::new(
            field,
            format!("{field} must map condition operators to their keys"),
        ));
        return;
    };
    for (operator, keys) in operators {
        let here = format!("{field}.{operator}");
        if !operator_ok(operator) {
            errors.push(FieldError::new(
                &here,
                format!("{here}: not an IAM condition operator (StringEquals, ArnLike, Bool, ..., optionally ForAllValues:/ForAnyValue: and IfExists)"),
            ));
            continue;
        }
        let Value::Object(keys) = keys else {
            errors.push(FieldError::new(
                &here,
                format!("{here} must map condition keys to values"),
            ));
            continue;
        };
        if keys.is_empty() {
            errors.push(FieldError::new(&here, format!("{here} must not be empty")));
        }
        for (key, value) in keys {
            let scalar = |v: &Value| v.is_string() || v.is_boolean() || v.is_number();
            let fine = match value {
                Value::Array(items) => !items.is_empty() && items.iter().all(scalar),
                other => scalar(other),
            };
            if !fine {
                errors.push(FieldError::new(
                    &format!("{here}.{key}"),
                    format!("{here}.{key} must be a value or a non-empty list of values"),
                ));
            }
        }
    }
}

fn operator_ok(operator: &str) -> bool {
    let unqualified = operator
        .strip_prefix("ForAllValues:")
        .or_else(|| operator.strip_prefix("ForAnyValue:"))
        .unwrap_or(operator);
    if CONDITION_OPERATORS.contains(&unqualified) {
        return true;
    }
    unqualified
        .strip_suffix("IfExists")
        .is_some_and(|base| base != "Null" && CONDITION_OPERATORS.contains(&base))
}

/// The actions an `Allow` statement of `document` names (`Action`), and whether any `Allow`
/// uses `NotAction` (which allows everything it does not list), as `(actions, not_actions)`.
pub fn allowed_actions(document: &Value) -> (Vec<String>, Vec<Vec<String>>) {
    let statements: Vec<&Value> = match document.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
        None => Vec::new(),
    };
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let mut actions = Vec::new();
    let mut not_actions = Vec::new();
    for statement in statements {
        if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        if let Some(listed) = statement.get("Action") {
            actions.extend(strings(listed));
        }
        if let Some(listed) = statement.get("NotAction") {
            not_actions.push(strings(listed));
        }
    }
    (actions, not_actions)
}

/// Whether some action matches both patterns (IAM's `*` and `?` wildcards, without regard to
/// case): `iam:*` and `i*:Pass*` overlap, `iam:*` and `s3:*` do not.
pub fn overlap(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.to_ascii_lowercase().chars().collect();
    let b: Vec<char> = b.to_ascii_lowercase().chars().collect();
    // seen[i][j]: the suffixes a[i..] and b[j..] were already found to have no common string.
    let mut seen = vec![vec![false; b.len() + 1]; a.len() + 1];
    intersect(&a, &b, 0, 0, &mut seen)
}

fn intersect(a: &[char], b: &[char], i: usize, j: usize, dead: &mut [Vec<bool>]) -> bool {
    if dead[i][j] {
        return false;
    }
    let found = match (a.get(i), b.get(j)) {
        (None, None) => true,
        (Some('*'), _) => {
            // The star matches nothing more, or one more character of what b can produce.
            intersect(a, b, i + 1, j, dead)
                || match b.get(j) {
                    Some('*') => intersect(a, b, i, j + 1, dead),
                    Some(_) => intersect(a, b, i, j + 1, dead),
                    None => false,
                }
        }
        (_, Some('*')) => {
            intersect(a, b, i, j + 1, dead)
                || (a.get(i).is_some() && intersect(a, b, i + 1, j, dead))
        }
        (Some(x), Some(y)) => {
            (*x == '?' || *y == '?' || x == y) && intersect(a, b, i + 1, j + 1, dead)
        }
        _ => false,
    };
    if !found {
        dead[i][j] = true;
    }
    found
}

/// Whether `pattern` matches every action `inner` matches, as far as a simple test can tell:
/// `pattern` matches `inner` read literally (`iam:*` covers `iam:*` and `iam:Pass*`).
pub fn covers(pattern: &str, inner: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let s: Vec<char> = inner.to_ascii_lowercase().chars().collect();
    glob(&p, &s)
}

fn glob(p: &[char], s: &[char]) -> bool {
    // Classic two-pointer wildcard match with backtracking to the last star.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < s.len() {
        if i < p.len() && (p[i] == '?' || p[i] == s[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(at) = star {
            i = at + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_good_policy_passes() {
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Read", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"},
            {"Effect": "Deny", "NotAction": "iam:*", "NotResource": ["arn:aws:s3:::bucket/*"],
             "Condition": {"ForAnyValue:StringLike": {"aws:PrincipalTag/team": ["a*"]},
                           "BoolIfExists": {"aws:MultiFactorAuthPresent": false},
                           "Null": {"aws:TokenIssueTime": "true"}}}]});
        assert_eq!(check("spec.inlinePolicy", &policy), []);
        let single = json!({"Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}});
        assert_eq!(check("spec.inlinePolicy", &single), []);
    }

    #[test]
    fn each_mistake_names_its_place() {
        let policy = json!({"Version": "2012-10-18", "Extra": 1, "Statement": [
            {"Effect": "allow", "Action": "s3 GetObject", "Resource": "bucket"},
            {"Effect": "Allow", "Action": [], "Resource": "*", "Principal": "*"},
            {"Effect": "Deny", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*",
             "Condition": {"StringEqualz": {"a": "b"}, "NullIfExists": {"a": "true"},
                           "StringEquals": {"k": {"nested": 1}}}},
            {"Sid": "has space", "Effect": "Deny", "Action": "s3:*"}]});
        let errors = check("spec.inlinePolicy", &policy);
        assert_eq!(
            fields(&errors),
            [
                "spec.inlinePolicy.Extra",
                "spec.inlinePolicy.Version",
                "spec.inlinePolicy.Statement[0].Effect",
                "spec.inlinePolicy.Statement[0].Action",
                "spec.inlinePolicy.Statement[0].Resource",
                "spec.inlinePolicy.Statement[1].Principal",
                "spec.inlinePolicy.Statement[1].Action",
                "spec.inlinePolicy.Statement[2].Action",
                "spec.inlinePolicy.Statement[2].Condition.NullIfExists",
                "spec.inlinePolicy.Statement[2].Condition.StringEquals.k",
                "spec.inlinePolicy.Statement[2].Condition.StringEqualz",
                "spec.inlinePolicy.Statement[3].Sid",
                "spec.inlinePolicy.Statement[3].Resource",
            ],
            "{errors:#?}"
        );
        assert!(
            check("p", &json!("text"))[0]
                .message
                .contains("policy document")
        );
        assert_eq!(
            fields(&check("p", &json!({"Version": "2012-10-17"}))),
            ["p.Statement"]
        );
    }

    #[test]
    fn size_counts_the_minified_document() {
        let action = |n: usize| format!("s3:{}", "G".repeat(n));
        let padded = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": action(10_000), "Resource": "*"}]});
        assert!(check("p", &padded).is_empty());
        let big = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": action(10_240), "Resource": "*"}]});
        let errors = check("p", &big);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("at most 10240"), "{errors:?}");
        assert!(!minified(&padded).contains(' '));
    }

    #[test]
    fn overlap_and_cover_follow_iam_wildcards() {
        assert!(overlap("iam:*", "iam:PassRole"));
        assert!(overlap("IAM:passrole", "iam:PassRole"));
        assert!(overlap("*", "organizations:LeaveOrganization"));
        assert!(overlap("i*:Pass*", "iam:*"));
        assert!(overlap("iam:?assRole", "iam:P*"));
        assert!(!overlap("iam:*", "s3:*"));
        assert!(!overlap("s3:Get*", "s3:Put*"));
        assert!(!overlap("iam:Get?", "iam:Get"));
        assert!(covers("iam:*", "iam:*"));
        assert!(covers("*", "organizations:*"));
        assert!(covers("iam:*", "iam:Pass*"));
        assert!(!covers("iam:Pass*", "iam:*"));
        assert!(!covers("s3:*", "iam:*"));
    }

    #[test]
    fn allowed_actions_come_from_allow_statements_only() {
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:Get*", "ec2:Describe*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:*", "Resource": "*"},
            {"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"}]});
        let (actions, not_actions) = allowed_actions(&policy);
        assert_eq!(actions, ["s3:Get*", "ec2:Describe*"]);
        assert_eq!(not_actions, [vec!["iam:*".to_string()]]);
    }
}
