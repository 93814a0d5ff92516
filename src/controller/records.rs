//! The records the operator keeps in the cluster of what it manages beyond grants (permission
//! sets, users, groups): one ConfigMap per record, in the operator's own namespace beside the
//! ledger (where tenants have no write access), written with the resourceVersion it was read
//! at.

use kube::Client;

use super::json_configmap::{JsonConfigMaps, StoreError, Written};
use crate::permission_set::record::SetRecord;
use crate::records::{Record, RecordError, Records};

const DATA_KEY: &str = "record";

pub struct ConfigMapRecords<R> {
    store: JsonConfigMaps,
    kept: std::marker::PhantomData<fn() -> R>,
}

/// The records of permission sets.
pub type ConfigMapSetRecords = ConfigMapRecords<SetRecord>;

/// The ConfigMap name of the record of kind `R` with `key`.
pub fn object_name<R: Record>(key: &str) -> String {
    format!("{}{key}", R::CONFIG_MAP_PREFIX)
}

fn unavailable<R: Record>(action: &'static str) -> impl Fn(StoreError) -> RecordError {
    move |error| RecordError::Unavailable {
        what: R::WHAT,
        action,
        message: error.to_string(),
    }
}

impl<R: Record> ConfigMapRecords<R> {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            store: JsonConfigMaps::new(client, namespace, Some(R::LABEL), DATA_KEY),
            kept: std::marker::PhantomData,
        }
    }

    /// Every record of the kind.
    pub async fn all(&self) -> Result<Vec<R>, RecordError> {
        self.store.list().await.map_err(unavailable::<R>("listed"))
    }
}

impl<R: Record> Records<R> for ConfigMapRecords<R> {
    async fn load(&self, key: &str) -> Result<Option<(R, String)>, RecordError> {
        self.store
            .get(&object_name::<R>(key))
            .await
            .map_err(unavailable::<R>("read"))
    }

    async fn save(&self, record: &R, version: Option<&str>) -> Result<String, RecordError> {
        match self
            .store
            .put(&object_name::<R>(&record.key()), record, version)
            .await
            .map_err(unavailable::<R>("written"))?
        {
            Written::Version(version) => Ok(version),
            Written::Conflict => Err(RecordError::Conflict {
                what: R::WHAT,
                key: record.key(),
            }),
        }
    }

    async fn remove(&self, record: &R, _version: &str) -> Result<(), RecordError> {
        self.store
            .remove(&object_name::<R>(&record.key()))
            .await
            .map_err(unavailable::<R>("deleted"))
    }
}
