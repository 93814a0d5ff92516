//! Where end-to-end tests run: the local control plane this test binary shares (a real
//! kube-apiserver and etcd, see `control_plane`), or the cluster that `TEST_KUBECONFIG` names
//! (with the CRDs from `crds/` installed). Each test gets a fresh namespace either way.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_access_operator::api::{AccessGrant, AwsConnector};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::control_plane::{ControlPlane, client_from};

pub struct TestCluster {
    pub client: Client,
    pub namespace: String,
    /// The kubeconfig of the cluster, with an admin's rights.
    pub kubeconfig: PathBuf,
    /// A control plane of this test's own (`start_isolated`), stopped with it.
    pub own: Option<ControlPlane>,
}

/// The cluster named by `TEST_KUBECONFIG`, if any.
pub fn named_cluster() -> Option<PathBuf> {
    std::env::var_os("TEST_KUBECONFIG")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The kubeconfig of the cluster the tests run against, with an admin's rights.
pub fn kubeconfig() -> PathBuf {
    named_cluster().unwrap_or_else(|| ControlPlane::shared().endpoints.kubeconfig.clone())
}

pub fn unique_suffix() -> String {
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
    /// The kubeconfig file for a process to reach this cluster.
    pub fn kubeconfig_file(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// The API server's audit log, when this process can read it (a local control plane).
    pub fn audit_log(&self) -> Option<PathBuf> {
        match (&self.own, named_cluster()) {
            (Some(own), _) => Some(own.endpoints.audit_log.clone()),
            (None, None) => Some(ControlPlane::shared().endpoints.audit_log.clone()),
            (None, Some(_)) => None,
        }
    }

    /// Connects and creates a namespace `<prefix>-<unique>`.
    pub async fn start(prefix: &str) -> Self {
        Self::connect(prefix, kubeconfig(), None).await
    }

    /// Like `start`, but on a control plane of the test's own unless `TEST_KUBECONFIG` names a
    /// cluster: for a test whose operator watches every namespace, which would reconcile the
    /// objects of the tests running beside it on a shared API server.
    pub async fn start_isolated(prefix: &str) -> Self {
        match named_cluster() {
            Some(path) => Self::connect(prefix, path, None).await,
            None => {
                let own = ControlPlane::start(&[], true);
                let path = own.endpoints.kubeconfig.clone();
                Self::connect(prefix, path, Some(own)).await
            }
        }
    }

    async fn connect(prefix: &str, kubeconfig: PathBuf, own: Option<ControlPlane>) -> Self {
        let client = client_from(&kubeconfig).await;
        let namespace = create_namespace(
            &client,
            prefix,
            serde_json::json!({"awsaccess.io/test": "true"}),
        )
        .await;
        Self {
            client,
            namespace,
            kubeconfig,
            own,
        }
    }

    /// Creates another namespace `<prefix>-<unique>` beside the test's own.
    pub async fn namespace_in(cluster: &TestCluster, prefix: &str) -> String {
        create_namespace(&cluster.client, prefix, serde_json::json!({})).await
    }

    /// Deletes the test namespace. A full cluster's namespace controller then deletes what is
    /// inside; the local control plane has none, and its namespace stays `Terminating` until
    /// the control plane stops. The operator has stopped by then, so the finalizers it would
    /// have honoured are removed first: otherwise a full cluster would keep the namespace
    /// terminating forever.
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

/// Creates a namespace `<prefix>-<unique>` with `labels`; returns its name.
pub async fn create_namespace(client: &Client, prefix: &str, labels: serde_json::Value) -> String {
    let name = format!("{prefix}-{}", unique_suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}
    }))
    .expect("namespace");
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create the namespace {name}: {e}"));
    name
}
