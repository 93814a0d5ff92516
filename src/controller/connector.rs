//! The AwsConnector reconciler: validate, then (in later phases) authenticate and sync.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::status;
use crate::api::conditions::{ConditionStatus, ConditionUpdate};
use crate::api::validation::{FieldError, check_external_id, validate_connector};
use crate::api::{AwsConnector, duration};

pub const CONTROLLER: &str = "connector";

/// The Ready condition of a connector that passed validation but has not synced yet.
fn awaiting_sync() -> ConditionUpdate {
    ConditionUpdate::new(
        "Ready",
        ConditionStatus::False,
        "SyncPending",
        "the spec is valid; waiting for the first inventory sync",
    )
}

/// Reads the external ID that `externalIdSecretRef` names and checks it with the same rule as
/// an inline one. The value itself never leaves this function except to authenticate.
async fn external_id_from_secret(
    ctx: &Context,
    namespace: &str,
    connector: &AwsConnector,
) -> Result<Result<Option<String>, FieldError>, Error> {
    const FIELD: &str = "spec.auth.externalIdSecretRef";
    let Some(reference) = &connector.spec.auth.external_id_secret_ref else {
        return Ok(Ok(None));
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok(Err(FieldError {
            field: FIELD.into(),
            message: format!(
                "{FIELD}: Secret {namespace}/{} does not exist",
                reference.name
            ),
        }));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes.0)
                .trim_end_matches('\n')
                .to_string()
        });
    let Some(value) = value else {
        return Ok(Err(FieldError {
            field: FIELD.into(),
            message: format!(
                "{FIELD}: Secret {namespace}/{} has no key {}",
                reference.name, reference.key
            ),
        }));
    };
    let mut errors = Vec::new();
    check_external_id(FIELD, &value, &mut errors);
    Ok(match errors.pop() {
        Some(error) => Err(error),
        None => Ok(Some(value)),
    })
}

pub async fn reconcile(connector: Arc<AwsConnector>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = connector
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let name = connector.name_any();
    let api: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = connector.status.as_ref();
    let old_conditions = current.map(|s| s.conditions.as_slice()).unwrap_or_default();

    let mut verdict = validate_connector(&connector.spec);
    if verdict.is_valid() {
        verdict.external_id.extend(
            external_id_from_secret(&ctx, &namespace, &connector)
                .await?
                .err(),
        );
    }
    let mut updates = verdict.conditions();
    if verdict.is_valid() {
        updates.push(awaiting_sync());
    }
    let generation = connector.metadata.generation;
    let mut next = current.cloned().unwrap_or_default();
    next.conditions = status::with_conditions(old_conditions, &updates, generation);
    next.observed_generation = generation;
    status::write(&api, &name, current, &next).await?;

    let was_valid = !old_conditions.iter().any(|c| c.reason == "InvalidSpec");
    if !verdict.is_valid() {
        let message = crate::api::validation::describe(&verdict.errors());
        tracing::info!(connector = %name, %namespace, %message, "connector spec is invalid");
        if was_valid || old_conditions.is_empty() {
            ctx.publish(
                &*connector,
                EventType::Warning,
                "InvalidSpec",
                "Validate",
                message,
            )
            .await;
        }
        // Nothing will change until the spec does.
        return Ok(Action::await_change());
    }
    if !was_valid {
        ctx.publish(
            &*connector,
            EventType::Normal,
            "Valid",
            "Validate",
            "the spec is valid again".into(),
        )
        .await;
    }
    let interval =
        duration::parse(&connector.spec.sync.interval).unwrap_or(Duration::from_secs(3600));
    Ok(Action::requeue(interval))
}
