//! The inventory sync against moto with a seeded organization, through the real binary:
//! exact contents, every page, honest call counts, throttling, the cache, resuming, and the
//! credential chain (IRSA, single- and two-hop, a refused hop).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::moto::{AMBIENT_AWS_VARIABLES, Moto};

const FAST: &str = "sts=1000,iam=1000,organizations=1000,identitycenter=1000";
const PAGE: u64 = 3;

fn write_connector(dir: &Path, auth: Value) -> PathBuf {
    let path = dir.join("connector.yaml");
    let connector = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org", "namespace": "aws"},
        "spec": {"region": "us-east-1", "auth": auth}});
    std::fs::write(&path, serde_json::to_string(&connector).expect("json"))
        .expect("write connector");
    path
}

/// Writes to `to` the connector in `from` with `spec.sync` set to `sync`.
fn with_sync(from: &Path, to: &Path, sync: Value) {
    let text = std::fs::read_to_string(from).expect("read the connector");
    let mut value: Value = serde_json::from_str(&text).expect("connector JSON");
    value["spec"]["sync"] = sync;
    std::fs::write(to, value.to_string()).expect("write the connector");
}

fn command(moto: &Moto, connector: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aws-access-operator"));
    command.arg("sync").arg("-f").arg(connector).args([
        "--page-size",
        &PAGE.to_string(),
        "--rate-limits",
        FAST,
    ]);
    command.args(args);
    for variable in AMBIENT_AWS_VARIABLES {
        command.env_remove(variable);
    }
    command.env_remove("RUST_LOG");
    command.env(
        "HOME",
        connector.parent().unwrap_or(Path::new("/nonexistent")),
    );
    for (key, value) in moto.env() {
        command.env(key, value);
    }
    command
}

/// The inventory and the log of a sync that must have succeeded.
fn succeeded(output: Output) -> (Value, String) {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "sync failed: {stderr}");
    let inventory = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("inventory JSON: {e}: {stderr}"));
    (inventory, stderr)
}

/// Runs a sync that must succeed; returns its inventory.
fn sync(moto: &Moto, connector: &Path, args: &[&str]) -> Value {
    let output = command(moto, connector, args).output().expect("run sync");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sync failed: {stderr}\nmoto log: {}",
        std::fs::read_to_string(&moto.log).unwrap_or_default()
    );
    // Not a terminal: no colour codes in what a log collector would read.
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escape codes in logs that are not on a terminal: {stderr}"
    );
    // At the default level nothing below info is written (the caps on the SDK's traces must
    // not raise any crate to debug).
    assert!(
        !stderr.contains(" DEBUG ") && !stderr.contains(" TRACE "),
        "debug output at the default level: {stderr}"
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("inventory JSON: {e}: {stderr}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn calls(inventory: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(inventory["stats"]["apiCalls"].clone()).expect("apiCalls")
}

/// The inventory without its stats, for comparing runs.
fn content(inventory: &Value) -> Value {
    let mut v = inventory.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("stats");
    }
    v
}

/// Whether a state directory holds the page state of an unfinished sync (one file per stream).
fn page_state_saved(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("sync-state-"))
    })
}

fn pages(items: usize) -> u64 {
    (items as u64).div_ceil(PAGE).max(1)
}

/// The pages the seeded organization's tree takes: ListOrganizationalUnitsForParent and
/// ListAccountsForParent, once for the root and once for each organizational unit (an empty
/// parent still takes a call).
fn tree_pages(seed: &Value) -> (u64, u64) {
    let root = seed["root"].as_str().unwrap_or_default().to_string();
    let units = seed["organizationalUnits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let parents: Vec<String> = std::iter::once(root)
        .chain(
            units
                .iter()
                .map(|u| u["id"].as_str().unwrap_or_default().to_string()),
        )
        .collect();
    let children = |parent: &str| units.iter().filter(|u| u["parentId"] == parent).count();
    let accounts = |parent: &str| {
        seed["accountParents"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, p)| p.as_str() == Some(parent))
            .count()
    };
    (
        parents.iter().map(|p| pages(children(p))).sum(),
        parents.iter().map(|p| pages(accounts(p))).sum(),
    )
}

