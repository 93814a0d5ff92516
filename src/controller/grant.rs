//! The AccessGrant reconciler: gathers what the decision core needs (the spec, the connector's
//! health and policy, resolved names), runs the grant through the shared shell, and reports
//! what happened in status and events. What the grant holds is read from the ownership ledger,
//! never from its status; deleting the grant goes through a finalizer.

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
use super::ledger::ConfigMapLedger;
use super::records::ConfigMapSetRecords;
use super::{session, status};
use crate::api::conditions::{ConditionStatus, ConditionUpdate, Conditions};
use crate::api::grant::{AccessGrantStatus, AccessRecord, AccountAccess, ResolvedIds};
use crate::api::validation::{describe, validate_grant};
use crate::api::{AccessGrant, AccessGrantSpec, AwsConnector, GRANT_FINALIZER};
use crate::aws::{ErrorKind, Session};
use crate::grant::access::Access;
use crate::grant::decide::{Connector, Ending, Kept};
use crate::grant::execute::{
    Done, GrantAsk, GrantReport, HeldChange, Settle, ShellError, when_replaced,
};
use crate::grant::expiry::Expiry;
use crate::grant::ledger::{HolderKind, OperationKind, Origin};
use crate::grant::observations::Observations;
use crate::grant::plan::Names;
use crate::grant::policy::{check_grant, check_unit, namespace_allowed_by};
use crate::grant::resolve::{DeclaredIdentity, DeclaredSet, Directory, Resolved, resolve};
use crate::grant::units::settle_in_unit;
use crate::permission_set::record::key as set_key;
use crate::records::Records;
use crate::sync::cache::SyncCache;

pub const CONTROLLER: &str = "grant";

/// How soon a grant waiting on something outside itself is looked at again, in case the
/// watch that would wake it is missed.
const RECHECK: Duration = Duration::from_secs(300);
/// How soon an unresolved name is looked up again.
const RESOLVE_RETRY: Duration = Duration::from_secs(60);
/// How soon an operation AWS is still working on is looked at again.
const PENDING_RETRY: Duration = Duration::from_secs(10);

/// How many grants (and requests) are reconciled at once. The lanes they wait on allow 20 calls
/// a second and at most 10 assignment operations in flight (`grant::execute`), so 64
/// reconciliations keep them busy, and a thousand grants applied at once wait in the
/// controller's queue (a few hundred bytes each) instead of as reconciliations in flight. One
/// connector takes at most `controller::shares::SHARE` of them.
pub const CONCURRENCY: u16 = 64;

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

fn conditions(granted: bool, ready: bool, reason: &str, message: &str) -> Vec<ConditionUpdate> {
    let status = |b: bool| {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    };
    vec![
        ConditionUpdate::new("Granted", status(granted), reason, message),
        ConditionUpdate::new("Ready", status(ready), reason, message),
    ]
}

pub(super) fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Everything about a grant and its connector that is read from Kubernetes.
pub(super) struct Gathered {
    pub(super) connector: Connector,
    /// The connector object, when it exists.
    pub(super) object: Option<AwsConnector>,
    /// `namespace/name` of the connector.
    pub(super) connector_key: String,
    pub(super) session: Option<Session>,
    /// The connector's allowed namespaces, checked for this grant.
    pub(super) namespace_allowed: Result<(), String>,
    pub(super) cache: Arc<SyncCache>,
    /// The PermissionSet object that declares the set a grant names by name, if any.
    pub(super) declared_set: Option<DeclaredSet>,
    /// The declared users and groups the grant names.
    pub(super) identities: Vec<DeclaredIdentity>,
}

pub(super) async fn gather(grant: &AccessGrant, ctx: &Context) -> Result<Gathered, Error> {
    let grant_namespace = grant.namespace().ok_or(Error::MissingField("namespace"))?;
    let mut gathered = gather_for(
        &grant_namespace,
        &grant.spec.connector_ref,
        ("grantPolicy", "AccessGrants"),
        |c| &c.spec.grant_policy.allowed_namespaces,
        ctx,
    )
    .await?;
    gathered.declared_set =
        declared_set(ctx, &gathered.connector_key, &gathered.cache, &grant.spec).await;
    gathered.identities = declared_identities(ctx, &gathered.connector_key, &grant.spec);
    Ok(gathered)
}

/// The users and groups a grant names (its principal, its target group) that objects of the
/// operator's declare, as their reconciler keeps them.
pub(super) fn declared_identities(
    ctx: &Context,
    connector: &str,
    spec: &AccessGrantSpec,
) -> Vec<DeclaredIdentity> {
    use crate::api::grant::PrincipalKind;
    use crate::identity::record::IdentityKind;
    let mut named = Vec::new();
    if let Some(name) = &spec.principal.name {
        let kind = match spec.principal.kind {
            PrincipalKind::SsoUser => IdentityKind::IdentityCenterUser,
            PrincipalKind::SsoGroup => IdentityKind::IdentityCenterGroup,
            PrincipalKind::IamUser => IdentityKind::IamUser,
        };
        named.push((kind, name.clone()));
    }
    if spec.target.kind == crate::api::grant::TargetKind::SsoGroupMembership
        && let Some(group) = &spec.target.group
    {
        named.push((IdentityKind::IdentityCenterGroup, group.clone()));
    }
    let known = ctx
        .declared_identities
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    named
        .into_iter()
        .filter_map(|(kind, name)| {
            let (id, object) = known.get(&(kind, connector.to_string(), name.clone()))?;
            Some(DeclaredIdentity {
                kind,
                name,
                id: id.clone(),
                object: object.clone(),
            })
        })
        .collect()
}

