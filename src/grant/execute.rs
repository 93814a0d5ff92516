//! The shell around the decision core: reads the ledger and AWS, asks `decide`, and carries the
//! decision out, writing the ledger's intent before every AWS write and clearing it once AWS
//! confirms. The controller and `apply` both run grants through here; they differ only in
//! where the ledger lives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::sync::Semaphore;

use super::access::Access;
use super::decide::{
    Connector, Decision, Declared, Ending, Facts, Kept, Observed, decide, on_connector_deletion,
};
use super::expiry::Expiry;
use super::ledger::{
    Holder, HolderKind, LedgerEntry, LedgerError, LedgerStore, Operation, OperationKind, Origin,
    Stored,
};
use super::observations::Observations;
use crate::api::grant::DeletionPolicy;
use crate::aws::access::{self as aws_access, Change, Direction, Progress};
use crate::aws::{AwsError, Session};
use crate::fence::{Fence, Fenced};

/// One lock per piece of access in this process: two grants that declare the same access
/// never work on it at the same time (another process is kept out by the leader fence).
#[derive(Default)]
pub struct AccessLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl AccessLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error("no AWS session to {0}")]
    NoSession(&'static str),
}

/// How a piece of access changed for a grant this time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeldChange {
    /// Created now.
    Granted,
    /// Managed, found missing, created again.
    Regranted,
    /// Found in place, recorded as adopted.
    Adopted,
    /// Managed already for other grants; this grant joined them.
    Joined,
    /// Nothing changed.
    Unchanged,
}

/// What carrying out a decision came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    /// The grant holds the access.
    Held {
        origin: Origin,
        change: HeldChange,
        request_id: Option<String>,
        /// When the grant started holding it (RFC 3339), from the ledger.
        since: String,
    },
    /// AWS is still working on it; the ledger has the request id.
    InProgress {
        kind: OperationKind,
        request_id: String,
    },
    /// Revoked in AWS and gone from the ledger (`already_gone`: AWS had no such access).
    Revoked { ending: Ending, already_gone: bool },
    /// No longer held by the grant; left in AWS.
    Released { ending: Ending, kept: Kept },
    /// The access ends for a grant that never held it.
    Nothing(Ending),
    Wait {
        reason: &'static str,
        message: String,
    },
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// One grant and one piece of access: everything `decide` needs but the ledger entry and
/// what AWS shows, which the shell reads itself.
pub struct Ask<'a> {
    pub holder: &'a str,
    /// `namespace/name`, recorded with the holder.
    pub grant: &'a str,
    pub holder_kind: HolderKind,
    pub access: &'a Access,
    pub declared: Declared,
    pub deleting: bool,
    pub deletion_policy: Option<DeletionPolicy>,
    pub expiry: Expiry,
    pub allowed: Result<(), String>,
    pub connector: &'a Connector,
    pub now: Timestamp,
}

/// A whole grant: the access its spec asks for, if it resolved, and everything else the
/// ledger says it holds.
pub struct GrantAsk<'a> {
    pub holder: &'a str,
    pub grant: &'a str,
    pub holder_kind: HolderKind,
    /// The access the spec resolves to: one piece, one per account of an organizational-unit
    /// grant, or none when it does not resolve (or is invalid).
    pub wanted: &'a [Access],
    /// What becomes of access the grant holds but `wanted` no longer has.
    pub settle: &'a (dyn Fn(&Access) -> Settle + Sync),
    pub deleting: bool,
    pub deletion_policy: Option<DeletionPolicy>,
    pub expiry: Expiry,
    /// The connector's policy, checked on one piece of access.
    pub allowed: &'a (dyn Fn(&Access) -> Result<(), String> + Sync),
    pub connector: &'a Connector,
    pub now: Timestamp,
}

/// What becomes of access a grant holds but no longer asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Not declared any more once all the grant asks for is held: a spec change never leaves
    /// the grant with neither the old access nor the new.
    WhenReplaced,
    /// Not declared any more: its account left the grant's organizational unit.
    Now,
    /// Not known to be undeclared (its account was not in the last sync): it ends only by
    /// expiry, policy or deletion.
    Keep,
}

