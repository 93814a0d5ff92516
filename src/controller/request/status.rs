//! A request's status, metrics and state-change events.

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::outcome::Outcome;
use super::{key, stamp};
use crate::api::AccessRequest;
use crate::api::conditions::{ConditionStatus, ConditionUpdate};
use crate::api::request::{AccessRequestSpec, Decision, Review, SeenReview, State};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::grant::Gathered;
use crate::controller::metrics::RequestLabels;
use crate::controller::status;
use crate::grant::access::Access;
use crate::grant::plan::Names;
use crate::request::lifecycle;
use crate::request::record::Record;

fn condition(type_: &'static str, on: bool, reason: &str, message: &str) -> ConditionUpdate {
    let status = if on {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    ConditionUpdate::new(type_, status, reason, message)
}

/// How approvals are counted for the request.
pub(super) struct Counting<'a> {
    /// The approvals its rule needs, once a rule allows it.
    pub needed: Option<u32>,
    /// When approvals stop counting.
    pub deadline: Timestamp,
    /// Why no review counts at all (nothing vouches for the request, or not yet).
    pub uncounted: Option<&'a str>,
    /// Who approved, of the reviews that count (`approvers`).
    pub approvers: &'a [&'a str],
}

/// The approvals that count now: none while nothing vouches for the request.
pub(super) fn approvers<'s>(
    spec: &'s AccessRequestSpec,
    record: &Record,
    deadline: Timestamp,
    uncounted: Option<&str>,
) -> Vec<&'s str> {
    match uncounted {
        Some(_) => Vec::new(),
        None => lifecycle::counted(spec, record, deadline, Decision::Approve),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn write(
    request: &AccessRequest,
    api: &Api<AccessRequest>,
    ctx: &Context,
    record: &Record,
    outcome: Outcome,
    counting: Counting<'_>,
    names: &Names,
    accesses: &[Access],
    gathered: &Gathered,
) -> Result<Action, Error> {
    let current = request.status.clone();
    let mut next = current.clone().unwrap_or_default();
    let old_state = next.state;
    let Counting {
        needed,
        deadline,
        uncounted,
        approvers,
    } = counting;
    next.state = Some(outcome.state);
    next.approvals = Some(approvals_text(record, needed, approvers.len()));
    next.rule = record.rule.clone();
    next.reviews = request
        .spec
        .reviews
        .iter()
        .map(|r| {
            let seen_at = record.seen(r).unwrap_or_default().to_string();
            let taken_back =
                r.decision == Decision::Approve && lifecycle::took_back(&request.spec, &r.user);
            let note = review_note(
                r,
                &request.spec.requester.user,
                &seen_at,
                deadline,
                uncounted,
                taken_back,
            );
            SeenReview {
                user: r.user.clone(),
                decision: r.decision,
                seen_at,
                counted: note.is_none()
                    && (approvers.contains(&r.user.as_str()) || r.decision != Decision::Approve),
                note,
            }
        })
        .collect();
    next.approve_by = Some(stamp(deadline));
    next.approved_at = record.approved_at.clone();
    next.active_since = record.held_since.clone();
    next.ends_at = lifecycle::ends_at(&request.spec, record).map(stamp);
    next.ended_at = record.ended.as_ref().map(|e| e.at.clone());
    next.end_reason = record.ended.as_ref().map(|e| e.reason.as_str().to_string());
    next.access = Some(access_text(request, names, accesses));
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
        State::Unvouched => "Unvouched",
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
    ctx.fence_for(&gathered.connector_key)
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
            State::Denied | State::Expired | State::NotAllowed | State::Unvouched => {
                EventType::Warning
            }
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

/// The access, for people: what it resolved to, or what was asked before it resolves.
pub(super) fn access_text(request: &AccessRequest, names: &Names, accesses: &[Access]) -> String {
    accesses
        .first()
        .map(|a| match accesses.len() {
            1 => names.describe(a),
            n => format!("{} (and {} more accounts)", names.describe(a), n - 1),
        })
        .unwrap_or_else(|| describe_spec(request))
}

/// Approvals counted of those needed: `1/2`.
pub(super) fn approvals_text(record: &Record, needed: Option<u32>, counted: usize) -> String {
    match (record.approved_at.as_ref(), needed) {
        (Some(_), _) => format!("{}/{}", record.approved_by.len(), record.approved_by.len()),
        (None, Some(n)) => format!("{counted}/{n}"),
        (None, None) => format!("{counted}/-"),
    }
}

/// Why a review does not count, if it does not.
fn review_note(
    review: &Review,
    requester: &str,
    seen_at: &str,
    deadline: Timestamp,
    uncounted: Option<&str>,
    taken_back: bool,
) -> Option<String> {
    if let Some(why) = uncounted {
        return Some(format!("not counted: {why}"));
    }
    if taken_back {
        return Some(format!(
            "not counted: {} took it back with a Revoke",
            review.user
        ));
    }
    if review.user == requester {
        return Some("not counted: the requester cannot review their own request".into());
    }
    let late = seen_at
        .parse::<Timestamp>()
        .is_ok_and(|seen| seen > deadline);
    (review.decision == Decision::Approve && late).then(|| {
        format!(
            "not counted: seen after the deadline for approvals ({})",
            stamp(deadline)
        )
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
