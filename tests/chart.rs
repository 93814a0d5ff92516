//! The Helm chart, for real: `helm lint` and `helm template` with the default values and with
//! a values file that sets every option (`ci/every-option-values.yaml`), then `helm install`
//! into a control plane of its own, CRDs included, and a `helm upgrade` to a chart whose CRD
//! changed. (The operator running with the chart's RBAC is `rbac.rs`.)
//!
//! Installing the CRDs from scratch needs a cluster without them, so the install test starts a
//! control plane of its own even when `TEST_KUBECONFIG` names a cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::support::control_plane::{ControlPlane, client_from};
use crate::support::tools::{chart, helm, helm_ok};
use crate::support::wait;

fn every_option() -> PathBuf {
    chart().join("ci/every-option-values.yaml")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The documents `helm template` rendered, as JSON.
fn rendered(text: &str) -> Vec<Value> {
    text.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|doc| doc.is_object())
        .collect()
}

fn kinds(documents: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = documents
        .iter()
        .filter_map(|d| d["kind"].as_str().map(str::to_string))
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

#[test]
fn helm_lints_and_renders_the_chart_with_default_and_every_value() {
    // Linting and rendering need no cluster: any kubeconfig path will do.
    let none = Path::new("/nonexistent/kubeconfig");
    let chart = chart();
    for values in [None, Some(every_option())] {
        let mut extra: Vec<&str> = Vec::new();
        if let Some(file) = &values {
            extra.extend(["--values", path(file)]);
        }
        let mut lint = vec!["lint", "--strict", path(&chart)];
        lint.extend(&extra);
        let said = helm_ok(none, &lint);
        assert!(said.contains("0 chart(s) failed"), "{said}");

        // The oldest Kubernetes the chart declares, so kubeVersion is checked too.
        let mut template = vec![
            "template",
            "release",
            path(&chart),
            "--namespace",
            "platform",
            "--kube-version",
            "1.30.0",
        ];
        template.extend(&extra);
        let documents = rendered(&helm_ok(none, &template));
        let kinds = kinds(&documents);
        for kind in [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ] {
            // ConfigMap: none are rendered; the operator writes its own.
            if kind == "ConfigMap" {
                continue;
            }
            assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
        }
        if values.is_some() {
            for kind in ["NetworkPolicy", "ServiceMonitor", "PodDisruptionBudget"] {
                assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
            }
            // watchNamespaces: the ClusterRole is bound in each of them, never cluster-wide.
            let bound_in: Vec<&str> = documents
                .iter()
                .filter(|d| d["kind"] == "RoleBinding" && d["roleRef"]["kind"] == "ClusterRole")
                .filter(|d| d["roleRef"]["name"] == "platform-access-operator")
                .filter_map(|d| d["metadata"]["namespace"].as_str())
                .collect();
            assert_eq!(bound_in, ["platform", "team-a", "team-b"]);
        }
    }

    // A Kubernetes older than the chart supports is refused by name.
    let old = helm(
        none,
        &[
            "template",
            "release",
            path(&chart),
            "--kube-version",
            "1.29.0",
        ],
    );
    assert!(!old.status.success());
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("kubeVersion"),
        "{}",
        String::from_utf8_lossy(&old.stderr)
    );
}

/// A stand-in for the Prometheus operator's ServiceMonitor CRD, which `metrics.serviceMonitor`
/// needs in the cluster: any object of that kind is accepted.
fn service_monitor_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
            "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor", "listKind": "ServiceMonitorList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("CRD")
}

async fn established(crds: &Api<CustomResourceDefinition>, name: &str) -> CustomResourceDefinition {
    wait::until(
        &format!("the CRD {name} to be established"),
        std::time::Duration::from_secs(60),
        || async {
            let crd = crds.get_opt(name).await.ok()??;
            let ok = crd
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            ok.then_some(crd)
        },
    )
    .await
}

/// Copies the chart to `to`, with one more printer column on the AccessGrant CRD: an upgrade
/// that changes a CRD.
fn chart_with_a_changed_crd(to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(chart())
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
    let crd = to.join("files/crds/accessgrants.awsaccess.io.yaml");
    let text = std::fs::read_to_string(&crd).expect("CRD");
    let changed = text.replacen(
        "  - additionalPrinterColumns:\n",
        "  - additionalPrinterColumns:\n    - jsonPath: .spec.deletionPolicy\n      name: DeletionPolicy\n      type: string\n",
        1,
    );
    assert_ne!(text, changed, "the CRD has printer columns to extend");
    std::fs::write(&crd, changed).expect("write");
}

