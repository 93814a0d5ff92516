//! The CustomResourceDefinitions, rendered the one way `crds/` and the chart hold them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::manifest::KINDS;

use crate::api::{
    AccessGrant, AccessRequest, AwsConnector, IamUser, IdentityCenterGroup, IdentityCenterUser,
    PermissionSet,
};

/// Every CRD the operator owns. They carry Helm's keep policy: the chart installs and upgrades
/// them as templates (Helm never upgrades its `crds/` folder), and uninstalling the chart must
/// not delete every AwsConnector and AccessGrant with them.
pub fn all() -> Vec<CustomResourceDefinition> {
    // In the order the group's kinds are listed (`manifest::KINDS`).
    KINDS.iter().filter_map(|kind| of_kind(kind)).collect()
}

/// The CRD of one kind, as `all` renders it; rendering only that one keeps a command that
/// reads one kind from running (and mapping) the schema code of every other.
pub fn of_kind(kind: &str) -> Option<CustomResourceDefinition> {
    let crd = match kind {
        "AwsConnector" => AwsConnector::crd(),
        "AccessGrant" => AccessGrant::crd(),
        "AccessRequest" => AccessRequest::crd(),
        "PermissionSet" => PermissionSet::crd(),
        "IdentityCenterUser" => IdentityCenterUser::crd(),
        "IdentityCenterGroup" => IdentityCenterGroup::crd(),
        "IamUser" => IamUser::crd(),
        _ => return None,
    };
    Some(finished(crd))
}

fn finished(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("helm.sh/resource-policy".into(), "keep".into());
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            known_formats(schema);
        }
    }
    crd
}

/// The integer formats Kubernetes knows for a structural schema.
const KNOWN_INTEGER_FORMATS: &[&str] = &["int32", "int64"];

/// Rewrites the integer formats schemars derives from Rust's unsigned types (`uint64`, ...),
/// which API servers warn about as unknown, into the signed one of the same width or wider;
/// `minimum: 0` (also derived) keeps them non-negative.
fn known_formats(schema: &mut JSONSchemaProps) {
    if let Some(format) = schema.format.as_deref()
        && schema.type_.as_deref() == Some("integer")
        && !KNOWN_INTEGER_FORMATS.contains(&format)
    {
        let wide = matches!(format, "uint32" | "uint64" | "uint");
        schema.format = Some(if wide { "int64" } else { "int32" }.to_string());
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        known_formats(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        known_formats(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        known_formats(extra);
    }
}

/// Where the chart keeps its copy of the CRDs, relative to the repository.
pub const CHART_CRDS: &str = "charts/aws-access-operator/files/crds";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_renders_under_its_own_name() {
        let crds = all();
        assert_eq!(crds.len(), KINDS.len(), "a kind without a CRD");
        for (crd, kind) in crds.iter().zip(KINDS) {
            assert_eq!(crd.spec.names.kind, *kind);
        }
        assert_eq!(of_kind("Secret"), None);
    }

    /// Every `format` in the CRDs is one Kubernetes knows, so API servers accept them without
    /// warnings (1.36 warns about `uint64`).
    #[test]
    fn every_format_is_known_to_kubernetes() {
        const KNOWN: &[&str] = &["int32", "int64", "double", "float", "date-time", "byte"];
        fn walk(value: &serde_json::Value, found: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(format)) = map.get("format") {
                        found.push(format.clone());
                    }
                    map.values().for_each(|v| walk(v, found));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        for crd in all() {
            walk(&serde_json::to_value(&crd).expect("json"), &mut found);
        }
        assert!(found.iter().any(|f| f == "int64"), "{found:?}");
        let unknown: Vec<&String> = found
            .iter()
            .filter(|f| !KNOWN.contains(&f.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "formats Kubernetes does not know: {unknown:?}"
        );
    }
}
