//! A shard's claims on its connectors. With `--shard-selector`, several installations share
//! one cluster, each serving the connectors its selector picks (and everything that names
//! them). Labels change, so two shards may both believe, for a moment, that a connector is
//! theirs; the claim decides. It is a Lease per connector in the operator's namespace (shared
//! by the shards, like the ledger), held by the shard's name, taken and renewed the way the
//! leader lease is (`leader::Election`). Every write for a connector goes through the claim's
//! fence, which sits within the leader's: a shard writes for a connector only while it is the
//! leader of its own replicas *and* holds the connector's claim.
//!
//! Handing over: a shard that sees its connector leave its selector closes the claim's fence
//! at once (no write starts after that), waits for the reconciliations already running for the
//! connector to end, and only then releases the Lease. The next shard takes it then, or after
//! a whole lease duration if the first one vanished. So a connector is written by one shard at
//! a time; what one shard began and did not finish, the next finds in the ledger, as a new
//! leader does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use super::leader::{Election, Timing};
use super::shutdown::Shutdown;
use crate::api::AwsConnector;
use crate::fence::Fence;
use crate::fingerprint::short_hash;
use crate::shard::ShardSelector;

/// How a shard is set up.
#[derive(Clone, Debug)]
pub struct ShardSettings {
    /// The connectors this shard serves.
    pub selector: ShardSelector,
    /// The holder of this shard's claims: the same for every replica of one installation (a
    /// restarted pod takes its claims back at once), different between installations.
    pub name: String,
    /// How long a claim holds unrenewed, and how long before that its holder stops writing.
    pub claim: Timing,
}

/// The name of the Lease that is a connector's claim.
pub fn lease_name(connector_key: &str) -> String {
    format!("aws-access-claim-{}", short_hash(connector_key.as_bytes()))
}

/// What a reconciliation of something that names a connector may do.
pub enum Entry {
    /// Work, writing through `Context::fence_for` the connector; the claim is not released
    /// while `InFlight` lives.
    Serve(InFlight),
    /// The connector is in this shard, but its claim is not held yet: look again shortly.
    Waiting,
    /// The connector is another shard's, or unknown here: nothing is written.
    Elsewhere,
}

