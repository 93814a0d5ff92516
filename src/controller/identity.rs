//! The reconciler of IdentityCenterUsers, IdentityCenterGroups and IamUsers, one for the three:
//! checks the object (its spec, its connector's identityPolicy), runs it through the identity
//! shell with the records in the operator's namespace, and reports in status, events and
//! metrics. Deleting one goes through a finalizer: what the operator created is deleted only
//! once the access the operator gave it is revoked, nothing else declares access for it, and
//! nothing it did not add hangs on it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::Context;
use super::error::Error;
use super::grant::{Gathered, gather_for};
use super::ledger::ConfigMapLedger;
use super::records::ConfigMapRecords;
use super::status;
use crate::api::conditions::{ConditionStatus, ConditionUpdate};
use crate::api::grant::PrincipalKind;
use crate::api::identity::{AnyIdentity, IdentityStatus};
use crate::api::validation::describe;
use crate::api::{
    AccessGrant, AccessRequest, IDENTITY_FINALIZER, IamUser, IdentityCenterGroup,
    IdentityCenterUser,
};
use crate::aws::ErrorKind;
use crate::aws::model::Access;
use crate::grant::decide::Connector;
use crate::grant::ledger::{HolderKind, LedgerStore, Origin};
use crate::identity::execute::{IdentityAsk, IdentityError, Outcome, Removal, Report, Shell};
use crate::identity::policy;
use crate::identity::record::{IdentityKind, IdentityRecord};
use crate::identity::shape::Shape;
use crate::permission_set::execute::Refusal;
use crate::permission_set::record::Declarer;
use crate::records::Records;

/// The controllers' names, one per kind.
pub const USER_CONTROLLER: &str = "identity-center-user";
pub const GROUP_CONTROLLER: &str = "identity-center-group";
pub const IAM_USER_CONTROLLER: &str = "iam-user";

/// How many users (groups, IAM users) are reconciled at once: more than the rate-limit lanes
/// serve in a couple of seconds only holds memory.
pub const CONCURRENCY: u16 = 32;

/// How soon one waiting on something outside itself is looked at again.
const RECHECK: Duration = Duration::from_secs(300);
/// How soon a refused write is tried again.
const FAILED_RETRY: Duration = Duration::from_secs(60);

/// The three kinds, as the reconciler sees them.
pub trait IdentityObject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn any(&self) -> AnyIdentity;
}

impl IdentityObject for IdentityCenterUser {
    fn any(&self) -> AnyIdentity {
        AnyIdentity::User(Box::new(self.clone()))
    }
}

impl IdentityObject for IdentityCenterGroup {
    fn any(&self) -> AnyIdentity {
        AnyIdentity::Group(Box::new(self.clone()))
    }
}

impl IdentityObject for IamUser {
    fn any(&self) -> AnyIdentity {
        AnyIdentity::IamUser(Box::new(self.clone()))
    }
}

pub fn kind_of(identity: &AnyIdentity) -> IdentityKind {
    match identity {
        AnyIdentity::User(_) => IdentityKind::IdentityCenterUser,
        AnyIdentity::Group(_) => IdentityKind::IdentityCenterGroup,
        AnyIdentity::IamUser(_) => IdentityKind::IamUser,
    }
}

