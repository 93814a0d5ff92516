//! `aws-access-operator sync`: one inventory sync without Kubernetes, with the operator's
//! engine. Page state and cache go to `--state-dir`, so an interrupted run resumes.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::args::SyncArgs;
use crate::api::AwsConnector;
use crate::api::validation::{FieldError, check_external_id, describe, validate_connector};
use crate::aws::{AwsBase, RateLimits};
use crate::manifest::{Document, load};
use crate::sync::{DirStore, Inventory, NoStore, SyncOptions};

/// One sync with the page state and cache in `state_dir` (resumable), or kept nowhere.
pub async fn sync_once(
    session: &crate::aws::Session,
    connector: &AwsConnector,
    scope: &str,
    state_dir: Option<&std::path::Path>,
    options: &SyncOptions,
) -> Result<Inventory, crate::sync::SyncError> {
    let sync = &connector.spec.sync;
    match state_dir {
        Some(dir) => crate::sync::run(session, sync, scope, &DirStore::new(dir), options).await,
        None => crate::sync::run(session, sync, scope, &NoStore, options).await,
    }
}

/// The one AwsConnector in `files`.
pub fn one_connector(files: &[std::path::PathBuf]) -> anyhow::Result<AwsConnector> {
    let (loaded, _) = load(files)?;
    let mut connectors = Vec::new();
    for document in loaded {
        match document.document {
            Document::Connector(c) => connectors.push(*c),
            Document::Undecodable { kind, message, .. }
                if kind == "AwsConnector" || !crate::manifest::KINDS.contains(&kind.as_str()) =>
            {
                return Err(super::InvalidInput(format!(
                    "{}: invalid AwsConnector: {message}",
                    document.source
                ))
                .into());
            }
            _ => {}
        }
    }
    match connectors.len() {
        1 => Ok(connectors.remove(0)),
        0 => anyhow::bail!("no AwsConnector found in the files given"),
        n => anyhow::bail!("{n} AwsConnectors found: pass exactly one"),
    }
}

/// An external ID the connector names a Secret for: outside Kubernetes, from an environment
/// variable, checked like an inline one.
fn from_env(field: &str, env: &str) -> Result<String, String> {
    let value = std::env::var(env).map_err(|_| {
        format!("{field} names a Secret; outside Kubernetes set {env} to its value")
    })?;
    let mut errors: Vec<FieldError> = Vec::new();
    check_external_id(env, &value, &mut errors);
    match errors.is_empty() {
        true => Ok(value),
        false => Err(describe(&errors)),
    }
}

/// What the connector's role chain is built from: the connector with its first hop's external
/// ID in place, and the second hop's external ID (inline, or from the environment variables
/// that stand for the Secrets).
pub fn chain(
    connector: &AwsConnector,
    env: &str,
    global_env: &str,
) -> Result<(AwsConnector, Option<String>), String> {
    let auth = &connector.spec.auth;
    let external_id = match &auth.external_id_secret_ref {
        Some(_) => Some(from_env("spec.auth.externalIdSecretRef", env)?),
        None => auth.external_id.clone(),
    };
    let mut resolved = connector.clone();
    if auth.global_external_id_secret_ref.is_some() {
        resolved.spec.auth.global_external_id =
            Some(from_env("spec.auth.globalExternalIdSecretRef", global_env)?);
        resolved.spec.auth.global_external_id_secret_ref = None;
    }
    Ok((resolved, external_id))
}

/// The member accounts' external ID, when the connector names a Secret for it: from the
/// environment variable `env` that stands for the Secret.
pub fn member_external_id(connector: &AwsConnector, env: &str) -> Result<Option<String>, String> {
    let named = connector
        .spec
        .sync
        .members()
        .and_then(|m| m.external_id_secret_ref.as_ref());
    match named {
        Some(_) => from_env("spec.sync.memberAccounts.externalIdSecretRef", env).map(Some),
        None => Ok(None),
    }
}

/// What a command builds the connector's role chain from: the environment variables that stand
/// for the connector's Secrets (the member accounts' one only for a command that syncs them),
/// the rate limits and the timeouts.
pub struct Reach<'a> {
    pub external_id_env: &'a str,
    pub global_external_id_env: &'a str,
    pub member_external_id_env: Option<&'a str>,
    pub rate_limits: &'a str,
    pub timeouts: crate::aws::Timeouts,
}

/// The connector's role chain, built and confirmed (GetCallerIdentity); or why not, for an
/// `error:` line and exit 1.
pub async fn authenticated(
    connector: &AwsConnector,
    reach: Reach<'_>,
) -> anyhow::Result<Result<crate::connect::Authenticated, String>> {
    let (resolved, external_id) = match chain(
        connector,
        reach.external_id_env,
        reach.global_external_id_env,
    ) {
        Ok(found) => found,
        Err(message) => return Ok(Err(message)),
    };
    let member_external_id = match reach.member_external_id_env {
        Some(env) => match member_external_id(connector, env) {
            Ok(found) => found,
            Err(message) => return Ok(Err(message)),
        },
        None => None,
    };
    let limits =
        RateLimits::parse(reach.rate_limits).map_err(|e| anyhow::anyhow!("--rate-limits: {e}"))?;
    let base = AwsBase::from_env(reach.timeouts).await;
    let name = connector.metadata.name.clone().unwrap_or_default();
    match crate::connect::authenticate(&base, &resolved, external_id.as_deref(), &limits).await {
        Ok(mut authenticated) => {
            authenticated.session.member_external_id = member_external_id;
            Ok(Ok(authenticated))
        }
        Err(error) => Ok(Err(format!(
            "cannot authenticate AwsConnector {name}: {error}"
        ))),
    }
}