#[test]
fn inventory_matches_the_seeded_organization_page_by_page() {
    let moto = Moto::start();
    // Seven organizational units, nested three deep under the root's two.
    let seed = moto.seed(&["--ous", "7"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    moto.reset_calls();
    let inventory = sync(&moto, &connector, &[]);

    let ids = |list: &Value, key: &str| -> BTreeSet<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|v| v[key].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        ids(&inventory["accounts"], "id"),
        strings(&seed["accounts"]).into_iter().collect()
    );
    assert!(
        inventory["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .all(|a| a["status"] == "ACTIVE")
    );
    // Every account sits where it was put, and the tree is the seeded one.
    let parents: BTreeMap<String, String> = inventory["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().into(),
                a["parentId"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let seeded_parents: BTreeMap<String, String> =
        serde_json::from_value(seed["accountParents"].clone()).expect("account parents");
    assert_eq!(parents, seeded_parents);
    assert!(
        seeded_parents.values().any(|p| p != &seed["root"]),
        "accounts were moved"
    );
    assert_eq!(inventory["roots"][0]["id"], seed["root"]);
    let tree = |units: &Value| -> BTreeSet<(String, String, String)> {
        units
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                let text = |key: &str| u[key].as_str().unwrap_or_default().to_string();
                (text("id"), text("name"), text("parentId"))
            })
            .collect()
    };
    assert_eq!(
        tree(&inventory["organizationalUnits"]),
        tree(&seed["organizationalUnits"])
    );
    assert_eq!(tree(&seed["organizationalUnits"]).len(), 7);

    let iam_groups = strings(&seed["iamGroups"]);
    let iam_users = strings(&seed["iamUsers"]);
    assert_eq!(
        ids(&inventory["iamUsers"], "name"),
        iam_users.iter().cloned().collect()
    );
    for (i, user) in inventory["iamUsers"]
        .as_array()
        .expect("users")
        .iter()
        .enumerate()
    {
        let expected: Vec<String> = iam_groups[..i % (iam_groups.len() + 1)].to_vec();
        assert_eq!(strings(&user["groups"]), expected, "{user}");
    }
    for (g, group) in inventory["iamGroups"]
        .as_array()
        .expect("groups")
        .iter()
        .enumerate()
    {
        let expected: Vec<String> = iam_users
            .iter()
            .enumerate()
            .filter(|(i, _)| g < i % (iam_groups.len() + 1))
            .map(|(_, u)| u.clone())
            .collect();
        assert_eq!(strings(&group["members"]), expected, "{group}");
    }
    assert_eq!(
        ids(&inventory["iamRoles"], "name"),
        strings(&seed["iamRoles"]).into_iter().collect()
    );
    for role in inventory["iamRoles"].as_array().expect("roles") {
        let trusted = strings(&role["trustedPrincipals"]);
        assert_eq!(trusted.len(), 2, "{role}");
        assert!(trusted[0].starts_with("AWS:arn:aws:iam::") && trusted[0].ends_with(":root"));
        assert_eq!(trusted[1], "Service:ec2.amazonaws.com");
    }

    assert_eq!(inventory["identityCenter"], seed["identityCenter"]);
    let sso_users: BTreeSet<(String, String)> = inventory["ssoUsers"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap_or_default().into(),
                u["userName"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let seeded: BTreeSet<(String, String)> = seed["ssoUsers"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap_or_default().into(),
                u["userName"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(sso_users, seeded);
    for group in seed["ssoGroups"].as_array().expect("groups") {
        let found = inventory["ssoGroups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["id"] == group["id"])
            .expect("group synced");
        assert_eq!(found["displayName"], group["displayName"]);
        let mut members = strings(&group["members"]);
        members.sort();
        assert_eq!(strings(&found["members"]), members);
    }
    let sets: BTreeSet<(String, String)> = inventory["permissionSets"]
        .as_array()
        .expect("sets")
        .iter()
        .map(|p| {
            (
                p["arn"].as_str().unwrap_or_default().into(),
                p["name"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let seeded_sets: BTreeSet<(String, String)> = seed["permissionSets"]
        .as_array()
        .expect("sets")
        .iter()
        .map(|p| {
            (
                p["arn"].as_str().unwrap_or_default().into(),
                p["name"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(sets, seeded_sets);
    assert!(
        inventory["permissionSets"]
            .as_array()
            .expect("sets")
            .iter()
            .all(|p| p["sessionDuration"] == "PT1H")
    );
    let set = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(Value::to_string)
            .collect()
    };
    let (assignments, seeded_assignments) =
        (set(&inventory["assignments"]), set(&seed["assignments"]));
    assert_eq!(assignments, seeded_assignments);

    // Every page of every list call, and the count is honest: it is what moto received.
    let counted = calls(&inventory);
    assert_eq!(
        counted,
        moto.calls(),
        "the sync counts exactly the calls AWS received"
    );
    let n = |key: &str| seed[key].as_array().map_or(0, Vec::len);
    let (unit_pages, account_pages) = tree_pages(&seed);
    assert_eq!(counted["ListRoots"], 1);
    assert_eq!(counted["ListOrganizationalUnitsForParent"], unit_pages);
    assert_eq!(counted["ListAccountsForParent"], account_pages);
    assert!(!counted.contains_key("ListAccounts"), "the tree lists them");
    assert_eq!(
        counted["GetAccountAuthorizationDetails"],
        pages(n("iamUsers") + n("iamGroups") + n("iamRoles"))
    );
    assert_eq!(counted["ListUsers"], pages(n("ssoUsers")));
    assert_eq!(counted["ListGroups"], pages(n("ssoGroups")));
    let membership_pages: u64 = seed["ssoGroups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| pages(strings(&g["members"]).len()))
        .sum();
    assert_eq!(counted["ListGroupMemberships"], membership_pages);
    assert_eq!(counted["ListPermissionSets"], pages(n("permissionSets")));
    assert_eq!(counted["DescribePermissionSet"], n("permissionSets") as u64);
    assert!(
        !counted.contains_key("GetGroup") && !counted.contains_key("ListRoles"),
        "GetAccountAuthorizationDetails replaces them"
    );
    assert_eq!(
        inventory["stats"]["totalCalls"].as_u64(),
        Some(counted.values().sum())
    );
}

#[test]
fn throttling_on_every_service_leaves_the_result_unchanged() {
    let moto = Moto::start();
    moto.seed(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let clean = sync(&moto, &connector, &[]);
    moto.set_faults(json!({"throttle_every": 3}));
    let throttled = sync(&moto, &connector, &[]);
    assert_eq!(content(&throttled), content(&clean));
    let (clean_calls, throttled_calls) = (calls(&clean), calls(&throttled));
    let total = |c: &BTreeMap<String, u64>| c.values().sum::<u64>();
    let retried = throttled["stats"]["throttled"].as_u64().expect("throttled");
    assert_eq!(
        total(&throttled_calls),
        total(&clean_calls) + retried,
        "each throttled call was retried once more"
    );
    assert!(retried >= total(&clean_calls) / 3, "{retried}");
    // Every service was throttled at least once and recovered.
    for operation in [
        "ListAccountsForParent",
        "GetAccountAuthorizationDetails",
        "ListUsers",
        "ListGroupMemberships",
        "ListAccountAssignments",
    ] {
        assert!(
            throttled_calls[operation] >= clean_calls[operation],
            "{operation}"
        );
    }
    let services_hit = [
        "ListAccountsForParent",
        "GetAccountAuthorizationDetails",
        "ListGroupMemberships",
        "ListAccountAssignments",
    ]
    .iter()
    .filter(|op| throttled_calls[**op] > clean_calls[**op])
    .count();
    assert!(
        services_hit >= 3,
        "throttling reached the services: {throttled_calls:?} vs {clean_calls:?}"
    );
}

#[test]
fn second_sync_uses_the_cache() {
    let moto = Moto::start();
    let seed = moto.seed(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    let first = sync(&moto, &connector, &["--state-dir", state_arg]);
    assert_eq!(first["stats"]["cacheHits"], 0);
    assert!(state.join("cache.json").exists());
    assert!(
        !page_state_saved(&state),
        "a finished sync leaves no page state"
    );
    let second = sync(&moto, &connector, &["--state-dir", state_arg]);
    let sets = seed["permissionSets"].as_array().map_or(0, Vec::len) as u64;
    assert_eq!(second["stats"]["cacheHits"].as_u64(), Some(sets));
    assert!(!calls(&second).contains_key("DescribePermissionSet"));
    assert_eq!(content(&second), content(&first));
    let cache: Value =
        serde_json::from_slice(&std::fs::read(state.join("cache.json")).expect("cache"))
            .expect("json");
    assert_eq!(
        cache["ssoUsers"]["user-00@example.com"],
        seed["ssoUsers"][0]["id"]
    );
    let text = std::fs::read_to_string(state.join("cache.json")).expect("cache");
    assert!(!text.contains("testing"), "no credentials in the cache");
}

/// How a sync held by the emulator is ended.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// SIGKILL: nothing more is saved; its state was saved at every page.
    Kill,
    /// SIGTERM, with checkpoints at their default interval: it saves its state as it stops.
    Term,
}

/// Runs a sync keeping its state in `state_arg`, holds every request after the first
/// `answered`, and ends the sync while it waits; the emulator still holds requests when this
/// returns. Returns what the sync wrote on stderr.
fn stopped_after(
    moto: &Moto,
    connector: &Path,
    state_arg: &str,
    answered: u64,
    ending: Ending,
) -> String {
    moto.reset_calls();
    moto.set_faults(json!({"hang_after": answered}));
    let mut args = vec!["--state-dir", state_arg];
    if ending == Ending::Kill {
        args.extend(["--checkpoint-seconds", "0"]);
    }
    let mut child = command(moto, connector, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sync");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while moto.calls().values().sum::<u64>() <= answered {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync did not reach {answered} calls"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every request from here on waits: give the answered ones time to be learned.
    std::thread::sleep(Duration::from_secs(1));
    match ending {
        Ending::Kill => child.kill().expect("kill the sync"),
        Ending::Term => {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(status.success());
        }
    }
    let output = child.wait_with_output().expect("reap");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_interrupted_sync_resumes_from_its_last_page() {
    let moto = Moto::start();
    moto.seed(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let fresh = sync(&moto, &connector, &[]);
    let fresh_total: u64 = calls(&fresh).values().sum();

    // Hold every request after the 30th, then kill the sync while it waits.
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    stopped_after(&moto, &connector, state_arg, 30, Ending::Kill);
    assert!(page_state_saved(&state), "the page state survived the kill");
    moto.set_faults(json!({}));
    moto.reset_calls();

    let resumed = sync(&moto, &connector, &["--state-dir", state_arg]);
    assert_eq!(resumed["stats"]["resumed"], true);
    let resumed_total: u64 = calls(&resumed).values().sum();
    assert!(
        resumed_total < fresh_total,
        "resume made {resumed_total} calls, a fresh sync {fresh_total}"
    );
    assert!(
        resumed_total + 30 >= fresh_total,
        "the resume skipped work only up to the last page saved: resume {:?}, fresh {:?}",
        calls(&resumed),
        calls(&fresh)
    );
    assert_eq!(content(&resumed), content(&fresh));
}

/// Calls but the credential report's generation polls, whose number depends on how long the
/// report takes, not on the work.
fn work_calls(calls: &BTreeMap<String, u64>) -> u64 {
    calls
        .iter()
        .filter(|(operation, _)| *operation != "GenerateCredentialReport")
        .map(|(_, n)| n)
        .sum()
}

/// Syncs the organization afresh, then again with its state in a directory, ended as `ending`
/// says once half of the fresh sync's calls were answered; then resumes. The resume makes the
/// other half: every page answered before the end was kept, in whichever stream and item it
/// was, so the resume makes no call the first run had made, but its own GetCallerIdentity.
/// Returns what the ended run wrote on stderr.
fn halfway(ending: Ending) -> String {
    let moto = Moto::start();
    moto.seed(&[
        "--sso-users",
        "40",
        "--sso-groups",
        "8",
        "--permission-sets",
        "6",
        "--access-keys",
        "3",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = write_connector(dir.path(), json!({}));
    let connector = dir.path().join("keys.yaml");
    with_sync(&plain, &connector, json!({"accessKeys": true}));
    let fresh = sync(&moto, &connector, &[]);
    let fresh_total = work_calls(&calls(&fresh));

    let half = fresh_total / 2;
    let fresh_polls = calls_of(&fresh, "GenerateCredentialReport");
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    // Half the work answered, when the report takes as many polls as in the fresh sync.
    let hang_after = half + fresh_polls;
    let stderr = stopped_after(&moto, &connector, state_arg, hang_after, ending);
    let polls = moto
        .calls()
        .get("GenerateCredentialReport")
        .copied()
        .unwrap_or(0);
    let answered = hang_after - polls;
    moto.set_faults(json!({}));
    moto.reset_calls();

    let resumed = sync(&moto, &connector, &["--state-dir", state_arg]);
    assert_eq!(resumed["stats"]["resumed"], true);
    let resumed_total = work_calls(&moto.calls());
    eprintln!(
        "fresh {fresh_total} calls, {answered} answered before the end, resume {resumed_total}"
    );
    assert!(
        resumed_total <= fresh_total - answered + 1,
        "a fresh sync made {fresh_total} calls and the ended one had {answered} answered, \
         but the resume made {resumed_total}: {:?}",
        moto.calls()
    );
    assert_eq!(content(&resumed), content(&fresh));
    stderr
}

/// SIGKILL: no chance to save anything more; the state was saved at every page.
#[test]
fn a_sync_killed_halfway_resumes_with_the_other_half() {
    halfway(Ending::Kill);
}

/// SIGTERM with checkpoints at their default interval (30 s, never reached here): the sync
/// drops the calls in flight and saves every stream's state as it stops.
#[test]
fn a_sync_stopped_halfway_saves_where_it_was() {
    let stderr = halfway(Ending::Term);
    assert!(
        stderr.contains("asked to stop before it finished"),
        "{stderr}"
    );
}

/// Something AWS loses between two runs of a sync.
#[derive(Clone, Copy)]
enum Deletion {
    /// The seeded Identity Center group of this index.
    Group(usize),
    /// The seeded permission set of this index.
    PermissionSet(usize),
}

fn delete(moto: &Moto, seeded: &Value, deletion: Deletion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = moto.sdk_config().await;
        let center = &seeded["identityCenter"];
        match deletion {
            Deletion::Group(index) => {
                aws_sdk_identitystore::Client::new(&config)
                    .delete_group()
                    .identity_store_id(center["identityStoreId"].as_str().expect("store"))
                    .group_id(seeded["ssoGroups"][index]["id"].as_str().expect("group"))
                    .send()
                    .await
                    .expect("delete the group");
            }
            Deletion::PermissionSet(index) => {
                let sso = aws_sdk_ssoadmin::Client::new(&config);
                let instance = center["instanceArn"].as_str().expect("instance");
                let arn = seeded["permissionSets"][index]["arn"]
                    .as_str()
                    .expect("permission set");
                // AWS refuses to delete a set still assigned (ConflictException): its
                // assignments go first, as they would in the console.
                for assignment in seeded["assignments"].as_array().into_iter().flatten() {
                    if assignment["permissionSetArn"] != arn {
                        continue;
                    }
                    let text = |key: &str| assignment[key].as_str().unwrap_or_default().to_string();
                    sso.delete_account_assignment()
                        .instance_arn(instance)
                        .target_id(text("accountId"))
                        .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
                        .permission_set_arn(arn)
                        .principal_type(aws_sdk_ssoadmin::types::PrincipalType::from(
                            text("principalType").as_str(),
                        ))
                        .principal_id(text("principalId"))
                        .send()
                        .await
                        .expect("delete an assignment of the permission set");
                }
                sso.delete_permission_set()
                    .instance_arn(instance)
                    .permission_set_arn(arn)
                    .send()
                    .await
                    .expect("delete the permission set");
            }
        }
    });
}

/// A sync stopped by a refused call at `denied` leaves its page state; then AWS loses what
/// the state names. The next run lists the affected stream again instead of failing on the
/// missing item at every retry: it finishes with what a fresh sync of the changed
/// organization finds, and keeps the rest of the state (fewer calls than a fresh sync).
fn resume_after(denied: &str, deletion: Deletion) {
    let moto = Moto::start();
    let seeded = moto.seed(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    let with_state = ["--state-dir", state_arg, "--checkpoint-seconds", "0"];

    moto.set_faults(json!({"deny_operations": [denied]}));
    let stopped = command(&moto, &connector, &with_state)
        .output()
        .expect("run sync");
    assert!(!stopped.status.success(), "the sync stops at {denied}");
    assert!(page_state_saved(&state), "the page state was saved");
    moto.set_faults(json!({}));
    delete(&moto, &seeded, deletion);

    moto.reset_calls();
    let fresh = sync(&moto, &connector, &[]);
    let fresh_total: u64 = calls(&fresh).values().sum();

    moto.reset_calls();
    let (resumed, stderr) = succeeded(
        command(&moto, &connector, &with_state)
            .output()
            .expect("run sync"),
    );
    assert!(
        stderr.contains("the saved sync state is stale"),
        "the log says why part of the state was dropped: {stderr}"
    );
    assert_eq!(resumed["stats"]["resumed"], true);
    assert_eq!(content(&resumed), content(&fresh));
    let resumed_calls: u64 = moto.calls().values().sum();
    assert!(
        resumed_calls < fresh_total,
        "the resume kept what was still good: {resumed_calls} calls, a fresh sync {fresh_total}"
    );
    assert!(
        !page_state_saved(&state),
        "a finished sync leaves no page state"
    );
}

#[test]
fn a_group_deleted_while_a_sync_was_stopped_is_listed_again() {
    resume_after("ListGroupMemberships", Deletion::Group(1));
}

#[test]
fn a_permission_set_deleted_while_a_sync_was_stopped_is_listed_again() {
    resume_after("DescribePermissionSet", Deletion::PermissionSet(2));
}

#[test]
fn a_permission_set_deleted_before_its_accounts_were_listed_is_listed_again() {
    resume_after(
        "ListAccountsForProvisionedPermissionSet",
        Deletion::PermissionSet(0),
    );
}

/// The streams run at once: while one is held up (its listing waits), the others carry on to
/// where they need it; released, the sync finishes with what a sync finds when nothing is held.
fn held_up(held: &str, carry_on: &[&str]) {
    let moto = Moto::start();
    moto.seed(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let reference = sync(&moto, &connector, &[]);
    moto.reset_calls();
    moto.set_faults(json!({"hold_operations": [held]}));
    let mut child = command(&moto, &connector, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sync");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let listed = |calls: &BTreeMap<String, u64>, operation: &str| {
        calls.get(operation).copied().unwrap_or(0) >= calls_of(&reference, operation)
    };
    loop {
        let calls = moto.calls();
        // The held calls were made (and wait), and the others got as far as they need to.
        if calls.get(held).is_some_and(|n| *n >= 1) && carry_on.iter().all(|op| listed(&calls, op))
        {
            assert!(
                child.try_wait().expect("poll").is_none(),
                "the sync waits for {held}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the other streams waited for {held}: {calls:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto.set_faults(json!({}));
    let (inventory, _) = succeeded(child.wait_with_output().expect("wait for the sync"));
    assert_eq!(content(&inventory), content(&reference));
}

#[test]
fn iam_held_up_does_not_hold_up_identity_center() {
    held_up(
        "GetAccountAuthorizationDetails",
        &[
            "ListAccountsForParent",
            "ListUsers",
            "ListGroupMemberships",
            "DescribePermissionSet",
        ],
    );
}

#[test]
fn identity_store_held_up_does_not_hold_up_permission_sets_or_iam() {
    held_up(
        "ListGroupMemberships",
        &[
            "ListAccountsForParent",
            "GetAccountAuthorizationDetails",
            "ListPermissionSets",
            "DescribePermissionSet",
        ],
    );
}

fn calls_of(inventory: &Value, operation: &str) -> u64 {
    inventory["stats"]["apiCalls"][operation]
        .as_u64()
        .unwrap_or(0)
}

/// A page token saved by an interrupted run that AWS no longer accepts restarts that stream
/// only: the streams finished before it are not listed again.
#[test]
fn an_expired_page_token_restarts_its_own_stream() {
    let moto = Moto::start();
    moto.seed(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    let with_state = ["--state-dir", state_arg, "--checkpoint-seconds", "0"];
    moto.set_faults(json!({"deny_operations": ["ListGroupMemberships"]}));
    let stopped = command(&moto, &connector, &with_state)
        .output()
        .expect("run sync");
    assert!(!stopped.status.success());
    moto.set_faults(json!({}));

    // Make the saved state one stopped after the first page of groups, holding a token that
    // has expired since: its cursors at that page, and its journal up to the segment that
    // learned that page (one segment per page, with checkpoints at every page).
    let file = state.join("sync-state-identity-store-groups.json");
    let mut saved: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read state")).expect("state JSON");
    assert_eq!(saved["phase"], "memberships");
    assert!(
        saved.get("inventory").is_none(),
        "the saved cursors hold no inventory: {saved}"
    );
    let first_groups = (0..saved["segments"].as_u64().expect("segments"))
        .find(|n| {
            let segment = state.join(format!("sync-journal-identity-store-groups-{n}.json"));
            let facts = std::fs::read_to_string(segment).expect("read segment");
            facts
                .lines()
                .any(|fact| fact.starts_with("{\"ssoGroups\":"))
        })
        .expect("a segment learned the first page of groups");
    saved["segments"] = json!(first_groups + 1);
    saved["phase"] = json!("ssoGroups");
    saved["nextToken"] = json!("a-token-that-expired");
    std::fs::write(&file, serde_json::to_vec(&saved).expect("json")).expect("write state");

    moto.reset_calls();
    let (resumed, stderr) = succeeded(
        command(&moto, &connector, &with_state)
            .output()
            .expect("run sync"),
    );
    assert!(stderr.contains("the saved sync state is stale"), "{stderr}");
    let resumed_calls = moto.calls();
    assert_eq!(
        resumed_calls.get("ListUsers"),
        None,
        "the finished users stream was kept"
    );
    assert_eq!(
        resumed_calls.get("ListGroups"),
        Some(&(1 + pages(5))),
        "the refused page, then the groups from the start"
    );
    assert_eq!(content(&resumed), content(&sync(&moto, &connector, &[])));
}

/// Within one run, an item deleted between its listing and the call about it is left out, and
/// the sync goes on.
#[test]
fn an_item_deleted_during_a_sync_is_left_out() {
    let moto = Moto::start();
    let seeded = moto.seed(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    moto.set_faults(json!({"hold_operations": ["DescribePermissionSet"]}));
    let child = command(&moto, &connector, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sync");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !moto.calls().contains_key("DescribePermissionSet") {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync never reached DescribePermissionSet"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The permission sets are listed; one of them goes before it is described.
    delete(&moto, &seeded, Deletion::PermissionSet(3));
    moto.set_faults(json!({}));
    let (during, stderr) = succeeded(child.wait_with_output().expect("wait for the sync"));
    assert!(
        stderr.contains("deleted since it was listed"),
        "the log says what was left out: {stderr}"
    );
    let gone = seeded["permissionSets"][3]["arn"].as_str().expect("arn");
    let listed: Vec<&str> = during["permissionSets"]
        .as_array()
        .expect("permission sets")
        .iter()
        .filter_map(|p| p["arn"].as_str())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(!listed.contains(&gone));
    assert_eq!(content(&during), content(&sync(&moto, &connector, &[])));
}

#[test]
fn irsa_then_single_and_two_hop_role_chains() {
    let moto = Moto::start();
    moto.seed(&[
        "--accounts",
        "2",
        "--sso-users",
        "3",
        "--sso-groups",
        "1",
        "--iam-users",
        "2",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl").expect("token");
    let irsa = |command: &mut Command| {
        // The pod's identity: a web-identity token file and a role, no static keys.
        command
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
            .env(
                "AWS_ROLE_ARN",
                "arn:aws:iam::555566667777:role/operator-irsa",
            )
            .env("AWS_ROLE_SESSION_NAME", "irsa");
    };
    let run = |auth: Value| -> Output {
        let connector = write_connector(dir.path(), auth);
        let mut c = command(&moto, &connector, &[]);
        irsa(&mut c);
        c.output().expect("run sync")
    };

    // IRSA alone: moto puts the web identity in the role's account.
    let (inventory, _) = succeeded(run(json!({})));
    assert_eq!(inventory["identity"]["account"], "555566667777");
    assert!(
        inventory["identity"]["arn"]
            .as_str()
            .expect("arn")
            .contains("assumed-role/operator-irsa/")
    );

    // Single hop into the organization's account, where the seeded data lives.
    moto.reset_calls();
    let (inventory, _) = succeeded(run(
        json!({"roleArn": "arn:aws:iam::123456789012:role/access-operator", "sessionName": "single"}),
    ));
    assert_eq!(inventory["identity"]["account"], "123456789012");
    assert!(
        inventory["identity"]["arn"]
            .as_str()
            .expect("arn")
            .ends_with("assumed-role/access-operator/single")
    );
    assert_eq!(inventory["ssoUsers"].as_array().map(Vec::len), Some(3));
    assert_eq!(moto.calls().get("AssumeRoleWithWebIdentity"), Some(&1));
    assert_eq!(
        moto.calls().get("AssumeRole"),
        Some(&1),
        "credentials are cached, not fetched per call"
    );

    // Two hops: a broker in another account, then the organization's role with an external ID.
    moto.reset_calls();
    let two_hop = json!({"globalRoleArn": "arn:aws:iam::999988887777:role/broker",
        "globalExternalId": "broker-external-id-0123456789abcdef",
        "roleArn": "arn:aws:iam::123456789012:role/access-operator",
        "externalId": "org-external-id-0123456789abcdef"});
    let (inventory, stderr) = succeeded(run(two_hop.clone()));
    assert_eq!(inventory["identity"]["account"], "123456789012");
    assert_eq!(moto.calls().get("AssumeRole"), Some(&2));
    assert!(
        !stderr.contains("org-external-id") && !stderr.contains("broker-external-id"),
        "no external ID in logs"
    );

    // A hop that is refused fails clearly, naming the hop, before any inventory call.
    moto.set_faults(json!({"deny_assume_role": ["arn:aws:iam::999988887777:role/broker"]}));
    moto.reset_calls();
    let output = run(two_hop);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("spec.auth.globalRoleArn") && stderr.contains("AccessDenied"),
        "{stderr}"
    );
    assert!(!stderr.contains("external-id-0123456789abcdef"), "{stderr}");
    assert!(
        !stderr.contains("cannot assume spec.auth.roleArn"),
        "the first hop failed, and only it is named: {stderr}"
    );
    assert!(
        !moto.calls().contains_key("ListRoots"),
        "nothing was listed"
    );

    // Throttled AssumeRoles are retried like any other call: the sync goes through.
    moto.set_faults(json!({"throttle_every": 2}));
    moto.reset_calls();
    let output = run(
        json!({"globalRoleArn": "arn:aws:iam::999988887777:role/broker",
        "globalExternalId": "broker-external-id-0123456789abcdef",
        "roleArn": "arn:aws:iam::123456789012:role/access-operator",
        "externalId": "org-external-id-0123456789abcdef"}),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        moto.calls().get("AssumeRole").copied().unwrap_or(0) > 2,
        "a throttled hop was assumed again: {:?}",
        moto.calls()
    );
    moto.set_faults(json!({}));
}

#[test]
fn a_refused_list_call_fails_the_sync_naming_the_operation() {
    let moto = Moto::start();
    moto.seed(&["--accounts", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    moto.set_faults(json!({"deny_operations": ["ListGroupMemberships"]}));
    let output = command(&moto, &connector, &[]).output().expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ListGroupMemberships") && stderr.contains("AccessDenied"),
        "{stderr}"
    );
    // Several groups are asked at once; each once: access denied is not retried.
    let asked = moto
        .calls()
        .get("ListGroupMemberships")
        .copied()
        .unwrap_or(0);
    assert!(
        (1..=aws_access_operator::sync::fetch::IN_FLIGHT as u64).contains(&asked),
        "access denied is not retried: {asked} calls"
    );
}

/// An endpoint that accepts connections and never answers (a black hole, as a broken proxy or
/// a dropped route looks) fails each attempt after `--aws-attempt-timeout`, is retried like any
/// transient failure until `--aws-call-timeout` is spent, and then fails the sync naming the
/// service, the operation and the timeouts: it never hangs. The timeouts are shortened here
/// (the defaults, 20 s and 90 s, are the same arithmetic: see `aws::caller`'s tests); the
/// attempts are counted from the connections the hole accepted.
#[test]
fn an_endpoint_that_never_answers_fails_the_sync_within_the_call_timeout() {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", hole.local_addr().expect("addr"));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        // Accept and hold every connection, reading nothing and answering nothing.
        let mut held = Vec::new();
        for stream in hole.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let mut command = Command::new(env!("CARGO_BIN_EXE_aws-access-operator"));
    command.args(["sync", "-f"]).arg(&connector).args([
        "--aws-attempt-timeout",
        "1s",
        "--aws-call-timeout",
        "3s",
        "--rate-limits",
        FAST,
    ]);
    for variable in AMBIENT_AWS_VARIABLES {
        command.env_remove(variable);
    }
    command
        .env("HOME", dir.path())
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start sync");
    // Three seconds of attempts and waits end well within this; without a bound on the call
    // the sync would wait here forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the sync hung on an endpoint that never answers");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    for part in [
        "GetCallerIdentity: sts did not answer within 3s (--aws-call-timeout)",
        "of at most 1s each (--aws-attempt-timeout)",
    ] {
        assert!(stderr.contains(part), "{part:?} in: {stderr}");
    }
    // Three one-second attempts fit the budget, with the backoff between them (each attempt a
    // connection of its own: the SDK drops one that timed out).
    let attempts = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=4).contains(&attempts), "{attempts} attempts: {stderr}");
}

/// A slow endpoint that answers within an attempt is waited for at the default timeouts, not
/// retried: moto answers GetCallerIdentity and ListInstances 10 s late.
#[test]
fn a_slow_endpoint_that_answers_within_an_attempt_is_waited_for() {
    let moto = Moto::start();
    moto.seed(&[]);
    moto.reset_calls();
    moto.set_faults(json!({"slow_operations": {"GetCallerIdentity": 10, "ListInstances": 10}}));
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let (inventory, stderr) = succeeded(command(&moto, &connector, &[]).output().expect("run"));
    assert!(
        inventory["accounts"]
            .as_array()
            .is_some_and(|a| a.len() >= 2),
        "{stderr}"
    );
    let calls = moto.calls();
    assert_eq!(calls.get("GetCallerIdentity"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("ListInstances"), Some(&1), "{calls:?}");
    let retried = stderr.contains("retrying") || stderr.contains("timed out");
    assert!(!retried, "{stderr}");
}

#[test]
fn invalid_connectors_never_reach_aws() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({"roleArn": "arn:aws:iam::123:role/x"}));
    let output = command(&moto, &connector, &[]).output().expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("spec.auth.roleArn"));
    assert!(
        moto.calls().is_empty(),
        "no AWS call for an invalid connector"
    );
}

/// DESIGN §6: total calls within 1.25 × the lower bound — the pages the data needs, plus one
/// call per item only where AWS has no list call — with the listing strategy that the org's
/// shape makes cheapest. The table is printed for the record (`--nocapture`).
#[test]
fn calls_stay_within_15_percent_of_the_lower_bound() {
    let moto = Moto::start();
    let seed = moto.seed(&["--ous", "4"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let inventory = sync(&moto, &connector, &[]);
    let n = |key: &str| seed[key].as_array().map_or(0, Vec::len);

    let assignments = seed["assignments"].as_array().expect("assignments");
    let mut per_pair: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut per_principal: BTreeMap<String, usize> = BTreeMap::new();
    let mut accounts_of_set: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in assignments {
        let (ps, account) = (
            a["permissionSetArn"].as_str().unwrap_or_default(),
            a["accountId"].as_str().unwrap_or_default(),
        );
        *per_pair.entry((ps.into(), account.into())).or_default() += 1;
        *per_principal
            .entry(a["principalId"].as_str().unwrap_or_default().into())
            .or_default() += 1;
        accounts_of_set
            .entry(ps.into())
            .or_default()
            .insert(account.into());
    }
    let principals: Vec<String> = seed["ssoUsers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(seed["ssoGroups"].as_array().into_iter().flatten())
        .map(|p| p["id"].as_str().unwrap_or_default().to_string())
        .collect();
    // The pairs are found per permission set or per account, whichever is cheaper.
    let per_set_discovery: u64 = seed["permissionSets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            pages(
                accounts_of_set
                    .get(p["arn"].as_str().unwrap_or_default())
                    .map_or(0, BTreeSet::len),
            )
        })
        .sum();
    let per_account_discovery: u64 = strings(&seed["accounts"])
        .iter()
        .map(|account| {
            pages(
                accounts_of_set
                    .values()
                    .filter(|accounts| accounts.contains(account))
                    .count(),
            )
        })
        .sum();
    let per_account_cost: u64 = per_set_discovery.min(per_account_discovery)
        + per_pair.values().map(|&c| pages(c)).sum::<u64>();
    let per_principal_cost: u64 = principals
        .iter()
        .map(|p| pages(per_principal.get(p).copied().unwrap_or(0)))
        .sum();
    let memberships: u64 = seed["ssoGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| pages(strings(&g["members"]).len()))
        .sum();

    let bound: BTreeMap<&str, u64> = BTreeMap::from([
        ("GetCallerIdentity", 1),
        ("ListRoots", 1),
        ("ListOrganizationalUnitsForParent", tree_pages(&seed).0),
        ("ListAccountsForParent", tree_pages(&seed).1),
        (
            "GetAccountAuthorizationDetails",
            pages(n("iamUsers") + n("iamGroups") + n("iamRoles")),
        ),
        ("ListInstances", 1),
        ("ListUsers", pages(n("ssoUsers"))),
        ("ListGroups", pages(n("ssoGroups"))),
        ("ListGroupMemberships", memberships),
        ("ListPermissionSets", pages(n("permissionSets"))),
        ("DescribePermissionSet", n("permissionSets") as u64),
        (
            "assignments (cheapest listing)",
            per_account_cost.min(per_principal_cost),
        ),
    ]);
    let lower: u64 = bound.values().sum();
    let made = calls(&inventory);
    let total: u64 = made.values().sum();
    eprintln!("operation                                   made");
    for (operation, count) in &made {
        eprintln!("{operation:<42} {count:>5}");
    }
    eprintln!("lower bound by operation: {bound:?}");
    eprintln!(
        "assignment listing: per-account {per_account_cost}, per-principal {per_principal_cost}; chose {}",
        inventory["stats"]["assignmentListing"]
    );
    eprintln!(
        "total {total} calls, lower bound {lower}, ratio {:.3}",
        total as f64 / lower as f64
    );
    assert!(
        (total as f64) <= 1.15 * lower as f64,
        "{total} calls against a lower bound of {lower}"
    );
    let chosen = if per_account_cost <= per_principal_cost {
        "perAccount"
    } else {
        "perPrincipal"
    };
    assert_eq!(
        inventory["stats"]["assignmentListing"], chosen,
        "the cheaper listing was chosen"
    );
}

/// With fewer accounts than permission sets, the (account, permission set) pairs are found
/// per account (ListPermissionSetsProvisionedToAccount), not per permission set, and the
/// assignments listed are exactly the seeded ones.
#[test]
fn pairs_are_found_per_account_when_accounts_are_fewer() {
    let moto = Moto::start();
    let seed = moto.seed(&[
        "--accounts",
        "2",
        "--permission-sets",
        "8",
        "--sso-users",
        "30",
        "--sso-groups",
        "3",
        "--assigned-users",
        "20",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let inventory = sync(&moto, &connector, &[]);
    assert_eq!(inventory["stats"]["assignmentListing"], "perAccount");
    assert_eq!(inventory["stats"]["pairDiscovery"], "perAccount");
    let made = calls(&inventory);
    // Every page of every account, and nothing more.
    let expected: u64 = strings(&seed["accounts"])
        .iter()
        .map(|account| {
            let sets: BTreeSet<&str> = seed["assignments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["accountId"] == account.as_str())
                .filter_map(|a| a["permissionSetArn"].as_str())
                .collect();
            pages(sets.len())
        })
        .sum();
    assert_eq!(
        made.get("ListPermissionSetsProvisionedToAccount"),
        Some(&expected),
        "{made:?}"
    );
    assert!(!made.contains_key("ListAccountsForProvisionedPermissionSet"));
    let key = |a: &Value| {
        (
            a["accountId"].as_str().unwrap_or_default().to_string(),
            a["permissionSetArn"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            a["principalType"].as_str().unwrap_or_default().to_string(),
            a["principalId"].as_str().unwrap_or_default().to_string(),
        )
    };
    let listed: BTreeSet<_> = inventory["assignments"]
        .as_array()
        .expect("assignments")
        .iter()
        .map(key)
        .collect();
    let seeded: BTreeSet<_> = seed["assignments"]
        .as_array()
        .expect("assignments")
        .iter()
        .map(key)
        .collect();
    assert_eq!(listed, seeded);
}

#[test]
fn access_keys_are_synced_only_when_asked() {
    let moto = Moto::start();
    let seed = moto.seed(&["--accounts", "1", "--access-keys", "3"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(dir.path(), json!({}));
    let without = sync(&moto, &connector, &[]);
    assert!(
        without["iamUsers"]
            .as_array()
            .expect("users")
            .iter()
            .all(|u| u.get("accessKeys").is_none())
    );
    assert!(!calls(&without).contains_key("ListAccessKeys"));

    let path = dir.path().join("keys.yaml");
    with_sync(&connector, &path, json!({"accessKeys": true}));
    assert!(!calls(&without).contains_key("GenerateCredentialReport"));
    moto.reset_calls();
    let with = sync(&moto, &path, &[]);
    let users = with["iamUsers"].as_array().expect("users");
    for user in users {
        let name = user["name"].as_str().expect("name");
        let expected = strings(&seed["accessKeys"][name]);
        let keys: Vec<String> = user["accessKeys"]
            .as_array()
            .expect("keys listed for every user")
            .iter()
            .map(|k| k["id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(keys, expected, "{name}");
        for key in user["accessKeys"].as_array().expect("keys") {
            assert_eq!(key["status"], "Active");
        }
    }
    // The credential report says which users have keys, and when each was last used: keys
    // are listed only for those users, and no key's last use is asked one by one.
    let made = moto.calls();
    assert_eq!(with["stats"]["accessKeysFrom"], "credentialReport");
    assert_eq!(made.get("GetCredentialReport"), Some(&1));
    assert!(
        made.get("GenerateCredentialReport")
            .is_some_and(|n| *n >= 1)
    );
    assert_eq!(
        made.get("ListAccessKeys"),
        Some(&3),
        "one call per user with keys, of {} users",
        users.len()
    );
    assert_eq!(made.get("GetAccessKeyLastUsed"), None);
    assert!(
        !with.to_string().contains("SecretAccessKey"),
        "no secrets in the inventory"
    );

    // Without the report (denied), every user's keys are listed and each key's last use
    // asked: the same inventory, at a higher price, and the log says so.
    moto.reset_calls();
    moto.set_faults(json!({"deny_operations": ["GenerateCredentialReport"]}));
    let (per_user, stderr) = succeeded(command(&moto, &path, &[]).output().expect("run sync"));
    assert!(
        stderr.contains("IAM credential report unavailable") && stderr.contains("AccessDenied"),
        "{stderr}"
    );
    assert_eq!(per_user["stats"]["accessKeysFrom"], "perUser");
    assert_eq!(content(&per_user), content(&with));
    let made = moto.calls();
    assert_eq!(made.get("ListAccessKeys"), Some(&(users.len() as u64)));
    assert_eq!(made.get("GetAccessKeyLastUsed"), Some(&3));
}

/// Even at `RUST_LOG=trace`, no credential reaches the logs: the SDK's request and signing
/// traces (which carry session tokens) are capped.
#[test]
fn trace_logs_carry_no_credentials() {
    let moto = Moto::start();
    moto.seed(&["--accounts", "1", "--sso-users", "1", "--iam-users", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(
        dir.path(),
        json!({"roleArn": "arn:aws:iam::123456789012:role/access-operator",
            "externalId": "org-external-id-0123456789abcdef"}),
    );
    let output = command(&moto, &connector, &[])
        .env("RUST_LOG", "trace")
        .output()
        .expect("run sync");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.lines().count() > 10, "trace logging is on: {stderr}");
    for secret in [
        "x-amz-security-token:",
        "SessionToken",
        "SecretAccessKey",
        "Signature=",
        "org-external-id-0123456789abcdef",
    ] {
        assert!(!stderr.contains(secret), "{secret} in the logs");
    }
}

/// Outside Kubernetes, a first hop's external ID named by `globalExternalIdSecretRef` comes
/// from `$AWS_ACCESS_OPERATOR_GLOBAL_EXTERNAL_ID`; without it the command says which variable.
#[test]
fn a_first_hop_external_id_from_the_environment() {
    let moto = Moto::start();
    moto.seed(&["--accounts", "1", "--sso-users", "1", "--iam-users", "1"]);
    let broker = "arn:aws:iam::999988887777:role/broker";
    let global_id = "broker-external-id-0123456789abcdef";
    moto.set_faults(json!({"require_external_id": {broker: global_id}}));
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = write_connector(
        dir.path(),
        json!({"globalRoleArn": broker,
            "globalExternalIdSecretRef": {"name": "broker-id", "key": "externalId"},
            "roleArn": "arn:aws:iam::123456789012:role/access-operator",
            "externalId": "org-external-id-0123456789abcdef"}),
    );
    let output = command(&moto, &connector, &[]).output().expect("run sync");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("spec.auth.globalExternalIdSecretRef")
            && stderr.contains("AWS_ACCESS_OPERATOR_GLOBAL_EXTERNAL_ID"),
        "{stderr}"
    );
    let (inventory, stderr) = succeeded(
        command(&moto, &connector, &[])
            .env("AWS_ACCESS_OPERATOR_GLOBAL_EXTERNAL_ID", global_id)
            .output()
            .expect("run sync"),
    );
    assert_eq!(inventory["identity"]["account"], "123456789012");
    assert!(!stderr.contains(global_id));
}

/// `sync.memberAccounts`: every ACTIVE member account is entered through the role assumed
/// there (moto answers in that account), its IAM read with the account id on every item; an
/// account whose role is missing is reported AccessDenied, naming the role, and the others are
/// synced. One AssumeRole per account, and only the pages each account's IAM needs.
#[test]
fn member_accounts_are_entered_and_one_without_the_role_is_reported() {
    let moto = Moto::start();
    let seed = moto.seed(&[
        "--accounts",
        "4",
        "--member-iam-users",
        "2",
        "--members-without-role",
        "1",
        "--iam-users",
        "3",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = write_connector(dir.path(), json!({}));
    let connector = dir.path().join("members.json");
    with_sync(
        &plain,
        &connector,
        json!({"memberAccounts": {"enabled": true, "concurrency": 2}, "policies": true}),
    );
    moto.set_faults(json!({"assume_role_needs_role": true}));
    moto.reset_calls();
    let inventory = sync(&moto, &connector, &[]);

    let seeded: BTreeMap<String, Value> =
        serde_json::from_value(seed["memberAccounts"].clone()).expect("member accounts");
    assert_eq!(seeded.len(), 4);
    let members = inventory["memberAccounts"]
        .as_array()
        .expect("memberAccounts");
    let own = inventory["identity"]["account"]
        .as_str()
        .unwrap_or("123456789012");
    assert!(
        members.iter().all(|m| m["accountId"] != own),
        "the connector's own account is the IAM stream's"
    );
    assert_eq!(members.len(), seeded.len(), "{members:?}");
    let mut pages_needed = pages(n_iam(&inventory));
    for member in members {
        let account = member["accountId"].as_str().expect("account id");
        let made = &seeded[account];
        if made["role"] == true {
            assert_eq!(member["outcome"], "Entered", "{member}");
            let names = |key: &str| -> BTreeSet<String> {
                member[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| i["name"].as_str().unwrap_or_default().to_string())
                    .collect()
            };
            assert_eq!(
                names("iamUsers"),
                strings(&made["iamUsers"]).into_iter().collect()
            );
            assert_eq!(
                names("iamGroups"),
                strings(&made["iamGroups"]).into_iter().collect()
            );
            assert_eq!(
                names("iamRoles"),
                strings(&made["iamRoles"]).into_iter().collect()
            );
            for key in ["iamUsers", "iamGroups", "iamRoles"] {
                assert!(
                    member[key]
                        .as_array()
                        .expect("items")
                        .iter()
                        .all(|i| i["accountId"] == account),
                    "every item names its account: {member}"
                );
            }
            let group = &member["iamGroups"][0];
            assert_eq!(group["members"], json!([made["iamUsers"][0]]));
            assert_eq!(
                group["policies"]["managed"][0]["arn"],
                format!("arn:aws:iam::{account}:policy/admin")
            );
            pages_needed += pages(
                strings(&made["iamUsers"]).len()
                    + strings(&made["iamGroups"]).len()
                    + strings(&made["iamRoles"]).len(),
            );
        } else {
            assert_eq!(member["outcome"], "AccessDenied", "{member}");
            let message = member["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!(
                    "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
                )) && message.contains("spec.sync.memberAccounts.roleName"),
                "{message}"
            );
            assert!(member["iamUsers"].as_array().is_none_or(Vec::is_empty));
        }
    }
    let counted = calls(&inventory);
    assert_eq!(counted, moto.calls());
    assert_eq!(
        counted["AssumeRole"],
        seeded.len() as u64,
        "one per account"
    );
    assert_eq!(counted["GetAccountAuthorizationDetails"], pages_needed);

    // The connector's own account's policies come with the same pages.
    let own_group = &inventory["iamGroups"][0];
    assert_eq!(own_group["policies"]["managed"][0]["name"], "read-only");
    assert_eq!(
        inventory["iamUsers"][0]["policies"]["inline"],
        json!(["list-buckets"])
    );
    assert!(inventory["iamUsers"][0].get("accountId").is_none());
}

/// Users, groups and roles of the connector's own account in an inventory.
fn n_iam(inventory: &Value) -> usize {
    ["iamUsers", "iamGroups", "iamRoles"]
        .iter()
        .map(|key| inventory[key].as_array().map_or(0, Vec::len))
        .sum()
}

/// The four calls that say what a permission set carries.
const CONTENTS_CALLS: [&str; 4] = [
    "ListManagedPoliciesInPermissionSet",
    "ListCustomerManagedPolicyReferencesInPermissionSet",
    "GetInlinePolicyForPermissionSet",
    "GetPermissionsBoundaryForPermissionSet",
];

/// `sync.policies`: each permission set's AWS managed policies, customer managed policy
/// references, inline policy and permissions boundary, four calls a set, kept in the cache with
/// its details (the next sync asks none of them); without the setting, none is asked or shown.
#[test]
fn permission_sets_say_what_they_carry_with_policies() {
    let moto = Moto::start();
    let seed = moto.seed(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = write_connector(dir.path(), json!({}));
    let connector = dir.path().join("policies.json");
    with_sync(&plain, &connector, json!({"policies": true}));
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8 path");

    moto.reset_calls();
    let inventory = sync(&moto, &connector, &["--state-dir", state_arg]);
    let sets = seed["permissionSets"].as_array().expect("permission sets");
    for set in sets {
        let synced = inventory["permissionSets"]
            .as_array()
            .expect("permission sets")
            .iter()
            .find(|p| p["arn"] == set["arn"])
            .expect("synced");
        let expected = match set.get("contents") {
            Some(contents) => contents.clone(),
            None => json!({"awsManagedPolicies": [], "customerManagedPolicies": []}),
        };
        assert_eq!(synced["contents"], expected, "{}", set["name"]);
    }
    assert!(
        sets[0].get("contents").is_some(),
        "the first set carries something"
    );
    let made = calls(&inventory);
    assert_eq!(made, moto.calls());
    for operation in CONTENTS_CALLS {
        assert_eq!(
            made[operation],
            sets.len() as u64,
            "{operation}: one per set"
        );
    }

    // Cached with the details: the next sync asks nothing about them.
    moto.reset_calls();
    let again = sync(&moto, &connector, &["--state-dir", state_arg]);
    assert_eq!(content(&again), content(&inventory));
    let made = calls(&again);
    for operation in CONTENTS_CALLS.iter().chain(&["DescribePermissionSet"]) {
        assert!(!made.contains_key(*operation), "{operation}: {made:?}");
    }

    // Without the setting: not asked, not shown, even from a cache that has them.
    moto.reset_calls();
    let without = sync(&moto, &plain, &["--state-dir", state_arg]);
    assert!(
        without["permissionSets"]
            .as_array()
            .expect("permission sets")
            .iter()
            .all(|p| p.get("contents").is_none())
    );
    assert!(without["iamUsers"][0].get("policies").is_none());
    for operation in CONTENTS_CALLS {
        assert!(!moto.calls().contains_key(operation), "{operation}");
    }
}

/// A CloudTrail event as the launcher takes it (`/_launcher/cloudtrail/events`).
fn trail(name: &str, source: &str, at: &str, username: Option<&str>, record: Value) -> Value {
    let mut record = record;
    record["eventName"] = json!(name);
    record["eventSource"] = json!(source);
    record["eventTime"] = json!(at);
    let mut event = json!({"eventName": name, "eventSource": source, "eventTime": at,
        "cloudTrailEvent": record.to_string()});
    if let Some(username) = username {
        event["username"] = json!(username);
    }
    event
}

fn seed_trail(moto: &Moto, events: &[Value]) {
    let (status, body) = crate::support::http::request(
        "POST",
        &format!("{}/_launcher/cloudtrail/events", moto.endpoint),
        &Value::from(events.to_vec()).to_string(),
    )
    .expect("seed events");
    assert_eq!(status, 200, "{body}");
}

/// `sync.lastSignIn`: each Identity Center user's newest successful Authenticate or Federate
/// from sso.amazonaws.com, by user id when the event names it and by user name otherwise;
/// failed sign-ins and other sources do not count. The next sync reads only from shortly before
/// the newest sign-in found, and keeps what the earlier one found.
#[test]
fn last_sign_in_is_read_from_cloudtrail_from_where_the_last_sync_stopped() {
    let moto = Moto::start();
    let seed = moto.seed(&[]);
    let user = |i: usize| seed["ssoUsers"][i].clone();
    let name = |i: usize| user(i)["userName"].as_str().expect("name").to_string();
    let id = |i: usize| user(i)["id"].as_str().expect("id").to_string();
    const SSO: &str = "sso.amazonaws.com";
    let mut events = vec![
        trail(
            "Authenticate",
            SSO,
            "2026-11-10T08:00:00Z",
            Some(&name(0)),
            json!({}),
        ),
        trail(
            "Authenticate",
            SSO,
            "2026-11-20T09:00:00Z",
            Some(&name(0)),
            json!({}),
        ),
        // Named by id only, in the record.
        trail(
            "Federate",
            SSO,
            "2026-11-21T10:00:00Z",
            None,
            json!({"userIdentity": {"type": "IdentityCenterUser", "onBehalfOf": {"userId": id(1)}}}),
        ),
        trail(
            "Authenticate",
            SSO,
            "2026-11-21T11:00:00Z",
            Some(&name(2)),
            json!({"errorCode": "InvalidPassword"}),
        ),
        trail(
            "Federate",
            "signin.amazonaws.com",
            "2026-11-21T12:00:00Z",
            Some(&name(3)),
            json!({}),
        ),
    ];
    // Enough older events to take several pages.
    for minute in 0..10 {
        events.push(trail(
            "Authenticate",
            SSO,
            &format!("2026-11-01T00:{minute:02}:00Z"),
            Some(&name(4)),
            json!({}),
        ));
    }
    seed_trail(&moto, &events);
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = write_connector(dir.path(), json!({}));
    let connector = dir.path().join("sign-in.json");
    with_sync(&plain, &connector, json!({"lastSignIn": true}));
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8 path");

    moto.reset_calls();
    let first = sync(&moto, &connector, &["--state-dir", state_arg]);
    let last = |inventory: &Value, i: usize| -> Option<String> {
        inventory["ssoUsers"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["id"] == user(i)["id"])
            .and_then(|u| u["lastSignInAt"].as_str().map(str::to_string))
    };
    assert_eq!(last(&first, 0).as_deref(), Some("2026-11-20T09:00:00Z"));
    assert_eq!(last(&first, 1).as_deref(), Some("2026-11-21T10:00:00Z"));
    assert_eq!(last(&first, 2), None, "a failed sign-in");
    assert_eq!(last(&first, 3), None, "another source");
    assert_eq!(last(&first, 4).as_deref(), Some("2026-11-01T00:09:00Z"));
    assert_eq!(last(&first, 5), None);
    // Every page of both queries, at 3 a page: 13 Authenticate, 2 Federate.
    let made = calls(&first);
    assert_eq!(made, moto.calls());
    assert_eq!(made["LookupEvents"], pages(13) + pages(2));

    // The next sync reads from 15 minutes before 10:00 on the 21st: the Federate at 10:00 and
    // a new Authenticate, one page each; the earlier sign-ins come from the last sync.
    events.push(trail(
        "Authenticate",
        SSO,
        "2026-11-22T07:00:00Z",
        Some(&name(2)),
        json!({}),
    ));
    seed_trail(&moto, &events);
    moto.reset_calls();
    let second = sync(&moto, &connector, &["--state-dir", state_arg]);
    assert_eq!(calls(&second)["LookupEvents"], 2, "{:?}", calls(&second));
    assert_eq!(last(&second, 0).as_deref(), Some("2026-11-20T09:00:00Z"));
    assert_eq!(last(&second, 1).as_deref(), Some("2026-11-21T10:00:00Z"));
    assert_eq!(last(&second, 2).as_deref(), Some("2026-11-22T07:00:00Z"));
    assert_eq!(last(&second, 4).as_deref(), Some("2026-11-01T00:09:00Z"));

    // LookupEvents refused: the sync goes through with a warning naming the permission, and
    // the sign-ins found before are kept.
    moto.set_faults(json!({"deny_operations": ["LookupEvents"]}));
    let (denied, log) = succeeded(
        command(&moto, &connector, &["--state-dir", state_arg])
            .output()
            .expect("run sync"),
    );
    moto.set_faults(json!({}));
    assert!(log.contains("cloudtrail:LookupEvents"), "{log}");
    assert_eq!(last(&denied, 2).as_deref(), Some("2026-11-22T07:00:00Z"));
    assert_eq!(last(&denied, 0).as_deref(), Some("2026-11-20T09:00:00Z"));

    // Without the setting: no CloudTrail call, no sign-in shown.
    moto.reset_calls();
    let without = sync(&moto, &plain, &["--state-dir", state_arg]);
    assert!(!moto.calls().contains_key("LookupEvents"));
    assert_eq!(last(&without, 0), None);
}
