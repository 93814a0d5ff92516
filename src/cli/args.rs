//! The command line's arguments and options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

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
    /// Check AwsConnector, AccessGrant and AccessRequest manifests offline; one JSON line per
    /// object.
    Validate(FilesArgs),
    /// Sync the inventory of one connector without Kubernetes.
    Sync(SyncArgs),
    /// Show what applying grants would change in AWS.
    Plan(PlanArgs),
    /// Apply grants once without Kubernetes.
    Apply(PlanArgs),
    /// Who can get into what, and why: a user's or group's paths into accounts, or every path
    /// into one account, with the AccessGrants that declare each.
    Access(AccessArgs),
    /// Approve an AccessRequest, as the user your kubeconfig authenticates (who needs the
    /// `approve` verb on it).
    Approve(ReviewArgs),
    /// Deny an AccessRequest (ends it if its access is held already).
    Deny(ReviewArgs),
    /// Revoke the access an approved AccessRequest holds, before its time.
    Revoke(ReviewArgs),
    /// Withdraw your own AccessRequest: its access, if held, ends at once.
    Withdraw(RequestRef),
    /// The AccessRequests waiting for a review that you may give now (the API server decides
    /// who may approve: a SelfSubjectAccessReview of each).
    Requests(PendingArgs),
}

