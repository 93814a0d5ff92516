//! The ownership ledger in the cluster: one ConfigMap per piece of access, in the operator's
//! own namespace (where tenants have no write access), written with the resourceVersion it
//! was read at. Labels find an entry's connector and the grants that hold it without reading
//! every entry.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};

use crate::fingerprint::short_hash;
use crate::grant::access::Access;
use crate::grant::ledger::{LedgerEntry, LedgerError, LedgerStore, Stored, key};

pub const LABEL_LEDGER: &str = "awsaccess.io/ledger";
pub const LABEL_CONNECTOR: &str = "awsaccess.io/ledger-connector";
/// `<HOLDER_PREFIX><grant uid>` is set on every entry the grant holds.
pub const HOLDER_PREFIX: &str = "holder.awsaccess.io/";
const DATA_KEY: &str = "entry";

pub struct ConfigMapLedger {
    api: Api<ConfigMap>,
}

/// A label value for a connector's `namespace/name` (which may not fit one).
fn connector_label(connector: &str) -> String {
    short_hash(connector.as_bytes())
}

/// The name of the ConfigMap of an entry.
pub fn object_name(connector: &str, access: &Access) -> String {
    format!("aws-access-ledger-{}", key(connector, access))
}

fn unavailable(action: &'static str, error: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable {
        action,
        message: error.to_string(),
    }
}

fn stored(config_map: &ConfigMap) -> Result<Stored, LedgerError> {
    let name = config_map.name_any();
    let text = config_map
        .data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .ok_or_else(|| unavailable("read", format!("ConfigMap {name} has no {DATA_KEY}")))?;
    let entry = serde_json::from_str(text)
        .map_err(|e| unavailable("read", format!("ConfigMap {name}: {e}")))?;
    Ok(Stored {
        entry,
        version: config_map.resource_version().unwrap_or_default(),
    })
}

impl ConfigMapLedger {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
        }
    }

    fn object(entry: &LedgerEntry, version: Option<&str>) -> Result<ConfigMap, LedgerError> {
        let mut labels = BTreeMap::from([
            (LABEL_LEDGER.to_string(), "entry".to_string()),
            (
                LABEL_CONNECTOR.to_string(),
                connector_label(&entry.connector),
            ),
            (
                "app.kubernetes.io/managed-by".to_string(),
                "aws-access-operator".to_string(),
            ),
        ]);
        for uid in entry.holders.keys() {
            labels.insert(format!("{HOLDER_PREFIX}{uid}"), "true".to_string());
        }
        let text = serde_json::to_string_pretty(entry).map_err(|e| unavailable("written", e))?;
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(object_name(&entry.connector, &entry.access)),
                labels: Some(labels),
                resource_version: version.map(str::to_string),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), text)])),
            ..ConfigMap::default()
        })
    }

    async fn list(&self, selector: &str, connector: &str) -> Result<Vec<Stored>, LedgerError> {
        let list = self
            .api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| unavailable("listed", e))?;
        let mut out = Vec::new();
        for config_map in &list.items {
            let found = stored(config_map)?;
            // The label is a hash: check the connector itself.
            if found.entry.connector == connector {
                out.push(found);
            }
        }
        Ok(out)
    }
}

fn conflict_or(action: &'static str, name: &str, error: kube::Error) -> LedgerError {
    match error {
        kube::Error::Api(status) if status.code == 409 => LedgerError::Conflict(name.to_string()),
        other => unavailable(action, format!("ConfigMap {name}: {other}")),
    }
}

impl LedgerStore for ConfigMapLedger {
    async fn load(&self, connector: &str, access: &Access) -> Result<Option<Stored>, LedgerError> {
        let name = object_name(connector, access);
        match self.api.get_opt(&name).await {
            Ok(Some(config_map)) => stored(&config_map).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable("read", format!("ConfigMap {name}: {e}"))),
        }
    }

    async fn held_by(&self, connector: &str, holder: &str) -> Result<Vec<Stored>, LedgerError> {
        let selector = format!(
            "{LABEL_LEDGER}=entry,{LABEL_CONNECTOR}={},{HOLDER_PREFIX}{holder}",
            connector_label(connector)
        );
        self.list(&selector, connector).await
    }

    async fn of_connector(&self, connector: &str) -> Result<Vec<Stored>, LedgerError> {
        let selector = format!(
            "{LABEL_LEDGER}=entry,{LABEL_CONNECTOR}={}",
            connector_label(connector)
        );
        self.list(&selector, connector).await
    }

    async fn save(
        &self,
        entry: &LedgerEntry,
        version: Option<&str>,
    ) -> Result<String, LedgerError> {
        let object = Self::object(entry, version)?;
        let name = object.name_any();
        let written = match version {
            None => self.api.create(&PostParams::default(), &object).await,
            Some(_) => {
                self.api
                    .replace(&name, &PostParams::default(), &object)
                    .await
            }
        }
        .map_err(|e| conflict_or("written", &name, e))?;
        Ok(written.resource_version().unwrap_or_default())
    }

    async fn remove(&self, entry: &LedgerEntry, version: &str) -> Result<(), LedgerError> {
        let name = object_name(&entry.connector, &entry.access);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(version.to_string()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(conflict_or("deleted", &name, e)),
        }
    }
}
