//! What approvers are told when a request enters a state, and in which shape each receiver
//! takes it. No I/O: the notifier (`controller::notifier`) delivers, and the request's notice
//! record keeps what was due and what was delivered.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::connector::RequestPolicy;
use crate::api::notify::{NoticeFormat, Receiver};
use crate::api::request::State;

/// Everything a receiver shows, fixed when the request entered the state: a delivery after a
/// restart sends exactly what was due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `namespace/name` of the connector.
    pub connector: String,
    pub state: State,
    /// When the operator saw the request enter the state.
    pub at: String,
    pub requester: String,
    /// The access, for people: `PowerUser on 111122223333 for alice@example.com`.
    pub access: String,
    /// Why the requester asks.
    pub reason: String,
    pub duration: String,
    /// Approvals counted of those needed, e.g. `0/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_needed: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// The request's own account of the state (its condition message).
    pub message: String,
}

impl Notice {
    /// The same for every receiver and every attempt: a receiver that sees it twice (a
    /// delivery whose acknowledgement was lost) can drop the second.
    pub fn id(&self) -> String {
        format!("{}-{}", self.uid, self.state.as_str().to_lowercase())
    }

    /// The command an approver runs.
    pub fn approve_command(&self) -> String {
        format!(
            "aws-access-operator approve {} -n {}",
            self.name, self.namespace
        )
    }

    /// One line, for people.
    pub fn headline(&self) -> String {
        let request = format!("{}/{}", self.namespace, self.name);
        match self.state {
            State::Pending => format!(
                "{} asks for {} for {}: {}",
                self.requester, self.access, self.duration, self.reason
            ),
            State::Approved => format!("{request} is approved: granting {}", self.access),
            State::Active => format!(
                "{request}: {} is held{}",
                self.access,
                self.ends_at
                    .as_deref()
                    .map(|at| format!(" until {at}"))
                    .unwrap_or_default()
            ),
            State::Denied => format!("{request} is denied: {}", self.message),
            State::Expired => format!(
                "{request} expired without enough approvals: {}",
                self.message
            ),
            State::Ended => format!("{request} ended: {}", self.message),
            State::NotAllowed => format!("{request} is not allowed: {}", self.message),
            State::Unvouched => format!("{request} is not trusted: {}", self.message),
        }
    }

    /// The facts beside the headline, in order.
    fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![
            ("Request", format!("{}/{}", self.namespace, self.name)),
            ("State", self.state.as_str().to_string()),
            ("Requester", self.requester.clone()),
            ("Access", self.access.clone()),
            ("Reason", self.reason.clone()),
            ("Duration", self.duration.clone()),
        ];
        if let Some(approvals) = &self.approvals {
            facts.push(("Approvals", approvals.clone()));
        }
        if !self.approved_by.is_empty() {
            facts.push(("Approved by", self.approved_by.join(", ")));
        }
        if let Some(at) = &self.ends_at {
            facts.push(("Ends", at.clone()));
        }
        if let Some(reason) = &self.end_reason {
            facts.push(("End reason", reason.clone()));
        }
        facts
    }
}

/// The receivers that hear of a request entering `state`: the policy's, then its rule's.
pub fn receivers<'a>(
    policy: &'a RequestPolicy,
    rule: Option<&str>,
    state: State,
) -> Vec<&'a Receiver> {
    let of_rule = policy
        .rules
        .iter()
        .filter(|r| Some(r.name.as_str()) == rule)
        .flat_map(|r| r.notify.iter());
    policy
        .notify
        .iter()
        .chain(of_rule)
        .filter(|r| r.wants(state))
        .collect()
}

