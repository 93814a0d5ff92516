//! A connector's ConfigMaps: the inventory, the sync cache, the page state of an unfinished sync
//! and the unmanaged access. They live in the operator's own namespace, not the connector's,
//! so that the operator writes ConfigMaps nowhere else (a ConfigMap elsewhere, such as
//! `kube-system/aws-auth`, can grant cluster access). Labels name the connector; the connector's
//! finalizer deletes them. A value may exceed what one ConfigMap holds (1 MiB), so each is split
//! into shards `<name>-<i>`; a content hash lets an unchanged value be left alone.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::context::FIELD_MANAGER;
use crate::api::AwsConnector;
use crate::fence::Fence;
use crate::fingerprint::{content_hash, short_hash};
use crate::sync::{StateStore, StoreError};

/// Raw bytes per shard: base64 in `binaryData` grows them by a third, which stays under the
/// 1 MiB object limit with room for metadata.
pub const SHARD_BYTES: usize = 700 * 1024;

pub const LABEL_CONNECTOR: &str = "awsaccess.io/connector";
pub const LABEL_CONNECTOR_NAMESPACE: &str = "awsaccess.io/connector-namespace";
pub const LABEL_PART_OF: &str = "awsaccess.io/part-of";
pub const ANNOTATION_HASH: &str = "awsaccess.io/content-hash";
pub const ANNOTATION_SHARDS: &str = "awsaccess.io/shards";
/// The hash of one shard's own bytes: a shard whose bytes did not change is not rewritten.
pub const ANNOTATION_SHARD_HASH: &str = "awsaccess.io/shard-hash";
const KEY: &str = "content";

/// Splits `bytes` into shards of at most `size` (one empty shard for empty content).
pub fn shards(bytes: &[u8], size: usize) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(size.max(1)).collect()
}

/// A label value for `text`: itself when it fits (63 characters), else a prefix and a hash of
/// the whole, so that a long connector name still labels (and selects) its ConfigMaps.
pub fn label_value(text: &str) -> String {
    fit(text, 63)
}

/// `text` cut to `max` characters with a hash of the whole in place of what is cut; unchanged
/// when it fits.
fn fit(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let hash = short_hash(text.as_bytes());
    let keep = max.saturating_sub(hash.len() + 1);
    let prefix: String = text.chars().take(keep).collect();
    format!("{}-{hash}", prefix.trim_end_matches(['-', '.', '_']))
}

/// The base name of a connector's value: `<namespace>.<connector>-<key>`, shortened (with a
/// hash) so that `<base>-<shard>` stays a valid object name whatever the connector's name.
pub fn base_name(namespace: &str, connector: &str, key: &str) -> String {
    fit(&format!("{namespace}.{connector}-{key}"), 240)
}

/// A connector's sharded values, in the operator's namespace.
#[derive(Clone)]
pub struct ConnectorConfigMaps {
    api: Api<ConfigMap>,
    namespace: String,
    connector: String,
    /// When set, writes happen only while it is open (only the leader writes).
    fence: Option<Fence>,
}

impl ConnectorConfigMaps {
    /// The values of `connector`, kept in `home` (the operator's namespace).
    pub fn new(client: kube::Client, home: &str, connector: &AwsConnector) -> Option<Self> {
        Some(Self {
            api: Api::namespaced(client, home),
            namespace: connector.namespace()?,
            connector: connector.name_any(),
            fence: None,
        })
    }

    /// The same store, writing only while `fence` is open.
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// Refuses a write when this replica is not (or no longer) the leader.
    fn may_write(&self) -> Result<(), kube::Error> {
        match &self.fence {
            Some(fence) => fence.check().map_err(|fenced| {
                kube::Error::Service(Box::new(std::io::Error::other(fenced.to_string())))
            }),
            None => Ok(()),
        }
    }

    /// The base name of a value's ConfigMaps (see `base_name`).
    pub fn base_name(&self, key: &str) -> String {
        base_name(&self.namespace, &self.connector, key)
    }

    /// Selects every ConfigMap of this connector.
    fn connector_selector(&self) -> String {
        format!(
            "{LABEL_CONNECTOR}={},{LABEL_CONNECTOR_NAMESPACE}={}",
            label_value(&self.connector),
            label_value(&self.namespace)
        )
    }

    fn selector(&self, key: &str) -> String {
        format!(
            "{},{LABEL_PART_OF}={}",
            self.connector_selector(),
            label_value(&self.base_name(key))
        )
    }

    async fn shards_of(&self, key: &str) -> Result<Vec<ConfigMap>, kube::Error> {
        let mut list = self
            .api
            .list(&ListParams::default().labels(&self.selector(key)))
            .await?
            .items;
        list.sort_by_key(|cm| cm.name_any());
        Ok(list)
    }

    /// Reads a value back from its shards; `None` if absent or incomplete.
    pub async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, kube::Error> {
        let base = self.base_name(key);
        let Some(first) = self.api.get_opt(&format!("{base}-0")).await? else {
            return Ok(None);
        };
        let count: usize = first
            .annotations()
            .get(ANNOTATION_SHARDS)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let expected_hash = first.annotations().get(ANNOTATION_HASH).cloned();
        let mut bytes = Vec::new();
        for index in 0..count {
            let shard = if index == 0 {
                first.clone()
            } else {
                match self.api.get_opt(&format!("{base}-{index}")).await? {
                    Some(shard) => shard,
                    None => return Ok(None),
                }
            };
            let Some(part) = shard.binary_data.as_ref().and_then(|d| d.get(KEY)) else {
                return Ok(None);
            };
            bytes.extend_from_slice(&part.0);
        }
        // A value caught half-written (shards of two versions) is treated as absent.
        Ok((expected_hash.as_deref() == Some(content_hash(&bytes).as_str())).then_some(bytes))
    }

