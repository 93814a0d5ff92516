//! `plan` and `apply`: what a set of AccessGrants would change in AWS, and applying it once,
//! without Kubernetes (GitOps pipelines, the demo). The same resolution, policy and expiry
//! rules as the operator.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use futures::StreamExt;
use jiff::Timestamp;
use serde::Serialize;

use super::args::{OutputFormat, PlanArgs};
use super::lookup::{AccountCheck, Actual, look_up};
use crate::api::connector::NamespacesFrom;
use crate::api::validation::{describe, validate_grant};
use crate::api::{AccessGrant, AwsConnector};
use crate::aws::Session;
use crate::fence::Fence;
use crate::grant::access::Access;
use crate::grant::decide::{Connector, Decision, Declared, Ending, Facts, Observed, decide};
use crate::grant::execute::{
    AccessLocks, Done, GrantAsk, GrantReport, HeldChange, Settle, Shell, ShellError,
};
use crate::grant::expiry::Expiry;
use crate::grant::ledger::{FileLedger, LedgerStore, OperationKind};
use crate::grant::plan::{Action, Names, actual_access, unmanaged};
use crate::grant::policy::{check_grant, check_unit, namespace_allowed};
use crate::grant::resolve::{Directory, resolve};
use crate::grant::units::settle_in_unit;
use crate::manifest::{Document, load};
use crate::sync::cache::SyncCache;
use crate::sync::engine::CACHE_KEY;
use crate::sync::{DirStore, Inventory, StateStore, SyncOptions};
use tokio::sync::Semaphore;

/// Assignment operations `apply` runs at once (AWS allows 15 in flight, shared).
const IN_FLIGHT: usize = 10;

/// One grant in a plan.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanLine {
    pub namespace: String,
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    pub detail: String,
    /// What `apply` did, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(skip)]
    target: Option<Access>,
    #[serde(skip)]
    grant: Option<AccessGrant>,
    /// A grant the ledger knows and the files no longer declare.
    #[serde(skip)]
    unlisted: bool,
    /// Access an organizational-unit grant holds on an account it no longer covers.
    #[serde(skip)]
    leaving: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub connector: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permission_sets: Vec<super::set_plan::SetLine>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<super::identity_plan::IdentityLine>,
    pub grants: Vec<PlanLine>,
    /// Access in AWS that no grant declares: reported, never revoked.
    pub unmanaged: Vec<String>,
    /// Where `unmanaged` comes from: `inventory` (--inventory), `sync` (--unmanaged), or
    /// `notLookedFor` (only what the grants name was looked up).
    pub unmanaged_from: UnmanagedFrom,
    pub summary: BTreeMap<&'static str, usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UnmanagedFrom {
    Inventory,
    Sync,
    NotLookedFor,
}

fn namespace_of(namespace: Option<&String>) -> String {
    namespace.cloned().unwrap_or_else(|| "default".to_string())
}

fn refusal(namespace: String, name: String, action: Action, detail: String) -> PlanLine {
    PlanLine {
        namespace,
        name,
        action,
        access: None,
        detail,
        result: None,
        target: None,
        grant: None,
        unlisted: false,
        leaving: false,
    }
}

