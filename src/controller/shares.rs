//! Each connector's share of a controller's reconciliations.
//!
//! A controller runs a bounded number of reconciliations at once, for every connector together
//! (`controller::grant::CONCURRENCY`). Without shares, an organization whose AWS is slow or does
//! not answer, with more objects to reconcile than that bound, would fill every slot with
//! reconciliations waiting on it, and every other organization's grants would wait behind them
//! until its calls time out. With shares, a connector runs at most `SHARE` of them at once; its
//! objects past that wait in the connector's line (a reference each, not a reconciliation) and
//! are started again, in the order they came, as its own reconciliations end.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::metrics::gauge::Gauge;

/// How many reconciliations of one connector's objects a controller runs at once: a quarter of
/// its bound, so that up to three organizations that do not answer still leave a quarter to the
/// others. One organization's grants are bounded by its lanes long before this: at most 10
/// assignment operations in flight (`controller::runtime::ASSIGNMENTS_IN_FLIGHT`) and 20 calls a
/// second by default.
pub const SHARE: usize = 16;

/// How long a turn is kept for an object woken from its line. A woken object that was deleted
/// meanwhile never comes to take it; after this, it goes to the next in line.
const KEPT: Duration = Duration::from_secs(60);

/// How soon an object waiting in a line looks again by itself, in case its wake-up was lost
/// (its kept turn lapsed while the controller was busy with others).
pub const WAIT_RECHECK: Duration = Duration::from_secs(60);

/// The lines of one controller's objects, by connector.
pub struct Shares<K: Resource<DynamicType = ()>> {
    share: usize,
    /// How long a woken object's turn is kept (`KEPT`).
    kept: Duration,
    lines: Mutex<HashMap<String, Line<K>>>,
    /// Objects whose turn has come, for the controller to reconcile.
    wake: mpsc::UnboundedSender<ObjectRef<K>>,
    /// How many objects wait in this controller's lines.
    waiting: Gauge,
}

/// One connector's reconciliations: those running, those woken and not started yet (their turn
/// is kept), and those waiting.
struct Line<K: Resource<DynamicType = ()>> {
    running: usize,
    woken: HashMap<ObjectRef<K>, Instant>,
    queue: VecDeque<ObjectRef<K>>,
    /// What `queue` holds: an object is in line once. One that got a turn another way (a free
    /// one) is taken out of here and skipped in `queue` when it comes to the front.
    queued: HashSet<ObjectRef<K>>,
}