/// The permission set a grant names by name, when a PermissionSet object declares it: as the
/// PermissionSet controller keeps it, or from the operator's record (one read) when the name is
/// new to this replica.
async fn declared_set(
    ctx: &Context,
    connector: &str,
    cache: &SyncCache,
    spec: &AccessGrantSpec,
) -> Option<DeclaredSet> {
    let name = spec
        .target
        .permission_set
        .as_deref()
        .filter(|p| !p.starts_with("arn:"))?;
    let key = set_key(connector, name);
    // Kept by the PermissionSet controller as it converges the set: no read needed.
    let known = ctx
        .declared_sets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    if let Some(arn) = known {
        return Some(DeclaredSet {
            name: name.to_string(),
            arn: Some(arn),
            object: String::new(),
        });
    }
    // A set the last sync saw and no PermissionSet of this replica has converged: the sync's
    // ARN. Only a name nobody knows yet costs a read of its record (being created?).
    if cache.permission_set_arns.contains_key(name) {
        return None;
    }
    let records = ConfigMapSetRecords::new(ctx.client.clone(), &ctx.home_namespace);
    match records.load(&key).await {
        Ok(Some((record, _))) if record.deleting.is_none() => Some(DeclaredSet {
            name: record.name,
            arn: record.arn,
            object: record.declarer.object,
        }),
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(permission_set = name, %error, "cannot read the record of a declared permission set; using the last sync");
            None
        }
    }
}

/// What `gather` reads, for any object in `grant_namespace` that names a connector:
/// `allowed` picks the connector's allowedNamespaces that govern it, `policy` names them.
pub(super) async fn gather_for(
    grant_namespace: &str,
    reference: &crate::api::grant::ConnectorRef,
    policy: (&str, &str),
    allowed: fn(&AwsConnector) -> &crate::api::connector::AllowedNamespaces,
    ctx: &Context,
) -> Result<Gathered, Error> {
    let grant_namespace = grant_namespace.to_string();
    let connector_namespace = reference
        .namespace
        .clone()
        .unwrap_or(grant_namespace.clone());
    let connector_key = format!("{connector_namespace}/{}", reference.name);
    let connectors: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &connector_namespace);
    let Some(object) = connectors.get_opt(&reference.name).await? else {
        let missing = format!("spec.connectorRef: AwsConnector {connector_key} does not exist");
        return Ok(Gathered {
            connector: Connector::Missing,
            object: None,
            connector_key,
            session: None,
            namespace_allowed: Err(missing),
            cache: Arc::new(SyncCache::default()),
            declared_set: None,
            identities: Vec::new(),
        });
    };
    let allowed = allowed(&object);
    let labels = if allowed.selector.is_some() {
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        namespaces
            .get_opt(&grant_namespace)
            .await?
            .map(|n| n.labels().clone())
    } else {
        None
    };
    let namespace_allowed = namespace_allowed_by(
        policy,
        allowed,
        &connector_namespace,
        &grant_namespace,
        labels.as_ref(),
    );
    let conditions = object
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let ready = if conditions.is_true("Ready") {
        Ok(())
    } else {
        Err(conditions
            .condition("Ready")
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_else(|| "it has no status yet".into()))
    };
    // A session from the connector's current settings; failing that (its external-ID Secret
    // is gone), the last one that worked, so that revokes still go through.
    let (session, reachable) = match session::external_id(ctx, &object).await? {
        Ok(chain) => (Some(session::session(ctx, &chain).await.0), Ok(())),
        Err(error) => match ctx.last_session(&session::key(&object)) {
            Some(kept) => (Some(kept), Ok(())),
            None => (None, Err(error.message)),
        },
    };
    let cache = session::directory(ctx, &object).await?;
    Ok(Gathered {
        connector: Connector::Present {
            ready,
            deleting: object.metadata.deletion_timestamp.is_some(),
            read_only: object.spec.read_only,
            reachable,
        },
        object: Some(object),
        connector_key,
        session,
        namespace_allowed,
        cache,
        declared_set: None,
        identities: Vec::new(),
    })
}

