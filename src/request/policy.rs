//! A connector's `requestPolicy`, decided before anything else about a request: whether the
//! requester may ask for this access, for this principal, for this long, and how many
//! approvals it needs. The grantPolicy applies on top, as for any grant. No I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::api::connector::{PrincipalScope, RequestPolicy, RequestRule, UserMapping};
use crate::api::duration;
use crate::api::grant::{PrincipalKind, TargetKind};
use crate::api::request::AccessRequestSpec;
use crate::grant::policy::policy_arn;

/// How long a request may wait for approvals when the policy does not say.
pub const DEFAULT_PENDING_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// In a rule's lists, allows anything of that kind.
const ANY: &str = "*";

/// The rule that allows a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    pub rule: String,
    /// Approvals needed; 0 approves automatically.
    pub approvals: u32,
}

/// How long requests through this policy may wait for approvals.
pub fn pending_expiry(policy: &RequestPolicy) -> Duration {
    policy
        .pending_expiry
        .as_deref()
        .and_then(duration::parse)
        .unwrap_or(DEFAULT_PENDING_EXPIRY)
}

/// The principal user name a Kubernetes user maps to, if any.
pub fn map_user(mapping: &UserMapping, user: &str) -> Option<String> {
    let base = match &mapping.strip_prefix {
        Some(prefix) => user.strip_prefix(prefix.as_str())?,
        None => user,
    };
    if base.is_empty() {
        return None;
    }
    Some(format!(
        "{base}{}",
        mapping.suffix.as_deref().unwrap_or_default()
    ))
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == ANY || v == value)
}

