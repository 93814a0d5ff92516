//! `access` through the real binary against moto: a user's paths (direct and through groups),
//! a group's, an account's (with where it sits in the organization's tree), each with the
//! AccessGrants that declare it, from a sync or from an inventory file, compared with the
//! seeded organization.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::moto::{AMBIENT_AWS_VARIABLES, Moto};

const FAST: &str = "sts=1000,iam=1000,organizations=1000,identitycenter=1000";

fn run(moto: &Moto, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aws-access-operator"));
    command.args(args);
    for variable in AMBIENT_AWS_VARIABLES {
        command.env_remove(variable);
    }
    for (key, value) in moto.env() {
        command.env(key, value);
    }
    command.env("RATE_LIMITS", FAST);
    command.output().expect("run")
}

fn answer(output: Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("access JSON")
}

fn manifest(value: &Value) -> String {
    serde_json::to_string(value).expect("json")
}

fn write(dir: &Path, documents: &[Value]) {
    let text: Vec<String> = documents.iter().map(manifest).collect();
    std::fs::write(dir.join("org.yaml"), text.join("\n---\n")).expect("write");
}

fn grant(name: &str, principal: Value, target: Value) -> Value {
    json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessGrant",
        "metadata": {"name": name, "namespace": "aws"},
        "spec": {"connectorRef": {"name": "org"}, "principal": principal, "target": target,
            "expiresAt": "2027-01-01T00:00:00Z"}})
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// (account, permission set ARN, group id or "") of each path.
fn shape(answer: &Value) -> BTreeSet<(String, String, String)> {
    answer["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| {
            (
                text(&p["account"]["id"]),
                text(&p["permissionSet"]["arn"]),
                text(&p["via"]["id"]),
            )
        })
        .collect()
}

/// What the seeded organization says `user` (an id) can reach: (account, permission set, group
/// id or "").
fn seeded_paths_of(seed: &Value, user: &str) -> BTreeSet<(String, String, String)> {
    let groups: Vec<String> = seed["ssoGroups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| {
            g["members"]
                .as_array()
                .expect("members")
                .iter()
                .any(|m| m == user)
        })
        .map(|g| text(&g["id"]))
        .collect();
    seed["assignments"]
        .as_array()
        .expect("assignments")
        .iter()
        .filter_map(|a| {
            let principal = text(&a["principalId"]);
            let via = if principal == user {
                String::new()
            } else if groups.contains(&principal) {
                principal
            } else {
                return None;
            };
            Some((text(&a["accountId"]), text(&a["permissionSetArn"]), via))
        })
        .collect()
}

/// The names of the organizational units from the root down to `account`'s.
fn seeded_units(seed: &Value, account: &str) -> Vec<String> {
    let units = seed["organizationalUnits"].as_array().expect("units");
    let mut at = text(&seed["accountParents"][account]);
    let mut names = Vec::new();
    while let Some(unit) = units.iter().find(|u| u["id"] == at.as_str()) {
        names.insert(0, text(&unit["name"]));
        at = text(&unit["parentId"]);
    }
    names
}