/// What the spec asks for: the resolved access, or why there is none.
pub(super) enum Wanted {
    Access(Box<Resolved>, ResolvedIds),
    Refused(&'static str, String, Duration),
}

/// How long a permission set, user or group name that nothing knows is looked for every few
/// seconds before once a minute will do.
const MISSING_NAME_PATIENCE: Duration = Duration::from_secs(120);

/// Whether the grant has said for a while that its permission set is not found.
fn missing_for_long(grant: &AccessGrant) -> bool {
    let Some(ready) = grant
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
    else {
        return false;
    };
    let since = ready.last_transition_time.0;
    [
        "PermissionSetNotFound",
        "PrincipalNotFound",
        "GroupNotFound",
    ]
    .contains(&ready.reason.as_str())
        && Timestamp::now().duration_since(since).unsigned_abs() > MISSING_NAME_PATIENCE
}

pub(super) async fn wanted(grant: &AccessGrant, gathered: &Gathered) -> Wanted {
    let errors = validate_grant(&grant.spec);
    if !errors.is_empty() {
        return Wanted::Refused("InvalidSpec", describe(&errors), RECHECK);
    }
    let Some(object) = &gathered.object else {
        return Wanted::Refused(
            "ConnectorNotFound",
            gathered.namespace_allowed.clone().err().unwrap_or_default(),
            RECHECK,
        );
    };
    let identity_center = object
        .status
        .as_ref()
        .and_then(|s| s.identity_center.clone());
    let directory = Directory {
        cache: &gathered.cache,
        identity_center: identity_center.as_ref(),
        session: gathered.session.as_ref(),
        declared: gathered.declared_set.as_ref(),
        identities: &gathered.identities,
    };
    match resolve(&grant.spec, &directory).await {
        Ok(Ok(resolved)) => {
            let ids = resolved_ids(&resolved.access);
            Wanted::Access(Box::new(resolved), ids)
        }
        // A declared set, user or group being created is looked for again soon, and so is a
        // name nobody knows yet, for a while: its PermissionSet, IdentityCenterUser or
        // IdentityCenterGroup may have been applied with the grant and not have begun yet.
        Ok(Err(unresolved))
            if unresolved.reason == "PermissionSetPending"
                || unresolved.reason == "IdentityPending"
                || ([
                    "PermissionSetNotFound",
                    "PrincipalNotFound",
                    "GroupNotFound",
                ]
                .contains(&unresolved.reason)
                    && !missing_for_long(grant)) =>
        {
            Wanted::Refused(unresolved.reason, unresolved.message, PENDING_RETRY)
        }
        Ok(Err(unresolved)) => {
            Wanted::Refused(unresolved.reason, unresolved.message, RESOLVE_RETRY)
        }
        Err(error) => {
            let (reason, retry) = if error.kind == ErrorKind::Throttled {
                ("Throttled", Duration::from_secs(30))
            } else {
                ("AwsError", Duration::from_secs(60))
            };
            Wanted::Refused(reason, error.to_string(), retry)
        }
    }
}

/// Runs the grant through the shell with its connector's ledger, session and limits.
/// The listings the connector's grants share (keyed like the connector's other kept state).
pub(super) fn observations(ctx: &Context, gathered: &Gathered) -> Arc<Observations> {
    ctx.observations(
        &gathered
            .object
            .as_ref()
            .map_or_else(|| gathered.connector_key.clone(), session::key),
    )
}

/// Who holds the access being converged: a grant, or an approved request.
pub(super) struct Holding<'a> {
    pub uid: String,
    /// `namespace/name`.
    pub name: String,
    pub kind: HolderKind,
    /// What is asked, as a grant (a request's duration as its `duration`), for the policy.
    pub spec: &'a AccessGrantSpec,
    pub expiry: Expiry,
}

impl<'a> Holding<'a> {
    fn grant(grant: &'a AccessGrant) -> Self {
        Self {
            uid: grant.uid().unwrap_or_default(),
            name: format!(
                "{}/{}",
                grant.namespace().unwrap_or_default(),
                grant.name_any()
            ),
            kind: HolderKind::AccessGrant,
            spec: &grant.spec,
            expiry: lasting(grant),
        }
    }
}

