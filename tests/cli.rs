//! The binary's offline commands, run as a user would.

use std::path::Path;
use std::process::Command;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aws-access-operator"))
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn crds_on_disk_match_the_binary() {
    let output = binary().arg("crd").output().expect("run crd");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    let mut from_disk = String::new();
    for crd in aws_access_operator::crd::all() {
        let name = aws_access_operator::crd::file_name(&crd);
        let on_disk = std::fs::read_to_string(repo("crds").join(&name))
            .unwrap_or_else(|e| panic!("crds/{name}: {e} (run `make crds`)"));
        let in_chart =
            std::fs::read_to_string(repo(aws_access_operator::crd::CHART_CRDS).join(&name))
                .unwrap_or_else(|e| panic!("the chart's {name}: {e} (run `make crds`)"));
        assert!(
            in_chart == on_disk,
            "the chart's {name} differs from crds/{name}: run `make crds`"
        );
        let rendered = aws_access_operator::crd::to_yaml(&crd).expect("yaml");
        if on_disk != rendered {
            let line = on_disk
                .lines()
                .zip(rendered.lines())
                .position(|(a, b)| a != b);
            panic!("crds/{name} is stale (first difference at line {line:?}): run `make crds`");
        }
        from_disk.push_str(&format!("---\n{on_disk}"));
    }
    assert_eq!(printed, from_disk, "`crd` prints exactly what crds/ holds");
}

#[test]
fn validate_examples_one_json_line_per_object() {
    let output = binary()
        .args(["validate", "-f"])
        .arg(repo("examples"))
        .output()
        .expect("run validate");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        output.status.success(),
        "examples are valid: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(
        lines.len() >= 4,
        "every example object is reported: {stdout}"
    );
    for line in &lines {
        assert_eq!(line["valid"], true, "{line}");
        assert!(
            [
                "AwsConnector",
                "AccessGrant",
                "AccessRequest",
                "PermissionSet",
                "IdentityCenterUser",
                "IdentityCenterGroup",
                "IamUser"
            ]
            .contains(&line["kind"].as_str().unwrap_or_default()),
            "{line}"
        );
        assert!(line["name"].is_string());
        assert!(line["conditions"].as_array().is_some_and(|c| !c.is_empty()));
    }
}

#[test]
fn validate_fails_on_a_bad_arn_and_names_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: awsaccess.io/v1alpha1\nkind: AwsConnector\nmetadata: {name: prod, namespace: aws}\nspec:\n  region: us-east-1\n  auth:\n    roleArn: arn:aws:iam::1234567890123:role/ops\n---\napiVersion: awsaccess.io/v1alpha1\nkind: AccessGrant\nmetadata: {name: ok}\nspec:\n  connectorRef: {name: prod}\n  principal: {kind: SsoUser, name: alice}\n  target: {kind: SsoGroupMembership, group: admins}\n",
    )
    .expect("write");
    let output = binary()
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .expect("run validate");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["valid"], false);
    let role = lines[0]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "RoleArnValid")
        .expect("RoleArnValid")
        .clone();
    assert_eq!(role["status"], "False");
    assert_eq!(role["reason"], "InvalidRoleArn");
    assert!(
        role["message"]
            .as_str()
            .expect("message")
            .contains("spec.auth.roleArn")
    );
    assert_eq!(lines[1]["valid"], true);
}

