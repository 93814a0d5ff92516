//! `AccessRequest`: access asked for when it is needed, held only once someone else approves,
//! for a bounded time.
//!
//! Who asked and who approved are vouched for by the API server, not by the operator: the
//! chart's ValidatingAdmissionPolicy refuses a request whose `spec.requester.user` is not the
//! user creating it, a review whose `user` is not the user adding it, a review by the requester,
//! and a review by a user RBAC does not give the `approve` verb on the request. The rules here
//! (CRD validation) keep what was asked and every review unchanged once written, whoever
//! writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::grant::{AccessGrantSpec, AccessRecord, ConnectorRef, Principal, Target};
use super::rules;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "awsaccess.io",
    version = "v1alpha1",
    kind = "AccessRequest",
    namespaced,
    status = "AccessRequestStatus",
    shortname = "areq",
    category = "awsaccess",
    doc = "AWS access asked for now, held once someone else approves it, for a bounded time.",
    printcolumn = r#"{"name":"Requester","type":"string","jsonPath":".spec.requester.user"}"#,
    printcolumn = r#"{"name":"Access","type":"string","jsonPath":".status.access"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Approvals","type":"string","jsonPath":".status.approvals"}"#,
    printcolumn = r#"{"name":"Ends","type":"string","jsonPath":".status.endsAt"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".spec.reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::permission_set_principal_rule(),
    validation = rules::sso_membership_principal_rule(),
    validation = rules::iam_membership_principal_rule(),
    validation = kube::core::Rule::new("self.connectorRef == oldSelf.connectorRef && self.requester == oldSelf.requester && self.principal == oldSelf.principal && self.target == oldSelf.target && self.duration == oldSelf.duration && self.reason == oldSelf.reason").message(rules::REQUEST_IMMUTABLE),
    validation = kube::core::Rule::new("!has(oldSelf.withdrawn) || !oldSelf.withdrawn || (has(self.withdrawn) && self.withdrawn)").message(rules::WITHDRAWN_FINAL),
    validation = kube::core::Rule::new("!has(oldSelf.reviews) || (has(self.reviews) && oldSelf.reviews.all(o, self.reviews.exists(n, n.user == o.user && n.decision == o.decision)))").message(rules::REVIEWS_KEPT),
    validation = kube::core::Rule::new("!has(self.reviews) || self.reviews.all(a, self.reviews.all(b, a.user != b.user || a.decision == b.decision || (a.decision != 'Deny' && b.decision != 'Deny')))").message(rules::REVIEWS_PER_USER)
)]
pub struct AccessRequestSpec {
    /// The AwsConnector that reaches the organization.
    pub connector_ref: ConnectorRef,
    /// Who asks: must be the Kubernetes user creating the request (checked at admission).
    pub requester: Requester,
    /// Who receives the access.
    pub principal: Principal,
    /// What access they receive.
    pub target: Target,
    /// How long the access is held, from when it is first held, e.g. `2h`.
    #[schemars(length(min = 2, max = 32))]
    #[x_kube(validation = rules::duration_rule("spec.duration"))]
    pub duration: String,
    /// Why the access is needed: shown to approvers and kept in the record.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = kube::core::Rule::new("self.trim().size() > 0").message(rules::REASON_NEEDED))]
    pub reason: String,
    /// Approvals, denials and revocations, each added by the reviewer it names (checked at
    /// admission) and never changed once made. One per reviewer, except that a reviewer who
    /// approved may later add a `Revoke` of their own approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["user".into(), "decision".into()]))]
    pub reviews: Vec<Review>,
    /// Set by the requester to give the access back (or to drop the request) before its time.
    /// Once true it stays true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<bool>,
}

impl AccessRequestSpec {
    /// What the request asks, as a grant would ask it: its duration stands as the grant's (so
    /// the connector's grantPolicy, `maxDuration` included, applies), and deleting it follows
    /// the default deletion policy (what the operator created is revoked, adopted access stays).
    pub fn as_grant_spec(&self) -> AccessGrantSpec {
        AccessGrantSpec {
            connector_ref: self.connector_ref.clone(),
            principal: self.principal.clone(),
            target: self.target.clone(),
            duration: Some(self.duration.clone()),
            expires_at: None,
            deletion_policy: None,
        }
    }
}

impl AccessRequestStatus {
    /// Every review in the order made, for people: `bob Approve, bob Revoke`.
    pub fn review_trail(&self) -> Vec<String> {
        self.reviews
            .iter()
            .map(|r| format!("{} {:?}", r.user, r.decision))
            .collect()
    }

    /// Who approved the request, as its status records it (empty when its rule approved it).
    pub fn approvers(&self) -> Vec<String> {
        self.reviews
            .iter()
            .filter(|r| r.decision == Decision::Approve && r.counted)
            .map(|r| r.user.clone())
            .collect()
    }
}

/// The Kubernetes user who asks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    /// The user name, exactly as the API server knows the caller.
    #[schemars(length(min = 1, max = 512))]
    pub user: String,
    /// Groups the request is made as (each one the requester belongs to, checked at
    /// admission); the connector's requestPolicy may allow requests by group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    pub groups: Vec<String>,
}

/// One reviewer's decision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message(rules::REVIEW_FINAL))]
pub struct Review {
    /// The reviewer, exactly as the API server knows the caller adding the review.
    #[schemars(length(min = 1, max = 512))]
    pub user: String,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Counts toward the approvals the request needs.
    Approve,
    /// Refuses the request; ends the access if it is held already.
    Deny,
    /// Ends access already held before its time; by a reviewer who approved a request still
    /// pending, takes that approval back.
    Revoke,
}

/// Where a request stands.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting for approvals.
    Pending,
    /// Approved; the access is being granted.
    Approved,
    /// The access is held.
    Active,
    /// A reviewer denied it before the access was held.
    Denied,
    /// The access was held and has ended (or the request ended before it was).
    Ended,
    /// Nobody approved it before its deadline.
    Expired,
    /// The connector's requestPolicy does not allow it.
    NotAllowed,
    /// Created when the admission policy was not known to be enforced: nothing vouches for its
    /// requester or reviews, so it is never granted (ask again).
    Unvouched,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Pending,
        State::Approved,
        State::Active,
        State::Denied,
        State::Ended,
        State::Expired,
        State::NotAllowed,
        State::Unvouched,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Approved => "Approved",
            State::Active => "Active",
            State::Denied => "Denied",
            State::Ended => "Ended",
            State::Expired => "Expired",
            State::NotAllowed => "NotAllowed",
            State::Unvouched => "Unvouched",
        }
    }

    /// Whether nothing more happens to the request.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Denied | State::Ended | State::Expired | State::Unvouched
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// The access, for people: `AdministratorAccess on 111122223333 for alice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// Approvals counted of those needed, e.g. `1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<String>,
    /// The requestPolicy rule that allows the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The reviews, each with when the operator first saw it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<SeenReview>,
    /// When the request expires if not approved by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    /// When the access was first held (the ownership ledger's time): the duration runs from
    /// here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Why it ended: `DurationOver`, `Withdrawn`, `Revoked`, `Denied`, `NotAllowed`,
    /// `ConnectorDeleted`, `Expired`, `Unvouched`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// The access held, with every id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<AccessRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_id: Option<String>,
}

/// A review as the operator saw it.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SeenReview {
    pub user: String,
    pub decision: Decision,
    /// When the operator first saw it.
    pub seen_at: String,
    /// Whether it counted (a review after the request's deadline, by the requester, or on a
    /// request nothing vouches for does not).
    pub counted: bool,
    /// Why it did not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
