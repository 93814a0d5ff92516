//! Events (events.k8s.io/v1), with repeats counted as a series of the first, as kube's
//! recorder and kubectl present them.
//!
//! kube's own recorder keeps a copy of every event it published (about 3 KB each, in a table
//! that never shrinks) for six minutes, and scans the whole copy at every publish: a thousand
//! grants applied at once left several MB behind, and with ten thousand each publish scanned
//! them all. This one remembers, per repeatable event, only what a repeat needs (the event's
//! name and count, under 150 bytes), expires them in the order they were first seen (no scan),
//! and gives the memory back once they have expired.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Client};

/// How long a repeat still counts as a series of the first (kube's `CACHE_TTL`).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// What a repeat of an event needs of the first.
struct Seen {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

/// Events published within the series window, by their key's hash.
#[derive(Default)]
struct Recent {
    by_key: HashMap<u64, Seen>,
    /// Keys in the order they were first seen, to expire without a scan.
    order: VecDeque<(Instant, u64)>,
}

impl Recent {
    /// Forgets what was last seen longer ago than the window; gives the memory back once the
    /// tables are mostly empty.
    fn expire(&mut self, now: Instant) {
        while let Some(&(first, key)) = self.order.front() {
            if now.duration_since(first) <= SERIES_WINDOW {
                break;
            }
            self.order.pop_front();
            match self.by_key.get(&key) {
                // Repeated since: expires a window after its last repeat.
                Some(seen) if now.duration_since(seen.last) <= SERIES_WINDOW => {
                    self.order.push_back((seen.last, key));
                }
                _ => {
                    self.by_key.remove(&key);
                }
            }
        }
        if self.by_key.capacity() > 64 && self.by_key.capacity() > 4 * self.by_key.len() {
            self.by_key.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }
}

pub struct Events {
    client: Client,
    reporter: Reporter,
    recent: Mutex<Recent>,
}

/// What makes two events the same event (kube's `EventKey`): who reports, about what, which
/// action and reason. The note is not part of it: a repeat keeps the first one's note.
fn key(reporter: &Reporter, event: &Event, regarding: &ObjectReference) -> u64 {
    let mut hasher = DefaultHasher::new();
    reporter.controller.hash(&mut hasher);
    reporter.instance.hash(&mut hasher);
    matches!(event.type_, EventType::Warning).hash(&mut hasher);
    event.action.hash(&mut hasher);
    event.reason.hash(&mut hasher);
    for reference in std::iter::once(Some(regarding)).chain([event.secondary.as_ref()]) {
        let Some(reference) = reference else {
            continue;
        };
        reference.uid.hash(&mut hasher);
        reference.kind.hash(&mut hasher);
        reference.namespace.hash(&mut hasher);
        reference.name.hash(&mut hasher);
    }
    hasher.finish()
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            recent: Mutex::new(Recent::default()),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets events whose series window has passed (an idle operator keeps nothing).
    pub fn forget_expired(&self) {
        self.recent().expire(Instant::now());
    }

    /// Publishes `event` about `regarding`: a new Event, or the next of its series.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Instant::now();
        let key = key(&self.reporter, event, regarding);
        let repeat = {
            let mut recent = self.recent();
            recent.expire(now);
            recent.by_key.get_mut(&key).map(|seen| {
                seen.count += 1;
                seen.last = now;
                (seen.namespace.clone(), seen.name.clone(), seen.count)
            })
        };
        if let Some((namespace, name, count)) = repeat {
            let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
            let series = serde_json::json!({"series": EventSeries {
                count,
                last_observed_time: MicroTime(jiff::Timestamp::now()),
            }});
            events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await?;
            return Ok(());
        }
        let created = self.generate(event, regarding);
        let namespace = created
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = created.metadata.name.clone().unwrap_or_default();
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        events.create(&PostParams::default(), &created).await?;
        let mut recent = self.recent();
        recent.order.push_back((now, key));
        recent.by_key.insert(
            key,
            Seen {
                namespace,
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    /// The Event object, as kube's recorder makes it.
    fn generate(&self, event: &Event, regarding: &ObjectReference) -> K8sEvent {
        let now = jiff::Timestamp::now();
        let controller = &self.reporter.controller;
        K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            note: event.note.clone(),
            metadata: ObjectMeta {
                namespace: Some(
                    regarding
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                ),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..K8sEvent::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("AccessGrant".into()),
            namespace: Some("team".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    fn event(reason: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some("a note".into()),
            action: "Grant".into(),
            secondary: None,
        }
    }

    fn reporter() -> Reporter {
        Reporter {
            controller: "aws-access-operator".into(),
            instance: Some("pod-0".into()),
        }
    }

    #[test]
    fn the_same_event_about_the_same_object_is_one_key_and_the_note_is_not_part_of_it() {
        let a = key(&reporter(), &event("Granted"), &reference("a"));
        let mut other_note = event("Granted");
        other_note.note = Some("another".into());
        assert_eq!(a, key(&reporter(), &other_note, &reference("a")));
        assert_ne!(a, key(&reporter(), &event("Granted"), &reference("b")));
        assert_ne!(a, key(&reporter(), &event("Revoked"), &reference("a")));
    }

    #[test]
    fn events_expire_in_order_a_repeat_later_and_the_memory_is_given_back() {
        let start = Instant::now();
        let mut recent = Recent::default();
        for key in 0..1000_u64 {
            recent.order.push_back((start, key));
            recent.by_key.insert(
                key,
                Seen {
                    namespace: "team".into(),
                    name: format!("g-{key}.1"),
                    count: 1,
                    last: start,
                },
            );
        }
        // Key 7 repeated four minutes in: it outlives the others by those four minutes.
        recent.by_key.get_mut(&7).expect("seen").last = start + Duration::from_secs(240);
        recent.expire(start + SERIES_WINDOW);
        assert_eq!(recent.by_key.len(), 1000, "nothing is past the window yet");
        recent.expire(start + SERIES_WINDOW + Duration::from_secs(1));
        assert_eq!(recent.by_key.len(), 1);
        assert!(recent.by_key.contains_key(&7));
        assert!(recent.by_key.capacity() < 64, "the table was given back");
        recent.expire(start + Duration::from_secs(240) + SERIES_WINDOW + Duration::from_secs(1));
        assert!(recent.by_key.is_empty() && recent.order.is_empty());
    }
}
