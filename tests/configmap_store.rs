//! The connector's sharded ConfigMaps, against the API emulator (or a real cluster).

use aws_access_operator::api::AwsConnector;
use aws_access_operator::controller::configmaps::{
    ANNOTATION_SHARD_HASH, ANNOTATION_SHARDS, ConnectorConfigMaps, SHARD_BYTES,
};
use aws_access_operator::sync::StateStore;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::support::cluster::TestCluster;

/// Creates an AwsConnector named `name` in the test's namespace.
async fn create_connector(cluster: &TestCluster, name: &str) -> AwsConnector {
    let connectors: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let connector: AwsConnector = serde_json::from_value(serde_json::json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": name}, "spec": {"region": "us-east-1"}}))
    .expect("connector");
    connectors
        .create(&PostParams::default(), &connector)
        .await
        .expect("create")
}

#[tokio::test]
async fn large_values_shard_round_trip_and_are_rewritten_only_on_change() {
    let cluster = TestCluster::start("cm-store").await;
    let client = cluster.client.clone();
    let connector = create_connector(&cluster, "big").await;
    let store =
        ConnectorConfigMaps::new(client.clone(), &cluster.namespace, &connector).expect("store");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &cluster.namespace);
    let base = store.base_name("inventory");
    assert_eq!(base, format!("{}.big-inventory", cluster.namespace));

    // A value of two and a half shards.
    let value: Vec<u8> = (0..SHARD_BYTES * 5 / 2).map(|i| (i % 251) as u8).collect();
    assert_eq!(store.write("inventory", &value).await.expect("write"), 3);
    let shards = config_maps
        .list(&ListParams::default().labels(&format!("awsaccess.io/part-of={base}")))
        .await
        .expect("list");
    assert_eq!(shards.items.len(), 3);
    for shard in &shards.items {
        let annotations = shard.metadata.annotations.as_ref().expect("annotations");
        assert!(annotations.contains_key(ANNOTATION_SHARD_HASH));
        if shard.metadata.name.as_deref() == Some(&format!("{base}-0")) {
            assert_eq!(
                annotations[ANNOTATION_SHARDS], "3",
                "the first says how many"
            );
        }
        let labels = shard.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["awsaccess.io/connector"], "big");
        assert_eq!(
            labels["awsaccess.io/connector-namespace"],
            cluster.namespace.as_str()
        );
    }
    assert_eq!(
        store.load("inventory").await.expect("load").as_deref(),
        Some(value.as_slice())
    );

    let version = config_maps
        .get(&format!("{base}-0"))
        .await
        .expect("get")
        .metadata
        .resource_version;
    assert_eq!(
        store.write("inventory", &value).await.expect("write"),
        0,
        "same content: no write"
    );
    assert_eq!(
        config_maps
            .get(&format!("{base}-0"))
            .await
            .expect("get")
            .metadata
            .resource_version,
        version
    );

    // A change in the last shard only rewrites it and the first (whose hash of the whole
    // changes); the middle shard is left alone.
    let version_of = |index: usize| {
        let config_maps = config_maps.clone();
        let name = format!("{base}-{index}");
        async move {
            config_maps
                .get(&name)
                .await
                .expect("get")
                .metadata
                .resource_version
        }
    };
    let before: Vec<_> = futures::future::join_all((0..3).map(version_of)).await;
    let mut changed = value.clone();
    if let Some(last) = changed.last_mut() {
        *last = last.wrapping_add(1);
    }
    assert_eq!(
        store.write("inventory", &changed).await.expect("write"),
        2,
        "the changed shard and the first"
    );
    let after: Vec<_> = futures::future::join_all((0..3).map(version_of)).await;
    assert_ne!(after[0], before[0], "the first shard carries the new hash");
    assert_eq!(after[1], before[1], "an unchanged shard is not rewritten");
    assert_ne!(after[2], before[2]);
    assert_eq!(
        store.load("inventory").await.expect("load").as_deref(),
        Some(changed.as_slice())
    );

    // Shrinking removes the shards no longer needed.
    assert_eq!(store.write("inventory", b"small").await.expect("write"), 1);
    let shards = config_maps
        .list(&ListParams::default().labels(&format!("awsaccess.io/part-of={base}")))
        .await
        .expect("list");
    assert_eq!(shards.items.len(), 1);
    assert_eq!(
        store.load("inventory").await.expect("load").as_deref(),
        Some(&b"small"[..])
    );

    store.delete("inventory").await.expect("delete");
    assert_eq!(store.load("inventory").await.expect("load"), None);
    assert_eq!(store.load("never-written").await.expect("load"), None);

    // When the connector goes, all its values go, and nothing of another connector.
    store.write("cache", b"cached").await.expect("write");
    store.write("inventory", &value).await.expect("write");
    let mut other = connector.clone();
    other.metadata.name = Some("other".into());
    let other =
        ConnectorConfigMaps::new(client.clone(), &cluster.namespace, &other).expect("store");
    other.write("cache", b"kept").await.expect("write");
    assert_eq!(
        store.remove_all().await.expect("remove all"),
        4,
        "1 + 3 shards"
    );
    assert_eq!(store.load("cache").await.expect("load"), None);
    assert_eq!(store.load("inventory").await.expect("load"), None);
    assert_eq!(
        other.load("cache").await.expect("load").as_deref(),
        Some(&b"kept"[..])
    );
    cluster.cleanup().await;
}

/// A connector name too long for a label value (63 characters) once `-inventory` is added
/// still stores and reads its values: names and labels are shortened with a hash.
#[tokio::test]
async fn a_long_connector_name_still_fits() {
    let cluster = TestCluster::start("cm-long").await;
    let client = cluster.client.clone();
    let name = format!("prod-{}", "x".repeat(58));
    assert_eq!(name.len(), 63);
    let connector = create_connector(&cluster, &name).await;
    let store =
        ConnectorConfigMaps::new(client.clone(), &cluster.namespace, &connector).expect("store");
    let value = b"{\"accounts\": []}".to_vec();
    assert_eq!(store.write("inventory", &value).await.expect("write"), 1);
    assert_eq!(
        store.load("inventory").await.expect("load").as_deref(),
        Some(value.as_slice())
    );
    store.remove("inventory").await.expect("remove");
    assert_eq!(store.load("inventory").await.expect("load"), None);
    cluster.cleanup().await;
}
