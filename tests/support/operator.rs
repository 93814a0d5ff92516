//! Running the real operator in-process for end-to-end tests, and waiting on what it writes.

use std::time::Duration;

use aws_access_operator::api::conditions::Conditions;
use aws_access_operator::api::{AccessGrant, AwsConnector};
use aws_access_operator::aws::{AwsBase, RateLimits};
use aws_access_operator::controller::admission::RECORD_NAME;
use aws_access_operator::controller::{self, AwsSettings, LeaderElection, Settings, shutdown};
use aws_access_operator::request::trust::Enforcement;
use aws_access_operator::sync::SyncOptions;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use serde_json::json;

use super::moto::Moto;
use super::wait;

/// How long a test waits for the operator to reach a state: generous, for a loaded 2-core
/// machine that also runs the API server, etcd and moto; a wait ends as soon as the state is seen.
pub const TIMEOUT: Duration = Duration::from_secs(60);
pub const VALID_ID: &str = "a-valid-external-id-0123456789abcdef";

pub fn settings(namespace: &str, identity: &str, aws: AwsSettings) -> Settings {
    Settings {
        namespaces: vec![namespace.to_string()],
        connector_namespaces: Vec::new(),
        leader_election: Some(LeaderElection {
            lease_name: "aws-access-operator".into(),
            lease_namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_seconds: 4,
            renew_grace_seconds: 2,
        }),
        health_addr: None,
        instance: identity.to_string(),
        home_namespace: namespace.to_string(),
        request_admission_policy: None,
        shard: None,
        max_concurrent_syncs: 4,
        aws,
    }
}

/// The operator's AWS settings for a moto server: its endpoint, small pages so that every
/// list pages, and no client-side rate limit worth the name.
pub async fn aws(moto: &Moto) -> AwsSettings {
    AwsSettings {
        base: AwsBase::from_config(moto.sdk_config().await),
        limits: RateLimits::parse("sts=1000,iam=1000,organizations=1000,identitycenter=1000")
            .expect("limits"),
        sync: SyncOptions {
            page_size: 3,
            ..SyncOptions::default()
        },
        grant_check: Duration::from_secs(1),
        drift_share: 0.25,
    }
}

pub fn connector(name: &str, auth: serde_json::Value) -> AwsConnector {
    serde_json::from_value(json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": name},
        "spec": {"region": "us-east-1", "auth": auth}
    }))
    .expect("connector")
}

/// Creates the AwsConnector `org` (the pod's own credentials, us-east-1) in `namespace`;
/// returns the API to wait on it with.
pub async fn create_org_connector(client: &Client, namespace: &str) -> Api<AwsConnector> {
    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), namespace);
    connectors
        .create(
            &kube::api::PostParams::default(),
            &connector("org", json!({})),
        )
        .await
        .expect("create the connector");
    connectors
}

pub fn secret(name: &str, value: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "data": {"externalId": base64(value)}
    }))
    .expect("secret")
}

pub fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub async fn condition(
    api: &Api<AwsConnector>,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let object = api.get_opt(name).await.ok()??;
    let status = object.status?;
    if status.observed_generation != object.metadata.generation {
        return None;
    }
    let c = status.conditions.condition(type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub async fn wait_condition(
    api: &Api<AwsConnector>,
    name: &str,
    type_: &str,
    status: &str,
) -> (String, String) {
    wait::until(&format!("{name} {type_}={status}"), TIMEOUT, || async {
        condition(api, name, type_)
            .await
            .filter(|(s, _, _)| s == status)
            .map(|(_, reason, message)| (reason, message))
    })
    .await
}

/// The operator's binary `binary` as a process (`run`), watching `namespace` of the cluster
/// `kubeconfig` names and reaching AWS at `moto`, with `args` added; its output is dropped.
pub fn spawn_operator(
    binary: &std::path::Path,
    moto: &Moto,
    kubeconfig: &std::path::Path,
    namespace: &str,
    args: &[&str],
) -> std::process::Child {
    let mut command = std::process::Command::new(binary);
    command
        .args([
            "run",
            "--namespaces",
            namespace,
            "--lease-namespace",
            namespace,
        ])
        .args(["--identity", "pod-0", "--metrics-addr", "127.0.0.1:0"])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .env_remove("WATCH_NAMESPACES")
        .env_remove("GRANT_CHECK_INTERVAL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for variable in super::moto::AMBIENT_AWS_VARIABLES {
        command.env_remove(variable);
    }
    for (key, value) in moto.env() {
        command.env(key, value);
    }
    command.spawn().expect("start the operator")
}

pub async fn start_operator(
    client: &Client,
    namespace: &str,
    identity: &str,
    moto: &Moto,
) -> (shutdown::Trigger, controller::Operator) {
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(
        client.clone(),
        settings(namespace, identity, aws(moto).await),
        stop,
    )
    .await
    .expect("operator starts");
    (trigger, operator)
}

/// Waits until a grant's `Ready` condition has `reason` (for its current generation); returns
/// the message.
pub async fn wait_grant(api: &Api<AccessGrant>, name: &str, reason: &str) -> String {
    wait::until(
        &format!("grant {name} Ready reason {reason}"),
        TIMEOUT,
        || async {
            let grant = api.get_opt(name).await.ok()??;
            let status = grant.status?;
            if status.observed_generation != grant.metadata.generation {
                return None;
            }
            let ready = status.conditions.condition("Ready")?;
            (ready.reason == reason).then(|| ready.message.clone())
        },
    )
    .await
}

/// An AccessGrant manifest.
pub fn grant(
    name: &str,
    connector: &str,
    principal: serde_json::Value,
    target: serde_json::Value,
    extra: serde_json::Value,
) -> AccessGrant {
    let mut spec =
        json!({"connectorRef": {"name": connector}, "principal": principal, "target": target});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessGrant",
        "metadata": {"name": name}, "spec": spec}),
    )
    .expect("grant")
}

