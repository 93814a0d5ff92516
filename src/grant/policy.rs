//! A connector's `grantPolicy`, decided before any AWS call.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use jiff::Timestamp;

use crate::api::connector::{AllowedNamespaces, GrantPolicy, NamespacesFrom};
use crate::api::duration;
use crate::api::grant::AccessGrantSpec;

use super::access::Access;

/// Whether a grant in `grant_namespace` may use a connector in `connector_namespace`.
/// `labels` are the grant namespace's labels, needed only for `from: Selector`.
/// The error names the rule that refused.
pub fn namespace_allowed(
    allowed: &AllowedNamespaces,
    connector_namespace: &str,
    grant_namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    namespace_allowed_by(
        ("grantPolicy", "AccessGrants"),
        allowed,
        connector_namespace,
        grant_namespace,
        labels,
    )
}

/// Whether an object in `namespace` may use a connector in `connector_namespace` under one of
/// its policies (`policy`: its field name and the kinds it governs, for messages).
pub fn namespace_allowed_by(
    (policy, kinds): (&str, &str),
    allowed: &AllowedNamespaces,
    connector_namespace: &str,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    match allowed.from {
        NamespacesFrom::All => Ok(()),
        NamespacesFrom::Same if connector_namespace == namespace => Ok(()),
        NamespacesFrom::Same => Err(format!(
            "the connector's {policy}.allowedNamespaces is Same: only {kinds} in namespace {connector_namespace} may use it"
        )),
        NamespacesFrom::Selector => {
            let empty = BTreeMap::new();
            let labels = labels.unwrap_or(&empty);
            match &allowed.selector {
                Some(selector) if selector_matches(selector, labels) => Ok(()),
                _ => Err(format!(
                    "namespace {namespace} does not match the connector's {policy}.allowedNamespaces.selector"
                )),
            }
        }
    }
}

/// A permission set named in a grant policy, as an ARN: an ARN is taken as it is, a name is
/// looked up among the instance's permission sets (`names`: name → ARN, from the last sync).
pub(crate) fn policy_arn<'a>(
    entry: &'a str,
    names: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    if entry.starts_with("arn:") {
        Some(entry)
    } else {
        names.get(entry).map(String::as_str)
    }
}

