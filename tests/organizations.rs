//! Several organizations behind one installation, each a connector of its own (one moto; each
//! organization lives in its own management account, which moto keeps apart): one that hangs
//! does not hold up the others while a sync slot is free, and no more than
//! `--max-concurrent-syncs` syncs run at once.

use std::time::Duration;

use futures::StreamExt;

use aws_access_operator::api::AwsConnector;
use aws_access_operator::api::conditions::Conditions;
use aws_access_operator::controller::{self, shutdown};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::support::cluster::TestCluster;
use crate::support::moto::Moto;
use crate::support::operator::{TIMEOUT, aws, settings, wait_condition};

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

/// Applies a connector for each (name, management account).
async fn apply_connectors<N: AsRef<str>>(
    connectors: &Api<AwsConnector>,
    organizations: impl IntoIterator<Item = (N, &str)>,
) {
    for (name, account) in organizations {
        connectors
            .create(&PostParams::default(), &connector(name.as_ref(), account))
            .await
            .expect("connector");
    }
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
    apply_connectors(
        &connectors,
        ["hangs", "second", "third"].into_iter().zip(ORGANIZATIONS),
    )
    .await;
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
    crate::support::wait::until("the first sync held", TIMEOUT, || async {
        (moto.calls().get("ListRoots").copied().unwrap_or(0) >= 1).then_some(())
    })
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

/// Grants on `connector` (`{prefix}-NNN`), `count` of them, each a different access: user
/// `n % users`, permission set `n / users % sets`, on the accounts in turn.
async fn grant_many(
    grants: &Api<aws_access_operator::api::AccessGrant>,
    connector: &str,
    prefix: &str,
    count: usize,
    (users, sets): (usize, usize),
    accounts: &[String],
) -> Vec<String> {
    let mut names = Vec::new();
    for n in 0..count {
        let name = format!("{prefix}-{n:03}");
        let manifest = crate::support::operator::grant(
            &name,
            connector,
            json!({"kind": "SsoUser", "name": format!("user-{:02}@example.com", n % users)}),
            json!({"kind": "PermissionSet", "permissionSet": format!("PermissionSet{:02}", n / users % sets),
                   "accountId": accounts[n / (users * sets) % accounts.len()]}),
            json!({}),
        );
        grants
            .create(&PostParams::default(), &manifest)
            .await
            .expect("create a grant");
        names.push(name);
    }
    names
}

/// How many of `names` are Granted.
async fn granted(grants: &Api<aws_access_operator::api::AccessGrant>, names: &[String]) -> usize {
    let list = grants
        .list(&kube::api::ListParams::default())
        .await
        .expect("list grants");
    list.items
        .iter()
        .filter(|g| {
            names
                .iter()
                .any(|n| Some(n.as_str()) == g.metadata.name.as_deref())
        })
        .filter(|g| crate::support::operator::ready_reason(g) == Some("Granted"))
        .count()
}

/// An organization whose AWS stops answering while it has many more grants to make than the
/// operator reconciles at once: its grants take only their connector's share of the
/// reconciliations, and another organization's grants are made meanwhile.
#[tokio::test]
async fn a_hanging_organization_holds_up_no_other_organizations_grants() {
    let moto = Moto::start();
    let (held, healthy) = (ORGANIZATIONS[0], ORGANIZATIONS[1]);
    let seed = |account: &str, users: &str, sets: &str| {
        crate::support::moto::member_accounts(&moto.seed(&[
            "--management-account",
            account,
            "--accounts",
            "2",
            "--sso-users",
            users,
            "--sso-groups",
            "1",
            "--iam-users",
            "1",
            "--permission-sets",
            sets,
            "--assigned-users",
            "0",
        ]))
    };
    let held_accounts = seed(held, "15", "5");
    let healthy_accounts = seed(healthy, "3", "2");
    let cluster = TestCluster::start("orgs-grants").await;
    let (trigger, operator) = start(&cluster, &moto, 4).await;
    let connectors: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    apply_connectors(&connectors, [("held", held), ("healthy", healthy)]).await;
    wait_condition(&connectors, "held", "Synced", "True").await;
    wait_condition(&connectors, "healthy", "Synced", "True").await;
    let grants: Api<aws_access_operator::api::AccessGrant> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);

    // The held organization's assignments wait; it has 150 to make, more than the operator
    // reconciles at once (`controller::grant::CONCURRENCY`).
    moto.reset_calls();
    moto.set_faults(
        json!({"hold_operations": ["CreateAccountAssignment"], "hold_accounts": [held]}),
    );
    let waiting = grant_many(&grants, "held", "held", 150, (15, 5), &held_accounts).await;
    crate::support::wait::until("the held organization's creates", TIMEOUT, || async {
        (moto
            .calls()
            .get("CreateAccountAssignment")
            .copied()
            .unwrap_or(0)
            >= 5)
            .then_some(())
    })
    .await;

    // The other organization's grants are made while it is held (moto lets a held request go
    // after a minute: well before, here).
    let made = grant_many(&grants, "healthy", "healthy", 6, (3, 2), &healthy_accounts).await;
    crate::support::wait::until(
        "the healthy organization's grants Granted",
        Duration::from_secs(40),
        || async { (granted(&grants, &made).await == made.len()).then_some(()) },
    )
    .await;
    assert_eq!(
        granted(&grants, &waiting).await,
        0,
        "the held organization is still held"
    );

    moto.set_faults(json!({}));
    crate::support::wait::until(
        "the held organization's grants Granted",
        TIMEOUT * 3,
        || async { (granted(&grants, &waiting).await == waiting.len()).then_some(()) },
    )
    .await;

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
/// a process at its default rate limits, serves `BENCH_ORGS` (20) organizations, each in a
/// management account of its own, syncing `BENCH_SYNCS_AT_ONCE` (`--max-concurrent-syncs`,
/// default 4) at once. Three phases, each printed with the operator's peak RSS, the CPU time
/// of the operator, the emulator, the API server and etcd (when on this machine) and the
/// benchmark itself, and how busy the machine's cores were:
///
/// 1. **Syncing.** The connectors are applied: each sync's own time against its busiest lane's
///    bound, and the time until all are synced.
/// 2. **Syncing and granting at once.** Every connector is asked to sync again
///    (`awsaccess.io/sync-now`) while `BENCH_GRANTS_PER_ORG` (20) AccessGrants are applied on
///    every organization (a writer per organization): the syncs' times as in 1, and each
///    organization's time until all of its grants are Granted against its own lane's bound.
/// 3. **Granting.** As many grants again on every organization, with no sync running: as in 2.
///
/// Asserts only that all synced and all were granted.
#[tokio::test]
#[ignore = "a benchmark: make bench-organizations"]
async fn twenty_organizations_sync_and_grant_at_once() {
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
    let grants: Api<aws_access_operator::api::AccessGrant> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    // The grants are followed by a watch, not by listing them again and again: the benchmark
    // should load the API server as little as it can.
    let (seen, writer) = kube::runtime::reflector::store();
    let follow = tokio::spawn(
        kube::runtime::reflector(
            writer,
            kube::runtime::watcher(grants.clone(), Default::default()),
        )
        .for_each(|_| futures::future::ready(())),
    );
    let watch = Watch {
        connectors: &connectors,
        grants: &seen,
        count,
        per_org,
        pids: (pid, moto.pid()),
    };

    // 1. Syncing.
    let first = Phase::start(&watch, None);
    apply_connectors(
        &connectors,
        accounts
            .iter()
            .enumerate()
            .map(|(i, account)| (format!("org-{i:02}"), account.as_str())),
    )
    .await;
    let syncing = watch.until_done(first).await;
    let sync_calls = moto.calls();
    moto.reset_calls();

    // 2. Syncing and granting at once.
    let before = watch.sync_starts().await;
    let second = Phase::start(&watch, Some((0, before)));
    let again = json!({"metadata": {"annotations": {"awsaccess.io/sync-now": "bench"}}});
    for i in 0..count {
        connectors
            .patch(
                &format!("org-{i:02}"),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&again),
            )
            .await
            .expect("sync now");
    }
    let (applied_together, together) = tokio::join!(
        create_grants(&grants, &members, per_org, 0),
        watch.until_done(second),
    );
    moto.reset_calls();

    // 3. Granting.
    let third = Phase::start(&watch, Some((1, Vec::new())));
    let (applied_alone, alone) = tokio::join!(
        create_grants(&grants, &members, per_org, 1),
        watch.until_done(third),
    );
    let grant_calls = moto.calls();
    let _ = operator.kill();
    let _ = operator.wait();
    follow.abort();

    // Every organization is the same size: each one's calls are the total's share.
    let mut lanes: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for (operation, n) in &sync_calls {
        let (name, rate) = lane(operation);
        lanes.entry(name).or_insert((0.0, rate)).0 += *n as f64 / count as f64;
    }
    let (busiest, bound) = lanes
        .iter()
        .map(|(name, (calls, rate))| (*name, calls / rate))
        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    // The grants' lane is sso-admin's (20 calls a second per account).
    let grant_bound = grant_calls
        .iter()
        .filter(|(operation, _)| lane(operation).0 == "ssoadmin")
        .map(|(_, n)| *n as f64)
        .sum::<f64>()
        / count as f64
        / lane("CreateAccountAssignment").1;
    println!("sync calls per organization by lane (calls, rate): {lanes:?}");
    println!("calls while granting alone: {grant_calls:?}");
    println!("--max-concurrent-syncs {at_once}, {per_org} grants per organization and round");
    for (title, phase, applied) in [
        ("1. syncing", &syncing, None),
        (
            "2. syncing and granting at once",
            &together,
            Some(applied_together),
        ),
        ("3. granting", &alone, Some(applied_alone)),
    ] {
        println!("{title}:");
        phase.print(count, (busiest, bound), grant_bound, applied);
    }
    cluster.cleanup().await;
    for phase in [&syncing, &together] {
        assert_eq!(phase.sync_seconds.len(), count, "every organization synced");
    }
    for phase in [&together, &alone] {
        assert_eq!(
            phase.granted.len(),
            count,
            "every organization's grants granted"
        );
    }
}

