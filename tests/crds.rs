//! The CRDs as the API server serves them and as kubectl users meet them: the CEL rules refuse
//! bad input at admission, naming the field, without echoing a secret, on create and on update
//! alike; the README's and `examples/` manifests apply; a misspelt field is refused (strict
//! field validation); `kubectl get` shows the printer columns and `kubectl wait` works.

use std::path::Path;

use aws_access_operator::api::AwsConnector;
use aws_access_operator::controller::{self, shutdown};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::Status;
use serde_json::json;

use crate::support::cluster::TestCluster;
use crate::support::moto::{Moto, SMALL_ORG};
use crate::support::operator::{aws, settings};
use crate::support::tools::{kubectl, kubectl_ok};

fn connector(name: &str) -> AwsConnector {
    serde_json::from_value(
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": name}, "spec": {"region": "us-east-1"}}),
    )
    .expect("connector")
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn cel_rules_are_enforced_at_admission() {
    let cluster = TestCluster::start("cel").await;
    let api: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut bad = connector("bad");
    bad.spec.auth.role_arn = Some("arn:aws:iam::1234567890123:role/x".into());
    let refused = api_error(api.create(&PostParams::default(), &bad).await);
    assert_eq!(refused.code, 422);
    // The field's path and the rule's message (1.30 quotes the value's type after "Invalid
    // value:", newer servers the value itself)...
    assert!(
        refused
            .message
            .contains("spec.auth.roleArn: Invalid value: ")
            && refused
                .message
                .contains("spec.auth.roleArn must be arn:<aws|aws-cn|aws-us-gov>:iam::"),
        "{}",
        refused.message
    );
    // ...and a rule with reason FieldValueForbidden refuses without echoing it.
    let mut secret = connector("secret");
    secret.spec.auth.role_arn = Some("arn:aws:iam::123456789012:role/x".into());
    secret.spec.auth.external_id = Some("short-secret-value".into());
    let forbidden = api_error(api.create(&PostParams::default(), &secret).await);
    assert_eq!(forbidden.code, 422);
    assert!(
        forbidden
            .message
            .contains("spec.auth.externalId: Forbidden: "),
        "{}",
        forbidden.message
    );
    assert!(
        !forbidden.message.contains("short-secret-value"),
        "{}",
        forbidden.message
    );

    api.create(&PostParams::default(), &connector("good"))
        .await
        .expect("create");
    let update = api_error(
        api.patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"region": "Mars"}})),
        )
        .await,
    );
    assert_eq!(update.code, 422, "updates are admitted by the same rules");
    assert!(update.message.contains("spec.region"), "{}", update.message);
    cluster.cleanup().await;
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The manifests users copy: every `examples/` file and every YAML block of the README that
/// holds an object, with their namespaces moved to the test's own.
fn user_manifests(namespaces: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut stack = vec![repo("examples")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("examples").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).expect("example");
                // An AccessRequest is made by its requester, whom the admission policy checks
                // (tests/requests.rs): not by this test's administrator.
                if !text.contains("kind: AccessRequest") {
                    files.push((path.display().to_string(), text));
                }
            }
        }
    }
    let readme = std::fs::read_to_string(repo("README.md")).expect("README");
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let block = block.split("```").next().unwrap_or_default();
        if block.contains("apiVersion: awsaccess.io/") {
            files.push((
                format!("README.md, YAML block {}", i + 1),
                block.to_string(),
            ));
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|(name, mut text)| {
            for (from, to) in namespaces {
                text = text
                    .replace(&format!("namespace: {from}"), &format!("namespace: {to}"))
                    .replace(
                        &format!("namespace: \"{from}\""),
                        &format!("namespace: {to}"),
                    );
            }
            (name, text)
        })
        .collect()
}

