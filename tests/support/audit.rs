//! The API server's audit log (the local control plane writes one): every request, who made it,
//! and what the authorizer decided.

use std::path::Path;

use serde_json::Value;

/// One request, in RBAC's terms.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub verb: String,
    /// Empty for a request across namespaces or on a cluster-scoped resource.
    pub namespace: String,
    /// Empty when the request names no object (list, watch, create).
    pub name: String,
    /// `allow` or `forbid`.
    pub decision: String,
    /// Why, e.g. `RBAC: allowed by RoleBinding "x/ns" of Role "x" to ServiceAccount "sa/ns"`.
    pub reason: String,
    pub code: u16,
    /// The response's message, when the request failed.
    pub message: String,
    /// The path and query asked for (`?dryRun=All` marks a dry run).
    pub uri: String,
}

/// The resource requests `username` made, from the audit log at `path`.
pub fn requests_of(path: &Path, username: &str) -> Vec<Request> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the audit log {}: {e}", path.display()));
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["user"]["username"] == username)
        .filter(|event| event["objectRef"].is_object())
        .map(|event| {
            let object = &event["objectRef"];
            let mut resource = s(&object["resource"]);
            if let Some(sub) = object["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            Request {
                group: s(&object["apiGroup"]),
                resource,
                verb: s(&event["verb"]),
                namespace: s(&object["namespace"]),
                name: s(&object["name"]),
                decision: s(&event["annotations"]["authorization.k8s.io/decision"]),
                reason: s(&event["annotations"]["authorization.k8s.io/reason"]),
                code: event["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
                message: s(&event["responseStatus"]["message"]),
                uri: s(&event["requestURI"]),
            }
        })
        .collect()
}
