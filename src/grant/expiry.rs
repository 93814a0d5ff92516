//! When a grant's access ends.

use jiff::{SignedDuration, Timestamp};

use crate::api::duration;
use crate::api::grant::AccessGrantSpec;

/// When a grant's access ends, before knowing when it was granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Never,
    At(Timestamp),
    /// This long after the access was granted.
    After(SignedDuration),
    /// This long after the access was granted, which was no later than the given moment: a
    /// start recorded elsewhere (a grant's status) can only bring the end sooner, never later.
    AfterNoLaterThan(SignedDuration, Timestamp),
}

impl Expiry {
    pub fn of(spec: &AccessGrantSpec) -> Self {
        if let Some(at) = spec.expires_at.as_deref().and_then(|t| t.parse().ok()) {
            return Self::At(at);
        }
        spec.duration
            .as_deref()
            .and_then(duration::parse)
            .and_then(|d| SignedDuration::try_from(d).ok())
            .map_or(Self::Never, Self::After)
    }

    /// The moment: for a duration, from `granted_at` (from `now` when not granted yet).
    pub fn at(&self, granted_at: Option<Timestamp>, now: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Never => None,
            Self::At(at) => Some(*at),
            Self::After(lifetime) => granted_at.unwrap_or(now).checked_add(*lifetime).ok(),
            Self::AfterNoLaterThan(lifetime, latest) => granted_at
                .map_or(*latest, |at| at.min(*latest))
                .checked_add(*lifetime)
                .ok(),
        }
    }
}

/// The moment the access must be revoked: `expiresAt`, or `duration` after it was granted
/// (after `now` when it has not been yet). `None` when the grant does not expire.
pub fn expires_at(
    spec: &AccessGrantSpec,
    granted_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    if let Some(at) = &spec.expires_at {
        return at.parse().ok();
    }
    let lifetime = duration::parse(spec.duration.as_deref()?)?;
    let lifetime = SignedDuration::try_from(lifetime).ok()?;
    granted_at.unwrap_or(now).checked_add(lifetime).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_start_only_brings_the_end_sooner() {
        let t = |s: &str| s.parse::<Timestamp>().expect("time");
        let expiry =
            Expiry::AfterNoLaterThan(SignedDuration::from_hours(8), t("2026-01-01T08:00:00Z"));
        let now = t("2026-01-01T20:00:00Z");
        // Nothing held (the access expired and was revoked): the recorded start counts.
        assert_eq!(expiry.at(None, now), Some(t("2026-01-01T16:00:00Z")));
        // Held since earlier than recorded: the ledger's start counts.
        assert_eq!(
            expiry.at(Some(t("2026-01-01T06:00:00Z")), now),
            Some(t("2026-01-01T14:00:00Z"))
        );
        // A recorded start later than the ledger's (a forged status) does not extend it.
        let forged =
            Expiry::AfterNoLaterThan(SignedDuration::from_hours(8), t("2030-01-01T00:00:00Z"));
        assert_eq!(
            forged.at(Some(t("2026-01-01T08:00:00Z")), now),
            Some(t("2026-01-01T16:00:00Z"))
        );
    }

    fn spec(extra: serde_json::Value) -> AccessGrantSpec {
        let mut value = serde_json::json!({"connectorRef": {"name": "c"},
            "principal": {"kind": "SsoUser", "name": "a"},
            "target": {"kind": "SsoGroupMembership", "group": "g"}});
        if let (Some(v), Some(e)) = (value.as_object_mut(), extra.as_object()) {
            v.extend(e.clone());
        }
        serde_json::from_value(value).expect("spec")
    }

    #[test]
    fn from_duration_expires_at_or_never() {
        let now: Timestamp = "2026-01-01T10:00:00Z".parse().expect("time");
        let granted: Timestamp = "2026-01-01T08:00:00Z".parse().expect("time");
        assert_eq!(expires_at(&spec(serde_json::json!({})), None, now), None);
        assert_eq!(
            expires_at(
                &spec(serde_json::json!({"duration": "8h"})),
                Some(granted),
                now
            ),
            Some("2026-01-01T16:00:00Z".parse().expect("time"))
        );
        assert_eq!(
            expires_at(&spec(serde_json::json!({"duration": "30m"})), None, now),
            Some("2026-01-01T10:30:00Z".parse().expect("time"))
        );
        assert_eq!(
            expires_at(
                &spec(serde_json::json!({"expiresAt": "2026-02-01T00:00:00Z"})),
                Some(granted),
                now
            ),
            Some("2026-02-01T00:00:00Z".parse().expect("time"))
        );
    }
}