pub async fn reconcile<K: IdentityObject>(
    object: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = object.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, IDENTITY_FINALIZER, object, |event| async {
        match event {
            FinalizerEvent::Apply(object) => apply(object.as_ref(), &api, &ctx).await,
            FinalizerEvent::Cleanup(object) => cleanup(object.as_ref(), &api, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn ready(ok: bool, reason: &str, message: impl Into<String>) -> ConditionUpdate {
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    ConditionUpdate::new("Ready", status, reason, message)
}

fn declarer(identity: &AnyIdentity) -> Declarer {
    let meta = identity.metadata();
    Declarer {
        uid: meta.uid.clone().unwrap_or_default(),
        object: format!(
            "{}/{}",
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default()
        ),
    }
}

/// What this replica tells grants of the identity: its id once converged, `None` while it is
/// being created; `forget` drops it (refused, deleted, renamed away).
fn remember(ctx: &Context, identity: &AnyIdentity, connector: &str, id: Option<String>) {
    // Grants reach IAM users of the connector's own account only.
    if let AnyIdentity::IamUser(user) = identity
        && user.spec.account.is_some()
    {
        return;
    }
    let object = format!("{} {}", identity.kind(), declarer(identity).object);
    let key = (
        kind_of(identity),
        connector.to_string(),
        identity.aws_name().to_string(),
    );
    let mut known = ctx
        .declared_identities
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // A group's old display name no longer names it. Looked for only when this name is new for
    // the object, not at every check.
    if known.get(&key).is_none_or(|(_, o)| *o != object) {
        known.retain(|k, (_, o)| *o != object || *k == key);
    }
    match id {
        Some(id) => {
            known.insert(key, (Some(id), object));
        }
        None => {
            known.entry(key).or_insert((None, object));
        }
    }
}

fn forget(ctx: &Context, identity: &AnyIdentity) {
    let object = format!("{} {}", identity.kind(), declarer(identity).object);
    ctx.declared_identities
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|_, (_, o)| *o != object);
}

async fn gather(identity: &AnyIdentity, ctx: &Context) -> Result<Gathered, Error> {
    let namespace = identity
        .metadata()
        .namespace
        .clone()
        .ok_or(Error::MissingField("namespace"))?;
    type Allowed = fn(&crate::api::AwsConnector) -> &crate::api::connector::AllowedNamespaces;
    fn users(c: &crate::api::AwsConnector) -> &crate::api::connector::AllowedNamespaces {
        &c.spec.identity_policy.users.allowed_namespaces
    }
    fn groups(c: &crate::api::AwsConnector) -> &crate::api::connector::AllowedNamespaces {
        &c.spec.identity_policy.groups.allowed_namespaces
    }
    fn iam_users(c: &crate::api::AwsConnector) -> &crate::api::connector::AllowedNamespaces {
        &c.spec.identity_policy.iam_users.allowed_namespaces
    }
    let (policy, kinds, allowed): (&str, &str, Allowed) = match identity {
        AnyIdentity::User(_) => ("identityPolicy.users", "IdentityCenterUsers", users),
        AnyIdentity::Group(_) => ("identityPolicy.groups", "IdentityCenterGroups", groups),
        AnyIdentity::IamUser(_) => ("identityPolicy.iamUsers", "IamUsers", iam_users),
    };
    gather_for(
        &namespace,
        identity.connector_ref(),
        (policy, kinds),
        allowed,
        ctx,
    )
    .await
}

/// What keeps it from being converged now: the reason and the message.
fn blocked(identity: &AnyIdentity, gathered: &Gathered) -> Option<(&'static str, String)> {
    let errors = identity.validate();
    if !errors.is_empty() {
        return Some(("InvalidSpec", describe(&errors)));
    }
    let Some(object) = &gathered.object else {
        let message = gathered.namespace_allowed.clone().err().unwrap_or_default();
        return Some(("ConnectorNotFound", message));
    };
    if let Err(message) = &gathered.namespace_allowed {
        return Some(("NotAllowed", message.clone()));
    }
    let refused = policy::check(&object.spec.identity_policy, identity);
    if !refused.is_empty() {
        return Some(("NotAllowed", refused.join("; ")));
    }
    if let Some(message) = policy::unreachable_account(identity, object) {
        return Some(("NotAllowed", message));
    }
    match &gathered.connector {
        Connector::Present {
            ready: Err(why), ..
        } => Some((
            "ConnectorNotReady",
            format!(
                "AwsConnector {} is not Ready: {why}",
                gathered.connector_key
            ),
        )),
        Connector::Present {
            reachable: Err(why),
            ..
        } => Some(("ConnectorUnreachable", why.clone())),
        _ => None,
    }
}

fn read_only(gathered: &Gathered) -> bool {
    matches!(
        gathered.connector,
        Connector::Present {
            read_only: true,
            ..
        }
    )
}

/// The session that reaches the identity, and the identity store's id (Identity Center kinds:
/// once the connector has found the instance).
async fn reach(
    identity: &AnyIdentity,
    gathered: &Gathered,
) -> Result<(crate::aws::Session, String), String> {
    let Some(session) = gathered.session.as_ref() else {
        return Err(format!(
            "AwsConnector {} has no session yet",
            gathered.connector_key
        ));
    };
    match identity {
        AnyIdentity::IamUser(user) => match &user.spec.account {
            Some(account) => {
                let role = gathered
                    .object
                    .as_ref()
                    .and_then(|o| o.spec.sync.members())
                    .map(|m| m.role_name.clone())
                    .unwrap_or_default();
                Ok((session.member(account, &role).await, String::new()))
            }
            None => Ok((session.clone(), String::new())),
        },
        _ => gathered
            .object
            .as_ref()
            .and_then(|o| o.status.as_ref())
            .and_then(|s| s.identity_center.as_ref())
            .map(|i| (session.clone(), i.identity_store_id.clone()))
            .ok_or_else(|| {
                format!(
                    "AwsConnector {} has found no Identity Center instance yet",
                    gathered.connector_key
                )
            }),
    }
}

async fn write_status<K: IdentityObject>(
    object: &K,
    current: Option<&IdentityStatus>,
    api: &Api<K>,
    update: impl FnOnce(&mut IdentityStatus),
    conditions: &[ConditionUpdate],
) -> Result<(), Error> {
    let before = current.cloned().unwrap_or_default();
    let mut next = before.clone();
    update(&mut next);
    let generation = object.meta().generation;
    next.observed_generation = generation;
    next.conditions = status::with_conditions(&before.conditions, conditions, generation);
    status::write(api, &object.name_any(), current, &next).await?;
    Ok(())
}

fn ask<'a>(
    identity: &'a AnyIdentity,
    connector: &'a str,
    store: &'a str,
    read_only: bool,
) -> IdentityAsk<'a> {
    let account = match identity {
        AnyIdentity::IamUser(user) => user.spec.account.as_deref(),
        _ => None,
    };
    IdentityAsk {
        connector,
        store,
        account,
        kind: kind_of(identity),
        name: identity.aws_name(),
        declarer: declarer(identity),
        declared: Shape::declared(identity),
        adopt: identity.adopt(),
        generation: identity.metadata().generation,
        read_only,
        // The status is only a hint here: the lookup, not the status, decides.
        look_up_first: identity.status().is_some_and(|s| {
            s.observed_generation == identity.metadata().generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "OwnedElsewhere")
        }),
    }
}

