//! An in-process Kubernetes API server for the resources the operator uses, served over HTTP on
//! a loopback port so that the real kube client (and the real binary) talk to it unchanged.
//!
//! Modelled: list (label/field selectors, limit/continue), get, create (generateName), update,
//! merge / JSON / strategic (as merge) / apply patches, delete; resourceVersion on every write
//! and 409 on a stale one; `metadata.generation` for custom resources; the status subresource;
//! finalizers and deletionTimestamp; watches from a resourceVersion with bookmarks, timeouts,
//! selector transitions and 410 Gone past the kept history; server-side apply field ownership
//! (conflicts without `force`); the CRDs' CEL rules at admission.
//!
//! Not modelled (see also `fields.rs`): authentication and RBAC, OpenAPI structural validation
//! (types, enums, maxLength, formats) and pruning of unknown fields, defaulting,
//! `metadata.managedFields` in responses, strategic-merge list directives, consistent snapshots
//! across list pages (later pages read the current state), namespace lifecycle (objects may be
//! created in namespaces that do not exist; deleting one does not cascade), owner-reference
//! garbage collection, `sendInitialEvents` streaming lists, dry-run, protobuf, discovery beyond
//! `/version`.

mod fields;
mod http;
mod selector;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use store::Store;

/// Knobs of the emulator's behaviour.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// How many changes are kept for watches to replay.
    pub history_limit: usize,
    /// Resources (plural names) that may be listed and watched only inside a namespace, as
    /// for a client whose ClusterRole is bound by RoleBindings in some namespaces: a
    /// cluster-wide list or watch of them answers 403.
    pub namespaced_only: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
            namespaced_only: Vec::new(),
        }
    }
}

/// What a request asked for, in RBAC's terms: (API group, resource[/subresource], verb,
/// namespace, name). The namespace is empty for a request across all namespaces and for a
/// cluster-scoped resource: what only a ClusterRole can allow. The name is empty for lists,
/// watches and creates (which RBAC cannot limit by name).
pub type Access = (String, String, String, String, String);

/// A running emulator; stops when dropped. It listens twice on the same storage: requests on
/// `recorded_addr` are also recorded in RBAC terms, so that a test can see exactly what one
/// client (the operator) asked of the API.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub recorded_addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    recorded: Arc<Mutex<std::collections::BTreeSet<Access>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let store = Arc::new(Mutex::new(Store::new(options.history_limit)));
        let recorded = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let bind = || async {
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port")
        };
        let (plain, recording) = (bind().await, bind().await);
        let addr = plain.local_addr().expect("bound address");
        let recorded_addr = recording.local_addr().expect("bound address");
        let tasks = vec![
            tokio::spawn(http::serve(plain, store.clone(), options.clone(), None)),
            tokio::spawn(http::serve(
                recording,
                store.clone(),
                options,
                Some(recorded.clone()),
            )),
        ];
        Self {
            addr,
            recorded_addr,
            store,
            recorded,
            tasks,
        }
    }

    /// A client whose requests are recorded (see `recorded`).
    pub fn recorded_client(&self) -> kube::Client {
        let config = kube::Config::new(
            format!("http://{}", self.recorded_addr)
                .parse()
                .expect("valid url"),
        );
        kube::Client::try_from(config).expect("client")
    }

    /// What the recorded client asked for.
    pub fn recorded(&self) -> std::collections::BTreeSet<Access> {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("valid url"));
        kube::Client::try_from(config).expect("client")
    }

    /// A kubeconfig naming this server, for processes started by tests.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: {namespace}\ncurrent-context: emulator\nusers:\n- name: emulator\n  user: {{}}\n",
            self.url()
        )
    }

    /// Direct access to the storage, for tests that inspect or age it.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut store)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