#[test]
fn validate_reports_undecodable_objects_and_missing_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kind.yml");
    std::fs::write(&file, "apiVersion: awsaccess.io/v1alpha1\nkind: AccessGrant\nmetadata: {name: g}\nspec:\n  connectorRef: {name: c}\n  principal: {kind: Robot, name: r2}\n  target: {kind: SsoGroupMembership, group: g}\n").expect("write");
    let output = binary()
        .args(["validate", "-f"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert!(
        line["conditions"][0]["message"]
            .as_str()
            .expect("message")
            .starts_with("spec.principal.kind"),
        "{line}"
    );

    let missing = binary()
        .args(["validate", "-f", "/nonexistent/grants"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/grants"));
}

/// A misspelt field is refused, naming it: `duraton: 8h` must not silently make a grant
/// permanent, nor `deniedPermisionSets` allow everything.
#[test]
fn validate_refuses_unknown_fields_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("typo.yaml");
    std::fs::write(
        &file,
        "apiVersion: awsaccess.io/v1alpha1\nkind: AccessGrant\nmetadata: {name: typo, namespace: team}\nspec:\n  connectorRef: {name: prod}\n  principal: {kind: SsoUser, name: alice}\n  target: {kind: SsoGroupMembership, group: admins}\n  duraton: 8h\n---\napiVersion: awsaccess.io/v1alpha1\nkind: AwsConnector\nmetadata: {name: prod, namespace: team}\nspec:\n  region: us-east-1\n  grantPolicy: {deniedPermisionSets: [Admin]}\n",
    )
    .expect("write");
    let output = binary()
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .expect("run validate");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, field) in lines
        .iter()
        .zip(["spec.duraton", "spec.grantPolicy.deniedPermisionSets"])
    {
        assert_eq!(line["valid"], false, "{line}");
        assert!(
            line.to_string()
                .contains(&format!("{field}: unknown field")),
            "{line}"
        );
    }
}

/// A kind or version of the group that does not exist is refused, naming it and the kinds
/// there are (a CI check must not pass `kind: AccesGrant`); other groups are still skipped; a
/// PermissionSet is checked as the operator checks it, its inline policy against IAM's grammar.
#[test]
fn validate_refuses_unknown_kinds_and_checks_permission_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mixed.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: awsaccess.io/v1alpha1
kind: AccesGrant
metadata: {name: typo, namespace: team}
spec: {}
---
apiVersion: awsaccess.io/v1
kind: AccessGrant
metadata: {name: future, namespace: team}
spec: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
---
apiVersion: awsaccess.io/v1alpha1
kind: PermissionSet
metadata: {name: good, namespace: aws}
spec:
  connectorRef: {name: org}
  name: DataReader
  sessionDuration: 4h
  managedPolicies: [arn:aws:iam::aws:policy/ReadOnlyAccess]
  inlinePolicy:
    Version: "2012-10-17"
    Statement:
      - Effect: Allow
        Action: [s3:GetObject]
        Resource: "*"
---
apiVersion: awsaccess.io/v1alpha1
kind: PermissionSet
metadata: {name: bad, namespace: aws}
spec:
  connectorRef: {name: org}
  name: Broken
  inlinePolicy:
    Version: "2012-10-17"
    Statement:
      - Effect: Allow
        Action: s3:GetObject
"#,
    )
    .expect("write");
    let output = binary()
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .expect("run validate");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 4, "the ConfigMap is skipped: {stdout}");
    let message = |i: usize| {
        lines[i]["conditions"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(lines[0]["valid"], false);
    assert!(
        message(0).contains("\"AccesGrant\" is not a kind of awsaccess.io")
            && message(0).contains("AccessGrant, AccessRequest, PermissionSet"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["valid"], false);
    assert!(
        message(1).contains("apiVersion awsaccess.io/v1 is not served"),
        "{}",
        lines[1]
    );
    assert_eq!(
        (lines[2]["kind"].as_str(), lines[2]["valid"].as_bool()),
        (Some("PermissionSet"), Some(true)),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3]["valid"], false);
    assert!(
        message(3).contains("spec.inlinePolicy.Statement[0] needs Resource or NotResource"),
        "{}",
        lines[3]
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("#3: skipped"), "{stderr}");
}

fn grant_yaml(name: &str) -> String {
    format!(
        "apiVersion: awsaccess.io/v1alpha1\nkind: AccessGrant\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  connectorRef: {{name: prod}}\n  principal: {{kind: SsoUser, name: alice}}\n  target: {{kind: SsoGroupMembership, group: admins}}\n"
    )
}

/// `-f -` reads standard input; a symlink loop reads each file once; a FIFO is refused rather
/// than waited on; thousands of documents are read.
#[test]
fn inputs_stdin_links_special_files_and_many_documents() {
    use std::io::Write as _;
    let mut child = binary()
        .args(["validate", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run validate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(grant_yaml("from-stdin").as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("\"name\":\"from-stdin\""), "{stdout}");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("grant.yaml"), grant_yaml("once")).expect("write");
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).expect("symlink");
    std::os::unix::fs::symlink(dir.path().join("grant.yaml"), dir.path().join("again.yaml"))
        .expect("symlink");
    let output = binary()
        .args(["validate", "-f"])
        .arg(dir.path())
        .arg(dir.path().join("grant.yaml"))
        .output()
        .expect("run validate");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "each file once: {stdout}");

    let fifo = dir.path().join("pipe.yaml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let output = binary()
        .args(["validate", "-f"])
        .arg(&fifo)
        .output()
        .expect("run validate");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a regular file"), "{stderr}");

    let many: Vec<String> = (0..1500).map(|i| grant_yaml(&format!("g-{i}"))).collect();
    let file = dir.path().join("many.yml");
    std::fs::write(&file, many.join("---\n")).expect("write");
    let output = binary()
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .expect("run validate");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().count(),
        1500
    );
}