async fn apply<K: IdentityObject>(
    object: &K,
    api: &Api<K>,
    ctx: &Context,
) -> Result<Action, Error> {
    let identity = object.any();
    let name = object.name_any();
    let kind = identity.kind();
    let gathered = gather(&identity, ctx).await?;
    if let Some((reason, message)) = blocked(&identity, &gathered) {
        forget(ctx, &identity);
        tracing::info!(kind, object = %name, reason, %message, "not converged");
        write_status(
            object,
            identity.status(),
            api,
            |_| {},
            &[ready(false, reason, message)],
        )
        .await?;
        return Ok(Action::requeue(ctx.within_a_check(RECHECK)));
    }
    let (session, store) = match reach(&identity, &gathered).await {
        Ok(reached) => reached,
        Err(message) => {
            write_status(
                object,
                identity.status(),
                api,
                |_| {},
                &[ready(false, "IdentityCenterMissing", message)],
            )
            .await?;
            return Ok(Action::requeue(ctx.within_a_check(RECHECK)));
        }
    };
    let read_only = read_only(&gathered);
    let records = ConfigMapRecords::<IdentityRecord>::new(ctx.client.clone(), &ctx.home_namespace);
    let shell = Shell {
        session: &session,
        records: &records,
        fence: &ctx.fence_for(&gathered.connector_key),
    };
    let ask = ask(&identity, &gathered.connector_key, &store, read_only);
    remember(ctx, &identity, &gathered.connector_key, None);
    let outcome = match shell.converge(&ask).await {
        Ok(outcome) => outcome,
        Err(error) => return refused_by_aws(object, &identity, api, ctx, error).await,
    };
    match outcome {
        Outcome::Refused(refusal) => {
            forget(ctx, &identity);
            let (reason, message) = match refusal {
                Refusal::OwnedElsewhere(message) => ("OwnedElsewhere", message),
                Refusal::DeclaredElsewhere(other) => (
                    "DeclaredElsewhere",
                    format!(
                        "{} {} is declared by {kind} {other}",
                        ask.kind.noun(),
                        ask.name
                    ),
                ),
                Refusal::ReadOnly(message) => ("ReadOnly", message),
            };
            tracing::warn!(kind, object = %name, reason, %message, "refused");
            ctx.publish(
                object,
                EventType::Warning,
                reason,
                "Converge",
                message.clone(),
            )
            .await;
            write_status(
                object,
                identity.status(),
                api,
                |_| {},
                &[ready(false, reason, message)],
            )
            .await?;
            Ok(Action::requeue(ctx.within_a_check(RECHECK)))
        }
        Outcome::Converged(report) => {
            report_converged(object, &identity, api, ctx, &gathered, read_only, report).await
        }
    }
}

