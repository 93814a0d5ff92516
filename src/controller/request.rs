//! The AccessRequest reconciler: notes the reviews it sees in the request's record, decides
//! where the request stands (`request::lifecycle`), records an approval or an end before acting
//! on it, and holds or gives back the access through the same ledger and shell as grants, with
//! the request as the holder. Status, events and metrics report each step.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::grant::{
    Gathered, Holding, Wanted, converge, ending_text, gather, kept_why, retry_after, rfc3339,
    shell_reason, wanted,
};
use super::ledger::ConfigMapLedger;
use super::metrics::RequestLabels;
use super::request_record::RequestRecords;
use super::status;
use crate::api::conditions::{ConditionStatus, ConditionUpdate};
use crate::api::grant::AccessRecord;
use crate::api::request::{AccessRequestSpec, Decision, SeenReview, State};
use crate::api::{AccessGrant, AccessRequest, REQUEST_FINALIZER};
use crate::grant::access::Access;
use crate::grant::decide::Connector;
use crate::grant::execute::{Done, GrantReport, Settle, ShellError};
use crate::grant::expiry::Expiry;
use crate::grant::ledger::{HolderKind, LedgerStore};
use crate::grant::plan::Names;
use crate::grant::policy::check_grant;
use crate::grant::units::settle_in_unit;
use crate::request::lifecycle::{self, Facts, Step};
use crate::request::policy::{self as request_policy, Allowed};
use crate::request::record::{EndReason, Ended, Record};

pub const CONTROLLER: &str = "request";

/// How soon a request waiting on something outside itself is looked at again.
const RECHECK: Duration = Duration::from_secs(60);
/// How soon an AWS operation still under way is looked at again.
const PENDING_RETRY: Duration = Duration::from_secs(5);

