//! The records of declared permission sets in the cluster: one ConfigMap per (connector, name),
//! in the operator's own namespace beside the ledger (where tenants have no write access),
//! written with the resourceVersion it was read at.

use kube::Client;

use super::json_configmap::{JsonConfigMaps, StoreError, Written};
use crate::permission_set::record::{RecordError, SetRecord, SetRecords};

/// On every record, to list them without reading the ledger's.
pub const LABEL_RECORD: &str = "awsaccess.io/permission-set-record";
const DATA_KEY: &str = "record";

pub struct ConfigMapSetRecords {
    store: JsonConfigMaps,
}

/// The ConfigMap name of the record with `key`.
pub fn object_name(key: &str) -> String {
    format!("aws-access-permission-set-{key}")
}

fn unavailable(action: &'static str) -> impl Fn(StoreError) -> RecordError {
    move |error| RecordError::Unavailable {
        action,
        message: error.to_string(),
    }
}

impl ConfigMapSetRecords {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            store: JsonConfigMaps::new(client, namespace, Some(LABEL_RECORD), DATA_KEY),
        }
    }

    /// Every record (to find the sets of a connector, or the one an ARN belongs to).
    pub async fn all(&self) -> Result<Vec<SetRecord>, RecordError> {
        self.store.list().await.map_err(unavailable("listed"))
    }
}

impl SetRecords for ConfigMapSetRecords {
    async fn load(&self, key: &str) -> Result<Option<(SetRecord, String)>, RecordError> {
        self.store
            .get(&object_name(key))
            .await
            .map_err(unavailable("read"))
    }

    async fn save(&self, record: &SetRecord, version: Option<&str>) -> Result<String, RecordError> {
        match self
            .store
            .put(&object_name(&record.key()), record, version)
            .await
            .map_err(unavailable("written"))?
        {
            Written::Version(version) => Ok(version),
            Written::Conflict => Err(RecordError::Conflict(record.key())),
        }
    }

    async fn remove(&self, record: &SetRecord, _version: &str) -> Result<(), RecordError> {
        self.store
            .remove(&object_name(&record.key()))
            .await
            .map_err(unavailable("deleted"))
    }
}
