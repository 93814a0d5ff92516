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

mod announce;
mod outcome;
mod status;

use outcome::Outcome;

use super::admission::FRESH_FOR;
use super::context::Context;
use super::error::Error;
use super::grant::{Gathered, Holding, Wanted, converge, gather, rfc3339, wanted};
use super::ledger::ConfigMapLedger;
use super::notices::NoticeStore;
use super::request_record::RequestRecords;
use crate::api::request::Decision;
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
use crate::request::record::{EndReason, Record};
use crate::request::trust::{self, Trust};

pub const CONTROLLER: &str = "request";

/// How soon a request waiting on something outside itself is looked at again.
pub(super) const RECHECK: Duration = Duration::from_secs(60);
/// How soon an AWS operation still under way is looked at again.
pub(super) const PENDING_RETRY: Duration = Duration::from_secs(5);

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

pub(super) fn stamp(t: Timestamp) -> String {
    rfc3339(t)
}

pub(super) fn key(request: &AccessRequest) -> String {
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

/// The request as the holder of its access in the ledger.
fn holding<'a>(uid: &str, name: &str, grant: &'a AccessGrant, expiry: Expiry) -> Holding<'a> {
    Holding {
        uid: uid.to_string(),
        name: name.to_string(),
        kind: HolderKind::AccessRequest,
        spec: &grant.spec,
        expiry,
    }
}

/// Gives back whatever the request holds: what the operator created for it is revoked once
/// nothing else declares it; adopted or still-declared access is only released.
async fn give_back(
    uid: &str,
    name: &str,
    grant: &AccessGrant,
    gathered: &Gathered,
    ctx: &Context,
    deleting: bool,
    now: Timestamp,
) -> Result<GrantReport, ShellError> {
    let holding = holding(uid, name, grant, Expiry::Never);
    let nothing_wanted = |_: &Access| Settle::Now;
    converge(&holding, ctx, gathered, &[], &nothing_wanted, deleting, now).await
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
    ctx.fence_for(&record.connector)
        .check()
        .map_err(|f| Error::Pending(f.to_string()))?;
    *version = Some(records.save(record, version.as_deref()).await?);
    *saved = record.clone();
    Ok(())
}

async fn apply(
    request: &AccessRequest,
    api: &Api<AccessRequest>,
    ctx: &Context,
) -> Result<Action, Error> {
    // Everything in `request` reached the API server before this instant.
    let read_at = std::time::Instant::now();
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
        if record.note_seen(review, &stamp(now)) {
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
    let connector_gone = match &gathered.connector {
        Connector::Missing => true,
        Connector::Present { deleting, .. } => *deleting,
    };
    let decide = |trust: Trust| {
        lifecycle::step(&Facts {
            spec: &request.spec,
            record: &record,
            policy: policy.clone(),
            trust,
            created,
            pending_expiry,
            connector_gone,
            holds,
            now,
        })
    };
    // What only shows may use a recent answer; an approval waits for a check that started
    // after the request was read, so that no change of the policy since hides behind it.
    let recent = read_at.checked_sub(FRESH_FOR).unwrap_or(read_at);
    let mut trust = trust::trust(
        created,
        &ctx.admission
            .enforcement(&ctx.client, &ctx.fence, recent)
            .await,
    );
    let mut step = decide(trust.clone());
    if matches!(
        step,
        Step::Hold {
            approval: Some(_),
            ..
        }
    ) {
        trust = trust::trust(
            created,
            &ctx.admission
                .enforcement(&ctx.client, &ctx.fence, read_at)
                .await,
        );
        step = decide(trust.clone());
    }
    // Why none of the reviews count, while the request is not approved.
    let uncounted = match (&step, &trust) {
        _ if record.approved_at.is_some() => None,
        (Step::End(ended), _) if ended.reason == EndReason::Unvouched => {
            Some(ended.message.clone())
        }
        (Step::End(_), _) | (_, Trust::Vouched) => None,
        (_, Trust::Unvouched(why) | Trust::Unconfirmed(why)) => Some(why.clone()),
    };
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
            let holding = holding(&uid, &name, &grant, expiry);
            let report = converge(&holding, ctx, &gathered, accesses, &settle, false, now).await;
            let outcome = outcome::held(
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
            let report = give_back(&uid, &name, &grant, &gathered, ctx, false, now).await;
            outcome::ended(&ended, report, &names)?
        }
    };
    let approvers = status::approvers(&request.spec, &record, deadline, uncounted.as_deref());
    // Receivers hear of a new state before the status shows it: a failure here is retried,
    // and the notice record keeps one notice per receiver and state.
    announce::announce(
        request,
        ctx,
        &gathered,
        &record,
        announce::Moment {
            outcome: &outcome,
            rule: policy.as_ref().ok().map(|a| a.rule.as_str()),
            needed,
            approvals: status::approvals_text(&record, needed, approvers.len()),
            access: status::access_text(request, &names, accesses),
            vouched: trust == Trust::Vouched,
            now,
        },
    )
    .await?;
    let action = status::write(
        request,
        api,
        ctx,
        &record,
        outcome,
        status::Counting {
            needed,
            deadline,
            uncounted: uncounted.as_deref(),
            approvers: &approvers,
        },
        &names,
        accesses,
        &gathered,
    )
    .await?;
    // Each review is an event of its own, once: who, what, and whether it counted.
    for review in new_reviews {
        let what = match review.decision {
            Decision::Approve if approvers.contains(&review.user.as_str()) => {
                "approved it".to_string()
            }
            Decision::Approve => match &uncounted {
                Some(why) => format!("approved it: not counted ({why})"),
                None => format!(
                    "approved it after its deadline ({}): not counted",
                    stamp(deadline)
                ),
            },
            Decision::Deny => "denied it".into(),
            Decision::Revoke
                if record.approved_at.is_none()
                    && request
                        .spec
                        .reviews
                        .iter()
                        .any(|r| r.user == review.user && r.decision == Decision::Approve) =>
            {
                "took back their approval".into()
            }
            Decision::Revoke => "revoked it".into(),
        };
        let comment = review
            .comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        let note = format!("{} {what}{comment}", review.user);
        tracing::info!(request = %name, %note, "reviewed");
        // Its place in the list tells the event apart: the recorder would count another review
        // as a repeat of the first (same reason and action), and keep only the first's note.
        let place = request
            .spec
            .reviews
            .iter()
            .position(|r| r == &review)
            .map_or(0, |i| i + 1);
        let action = format!("Review{place}");
        ctx.publish(request, EventType::Normal, "Reviewed", &action, note)
            .await;
    }
    Ok(action)
}

/// Deleting a request: whatever it holds is given back (what the operator created is revoked,
/// adopted or still-declared access stays), then its record goes.
async fn cleanup(request: &AccessRequest, ctx: &Context) -> Result<Action, Error> {
    let name = key(request);
    let uid = request.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let grant = as_grant(request);
    let gathered = gather(&grant, ctx).await?;
    let report = give_back(&uid, &name, &grant, &gathered, ctx, true, Timestamp::now())
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
    NoticeStore::new(ctx.client.clone(), &ctx.home_namespace)
        .remove(&uid)
        .await?;
    ctx.notifier.forget(&uid);
    ctx.metrics.observe_request(&name, None);
    Ok(Action::await_change())
}
