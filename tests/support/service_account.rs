//! Acting as a ServiceAccount: a token from the API server's TokenRequest, and a client or a
//! kubeconfig file that authenticates with it, so that what the operator may do is decided by
//! the real RBAC authorizer from the roles a test (or the chart) binds.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use super::cluster::TestCluster;
use super::control_plane::client_from;

pub struct Identity {
    /// `system:serviceaccount:<namespace>:<name>`, as the audit log names it.
    pub username: String,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Identity {
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }
}

/// A token for the ServiceAccount `namespace/name` (which must exist), valid for an hour.
pub async fn token(admin: &Client, namespace: &str, name: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}
    }))
    .expect("token request");
    let answer: TokenRequest = accounts
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
    answer.status.expect("a token").token
}

/// The ServiceAccount `namespace/name` as an identity: the cluster's kubeconfig with the
/// admin's credentials replaced by the account's token.
pub async fn identity(cluster: &TestCluster, namespace: &str, name: &str) -> Identity {
    let token = token(&cluster.client, namespace, name).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    write_token_kubeconfig(&cluster.kubeconfig, &path, &token);
    Identity {
        username: format!("system:serviceaccount:{namespace}:{name}"),
        kubeconfig: path,
        _dir: dir,
    }
}

/// Writes `to`: the kubeconfig `from`, each of its users authenticated by `token` alone.
fn write_token_kubeconfig(from: &Path, to: &Path, token: &str) {
    let text = std::fs::read_to_string(from).expect("read the kubeconfig");
    let mut config: Value = serde_saphyr::from_str(&text).expect("a YAML kubeconfig");
    for user in config["users"].as_array_mut().into_iter().flatten() {
        user["user"] = json!({"token": token});
    }
    // JSON is YAML: every kubeconfig reader takes it.
    std::fs::write(to, config.to_string()).expect("write the kubeconfig");
}

async fn create<K>(api: Api<K>, object: Value)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let object: K = serde_json::from_value(object).expect("an object");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {object:?}: {e}"));
}

/// Creates the ServiceAccount `namespace/name`, gives it `cluster_rules` everywhere (a
/// ClusterRole and ClusterRoleBinding named `<namespace>-<name>`) and `namespaced` rules in
/// the namespaces listed (a Role and RoleBinding there), and returns it as an identity once
/// the authorizer has seen the bindings.
pub async fn with_rules(
    cluster: &TestCluster,
    namespace: &str,
    name: &str,
    cluster_rules: Value,
    namespaced: &[(&str, Value)],
) -> Identity {
    let admin = &cluster.client;
    let binding_name = format!("{namespace}-{name}");
    let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": namespace}]);
    create::<ServiceAccount>(
        Api::namespaced(admin.clone(), namespace),
        json!({"metadata": {"name": name}}),
    )
    .await;
    create::<ClusterRole>(
        Api::all(admin.clone()),
        json!({"metadata": {"name": binding_name}, "rules": cluster_rules}),
    )
    .await;
    create::<ClusterRoleBinding>(Api::all(admin.clone()), json!({
        "metadata": {"name": binding_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": binding_name},
        "subjects": subject}))
    .await;
    for (ns, rules) in namespaced {
        create::<Role>(
            Api::namespaced(admin.clone(), ns),
            json!({"metadata": {"name": binding_name}, "rules": rules}),
        )
        .await;
        create::<RoleBinding>(Api::namespaced(admin.clone(), ns), json!({
            "metadata": {"name": binding_name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": binding_name},
            "subjects": subject}))
        .await;
    }
    let identity = identity(cluster, namespace, name).await;
    // RBAC is read from the authorizer's informers: wait until it has the last binding.
    let client = identity.client().await;
    super::wait::until(
        "the authorizer to see the new bindings",
        std::time::Duration::from_secs(30),
        || async {
            allowed_everywhere(&client, namespaced, &cluster_rules)
                .await
                .then_some(())
        },
    )
    .await;
    identity
}

/// Whether the account may already do the first verb of every rule it was given.
async fn allowed_everywhere(
    client: &Client,
    namespaced: &[(&str, Value)],
    cluster: &Value,
) -> bool {
    let mut checks: Vec<(Option<&str>, &Value)> = cluster
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| (None, rule))
        .collect();
    for (ns, rules) in namespaced {
        checks.extend(
            rules
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (Some(*ns), r)),
        );
    }
    for (namespace, rule) in checks {
        let first = |field: &str| rule[field][0].as_str().unwrap_or_default().to_string();
        let name = rule["resourceNames"][0].as_str().unwrap_or_default();
        let asked = (first("apiGroups"), first("resources"), first("verbs"));
        if !may(
            client,
            (&asked.0, &asked.1, &asked.2),
            namespace.unwrap_or_default(),
            name,
        )
        .await
        {
            return false;
        }
    }
    true
}

/// Whether the client's user may do `(group, resource[/subresource], verb)` in `namespace`
/// ("" for cluster-wide) on `name` ("" for any), as the API server's authorizer answers a
/// SelfSubjectAccessReview now.
pub async fn may(client: &Client, asked: (&str, &str, &str), namespace: &str, name: &str) -> bool {
    let (group, resource, verb) = asked;
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {
            "group": group, "resource": resource, "subresource": subresource,
            "verb": verb, "namespace": namespace, "name": name
        }}
    });
    let request = http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        .header("content-type", "application/json")
        .body(review.to_string().into_bytes())
        .expect("request");
    match client.request::<Value>(request).await {
        Ok(answer) => answer["status"]["allowed"] == json!(true),
        Err(_) => false,
    }
}