#[tokio::test]
async fn kubectl_applies_the_documented_manifests_and_refuses_a_misspelt_field() {
    let cluster = TestCluster::start("kubectl-docs").await;
    let platform = cluster.namespace.clone();
    let team = TestCluster::namespace_in(&cluster, "kubectl-team").await;
    let manifests = user_manifests(&[("aws-access", &platform), ("team-payments", &team)]);
    assert!(manifests.len() >= 5, "{manifests:?}");
    for (name, text) in &manifests {
        // A manifest without a namespace goes to the platform's.
        let output = if text.contains("namespace:") {
            kubectl(&["apply", "-f", "-"], text)
        } else {
            kubectl(&["apply", "-n", &platform, "-f", "-"], text)
        };
        assert!(
            output.status.success(),
            "kubectl apply of {name} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Strict field validation, kubectl's default: a misspelt field is refused by name.
    let misspelt = format!(
        "apiVersion: awsaccess.io/v1alpha1\nkind: AwsConnector\nmetadata: {{name: typo, namespace: {platform}}}\nspec:\n  regoin: us-east-1\n  region: us-east-1\n"
    );
    let refused = kubectl(&["apply", "-f", "-"], &misspelt);
    assert!(!refused.status.success(), "a misspelt field is refused");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("unknown field \"spec.regoin\""), "{said}");
    let connectors: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &platform);
    assert!(connectors.get_opt("typo").await.expect("get").is_none());
    cluster.cleanup().await;
}

// kubectl runs as a blocking child process: the operator's tasks go on on another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_shows_the_columns_and_kubectl_wait_sees_ready() {
    let moto = Moto::start();
    moto.seed(SMALL_ORG);
    let cluster = TestCluster::start("kubectl-get").await;
    let ns = cluster.namespace.clone();
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(
        cluster.client.clone(),
        settings(&ns, "replica", aws(&moto).await),
        stop,
    )
    .await
    .expect("operator");
    let manifests = format!(
        r#"apiVersion: awsaccess.io/v1alpha1
kind: AwsConnector
metadata: {{name: org, namespace: {ns}}}
spec: {{region: us-east-1}}
---
apiVersion: awsaccess.io/v1alpha1
kind: AccessGrant
metadata: {{name: member, namespace: {ns}}}
spec:
  connectorRef: {{name: org}}
  principal: {{kind: IamUser, name: iam-user-00}}
  target: {{kind: IamGroupMembership, group: iam-group-00}}
  duration: 8h
"#
    );
    kubectl_ok(&["apply", "-f", "-"], &manifests);
    let waited = kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=Ready",
            "--timeout=90s",
            "awsconnector/org",
            "accessgrant/member",
        ],
        "",
    );
    assert!(
        waited.status.success(),
        "kubectl wait: {}\n{}",
        String::from_utf8_lossy(&waited.stderr),
        kubectl_ok(
            &["get", "-n", &ns, "awsconnectors,accessgrants", "-o", "yaml"],
            ""
        )
    );
    let table = kubectl_ok(&["get", "-n", &ns, "awsconnectors,accessgrants"], "");
    // One table per kind, each a header and its rows, separated by a blank line.
    let header = |kind: &str| {
        table
            .split("\n\n")
            .filter_map(|block| {
                let mut lines = block.lines();
                Some((lines.next()?, lines.next()?))
            })
            .find(|(_, row)| row.starts_with(kind))
            .unwrap_or_else(|| panic!("a table of {kind}:\n{table}"))
    };
    let (connector_header, connector) = header("awsconnector");
    for column in ["REGION", "READY", "REASON", "AGE"] {
        assert!(connector_header.contains(column), "{column}:\n{table}");
    }
    assert!(
        connector.contains("True") && connector.contains("Ready"),
        "{table}"
    );
    let (grant_header, grant) = header("accessgrant");
    for column in ["PRINCIPAL", "TARGET", "READY", "REASON", "EXPIRES", "AGE"] {
        assert!(grant_header.contains(column), "{column}:\n{table}");
    }
    assert!(
        grant.contains("iam-user-00") && grant.contains("IamGroupMembership"),
        "{table}"
    );
    assert!(
        grant.contains("True") && grant.contains("Granted"),
        "{table}"
    );
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(8))
        .expect("time");
    assert!(
        grant.contains(&expires.strftime("%Y-%m-%d").to_string()),
        "the expiry is shown: {table}"
    );
    trigger.fire();
    operator.task.await.expect("join").expect("stop");
    cluster.cleanup().await;
}

