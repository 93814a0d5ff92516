//! `plan` and `apply` through the real binary against moto: every action on a mixed
//! directory, offline plans that make no AWS call, and apply's exit code.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::moto::{
    AMBIENT_AWS_VARIABLES, Moto, SMALL_ORG, seeded_accounts_in, seeded_unit,
};

const FAST: &str = "sts=1000,iam=1000,organizations=1000,identitycenter=1000";

fn run(moto: &Moto, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aws-access-operator"));
    command.args(args).args(["--rate-limits", FAST]);
    for variable in AMBIENT_AWS_VARIABLES {
        command.env_remove(variable);
    }
    for (key, value) in moto.env() {
        command.env(key, value);
    }
    command.output().expect("run")
}

fn write(dir: &Path, name: &str, documents: &[Value]) {
    let text: Vec<String> = documents
        .iter()
        .map(|d| serde_json::to_string(d).expect("json"))
        .collect();
    std::fs::write(dir.join(name), text.join("\n---\n")).expect("write");
}

fn grant(name: &str, principal: Value, target: Value, extra: Value) -> Value {
    let mut spec =
        json!({"connectorRef": {"name": "org"}, "principal": principal, "target": target});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessGrant", "metadata": {"name": name, "namespace": "aws"}, "spec": spec})
}

fn user(index: usize) -> Value {
    json!({"kind": "SsoUser", "name": format!("user-{index:02}@example.com")})
}

fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap_or_default().to_string(),
                g["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn plan_of_a_mixed_directory_then_apply() {
    let moto = Moto::start();
    let seed = moto.seed(SMALL_ORG);
    let dir = tempfile::tempdir().expect("tempdir");
    let grants = dir.path().join("grants");
    std::fs::create_dir(&grants).expect("mkdir");
    write(
        dir.path(),
        "connector.yaml",
        &[
            json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org", "namespace": "aws"},
        "spec": {"region": "us-east-1", "grantPolicy": {"deniedPermissionSets": ["PermissionSet01"]}}}),
        ],
    );
    let ps = |name: &str| json!({"kind": "PermissionSet", "permissionSet": name, "accountId": "123456789012"});
    write(
        &grants,
        "grants.yaml",
        &[
            grant("create", user(3), ps("PermissionSet00"), json!({})),
            grant(
                "existing",
                user(0),
                json!({"kind": "SsoGroupMembership", "group": "group-00"}),
                json!({}),
            ),
            grant("denied", user(3), ps("PermissionSet01"), json!({})),
            grant(
                "invalid",
                json!({"kind": "IamUser", "name": "iam-user-00"}),
                ps("PermissionSet00"),
                json!({}),
            ),
            grant(
                "unknown",
                user(3),
                json!({"kind": "SsoGroupMembership", "group": "nope"}),
                json!({}),
            ),
            grant(
                "expired-present",
                user(1),
                json!({"kind": "SsoGroupMembership", "group": "group-00"}),
                json!({"expiresAt": "2020-01-01T00:00:00Z"}),
            ),
            grant(
                "expired-absent",
                json!({"kind": "IamUser", "name": "iam-user-00"}),
                json!({"kind": "IamGroupMembership", "group": "iam-group-00"}),
                json!({"expiresAt": "2020-01-01T00:00:00Z"}),
            ),
            grant(
                "other-connector",
                user(3),
                ps("PermissionSet00"),
                json!({"connectorRef": {"name": "elsewhere"}}),
            ),
        ],
    );
    let dir_arg = dir.path().to_str().expect("utf-8");

    // What the grants name, looked up in AWS: no sync of the organization.
    moto.reset_calls();
    let output = run(&moto, &["plan", "-f", dir_arg, "--output", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let targeted: Value = serde_json::from_slice(&output.stdout).expect("plan JSON");
    let looked_up = moto.calls();
    for listing in [
        "ListUsers",
        "ListGroups",
        "ListAccountsForParent",
        "GetAccountAuthorizationDetails",
    ] {
        assert!(
            !looked_up.contains_key(listing),
            "a plan of a few grants lists no whole directory ({listing}): {looked_up:?}"
        );
    }
    assert_eq!(targeted["unmanagedFrom"], "notLookedFor");
    assert_eq!(targeted["unmanaged"], json!([]));

    // With --unmanaged, the whole organization is synced: the same plan, and the access no
    // grant declares.
    let output = run(
        &moto,
        &["plan", "-f", dir_arg, "--output", "json", "--unmanaged"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan: Value = serde_json::from_slice(&output.stdout).expect("plan JSON");
    assert_eq!(plan["unmanagedFrom"], "sync");
    assert_eq!(
        actions(&targeted),
        actions(&plan),
        "the same plan either way"
    );
    let access = |plan: &Value| -> Vec<String> {
        plan["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .map(|g| g["access"].to_string())
            .collect()
    };
    assert_eq!(
        access(&targeted),
        access(&plan),
        "described with the same names"
    );
    let expected = [
        ("create", "create"),
        ("existing", "noChange"),
        ("denied", "notAllowed"),
        ("invalid", "invalid"),
        ("unknown", "unresolved"),
        // Expired, and present in AWS, but not created through the ledger: left in place.
        ("expired-present", "expired"),
        ("expired-absent", "expired"),
        ("other-connector", "invalid"),
    ];
    let planned = actions(&plan);
    for (name, action) in expected {
        assert!(
            planned.contains(&(name.to_string(), action.to_string())),
            "{name} should be {action}: {planned:?}"
        );
    }
    let detail = |name: &str| {
        plan["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .find(|g| g["name"] == name)
            .expect("line")["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(detail("denied").contains("deniedPermissionSets"));
    assert!(detail("invalid").contains("spec.principal.kind"));
    assert!(detail("unknown").contains("GroupNotFound"));
    assert!(detail("other-connector").contains("spec.connectorRef"));
    // Unmanaged: everything the seed made that no grant here declares.
    let seeded_access = seed["assignments"].as_array().map_or(0, Vec::len)
        + seed["ssoGroups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["members"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
        + 3; // IAM: iam-user-01 in one group, iam-user-02 in two
    let declared_existing = 2; // "existing" and "expired-present"
    assert_eq!(
        plan["unmanaged"].as_array().map(Vec::len),
        Some(seeded_access - declared_existing)
    );

    // The same plan offline, from an inventory file: no AWS call at all.
    let inventory = dir.path().join("inventory.json");
    assert!(
        run(
            &moto,
            &[
                "sync",
                "-f",
                &dir.path().join("connector.yaml").to_string_lossy(),
                "-o",
                &inventory.to_string_lossy()
            ]
        )
        .status
        .success()
    );
    moto.reset_calls();
    let output = run(
        &moto,
        &[
            "plan",
            "-f",
            dir_arg,
            "--inventory",
            &inventory.to_string_lossy(),
        ],
    );
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("GRANT") && table.contains("ACTION") && table.contains("aws/create"),
        "{table}"
    );
    assert!(
        table.contains("user user-03@example.com: PermissionSet00 on account 123456789012"),
        "{table}"
    );
    assert!(table.contains("Unmanaged access"), "{table}");
    assert!(
        moto.calls().is_empty(),
        "an offline plan calls nothing: {:?}",
        moto.calls()
    );

    // apply: creates and revokes what the plan says, refuses the rest, and exits 1 for them.
    let output = run(&moto, &["apply", "-f", dir_arg, "--output", "json"]);
    assert_eq!(output.status.code(), Some(1), "refused grants fail apply");
    let applied: Value = serde_json::from_slice(&output.stdout).expect("json");
    let result = |name: &str| {
        applied["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .find(|g| g["name"] == name)
            .expect("line")["result"]
            .clone()
    };
    assert_eq!(result("create"), "granted");
    assert_eq!(
        result("expired-present"),
        "nothing to do",
        "access the operator did not create is not revoked on expiry"
    );
    assert_eq!(
        result("denied"),
        Value::Null,
        "refused grants are not applied"
    );
    let writes: Vec<String> = moto
        .calls()
        .into_keys()
        .filter(|op| op.starts_with("Create") || op.starts_with("Delete"))
        .collect();
    assert_eq!(writes, ["CreateAccountAssignment"]);

    // Without the refused grants, apply succeeds and a second plan has nothing to do.
    write(
        &grants,
        "grants.yaml",
        &[
            grant("create", user(3), ps("PermissionSet00"), json!({})),
            grant(
                "existing",
                user(0),
                json!({"kind": "SsoGroupMembership", "group": "group-00"}),
                json!({}),
            ),
            grant(
                "member",
                json!({"kind": "IamUser", "name": "iam-user-00"}),
                json!({"kind": "IamGroupMembership", "group": "iam-group-01"}),
                json!({}),
            ),
        ],
    );
    let output = run(&moto, &["apply", "-f", dir_arg]);
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run(&moto, &["plan", "-f", dir_arg, "-o", "json"]);
    let plan: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert!(
        actions(&plan).iter().all(|(_, a)| a == "noChange"),
        "{plan}"
    );
}

/// `apply` keeps the ownership ledger in its state directory: two grants that declare the same
/// access create it once, expiring one keeps it for the other, expiring both revokes it once,
/// and access it adopted is never revoked by an expiry. Writes are counted from moto's
/// recording, which also counts duplicates moto would quietly accept.
#[test]
fn apply_keeps_a_ledger_of_what_it_created() {
    let moto = Moto::start();
    moto.seed(&[
        "--accounts",
        "2",
        "--sso-users",
        "6",
        "--sso-groups",
        "2",
        "--iam-users",
        "2",
        "--permission-sets",
        "2",
        "--assigned-users",
        "2",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state");
    let grants = dir.path().join("grants");
    std::fs::create_dir(&grants).expect("mkdir");
    write(
        dir.path(),
        "connector.yaml",
        &[
            json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}}),
        ],
    );
    let ps = json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": "123456789012"});
    let member = json!({"kind": "SsoGroupMembership", "group": "group-00"});
    let past = json!({"expiresAt": "2020-01-01T00:00:00Z"});
    let dir_arg = dir.path().to_str().expect("utf-8");
    let state_arg = state.path().to_str().expect("utf-8");
    let apply = |expected: i32| {
        let output = run(
            &moto,
            &[
                "apply",
                "-f",
                dir_arg,
                "--state-dir",
                state_arg,
                "-o",
                "json",
            ],
        );
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).expect("json")
    };
    let writes = || -> Vec<(String, u64)> {
        moto.calls()
            .into_iter()
            .filter(|(op, _)| op.starts_with("Create") || op.starts_with("Delete"))
            .collect()
    };

    // Two grants, one access; user-00 is already in group-00 (adopted).
    write(
        &grants,
        "grants.yaml",
        &[
            grant("first", user(3), ps.clone(), json!({})),
            grant("second", user(3), ps.clone(), json!({})),
            grant("existing", user(0), member.clone(), json!({})),
        ],
    );
    moto.reset_calls();
    apply(0);
    assert_eq!(
        writes(),
        [("CreateAccountAssignment".to_string(), 1)],
        "one create for two grants"
    );
    let ledger: Value = serde_json::from_slice(
        &std::fs::read(state.path().join("ledger.json")).expect("the ledger"),
    )
    .expect("ledger JSON");
    let entries: Vec<&Value> = ledger["entries"]
        .as_object()
        .expect("entries")
        .values()
        .map(|v| &v[1])
        .collect();
    assert_eq!(entries.len(), 2, "{ledger}");
    let created = entries
        .iter()
        .find(|e| e["origin"] == "Created")
        .expect("a created entry");
    assert_eq!(created["holders"].as_object().map(|h| h.len()), Some(2));
    assert!(entries.iter().any(|e| e["origin"] == "Adopted"));

    // The first expires: the second still declares the access, so nothing is revoked.
    write(
        &grants,
        "grants.yaml",
        &[
            grant("first", user(3), ps.clone(), past.clone()),
            grant("second", user(3), ps.clone(), json!({})),
            grant("existing", user(0), member.clone(), past.clone()),
        ],
    );
    moto.reset_calls();
    apply(0);
    assert!(
        writes().is_empty(),
        "kept for the other grant: {:?}",
        writes()
    );

    // Both expire: revoked once. The adopted membership stays.
    write(
        &grants,
        "grants.yaml",
        &[
            grant("first", user(3), ps.clone(), past.clone()),
            grant("second", user(3), ps.clone(), past.clone()),
        ],
    );
    moto.reset_calls();
    let applied = apply(0);
    assert_eq!(
        writes(),
        [("DeleteAccountAssignment".to_string(), 1)],
        "{applied}"
    );
    let output = run(&moto, &["plan", "-f", dir_arg, "-o", "json", "--unmanaged"]);
    let plan: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert!(actions(&plan).iter().all(|(_, a)| a == "expired"), "{plan}");
    let unmanaged = plan["unmanaged"].to_string();
    assert!(
        unmanaged.contains("user-00@example.com in Identity Center group group-00"),
        "the adopted membership is still there: {unmanaged}"
    );
}

/// A grant dropped from the files keeps its access (and is listed) unless `--prune` says the
/// files are the whole truth: then what was created for it is revoked, and what was adopted
/// stays.
#[test]
fn grants_dropped_from_the_files_are_revoked_only_with_prune() {
    let moto = Moto::start();
    moto.seed(&[
        "--accounts",
        "2",
        "--sso-users",
        "4",
        "--sso-groups",
        "2",
        "--iam-users",
        "2",
        "--permission-sets",
        "1",
        "--assigned-users",
        "1",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state");
    write(
        dir.path(),
        "connector.yaml",
        &[
            json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}}),
        ],
    );
    let grants_file = |documents: &[Value]| write(dir.path(), "grants.yaml", documents);
    let dir_arg = dir.path().to_str().expect("utf-8");
    let state_arg = state.path().to_str().expect("utf-8");
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "apply",
            "-f",
            dir_arg,
            "--state-dir",
            state_arg,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let output = run(&moto, &args);
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).expect("json")
    };
    let writes = || -> Vec<(String, u64)> {
        moto.calls()
            .into_iter()
            .filter(|(op, _)| {
                ["Create", "Delete", "Add", "Remove"]
                    .iter()
                    .any(|w| op.starts_with(w))
            })
            .collect()
    };
    grants_file(&[
        grant(
            "lone",
            json!({"kind": "IamUser", "name": "iam-user-00"}),
            json!({"kind": "IamGroupMembership", "group": "iam-group-00"}),
            json!({}),
        ),
        grant(
            "found",
            user(0),
            json!({"kind": "SsoGroupMembership", "group": "group-00"}),
            json!({}),
        ),
    ]);
    moto.reset_calls();
    apply(&[]);
    assert_eq!(writes(), [("AddUserToGroup".to_string(), 1)]);

    // Both are dropped from the files.
    grants_file(&[]);
    moto.reset_calls();
    let kept = apply(&[]);
    assert!(writes().is_empty(), "without --prune nothing is revoked");
    let listed = actions(&kept);
    assert!(
        listed.contains(&("lone".to_string(), "unlisted".to_string()))
            && listed.contains(&("found".to_string(), "unlisted".to_string())),
        "{kept}"
    );
    let pruned = apply(&["--prune"]);
    assert_eq!(
        writes(),
        [("RemoveUserFromGroup".to_string(), 1)],
        "created: revoked; adopted: left. {pruned}"
    );
    let after = apply(&[]);
    assert!(
        actions(&after).is_empty(),
        "the ledger has nothing left for them: {after}"
    );
}

/// A pipeline pays for its grants, not for the organization: planning one grant looks up its
/// user, its permission set (from the cached list in --state-dir after the first run), its
/// account and its (account, permission set) pair, in at most 10 calls whatever the size of the
/// organization. A whole sync (--unmanaged) costs many times that.
#[test]
fn a_plan_of_one_grant_pays_for_that_grant() {
    let moto = Moto::start();
    moto.seed(&[
        "--accounts",
        "8",
        "--sso-users",
        "60",
        "--sso-groups",
        "6",
        "--iam-users",
        "20",
        "--permission-sets",
        "12",
        "--assigned-users",
        "40",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "connector.yaml",
        &[
            json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
            "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}}),
        ],
    );
    let ps = json!({"kind": "PermissionSet", "permissionSet": "PermissionSet07", "accountId": "123456789012"});
    write(
        dir.path(),
        "grant.yaml",
        &[grant("one", user(42), ps, json!({}))],
    );
    let dir_arg = dir.path().to_str().expect("utf-8");
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    let plan = |extra: &[&str]| {
        moto.reset_calls();
        let mut args = vec!["plan", "-f", dir_arg, "-o", "json"];
        args.extend_from_slice(extra);
        let output = run(&moto, &args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let plan: Value = serde_json::from_slice(&output.stdout).expect("plan JSON");
        (plan, moto.calls().values().sum::<u64>(), moto.calls())
    };

    // The first run lists the permission sets to find the one named, and keeps the list.
    let (first, _, _) = plan(&["--state-dir", state_arg]);
    assert_eq!(actions(&first), [("one".to_string(), "create".to_string())]);
    // From then on, at most 10 calls.
    let (again, calls, made) = plan(&["--state-dir", state_arg]);
    assert_eq!(actions(&again), actions(&first));
    assert!(calls <= 10, "{calls} calls for one grant: {made:?}");
    assert!(
        !made.contains_key("DescribePermissionSet"),
        "the permission set came from the cached list: {made:?}"
    );
    assert!(
        again["grants"][0]["access"]
            .as_str()
            .is_some_and(|a| a.contains("user-42@example.com") && a.contains("PermissionSet07")),
        "named as the grant names it: {}",
        again["grants"][0]["access"]
    );
    let (whole, whole_calls, _) = plan(&["--unmanaged"]);
    assert_eq!(actions(&whole), actions(&first));
    eprintln!("one grant: {calls} calls; with --unmanaged: {whole_calls}");
    assert!(whole_calls > 5 * calls, "{whole_calls} against {calls}");

    // An account outside the organization is refused, as the operator refuses it.
    let outside = json!({"kind": "PermissionSet", "permissionSet": "PermissionSet07", "accountId": "999988887777"});
    write(
        dir.path(),
        "grant.yaml",
        &[grant("elsewhere", user(42), outside, json!({}))],
    );
    let (refused, _, _) = plan(&["--state-dir", state_arg]);
    assert_eq!(
        actions(&refused),
        [("elsewhere".to_string(), "notAllowed".to_string())]
    );
    assert!(
        refused["grants"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not an account of the organization")),
        "{refused}"
    );

    // Without organizations:DescribeAccount, membership is not checked (AWS refuses an
    // assignment outside the organization itself), and the plan says so on the grant.
    moto.set_faults(json!({"deny_operations": ["DescribeAccount"]}));
    let (unchecked, unchecked_calls, made) = plan(&["--state-dir", state_arg]);
    moto.set_faults(json!({}));
    assert_eq!(
        actions(&unchecked),
        [("elsewhere".to_string(), "create".to_string())]
    );
    assert!(
        unchecked["grants"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not checked whether account 999988887777")
                && d.contains("DescribeAccount denied")),
        "{unchecked}"
    );
    assert_eq!(made.get("DescribeAccount"), Some(&1), "{made:?}");
    assert!(unchecked_calls <= 10, "{unchecked_calls} calls: {made:?}");
}

/// An organizational-unit grant in `plan` and `apply`: one line per ACTIVE account under the
/// unit (nested units too), applied together; an account that left the unit is planned for
/// deletion and revoked by the next apply, the others kept.
#[test]
fn a_unit_grant_is_planned_and_applied_account_by_account() {
    let moto = Moto::start();
    // acct-01 in ou-00, acct-03 in ou-02 (under ou-00), acct-02 in ou-01, acct-00 in the root.
    let seed = moto.seed(&[
        "--accounts",
        "4",
        "--ous",
        "3",
        "--sso-users",
        "6",
        "--sso-groups",
        "2",
        "--iam-users",
        "2",
        "--permission-sets",
        "2",
        "--assigned-users",
        "2",
    ]);
    let unit = |name: &str| seeded_unit(&seed, name);
    let in_unit = |id: &str| seeded_accounts_in(&seed, id);
    let (ou0, ou2) = (unit("ou-00"), unit("ou-02"));
    let (direct, nested) = (in_unit(&ou0)[0].clone(), in_unit(&ou2)[0].clone());
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "org.yaml",
        &[
            json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
            "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}}),
            grant(
                "team-ou",
                user(5),
                json!({"kind": "PermissionSet", "permissionSet": "PermissionSet01", "organizationalUnit": ou0}),
                json!({}),
            ),
        ],
    );
    let dir_arg = dir.path().to_str().expect("utf-8");
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    let lines = |plan: &Value| -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = plan["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .filter(|g| g["name"] == "team-ou")
            .map(|g| {
                let access = g["access"].as_str().unwrap_or_default();
                let account = [&direct, &nested]
                    .into_iter()
                    .find(|a| access.contains(a.as_str()))
                    .cloned()
                    .unwrap_or_else(|| access.to_string());
                (
                    account,
                    g["action"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let json_of = |args: &[&str]| -> Value {
        let output = run(&moto, args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("plan JSON")
    };
    let mut both = vec![
        (direct.clone(), "create".to_string()),
        (nested.clone(), "create".to_string()),
    ];
    both.sort();
    assert_eq!(
        lines(&json_of(&[
            "plan",
            "-f",
            dir_arg,
            "--state-dir",
            state_arg,
            "-o",
            "json"
        ])),
        both
    );

    moto.reset_calls();
    let applied = json_of(&[
        "apply",
        "-f",
        dir_arg,
        "--state-dir",
        state_arg,
        "-o",
        "json",
    ]);
    let results: Vec<&str> = applied["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .filter_map(|g| g["result"].as_str())
        .collect();
    assert_eq!(results, ["granted", "granted"], "{applied}");
    assert_eq!(moto.calls().get("CreateAccountAssignment"), Some(&2));

    // acct-01 leaves for the root: planned for deletion, revoked by apply; acct-03 stays.
    let client = || async { aws_sdk_organizations::Client::new(&moto.sdk_config().await) };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        client()
            .await
            .move_account()
            .account_id(&direct)
            .source_parent_id(&ou0)
            .destination_parent_id(seed["root"].as_str().expect("root"))
            .send()
            .await
            .expect("move");
    });
    let mut after = vec![
        (direct.clone(), "delete".to_string()),
        (nested.clone(), "noChange".to_string()),
    ];
    after.sort();
    let plan = json_of(&[
        "plan",
        "-f",
        dir_arg,
        "--state-dir",
        state_arg,
        "-o",
        "json",
    ]);
    assert_eq!(lines(&plan), after, "{plan}");
    moto.reset_calls();
    json_of(&[
        "apply",
        "-f",
        dir_arg,
        "--state-dir",
        state_arg,
        "-o",
        "json",
    ]);
    assert_eq!(moto.calls().get("DeleteAccountAssignment"), Some(&1));
    assert_eq!(moto.calls().get("CreateAccountAssignment"), None);
}

/// PermissionSets in files: `plan` says per set what would change (each write, the inline
/// policy's difference, the calls), `apply` creates the set, then the grant that names it by
/// name is applied in the same run; a second plan has nothing to do; a change of the files is
/// planned as its difference and applied with the records in --state-dir.
#[test]
fn permission_sets_are_planned_and_applied_before_the_grants_that_name_them() {
    let moto = Moto::start();
    let seed = moto.seed(SMALL_ORG);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let set = |actions: &[&str]| {
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "PermissionSet",
            "metadata": {"name": "data", "namespace": "aws"},
            "spec": {"connectorRef": {"name": "org"}, "name": "DataReader", "sessionDuration": "2h",
                "managedPolicies": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
                "inlinePolicy": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": actions, "Resource": "*"}]}}})
    };
    let connector = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}});
    let account = seed["accounts"][0].as_str().expect("account");
    let reader = grant(
        "reader",
        user(4),
        json!({"kind": "PermissionSet", "permissionSet": "DataReader", "accountId": account}),
        json!({}),
    );
    write(
        dir.path(),
        "all.yaml",
        &[connector.clone(), set(&["s3:GetObject"]), reader.clone()],
    );
    let files = dir.path().join("all.yaml");
    let files = files.to_str().expect("path");
    let state_dir = state.to_str().expect("path");
    let plan = |command: &str| {
        let output = run(
            &moto,
            &[command, "-f", files, "--state-dir", state_dir, "-o", "json"],
        );
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code(), value)
    };
    moto.reset_calls();
    let (code, planned) = plan("plan");
    assert_eq!(code, Some(0), "{planned}");
    let line = &planned["permissionSets"][0];
    assert_eq!(line["action"], "create", "{line}");
    assert_eq!(
        line["changes"],
        json!([
            "attach arn:aws:iam::aws:policy/ReadOnlyAccess",
            "put the inline policy"
        ])
    );
    assert!(
        line["inlinePolicyDiff"]
            .as_array()
            .expect("diff")
            .iter()
            .any(|l| l.as_str() == Some("+         \"s3:GetObject\"")),
        "{line}"
    );
    assert_eq!(
        line["calls"],
        json!({"reads": 0, "writes": 3, "provisioning": 0})
    );
    assert_eq!(planned["grants"][0]["action"], "unresolved", "{planned}");
    assert!(
        planned["grants"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("declared by PermissionSet aws/data"),
        "{planned}"
    );
    let writes = |calls: std::collections::BTreeMap<String, u64>| -> Vec<String> {
        calls
            .keys()
            .filter(|k| {
                !["List", "Get", "Describe", "Assume"]
                    .iter()
                    .any(|r| k.starts_with(r))
            })
            .cloned()
            .collect()
    };
    assert!(
        writes(moto.calls()).is_empty(),
        "plan writes nothing: {:?}",
        moto.calls()
    );

    let (code, applied) = plan("apply");
    assert_eq!(code, Some(0), "{applied}");
    assert!(
        applied["permissionSets"][0]["result"]
            .as_str()
            .unwrap_or_default()
            .starts_with("applied"),
        "{applied}"
    );
    assert_eq!(applied["grants"][0]["action"], "create", "{applied}");
    let calls = moto.calls();
    assert_eq!(calls.get("CreatePermissionSet"), Some(&1));
    assert_eq!(calls.get("CreateAccountAssignment"), Some(&1));
    let records = std::fs::read_to_string(state.join("permission-sets.json")).expect("records");
    assert!(records.contains("\"origin\": \"Created\""), "{records}");

    let (_, again) = plan("plan");
    assert_eq!(again["permissionSets"][0]["action"], "noChange", "{again}");
    assert_eq!(again["permissionSets"][0]["calls"]["reads"], 7);
    assert_eq!(again["grants"][0]["action"], "noChange", "{again}");

    // The files change: the difference, and the account the grant put the set on.
    write(
        dir.path(),
        "all.yaml",
        &[connector, set(&["s3:GetObject", "s3:ListBucket"]), reader],
    );
    let (_, changed) = plan("plan");
    let line = &changed["permissionSets"][0];
    assert_eq!(line["action"], "change", "{line}");
    assert_eq!(line["changes"], json!(["put the inline policy"]));
    assert_eq!(line["provision"], json!([account]));
    let diff: Vec<&str> = line["inlinePolicyDiff"]
        .as_array()
        .expect("diff")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        diff.iter()
            .any(|l| l.starts_with('+') && l.contains("s3:ListBucket")),
        "{diff:?}"
    );
    assert!(
        diff.len() <= 6,
        "only the changed lines and their neighbours: {diff:?}"
    );
    moto.reset_calls();
    let (code, applied) = plan("apply");
    assert_eq!(code, Some(0), "{applied}");
    let calls = moto.calls();
    assert_eq!(
        calls.get("PutInlinePolicyToPermissionSet"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(calls.get("ProvisionPermissionSet"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("CreatePermissionSet"), None, "{calls:?}");
}

/// `plan` and `apply` refuse a document of the group whose kind does not exist, as `validate`
/// does: exit 1 naming it, before any AWS call.
#[test]
fn plan_refuses_a_kind_the_group_does_not_have() {
    let moto = Moto::start();
    moto.seed(SMALL_ORG);
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "all.yaml",
        &[
            json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
                "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}}),
            json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AccesGrant",
                "metadata": {"name": "typo", "namespace": "aws"}, "spec": {}}),
        ],
    );
    moto.reset_calls();
    for command in ["plan", "apply"] {
        let output = run(&moto, &[command, "-f", dir.path().to_str().expect("path")]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            said.contains("\"AccesGrant\" is not a kind of awsaccess.io"),
            "{command}: {said}"
        );
    }
    assert!(moto.calls().is_empty(), "no AWS call: {:?}", moto.calls());
}

/// Users and groups in files: `plan` says what would be created (and what a grant naming one
/// waits for), `apply` creates them with their records in --state-dir and then the grant that
/// puts the user in the group; a change of the files is one UpdateUser naming what changed.
#[test]
fn identities_are_planned_and_applied_before_the_grants_that_name_them() {
    let moto = Moto::start();
    moto.seed(SMALL_ORG);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let connector = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}});
    let jane = |title: &str| {
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "IdentityCenterUser",
            "metadata": {"name": "jane", "namespace": "aws"},
            "spec": {"connectorRef": {"name": "org"}, "userName": "jane@example.com",
                "displayName": "Jane Doe", "name": {"givenName": "Jane", "familyName": "Doe"},
                "emails": [{"value": "jane@example.com", "primary": true}], "title": title}})
    };
    let group = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "IdentityCenterGroup",
        "metadata": {"name": "oncall", "namespace": "aws"},
        "spec": {"connectorRef": {"name": "org"}, "displayName": "on-call"}});
    let member = grant(
        "jane-on-call",
        json!({"kind": "SsoUser", "name": "jane@example.com"}),
        json!({"kind": "SsoGroupMembership", "group": "on-call"}),
        json!({}),
    );
    write(
        dir.path(),
        "all.yaml",
        &[
            connector.clone(),
            jane("SRE"),
            group.clone(),
            member.clone(),
        ],
    );
    let files = dir.path().join("all.yaml");
    let files = files.to_str().expect("path");
    let state_dir = state.to_str().expect("path");
    let plan = |command: &str| {
        let output = run(
            &moto,
            &[command, "-f", files, "--state-dir", state_dir, "-o", "json"],
        );
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code(), value)
    };
    moto.reset_calls();
    let (code, planned) = plan("plan");
    assert_eq!(code, Some(0), "{planned}");
    let kinds_actions: Vec<(String, String)> = planned["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap_or_default().to_string(),
                l["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds_actions,
        [
            ("IdentityCenterUser".to_string(), "create".to_string()),
            ("IdentityCenterGroup".to_string(), "create".to_string())
        ]
    );
    assert_eq!(planned["grants"][0]["action"], "unresolved", "{planned}");
    assert!(
        planned["grants"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("declared by IdentityCenterUser aws/jane"),
        "{planned}"
    );
    let calls = moto.calls();
    assert!(
        !calls.contains_key("CreateUser") && !calls.contains_key("CreateGroup"),
        "plan writes nothing: {calls:?}"
    );

    let (code, applied) = plan("apply");
    assert_eq!(code, Some(0), "{applied}");
    assert_eq!(applied["grants"][0]["action"], "create", "{applied}");
    let calls = moto.calls();
    assert_eq!(
        (
            calls.get("CreateUser"),
            calls.get("CreateGroup"),
            calls.get("CreateGroupMembership")
        ),
        (Some(&1), Some(&1), Some(&1)),
        "{calls:?}"
    );
    let records = std::fs::read_to_string(state.join("identities.json")).expect("records");
    assert!(records.contains("\"origin\": \"Created\""), "{records}");

    let (_, again) = plan("plan");
    assert_eq!(again["identities"][0]["action"], "noChange", "{again}");
    assert_eq!(again["identities"][0]["calls"]["reads"], 1, "{again}");

    write(
        dir.path(),
        "all.yaml",
        &[connector, jane("Staff SRE"), group, member],
    );
    moto.reset_calls();
    let (code, changed) = plan("apply");
    assert_eq!(code, Some(0), "{changed}");
    assert_eq!(changed["identities"][0]["action"], "change", "{changed}");
    assert_eq!(
        changed["identities"][0]["changes"],
        json!(["title set to Staff SRE"])
    );
    let calls = moto.calls();
    assert_eq!(calls.get("UpdateUser"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("CreateUser"), None, "{calls:?}");

    // Another user name in the same object: refused, as the API server refuses it.
    let mut renamed = jane("Staff SRE");
    renamed["spec"]["userName"] = json!("jane.doe@example.com");
    write(dir.path(), "all.yaml", &[renamed]);
    let connector_file = dir.path().join("connector.yaml");
    write(
        dir.path(),
        "connector.yaml",
        &[
            json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
            "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}}),
        ],
    );
    let output = run(
        &moto,
        &[
            "apply",
            "-f",
            connector_file.to_str().expect("path"),
            "-f",
            files,
            "--state-dir",
            state_dir,
            "-o",
            "json",
        ],
    );
    let refused: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(output.status.code(), Some(1), "{refused}");
    assert_eq!(refused["identities"][0]["action"], "refused", "{refused}");
    assert!(
        refused["identities"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot change in place") && d.contains("jane@example.com")),
        "{refused}"
    );
}
