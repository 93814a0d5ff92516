//! The leader's fence: whether this replica may write to AWS and Kubernetes right now.
//!
//! A leader keeps its lease by renewing it; if it cannot renew, another replica takes the lease
//! once a full lease duration has passed without a renewal. The fence closes earlier than that
//! (at the renew deadline, measured from when the last successful renewal was *sent*), so that
//! a replica that lost contact stops writing before anyone else may start, with the difference
//! left for clock skew and requests already on the wire.

use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No leader election (a single replica, or a command run by hand): always open.
    Unfenced,
    /// Open until this instant, unless renewed.
    Until(Instant),
    /// Not the leader (yet, or any more).
    Closed,
}

/// Shared by the lease loop (which extends it) and every writer (which checks it).
#[derive(Clone, Debug)]
pub struct Fence(Arc<Mutex<State>>);

/// A write refused because this replica is not known to hold the lease.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not writing: this replica does not hold the leader lease ({0})")]
pub struct Fenced(pub &'static str);

impl Fence {
    /// A fence that never closes.
    pub fn unfenced() -> Self {
        Self(Arc::new(Mutex::new(State::Unfenced)))
    }

    /// A fence that is closed until the lease is first acquired.
    pub fn closed() -> Self {
        Self(Arc::new(Mutex::new(State::Closed)))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens (or keeps open) the fence until `deadline`.
    pub fn open_until(&self, deadline: Instant) {
        let mut state = self.state();
        match *state {
            State::Until(current) if current >= deadline => {}
            State::Unfenced => {}
            _ => *state = State::Until(deadline),
        }
    }

    /// Closes the fence: nothing is written from now on.
    pub fn close(&self) {
        let mut state = self.state();
        if *state != State::Unfenced {
            *state = State::Closed;
        }
    }

    /// Resolves once writes are no longer allowed: the deadline passed unrenewed, or the fence
    /// was closed. Never resolves for an unfenced replica.
    pub async fn lapsed(&self) {
        loop {
            let state = *self.state();
            match state {
                State::Unfenced => std::future::pending::<()>().await,
                State::Closed => return,
                State::Until(deadline) if Instant::now() >= deadline => return,
                // It may have been extended meanwhile: look again when it would lapse.
                State::Until(deadline) => tokio::time::sleep_until(deadline.into()).await,
            }
        }
    }

    /// Whether a write may start now.
    pub fn check(&self) -> Result<(), Fenced> {
        match *self.state() {
            State::Unfenced => Ok(()),
            State::Until(deadline) if Instant::now() < deadline => Ok(()),
            State::Until(_) => Err(Fenced("the lease was not renewed in time")),
            State::Closed => Err(Fenced("leadership was lost or given up")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn lapses_at_the_deadline_unless_extended() {
        let fence = Fence::closed();
        fence.lapsed().await;
        let start = Instant::now();
        fence.open_until(start + Duration::from_millis(100));
        let extend = {
            let fence = fence.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                fence.open_until(Instant::now() + Duration::from_millis(150));
            }
        };
        let ((), ()) = tokio::join!(fence.lapsed(), extend);
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "the extension counted"
        );
        assert!(fence.check().is_err());
    }

    #[test]
    fn open_only_until_the_deadline_and_never_after_closing() {
        let fence = Fence::closed();
        assert!(fence.check().is_err());
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.check().is_ok());
        // An older deadline never shortens a newer one.
        fence.open_until(Instant::now());
        assert!(fence.check().is_ok());
        fence.close();
        assert_eq!(
            fence.check(),
            Err(Fenced("leadership was lost or given up"))
        );
        let lapsed = Fence::closed();
        lapsed.open_until(Instant::now());
        assert!(lapsed.check().is_err(), "a deadline that passed fences");
        let free = Fence::unfenced();
        free.close();
        assert!(free.check().is_ok(), "no leader election: never fenced");
    }
}
