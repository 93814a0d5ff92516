//! The PermissionSet reconciler: checks the object (its spec, its connector's
//! permissionSetPolicy), runs it through the permission set shell with the records in the
//! operator's namespace, and reports what happened in status, events and metrics. Deleting it
//! goes through a finalizer: a set the operator created is deleted from AWS only once no
//! assignment of it remains.

use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::grant::{Gathered, gather_for};
use super::ledger::ConfigMapLedger;
use super::records::ConfigMapSetRecords;
use super::status;
use crate::api::conditions::{ConditionStatus, ConditionUpdate};
use crate::api::permission_set::PermissionSetStatus;
use crate::api::permission_set_validation::validate_permission_set;
use crate::api::validation::describe;
use crate::api::{PERMISSION_SET_FINALIZER, PermissionSet};
use crate::aws::ErrorKind;
use crate::aws::model::{Access, Assignment};
use crate::grant::decide::Connector;
use crate::grant::ledger::{HolderKind, LedgerStore, Origin};
use crate::permission_set::execute::{
    FAILED, Outcome, Refusal, Removal, Report, SetAsk, SetError, Shell,
};
use crate::permission_set::policy;
use crate::permission_set::record::{Declarer, key};
use crate::records::Records;

pub const CONTROLLER: &str = "permission-set";

/// How soon a set waiting on something outside itself is looked at again.
const RECHECK: Duration = Duration::from_secs(300);
/// How soon provisioning AWS is still working on is looked at again.
const PROVISIONING_RETRY: Duration = Duration::from_secs(5);
/// How soon accounts whose provisioning failed are provisioned again.
const FAILED_RETRY: Duration = Duration::from_secs(60);

