//! Trust has a start. The operator believes a request's requester and reviewers only because
//! the API server checked them under the chart's admission policy; an object existing proves
//! nothing about what the API server enforced when a request was admitted. So the operator
//! keeps an *enforcement*: the moment (on the API server's clock) from which it saw the API
//! server refuse a request in another user's name, and the exact policy and binding objects
//! (uid and generation) that were in place across that refusal. While both objects are still
//! those, everything admitted after that moment was checked by them: nothing can delete,
//! re-create or edit either without changing its uid or generation. A request created at or
//! before the start of the enforcement in force was admitted when nothing was known to check
//! it, and is never trusted. No I/O here: the shell (`controller::admission`) reads the objects,
//! probes and keeps the enforcement where tenants cannot write.

use jiff::Timestamp;
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

/// The rules of the chart's policy that the operator relies on, by the tag each message starts
/// with. A policy missing any of them is not the policy the operator trusts.
pub const RULES: [&str; 9] = [
    "requester-is-caller",
    "requester-groups",
    "requester-unchanged",
    "reviews-final",
    "reviewer-is-caller",
    "no-self-review",
    "revoke-own-approval",
    "approve-verb",
    "requester-withdraws",
];

/// The rule the probe trips: a request in someone else's name.
pub const PROBE_RULE: &str = "requester-is-caller";

/// One admission object as it was when enforcement was confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    pub uid: String,
    pub generation: i64,
}

/// The policy and its binding, pinned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pins {
    pub policy: Pinned,
    pub binding: Pinned,
}

/// A span through which the admission policy is known to be enforced: from `since` for as long
/// as the objects are the pinned ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enforcement {
    /// The policy's and its binding's name.
    pub name: String,
    #[serde(flatten)]
    pub pins: Pins,
    /// The API server's time, to the second, just after it refused the probe: requests created
    /// in a later second were checked.
    pub since: String,
    /// The operator's own time of the confirmation, for people.
    pub confirmed_at: String,
}

impl Enforcement {
    pub fn since(&self) -> Option<Timestamp> {
        self.since.parse().ok()
    }
}

/// Whether a request's requester and reviews were checked by the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Created after the start of the enforcement in force, which still holds.
    Vouched,
    /// Created when nothing was known to check it: never trusted.
    Unvouched(String),
    /// No enforcement is confirmed now (why): nothing is counted until one is, and requests that
    /// exist by then will be unvouched.
    Unconfirmed(String),
}

fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The trust a request created at `created` (the API server's `creationTimestamp`) deserves
/// under `enforcement`, the one in force (or why there is none).
pub fn trust(created: Timestamp, enforcement: &Result<Enforcement, String>) -> Trust {
    let enforcement = match enforcement {
        Ok(enforcement) => enforcement,
        Err(why) => return Trust::Unconfirmed(why.clone()),
    };
    let Some(since) = enforcement.since() else {
        return Trust::Unconfirmed(format!(
            "the kept start of enforcement of {} ({}) is not a time",
            enforcement.name, enforcement.since
        ));
    };
    // Both times are whole seconds: a request created in the same second as the confirmation
    // may have been admitted just before it.
    if created.as_second() > since.as_second() {
        Trust::Vouched
    } else {
        Trust::Unvouched(format!(
            "created at {}, before the admission policy {} was known to be enforced (since {}): nothing vouches for its requester or reviews, so it is never granted; ask again with a new request",
            stamp(created),
            enforcement.name,
            enforcement.since
        ))
    }
}

fn empty_selector(selector: &Option<LabelSelector>) -> bool {
    selector.as_ref().is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(|l| l.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    })
}

/// Whether `resources` leaves out no namespace and no object.
fn unnarrowed(resources: &Option<MatchResources>) -> bool {
    resources.as_ref().is_none_or(|m| {
        empty_selector(&m.namespace_selector)
            && empty_selector(&m.object_selector)
            && m.exclude_resource_rules
                .as_ref()
                .is_none_or(|r| r.is_empty())
    })
}

fn has(list: &Option<Vec<String>>, wanted: &[&str]) -> bool {
    list.as_ref()
        .is_some_and(|l| l.iter().any(|v| wanted.contains(&v.as_str())))
}

/// Whether the policy's constraints match AccessRequests on create and update.
fn matches_requests(resources: &Option<MatchResources>) -> bool {
    let Some(rules) = resources.as_ref().and_then(|m| m.resource_rules.as_ref()) else {
        return false;
    };
    ["CREATE", "UPDATE"].iter().all(|operation| {
        rules.iter().any(|rule| {
            has(&rule.api_groups, &["awsaccess.io", "*"])
                && has(&rule.resources, &["accessrequests", "*"])
                && has(&rule.operations, &[operation, "*"])
        })
    })
}

