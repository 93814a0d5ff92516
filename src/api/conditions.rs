//! Status conditions in the kstatus style: one entry per type, `lastTransitionTime` moving only
//! when a condition's status flips, `observedGeneration` on each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;

/// The three values a condition's status can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    pub fn from_bool(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A condition as a reconciler decides it, before timestamps and generations are attached.
/// This is also what `validate` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConditionUpdate {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: &'static str,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Reading a status' condition list.
pub trait Conditions {
    /// The condition of `type_`, if present.
    fn condition(&self, type_: &str) -> Option<&Condition>;
    /// Whether the condition of `type_` is present and True.
    fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

/// Changing a status' condition list.
pub trait SetCondition {
    /// Sets one condition. The transition time is kept when the status is unchanged, so that
    /// GitOps tools see when a condition really flipped, not when it was last rewritten.
    fn set_condition(&mut self, update: &ConditionUpdate, generation: Option<i64>, now: &Time);
}

impl Conditions for [Condition] {
    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.iter().find(|c| c.type_ == type_)
    }
}

impl SetCondition for Vec<Condition> {
    fn set_condition(&mut self, update: &ConditionUpdate, generation: Option<i64>, now: &Time) {
        let status = update.status.as_str();
        match self.iter_mut().find(|c| c.type_ == update.type_) {
            Some(existing) => {
                if existing.status != status {
                    existing.last_transition_time = now.clone();
                    existing.status = status.to_string();
                }
                existing.reason = update.reason.clone();
                existing.message = update.message.clone();
                existing.observed_generation = generation;
            }
            None => self.push(Condition {
                type_: update.type_.to_string(),
                status: status.to_string(),
                reason: update.reason.clone(),
                message: update.message.clone(),
                observed_generation: generation,
                last_transition_time: now.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions: Vec<Condition> = Vec::new();
        let ready = |status, reason: &str| ConditionUpdate::new("Ready", status, reason, "m");
        conditions.set_condition(&ready(ConditionStatus::False, "Pending"), Some(1), &at(100));
        conditions.set_condition(&ready(ConditionStatus::False, "Other"), Some(2), &at(200));
        let c = conditions.condition("Ready").expect("set");
        assert_eq!(c.last_transition_time, at(100));
        assert_eq!(c.reason, "Other");
        assert_eq!(c.observed_generation, Some(2));

        conditions.set_condition(&ready(ConditionStatus::True, "Granted"), Some(2), &at(300));
        let c = conditions.condition("Ready").expect("set");
        assert_eq!(c.last_transition_time, at(300));
        assert_eq!(c.status, "True");
        assert_eq!(conditions.len(), 1);
        assert!(conditions.is_true("Ready"));
        assert!(!conditions.is_true("Granted"));
    }
}