#[tokio::test]
async fn helm_installs_and_upgrades_the_chart_with_its_crds() {
    let plane = ControlPlane::start(&[], false);
    let kubeconfig = plane.endpoints.kubeconfig.clone();
    let admin = client_from(&kubeconfig).await;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for name in ["awsconnectors.awsaccess.io", "accessgrants.awsaccess.io"] {
        assert!(
            crds.get_opt(name).await.expect("get").is_none(),
            "{name} before install"
        );
    }
    crds.create(&PostParams::default(), &service_monitor_crd())
        .await
        .expect("ServiceMonitor CRD");
    established(&crds, "servicemonitors.monitoring.coreos.com").await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for name in ["platform", "team-a", "team-b"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns"),
            )
            .await
            .expect("namespace");
    }

    // Default values.
    let said = helm_ok(
        &kubeconfig,
        &[
            "install",
            "access",
            path(&chart()),
            "--namespace",
            "platform",
        ],
    );
    assert!(said.contains("STATUS: deployed"), "{said}");
    let before = established(&crds, "accessgrants.awsaccess.io").await;
    established(&crds, "awsconnectors.awsaccess.io").await;
    let columns = |crd: &CustomResourceDefinition| -> Vec<String> {
        crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    };
    assert!(!columns(&before).iter().any(|c| c == "DeletionPolicy"));
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "platform");
    let deployment = deployments
        .get("access-aws-access-operator")
        .await
        .expect("deployment");
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(2));

    // A second release beside it, over the same CRDs: one shard of several, with names of its
    // own (lease, roles, admission policy), so both install side by side.
    let said = helm_ok(
        &kubeconfig,
        &[
            "install",
            "green",
            path(&chart()),
            "--namespace",
            "platform",
            "--set",
            "crds.install=false",
            "--set",
            "shard.selector=awsaccess.io/shard=green",
        ],
    );
    assert!(said.contains("STATUS: deployed"), "{said}");
    let env = |deployment: &Deployment| -> BTreeMap<String, String> {
        deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers[0].env.clone().unwrap_or_default())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect()
    };
    let green = env(&deployments
        .get("green-aws-access-operator")
        .await
        .expect("the shard's deployment"));
    let first = env(&deployment);
    assert_eq!(green["SHARD_SELECTOR"], "awsaccess.io/shard=green");
    assert!(!first.contains_key("SHARD_SELECTOR"));
    assert_ne!(green["LEASE_NAME"], first["LEASE_NAME"], "a lease each");
    assert_ne!(
        green["REQUEST_ADMISSION_POLICY"], first["REQUEST_ADMISSION_POLICY"],
        "an admission policy each"
    );
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(admin.clone(), "platform");
    assert!(
        roles
            .get_opt("green-aws-access-operator-shard-claims")
            .await
            .expect("get")
            .is_some(),
        "the shard may hold claims"
    );
    helm_ok(
        &kubeconfig,
        &["uninstall", "green", "--namespace", "platform"],
    );
    established(&crds, "accessgrants.awsaccess.io").await;

    // An upgrade that changes a CRD and sets every value.
    let dir = tempfile::tempdir().expect("tempdir");
    let changed = dir.path().join("aws-access-operator");
    chart_with_a_changed_crd(&changed);
    let said = helm_ok(
        &kubeconfig,
        &[
            "upgrade",
            "access",
            path(&changed),
            "--namespace",
            "platform",
            "--values",
            path(&every_option()),
        ],
    );
    assert!(said.contains("STATUS: deployed"), "{said}");
    let after = wait::until(
        "the upgraded CRD",
        std::time::Duration::from_secs(30),
        || async {
            let crd = crds.get("accessgrants.awsaccess.io").await.ok()?;
            columns(&crd)
                .iter()
                .any(|c| c == "DeletionPolicy")
                .then_some(crd)
        },
    )
    .await;
    assert!(columns(&after).iter().any(|c| c == "Principal"));
    let upgraded = deployments
        .get("platform-access-operator")
        .await
        .expect("deployment");
    assert_eq!(upgraded.spec.as_ref().and_then(|s| s.replicas), Some(3));

    // Uninstalling keeps the CRDs, and with them every AwsConnector and AccessGrant.
    helm_ok(
        &kubeconfig,
        &["uninstall", "access", "--namespace", "platform"],
    );
    established(&crds, "accessgrants.awsaccess.io").await;
    assert!(
        deployments
            .get_opt("platform-access-operator")
            .await
            .expect("get")
            .is_none(),
        "the release's Deployment is gone"
    );
    plane.stop();
}