/// `per_org` grants of round `round` on each organization (connector `org-NN`, whose member
/// accounts are `members[NN]`), for users the seed assigned nothing, created by one writer per
/// organization at once. Each round's accesses differ from the others' (the account moves on).
/// Returns the seconds the creates took.
async fn create_grants(
    grants: &Api<aws_access_operator::api::AccessGrant>,
    members: &[Vec<String>],
    per_org: usize,
    round: usize,
) -> f64 {
    let started = std::time::Instant::now();
    // One writer per organization, all at once: the API server takes the creates faster than
    // one writer would send them.
    let creates = members.iter().enumerate().map(|(org, accounts)| async move {
        for n in 0..per_org {
            // Users 80 to 99 have no assignment in the seed: every grant is a new one.
            let manifest = crate::support::operator::grant(
                &format!("org-{org:02}-r{round}-{n:03}"),
                &format!("org-{org:02}"),
                json!({"kind": "SsoUser", "name": format!("user-{:02}@example.com", 80 + n % 20)}),
                json!({"kind": "PermissionSet", "permissionSet": format!("PermissionSet{:02}", n % 10),
                       "accountId": accounts[(n / 20 + n + 5 * round) % accounts.len()]}),
                json!({}),
            );
            grants
                .create(&PostParams::default(), &manifest)
                .await
                .expect("create a grant");
        }
    });
    futures::future::join_all(creates).await;
    started.elapsed().as_secs_f64()
}