#[test]
fn access_answers_match_the_seeded_organization() {
    let moto = Moto::start();
    let seed = moto.seed(&["--accounts", "4", "--ous", "5"]);
    let user0 = &seed["ssoUsers"][0];
    let group0 = &seed["ssoGroups"][0];
    // group-00's first assignment, as the seeder made it.
    let group_assignment = seed["assignments"]
        .as_array()
        .expect("assignments")
        .iter()
        .find(|a| a["principalId"] == group0["id"])
        .expect("group-00 is assigned")
        .clone();
    let set_name = seed["permissionSets"]
        .as_array()
        .expect("sets")
        .iter()
        .find(|p| p["arn"] == group_assignment["permissionSetArn"])
        .map(|p| text(&p["name"]))
        .expect("set");
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[
            json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
                "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}}),
            grant(
                "platform-assignment",
                json!({"kind": "SsoGroup", "name": "group-00"}),
                json!({"kind": "PermissionSet", "permissionSet": set_name,
                    "accountId": group_assignment["accountId"]}),
            ),
            grant(
                "user-00-in-platform",
                json!({"kind": "SsoUser", "name": user0["userName"]}),
                json!({"kind": "SsoGroupMembership", "group": "group-00"}),
            ),
        ],
    );
    let files = dir.path().to_str().expect("utf-8 path");

    // A user: every direct path and every path through the groups they are in.
    let by_user = answer(run(
        &moto,
        &[
            "access",
            "-f",
            files,
            "--principal",
            &text(&user0["userName"]),
            "-o",
            "json",
        ],
    ));
    let expected = seeded_paths_of(&seed, &text(&user0["id"]));
    assert!(
        expected.iter().any(|(_, _, via)| !via.is_empty()),
        "through groups too"
    );
    assert_eq!(shape(&by_user), expected);
    for path in by_user["paths"].as_array().expect("paths") {
        let account = text(&path["account"]["id"]);
        assert_eq!(
            path["account"]["organizationalUnits"],
            json!(seeded_units(&seed, &account)),
            "{path}"
        );
        let declared_path = path["via"]["id"] == group0["id"]
            && path["account"]["id"] == group_assignment["accountId"]
            && path["permissionSet"]["arn"] == group_assignment["permissionSetArn"];
        let declared = !path["declaredBy"]
            .as_array()
            .expect("declaredBy")
            .is_empty();
        assert_eq!(declared, declared_path, "{path}");
        if declared_path {
            assert_eq!(
                path["declaredBy"],
                json!([{"grant": "aws/platform-assignment", "expires": "2027-01-01T00:00:00Z"}])
            );
            assert_eq!(
                path["via"]["membershipDeclaredBy"][0]["grant"],
                "aws/user-00-in-platform"
            );
        }
    }
    assert_eq!(
        by_user["undeclared"].as_u64(),
        Some(expected.len() as u64 - 1),
        "one path is declared whole"
    );
    assert!(
        seed["accountParents"]
            .as_object()
            .expect("parents")
            .values()
            .any(|p| seed["organizationalUnits"]
                .as_array()
                .expect("units")
                .iter()
                .any(|u| u["id"] == *p && u["parentId"] != seed["root"])),
        "some account sits in a nested unit"
    );

    // user-01 is in group-00 too, with no grant for that membership: the same assignment
    // is declared, the path is not.
    let user1 = &seed["ssoUsers"][1];
    let other = answer(run(
        &moto,
        &[
            "access",
            "-f",
            files,
            "--principal",
            &text(&user1["userName"]),
            "-o",
            "json",
        ],
    ));
    let paths = other["paths"].as_array().expect("paths");
    let through = paths
        .iter()
        .find(|p| {
            p["via"]["id"] == group0["id"]
                && p["account"]["id"] == group_assignment["accountId"]
                && p["permissionSet"]["arn"] == group_assignment["permissionSetArn"]
        })
        .expect("user-01 reaches it through group-00");
    assert_eq!(through["declaredBy"][0]["grant"], "aws/platform-assignment");
    assert_eq!(through["via"]["membershipDeclaredBy"], json!([]));
    assert_eq!(other["undeclared"].as_u64(), Some(paths.len() as u64));

    // An account: each user of each assignment on it, groups expanded.
    let account = text(&group_assignment["accountId"]);
    let by_account = answer(run(
        &moto,
        &["access", "-f", files, "--account", &account, "-o", "json"],
    ));
    let mut expected_users = BTreeSet::new();
    for assignment in seed["assignments"].as_array().expect("assignments") {
        if assignment["accountId"] != account.as_str() {
            continue;
        }
        let principal = text(&assignment["principalId"]);
        match seed["ssoGroups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["id"] == principal.as_str())
        {
            Some(group) => expected_users.extend(
                group["members"]
                    .as_array()
                    .expect("members")
                    .iter()
                    .map(text),
            ),
            None => {
                expected_users.insert(principal);
            }
        }
    }
    let users: BTreeSet<String> = by_account["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| text(&p["user"]["id"]))
        .collect();
    assert_eq!(users, expected_users);
    assert!(
        by_account["paths"]
            .as_array()
            .expect("paths")
            .iter()
            .all(|p| p["account"]["id"] == account.as_str())
    );

    // A group: its members' paths through it.
    let by_group = answer(run(
        &moto,
        &[
            "access",
            "-f",
            files,
            "--principal",
            "group-01",
            "-o",
            "json",
        ],
    ));
    let group1 = &seed["ssoGroups"][1];
    assert!(!by_group["paths"].as_array().expect("paths").is_empty());
    assert!(
        by_group["paths"]
            .as_array()
            .expect("paths")
            .iter()
            .all(|p| p["via"]["id"] == group1["id"])
    );

    // From an inventory file: the same answer, and no AWS call.
    let inventory = dir.path().join("inventory.json");
    let output = run(
        &moto,
        &["sync", "-f", files, "-o", inventory.to_str().expect("path")],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    moto.reset_calls();
    let offline = answer(run(
        &moto,
        &[
            "access",
            "-f",
            files,
            "--inventory",
            inventory.to_str().expect("path"),
            "--principal",
            &text(&user0["userName"]),
            "-o",
            "json",
        ],
    ));
    assert_eq!(offline, by_user);
    assert!(moto.calls().is_empty(), "{:?}", moto.calls());

    // The table names the grants and what is not declared.
    let table = run(
        &moto,
        &[
            "access",
            "-f",
            files,
            "--inventory",
            inventory.to_str().expect("path"),
            "--principal",
            &text(&user0["userName"]),
        ],
    );
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("aws/platform-assignment (expires 2027-01-01T00:00:00Z)"),
        "{table}"
    );
    assert!(table.contains("NOT DECLARED by any AccessGrant"), "{table}");

    // Someone the inventory does not know: exit 1, naming the option.
    let output = run(
        &moto,
        &[
            "access",
            "-f",
            files,
            "--inventory",
            inventory.to_str().expect("path"),
            "--principal",
            "nobody@example.com",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--principal \"nobody@example.com\""));
}

/// A PermissionSet in the files that a path goes through is shown with what it declares next to
/// what AWS holds (from a sync with `sync.policies`): the differences named, or that they match.
#[test]
fn access_shows_a_declared_permission_set_next_to_what_aws_holds() {
    let moto = Moto::start();
    let seed = moto.seed(&[
        "--accounts",
        "2",
        "--permission-sets",
        "2",
        "--assigned-users",
        "2",
    ]);
    let user0 = text(&seed["ssoUsers"][0]["userName"]);
    let declared = |managed: &[&str], boundary: &str| {
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "PermissionSet",
            "metadata": {"name": "first", "namespace": "aws"},
            "spec": {"connectorRef": {"name": "org"}, "name": "PermissionSet00",
                "managedPolicies": managed,
                "customerManagedPolicies": [{"name": "team-boundary", "path": "/teams/"}],
                "inlinePolicy": serde_json::from_str::<Value>(
                    seed["permissionSets"][0]["contents"]["inlinePolicy"].as_str().expect("inline")).expect("json"),
                "permissionsBoundary": {"managedPolicyArn": boundary}}})
    };
    let connector = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org", "namespace": "aws"},
        "spec": {"region": "us-east-1", "sync": {"policies": true}}});
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dir.path().to_str().expect("utf-8 path");
    let ask = || {
        answer(run(
            &moto,
            &["access", "-f", files, "--principal", &user0, "-o", "json"],
        ))
    };
    write(
        dir.path(),
        &[
            connector.clone(),
            declared(
                &["arn:aws:iam::aws:policy/ReadOnlyAccess"],
                "arn:aws:iam::aws:policy/PowerUserAccess",
            ),
        ],
    );
    let same = ask();
    assert_eq!(same["permissionSets"][0]["object"], "aws/first", "{same}");
    assert_eq!(
        same["permissionSets"][0]["differences"],
        json!([]),
        "{same}"
    );
    write(
        dir.path(),
        &[
            connector,
            declared(
                &["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
            ),
        ],
    );
    let differ = ask();
    assert_eq!(
        differ["permissionSets"][0]["differences"],
        json!([
            "detach arn:aws:iam::aws:policy/ReadOnlyAccess",
            "attach arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
            "set the permissions boundary to arn:aws:iam::aws:policy/ReadOnlyAccess"
        ]),
        "{differ}"
    );
    let table =
        String::from_utf8(run(&moto, &["access", "-f", files, "--principal", &user0]).stdout)
            .expect("utf-8");
    assert!(
        table.contains("Declared permission sets:") && table.contains("AWS differs: detach"),
        "{table}"
    );
}

