//! Where approvers hear about AccessRequests: webhook receivers named by a connector's
//! requestPolicy (or one of its rules). The URL is a secret (anyone holding it can post to the
//! channel), so it lives in a Secret and is never written anywhere else.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::connector::SecretKeyRef;
use super::request::State;

/// One webhook that hears about requests.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Receiver {
    /// Names the receiver in logs, metrics and the delivery record.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The message's shape: `Slack` (an incoming webhook), `Teams` (a Workflows webhook; an
    /// Adaptive Card), or `CloudEvents` (a CloudEvents 1.0 event in structured mode, for
    /// anything else: PagerDuty, a ticketing bridge, a chat bot).
    pub format: NoticeFormat,
    /// The key of a Secret in the connector's namespace that holds the webhook URL.
    pub url_secret_ref: SecretKeyRef,
    /// The states that are sent (default: Pending, Active, Denied, Expired, Ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub states: Option<Vec<State>>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeFormat {
    Slack,
    Teams,
    CloudEvents,
}

/// The states sent when a receiver names none.
pub const DEFAULT_STATES: [State; 5] = [
    State::Pending,
    State::Active,
    State::Denied,
    State::Expired,
    State::Ended,
];

impl Receiver {
    /// Whether a request entering `state` is sent to this receiver.
    pub fn wants(&self, state: State) -> bool {
        match &self.states {
            Some(states) => states.contains(&state),
            None => DEFAULT_STATES.contains(&state),
        }
    }
}