/// An AWS answer that trying again will not change (a refused value, no permission) becomes
/// the Ready condition; anything else is retried with backoff.
async fn refused_by_aws<K: IdentityObject>(
    object: &K,
    identity: &AnyIdentity,
    api: &Api<K>,
    ctx: &Context,
    error: IdentityError,
) -> Result<Action, Error> {
    let name = object.name_any();
    let lasting = match &error {
        IdentityError::Aws(aws) => matches!(
            aws.kind,
            ErrorKind::Invalid
                | ErrorKind::NotFound
                | ErrorKind::AccessDenied
                | ErrorKind::Conflict
                | ErrorKind::Other
        ),
        _ => false,
    };
    let message = format!("{} {}: {error}", identity.kind(), identity.aws_name());
    if !lasting {
        return Err(Error::Pending(message));
    }
    tracing::warn!(kind = identity.kind(), object = %name, %message, "AWS refused a write");
    ctx.publish(
        object,
        EventType::Warning,
        "AwsError",
        "Converge",
        message.clone(),
    )
    .await;
    write_status(
        object,
        identity.status(),
        api,
        |_| {},
        &[ready(false, "AwsError", message)],
    )
    .await?;
    Ok(Action::requeue(ctx.within_a_check(FAILED_RETRY)))
}

