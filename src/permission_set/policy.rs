//! A connector's `permissionSetPolicy`, applied to a declared set: which managed policies it may
//! attach, which actions its inline policy may never allow, how long its sessions may last. A
//! set that breaks it is refused before anything of it reaches AWS.

use crate::api::connector::PermissionSetPolicy;
use crate::api::iam_policy::{allowed_actions, covers, overlap};
use crate::api::permission_set::{CustomerManagedPolicy, PermissionSetSpec};
use crate::api::{duration, rules};
use crate::permission_set::shape::DEFAULT_SESSION;

fn listed(patterns: &[String], value: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| covers(p, value))
}

fn customer_text(policy: &CustomerManagedPolicy) -> String {
    format!("{}{}", policy.path(), policy.name)
}

/// Every way `spec` breaks `policy`, each naming the field and the rule.
pub fn check(policy: &PermissionSetPolicy, spec: &PermissionSetSpec) -> Vec<String> {
    let mut refused = Vec::new();
    let managed = spec
        .managed_policies
        .iter()
        .map(|arn| ("spec.managedPolicies", arn.clone()));
    let boundary_managed = spec
        .permissions_boundary
        .as_ref()
        .and_then(|b| b.managed_policy_arn.clone())
        .map(|arn| ("spec.permissionsBoundary.managedPolicyArn", arn));
    for (field, arn) in managed.chain(boundary_managed) {
        if !listed(&policy.allowed_managed_policies, &arn) {
            refused.push(format!(
                "{field}: {arn} is not in the connector's permissionSetPolicy.allowedManagedPolicies"
            ));
        }
    }
    let customer = spec
        .customer_managed_policies
        .iter()
        .map(|p| ("spec.customerManagedPolicies", customer_text(p)));
    let boundary_customer = spec
        .permissions_boundary
        .as_ref()
        .and_then(|b| b.customer_managed_policy.as_ref())
        .map(|p| {
            (
                "spec.permissionsBoundary.customerManagedPolicy",
                customer_text(p),
            )
        });
    for (field, name) in customer.chain(boundary_customer) {
        if !listed(&policy.allowed_customer_managed_policies, &name) {
            refused.push(format!(
                "{field}: {name} is not in the connector's permissionSetPolicy.allowedCustomerManagedPolicies"
            ));
        }
    }
    if let Some(document) = &spec.inline_policy
        && !policy.denied_actions.is_empty()
    {
        let (actions, not_actions) = allowed_actions(document);
        for action in &actions {
            if let Some(denied) = policy.denied_actions.iter().find(|d| overlap(action, d)) {
                refused.push(format!(
                    "spec.inlinePolicy allows {action}, which reaches {denied}: the connector's permissionSetPolicy.deniedActions refuses it"
                ));
            }
        }
        for excluded in &not_actions {
            for denied in &policy.denied_actions {
                if !excluded.iter().any(|n| covers(n, denied)) {
                    refused.push(format!(
                        "spec.inlinePolicy has an Allow with NotAction that does not exclude {denied}, so it allows it: the connector's permissionSetPolicy.deniedActions refuses it"
                    ));
                }
            }
        }
    }
    if let Some(max) = policy
        .max_session_duration
        .as_deref()
        .and_then(duration::parse)
    {
        let session = spec
            .session_duration
            .as_deref()
            .and_then(duration::parse)
            .map_or(DEFAULT_SESSION, |d| d.as_secs());
        if session > max.as_secs() {
            refused.push(format!(
                "spec.sessionDuration {} is longer than the connector's permissionSetPolicy.maxSessionDuration {}",
                spec.session_duration.as_deref().unwrap_or(rules::SESSION_MIN),
                policy.max_session_duration.as_deref().unwrap_or_default()
            ));
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> PermissionSetSpec {
        let mut base = json!({"connectorRef": {"name": "org"}, "name": "Data"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).expect("spec")
    }

    fn policy(value: serde_json::Value) -> PermissionSetPolicy {
        serde_json::from_value(value).expect("policy")
    }

    #[test]
    fn an_empty_policy_allows_everything() {
        let set = spec(
            json!({"managedPolicies": ["arn:aws:iam::aws:policy/AdministratorAccess"],
            "sessionDuration": "12h",
            "inlinePolicy": {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}}),
        );
        assert_eq!(
            check(&PermissionSetPolicy::default(), &set),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_bound_refuses_naming_the_field() {
        let bounds = policy(json!({
            "allowedManagedPolicies": ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::aws:policy/job-function/*"],
            "allowedCustomerManagedPolicies": ["/team/*"],
            "deniedActions": ["iam:*", "organizations:*"],
            "maxSessionDuration": "4h"}));
        let fine = spec(
            json!({"managedPolicies": ["arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"],
            "customerManagedPolicies": [{"name": "lake", "path": "/team/"}],
            "sessionDuration": "4h",
            "inlinePolicy": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:*", "ec2:Describe*"], "Resource": "*"},
                {"Effect": "Deny", "Action": "*", "Resource": "arn:aws:s3:::secret/*"},
                {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "s3:*"], "Resource": "*"}]}}),
        );
        assert_eq!(check(&bounds, &fine), Vec::<String>::new());
        let wide = spec(
            json!({"managedPolicies": ["arn:aws:iam::aws:policy/AdministratorAccess"],
            "customerManagedPolicies": [{"name": "root"}],
            "permissionsBoundary": {"managedPolicyArn": "arn:aws:iam::aws:policy/PowerUserAccess"},
            "sessionDuration": "8h",
            "inlinePolicy": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:*", "iam:Pass*"], "Resource": "*"},
                {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}}),
        );
        let refused = check(&bounds, &wide);
        assert_eq!(refused.len(), 6, "{refused:#?}");
        assert!(
            refused[0]
                .starts_with("spec.managedPolicies: arn:aws:iam::aws:policy/AdministratorAccess")
        );
        assert!(refused[1].starts_with("spec.permissionsBoundary.managedPolicyArn"));
        assert!(refused[2].starts_with("spec.customerManagedPolicies: /root"));
        assert!(refused[3].contains("allows iam:Pass*, which reaches iam:*"));
        assert!(refused[4].contains("does not exclude organizations:*"));
        assert!(refused[5].starts_with("spec.sessionDuration 8h is longer"));
    }

    #[test]
    fn the_default_session_counts_against_the_maximum() {
        let bounds = policy(json!({"maxSessionDuration": "1h"}));
        assert!(check(&bounds, &spec(json!({}))).is_empty());
        let bounds = policy(json!({"deniedActions": ["iam:*"]}));
        let star = spec(json!({"inlinePolicy": {"Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}}));
        assert_eq!(check(&bounds, &star).len(), 1);
    }
}
