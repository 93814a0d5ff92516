//! The CustomResourceDefinitions, rendered the one way `crds/` and the chart hold them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{AccessGrant, AwsConnector};

/// Every CRD the operator owns. They carry Helm's keep policy: the chart installs and upgrades
/// them as templates (Helm never upgrades its `crds/` folder), and uninstalling the chart must
/// not delete every AwsConnector and AccessGrant with them.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![AwsConnector::crd(), AccessGrant::crd()];
    for crd in &mut crds {
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("helm.sh/resource-policy".into(), "keep".into());
    }
    crds
}

/// Where the chart keeps its copy of the CRDs, relative to the repository.
pub const CHART_CRDS: &str = "charts/aws-access-operator/templates/crds";

/// One CRD as a YAML document, as stored in `crds/<name>.yaml`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// The file name a CRD is stored under in `crds/`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// Every CRD as one multi-document YAML stream (what `aws-access-operator crd` prints).
pub fn render_all() -> Result<String, serde_saphyr::SerializeError> {
    let docs = all().iter().map(to_yaml).collect::<Result<Vec<_>, _>>()?;
    Ok(docs.iter().map(|d| format!("---\n{d}")).collect::<String>())
}