/// Plans one grant against the connector, what AWS has and the ledger: what `apply` would
/// decide, through the same decision core as the operator.
#[allow(clippy::too_many_arguments)]
async fn plan_one(
    grant: &AccessGrant,
    connector: &AwsConnector,
    directory: &Directory<'_>,
    actual: &Actual,
    names: &mut Names,
    accounts: &AccountCheck,
    ledger: &FileLedger,
    now: Timestamp,
) -> anyhow::Result<Vec<PlanLine>> {
    let namespace = namespace_of(grant.metadata.namespace.as_ref());
    let name = grant.metadata.name.clone().unwrap_or_default();
    let connector_namespace = namespace_of(connector.metadata.namespace.as_ref());
    let connector_name = connector.metadata.name.clone().unwrap_or_default();
    let reference = &grant.spec.connector_ref;
    let referenced = reference
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.clone());
    if reference.name != connector_name || referenced != connector_namespace {
        let detail = format!(
            "spec.connectorRef names AwsConnector {referenced}/{}, not {connector_namespace}/{connector_name}",
            reference.name
        );
        return Ok(vec![refusal(namespace, name, Action::Invalid, detail)]);
    }
    let errors = validate_grant(&grant.spec);
    if !errors.is_empty() {
        return Ok(vec![refusal(
            namespace,
            name,
            Action::Invalid,
            describe(&errors),
        )]);
    }
    let allowed_namespaces = &connector.spec.grant_policy.allowed_namespaces;
    let mut notes = Vec::new();
    let namespace_ok = if allowed_namespaces.from == NamespacesFrom::Selector {
        notes.push("the namespace selector is checked in the cluster only".to_string());
        Ok(())
    } else {
        namespace_allowed(allowed_namespaces, &connector_namespace, &namespace, None)
    };
    let resolved = match resolve(&grant.spec, directory).await? {
        Ok(resolved) => resolved,
        Err(unresolved) => {
            let detail = format!("{}: {}", unresolved.reason, unresolved.message);
            return Ok(vec![refusal(namespace, name, Action::Unresolved, detail)]);
        }
    };
    let Some(unit) = &resolved.unit else {
        let line = plan_access(
            grant,
            connector,
            directory,
            actual,
            names,
            accounts,
            ledger,
            now,
            (&namespace, &name, namespace_ok, notes),
            &resolved.access,
        )
        .await?;
        return Ok(vec![line]);
    };
    // An organizational-unit grant: one line per ACTIVE account under the unit, and one per
    // account it holds that the last sync saw elsewhere (revoked) or did not see (kept).
    let mut lines = Vec::new();
    if let Err(rule) = check_unit(&connector.spec.grant_policy, unit, directory.cache) {
        return Ok(vec![refusal(namespace, name, Action::NotAllowed, rule)]);
    }
    for access in &resolved.accesses {
        let mut notes = notes.clone();
        notes.push(format!("under {unit}"));
        lines.push(
            plan_access(
                grant,
                connector,
                directory,
                actual,
                names,
                accounts,
                ledger,
                now,
                (&namespace, &name, namespace_ok.clone(), notes),
                access,
            )
            .await?,
        );
    }
    let holder = format!("{namespace}/{name}");
    let connector_key = super::connector_key(connector);
    for stored in ledger.held_by(&connector_key, &holder).await? {
        let access = &stored.entry.access;
        if resolved.accesses.contains(access) {
            continue;
        }
        let (action, detail) = match settle_in_unit(&resolved.access, unit, directory.cache, access)
        {
            Settle::Now => (
                Action::Delete,
                format!("the account is no longer under {unit}"),
            ),
            Settle::Keep => (
                Action::NoChange,
                format!(
                    "the account was not in the last sync: its assignment is kept until a sync sees it outside {unit}"
                ),
            ),
            Settle::WhenReplaced => (Action::Delete, "the spec no longer declares it".to_string()),
        };
        lines.push(PlanLine {
            namespace: namespace.clone(),
            name: name.clone(),
            action,
            access: Some(names.describe(access)),
            detail,
            result: None,
            target: Some(access.clone()),
            grant: Some(grant.clone()),
            unlisted: false,
            leaving: true,
        });
    }
    if lines.is_empty() {
        lines.push(PlanLine {
            namespace,
            name,
            action: Action::NoChange,
            access: None,
            detail: format!("no ACTIVE account under {unit} as of the last sync"),
            result: None,
            target: None,
            grant: Some(grant.clone()),
            unlisted: false,
            leaving: false,
        });
    }
    Ok(lines)
}

