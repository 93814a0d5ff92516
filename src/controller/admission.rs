//! Whether the admission policy that vouches for AccessRequests is in place. The operator acts
//! on a request's requester and reviewers only because the API server checked them; without
//! the policy (not installed, its binding deleted, or one that does not deny) nobody did, and
//! no approval is counted.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::{Api, Client};

/// How long an answer is kept: a deleted policy stops approvals within this.
const FRESH_FOR: Duration = Duration::from_secs(15);

pub struct AdmissionCheck {
    /// The policy's (and its binding's) name; `None`: the operator was not given one.
    name: Option<String>,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl AdmissionCheck {
    pub fn new(name: Option<String>) -> Self {
        Self {
            name,
            last: Mutex::new(None),
        }
    }

    /// Whether the operator serves AccessRequests at all (it was given the policy's name).
    pub fn configured(&self) -> bool {
        self.name.is_some()
    }

    /// `Ok` when the policy and a binding of it that denies are in place; otherwise why not.
    pub async fn vouched(&self, client: &Client) -> Result<(), String> {
        if let Some((at, result)) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return result.clone();
        }
        let result = self.look(client).await;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), result.clone()));
        result
    }

    async fn look(&self, client: &Client) -> Result<(), String> {
        let Some(name) = &self.name else {
            return Err("the operator runs without --request-admission-policy: nothing vouches for requesters and reviewers, so no approval is counted (install the chart with accessRequests.enabled)".into());
        };
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
        let unreadable = |what: &str, e: kube::Error| {
            format!("the {what} {name} cannot be read ({e}); no approval is counted until it can")
        };
        match policies.get_opt(name).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(format!(
                    "the ValidatingAdmissionPolicy {name} does not exist: nothing vouches for requesters and reviewers, so no approval is counted"
                ));
            }
            Err(e) => return Err(unreadable("ValidatingAdmissionPolicy", e)),
        }
        let binding = match bindings.get_opt(name).await {
            Ok(Some(binding)) => binding,
            Ok(None) => {
                return Err(format!(
                    "the ValidatingAdmissionPolicyBinding {name} does not exist: the policy is not enforced, so no approval is counted"
                ));
            }
            Err(e) => return Err(unreadable("ValidatingAdmissionPolicyBinding", e)),
        };
        let spec = binding.spec.unwrap_or_default();
        let denies = spec
            .validation_actions
            .unwrap_or_default()
            .iter()
            .any(|a| a == "Deny");
        if spec.policy_name.as_deref() != Some(name.as_str()) || !denies {
            return Err(format!(
                "the ValidatingAdmissionPolicyBinding {name} does not bind policy {name} with validationActions Deny, so no approval is counted"
            ));
        }
        Ok(())
    }
}
