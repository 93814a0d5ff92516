//! The AwsConnector reconciler: validate, then (in later phases) authenticate and sync.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::status;
use crate::api::conditions::{ConditionStatus, ConditionUpdate};
use crate::api::validation::validate_connector;
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

pub async fn reconcile(connector: Arc<AwsConnector>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = connector
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let name = connector.name_any();
    let api: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = connector.status.as_ref();
    let old_conditions = current.map(|s| s.conditions.as_slice()).unwrap_or_default();

    let verdict = validate_connector(&connector.spec);
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