/// The HTTP body of `notice` for a receiver of `format`, and its content type.
pub fn payload(format: NoticeFormat, notice: &Notice) -> (&'static str, Value) {
    let facts = notice.facts();
    let pending = notice.state == State::Pending;
    match format {
        NoticeFormat::Slack => {
            let details = facts
                .iter()
                .map(|(k, v)| format!("*{k}:* {v}"))
                .collect::<Vec<_>>()
                .join("\n");
            let mut blocks = vec![
                json!({"type": "section", "text": {"type": "mrkdwn", "text": notice.headline()}}),
                json!({"type": "section", "text": {"type": "mrkdwn", "text": details}}),
            ];
            if pending {
                blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
                    "text": format!("To approve: `{}`", notice.approve_command())}}));
            }
            (
                "application/json",
                json!({"text": notice.headline(), "blocks": blocks}),
            )
        }
        NoticeFormat::Teams => {
            let mut body = vec![
                json!({"type": "TextBlock", "text": notice.headline(), "weight": "Bolder", "wrap": true}),
                json!({"type": "FactSet", "facts": facts.iter()
                    .map(|(k, v)| json!({"title": k, "value": v})).collect::<Vec<_>>()}),
            ];
            if pending {
                body.push(
                    json!({"type": "TextBlock", "wrap": true, "fontType": "Monospace",
                    "text": notice.approve_command()}),
                );
            }
            (
                "application/json",
                json!({"type": "message", "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard", "version": "1.4", "body": body}}]}),
            )
        }
        NoticeFormat::CloudEvents => {
            let mut data = serde_json::to_value(notice).unwrap_or_default();
            if let Some(data) = data.as_object_mut() {
                data.insert("headline".into(), json!(notice.headline()));
                if pending {
                    data.insert("approveCommand".into(), json!(notice.approve_command()));
                }
            }
            (
                "application/cloudevents+json; charset=utf-8",
                json!({
                    "specversion": "1.0",
                    "id": notice.id(),
                    "source": format!("/apis/awsaccess.io/v1alpha1/namespaces/{}/accessrequests/{}",
                        notice.namespace, notice.name),
                    "type": format!("io.awsaccess.accessrequest.{}",
                        notice.state.as_str().to_lowercase()),
                    "subject": format!("{}/{}", notice.namespace, notice.name),
                    "time": notice.at,
                    "datacontenttype": "application/json",
                    "data": data,
                }),
            )
        }
    }
}

/// How long to wait before attempt `attempt + 1` (counted from 0): doubling from 1 s, at most a
/// minute.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(state: State) -> Notice {
        Notice {
            namespace: "team".into(),
            name: "hotfix-42".into(),
            uid: "u-1".into(),
            connector: "aws/org".into(),
            state,
            at: "2026-01-01T10:00:00Z".into(),
            requester: "alice".into(),
            access: "PowerUser on 111122223333 for alice@example.com".into(),
            reason: "INC-42".into(),
            duration: "2h".into(),
            approvals: Some("0/2".into()),
            approvals_needed: Some(2),
            approved_by: vec![],
            ends_at: None,
            end_reason: None,
            message: "0 of 2 approvals".into(),
        }
    }

    #[test]
    fn a_pending_notice_says_who_asks_for_what_why_how_long_and_how_to_approve() {
        let n = notice(State::Pending);
        let (kind, slack) = payload(NoticeFormat::Slack, &n);
        assert_eq!(kind, "application/json");
        let text = slack.to_string();
        for needle in [
            "alice asks for PowerUser on 111122223333 for alice@example.com for 2h: INC-42",
            "*Approvals:* 0/2",
            "aws-access-operator approve hotfix-42 -n team",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        let (kind, event) = payload(NoticeFormat::CloudEvents, &n);
        assert!(kind.starts_with("application/cloudevents+json"));
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["id"], "u-1-pending");
        assert_eq!(event["type"], "io.awsaccess.accessrequest.pending");
        assert_eq!(event["data"]["approvalsNeeded"], 2);
        assert_eq!(
            event["data"]["approveCommand"],
            "aws-access-operator approve hotfix-42 -n team"
        );
        let (_, teams) = payload(NoticeFormat::Teams, &n);
        assert_eq!(
            teams["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(teams.to_string().contains("INC-42"));
        // Other states carry no command to approve.
        let (_, ended) = payload(NoticeFormat::Slack, &notice(State::Ended));
        assert!(!ended.to_string().contains("aws-access-operator approve"));
    }

    #[test]
    fn receivers_are_the_policys_and_the_rules_for_the_states_they_want() {
        let policy: RequestPolicy = serde_json::from_value(json!({
            "enabled": true,
            "notify": [{"name": "audit", "format": "CloudEvents", "urlSecretRef": {"name": "s", "key": "k"},
                        "states": ["Active", "Ended"]}],
            "rules": [{"name": "oncall", "users": ["alice"],
                "notify": [{"name": "slack", "format": "Slack", "urlSecretRef": {"name": "s", "key": "k"}}]}]
        }))
        .expect("policy");
        let names = |rule, state| {
            receivers(&policy, rule, state)
                .iter()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Some("oncall"), State::Pending), vec!["slack"]);
        assert_eq!(names(Some("oncall"), State::Active), vec!["audit", "slack"]);
        assert_eq!(names(None, State::Active), vec!["audit"]);
        assert!(names(Some("oncall"), State::Approved).is_empty());
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(20), Duration::from_secs(60));
    }
}
