//! Several organizations behind one installation, each a connector of its own (one moto; each
//! organization lives in its own management account, which moto keeps apart): one that hangs
//! does not hold up the others while a sync slot is free, and no more than
//! `--max-concurrent-syncs` syncs run at once.

use std::time::Duration;

use aws_access_operator::api::AwsConnector;
use aws_access_operator::api::conditions::Conditions;
use aws_access_operator::controller::{self, shutdown};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::support::cluster::TestCluster;
use crate::support::moto::Moto;
use crate::support::operator::{aws, settings, wait_condition};

/// The management accounts of the organizations.
const ORGANIZATIONS: [&str; 3] = ["222200000001", "222200000002", "222200000003"];

fn seed_organizations(moto: &Moto) {
    for account in ORGANIZATIONS {
        let seed = moto.seed(&[
            "--management-account",
            account,
            "--accounts",
            "2",
            "--sso-users",
            "3",
            "--sso-groups",
            "1",
            "--iam-users",
            "2",
            "--permission-sets",
            "1",
            "--assigned-users",
            "1",
        ]);
        assert!(
            seed["accounts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a == account)),
            "the organization of {account}: {seed}"
        );
    }
    // What the operator calls is counted from here.
    moto.reset_calls();
}

/// The connector `name` for the organization of `account`, through a role assumed there.
fn connector(name: &str, account: &str) -> AwsConnector {
    serde_json::from_value(json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": name},
        "spec": {"region": "us-east-1",
                 "auth": {"roleArn": format!("arn:aws:iam::{account}:role/ops")}}
    }))
    .expect("connector")
}

async fn start(
    cluster: &TestCluster,
    moto: &Moto,
    syncs_at_once: usize,
) -> (shutdown::Trigger, controller::Operator) {
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let mut settings = settings(&cluster.namespace, "replica", aws(moto).await);
    settings.max_concurrent_syncs = syncs_at_once;
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(cluster.client.clone(), settings, stop)
        .await
        .expect("operator");
    (trigger, operator)
}

async fn synced(connectors: &Api<AwsConnector>, name: &str) -> bool {
    connectors
        .get(name)
        .await
        .ok()
        .and_then(|c| c.status)
        .is_some_and(|s| {
            s.conditions
                .condition("Synced")
                .is_some_and(|c| c.status == "True")
        })
}

/// Holds the organization `account`'s sync at its first Organizations call.
fn hold(moto: &Moto, account: &str) {
    moto.set_faults(json!({"hold_operations": ["ListRoots"], "hold_accounts": [account]}));
}

#[tokio::test]
async fn a_hanging_organization_holds_up_no_other_while_a_sync_slot_is_free() {
    let moto = Moto::start();
    seed_organizations(&moto);
    let cluster = TestCluster::start("orgs-free").await;
    let (trigger, operator) = start(&cluster, &moto, 2).await;
    let connectors: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    hold(&moto, ORGANIZATIONS[0]);
    for (name, account) in ["hangs", "second", "third"].into_iter().zip(ORGANIZATIONS) {
        connectors
            .create(&PostParams::default(), &connector(name, account))
            .await
            .expect("connector");
    }
    // The other two sync, one after the other in the slot the hanging one leaves free.
    wait_condition(&connectors, "second", "Synced", "True").await;
    wait_condition(&connectors, "third", "Synced", "True").await;
    assert!(
        !synced(&connectors, "hangs").await,
        "the held organization has not synced"
    );
    assert!(
        moto.calls().get("ListRoots").copied().unwrap_or(0) >= 3,
        "each organization listed its roots: {:?}",
        moto.calls()
    );
    let second = connectors.get("second").await.expect("second");
    let identity = second.status.and_then(|s| s.identity).expect("identity");
    assert_eq!(
        identity.account, ORGANIZATIONS[1],
        "each its own organization"
    );
    moto.set_faults(json!({}));
    wait_condition(&connectors, "hangs", "Synced", "True").await;

    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}

#[tokio::test]
async fn no_more_syncs_run_at_once_than_the_operator_allows() {
    let moto = Moto::start();
    seed_organizations(&moto);
    let cluster = TestCluster::start("orgs-bound").await;
    let (trigger, operator) = start(&cluster, &moto, 1).await;
    let connectors: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    hold(&moto, ORGANIZATIONS[0]);
    connectors
        .create(
            &PostParams::default(),
            &connector("hangs", ORGANIZATIONS[0]),
        )
        .await
        .expect("connector");
    crate::support::wait::until(
        "the first sync held",
        crate::support::operator::TIMEOUT,
        || async { (moto.calls().get("ListRoots").copied().unwrap_or(0) >= 1).then_some(()) },
    )
    .await;
    connectors
        .create(
            &PostParams::default(),
            &connector("waits", ORGANIZATIONS[1]),
        )
        .await
        .expect("connector");
    // The second connector authenticates, then waits for the one sync slot. Its own sync takes
    // well under a second once it starts.
    wait_condition(&connectors, "waits", "RoleArnValid", "True").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !synced(&connectors, "waits").await,
        "the second sync waits while the first holds the only slot"
    );
    assert_eq!(
        moto.calls().get("ListRoots").copied(),
        Some(1),
        "the second sync has not started: {:?}",
        moto.calls()
    );
    moto.set_faults(json!({}));
    wait_condition(&connectors, "hangs", "Synced", "True").await;
    wait_condition(&connectors, "waits", "Synced", "True").await;

    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}

