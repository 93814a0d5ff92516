//! The notice record of each AccessRequest: one ConfigMap per request in the operator's own
//! namespace, beside its record, listing every notice due to a receiver and how its delivery
//! ended. A notice is written here before it is sent, so a restart or a new leader sends what
//! is still due, and never what was delivered or given up. Both the reconciler (adding) and
//! the notifier (settling) write it, each reading it again after a conflict.

use kube::Client;
use serde::{Deserialize, Serialize};

use super::error::Error;
use super::json_configmap::{JsonConfigMaps, StoreError, Written};
use crate::api::request::State;
use crate::fingerprint::short_hash;
use crate::request::notice::Notice;

/// On every notice record, to list them.
pub const LABEL_NOTICES: &str = "awsaccess.io/request-notices";
const DATA_KEY: &str = "notices";
/// How often a write that lost a race is tried again.
const CONFLICT_RETRIES: usize = 10;

/// One receiver's copy of one notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Due {
    pub receiver: String,
    pub notice: Notice,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// Why it was given up, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gave_up: Option<String>,
    #[serde(default)]
    pub attempts: u32,
}

impl Due {
    pub fn settled(&self) -> bool {
        self.delivered_at.is_some() || self.gave_up.is_some()
    }

    fn same(&self, receiver: &str, state: State) -> bool {
        self.receiver == receiver && self.notice.state == state
    }
}

/// How a delivery ended.
pub enum Settled {
    Delivered {
        at: String,
        attempts: u32,
    },
    GaveUp {
        at: String,
        why: String,
        attempts: u32,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kept {
    request: String,
    uid: String,
    dues: Vec<Due>,
}

pub struct NoticeStore {
    store: JsonConfigMaps,
}

/// The ConfigMap of a request's notices: from its uid, like its record.
pub fn object_name(uid: &str) -> String {
    format!("aws-access-notices-{}", short_hash(uid.as_bytes()))
}

fn failed(error: StoreError) -> Error {
    Error::Pending(format!("the notice record {error}"))
}

fn kept_changing(uid: &str) -> Error {
    Error::Pending(format!(
        "the notice record {} cannot be written: it kept changing",
        object_name(uid)
    ))
}

impl NoticeStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            store: JsonConfigMaps::new(client, namespace, Some(LABEL_NOTICES), DATA_KEY),
        }
    }

    async fn read(&self, uid: &str) -> Result<(Kept, Option<String>), Error> {
        Ok(
            match self
                .store
                .get::<Kept>(&object_name(uid))
                .await
                .map_err(failed)?
            {
                Some((kept, version)) => (kept, Some(version)),
                None => (Kept::default(), None),
            },
        )
    }

    /// Writes `kept`; `Ok(false)` when someone else wrote first.
    async fn write(&self, kept: &Kept, version: Option<String>) -> Result<bool, Error> {
        let name = object_name(&kept.uid);
        Ok(matches!(
            self.store
                .put(&name, kept, version.as_deref())
                .await
                .map_err(failed)?,
            Written::Version(_)
        ))
    }

    /// Adds the notices not there yet (one per receiver and state); returns every notice of the
    /// request still to deliver.
    pub async fn add(&self, request: &str, uid: &str, dues: Vec<Due>) -> Result<Vec<Due>, Error> {
        for _ in 0..CONFLICT_RETRIES {
            let (mut kept, version) = self.read(uid).await?;
            let new: Vec<Due> = dues
                .iter()
                .filter(|d| {
                    !kept
                        .dues
                        .iter()
                        .any(|k| k.same(&d.receiver, d.notice.state))
                })
                .cloned()
                .collect();
            if !new.is_empty() {
                kept.request = request.to_string();
                kept.uid = uid.to_string();
                kept.dues.extend(new);
                if !self.write(&kept, version).await? {
                    continue;
                }
            }
            return Ok(kept.dues.into_iter().filter(|d| !d.settled()).collect());
        }
        Err(kept_changing(uid))
    }

    /// Notes how the delivery of `receiver`'s notice of `state` ended.
    pub async fn settle(
        &self,
        uid: &str,
        receiver: &str,
        state: State,
        settled: &Settled,
    ) -> Result<(), Error> {
        for _ in 0..CONFLICT_RETRIES {
            let (mut kept, version) = self.read(uid).await?;
            if version.is_none() {
                // The request is gone, and its notices with it.
                return Ok(());
            }
            let Some(due) = kept.dues.iter_mut().find(|d| d.same(receiver, state)) else {
                return Ok(());
            };
            match settled {
                Settled::Delivered { at, attempts } => {
                    due.delivered_at = Some(at.clone());
                    due.attempts = *attempts;
                }
                Settled::GaveUp { at, why, attempts } => {
                    due.gave_up = Some(format!("{at}: {why}"));
                    due.attempts = *attempts;
                }
            }
            if self.write(&kept, version).await? {
                return Ok(());
            }
        }
        Err(kept_changing(uid))
    }

    pub async fn remove(&self, uid: &str) -> Result<(), Error> {
        self.store.remove(&object_name(uid)).await.map_err(failed)
    }
}
