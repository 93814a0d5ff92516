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
    /// A gate within another fence: open until closed, for as long as the outer one is.
    Open,
}

/// Shared by the lease loop (which extends it) and every writer (which checks it). A fence
/// may sit within another (a connector's claim within the leader's): it is open only while
/// both are.
#[derive(Clone, Debug)]
pub struct Fence {
    state: Arc<Mutex<State>>,
    outer: Option<Arc<Fence>>,
}

/// A write refused because this replica is not known to hold the lease.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not writing: {0}")]
pub struct Fenced(pub String);

impl Fence {
    /// A fence that never closes.
    pub fn unfenced() -> Self {
        Self::with(State::Unfenced, None)
    }

    /// A fence that is closed until the lease is first acquired.
    pub fn closed() -> Self {
        Self::with(State::Closed, None)
    }

    /// A fence of its own, closed until opened, and open only while `self` is open too.
    pub fn closed_within(&self) -> Self {
        Self::with(State::Closed, Some(Arc::new(self.clone())))
    }

    /// A gate within `self`: open while `self` is, until it is closed for good.
    pub fn open_within(&self) -> Self {
        Self::with(State::Open, Some(Arc::new(self.clone())))
    }

    fn with(state: State, outer: Option<Arc<Fence>>) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
            outer,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        match &self.outer {
            Some(outer) => {
                tokio::select! {
                    () = self.lapsed_itself() => {}
                    () = Box::pin(outer.lapsed()) => {}
                }
            }
            None => self.lapsed_itself().await,
        }
    }

    async fn lapsed_itself(&self) {
        loop {
            let state = *self.state();
            match state {
                State::Unfenced => std::future::pending::<()>().await,
                State::Closed => return,
                // Nothing announces a close: look again shortly (gates are closed once, by
                // the task that also waits for the writers).
                State::Open => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                State::Until(deadline) if Instant::now() >= deadline => return,
                // It may have been extended meanwhile: look again when it would lapse.
                State::Until(deadline) => tokio::time::sleep_until(deadline.into()).await,
            }
        }
    }

    /// Whether a write may start now.
    pub fn check(&self) -> Result<(), Fenced> {
        if let Some(outer) = &self.outer {
            outer.check()?;
        }
        let state = *self.state();
        match state {
            State::Unfenced | State::Open => Ok(()),
            State::Until(deadline) if Instant::now() < deadline => Ok(()),
            State::Until(_) if self.outer.is_some() => Err(Fenced(
                "this shard's claim on the connector was not renewed in time".into(),
            )),
            State::Closed if self.outer.is_some() => Err(Fenced(
                "this shard does not hold the connector's claim (not yet, or any more)".into(),
            )),
            State::Until(_) => Err(Fenced(
                "this replica does not hold the leader lease (it was not renewed in time)".into(),
            )),
            State::Closed => Err(Fenced(
                "this replica does not hold the leader lease (lost or given up)".into(),
            )),
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
        assert!(
            fence
                .check()
                .is_err_and(|f| f.to_string().contains("leader lease (lost or given up)"))
        );
        let lapsed = Fence::closed();
        lapsed.open_until(Instant::now());
        assert!(lapsed.check().is_err(), "a deadline that passed fences");
        let free = Fence::unfenced();
        free.close();
        assert!(free.check().is_ok(), "no leader election: never fenced");
    }

    #[tokio::test]
    async fn a_claim_is_open_only_while_the_leader_fence_is_open_too() {
        let leader = Fence::closed();
        let claim = leader.closed_within();
        claim.open_until(Instant::now() + Duration::from_secs(60));
        assert!(
            claim
                .check()
                .is_err_and(|f| f.to_string().contains("leader lease")),
            "the leader's fence is closed"
        );
        leader.open_until(Instant::now() + Duration::from_secs(60));
        assert!(claim.check().is_ok());
        // Closing the claim leaves the leader open, and the other way round.
        let other = leader.closed_within();
        assert!(
            other
                .check()
                .is_err_and(|f| f.to_string().contains("claim"))
        );
        leader.close();
        assert!(claim.check().is_err());
        // The claim lapses when the leader does, even with time of its own left.
        tokio::time::timeout(Duration::from_secs(1), claim.lapsed())
            .await
            .expect("lapsed with the leader");
        // A gate is open while what it sits in is, until it is closed for good.
        leader.open_until(Instant::now() + Duration::from_secs(60));
        let gate = claim.open_within();
        assert!(gate.check().is_ok());
        claim.close();
        assert!(gate.check().is_err(), "closed with the claim");
        claim.open_until(Instant::now() + Duration::from_secs(60));
        assert!(gate.check().is_ok(), "open again with the claim");
        gate.close();
        assert!(gate.check().is_err());
        claim.open_until(Instant::now() + Duration::from_secs(120));
        assert!(gate.check().is_err(), "a closed gate stays closed");
    }
}
