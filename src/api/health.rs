//! How GitOps tools should read an AwsConnector, AccessGrant, PermissionSet or identity kind: the
//! decision the Argo CD
//! health script in `docs/gitops/argocd-health.lua` makes, written once more in Rust so that
//! both are tested against the same fixtures (`tests/health/fixtures.json`).

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Progressing,
    Degraded,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "Healthy",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
        }
    }
}

/// Reasons that mean "on its way", not "broken": a grant or sync under way, a permission set
/// being provisioned, a grant waiting for the declared set, user or group it names.
const IN_PROGRESS: &[&str] = &[
    "Pending",
    "SyncPending",
    "Provisioning",
    "PermissionSetPending",
    "IdentityPending",
];

/// The health of an object, from its `Ready` condition and `observedGeneration` (kstatus).
pub fn assess(object: &Value) -> (Health, String) {
    let status = &object["status"];
    let Some(conditions) = status["conditions"].as_array() else {
        return (Health::Progressing, "Waiting for the operator".into());
    };
    let generation = object["metadata"]["generation"].as_i64();
    let observed = status["observedGeneration"].as_i64();
    if generation.is_none() || observed.is_none() || observed < generation {
        let wanted = generation.map(|g| g.to_string()).unwrap_or_default();
        return (
            Health::Progressing,
            format!("Waiting for the operator to observe generation {wanted}"),
        );
    }
    let Some(ready) = conditions.iter().find(|c| c["type"] == "Ready") else {
        return (
            Health::Progressing,
            "Waiting for the Ready condition".into(),
        );
    };
    let text = |key: &str| ready[key].as_str().unwrap_or_default().to_string();
    match ready["status"].as_str() {
        Some("True") => (Health::Healthy, text("message")),
        _ if IN_PROGRESS.contains(&text("reason").as_str()) => {
            (Health::Progressing, text("message"))
        }
        Some("False") => (
            Health::Degraded,
            format!("{}: {}", text("reason"), text("message")),
        ),
        _ => (
            Health::Progressing,
            "Waiting for the Ready condition".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_shared_with_the_argo_cd_script() {
        let text = include_str!("../../tests/health/fixtures.json");
        let fixtures: Vec<Value> = serde_json::from_str(text).expect("fixtures");
        assert!(fixtures.len() >= 10);
        for fixture in fixtures {
            let (health, message) = assess(&fixture["object"]);
            assert_eq!(health.as_str(), fixture["status"], "{}", fixture["name"]);
            assert_eq!(
                message,
                fixture["message"].as_str().unwrap_or_default(),
                "{}",
                fixture["name"]
            );
        }
    }
}