/// The plan line of one piece of a grant's access.
#[allow(clippy::too_many_arguments)]
async fn plan_access(
    grant: &AccessGrant,
    connector: &AwsConnector,
    directory: &Directory<'_>,
    actual: &Actual,
    names: &mut Names,
    accounts: &AccountCheck,
    ledger: &FileLedger,
    now: Timestamp,
    (namespace, name, namespace_ok, mut notes): (&str, &str, Result<(), String>, Vec<String>),
    access: &Access,
) -> anyhow::Result<PlanLine> {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    let connector_namespace = namespace_of(connector.metadata.namespace.as_ref());
    let connector_name = connector.metadata.name.clone().unwrap_or_default();
    names.learn(&grant.spec, access);
    if let Access::Assignment { account_id, .. } = access {
        if accounts.outside.contains(account_id) {
            let detail = format!(
                "spec.target.accountId: {account_id} is not an account of the organization (DescribeAccount)"
            );
            return Ok(refusal(namespace, name, Action::NotAllowed, detail));
        }
        if accounts.unchecked.contains(account_id) {
            notes.push(format!(
                "not checked whether account {account_id} is in the organization: organizations:DescribeAccount denied"
            ));
        }
    }
    // An account DescribeAccount could not be asked about is not known to be outside the
    // organization: the policy checks the others (and says so, above).
    let mut organization = directory.cache.accounts.clone();
    organization.extend(accounts.unchecked.iter().cloned());
    let allowed = namespace_ok.and_then(|()| {
        check_grant(
            &connector.spec.grant_policy,
            &grant.spec,
            access,
            &directory.cache.permission_set_arns,
            &organization,
            now,
        )
    });
    let holder = format!("{namespace}/{name}");
    let connector_key = format!("{connector_namespace}/{connector_name}");
    let entry = ledger.load(&connector_key, access).await?;
    let since = entry
        .as_ref()
        .and_then(|s| s.entry.holders.get(&holder))
        .and_then(|h| h.since.parse().ok());
    let expiry = Expiry::of(&grant.spec).at(since, now);
    // AWS as the inventory shows it; the connector as the operator would see a Ready one
    // (`apply` refuses a readOnly connector as a whole).
    let connector_state = Connector::reachable(false);
    let observed = if actual.has(access).await? {
        Observed::Present
    } else {
        Observed::Absent
    };
    let facts = Facts {
        holder: &holder,
        access,
        declared: Declared::Yes,
        deleting: false,
        deletion_policy: grant.spec.deletion_policy,
        expires_at: expiry,
        allowed,
        connector: &connector_state,
        entry: entry.as_ref().map(|s| &s.entry),
        observed,
        now,
    };
    let action = match decide(&facts) {
        Decision::Grant { .. } => Action::Create,
        Decision::Revoke(ending) => {
            if let Ending::NotAllowed(rule) = ending {
                notes.push(format!("no longer allowed: {rule}"));
            }
            Action::Delete
        }
        Decision::Resume(operation) if operation.kind == OperationKind::Revoke => Action::Delete,
        Decision::Resume(_) => Action::Create,
        Decision::Release(Ending::NotAllowed(rule), _)
        | Decision::Nothing(Ending::NotAllowed(rule)) => {
            return Ok(refusal(namespace, name, Action::NotAllowed, rule));
        }
        Decision::Release(Ending::Expired(_), _) | Decision::Nothing(Ending::Expired(_)) => {
            if entry.is_none() && observed == Observed::Present {
                notes.push(
                    "the access exists but was not created through this ledger: left in place"
                        .into(),
                );
            }
            Action::Expired
        }
        Decision::Adopt
        | Decision::Join
        | Decision::Keep
        | Decision::Observe
        | Decision::Release(..)
        | Decision::Nothing(_) => Action::NoChange,
        Decision::Wait { message, .. } | Decision::Refuse { message, .. } => {
            return Ok(refusal(namespace, name, Action::NotAllowed, message));
        }
    };
    if let Some(at) = expiry {
        notes.push(format!("expires {at}"));
    }
    Ok(PlanLine {
        namespace,
        name,
        action,
        access: Some(names.describe(access)),
        detail: notes.join("; "),
        result: None,
        target: Some(access.clone()),
        grant: Some(grant.clone()),
        unlisted: false,
        leaving: false,
    })
}