/// A `--state-dir` must be a directory (it is created when missing): anything else is said
/// plainly, before any AWS call, rather than as a failed read of the page state.
pub fn check_state_dir(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(dir) = dir else {
        return Ok(());
    };
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("--state-dir {}: not a directory", dir.display());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("--state-dir {}: cannot create it: {e}", dir.display()))?;
    crate::grant::ledger::FileLedger::check(dir)
        .and_then(|()| crate::records::readable::<crate::permission_set::record::SetRecord>(dir))
        .and_then(|()| crate::records::readable::<crate::identity::record::IdentityRecord>(dir))
        .map_err(|message| anyhow::anyhow!("--state-dir {message}"))
}

pub async fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    check_state_dir(args.state_dir.as_deref())?;
    let connector = one_connector(&args.files)?;
    let name = connector.metadata.name.clone().unwrap_or_default();
    let verdict = validate_connector(&connector.spec);
    if !verdict.is_valid() {
        eprintln!(
            "error: AwsConnector {name} is invalid: {}",
            describe(&verdict.errors())
        );
        return Ok(ExitCode::from(1));
    }
    let reach = Reach {
        external_id_env: &args.external_id_env,
        global_external_id_env: &args.global_external_id_env,
        member_external_id_env: Some(&args.member_external_id_env),
        rate_limits: &args.rate_limits,
        timeouts: args.aws_timeouts.timeouts(),
    };
    let authenticated = match authenticated(&connector, reach).await? {
        Ok(authenticated) => authenticated,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(1));
        }
    };
    tracing::info!(account = %authenticated.identity.account, arn = %authenticated.identity.arn, "authenticated");
    let scope = crate::connect::scope(&connector, &authenticated.identity);
    let options = SyncOptions {
        page_size: args.page_size.unwrap_or(i32::MAX),
        checkpoint_every: Duration::from_secs(args.checkpoint_seconds),
        ..SyncOptions::default()
    };
    let session = &authenticated.session;
    // SIGTERM or Ctrl-C stops the sync with its page state saved (with --state-dir), so that
    // the next run resumes where this one was stopped, not at its last checkpoint.
    let stop = crate::controller::shutdown::os_signal();
    let result = match &args.state_dir {
        Some(dir) => {
            crate::sync::run_until(
                session,
                &connector.spec.sync,
                &scope,
                &DirStore::new(dir),
                &options,
                stop,
            )
            .await
        }
        None => {
            let store = NoStore;
            crate::sync::run_until(
                session,
                &connector.spec.sync,
                &scope,
                &store,
                &options,
                stop,
            )
            .await
        }
    };
    let inventory = match result {
        Ok(mut inventory) => {
            inventory.identity = Some(authenticated.identity.clone());
            inventory
        }
        Err(error) => {
            eprintln!("error: {error}");
            if args.state_dir.is_some() {
                eprintln!("the page state is saved: run the same command again to resume");
            }
            return Ok(ExitCode::from(1));
        }
    };
    write(&inventory, args.output.as_deref())?;
    eprintln!("{}", summary(&inventory));
    Ok(ExitCode::SUCCESS)
}

/// Writes the inventory as it is serialized, without holding its JSON in memory too.
fn write(inventory: &Inventory, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(&mut out);
    serde_json::to_writer_pretty(&mut out, inventory)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A human summary of an inventory and what it cost.
pub fn summary(inventory: &Inventory) -> String {
    let stats = &inventory.stats;
    let mut text = format!(
        "inventory: {} accounts, {} IAM users, {} IAM groups, {} IAM roles, {} SSO users, {} SSO groups, {} permission sets, {} assignments\n",
        inventory.accounts.len(),
        inventory.iam_users.len(),
        inventory.iam_groups.len(),
        inventory.iam_roles.len(),
        inventory.sso_users.len(),
        inventory.sso_groups.len(),
        inventory.permission_sets.len(),
        inventory.assignments.len()
    );
    if !inventory.organizational_units.is_empty() {
        text.push_str(&format!(
            "organization: {} organizational units\n",
            inventory.organizational_units.len()
        ));
    }
    if !inventory.member_accounts.is_empty() {
        let users: usize = inventory
            .member_accounts
            .iter()
            .map(|m| m.iam_users.len())
            .sum();
        text.push_str(&format!(
            "member accounts: {} ({users} IAM users)\n",
            inventory.member_outcomes()
        ));
        for member in &inventory.member_accounts {
            if let Some(message) = &member.message {
                text.push_str(&format!(
                    "  {} {}: {message}\n",
                    member.account_id, member.outcome
                ));
            }
        }
    }
    let signed_in = inventory
        .sso_users
        .iter()
        .filter(|u| u.last_sign_in_at.is_some())
        .count();
    if signed_in > 0 {
        text.push_str(&format!(
            "sign-ins: {signed_in} of {} SSO users signed in within CloudTrail's history\n",
            inventory.sso_users.len()
        ));
    }
    text.push_str(&format!(
        "cost: {} AWS calls ({} throttled, {} cache hits) in {:.1}s{}{}\n",
        stats.total_calls,
        stats.throttled,
        stats.cache_hits,
        stats.duration_seconds,
        if stats.resumed { ", resumed" } else { "" },
        stats
            .assignment_listing
            .as_deref()
            .map(|l| format!(", assignments listed {l}"))
            .unwrap_or_default()
    ));
    for (operation, calls) in &stats.api_calls {
        text.push_str(&format!("  {operation:<42} {calls}\n"));
    }
    text.trim_end().to_string()
}
