//! `plan` and `apply`: what a set of AccessGrants would change in AWS, and applying it once,
//! without Kubernetes (GitOps pipelines, the demo). The same resolution, policy and expiry
//! rules as the operator.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use jiff::Timestamp;
use serde::Serialize;

use crate::api::connector::NamespacesFrom;
use crate::api::validation::{describe, validate_connector, validate_grant};
use crate::api::{AccessGrant, AwsConnector};
use crate::aws::access::{self as aws_access, Change};
use crate::aws::{AwsBase, RateLimits, Session};
use crate::cli::{OutputFormat, PlanArgs};
use crate::grant::access::Access;
use crate::grant::expiry::expires_at;
use crate::grant::plan::{Action, Names, actual_access, decide, unmanaged};
use crate::grant::policy::{check_grant, namespace_allowed};
use crate::grant::resolve::{Directory, resolve};
use crate::manifest::{Document, load};
use crate::sync::cache::SyncCache;
use crate::sync::{Inventory, SyncOptions};

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
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub connector: String,
    pub grants: Vec<PlanLine>,
    /// Access in AWS that no grant declares: reported, never revoked.
    pub unmanaged: Vec<String>,
    pub summary: BTreeMap<&'static str, usize>,
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
    }
}

/// Plans one grant against the connector and what AWS has.
async fn plan_one(
    grant: &AccessGrant,
    connector: &AwsConnector,
    directory: &Directory<'_>,
    actual: &BTreeSet<Access>,
    names: &Names,
    now: Timestamp,
) -> anyhow::Result<PlanLine> {
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
        return Ok(refusal(namespace, name, Action::Invalid, detail));
    }
    let errors = validate_grant(&grant.spec);
    if !errors.is_empty() {
        return Ok(refusal(namespace, name, Action::Invalid, describe(&errors)));
    }
    let allowed = &connector.spec.grant_policy.allowed_namespaces;
    let mut notes = Vec::new();
    if allowed.from == NamespacesFrom::Selector {
        notes.push("the namespace selector is checked in the cluster only".to_string());
    } else if let Err(rule) = namespace_allowed(allowed, &connector_namespace, &namespace, None) {
        return Ok(refusal(namespace, name, Action::NotAllowed, rule));
    }
    let resolved = match resolve(&grant.spec, directory).await? {
        Ok(resolved) => resolved,
        Err(unresolved) => {
            let detail = format!("{}: {}", unresolved.reason, unresolved.message);
            return Ok(refusal(namespace, name, Action::Unresolved, detail));
        }
    };
    if let Err(rule) = check_grant(
        &connector.spec.grant_policy,
        &grant.spec,
        &resolved.access,
        &directory.cache.permission_set_arns,
        &directory.cache.accounts,
        now,
    ) {
        return Ok(refusal(namespace, name, Action::NotAllowed, rule));
    }
    let expiry = expires_at(&grant.spec, None, now);
    let action = decide(&resolved.access, actual, expiry, now);
    if let Some(at) = expiry {
        notes.push(format!("expires {at}"));
    }
    Ok(PlanLine {
        namespace,
        name,
        action,
        access: Some(names.describe(&resolved.access)),
        detail: notes.join("; "),
        result: None,
        target: Some(resolved.access),
    })
}

async fn inventory_and_session(
    args: &PlanArgs,
    connector: &AwsConnector,
    apply: bool,
) -> anyhow::Result<Result<(Inventory, Option<Session>), String>> {
    let needs_aws = apply || args.inventory.is_none();
    let session = if needs_aws {
        let external_id = match crate::sync_command::external_id(connector, &args.external_id_env) {
            Ok(id) => id,
            Err(message) => return Ok(Err(message)),
        };
        let limits = RateLimits::parse(&args.rate_limits)
            .map_err(|e| anyhow::anyhow!("--rate-limits: {e}"))?;
        let base = AwsBase::from_env().await;
        match crate::connect::authenticate(&base, connector, external_id.as_deref(), &limits).await
        {
            Ok(authenticated) => Some(authenticated),
            Err(error) => return Ok(Err(format!("cannot authenticate: {error}"))),
        }
    } else {
        None
    };
    let inventory = match (&args.inventory, &session) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not an inventory", path.display()))?
        }
        // Without an inventory file the command authenticated above, so there is a session.
        (None, None) => anyhow::bail!("no inventory: pass --inventory or let the command sync"),
        (None, Some(authenticated)) => {
            let scope = crate::connect::scope(connector, &authenticated.identity);
            let options = SyncOptions {
                page_size: args.page_size.unwrap_or(i32::MAX),
                ..SyncOptions::default()
            };
            let result = crate::sync_command::sync_once(
                &authenticated.session,
                connector,
                &scope,
                args.state_dir.as_deref(),
                &options,
            )
            .await;
            match result {
                Ok(inventory) => inventory,
                Err(error) => return Ok(Err(error.to_string())),
            }
        }
    };
    Ok(Ok((inventory, session.map(|a| a.session))))
}

