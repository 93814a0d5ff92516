//! Reading manifests from files and directories, the way `kubectl apply -f` does: every
//! `*.yaml`/`*.yml` file (directories recursively), multi-document, objects of other kinds
//! skipped.

use std::path::{Path, PathBuf};

use kube::core::TypeMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::identity::AnyIdentity;
use crate::api::{
    AccessGrant, AccessRequest, AwsConnector, IamUser, IdentityCenterGroup, IdentityCenterUser,
    PermissionSet,
};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: no such file or directory")]
    Missing { path: PathBuf },
    #[error("{path}: not a regular file or directory (a FIFO, socket or device is not read)")]
    Special { path: PathBuf },
}

/// `-f -`: the manifests come on standard input.
pub const STDIN: &str = "-";

/// Documents one input may hold: far more than any set of grants, and a bound on a stream of
/// empty documents.
const MAX_DOCUMENTS: usize = 100_000;

/// Where a document came from, for messages: `file.yaml#2` is the second document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub index: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.path.display(), self.index + 1)
    }
}

/// One of our objects as read from a manifest: decoded, or the reason it could not be.
#[derive(Debug)]
pub enum Document {
    Connector(Box<AwsConnector>),
    Grant(Box<AccessGrant>),
    Request(Box<AccessRequest>),
    PermissionSet(Box<PermissionSet>),
    /// An IdentityCenterUser, IdentityCenterGroup or IamUser.
    Identity(AnyIdentity),
    /// An `awsaccess.io` object whose fields do not decode (`message` names the field), or of a
    /// kind or version the group does not have (`message` names the ones it has).
    Undecodable {
        kind: String,
        name: Option<String>,
        namespace: Option<String>,
        message: String,
    },
}

/// A document and where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub source: Source,
    pub document: Document,
}

/// Expands files and directories into the manifest files they name, in a stable order, each
/// file once however many links or arguments lead to it (a symlink loop ends there). `-` is
/// standard input. A FIFO, socket or device is refused rather than read (it could block).
pub fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for path in paths {
        if path.as_os_str() == STDIN {
            if seen.insert(PathBuf::from(STDIN)) {
                files.push(path.clone());
            }
            continue;
        }
        let Ok(metadata) = std::fs::metadata(path) else {
            return Err(ManifestError::Missing { path: path.clone() });
        };
        if metadata.is_dir() {
            collect_dir(path, &mut files, &mut seen)?;
        } else if metadata.is_file() {
            if seen.insert(canonical(path)) {
                files.push(path.clone());
            }
        } else {
            return Err(ManifestError::Special { path: path.clone() });
        }
    }
    Ok(files)
}

/// The path a file or directory really is, to know it once.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn collect_dir(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    seen: &mut std::collections::BTreeSet<PathBuf>,
) -> Result<(), ManifestError> {
    // A directory reached again (through a symlink loop, or named twice) adds nothing.
    if !seen.insert(canonical(dir)) {
        return Ok(());
    }
    let read = |source| ManifestError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(read)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    entries.sort();
    for entry in entries {
        let Ok(metadata) = std::fs::metadata(&entry) else {
            // A dangling link names nothing to read.
            continue;
        };
        if metadata.is_dir() {
            collect_dir(&entry, files, seen)?;
        } else if entry
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            if !metadata.is_file() {
                return Err(ManifestError::Special { path: entry });
            }
            if seen.insert(canonical(&entry)) {
                files.push(entry);
            }
        }
    }
    Ok(())
}

/// The text of one input.
fn read_input(path: &Path) -> Result<String, ManifestError> {
    let read = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.as_os_str() == STDIN {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(read)?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(read)
}

/// Reads every AwsConnector and AccessGrant in `paths`. Objects of other kinds are skipped and
/// returned by source so that callers can say so.
pub fn load(paths: &[PathBuf]) -> Result<(Vec<Loaded>, Vec<Source>), ManifestError> {
    let mut loaded = Vec::new();
    let mut skipped = Vec::new();
    for path in manifest_files(paths)? {
        let text = read_input(&path)?;
        let mut budget = serde_saphyr::Budget::default();
        budget.max_documents = MAX_DOCUMENTS;
        let mut options = serde_saphyr::Options::default();
        options.budget = Some(budget);
        let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, options)
            .map_err(|e| ManifestError::Yaml {
                path: path.clone(),
                message: e.to_string(),
            })?;
        for (index, value) in documents.into_iter().enumerate() {
            let source = Source {
                path: path.clone(),
                index,
            };
            if value.is_null() {
                continue;
            }
            match decode(value) {
                Some(document) => loaded.push(Loaded { source, document }),
                None => skipped.push(source),
            }
        }
    }
    Ok((loaded, skipped))
}

/// The kinds of the `awsaccess.io` group, as `validate` names them.
pub const KINDS: &[&str] = &[
    "AwsConnector",
    "AccessGrant",
    "AccessRequest",
    "PermissionSet",
    "IdentityCenterUser",
    "IdentityCenterGroup",
    "IamUser",
];

/// The one version the group serves.
pub const VERSION: &str = "v1alpha1";