/// For grants of one piece of access: what they held before is replaced.
pub fn when_replaced(_: &Access) -> Settle {
    Settle::WhenReplaced
}

#[derive(Debug)]
pub struct GrantReport {
    /// What became of each piece of the wanted access, in the order asked. An AWS failure of
    /// one piece is its own (the others go on); a fence or ledger failure stops the whole.
    pub wanted: Vec<(Access, Result<Done, ShellError>)>,
    /// What became of other access the grant held (from an older spec).
    pub others: Vec<(Access, Result<Done, ShellError>)>,
    /// When the earliest access the grant held (as the ledger says) expires: the grant must be
    /// looked at again by then, whatever else keeps it waiting.
    pub next_expiry: Option<Timestamp>,
}

impl GrantReport {
    /// Whether anything the grant held is still to be dealt with.
    pub fn unsettled(&self) -> bool {
        self.others.iter().any(|(_, r)| {
            !matches!(
                r,
                Ok(Done::Revoked { .. } | Done::Released { .. } | Done::Nothing(_))
            )
        })
    }
}

/// Where grants are carried out: a connector's ledger, its AWS session and its limits.
pub struct Shell<'a, L: LedgerStore> {
    pub ledger: &'a L,
    /// `namespace/name` of the connector.
    pub connector: &'a str,
    pub session: Option<&'a Session>,
    pub fence: &'a Fence,
    /// Permits for assignment operations in flight.
    pub slots: &'a Semaphore,
    pub locks: &'a AccessLocks,
    /// Listings shared by the connector's grants for their re-checks; `None` asks AWS afresh
    /// every time.
    pub observations: Option<&'a Observations>,
    /// Whether the connector still serves grants (is not being deleted), read afresh; `None`
    /// where it cannot go away meanwhile (`apply`, the connector's own sweeps).
    pub still_serving: Option<StillServing<'a>>,
}

