//! The emulator's storage and API semantics, independent of HTTP: resource versions, generation,
//! the status subresource, finalizers and deletion, patches, optimistic concurrency, CEL
//! admission for our CRDs, and the change history that watches replay.

use std::collections::{BTreeMap, VecDeque};

use aws_access_operator::api::{AccessGrant, AwsConnector};
use kube::CustomResourceExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::fields::{self, Owners};
use super::selector::{FieldSelector, LabelSelector};

/// A resource type the emulator serves.
#[derive(Clone, Debug)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Writes to the main resource ignore `.status`; `/status` writes only `.status`.
    pub status_subresource: bool,
    /// `metadata.generation` counts spec changes (custom resources do; ConfigMaps do not).
    pub generation: bool,
    /// The CRD's schema, whose CEL rules are enforced at admission.
    pub schema: Option<Value>,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

fn crd_schema<K: CustomResourceExt>() -> Option<Value> {
    let crd = K::crd();
    let schema = crd
        .spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    serde_json::to_value(schema).ok()
}

/// Exactly the resources the operator uses.
pub fn kinds() -> Vec<Kind> {
    let core = |plural, kind, namespaced| Kind {
        group: "",
        version: "v1",
        plural,
        kind,
        namespaced,
        status_subresource: false,
        generation: false,
        schema: None,
    };
    vec![
        core("configmaps", "ConfigMap", true),
        core("secrets", "Secret", true),
        Kind {
            status_subresource: true,
            ..core("namespaces", "Namespace", false)
        },
        Kind {
            group: "events.k8s.io",
            ..core("events", "Event", true)
        },
        Kind {
            group: "coordination.k8s.io",
            ..core("leases", "Lease", true)
        },
        Kind {
            group: "awsaccess.io",
            version: "v1alpha1",
            status_subresource: true,
            generation: true,
            schema: crd_schema::<AwsConnector>(),
            ..core("awsconnectors", "AwsConnector", true)
        },
        Kind {
            group: "awsaccess.io",
            version: "v1alpha1",
            status_subresource: true,
            generation: true,
            schema: crd_schema::<AccessGrant>(),
            ..core("accessgrants", "AccessGrant", true)
        },
    ]
}

/// An API error, rendered as a `metav1.Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    NotFound(String),
    AlreadyExists(String),
    Conflict(String),
    Invalid(String),
    BadRequest(String),
    Forbidden(String),
    /// The requested resourceVersion is older than the history kept.
    Gone(String),
    MethodNotAllowed(String),
    UnsupportedMediaType(String),
}

impl ApiError {
    pub fn code_and_reason(&self) -> (u16, &'static str) {
        match self {
            Self::NotFound(_) => (404, "NotFound"),
            Self::AlreadyExists(_) => (409, "AlreadyExists"),
            Self::Conflict(_) => (409, "Conflict"),
            Self::Invalid(_) => (422, "Invalid"),
            Self::BadRequest(_) => (400, "BadRequest"),
            Self::Forbidden(_) => (403, "Forbidden"),
            Self::Gone(_) => (410, "Expired"),
            Self::MethodNotAllowed(_) => (405, "MethodNotAllowed"),
            Self::UnsupportedMediaType(_) => (415, "UnsupportedMediaType"),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::NotFound(m)
            | Self::AlreadyExists(m)
            | Self::Conflict(m)
            | Self::Invalid(m)
            | Self::BadRequest(m)
            | Self::Forbidden(m)
            | Self::Gone(m)
            | Self::MethodNotAllowed(m)
            | Self::UnsupportedMediaType(m) => m,
        }
    }

    pub fn to_status(&self) -> Value {
        let (code, reason) = self.code_and_reason();
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message(), "reason": reason, "code": code})
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// How a patch body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    /// Strategic merge, modelled as a JSON merge patch: the only objects we strategic-patch
    /// (Leases) have no lists with patch strategies.
    Strategic,
    Apply {
        force: bool,
    },
}

