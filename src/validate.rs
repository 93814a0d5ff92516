//! The offline `validate` command: the checks the controllers run before touching AWS, applied
//! to manifests on disk (CI for GitOps repositories).

use serde::Serialize;

use crate::api::conditions::{ConditionStatus, ConditionUpdate};
use crate::api::permission_set_validation::validate_permission_set;
use crate::api::validation::{grant_conditions, validate_connector, validate_grant};
use crate::manifest::{Document, Loaded};

/// One line of `validate`'s output.
#[derive(Debug, Serialize)]
pub struct Report {
    pub kind: String,
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub source: String,
    pub valid: bool,
    pub conditions: Vec<ConditionUpdate>,
}

fn validated() -> ConditionUpdate {
    ConditionUpdate::new(
        "Ready",
        ConditionStatus::Unknown,
        "Validated",
        "the spec is valid; readiness is decided in the cluster",
    )
}

/// The report of a kind whose only rules are its spec's (a PermissionSet, an identity).
fn declared(
    kind: &str,
    metadata: &kube::core::ObjectMeta,
    source: String,
    errors: Vec<crate::api::validation::FieldError>,
) -> Report {
    let conditions = if errors.is_empty() {
        vec![validated()]
    } else {
        vec![ConditionUpdate::new(
            "Ready",
            ConditionStatus::False,
            "InvalidSpec",
            crate::api::validation::describe(&errors),
        )]
    };
    Report {
        kind: kind.into(),
        name: metadata.name.clone(),
        namespace: metadata.namespace.clone(),
        source,
        valid: errors.is_empty(),
        conditions,
    }
}

/// Validates each loaded document into one report.
pub fn check(loaded: &Loaded) -> Report {
    let source = loaded.source.to_string();
    match &loaded.document {
        Document::Connector(connector) => {
            let verdict = validate_connector(&connector.spec);
            let mut conditions = verdict.conditions();
            if verdict.is_valid() {
                conditions.push(validated());
            }
            Report {
                kind: "AwsConnector".into(),
                name: connector.metadata.name.clone(),
                namespace: connector.metadata.namespace.clone(),
                source,
                valid: verdict.is_valid(),
                conditions,
            }
        }
        Document::Grant(grant) => {
            let errors = validate_grant(&grant.spec);
            let conditions = if errors.is_empty() {
                vec![validated()]
            } else {
                grant_conditions(&errors)
            };
            Report {
                kind: "AccessGrant".into(),
                name: grant.metadata.name.clone(),
                namespace: grant.metadata.namespace.clone(),
                source,
                valid: errors.is_empty(),
                conditions,
            }
        }
        Document::Request(request) => {
            let mut errors = validate_grant(&request.spec.as_grant_spec());
            if request.spec.reason.trim().is_empty() {
                errors.push(crate::api::validation::FieldError::new(
                    "spec.reason",
                    crate::api::rules::REASON_NEEDED,
                ));
            }
            let conditions = if errors.is_empty() {
                vec![validated()]
            } else {
                grant_conditions(&errors)
            };
            Report {
                kind: "AccessRequest".into(),
                name: request.metadata.name.clone(),
                namespace: request.metadata.namespace.clone(),
                source,
                valid: errors.is_empty(),
                conditions,
            }
        }
        Document::PermissionSet(set) => declared(
            "PermissionSet",
            &set.metadata,
            source,
            validate_permission_set(&set.spec),
        ),
        Document::Identity(identity) => declared(
            identity.kind(),
            identity.metadata(),
            source,
            identity.validate(),
        ),
        Document::Undecodable {
            kind,
            name,
            namespace,
            message,
        } => Report {
            kind: kind.clone(),
            name: name.clone(),
            namespace: namespace.clone(),
            source,
            valid: false,
            conditions: vec![ConditionUpdate::new(
                "Ready",
                ConditionStatus::False,
                "InvalidSpec",
                message.clone(),
            )],
        },
    }
}
