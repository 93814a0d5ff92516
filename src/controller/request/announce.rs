//! Telling receivers: when a request enters a state, each receiver that wants it gets a notice,
//! recorded as due before it is handed to the notifier. On the first look at a request since
//! the process started, what an earlier process left due is handed over again (a restart or a
//! new leader loses no notice; a delivered or given-up one is never sent again).

use jiff::Timestamp;

use super::outcome::Outcome;
use super::{key, stamp};
use crate::api::AccessRequest;
use crate::api::connector::RequestPolicy;
use crate::api::notify::Receiver;
use crate::api::request::State;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::grant::Gathered;
use crate::controller::notices::{Due, NoticeStore};
use crate::controller::notifier::Job;
use crate::request::lifecycle;
use crate::request::notice::{Notice, receivers};
use crate::request::record::Record;

/// What the notice needs beyond the request and its record.
pub(super) struct Moment<'a> {
    pub outcome: &'a Outcome,
    /// The rule that allows the request, once known.
    pub rule: Option<&'a str>,
    pub needed: Option<u32>,
    /// Approvals counted of those needed, as the status shows them.
    pub approvals: String,
    /// The access, for people.
    pub access: String,
    /// Whether the API server provably checked the request (a request nothing vouches for is
    /// never announced as waiting for approvals: its requester may be forged).
    pub vouched: bool,
    pub now: Timestamp,
}

fn has_receivers(policy: &RequestPolicy) -> bool {
    !policy.notify.is_empty() || policy.rules.iter().any(|r| !r.notify.is_empty())
}

/// The receiver named `name` in the policy, wherever it is declared.
fn receiver<'a>(policy: &'a RequestPolicy, name: &str) -> Option<&'a Receiver> {
    policy
        .notify
        .iter()
        .chain(policy.rules.iter().flat_map(|r| r.notify.iter()))
        .find(|r| r.name == name)
}

pub(super) async fn announce(
    request: &AccessRequest,
    ctx: &Context,
    gathered: &Gathered,
    record: &Record,
    moment: Moment<'_>,
) -> Result<(), Error> {
    let Some(connector) = &gathered.object else {
        return Ok(());
    };
    let policy = &connector.spec.request_policy;
    let uid = record.uid.clone();
    let state = moment.outcome.state;
    let shown = request.status.as_ref();
    let waited_for_trust = shown.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Approved" && c.reason == lifecycle::ADMISSION_POLICY_MISSING)
    });
    let entered = match state {
        // Pending is announced once the request is vouched for, whenever that is.
        State::Pending if !moment.vouched => false,
        State::Pending => shown.and_then(|s| s.state) != Some(state) || waited_for_trust,
        _ => shown.and_then(|s| s.state) != Some(state),
    };
    let first_look = ctx.notifier.first_look(&uid);
    if !has_receivers(policy) || !(entered || first_look) {
        return Ok(());
    }
    let name = key(request);
    let rule = record.rule.as_deref().or(moment.rule);
    let due: Vec<Due> = if entered {
        let notice = Notice {
            namespace: request.metadata.namespace.clone().unwrap_or_default(),
            name: request.metadata.name.clone().unwrap_or_default(),
            uid: uid.clone(),
            connector: gathered.connector_key.clone(),
            state,
            at: stamp(moment.now),
            requester: request.spec.requester.user.clone(),
            access: moment.access.clone(),
            reason: request.spec.reason.clone(),
            duration: request.spec.duration.clone(),
            approvals: Some(moment.approvals.clone()),
            approvals_needed: moment.needed,
            approved_by: record.approved_by.clone(),
            ends_at: lifecycle::ends_at(&request.spec, record).map(stamp),
            end_reason: record.ended.as_ref().map(|e| e.reason.as_str().to_string()),
            message: moment.outcome.message.clone(),
        };
        receivers(policy, rule, state)
            .into_iter()
            .map(|r| Due {
                receiver: r.name.clone(),
                notice: notice.clone(),
                delivered_at: None,
                gave_up: None,
                attempts: 0,
            })
            .collect()
    } else {
        Vec::new()
    };
    ctx.fence_for(&gathered.connector_key)
        .check()
        .map_err(|f| Error::Pending(f.to_string()))?;
    let store = NoticeStore::new(ctx.client.clone(), &ctx.home_namespace);
    let undelivered = match store.add(&name, &uid, due).await {
        Ok(undelivered) => undelivered,
        Err(error) => {
            // Looked at again next time, so that nothing an earlier process left is missed.
            ctx.notifier.forget(&uid);
            return Err(error);
        }
    };
    let namespace = connector.metadata.namespace.clone().unwrap_or_default();
    for due in undelivered {
        let Some(receiver) = receiver(policy, &due.receiver) else {
            tracing::debug!(request = %name, receiver = %due.receiver, "a notice is due to a receiver the connector no longer names");
            continue;
        };
        ctx.notifier.send(Job {
            uid: uid.clone(),
            request: name.clone(),
            connector_namespace: namespace.clone(),
            connector: gathered.connector_key.clone(),
            receiver: receiver.clone(),
            due,
        });
    }
    Ok(())
}
