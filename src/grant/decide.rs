//! The decision core: for one grant and one piece of access, from what is known (the grant,
//! the connector's policy and health, the ledger entry, what AWS shows, the time) to one
//! decision. No I/O: the controller and `apply` both run it, then carry the decision out.
//!
//! The order matters. Whether the access must end (the grant is deleted, expired or no longer
//! allowed, or its spec moved to other access) is settled first, whatever else is wrong: an
//! expired grant whose connector is broken still has its access revoked as soon as AWS can be
//! reached. Only the ledger says what may be revoked; only access the operator created is
//! revoked unless a grant explicitly says `deletionPolicy: Revoke`.

use jiff::Timestamp;

use super::access::Access;
use super::ledger::{LedgerEntry, Operation, Origin};
use crate::api::grant::DeletionPolicy;

/// The connector a grant uses, as far as deciding goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connector {
    /// The AwsConnector does not exist.
    Missing,
    Present {
        /// `Err` carries why it is not Ready.
        ready: Result<(), String>,
        /// It is being deleted: nothing new is granted through it.
        deleting: bool,
        read_only: bool,
        /// Whether AWS can be reached through it now (`Err`: why not). A revoke needs only
        /// this, not a Ready connector.
        reachable: Result<(), String>,
    },
}

impl Connector {
    /// A connector that is Ready, not being deleted, and through which AWS can be reached:
    /// how `plan`/`apply` (which authenticated already) and the connector's own sweeps see it.
    pub fn reachable(read_only: bool) -> Self {
        Self::Present {
            ready: Ok(()),
            deleting: false,
            read_only,
            reachable: Ok(()),
        }
    }
}

/// What AWS shows of the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Not looked at yet.
    Unknown,
    Present,
    Absent,
}

/// Whether the grant's current spec declares this access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    Yes,
    /// The spec now resolves to other access.
    No,
    /// The spec does not resolve (a renamed principal, an invalid field): nothing is taken
    /// away for that alone.
    Unknown,
}

pub struct Facts<'a> {
    /// The grant's uid (its `namespace/name` for `apply`).
    pub holder: &'a str,
    pub access: &'a Access,
    pub declared: Declared,
    /// The grant is being deleted.
    pub deleting: bool,
    pub deletion_policy: Option<DeletionPolicy>,
    pub expires_at: Option<Timestamp>,
    /// The connector's allowed namespaces and grant policy, checked on this access.
    pub allowed: Result<(), String>,
    pub connector: &'a Connector,
    pub entry: Option<&'a LedgerEntry>,
    pub observed: Observed,
    pub now: Timestamp,
}

/// Why a grant stops holding a piece of access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Expired(Timestamp),
    NotAllowed(String),
    Deleted,
    Replaced,
    ConnectorDeleted,
}

/// Why access a grant stops holding stays in AWS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Other grants still declare it.
    DeclaredBy(Vec<String>),
    /// The operator found it in place and no grant asked for it to be revoked.
    Adopted,
    /// The grant was deleted with `deletionPolicy: Retain` (or the connector with
    /// `deletionPolicy: Retain`).
    Retain,
    /// The connector is read-only and the grant is being deleted.
    ReadOnly,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Look at AWS, then decide again.
    Observe,
    /// Create the access (`regrant`: it was managed and is gone: drift).
    Grant { regrant: bool },
    /// Record access that exists and that no entry knows: found, not created.
    Adopt,
    /// The access is managed already for other grants: add this one.
    Join,
    /// Nothing to do.
    Keep,
    /// Finish what the ledger says was started.
    Resume(Operation),
    /// Revoke it in AWS, then forget it.
    Revoke(Ending),
    /// Stop holding it; it stays in AWS.
    Release(Ending, Kept),
    /// The access ends for this grant, which never held it.
    Nothing(Ending),
    /// Nothing can be done now; try again later.
    Wait {
        reason: &'static str,
        message: String,
    },
    /// The grant cannot have this access.
    Refuse {
        reason: &'static str,
        message: String,
    },
}

