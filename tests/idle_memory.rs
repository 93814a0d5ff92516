//! A benchmark, not a test of behaviour (ignored by `cargo test`; `make bench-idle` runs it):
//! the operator's release binary, as a process, converges 1,000 AccessGrants on the 3-account
//! organization and then sits idle; it prints how long convergence took and the operator's
//! resident memory while idle. It asserts only that every grant converged.
//!
//! The API server is the local control plane (or the cluster `TEST_KUBECONFIG` names), in
//! processes of its own, so the operator's memory is its own. `BENCH_OPERATOR` names the binary (default
//! `target/release/aws-access-operator`), `BENCH_GRANTS` the number of grants,
//! `BENCH_RATE_LIMITS` the operator's `--rate-limits` (default: its own defaults),
//! `BENCH_IDLE_SECONDS` how long it idles before the last minute's samples (default 60),
//! `BENCH_GRANT_CHECK` its `--grant-check-interval` (default: its own).
//!
//! The operator runs as a ServiceAccount of its own, so that the API server's audit log tells
//! its requests apart: printed per grant, from the first grant to convergence (writes and reads
//! by resource), and for the idle time after it. So are the AWS calls of the idle time (moto's
//! request recording): the drift checks, per (account, permission set) pair.
//! `BENCH_HEAPTRACK` (a file name prefix, `make bench-heap`) runs the operator under heaptrack
//! and ends it with SIGKILL while idle: what heaptrack reports as leaked is then what the idle
//! operator holds, printed by owner (scripts/heap_profile.py).

use std::time::{Duration, Instant};

use aws_access_operator::api::AccessGrant;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::support::audit::{Request, requests_of};
use crate::support::cluster::TestCluster;
use crate::support::moto::Moto;
use crate::support::operator::{
    bench_number, bench_operator, create_org_connector, grant, ready_reason, rss, spawn_operator,
    wait_condition,
};
use crate::support::service_account::with_rules;

/// The 3-account organization of the measurements: 80 Identity Center users (more
/// when there are more grants than 80 users × 30 permission sets × 3 accounts), 30 permission
/// sets.
fn organization(users: usize) -> Vec<String> {
    [
        "--accounts",
        "2",
        "--iam-users",
        "150",
        "--sso-users",
        &users.to_string(),
        "--sso-groups",
        "8",
        "--permission-sets",
        "30",
        "--assigned-users",
        "60",
    ]
    .map(str::to_string)
    .to_vec()
}

/// Permission sets in the organization, and the accounts each user is given them in.
const SETS: usize = 30;
const ACCOUNTS: usize = 3;

/// The operator's own process: `pid`, or the child of the heaptrack wrapper `pid` that runs
/// `binary`.
fn operator_pid(pid: u32, binary: &std::path::Path) -> u32 {
    let runs =
        |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pending = vec![pid];
    while Instant::now() < deadline {
        while let Some(next) = pending.pop() {
            if runs(next) {
                return next;
            }
            let children = std::fs::read_to_string(format!("/proc/{next}/task/{next}/children"))
                .unwrap_or_default();
            pending.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
        pending.push(pid);
    }
    panic!("no process of {} under {pid}", binary.display());
}

/// Runs the operator under heaptrack: a wrapper script in `dir` for `spawn_operator`.
fn heaptrack_wrapper(dir: &std::path::Path, binary: &str, prefix: &str) -> String {
    let wrapper = dir.join("operator-under-heaptrack");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec heaptrack -o '{prefix}' '{binary}' \"$@\"\n"),
    )
    .expect("write the wrapper");
    let mut permissions = std::fs::metadata(&wrapper).expect("wrapper").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&wrapper, permissions).expect("make the wrapper executable");
    wrapper.display().to_string()
}

/// What the idle operator held, by owner: heaptrack's report through scripts/heap_profile.py.
fn print_heap_profile(prefix: &str) {
    let recorded = (0..100)
        .find_map(|_| {
            let found = std::fs::read_dir(std::path::Path::new(prefix).parent()?)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.display().to_string().starts_with(prefix));
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            found
        })
        .expect("heaptrack's recording");
    let report = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "heaptrack_print -f '{}' --print-leaks 1 --print-peaks 0 --print-allocators 0 \
             --print-temporary 0 --merge-backtraces 0 -n 1000000 2>/dev/null \
             | python3 '{}/scripts/heap_profile.py'",
            recorded.display(),
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .expect("heaptrack_print");
    println!(
        "heap held by the idle operator ({}):\n{}",
        recorded.display(),
        String::from_utf8_lossy(&report.stdout)
    );
}