/// A reconciliation running under a claim, counted until dropped.
pub struct InFlight(watch::Sender<usize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

struct Claim {
    /// Open while the Lease is held (the election's fence, within the leader's).
    lease: Fence,
    /// What writers go through: the lease's fence, closed for good when the connector leaves
    /// the shard (while the Lease is still renewed, until the writers under way are done).
    fence: Fence,
    in_flight: watch::Sender<usize>,
    leaving: watch::Sender<bool>,
}

pub struct Claims {
    settings: ShardSettings,
    client: Client,
    leases: Api<Lease>,
    leader: Fence,
    shutdown: Shutdown,
    held: Mutex<HashMap<String, Arc<Claim>>>,
}

impl Claims {
    pub fn new(
        settings: ShardSettings,
        client: Client,
        home_namespace: &str,
        leader: Fence,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            leases: Api::namespaced(client.clone(), home_namespace),
            settings,
            client,
            leader,
            shutdown,
            held: Mutex::default(),
        }
    }

    pub fn selector(&self) -> &ShardSelector {
        &self.settings.selector
    }

    /// How soon an object waiting for its connector's claim looks again: as often as the claim
    /// is renewed (a claim changes hands no faster), so that thousands of grants waiting on a
    /// connector that two selectors pick do not spin.
    pub fn recheck(&self) -> Duration {
        self.settings.claim.retry()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Claim>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fence for writes on behalf of a connector: its claim's (closed unless held).
    pub fn fence(&self, connector_key: &str) -> Fence {
        self.held()
            .get(connector_key)
            .map_or_else(|| self.leader.closed_within(), |c| c.fence.clone())
    }

    /// Whether work for `connector` may go on here, claiming it when it is this shard's.
    pub fn enter(self: &Arc<Self>, connector: &AwsConnector) -> Entry {
        let key = super::session::name_key(connector);
        let mine = self.settings.selector.matches(connector.labels());
        let mut held = self.held();
        match held.get(&key) {
            Some(claim) if !mine => {
                claim.leaving.send_replace(true);
                Entry::Elsewhere
            }
            None if !mine => Entry::Elsewhere,
            Some(claim) => {
                if claim.fence.check().is_ok() && !*claim.leaving.borrow() {
                    claim.in_flight.send_modify(|n| *n += 1);
                    Entry::Serve(InFlight(claim.in_flight.clone()))
                } else {
                    Entry::Waiting
                }
            }
            None => {
                let lease = self.leader.closed_within();
                let claim = Arc::new(Claim {
                    fence: lease.open_within(),
                    lease,
                    in_flight: watch::channel(0).0,
                    leaving: watch::channel(false).0,
                });
                held.insert(key.clone(), claim.clone());
                let namespace = connector.namespace().unwrap_or_default();
                tokio::spawn(
                    self.clone()
                        .keep(key, namespace, connector.name_any(), claim),
                );
                Entry::Waiting
            }
        }
    }

    /// Takes the connector's claim and holds it while the connector stays in the shard; then
    /// hands it over.
    async fn keep(
        self: Arc<Self>,
        key: String,
        namespace: String,
        name: String,
        claim: Arc<Claim>,
    ) {
        let election = Election::new(
            self.leases.clone(),
            &lease_name(&key),
            &self.settings.name,
            self.settings.claim.clone(),
            claim.lease.clone(),
        )
        .describing(format!("the claim on AwsConnector {key}"));
        let mut leaving = claim.leaving.subscribe();
        let connectors: Api<AwsConnector> = Api::namespaced(self.client.clone(), &namespace);
        loop {
            tracing::info!(connector = %key, shard = %self.settings.name, "claiming the connector for this shard");
            let acquired = tokio::select! {
                acquired = election.acquire(&self.shutdown) => acquired,
                _ = leaving.wait_for(|l| *l) => false,
                () = self.left_shard(&connectors, &name) => false,
            };
            if !acquired {
                break;
            }
            tracing::info!(connector = %key, shard = %self.settings.name, "claimed the connector");
            let lost = tokio::select! {
                why = election.hold() => Some(why),
                _ = leaving.wait_for(|l| *l) => None,
                () = self.left_shard(&connectors, &name) => None,
                () = self.shutdown.wait() => None,
            };
            if let Some(why) = lost {
                // The lease's fence closed before anyone else could take it: nothing more is
                // written for the connector until it is held again.
                tracing::warn!(connector = %key, %why, "lost the claim on the connector; writing nothing for it until it is taken again");
                continue;
            }
            // Handing over: no new write from now on, the Lease kept renewed until the writers
            // under way are done, then released for the next shard to take at once.
            claim.fence.close();
            tokio::select! {
                why = election.hold() => {
                    tracing::warn!(connector = %key, %why, "lost the claim while handing the connector over");
                }
                () = self.drain(&key, &claim) => {}
            }
            election.release().await;
            break;
        }
        claim.fence.close();
        let mut held = self.held();
        if held.get(&key).is_some_and(|c| Arc::ptr_eq(c, &claim)) {
            held.remove(&key);
        }
        tracing::info!(connector = %key, shard = %self.settings.name, "the connector is no longer served by this shard");
    }

    /// Waits for the reconciliations that entered under the claim to end.
    async fn drain(&self, key: &str, claim: &Claim) {
        let mut in_flight = claim.in_flight.subscribe();
        let running = *in_flight.borrow();
        if running > 0 {
            tracing::info!(connector = %key, running, "waiting for the connector's reconciliations to end before handing it over");
        }
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }

    /// Resolves once the connector is gone or no longer matches the shard's selector, looking
    /// as often as the claim is renewed.
    async fn left_shard(&self, connectors: &Api<AwsConnector>, name: &str) {
        loop {
            tokio::time::sleep(self.settings.claim.retry()).await;
            match connectors.get_opt(name).await {
                Ok(None) => return,
                Ok(Some(connector)) if !self.settings.selector.matches(connector.labels()) => {
                    return;
                }
                Ok(Some(_)) => {}
                Err(error) => {
                    tracing::debug!(connector = name, %error, "cannot read the connector to see whether it is still in this shard")
                }
            }
        }
    }
}

/// How soon a connector waiting for its claim looks again (what names it waits
/// `Claims::recheck`).
pub const CLAIM_RECHECK: Duration = Duration::from_secs(2);

/// Default claim timings: held 60 s unrenewed, writes stop 20 s before (renewed every ~13 s).
/// Longer than the leader's: a shard's own restart takes its claims back at once (same holder),
/// so the duration matters only when a whole shard vanishes, and it costs a Lease write per
/// connector per renewal.
pub const CLAIM_SECONDS: u64 = 60;

pub fn claim_timing(seconds: u64) -> Timing {
    Timing {
        duration: Duration::from_secs(seconds),
        grace: Duration::from_secs(seconds / 3),
    }
}