impl<K: Resource<DynamicType = ()>> Default for Line<K> {
    fn default() -> Self {
        Self {
            running: 0,
            woken: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Line<K> {
    fn is_idle(&self) -> bool {
        self.running == 0 && self.woken.is_empty() && self.queued.is_empty()
    }

    /// The next object in line, taken out of it.
    fn next(&mut self) -> Option<ObjectRef<K>> {
        while let Some(object) = self.queue.pop_front() {
            if self.queued.remove(&object) {
                return Some(object);
            }
        }
        None
    }
}

/// A reconciliation's place in its connector's share, given back when dropped.
pub struct Turn<K: Resource<DynamicType = ()>> {
    shares: Arc<Shares<K>>,
    connector: String,
}

impl<K: Resource<DynamicType = ()>> Drop for Turn<K> {
    fn drop(&mut self) {
        self.shares.leave(&self.connector);
    }
}

impl<K> Shares<K>
where
    K: Resource<DynamicType = ()>,
    ObjectRef<K>: Hash + Eq,
{
    /// Lines of `share` per connector, and the stream of objects whose turn has come (for the
    /// controller's `reconcile_on`). `waiting` counts the objects in line.
    pub fn new(share: usize, waiting: Gauge) -> (Arc<Self>, mpsc::UnboundedReceiver<ObjectRef<K>>) {
        let (wake, woken) = mpsc::unbounded();
        let shares = Self {
            share: share.max(1),
            kept: KEPT,
            lines: Mutex::default(),
            wake,
            waiting,
        };
        (Arc::new(shares), woken)
    }

    /// A turn for `object` on `connector` if its share has room (or one was kept for it);
    /// otherwise it is put in line (once), and `None`.
    pub fn enter(self: &Arc<Self>, connector: &str, object: ObjectRef<K>) -> Option<Turn<K>> {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let line = lines.entry(connector.to_string()).or_default();
        self.lapse(line);
        let kept = line.woken.remove(&object).is_some();
        if kept || line.running + line.woken.len() < self.share {
            if line.queued.remove(&object) {
                self.waiting.dec();
            }
            line.running += 1;
            return Some(Turn {
                shares: self.clone(),
                connector: connector.to_string(),
            });
        }
        if line.queued.insert(object.clone()) {
            line.queue.push_back(object);
            self.waiting.inc();
        }
        None
    }

    /// A turn ends: the next in line is woken, with the turn kept for it.
    fn leave(&self, connector: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let Some(line) = lines.get_mut(connector) else {
            return;
        };
        line.running = line.running.saturating_sub(1);
        self.lapse(line);
        self.wake_next(line);
        if line.is_idle() {
            lines.remove(connector);
        }
    }

    /// Kept turns that were not taken in time go to the next in line.
    fn lapse(&self, line: &mut Line<K>) {
        let before = line.woken.len();
        line.woken.retain(|_, woken| woken.elapsed() < self.kept);
        for _ in line.woken.len()..before {
            self.wake_next(line);
        }
    }

    fn wake_next(&self, line: &mut Line<K>) {
        if line.running + line.woken.len() >= self.share {
            return;
        }
        if let Some(object) = line.next() {
            self.waiting.dec();
            line.woken.insert(object.clone(), Instant::now());
            // The receiver lives as long as the controller; once it is gone, nothing is woken.
            let _ = self.wake.unbounded_send(object);
        }
    }

    /// Objects in line for `connector`.
    #[cfg(test)]
    fn in_line(&self, connector: &str) -> usize {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.get(connector).map_or(0, |l| l.queued.len())
    }

    #[cfg(test)]
    fn connectors(&self) -> usize {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn object(name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::new(name).within("team")
    }

    fn woken(receiver: &mut mpsc::UnboundedReceiver<ObjectRef<ConfigMap>>) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(object) = receiver.try_recv() {
            names.push(object.name);
        }
        names
    }

    #[test]
    fn a_connector_past_its_share_waits_and_others_do_not() {
        let gauge = Gauge::default();
        let (shares, mut receiver) = Shares::<ConfigMap>::new(2, gauge.clone());
        let first = shares.enter("team/slow", object("a"));
        let second = shares.enter("team/slow", object("b"));
        assert!(first.is_some() && second.is_some(), "within its share");
        assert!(shares.enter("team/slow", object("c")).is_none(), "past it");
        assert!(shares.enter("team/slow", object("d")).is_none());
        assert!(
            shares.enter("team/slow", object("c")).is_none(),
            "still waiting"
        );
        assert_eq!(shares.in_line("team/slow"), 2, "each object in line once");
        assert_eq!(gauge.get(), 2);
        assert!(
            shares.enter("team/fast", object("e")).is_some(),
            "another connector has its own share"
        );
        assert!(woken(&mut receiver).is_empty(), "nothing ended yet");

        drop(first);
        assert_eq!(woken(&mut receiver), ["c"], "the first in line");
        assert!(
            shares.enter("team/slow", object("x")).is_none(),
            "the ended turn is kept for the one woken"
        );
        let third = shares.enter("team/slow", object("c"));
        assert!(third.is_some(), "the woken object takes its kept turn");
        drop((second, third));
        assert_eq!(woken(&mut receiver), ["d", "x"], "in the order they came");
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn an_object_that_got_a_free_turn_leaves_the_line() {
        let (shares, mut receiver) = Shares::<ConfigMap>::new(1, Gauge::default());
        let first = shares.enter("team/org", object("a"));
        assert!(shares.enter("team/org", object("b")).is_none());
        assert!(shares.enter("team/org", object("c")).is_none());
        drop(first);
        assert_eq!(woken(&mut receiver), ["b"]);
        // `c` comes again by itself before `b` takes its kept turn: it waits.
        assert!(shares.enter("team/org", object("c")).is_none());
        let b = shares.enter("team/org", object("b"));
        assert!(b.is_some());
        drop(b);
        assert_eq!(woken(&mut receiver), ["c"]);
        let c = shares.enter("team/org", object("c"));
        drop(c);
        assert!(woken(&mut receiver).is_empty(), "no one left in line");
        assert_eq!(shares.connectors(), 0, "an idle connector's line is freed");
    }

    #[test]
    fn a_kept_turn_not_taken_goes_to_the_next_in_line() {
        let (shares, mut receiver) = Shares::<ConfigMap>::new(1, Gauge::default());
        let shares = Arc::new(Shares {
            kept: Duration::ZERO,
            ..Arc::into_inner(shares).expect("one owner")
        });
        let first = shares.enter("team/org", object("a"));
        assert!(shares.enter("team/org", object("gone")).is_none());
        assert!(shares.enter("team/org", object("b")).is_none());
        drop(first);
        assert_eq!(woken(&mut receiver), ["gone"]);
        // `gone` was deleted and never comes: its kept turn lapses at the next look.
        assert!(shares.enter("team/org", object("c")).is_none());
        assert_eq!(woken(&mut receiver), ["b"]);
        assert_eq!(shares.in_line("team/org"), 1, "c waits");
    }
}