pub async fn reconcile(set: Arc<PermissionSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = set.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<PermissionSet> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, PERMISSION_SET_FINALIZER, set, |event| async {
        match event {
            FinalizerEvent::Apply(set) => apply(&set, &api, &ctx).await,
            FinalizerEvent::Cleanup(set) => cleanup(&set, &api, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn declarer(set: &PermissionSet) -> Declarer {
    Declarer {
        uid: set.uid().unwrap_or_default(),
        object: format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any()),
    }
}

fn ready(ok: bool, reason: &str, message: impl Into<String>) -> ConditionUpdate {
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    ConditionUpdate::new("Ready", status, reason, message)
}

async fn gather(set: &PermissionSet, ctx: &Context) -> Result<Gathered, Error> {
    let namespace = set.namespace().ok_or(Error::MissingField("namespace"))?;
    gather_for(
        &namespace,
        &set.spec.connector_ref,
        ("permissionSetPolicy", "PermissionSets"),
        |c| &c.spec.permission_set_policy.allowed_namespaces,
        ctx,
    )
    .await
}

/// What keeps the set from being converged now: the reason, the message, when to look again.
fn blocked(set: &PermissionSet, gathered: &Gathered) -> Option<(&'static str, String, Duration)> {
    let errors = validate_permission_set(&set.spec);
    if !errors.is_empty() {
        return Some(("InvalidSpec", describe(&errors), RECHECK));
    }
    let Some(object) = &gathered.object else {
        let message = gathered.namespace_allowed.clone().err().unwrap_or_default();
        return Some(("ConnectorNotFound", message, RECHECK));
    };
    if let Err(message) = &gathered.namespace_allowed {
        return Some(("NotAllowed", message.clone(), RECHECK));
    }
    let refused = policy::check(&object.spec.permission_set_policy, &set.spec);
    if !refused.is_empty() {
        return Some(("NotAllowed", refused.join("; "), RECHECK));
    }
    if let Connector::Present {
        ready: Err(why), ..
    } = &gathered.connector
    {
        return Some((
            "ConnectorNotReady",
            format!(
                "AwsConnector {} is not Ready: {why}",
                gathered.connector_key
            ),
            RECHECK,
        ));
    }
    if let Connector::Present {
        reachable: Err(why),
        ..
    } = &gathered.connector
    {
        return Some(("ConnectorUnreachable", why.clone(), RECHECK));
    }
    None
}

/// Whether the connector is readOnly: nothing is written to AWS through it.
fn read_only(gathered: &Gathered) -> bool {
    matches!(
        gathered.connector,
        Connector::Present {
            read_only: true,
            ..
        }
    )
}

/// The Identity Center instance and the session to reach it, once the connector has both.
fn reach(gathered: &Gathered) -> Option<(String, &crate::aws::Session)> {
    let instance = gathered
        .object
        .as_ref()
        .and_then(|o| o.status.as_ref())
        .and_then(|s| s.identity_center.as_ref())
        .map(|i| i.instance_arn.clone())?;
    Some((instance, gathered.session.as_ref()?))
}

async fn write_status(
    set: &PermissionSet,
    api: &Api<PermissionSet>,
    update: impl FnOnce(&mut PermissionSetStatus),
    conditions: &[ConditionUpdate],
) -> Result<(), Error> {
    let current = set.status.clone().unwrap_or_default();
    let mut next = current.clone();
    update(&mut next);
    next.observed_generation = set.metadata.generation;
    next.conditions =
        status::with_conditions(&current.conditions, conditions, set.metadata.generation);
    status::write(api, &set.name_any(), set.status.as_ref(), &next).await?;
    Ok(())
}

async fn apply(
    set: &PermissionSet,
    api: &Api<PermissionSet>,
    ctx: &Context,
) -> Result<Action, Error> {
    let name = set.name_any();
    let gathered = gather(set, ctx).await?;
    if let Some((reason, message, retry)) = blocked(set, &gathered) {
        tracing::info!(permission_set = %name, reason, %message, "permission set not converged");
        write_status(set, api, |_| {}, &[ready(false, reason, message)]).await?;
        return Ok(Action::requeue(ctx.within_a_check(retry)));
    }
    let Some((instance, session)) = reach(&gathered) else {
        let message = format!(
            "AwsConnector {} has found no Identity Center instance yet",
            gathered.connector_key
        );
        write_status(
            set,
            api,
            |_| {},
            &[ready(false, "IdentityCenterMissing", message)],
        )
        .await?;
        return Ok(Action::requeue(RECHECK));
    };
    let read_only = read_only(&gathered);
    let records = ConfigMapSetRecords::new(ctx.client.clone(), &ctx.home_namespace);
    let shell = Shell {
        session,
        records: &records,
        fence: &ctx.fence_for(&gathered.connector_key),
    };
    let ask = SetAsk {
        connector: &gathered.connector_key,
        instance: &instance,
        declarer: declarer(set),
        spec: &set.spec,
        generation: set.metadata.generation,
        read_only,
        // The status is only a hint here: the lookup, not the status, decides.
        look_up_first: set.status.as_ref().is_some_and(|s| {
            s.observed_generation == set.metadata.generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "OwnedElsewhere")
        }),
    };
    let mut outcome = match shell.converge(&ask).await {
        Ok(outcome) => outcome,
        Err(error) => return refused_by_aws(set, api, ctx, error).await,
    };
    // Declared by an object that no longer exists (deleted while its connector was gone): this
    // one takes the record over.
    if let Outcome::Refused(Refusal::DeclaredElsewhere(other)) = &outcome
        && !declarer_exists(
            ctx,
            other,
            &records,
            &gathered.connector_key,
            &set.spec.name,
        )
        .await?
    {
        take_over(
            &records,
            &gathered.connector_key,
            &set.spec.name,
            declarer(set),
        )
        .await?;
        outcome = match shell.converge(&ask).await {
            Ok(outcome) => outcome,
            Err(error) => return refused_by_aws(set, api, ctx, error).await,
        };
    }
    match outcome {
        Outcome::Refused(refusal) => {
            // The set is not this object's: grants look it up elsewhere.
            forget(ctx, &gathered.connector_key, &set.spec.name);
            let (reason, message) = match refusal {
                Refusal::OwnedElsewhere(message) => ("OwnedElsewhere", message),
                Refusal::DeclaredElsewhere(other) => (
                    "DeclaredElsewhere",
                    format!(
                        "permission set {} is declared by PermissionSet {other}",
                        set.spec.name
                    ),
                ),
                Refusal::ReadOnly(message) => ("ReadOnly", message),
            };
            tracing::warn!(permission_set = %name, reason, %message, "permission set refused");
            ctx.publish(set, EventType::Warning, reason, "Converge", message.clone())
                .await;
            write_status(set, api, |_| {}, &[ready(false, reason, message)]).await?;
            Ok(Action::requeue(ctx.within_a_check(RECHECK)))
        }
        Outcome::Converged(report) => {
            report_converged(set, api, ctx, &gathered.connector_key, read_only, report).await
        }
    }
}

/// An AWS answer that trying again will not change (a policy that does not exist, a refused
/// value, no permission) becomes the Ready condition; anything else is retried with backoff.
async fn refused_by_aws(
    set: &PermissionSet,
    api: &Api<PermissionSet>,
    ctx: &Context,
    error: SetError,
) -> Result<Action, Error> {
    let name = set.name_any();
    let lasting = match &error {
        SetError::Aws(aws) => matches!(
            aws.kind,
            ErrorKind::Invalid | ErrorKind::NotFound | ErrorKind::AccessDenied | ErrorKind::Other
        ),
        _ => false,
    };
    if !lasting {
        return Err(Error::Pending(format!("permission set {name}: {error}")));
    }
    let message = format!("permission set {}: {error}", set.spec.name);
    tracing::warn!(permission_set = %name, %message, "AWS refused a write");
    ctx.publish(
        set,
        EventType::Warning,
        "AwsError",
        "Converge",
        message.clone(),
    )
    .await;
    write_status(set, api, |_| {}, &[ready(false, "AwsError", message)]).await?;
    Ok(Action::requeue(ctx.within_a_check(FAILED_RETRY)))
}

async fn report_converged(
    set: &PermissionSet,
    api: &Api<PermissionSet>,
    ctx: &Context,
    connector: &str,
    read_only: bool,
    report: Report,
) -> Result<Action, Error> {
    let name = set.name_any();
    let aws_name = &set.spec.name;
    ctx.declared_sets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key(connector, aws_name), report.arn.clone());
    if report.created {
        tracing::info!(permission_set = %name, arn = %report.arn, "permission set created");
        ctx.publish(
            set,
            EventType::Normal,
            "Created",
            "Converge",
            format!("permission set {aws_name} created in AWS"),
        )
        .await;
    }
    if !report.drift.is_empty() {
        let outcome = if read_only { "reported" } else { "put_back" };
        ctx.metrics
            .permission_set_drift
            .get_or_create(&super::metrics::SetLabels {
                connector: connector.to_string(),
                outcome,
            })
            .inc_by(report.drift.len() as u64);
        let note = if read_only {
            format!(
                "permission set {aws_name} was changed outside the operator (readOnly: not put back): {}",
                report.drift.join("; ")
            )
        } else {
            format!(
                "permission set {aws_name} was changed outside the operator; put back: {}",
                report.drift.join("; ")
            )
        };
        tracing::warn!(permission_set = %name, %note, "drift");
        ctx.publish(set, EventType::Warning, "Drift", "Converge", note)
            .await;
    } else if !report.changes.is_empty() && !read_only {
        let note = format!("permission set {aws_name}: {}", report.changes.join("; "));
        tracing::info!(permission_set = %name, %note, "permission set changed");
        ctx.publish(set, EventType::Normal, "Changed", "Converge", note)
            .await;
    }
    for account in &report.accounts {
        let failed = account.state == FAILED;
        ctx.metrics
            .permission_set_provisioning
            .get_or_create(&super::metrics::SetLabels {
                connector: connector.to_string(),
                outcome: if failed { "failed" } else { "provisioned" },
            })
            .inc();
        if failed {
            let note = format!(
                "provisioning {aws_name} to account {} failed: {}",
                account.account_id,
                account.message.clone().unwrap_or_default()
            );
            tracing::warn!(permission_set = %name, %note, "provisioning failed");
            ctx.publish(
                set,
                EventType::Warning,
                "ProvisioningFailed",
                "Provision",
                note,
            )
            .await;
        }
    }
    let provisioned: Vec<&str> = report
        .accounts
        .iter()
        .filter(|a| a.state != FAILED)
        .map(|a| a.account_id.as_str())
        .collect();
    if !provisioned.is_empty() {
        let note = format!(
            "permission set {aws_name} provisioned to {}",
            provisioned.join(", ")
        );
        tracing::info!(permission_set = %name, %note, "provisioned");
        ctx.publish(set, EventType::Normal, "Provisioned", "Provision", note)
            .await;
    }
    let failed = report.failed();
    let adopted = report.origin == Some(Origin::Adopted);
    let (condition, requeue) = if report.in_progress {
        (
            ready(
                false,
                "Provisioning",
                format!("provisioning {aws_name} to its accounts"),
            ),
            PROVISIONING_RETRY,
        )
    } else if !failed.is_empty() {
        (
            ready(
                false,
                "ProvisioningFailed",
                format!("provisioning {aws_name} failed in {}", failed.join("; ")),
            ),
            ctx.within_a_check(FAILED_RETRY),
        )
    } else if read_only && !report.changes.is_empty() {
        (
            ready(
                false,
                "Drifted",
                format!(
                    "AWS differs from the object (readOnly: nothing written): {}",
                    report.changes.join("; ")
                ),
            ),
            ctx.aws.grant_check,
        )
    } else {
        let how = if adopted { "adopted" } else { "created" };
        (
            ready(
                true,
                "Converged",
                format!("permission set {aws_name} ({how}) matches the object"),
            ),
            ctx.aws.grant_check,
        )
    };
    let accounts = report.accounts.clone();
    let had_provisioning = !accounts.is_empty();
    write_status(
        set,
        api,
        |status| {
            status.arn = Some(report.arn.clone());
            status.adopted = Some(adopted);
            status.accounts_provisioned = Some(report.accounts_provisioned);
            if had_provisioning {
                // Each account keeps its last outcome: a retry of the failed ones leaves the
                // others as they were.
                for account in accounts {
                    status
                        .accounts
                        .retain(|a| a.account_id != account.account_id);
                    status.accounts.push(account);
                }
                status
                    .accounts
                    .sort_by(|a, b| a.account_id.cmp(&b.account_id));
                status.provisioned_at = Some(super::grant::rfc3339(jiff::Timestamp::now()));
            }
            status.drift = report.drift.clone();
        },
        &[condition],
    )
    .await?;
    Ok(Action::requeue(requeue))
}

/// Drops what this replica keeps of a declared set for the grants that name it.
fn forget(ctx: &Context, connector: &str, name: &str) {
    ctx.declared_sets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key(connector, name));
}

