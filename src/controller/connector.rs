//! The AwsConnector reconciler: validate; authenticate through the role chain; sync the
//! inventory when it is due (or asked for); report all of it in status.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::claims::{CLAIM_RECHECK, Entry};
use super::configmaps::ConnectorConfigMaps;
use super::context::Context;
use super::error::Error;
use super::ledger::ConfigMapLedger;
use super::session;
use super::status;
use crate::api::CONNECTOR_FINALIZER;
use crate::api::conditions::{ConditionStatus, ConditionUpdate, Conditions};
use crate::api::connector::{MemberAccountStatus, SYNC_NOW_ANNOTATION, SyncSummary};
use crate::api::grant::DeletionPolicy;
use crate::api::validation::{describe, validate_connector};
use crate::api::{AwsConnector, AwsConnectorStatus, duration};
use crate::aws::{AwsError, ErrorKind};
use crate::connect::{self, Authenticated};
use crate::grant::access::Access;
use crate::grant::execute::{Done, Shell};
use crate::grant::plan::unmanaged;
use crate::grant::resolve::Directory;
use crate::sync::cache::SyncCache;
use crate::sync::engine::CACHE_KEY;
use crate::sync::{Inventory, schedule};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use std::collections::BTreeSet;

pub const CONTROLLER: &str = "connector";

/// The key of the inventory among the connector's ConfigMaps.
pub const INVENTORY_KEY: &str = "inventory";
/// The key of the list of access no AccessGrant declares.
pub const UNMANAGED_KEY: &str = "unmanaged";

/// How soon authentication is tried again after it failed (a fixed trust policy or Secret
/// is not announced by any watch).
const AUTH_RETRY: Duration = Duration::from_secs(120);

