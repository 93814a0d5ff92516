//! Where a request stands and what is to be done about it, from what is known: the spec (its
//! reviews, whether it is withdrawn), the operator's record, the connector's policy, and the
//! time. No I/O. Once a request ends it stays ended; once approved, its approval is not taken
//! back by anything but an end.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::policy::Allowed;
use super::record::{EndReason, Ended, Record};
use super::trust::Trust;
use crate::api::duration;
use crate::api::request::{AccessRequestSpec, Decision, State};
use crate::grant::expiry::Expiry;

pub struct Facts<'a> {
    pub spec: &'a AccessRequestSpec,
    pub record: &'a Record,
    /// The requestPolicy's verdict (with the grantPolicy's on the access, when it resolved).
    pub policy: Result<Allowed, String>,
    /// Whether the API server provably checked the request's requester and reviews (see
    /// `trust`). Only a vouched request is ever approved.
    pub trust: Trust,
    /// When the API server created the request.
    pub created: Timestamp,
    pub pending_expiry: Duration,
    /// The connector is gone or being deleted.
    pub connector_gone: bool,
    /// The ledger has access held by this request.
    pub holds: bool,
    pub now: Timestamp,
}

/// The reason of a request waiting because no enforcement of the admission policy is confirmed.
pub const ADMISSION_POLICY_MISSING: &str = "AdmissionPolicyMissing";

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing is held or wanted yet.
    Wait {
        state: State,
        reason: &'static str,
        message: String,
    },
    /// Hold the access (recording the approval first when `approval` is new).
    Hold {
        approval: Option<Approval>,
        expiry: Expiry,
    },
    /// Record the end (when new), then give back whatever is held.
    End(Ended),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub rule: String,
    pub by: Vec<String>,
}

fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The moment approvals stop counting.
pub fn approve_by(created: Timestamp, pending_expiry: Duration) -> Timestamp {
    SignedDuration::try_from(pending_expiry)
        .ok()
        .and_then(|d| created.checked_add(d).ok())
        .unwrap_or(created)
}

/// How long the request's access lasts.
pub fn lifetime(spec: &AccessRequestSpec) -> SignedDuration {
    duration::parse(&spec.duration)
        .and_then(|d| SignedDuration::try_from(d).ok())
        .unwrap_or(SignedDuration::ZERO)
}

/// When the access ends, once it was first held.
pub fn ends_at(spec: &AccessRequestSpec, record: &Record) -> Option<Timestamp> {
    let since: Timestamp = record.held_since.as_deref()?.parse().ok()?;
    since.checked_add(lifetime(spec)).ok()
}

/// Whether `user` added a `Revoke` of their own: it takes back the approval they gave.
pub fn took_back(spec: &AccessRequestSpec, user: &str) -> bool {
    spec.reviews
        .iter()
        .any(|r| r.user == user && r.decision == Decision::Revoke)
}

/// Whether `user` approved the request (whether or not they took it back since).
fn gave_approval(spec: &AccessRequestSpec, user: &str) -> bool {
    spec.reviews
        .iter()
        .any(|r| r.user == user && r.decision == Decision::Approve)
}

/// Reviews by someone other than the requester, that the operator saw by the deadline, of
/// one decision; approvals their reviewer took back do not count.
pub fn counted<'a>(
    spec: &'a AccessRequestSpec,
    record: &Record,
    deadline: Timestamp,
    decision: Decision,
) -> Vec<&'a str> {
    spec.reviews
        .iter()
        .filter(|r| r.decision == decision && r.user != spec.requester.user)
        .filter(|r| r.decision != Decision::Approve || !took_back(spec, &r.user))
        .filter(|r| {
            record
                .seen(r)
                .and_then(|s| s.parse::<Timestamp>().ok())
                .is_some_and(|seen| seen <= deadline)
        })
        .map(|r| r.user.as_str())
        .collect()
}

fn end(reason: EndReason, message: String, now: Timestamp) -> Step {
    Step::End(Ended {
        at: stamp(now),
        reason,
        message,
    })
}