/// The lane an operation's calls are counted in (as `scripts/bench.py` counts them), and the
/// operator's default rate for it (`src/aws/ratelimit.rs`).
fn lane(operation: &str) -> (&'static str, f64) {
    match operation {
        "GetCallerIdentity" | "AssumeRole" => ("sts", 10.0),
        "ListRoots" | "ListOrganizationalUnitsForParent" | "ListAccountsForParent" => {
            ("organizations", 4.0)
        }
        "GetAccountAuthorizationDetails"
        | "ListAccessKeys"
        | "GetAccessKeyLastUsed"
        | "GenerateCredentialReport"
        | "GetCredentialReport" => ("iam", 10.0),
        "ListUsers" | "ListGroups" | "ListGroupMemberships" => ("identitystore", 20.0),
        _ => ("ssoadmin", 20.0),
    }
}

/// A benchmark, not a test of behaviour (`make bench-organizations`): the release operator, as
/// a process at its default rate limits, syncs `BENCH_ORGS` (20) organizations at once, each in
/// a management account of its own, with `BENCH_SYNCS_AT_ONCE` (`--max-concurrent-syncs`,
/// default 4). Prints each organization's sync time against its busiest lane's bound, the
/// time until all are synced, and the operator's peak RSS. Then `BENCH_GRANTS_PER_ORG` (20)
/// AccessGrants on every organization, applied together (a writer per organization): each
/// organization's time until all of its grants are Granted against its own lane's bound, and the
/// peak RSS while granting. Asserts only that all synced and all were granted.
#[tokio::test]
#[ignore = "a benchmark: make bench-organizations"]
async fn twenty_organizations_sync_at_once() {
    let binary = crate::support::operator::bench_operator();
    let count: usize = crate::support::operator::bench_number("BENCH_ORGS", 20);
    let at_once = std::env::var("BENCH_SYNCS_AT_ONCE").unwrap_or_else(|_| "4".into());
    let per_org: usize = crate::support::operator::bench_number("BENCH_GRANTS_PER_ORG", 20);
    let moto = Moto::start();
    let accounts: Vec<String> = (1..=count).map(|i| format!("2222{i:08}")).collect();
    let seeded = std::time::Instant::now();
    let mut members = Vec::new();
    for account in &accounts {
        let seed = moto.seed(&[
            "--management-account",
            account,
            "--accounts",
            "20",
            "--sso-users",
            "100",
            "--sso-groups",
            "10",
            "--iam-users",
            "30",
            "--permission-sets",
            "10",
            "--assigned-users",
            "80",
        ]);
        members.push(crate::support::moto::member_accounts(&seed));
    }
    println!(
        "{count} organizations seeded in {:.0} s",
        seeded.elapsed().as_secs_f64()
    );
    moto.reset_calls();
    let cluster = TestCluster::start("orgs-bench").await;
    let config = cluster.kubeconfig_file();
    let mut operator = crate::support::operator::spawn_operator(
        std::path::Path::new(&binary),
        &moto,
        &config,
        &cluster.namespace,
        &["--log-format", "json", "--max-concurrent-syncs", &at_once],
    );
    let pid = operator.id();
    let connectors: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let started = std::time::Instant::now();
    for (i, account) in accounts.iter().enumerate() {
        connectors
            .create(
                &PostParams::default(),
                &connector(&format!("org-{i:02}"), account),
            )
            .await
            .expect("connector");
    }
    let mut peak = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    let durations = loop {
        peak = peak.max(crate::support::operator::rss(pid).0);
        let list = connectors
            .list(&kube::api::ListParams::default())
            .await
            .expect("list");
        let done: Vec<f64> = list
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .condition("Synced")
                        .is_some_and(|c| c.status == "True")
                })
            })
            .filter_map(|c| c.status.as_ref()?.last_sync.as_ref()?.duration_seconds)
            .collect();
        if done.len() == count || std::time::Instant::now() > deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let all_synced = started.elapsed();
    let sync_calls = moto.calls();
    moto.reset_calls();
    let granting = grant_on_every_organization(&cluster, &members, per_org, pid).await;
    let grant_calls = moto.calls();
    let _ = operator.kill();
    let _ = operator.wait();
    // Every organization is the same size: each one's calls are the total's share.
    let mut lanes: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for (operation, n) in sync_calls {
        let (name, rate) = lane(&operation);
        lanes.entry(name).or_insert((0.0, rate)).0 += n as f64 / count as f64;
    }
    let (busiest, bound) = lanes
        .iter()
        .map(|(name, (calls, rate))| (*name, calls / rate))
        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let slowest = durations.iter().copied().fold(0.0, f64::max);
    let mean = durations.iter().sum::<f64>() / durations.len().max(1) as f64;
    println!("calls per organization by lane (calls, rate): {lanes:?}");
    println!(
        "{} of {count} organizations synced, --max-concurrent-syncs {at_once}: all within {:.1} s; \
         each sync's own time: mean {mean:.1} s, slowest {slowest:.1} s, against its busiest lane's \
         bound ({busiest}) {bound:.1} s = {:.2} x; operator peak RSS {:.1} MiB",
        durations.len(),
        all_synced.as_secs_f64(),
        slowest / bound,
        peak as f64 / 1024.0
    );
    // The grants' lane is sso-admin's (20 calls a second per account); each organization's
    // calls are the total's share.
    let grant_bound = grant_calls
        .iter()
        .filter(|(operation, _)| lane(operation).0 == "ssoadmin")
        .map(|(_, n)| *n as f64)
        .sum::<f64>()
        / count as f64
        / lane("CreateAccountAssignment").1;
    let slowest_grants = granting.ready.iter().copied().fold(0.0, f64::max);
    let mean_grants = granting.ready.iter().sum::<f64>() / granting.ready.len().max(1) as f64;
    println!("calls while granting: {grant_calls:?}");
    println!(
        "{per_org} grants on each of {} organizations, applied together in {:.1} s: each \
         organization's grants all Granted after mean {mean_grants:.1} s, slowest \
         {slowest_grants:.1} s, against its own lane's bound {grant_bound:.2} s = {:.2} x \
         (slowest); operator peak RSS while granting {:.1} MiB",
        granting.ready.len(),
        granting.applied,
        slowest_grants / grant_bound,
        granting.peak as f64 / 1024.0
    );
    cluster.cleanup().await;
    assert_eq!(durations.len(), count, "every organization synced");
    assert_eq!(
        granting.ready.len(),
        count,
        "every organization's grants granted"
    );
}