/// The start of enforcement the operator keeps for the admission policy `policy` in its
/// namespace `home`, once it has one that is not `previous`: requests created after it are
/// trusted. Returns once the second it names is over (a request created within it is not).
pub async fn enforced(
    client: &Client,
    home: &str,
    policy: &str,
    previous: Option<&Enforcement>,
) -> Enforcement {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), home);
    let enforcement = wait::until(
        &format!("the operator to confirm {policy} enforced"),
        TIMEOUT,
        || async {
            let kept = config_maps.get_opt(RECORD_NAME).await.ok()??;
            let text = kept.data?.get("enforcement")?.clone();
            let enforcement: Enforcement = serde_json::from_str(&text).expect("enforcement");
            (enforcement.name == policy && Some(&enforcement) != previous).then_some(enforcement)
        },
    )
    .await;
    let over = enforcement.since().expect("since") + jiff::SignedDuration::from_millis(1100);
    let left = jiff::Timestamp::now().duration_until(over);
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs()).await;
    }
    enforcement
}

/// Asks the operator for a sync of the connector `name` now (the `awsaccess.io/sync-now`
/// annotation, set to `value`).
pub async fn request_sync(connectors: &Api<AwsConnector>, name: &str, value: &str) {
    connectors
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"awsaccess.io/sync-now": value}}}),
            ),
        )
        .await
        .expect("annotate");
}

/// The reason of a grant's Ready condition, once it has one.
pub fn ready_reason(grant: &AccessGrant) -> Option<&str> {
    grant
        .status
        .as_ref()
        .and_then(|s| s.conditions.condition("Ready"))
        .map(|c| c.reason.as_str())
}

/// How many of the grants in `grants`' namespace are Granted, and how many there are.
pub async fn granted(grants: &Api<AccessGrant>) -> Option<(usize, usize)> {
    let list = grants.list(&kube::api::ListParams::default()).await.ok()?;
    let granted = list
        .items
        .iter()
        .filter(|g| ready_reason(g) == Some("Granted"))
        .count();
    Some((granted, list.items.len()))
}

/// A field of the process `pid`'s `/proc/<pid>/status` in KiB (`VmRSS:`, `RssAnon:`, ...): 0
/// when it cannot be read.
pub fn status_kib(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user and system) the process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The processes named `name` (their `comm`) on this machine.
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

/// The machine's CPU time so far, in seconds summed over its cores: (busy, all).
pub fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let times: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let all: f64 = times.iter().sum();
    // idle and iowait are the 4th and 5th.
    let idle = times.get(3).copied().unwrap_or(0.0) + times.get(4).copied().unwrap_or(0.0);
    ((all - idle) / 100.0, all / 100.0)
}

/// Resident memory of the process `pid` in KiB: (total, anonymous, file-backed).
pub fn rss(pid: u32) -> (u64, u64, u64) {
    (
        status_kib(pid, "VmRSS:"),
        status_kib(pid, "RssAnon:"),
        status_kib(pid, "RssFile:"),
    )
}

/// The operator binary a benchmark runs: `BENCH_OPERATOR`, by default the release build.
pub fn bench_operator() -> String {
    std::env::var("BENCH_OPERATOR").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/release/aws-access-operator"
        )
        .to_string()
    })
}

/// A benchmark's numeric setting from the environment variable `name`, or `default`.
pub fn bench_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}