/// Why the access ends for this grant, if it does: expiry first, then policy, then deletion,
/// then a changed spec.
pub fn ending(f: &Facts<'_>) -> Option<Ending> {
    if let Some(at) = f.expires_at.filter(|at| *at <= f.now) {
        return Some(Ending::Expired(at));
    }
    if let Err(rule) = &f.allowed {
        return Some(Ending::NotAllowed(rule.clone()));
    }
    if f.deleting {
        return Some(Ending::Deleted);
    }
    (f.declared == Declared::No).then_some(Ending::Replaced)
}

pub fn decide(f: &Facts<'_>) -> Decision {
    let held = f.entry.is_some_and(|e| e.holders.contains_key(f.holder));
    if let Some(ending) = ending(f) {
        return if held {
            end(f, ending)
        } else {
            Decision::Nothing(ending)
        };
    }
    if f.declared == Declared::Unknown {
        return Decision::Keep;
    }
    let (deleting, read_only, reachable) = match f.connector {
        Connector::Missing => {
            return Decision::Refuse {
                reason: "ConnectorNotFound",
                message: "the AwsConnector does not exist".into(),
            };
        }
        Connector::Present {
            ready: Err(why), ..
        } => {
            return Decision::Refuse {
                reason: "ConnectorNotReady",
                message: format!("the AwsConnector is not Ready ({why})"),
            };
        }
        Connector::Present {
            deleting,
            read_only,
            reachable,
            ..
        } => (*deleting, *read_only, reachable),
    };
    if deleting {
        return Decision::Refuse {
            reason: "ConnectorNotReady",
            message: "the AwsConnector is being deleted".into(),
        };
    }
    if read_only {
        return Decision::Refuse {
            reason: "ReadOnly",
            message: format!("the connector is readOnly: {} is not granted", f.access),
        };
    }
    if let Err(why) = reachable {
        return Decision::Wait {
            reason: "ConnectorNotReady",
            message: format!("AWS cannot be reached through the connector: {why}"),
        };
    }
    if let Some(operation) = f.entry.and_then(|e| e.operation.clone()) {
        return Decision::Resume(operation);
    }
    match (f.entry.is_some(), held, f.observed) {
        (_, _, Observed::Unknown) => Decision::Observe,
        (false, _, Observed::Present) => Decision::Adopt,
        (false, _, Observed::Absent) => Decision::Grant { regrant: false },
        (true, false, Observed::Present) => Decision::Join,
        (true, true, Observed::Present) => Decision::Keep,
        (true, _, Observed::Absent) => Decision::Grant { regrant: true },
    }
}

/// A grant stops holding access it is a holder of.
fn end(f: &Facts<'_>, ending: Ending) -> Decision {
    let Some(entry) = f.entry else {
        return Decision::Nothing(ending);
    };
    let others = entry.others(f.holder);
    if !others.is_empty() && entry.operation.is_none() {
        return Decision::Release(ending, Kept::DeclaredBy(others));
    }
    let revoke = match entry.origin {
        Origin::Created => {
            !(ending == Ending::Deleted && f.deletion_policy == Some(DeletionPolicy::Retain))
        }
        Origin::Adopted => f.deletion_policy == Some(DeletionPolicy::Revoke),
    };
    if !revoke && entry.operation.is_none() {
        let kept = match entry.origin {
            Origin::Adopted => Kept::Adopted,
            Origin::Created => Kept::Retain,
        };
        return Decision::Release(ending, kept);
    }
    let write = |decision: Decision| match f.connector {
        Connector::Missing => Decision::Wait {
            reason: "ConnectorNotFound",
            message: format!(
                "the AwsConnector does not exist: {} cannot be revoked until it is back",
                f.access
            ),
        },
        Connector::Present {
            read_only: true, ..
        } if ending == Ending::Deleted => Decision::Release(ending.clone(), Kept::ReadOnly),
        Connector::Present {
            read_only: true, ..
        } => Decision::Wait {
            reason: "ReadOnly",
            message: format!("the connector is readOnly: {} is left in place", f.access),
        },
        Connector::Present {
            reachable: Err(why),
            ..
        } => Decision::Wait {
            reason: "ConnectorNotReady",
            message: format!(
                "{} is to be revoked, but AWS cannot be reached through the connector: {why}",
                f.access
            ),
        },
        Connector::Present { .. } => decision,
    };
    match &entry.operation {
        Some(operation) => write(Decision::Resume(operation.clone())),
        None => write(Decision::Revoke(ending.clone())),
    }
}

