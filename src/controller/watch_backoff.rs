//! How long a watch waits before it tries again after an error.
//!
//! kube-runtime's default grows to 30 s and forgets its growth only after two minutes without
//! an error, and a controller applies it once more to all its watches together. After an API
//! server outage that costs a minute or more: the first attempt once the server is back may be
//! 30 s away, and its answer (410 Gone, the watch's resourceVersion was compacted meanwhile) is
//! itself an error, so the relist waits again, and one watch's error holds up the others.
//! Watches are cheap to retry, so here each watch waits on its own, at most `MAX`, starting
//! over at the first success; and a 410 Gone is no reason to wait at all: it only says "list
//! again".

use std::fmt::Debug;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::aws::caller::jitter_random;

/// A watch of `api` that waits `WatchBackoff` after errors, except after 410 Gone (the
/// watcher relists at once). The waits start over at the first object or bookmark, not at the
/// watcher's own `Init` marker, which it sends before every list attempt, failed or not (with
/// kube-runtime's `StreamBackoff`, a watch that is refused, 403, would retry four times a
/// second forever).
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let events = watcher(api, config).boxed();
    futures::stream::unfold(
        (events, WatchBackoff::new(), None::<Duration>),
        |(mut events, mut backoff, wait)| async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            loop {
                let event = events.next().await?;
                let wait = match &event {
                    Err(error) if is_gone(error) => continue,
                    Err(_) => backoff.next(),
                    Ok(watcher::Event::Init) => None,
                    Ok(_) => {
                        backoff.reset();
                        None
                    }
                };
                return Some((event, (events, backoff, wait)));
            }
        },
    )
}

/// Whether a watch event is the API server's "your resourceVersion is too old" (410 Gone).
fn is_gone(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// A controller's own wait on its merged triggers: none, since each watch (`watch`) already
/// waits on its own. (Waiting there too would stop every watch of the controller whenever one
/// of them fails.)
pub struct NoWait;

impl Iterator for NoWait {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // `None` would end the stream.
        Some(Duration::ZERO)
    }
}

impl Backoff for NoWait {
    fn reset(&mut self) {}
}

/// The first wait.
const FIRST: Duration = Duration::from_millis(250);
/// The longest wait: how long an operator may lag behind an API server that answers again.
pub const MAX: Duration = Duration::from_secs(5);

/// Doubling waits from `FIRST` up to `MAX`, each with up to a fifth added at random so that
/// replicas do not retry in step.
#[derive(Default)]
pub struct WatchBackoff {
    failures: u32,
}

impl WatchBackoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// The wait after `failures` errors in a row, with `jitter_seed` choosing the added part.
    pub fn delay(failures: u32, jitter_seed: u64) -> Duration {
        let base = FIRST.saturating_mul(1 << failures.min(8)).min(MAX);
        let jitter = base.mul_f64((jitter_seed % 21) as f64 / 100.0);
        (base + jitter).min(MAX)
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = Self::delay(self.failures, (jitter_random() * 21.0) as u64);
        self.failures = self.failures.saturating_add(1);
        Some(delay)
    }
}

impl WatchBackoff {
    /// Starts over from the first wait.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher;

    #[test]
    fn grows_from_a_quarter_second_to_five_seconds() {
        assert_eq!(WatchBackoff::delay(0, 0), Duration::from_millis(250));
        assert_eq!(WatchBackoff::delay(1, 0), Duration::from_millis(500));
        assert_eq!(WatchBackoff::delay(4, 0), Duration::from_secs(4));
        assert_eq!(WatchBackoff::delay(5, 0), MAX);
        assert_eq!(WatchBackoff::delay(u32::MAX, 20), MAX, "never past MAX");
        assert_eq!(WatchBackoff::delay(0, 20), Duration::from_millis(300));
    }

    #[test]
    fn only_gone_is_gone() {
        let status = |code| kube::core::Status {
            code,
            ..Default::default()
        };
        assert!(is_gone(&watcher::Error::WatchError(Box::new(status(410)))));
        assert!(!is_gone(&watcher::Error::WatchError(Box::new(status(403)))));
        assert!(is_gone(&watcher::Error::WatchStartFailed(
            kube::Error::Api(Box::new(status(410)))
        )));
        assert!(!is_gone(&watcher::Error::NoResourceVersion));
        assert_eq!(NoWait.next(), Some(Duration::ZERO), "never ends the stream");
    }

    #[test]
    fn a_success_starts_over() {
        let mut backoff = WatchBackoff::new();
        let waits: Vec<Duration> = (0..20).filter_map(|_| backoff.next()).collect();
        assert!(waits.iter().all(|w| *w <= MAX));
        assert!(waits[19] >= Duration::from_secs(4), "{waits:?}");
        backoff.reset();
        let first = backoff.next().expect("a wait");
        assert!(
            first >= FIRST && first <= FIRST.mul_f64(1.2),
            "{first:?} after a reset"
        );
    }
}