/// The operator's API server requests in one stretch, per grant: writes and reads by verb and
/// resource (watches, which stay open, and leases, which come on their own clock, apart).
fn print_requests(stretch: &str, requests: &[Request], count: usize) {
    let mut by: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for r in requests {
        *by.entry((r.verb.clone(), r.resource.clone())).or_default() += 1;
    }
    let per_grant = |n: usize| n as f64 / count as f64;
    let total: usize = by
        .iter()
        .filter(|((verb, resource), _)| verb != "watch" && resource != "leases")
        .map(|(_, n)| n)
        .sum();
    println!(
        "API server requests {stretch}: {total} ({:.2} per grant), leases and watches apart",
        per_grant(total)
    );
    for ((verb, resource), n) in &by {
        println!(
            "  {verb:>6} {resource:<28} {n:>7} ({:.3} per grant)",
            per_grant(*n)
        );
    }
}

/// AWS calls while converging (against the busiest lane's bound when the rate limits are
/// given) and while idle (the drift checks, per (account, permission set) pair and per grant).
fn print_calls(
    converging: &std::collections::BTreeMap<String, u64>,
    idle: &std::collections::BTreeMap<String, u64>,
    (count, pairs): (usize, usize),
    limits: &str,
    converged: Duration,
) {
    // The Identity Center lane: every sso-admin and identitystore operation.
    let identity_center = |calls: &std::collections::BTreeMap<String, u64>| -> u64 {
        calls
            .iter()
            .filter(|(op, _)| {
                !matches!(
                    op.as_str(),
                    "GetCallerIdentity" | "AssumeRole" | "ListAccounts" | "ListRoots"
                ) && !op.starts_with("ListOrganizational")
                    && !op.starts_with("ListAccountsFor")
                    && !op.contains("Iam")
            })
            .map(|(_, n)| n)
            .sum()
    };
    let lane = identity_center(converging);
    let rate = limits
        .split(',')
        .find_map(|l| l.trim().strip_prefix("identitycenter="))
        .and_then(|r| r.parse::<f64>().ok());
    println!("AWS calls converging: {converging:?}");
    if let Some(rate) = rate {
        let bound = lane as f64 / rate;
        println!(
            "busiest lane (Identity Center, {rate}/s): {lane} calls, bound {bound:.1} s; converged in {:.1} s = {:.2} x the bound",
            converged.as_secs_f64(),
            converged.as_secs_f64() / bound
        );
    }
    let lists = idle.get("ListAccountAssignments").copied().unwrap_or(0);
    println!("AWS calls idle: {idle:?}");
    println!(
        "idle: {lists} ListAccountAssignments for {count} grants on {pairs} (account, permission set) pairs ({:.2} per pair, {:.3} per grant)",
        lists as f64 / pairs as f64,
        lists as f64 / count as f64
    );
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test]
#[ignore = "a benchmark: make bench-idle"]
async fn idle_memory_with_a_thousand_grants() {
    let binary = bench_operator();
    let count: usize = bench_number("BENCH_GRANTS", 1000);
    let moto = Moto::start();
    // Every grant a distinct (user, permission set, account): enough users for them all.
    let users = 80.max(count.div_ceil(SETS * ACCOUNTS));
    let org = organization(users);
    let seed = moto.seed(&org.iter().map(String::as_str).collect::<Vec<_>>());
    let accounts: Vec<String> = seed["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let cluster = TestCluster::start("idle").await;
    let identity = with_rules(
        &cluster,
        &cluster.namespace,
        "bench-operator",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        &[],
    )
    .await;
    let config = identity.kubeconfig.clone();
    let audit = cluster.audit_log();
    let limits = std::env::var("BENCH_RATE_LIMITS").unwrap_or_default();
    let mut args = vec!["--log-format", "json"];
    if !limits.is_empty() {
        args.extend(["--rate-limits", limits.as_str()]);
    }
    let check = std::env::var("BENCH_GRANT_CHECK").unwrap_or_default();
    if !check.is_empty() {
        args.extend(["--grant-check-interval", check.as_str()]);
    }
    let heaptrack = std::env::var("BENCH_HEAPTRACK")
        .ok()
        .filter(|p| !p.is_empty());
    let wrappers = tempfile::tempdir().expect("tempdir");
    let launched = match &heaptrack {
        Some(prefix) => heaptrack_wrapper(wrappers.path(), &binary, prefix),
        None => binary.clone(),
    };
    let mut operator = spawn_operator(
        std::path::Path::new(&launched),
        &moto,
        &config,
        &cluster.namespace,
        &args,
    );
    let pid = operator_pid(operator.id(), std::path::Path::new(&binary));
    let connectors = create_org_connector(&cluster.client, &cluster.namespace).await;
    wait_condition(&connectors, "org", "Ready", "True").await;
    let started = Instant::now();
    let (before, _, _) = rss(pid);
    let requests_before = audit
        .as_deref()
        .map_or(0, |a| requests_of(a, &identity.username).len());
    moto.reset_calls();

    // Distinct (user, permission set, account) assignments.
    let grants: Api<AccessGrant> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut pairs = std::collections::BTreeSet::new();
    for i in 0..count {
        let (user, set, account) = (
            i % users,
            (i / users) % SETS,
            i / (users * SETS) % accounts.len(),
        );
        pairs.insert((set, account));
        let manifest = grant(
            &format!("g-{i:04}"),
            "org",
            json!({"kind": "SsoUser", "name": format!("user-{user:02}@example.com")}),
            json!({"kind": "PermissionSet", "permissionSet": format!("PermissionSet{set:02}"),
                   "accountId": accounts[account]}),
            json!({}),
        );
        grants
            .create(&PostParams::default(), &manifest)
            .await
            .expect("create a grant");
    }
    let created = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(1800);
    // Granted, or adopted where the seeded organization had the assignment already.
    let granted = loop {
        let list = grants.list(&ListParams::default()).await.expect("list");
        let granted = list
            .items
            .iter()
            // Adopted: the organization had it already.
            .filter(|g| matches!(ready_reason(g), Some("Granted" | "Adopted")))
            .count();
        if granted == count || Instant::now() > deadline {
            break granted;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let converged = started.elapsed();
    let (at_convergence, _, _) = rss(pid);
    let converging_calls = moto.calls();
    moto.reset_calls();
    let requests_converged = audit
        .as_deref()
        .map_or(0, |a| requests_of(a, &identity.username).len());

    // Idle: a while to settle (RSS shown every 30 s), then a sample every 5 s for a minute.
    let settle: u64 = bench_number("BENCH_IDLE_SECONDS", 60);
    for waited in (0..settle).step_by(30) {
        tokio::time::sleep(Duration::from_secs(30.min(settle - waited))).await;
        let (total, anon, file) = rss(pid);
        println!(
            "idle {:>4} s: {:.1} MiB (anonymous {:.1}, file-backed {:.1})",
            (waited + 30).min(settle),
            mib(total),
            mib(anon),
            mib(file)
        );
    }
    let mut samples = Vec::new();
    for _ in 0..12 {
        samples.push(rss(pid));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    // SIGKILL, to the operator itself: under heaptrack, what it holds at this moment is then
    // what heaptrack reports as never freed.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let _ = operator.wait();
    if let Some(prefix) = &heaptrack {
        print_heap_profile(prefix);
    }
    let idle_calls = moto.calls();
    print_calls(
        &converging_calls,
        &idle_calls,
        (count, pairs.len()),
        &limits,
        converged,
    );
    if let Some(audit) = audit.as_deref() {
        let all = requests_of(audit, &identity.username);
        print_requests(
            "from the first grant to convergence",
            &all[requests_before.min(all.len())..requests_converged.min(all.len())],
            count,
        );
        print_requests("idle", &all[requests_converged.min(all.len())..], count);
    }
    samples.sort();
    let (median, anon, file) = samples[samples.len() / 2];
    let most = samples.iter().map(|s| s.0).max().unwrap_or(0);
    println!(
        "{count} grants: created in {:.0} s, {granted} Granted or Adopted after {:.0} s",
        created.as_secs_f64(),
        converged.as_secs_f64()
    );
    println!(
        "operator RSS: {:.1} MiB before the grants, {:.1} MiB at convergence; idle median {:.1} MiB \
         (anonymous {:.1}, file-backed {:.1}), idle max {:.1} MiB",
        mib(before),
        mib(at_convergence),
        mib(median),
        mib(anon),
        mib(file),
        mib(most)
    );
    cluster.cleanup().await;
    assert_eq!(granted, count, "every grant converged");
}