pub fn step(f: &Facts<'_>) -> Step {
    if let Some(ended) = &f.record.ended {
        return Step::End(ended.clone());
    }
    let spec = f.spec;
    if spec.withdrawn == Some(true) {
        return end(
            EndReason::Withdrawn,
            format!("withdrawn by the requester, {}", spec.requester.user),
            f.now,
        );
    }
    let approved = f.record.approved_at.is_some();
    // A denial or revocation by another user counts whenever it comes; before the request is
    // approved, a reviewer's `Revoke` of their own approval only takes that approval back.
    let against = spec.reviews.iter().find(|r| {
        r.user != spec.requester.user
            && match r.decision {
                Decision::Approve => false,
                Decision::Deny => true,
                Decision::Revoke => approved || !gave_approval(spec, &r.user),
            }
    });
    if approved {
        // An approval recorded under an enforcement in force stays: what happens to the
        // admission policy later does not reach back. Giving access back needs no vouching.
        if let Some(review) = against {
            return end(
                EndReason::Revoked,
                format!("revoked by {}", review.user),
                f.now,
            );
        }
        let expiry = match ends_at(spec, f.record) {
            Some(at) if at <= f.now => {
                return end(
                    EndReason::DurationOver,
                    format!("its duration of {} ended at {}", spec.duration, stamp(at)),
                    f.now,
                );
            }
            Some(at) => Expiry::At(at),
            None => Expiry::After(lifetime(spec)),
        };
        // A connector going away settles what is held through it (its finalizer); once
        // nothing is, the request is over.
        if f.connector_gone {
            if f.holds {
                return Step::Hold {
                    approval: None,
                    expiry,
                };
            }
            return end(
                EndReason::ConnectorDeleted,
                "the AwsConnector is deleted or being deleted: nothing is held through it".into(),
                f.now,
            );
        }
        if let Err(rule) = &f.policy {
            return end(
                EndReason::NotAllowed,
                format!("no longer allowed: {rule}"),
                f.now,
            );
        }
        return Step::Hold {
            approval: None,
            expiry,
        };
    }
    // Nothing vouches for who asked or who reviewed: none of it counts, ever.
    if let Trust::Unvouched(why) = &f.trust {
        return end(EndReason::Unvouched, why.clone(), f.now);
    }
    if let Some(review) = against {
        return end(
            EndReason::Denied,
            format!("denied by {}", review.user),
            f.now,
        );
    }
    let deadline = approve_by(f.created, f.pending_expiry);
    if f.now >= deadline {
        return end(
            EndReason::Expired,
            format!("not approved by {}", stamp(deadline)),
            f.now,
        );
    }
    if let Trust::Unconfirmed(why) = &f.trust {
        return Step::Wait {
            state: State::Pending,
            reason: ADMISSION_POLICY_MISSING,
            message: format!(
                "{why}: no approval is counted until the operator confirms the admission policy is enforced, and requests created before then are never trusted"
            ),
        };
    }
    let allowed = match &f.policy {
        Ok(allowed) => allowed,
        Err(rule) => {
            return Step::Wait {
                state: State::NotAllowed,
                reason: "NotAllowed",
                message: rule.clone(),
            };
        }
    };
    let approvers = counted(spec, f.record, deadline, Decision::Approve);
    if approvers.len() >= allowed.approvals as usize {
        return Step::Hold {
            approval: Some(Approval {
                rule: allowed.rule.clone(),
                by: approvers.iter().map(|s| s.to_string()).collect(),
            }),
            expiry: Expiry::After(lifetime(spec)),
        };
    }
    Step::Wait {
        state: State::Pending,
        reason: "Pending",
        message: format!(
            "{} of {} approvals (rule {}); waiting until {}",
            approvers.len(),
            allowed.approvals,
            allowed.rule,
            stamp(deadline)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("time")
    }

    fn spec(reviews: serde_json::Value) -> AccessRequestSpec {
        serde_json::from_value(json!({"connectorRef": {"name": "org"},
            "requester": {"user": "alice"},
            "principal": {"kind": "SsoUser", "name": "alice"},
            "target": {"kind": "SsoGroupMembership", "group": "admins"},
            "duration": "2h", "reason": "INC-1", "reviews": reviews}))
        .expect("spec")
    }

    fn seen(users: &[&str], when: &str) -> Record {
        Record {
            reviews_seen: users
                .iter()
                .map(|u| (u.to_string(), when.to_string()))
                .collect(),
            revocations_seen: users
                .iter()
                .map(|u| (u.to_string(), when.to_string()))
                .collect(),
            ..Record::default()
        }
    }

    fn facts<'a>(spec: &'a AccessRequestSpec, record: &'a Record, now: &str) -> Facts<'a> {
        Facts {
            spec,
            record,
            policy: Ok(Allowed {
                rule: "oncall".into(),
                approvals: 2,
            }),
            trust: Trust::Vouched,
            created: at("2026-01-01T10:00:00Z"),
            pending_expiry: Duration::from_secs(3600),
            connector_gone: false,
            holds: false,
            now: at(now),
        }
    }

    fn approve(user: &str) -> serde_json::Value {
        json!({"user": user, "decision": "Approve"})
    }

    #[test]
    fn approvals_count_only_from_others_and_until_the_deadline() {
        let one = spec(json!([approve("bob")]));
        let record = seen(&["bob", "carol", "alice"], "2026-01-01T10:10:00Z");
        assert!(matches!(
            step(&facts(&one, &record, "2026-01-01T10:20:00Z")),
            Step::Wait {
                state: State::Pending,
                ..
            }
        ));
        // The requester's own approval (refused at admission) never counts.
        let own = spec(json!([approve("bob"), approve("alice")]));
        assert!(matches!(
            step(&facts(&own, &record, "2026-01-01T10:20:00Z")),
            Step::Wait {
                state: State::Pending,
                ..
            }
        ));
        let two = spec(json!([approve("bob"), approve("carol")]));
        assert_eq!(
            step(&facts(&two, &record, "2026-01-01T10:20:00Z")),
            Step::Hold {
                approval: Some(Approval {
                    rule: "oncall".into(),
                    by: vec!["bob".into(), "carol".into()]
                }),
                expiry: Expiry::After(SignedDuration::from_hours(2)),
            }
        );
        // The second approval seen only after the deadline: the request expires.
        let mut late = seen(&["bob"], "2026-01-01T10:10:00Z");
        late.reviews_seen
            .insert("carol".into(), "2026-01-01T11:00:01Z".into());
        assert!(matches!(
            step(&facts(&two, &late, "2026-01-01T11:00:01Z")),
            Step::End(Ended {
                reason: EndReason::Expired,
                ..
            })
        ));
    }

    #[test]
    fn a_denial_wins_and_an_end_is_final() {
        let denied = spec(json!([approve("bob"), {"user": "carol", "decision": "Deny"}]));
        let record = seen(&["bob", "carol"], "2026-01-01T10:10:00Z");
        assert!(matches!(
            step(&facts(&denied, &record, "2026-01-01T10:20:00Z")),
            Step::End(Ended {
                reason: EndReason::Denied,
                ..
            })
        ));
        let ended = Record {
            ended: Some(Ended {
                at: "2026-01-01T10:30:00Z".into(),
                reason: EndReason::Withdrawn,
                message: "withdrawn".into(),
            }),
            ..record.clone()
        };
        // Approvals after the end do nothing.
        let approved = spec(json!([approve("bob"), approve("carol")]));
        assert!(matches!(
            step(&facts(&approved, &ended, "2026-01-01T10:40:00Z")),
            Step::End(Ended {
                reason: EndReason::Withdrawn,
                ..
            })
        ));
    }

    #[test]
    fn held_access_ends_by_the_records_clock_and_never_restarts() {
        let s = spec(json!([approve("bob"), approve("carol")]));
        let record = Record {
            approved_at: Some("2026-01-01T10:20:00Z".into()),
            held_since: Some("2026-01-01T10:21:00Z".into()),
            ..seen(&["bob", "carol"], "2026-01-01T10:10:00Z")
        };
        let mut f = facts(&s, &record, "2026-01-01T12:00:00Z");
        assert_eq!(
            step(&f),
            Step::Hold {
                approval: None,
                expiry: Expiry::At(at("2026-01-01T12:21:00Z"))
            }
        );
        // Past the deadline for approvals, an approved request stays approved.
        f.now = at("2026-01-01T12:21:00Z");
        assert!(matches!(
            step(&f),
            Step::End(Ended {
                reason: EndReason::DurationOver,
                ..
            })
        ));
        // Nothing held any more and the connector gone: ended, never granted again.
        f.now = at("2026-01-01T12:00:00Z");
        f.connector_gone = true;
        assert!(matches!(
            step(&f),
            Step::End(Ended {
                reason: EndReason::ConnectorDeleted,
                ..
            })
        ));
        // A tightened policy ends it.
        f.connector_gone = false;
        f.policy = Err("no rule".into());
        assert!(matches!(
            step(&f),
            Step::End(Ended {
                reason: EndReason::NotAllowed,
                ..
            })
        ));
        // A revocation by a reviewer ends it.
        let revoked =
            spec(json!([approve("bob"), approve("carol"), {"user": "dave", "decision": "Revoke"}]));
        let f = facts(&revoked, &record, "2026-01-01T12:00:00Z");
        assert!(matches!(
            step(&f),
            Step::End(Ended {
                reason: EndReason::Revoked,
                ..
            })
        ));
    }

    #[test]
    fn without_the_admission_policy_or_the_policy_nothing_is_approved() {
        let s = spec(json!([approve("bob"), approve("carol")]));
        let record = seen(&["bob", "carol"], "2026-01-01T10:10:00Z");
        let mut f = facts(&s, &record, "2026-01-01T10:20:00Z");
        f.trust = Trust::Unconfirmed("missing".into());
        assert!(matches!(
            step(&f),
            Step::Wait {
                reason: "AdmissionPolicyMissing",
                ..
            }
        ));
        f.trust = Trust::Vouched;
        f.policy = Err("rule x: permission set".into());
        assert!(matches!(
            step(&f),
            Step::Wait {
                state: State::NotAllowed,
                ..
            }
        ));
        // Automatic approval.
        f.policy = Ok(Allowed {
            rule: "self".into(),
            approvals: 0,
        });
        let none = spec(json!([]));
        f.spec = &none;
        assert!(
            matches!(step(&f), Step::Hold { approval: Some(Approval { ref by, .. }), .. } if by.is_empty())
        );
    }

    #[test]
    fn an_unvouched_request_is_never_approved_but_an_approval_already_made_stands() {
        let s = spec(json!([approve("bob"), approve("carol")]));
        let record = seen(&["bob", "carol"], "2026-01-01T10:10:00Z");
        let mut f = facts(&s, &record, "2026-01-01T10:20:00Z");
        f.trust = Trust::Unvouched("created before the policy was enforced".into());
        assert!(matches!(
            step(&f),
            Step::End(Ended { reason: EndReason::Unvouched, ref message, .. }) if message.contains("before the policy")
        ));
        // A denial nobody vouched for decides nothing either.
        let denied = spec(json!([{"user": "bob", "decision": "Deny"}]));
        f.spec = &denied;
        assert!(matches!(
            step(&f),
            Step::End(Ended {
                reason: EndReason::Unvouched,
                ..
            })
        ));
        // Approved while vouched: a later change of the admission policy does not take it back.
        let approved = Record {
            approved_at: Some("2026-01-01T10:15:00Z".into()),
            ..record.clone()
        };
        let mut f = facts(&s, &approved, "2026-01-01T10:20:00Z");
        f.trust = Trust::Unvouched("the policy was replaced".into());
        assert!(matches!(step(&f), Step::Hold { approval: None, .. }));
    }

    #[test]
    fn an_approver_takes_their_approval_back_or_ends_what_it_gave() {
        let revoke = |user: &str| json!({"user": user, "decision": "Revoke"});
        let record = seen(&["bob", "carol", "dave"], "2026-01-01T10:10:00Z");
        // Pending, 2 needed: bob approves then takes it back; carol's alone is one of two.
        let taken_back = spec(json!([approve("bob"), approve("carol"), revoke("bob")]));
        let f = facts(&taken_back, &record, "2026-01-01T10:20:00Z");
        assert!(
            matches!(step(&f), Step::Wait { state: State::Pending, ref message, .. } if message.starts_with("1 of 2")),
            "{:?}",
            step(&f)
        );
        assert_eq!(
            counted(
                &taken_back,
                &record,
                at("2026-01-01T11:00:00Z"),
                Decision::Approve
            ),
            vec!["carol"]
        );
        // A third approver brings it back to two.
        let again = spec(json!([
            approve("bob"),
            approve("carol"),
            revoke("bob"),
            approve("dave")
        ]));
        assert!(matches!(
            step(&facts(&again, &record, "2026-01-01T10:20:00Z")),
            Step::Hold { approval: Some(Approval { ref by, .. }), .. } if by == &vec!["carol".to_string(), "dave".to_string()]
        ));
        // A Revoke by someone who never approved a pending request denies it.
        let stranger = spec(json!([approve("bob"), revoke("dave")]));
        assert!(matches!(
            step(&facts(&stranger, &record, "2026-01-01T10:20:00Z")),
            Step::End(Ended {
                reason: EndReason::Denied,
                ..
            })
        ));
        // Once approved, an approver's own Revoke ends the access.
        let approved = Record {
            approved_at: Some("2026-01-01T10:15:00Z".into()),
            held_since: Some("2026-01-01T10:16:00Z".into()),
            ..record.clone()
        };
        let ended = spec(json!([approve("bob"), approve("carol"), revoke("bob")]));
        assert!(matches!(
            step(&facts(&ended, &approved, "2026-01-01T10:20:00Z")),
            Step::End(Ended { reason: EndReason::Revoked, ref message, .. }) if message == "revoked by bob"
        ));
    }
}
