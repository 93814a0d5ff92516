//! Events through kube's recorder. The recorder keeps every event it published for six minutes,
//! to count a repeat as a series of the first, but empties that cache only when it publishes the
//! next event: an operator idle after a busy spell (a thousand grants applied) would hold every
//! event of that spell for as long as it stays idle. A recorder that has published nothing for
//! longer than those six minutes holds only expired entries, so it is swapped for a fresh one;
//! nothing a repeat would have counted on is lost.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

/// kube's recorder keeps an event this long (its `CACHE_TTL`), plus a margin.
const KEPT: Duration = Duration::from_secs(7 * 60);

pub struct Events {
    client: Client,
    reporter: Reporter,
    /// The recorder, and when it last published.
    current: Mutex<(Recorder, Instant)>,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            reporter,
            current: Mutex::new((recorder, Instant::now())),
        }
    }

    /// The recorder to publish an event with.
    pub fn recorder(&self) -> Recorder {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.1 = Instant::now();
        current.0.clone()
    }

    /// Swaps a recorder that has published nothing for longer than it keeps events for a
    /// fresh one, freeing its cache; whether it did.
    pub fn forget_expired(&self) -> bool {
        self.forget_older_than(KEPT)
    }

    fn forget_older_than(&self, kept: Duration) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.1.elapsed() <= kept {
            return false;
        }
        *current = (
            Recorder::new(self.client.clone(), self.reporter.clone()),
            Instant::now(),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Events {
        // A client that is never used to send anything.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        Events::new(
            client,
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        )
    }

    #[tokio::test]
    async fn only_a_recorder_unused_for_longer_than_it_keeps_events_is_swapped() {
        let events = events();
        let _ = events.recorder();
        assert!(!events.forget_expired(), "just used");
        std::thread::sleep(Duration::from_millis(5));
        assert!(events.forget_older_than(Duration::from_millis(1)));
        assert!(
            !events.forget_older_than(Duration::from_millis(1)),
            "the fresh one counts from its creation"
        );
    }
}