/// What the benchmark follows: the connectors (listed: 20), the grants (watched), the
/// operator's and the emulator's processes.
struct Watch<'a> {
    connectors: &'a Api<AwsConnector>,
    grants: &'a kube::runtime::reflector::Store<aws_access_operator::api::AccessGrant>,
    count: usize,
    per_org: usize,
    pids: (u32, u32),
}

/// One phase: when it started, what it waits for, what it saw.
struct Phase {
    started: std::time::Instant,
    /// The round of grants it waits for, and each connector's last sync start before it (the
    /// phase waits for a sync that started later); `None`: syncs only, the first ones.
    grants: Option<(usize, Vec<Option<String>>)>,
    /// CPU seconds at the start: the operator's, the emulator's, the API server's and etcd's
    /// (when they run on this machine), this benchmark's, and the machine's (busy, all).
    cpu: Cpu,
    /// Each synced connector's own sync time (`status.lastSync`), seconds.
    sync_seconds: Vec<f64>,
    /// Seconds from the start until every connector's sync was done.
    all_synced: f64,
    /// Seconds from the start until each organization's grants were all Granted.
    granted: Vec<f64>,
    /// Peak RSS of the operator, KiB.
    peak: u64,
    /// CPU seconds used in the phase, as `cpu`.
    used: Cpu,
}