async fn report_converged<K: IdentityObject>(
    object: &K,
    identity: &AnyIdentity,
    api: &Api<K>,
    ctx: &Context,
    gathered: &Gathered,
    read_only: bool,
    report: Report,
) -> Result<Action, Error> {
    let name = object.name_any();
    let kind = identity.kind();
    let what = format!("{} {}", kind_of(identity).noun(), identity.aws_name());
    let count = |outcome: &'static str| {
        ctx.metrics
            .identity_writes
            .get_or_create(&super::metrics::IdentityLabels {
                connector: gathered.connector_key.clone(),
                kind,
                outcome,
            })
            .inc();
    };
    if !read_only && !report.changes.is_empty() {
        count("changed");
    }
    if report.created {
        count("created");
        tracing::info!(kind, object = %name, id = %report.id, "created");
        ctx.publish(
            object,
            EventType::Normal,
            "Created",
            "Converge",
            format!("{what} created in AWS"),
        )
        .await;
    }
    if !report.drift.is_empty() {
        let outcome = if read_only { "reported" } else { "put_back" };
        ctx.metrics
            .identity_drift
            .get_or_create(&super::metrics::IdentityLabels {
                connector: gathered.connector_key.clone(),
                kind,
                outcome,
            })
            .inc_by(report.drift.len() as u64);
        let note = format!(
            "{what} was changed outside the operator; put back: {}",
            report.drift.join("; ")
        );
        tracing::warn!(kind, object = %name, %note, "drift");
        ctx.publish(object, EventType::Warning, "Drift", "Converge", note)
            .await;
    } else if !report.changes.is_empty() && !read_only {
        let note = format!("{what}: {}", report.changes.join("; "));
        tracing::info!(kind, object = %name, %note, "changed");
        ctx.publish(object, EventType::Normal, "Changed", "Converge", note)
            .await;
    }
    if !report.id.is_empty() {
        remember(
            ctx,
            identity,
            &gathered.connector_key,
            Some(report.id.clone()),
        );
    }
    let adopted = report.origin == Some(Origin::Adopted);
    let condition = if read_only && !report.changes.is_empty() {
        if !report.changes.is_empty() {
            ctx.metrics
                .identity_drift
                .get_or_create(&super::metrics::IdentityLabels {
                    connector: gathered.connector_key.clone(),
                    kind,
                    outcome: "reported",
                })
                .inc_by(report.changes.len() as u64);
        }
        ready(
            false,
            "Drifted",
            format!(
                "AWS differs from the object (readOnly: nothing written): {}",
                report.changes.join("; ")
            ),
        )
    } else {
        let how = if adopted { "adopted" } else { "created" };
        ready(
            true,
            "Converged",
            format!("{what} ({how}) matches the object"),
        )
    };
    let account = match identity {
        AnyIdentity::IamUser(user) => user.spec.account.clone().or_else(|| {
            gathered
                .session
                .as_ref()
                .and_then(|s| s.identity.as_ref())
                .map(|i| i.account.clone())
        }),
        _ => None,
    };
    write_status(
        object,
        identity.status(),
        api,
        |status| {
            status.id = Some(report.id.clone()).filter(|id| !id.is_empty());
            status.arn = report.arn.clone();
            status.account = account;
            status.adopted = Some(adopted);
            status.drift = if read_only {
                report.changes.clone()
            } else {
                report.drift.clone()
            };
        },
        &[condition],
    )
    .await?;
    Ok(Action::requeue(ctx.aws.grant_check))
}

/// The objects of a kind the operator may read, in every namespace it watches.
fn scoped<K>(ctx: &Context) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    if ctx.namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.namespaces
            .iter()
            .map(|n| Api::namespaced(ctx.client.clone(), n))
            .collect()
    }
}

/// Whether a grant's or request's principal and target name this identity.
fn names_it(
    identity: &AnyIdentity,
    principal: &crate::api::grant::Principal,
    target: &crate::api::grant::Target,
    id: Option<&str>,
) -> bool {
    let by_name_or_id = |name: &str| {
        principal.name.as_deref() == Some(name) || (id.is_some() && principal.id.as_deref() == id)
    };
    match identity {
        AnyIdentity::User(user) => {
            principal.kind == PrincipalKind::SsoUser && by_name_or_id(&user.spec.user_name)
        }
        AnyIdentity::Group(group) => {
            (principal.kind == PrincipalKind::SsoGroup && by_name_or_id(&group.spec.display_name))
                || target.group.as_deref() == Some(group.spec.display_name.as_str())
                    && target.kind == crate::api::grant::TargetKind::SsoGroupMembership
        }
        AnyIdentity::IamUser(user) => {
            user.spec.account.is_none()
                && principal.kind == PrincipalKind::IamUser
                && by_name_or_id(&user.spec.user_name)
        }
    }
}