/// The grants the ledger knows through this connector that the files no longer declare: kept
/// and listed, or (with `--prune`) treated as deleted.
async fn unlisted(
    ledger: &FileLedger,
    connector_key: &str,
    grants: &[AccessGrant],
    actual: &Actual,
    names: &Names,
    prune: bool,
    now: Timestamp,
) -> anyhow::Result<Vec<PlanLine>> {
    let listed: BTreeSet<String> = grants
        .iter()
        .map(|g| {
            format!(
                "{}/{}",
                namespace_of(g.metadata.namespace.as_ref()),
                g.metadata.name.clone().unwrap_or_default()
            )
        })
        .collect();
    let ready = Connector::reachable(false);
    let mut lines = Vec::new();
    for stored in ledger.of_connector(connector_key).await? {
        let access = &stored.entry.access;
        for holder in stored.entry.holders.keys().filter(|h| !listed.contains(*h)) {
            let (namespace, name) = holder.split_once('/').unwrap_or(("", holder));
            let (action, detail) = if prune {
                let facts = Facts {
                    holder,
                    access,
                    declared: Declared::Unknown,
                    deleting: true,
                    deletion_policy: None,
                    expires_at: None,
                    allowed: Ok(()),
                    connector: &ready,
                    entry: Some(&stored.entry),
                    observed: if actual.has(access).await? {
                        Observed::Present
                    } else {
                        Observed::Absent
                    },
                    now,
                };
                match decide(&facts) {
                    Decision::Revoke(_) => {
                        (Action::Delete, "not in these files: deleted (--prune)")
                    }
                    _ => (
                        Action::NoChange,
                        "not in these files: deleted (--prune); the access stays (still declared, or adopted)",
                    ),
                }
            } else {
                (
                    Action::Unlisted,
                    "not in these files: its access is kept (--prune treats the grant as deleted)",
                )
            };
            lines.push(PlanLine {
                namespace: namespace.to_string(),
                name: name.to_string(),
                action,
                access: Some(names.describe(access)),
                detail: detail.to_string(),
                result: None,
                target: Some(access.clone()),
                grant: None,
                unlisted: true,
                leaving: false,
            });
        }
    }
    Ok(lines)
}

/// The inventory to plan against, with where it came from (`--inventory`, or a whole sync for
/// `--unmanaged`), or none: then only what the grants name is looked up. And a session, when
/// AWS is needed.
type Prepared = (Option<(Inventory, UnmanagedFrom)>, Option<Session>);

async fn inventory_and_session(
    args: &PlanArgs,
    connector: &AwsConnector,
    apply: bool,
) -> anyhow::Result<Result<Prepared, String>> {
    let needs_aws = apply || args.inventory.is_none();
    let session = if needs_aws {
        let reach = super::sync::Reach {
            external_id_env: &args.external_id_env,
            global_external_id_env: &args.global_external_id_env,
            member_external_id_env: None,
            rate_limits: &args.rate_limits,
            timeouts: args.aws_timeouts.timeouts(),
        };
        match super::sync::authenticated(connector, reach).await? {
            Ok(authenticated) => Some(authenticated),
            Err(message) => return Ok(Err(message)),
        }
    } else {
        None
    };
    let inventory = match (&args.inventory, &session) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let inventory: Inventory = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an inventory", path.display()))?;
            Some((inventory, UnmanagedFrom::Inventory))
        }
        // Only what the grants name is looked up (see `lookup`).
        (None, _) if !args.unmanaged => None,
        // Without an inventory file the command authenticated above, so there is a session.
        (None, None) => anyhow::bail!("no inventory: pass --inventory or let the command sync"),
        (None, Some(authenticated)) => {
            let scope = crate::connect::scope(connector, &authenticated.identity);
            let options = SyncOptions {
                page_size: args.page_size.unwrap_or(i32::MAX),
                ..SyncOptions::default()
            };
            let result = super::sync::sync_once(
                &authenticated.session,
                connector,
                &scope,
                args.state_dir.as_deref(),
                &options,
            )
            .await;
            match result {
                Ok(inventory) => Some((inventory, UnmanagedFrom::Sync)),
                Err(error) => return Ok(Err(error.to_string())),
            }
        }
    };
    Ok(Ok((inventory, session.map(|a| a.session))))
}