/// One recorded change, replayed to watches.
#[derive(Clone, Debug)]
pub struct Change {
    pub kind: usize,
    pub namespace: String,
    pub type_: &'static str,
    pub object: Value,
    /// The object before the change, so that selector watches can turn a change that stops
    /// (or starts) matching into DELETED (or ADDED).
    pub previous: Option<Value>,
    pub resource_version: u64,
}

struct Stored {
    object: Value,
    owners: Owners,
}

type Key = (usize, String, String);

/// A page of a list.
pub struct Page {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
}

pub struct Store {
    pub kinds: Vec<Kind>,
    resource_version: u64,
    uid_counter: u64,
    objects: BTreeMap<Key, Stored>,
    history: VecDeque<Change>,
    /// Changes older than this resourceVersion are no longer replayable (410 Gone).
    history_floor: u64,
    history_limit: usize,
    subscribers: Vec<(usize, mpsc::UnboundedSender<Change>)>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

fn spec_of(object: &Value) -> Value {
    let mut rest = object.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    rest
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn meta_str(object: &Value, field: &str) -> Option<String> {
    object
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn set_meta(object: &mut Value, field: &str, value: Value) {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"][field] = value;
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Self {
            kinds: kinds(),
            resource_version: 1,
            uid_counter: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_floor: 1,
            history_limit,
            subscribers: Vec::new(),
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn find_kind(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.kinds
            .iter()
            .position(|k| k.group == group && k.version == version && k.plural == plural)
    }

    fn key(&self, kind: usize, namespace: &str, name: &str) -> Key {
        let namespace = if self.kinds[kind].namespaced {
            namespace
        } else {
            ""
        };
        (kind, namespace.to_string(), name.to_string())
    }

    fn not_found(&self, kind: usize, name: &str) -> ApiError {
        let k = &self.kinds[kind];
        let resource = if k.group.is_empty() {
            k.plural.to_string()
        } else {
            format!("{}.{}", k.plural, k.group)
        };
        ApiError::NotFound(format!("{resource} \"{name}\" not found"))
    }

    pub fn get(&self, kind: usize, namespace: &str, name: &str) -> ApiResult<Value> {
        self.objects
            .get(&self.key(kind, namespace, name))
            .map(|s| s.object.clone())
            .ok_or_else(|| self.not_found(kind, name))
    }

    /// Lists in key order; `continue_from` is the token of the previous page.
    pub fn list(
        &self,
        kind: usize,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_from: Option<&str>,
    ) -> ApiResult<Page> {
        let after = match continue_from {
            Some(token) => Some(
                unhex(token)
                    .and_then(|t| {
                        t.split_once('/')
                            .map(|(n, m)| (n.to_string(), m.to_string()))
                    })
                    .ok_or_else(|| ApiError::BadRequest("invalid continue token".into()))?,
            ),
            None => None,
        };
        let mut items = Vec::new();
        let mut continue_token = None;
        for ((k, ns, name), stored) in &self.objects {
            if *k != kind
                || namespace.is_some_and(|wanted| self.kinds[kind].namespaced && wanted != ns)
                || after
                    .as_ref()
                    .is_some_and(|(ans, aname)| (ns, name) <= (ans, aname))
                || !labels.matches_object(&stored.object)
                || !fields.matches_object(&stored.object)
            {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                // Another match exists: the client must ask for more.
                let last: &Value = items.last().unwrap_or(&stored.object);
                let (lns, lname) = (
                    meta_str(last, "namespace").unwrap_or_default(),
                    meta_str(last, "name").unwrap_or_default(),
                );
                continue_token = Some(hex(&format!("{lns}/{lname}")));
                break;
            }
            items.push(stored.object.clone());
        }
        Ok(Page {
            items,
            resource_version: self.resource_version,
            continue_token,
        })
    }

    /// Registers a watch of `kind` from `resource_version` and returns the changes to replay
    /// first. `None` replays the current objects as ADDED (a watch without a version).
    pub fn subscribe(
        &mut self,
        kind: usize,
        resource_version: Option<u64>,
        tx: mpsc::UnboundedSender<Change>,
    ) -> ApiResult<Vec<Change>> {
        let replay = match resource_version {
            None | Some(0) => self
                .objects
                .iter()
                .filter(|((k, _, _), _)| *k == kind)
                .map(|((_, ns, _), s)| Change {
                    kind,
                    namespace: ns.clone(),
                    type_: "ADDED",
                    object: s.object.clone(),
                    previous: None,
                    resource_version: self.resource_version,
                })
                .collect(),
            Some(from) if from < self.history_floor => {
                return Err(ApiError::Gone(format!(
                    "too old resource version: {from} ({})",
                    self.history_floor
                )));
            }
            Some(from) => self
                .history
                .iter()
                .filter(|c| c.kind == kind && c.resource_version > from)
                .cloned()
                .collect(),
        };
        self.subscribers.push((kind, tx));
        Ok(replay)
    }

    /// Forgets history so that watches from older versions get 410 Gone (as after etcd
    /// compaction).
    pub fn compact(&mut self) {
        self.history.clear();
        self.history_floor = self.resource_version;
    }

    fn record(&mut self, change: Change) {
        self.subscribers
            .retain(|(kind, tx)| *kind != change.kind || tx.send(change.clone()).is_ok());
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.history_floor = dropped.resource_version + 1;
            }
        }
    }

    /// What the real server checks of every object's metadata that the operator could get
    /// wrong: name length and label values.
    fn admit_metadata(&self, kind: usize, object: &Value) -> ApiResult<()> {
        let k = &self.kinds[kind];
        let name = meta_str(object, "name").unwrap_or_default();
        let invalid = |message: String| {
            ApiError::Invalid(format!("{} \"{name}\" is invalid: {message}", k.kind))
        };
        if name.len() > 253 {
            return Err(invalid(format!(
                "metadata.name: Invalid value: {name:?}: must be no more than 253 characters"
            )));
        }
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        for (key, value) in labels.into_iter().flatten() {
            let value = value.as_str().unwrap_or_default();
            let name_part = key.rsplit('/').next().unwrap_or_default();
            let well_formed = |text: &str| {
                text.is_empty()
                    || (text.len() <= 63
                        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
                        && text
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
            };
            if name_part.is_empty() || !well_formed(name_part) {
                return Err(invalid(format!(
                    "metadata.labels: Invalid value: {key:?}: name part must be no more than 63 alphanumeric characters, '-', '_' or '.'"
                )));
            }
            if !well_formed(value) {
                return Err(invalid(format!(
                    "metadata.labels: Invalid value: {value:?}: must be no more than 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
                )));
            }
        }
        Ok(())
    }

    fn admit(&self, kind: usize, object: &Value) -> ApiResult<()> {
        self.admit_metadata(kind, object)?;
        let Some(schema) = &self.kinds[kind].schema else {
            return Ok(());
        };
        kube::core::cel::Validator::new()
            .validate(schema, object, None)
            .map_err(|errors| {
                let k = &self.kinds[kind];
                let name = meta_str(object, "name").unwrap_or_default();
                let messages: Vec<String> = errors
                    .into_vec()
                    .into_iter()
                    .map(|e| {
                        // As the real server words them: a forbidden value is not echoed, an
                        // invalid one is (a string quoted, anything else as "object").
                        if e.reason.as_deref() == Some("FieldValueForbidden") {
                            return format!("{}: Forbidden: {}", e.field_path, e.message);
                        }
                        let pointer = format!("/{}", e.field_path.replace('.', "/"));
                        let shown = match object.pointer(&pointer) {
                            Some(Value::String(text)) => format!("{text:?}"),
                            Some(Value::Number(n)) => n.to_string(),
                            Some(Value::Bool(b)) => b.to_string(),
                            _ => "\"object\"".to_string(),
                        };
                        format!("{}: Invalid value: {shown}: {}", e.field_path, e.message)
                    })
                    .collect();
                ApiError::Invalid(format!(
                    "{}.{} \"{name}\" is invalid: {}",
                    k.kind,
                    k.group,
                    messages.join(", ")
                ))
            })
    }

    pub fn create(
        &mut self,
        kind: usize,
        namespace: &str,
        mut object: Value,
        manager: &str,
    ) -> ApiResult<Value> {
        let k = self.kinds[kind].clone();
        let name = match meta_str(&object, "name") {
            Some(name) if !name.is_empty() => name,
            _ => match meta_str(&object, "generateName") {
                Some(prefix) => format!("{prefix}{:05x}", self.uid_counter + 1),
                None => return Err(ApiError::Invalid("metadata.name: Required value".into())),
            },
        };
        if k.namespaced && namespace.is_empty() {
            return Err(ApiError::BadRequest(
                "the namespace of the object is required".into(),
            ));
        }
        if let Some(body_ns) = meta_str(&object, "namespace")
            && k.namespaced
            && body_ns != namespace
        {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        let key = self.key(kind, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::AlreadyExists(format!(
                "{} \"{name}\" already exists",
                k.plural
            )));
        }
        if k.status_subresource
            && k.generation
            && let Some(map) = object.as_object_mut()
        {
            // The status of a custom resource with a status subresource is not set on create.
            map.remove("status");
        }
        self.admit(kind, &object)?;
        self.uid_counter += 1;
        self.resource_version += 1;
        object["apiVersion"] = json!(k.api_version());
        object["kind"] = json!(k.kind);
        set_meta(&mut object, "name", json!(name));
        if k.namespaced {
            set_meta(&mut object, "namespace", json!(namespace));
        }
        set_meta(
            &mut object,
            "uid",
            json!(format!("00000000-0000-4000-8000-{:012x}", self.uid_counter)),
        );
        set_meta(&mut object, "creationTimestamp", json!(now()));
        set_meta(
            &mut object,
            "resourceVersion",
            json!(self.resource_version.to_string()),
        );
        if k.generation {
            set_meta(&mut object, "generation", json!(1));
        }
        let mut owners = Owners::new();
        fields::record_update(&mut owners, &json!({}), &object, manager);
        self.objects.insert(
            key.clone(),
            Stored {
                object: object.clone(),
                owners,
            },
        );
        self.record(Change {
            kind,
            namespace: key.1,
            type_: "ADDED",
            object: object.clone(),
            previous: None,
            resource_version: self.resource_version,
        });
        Ok(object)
    }

    /// Stores `next` as the new state of an existing object, enforcing what an update may not
    /// change and what the server maintains.
    fn commit(
        &mut self,
        kind: usize,
        namespace: &str,
        name: &str,
        mut next: Value,
        subresource: Option<&str>,
        owners: Owners,
    ) -> ApiResult<Value> {
        let k = self.kinds[kind].clone();
        let key = self.key(kind, namespace, name);
        let current = self
            .objects
            .get(&key)
            .ok_or_else(|| self.not_found(kind, name))?
            .object
            .clone();

        if let Some(version) = meta_str(&next, "resourceVersion")
            && version != meta_str(&current, "resourceVersion").unwrap_or_default()
        {
            return Err(ApiError::Conflict(format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                k.plural
            )));
        }
        if meta_str(&next, "name").is_some_and(|n| n != name) {
            return Err(ApiError::BadRequest(
                "the name of the object does not match the name on the URL".into(),
            ));
        }

        if k.status_subresource {
            match subresource {
                Some("status") => {
                    // Only the status changes through /status.
                    let status = next.get("status").cloned();
                    next = current.clone();
                    match status {
                        Some(status) => next["status"] = status,
                        None => {
                            if let Some(map) = next.as_object_mut() {
                                map.remove("status");
                            }
                        }
                    }
                }
                _ => match current.get("status") {
                    Some(status) => next["status"] = status.clone(),
                    None => {
                        if let Some(map) = next.as_object_mut() {
                            map.remove("status");
                        }
                    }
                },
            }
        } else if subresource.is_some() {
            return Err(ApiError::NotFound(format!(
                "{} has no subresource {subresource:?}",
                k.plural
            )));
        }

        // Server-maintained fields stay as they are.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "namespace",
            "name",
        ] {
            match current.pointer(&format!("/metadata/{field}")) {
                Some(value) => set_meta(&mut next, field, value.clone()),
                None => {
                    if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove(field);
                    }
                }
            }
        }
        next["apiVersion"] = json!(k.api_version());
        next["kind"] = json!(k.kind);

        let deleting = current.pointer("/metadata/deletionTimestamp").is_some();
        let (old_finalizers, new_finalizers) = (finalizers(&current), finalizers(&next));
        if deleting && new_finalizers.iter().any(|f| !old_finalizers.contains(f)) {
            // The real server answers 422 Invalid, naming the field.
            return Err(ApiError::Invalid(format!(
                "{} \"{name}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                k.kind
            )));
        }
        if subresource.is_none() {
            self.admit(kind, &next)?;
        }
        if next == current {
            // A no-op write does not bump the resourceVersion, as on a real apiserver.
            return Ok(current);
        }
        if k.generation && spec_of(&next) != spec_of(&current) {
            let generation = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_meta(&mut next, "generation", json!(generation + 1));
        }
        self.resource_version += 1;
        set_meta(
            &mut next,
            "resourceVersion",
            json!(self.resource_version.to_string()),
        );

        if deleting && new_finalizers.is_empty() {
            // The last finalizer is gone: the object goes.
            self.objects.remove(&key);
            self.record(Change {
                kind,
                namespace: key.1,
                type_: "DELETED",
                object: next.clone(),
                previous: Some(current),
                resource_version: self.resource_version,
            });
            return Ok(next);
        }
        self.store_modified(key, next.clone(), owners, current);
        Ok(next)
    }