pub async fn reconcile(request: Arc<AccessRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = request
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let api: Api<AccessRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, REQUEST_FINALIZER, request, |event| async {
        match event {
            FinalizerEvent::Apply(request) => apply(&request, &api, &ctx).await,
            FinalizerEvent::Cleanup(request) => cleanup(&request, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn stamp(t: Timestamp) -> String {
    rfc3339(t)
}

fn key(request: &AccessRequest) -> String {
    format!(
        "{}/{}",
        request.namespace().unwrap_or_default(),
        request.name_any()
    )
}

/// The request as a grant of what it asks, for the shared parts (connector, resolution,
/// grantPolicy): its duration stands as the grant's, so `grantPolicy.maxDuration` applies.
fn as_grant(request: &AccessRequest) -> AccessGrant {
    let spec = request.spec.as_grant_spec();
    AccessGrant {
        metadata: ObjectMeta {
            name: request.metadata.name.clone(),
            namespace: request.metadata.namespace.clone(),
            uid: request.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// The requestPolicy's verdict, with the grantPolicy's (namespaces, and each piece of access
/// once resolved) on top.
fn verdict(
    request: &AccessRequest,
    grant: &AccessGrant,
    gathered: &Gathered,
    wanted: &Wanted,
    now: Timestamp,
) -> Result<Allowed, String> {
    let Some(object) = &gathered.object else {
        return Err(gathered.namespace_allowed.clone().err().unwrap_or_default());
    };
    gathered.namespace_allowed.clone()?;
    let allowed = request_policy::check(
        &object.spec.request_policy,
        &request.spec,
        &gathered.cache.permission_set_arns,
    )?;
    if let Wanted::Access(resolved, _) = wanted {
        for access in &resolved.accesses {
            check_grant(
                &object.spec.grant_policy,
                &grant.spec,
                access,
                &gathered.cache.permission_set_arns,
                &gathered.cache.accounts,
                now,
            )?;
        }
    }
    Ok(allowed)
}

/// Saves the record when it changed; the version to write next.
async fn keep(
    records: &RequestRecords,
    record: &Record,
    saved: &mut Record,
    version: &mut Option<String>,
    ctx: &Context,
) -> Result<(), Error> {
    if record == saved {
        return Ok(());
    }
    ctx.fence
        .check()
        .map_err(|f| Error::Pending(f.to_string()))?;
    *version = Some(records.save(record, version.as_deref()).await?);
    *saved = record.clone();
    Ok(())
}

/// What carrying the step out came to, for status.
struct Outcome {
    state: State,
    reason: String,
    message: String,
    requeue: Option<Duration>,
    held: Option<AccessRecord>,
    request_id: Option<String>,
}

async fn apply(
    request: &AccessRequest,
    api: &Api<AccessRequest>,
    ctx: &Context,
) -> Result<Action, Error> {
    let now = Timestamp::now();
    let uid = request.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let name = key(request);
    let records = RequestRecords::new(ctx.client.clone(), &ctx.home_namespace);
    let grant = as_grant(request);
    let gathered = gather(&grant, ctx).await?;
    let (mut record, mut version) = match records.load(&uid).await? {
        Some((record, version)) => (record, Some(version)),
        None => (
            Record {
                request: name.clone(),
                uid: uid.clone(),
                connector: gathered.connector_key.clone(),
                ..Record::default()
            },
            None,
        ),
    };
    let mut saved = if version.is_some() {
        record.clone()
    } else {
        Record::default()
    };
    // A review counts from when the operator first sees it, never from a time anyone wrote.
    let mut new_reviews = Vec::new();
    for review in &request.spec.reviews {
        if !record.reviews_seen.contains_key(&review.user) {
            record.reviews_seen.insert(review.user.clone(), stamp(now));
            new_reviews.push(review.clone());
        }
    }
    let wanted = wanted(&grant, &gathered).await;
    let policy = verdict(request, &grant, &gathered, &wanted, now);
    let pending_expiry = gathered
        .object
        .as_ref()
        .map(|o| request_policy::pending_expiry(&o.spec.request_policy))
        .unwrap_or(request_policy::DEFAULT_PENDING_EXPIRY);
    let ledger = ConfigMapLedger::new(ctx.client.clone(), &ctx.home_namespace);
    let holds = !ledger
        .held_by(&gathered.connector_key, &uid)
        .await
        .map_err(|e| Error::Pending(e.to_string()))?
        .is_empty();
    let created: Timestamp = request
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .ok_or(Error::MissingField("metadata.creationTimestamp"))?;
    let vouched = ctx.admission.vouched(&ctx.client).await;
    let connector_gone = match &gathered.connector {
        Connector::Missing => true,
        Connector::Present { deleting, .. } => *deleting,
    };
    let step = lifecycle::step(&Facts {
        spec: &request.spec,
        record: &record,
        policy: policy.clone(),
        vouched,
        created,
        pending_expiry,
        connector_gone,
        holds,
        now,
    });
    let needed = policy.as_ref().ok().map(|a| a.approvals);
    let deadline = lifecycle::approve_by(created, pending_expiry);
    let names = Names::from_cache(&gathered.cache);
    let (accesses, unit): (&[Access], _) = match &wanted {
        Wanted::Access(resolved, _) => (&resolved.accesses, resolved.unit.as_deref()),
        Wanted::Refused(..) => (&[], None),
    };
    let outcome = match step {
        Step::Wait {
            state,
            reason,
            message,
        } => {
            keep(&records, &record, &mut saved, &mut version, ctx).await?;
            let until_deadline =
                now.duration_until(deadline).unsigned_abs() + Duration::from_secs(1);
            Outcome {
                state,
                reason: reason.to_string(),
                message,
                requeue: Some(RECHECK.min(until_deadline)),
                held: None,
                request_id: None,
            }
        }
        Step::Hold { approval, expiry } => {
            if let Some(approval) = approval {
                record.approved_at = Some(stamp(now));
                record.rule = Some(approval.rule.clone());
                if approval.by.is_empty() {
                    tracing::warn!(request = %name, rule = %approval.rule, "approved automatically: the rule needs no approval");
                } else {
                    tracing::info!(request = %name, rule = %approval.rule, by = ?approval.by, "approved");
                }
                record.approved_by = approval.by;
            }
            // The approval is recorded before anything is granted.
            keep(&records, &record, &mut saved, &mut version, ctx).await?;
            let settle = |held: &Access| match (&wanted, unit) {
                (Wanted::Access(resolved, _), Some(unit)) => {
                    settle_in_unit(&resolved.access, unit, &gathered.cache, held)
                }
                _ => Settle::WhenReplaced,
            };
            let holding = Holding {
                uid: uid.clone(),
                name: name.clone(),
                kind: HolderKind::AccessRequest,
                spec: &grant.spec,
                expiry,
            };
            let report = converge(&holding, ctx, &gathered, accesses, &settle, false, now).await;
            let outcome = held_outcome(
                &request.spec,
                report,
                &wanted,
                &names,
                &mut record,
                ctx,
                now,
            )?;
            keep(&records, &record, &mut saved, &mut version, ctx).await?;
            outcome
        }
        Step::End(ended) => {
            // The end is recorded before anything is given back.
            if record.ended.is_none() {
                tracing::info!(request = %name, reason = ended.reason.as_str(), message = %ended.message, "request ended");
                record.ended = Some(ended.clone());
            }
            keep(&records, &record, &mut saved, &mut version, ctx).await?;
            let holding = Holding {
                uid: uid.clone(),
                name: name.clone(),
                kind: HolderKind::AccessRequest,
                spec: &grant.spec,
                expiry: Expiry::Never,
            };
            let report = converge(
                &holding,
                ctx,
                &gathered,
                &[],
                &|_: &Access| Settle::Now,
                false,
                now,
            )
            .await;
            ended_outcome(&ended, report, &names)?
        }
    };
    let action = write_status(
        request, api, ctx, &record, outcome, needed, deadline, &names, accesses, &gathered,
    )
    .await?;
    // Each review is an event of its own, once: who, what, and whether it counted.
    for review in new_reviews {
        let counted = lifecycle::counted(&request.spec, &record, deadline, Decision::Approve)
            .contains(&review.user.as_str());
        let what = match review.decision {
            Decision::Approve if counted => "approved it".to_string(),
            Decision::Approve => format!(
                "approved it after its deadline ({}): not counted",
                stamp(deadline)
            ),
            Decision::Deny => "denied it".into(),
            Decision::Revoke => "revoked it".into(),
        };
        let comment = review
            .comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        let note = format!("{} {what}{comment}", review.user);
        tracing::info!(request = %name, %note, "reviewed");
        ctx.publish(request, EventType::Normal, "Reviewed", "Review", note)
            .await;
    }
    Ok(action)
}

/// The outcome of holding the access, noting in the record when it was first held.
fn held_outcome(
    spec: &AccessRequestSpec,
    report: Result<GrantReport, ShellError>,
    wanted: &Wanted,
    names: &Names,
    record: &mut Record,
    ctx: &Context,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let report = match report {
        Err(ShellError::Fenced(f)) => return Err(Error::Pending(f.to_string())),
        Err(ShellError::Ledger(e)) => return Err(Error::Pending(e.to_string())),
        Err(error) => {
            let reason = shell_reason(&error);
            return Ok(Outcome {
                state: State::Approved,
                reason: reason.into(),
                message: error.to_string(),
                requeue: Some(retry_after(reason, ctx)),
                held: None,
                request_id: None,
            });
        }
        Ok(report) => report,
    };
    if let Wanted::Refused(reason, message, retry) = wanted {
        return Ok(Outcome {
            state: State::Approved,
            reason: (*reason).into(),
            message: message.clone(),
            requeue: Some(*retry),
            held: None,
            request_id: None,
        });
    }
    let total = report.wanted.len();
    let mut held = 0;
    let mut first_since: Option<String> = None;
    let mut problem: Option<(String, String, Duration)> = None;
    let mut request_id = None;
    let mut record_of = None;
    for (access, result) in &report.wanted {
        let shown = names.describe(access);
        match result {
            Ok(Done::Held {
                since,
                request_id: id,
                ..
            }) => {
                held += 1;
                if !since.is_empty() && first_since.as_ref().is_none_or(|s| since < s) {
                    first_since = Some(since.clone());
                }
                request_id = request_id.or(id.clone());
                record_of.get_or_insert_with(|| AccessRecord::from(access));
            }
            Ok(Done::InProgress { request_id: id, .. }) => {
                request_id = Some(id.clone());
                problem.get_or_insert((
                    "Pending".into(),
                    format!("granting {shown}: AWS is still working on it (request {id})"),
                    PENDING_RETRY,
                ));
            }
            Ok(Done::Wait { reason, message } | Done::Refused { reason, message }) => {
                problem.get_or_insert((
                    (*reason).into(),
                    format!("{shown}: {message}"),
                    retry_after(reason, ctx),
                ));
            }
            Ok(
                Done::Revoked { ending, .. }
                | Done::Released { ending, .. }
                | Done::Nothing(ending),
            ) => {
                problem.get_or_insert((
                    "Ending".into(),
                    format!("{shown}: {}", ending_text(ending)),
                    Duration::from_secs(1),
                ));
            }
            Err(error) => {
                let reason = shell_reason(error);
                problem.get_or_insert((
                    reason.into(),
                    format!("{shown}: {error}"),
                    retry_after(reason, ctx),
                ));
            }
        }
    }
    if record.held_since.is_none() {
        record.held_since = first_since;
    }
    let ends = lifecycle::ends_at(spec, record);
    match problem {
        Some((reason, message, retry)) => Ok(Outcome {
            state: if held > 0 {
                State::Active
            } else {
                State::Approved
            },
            reason,
            message: format!("held on {held} of {total}; {message}"),
            requeue: Some(retry),
            held: record_of,
            request_id,
        }),
        None if total > 0 => {
            let until =
                ends.map(|at| now.duration_until(at).unsigned_abs() + Duration::from_millis(200));
            Ok(Outcome {
                state: State::Active,
                reason: "Active".into(),
                message: match ends {
                    Some(at) => format!("the access is held until {}", stamp(at)),
                    None => "the access is held".into(),
                },
                requeue: Some(until.map_or(RECHECK, |u| {
                    u.min(ctx.aws.grant_check.max(Duration::from_secs(1)))
                })),
                held: record_of,
                request_id,
            })
        }
        None => Ok(Outcome {
            state: State::Approved,
            reason: "NoAccounts".into(),
            message: "no ACTIVE account under the organizational unit as of the last sync".into(),
            requeue: Some(RECHECK),
            held: None,
            request_id,
        }),
    }
}

/// The outcome of giving the access back after the request ended.
fn ended_outcome(
    ended: &Ended,
    report: Result<GrantReport, ShellError>,
    names: &Names,
) -> Result<Outcome, Error> {
    let state = match ended.reason {
        EndReason::Denied => State::Denied,
        EndReason::Expired => State::Expired,
        _ => State::Ended,
    };
    let report = match report {
        Err(ShellError::Fenced(f)) => return Err(Error::Pending(f.to_string())),
        Err(ShellError::Ledger(e)) => return Err(Error::Pending(e.to_string())),
        Err(error) => {
            let reason = shell_reason(&error);
            return Ok(Outcome {
                state,
                reason: reason.into(),
                message: format!("{}; giving the access back: {error}", ended.message),
                requeue: Some(Duration::from_secs(10)),
                held: None,
                request_id: None,
            });
        }
        Ok(report) => report,
    };
    let mut notes = Vec::new();
    let mut unsettled = None;
    for (access, result) in &report.others {
        let shown = names.describe(access);
        match result {
            Ok(Done::Revoked { .. }) => notes.push(format!("{shown} revoked")),
            Ok(Done::Released { kept, .. }) => {
                notes.push(format!("{shown} left in place: {}", kept_why(kept)))
            }
            Ok(Done::Nothing(_)) => {}
            Ok(other) => {
                unsettled.get_or_insert(format!("{shown}: {other:?}"));
            }
            Err(error) => {
                unsettled.get_or_insert(format!("revoking {shown}: {error}"));
            }
        }
    }
    let mut message = ended.message.clone();
    if !notes.is_empty() {
        message.push_str(&format!("; {}", notes.join("; ")));
    }
    if let Some(problem) = unsettled {
        return Ok(Outcome {
            state,
            reason: "Revoking".into(),
            message: format!("{message}; {problem}"),
            requeue: Some(PENDING_RETRY),
            held: None,
            request_id: None,
        });
    }
    Ok(Outcome {
        state,
        reason: ended.reason.as_str().into(),
        message,
        requeue: None,
        held: None,
        request_id: None,
    })
}

fn condition(type_: &'static str, on: bool, reason: &str, message: &str) -> ConditionUpdate {
    let status = if on {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    ConditionUpdate::new(type_, status, reason, message)
}

#[allow(clippy::too_many_arguments)]
async fn write_status(
    request: &AccessRequest,
    api: &Api<AccessRequest>,
    ctx: &Context,
    record: &Record,
    outcome: Outcome,
    needed: Option<u32>,
    deadline: Timestamp,
    names: &Names,
    accesses: &[Access],
    gathered: &Gathered,
) -> Result<Action, Error> {
    let current = request.status.clone();
    let mut next = current.clone().unwrap_or_default();
    let old_state = next.state;
    let approvers = lifecycle::counted(&request.spec, record, deadline, Decision::Approve);
    next.state = Some(outcome.state);
    next.approvals = Some(match (record.approved_at.as_ref(), needed) {
        (Some(_), _) => format!("{}/{}", record.approved_by.len(), record.approved_by.len()),
        (None, Some(n)) => format!("{}/{n}", approvers.len()),
        (None, None) => format!("{}/-", approvers.len()),
    });
    next.rule = record.rule.clone();
    next.reviews = request
        .spec
        .reviews
        .iter()
        .map(|r| SeenReview {
            user: r.user.clone(),
            decision: r.decision,
            seen_at: record
                .reviews_seen
                .get(&r.user)
                .cloned()
                .unwrap_or_default(),
            counted: approvers.contains(&r.user.as_str()) || r.decision != Decision::Approve,
        })
        .collect();
    next.approve_by = Some(stamp(deadline));
    next.approved_at = record.approved_at.clone();
    next.active_since = record.held_since.clone();
    next.ends_at = lifecycle::ends_at(&request.spec, record).map(stamp);
    next.ended_at = record.ended.as_ref().map(|e| e.at.clone());
    next.end_reason = record.ended.as_ref().map(|e| e.reason.as_str().to_string());
    next.access = accesses
        .first()
        .map(|a| match accesses.len() {
            1 => names.describe(a),
            n => format!("{} (and {} more accounts)", names.describe(a), n - 1),
        })
        .or_else(|| Some(describe_spec(request)));
    next.held = outcome.held.clone();
    if outcome.request_id.is_some() {
        next.last_request_id = outcome.request_id.clone();
    }
    let state = outcome.state;
    let approved = record.approved_at.is_some();
    let approved_reason = match state {
        State::Denied => "Denied",
        State::Expired => "Expired",
        State::NotAllowed => "NotAllowed",
        _ if approved => "Approved",
        _ => outcome.reason.as_str(),
    };
    let approved_message = if approved {
        match record.approved_by.as_slice() {
            [] => format!(
                "approved automatically by rule {}",
                record.rule.as_deref().unwrap_or_default()
            ),
            by => format!(
                "approved by {} (rule {})",
                by.join(", "),
                record.rule.as_deref().unwrap_or_default()
            ),
        }
    } else {
        outcome.message.clone()
    };
    let updates = vec![
        condition(
            "Approved",
            approved && state != State::Denied,
            approved_reason,
            &approved_message,
        ),
        condition(
            "Active",
            state == State::Active,
            &outcome.reason,
            &outcome.message,
        ),
        condition(
            "Ended",
            state.is_final(),
            record
                .ended
                .as_ref()
                .map_or(outcome.reason.as_str(), |e| e.reason.as_str()),
            &outcome.message,
        ),
    ];
    let generation = request.metadata.generation;
    let old_conditions = current
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    next.conditions = status::with_conditions(old_conditions, &updates, generation);
    next.observed_generation = generation;
    ctx.fence
        .check()
        .map_err(|f| Error::Pending(f.to_string()))?;
    status::write(api, &request.name_any(), current.as_ref(), &next).await?;
    ctx.metrics.observe_request(
        &key(request),
        Some(RequestLabels {
            connector: gathered.connector_key.clone(),
            state: state.as_str().into(),
        }),
    );
    if old_state != Some(state) {
        let type_ = match state {
            State::Denied | State::Expired | State::NotAllowed => EventType::Warning,
            _ => EventType::Normal,
        };
        let note = match state {
            State::Approved | State::Active if approved && old_state != Some(State::Approved) => {
                format!("{approved_message}; {}", outcome.message)
            }
            _ => outcome.message.clone(),
        };
        tracing::info!(request = %key(request), state = state.as_str(), %note, "request state changed");
        ctx.publish(request, type_, state.as_str(), "Request", note)
            .await;
    }
    Ok(match outcome.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// What a request asks, for people, before it resolves.
fn describe_spec(request: &AccessRequest) -> String {
    let spec = &request.spec;
    let who = spec
        .principal
        .name
        .clone()
        .or_else(|| spec.principal.id.clone())
        .unwrap_or_default();
    let target = &spec.target;
    match (
        &target.permission_set,
        &target.account_id,
        &target.organizational_unit,
        &target.group,
    ) {
        (Some(ps), Some(account), _, _) => format!("{ps} on {account} for {who}"),
        (Some(ps), _, Some(unit), _) => format!("{ps} on the accounts under {unit} for {who}"),
        (_, _, _, Some(group)) => format!("{who} in group {group}"),
        _ => who,
    }
}

/// Deleting a request: whatever it holds is given back (what the operator created is revoked,
/// adopted or still-declared access stays), then its record goes.
async fn cleanup(request: &AccessRequest, ctx: &Context) -> Result<Action, Error> {
    let name = key(request);
    let uid = request.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let grant = as_grant(request);
    let gathered = gather(&grant, ctx).await?;
    let holding = Holding {
        uid: uid.clone(),
        name: name.clone(),
        kind: HolderKind::AccessRequest,
        spec: &grant.spec,
        expiry: Expiry::Never,
    };
    let report = converge(
        &holding,
        ctx,
        &gathered,
        &[],
        &|_: &Access| Settle::Now,
        true,
        Timestamp::now(),
    )
    .await
    .map_err(|e| Error::Pending(format!("giving back the access of {name}: {e}")))?;
    if report.unsettled() {
        return Err(Error::Pending(format!(
            "{name} keeps its finalizer: what it holds is not settled yet"
        )));
    }
    for (access, result) in &report.others {
        if let Ok(Done::Revoked { .. }) = result {
            tracing::info!(request = %name, %access, "revoked: the AccessRequest is deleted");
        }
    }
    RequestRecords::new(ctx.client.clone(), &ctx.home_namespace)
        .remove(&uid)
        .await?;
    ctx.metrics.observe_request(&name, None);
    Ok(Action::await_change())
}
