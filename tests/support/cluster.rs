//! Where end-to-end tests run: the in-process API emulator by default, or the real cluster that
//! `TEST_KUBECONFIG` names (with the CRDs from `crds/` installed). Each test gets a fresh
//! namespace either way.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_access_operator::api::{AccessGrant, AwsConnector};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::apiserver::ApiServer;

pub struct TestCluster {
    pub client: Client,
    pub namespace: String,
    /// The emulator, when no real cluster was named.
    pub emulator: Option<ApiServer>,
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:x}{:x}{}",
        std::process::id() % 0xffff,
        nanos % 0xfffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestCluster {
    /// A kubeconfig file for a process to reach this cluster: `TEST_KUBECONFIG`, or one
    /// written in `dir` for the emulator.
    pub fn kubeconfig_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
        match &self.emulator {
            Some(server) => {
                let path = dir.join("kubeconfig");
                std::fs::write(&path, server.kubeconfig(&self.namespace)).expect("kubeconfig");
                path
            }
            None => {
                std::path::PathBuf::from(std::env::var("TEST_KUBECONFIG").expect("TEST_KUBECONFIG"))
            }
        }
    }

    /// Connects and creates a namespace `<prefix>-<unique>`.
    pub async fn start(prefix: &str) -> Self {
        let (client, emulator) = match std::env::var("TEST_KUBECONFIG") {
            Ok(path) if !path.is_empty() => {
                let kubeconfig = Kubeconfig::read_from(&path)
                    .unwrap_or_else(|e| panic!("cannot read TEST_KUBECONFIG {path}: {e}"));
                let config =
                    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await
                        .unwrap_or_else(|e| panic!("invalid TEST_KUBECONFIG {path}: {e}"));
                (Client::try_from(config).expect("client"), None)
            }
            _ => {
                let server = ApiServer::start().await;
                (server.client(), Some(server))
            }
        };
        let namespace = format!("{prefix}-{}", unique_suffix());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"awsaccess.io/test": "true"}}
        }))
        .expect("namespace");
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .expect("create the test namespace");
        Self {
            client,
            namespace,
            emulator,
        }
    }

    /// Creates another namespace `<prefix>-<unique>` beside the test's own.
    pub async fn namespace_in(cluster: &TestCluster, prefix: &str) -> String {
        let name = format!("{prefix}-{}", unique_suffix());
        let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
        let object: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .expect("namespace");
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .expect("create a namespace");
        name
    }

    /// Deletes the test namespace (a real cluster cleans up what is inside). The operator has
    /// stopped by then, so the finalizers it would have honoured are removed first: otherwise a
    /// real cluster would keep the namespace terminating forever.
    pub async fn cleanup(self) {
        let merge = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
        let grants: Api<AccessGrant> = Api::namespaced(self.client.clone(), &self.namespace);
        for grant in grants
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let _ = grants
                .patch(&grant.name_any(), &PatchParams::default(), &merge)
                .await;
        }
        let connectors: Api<AwsConnector> = Api::namespaced(self.client.clone(), &self.namespace);
        for connector in connectors
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let _ = connectors
                .patch(&connector.name_any(), &PatchParams::default(), &merge)
                .await;
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces
            .delete(&self.namespace, &DeleteParams::default())
            .await;
    }
}
