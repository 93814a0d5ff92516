//! A value the operator keeps as JSON under one key of a ConfigMap in its own namespace (where
//! tenants cannot write), written with the resourceVersion it was read at, so that two writers
//! never overwrite each other unseen. The request records, their notice records and the start
//! of the admission policy's enforcement are kept this way.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a ConfigMap could not be read or written: `cannot be <action>: <cause>`.
#[derive(Debug, thiserror::Error)]
#[error("{name} cannot be {action}: {cause}")]
pub struct StoreError {
    pub name: String,
    pub action: &'static str,
    pub cause: String,
}

fn failed(action: &'static str, name: &str, cause: impl std::fmt::Display) -> StoreError {
    StoreError {
        name: name.to_string(),
        action,
        cause: cause.to_string(),
    }
}

/// A write's outcome: the new resourceVersion, or someone else wrote first.
pub enum Written {
    Version(String),
    Conflict,
}

pub struct JsonConfigMaps {
    api: Api<ConfigMap>,
    /// The label (set to `true`) that lists these ConfigMaps, if they are listed.
    label: Option<&'static str>,
    key: &'static str,
}

impl JsonConfigMaps {
    pub fn new(
        client: Client,
        namespace: &str,
        label: Option<&'static str>,
        key: &'static str,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            label,
            key,
        }
    }

    fn value<T: DeserializeOwned>(&self, config_map: &ConfigMap) -> Result<T, StoreError> {
        let name = config_map.name_any();
        let text = config_map
            .data
            .as_ref()
            .and_then(|d| d.get(self.key))
            .ok_or_else(|| failed("read", &name, format!("no {} key", self.key)))?;
        serde_json::from_str(text).map_err(|e| failed("read", &name, e))
    }

    /// The value kept in `name` and the version a write must match.
    pub async fn get<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<(T, String)>, StoreError> {
        let Some(config_map) = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| failed("read", name, e))?
        else {
            return Ok(None);
        };
        let value = self.value(&config_map)?;
        Ok(Some((
            value,
            config_map.resource_version().unwrap_or_default(),
        )))
    }

    /// Writes `value` to `name`: created when `version` is `None`, else replaced at `version`.
    pub async fn put<T: Serialize>(
        &self,
        name: &str,
        value: &T,
        version: Option<&str>,
    ) -> Result<Written, StoreError> {
        let text = serde_json::to_string_pretty(value).map_err(|e| failed("written", name, e))?;
        let mut labels = BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            "aws-access-operator".to_string(),
        )]);
        if let Some(label) = self.label {
            labels.insert(label.to_string(), "true".to_string());
        }
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels),
                resource_version: version.map(str::to_string),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(self.key.to_string(), text)])),
            ..ConfigMap::default()
        };
        let params = PostParams {
            dry_run: false,
            field_manager: Some(super::context::FIELD_MANAGER.to_string()),
        };
        let written = match version {
            None => self.api.create(&params, &object).await,
            Some(_) => self.api.replace(name, &params, &object).await,
        };
        match written {
            Ok(object) => Ok(Written::Version(
                object.resource_version().unwrap_or_default(),
            )),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Written::Conflict),
            Err(e) => Err(failed("written", name, e)),
        }
    }

    /// Every value of the ConfigMaps carrying the label.
    pub async fn list<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let mut params = ListParams::default();
        if let Some(label) = self.label {
            params = params.labels(&format!("{label}=true"));
        }
        let listed = self
            .api
            .list(&params)
            .await
            .map_err(|e| failed("listed", "(all)", e))?;
        listed
            .items
            .iter()
            .filter(|c| c.data.as_ref().is_some_and(|d| d.contains_key(self.key)))
            .map(|c| self.value(c))
            .collect()
    }

    /// Deletes `name`; gone already is fine.
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        match self.api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(failed("deleted", name, e)),
        }
    }
}
