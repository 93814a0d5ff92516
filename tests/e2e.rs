//! The real controllers against the API emulator, or against the cluster `TEST_KUBECONFIG`
//! names (CRDs from `crds/` installed). The same code runs in both places.

use std::time::Duration;

use aws_access_operator::api::conditions::Conditions;
use aws_access_operator::api::{AccessGrant, AwsConnector, GRANT_FINALIZER};
use aws_access_operator::controller::{self, LeaderElection, Settings, shutdown};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::support::cluster::TestCluster;
use crate::support::wait;

const TIMEOUT: Duration = Duration::from_secs(30);
const VALID_ID: &str = "a-valid-external-id-0123456789abcdef";

fn settings(namespace: &str, identity: &str) -> Settings {
    Settings {
        namespaces: vec![namespace.to_string()],
        leader_election: Some(LeaderElection {
            lease_name: "aws-access-operator".into(),
            lease_namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_seconds: 4,
            renew_grace_seconds: 2,
        }),
        health_addr: None,
        instance: identity.to_string(),
    }
}

fn connector(name: &str, auth: serde_json::Value) -> AwsConnector {
    serde_json::from_value(json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": name},
        "spec": {"region": "us-east-1", "auth": auth}
    }))
    .expect("connector")
}

fn secret(name: &str, value: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "data": {"externalId": base64(value)}
    }))
    .expect("secret")
}

fn base64(text: &str) -> String {
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

async fn condition(
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

async fn wait_condition(
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

async fn start_operator(
    client: &Client,
    namespace: &str,
    identity: &str,
) -> (shutdown::Trigger, controller::Operator) {
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "info");
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(client.clone(), settings(namespace, identity), stop)
        .await
        .expect("operator starts");
    (trigger, operator)
}

#[tokio::test]
async fn connector_validation_and_grant_finalizer() {
    let cluster = TestCluster::start("e2e").await;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let (trigger, operator) = start_operator(&client, &ns, "replica-a").await;

    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    // An inline external ID that breaks the rules never gets in: the CRD's CEL rule refuses it
    // at admission, naming the field.
    let refused = connectors
        .create(
            &PostParams::default(),
            &connector(
                "inline",
                json!({"roleArn": "arn:aws:iam::123456789012:role/ops", "externalId": "too-short"}),
            ),
        )
        .await
        .expect_err("admission refuses a short external ID");
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains("spec.auth.externalId"),
                "{}",
                status.message
            );
            assert!(
                !status.message.contains("too-short"),
                "the value is not echoed"
            );
        }
        other => panic!("unexpected error {other}"),
    }

    // An external ID from a Secret is checked by the controller: False, naming the field,
    // without echoing the value.
    secrets
        .create(
            &PostParams::default(),
            &secret("bad-id", "too-short-from-secret"),
        )
        .await
        .expect("secret");
    secrets
        .create(&PostParams::default(), &secret("good-id", VALID_ID))
        .await
        .expect("secret");
    connectors
        .create(
            &PostParams::default(),
            &connector("prod", json!({"roleArn": "arn:aws:iam::123456789012:role/ops", "externalIdSecretRef": {"name": "bad-id", "key": "externalId"}})),
        )
        .await
        .expect("connector");
    let (reason, message) = wait_condition(&connectors, "prod", "ExternalIdValid", "False").await;
    assert_eq!(reason, "InvalidExternalId");
    assert!(
        message.contains("spec.auth.externalIdSecretRef"),
        "{message}"
    );
    assert!(!message.contains("too-short-from-secret"), "{message}");
    let (ready_reason, _) = wait_condition(&connectors, "prod", "Ready", "False").await;
    assert_eq!(ready_reason, "InvalidSpec");
    let (role_reason, _) = wait_condition(&connectors, "prod", "RoleArnValid", "True").await;
    assert_eq!(role_reason, "Valid");

    // Fixing the reference makes the condition True.
    connectors
        .patch(
            "prod",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"auth": {"externalIdSecretRef": {"name": "good-id"}}}})),
        )
        .await
        .expect("fix");
    wait_condition(&connectors, "prod", "ExternalIdValid", "True").await;
    let (ready_reason, _) = wait_condition(&connectors, "prod", "Ready", "False").await;
    assert_eq!(
        ready_reason, "SyncPending",
        "valid, waiting for its first sync"
    );

    // An AccessGrant gets the finalizer; deleting it removes the finalizer and the object.
    let grants: Api<AccessGrant> = Api::namespaced(client.clone(), &ns);
    let grant: AccessGrant = serde_json::from_value(json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessGrant",
        "metadata": {"name": "alice-readonly"},
        "spec": {"connectorRef": {"name": "prod"},
                 "principal": {"kind": "SsoUser", "name": "alice@example.com"},
                 "target": {"kind": "PermissionSet", "permissionSet": "ReadOnly", "accountId": "111122223333"}}
    }))
    .expect("grant");
    grants
        .create(&PostParams::default(), &grant)
        .await
        .expect("grant");
    wait::until("the finalizer", TIMEOUT, || async {
        let g = grants.get("alice-readonly").await.ok()?;
        g.metadata
            .finalizers
            .as_ref()?
            .iter()
            .any(|f| f == GRANT_FINALIZER)
            .then_some(())
    })
    .await;
    // The connector is not Ready yet, and the grant says so.
    wait::until("ConnectorNotReady", TIMEOUT, || async {
        let g = grants.get("alice-readonly").await.ok()?;
        let c = g.status?.conditions.condition("Ready")?.clone();
        (c.reason == "ConnectorNotReady" && c.message.contains("SyncPending")).then_some(())
    })
    .await;
    grants
        .delete("alice-readonly", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until("the grant to be gone", TIMEOUT, || async {
        grants
            .get_opt("alice-readonly")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_standby_takes_over() {
    let cluster = TestCluster::start("e2e-lease").await;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let (trigger_a, a) = start_operator(&client, &ns, "replica-a").await;
    wait::until("replica-a to lead", TIMEOUT, || async {
        (a.metrics.leader.get() == 1).then_some(())
    })
    .await;
    let (trigger_b, b) = start_operator(&client, &ns, "replica-b").await;

    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), &ns);
    connectors
        .create(&PostParams::default(), &connector("org", json!({})))
        .await
        .expect("connector");
    wait_condition(&connectors, "org", "RoleArnValid", "True").await;
    assert_eq!(
        b.metrics.leader.get(),
        0,
        "the standby does not lead while the lease is held"
    );
    assert!(
        !b.metrics.render().contains("reconciles_total{"),
        "the standby reconciled nothing"
    );

    // The leader stops and releases the lease; the standby takes over and reconciles.
    trigger_a.fire();
    a.task.await.expect("join").expect("clean shutdown");
    wait::until("replica-b to lead", TIMEOUT, || async {
        (b.metrics.leader.get() == 1).then_some(())
    })
    .await;
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"auth": {"roleArn": "arn:aws:iam::123456789012:role/ops"}}}),
            ),
        )
        .await
        .expect("change");
    wait::until("replica-b to reconcile", TIMEOUT, || async {
        let c = connectors.get("org").await.ok()?;
        (c.status?.observed_generation == c.metadata.generation).then_some(())
    })
    .await;
    assert!(
        b.metrics
            .render()
            .contains("aws_access_operator_reconciles_total{controller=\"connector\"}")
    );

    trigger_b.fire();
    b.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}
