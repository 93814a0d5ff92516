//! A small model of server-side apply's field ownership: which managers own each leaf field, so
//! that an apply without `force` over another manager's value fails with 409 Conflict (leader
//! election depends on this), two appliers sending the same value both own it, and a field an
//! applier stops sending is removed only when nobody else owns it.
//!
//! Simplifications, written down: lists are atomic leaves (no `listType: map` merging by key),
//! ownership is kept beside the object rather than in `metadata.managedFields`, and one
//! operation type per manager is tracked (apply or update), not both.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub manager: String,
    pub applied: bool,
}

/// The managers that own each leaf, by JSON pointer.
pub type Owners = BTreeMap<String, Vec<Owner>>;

/// Paths that belong to the server, never to a manager.
fn ignored(path: &str) -> bool {
    path == "/apiVersion"
        || path == "/kind"
        || path.starts_with("/metadata/managedFields")
        || matches!(
            path,
            "/metadata/name"
                | "/metadata/namespace"
                | "/metadata/resourceVersion"
                | "/metadata/uid"
                | "/metadata/generation"
                | "/metadata/creationTimestamp"
                | "/metadata/deletionTimestamp"
        )
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Every leaf of `value` (scalars, lists, empty objects) by JSON pointer.
pub fn leaves(value: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out.retain(|path, _| !ignored(path));
    out
}

fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                walk(&format!("{prefix}/{}", escape(key)), child, out);
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.to_string(), value.clone());
            }
        }
    }
}

/// After an update by `manager` from `before` to `after`, it owns every leaf it changed.
pub fn record_update(owners: &mut Owners, before: &Value, after: &Value, manager: &str) {
    let (old, new) = (leaves(before), leaves(after));
    owners.retain(|path, _| new.contains_key(path));
    for (path, value) in &new {
        if old.get(path) != Some(value) {
            // Changing a field takes it from whoever owned it.
            owners.insert(
                path.clone(),
                vec![Owner {
                    manager: manager.to_string(),
                    applied: false,
                }],
            );
        }
    }
}

/// The leaves of `applied` whose current value differs and belongs to another manager.
pub fn conflicts(owners: &Owners, current: &Value, applied: &Value, manager: &str) -> Vec<String> {
    let now = leaves(current);
    leaves(applied)
        .into_iter()
        .filter(|(path, value)| {
            now.get(path).is_some_and(|v| v != value)
                && owners
                    .get(path)
                    .is_some_and(|all| all.iter().any(|o| o.manager != manager))
        })
        .map(|(path, _)| path)
        .collect()
}

/// Merges an applied configuration into `current`: objects merge, everything else replaces;
/// fields `manager` applied before and no longer sends are given up, and removed when nobody
/// else owns them.
pub fn apply(owners: &mut Owners, current: &Value, applied: &Value, manager: &str) -> Value {
    let sent = leaves(applied);
    let now = leaves(current);
    let mut result = current.clone();
    let given_up: Vec<String> = owners
        .iter()
        .filter(|(path, all)| {
            !sent.contains_key(*path) && all.iter().any(|o| o.manager == manager && o.applied)
        })
        .map(|(path, _)| path.clone())
        .collect();
    for path in &given_up {
        let all = owners.entry(path.clone()).or_default();
        all.retain(|o| o.manager != manager);
        if all.is_empty() {
            owners.remove(path);
            remove_pointer(&mut result, path);
        }
    }
    merge(&mut result, applied);
    let me = Owner {
        manager: manager.to_string(),
        applied: true,
    };
    for (path, value) in &sent {
        let all = owners.entry(path.clone()).or_default();
        if now.get(path) == Some(value) {
            // The same value: owned together with whoever owned it.
            all.retain(|o| o.manager != manager);
            all.push(me.clone());
        } else {
            // A new value (no conflict, or forced): owned by this manager alone.
            *all = vec![me.clone()];
        }
    }
    let remaining = leaves(&result);
    owners.retain(|path, _| remaining.contains_key(path));
    result
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn remove_pointer(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(map)) = value.pointer_mut(parent) {
        map.remove(&key);
        prune_empty(value, parent);
    }
}

// Removing the last field of an object leaves `{}` behind; SSA removes such parents too.
fn prune_empty(value: &mut Value, pointer: &str) {
    if pointer.is_empty() {
        return;
    }
    let empty = matches!(value.pointer(pointer), Some(Value::Object(m)) if m.is_empty());
    if empty {
        remove_pointer(value, pointer);
    }
}
