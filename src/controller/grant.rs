//! The AccessGrant reconciler: validate, check the connector and its policy, resolve names,
//! then make AWS match — grant, adopt, re-grant after drift, revoke on expiry — and revoke
//! through a finalizer when the grant is deleted.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::{session, status};
use crate::api::conditions::{ConditionStatus, ConditionUpdate, Conditions};
use crate::api::grant::{AccessGrantStatus, AccessRecord, DeletionPolicy, ResolvedIds};
use crate::api::validation::{grant_conditions, validate_grant};
use crate::api::{AccessGrant, AwsConnector, GRANT_FINALIZER};
use crate::aws::access::{self as aws_access, Change};
use crate::aws::{AwsError, ErrorKind, Session};
use crate::grant::access::Access;
use crate::grant::expiry::expires_at;
use crate::grant::policy::{check_grant, namespace_allowed};
use crate::grant::resolve::{Directory, resolve};

pub const CONTROLLER: &str = "grant";

/// How soon a grant waiting on something outside itself is looked at again, in case the
/// watch that would wake it is missed.
const RECHECK: Duration = Duration::from_secs(300);
/// How soon an unresolved name is looked up again.
const RESOLVE_RETRY: Duration = Duration::from_secs(60);

pub async fn reconcile(grant: Arc<AccessGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = grant.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<AccessGrant> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, GRANT_FINALIZER, grant, |event| async {
        match event {
            FinalizerEvent::Apply(grant) => apply(&grant, &api, &ctx).await,
            FinalizerEvent::Cleanup(grant) => cleanup(&grant, &ctx).await,
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

fn granted(reason: &str, message: String) -> Vec<ConditionUpdate> {
    vec![
        ConditionUpdate::new("Granted", ConditionStatus::True, reason, message.clone()),
        ConditionUpdate::new("Ready", ConditionStatus::True, reason, message),
    ]
}

/// What stands between a grant and AWS, decided from Kubernetes alone.
enum Gate {
    Blocked(Vec<ConditionUpdate>, Action),
    Open(Box<AwsConnector>),
}

async fn gate(grant: &AccessGrant, ctx: &Context) -> Result<Gate, Error> {
    let errors = validate_grant(&grant.spec);
    if !errors.is_empty() {
        return Ok(Gate::Blocked(
            grant_conditions(&errors),
            Action::await_change(),
        ));
    }
    let grant_namespace = grant.namespace().ok_or(Error::MissingField("namespace"))?;
    let reference = &grant.spec.connector_ref;
    let connector_namespace = reference
        .namespace
        .clone()
        .unwrap_or(grant_namespace.clone());
    let connectors: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &connector_namespace);
    let Some(connector) = connectors.get_opt(&reference.name).await? else {
        let message = format!(
            "spec.connectorRef: AwsConnector {connector_namespace}/{} does not exist",
            reference.name
        );
        return Ok(Gate::Blocked(
            not_granted("ConnectorNotFound", message),
            Action::requeue(RECHECK),
        ));
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
        return Ok(Gate::Blocked(
            not_granted("NotAllowed", rule),
            Action::requeue(RECHECK),
        ));
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
        let message = format!(
            "AwsConnector {connector_namespace}/{} is not Ready ({why})",
            reference.name
        );
        return Ok(Gate::Blocked(
            not_granted("ConnectorNotReady", message),
            Action::requeue(RECHECK),
        ));
    }
    Ok(Gate::Open(Box::new(connector)))
}

/// The condition reason of a failed AWS call.
fn aws_reason(error: &AwsError) -> &'static str {
    match error.kind {
        ErrorKind::Throttled => "Throttled",
        _ => "AwsError",
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    text.and_then(|t| t.parse().ok())
}

/// A grant's status being decided, and the events it calls for.
struct Outcome {
    updates: Vec<ConditionUpdate>,
    action: Action,
    events: Vec<(EventType, &'static str, String)>,
}

impl Outcome {
    fn new(updates: Vec<ConditionUpdate>, action: Action) -> Self {
        Self {
            updates,
            action,
            events: Vec::new(),
        }
    }
}

async fn apply(
    grant: &AccessGrant,
    api: &Api<AccessGrant>,
    ctx: &Context,
) -> Result<Action, Error> {
    let current = grant.status.clone();
    let mut next = current.clone().unwrap_or_default();
    let outcome = match gate(grant, ctx).await? {
        Gate::Blocked(updates, action) => Outcome::new(updates, action),
        Gate::Open(connector) => realise(grant, &connector, ctx, &mut next).await?,
    };

    let old_conditions = current
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let old_reason = old_conditions.condition("Ready").map(|c| c.reason.clone());
    let generation = grant.metadata.generation;
    next.conditions = status::with_conditions(old_conditions, &outcome.updates, generation);
    next.observed_generation = generation;
    status::write(api, &grant.name_any(), current.as_ref(), &next).await?;

    let key = format!(
        "{}/{}",
        grant.namespace().unwrap_or_default(),
        grant.name_any()
    );
    if let Some(ready) = outcome.updates.iter().find(|u| u.type_ == "Ready") {
        ctx.metrics.observe_grant(&key, Some(&ready.reason));
    }
    if let Some(ready) = outcome.updates.iter().find(|u| u.type_ == "Ready")
        && old_reason.as_deref() != Some(ready.reason.as_str())
    {
        tracing::info!(grant = %grant.name_any(), namespace = ?grant.namespace(), reason = %ready.reason, message = %ready.message, "grant state changed");
        if outcome.events.is_empty() {
            let type_ = if ready.status == ConditionStatus::True || ready.reason == "Pending" {
                EventType::Normal
            } else {
                EventType::Warning
            };
            ctx.publish(
                grant,
                type_,
                &ready.reason,
                "Reconcile",
                ready.message.clone(),
            )
            .await;
        }
    }
    for (type_, reason, note) in outcome.events {
        ctx.publish(grant, type_, reason, "Grant", note).await;
    }
    Ok(outcome.action)
}

/// Makes AWS match an allowed grant, recording what it holds in `next`.
async fn realise(
    grant: &AccessGrant,
    connector: &AwsConnector,
    ctx: &Context,
    next: &mut AccessGrantStatus,
) -> Result<Outcome, Error> {
    let external_id = match session::external_id(ctx, connector).await? {
        Ok(id) => id,
        Err(error) => {
            return Ok(Outcome::new(
                not_granted("ConnectorNotReady", error.message),
                Action::requeue(RECHECK),
            ));
        }
    };
    let (session, _) = session::session(ctx, connector, external_id.as_deref()).await;
    let cache = session::directory(ctx, connector).await?;
    let identity_center = connector
        .status
        .as_ref()
        .and_then(|s| s.identity_center.clone());
    let directory = Directory {
        cache: &cache,
        identity_center: identity_center.as_ref(),
        session: Some(&session),
    };
    let resolved = match resolve(&grant.spec, &directory).await {
        Ok(Ok(resolved)) => resolved,
        Ok(Err(unresolved)) => {
            return Ok(Outcome::new(
                not_granted(unresolved.reason, unresolved.message),
                Action::requeue(RESOLVE_RETRY),
            ));
        }
        Err(error) => return Ok(aws_failure(ctx, &error)),
    };
    let access = resolved.access.clone();
    next.resolved = Some(resolved_ids(&access));

    let now = Timestamp::now();
    if let Err(rule) = check_grant(
        &connector.spec.grant_policy,
        &grant.spec,
        &access,
        resolved.permission_set_name.as_deref(),
        &cache.accounts,
        now,
    ) {
        return Ok(Outcome::new(
            not_granted("NotAllowed", rule),
            Action::requeue(RECHECK),
        ));
    }
    if connector.spec.read_only {
        let message = format!("the connector is readOnly: {access} is not granted");
        return Ok(Outcome::new(
            not_granted("ReadOnly", message),
            Action::requeue(RECHECK),
        ));
    }

    let held = next.access.as_ref().and_then(|r| Access::try_from(r).ok());
    let was_adopted = next.adopted == Some(true);
    let granted_at = parse_time(next.granted_at.as_deref());
    let expiry = expires_at(&grant.spec, granted_at, now);
    next.expires_at = expiry.map(rfc3339);

    // Expired: revoke what this grant holds, and keep the object. A grant that expired before
    // it ever held access grants nothing and revokes nothing.
    if expiry.is_some_and(|at| at <= now) {
        let Some(target) = held.clone() else {
            let message = format!(
                "expired at {} before anything was granted",
                next.expires_at.as_deref().unwrap_or_default()
            );
            return Ok(Outcome::new(
                vec![
                    ConditionUpdate::new("Granted", ConditionStatus::False, "Expired", &message),
                    ConditionUpdate::new("Ready", ConditionStatus::True, "Expired", message),
                ],
                Action::await_change(),
            ));
        };
        let mut outcome = match revoke_with_slot(ctx, connector, &session, &target).await {
            Ok(Change::InProgress(request)) => {
                return Ok(in_progress(next, format!("revoking {target}"), request));
            }
            Ok(change) => {
                if let Change::Done(Some(request)) = &change {
                    next.last_request_id = Some(request.clone());
                }
                let message = format!(
                    "expired at {}; {target} revoked",
                    next.expires_at.as_deref().unwrap_or_default()
                );
                let mut outcome = Outcome::new(
                    vec![
                        ConditionUpdate::new(
                            "Granted",
                            ConditionStatus::False,
                            "Expired",
                            &message,
                        ),
                        ConditionUpdate::new("Ready", ConditionStatus::True, "Expired", &message),
                    ],
                    Action::await_change(),
                );
                if matches!(change, Change::Done(_)) {
                    outcome.events.push((EventType::Normal, "Expired", message));
                }
                outcome
            }
            Err(error) => return Ok(aws_failure(ctx, &error)),
        };
        next.access = None;
        outcome.action = Action::await_change();
        return Ok(outcome);
    }

    let mut events = Vec::new();
    // A changed spec: grant the new access first, then revoke the old, so that neither is
    // missing in between.
    let replaced = held.clone().filter(|old| *old != access);

    let exists = match aws_access::exists(&session, &access).await {
        Ok(exists) => exists,
        Err(error) => return Ok(aws_failure(ctx, &error)),
    };
    let holds_it = held.as_ref() == Some(&access);
    let (reason, mut message) = match (exists, holds_it) {
        (true, true) if next.adopted == Some(true) => (
            "Adopted",
            format!("{access} already existed and is adopted"),
        ),
        (true, true) => ("Granted", format!("{access} is granted")),
        (true, false) => {
            // It was there before this grant asked for it: adopt it rather than recreate it.
            next.adopted = Some(true);
            next.granted_at = Some(rfc3339(now));
            events.push((
                EventType::Normal,
                "Adopted",
                format!("{access} already existed: adopted"),
            ));
            (
                "Adopted",
                format!("{access} already existed and is adopted"),
            )
        }
        (false, _) => match grant_with_slot(ctx, connector, &session, &access).await {
            Ok(Change::InProgress(request)) => {
                return Ok(in_progress(next, format!("granting {access}"), request));
            }
            Ok(change) => {
                if let Change::Done(Some(request)) = &change {
                    next.last_request_id = Some(request.clone());
                }
                if holds_it {
                    // Granted before and gone now: removed outside the operator.
                    events.push((
                        EventType::Warning,
                        "Regranted",
                        format!("{access} was removed outside the operator; granted again"),
                    ));
                } else {
                    events.push((EventType::Normal, "Granted", format!("{access} granted")));
                    next.granted_at = Some(rfc3339(now));
                    next.adopted = Some(false);
                }
                ("Granted", format!("{access} is granted"))
            }
            Err(error) => return Ok(aws_failure(ctx, &error)),
        },
    };
    next.access = Some(AccessRecord::from(&access));
    // The expiry of a duration runs from when the access was granted.
    let expiry = expires_at(&grant.spec, parse_time(next.granted_at.as_deref()), now);
    next.expires_at = expiry.map(rfc3339);

    if let Some(old) = replaced {
        if was_adopted && grant.spec.deletion_policy != Some(DeletionPolicy::Revoke) {
            message.push_str(&format!(
                "; the previous {old} was adopted and is left in place"
            ));
        } else {
            match revoke_with_slot(ctx, connector, &session, &old).await {
                Ok(_) => {
                    message.push_str(&format!("; replaced {old}"));
                    events.push((
                        EventType::Normal,
                        "Replaced",
                        format!("replaced {old} with {access}"),
                    ));
                }
                Err(error) => return Ok(aws_failure(ctx, &error)),
            }
        }
    }
    if let Some(record) = &next.expires_at {
        message.push_str(&format!(" until {record}"));
    }
    let mut outcome = Outcome::new(
        granted(reason, message),
        Action::requeue(next_check(ctx, expiry, now)),
    );
    outcome.events = events;
    Ok(outcome)
}

/// An assignment operation AWS is still working on: remembered by request id, looked at again
/// soon.
fn in_progress(next: &mut AccessGrantStatus, doing: String, request: String) -> Outcome {
    let message = format!("{doing}: AWS is still working on it (request {request})");
    next.last_request_id = Some(request);
    Outcome::new(
        not_granted("Pending", message),
        Action::requeue(Duration::from_secs(10)),
    )
}

/// When to look again: the drift check, or the expiry if sooner.
fn next_check(ctx: &Context, expiry: Option<Timestamp>, now: Timestamp) -> Duration {
    let check = ctx.aws.grant_check;
    match expiry {
        Some(at) => {
            let until = now.duration_until(at).unsigned_abs();
            check.min(until + Duration::from_secs(1))
        }
        None => check,
    }
}

/// A failed AWS call: reported, and tried again within a minute (sooner when grants are
/// checked more often than that).
fn aws_failure(ctx: &Context, error: &AwsError) -> Outcome {
    let reason = aws_reason(error);
    let retry = if error.kind == ErrorKind::Throttled {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(60)
    };
    Outcome::new(
        not_granted(reason, error.to_string()),
        Action::requeue(retry.min(ctx.aws.grant_check)),
    )
}

fn resolved_ids(access: &Access) -> ResolvedIds {
    match access {
        Access::Assignment {
            instance_arn,
            permission_set_arn,
            principal_id,
            ..
        } => ResolvedIds {
            principal_id: Some(principal_id.clone()),
            permission_set_arn: Some(permission_set_arn.clone()),
            group_id: None,
            instance_arn: Some(instance_arn.clone()),
        },
        Access::SsoMembership {
            group_id, user_id, ..
        } => ResolvedIds {
            principal_id: Some(user_id.clone()),
            group_id: Some(group_id.clone()),
            ..ResolvedIds::default()
        },
        Access::IamMembership { group, user } => ResolvedIds {
            principal_id: Some(user.clone()),
            group_id: Some(group.clone()),
            ..ResolvedIds::default()
        },
    }
}

/// Runs a grant or revoke of `access`, holding one of the connector's assignment permits
/// when it is an account assignment (AWS allows 15 such operations in flight, shared).
async fn with_slot(
    ctx: &Context,
    connector: &AwsConnector,
    access: &Access,
    operation: impl std::future::Future<Output = Result<Change, AwsError>>,
) -> Result<Change, AwsError> {
    let slots = session::assignment_slots(ctx, connector);
    let _permit = if access.is_assignment() {
        slots.acquire().await.ok()
    } else {
        None
    };
    operation.await
}

async fn grant_with_slot(
    ctx: &Context,
    connector: &AwsConnector,
    session: &Session,
    access: &Access,
) -> Result<Change, AwsError> {
    with_slot(ctx, connector, access, aws_access::grant(session, access)).await
}

async fn revoke_with_slot(
    ctx: &Context,
    connector: &AwsConnector,
    session: &Session,
    access: &Access,
) -> Result<Change, AwsError> {
    with_slot(ctx, connector, access, aws_access::revoke(session, access)).await
}

/// Deleting a grant revokes what it holds, unless it says Retain, or the access was adopted
/// and the grant did not explicitly say Revoke. The finalizer goes only once AWS confirms.
async fn cleanup(grant: &AccessGrant, ctx: &Context) -> Result<Action, Error> {
    let name = grant.name_any();
    ctx.metrics.observe_grant(
        &format!("{}/{name}", grant.namespace().unwrap_or_default()),
        None,
    );
    let status = grant.status.clone().unwrap_or_default();
    let Some(access) = status
        .access
        .as_ref()
        .and_then(|r| Access::try_from(r).ok())
    else {
        tracing::info!(grant = %name, "grant deleted; it held no access");
        return Ok(Action::await_change());
    };
    let policy = grant.spec.deletion_policy;
    if policy == Some(DeletionPolicy::Retain)
        || (status.adopted == Some(true) && policy != Some(DeletionPolicy::Revoke))
    {
        let why = if policy == Some(DeletionPolicy::Retain) {
            "deletionPolicy is Retain"
        } else {
            "it was adopted, not created, by the operator"
        };
        ctx.publish(
            grant,
            EventType::Normal,
            "Retained",
            "Revoke",
            format!("{access} is left in place: {why}"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let grant_namespace = grant.namespace().unwrap_or_default();
    let reference = &grant.spec.connector_ref;
    let connector_namespace = reference.namespace.clone().unwrap_or(grant_namespace);
    let connectors: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &connector_namespace);
    let Some(connector) = connectors.get_opt(&reference.name).await? else {
        // Without its connector there is no way into AWS; keeping the finalizer would only
        // block the deletion forever.
        let note = format!(
            "AwsConnector {connector_namespace}/{} is gone: {access} could not be revoked",
            reference.name
        );
        tracing::warn!(grant = %name, %note);
        ctx.publish(grant, EventType::Warning, "RevokeSkipped", "Revoke", note)
            .await;
        return Ok(Action::await_change());
    };
    if connector.spec.read_only {
        ctx.publish(
            grant,
            EventType::Warning,
            "ReadOnly",
            "Revoke",
            format!("the connector is readOnly: {access} is left in place"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let external_id = session::external_id(ctx, &connector).await?.ok().flatten();
    let (session, _) = session::session(ctx, &connector, external_id.as_deref()).await;
    match revoke_with_slot(ctx, &connector, &session, &access).await {
        Ok(Change::InProgress(request)) => Err(Error::Pending(format!(
            "AWS is still revoking {access} (request {request})"
        ))),
        Ok(change) => {
            let note = match change {
                Change::AlreadySo => format!("{access} was already gone"),
                _ => format!("{access} revoked"),
            };
            tracing::info!(grant = %name, %note, "grant deleted");
            ctx.publish(grant, EventType::Normal, "Revoked", "Revoke", note)
                .await;
            Ok(Action::await_change())
        }
        Err(error) => Err(Error::Aws(error)),
    }
}
