//! The real `helm` and `kubectl` (built with the control plane from `helm.sh/helm/v4` and
//! `k8s.io/kubernetes`) against the cluster the tests run on, and the operator's container as
//! the chart renders it, to start the operator outside a pod.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};

use super::control_plane::bin;

/// The chart, in this repository.
pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/aws-access-operator")
}

/// Runs helm with `args` against the cluster `kubeconfig` names; its own settings and caches
/// live in a temporary directory, never in the user's home.
pub fn helm(kubeconfig: &Path, args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("tempdir");
    Command::new(bin().join("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_KUBECONTEXT")
        .output()
        .expect("run helm")
}

/// The standard output of a tool that succeeded; a panic with all it said otherwise.
fn succeeded(tool: &str, args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "{tool} {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs helm and panics with its output unless it succeeded; returns its standard output.
pub fn helm_ok(kubeconfig: &Path, args: &[&str]) -> String {
    succeeded("helm", args, helm(kubeconfig, args))
}

/// The environment and arguments of the operator container of the release's Deployment, as
/// the kubelet would give them to a pod named `pod`: field references resolved, every value
/// taken as the chart rendered it.
pub async fn operator_container(
    admin: &Client,
    namespace: &str,
    deployment: &str,
    pod: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), namespace);
    let found = deployments
        .get(deployment)
        .await
        .unwrap_or_else(|e| panic!("the chart's Deployment {namespace}/{deployment}: {e}"));
    let container = found
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().find(|c| c.name == "operator"))
        .expect("the operator container");
    let mut env = Vec::new();
    for variable in container.env.unwrap_or_default() {
        let value = match (variable.value, variable.value_from) {
            (Some(value), _) => value,
            (None, Some(from)) => {
                let field = from
                    .field_ref
                    .map(|f| f.field_path)
                    .unwrap_or_else(|| panic!("{}: only field references here", variable.name));
                match field.as_str() {
                    "metadata.name" => pod.to_string(),
                    "metadata.namespace" => namespace.to_string(),
                    other => panic!("{}: no value for the field {other}", variable.name),
                }
            }
            (None, None) => String::new(),
        };
        env.push((variable.name, value));
    }
    (container.args.unwrap_or_default(), env)
}

/// Runs kubectl (built with the control plane) against the cluster the tests run on, with
/// `stdin` as its standard input.
pub fn kubectl(args: &[&str], stdin: &str) -> Output {
    kubectl_at(&super::cluster::kubeconfig(), args, stdin)
}

/// kubectl against the cluster `kubeconfig` names.
pub fn kubectl_at(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin().join("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes()).expect("kubectl's stdin");
    }
    child.wait_with_output().expect("kubectl")
}

/// Runs kubectl and panics with its output unless it succeeded; returns its standard output.
pub fn kubectl_ok(args: &[&str], stdin: &str) -> String {
    succeeded("kubectl", args, kubectl(args, stdin))
}