/// Why one rule does not allow the request, or `None` when it does.
fn refusal(
    policy: &RequestPolicy,
    rule: &RequestRule,
    spec: &AccessRequestSpec,
    permission_sets: &BTreeMap<String, String>,
) -> Option<String> {
    let target = &spec.target;
    match target.kind {
        TargetKind::PermissionSet => {
            let asked = target.permission_set.as_deref().unwrap_or_default();
            let asked_arn = policy_arn(asked, permission_sets);
            let allowed = rule.permission_sets.iter().any(|p| {
                p == ANY
                    || p == asked
                    || (asked_arn.is_some() && policy_arn(p, permission_sets) == asked_arn)
            });
            if !allowed {
                return Some(format!(
                    "permission set {asked} is not in its permissionSets"
                ));
            }
            if let Some(account) = &target.account_id
                && !listed(&rule.accounts, account)
            {
                return Some(format!("account {account} is not in its accounts"));
            }
            if let Some(unit) = &target.organizational_unit
                && !listed(&rule.organizational_units, unit)
            {
                return Some(format!(
                    "organizational unit {unit} is not in its organizationalUnits"
                ));
            }
        }
        TargetKind::SsoGroupMembership | TargetKind::IamGroupMembership => {
            let group = target.group.as_deref().unwrap_or_default();
            if !listed(&rule.memberships, group) {
                return Some(format!("group {group} is not in its memberships"));
            }
        }
    }
    if rule.principals == PrincipalScope::Myself {
        let own = map_user(&policy.user_mapping, &spec.requester.user);
        let principal = &spec.principal;
        let is_user = matches!(
            principal.kind,
            PrincipalKind::SsoUser | PrincipalKind::IamUser
        );
        match own {
            None => {
                return Some(format!(
                    "principals is Self, and requester {} maps to no user through userMapping",
                    spec.requester.user
                ));
            }
            Some(own) if !is_user || principal.name.as_deref() != Some(own.as_str()) => {
                return Some(format!(
                    "principals is Self: the principal must be the requester's own user, {own} (by name)"
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(max) = &rule.max_duration {
        let within = match (duration::parse(&spec.duration), duration::parse(max)) {
            (Some(asked), Some(max)) => asked <= max,
            _ => false,
        };
        if !within {
            return Some(format!(
                "duration {} is over its maxDuration {max}",
                spec.duration
            ));
        }
    }
    None
}

/// Which rule of the connector's requestPolicy allows the request; the error says why none
/// does, naming each rule that applies to the requester.
pub fn check(
    policy: &RequestPolicy,
    spec: &AccessRequestSpec,
    permission_sets: &BTreeMap<String, String>,
) -> Result<Allowed, String> {
    if !policy.enabled {
        return Err(
            "the connector's requestPolicy is not enabled: it serves no AccessRequests".into(),
        );
    }
    let requester = &spec.requester;
    let theirs: Vec<&RequestRule> = policy
        .rules
        .iter()
        .filter(|r| {
            r.users.iter().any(|u| u == &requester.user)
                || r.groups.iter().any(|g| requester.groups.contains(g))
        })
        .collect();
    if theirs.is_empty() {
        return Err(format!(
            "no rule of the connector's requestPolicy names user {} or any group of spec.requester.groups",
            requester.user
        ));
    }
    let mut why = Vec::new();
    for rule in theirs {
        match refusal(policy, rule, spec, permission_sets) {
            None => {
                return Ok(Allowed {
                    rule: rule.name.clone(),
                    approvals: rule.approvals(),
                });
            }
            Some(reason) => why.push(format!("rule {}: {reason}", rule.name)),
        }
    }
    Err(format!(
        "the connector's requestPolicy does not allow it ({})",
        why.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(rules: serde_json::Value) -> RequestPolicy {
        serde_json::from_value(json!({"enabled": true,
            "userMapping": {"stripPrefix": "oidc:", "suffix": "@example.com"},
            "rules": rules}))
        .expect("policy")
    }

    fn spec(principal: &str, permission_set: &str, duration: &str) -> AccessRequestSpec {
        serde_json::from_value(json!({"connectorRef": {"name": "org"},
            "requester": {"user": "oidc:alice", "groups": ["oncall"]},
            "principal": {"kind": "SsoUser", "name": principal},
            "target": {"kind": "PermissionSet", "permissionSet": permission_set, "accountId": "111122223333"},
            "duration": duration, "reason": "INC-1"}))
        .expect("spec")
    }

    fn names() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "Admin".to_string(),
            "arn:aws:sso:::permissionSet/ssoins-1234567890123456/ps-1234567890123456".to_string(),
        )])
    }

    #[test]
    fn user_mapping_strips_then_appends() {
        let mapping = UserMapping {
            strip_prefix: Some("oidc:".into()),
            suffix: Some("@example.com".into()),
        };
        assert_eq!(
            map_user(&mapping, "oidc:alice").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(map_user(&mapping, "alice"), None, "without the prefix");
        assert_eq!(map_user(&mapping, "oidc:"), None, "nothing left");
        assert_eq!(
            map_user(&UserMapping::default(), "bob").as_deref(),
            Some("bob")
        );
    }

    #[test]
    fn a_rule_allows_exactly_what_it_names() {
        let p = policy(json!([{"name": "oncall", "groups": ["oncall"],
            "permissionSets": ["Admin"], "accounts": ["111122223333"], "approvals": 2, "maxDuration": "4h"}]));
        assert_eq!(
            check(&p, &spec("alice@example.com", "Admin", "2h"), &names()),
            Ok(Allowed {
                rule: "oncall".into(),
                approvals: 2
            })
        );
        // The same permission set by ARN.
        let arn = names()["Admin"].clone();
        assert!(check(&p, &spec("alice@example.com", &arn, "2h"), &names()).is_ok());
        let refused = |s: AccessRequestSpec| check(&p, &s, &names()).expect_err("refused");
        let other = refused(spec("bob@example.com", "Admin", "2h"));
        assert!(other.contains("rule oncall: principals is Self"), "{other}");
        assert!(other.contains("alice@example.com"), "{other}");
        let ps = refused(spec("alice@example.com", "ReadOnly", "2h"));
        assert!(
            ps.contains("rule oncall: permission set ReadOnly is not in its permissionSets"),
            "{ps}"
        );
        let long = refused(spec("alice@example.com", "Admin", "5h"));
        assert!(
            long.contains("rule oncall: duration 5h is over its maxDuration 4h"),
            "{long}"
        );
        let mut account = spec("alice@example.com", "Admin", "2h");
        account.target.account_id = Some("999999999999".into());
        assert!(refused(account).contains("account 999999999999 is not in its accounts"));
    }

    #[test]
    fn requesters_are_matched_by_user_or_group_and_the_policy_must_be_on() {
        let p = policy(
            json!([{"name": "alice-only", "users": ["oidc:alice"], "permissionSets": ["*"], "accounts": ["*"], "principals": "Any"}]),
        );
        assert!(check(&p, &spec("anyone", "Admin", "2h"), &names()).is_ok());
        let mut bob = spec("bob@example.com", "Admin", "2h");
        bob.requester.user = "oidc:bob".into();
        bob.requester.groups.clear();
        let none = check(&p, &bob, &names()).expect_err("bob");
        assert!(
            none.contains("no rule of the connector's requestPolicy names user oidc:bob"),
            "{none}"
        );
        let mut off = p.clone();
        off.enabled = false;
        assert!(
            check(&off, &spec("anyone", "Admin", "2h"), &names())
                .expect_err("off")
                .contains("not enabled")
        );
    }

    #[test]
    fn the_first_rule_that_allows_applies() {
        let p = policy(json!([
            {"name": "strict", "groups": ["oncall"], "permissionSets": ["Admin"], "accounts": ["*"], "approvals": 2},
            {"name": "self-service", "groups": ["oncall"], "permissionSets": ["*"], "accounts": ["*"], "approvals": 0}
        ]));
        assert_eq!(
            check(&p, &spec("alice@example.com", "Admin", "1h"), &names()).map(|a| a.rule),
            Ok("strict".into())
        );
        assert_eq!(
            check(&p, &spec("alice@example.com", "ReadOnly", "1h"), &names()),
            Ok(Allowed {
                rule: "self-service".into(),
                approvals: 0
            })
        );
    }
}
