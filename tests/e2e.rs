//! The real controllers against the API emulator, or against the cluster `TEST_KUBECONFIG`
//! names (CRDs from `crds/` installed). The same code runs in both places.

use aws_access_operator::api::{AccessGrant, AwsConnector, GRANT_FINALIZER};
use aws_access_operator::controller::configmaps::base_name;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::cluster::TestCluster;
use crate::support::moto::Moto;
use crate::support::operator::{
    TIMEOUT, VALID_ID, connector, request_sync, secret, start_operator, wait_condition, wait_grant,
};
use crate::support::wait;

#[tokio::test]
async fn connector_validation_and_grant_finalizer() {
    let moto = Moto::start();
    moto.seed(&[
        "--accounts",
        "2",
        "--sso-users",
        "4",
        "--sso-groups",
        "2",
        "--iam-users",
        "3",
    ]);
    let cluster = TestCluster::start("e2e").await;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let (trigger, operator) = start_operator(&client, &ns, "replica-a", &moto).await;

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
                 "principal": {"kind": "SsoUser", "name": "user-00@example.com"},
                 "target": {"kind": "PermissionSet", "permissionSet": "PermissionSet01", "accountId": "123456789012"}}
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
    // The connector is Ready: the grant is made in AWS, and deleting it revokes it.
    let message = wait_grant(&grants, "alice-readonly", "Granted").await;
    assert!(message.contains("on account 123456789012"), "{message}");
    assert!(moto.calls().contains_key("CreateAccountAssignment"));
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
    assert_eq!(
        moto.calls().get("DeleteAccountAssignment"),
        Some(&1),
        "revoked before the object went"
    );

    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_standby_takes_over() {
    let moto = Moto::start();
    let cluster = TestCluster::start("e2e-lease").await;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let (trigger_a, a) = start_operator(&client, &ns, "replica-a", &moto).await;
    wait::until("replica-a to lead", TIMEOUT, || async {
        (a.metrics.leader.get() == 1).then_some(())
    })
    .await;
    let (trigger_b, b) = start_operator(&client, &ns, "replica-b", &moto).await;

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

/// A fresh namespace with the operator running in-process and the AwsConnector `org` (the
/// pod's own credentials) created in it.
async fn org_connector(
    prefix: &str,
    moto: &Moto,
) -> (
    TestCluster,
    aws_access_operator::controller::shutdown::Trigger,
    aws_access_operator::controller::Operator,
    Api<AwsConnector>,
) {
    let cluster = TestCluster::start(prefix).await;
    let (ns, client) = (cluster.namespace.clone(), cluster.client.clone());
    let (trigger, operator) = start_operator(&client, &ns, "replica-a", moto).await;
    let connectors: Api<AwsConnector> = Api::namespaced(client, &ns);
    connectors
        .create(&PostParams::default(), &connector("org", json!({})))
        .await
        .expect("connector");
    (cluster, trigger, operator, connectors)
}

/// What `org` stored under `key` (one shard).
async fn stored(config_maps: &Api<ConfigMap>, ns: &str, key: &str) -> Vec<u8> {
    let name = format!("{}-0", base_name(ns, "org", key));
    let config_map = config_maps
        .get(&name)
        .await
        .unwrap_or_else(|e| panic!("ConfigMap {name}: {e}"));
    config_map.binary_data.expect("binaryData")["content"]
        .0
        .clone()
}

/// The saved page state (cursors) of `org`'s Identity Store groups stream.
async fn groups_cursors(config_maps: &Api<ConfigMap>, ns: &str) -> serde_json::Value {
    let bytes = stored(config_maps, ns, "sync-state-identity-store-groups").await;
    serde_json::from_slice(&bytes).expect("page state JSON")
}

/// The page state and journal ConfigMaps of `org` still there.
async fn sync_state_left(config_maps: &Api<ConfigMap>) -> Vec<String> {
    config_maps
        .list(&ListParams::default().labels("awsaccess.io/connector=org"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .filter(|name| name.contains("-sync-state-") || name.contains("-sync-journal-"))
        .collect()
}

#[tokio::test]
async fn connector_syncs_into_status_and_configmaps() {
    let moto = Moto::start();
    let seed = moto.seed(&[
        "--accounts",
        "4",
        "--sso-users",
        "7",
        "--sso-groups",
        "3",
        "--iam-users",
        "5",
    ]);
    let (cluster, trigger, operator, connectors) = org_connector("e2e-sync", &moto).await;
    let (ns, client) = (cluster.namespace.clone(), cluster.client.clone());
    let (_, message) = wait_condition(&connectors, "org", "Synced", "True").await;
    assert!(message.contains("5 accounts"), "{message}");
    wait_condition(&connectors, "org", "Ready", "True").await;

    let status = connectors
        .get("org")
        .await
        .expect("get")
        .status
        .expect("status");
    let counts = status.inventory.expect("inventory counts");
    let n = |key: &str| seed[key].as_array().map_or(0, Vec::len) as u64;
    assert_eq!(counts.accounts, n("accounts"));
    assert_eq!(counts.sso_users, n("ssoUsers"));
    assert_eq!(counts.sso_groups, n("ssoGroups"));
    assert_eq!(counts.assignments, n("assignments"));
    assert_eq!(counts.iam_users, n("iamUsers"));
    assert_eq!(status.identity.expect("identity").account, "123456789012");
    assert_eq!(
        status
            .identity_center
            .expect("identity center")
            .identity_store_id,
        seed["identityCenter"]["identityStoreId"]
            .as_str()
            .expect("store id")
    );
    let last = status.last_sync.expect("last sync");
    assert_eq!(last.outcome.as_deref(), Some("Succeeded"));
    assert!(last.api_calls > 10, "{last:?}");

    // The inventory is in ConfigMaps of the operator's namespace (here the test's), labelled
    // with the connector, and holds no credentials.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let name = |key: &str| format!("{}-0", base_name(&ns, "org", key));
    let shard = config_maps
        .get(&name("inventory"))
        .await
        .expect("inventory ConfigMap");
    let labels = shard.metadata.labels.as_ref().expect("labels");
    assert_eq!(
        (
            labels["awsaccess.io/connector"].as_str(),
            labels["awsaccess.io/connector-namespace"].as_str()
        ),
        ("org", ns.as_str())
    );
    let bytes = &shard.binary_data.as_ref().expect("binaryData")["content"].0;
    let inventory: serde_json::Value = serde_json::from_slice(bytes).expect("inventory JSON");
    assert_eq!(inventory["ssoUsers"].as_array().map(Vec::len), Some(7));
    assert!(
        !String::from_utf8_lossy(bytes).contains("testing"),
        "no credentials in ConfigMaps"
    );
    let cache = config_maps
        .get(&name("cache"))
        .await
        .expect("cache ConfigMap");
    assert!(cache.binary_data.is_some());
    for stream in [
        "organizations",
        "iam",
        "identity-store-users",
        "identity-store-groups",
        "identity-center",
    ] {
        assert!(
            config_maps
                .get_opt(&name(&format!("sync-state-{stream}")))
                .await
                .expect("get")
                .is_none(),
            "no page state of the {stream} stream after a finished sync"
        );
    }
    let left = sync_state_left(&config_maps).await;
    assert!(
        left.is_empty(),
        "no page state or journal after a finished sync: {left:?}"
    );

    // sync-now starts a sync at once; an unchanged organization leaves the inventory alone.
    let version = shard.metadata.resource_version.clone();
    let finished = last.finished_at.clone();
    request_sync(&connectors, "org", "1").await;
    wait::until("the requested sync", TIMEOUT, || async {
        let s = connectors.get("org").await.ok()?.status?;
        (s.last_handled_sync_now.as_deref() == Some("1")).then_some(())
    })
    .await;
    let status = connectors
        .get("org")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_ne!(
        status.last_sync.expect("last sync").finished_at,
        finished,
        "a new sync ran"
    );
    let again = config_maps
        .get(&name("inventory"))
        .await
        .expect("inventory ConfigMap");
    assert_eq!(
        again.metadata.resource_version, version,
        "unchanged content is not rewritten"
    );
    let metrics = operator.metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("aws_access_operator_aws_calls_total{")
                && l.contains(
                    "service=\"organizations\",operation=\"ListAccountsForParent\",outcome=\"success\""
                )),
        "{metrics}"
    );

    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}

/// A sync that fails keeps every stream's page state and journal in ConfigMaps of the
/// operator's namespace; the next one resumes from them, listing only what was left, and
/// deletes them when it finishes.
#[tokio::test]
async fn a_failed_sync_resumes_from_its_config_maps() {
    let moto = Moto::start();
    moto.seed(&["--accounts", "2", "--sso-users", "7", "--sso-groups", "3"]);
    moto.set_faults(json!({"deny_operations": ["ListGroupMemberships"]}));
    let (cluster, trigger, operator, connectors) = org_connector("e2e-resume", &moto).await;
    let (ns, client) = (cluster.namespace.clone(), cluster.client.clone());
    let (_, message) = wait_condition(&connectors, "org", "Synced", "False").await;
    assert!(message.contains("ListGroupMemberships"), "{message}");

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cursors = groups_cursors(&config_maps, &ns).await;
    assert_eq!(cursors["phase"], "memberships", "{cursors}");
    assert!(
        cursors.get("inventory").is_none(),
        "only cursors: {cursors}"
    );
    let journal = stored(&config_maps, &ns, "sync-journal-identity-store-groups-0").await;
    assert!(
        String::from_utf8_lossy(&journal).contains("group-02"),
        "the groups listed"
    );

    moto.set_faults(json!({}));
    moto.reset_calls();
    request_sync(&connectors, "org", "1").await;
    wait::until("the resumed sync", TIMEOUT, || async {
        let s = connectors.get("org").await.ok()?.status?;
        let done = s.last_handled_sync_now.as_deref() == Some("1")
            && s.last_sync?.outcome.as_deref() == Some("Succeeded");
        done.then_some(())
    })
    .await;
    // Only the members were left: every other stream had finished, and is not run again.
    let calls = moto.calls();
    let operations: Vec<&str> = calls.keys().map(String::as_str).collect();
    assert_eq!(
        operations,
        ["GetCallerIdentity", "ListGroupMemberships"],
        "{calls:?}"
    );
    let status = connectors.get("org").await.expect("get").status;
    let counts = status.and_then(|s| s.inventory).expect("inventory counts");
    assert_eq!((counts.sso_users, counts.sso_groups), (7, 3));
    let left = sync_state_left(&config_maps).await;
    assert!(left.is_empty(), "{left:?}");

    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}

/// A change to the connector while it syncs queues another reconciliation, which runs the
/// moment the sync ends, possibly before the watch has brought the status that sync wrote: it
/// must not sync again (one sync, counted from moto's recording of the calls).
#[tokio::test]
async fn a_change_during_a_sync_does_not_sync_again() {
    let moto = Moto::start();
    moto.seed(&["--accounts", "2", "--sso-users", "4", "--sso-groups", "2"]);
    moto.reset_calls();
    moto.set_faults(json!({"hold_operations": ["ListRoots"]}));
    let (cluster, trigger, operator, connectors) = org_connector("e2e-twice", &moto).await;
    wait::until("the sync to wait on the roots", TIMEOUT, || async {
        moto.calls().contains_key("ListRoots").then_some(())
    })
    .await;
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/owner": "platform"}}})),
        )
        .await
        .expect("annotate");
    // Long enough for the watch to bring the change while the sync still waits.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    moto.set_faults(json!({}));
    wait_condition(&connectors, "org", "Ready", "True").await;
    // Past any reconciliation the change queued.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        moto.calls().get("ListRoots"),
        Some(&1),
        "one sync: {:?}",
        moto.calls()
    );
    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}