/// What deleting a connector does to one of its ledger entries: what the operator created is
/// revoked (unless the connector says `deletionPolicy: Retain`), what it adopted is left, and
/// an unfinished operation is finished first.
pub fn on_connector_deletion(entry: &LedgerEntry, retain: bool) -> Decision {
    if let Some(operation) = &entry.operation {
        return Decision::Resume(operation.clone());
    }
    match entry.origin {
        Origin::Created if !retain => Decision::Revoke(Ending::ConnectorDeleted),
        Origin::Created => Decision::Release(Ending::ConnectorDeleted, Kept::Retain),
        Origin::Adopted => Decision::Release(Ending::ConnectorDeleted, Kept::Adopted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::ledger::{Holder, HolderKind, OperationKind};

    fn access() -> Access {
        Access::IamMembership {
            group: "deployers".into(),
            user: "carol".into(),
        }
    }

    fn entry(origin: Origin, holders: &[&str], operation: Option<OperationKind>) -> LedgerEntry {
        let mut entry = LedgerEntry::new("aws/org", &access(), origin);
        for h in holders {
            entry.holders.insert(
                (*h).to_string(),
                Holder {
                    grant: format!("team/{h}"),
                    since: "2026-06-01T10:00:00Z".into(),
                    kind: HolderKind::AccessGrant,
                },
            );
        }
        entry.operation = operation.map(|kind| Operation {
            kind,
            request_id: Some("req-1".into()),
            started_at: "2026-01-01T00:00:00Z".into(),
        });
        entry
    }

    fn ready() -> Connector {
        Connector::reachable(false)
    }

    fn broken() -> Connector {
        // Not Ready (its external-ID Secret is gone) and no way into AWS either.
        Connector::Present {
            ready: Err("spec.auth.externalIdSecretRef: Secret aws/id does not exist".into()),
            deleting: false,
            read_only: false,
            reachable: Err("no credentials".into()),
        }
    }

    fn not_ready_but_reachable() -> Connector {
        Connector::Present {
            ready: Err("spec.auth.externalIdSecretRef: Secret aws/id does not exist".into()),
            deleting: false,
            read_only: false,
            reachable: Ok(()),
        }
    }

    fn read_only() -> Connector {
        Connector::reachable(true)
    }

    fn now() -> Timestamp {
        "2026-06-01T12:00:00Z".parse().expect("time")
    }

    fn past() -> Option<Timestamp> {
        Some("2026-06-01T11:00:00Z".parse().expect("time"))
    }

    fn future() -> Option<Timestamp> {
        Some("2026-06-01T13:00:00Z".parse().expect("time"))
    }

    struct Case {
        name: &'static str,
        declared: Declared,
        deleting: bool,
        policy: Option<DeletionPolicy>,
        expires_at: Option<Timestamp>,
        allowed: Result<(), String>,
        connector: Connector,
        entry: Option<LedgerEntry>,
        observed: Observed,
        expect: Decision,
    }

    fn case(name: &'static str) -> Case {
        Case {
            name,
            declared: Declared::Yes,
            deleting: false,
            policy: None,
            expires_at: None,
            allowed: Ok(()),
            connector: ready(),
            entry: None,
            observed: Observed::Unknown,
            expect: Decision::Keep,
        }
    }

    fn wait(reason: &'static str) -> Decision {
        Decision::Wait {
            reason,
            message: String::new(),
        }
    }

    fn refuse(reason: &'static str) -> Decision {
        Decision::Refuse {
            reason,
            message: String::new(),
        }
    }

    /// Waits and refusals are compared by reason; their messages are for people.
    fn same(a: &Decision, b: &Decision) -> bool {
        match (a, b) {
            (Decision::Wait { reason: x, .. }, Decision::Wait { reason: y, .. })
            | (Decision::Refuse { reason: x, .. }, Decision::Refuse { reason: y, .. }) => x == y,
            _ => a == b,
        }
    }

    #[test]
    fn decisions() {
        let denied = || Err("the connector's grantPolicy.deniedPermissionSets denies Admin".into());
        let expired = Ending::Expired(past().expect("time"));
        let cases = vec![
            // Granting.
            Case {
                expect: Decision::Observe,
                ..case("unknown in AWS: look first")
            },
            Case {
                observed: Observed::Absent,
                expect: Decision::Grant { regrant: false },
                ..case("missing and unmanaged: grant")
            },
            Case {
                observed: Observed::Present,
                expect: Decision::Adopt,
                ..case("present and unmanaged: adopt")
            },
            Case {
                entry: Some(entry(Origin::Created, &["a"], None)),
                observed: Observed::Present,
                expect: Decision::Keep,
                ..case("held and present: keep")
            },
            Case {
                entry: Some(entry(Origin::Created, &["a"], None)),
                observed: Observed::Absent,
                expect: Decision::Grant { regrant: true },
                ..case("held and gone: drift, grant again")
            },
            Case {
                entry: Some(entry(Origin::Created, &["b"], None)),
                observed: Observed::Present,
                expect: Decision::Join,
                ..case("another grant's access: join, no second create")
            },
            Case {
                entry: Some(entry(Origin::Created, &["a"], Some(OperationKind::Grant))),
                observed: Observed::Present,
                expect: Decision::Resume(
                    entry(Origin::Created, &[], Some(OperationKind::Grant))
                        .operation
                        .expect("operation"),
                ),
                ..case("a create under way: resume it, never adopt it")
            },
            Case {
                connector: Connector::Missing,
                expect: refuse("ConnectorNotFound"),
                ..case("no connector: refused")
            },
            Case {
                connector: broken(),
                expect: refuse("ConnectorNotReady"),
                ..case("connector not ready: nothing new")
            },
            Case {
                connector: read_only(),
                observed: Observed::Absent,
                expect: refuse("ReadOnly"),
                ..case("read-only connector: never writes")
            },
            Case {
                connector: Connector::Present {
                    ready: Ok(()),
                    deleting: true,
                    read_only: false,
                    reachable: Ok(()),
                },
                expect: refuse("ConnectorNotReady"),
                ..case("connector being deleted: nothing new")
            },
            Case {
                declared: Declared::Unknown,
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: Decision::Keep,
                ..case("a spec that no longer resolves takes nothing away")
            },
            // Expiry and policy come first, whatever else is wrong.
            Case {
                expires_at: past(),
                connector: not_ready_but_reachable(),
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: Decision::Revoke(expired.clone()),
                ..case("expired, connector not Ready but reachable: revoke")
            },
            Case {
                expires_at: past(),
                connector: broken(),
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: wait("ConnectorNotReady"),
                ..case("expired, AWS unreachable: wait, never marked revoked")
            },
            Case {
                expires_at: past(),
                declared: Declared::Unknown,
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: Decision::Revoke(expired.clone()),
                ..case("expired with a renamed principal: revoke from the ledger")
            },
            Case {
                allowed: denied(),
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: Decision::Revoke(Ending::NotAllowed(
                    "the connector's grantPolicy.deniedPermissionSets denies Admin".into(),
                )),
                ..case("no longer allowed: revoke")
            },
            Case {
                allowed: denied(),
                expect: Decision::Nothing(Ending::NotAllowed(
                    "the connector's grantPolicy.deniedPermissionSets denies Admin".into(),
                )),
                ..case("not allowed and never held: nothing")
            },
            Case {
                expires_at: future(),
                entry: Some(entry(Origin::Created, &["a"], None)),
                observed: Observed::Present,
                expect: Decision::Keep,
                ..case("not expired yet: keep")
            },
            Case {
                expires_at: past(),
                observed: Observed::Absent,
                expect: Decision::Nothing(expired.clone()),
                ..case("expired before anything was granted")
            },
            Case {
                expires_at: past(),
                entry: Some(entry(Origin::Adopted, &["a"], None)),
                expect: Decision::Release(expired.clone(), Kept::Adopted),
                ..case("expired adopted access stays")
            },
            Case {
                expires_at: past(),
                policy: Some(DeletionPolicy::Retain),
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: Decision::Revoke(expired.clone()),
                ..case("Retain is about deletion: expiry still revokes")
            },
            // Deletion.
            Case {
                deleting: true,
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: Decision::Revoke(Ending::Deleted),
                ..case("deleted, created: revoke")
            },
            Case {
                deleting: true,
                entry: Some(entry(Origin::Created, &["a", "b"], None)),
                expect: Decision::Release(Ending::Deleted, Kept::DeclaredBy(vec!["team/b".into()])),
                ..case("deleted, another grant declares it: keep it")
            },
            Case {
                deleting: true,
                entry: Some(entry(Origin::Adopted, &["a"], None)),
                expect: Decision::Release(Ending::Deleted, Kept::Adopted),
                ..case("deleted, adopted: left in place")
            },
            Case {
                deleting: true,
                policy: Some(DeletionPolicy::Revoke),
                entry: Some(entry(Origin::Adopted, &["a"], None)),
                expect: Decision::Revoke(Ending::Deleted),
                ..case("deleted, adopted, Revoke: revoke")
            },
            Case {
                deleting: true,
                policy: Some(DeletionPolicy::Retain),
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: Decision::Release(Ending::Deleted, Kept::Retain),
                ..case("deleted with Retain: left in place")
            },
            Case {
                deleting: true,
                entry: Some(entry(Origin::Created, &["b"], None)),
                expect: Decision::Nothing(Ending::Deleted),
                ..case("deleted, the ledger names other grants only: touch nothing")
            },
            Case {
                deleting: true,
                expect: Decision::Nothing(Ending::Deleted),
                ..case("deleted, nothing in the ledger: whatever the status says, nothing")
            },
            Case {
                deleting: true,
                entry: Some(entry(Origin::Created, &["a"], Some(OperationKind::Grant))),
                expect: Decision::Resume(
                    entry(Origin::Created, &[], Some(OperationKind::Grant))
                        .operation
                        .expect("operation"),
                ),
                ..case("deleted while its create is pending: finish the create first")
            },
            Case {
                deleting: true,
                connector: Connector::Missing,
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: wait("ConnectorNotFound"),
                ..case("deleted, connector gone: never silently dropped")
            },
            Case {
                deleting: true,
                connector: read_only(),
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: Decision::Release(Ending::Deleted, Kept::ReadOnly),
                ..case("deleted, read-only connector: left in place")
            },
            Case {
                expires_at: past(),
                connector: read_only(),
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: wait("ReadOnly"),
                ..case("expired, read-only connector: nothing written")
            },
            // A changed spec.
            Case {
                declared: Declared::No,
                entry: Some(entry(Origin::Created, &["a"], None)),
                expect: Decision::Revoke(Ending::Replaced),
                ..case("replaced: the old access is revoked")
            },
            Case {
                declared: Declared::No,
                entry: Some(entry(Origin::Adopted, &["a"], None)),
                expect: Decision::Release(Ending::Replaced, Kept::Adopted),
                ..case("replaced adopted access stays")
            },
        ];
        for c in cases {
            let access = access();
            let facts = Facts {
                holder: "a",
                access: &access,
                declared: c.declared,
                deleting: c.deleting,
                deletion_policy: c.policy,
                expires_at: c.expires_at,
                allowed: c.allowed.clone(),
                connector: &c.connector,
                entry: c.entry.as_ref(),
                observed: c.observed,
                now: now(),
            };
            let got = decide(&facts);
            assert!(
                same(&got, &c.expect),
                "{}: got {got:?}, expected {:?}",
                c.name,
                c.expect
            );
        }
    }

    #[test]
    fn deleting_a_connector_revokes_only_what_was_created() {
        let created = entry(Origin::Created, &["a"], None);
        let adopted = entry(Origin::Adopted, &["a"], None);
        let pending = entry(Origin::Created, &["a"], Some(OperationKind::Revoke));
        assert_eq!(
            on_connector_deletion(&created, false),
            Decision::Revoke(Ending::ConnectorDeleted)
        );
        assert_eq!(
            on_connector_deletion(&created, true),
            Decision::Release(Ending::ConnectorDeleted, Kept::Retain)
        );
        assert_eq!(
            on_connector_deletion(&adopted, false),
            Decision::Release(Ending::ConnectorDeleted, Kept::Adopted)
        );
        assert!(matches!(
            on_connector_deletion(&pending, false),
            Decision::Resume(Operation {
                kind: OperationKind::Revoke,
                ..
            })
        ));
    }
}
