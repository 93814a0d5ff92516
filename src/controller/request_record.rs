//! The records of AccessRequests in the cluster: one ConfigMap per request, in the operator's
//! own namespace beside the ledger (where tenants have no write access), written with the
//! resourceVersion it was read at.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};

use super::error::Error;
use crate::fingerprint::short_hash;
use crate::request::record::Record;

/// On every record, to list them without reading the ledger's.
pub const LABEL_RECORD: &str = "awsaccess.io/request-record";
const DATA_KEY: &str = "record";

pub struct RequestRecords {
    api: Api<ConfigMap>,
}

/// The ConfigMap name of a request's record: from its uid, so a new request of the same
/// name starts a new record.
pub fn object_name(uid: &str) -> String {
    format!("aws-access-request-{}", short_hash(uid.as_bytes()))
}

fn failed(action: &str, name: &str, error: impl std::fmt::Display) -> Error {
    Error::Pending(format!(
        "the request record {name} cannot be {action}: {error}"
    ))
}

impl RequestRecords {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
        }
    }

    /// The record and the version a write must match.
    pub async fn load(&self, uid: &str) -> Result<Option<(Record, String)>, Error> {
        let name = object_name(uid);
        let Some(config_map) = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| failed("read", &name, e))?
        else {
            return Ok(None);
        };
        let text = config_map
            .data
            .as_ref()
            .and_then(|d| d.get(DATA_KEY))
            .ok_or_else(|| failed("read", &name, format!("no {DATA_KEY} key")))?;
        let record: Record = serde_json::from_str(text).map_err(|e| failed("read", &name, e))?;
        if record.uid != uid {
            return Err(failed("read", &name, "it belongs to another request"));
        }
        Ok(Some((
            record,
            config_map.resource_version().unwrap_or_default(),
        )))
    }

    /// Writes the record; `version` is `None` to create it. Returns the new version.
    pub async fn save(&self, record: &Record, version: Option<&str>) -> Result<String, Error> {
        let name = object_name(&record.uid);
        let text = serde_json::to_string_pretty(record).map_err(|e| failed("written", &name, e))?;
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([
                    (LABEL_RECORD.to_string(), "true".to_string()),
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "aws-access-operator".to_string(),
                    ),
                ])),
                resource_version: version.map(str::to_string),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), text)])),
            ..ConfigMap::default()
        };
        let written = match version {
            None => self.api.create(&PostParams::default(), &object).await,
            Some(_) => {
                self.api
                    .replace(&name, &PostParams::default(), &object)
                    .await
            }
        }
        .map_err(|e| failed("written", &name, e))?;
        Ok(written.resource_version().unwrap_or_default())
    }

    /// Every record of the connector `namespace/name`.
    pub async fn of_connector(&self, connector: &str) -> Result<Vec<Record>, Error> {
        let list = self
            .api
            .list(&ListParams::default().labels(&format!("{LABEL_RECORD}=true")))
            .await
            .map_err(|e| failed("listed", "(all)", e))?;
        let mut out = Vec::new();
        for config_map in &list.items {
            let Some(text) = config_map.data.as_ref().and_then(|d| d.get(DATA_KEY)) else {
                continue;
            };
            let record: Record = serde_json::from_str(text)
                .map_err(|e| failed("read", &config_map.name_any(), e))?;
            if record.connector == connector {
                out.push(record);
            }
        }
        Ok(out)
    }

    pub async fn remove(&self, uid: &str) -> Result<(), Error> {
        let name = object_name(uid);
        match self.api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(failed("deleted", &name, e)),
        }
    }
}