/// Checks that `policy` and `binding` are the chart's policy for AccessRequests, bound to deny
/// everywhere; their pins, or what is wrong (naming the object and the field).
pub fn inspect(
    name: &str,
    policy: Option<&ValidatingAdmissionPolicy>,
    binding: Option<&ValidatingAdmissionPolicyBinding>,
) -> Result<Pins, String> {
    let policy = policy.ok_or_else(|| {
        format!("the ValidatingAdmissionPolicy {name} does not exist: nothing vouches for requesters and reviewers")
    })?;
    let binding = binding.ok_or_else(|| {
        format!(
            "the ValidatingAdmissionPolicyBinding {name} does not exist: the policy is not enforced"
        )
    })?;
    let wrong = |what: &str| format!("the ValidatingAdmissionPolicy {name} {what}");
    let spec = policy.spec.clone().unwrap_or_default();
    if spec.failure_policy.as_deref() == Some("Ignore") {
        return Err(wrong(
            "has spec.failurePolicy Ignore: a request its rules cannot evaluate is admitted",
        ));
    }
    if spec
        .match_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
        || spec.param_kind.is_some()
    {
        return Err(wrong(
            "has spec.matchConditions or spec.paramKind: it may not check every request",
        ));
    }
    if !matches_requests(&spec.match_constraints) || !unnarrowed(&spec.match_constraints) {
        return Err(wrong(
            "does not match every AccessRequest on CREATE and UPDATE (spec.matchConstraints)",
        ));
    }
    let validations = spec.validations.unwrap_or_default();
    let missing: Vec<&str> = RULES
        .iter()
        .copied()
        .filter(|rule| {
            let tag = format!("[{rule}]");
            !validations.iter().any(|v| {
                v.message.as_deref().is_some_and(|m| m.contains(&tag))
                    || v.message_expression
                        .as_deref()
                        .is_some_and(|m| m.contains(&tag))
            })
        })
        .collect();
    if !missing.is_empty() {
        return Err(wrong(&format!(
            "lacks the rules {} (spec.validations): it is not the chart's policy",
            missing.join(", ")
        )));
    }
    let wrong = |what: &str| format!("the ValidatingAdmissionPolicyBinding {name} {what}");
    let bound = binding.spec.clone().unwrap_or_default();
    if bound.policy_name.as_deref() != Some(name) {
        return Err(wrong(&format!(
            "does not bind the policy {name} (spec.policyName)"
        )));
    }
    if !has(&bound.validation_actions, &["Deny"]) {
        return Err(wrong(
            "does not deny (spec.validationActions has no Deny): refusals are not enforced",
        ));
    }
    if bound.param_ref.is_some() || !unnarrowed(&bound.match_resources) {
        return Err(wrong(
            "narrows where the policy applies (spec.matchResources or spec.paramRef)",
        ));
    }
    let pin = |meta: &kube::api::ObjectMeta| Pinned {
        uid: meta.uid.clone().unwrap_or_default(),
        generation: meta.generation.unwrap_or_default(),
    };
    Ok(Pins {
        policy: pin(&policy.metadata),
        binding: pin(&binding.metadata),
    })
}

/// Whether the API server's refusal of the probe came from this policy's rule.
pub fn confirms(message: &str, name: &str) -> bool {
    message.contains(&format!("[{PROBE_RULE}]")) && message.contains(&format!("'{name}'"))
}

