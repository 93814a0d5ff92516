//! The command line: one binary, the operator and its offline companions.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::controller::{self, LeaderElection, Settings, shutdown};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "aws-access-operator",
    version,
    about = "Manages access to AWS (IAM Identity Center and IAM) from Kubernetes",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run`, which is also what runs without a subcommand.
    #[command(flatten)]
    pub run: RunArgs,
    /// Log format (logs go to stderr).
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "plain",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator (the default).
    Run(RunArgs),
    /// Print every CustomResourceDefinition as YAML.
    Crd(CrdArgs),
    /// Check AwsConnector and AccessGrant manifests offline; one JSON line per object.
    Validate(FilesArgs),
    /// Sync the inventory of one connector without Kubernetes.
    Sync(SyncArgs),
    /// Show what applying grants would change in AWS.
    Plan(PlanArgs),
    /// Apply grants once without Kubernetes.
    Apply(PlanArgs),
}

#[derive(Debug, Args)]
pub struct CrdArgs {
    /// Write one `<name>.yaml` per CRD into this directory instead of printing them.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// Manifest files or directories (every *.yaml / *.yml inside, multi-document).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The AwsConnector manifest (a file or directory holding exactly one).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Write the inventory JSON here instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Keep the page state and cache here, so that an interrupted sync resumes and the next
    /// one reuses the cache.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Items per page asked of list calls (default: each call's maximum).
    #[arg(long)]
    pub page_size: Option<i32>,
    /// Requests per second per service, e.g. `iam=10,identitycenter=10`.
    #[arg(long, env = "RATE_LIMITS", default_value = "")]
    pub rate_limits: String,
    /// How often, in seconds, the page state is saved during a phase (0: after every page).
    #[arg(long, default_value_t = 5)]
    pub checkpoint_seconds: u64,
    /// Where the external ID comes from when the connector names a Secret (there is no
    /// Kubernetes here): this environment variable.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_EXTERNAL_ID")]
    pub external_id_env: String,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The AwsConnector and the AccessGrants (files or directories).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Plan against this inventory (from `sync -o`) instead of syncing: no AWS call at all.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// Keep sync state and cache here between runs (see `sync`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// `table` for people, `json` for pipelines.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Items per page asked of list calls when syncing.
    #[arg(long)]
    pub page_size: Option<i32>,
    /// Requests per second per service, e.g. `iam=10,identitycenter=10`.
    #[arg(long, env = "RATE_LIMITS", default_value = "")]
    pub rate_limits: String,
    /// Where the external ID comes from when the connector names a Secret.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_EXTERNAL_ID")]
    pub external_id_env: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Namespaces to watch (comma-separated); all namespaces when empty.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so that only one replica writes.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "aws-access-operator")]
    pub lease_name: String,
    /// The operator's own namespace: where the leader Lease and the ownership ledger live;
    /// defaults to the pod's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity (the pod name); defaults to the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Requests per second per AWS service, e.g. `iam=10,identitycenter=10`.
    #[arg(long, env = "RATE_LIMITS", default_value = "")]
    pub rate_limits: String,
    /// How often granted access is checked in AWS for drift, e.g. `5m`.
    #[arg(long, env = "GRANT_CHECK_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub grant_check_interval: std::time::Duration,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::api::duration::parse(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 90s, 5m or 1h"))
}

/// Runs the parsed command line and returns the process' exit code.
pub async fn main(cli: Cli) -> ExitCode {
    crate::telemetry::init(cli.log_format, "info");
    let result = match cli.command {
        None => run(cli.run).await,
        Some(Command::Run(args)) => run(args).await,
        Some(Command::Crd(args)) => print_crds(args.output_dir.as_deref()),
        Some(Command::Validate(files)) => validate(&files.files),
        Some(Command::Sync(args)) => crate::sync_command::run(args).await,
        Some(Command::Plan(args)) => crate::plan_command::run(args, false).await,
        Some(Command::Apply(args)) => crate::plan_command::run(args, true).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
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
        eprintln!("{source}: skipped (not an awsaccess.io/v1alpha1 AwsConnector or AccessGrant)");
    }
    let mut stdout = std::io::stdout().lock();
    let mut all_valid = true;
    for document in &loaded {
        let report = crate::validate::check(document);
        all_valid &= report.valid;
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    }
    if loaded.is_empty() {
        eprintln!("no AwsConnector or AccessGrant found");
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
    let settings = Settings {
        namespaces: args.namespaces.clone(),
        leader_election,
        health_addr: Some(args.metrics_addr),
        instance: identity,
        ledger_namespace: own_namespace,
        aws: controller::AwsSettings {
            base: crate::aws::AwsBase::from_env().await,
            limits,
            sync: crate::sync::SyncOptions::default(),
            grant_check: args.grant_check_interval,
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