/// Whether a ledger entry's access involves the identity.
fn involves(identity: &AnyIdentity, access: &Access, id: &str) -> bool {
    match (identity, access) {
        (AnyIdentity::User(_), Access::Assignment { principal_id, .. })
        | (AnyIdentity::Group(_), Access::Assignment { principal_id, .. }) => principal_id == id,
        (AnyIdentity::User(_), Access::SsoMembership { user_id, .. }) => user_id == id,
        (AnyIdentity::Group(_), Access::SsoMembership { group_id, .. }) => group_id == id,
        (AnyIdentity::IamUser(user), Access::IamMembership { user: name, .. }) => {
            user.spec.account.is_none() && name == &user.spec.user_name
        }
        _ => false,
    }
}

/// What still declares or holds access for the identity through its connector: grants and
/// requests that name it, and the access the ledger says the operator gave it.
async fn users_of(
    identity: &AnyIdentity,
    connector: &str,
    id: Option<&str>,
    ctx: &Context,
) -> Result<Vec<String>, Error> {
    let mut found = BTreeSet::new();
    let of_connector = |namespace: Option<String>, reference: &crate::api::grant::ConnectorRef| {
        let namespace = reference
            .namespace
            .clone()
            .or(namespace)
            .unwrap_or_default();
        format!("{namespace}/{}", reference.name) == connector
    };
    for api in scoped::<AccessGrant>(ctx) {
        for grant in api.list(&Default::default()).await? {
            if of_connector(grant.namespace(), &grant.spec.connector_ref)
                && names_it(identity, &grant.spec.principal, &grant.spec.target, id)
            {
                found.insert(format!(
                    "AccessGrant {}/{}",
                    grant.namespace().unwrap_or_default(),
                    grant.name_any()
                ));
            }
        }
    }
    if ctx.admission.configured() {
        for api in scoped::<AccessRequest>(ctx) {
            for request in api.list(&Default::default()).await? {
                use crate::api::request::State;
                let ended = request
                    .status
                    .as_ref()
                    .and_then(|s| s.state)
                    .is_some_and(|s| {
                        matches!(
                            s,
                            State::Ended
                                | State::Expired
                                | State::Denied
                                | State::NotAllowed
                                | State::Unvouched
                        )
                    });
                if !ended
                    && of_connector(request.namespace(), &request.spec.connector_ref)
                    && names_it(identity, &request.spec.principal, &request.spec.target, id)
                {
                    found.insert(format!(
                        "AccessRequest {}/{}",
                        request.namespace().unwrap_or_default(),
                        request.name_any()
                    ));
                }
            }
        }
    }
    if let Some(id) = id {
        let ledger = ConfigMapLedger::new(ctx.client.clone(), &ctx.home_namespace);
        let entries = ledger
            .of_connector(connector)
            .await
            .map_err(|e| Error::Pending(e.to_string()))?;
        for stored in entries {
            if !involves(identity, &stored.entry.access, id) {
                continue;
            }
            if stored.entry.holders.is_empty() {
                found.insert(format!("{} (being revoked)", stored.entry.access));
            }
            for holder in stored.entry.holders.values() {
                let kind = if holder.kind == HolderKind::AccessRequest {
                    "AccessRequest"
                } else {
                    "AccessGrant"
                };
                found.insert(format!("{kind} {}", holder.grant));
            }
        }
    }
    Ok(found.into_iter().collect())
}

