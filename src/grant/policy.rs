//! A connector's `grantPolicy`, decided before any AWS call.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::connector::{AllowedNamespaces, NamespacesFrom};

/// Whether a grant in `grant_namespace` may use a connector in `connector_namespace`.
/// `labels` are the grant namespace's labels, needed only for `from: Selector`.
/// The error names the rule that refused.
pub fn namespace_allowed(
    allowed: &AllowedNamespaces,
    connector_namespace: &str,
    grant_namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    match allowed.from {
        NamespacesFrom::All => Ok(()),
        NamespacesFrom::Same if connector_namespace == grant_namespace => Ok(()),
        NamespacesFrom::Same => Err(format!(
            "the connector's grantPolicy.allowedNamespaces is Same: only AccessGrants in namespace {connector_namespace} may use it"
        )),
        NamespacesFrom::Selector => {
            let empty = BTreeMap::new();
            let labels = labels.unwrap_or(&empty);
            match &allowed.selector {
                Some(selector) if selector_matches(selector, labels) => Ok(()),
                _ => Err(format!(
                    "namespace {grant_namespace} does not match the connector's grantPolicy.allowedNamespaces.selector"
                )),
            }
        }
    }
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