pub async fn run(args: PlanArgs, apply: bool) -> anyhow::Result<ExitCode> {
    let (loaded, _) = load(&args.files)?;
    let mut connectors = Vec::new();
    let mut grants = Vec::new();
    let mut lines = Vec::new();
    for document in loaded {
        match document.document {
            Document::Connector(c) => connectors.push(*c),
            Document::Grant(g) => grants.push(*g),
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
            Document::Undecodable { message, .. } => {
                anyhow::bail!("{}: invalid AwsConnector: {message}", document.source)
            }
        }
    }
    let connector = match connectors.len() {
        1 => connectors.remove(0),
        0 => anyhow::bail!("no AwsConnector found: pass the connector's manifest with -f"),
        n => anyhow::bail!("{n} AwsConnectors found: pass exactly one"),
    };
    let verdict = validate_connector(&connector.spec);
    if !verdict.is_valid() {
        eprintln!(
            "error: the AwsConnector is invalid: {}",
            describe(&verdict.errors())
        );
        return Ok(ExitCode::from(1));
    }
    let (inventory, session) = match inventory_and_session(&args, &connector, apply).await? {
        Ok(found) => found,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(1));
        }
    };

    let mut cache = SyncCache::default();
    cache.refresh_from(&inventory);
    let directory = Directory {
        cache: &cache,
        identity_center: inventory.identity_center.as_ref(),
        session: session.as_ref(),
    };
    let actual = actual_access(&inventory);
    let names = Names::new(&inventory);
    let now = Timestamp::now();
    for grant in &grants {
        lines.push(plan_one(grant, &connector, &directory, &actual, &names, now).await?);
    }
    let declared: BTreeSet<Access> = lines.iter().filter_map(|l| l.target.clone()).collect();
    let mut plan = Plan {
        connector: format!(
            "{}/{}",
            namespace_of(connector.metadata.namespace.as_ref()),
            connector.metadata.name.clone().unwrap_or_default()
        ),
        unmanaged: unmanaged(&inventory, &declared)
            .iter()
            .map(|a| names.describe(a))
            .collect(),
        summary: BTreeMap::new(),
        grants: lines,
    };

    let mut failed = plan.grants.iter().any(|l| l.action.is_refusal());
    if apply {
        if connector.spec.read_only {
            eprintln!("error: the AwsConnector is readOnly: apply writes nothing");
            failed = true;
        } else if let Some(session) = &session {
            failed |= execute(session, &mut plan.grants).await;
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

/// Grants what is missing and revokes what expired, at most `IN_FLIGHT` at once. Returns
/// whether anything failed.
async fn execute(session: &Session, lines: &mut [PlanLine]) -> bool {
    let work: Vec<(usize, Action, Access)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match (&l.action, &l.target) {
            (Action::Create | Action::Delete, Some(access)) => {
                Some((i, l.action.clone(), access.clone()))
            }
            _ => None,
        })
        .collect();
    let results: Vec<(usize, Result<Change, String>)> = futures::stream::iter(work)
        .map(|(i, action, access)| async move {
            let result = match action {
                Action::Delete => aws_access::revoke(session, &access).await,
                _ => aws_access::grant(session, &access).await,
            };
            let result = match result {
                Ok(Change::InProgress(request)) => {
                    settle_later(session, &access, request, action == Action::Delete).await
                }
                other => other.map_err(|e| e.to_string()),
            };
            (i, result)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut failed = false;
    for (i, result) in results {
        lines[i].result = Some(match result {
            Ok(Change::Done(_)) => if lines[i].action == Action::Delete {
                "revoked"
            } else {
                "granted"
            }
            .to_string(),
            Ok(Change::AlreadySo) => "already so".to_string(),
            Ok(Change::InProgress(request)) => {
                failed = true;
                format!("still in progress in AWS (request {request})")
            }
            Err(message) => {
                failed = true;
                format!("failed: {message}")
            }
        });
    }
    failed
}

/// `apply` runs once: it waits (in rounds of the poll budget, up to five minutes) for an
/// assignment operation AWS is still working on.
async fn settle_later(
    session: &Session,
    access: &Access,
    request: String,
    delete: bool,
) -> Result<Change, String> {
    let Access::Assignment { instance_arn, .. } = access else {
        return Ok(Change::InProgress(request));
    };
    let direction = if delete {
        aws_access::Direction::Delete
    } else {
        aws_access::Direction::Create
    };
    for _ in 0..5 {
        match aws_access::settle(
            session,
            instance_arn,
            request.clone(),
            aws_access::Progress::InProgress,
            direction,
        )
        .await
        {
            Ok(Change::InProgress(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
            other => return other.map_err(|e| e.to_string()),
        }
    }
    Ok(Change::InProgress(request))
}

fn print_table(plan: &Plan, applied: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "AwsConnector {}", plan.connector)?;
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