/// An operator told to stop in the middle of a sync saves every stream's page state as it
/// stands, without waiting for the calls in flight, and stops cleanly.
#[tokio::test]
async fn a_stopping_operator_saves_the_sync_it_was_running() {
    let moto = Moto::start();
    moto.seed(&["--accounts", "2", "--sso-users", "7", "--sso-groups", "3"]);
    // The members are never answered while the operator runs.
    moto.set_faults(json!({"hold_operations": ["ListGroupMemberships"]}));
    let (cluster, trigger, operator, _connectors) = org_connector("e2e-stop", &moto).await;
    let (ns, client) = (cluster.namespace.clone(), cluster.client.clone());
    wait::until("the sync to wait on the members", TIMEOUT, || async {
        moto.calls()
            .contains_key("ListGroupMemberships")
            .then_some(())
    })
    .await;
    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &ns);
    // Saved as the operator stopped.
    let cursors = groups_cursors(&config_maps, &ns).await;
    assert_eq!(cursors["phase"], "memberships", "{cursors}");
    moto.set_faults(json!({}));
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_refused_role_is_reported_on_the_connector() {
    let moto = Moto::start();
    moto.set_faults(json!({"deny_assume_role": ["arn:aws:iam::123456789012:role/locked"]}));
    let cluster = TestCluster::start("e2e-auth").await;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let (trigger, operator) = start_operator(&client, &ns, "replica-a", &moto).await;
    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), &ns);
    connectors
        .create(
            &PostParams::default(),
            &connector(
                "locked",
                json!({"roleArn": "arn:aws:iam::123456789012:role/locked", "externalId": VALID_ID}),
            ),
        )
        .await
        .expect("connector");
    let (reason, message) = wait_condition(&connectors, "locked", "Authenticated", "False").await;
    assert_eq!(reason, "AccessDenied");
    assert!(message.contains("spec.auth.roleArn"), "{message}");
    assert!(!message.contains(VALID_ID), "no external ID in conditions");
    let (ready, _) = wait_condition(&connectors, "locked", "Ready", "False").await;
    assert_eq!(ready, "AccessDenied");
    assert!(
        !moto.calls().contains_key("ListRoots"),
        "no sync without authentication"
    );
    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_stop_right_after_start_still_ends_and_frees_the_lease() {
    let moto = Moto::start();
    let cluster = TestCluster::start("e2e-stop").await;
    let (trigger, operator) =
        start_operator(&cluster.client, &cluster.namespace, "replica-a", &moto).await;
    // Stop as soon as it leads, before its watches may have listed anything.
    wait::until("leadership", TIMEOUT, || async {
        (operator.metrics.leader.get() == 1).then_some(())
    })
    .await;
    trigger.fire();
    let finished = tokio::time::timeout(std::time::Duration::from_secs(30), operator.task)
        .await
        .expect("the operator stops within 30 s");
    finished.expect("join").expect("clean stop");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let lease = leases.get("aws-access-operator").await.expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity),
        None,
        "the lease is released"
    );
    cluster.cleanup().await;
}