/// One table of exit codes (docs/cli.md, "Exit codes"): 0 done, 1 refused input, 2 could not run.
#[test]
fn exit_codes_follow_the_documented_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let valid = dir.path().join("valid.yaml");
    std::fs::write(&valid, grant_yaml("fine")).expect("write");
    let invalid_connector = dir.path().join("bad-connector.yaml");
    std::fs::write(
        &invalid_connector,
        "apiVersion: awsaccess.io/v1alpha1\nkind: AwsConnector\nmetadata: {name: prod, namespace: aws}\nspec:\n  region: us-east-1\n  readOnly: maybe\n",
    )
    .expect("write");
    let missing = dir.path().join("missing.yaml");
    let code = |args: &[&std::ffi::OsStr]| {
        binary()
            .args(args)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run")
            .status
            .code()
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let cases: Vec<(Vec<std::ffi::OsString>, i32)> = vec![
        (vec![os("validate"), os("-f"), valid.clone().into()], 0),
        (
            vec![os("validate"), os("-f"), invalid_connector.clone().into()],
            1,
        ),
        (vec![os("validate"), os("-f"), missing.clone().into()], 2),
        // An undecodable connector is refused input, before any AWS call.
        (
            vec![os("sync"), os("-f"), invalid_connector.clone().into()],
            1,
        ),
        (vec![os("plan"), os("-f"), invalid_connector.into()], 1),
        // No connector where one is needed: the command cannot run.
        (vec![os("sync"), os("-f"), valid.clone().into()], 2),
        (vec![os("plan"), os("-f"), valid.into()], 2),
        (vec![os("sync"), os("-f"), missing.into()], 2),
        (vec![os("validate"), os("--no-such-flag")], 2),
    ];
    // A --state-dir that is a file is said plainly, before anything else.
    let output = binary()
        .args(["sync", "-f"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(dir.path().join("valid.yaml"))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--state-dir") && stderr.contains("not a directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("resume"), "{stderr}");
    // A ledger that cannot be read stops plan and apply before anything else, and is left as
    // it is: taking it as empty would forget what apply created.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    std::fs::write(state.join("ledger.json"), "{\"entries\": 3").expect("write");
    for command in ["plan", "apply"] {
        let output = binary()
            .args([command, "-f"])
            .arg(dir.path().join("valid.yaml"))
            .arg("--state-dir")
            .arg(&state)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("ledger.json") && stderr.contains("not a ledger"),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(state.join("ledger.json")).expect("read"),
        "{\"entries\": 3",
        "the ledger is untouched"
    );
    for (args, expected) in cases {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        assert_eq!(code(&refs), Some(expected), "{args:?}");
    }
}

/// What the API server refuses before any rule, `validate` refuses too: a missing name, a
/// string past its schema's maxLength, a value outside an enumeration, a date with a space.
#[test]
fn validate_refuses_what_the_api_server_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("server.yaml");
    let long = "x".repeat(254);
    std::fs::write(
        &file,
        format!(
            "apiVersion: awsaccess.io/v1alpha1\nkind: AccessGrant\nmetadata: {{namespace: team}}\nspec:\n  connectorRef: {{name: prod}}\n  principal: {{kind: SsoUser, name: alice}}\n  target: {{kind: SsoGroupMembership, group: admins}}\n---\napiVersion: awsaccess.io/v1alpha1\nkind: AccessGrant\nmetadata: {{name: long, namespace: team}}\nspec:\n  connectorRef: {{name: {long}}}\n  principal: {{kind: SsoUser, name: alice}}\n  target: {{kind: SsoGroupMembership, group: admins}}\n  deletionPolicy: Sometimes\n---\napiVersion: awsaccess.io/v1alpha1\nkind: AccessGrant\nmetadata: {{name: spaced, namespace: team}}\nspec:\n  connectorRef: {{name: prod}}\n  principal: {{kind: SsoUser, name: alice}}\n  target: {{kind: SsoGroupMembership, group: admins}}\n  expiresAt: \"2030-01-01 00:00:00Z\"\n"
        ),
    )
    .expect("write");
    let output = binary()
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .expect("run validate");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, needle) in lines.iter().zip([
        "metadata.name: required",
        "spec.connectorRef.name: must be no more than 253 characters",
        "spec.expiresAt must be an RFC 3339 time",
    ]) {
        assert!(line.contains("\"valid\":false"), "{line}");
        assert!(line.contains(needle), "{line}");
    }
    assert!(
        lines[1].contains("spec.deletionPolicy: must be one of"),
        "{}",
        lines[1]
    );
}