pub async fn run(args: PlanArgs, apply: bool) -> anyhow::Result<ExitCode> {
    super::sync::check_state_dir(args.state_dir.as_deref())?;
    let (loaded, _) = load(&args.files)?;
    let mut connectors = Vec::new();
    let mut grants = Vec::new();
    let mut sets = Vec::new();
    let mut identities = Vec::new();
    let mut lines = Vec::new();
    for document in loaded {
        match document.document {
            Document::Connector(c) => connectors.push(*c),
            Document::Grant(g) => grants.push(*g),
            // Requests need the API server to vouch for who asked and who approved: only the
            // operator in a cluster serves them.
            Document::Request(r) => eprintln!(
                "note: {}: AccessRequest {} is left out: requests are served only by the operator in a cluster",
                document.source,
                r.metadata.name.unwrap_or_default()
            ),
            Document::PermissionSet(set) => sets.push(*set),
            Document::Identity(identity) => identities.push(identity),
            Document::Undecodable {
                kind,
                name,
                namespace,
                message,
            } if kind == "AccessGrant" => {
                lines.push(refusal(
                    namespace_of(namespace.as_ref()),
                    name.unwrap_or_default(),
                    Action::Invalid,
                    message,
                ));
            }
            Document::Undecodable { kind, message, .. } => {
                return Err(super::InvalidInput(format!(
                    "{}: invalid {kind}: {message}",
                    document.source
                ))
                .into());
            }
        }
    }
    let Some(connector) = super::one_valid_connector(connectors)? else {
        return Ok(ExitCode::from(1));
    };
    let (inventory, session) = match inventory_and_session(&args, &connector, apply).await? {
        Ok(found) => found,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(1));
        }
    };

    let (cache, identity_center, mut names, actual, accounts) = match &inventory {
        Some((inventory, _)) => {
            let mut cache = SyncCache::default();
            cache.refresh_from(inventory);
            (
                cache,
                inventory.identity_center.clone(),
                Names::new(inventory),
                Actual::Known(actual_access(inventory)),
                AccountCheck::default(),
            )
        }
        None => {
            let Some(session) = &session else {
                anyhow::bail!("no inventory and no session");
            };
            let store = args.state_dir.as_ref().map(DirStore::new);
            let stored = match &store {
                Some(store) => store.load(CACHE_KEY).await?.unwrap_or_default(),
                None => Vec::new(),
            };
            let found =
                match look_up(session, &connector, &grants, SyncCache::decode(&stored)).await {
                    Ok(found) => found,
                    Err(error) => {
                        eprintln!("error: {error}");
                        return Ok(ExitCode::from(1));
                    }
                };
            if let Some(store) = &store {
                store
                    .save(CACHE_KEY, &serde_json::to_vec(&found.cache)?)
                    .await?;
            }
            let names = Names::from_cache(&found.cache);
            (
                found.cache,
                found.identity_center,
                names,
                Actual::asked(session.clone()),
                found.accounts,
            )
        }
    };
    let now = Timestamp::now();
    // The ownership ledger: in the state directory, so that a later apply knows what an
    // earlier one created. Without one it lives only as long as this run.
    let scratch;
    let ledger_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => {
            scratch = tempfile_dir()?;
            if apply {
                eprintln!(
                    "warning: no --state-dir: the ownership ledger lives only for this run, so a later apply cannot revoke what this one creates"
                );
            }
            scratch.path().to_path_buf()
        }
    };
    // Permission sets first: `apply` converges them before the grants that may name them are
    // planned, and `plan` tells those grants the set is yet to be made.
    let (set_lines, declared_sets) = super::set_plan::run(
        &sets,
        &connector,
        session.as_ref(),
        identity_center.as_ref().map(|ic| ic.instance_arn.as_str()),
        &ledger_dir,
        apply,
    )
    .await;
    // Users and groups too, for the grants that name them.
    let (identity_lines, declared_identities) = super::identity_plan::run(
        &identities,
        &connector,
        session.as_ref(),
        identity_center.as_ref(),
        &ledger_dir,
        apply,
    )
    .await;
    let ledger = FileLedger::new(&ledger_dir);
    for grant in &grants {
        let named = grant.spec.target.permission_set.as_deref();
        let directory = Directory {
            cache: &cache,
            identity_center: identity_center.as_ref(),
            session: session.as_ref(),
            declared: declared_sets
                .iter()
                .find(|d| Some(d.name.as_str()) == named),
            identities: &declared_identities,
        };
        lines.extend(
            plan_one(
                grant, &connector, &directory, &actual, &mut names, &accounts, &ledger, now,
            )
            .await?,
        );
    }
    let connector_key = super::connector_key(&connector);
    lines.extend(
        unlisted(
            &ledger,
            &connector_key,
            &grants,
            &actual,
            &names,
            args.prune,
            now,
        )
        .await?,
    );
    let declared: BTreeSet<Access> = lines
        .iter()
        .filter(|l| !l.leaving)
        .filter_map(|l| l.target.clone())
        .collect();
    let mut plan = Plan {
        connector: connector_key,
        unmanaged: inventory
            .as_ref()
            .map(|(inventory, _)| {
                unmanaged(inventory, &declared)
                    .iter()
                    .map(|a| names.describe(a))
                    .collect()
            })
            .unwrap_or_default(),
        unmanaged_from: inventory
            .as_ref()
            .map_or(UnmanagedFrom::NotLookedFor, |(_, from)| *from),
        summary: BTreeMap::new(),
        permission_sets: set_lines,
        identities: identity_lines,
        grants: lines,
    };

    let mut failed = plan.grants.iter().any(|l| l.action.is_refusal())
        || plan.permission_sets.iter().any(super::set_plan::failed)
        || plan.identities.iter().any(super::identity_plan::failed);
    if apply {
        if connector.spec.read_only {
            eprintln!("error: the AwsConnector is readOnly: apply writes nothing");
            failed = true;
        } else if let Some(session) = &session {
            let key = plan.connector.clone();
            failed |= execute(
                session,
                &ledger,
                &key,
                &connector,
                &cache,
                &mut plan.grants,
                now,
            )
            .await;
        }
    }
    for line in &plan.grants {
        *plan.summary.entry(line.action.as_str()).or_default() += 1;
    }
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        OutputFormat::Table => print_table(&plan, apply)?,
    }
    Ok(if apply && failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Carries out every planned grant through the shared shell and the ledger, at most
/// `IN_FLIGHT` at once. Returns whether anything failed.
async fn execute(
    session: &Session,
    ledger: &FileLedger,
    connector_key: &str,
    connector: &AwsConnector,
    cache: &SyncCache,
    lines: &mut [PlanLine],
    now: Timestamp,
) -> bool {
    let slots = Semaphore::new(IN_FLIGHT);
    let locks = AccessLocks::default();
    let fence = Fence::unfenced();
    let shell = Shell {
        ledger,
        connector: connector_key,
        session: Some(session),
        fence: &fence,
        slots: &slots,
        locks: &locks,
        observations: None,
        still_serving: None,
    };
    let state = Connector::reachable(false);
    let mut failed_prune = false;
    // One converge per grant: an organizational-unit grant's accounts together, so that each
    // account's access is the grant's (and the accounts it no longer covers are its others).
    let mut work: BTreeMap<String, (AccessGrant, Pieces)> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let active = matches!(
            line.action,
            Action::Create | Action::Delete | Action::NoChange | Action::Expired
        );
        let (Some(grant), Some(access), true) = (&line.grant, &line.target, active) else {
            continue;
        };
        work.entry(format!("{}/{}", line.namespace, line.name))
            .or_insert_with(|| (grant.clone(), Vec::new()))
            .1
            .push((i, access.clone(), line.leaving));
    }
    // Grants the files no longer declare, with --prune: deleted, one piece of access each.
    for line in lines
        .iter_mut()
        .filter(|l| l.unlisted && l.action != Action::Unlisted)
    {
        let Some(access) = line.target.clone() else {
            continue;
        };
        let holder = format!("{}/{}", line.namespace, line.name);
        line.result = Some(
            match shell
                .settle_gone_holder(
                    &holder,
                    &holder,
                    crate::grant::ledger::HolderKind::AccessGrant,
                    &access,
                    &state,
                    now,
                )
                .await
            {
                Ok(Done::Revoked { .. }) => "revoked".to_string(),
                Ok(Done::Released { .. } | Done::Nothing(_)) => "left in place".to_string(),
                Ok(other) => {
                    failed_prune = true;
                    format!("failed: {other:?}")
                }
                Err(error) => {
                    failed_prune = true;
                    format!("failed: {error}")
                }
            },
        );
    }
    let (shell, state) = (&shell, &state);
    let results: Vec<Applied> = futures::stream::iter(work)
        .map(|(holder, (grant, pieces))| async move {
            let allowed = |a: &Access| {
                if let Some(unit) = &grant.spec.target.organizational_unit {
                    check_unit(&connector.spec.grant_policy, unit, cache)?;
                }
                check_grant(
                    &connector.spec.grant_policy,
                    &grant.spec,
                    a,
                    &cache.permission_set_arns,
                    &cache.accounts,
                    now,
                )
            };
            let wanted: Vec<Access> = pieces
                .iter()
                .filter(|(_, _, leaving)| !leaving)
                .map(|(_, access, _)| access.clone())
                .collect();
            // Any of the grant's assignments stands for the others: only the account differs.
            let template = pieces.first().map(|(_, access, _)| access.clone());
            let unit = grant.spec.target.organizational_unit.clone();
            let settle = |held: &Access| match (&unit, &template) {
                (Some(unit), Some(template)) => settle_in_unit(template, unit, cache, held),
                _ => Settle::WhenReplaced,
            };
            let ask = GrantAsk {
                holder: &holder,
                grant: &holder,
                holder_kind: crate::grant::ledger::HolderKind::AccessGrant,
                wanted: &wanted,
                settle: &settle,
                deleting: false,
                deletion_policy: grant.spec.deletion_policy,
                expiry: Expiry::of(&grant.spec),
                allowed: &allowed,
                connector: state,
                now,
            };
            let lines = pieces
                .into_iter()
                .map(|(i, access, _)| (i, access))
                .collect();
            (lines, shell.converge(&ask).await)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut failed = failed_prune;
    for (pieces, result) in results {
        let report = match result {
            Err(error) => {
                failed = true;
                for (i, _) in pieces {
                    lines[i].result = Some(format!("failed: {error}"));
                }
                continue;
            }
            Ok(report) => report,
        };
        let single = grant_of_one(&pieces, lines);
        for (i, access) in pieces {
            let done = report
                .wanted
                .iter()
                .chain(&report.others)
                .find(|(a, _)| *a == access)
                .map(|(_, done)| done);
            let (mut text, mut bad) = match done {
                Some(done) => done_text(done),
                None => ("nothing to do".to_string(), false),
            };
            // A grant of one piece of access: what it held before (an older spec) is said too.
            if single {
                for (old, result) in &report.others {
                    match result {
                        Ok(Done::Revoked { .. }) => text.push_str(&format!("; revoked {old}")),
                        Ok(Done::Released { .. }) => {
                            text.push_str(&format!("; left {old} in place"))
                        }
                        Ok(_) => {}
                        Err(error) => {
                            bad = true;
                            text.push_str(&format!("; revoking {old} failed: {error}"));
                        }
                    }
                }
            }
            failed |= bad;
            lines[i].result = Some(text);
        }
    }
    failed
}

/// A grant's lines to apply: each line, its access, and whether it is access the grant no
/// longer covers (an account that left its organizational unit).
type Pieces = Vec<(usize, Access, bool)>;

/// What applying one grant's lines came to.
type Applied = (Vec<(usize, Access)>, Result<GrantReport, ShellError>);

/// Whether a grant's lines are one piece of access it still asks for (not an
/// organizational-unit grant's accounts).
fn grant_of_one(pieces: &[(usize, Access)], lines: &[PlanLine]) -> bool {
    matches!(pieces, [(i, _)] if !lines[*i].leaving && lines[*i].grant.as_ref().is_some_and(|g| g.spec.target.organizational_unit.is_none()))
}

/// What `apply` did with one piece of access, and whether that is a failure.
fn done_text(done: &Result<Done, ShellError>) -> (String, bool) {
    match done {
        Err(error) => (format!("failed: {error}"), true),
        Ok(Done::Held { change, .. }) => (
            match change {
                HeldChange::Granted => "granted".to_string(),
                HeldChange::Regranted => "granted again (it had been removed)".to_string(),
                HeldChange::Adopted => "adopted (it existed already)".to_string(),
                HeldChange::Joined | HeldChange::Unchanged => "already so".to_string(),
            },
            false,
        ),
        Ok(Done::Revoked {
            already_gone: false,
            ..
        }) => ("revoked".to_string(), false),
        Ok(Done::Revoked {
            already_gone: true, ..
        }) => ("already gone".to_string(), false),
        Ok(Done::Released { .. }) => ("left in place".to_string(), false),
        Ok(Done::Nothing(_)) => ("nothing to do".to_string(), false),
        Ok(Done::InProgress { request_id, .. }) => (
            format!("still in progress in AWS (request {request_id})"),
            true,
        ),
        Ok(Done::Wait { message, .. } | Done::Refused { message, .. }) => {
            (format!("failed: {message}"), true)
        }
    }
}

fn tempfile_dir() -> anyhow::Result<TempLedgerDir> {
    let path =
        std::env::temp_dir().join(format!("aws-access-operator-ledger-{}", std::process::id()));
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(TempLedgerDir(path))
}

/// A ledger directory for one run, removed when the run ends.
struct TempLedgerDir(std::path::PathBuf);

impl TempLedgerDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempLedgerDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn print_table(plan: &Plan, applied: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "AwsConnector {}", plan.connector)?;
    super::set_plan::print_table(&plan.permission_sets, applied, &mut out)?;
    super::identity_plan::print_table(&plan.identities, applied, &mut out)?;
    let width = plan
        .grants
        .iter()
        .map(|l| l.namespace.len() + l.name.len() + 1)
        .max()
        .unwrap_or(5)
        .max(5);
    let header = if applied { "RESULT" } else { "DETAIL" };
    let access_width = plan
        .grants
        .iter()
        .filter_map(|l| l.access.as_ref())
        .map(String::len)
        .max()
        .unwrap_or(6)
        .max(6);
    writeln!(
        out,
        "{:<width$}  {:<11}  {:<access_width$}  {header}",
        "GRANT", "ACTION", "ACCESS"
    )?;
    for line in &plan.grants {
        let grant = format!("{}/{}", line.namespace, line.name);
        let access = line.access.as_deref().unwrap_or("-");
        let last = match (&line.result, applied) {
            (Some(result), true) => result.as_str(),
            _ => line.detail.as_str(),
        };
        writeln!(
            out,
            "{grant:<width$}  {:<11}  {access:<access_width$}  {last}",
            line.action.as_str()
        )?;
    }
    let summary: Vec<String> = plan
        .summary
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    writeln!(
        out,
        "\n{} grants: {}",
        plan.grants.len(),
        summary.join(", ")
    )?;
    const SHOWN: usize = 5;
    if plan.unmanaged_from == UnmanagedFrom::NotLookedFor {
        writeln!(
            out,
            "\nUnmanaged access: not looked for (--unmanaged syncs the whole organization to report it; --inventory FILE reads it from a saved inventory)"
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "\nUnmanaged access (reported, never revoked): {}",
        plan.unmanaged.len()
    )?;
    for access in plan.unmanaged.iter().take(SHOWN) {
        writeln!(out, "  {access}")?;
    }
    if plan.unmanaged.len() > SHOWN {
        writeln!(
            out,
            "  ... and {} more (--output json lists them all)",
            plan.unmanaged.len() - SHOWN
        )?;
    }
    Ok(())
}