/// A connector whose external-ID Secret does not exist yet becomes valid when the Secret is
/// created, without anyone touching the connector; and invalid again when the Secret's value
/// turns bad.
#[tokio::test]
async fn a_secret_created_after_its_connector_is_noticed() {
    let moto = Moto::start();
    let cluster = TestCluster::start("e2e-secret").await;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let (trigger, operator) = start_operator(&client, &ns, "replica-a", &moto).await;
    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    connectors
        .create(
            &PostParams::default(),
            &connector(
                "later",
                json!({"roleArn": "arn:aws:iam::123456789012:role/ops",
                "externalIdSecretRef": {"name": "later-id", "key": "externalId"}}),
            ),
        )
        .await
        .expect("connector");
    let (_, message) = wait_condition(&connectors, "later", "ExternalIdValid", "False").await;
    assert!(message.contains("does not exist"), "{message}");
    secrets
        .create(&PostParams::default(), &secret("later-id", VALID_ID))
        .await
        .expect("secret");
    wait_condition(&connectors, "later", "ExternalIdValid", "True").await;
    secrets
        .replace(
            "later-id",
            &PostParams::default(),
            &secret("later-id", "now-too-short"),
        )
        .await
        .expect("change the secret");
    let (reason, _) = wait_condition(&connectors, "later", "ExternalIdValid", "False").await;
    assert_eq!(reason, "InvalidExternalId");
    trigger.fire();
    operator.task.await.expect("join").expect("stop");
    cluster.cleanup().await;
}