    /// Writes a value unless its content is unchanged; returns how many shards it wrote (0:
    /// nothing changed).
    pub async fn write(&self, key: &str, bytes: &[u8]) -> Result<usize, kube::Error> {
        let base = self.base_name(key);
        let hash = content_hash(bytes);
        let existing = self.shards_of(key).await?;
        let unchanged = existing
            .iter()
            .find(|cm| cm.name_any() == format!("{base}-0"))
            .is_some_and(|cm| cm.annotations().get(ANNOTATION_HASH) == Some(&hash));
        if unchanged {
            return Ok(0);
        }
        let mut written = 0;
        self.may_write()?;
        let parts = shards(bytes, SHARD_BYTES);
        let shard_hash = |name: &str| {
            existing
                .iter()
                .find(|cm| cm.name_any() == name)
                .and_then(|cm| cm.annotations().get(ANNOTATION_SHARD_HASH).cloned())
        };
        // Later shards first, the first (which carries the hash readers check, and so changes
        // with any shard) last. A later shard whose bytes are the same is left alone: a large
        // inventory that changes in one place costs two writes, not one per shard.
        for (index, part) in parts.iter().enumerate().rev() {
            let name = format!("{base}-{index}");
            let own_hash = content_hash(part);
            if index > 0 && shard_hash(&name).as_deref() == Some(own_hash.as_str()) {
                continue;
            }
            written += 1;
            let mut annotations = BTreeMap::from([(ANNOTATION_SHARD_HASH.to_string(), own_hash)]);
            if index == 0 {
                annotations.insert(ANNOTATION_HASH.to_string(), hash.clone());
                annotations.insert(ANNOTATION_SHARDS.to_string(), parts.len().to_string());
            }
            let labels = BTreeMap::from([
                (LABEL_CONNECTOR.to_string(), label_value(&self.connector)),
                (
                    LABEL_CONNECTOR_NAMESPACE.to_string(),
                    label_value(&self.namespace),
                ),
                (LABEL_PART_OF.to_string(), label_value(&base)),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "aws-access-operator".to_string(),
                ),
            ]);
            let config_map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                },
                binary_data: Some(BTreeMap::from([(
                    KEY.to_string(),
                    ByteString(part.to_vec()),
                )])),
                ..ConfigMap::default()
            };
            let mut patch = serde_json::to_value(&config_map).unwrap_or_default();
            patch["apiVersion"] = serde_json::json!("v1");
            patch["kind"] = serde_json::json!("ConfigMap");
            self.api
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await?;
        }
        for stale in existing.iter().filter(|cm| {
            cm.name_any()
                .strip_prefix(&format!("{base}-"))
                .and_then(|i| i.parse::<usize>().ok())
                .is_none_or(|i| i >= parts.len())
        }) {
            self.api
                .delete(&stale.name_any(), &DeleteParams::default())
                .await?;
        }
        Ok(written)
    }

    /// Deletes every shard of a value.
    pub async fn remove(&self, key: &str) -> Result<(), kube::Error> {
        self.may_write()?;
        let shards = self.shards_of(key).await?;
        self.delete_each(shards).await
    }

    /// Deletes every value of the connector (when the connector goes); returns how many
    /// ConfigMaps there were.
    pub async fn remove_all(&self) -> Result<usize, kube::Error> {
        self.may_write()?;
        let all = self
            .api
            .list(&ListParams::default().labels(&self.connector_selector()))
            .await?
            .items;
        let count = all.len();
        self.delete_each(all).await?;
        Ok(count)
    }

    async fn delete_each(&self, config_maps: Vec<ConfigMap>) -> Result<(), kube::Error> {
        for shard in config_maps {
            match self
                .api
                .delete(&shard.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

fn store_error(action: &'static str, key: &str, error: kube::Error) -> StoreError {
    StoreError {
        action,
        key: key.to_string(),
        message: error.to_string(),
    }
}

impl StateStore for ConnectorConfigMaps {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(key)
            .await
            .map_err(|e| store_error("read", key, e))
    }

    async fn save(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(key, value)
            .await
            .map(|_| ())
            .map_err(|e| store_error("write", key, e))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.remove(key)
            .await
            .map_err(|e| store_error("delete", key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_fit_whatever_the_connector_is_called() {
        assert_eq!(label_value("org-inventory"), "org-inventory");
        let long = "a".repeat(60) + "-inventory";
        let value = label_value(&long);
        assert_eq!(value.len(), 63);
        assert!(
            value.starts_with("aaaa") && value != label_value(&("b".repeat(60) + "-inventory"))
        );
        assert_eq!(value, label_value(&long), "stable");
        let name = fit(&"c".repeat(253), 240);
        assert!(name.len() <= 240);
    }

    #[test]
    fn connectors_of_the_same_name_in_two_namespaces_never_share_a_config_map() {
        assert_eq!(
            base_name("team-a", "org", "inventory"),
            "team-a.org-inventory"
        );
        assert_ne!(
            base_name("team-a", "org", "cache"),
            base_name("team-b", "org", "cache")
        );
        let long = base_name(&"n".repeat(63), &"c".repeat(253), "sync-state");
        assert!(long.len() <= 240, "{}", long.len());
    }

    #[test]
    fn shards_cover_the_content_in_order() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(2500).collect();
        let parts = shards(&bytes, 1000);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        assert_eq!(parts.concat(), bytes);
        assert_eq!(shards(b"", 1000), [b""]);
        // Base64 of a full shard stays under the 1 MiB object limit.
        assert!(SHARD_BYTES.div_ceil(3) * 4 < 1024 * 1024 - 16 * 1024);
    }
}
