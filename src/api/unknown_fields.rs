//! Fields a manifest has that the CRD's schema does not: the API server refuses them (with
//! kubectl's strict field validation) or drops them silently, and either way a typo such as
//! `duraton: 8h` must not quietly turn an 8-hour grant into a permanent one. The offline
//! commands refuse them, naming the field.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

/// The paths (`spec.duraton`) of the fields in `object` that `schema` (an OpenAPI v3 schema
/// as in a CRD) does not declare.
pub fn unknown_fields(object: &Value, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(object, schema, "", &mut out);
    out
}

/// What else the API server checks against the schema before any rule: string lengths and
/// enumerations, each as `field: message`.
pub fn schema_violations(object: &Value, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(object, schema, "", &mut out);
    out
}

fn check(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Value::String(text) = value {
        let length = text.chars().count() as u64;
        if let Some(max) = schema["maxLength"].as_u64()
            && length > max
        {
            out.push(format!("{path}: must be no more than {max} characters"));
        }
        if let Some(min) = schema["minLength"].as_u64()
            && length < min
        {
            out.push(format!("{path}: must be at least {min} characters"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let shown: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        out.push(format!("{path}: must be one of {}", shown.join(", ")));
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if let Some(child_schema) = schema["properties"].get(key) {
                    check(child, child_schema, &join(path, key), out);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (index, item) in items.iter().enumerate() {
                check(item, &schema["items"], &format!("{path}[{index}]"), out);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (key, child) in map {
                // Every object has these; the API server checks them itself.
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let here = join(path, key);
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) => walk(child, child_schema, &here, out),
                    (None, Value::Object(_)) => walk(child, additional, &here, out),
                    (None, Value::Bool(true)) => {}
                    // No declared fields at all (e.g. `metadata`): the API server checks those.
                    (None, _) if properties.is_none() => {}
                    (None, _) => out.push(here),
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (index, item) in items.iter().enumerate() {
                walk(item, &schema["items"], &format!("{path}[{index}]"), out);
            }
        }
        _ => {}
    }
}

/// The OpenAPI schema of one of our kinds, from the CRD the operator ships. Each kind's is
/// rendered when first asked for and kept: a command that reads only connectors (`sync`) holds
/// only the connector's, not the half megabyte of every kind's.
pub fn schema_of(kind: &str) -> Option<&'static Value> {
    static SCHEMAS: Mutex<BTreeMap<String, Option<&'static Value>>> = Mutex::new(BTreeMap::new());
    // Each step is one insert: a panic elsewhere while holding the lock leaves the map whole.
    let mut schemas = SCHEMAS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = schemas.get(kind) {
        return *known;
    }
    let schema = crate::crd::of_kind(kind)
        .and_then(|crd| {
            crd.spec
                .versions
                .into_iter()
                .next()?
                .schema?
                .open_api_v3_schema
        })
        .and_then(|schema| serde_json::to_value(schema).ok())
        // Kept for the life of the process, at most once per kind.
        .map(|schema| &*Box::leak(Box::new(schema)));
    schemas.insert(kind.to_string(), schema);
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_misspelt_field_is_named_and_declared_ones_pass() {
        let schema = schema_of("AccessGrant").expect("schema");
        let grant = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": "g", "labels": {"team": "a"}},
            "spec": {"connectorRef": {"name": "org"},
                "principal": {"kind": "SsoUser", "name": "alice", "nmae": "x"},
                "target": {"kind": "SsoGroupMembership", "group": "admins"},
                "duraton": "8h"}});
        assert_eq!(
            unknown_fields(&grant, schema),
            ["spec.duraton", "spec.principal.nmae"]
        );
        let mut clean = grant.clone();
        clean["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("duraton");
        clean["spec"]["principal"]
            .as_object_mut()
            .expect("principal")
            .remove("nmae");
        assert!(unknown_fields(&clean, schema).is_empty());

        let connector = schema_of("AwsConnector").expect("schema");
        let typo = json!({"spec": {"region": "us-east-1",
            "grantPolicy": {"allowedNamespaces": {"from": "Selector",
                "selector": {"matchLabels": {"any": "label"}}}, "deniedPermisionSets": ["Admin"]}}});
        assert_eq!(
            unknown_fields(&typo, connector),
            ["spec.grantPolicy.deniedPermisionSets"],
            "a misspelt deny list would allow everything"
        );
    }

    #[test]
    fn lengths_and_enumerations_are_checked_as_the_api_server_does() {
        let schema = schema_of("AccessGrant").expect("schema");
        let grant = json!({"spec": {"connectorRef": {"name": "x".repeat(254)},
            "principal": {"kind": "SsoUser", "name": ""},
            "target": {"kind": "SsoGroupMembership", "group": "admins"},
            "deletionPolicy": "Sometimes"}});
        let found = schema_violations(&grant, schema);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("spec.connectorRef.name: must be no more than 253"))
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("spec.principal.name: must be at least 1"))
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("spec.deletionPolicy: must be one of"))
        );
    }
}
