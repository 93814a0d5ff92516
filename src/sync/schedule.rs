//! When the next sync is due.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::connector::SyncSummary;

/// After a failed sync, the next attempt comes after this or the interval, whichever is
/// shorter.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);

pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";

/// Whether a sync is due now; if not, how long until it is.
pub fn due(
    last: Option<&SyncSummary>,
    interval: Duration,
    requested: Option<&str>,
    handled: Option<&str>,
    now: Timestamp,
) -> Result<(), Duration> {
    if requested.is_some() && requested != handled {
        return Ok(());
    }
    let Some(last) = last else { return Ok(()) };
    let Some(finished) = finished_at(last) else {
        return Ok(());
    };
    let wait = if last.outcome.as_deref() == Some(SUCCEEDED) {
        interval
    } else {
        interval.min(RETRY_AFTER_FAILURE)
    };
    let elapsed = now.duration_since(finished).unsigned_abs();
    if elapsed >= wait {
        Ok(())
    } else {
        Err(wait - elapsed)
    }
}

/// When a sync finished, if it did (and says so readably).
fn finished_at(sync: &SyncSummary) -> Option<Timestamp> {
    sync.finished_at.as_deref().and_then(|t| t.parse().ok())
}

/// Whether `sync` finished after `than` (or `than` never finished).
pub fn finished_later(sync: &SyncSummary, than: Option<&SyncSummary>) -> bool {
    match (finished_at(sync), than.and_then(finished_at)) {
        (Some(sync), Some(than)) => sync > than,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("timestamp")
    }

    fn summary(finished: i64, outcome: &str) -> SyncSummary {
        SyncSummary {
            finished_at: Some(at(finished).to_string()),
            outcome: Some(outcome.into()),
            ..SyncSummary::default()
        }
    }

    #[test]
    fn a_sync_finished_later_than_another() {
        let (early, late) = (summary(1000, SUCCEEDED), summary(2000, FAILED));
        assert!(finished_later(&late, Some(&early)));
        assert!(!finished_later(&early, Some(&late)));
        assert!(!finished_later(&early, Some(&early)));
        assert!(finished_later(&early, None));
        assert!(finished_later(&early, Some(&SyncSummary::default())));
        assert!(!finished_later(&SyncSummary::default(), None));
    }

    #[test]
    fn first_sync_interval_failure_and_requests() {
        let hour = Duration::from_secs(3600);
        assert_eq!(due(None, hour, None, None, at(0)), Ok(()));
        let ok = summary(1000, SUCCEEDED);
        assert_eq!(
            due(Some(&ok), hour, None, None, at(1600)),
            Err(Duration::from_secs(3000))
        );
        assert_eq!(due(Some(&ok), hour, None, None, at(4600)), Ok(()));
        let failed = summary(1000, FAILED);
        assert_eq!(
            due(Some(&failed), hour, None, None, at(1100)),
            Err(Duration::from_secs(200))
        );
        assert_eq!(due(Some(&failed), hour, None, None, at(1300)), Ok(()));
        // A new sync-now value starts one at once; one already handled does not.
        assert_eq!(due(Some(&ok), hour, Some("2"), Some("1"), at(1100)), Ok(()));
        assert!(due(Some(&ok), hour, Some("2"), Some("2"), at(1100)).is_err());
    }
}