async fn cleanup<K: IdentityObject>(
    object: &K,
    api: &Api<K>,
    ctx: &Context,
) -> Result<Action, Error> {
    let identity = object.any();
    let name = object.name_any();
    let kind = identity.kind();
    let gathered = gather(&identity, ctx).await?;
    let reached = reach(&identity, &gathered).await.ok();
    let Some((session, store)) = reached.filter(|_| gathered.object.is_some()) else {
        // Without its connector nothing in AWS can be reached: it is left as it is.
        let note = format!(
            "{} {} is left in AWS: its AwsConnector {} cannot reach AWS",
            kind_of(&identity).noun(),
            identity.aws_name(),
            gathered.connector_key
        );
        forget(ctx, &identity);
        tracing::warn!(kind, object = %name, %note, "released");
        ctx.publish(object, EventType::Warning, "Released", "Delete", note)
            .await;
        return Ok(Action::await_change());
    };
    let records = ConfigMapRecords::<IdentityRecord>::new(ctx.client.clone(), &ctx.home_namespace);
    let read_only = read_only(&gathered);
    let ask = ask(&identity, &gathered.connector_key, &store, read_only);
    let deletes = identity.deletion_policy()
        == crate::api::permission_set::ResourceDeletionPolicy::Delete
        && !identity.adopt();
    if deletes && !read_only {
        // What the operator gave it, and what still declares access for it, goes first.
        // The id from the record, not the status: a status is only what was last written.
        let id = records
            .load(&ask.key())
            .await
            .map_err(|e| Error::Pending(e.to_string()))?
            .and_then(|(record, _)| record.id);
        let users = users_of(&identity, &gathered.connector_key, id.as_deref(), ctx).await?;
        if !users.is_empty() {
            let message = format!(
                "{} {} is kept in AWS while access is declared or held for it: {}",
                kind_of(&identity).noun(),
                identity.aws_name(),
                users.join(", ")
            );
            return Err(keep(object, &identity, api, ctx, "InUse", message).await);
        }
    }
    let shell = Shell {
        session: &session,
        records: &records,
        fence: &ctx.fence_for(&gathered.connector_key),
    };
    let removal = shell
        .remove(&ask, identity.deletion_policy())
        .await
        .map_err(|e| Error::Pending(format!("deleting {kind} {name}: {e}")))?;
    match removal {
        Removal::Done(note) => {
            forget(ctx, &identity);
            ctx.metrics
                .identity_writes
                .get_or_create(&super::metrics::IdentityLabels {
                    connector: gathered.connector_key.clone(),
                    kind,
                    outcome: if note.ends_with("deleted in AWS") {
                        "deleted"
                    } else {
                        "released"
                    },
                })
                .inc();
            tracing::info!(kind, object = %name, %note, "removed");
            ctx.publish(object, EventType::Normal, "Deleted", "Delete", note)
                .await;
            Ok(Action::await_change())
        }
        Removal::Blocked(remaining) => {
            let message = format!(
                "{} {} is kept in AWS: the operator did not add {}, so it does not remove it; remove it in AWS (or set deletionPolicy: Retain) to let the object go",
                kind_of(&identity).noun(),
                identity.aws_name(),
                remaining.join(", ")
            );
            Err(keep(object, &identity, api, ctx, "DeletionBlocked", message).await)
        }
    }
}

/// Keeps the object (and what it declares in AWS) while its deletion waits: the reason in
/// status and an event, and an error, which keeps the finalizer (a success would let the
/// object go); it is looked at again with the object's backoff.
async fn keep<K: IdentityObject>(
    object: &K,
    identity: &AnyIdentity,
    api: &Api<K>,
    ctx: &Context,
    reason: &str,
    message: String,
) -> Error {
    tracing::info!(kind = identity.kind(), object = %object.name_any(), reason, %message, "deletion waits");
    if let Err(error) = write_status(
        object,
        identity.status(),
        api,
        |_| {},
        &[ready(false, reason, message.clone())],
    )
    .await
    {
        return error;
    }
    ctx.publish(
        object,
        EventType::Warning,
        reason,
        "Delete",
        message.clone(),
    )
    .await;
    Error::Pending(message)
}