/// Asks whether the connector is still there and not being deleted. Asked after a new entry's
/// intent is written and before AWS is: a connector deleted meanwhile either finds the entry
/// when it lists its ledger once more before it goes, or is seen here, and nothing is granted.
pub type StillServing<'a> = &'a (dyn Fn() -> futures::future::BoxFuture<'a, bool> + Sync);

fn stamp(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A settled outcome of resuming an operation.
enum Resumed {
    /// Finished; decide again (with what AWS now shows, if known).
    Settled(Observed),
    InProgress(OperationKind, String),
    Revoked {
        already_gone: bool,
    },
}

impl<L: LedgerStore> Shell<'_, L> {
    fn session(&self, what: &'static str) -> Result<&Session, ShellError> {
        self.session.ok_or(ShellError::NoSession(what))
    }

    /// What AWS shows of `access`. A `recheck` of access already held may be answered by a
    /// listing another grant of the connector made within the check interval.
    async fn observe(&self, access: &Access, recheck: bool) -> Result<Observed, ShellError> {
        let session = self.session("look at the access")?;
        let exists = match self.observations {
            Some(observations) => observations.exists(session, access, recheck).await?,
            None => aws_access::exists(session, access).await?,
        };
        Ok(if exists {
            Observed::Present
        } else {
            Observed::Absent
        })
    }

    async fn save(
        &self,
        entry: &mut LedgerEntry,
        version: Option<&str>,
        now: Timestamp,
    ) -> Result<String, ShellError> {
        self.fence.check()?;
        entry.updated_at = stamp(now);
        Ok(self.ledger.save(entry, version).await?)
    }

    async fn remove(&self, entry: &LedgerEntry, version: &str) -> Result<(), ShellError> {
        self.fence.check()?;
        Ok(self.ledger.remove(entry, version).await?)
    }

    /// Runs an AWS write, holding an assignment permit when it is an account assignment.
    async fn write(&self, access: &Access, kind: OperationKind) -> Result<Change, ShellError> {
        let session = self.session("write to AWS")?;
        let _permit = if access.is_assignment() {
            self.slots.acquire().await.ok()
        } else {
            None
        };
        self.fence.check()?;
        let change = match kind {
            OperationKind::Grant => aws_access::grant(session, access).await,
            OperationKind::Revoke => aws_access::revoke(session, access).await,
        };
        self.written(access);
        Ok(change?)
    }

    /// Forgets the shared listing `access` is part of: what it said is out of date.
    fn written(&self, access: &Access) {
        if let Some(observations) = self.observations {
            observations.forget(access);
        }
    }

    /// Polls an assignment operation AWS is working on.
    async fn settle(
        &self,
        access: &Access,
        kind: OperationKind,
        request: String,
    ) -> Result<Change, ShellError> {
        let Access::Assignment { instance_arn, .. } = access else {
            return Ok(Change::Done(None));
        };
        let session = self.session("poll an assignment operation")?;
        let _permit = self.slots.acquire().await.ok();
        let direction = match kind {
            OperationKind::Grant => Direction::Create,
            OperationKind::Revoke => Direction::Delete,
        };
        let change = aws_access::settle(
            session,
            instance_arn,
            request,
            Progress::InProgress,
            direction,
        )
        .await;
        self.written(access);
        Ok(change?)
    }

    /// Carries out one grant's decision on one piece of access, deciding again after looking
    /// at AWS or finishing an operation the ledger had under way.
    pub async fn run(&self, ask: &Ask<'_>) -> Result<Done, ShellError> {
        let _guard = self
            .locks
            .lock(&super::ledger::key(self.connector, ask.access))
            .await;
        let mut observed = Observed::Unknown;
        // The entry a round read and did not write, for the next round: a round that only
        // looked at AWS leaves it as it was (the lock keeps this operator's other writers out,
        // and a write from a stale copy fails on its resourceVersion), so it is read once.
        let mut unchanged: Option<Option<Stored>> = None;
        // Each round either returns or learns something (what AWS shows, an operation
        // finished); a handful is more than any path needs.
        for _ in 0..6 {
            let stored = match unchanged.take() {
                Some(stored) => stored,
                None => self.ledger.load(self.connector, ask.access).await?,
            };
            let since = stored
                .as_ref()
                .and_then(|s| s.entry.holders.get(ask.holder))
                .and_then(|h| h.since.parse().ok());
            let facts = Facts {
                holder: ask.holder,
                access: ask.access,
                declared: ask.declared,
                deleting: ask.deleting,
                deletion_policy: ask.deletion_policy,
                expires_at: ask.expiry.at(since, ask.now),
                allowed: ask.allowed.clone(),
                connector: ask.connector,
                entry: stored.as_ref().map(|s| &s.entry),
                observed,
                now: ask.now,
            };
            let decision = decide(&facts);
            let ending = super::decide::ending(&facts);
            // A re-check of access this grant already holds, with nothing under way.
            let recheck = facts
                .entry
                .is_some_and(|e| e.operation.is_none() && e.holders.contains_key(ask.holder));
            drop(facts);
            tracing::debug!(grant = ask.grant, access = %ask.access, ?decision, "decided");
            match (decision, stored) {
                (Decision::Observe, stored) => {
                    observed = self.observe(ask.access, recheck).await?;
                    unchanged = Some(stored);
                }
                (Decision::Resume(operation), Some(stored)) => {
                    let wanted = ask.declared == Declared::Yes && ending.is_none();
                    match self.resume(stored, &operation, wanted, ask.now).await? {
                        Resumed::Settled(seen) => observed = seen,
                        Resumed::InProgress(kind, request_id) => {
                            return Ok(Done::InProgress { kind, request_id });
                        }
                        // Another grant's revoke finished; this one wants the access: grant
                        // it anew.
                        Resumed::Revoked { .. } if wanted => observed = Observed::Absent,
                        Resumed::Revoked { already_gone } => {
                            let ending = ending.unwrap_or(Ending::Replaced);
                            return Ok(Done::Revoked {
                                ending,
                                already_gone,
                            });
                        }
                    }
                }
                (Decision::Grant { regrant }, stored) => {
                    return self.grant(ask, stored, regrant).await;
                }
                (Decision::Adopt, None) => {
                    let mut entry = LedgerEntry::new(self.connector, ask.access, Origin::Adopted);
                    entry.holders.insert(
                        ask.holder.to_string(),
                        Holder {
                            grant: ask.grant.to_string(),
                            since: stamp(ask.now),
                            kind: ask.holder_kind,
                        },
                    );
                    self.save(&mut entry, None, ask.now).await?;
                    return Ok(Done::Held {
                        origin: Origin::Adopted,
                        change: HeldChange::Adopted,
                        request_id: None,
                        since: stamp(ask.now),
                    });
                }
                (Decision::Join, Some(Stored { mut entry, version })) => {
                    entry.holders.insert(
                        ask.holder.to_string(),
                        Holder {
                            grant: ask.grant.to_string(),
                            since: stamp(ask.now),
                            kind: ask.holder_kind,
                        },
                    );
                    self.save(&mut entry, Some(&version), ask.now).await?;
                    return Ok(Done::Held {
                        origin: entry.origin,
                        change: HeldChange::Joined,
                        request_id: None,
                        since: stamp(ask.now),
                    });
                }
                (Decision::Keep, Some(Stored { entry, .. })) => {
                    let since = entry
                        .holders
                        .get(ask.holder)
                        .map(|h| h.since.clone())
                        .unwrap_or_default();
                    return Ok(Done::Held {
                        origin: entry.origin,
                        change: HeldChange::Unchanged,
                        request_id: None,
                        since,
                    });
                }
                (Decision::Revoke(ending), Some(stored)) => {
                    return self.revoke(stored, ending, ask.now).await;
                }
                (Decision::Release(ending, kept), Some(Stored { mut entry, version })) => {
                    entry.holders.remove(ask.holder);
                    if entry.holders.is_empty() {
                        self.remove(&entry, &version).await?;
                    } else {
                        self.save(&mut entry, Some(&version), ask.now).await?;
                    }
                    return Ok(Done::Released { ending, kept });
                }
                (Decision::Nothing(ending), _) => return Ok(Done::Nothing(ending)),
                (Decision::Wait { reason, message }, _) => {
                    return Ok(Done::Wait { reason, message });
                }
                (Decision::Refuse { reason, message }, _) => {
                    return Ok(Done::Refused { reason, message });
                }
                // `decide` adopts only without an entry, and makes every other decision only
                // with one.
                (decision @ Decision::Adopt, Some(_)) | (decision, None) => {
                    return Err(LedgerError::Unavailable {
                        action: "used",
                        message: format!("{decision:?} without a ledger entry for {}", ask.access),
                    }
                    .into());
                }
            }
        }
        Ok(Done::Wait {
            reason: "Pending",
            message: format!("{} is still settling; looking again", ask.access),
        })
    }

    /// Creates the access: intent first, then the AWS write, then the confirmation.
    async fn grant(
        &self,
        ask: &Ask<'_>,
        stored: Option<Stored>,
        regrant: bool,
    ) -> Result<Done, ShellError> {
        let (mut entry, version) = match stored {
            Some(Stored { entry, version }) => (entry, Some(version)),
            None => (
                LedgerEntry::new(self.connector, ask.access, Origin::Created),
                None,
            ),
        };
        // A grant that held it already keeps its start: drift does not extend a duration.
        let since = entry
            .holders
            .entry(ask.holder.to_string())
            .or_insert_with(|| Holder {
                grant: ask.grant.to_string(),
                since: stamp(ask.now),
                kind: ask.holder_kind,
            })
            .since
            .clone();
        // It is created by the operator now, whatever it was before.
        entry.origin = Origin::Created;
        entry.operation = Some(Operation {
            kind: OperationKind::Grant,
            request_id: None,
            started_at: stamp(ask.now),
        });
        let new_entry = version.is_none();
        let version = self.save(&mut entry, version.as_deref(), ask.now).await?;
        if new_entry
            && let Some(still_serving) = self.still_serving
            && !still_serving().await
        {
            self.remove(&entry, &version).await?;
            return Ok(Done::Refused {
                reason: "ConnectorNotReady",
                message: "the AwsConnector is being deleted (or could not be read afresh): nothing new is granted through it".into(),
            });
        }
        let change = if regrant {
            HeldChange::Regranted
        } else {
            HeldChange::Granted
        };
        self.issue(entry, version, OperationKind::Grant, ask.now)
            .await
            .map(|outcome| match outcome {
                Issued::Done(request_id) => Done::Held {
                    origin: Origin::Created,
                    change,
                    request_id,
                    since,
                },
                Issued::InProgress(request_id) => Done::InProgress {
                    kind: OperationKind::Grant,
                    request_id,
                },
                Issued::Gone { already_gone } => Done::Revoked {
                    ending: Ending::Replaced,
                    already_gone,
                },
            })
    }

    /// Revokes the access: intent first, then the AWS write; the entry goes once AWS confirms.
    async fn revoke(
        &self,
        stored: Stored,
        ending: Ending,
        now: Timestamp,
    ) -> Result<Done, ShellError> {
        let Stored { mut entry, version } = stored;
        entry.operation = Some(Operation {
            kind: OperationKind::Revoke,
            request_id: None,
            started_at: stamp(now),
        });
        let version = self.save(&mut entry, Some(&version), now).await?;
        match self
            .issue(entry, version, OperationKind::Revoke, now)
            .await?
        {
            Issued::InProgress(request_id) => Ok(Done::InProgress {
                kind: OperationKind::Revoke,
                request_id,
            }),
            Issued::Gone { already_gone } => Ok(Done::Revoked {
                ending,
                already_gone,
            }),
            Issued::Done(_) => Ok(Done::Revoked {
                ending,
                already_gone: false,
            }),
        }
    }

    /// The AWS write of an entry whose intent is recorded; records the request id, polls, and
    /// clears the intent (or, for a revoke, the entry) once AWS confirms.
    async fn issue(
        &self,
        mut entry: LedgerEntry,
        mut version: String,
        kind: OperationKind,
        now: Timestamp,
    ) -> Result<Issued, ShellError> {
        let access = entry.access.clone();
        let mut change = self.write(&access, kind).await?;
        if let Change::InProgress(request) = &change {
            if let Some(operation) = entry.operation.as_mut() {
                operation.request_id = Some(request.clone());
            }
            version = self.save(&mut entry, Some(&version), now).await?;
            change = self
                .settle_recorded(&mut entry, &mut version, kind, request.clone(), now)
                .await?;
        }
        self.confirm(entry, version, kind, change, now).await
    }

    /// Polls a recorded operation; a FAILED one clears its request id so that the next try
    /// starts afresh, and is reported.
    async fn settle_recorded(
        &self,
        entry: &mut LedgerEntry,
        version: &mut String,
        kind: OperationKind,
        request: String,
        now: Timestamp,
    ) -> Result<Change, ShellError> {
        match self.settle(&entry.access, kind, request).await {
            Ok(change) => Ok(change),
            Err(ShellError::Aws(error)) if error.code.as_deref() == Some("FAILED") => {
                match kind {
                    // Nothing was created: the grant is no longer under way.
                    OperationKind::Grant => entry.operation = None,
                    OperationKind::Revoke => {
                        if let Some(operation) = entry.operation.as_mut() {
                            operation.request_id = None;
                        }
                    }
                }
                *version = self.save(entry, Some(version), now).await?;
                Err(ShellError::Aws(error))
            }
            Err(error) => Err(error),
        }
    }

    async fn confirm(
        &self,
        mut entry: LedgerEntry,
        version: String,
        kind: OperationKind,
        change: Change,
        now: Timestamp,
    ) -> Result<Issued, ShellError> {
        match (kind, change) {
            (_, Change::InProgress(request)) => Ok(Issued::InProgress(request)),
            (OperationKind::Grant, change) => {
                entry.operation = None;
                self.save(&mut entry, Some(&version), now).await?;
                Ok(Issued::Done(match change {
                    Change::Done(request) => request,
                    _ => None,
                }))
            }
            (OperationKind::Revoke, change) => {
                self.remove(&entry, &version).await?;
                Ok(Issued::Gone {
                    already_gone: change == Change::AlreadySo,
                })
            }
        }
    }

    /// Finishes an operation the ledger had under way (after a restart, or another grant's).
    async fn resume(
        &self,
        stored: Stored,
        operation: &Operation,
        wanted: bool,
        now: Timestamp,
    ) -> Result<Resumed, ShellError> {
        let Stored {
            mut entry,
            mut version,
        } = stored;
        let change = match &operation.request_id {
            Some(request) => {
                tracing::info!(access = %entry.access, request, "resuming an assignment operation from the ledger");
                self.settle_recorded(
                    &mut entry,
                    &mut version,
                    operation.kind,
                    request.clone(),
                    now,
                )
                .await?
            }
            None => {
                // The write may or may not have reached AWS: look.
                let seen = self.observe(&entry.access, false).await?;
                match (operation.kind, seen) {
                    (OperationKind::Grant, Observed::Present) => Change::Done(None),
                    (OperationKind::Grant, _) if !wanted => {
                        // It never came to be and nobody wants it now.
                        entry.operation = None;
                        if entry.holders.len() <= 1 {
                            self.remove(&entry, &version).await?;
                            return Ok(Resumed::Revoked { already_gone: true });
                        }
                        self.save(&mut entry, Some(&version), now).await?;
                        return Ok(Resumed::Settled(Observed::Absent));
                    }
                    (OperationKind::Revoke, Observed::Absent) => Change::AlreadySo,
                    (kind, _) => {
                        return Ok(self.issue(entry, version, kind, now).await?.resumed(kind));
                    }
                }
            }
        };
        Ok(self
            .confirm(entry, version, operation.kind, change, now)
            .await?
            .resumed(operation.kind))
    }

    /// A holder whose grant is gone without having settled its access (its finalizer removed
    /// by hand, or dropped from `apply`'s files with `--prune`): treated as a deleted grant
    /// with the default deletion policy.
    pub async fn settle_gone_holder(
        &self,
        holder: &str,
        grant: &str,
        holder_kind: HolderKind,
        access: &Access,
        connector: &Connector,
        now: Timestamp,
    ) -> Result<Done, ShellError> {
        self.run(&Ask {
            holder,
            grant,
            holder_kind,
            access,
            declared: Declared::Unknown,
            deleting: true,
            // The grant is gone, and with it what it said: the defaults apply.
            deletion_policy: None,
            expiry: Expiry::Never,
            allowed: Ok(()),
            connector,
            now,
        })
        .await
    }

    /// A whole grant: the wanted access first, then what the grant held before. Access the
    /// spec no longer declares is revoked or released only once the wanted access is held, so
    /// that a spec change never leaves the grant with neither; until then it ends only by
    /// expiry, policy or deletion.
    pub async fn converge(&self, ask: &GrantAsk<'_>) -> Result<GrantReport, ShellError> {
        let held = self.ledger.held_by(self.connector, ask.holder).await?;
        let next_expiry = held
            .iter()
            .filter_map(|s| s.entry.holders.get(ask.holder))
            .filter_map(|h| h.since.parse().ok())
            .filter_map(|since| ask.expiry.at(Some(since), ask.now))
            .min();
        let mut wanted = Vec::new();
        for access in ask.wanted {
            match self.run(&single(ask, access, Declared::Yes)).await {
                Err(error @ (ShellError::Fenced(_) | ShellError::Ledger(_))) => return Err(error),
                result => wanted.push((access.clone(), result)),
            }
        }
        let replaced = !wanted.is_empty()
            && wanted
                .iter()
                .all(|(_, result)| matches!(result, Ok(Done::Held { .. })));
        let mut others = Vec::new();
        for stored in held
            .iter()
            .filter(|s| !ask.wanted.contains(&s.entry.access))
        {
            let declared = match (ask.settle)(&stored.entry.access) {
                Settle::Now => Declared::No,
                Settle::WhenReplaced if replaced => Declared::No,
                Settle::WhenReplaced | Settle::Keep => Declared::Unknown,
            };
            let result = self.run(&single(ask, &stored.entry.access, declared)).await;
            others.push((stored.entry.access.clone(), result));
        }
        Ok(GrantReport {
            wanted,
            others,
            next_expiry,
        })
    }

    /// One step of deleting the connector: every entry it has is revoked (what the operator
    /// created, unless `retain`) or forgotten. Returns the entries left (operations still under
    /// way, or failures) and what was done.
    pub async fn retire(
        &self,
        retain: bool,
        now: Timestamp,
    ) -> Result<(usize, Vec<(Access, Result<Done, ShellError>)>), ShellError> {
        let entries = self.ledger.of_connector(self.connector).await?;
        let mut done = Vec::new();
        for stored in entries {
            let access = stored.entry.access.clone();
            let _guard = self.locks.lock(&stored.entry.key()).await;
            let result = self.retire_one(&access, retain, now).await;
            done.push((access, result));
        }
        let left = self.ledger.of_connector(self.connector).await?.len();
        Ok((left, done))
    }

    async fn retire_one(
        &self,
        access: &Access,
        retain: bool,
        now: Timestamp,
    ) -> Result<Done, ShellError> {
        for _ in 0..4 {
            let Some(stored) = self.ledger.load(self.connector, access).await? else {
                return Ok(Done::Nothing(Ending::ConnectorDeleted));
            };
            match on_connector_deletion(&stored.entry, retain) {
                Decision::Resume(operation) => {
                    match self.resume(stored, &operation, false, now).await? {
                        Resumed::Settled(_) => continue,
                        Resumed::InProgress(kind, request_id) => {
                            return Ok(Done::InProgress { kind, request_id });
                        }
                        Resumed::Revoked { already_gone } => {
                            return Ok(Done::Revoked {
                                ending: Ending::ConnectorDeleted,
                                already_gone,
                            });
                        }
                    }
                }
                Decision::Revoke(ending) => return self.revoke(stored, ending, now).await,
                Decision::Release(ending, kept) => {
                    self.remove(&stored.entry, &stored.version).await?;
                    return Ok(Done::Released { ending, kept });
                }
                other => {
                    return Ok(Done::Wait {
                        reason: "Pending",
                        message: format!("{other:?}"),
                    });
                }
            }
        }
        Ok(Done::Wait {
            reason: "Pending",
            message: format!("{access} is still settling"),
        })
    }
}

/// One piece of access of a whole grant.
fn single<'a>(ask: &GrantAsk<'a>, access: &'a Access, declared: Declared) -> Ask<'a> {
    Ask {
        holder: ask.holder,
        grant: ask.grant,
        holder_kind: ask.holder_kind,
        access,
        declared,
        deleting: ask.deleting,
        deletion_policy: ask.deletion_policy,
        expiry: ask.expiry,
        allowed: (ask.allowed)(access),
        connector: ask.connector,
        now: ask.now,
    }
}

/// What an AWS write came to once recorded.
enum Issued {
    Done(Option<String>),
    InProgress(String),
    Gone { already_gone: bool },
}

impl Issued {
    fn resumed(self, kind: OperationKind) -> Resumed {
        match self {
            Self::Done(_) => Resumed::Settled(Observed::Present),
            Self::InProgress(request) => Resumed::InProgress(kind, request),
            Self::Gone { already_gone } => Resumed::Revoked { already_gone },
        }
    }
}