/// What granting on every organization at once measured.
struct Granting {
    /// Seconds from the first create until all of its grants were Granted, per organization that
    /// got there.
    ready: Vec<f64>,
    /// Seconds the creates took.
    applied: f64,
    /// Peak RSS of the operator, KiB.
    peak: u64,
}

/// `per_org` grants on each organization (connector `org-NN`, whose member accounts are
/// `members[NN]`), for users the seed assigned nothing, created by one writer per organization
/// at once; waits until each organization's grants are Granted.
async fn grant_on_every_organization(
    cluster: &TestCluster,
    members: &[Vec<String>],
    per_org: usize,
    pid: u32,
) -> Granting {
    use aws_access_operator::api::AccessGrant;
    let grants: Api<AccessGrant> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let started = std::time::Instant::now();
    // One writer per organization, all at once: the API server takes the creates faster than
    // one writer would send them.
    let creates = members.iter().enumerate().map(|(org, accounts)| {
        let grants = grants.clone();
        async move {
            for n in 0..per_org {
                // Users 80 to 99 have no assignment in the seed: every grant is a new one.
                let manifest = crate::support::operator::grant(
                    &format!("org-{org:02}-{n:03}"),
                    &format!("org-{org:02}"),
                    json!({"kind": "SsoUser", "name": format!("user-{:02}@example.com", 80 + n % 20)}),
                    json!({"kind": "PermissionSet", "permissionSet": format!("PermissionSet{:02}", n % 10),
                           "accountId": accounts[(n / 20 + n) % accounts.len()]}),
                    json!({}),
                );
                grants
                    .create(&PostParams::default(), &manifest)
                    .await
                    .expect("create a grant");
            }
        }
    });
    futures::future::join_all(creates).await;
    let applied = started.elapsed().as_secs_f64();
    let mut ready: Vec<Option<f64>> = vec![None; members.len()];
    let mut peak = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    while ready.iter().any(Option::is_none) && std::time::Instant::now() < deadline {
        peak = peak.max(crate::support::operator::rss(pid).0);
        let list = grants
            .list(&kube::api::ListParams::default())
            .await
            .expect("list");
        let mut granted = vec![0; members.len()];
        for grant in &list.items {
            let is_granted = crate::support::operator::ready_reason(grant) == Some("Granted");
            let org = grant
                .spec
                .connector_ref
                .name
                .trim_start_matches("org-")
                .parse::<usize>();
            if let (true, Ok(org)) = (is_granted, org) {
                granted[org] += 1;
            }
        }
        let now = started.elapsed().as_secs_f64();
        for (org, done) in ready.iter_mut().enumerate() {
            if done.is_none() && granted[org] == per_org {
                *done = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Granting {
        ready: ready.into_iter().flatten().collect(),
        applied,
        peak,
    }
}