/// Whether the object a record names as declaring the set still exists with that uid.
async fn declarer_exists(
    ctx: &Context,
    object: &str,
    records: &ConfigMapSetRecords,
    connector: &str,
    name: &str,
) -> Result<bool, Error> {
    let Some((record, _)) = records
        .load(&key(connector, name))
        .await
        .map_err(|e| Error::Pending(e.to_string()))?
    else {
        return Ok(true);
    };
    let Some((namespace, object_name)) = object.split_once('/') else {
        return Ok(false);
    };
    // A list by name rather than a get: the operator lists PermissionSets anyway and needs no
    // other right for this.
    let api: Api<PermissionSet> = Api::namespaced(ctx.client.clone(), namespace);
    let found = api
        .list(&ListParams::default().fields(&format!("metadata.name={object_name}")))
        .await?;
    Ok(found
        .items
        .iter()
        .any(|o| o.uid().as_deref() == Some(record.declarer.uid.as_str())))
}

async fn take_over(
    records: &ConfigMapSetRecords,
    connector: &str,
    name: &str,
    declarer: Declarer,
) -> Result<(), Error> {
    let Some((mut record, version)) = records
        .load(&key(connector, name))
        .await
        .map_err(|e| Error::Pending(e.to_string()))?
    else {
        return Ok(());
    };
    tracing::info!(permission_set = %declarer.object, previous = %record.declarer.object, "taking over the record of a set whose object is gone");
    record.declarer = declarer;
    records
        .save(&record, Some(&version))
        .await
        .map_err(|e| Error::Pending(e.to_string()))?;
    Ok(())
}