/// Invalid input, one broken rule each: (what, kind, spec).
fn invalid_inputs() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    let role = "arn:aws:iam::123456789012:role/ops";
    let id = "a-valid-external-id-0123456789abcdef";
    let grant = |spec: serde_json::Value| {
        let mut base = json!({"connectorRef": {"name": "org"},
            "principal": {"kind": "SsoUser", "name": "alice@example.com"},
            "target": {"kind": "PermissionSet", "permissionSet": "ReadOnly", "accountId": "123456789012"}});
        for (key, value) in spec.as_object().into_iter().flatten() {
            base[key] = value.clone();
        }
        base
    };
    let set = |spec: serde_json::Value| {
        let mut base = json!({"connectorRef": {"name": "org"}, "name": "DataReader"});
        for (key, value) in spec.as_object().into_iter().flatten() {
            base[key] = value.clone();
        }
        base
    };
    vec![
        (
            "a 13-digit account",
            "AwsConnector",
            json!({"region": "us-east-1", "auth": {"roleArn": "arn:aws:iam::1234567890123:role/x"}}),
        ),
        (
            "a user, not a role",
            "AwsConnector",
            json!({"region": "us-east-1", "auth": {"roleArn": "arn:aws:iam::123456789012:user/x"}}),
        ),
        (
            "a first hop alone",
            "AwsConnector",
            json!({"region": "us-east-1", "auth": {"globalRoleArn": role}}),
        ),
        (
            "a short external ID",
            "AwsConnector",
            json!({"region": "us-east-1", "auth": {"roleArn": role, "externalId": "x".repeat(31)}}),
        ),
        (
            "a long external ID",
            "AwsConnector",
            json!({"region": "us-east-1", "auth": {"roleArn": role, "externalId": "x".repeat(65)}}),
        ),
        (
            "a first hop's external ID without it",
            "AwsConnector",
            json!({"region": "us-east-1", "auth": {"roleArn": role, "globalExternalId": id}}),
        ),
        ("no such region", "AwsConnector", json!({"region": "Mars"})),
        (
            "an interval in words",
            "AwsConnector",
            json!({"region": "us-east-1", "sync": {"interval": "soon"}}),
        ),
        (
            "no member concurrency",
            "AwsConnector",
            json!({"region": "us-east-1", "sync": {"memberAccounts": {"enabled": true, "concurrency": 0}}}),
        ),
        (
            "a short account",
            "AwsConnector",
            json!({"region": "us-east-1", "grantPolicy": {"allowedAccounts": ["12345"]}}),
        ),
        (
            "a name and an id",
            "AccessGrant",
            grant(json!({"principal": {"kind": "SsoUser", "name": "a", "id": "b"}})),
        ),
        (
            "an IAM user with a permission set",
            "AccessGrant",
            grant(json!({"principal": {"kind": "IamUser", "name": "bob"}})),
        ),
        (
            "no account and no unit",
            "AccessGrant",
            grant(json!({"target": {"kind": "PermissionSet", "permissionSet": "ReadOnly"}})),
        ),
        (
            "a duration and an expiry",
            "AccessGrant",
            grant(json!({"duration": "8h", "expiresAt": "2030-01-01T00:00:00Z"})),
        ),
        (
            "a duration in words",
            "AccessGrant",
            grant(json!({"duration": "8 hours"})),
        ),
        (
            "no connector",
            "AccessGrant",
            grant(json!({"connectorRef": {"name": ""}})),
        ),
        (
            "a set name with a space",
            "PermissionSet",
            set(json!({"name": "Data Reader"})),
        ),
        (
            "a 13-hour session",
            "PermissionSet",
            set(json!({"sessionDuration": "13h"})),
        ),
        (
            "an account's policy as an AWS managed one",
            "PermissionSet",
            set(json!({"managedPolicies": ["arn:aws:iam::123456789012:policy/mine"]})),
        ),
        (
            "a relative policy path",
            "PermissionSet",
            set(json!({"customerManagedPolicies": [{"name": "p", "path": "team/"}]})),
        ),
        (
            "two boundaries",
            "PermissionSet",
            set(
                json!({"permissionsBoundary": {"managedPolicyArn": "arn:aws:iam::aws:policy/A",
                "customerManagedPolicy": {"name": "b"}}}),
            ),
        ),
        (
            "an aws: tag",
            "PermissionSet",
            set(json!({"tags": [{"key": "aws:team", "value": "a"}]})),
        ),
        (
            "a relay state that is not a URL",
            "PermissionSet",
            set(json!({"relayState": "console"})),
        ),
        (
            "a sandbox policy that would allow iam",
            "AwsConnector",
            json!({"region": "us-east-1", "permissionSetPolicy": {"maxSessionDuration": "24h"}}),
        ),
    ]
}

