//! A connector's `identityPolicy`, applied to a declared user or group: which names it may
//! have and, for an IAM user, which accounts it may live in. One that breaks it is refused
//! before anything of it reaches AWS.

use crate::api::AwsConnector;
use crate::api::connector::{AllowedNamespaces, IdentityPolicy};
use crate::api::iam_policy::covers;
use crate::api::identity::AnyIdentity;

fn listed(patterns: &[String], value: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| covers(p, value))
}

/// Why an IamUser of a member account cannot be reached through `connector`: it enters member
/// accounts only with `sync.memberAccounts` enabled (the role it assumes there).
pub fn unreachable_account(identity: &AnyIdentity, connector: &AwsConnector) -> Option<String> {
    let AnyIdentity::IamUser(user) = identity else {
        return None;
    };
    (user.spec.account.is_some() && connector.spec.sync.members().is_none()).then(|| {
        format!(
            "spec.account: the IAM user lives in a member account, and AwsConnector {}/{} does not enter member accounts (spec.sync.memberAccounts.enabled is false)",
            connector.metadata.namespace.clone().unwrap_or_default(),
            connector.metadata.name.clone().unwrap_or_default()
        )
    })
}

/// Which namespaces may declare the kind of `identity`, and the rule's name for messages.
pub fn namespaces<'a>(
    policy: &'a IdentityPolicy,
    identity: &AnyIdentity,
) -> ((&'static str, &'static str), &'a AllowedNamespaces) {
    match identity {
        AnyIdentity::User(_) => (
            ("identityPolicy.users", "IdentityCenterUsers"),
            &policy.users.allowed_namespaces,
        ),
        AnyIdentity::Group(_) => (
            ("identityPolicy.groups", "IdentityCenterGroups"),
            &policy.groups.allowed_namespaces,
        ),
        AnyIdentity::IamUser(_) => (
            ("identityPolicy.iamUsers", "IamUsers"),
            &policy.iam_users.allowed_namespaces,
        ),
    }
}

/// Every way `identity` breaks `policy`, each naming the field and the rule.
pub fn check(policy: &IdentityPolicy, identity: &AnyIdentity) -> Vec<String> {
    let mut refused = Vec::new();
    let (field, rule, patterns) = match identity {
        AnyIdentity::User(_) => (
            "spec.userName",
            "identityPolicy.users.allowedNames",
            &policy.users.allowed_names,
        ),
        AnyIdentity::Group(_) => (
            "spec.displayName",
            "identityPolicy.groups.allowedNames",
            &policy.groups.allowed_names,
        ),
        AnyIdentity::IamUser(_) => (
            "spec.userName",
            "identityPolicy.iamUsers.allowedNames",
            &policy.iam_users.allowed_names,
        ),
    };
    let name = identity.aws_name();
    if !listed(patterns, name) {
        refused.push(format!(
            "{field}: {name} is not allowed by the connector's {rule} ({})",
            patterns.join(", ")
        ));
    }
    if let AnyIdentity::IamUser(user) = identity
        && let Some(account) = &user.spec.account
        && !listed(&policy.iam_users.allowed_accounts, account)
    {
        refused.push(format!(
            "spec.account: {account} is not in the connector's identityPolicy.iamUsers.allowedAccounts"
        ));
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str) -> AnyIdentity {
        AnyIdentity::User(Box::new(
            serde_json::from_value(json!({"apiVersion": "awsaccess.io/v1alpha1",
                "kind": "IdentityCenterUser", "metadata": {"name": "u"},
                "spec": {"connectorRef": {"name": "org"}, "userName": name, "displayName": "U",
                    "name": {"givenName": "U", "familyName": "V"},
                    "emails": [{"value": "u@example.com", "primary": true}]}}))
            .expect("user"),
        ))
    }

    #[test]
    fn user_names_must_match_a_pattern_regardless_of_case() {
        let policy: IdentityPolicy =
            serde_json::from_value(json!({"users": {"allowedNames": ["*@example.com"]}}))
                .expect("policy");
        assert!(check(&policy, &user("Jane@Example.COM")).is_empty());
        let refused = check(&policy, &user("mallory@evil.test"));
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].starts_with("spec.userName: mallory@evil.test is not allowed"),
            "{refused:?}"
        );
        assert!(check(&IdentityPolicy::default(), &user("anyone")).is_empty());
    }

    #[test]
    fn an_iam_user_must_live_in_an_allowed_account() {
        let policy: IdentityPolicy =
            serde_json::from_value(json!({"iamUsers": {"allowedAccounts": ["111111111111"]}}))
                .expect("policy");
        let iam = |account: &str| {
            AnyIdentity::IamUser(Box::new(
                serde_json::from_value(json!({"apiVersion": "awsaccess.io/v1alpha1",
                    "kind": "IamUser", "metadata": {"name": "i"},
                    "spec": {"connectorRef": {"name": "org"}, "userName": "ci", "account": account}}))
                .expect("iam user"),
            ))
        };
        assert!(check(&policy, &iam("111111111111")).is_empty());
        assert_eq!(
            check(&policy, &iam("222222222222")),
            [
                "spec.account: 222222222222 is not in the connector's identityPolicy.iamUsers.allowedAccounts"
            ]
        );
    }
}
