//! The command line: one binary, the operator and its offline companions, one module per
//! command over the same core.

mod access;
mod args;
mod identity_plan;
mod lookup;
pub mod plan;
mod review;
mod set_plan;
pub mod sync;

pub use args::*;

/// The one AwsConnector of the files, valid; `Ok(None)` when it is invalid (said on stderr: exit
/// 1).
/// The connector as the operator's records and ledger name it: `namespace/name`, its
/// namespace `default` when the manifest has none.
pub fn connector_key(connector: &crate::api::AwsConnector) -> String {
    format!(
        "{}/{}",
        connector.metadata.namespace.as_deref().unwrap_or("default"),
        connector.metadata.name.as_deref().unwrap_or_default()
    )
}

pub fn one_valid_connector(
    mut connectors: Vec<crate::api::AwsConnector>,
) -> anyhow::Result<Option<crate::api::AwsConnector>> {
    let connector = match connectors.len() {
        1 => connectors.remove(0),
        0 => anyhow::bail!("no AwsConnector found: pass the connector's manifest with -f"),
        n => anyhow::bail!("{n} AwsConnectors found: pass exactly one"),
    };
    let verdict = crate::api::validation::validate_connector(&connector.spec);
    if !verdict.is_valid() {
        eprintln!(
            "error: the AwsConnector is invalid: {}",
            crate::api::validation::describe(&verdict.errors())
        );
        return Ok(None);
    }
    Ok(Some(connector))
}

/// Input that was read but breaks a rule (exit 1), as opposed to input that could not be read
/// or a command that could not run (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::api::request::Decision;
use crate::controller::{self, LeaderElection, Settings, shutdown};

/// Runs the parsed command line and returns the process' exit code.
pub async fn main(cli: Cli) -> ExitCode {
    crate::telemetry::init(cli.log_format, "info");
    let result = match cli.command {
        None => run(cli.run).await,
        Some(Command::Run(args)) => run(args).await,
        Some(Command::Crd(args)) => print_crds(args.output_dir.as_deref()),
        Some(Command::Validate(files)) => validate(&files.files),
        Some(Command::Sync(args)) => sync::run(args).await,
        Some(Command::Plan(args)) => plan::run(args, false).await,
        Some(Command::Apply(args)) => plan::run(args, true).await,
        Some(Command::Access(args)) => access::run(args).await,
        Some(Command::Approve(args)) => review::review(args, Decision::Approve).await,
        Some(Command::Deny(args)) => review::review(args, Decision::Deny).await,
        Some(Command::Revoke(args)) => review::review(args, Decision::Revoke).await,
        Some(Command::Withdraw(args)) => review::withdraw(args).await,
        Some(Command::Requests(args)) => review::pending(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            // See "Exit codes" in docs/cli.md.
            if error.downcast_ref::<InvalidInput>().is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn print_crds(output_dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let Some(dir) = output_dir else {
        let yaml = crate::crd::render_all().context("cannot render the CRDs")?;
        std::io::stdout().write_all(yaml.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for crd in crate::crd::all() {
        let path = dir.join(crate::crd::file_name(&crd));
        let yaml = crate::crd::to_yaml(&crd).context("cannot render a CRD")?;
        std::fs::write(&path, yaml).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (loaded, skipped) = crate::manifest::load(files)?;
    for source in &skipped {
        eprintln!("{source}: skipped (not of the {} group)", crate::api::GROUP);
    }
    let mut stdout = std::io::stdout().lock();
    let mut all_valid = true;
    for document in &loaded {
        let report = crate::validate::check(document);
        all_valid &= report.valid;
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    }
    if loaded.is_empty() {
        eprintln!("no AwsConnector, AccessGrant or AccessRequest found");
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("aws-access-operator-{}", std::process::id()))
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (no in-cluster config or kubeconfig)")?;
    let identity = args.identity.clone().unwrap_or_else(host_name);
    let own_namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let leader_election = args.leader_election.then(|| LeaderElection {
        lease_name: args.lease_name.clone(),
        lease_namespace: own_namespace.clone(),
        identity: identity.clone(),
        lease_seconds: controller::LEASE_SECONDS,
        renew_grace_seconds: controller::RENEW_GRACE_SECONDS,
    });
    let limits = crate::aws::RateLimits::parse(&args.rate_limits)
        .map_err(|e| anyhow::anyhow!("--rate-limits: {e}"))?;
    let shard = match args
        .shard_selector
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        None => None,
        Some(text) => Some(controller::claims::ShardSettings {
            selector: crate::shard::ShardSelector::parse(text)?,
            name: args
                .shard_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| args.lease_name.clone()),
            claim: controller::claims::claim_timing(args.shard_claim_seconds),
        }),
    };
    let settings = Settings {
        namespaces: args.watch_namespaces(),
        connector_namespaces: args.connector_namespaces(),
        leader_election,
        health_addr: Some(args.metrics_addr),
        shard,
        max_concurrent_syncs: usize::from(args.max_concurrent_syncs),
        instance: identity,
        home_namespace: own_namespace,
        request_admission_policy: args
            .request_admission_policy
            .clone()
            .filter(|n| !n.is_empty()),
        aws: controller::AwsSettings {
            base: crate::aws::AwsBase::from_env(args.aws_timeouts.timeouts()).await,
            limits,
            sync: crate::sync::SyncOptions::default(),
            grant_check: args.grant_check_interval,
            drift_share: f64::from(args.drift_check_share) / 100.0,
        },
    };
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(client, settings, stop).await?;
    let mut task = operator.task;
    tokio::select! {
        finished = &mut task => return finished?.map(|()| ExitCode::SUCCESS),
        () = shutdown::os_signal() => {
            tracing::info!("shutting down: finishing in-flight reconciliations");
            trigger.fire();
        }
    }
    match tokio::time::timeout(controller::SHUTDOWN_GRACE, task).await {
        Ok(finished) => finished?.map(|()| ExitCode::SUCCESS),
        Err(_) => {
            tracing::warn!("in-flight work did not finish in time; exiting anyway");
            Ok(ExitCode::SUCCESS)
        }
    }
}