/// A two-hop connector whose first hop's external ID comes from a Secret
/// (`globalExternalIdSecretRef`): refused, naming the field, while the Secret is missing;
/// authenticated once it exists, with the broker role requiring exactly that external ID.
#[tokio::test]
async fn the_first_hop_external_id_can_come_from_a_secret() {
    let moto = Moto::start();
    let broker = "arn:aws:iam::999988887777:role/broker";
    let global_id = "broker-external-id-0123456789abcdef";
    moto.set_faults(json!({"require_external_id": {broker: global_id}}));
    let cluster = TestCluster::start("e2e-global").await;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let (trigger, operator) = start_operator(&client, &ns, "replica-a", &moto).await;
    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    connectors
        .create(
            &PostParams::default(),
            &connector(
                "two-hop",
                json!({"globalRoleArn": broker,
                "globalExternalIdSecretRef": {"name": "broker-id", "key": "externalId"},
                "roleArn": "arn:aws:iam::123456789012:role/ops", "externalId": VALID_ID}),
            ),
        )
        .await
        .expect("connector");
    let (_, message) = wait_condition(&connectors, "two-hop", "ExternalIdValid", "False").await;
    assert!(
        message.contains("spec.auth.globalExternalIdSecretRef")
            && message.contains("does not exist"),
        "{message}"
    );
    secrets
        .create(&PostParams::default(), &secret("broker-id", global_id))
        .await
        .expect("secret");
    let (_, message) = wait_condition(&connectors, "two-hop", "Authenticated", "True").await;
    assert!(message.contains("123456789012"), "{message}");
    trigger.fire();
    operator.task.await.expect("join").expect("stop");
    cluster.cleanup().await;
}