/// When a grant's access ends. A `duration` runs from when the grant first held the access:
/// while it holds it, the ledger says when that was; once it no longer does (the access expired
/// and was revoked), the `grantedAt` the operator recorded in the grant's status does. Without
/// it, looking at an expired grant again (a restart, a change of its connector) would start
/// its duration over and grant the access again. The status can only bring the end sooner:
/// a `grantedAt` later than the ledger's start (written by someone with access to the status)
/// never extends it.
fn lasting(grant: &AccessGrant) -> Expiry {
    match Expiry::of(&grant.spec) {
        Expiry::After(lifetime) => grant
            .status
            .as_ref()
            .and_then(|s| s.granted_at.as_deref())
            .and_then(|at| at.parse::<Timestamp>().ok())
            .map_or(Expiry::After(lifetime), |at| {
                Expiry::AfterNoLaterThan(lifetime, at)
            }),
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn converge(
    holding: &Holding<'_>,
    ctx: &Context,
    gathered: &Gathered,
    wanted: &[Access],
    settle: &(dyn Fn(&Access) -> Settle + Sync),
    deleting: bool,
    now: Timestamp,
) -> Result<GrantReport, ShellError> {
    let ledger = ConfigMapLedger::new(ctx.client.clone(), &ctx.home_namespace);
    let slots = match &gathered.object {
        Some(object) => session::assignment_slots(ctx, object),
        None => Arc::new(tokio::sync::Semaphore::new(1)),
    };
    let observations = observations(ctx, gathered);
    // The connector as it is now, not as it was read at the start: its deletion may have begun
    // since (see `StillServing`).
    let (client, reference) = (ctx.client.clone(), gathered.connector_key.clone());
    let still_serving = move || -> futures::future::BoxFuture<'_, bool> {
        let (client, reference) = (client.clone(), reference.clone());
        Box::pin(async move {
            let Some((namespace, name)) = reference.split_once('/') else {
                return false;
            };
            let connectors: Api<AwsConnector> = Api::namespaced(client, namespace);
            matches!(
                connectors.get_opt(name).await,
                Ok(Some(c)) if c.metadata.deletion_timestamp.is_none()
            )
        })
    };
    let shell = crate::grant::execute::Shell {
        ledger: &ledger,
        connector: &gathered.connector_key,
        session: gathered.session.as_ref(),
        fence: &ctx.fence_for(&gathered.connector_key),
        slots: &slots,
        locks: &ctx.access_locks,
        observations: Some(&observations),
        still_serving: Some(&still_serving),
    };
    let policy = gathered
        .object
        .as_ref()
        .map(|o| o.spec.grant_policy.clone());
    // A declared set the last sync has not seen yet is known by its record's name too, so that
    // the grantPolicy's lists of set names apply to it.
    let names = match &gathered.declared_set {
        Some(DeclaredSet {
            name,
            arn: Some(arn),
            ..
        }) if !gathered.cache.permission_set_arns.contains_key(name) => {
            let mut names = gathered.cache.permission_set_arns.clone();
            names.insert(name.clone(), arn.clone());
            std::borrow::Cow::Owned(names)
        }
        _ => std::borrow::Cow::Borrowed(&gathered.cache.permission_set_arns),
    };
    let allowed = |access: &Access| -> Result<(), String> {
        gathered.namespace_allowed.clone()?;
        match &policy {
            Some(policy) => {
                if let Some(unit) = &holding.spec.target.organizational_unit {
                    check_unit(policy, unit, &gathered.cache)?;
                }
                check_grant(
                    policy,
                    holding.spec,
                    access,
                    &names,
                    &gathered.cache.accounts,
                    now,
                )
            }
            // Without the connector there is no policy to check: nothing ends for that alone.
            None => Ok(()),
        }
    };
    let allowed_or_missing = |access: &Access| match gathered.connector {
        Connector::Missing => Ok(()),
        _ => allowed(access),
    };
    shell
        .converge(&GrantAsk {
            holder: &holding.uid,
            grant: &holding.name,
            holder_kind: holding.kind,
            wanted,
            settle,
            deleting,
            deletion_policy: holding.spec.deletion_policy,
            expiry: holding.expiry,
            allowed: &allowed_or_missing,
            connector: &gathered.connector,
            now,
        })
        .await
}

/// The status and events a grant's report calls for.
struct Outcome {
    updates: Vec<ConditionUpdate>,
    /// When to look again; `None` waits for a change.
    requeue: Option<Duration>,
    events: Vec<(EventType, &'static str, String)>,
}

pub(super) fn kept_why(kept: &Kept) -> String {
    match kept {
        Kept::DeclaredBy(others) => format!("still declared by {}", others.join(", ")),
        Kept::Adopted => "it existed before and was adopted, not created, by the operator".into(),
        Kept::Retain => "deletionPolicy is Retain".into(),
        Kept::ReadOnly => "the connector is readOnly".into(),
    }
}

pub(super) fn ending_text(ending: &Ending) -> String {
    match ending {
        Ending::Expired(at) => format!("expired at {}", rfc3339(*at)),
        Ending::NotAllowed(rule) => format!("no longer allowed ({rule})"),
        Ending::Deleted => "the AccessGrant is deleted".into(),
        Ending::Replaced => "the spec no longer declares it".into(),
        Ending::ConnectorDeleted => "the AwsConnector is deleted".into(),
    }
}

/// An organizational-unit grant's unit, and what becomes of the access it no longer asks for.
type UnitSettle<'a> = (&'a str, &'a dyn Fn(&Access) -> Settle);

/// Events for what happened to access the grant no longer declares, and whether all of it
/// is settled; the first problem, if not.
fn report_others(
    report: &GrantReport,
    wanted: Option<&Access>,
    unit: Option<UnitSettle<'_>>,
    names: &Names,
    events: &mut Vec<(EventType, &'static str, String)>,
) -> Option<(&'static str, String)> {
    let mut problem = None;
    for (access, result) in &report.others {
        let shown = names.describe(access);
        match result {
            // An organizational-unit grant's account that left the unit.
            Ok(Done::Revoked {
                ending: Ending::Replaced,
                ..
            }) if unit.is_some_and(|(_, settle)| settle(access) == Settle::Now) => {
                let unit = unit.map(|(unit, _)| unit).unwrap_or_default();
                events.push((
                    EventType::Normal,
                    "Revoked",
                    format!("{shown} revoked: the account is no longer under {unit}"),
                ));
            }
            Ok(Done::Revoked {
                ending: Ending::Replaced,
                ..
            }) if wanted.is_some() => {
                let new_shown = wanted.map(|a| names.describe(a)).unwrap_or_default();
                events.push((
                    EventType::Normal,
                    "Replaced",
                    format!("replaced {shown} with {new_shown}"),
                ));
            }
            Ok(Done::Revoked {
                ending,
                already_gone,
            }) => {
                let note = if *already_gone {
                    format!("{shown} was already gone ({})", ending_text(ending))
                } else {
                    format!("{shown} revoked: {}", ending_text(ending))
                };
                events.push((EventType::Normal, "Revoked", note));
            }
            Ok(Done::Released { ending, kept }) => events.push((
                EventType::Normal,
                "Retained",
                format!(
                    "{shown} is left in place ({}): {}",
                    ending_text(ending),
                    kept_why(kept)
                ),
            )),
            Ok(Done::Nothing(_) | Done::Held { .. }) => {}
            Ok(Done::InProgress { request_id, .. }) => {
                problem.get_or_insert((
                    "Pending",
                    format!("revoking {shown}: AWS is still working on it (request {request_id})"),
                ));
            }
            Ok(Done::Wait { reason, message } | Done::Refused { reason, message }) => {
                problem.get_or_insert((*reason, message.clone()));
            }
            Err(error) => {
                problem.get_or_insert((shell_reason(error), format!("revoking {shown}: {error}")));
            }
        }
    }
    problem
}

pub(super) fn shell_reason(error: &ShellError) -> &'static str {
    match error {
        ShellError::Aws(e) if e.kind == ErrorKind::Throttled => "Throttled",
        ShellError::Aws(_) | ShellError::NoSession(_) => "AwsError",
        ShellError::Ledger(_) => "LedgerError",
        ShellError::Fenced(_) => "NotLeader",
    }
}

pub(super) fn retry_after(reason: &str, ctx: &Context) -> Duration {
    let retry = match reason {
        "Pending" => PENDING_RETRY,
        "Throttled" => Duration::from_secs(30),
        _ => Duration::from_secs(60),
    };
    ctx.within_a_check(retry)
}

async fn apply(
    grant: &AccessGrant,
    api: &Api<AccessGrant>,
    ctx: &Context,
) -> Result<Action, Error> {
    let now = Timestamp::now();
    let gathered = gather(grant, ctx).await?;
    let wanted = wanted(grant, &gathered).await;
    let (accesses, unit): (&[Access], _) = match &wanted {
        Wanted::Access(resolved, _) => (&resolved.accesses, resolved.unit.as_deref()),
        Wanted::Refused(..) => (&[], None),
    };
    let access = accesses.first();
    let settle = |held: &Access| match (&wanted, unit) {
        (Wanted::Access(resolved, _), Some(unit)) => {
            settle_in_unit(&resolved.access, unit, &gathered.cache, held)
        }
        _ => Settle::WhenReplaced,
    };
    let current = grant.status.as_deref().cloned();
    let mut next = current.clone().unwrap_or_default();
    let mut events = Vec::new();
    let outcome = match converge(
        &Holding::grant(grant),
        ctx,
        &gathered,
        accesses,
        &settle,
        false,
        now,
    )
    .await
    {
        Err(ShellError::Fenced(fenced)) => return Err(Error::Pending(fenced.to_string())),
        Err(ShellError::Ledger(e)) => return Err(Error::Pending(e.to_string())),
        Err(error) => {
            let reason = shell_reason(&error);
            Outcome {
                updates: conditions(false, false, reason, &error.to_string()),
                requeue: Some(retry_after(reason, ctx)),
                events,
            }
        }
        Ok(report) => {
            let names = Names::from_cache(&gathered.cache);
            let left: Option<UnitSettle<'_>> =
                unit.map(|unit| (unit, &settle as &dyn Fn(&Access) -> Settle));
            let problem = report_others(&report, access, left, &names, &mut events);
            let observations = observations(ctx, &gathered);
            let mut outcome = match (&wanted, unit, report.wanted.first()) {
                (Wanted::Access(resolved, ids), Some(unit), _) => describe_unit(
                    grant,
                    &report,
                    (resolved, ids, unit),
                    &names,
                    &mut next,
                    &mut events,
                    ctx,
                    &observations,
                    now,
                ),
                (_, _, Some((_, Err(error)))) => {
                    let reason = shell_reason(error);
                    Outcome {
                        updates: conditions(false, false, reason, &error.to_string()),
                        requeue: Some(retry_after(reason, ctx)),
                        events: Vec::new(),
                    }
                }
                (_, _, first) => describe_wanted(
                    grant,
                    first.and_then(|(_, done)| done.as_ref().ok()).cloned(),
                    &wanted,
                    &names,
                    &mut next,
                    &mut events,
                    ctx,
                    &observations,
                    now,
                ),
            };
            if let (Some((reason, message)), true) = (
                problem,
                outcome
                    .updates
                    .iter()
                    .any(|u| u.type_ == "Ready" && u.status == ConditionStatus::True),
            ) {
                // What the grant held before is not settled yet: not Ready until it is.
                outcome.updates.retain(|u| u.type_ != "Ready");
                outcome.updates.push(ConditionUpdate::new(
                    "Ready",
                    ConditionStatus::False,
                    reason,
                    message,
                ));
                outcome.requeue = Some(retry_after(reason, ctx));
            }
            outcome.events = events;
            // Whatever keeps the grant waiting (a connector not Ready, a refusal), its expiry
            // comes on time.
            if let Some(at) = report.next_expiry.filter(|at| *at > now) {
                let until = now.duration_until(at).unsigned_abs() + Duration::from_secs(1);
                outcome.requeue = Some(outcome.requeue.map_or(until, |r| r.min(until)));
            }
            outcome
        }
    };
    write_status(grant, api, ctx, current.as_ref(), next, outcome).await
}

/// The status of the access the grant asks for.
#[allow(clippy::too_many_arguments)]
fn describe_wanted(
    grant: &AccessGrant,
    done: Option<Done>,
    wanted: &Wanted,
    names: &Names,
    next: &mut AccessGrantStatus,
    events: &mut Vec<(EventType, &'static str, String)>,
    ctx: &Context,
    observations: &Observations,
    now: Timestamp,
) -> Outcome {
    let expiry = Expiry::of(&grant.spec);
    let (access, ids) = match wanted {
        Wanted::Access(resolved, ids) => (&resolved.access, ids),
        Wanted::Refused(reason, message, retry) => {
            // Nothing wanted: a refusal, unless the grant has simply expired.
            if let Expiry::At(at) = expiry
                && at <= now
            {
                return expired(next, at);
            }
            next.access = None;
            return Outcome {
                updates: conditions(false, false, reason, message),
                requeue: Some(*retry),
                events: Vec::new(),
            };
        }
    };
    next.resolved = Some(ids.clone());
    // The names people wrote; the ids are in status.resolved.
    let shown = names.describe(access);
    let done = done.unwrap_or(Done::Nothing(Ending::Replaced));
    match done {
        Done::Held {
            origin,
            change,
            request_id,
            since,
        } => {
            let since = Some(since).filter(|s| !s.is_empty());
            next.granted_at = since.clone();
            let at = expiry.at(since.as_deref().and_then(|s| s.parse().ok()), now);
            next.expires_at = at.map(rfc3339);
            next.adopted = Some(origin == Origin::Adopted);
            next.access = Some(AccessRecord::from(access));
            if request_id.is_some() {
                next.last_request_id = request_id;
            }
            let (reason, mut message) = match origin {
                Origin::Adopted => ("Adopted", format!("{shown} already existed and is adopted")),
                Origin::Created => ("Granted", format!("{shown} is granted")),
            };
            events.extend(held_event(&change, &shown));
            if let Some(at) = &next.expires_at {
                message.push_str(&format!(" until {at}"));
            }
            Outcome {
                updates: conditions(true, true, reason, &message),
                requeue: Some(next_check(ctx, observations, at, now)),
                events: Vec::new(),
            }
        }
        Done::InProgress { kind, request_id } => {
            let doing = match kind {
                OperationKind::Grant => "granting",
                OperationKind::Revoke => "revoking",
            };
            let message =
                format!("{doing} {shown}: AWS is still working on it (request {request_id})");
            next.last_request_id = Some(request_id);
            Outcome {
                updates: conditions(false, false, "Pending", &message),
                requeue: Some(PENDING_RETRY),
                events: Vec::new(),
            }
        }
        Done::Revoked {
            ending,
            already_gone,
        } => {
            next.access = None;
            if !already_gone {
                let reason = if matches!(ending, Ending::Expired(_)) {
                    "Expired"
                } else {
                    "Revoked"
                };
                events.push((
                    EventType::Normal,
                    reason,
                    format!("{shown} revoked: {}", ending_text(&ending)),
                ));
            }
            ended(next, &ending)
        }
        Done::Released { ending, kept } => {
            next.access = None;
            events.push((
                EventType::Normal,
                "Retained",
                format!(
                    "{shown} is left in place ({}): {}",
                    ending_text(&ending),
                    kept_why(&kept)
                ),
            ));
            ended(next, &ending)
        }
        Done::Nothing(ending) => {
            next.access = None;
            ended(next, &ending)
        }
        Done::Wait { reason, message } | Done::Refused { reason, message } => Outcome {
            updates: conditions(false, false, reason, &message),
            requeue: Some(
                if reason == "ConnectorNotReady"
                    || reason == "ConnectorNotFound"
                    || reason == "ReadOnly"
                {
                    RECHECK.min(ctx.aws.grant_check.max(Duration::from_secs(30)))
                } else {
                    retry_after(reason, ctx)
                },
            ),
            events: Vec::new(),
        },
    }
}

/// The event for how a piece of access came to be held this time, if it changed.
pub(super) fn held_event(
    change: &HeldChange,
    shown: &str,
) -> Option<(EventType, &'static str, String)> {
    match change {
        HeldChange::Granted => Some((EventType::Normal, "Granted", format!("{shown} granted"))),
        HeldChange::Regranted => Some((
            EventType::Warning,
            "Regranted",
            format!("{shown} was removed outside the operator; granted again"),
        )),
        HeldChange::Adopted => Some((
            EventType::Normal,
            "Adopted",
            format!("{shown} already existed: adopted"),
        )),
        HeldChange::Joined => Some((
            EventType::Normal,
            "Joined",
            format!("{shown} is managed already for other grants; this grant declares it too"),
        )),
        HeldChange::Unchanged => None,
    }
}

fn account_of(access: &Access) -> String {
    match access {
        Access::Assignment { account_id, .. } => account_id.clone(),
        other => other.to_string(),
    }
}

/// The status of an organizational-unit grant: each account's assignment on its own, and the
/// grant Ready when every one is held.
#[allow(clippy::too_many_arguments)]
fn describe_unit(
    grant: &AccessGrant,
    report: &GrantReport,
    (resolved, ids, unit): (&Resolved, &ResolvedIds, &str),
    names: &Names,
    next: &mut AccessGrantStatus,
    events: &mut Vec<(EventType, &'static str, String)>,
    ctx: &Context,
    observations: &Observations,
    now: Timestamp,
) -> Outcome {
    let expiry = Expiry::of(&grant.spec);
    if let Expiry::At(at) = expiry
        && at <= now
    {
        next.accounts.clear();
        return expired(next, at);
    }
    next.resolved = Some(ids.clone());
    next.access = None;
    next.adopted = None;
    let total = report.wanted.len();
    let (mut held, mut pending, mut problems) = (0, None, Vec::new());
    let mut soonest: Option<Timestamp> = None;
    let mut accounts = Vec::new();
    for (access, result) in &report.wanted {
        let account_id = account_of(access);
        let shown = names.describe(access);
        let (state, message, granted_at) = match result {
            Ok(Done::Held {
                origin,
                change,
                request_id,
                since,
            }) => {
                held += 1;
                if request_id.is_some() {
                    next.last_request_id = request_id.clone();
                }
                let since = Some(since.clone()).filter(|s| !s.is_empty());
                if let Some(at) = expiry.at(since.as_deref().and_then(|s| s.parse().ok()), now) {
                    soonest = Some(soonest.map_or(at, |s| s.min(at)));
                }
                events.extend(held_event(change, &shown));
                let state = if *origin == Origin::Adopted {
                    "Adopted"
                } else {
                    "Granted"
                };
                (state.to_string(), None, since)
            }
            Ok(Done::InProgress { request_id, .. }) => {
                let message = format!("AWS is still working on it (request {request_id})");
                pending.get_or_insert(format!("{account_id}: {message}"));
                next.last_request_id = Some(request_id.clone());
                ("Pending".to_string(), Some(message), None)
            }
            Ok(Done::Wait { reason, message } | Done::Refused { reason, message }) => {
                problems.push((*reason, format!("{account_id}: {message}")));
                (reason.to_string(), Some(message.clone()), None)
            }
            Ok(
                Done::Revoked { ending, .. }
                | Done::Released { ending, .. }
                | Done::Nothing(ending),
            ) => {
                let reason = match ending {
                    Ending::NotAllowed(_) => "NotAllowed",
                    Ending::Expired(_) => "Expired",
                    _ => "Revoked",
                };
                problems.push((reason, format!("{account_id}: {}", ending_text(ending))));
                (reason.to_string(), Some(ending_text(ending)), None)
            }
            Err(error) => {
                let reason = shell_reason(error);
                problems.push((reason, format!("{account_id}: {error}")));
                (reason.to_string(), Some(error.to_string()), None)
            }
        };
        accounts.push(AccountAccess {
            account_id,
            state,
            message,
            granted_at,
        });
    }
    // Accounts held but not in the last sync: kept, and said so.
    for (access, result) in &report.others {
        if let Ok(Done::Held { since, .. }) = result {
            accounts.push(AccountAccess {
                account_id: account_of(access),
                state: "Kept".into(),
                message: Some(format!(
                    "the account was not in the last sync; its assignment is kept until a sync sees it outside {unit}"
                )),
                granted_at: Some(since.clone()).filter(|s| !s.is_empty()),
            });
        }
    }
    accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    next.accounts = accounts;
    next.granted_at = next
        .accounts
        .iter()
        .filter_map(|a| a.granted_at.clone())
        .min();
    next.expires_at = soonest.map(rfc3339);
    let what = match &resolved.permission_set_name {
        Some(name) => format!("{name} on the accounts under {unit}"),
        None => format!("the permission set on the accounts under {unit}"),
    };
    if total == 0 {
        return Outcome {
            updates: conditions(
                false,
                true,
                "NoAccounts",
                &format!(
                    "no ACTIVE account under {unit} as of the last sync; granted as accounts join it"
                ),
            ),
            requeue: Some(RECHECK),
            events: Vec::new(),
        };
    }
    if let Some(message) = pending {
        return Outcome {
            updates: conditions(
                false,
                false,
                "Pending",
                &format!("granting {what}: {message}"),
            ),
            requeue: Some(PENDING_RETRY),
            events: Vec::new(),
        };
    }
    if let Some((reason, _)) = problems.first() {
        let listed: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
        let message = format!(
            "{what}: granted on {held} of {total} accounts; {}",
            listed.join("; ")
        );
        return Outcome {
            updates: conditions(held > 0, false, reason, &message),
            requeue: Some(retry_after(reason, ctx)),
            events: Vec::new(),
        };
    }
    let mut message = format!("{what}: granted on all {total} accounts");
    if let Some(at) = &next.expires_at {
        message.push_str(&format!(" until {at}"));
    }
    Outcome {
        updates: conditions(true, true, "Granted", &message),
        requeue: Some(next_check(ctx, observations, soonest, now)),
        events: Vec::new(),
    }
}

/// An expired grant: Ready (its intent is realised: it holds nothing), not Granted.
fn expired(next: &mut AccessGrantStatus, at: Timestamp) -> Outcome {
    next.access = None;
    next.expires_at = Some(rfc3339(at));
    let message = format!("expired at {}; it holds no access", rfc3339(at));
    Outcome {
        updates: conditions(false, true, "Expired", &message),
        requeue: None,
        events: Vec::new(),
    }
}

/// The status of a grant whose access ended.
fn ended(next: &mut AccessGrantStatus, ending: &Ending) -> Outcome {
    match ending {
        Ending::Expired(at) => expired(next, *at),
        Ending::NotAllowed(rule) => Outcome {
            updates: conditions(false, false, "NotAllowed", rule),
            requeue: Some(RECHECK),
            events: Vec::new(),
        },
        other => Outcome {
            updates: conditions(false, false, "Revoked", &ending_text(other)),
            requeue: Some(RECHECK),
            events: Vec::new(),
        },
    }
}

async fn write_status(
    grant: &AccessGrant,
    api: &Api<AccessGrant>,
    ctx: &Context,
    current: Option<&AccessGrantStatus>,
    mut next: AccessGrantStatus,
    outcome: Outcome,
) -> Result<Action, Error> {
    let old_conditions = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let old_reason = old_conditions.condition("Ready").map(|c| c.reason.clone());
    let generation = grant.metadata.generation;
    next.conditions = status::with_conditions(old_conditions, &outcome.updates, generation);
    next.observed_generation = generation;
    ctx.fence_for(&grant.spec.connector_ref.key(grant.namespace().as_deref()))
        .check()
        .map_err(|f| Error::Pending(f.to_string()))?;
    status::write(api, &grant.name_any(), current, &next).await?;

    let key = format!(
        "{}/{}",
        grant.namespace().unwrap_or_default(),
        grant.name_any()
    );
    let ready = outcome.updates.iter().find(|u| u.type_ == "Ready");
    if let Some(ready) = ready {
        ctx.metrics.observe_grant(&key, Some(&ready.reason));
    }
    if let Some(ready) = ready
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
    Ok(match outcome.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// When to look again: the drift check, or the expiry if sooner. The drift check comes less
/// often than configured when the connector's re-checks would otherwise use more than their
/// share of a rate-limit lane.
pub(super) fn next_check(
    ctx: &Context,
    observations: &Observations,
    expiry: Option<Timestamp>,
    now: Timestamp,
) -> Duration {
    let check =
        observations.recheck_interval(ctx.aws.grant_check, &ctx.aws.limits, ctx.aws.drift_share);
    match expiry {
        Some(at) => {
            let until = now.duration_until(at).unsigned_abs();
            check.min(until + Duration::from_secs(1))
        }
        None => check,
    }
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

/// Deleting a grant: everything the ledger says it holds is revoked (what the operator
/// created, or adopted access with `deletionPolicy: Revoke`) or released. The finalizer goes
/// only once all of it is settled in AWS; a grant whose connector is gone keeps it.
async fn cleanup(grant: &AccessGrant, ctx: &Context) -> Result<Action, Error> {
    let name = grant.name_any();
    let gathered = gather(grant, ctx).await?;
    let report = converge(
        &Holding::grant(grant),
        ctx,
        &gathered,
        &[],
        &when_replaced,
        true,
        Timestamp::now(),
    )
    .await
    .map_err(|e| Error::Pending(format!("revoking the access of {name}: {e}")))?;
    let mut events = Vec::new();
    let names = Names::from_cache(&gathered.cache);
    let problem = report_others(&report, None, None, &names, &mut events);
    for (type_, reason, note) in events {
        tracing::info!(grant = %name, %note, "grant deleted");
        ctx.publish(grant, type_, reason, "Revoke", note).await;
    }
    if let Some((reason, message)) = problem {
        ctx.publish(grant, EventType::Warning, reason, "Revoke", message.clone())
            .await;
        return Err(Error::Pending(format!(
            "{name} keeps its finalizer: {message}"
        )));
    }
    if report.others.is_empty() {
        tracing::info!(grant = %name, "grant deleted; the ledger has no access it holds");
    }
    ctx.metrics.observe_grant(
        &format!("{}/{name}", grant.namespace().unwrap_or_default()),
        None,
    );
    Ok(Action::await_change())
}