/// What a connector's grant policy says of a piece of access, before any AWS write. Permission
/// sets are compared by ARN, after resolving the policy's names through the instance's
/// permission sets (`permission_sets`: name → ARN). A denied name that does not resolve
/// refuses every assignment: it cannot be shown not to be the one asked for (fail closed).
/// `accounts` are the organization's accounts from the last sync (empty when unknown). The
/// error names the rule.
pub fn check_grant(
    policy: &GrantPolicy,
    spec: &AccessGrantSpec,
    access: &Access,
    permission_sets: &BTreeMap<String, String>,
    accounts: &[String],
    now: Timestamp,
) -> Result<(), String> {
    if let Access::Assignment {
        account_id,
        permission_set_arn,
        ..
    } = access
    {
        let shown = permission_sets
            .iter()
            .find(|(_, arn)| *arn == permission_set_arn)
            .map_or(permission_set_arn.as_str(), |(name, _)| name.as_str());
        for denied in &policy.denied_permission_sets {
            match policy_arn(denied, permission_sets) {
                Some(arn) if arn == permission_set_arn => {
                    return Err(format!(
                        "the connector's grantPolicy.deniedPermissionSets denies {shown}"
                    ));
                }
                Some(_) => {}
                None => {
                    return Err(format!(
                        "the connector's grantPolicy.deniedPermissionSets names {denied:?}, which is not a permission set of the Identity Center instance (as of the last sync): no assignment is allowed until it resolves"
                    ));
                }
            }
        }
        if !policy.allowed_permission_sets.is_empty()
            && !policy
                .allowed_permission_sets
                .iter()
                .any(|a| policy_arn(a, permission_sets) == Some(permission_set_arn.as_str()))
        {
            return Err(format!(
                "{shown} is not in the connector's grantPolicy.allowedPermissionSets"
            ));
        }
        if !policy.allowed_accounts.is_empty() {
            if !policy.allowed_accounts.contains(account_id) {
                return Err(format!(
                    "account {account_id} is not in the connector's grantPolicy.allowedAccounts"
                ));
            }
        } else if !accounts.is_empty() && !accounts.contains(account_id) {
            return Err(format!(
                "account {account_id} is not an account of the organization (grantPolicy.allowedAccounts is empty: any account of the organization)"
            ));
        }
    }
    if let Some(max) = policy.max_duration.as_deref().and_then(duration::parse) {
        let within = match (&spec.duration, &spec.expires_at) {
            (Some(d), _) => duration::parse(d).is_some_and(|d| d <= max),
            (None, Some(at)) => at
                .parse::<Timestamp>()
                .ok()
                .and_then(|at| {
                    jiff::SignedDuration::try_from(max)
                        .ok()
                        .and_then(|m| now.checked_add(m).ok())
                        .map(|limit| at <= limit)
                })
                .unwrap_or(false),
            (None, None) => false,
        };
        if !within {
            return Err(format!(
                "the connector's grantPolicy.maxDuration ({}) requires spec.duration or spec.expiresAt within it",
                policy.max_duration.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// Whether the connector's policy lets a grant target organizational unit `unit`: when
/// `allowedOrganizationalUnits` is set, `unit` must be one of them or nested under one, as the
/// last sync saw the tree (an unknown unit is not shown to be nested: refused).
pub fn check_unit(
    policy: &GrantPolicy,
    unit: &str,
    cache: &crate::sync::cache::SyncCache,
) -> Result<(), String> {
    let allowed = &policy.allowed_organizational_units;
    if allowed.is_empty() || allowed.iter().any(|a| cache.unit_within(unit, a)) {
        return Ok(());
    }
    Err(format!(
        "organizational unit {unit} is not in (or under one of) the connector's grantPolicy.allowedOrganizationalUnits"
    ))
}

/// Label selector semantics as the apiserver applies them. An empty selector matches
/// everything; an unknown operator matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|req| {
        let value = labels.get(&req.key);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn same_all_and_selector() {
        let same = AllowedNamespaces::default();
        assert!(namespace_allowed(&same, "aws", "aws", None).is_ok());
        let refused = namespace_allowed(&same, "aws", "team-a", None).unwrap_err();
        assert!(refused.contains("allowedNamespaces is Same"), "{refused}");

        let all = AllowedNamespaces {
            from: NamespacesFrom::All,
            selector: None,
        };
        assert!(namespace_allowed(&all, "aws", "team-a", None).is_ok());

        let selector = AllowedNamespaces {
            from: NamespacesFrom::Selector,
            selector: Some(LabelSelector {
                match_labels: Some(labels(&[("aws-access", "enabled")])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["sandbox".into()]),
                }]),
            }),
        };
        let ok = labels(&[("aws-access", "enabled"), ("tier", "prod")]);
        assert!(namespace_allowed(&selector, "aws", "team-a", Some(&ok)).is_ok());
        let sandbox = labels(&[("aws-access", "enabled"), ("tier", "sandbox")]);
        assert!(namespace_allowed(&selector, "aws", "team-a", Some(&sandbox)).is_err());
        assert!(namespace_allowed(&selector, "aws", "team-a", None).is_err());
        let no_selector = AllowedNamespaces {
            from: NamespacesFrom::Selector,
            selector: None,
        };
        assert!(namespace_allowed(&no_selector, "aws", "aws", Some(&ok)).is_err());
    }

    fn grant(extra: serde_json::Value) -> AccessGrantSpec {
        let mut value = serde_json::json!({"connectorRef": {"name": "c"},
            "principal": {"kind": "SsoUser", "name": "a"},
            "target": {"kind": "PermissionSet", "permissionSet": "ReadOnly", "accountId": "111122223333"}});
        if let (Some(v), Some(e)) = (value.as_object_mut(), extra.as_object()) {
            v.extend(e.clone());
        }
        serde_json::from_value(value).expect("spec")
    }

    fn assignment(account: &str) -> Access {
        Access::Assignment {
            instance_arn: "i".into(),
            account_id: account.into(),
            permission_set_arn: "arn:ps".into(),
            principal_type: "USER".into(),
            principal_id: "u".into(),
        }
    }

    fn names() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("ReadOnly".to_string(), "arn:ps".to_string()),
            ("Admin".to_string(), "arn:admin".to_string()),
        ])
    }

    #[test]
    fn permission_sets_compare_by_arn_and_fail_closed() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let spec = grant(serde_json::json!({"target": {"kind": "PermissionSet",
            "permissionSet": "arn:ps", "accountId": "111122223333"}}));
        let a = assignment("111122223333");
        // The grant names the permission set by ARN: the deny list's name still catches it.
        let deny = GrantPolicy {
            denied_permission_sets: vec!["ReadOnly".into()],
            ..GrantPolicy::default()
        };
        let refused = check_grant(&deny, &spec, &a, &names(), &[], now).unwrap_err();
        assert!(refused.contains("denies ReadOnly"), "{refused}");
        // A denied name that resolves to nothing refuses: it might be the one asked for.
        let unknown = GrantPolicy {
            denied_permission_sets: vec!["Ghost".into()],
            ..GrantPolicy::default()
        };
        let refused = check_grant(&unknown, &spec, &a, &names(), &[], now).unwrap_err();
        assert!(
            refused.contains("\"Ghost\"") && refused.contains("not a permission set"),
            "{refused}"
        );
        // An allow list matches by ARN too, and an ARN entry matches directly.
        for allowed in [vec!["ReadOnly".to_string()], vec!["arn:ps".to_string()]] {
            let policy = GrantPolicy {
                allowed_permission_sets: allowed,
                ..GrantPolicy::default()
            };
            assert!(check_grant(&policy, &spec, &a, &names(), &[], now).is_ok());
        }
        let only_admin = GrantPolicy {
            allowed_permission_sets: vec!["Admin".into(), "Ghost".into()],
            ..GrantPolicy::default()
        };
        assert!(check_grant(&only_admin, &spec, &a, &names(), &[], now).is_err());
        // Without the cache nothing resolves: an allow list refuses everything.
        let allow = GrantPolicy {
            allowed_permission_sets: vec!["ReadOnly".into()],
            ..GrantPolicy::default()
        };
        assert!(check_grant(&allow, &spec, &a, &BTreeMap::new(), &[], now).is_err());
    }

    #[test]
    fn grant_policy_rules_name_themselves() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let org = vec!["111122223333".to_string()];
        let open = GrantPolicy::default();
        let a = assignment("111122223333");
        assert!(
            check_grant(
                &open,
                &grant(serde_json::json!({})),
                &a,
                &names(),
                &org,
                now
            )
            .is_ok()
        );
        let outside = check_grant(
            &open,
            &grant(serde_json::json!({})),
            &assignment("999999999999"),
            &names(),
            &org,
            now,
        );
        assert!(
            outside
                .unwrap_err()
                .contains("not an account of the organization")
        );

        let denied = GrantPolicy {
            denied_permission_sets: vec!["ReadOnly".into()],
            allowed_permission_sets: vec!["ReadOnly".into()],
            ..GrantPolicy::default()
        };
        assert!(
            check_grant(
                &denied,
                &grant(serde_json::json!({})),
                &a,
                &names(),
                &org,
                now
            )
            .unwrap_err()
            .contains("deniedPermissionSets")
        );
        let allowed = GrantPolicy {
            allowed_permission_sets: vec!["Admin".into()],
            ..GrantPolicy::default()
        };
        assert!(
            check_grant(
                &allowed,
                &grant(serde_json::json!({})),
                &a,
                &names(),
                &org,
                now
            )
            .unwrap_err()
            .contains("allowedPermissionSets")
        );
        let accounts = GrantPolicy {
            allowed_accounts: vec!["222233334444".into()],
            ..GrantPolicy::default()
        };
        assert!(
            check_grant(
                &accounts,
                &grant(serde_json::json!({})),
                &a,
                &names(),
                &org,
                now
            )
            .unwrap_err()
            .contains("allowedAccounts")
        );

        let max = GrantPolicy {
            max_duration: Some("12h".into()),
            ..GrantPolicy::default()
        };
        assert!(
            check_grant(&max, &grant(serde_json::json!({})), &a, &names(), &org, now)
                .unwrap_err()
                .contains("maxDuration")
        );
        assert!(
            check_grant(
                &max,
                &grant(serde_json::json!({"duration": "8h"})),
                &a,
                &names(),
                &org,
                now
            )
            .is_ok()
        );
        assert!(
            check_grant(
                &max,
                &grant(serde_json::json!({"duration": "13h"})),
                &a,
                &names(),
                &org,
                now
            )
            .is_err()
        );
        assert!(
            check_grant(
                &max,
                &grant(serde_json::json!({"expiresAt": "2026-01-01T11:00:00Z"})),
                &a,
                &names(),
                &org,
                now
            )
            .is_ok()
        );
        assert!(
            check_grant(
                &max,
                &grant(serde_json::json!({"expiresAt": "2026-01-02T11:00:00Z"})),
                &a,
                &names(),
                &org,
                now
            )
            .is_err()
        );
        // Memberships are not assignments: the permission set and account rules do not apply.
        let membership = Access::IamMembership {
            group: "g".into(),
            user: "u".into(),
        };
        assert!(
            check_grant(
                &denied,
                &grant(serde_json::json!({})),
                &membership,
                &names(),
                &org,
                now
            )
            .is_ok()
        );
    }

    #[test]
    fn selector_operators() {
        let l = labels(&[("a", "1")]);
        let req = |op: &str, values: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
        };
        assert!(selector_matches(&LabelSelector::default(), &l));
        assert!(selector_matches(&req("In", &["1", "2"]), &l));
        assert!(!selector_matches(&req("In", &["2"]), &l));
        assert!(selector_matches(&req("Exists", &[]), &l));
        assert!(!selector_matches(&req("DoesNotExist", &[]), &l));
        assert!(!selector_matches(&req("Bogus", &[]), &l));
    }
}