    /// Stores the new state of an existing object and tells the watches.
    fn store_modified(&mut self, key: Key, next: Value, owners: Owners, previous: Value) {
        self.objects.insert(
            key.clone(),
            Stored {
                object: next.clone(),
                owners,
            },
        );
        self.record(Change {
            kind: key.0,
            namespace: key.1,
            type_: "MODIFIED",
            object: next,
            previous: Some(previous),
            resource_version: self.resource_version,
        });
    }

    pub fn replace(
        &mut self,
        kind: usize,
        namespace: &str,
        name: &str,
        object: Value,
        subresource: Option<&str>,
        manager: &str,
    ) -> ApiResult<Value> {
        let key = self.key(kind, namespace, name);
        let stored = self
            .objects
            .get(&key)
            .ok_or_else(|| self.not_found(kind, name))?;
        let mut owners = stored.owners.clone();
        fields::record_update(&mut owners, &stored.object, &object, manager);
        self.commit(kind, namespace, name, object, subresource, owners)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        kind: usize,
        namespace: &str,
        name: &str,
        patch_type: PatchType,
        body: &Value,
        subresource: Option<&str>,
        manager: Option<&str>,
    ) -> ApiResult<Value> {
        let key = self.key(kind, namespace, name);
        let Some(stored) = self.objects.get(&key) else {
            if let PatchType::Apply { .. } = patch_type {
                // Server-side apply creates what does not exist.
                let manager = manager.ok_or_else(|| {
                    ApiError::BadRequest("PATCH with apply requires a fieldManager".into())
                })?;
                if subresource.is_some() {
                    return Err(self.not_found(kind, name));
                }
                let created = self.create(kind, namespace, body.clone(), manager)?;
                if let Some(stored) = self.objects.get_mut(&key) {
                    stored.owners = Owners::new();
                    fields::apply(&mut stored.owners, &created, body, manager);
                }
                return Ok(created);
            }
            return Err(self.not_found(kind, name));
        };
        let current = stored.object.clone();
        let mut owners = stored.owners.clone();
        let next = match patch_type {
            PatchType::Json => {
                // The apiserver's JSON patch (evanphx/json-patch) treats `test` of a missing path
                // against null as a pass; kube-runtime's finalizer helper relies on that.
                let operations: Vec<Value> = body
                    .as_array()
                    .ok_or_else(|| ApiError::BadRequest("a JSON patch is a list".into()))?
                    .iter()
                    .filter(|op| {
                        let absent_null_test = op["op"] == "test"
                            && op["value"].is_null()
                            && op["path"]
                                .as_str()
                                .is_some_and(|p| current.pointer(p).is_none());
                        !absent_null_test
                    })
                    .cloned()
                    .collect();
                let patch: json_patch::Patch = serde_json::from_value(Value::Array(operations))
                    .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
                let mut next = current.clone();
                json_patch::patch(&mut next, &patch).map_err(|e| {
                    ApiError::Invalid(format!("the JSON patch could not be applied: {e}"))
                })?;
                fields::record_update(&mut owners, &current, &next, manager.unwrap_or("unknown"));
                next
            }
            PatchType::Merge | PatchType::Strategic => {
                let mut next = current.clone();
                json_patch::merge(&mut next, body);
                fields::record_update(&mut owners, &current, &next, manager.unwrap_or("unknown"));
                next
            }
            PatchType::Apply { force } => {
                let manager = manager.ok_or_else(|| {
                    ApiError::BadRequest("PATCH with apply requires a fieldManager".into())
                })?;
                let conflicts = fields::conflicts(&owners, &current, body, manager);
                if !conflicts.is_empty() && !force {
                    return Err(ApiError::Conflict(format!(
                        "Apply failed with {} conflict(s): {}",
                        conflicts.len(),
                        conflicts.join(", ")
                    )));
                }
                let mut next = fields::apply(&mut owners, &current, body, manager);
                // An applied configuration carries no resourceVersion precondition unless it
                // says so.
                if body.pointer("/metadata/resourceVersion").is_none()
                    && let Some(version) = current.pointer("/metadata/resourceVersion")
                {
                    set_meta(&mut next, "resourceVersion", version.clone());
                }
                next
            }
        };
        self.commit(kind, namespace, name, next, subresource, owners)
    }

