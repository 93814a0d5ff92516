//! The operator's own record of a request, kept where tenants cannot write (beside the
//! ownership ledger): when it saw each review, when it approved the request and under which
//! rule, when the access was first held, and when and why the request ended. Each is written
//! before what it allows is done, so a restart never grants an ended request again, never
//! restarts its duration, and never counts an approval it saw only after the deadline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::request::{Decision, Review};

/// Why a request is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// Its duration ran out.
    DurationOver,
    /// The requester withdrew it.
    Withdrawn,
    /// A reviewer revoked (or denied) it after it was approved.
    Revoked,
    /// A reviewer denied it before it was approved.
    Denied,
    /// Nobody approved it before its deadline.
    Expired,
    /// The connector's policy no longer allows it.
    NotAllowed,
    /// The connector it was held through is deleted.
    ConnectorDeleted,
    /// It was created when the admission policy was not known to be enforced.
    Unvouched,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DurationOver => "DurationOver",
            Self::Withdrawn => "Withdrawn",
            Self::Revoked => "Revoked",
            Self::Denied => "Denied",
            Self::Expired => "Expired",
            Self::NotAllowed => "NotAllowed",
            Self::ConnectorDeleted => "ConnectorDeleted",
            Self::Unvouched => "Unvouched",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ended {
    pub at: String,
    pub reason: EndReason,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// `namespace/name`, for people.
    pub request: String,
    pub uid: String,
    /// `namespace/name` of the connector.
    pub connector: String,
    /// Reviewer → when the operator first saw their approval or denial (RFC 3339).
    #[serde(default)]
    pub reviews_seen: BTreeMap<String, String>,
    /// Reviewer → when the operator first saw their `Revoke` (a reviewer who approved may add
    /// one later).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations_seen: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    /// Who approved it (empty: approved automatically by the rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
    /// The requestPolicy rule that allowed it when it was approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// When the access was first held (the ledger's time): the duration runs from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

impl Record {
    fn seen_map(&self, decision: Decision) -> &BTreeMap<String, String> {
        match decision {
            Decision::Revoke => &self.revocations_seen,
            Decision::Approve | Decision::Deny => &self.reviews_seen,
        }
    }

    /// When the operator first saw `review`.
    pub fn seen(&self, review: &Review) -> Option<&str> {
        self.seen_map(review.decision)
            .get(&review.user)
            .map(String::as_str)
    }

    /// Notes `review` as seen `at`, unless it was already; whether it is new.
    pub fn note_seen(&mut self, review: &Review, at: &str) -> bool {
        let map = match review.decision {
            Decision::Revoke => &mut self.revocations_seen,
            Decision::Approve | Decision::Deny => &mut self.reviews_seen,
        };
        if map.contains_key(&review.user) {
            return false;
        }
        map.insert(review.user.clone(), at.to_string());
        true
    }
}