/// The reason a failed AWS call gives a condition.
fn aws_reason(error: &AwsError) -> &'static str {
    match error.kind {
        ErrorKind::Throttled => "Throttled",
        ErrorKind::AccessDenied => "AccessDenied",
        ErrorKind::Credentials if error.message.contains("AccessDenied") => "AccessDenied",
        ErrorKind::Credentials => "AssumeRoleFailed",
        _ => "AwsError",
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn rfc3339(t: jiff::Timestamp) -> String {
    // Milliseconds: two syncs in one second must still be told apart.
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Writes the status when it changed, and remembers what was written.
struct StatusWriter<'a> {
    api: &'a Api<AwsConnector>,
    /// Only the leader writes.
    fence: &'a crate::fence::Fence,
    name: String,
    generation: Option<i64>,
    written: Option<AwsConnectorStatus>,
    next: AwsConnectorStatus,
    /// Why the connector is refused before anything else (reason, message), if it is: then
    /// nothing else decides `Ready`.
    refused: Option<(&'static str, String)>,
}

impl StatusWriter<'_> {
    fn set(&mut self, updates: &[ConditionUpdate]) {
        let conditions = status::with_conditions(&self.next.conditions, updates, self.generation);
        self.next.conditions = conditions;
        self.next.observed_generation = self.generation;
    }

    fn condition_reason(&self, type_: &str) -> Option<String> {
        self.written
            .as_ref()?
            .conditions
            .condition(type_)
            .map(|c| c.reason.clone())
    }

    /// Sets `Ready` from the other conditions and writes.
    async fn flush(&mut self) -> Result<(), Error> {
        let conditions = &self.next.conditions;
        let failing =
            ["Authenticated", "Synced"]
                .into_iter()
                .find_map(|t| match conditions.condition(t) {
                    Some(c) if c.status == "True" => None,
                    Some(c) => Some((c.reason.clone(), format!("{t}: {}", c.message))),
                    None => Some(("SyncPending".to_string(), format!("{t}: not yet known"))),
                });
        let ready = match (&self.refused, failing) {
            (Some((reason, message)), _) => {
                ConditionUpdate::new("Ready", ConditionStatus::False, *reason, message)
            }
            (None, None) => ConditionUpdate::new(
                "Ready",
                ConditionStatus::True,
                "Ready",
                "authenticated and synced",
            ),
            (None, Some((reason, message))) => {
                ConditionUpdate::new("Ready", ConditionStatus::False, reason, message)
            }
        };
        self.set(&[ready]);
        self.fence
            .check()
            .map_err(|f| Error::Pending(f.to_string()))?;
        status::write(self.api, &self.name, self.written.as_ref(), &self.next).await?;
        self.written = Some(self.next.clone());
        Ok(())
    }
}

/// The reason of a connector outside the namespaces where connectors are served.
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";

pub async fn reconcile(connector: Arc<AwsConnector>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = connector
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    // In a shard, nothing (the finalizer included) is written before the connector's claim is
    // held; the claim stays until this reconciliation ends.
    let claimed = match &ctx.claims {
        None => None,
        Some(claims) => match claims.enter(&connector) {
            Entry::Serve(in_flight) => Some(in_flight),
            Entry::Waiting => return Ok(Action::requeue(CLAIM_RECHECK)),
            Entry::Elsewhere => return Ok(Action::await_change()),
        },
    };
    let api: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = session::name_key(&connector);
    let result = finalizer(&api, CONNECTOR_FINALIZER, connector, |event| async {
        match event {
            FinalizerEvent::Apply(connector) => observe(connector, &ctx).await,
            FinalizerEvent::Cleanup(connector) => retire(&connector, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    // Stopped at the claim (the connector left the shard meanwhile): not a failure to report.
    if result.is_err() && claimed.is_some() && ctx.fence_for(&key).check().is_err() {
        tracing::info!(connector = %key, "stopped: this shard no longer holds the connector's claim");
        return Ok(Action::requeue(CLAIM_RECHECK));
    }
    result
}

/// Deleting a connector: what the operator created through it is revoked (unless it says
/// `deletionPolicy: Retain`, or is readOnly), what it adopted is forgotten, and the connector
/// goes only once its ledger is empty.
async fn retire(connector: &AwsConnector, ctx: &Context) -> Result<Action, Error> {
    let namespace = connector.namespace().unwrap_or_default();
    let name = connector.name_any();
    let key = format!("{namespace}/{name}");
    let fence = ctx.fence_for(&key);
    let session = match session::external_id(ctx, connector).await? {
        Ok(chain) => Some(session::session(ctx, &chain).await.0),
        Err(_) => ctx.last_session(&session::key(connector)),
    };
    let ledger = ConfigMapLedger::new(ctx.client.clone(), &ctx.home_namespace);
    let slots = session::assignment_slots(ctx, connector);
    let shell = Shell {
        ledger: &ledger,
        connector: &key,
        session: session.as_ref(),
        fence: &fence,
        slots: &slots,
        locks: &ctx.access_locks,
        observations: None,
        still_serving: None,
    };
    let retain =
        connector.spec.read_only || connector.spec.deletion_policy == Some(DeletionPolicy::Retain);
    let (left, done) = shell
        .retire(retain, jiff::Timestamp::now())
        .await
        .map_err(|e| Error::Pending(format!("retiring AwsConnector {key}: {e}")))?;
    let mut problems = Vec::new();
    for (access, result) in done {
        let (type_, reason, note) = match result {
            Ok(Done::Revoked {
                already_gone: false,
                ..
            }) => (
                EventType::Normal,
                "Revoked",
                format!("{access} revoked: the connector is deleted"),
            ),
            Ok(Done::Revoked {
                already_gone: true, ..
            }) => (
                EventType::Normal,
                "Revoked",
                format!("{access} was already gone"),
            ),
            Ok(Done::Released { .. }) => (
                EventType::Normal,
                "Retained",
                format!(
                    "{access} is left in place: it was adopted, not created, or the connector retains what it created"
                ),
            ),
            Ok(Done::Nothing(_) | Done::Held { .. }) => continue,
            Ok(Done::InProgress { request_id, .. }) => {
                let note =
                    format!("revoking {access}: AWS is still working on it (request {request_id})");
                problems.push(note.clone());
                (EventType::Normal, "Pending", note)
            }
            Ok(Done::Wait { message, .. } | Done::Refused { message, .. }) => {
                problems.push(message.clone());
                (EventType::Warning, "RevokeFailed", message)
            }
            Err(error) => {
                let note = format!("revoking {access}: {error}");
                problems.push(note.clone());
                (EventType::Warning, "RevokeFailed", note)
            }
        };
        tracing::info!(connector = %key, %note, "connector deleted");
        ctx.publish(connector, type_, reason, "Delete", note).await;
    }
    if left > 0 {
        let message = format!(
            "deleting: {left} piece(s) of access in the ownership ledger are still to be revoked{}",
            problems
                .first()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        );
        let api: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &namespace);
        let current = connector.status.clone();
        let mut next = current.clone().unwrap_or_default();
        next.conditions = status::with_conditions(
            &next.conditions,
            &[ConditionUpdate::new(
                "Ready",
                ConditionStatus::False,
                "Deleting",
                &message,
            )],
            connector.metadata.generation,
        );
        if fence.check().is_ok() {
            status::write(&api, &name, current.as_ref(), &next).await?;
        }
        return Err(Error::Pending(message));
    }
    // Its inventory, cache, page state and unmanaged list go with it. (They live in the
    // operator's namespace, where owner references to the connector cannot reach.)
    if let Some(store) =
        ConnectorConfigMaps::new(ctx.client.clone(), &ctx.home_namespace, connector)
    {
        let removed = store
            .fenced(fence.clone())
            .remove_all()
            .await
            .map_err(|e| {
                Error::Pending(format!(
                    "deleting the ConfigMaps of AwsConnector {key}: {e}"
                ))
            })?;
        tracing::info!(connector = %key, config_maps = removed, "connector deleted; its ownership ledger is empty and its ConfigMaps are gone");
    }
    ctx.forget_connector(&session::key(connector));
    Ok(Action::await_change())
}

/// Refuses the connector before anything else decides `Ready`: writes the reason, and warns
/// with an event unless it was refused for the same reason already.
async fn refuse(
    connector: &AwsConnector,
    ctx: &Context,
    writer: &mut StatusWriter<'_>,
    reason: &'static str,
    message: String,
    already: bool,
) -> Result<(), Error> {
    writer.refused = Some((reason, message.clone()));
    writer.flush().await?;
    if !already {
        ctx.publish(connector, EventType::Warning, reason, "Validate", message)
            .await;
    }
    Ok(())
}

async fn observe(connector: Arc<AwsConnector>, ctx: &Context) -> Result<Action, Error> {
    let namespace = connector
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let name = connector.name_any();
    let api: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &namespace);
    let runtime = ctx.runtime(&session::key(&connector));
    let fence = ctx.fence_for(&session::name_key(&connector));
    let mut current = connector.status.clone();
    // The connector comes from the watch, whose copy may not have the status of a sync this
    // replica has just run yet (a reconciliation queued during a sync starts the moment it
    // ends). Built on that copy, this reconciliation would sync again, and its status would
    // take back what the sync wrote: the status is read from the API server instead.
    if let Some(ran) = runtime.last_sync()
        && schedule::finished_later(&ran, current.as_ref().and_then(|s| s.last_sync.as_ref()))
        && let Some(fresh) = api.get_opt(&name).await?
    {
        current = fresh.status;
    }
    let mut writer = StatusWriter {
        api: &api,
        fence: &fence,
        name: name.clone(),
        generation: connector.metadata.generation,
        next: current.clone().unwrap_or_default(),
        written: current,
        refused: None,
    };

    // 0. Served here at all? Outside the connector namespaces the operator may not read the
    //    connector's Secrets, and the platform team has not placed connectors there.
    if !super::session::serves(&ctx.connector_namespaces, &namespace) {
        let message = format!(
            "AwsConnectors are served only in the namespaces {} (the operator's --connector-namespaces, the chart's connectorNamespaces); move the connector to one of them",
            ctx.connector_namespaces.join(", ")
        );
        let was_refused =
            writer.condition_reason("Ready").as_deref() == Some(NAMESPACE_NOT_ALLOWED);
        tracing::info!(connector = %name, %namespace, %message, "connector refused");
        refuse(
            &connector,
            ctx,
            &mut writer,
            NAMESPACE_NOT_ALLOWED,
            message,
            was_refused,
        )
        .await?;
        return Ok(Action::await_change());
    }

    // 1. Validate: bad input never reaches AWS.
    let mut verdict = validate_connector(&connector.spec);
    let chain = if verdict.is_valid() {
        match session::external_id(ctx, &connector).await? {
            Ok(chain) => Some(chain),
            Err(error) => {
                verdict.external_id.push(error);
                None
            }
        }
    } else {
        None
    };
    let was_invalid = writer.condition_reason("Ready").as_deref() == Some("InvalidSpec");
    writer.set(&verdict.conditions());
    if !verdict.is_valid() {
        let message = describe(&verdict.errors());
        tracing::info!(connector = %name, %namespace, %message, "connector spec is invalid");
        refuse(
            &connector,
            ctx,
            &mut writer,
            "InvalidSpec",
            message,
            was_invalid,
        )
        .await?;
        return Ok(Action::await_change());
    }

    // 2. Authenticate through the role chain.
    let chain = chain.ok_or(Error::MissingField("a role chain"))?;
    let previous_auth = writer.condition_reason("Authenticated");
    let key = session::key(&connector);
    let (session, fingerprint) = session::session(ctx, &chain).await;
    let authenticated = match crate::aws::sts::who_am_i(&session).await {
        Ok(identity) => {
            session.share_limits(&identity.account);
            let mut session = session;
            session.identity = Some(identity.clone());
            ctx.keep_session(&key, fingerprint, session.clone());
            Authenticated {
                session: session.with_caller(session.caller.with_fresh_stats()),
                identity,
            }
        }
        Err(error) => {
            ctx.forget_session(&key);
            let reason = aws_reason(&error);
            let message = error.to_string();
            tracing::warn!(connector = %name, %namespace, %message, "authentication failed");
            writer.set(&[ConditionUpdate::new(
                "Authenticated",
                ConditionStatus::False,
                reason,
                &message,
            )]);
            writer.flush().await?;
            if previous_auth.as_deref() != Some(reason) {
                ctx.publish(
                    &*connector,
                    EventType::Warning,
                    reason,
                    "Authenticate",
                    message,
                )
                .await;
            }
            let retry = if error.kind == ErrorKind::Throttled {
                Duration::from_secs(30)
            } else {
                AUTH_RETRY
            };
            return Ok(Action::requeue(retry));
        }
    };
    writer.next.identity = Some(authenticated.identity.clone());
    writer.set(&[ConditionUpdate::new(
        "Authenticated",
        ConditionStatus::True,
        "Authenticated",
        format!("authenticated as {}", authenticated.identity.arn),
    )]);
    if previous_auth.as_deref() != Some("Authenticated") {
        ctx.publish(
            &*connector,
            EventType::Normal,
            "Authenticated",
            "Authenticate",
            format!("authenticated as {}", authenticated.identity.arn),
        )
        .await;
    }

    // 3. Sync when due.
    let interval =
        duration::parse(&connector.spec.sync.interval).unwrap_or(Duration::from_secs(3600));
    let requested = connector.annotations().get(SYNC_NOW_ANNOTATION).cloned();
    let handled = writer.next.last_handled_sync_now.clone();
    let due = schedule::due(
        writer.next.last_sync.as_ref(),
        interval,
        requested.as_deref(),
        handled.as_deref(),
        now(),
    );
    let wait = match due {
        Err(wait) => wait,
        Ok(()) => {
            writer.flush().await?;
            sync(&connector, ctx, &authenticated, &mut writer).await?;
            if let Some(summary) = writer.next.last_sync.clone() {
                runtime.keep_last_sync(summary);
            }
            writer.next.last_handled_sync_now = requested;
            let failed = writer
                .next
                .last_sync
                .as_ref()
                .and_then(|s| s.outcome.as_deref())
                != Some(schedule::SUCCEEDED);
            if failed {
                interval.min(schedule::RETRY_AFTER_FAILURE)
            } else {
                interval
            }
        }
    };
    writer.flush().await?;
    Ok(Action::requeue(wait.max(Duration::from_secs(5))))
}

/// Runs one sync and records its outcome in the status being built.
async fn sync(
    connector: &AwsConnector,
    ctx: &Context,
    authenticated: &Authenticated,
    writer: &mut StatusWriter<'_>,
) -> Result<(), Error> {
    let name = connector.name_any();
    // At most --max-concurrent-syncs at once: what a sync holds while it runs (pages, the
    // inventory it builds) is the operator's largest memory, so it grows with the syncs under
    // way, never with how many connectors there are. The others wait their turn, in order.
    let _slot = match ctx.sync_slots.try_acquire() {
        Ok(slot) => slot,
        Err(_) => {
            tracing::info!(connector = %name, at_once = ctx.max_concurrent_syncs, "sync waiting for another connector's sync to end");
            ctx.sync_slots
                .acquire()
                .await
                .map_err(|_| Error::Pending("stopping".into()))?
        }
    };
    let store = ConnectorConfigMaps::new(ctx.client.clone(), &ctx.home_namespace, connector)
        .ok_or(Error::MissingField("namespace"))?
        .fenced(ctx.fence_for(&session::name_key(connector)));
    // Before the sync, so that the inventory shows what the sweep revoked.
    if let Err(error) = super::orphans::sweep(connector, ctx, &authenticated.session).await {
        tracing::warn!(connector = %name, %error, "could not settle ledger holders whose grants are gone");
    }
    if let Err(error) = super::orphans::sweep_records(connector, ctx).await {
        tracing::warn!(connector = %name, %error, "could not remove the records of AccessRequests that are gone");
    }
    let scope = connect::scope(connector, &authenticated.identity);
    let started = now();
    tracing::info!(connector = %name, "sync started");
    // A stopping operator saves the sync's page state and lets the next leader resume it.
    let result = crate::sync::run_until(
        &authenticated.session,
        &connector.spec.sync,
        &scope,
        &store,
        &ctx.aws.sync,
        ctx.stop_requested(),
    )
    .await;
    let finished = now();
    let stats = authenticated.session.caller.stats();
    ctx.metrics
        .observe_sync(&name, finished.duration_since(started).as_secs_f64());
    let mut summary = SyncSummary {
        started_at: Some(rfc3339(started)),
        finished_at: Some(rfc3339(finished)),
        duration_seconds: Some(
            (finished.duration_since(started).as_secs_f64() * 10.0).round() / 10.0,
        ),
        api_calls: stats.total(),
        throttled: stats.throttled(),
        outcome: None,
    };
    let previous = writer.condition_reason("Synced");
    match result {
        Ok(mut inventory) => {
            link_declared_sets(ctx, connector, &mut inventory).await;
            write_inventory(&store, &inventory).await?;
            summary.outcome = Some(schedule::SUCCEEDED.into());
            let cache = Arc::new(SyncCache::decode(
                &store.read(CACHE_KEY).await?.unwrap_or_default(),
            ));
            ctx.keep_directory(&session::key(connector), cache.clone());
            // A Kubernetes-side failure here must not cost a second AWS sync: the inventory is
            // kept, and what no grant declares is counted at the next sync instead.
            let counted_before = writer.next.inventory.as_ref().map_or((0, 0), |c| {
                (c.unmanaged_assignments, c.undeclared_access_paths)
            });
            let ((unmanaged_count, undeclared_paths), not_counted) = match unmanaged_access(
                connector, ctx, &inventory, &cache,
            )
            .await
            {
                Ok((unmanaged, undeclared_paths)) => {
                    let listed: Vec<String> = unmanaged.iter().map(ToString::to_string).collect();
                    let bytes =
                        serde_json::to_vec(&listed).map_err(|e| Error::Serialize(e.to_string()))?;
                    store.write(UNMANAGED_KEY, &bytes).await?;
                    ((unmanaged.len() as u64, undeclared_paths as u64), None)
                }
                Err(error) => {
                    tracing::warn!(connector = %name, %error, "cannot list AccessGrants: unmanaged access is not counted this time");
                    (counted_before, Some(error.to_string()))
                }
            };
            let mut counts = inventory.counts(unmanaged_count);
            counts.undeclared_access_paths = undeclared_paths;
            writer.next.inventory = Some(counts);
            writer.next.identity_center = inventory.identity_center.clone();
            writer.next.member_accounts = inventory
                .member_accounts
                .iter()
                .map(|m| MemberAccountStatus {
                    account_id: m.account_id.clone(),
                    outcome: m.outcome.clone(),
                    message: m.message.clone(),
                })
                .collect();
            ctx.metrics.observe_inventory(&name, &inventory);
            let mut message = format!(
                "{} accounts, {} IAM users, {} SSO users, {} permission sets, {} assignments in {} AWS calls",
                inventory.accounts.len(),
                inventory.iam_users.len(),
                inventory.sso_users.len(),
                inventory.permission_sets.len(),
                inventory.assignments.len(),
                inventory.stats.total_calls
            );
            if !inventory.member_accounts.is_empty() {
                message.push_str(&format!(
                    "; member accounts: {}",
                    inventory.member_outcomes()
                ));
            }
            if let Some(why) = not_counted {
                message.push_str(&format!(
                    "; unmanaged access not counted (cannot list AccessGrants: {why})"
                ));
            }
            writer.set(&[ConditionUpdate::new(
                "Synced",
                ConditionStatus::True,
                "Synced",
                &message,
            )]);
            if previous.as_deref() != Some("Synced") {
                ctx.publish(connector, EventType::Normal, "Synced", "Sync", message)
                    .await;
            }
        }
        Err(error) => {
            summary.outcome = Some(schedule::FAILED.into());
            let reason = error.aws().map_or("SyncStateError", aws_reason);
            let message = error.to_string();
            tracing::warn!(connector = %name, %message, "sync failed");
            writer.set(&[ConditionUpdate::new(
                "Synced",
                ConditionStatus::False,
                reason,
                &message,
            )]);
            ctx.publish(connector, EventType::Warning, "SyncFailed", "Sync", message)
                .await;
        }
    }
    writer.next.last_sync = Some(summary);
    Ok(())
}

/// The access in the inventory that no AccessGrant of this connector declares. Grants are
/// resolved through the directory only (no AWS call); one that does not resolve declares
/// nothing.
/// The access no AccessGrant declares, and how many access paths (a user into an account with
/// a permission set, directly or through a group) no AccessGrant declares whole.
async fn unmanaged_access(
    connector: &AwsConnector,
    ctx: &Context,
    inventory: &Inventory,
    cache: &SyncCache,
) -> Result<(Vec<Access>, usize), Error> {
    let directory = Directory {
        cache,
        identity_center: inventory.identity_center.as_ref(),
        session: None,
        declared: None,
        identities: &[],
    };
    let grants = ctx.grants().await?;
    let mut declarations = crate::effective::declarations(connector, &grants, &directory).await;
    // Access an approved AccessRequest holds is declared too, for as long as it holds it.
    if ctx.admission.configured() {
        let requests = ctx.requests().await?;
        crate::effective::add_requests(&mut declarations, connector, &requests, &directory).await;
    }
    let declared: BTreeSet<Access> = declarations.keys().cloned().collect();
    let undeclared_paths = crate::effective::undeclared(inventory, &declarations);
    Ok((unmanaged(inventory, &declared), undeclared_paths))
}

/// Links each permission set a PermissionSet object declares to that object, from the
/// operator's records (one list per sync). Without them the inventory is still whole, unlinked.
async fn link_declared_sets(ctx: &Context, connector: &AwsConnector, inventory: &mut Inventory) {
    let key = session::name_key(connector);
    let records = super::records::ConfigMapSetRecords::new(ctx.client.clone(), &ctx.home_namespace);
    let declared: std::collections::BTreeMap<String, String> = match records.all().await {
        Ok(all) => all
            .into_iter()
            .filter(|r| r.connector == key)
            .filter_map(|r| Some((r.arn?, r.declarer.object)))
            .collect(),
        Err(error) => {
            tracing::warn!(connector = %key, %error, "the inventory's permission sets are not linked to their PermissionSet objects");
            return;
        }
    };
    for set in &mut inventory.permission_sets {
        set.declared_by = declared.get(&set.arn).cloned();
    }
}

/// The inventory as stored in ConfigMaps: without the per-run statistics, so that an unchanged
/// organization leaves the ConfigMaps untouched.
async fn write_inventory(store: &ConnectorConfigMaps, inventory: &Inventory) -> Result<(), Error> {
    let mut stored = inventory.clone();
    stored.stats = Default::default();
    let bytes = serde_json::to_vec(&stored).map_err(|e| Error::Serialize(e.to_string()))?;
    let wrote = store.write(INVENTORY_KEY, &bytes).await?;
    tracing::debug!(
        shards_written = wrote,
        bytes = bytes.len(),
        "inventory ConfigMaps"
    );
    Ok(())
}