/// An IdentityCenterUser in the files is shown next to the inventory's user of that name (its
/// display name compared), and a declared user not created yet is answered, not refused.
#[test]
fn access_shows_a_declared_user_next_to_the_inventory() {
    let moto = Moto::start();
    let seed = moto.seed(&["--accounts", "2", "--assigned-users", "2"]);
    let user0 = text(&seed["ssoUsers"][0]["userName"]);
    let declared = |user_name: &str, display: &str| {
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "IdentityCenterUser",
            "metadata": {"name": "someone", "namespace": "aws"},
            "spec": {"connectorRef": {"name": "org"}, "userName": user_name, "displayName": display,
                "name": {"givenName": "Some", "familyName": "One"},
                "emails": [{"value": user_name, "primary": true}]}})
    };
    let connector = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org", "namespace": "aws"}, "spec": {"region": "us-east-1"}});
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dir.path().to_str().expect("utf-8 path");
    write(
        dir.path(),
        &[connector.clone(), declared(&user0, "Someone Else")],
    );
    let answered = answer(run(
        &moto,
        &["access", "-f", files, "--principal", &user0, "-o", "json"],
    ));
    let view = &answered["identities"][0];
    assert_eq!(view["object"], "aws/someone", "{answered}");
    assert_eq!(view["inInventory"], true, "{answered}");
    assert!(
        view["differences"][0]
            .as_str()
            .is_some_and(|d| d.starts_with("display name")),
        "{answered}"
    );
    write(dir.path(), &[connector, declared("new@example.com", "New")]);
    let output = run(
        &moto,
        &["access", "-f", files, "--principal", "new@example.com"],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("not in the inventory: the operator creates it"),
        "{table}"
    );
}