/// CPU seconds, by process (see `Phase::cpu`).
#[derive(Clone, Copy, Default)]
struct Cpu {
    operator: f64,
    emulator: f64,
    control_plane: f64,
    benchmark: f64,
    machine: (f64, f64),
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;

    fn sub(self, before: Cpu) -> Cpu {
        Cpu {
            operator: self.operator - before.operator,
            emulator: self.emulator - before.emulator,
            control_plane: self.control_plane - before.control_plane,
            benchmark: self.benchmark - before.benchmark,
            machine: (
                self.machine.0 - before.machine.0,
                self.machine.1 - before.machine.1,
            ),
        }
    }
}

fn org_of(name: &str) -> Option<usize> {
    name.strip_prefix("org-")?.get(..2)?.parse().ok()
}

impl Phase {
    fn start(watch: &Watch<'_>, grants: Option<(usize, Vec<Option<String>>)>) -> Self {
        Phase {
            started: std::time::Instant::now(),
            grants,
            cpu: watch.cpu(),
            sync_seconds: Vec::new(),
            all_synced: 0.0,
            granted: Vec::new(),
            peak: 0,
            used: Default::default(),
        }
    }

    fn print(
        &self,
        count: usize,
        (busiest, bound): (&str, f64),
        grant_bound: f64,
        applied: Option<f64>,
    ) {
        let stats = |v: &[f64]| {
            let max = v.iter().copied().fold(0.0, f64::max);
            (v.iter().sum::<f64>() / v.len().max(1) as f64, max)
        };
        if !self.sync_seconds.is_empty() {
            let (mean, slowest) = stats(&self.sync_seconds);
            println!(
                "   syncs: {} of {count} done within {:.1} s; each sync's own time: mean {mean:.1} s, \
                 slowest {slowest:.1} s, against its busiest lane's bound ({busiest}) {bound:.1} s = \
                 {:.2} x",
                self.sync_seconds.len(),
                self.all_synced,
                slowest / bound
            );
        }
        if let Some(applied) = applied {
            let (mean, slowest) = stats(&self.granted);
            println!(
                "   grants: applied in {applied:.1} s; {} organizations' grants all Granted after mean \
                 {mean:.1} s, slowest {slowest:.1} s, against its own lane's bound {grant_bound:.2} s = \
                 {:.2} x (slowest)",
                self.granted.len(),
                slowest / grant_bound
            );
        }
        let Cpu {
            operator,
            emulator,
            control_plane,
            benchmark,
            machine: (busy, all),
        } = self.used;
        println!(
            "   operator peak RSS {:.1} MiB; CPU seconds: operator {operator:.1}, emulator \
             {emulator:.1}, API server and etcd {control_plane:.1}, this benchmark \
             {benchmark:.1}; the machine {busy:.1} of {all:.1} ({:.0} % busy)",
            self.peak as f64 / 1024.0,
            100.0 * busy / all.max(f64::MIN_POSITIVE)
        );
    }
}

