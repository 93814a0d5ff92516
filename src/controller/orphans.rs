//! Holders whose grants are gone: a grant deleted while its finalizer was removed by hand (or
//! never ran) leaves its uid in the ledger, and the access it declared would stay forever.
//! After every sync the connector looks for such holders and treats each as a deleted grant:
//! what the operator created is revoked once no other grant declares it, what it adopted is
//! forgotten.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::context::Context;
use super::error::Error;
use super::ledger::ConfigMapLedger;
use super::request_record::RequestRecords;
use super::session;
use crate::api::AwsConnector;
use crate::aws::Session;
use crate::grant::decide::Connector;
use crate::grant::execute::{Done, Shell};
use crate::grant::ledger::LedgerStore;

/// Settles every holder of the connector's ledger whose grant no longer exists. Returns how
/// many it found.
pub async fn sweep(
    connector: &AwsConnector,
    ctx: &Context,
    session: &Session,
) -> Result<usize, Error> {
    let key = session::name_key(connector);
    let ledger = ConfigMapLedger::new(ctx.client.clone(), &ctx.home_namespace);
    // The ledger first, the grants second: a holder was added to the ledger after its grant
    // existed, so a grant created between the two reads cannot be taken for gone.
    let entries = ledger
        .of_connector(&key)
        .await
        .map_err(|e| Error::Pending(e.to_string()))?;
    if entries.is_empty() {
        return Ok(0);
    }
    let mut alive: BTreeSet<String> = ctx.grants().await?.iter().filter_map(|g| g.uid()).collect();
    // AccessRequests hold access too. When they cannot be listed (not served here, their CRD
    // not installed), holders that are requests are left alone: never revoked for that.
    let requests_known = match ctx.requests().await {
        Ok(requests) => {
            alive.extend(requests.iter().filter_map(|r| r.uid()));
            true
        }
        Err(error) => {
            tracing::debug!(%error, "AccessRequests cannot be listed; their ledger holders are not swept");
            false
        }
    };
    let slots = session::assignment_slots(ctx, connector);
    let fence = ctx.fence_for(&key);
    let shell = Shell {
        ledger: &ledger,
        connector: &key,
        session: Some(session),
        fence: &fence,
        slots: &slots,
        locks: &ctx.access_locks,
        observations: None,
        still_serving: None,
    };
    let state = Connector::reachable(connector.spec.read_only);
    let now = jiff::Timestamp::now();
    let mut found = 0;
    for stored in &entries {
        for (uid, holder) in stored.entry.holders.iter().filter(|(uid, holder)| {
            !alive.contains(*uid) && (holder.kind.is_grant() || requests_known)
        }) {
            found += 1;
            let access = &stored.entry.access;
            let (type_, reason, note) = match shell
                .settle_gone_holder(uid, &holder.grant, holder.kind, access, &state, now)
                .await
            {
                Ok(Done::Revoked { .. }) => (
                    EventType::Normal,
                    "Revoked",
                    format!(
                        "{access} revoked: {:?} {} is gone without having revoked it",
                        holder.kind, holder.grant
                    ),
                ),
                Ok(Done::Released { .. } | Done::Nothing(_)) => (
                    EventType::Normal,
                    "Released",
                    format!(
                        "{:?} {} is gone; {access} stays (still declared, or adopted)",
                        holder.kind, holder.grant
                    ),
                ),
                Ok(other) => (
                    EventType::Warning,
                    "RevokeFailed",
                    format!(
                        "{:?} {} is gone; {access}: {other:?}",
                        holder.kind, holder.grant
                    ),
                ),
                Err(error) => (
                    EventType::Warning,
                    "RevokeFailed",
                    format!(
                        "{:?} {} is gone; revoking {access}: {error}",
                        holder.kind, holder.grant
                    ),
                ),
            };
            tracing::info!(connector = %key, %note, "ledger holder without a grant");
            ctx.publish(connector, type_, reason, "Sweep", note).await;
        }
    }
    Ok(found)
}

/// Removes the records of the connector's AccessRequests that are gone without having removed
/// them (deleted while their finalizer was removed by hand): what such a request held is settled
/// by `sweep`, through the ledger; its record then only takes room. Returns how many went.
pub async fn sweep_records(connector: &AwsConnector, ctx: &Context) -> Result<usize, Error> {
    if !ctx.admission.configured() {
        return Ok(0);
    }
    let key = session::name_key(connector);
    let records = RequestRecords::new(ctx.client.clone(), &ctx.home_namespace);
    // The records first, the requests second: a record is written after its request exists.
    let kept = records.of_connector(&key).await?;
    if kept.is_empty() {
        return Ok(0);
    }
    let alive: BTreeSet<String> = ctx
        .requests()
        .await?
        .iter()
        .filter_map(|r| r.uid())
        .collect();
    let mut removed = 0;
    let fence = ctx.fence_for(&key);
    for record in kept.iter().filter(|r| !alive.contains(&r.uid)) {
        fence.check().map_err(|f| Error::Pending(f.to_string()))?;
        records.remove(&record.uid).await?;
        super::notices::NoticeStore::new(ctx.client.clone(), &ctx.home_namespace)
            .remove(&record.uid)
            .await?;
        ctx.notifier.forget(&record.uid);
        tracing::info!(connector = %key, request = %record.request, "removed the record of an AccessRequest that is gone");
        removed += 1;
    }
    Ok(removed)
}