/// Who holds the remaining assignments, by the ledger: grants and requests by name, the rest
/// (made outside the operator) by count.
async fn users_of(
    ctx: &Context,
    connector: &str,
    instance: &str,
    remaining: &[Assignment],
) -> String {
    let ledger = ConfigMapLedger::new(ctx.client.clone(), &ctx.home_namespace);
    let entries = ledger.of_connector(connector).await.unwrap_or_default();
    let mut named = std::collections::BTreeSet::new();
    let mut undeclared = 0usize;
    for assignment in remaining {
        let access = Access::of_assignment(instance, assignment);
        let held = entries.iter().find(|stored| stored.entry.access == access);
        match held {
            Some(stored) if !stored.entry.holders.is_empty() => {
                for holder in stored.entry.holders.values() {
                    let kind = if holder.kind == HolderKind::AccessRequest {
                        "AccessRequest"
                    } else {
                        "AccessGrant"
                    };
                    named.insert(format!("{kind} {}", holder.grant));
                }
            }
            _ => undeclared += 1,
        }
    }
    let mut parts: Vec<String> = named.into_iter().collect();
    if undeclared > 0 {
        parts.push(format!("{undeclared} assignment(s) nobody declared"));
    }
    parts.join(", ")
}

async fn cleanup(
    set: &PermissionSet,
    api: &Api<PermissionSet>,
    ctx: &Context,
) -> Result<Action, Error> {
    let name = set.name_any();
    let gathered = gather(set, ctx).await?;
    let records = ConfigMapSetRecords::new(ctx.client.clone(), &ctx.home_namespace);
    let Some((instance, session)) = reach(&gathered) else {
        // Without its connector nothing in AWS can be reached: the set is left as it is.
        let note = format!(
            "permission set {} is left in AWS: its AwsConnector {} cannot reach AWS",
            set.spec.name, gathered.connector_key
        );
        tracing::warn!(permission_set = %name, %note, "released");
        ctx.publish(set, EventType::Warning, "Released", "Delete", note)
            .await;
        return Ok(Action::await_change());
    };
    let shell = Shell {
        session,
        records: &records,
        fence: &ctx.fence_for(&gathered.connector_key),
    };
    let removal = shell
        .remove(
            &gathered.connector_key,
            &instance,
            &declarer(set),
            &set.spec,
            read_only(&gathered),
        )
        .await
        .map_err(|e| Error::Pending(format!("deleting permission set {name}: {e}")))?;
    match removal {
        Removal::Done(note) => {
            forget(ctx, &gathered.connector_key, &set.spec.name);
            tracing::info!(permission_set = %name, %note, "permission set deleted");
            ctx.publish(set, EventType::Normal, "Deleted", "Delete", note)
                .await;
            Ok(Action::await_change())
        }
        Removal::Blocked(remaining) => {
            let users = users_of(ctx, &gathered.connector_key, &instance, &remaining).await;
            let message = format!(
                "permission set {} is kept in AWS while it is assigned: {users}",
                set.spec.name
            );
            write_status(set, api, |_| {}, &[ready(false, "InUse", message.clone())]).await?;
            ctx.publish(set, EventType::Warning, "InUse", "Delete", message.clone())
                .await;
            Err(Error::Pending(message))
        }
    }
}
