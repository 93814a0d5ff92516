//! Leadership through a `coordination.k8s.io` Lease, with a fence that closes before anyone
//! else could take the lease.
//!
//! Timings, for a lease of `duration` and a skew allowance of `grace`:
//! - the holder renews every `(duration - grace) / 3`;
//! - a renewal that succeeds opens the fence until `sent + (duration - grace)`, where `sent` is
//!   when the renewal was sent (not when it was answered);
//! - another replica takes the lease only after it has seen the lease unchanged for a whole
//!   `duration` on its own monotonic clock.
//!
//! So a holder that cannot renew stops writing at least `grace` before another replica may
//! start, whatever the wall clocks of the two say.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use super::shutdown::Shutdown;
use crate::fence::Fence;

/// How a replica takes part in the election.
#[derive(Clone, Debug)]
pub struct Timing {
    pub duration: Duration,
    /// How long before the lease could be taken the holder stops writing.
    pub grace: Duration,
}

impl Timing {
    /// How long after sending a successful renewal the holder may write.
    pub fn renew_deadline(&self) -> Duration {
        self.duration
            .saturating_sub(self.grace)
            .max(Duration::from_millis(300))
    }

    /// How often the holder renews, and a candidate looks.
    pub fn retry(&self) -> Duration {
        self.renew_deadline() / 3
    }
}

pub struct Election {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    fence: Fence,
    /// What the lease is, in logs and reasons: "the leader lease" unless `describing` says.
    what: String,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Election {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: Timing, fence: Fence) -> Self {
        Self {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            fence,
            what: "the leader lease".into(),
        }
    }

    /// Names the lease in logs and reasons (a connector's claim, say).
    pub fn describing(mut self, what: String) -> Self {
        self.what = what;
        self
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.timing.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Waits until this replica holds the lease (true), or until shutdown (false).
    pub async fn acquire(&self, shutdown: &Shutdown) -> bool {
        // The holder and version last seen, and when (on this replica's clock) they were first
        // seen: the lease is free once they have not changed for a whole duration.
        let mut seen: Option<(String, Instant)> = None;
        loop {
            let sent = Instant::now();
            match self.try_acquire(&mut seen).await {
                Ok(true) => {
                    self.fence.open_until(sent + self.timing.renew_deadline());
                    return true;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(lease = %self.name, %error, "cannot read or take {}; trying again", self.what)
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.timing.retry()) => {}
                () = shutdown.wait() => return false,
            }
        }
    }

    async fn try_acquire(&self, seen: &mut Option<(String, Instant)>) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.seconds()),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let free = match &holder {
            None => true,
            Some(holder) if *holder == self.identity => true,
            Some(_) => {
                let version = lease.resource_version().unwrap_or_default();
                match seen {
                    Some((v, since)) if *v == version => {
                        let held_for = spec
                            .lease_duration_seconds
                            .and_then(|s| u64::try_from(s).ok())
                            .map_or(self.timing.duration, Duration::from_secs)
                            .max(self.timing.duration);
                        since.elapsed() >= held_for
                    }
                    _ => {
                        *seen = Some((version, Instant::now()));
                        false
                    }
                }
            }
        };
        if !free {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0)
            + i32::from(holder.as_deref() != Some(self.identity.as_str()));
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.seconds()),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..spec
        });
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Renews the lease until it is lost; returns why. The fence is closed by then, and this
    /// returns as soon as it lapses, so that the caller stops its writers at once.
    pub async fn hold(&self) -> String {
        loop {
            let attempt = async {
                tokio::time::sleep(self.timing.retry()).await;
                let sent = Instant::now();
                let renewed =
                    tokio::time::timeout(self.timing.renew_deadline(), self.renew()).await;
                (sent, renewed)
            };
            tokio::select! {
                () = self.fence.lapsed() => {
                    self.fence.close();
                    return format!(
                        "{} was not renewed within {:?}",
                        self.what,
                        self.timing.renew_deadline()
                    );
                }
                (sent, renewed) = attempt => match renewed {
                    Ok(Ok(true)) => self.fence.open_until(sent + self.timing.renew_deadline()),
                    Ok(Ok(false)) => {
                        self.fence.close();
                        return format!("another holder took {}", self.what);
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(lease = %self.name, %error, "cannot renew {}", self.what);
                    }
                    Err(_) => tracing::warn!(lease = %self.name, "renewing {} timed out", self.what),
                },
            }
        }
    }

    /// One renewal: false when another replica holds the lease now.
    async fn renew(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.renew_time = Some(now());
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone wrote the lease in between (perhaps taking it): this is no renewal, and the
            // fence is not extended; the next attempt looks again.
            Err(error) => Err(error),
        }
    }

    /// Gives the lease up, so that the next leader need not wait for it to expire.
    pub async fn release(&self) {
        self.fence.close();
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(false);
            };
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.acquire_time = None;
            lease.spec = Some(spec);
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
        .await;
        match result {
            Ok(true) => tracing::info!(lease = %self.name, "released {}", self.what),
            Ok(false) => {
                tracing::info!(lease = %self.name, "{} was no longer ours to release", self.what)
            }
            Err(error) => {
                tracing::warn!(lease = %self.name, %error, "releasing {} failed", self.what)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_closes_a_grace_before_the_lease_can_be_taken() {
        let timing = Timing {
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        };
        assert_eq!(timing.renew_deadline(), Duration::from_secs(10));
        assert!(timing.retry() * 3 <= timing.renew_deadline());
        assert!(timing.renew_deadline() + timing.grace <= timing.duration);
    }
}