/// Decodes one document; `None` when it is not of the `awsaccess.io` group. A kind or version
/// the group does not have is refused rather than skipped: the API server would refuse it, and
/// a CI check that passed it (`kind: AccesGrant`) would pass a broken manifest.
pub fn decode(value: Value) -> Option<Document> {
    let types: TypeMeta = serde_json::from_value(value.clone()).ok()?;
    let (group, version) = types.api_version.split_once('/')?;
    if group != crate::api::GROUP {
        return None;
    }
    let refuse = |message: String| {
        let metadata = |field: &str| {
            value
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(Document::Undecodable {
            kind: types.kind.clone(),
            name: metadata("name"),
            namespace: metadata("namespace"),
            message,
        })
    };
    if !KINDS.contains(&types.kind.as_str()) {
        return refuse(format!(
            "kind {:?} is not a kind of {}: it has {}",
            types.kind,
            crate::api::GROUP,
            KINDS.join(", ")
        ));
    }
    if version != VERSION {
        return refuse(format!(
            "apiVersion {} is not served: {} is {}/{VERSION}",
            types.api_version,
            types.kind,
            crate::api::GROUP
        ));
    }
    match types.kind.as_str() {
        "AwsConnector" => Some(decode_as::<AwsConnector>(value, "AwsConnector", |c| {
            Document::Connector(Box::new(c))
        })),
        "AccessGrant" => Some(decode_as::<AccessGrant>(value, "AccessGrant", |g| {
            Document::Grant(Box::new(g))
        })),
        "AccessRequest" => Some(decode_as::<AccessRequest>(value, "AccessRequest", |r| {
            Document::Request(Box::new(r))
        })),
        "PermissionSet" => Some(decode_as::<PermissionSet>(value, "PermissionSet", |s| {
            Document::PermissionSet(Box::new(s))
        })),
        "IdentityCenterUser" => Some(decode_as::<IdentityCenterUser>(
            value,
            "IdentityCenterUser",
            |u| Document::Identity(AnyIdentity::User(Box::new(u))),
        )),
        "IdentityCenterGroup" => Some(decode_as::<IdentityCenterGroup>(
            value,
            "IdentityCenterGroup",
            |g| Document::Identity(AnyIdentity::Group(Box::new(g))),
        )),
        "IamUser" => Some(decode_as::<IamUser>(value, "IamUser", |u| {
            Document::Identity(AnyIdentity::IamUser(Box::new(u)))
        })),
        _ => None,
    }
}

fn decode_as<K: DeserializeOwned>(
    value: Value,
    kind: &str,
    wrap: impl FnOnce(K) -> Document,
) -> Document {
    let metadata = |field: &str| {
        value
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (name, namespace) = (metadata("name"), metadata("namespace"));
    // A field the CRD does not declare is refused, as strict field validation in the API
    // server refuses it: a typo must not silently change what the object means.
    let schema = crate::api::unknown_fields::schema_of(kind);
    let mut problems: Vec<String> = schema
        .map(|schema| crate::api::unknown_fields::unknown_fields(&value, schema))
        .unwrap_or_default()
        .iter()
        .map(|field| format!("{field}: unknown field (not in the {kind} schema)"))
        .collect();
    // What the API server checks before any rule: a name, string lengths, enumerations.
    match name.as_deref() {
        None | Some("") => problems.push("metadata.name: required".to_string()),
        Some(n) if n.len() > 253 => {
            problems.push("metadata.name: must be no more than 253 characters".to_string())
        }
        Some(_) => {}
    }
    if let Some(schema) = schema {
        problems.extend(crate::api::unknown_fields::schema_violations(
            &value, schema,
        ));
    }
    if !problems.is_empty() {
        return Document::Undecodable {
            kind: kind.to_string(),
            name,
            namespace,
            message: problems.join("; "),
        };
    }
    match serde_path_to_error::deserialize::<_, K>(&value) {
        Ok(object) => wrap(object),
        Err(error) => Document::Undecodable {
            kind: kind.to_string(),
            name,
            namespace,
            message: format!("{}: {}", error.path(), error.inner()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_our_kinds_and_names_the_broken_field() {
        let docs: Vec<Value> = serde_saphyr::from_multiple(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
---
apiVersion: awsaccess.io/v1alpha1
kind: AccessGrant
metadata: {name: bad, namespace: team}
spec:
  connectorRef: {name: org}
  principal: {kind: Robot, name: alice}
  target: {kind: SsoGroupMembership, group: admins}
---
apiVersion: awsaccess.io/v1alpha1
kind: AwsConnector
metadata: {name: org}
spec: {region: us-east-1}
"#,
        )
        .expect("yaml");
        let decoded: Vec<_> = docs.into_iter().map(decode).collect();
        assert!(decoded[0].is_none(), "ConfigMap is not ours");
        match &decoded[1] {
            Some(Document::Undecodable { name, message, .. }) => {
                assert_eq!(name.as_deref(), Some("bad"));
                assert!(message.starts_with("spec.principal.kind"), "{message}");
            }
            other => panic!("expected undecodable, got {other:?}"),
        }
        match &decoded[2] {
            Some(Document::Connector(c)) => {
                assert_eq!(c.spec.region, "us-east-1");
                assert_eq!(c.spec.sync.interval, "1h", "defaults apply");
                assert!(c.spec.sync.iam);
            }
            other => panic!("expected connector, got {other:?}"),
        }
    }
}