#[derive(Debug, Args)]
pub struct PendingArgs {
    /// Look in this namespace; defaults to the kubeconfig context's.
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Look in every namespace you may list AccessRequests in.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// An AccessRequest in the cluster the kubeconfig names.
#[derive(Debug, Args)]
pub struct RequestRef {
    /// The AccessRequest's name.
    pub name: String,
    /// Its namespace; defaults to the kubeconfig context's.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub request: RequestRef,
    /// Why, kept with the review.
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    /// The AwsConnector and the AccessGrants that declare access (files or directories).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Answer from this inventory (from `sync -o`) instead of syncing: no AWS call at all.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// An Identity Center user (user name, id or email) or group (display name or id).
    #[arg(long, required_unless_present = "account", conflicts_with = "account")]
    pub principal: Option<String>,
    /// An account of the organization (id or name).
    #[arg(long)]
    pub account: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Requests per second per service when syncing, e.g. `iam=10,identitycenter=10`.
    #[arg(long, env = "RATE_LIMITS", default_value = "")]
    pub rate_limits: String,
    #[command(flatten)]
    pub aws_timeouts: AwsTimeoutArgs,
    /// Where the external ID comes from when the connector names a Secret.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_EXTERNAL_ID")]
    pub external_id_env: String,
    /// Where the first hop's external ID comes from when the connector names a Secret for it.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_GLOBAL_EXTERNAL_ID")]
    pub global_external_id_env: String,
    /// Where the member accounts' external ID comes from when the connector names a Secret.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_MEMBER_EXTERNAL_ID")]
    pub member_external_id_env: String,
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
    #[command(flatten)]
    pub aws_timeouts: AwsTimeoutArgs,
    /// How often, at most, in seconds, the page state is saved (0: after every page).
    #[arg(long, default_value_t = 30)]
    pub checkpoint_seconds: u64,
    /// Where the external ID comes from when the connector names a Secret (there is no
    /// Kubernetes here): this environment variable.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_EXTERNAL_ID")]
    pub external_id_env: String,
    /// Where the first hop's external ID comes from when the connector names a Secret for it
    /// (`globalExternalIdSecretRef`): this environment variable.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_GLOBAL_EXTERNAL_ID")]
    pub global_external_id_env: String,
    /// Where the member accounts' external ID comes from when the connector names a Secret
    /// for it (`sync.memberAccounts.externalIdSecretRef`): this environment variable.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_MEMBER_EXTERNAL_ID")]
    pub member_external_id_env: String,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The AwsConnector and the AccessGrants (files or directories).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Treat grants that the ledger in --state-dir knows but these files no longer declare as
    /// deleted: what was created for them is revoked. Without it, their access is kept and
    /// listed.
    #[arg(long)]
    pub prune: bool,
    /// Plan against this inventory (from `sync -o`) instead of syncing: no AWS call at all.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// Sync the whole organization first, to report the access no grant declares. Without it
    /// (or --inventory), only what the grants name is looked up in AWS.
    #[arg(long, conflicts_with = "inventory")]
    pub unmanaged: bool,
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
    #[command(flatten)]
    pub aws_timeouts: AwsTimeoutArgs,
    /// Where the external ID comes from when the connector names a Secret.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_EXTERNAL_ID")]
    pub external_id_env: String,
    /// Where the first hop's external ID comes from when the connector names a Secret for it
    /// (`globalExternalIdSecretRef`): this environment variable.
    #[arg(long, default_value = "AWS_ACCESS_OPERATOR_GLOBAL_EXTERNAL_ID")]
    pub global_external_id_env: String,
}

/// How long AWS may take to answer; every command that calls AWS takes these.
#[derive(Clone, Debug, Args)]
pub struct AwsTimeoutArgs {
    /// How long one attempt of one AWS call may take before it fails and is retried (connecting
    /// takes at most 5 s of it). A slow endpoint must answer within it.
    #[arg(long, env = "AWS_ATTEMPT_TIMEOUT", default_value = "20s", value_parser = parse_positive_duration)]
    pub aws_attempt_timeout: std::time::Duration,
    /// How long one AWS call may take, its attempts and the waits between them together: an
    /// endpoint that never answers fails the call (and the sync or grant waiting on it) within
    /// this. Waiting for the rate limit is not counted.
    #[arg(long, env = "AWS_CALL_TIMEOUT", default_value = "90s", value_parser = parse_positive_duration)]
    pub aws_call_timeout: std::time::Duration,
}

impl AwsTimeoutArgs {
    pub fn timeouts(&self) -> crate::aws::Timeouts {
        crate::aws::Timeouts {
            attempt: self.aws_attempt_timeout,
            call: self.aws_call_timeout,
        }
    }
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
    /// Namespaces where AwsConnectors are served (comma-separated): only there does the
    /// operator read Secrets. A connector elsewhere is refused (Ready False,
    /// `NamespaceNotAllowed`). Every namespace when empty.
    #[arg(long, env = "CONNECTOR_NAMESPACES", value_delimiter = ',')]
    pub connector_namespaces: Vec<String>,
    /// The operator's own namespace: where the leader Lease, the ownership ledger and the
    /// connectors' inventory ConfigMaps live; defaults to the pod's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity (the pod name); defaults to the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Requests per second per AWS service, e.g. `iam=10,identitycenter=10`.
    #[arg(long, env = "RATE_LIMITS", default_value = "")]
    pub rate_limits: String,
    #[command(flatten)]
    pub aws_timeouts: AwsTimeoutArgs,
    /// How often granted access is checked in AWS for drift, e.g. `5m`.
    #[arg(long, env = "GRANT_CHECK_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub grant_check_interval: std::time::Duration,
    /// The most, in percent of each rate-limit lane, that drift checks may use: with many
    /// grants they come less often than --grant-check-interval instead.
    #[arg(long, env = "DRIFT_CHECK_SHARE", default_value_t = 25, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub drift_check_share: u8,
    /// The ValidatingAdmissionPolicy (and binding, of the same name) that has the API server
    /// vouch for AccessRequests' requesters and reviewers. Approvals are counted only while
    /// both exist; without this flag, none is.
    #[arg(long, env = "REQUEST_ADMISSION_POLICY")]
    pub request_admission_policy: Option<String>,
    /// How many connectors may sync at once; the others wait their turn. A sync's pages and
    /// the inventory it builds are most of the operator's memory while it runs.
    #[arg(long, env = "MAX_CONCURRENT_SYNCS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_syncs: u16,
    /// Serve only the AwsConnectors this label selector picks, and what names them
    /// (AccessGrants, AccessRequests, PermissionSets, users and groups): one shard of several
    /// installations side by side, e.g. `awsaccess.io/shard=blue`. Every connector when unset.
    #[arg(long, env = "SHARD_SELECTOR")]
    pub shard_selector: Option<String>,
    /// The shard's name, which holds its claims on its connectors: the same for every replica
    /// of one installation, different between shards. Defaults to --lease-name.
    #[arg(long, env = "SHARD_NAME")]
    pub shard_name: Option<String>,
    /// How long a shard's claim on a connector holds without renewal (it is renewed about every
    /// fifth of that): a connector whose shard vanished without handing it over moves after it.
    #[arg(long, env = "SHARD_CLAIM_SECONDS", default_value_t = crate::controller::claims::CLAIM_SECONDS, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub shard_claim_seconds: u64,
}

impl RunArgs {
    /// The namespaces to watch; empty for all. The chart sets `WATCH_NAMESPACES=""` when it
    /// watches every namespace, which clap reads as one empty name: empty names are dropped,
    /// never taken for a namespace.
    pub fn watch_namespaces(&self) -> Vec<String> {
        namespace_names(&self.namespaces)
    }

    /// The namespaces where connectors are served; empty for all.
    pub fn connector_namespaces(&self) -> Vec<String> {
        namespace_names(&self.connector_namespaces)
    }
}

fn namespace_names(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_positive_duration(text: &str) -> Result<std::time::Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("must be more than 0s".into()),
        d => Ok(d),
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::api::duration::parse(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 90s, 5m or 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let mut all = vec!["aws-access-operator", "run"];
        all.extend(args);
        match Cli::try_parse_from(all).expect("arguments").command {
            Some(Command::Run(run)) => run,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn an_empty_namespace_list_means_every_namespace() {
        let every = run_args(&["--namespaces", "", "--connector-namespaces", ""]);
        assert_eq!(
            every.namespaces,
            [""],
            "what clap reads from WATCH_NAMESPACES=\"\""
        );
        assert!(every.watch_namespaces().is_empty());
        assert!(every.connector_namespaces().is_empty());
        let some = run_args(&[
            "--namespaces",
            "team-a,, team-b ",
            "--connector-namespaces",
            "platform",
        ]);
        assert_eq!(some.watch_namespaces(), ["team-a", "team-b"]);
        assert_eq!(some.connector_namespaces(), ["platform"]);
    }
}
