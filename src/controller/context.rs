//! What every reconciliation shares: the client, the event recorder, metrics and the per-object
//! failure counts behind error backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::metrics::Metrics;

/// The field manager of every status the operator writes.
pub const FIELD_MANAGER: &str = "aws-access-operator";

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, reporter: Reporter, metrics: Arc<Metrics>) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::default(),
        }
    }

    fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
        ObjectRef::from_obj(object).to_string()
    }

    /// Counts one more failure of `object` and returns how many it has had in a row.
    pub fn record_failure<K: Resource<DynamicType = ()>>(&self, object: &K) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(Self::key(object)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// Forgets `object`'s failures after it reconciled cleanly.
    pub fn record_success<K: Resource<DynamicType = ()>>(&self, object: &K) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&Self::key(object));
    }

    /// Publishes an event about `object`. A failure to publish is logged, never fatal: events
    /// are a report, not part of the reconciliation.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(object = %object.name_any(), %error, reason, "could not publish event");
        }
    }
}
