//! The chart's RBAC is exactly what the operator uses: the operator runs a scenario that
//! exercises every path against the API emulator, which records each request in RBAC terms;
//! the recorded set must equal the rules of the chart's ClusterRole and leader-election Role.

use std::collections::BTreeSet;
use std::path::Path;

use aws_access_operator::api::{AccessGrant, AwsConnector};
use aws_access_operator::controller::{self, shutdown};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::apiserver::{Access, ApiServer};
use crate::support::moto::Moto;
use crate::support::operator::{
    VALID_ID, aws, create_org_connector, grant, secret, settings, wait_condition, wait_grant,
};
use crate::support::wait;

/// Verbs the code uses that the emulator cannot observe: server-side apply that creates a
/// ConfigMap is a PATCH, but a real apiserver also requires `create` for it; kube-runtime's
/// event recorder PATCHes an event it repeats within minutes (its series count).
const UNOBSERVABLE: &[(&str, &str, &str)] = &[
    ("", "configmaps", "create"),
    ("events.k8s.io", "events", "patch"),
];

/// The (group, resource, verb) rules of the Roles and ClusterRoles in a chart template.
fn rules(template: &str) -> BTreeSet<Access> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/aws-access-operator/templates")
        .join(template);
    let text = std::fs::read_to_string(&path).expect("template");
    let mut out = BTreeSet::new();
    for document in text.split("\n---") {
        // Template lines ({{ ... }}) carry names and labels, never rules.
        let plain: String = document
            .lines()
            .filter(|l| !l.contains("{{"))
            .map(|l| format!("{l}\n"))
            .collect();
        let Ok(value) = serde_saphyr::from_str::<Value>(&plain) else {
            continue;
        };
        for rule in value["rules"].as_array().into_iter().flatten() {
            for group in rule["apiGroups"].as_array().into_iter().flatten() {
                for resource in rule["resources"].as_array().into_iter().flatten() {
                    for verb in rule["verbs"].as_array().into_iter().flatten() {
                        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                        out.insert((s(group), s(resource), s(verb)));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn chart_rbac_is_exactly_what_the_operator_uses() {
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
        "2",
    ]);
    let server = ApiServer::start().await;
    let client = server.client();
    let ns = "rbac";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"grants": "yes"}}}))
                .expect("ns"),
        )
        .await
        .expect("namespace");

    // The operator talks to the recording listener; the test to the plain one.
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(
        server.recorded_client(),
        settings(ns, "replica", aws(&moto).await),
        stop,
    )
    .await
    .expect("operator");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(&PostParams::default(), &secret("external-id", VALID_ID))
        .await
        .expect("secret");
    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), ns);
    let connector: AwsConnector = serde_json::from_value(json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org"},
        "spec": {"region": "us-east-1",
                 "auth": {"roleArn": "arn:aws:iam::123456789012:role/ops", "externalIdSecretRef": {"name": "external-id", "key": "externalId"}},
                 "grantPolicy": {"allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"grants": "yes"}}}}}}))
    .expect("connector");
    connectors
        .create(&PostParams::default(), &connector)
        .await
        .expect("connector");
    wait_condition(&connectors, "org", "Ready", "True").await;

    let grants: Api<AccessGrant> = Api::namespaced(client.clone(), ns);
    let g = grant(
        "member",
        "org",
        json!({"kind": "IamUser", "name": "iam-user-00"}),
        json!({"kind": "IamGroupMembership", "group": "iam-group-00"}),
        json!({}),
    );
    grants
        .create(&PostParams::default(), &g)
        .await
        .expect("grant");
    wait_grant(&grants, "member", "Granted").await;
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"awsaccess.io/sync-now": "1"}}})),
        )
        .await
        .expect("annotate");
    wait::until(
        "the second sync",
        crate::support::operator::TIMEOUT,
        || async {
            (connectors
                .get("org")
                .await
                .ok()?
                .status?
                .last_handled_sync_now
                .as_deref()
                == Some("1"))
            .then_some(())
        },
    )
    .await;
    grants
        .delete("member", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until(
        "the grant to go",
        crate::support::operator::TIMEOUT,
        || async { grants.get_opt("member").await.ok()?.is_none().then_some(()) },
    )
    .await;
    trigger.fire();
    operator.task.await.expect("join").expect("stop");

    let used = server.recorded();
    let granted: BTreeSet<Access> = rules("clusterrole.yaml")
        .into_iter()
        .chain(rules("leader-election.yaml"))
        .chain(rules("ledger.yaml"))
        .collect();
    let unobservable: BTreeSet<Access> = UNOBSERVABLE
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the operator uses what the chart does not grant: {missing:?}"
    );
    let unused: Vec<_> = granted
        .difference(&used)
        .filter(|a| !unobservable.contains(*a))
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants what the operator never uses: {unused:?}"
    );
    for extra in &unobservable {
        assert!(
            granted.contains(extra),
            "{extra:?} is needed and must stay granted"
        );
    }
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name}}))
            .expect("namespace"),
        )
        .await
        .expect("namespace");
}

/// With `watchNamespaces` set, the chart binds the operator's ClusterRole with RoleBindings in
/// those namespaces only, so it cannot list AccessGrants cluster-wide: it must list them
/// namespace by namespace, and its connector still becomes Ready.
#[tokio::test]
async fn watching_some_namespaces_never_lists_grants_cluster_wide() {
    let moto = Moto::start();
    moto.seed(crate::support::moto::SMALL_ORG);
    let server = ApiServer::start_with(crate::support::apiserver::Options {
        namespaced_only: vec!["accessgrants", "awsconnectors"],
        ..Default::default()
    })
    .await;
    let client = server.client();
    create_namespace(&client, "team").await;
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(
        client.clone(),
        settings("team", "replica", aws(&moto).await),
        stop,
    )
    .await
    .expect("operator");
    let connectors = create_org_connector(&client, "team").await;
    let (reason, _) = wait_condition(&connectors, "org", "Ready", "True").await;
    assert_eq!(reason, "Ready");
    trigger.fire();
    operator.task.await.expect("join").expect("stop");
}

/// When AccessGrants cannot be listed (no right to, or no CRD), the connector's sync still
/// lands: a Kubernetes-side failure never costs a second AWS sync.
#[tokio::test]
async fn a_grant_listing_failure_never_costs_another_sync() {
    let moto = Moto::start();
    moto.seed(crate::support::moto::SMALL_ORG);
    moto.reset_calls();
    let server = ApiServer::start_with(crate::support::apiserver::Options {
        namespaced_only: vec!["accessgrants"],
        ..Default::default()
    })
    .await;
    let client = server.client();
    create_namespace(&client, "ops").await;
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let mut watch_all = settings("ops", "replica", aws(&moto).await);
    watch_all.namespaces.clear();
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(client.clone(), watch_all, stop)
        .await
        .expect("operator");
    let connectors = create_org_connector(&client, "ops").await;
    let (_, message) = wait_condition(&connectors, "org", "Synced", "True").await;
    assert!(
        message.contains("unmanaged access not counted"),
        "{message}"
    );
    wait_condition(&connectors, "org", "Ready", "True").await;
    // Well past the first error backoff: still one sync.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert_eq!(
        moto.calls().get("GetCallerIdentity"),
        Some(&1),
        "one sync only: {:?}",
        moto.calls()
    );
    trigger.fire();
    operator.task.await.expect("join").expect("stop");
}