/// Every field `validate` refuses, the API server refuses at admission too, naming the same
/// field; on every Kubernetes version the suite runs on (`make test-oldest` runs it on 1.30).
#[tokio::test]
async fn the_api_server_refuses_each_field_as_validate_does() {
    use aws_access_operator::api::permission_set_validation::validate_permission_set;
    use aws_access_operator::api::validation::{validate_connector, validate_grant};
    use aws_access_operator::api::{
        AccessGrant, AccessGrantSpec, AwsConnectorSpec, PermissionSet, PermissionSetSpec,
    };
    let cluster = TestCluster::start("admission").await;
    let connectors: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let grants: Api<AccessGrant> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let sets: Api<PermissionSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for (i, (what, kind, spec)) in invalid_inputs().into_iter().enumerate() {
        let object = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": kind,
            "metadata": {"name": format!("case-{i}")}, "spec": spec.clone()});
        let (fields, refused) = if kind == "AwsConnector" {
            let parsed: AwsConnectorSpec = serde_json::from_value(spec).expect(what);
            let fields: Vec<String> = validate_connector(&parsed)
                .errors()
                .into_iter()
                .map(|e| e.field)
                .collect();
            let typed: AwsConnector = serde_json::from_value(object).expect(what);
            (
                fields,
                connectors
                    .create(&PostParams::default(), &typed)
                    .await
                    .map(|_| ()),
            )
        } else if kind == "PermissionSet" {
            let parsed: PermissionSetSpec = serde_json::from_value(spec).expect(what);
            let fields: Vec<String> = validate_permission_set(&parsed)
                .into_iter()
                .map(|e| e.field)
                .collect();
            let typed: PermissionSet = serde_json::from_value(object).expect(what);
            (
                fields,
                sets.create(&PostParams::default(), &typed)
                    .await
                    .map(|_| ()),
            )
        } else {
            let parsed: AccessGrantSpec = serde_json::from_value(spec).expect(what);
            let fields: Vec<String> = validate_grant(&parsed)
                .into_iter()
                .map(|e| e.field)
                .collect();
            let typed: AccessGrant = serde_json::from_value(object).expect(what);
            (
                fields,
                grants
                    .create(&PostParams::default(), &typed)
                    .await
                    .map(|_| ()),
            )
        };
        assert!(!fields.is_empty(), "{what}: validate refuses it");
        let status = api_error(refused);
        assert_eq!(status.code, 422, "{what}: {}", status.message);
        assert!(
            // A rule across fields is reported at their parent, its message naming the field.
            // A rule over a list is reported at the list, Rust names the element.
            fields.iter().any(|field| {
                status.message.contains(field.as_str())
                    || status
                        .message
                        .contains(&format!("{}:", field.split('[').next().unwrap_or(field)))
            }),
            "{what}: validate names {fields:?}, the API server says: {}",
            status.message
        );
    }
    cluster.cleanup().await;
}
