//! The records of AccessRequests in the cluster: one ConfigMap per request, in the operator's
//! own namespace beside the ledger (where tenants have no write access), written with the
//! resourceVersion it was read at.

use kube::Client;

use super::error::Error;
use super::json_configmap::{JsonConfigMaps, StoreError, Written};
use crate::fingerprint::short_hash;
use crate::request::record::Record;

/// On every record, to list them without reading the ledger's.
pub const LABEL_RECORD: &str = "awsaccess.io/request-record";
const DATA_KEY: &str = "record";

pub struct RequestRecords {
    store: JsonConfigMaps,
}

/// The ConfigMap name of a request's record: from its uid, so a new request of the same
/// name starts a new record.
pub fn object_name(uid: &str) -> String {
    format!("aws-access-request-{}", short_hash(uid.as_bytes()))
}

fn failed(error: StoreError) -> Error {
    Error::Pending(format!("the request record {error}"))
}

impl RequestRecords {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            store: JsonConfigMaps::new(client, namespace, Some(LABEL_RECORD), DATA_KEY),
        }
    }

    /// The record and the version a write must match.
    pub async fn load(&self, uid: &str) -> Result<Option<(Record, String)>, Error> {
        let name = object_name(uid);
        let Some((record, version)) = self.store.get::<Record>(&name).await.map_err(failed)? else {
            return Ok(None);
        };
        if record.uid != uid {
            return Err(Error::Pending(format!(
                "the request record {name} cannot be read: it belongs to another request"
            )));
        }
        Ok(Some((record, version)))
    }

    /// Writes the record; `version` is `None` to create it. Returns the new version.
    pub async fn save(&self, record: &Record, version: Option<&str>) -> Result<String, Error> {
        let name = object_name(&record.uid);
        match self
            .store
            .put(&name, record, version)
            .await
            .map_err(failed)?
        {
            Written::Version(version) => Ok(version),
            Written::Conflict => Err(Error::Pending(format!(
                "the request record {name} changed meanwhile; reading it again"
            ))),
        }
    }

    /// Every record of the connector `namespace/name`.
    pub async fn of_connector(&self, connector: &str) -> Result<Vec<Record>, Error> {
        let all: Vec<Record> = self.store.list().await.map_err(failed)?;
        Ok(all
            .into_iter()
            .filter(|r| r.connector == connector)
            .collect())
    }

    pub async fn remove(&self, uid: &str) -> Result<(), Error> {
        self.store.remove(&object_name(uid)).await.map_err(failed)
    }
}