    pub fn delete(&mut self, kind: usize, namespace: &str, name: &str) -> ApiResult<Value> {
        let key = self.key(kind, namespace, name);
        let current = self
            .objects
            .get(&key)
            .ok_or_else(|| self.not_found(kind, name))?
            .object
            .clone();
        if !finalizers(&current).is_empty() {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(current);
            }
            let mut next = current.clone();
            set_meta(&mut next, "deletionTimestamp", json!(now()));
            set_meta(&mut next, "deletionGracePeriodSeconds", json!(0));
            if self.kinds[kind].generation {
                let generation = current
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                set_meta(&mut next, "generation", json!(generation + 1));
            }
            self.resource_version += 1;
            set_meta(
                &mut next,
                "resourceVersion",
                json!(self.resource_version.to_string()),
            );
            let owners = self
                .objects
                .get(&key)
                .map(|s| s.owners.clone())
                .unwrap_or_default();
            self.store_modified(key, next.clone(), owners, current);
            return Ok(next);
        }
        self.objects.remove(&key);
        self.resource_version += 1;
        let mut gone = current.clone();
        set_meta(
            &mut gone,
            "resourceVersion",
            json!(self.resource_version.to_string()),
        );
        self.record(Change {
            kind,
            namespace: key.1,
            type_: "DELETED",
            object: gone.clone(),
            previous: Some(current),
            resource_version: self.resource_version,
        });
        Ok(gone)
    }
}
