//! The AccessGrant reconciler: validate, check the connector and its grant policy, then grant;
//! revoke through a finalizer when the grant is deleted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::status;
use crate::api::conditions::{ConditionStatus, ConditionUpdate, Conditions};
use crate::api::validation::{grant_conditions, validate_grant};
use crate::api::{AccessGrant, AwsConnector, GRANT_FINALIZER};
use crate::grant::policy::namespace_allowed;

pub const CONTROLLER: &str = "grant";

/// How soon a grant waiting on something outside itself is looked at again, in case the
/// watch that would wake it is missed.
const RECHECK: Duration = Duration::from_secs(300);

pub async fn reconcile(grant: Arc<AccessGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = grant.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<AccessGrant> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, GRANT_FINALIZER, grant, |event| async {
        match event {
            FinalizerEvent::Apply(grant) => apply(&grant, &api, &ctx).await,
            FinalizerEvent::Cleanup(grant) => cleanup(&grant).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Both conditions of a grant that is not granted, for `reason`.
fn not_granted(reason: &str, message: String) -> Vec<ConditionUpdate> {
    vec![
        ConditionUpdate::new("Granted", ConditionStatus::False, reason, message.clone()),
        ConditionUpdate::new("Ready", ConditionStatus::False, reason, message),
    ]
}

/// Decides what stands between the grant and AWS, reading the connector and, for
/// selector-based policies, the grant's namespace.
async fn gate(grant: &AccessGrant, ctx: &Context) -> Result<Option<Vec<ConditionUpdate>>, Error> {
    let errors = validate_grant(&grant.spec);
    if !errors.is_empty() {
        return Ok(Some(grant_conditions(&errors)));
    }
    let grant_namespace = grant.namespace().ok_or(Error::MissingField("namespace"))?;
    let reference = &grant.spec.connector_ref;
    let connector_namespace = reference
        .namespace
        .clone()
        .unwrap_or(grant_namespace.clone());
    let connectors: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &connector_namespace);
    let Some(connector) = connectors.get_opt(&reference.name).await? else {
        return Ok(Some(not_granted(
            "ConnectorNotFound",
            format!(
                "spec.connectorRef: AwsConnector {connector_namespace}/{} does not exist",
                reference.name
            ),
        )));
    };
    let allowed = &connector.spec.grant_policy.allowed_namespaces;
    let labels = if allowed.selector.is_some() {
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        namespaces
            .get_opt(&grant_namespace)
            .await?
            .map(|n| n.labels().clone())
    } else {
        None
    };
    if let Err(rule) = namespace_allowed(
        allowed,
        &connector_namespace,
        &grant_namespace,
        labels.as_ref(),
    ) {
        return Ok(Some(not_granted("NotAllowed", rule)));
    }
    let conditions = connector
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    if !conditions.is_true("Ready") {
        let why = conditions
            .condition("Ready")
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_else(|| "it has no status yet".into());
        return Ok(Some(not_granted(
            "ConnectorNotReady",
            format!(
                "AwsConnector {connector_namespace}/{} is not Ready ({why})",
                reference.name
            ),
        )));
    }
    Ok(None)
}

async fn apply(
    grant: &AccessGrant,
    api: &Api<AccessGrant>,
    ctx: &Context,
) -> Result<Action, Error> {
    let name = grant.name_any();
    let (updates, action) = match gate(grant, ctx).await? {
        Some(updates) => {
            let reason = updates[0].reason.as_str();
            let action = if reason == "InvalidSpec" {
                Action::await_change()
            } else {
                Action::requeue(RECHECK)
            };
            (updates, action)
        }
        None => (
            not_granted(
                "Pending",
                "waiting for the grant engine to act on this grant".into(),
            ),
            Action::requeue(RECHECK),
        ),
    };

    let current = grant.status.as_ref();
    let old_conditions = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let old_reason = old_conditions.condition("Ready").map(|c| c.reason.clone());
    let generation = grant.metadata.generation;
    let mut next = current.cloned().unwrap_or_default();
    next.conditions = status::with_conditions(old_conditions, &updates, generation);
    next.observed_generation = generation;
    status::write(api, &name, current, &next).await?;

    let ready = &updates[updates.len() - 1];
    if old_reason.as_deref() != Some(ready.reason.as_str()) {
        let type_ = if ready.reason == "Pending" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        tracing::info!(grant = %name, reason = %ready.reason, message = %ready.message, "grant state changed");
        ctx.publish(
            grant,
            type_,
            &ready.reason,
            "Reconcile",
            ready.message.clone(),
        )
        .await;
    }
    Ok(action)
}

async fn cleanup(grant: &AccessGrant) -> Result<Action, Error> {
    // Nothing has been written to AWS for this grant yet, so there is nothing to revoke.
    tracing::info!(grant = %grant.name_any(), "grant deleted; releasing its finalizer");
    Ok(Action::await_change())
}