/// What changed between the enforcement kept and the objects found, for people.
pub fn change(kept: &Pins, found: &Pins) -> Option<String> {
    let describe = |kind: &str, a: &Pinned, b: &Pinned| {
        if a.uid != b.uid {
            Some(format!(
                "the {kind} was replaced (uid {} → {})",
                a.uid, b.uid
            ))
        } else if a.generation != b.generation {
            Some(format!(
                "the {kind} changed (generation {} → {})",
                a.generation, b.generation
            ))
        } else {
            None
        }
    };
    let changes: Vec<String> = [
        describe("ValidatingAdmissionPolicy", &kept.policy, &found.policy),
        describe(
            "ValidatingAdmissionPolicyBinding",
            &kept.binding,
            &found.binding,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!changes.is_empty()).then(|| changes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The policy `p` and the binding `b`, both at generation 1.
    fn pins() -> Pins {
        let pin = |uid: &str| Pinned {
            uid: uid.into(),
            generation: 1,
        };
        Pins {
            policy: pin("p"),
            binding: pin("b"),
        }
    }

    fn enforcement(since: &str) -> Result<Enforcement, String> {
        Ok(Enforcement {
            name: "requests".into(),
            pins: pins(),
            since: since.into(),
            confirmed_at: since.into(),
        })
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("time")
    }

    #[test]
    fn only_requests_created_in_a_later_second_are_vouched() {
        let e = enforcement("2026-01-01T10:00:00Z");
        assert_eq!(trust(at("2026-01-01T10:00:01Z"), &e), Trust::Vouched);
        assert!(matches!(
            trust(at("2026-01-01T10:00:00Z"), &e),
            Trust::Unvouched(_)
        ));
        assert!(matches!(
            trust(at("2026-01-01T09:00:00Z"), &e),
            Trust::Unvouched(m) if m.contains("ask again")
        ));
        assert!(matches!(
            trust(at("2026-01-01T11:00:00Z"), &Err("no binding".into())),
            Trust::Unconfirmed(m) if m == "no binding"
        ));
    }

    fn policy(
        validations: serde_json::Value,
        extra: serde_json::Value,
    ) -> ValidatingAdmissionPolicy {
        let mut spec = json!({
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["awsaccess.io"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"], "resources": ["accessrequests"]}],
                "namespaceSelector": {}, "objectSelector": {}, "matchPolicy": "Equivalent"},
            "validations": validations});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(
            json!({"metadata": {"name": "requests", "uid": "p", "generation": 3},
            "spec": spec}),
        )
        .expect("policy")
    }

    fn every_rule() -> serde_json::Value {
        json!(
            RULES
                .iter()
                .map(|r| json!({"expression": "true", "messageExpression": format!("'[{r}] x'")}))
                .collect::<Vec<_>>()
        )
    }

    fn binding(spec: serde_json::Value) -> ValidatingAdmissionPolicyBinding {
        serde_json::from_value(
            json!({"metadata": {"name": "requests", "uid": "b", "generation": 1},
            "spec": spec}),
        )
        .expect("binding")
    }

    #[test]
    fn only_the_charts_policy_bound_to_deny_everywhere_is_relied_on() {
        let good = policy(every_rule(), json!({}));
        let denies = binding(
            json!({"policyName": "requests", "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {}, "objectSelector": {}}}),
        );
        let pins = inspect("requests", Some(&good), Some(&denies)).expect("pins");
        assert_eq!(pins.policy.generation, 3);
        assert_eq!(pins.binding.uid, "b");

        let refused = |p: &ValidatingAdmissionPolicy, b: &ValidatingAdmissionPolicyBinding| {
            inspect("requests", Some(p), Some(b)).expect_err("refused")
        };
        assert!(
            inspect("requests", None, Some(&denies))
                .expect_err("no policy")
                .contains("does not exist")
        );
        assert!(
            inspect("requests", Some(&good), None)
                .expect_err("no binding")
                .contains("ValidatingAdmissionPolicyBinding requests does not exist")
        );
        let warns = binding(json!({"policyName": "requests", "validationActions": ["Warn"]}));
        assert!(refused(&good, &warns).contains("validationActions"));
        let other = binding(json!({"policyName": "else", "validationActions": ["Deny"]}));
        assert!(refused(&good, &other).contains("spec.policyName"));
        let narrowed = binding(
            json!({"policyName": "requests", "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"checked": "yes"}}}}),
        );
        assert!(refused(&good, &narrowed).contains("matchResources"));
        let ignoring = policy(every_rule(), json!({"failurePolicy": "Ignore"}));
        assert!(refused(&ignoring, &denies).contains("failurePolicy"));
        let conditional = policy(
            every_rule(),
            json!({"matchConditions": [{"name": "x", "expression": "false"}]}),
        );
        assert!(refused(&conditional, &denies).contains("matchConditions"));
        let creates_only = policy(
            every_rule(),
            json!({"matchConstraints": {"resourceRules": [{"apiGroups": ["awsaccess.io"],
                "apiVersions": ["*"], "operations": ["CREATE"], "resources": ["accessrequests"]}]}}),
        );
        assert!(refused(&creates_only, &denies).contains("matchConstraints"));
        let mut fewer = every_rule();
        fewer.as_array_mut().expect("rules").remove(7);
        assert!(
            refused(&policy(fewer, json!({})), &denies).contains("lacks the rules approve-verb")
        );
    }

    #[test]
    fn a_change_of_either_object_is_named() {
        let kept = pins();
        assert_eq!(change(&kept, &kept.clone()), None);
        let mut found = kept.clone();
        found.binding.uid = "b2".into();
        found.policy.generation = 2;
        let what = change(&kept, &found).expect("changed");
        assert!(
            what.contains("ValidatingAdmissionPolicy changed (generation 1 → 2)"),
            "{what}"
        );
        assert!(
            what.contains("ValidatingAdmissionPolicyBinding was replaced"),
            "{what}"
        );
    }

    #[test]
    fn only_this_policys_refusal_of_the_probe_confirms() {
        let message = "admission webhook denied: ValidatingAdmissionPolicy 'requests' with binding 'requests' denied request: [requester-is-caller] spec.requester.user must be the user creating the request: op";
        assert!(confirms(message, "requests"));
        assert!(!confirms(message, "other"));
        assert!(!confirms(
            "forbidden: cannot create accessrequests",
            "requests"
        ));
    }
}
