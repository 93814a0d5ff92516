//! The controllers' error type.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("cannot serialize: {0}")]
    Serialize(String),
    #[error("AWS: {0}")]
    Aws(#[from] crate::aws::AwsError),
    #[error("waiting: {0}")]
    Pending(String),
}

impl Error {
    /// A short, bounded label for the `reconcile_errors` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "kube_conflict",
            Self::Kube(_) => "kube",
            Self::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Self::MissingField(_) => "missing_field",
            Self::Serialize(_) => "serialize",
            Self::Aws(e) => e.metric_label(),
            Self::Pending(_) => "pending",
        }
    }
}

/// Exponential backoff for an object whose reconciliation keeps failing: 5 s doubling to 5 min,
/// with up to 20 % jitter so that objects failing together do not retry together.
pub fn backoff(failures: u32, jitter_seed: u64) -> Duration {
    let base = 5u64.saturating_mul(1 << failures.min(6)).min(300);
    let jitter = base * (jitter_seed % 21) / 100;
    Duration::from_secs(base + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_with_bounded_jitter() {
        assert_eq!(backoff(0, 0), Duration::from_secs(5));
        assert_eq!(backoff(1, 0), Duration::from_secs(10));
        assert_eq!(backoff(5, 0), Duration::from_secs(160));
        assert_eq!(backoff(6, 0), Duration::from_secs(300));
        assert_eq!(backoff(60, 0), Duration::from_secs(300));
        assert_eq!(backoff(6, 20), Duration::from_secs(360));
        assert_eq!(
            backoff(0, 41),
            Duration::from_secs(6),
            "the seed is taken modulo 21 (percent)"
        );
    }
}