impl Watch<'_> {
    fn cpu(&self) -> Cpu {
        use crate::support::operator::{cpu_seconds, machine_cpu, pids_named};
        let control_plane = ["kube-apiserver", "etcd"]
            .into_iter()
            .flat_map(pids_named)
            .map(cpu_seconds)
            .sum();
        Cpu {
            operator: cpu_seconds(self.pids.0),
            emulator: cpu_seconds(self.pids.1),
            control_plane,
            benchmark: cpu_seconds(std::process::id()),
            machine: machine_cpu(),
        }
    }

    /// The organizations' connectors as they are now, each with its organization's number.
    async fn by_organization(&self) -> Vec<(usize, AwsConnector)> {
        let list = self
            .connectors
            .list(&kube::api::ListParams::default())
            .await
            .expect("list connectors");
        list.items
            .into_iter()
            .filter_map(|c| {
                let org = org_of(c.metadata.name.as_deref()?).filter(|o| *o < self.count)?;
                Some((org, c))
            })
            .collect()
    }

    /// Each connector's last sync start, by organization.
    async fn sync_starts(&self) -> Vec<Option<String>> {
        let mut starts = vec![None; self.count];
        for (org, connector) in self.by_organization().await {
            starts[org] = connector
                .status
                .as_ref()
                .and_then(|s| s.last_sync.as_ref()?.started_at.clone());
        }
        starts
    }

    /// Polls until the phase's syncs are done and its grants all Granted (or 15 minutes pass).
    async fn until_done(&self, mut phase: Phase) -> Phase {
        let mut synced_at: Vec<Option<f64>> = vec![None; self.count];
        let mut sync_seconds: Vec<Option<f64>> = vec![None; self.count];
        let mut granted_at: Vec<Option<f64>> = vec![None; self.count];
        let deadline = phase.started + Duration::from_secs(900);
        let (round, before) = match &phase.grants {
            Some((round, before)) => (Some(*round), before.clone()),
            None => (None, vec![None; self.count]),
        };
        // Phase 3 runs no sync: it does not wait for one.
        let waits_for_syncs = round.is_none() || !before.is_empty();
        loop {
            phase.peak = phase.peak.max(crate::support::operator::rss(self.pids.0).0);
            let now = phase.started.elapsed().as_secs_f64();
            if waits_for_syncs {
                for (org, connector) in self.by_organization().await {
                    let status = connector.status.as_ref();
                    let last = status.and_then(|s| s.last_sync.as_ref());
                    let synced = status.is_some_and(|s| {
                        s.conditions
                            .condition("Synced")
                            .is_some_and(|c| c.status == "True")
                    });
                    let new = last.and_then(|l| l.started_at.as_ref()) != before[org].as_ref();
                    if synced && new && last.is_some() {
                        synced_at[org].get_or_insert(now);
                        sync_seconds[org] = last.and_then(|l| l.duration_seconds);
                    }
                }
            }
            if let Some(round) = round {
                let tag = format!("-r{round}-");
                let mut granted = vec![0; self.count];
                for grant in self.grants.state() {
                    let name = grant.metadata.name.clone().unwrap_or_default();
                    let org = org_of(&name).filter(|o| *o < self.count && name.contains(&tag));
                    let is_granted =
                        crate::support::operator::ready_reason(&grant) == Some("Granted");
                    if let (true, Some(org)) = (is_granted, org) {
                        granted[org] += 1;
                    }
                }
                for (org, at) in granted_at.iter_mut().enumerate() {
                    if at.is_none() && granted[org] == self.per_org {
                        *at = Some(now);
                    }
                }
            }
            let syncs_done = !waits_for_syncs || synced_at.iter().all(Option::is_some);
            let grants_done = round.is_none() || granted_at.iter().all(Option::is_some);
            if (syncs_done && grants_done) || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        phase.used = self.cpu() - phase.cpu;
        phase.all_synced = synced_at.iter().flatten().copied().fold(0.0, f64::max);
        phase.sync_seconds = sync_seconds.into_iter().flatten().collect();
        phase.granted = granted_at.into_iter().flatten().collect();
        phase
    }
}
