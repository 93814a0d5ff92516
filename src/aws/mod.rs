//! The AWS edge: credentials, one module per service, errors, rate limits, and the items it
//! returns.

/// Runs one AWS call through the session's throttle-aware caller, its error named by the
/// operation: `call!(session, service, "<Operation>", client.<operation>()...)`.
macro_rules! call {
    ($session:expr, $service:expr, $operation:literal, $call:expr) => {
        $session
            .caller
            .call($service, $operation, || async {
                $call
                    .send()
                    .await
                    .map_err(|e| $crate::aws::AwsError::from_sdk($operation, e))
            })
            .await
    };
}

pub mod access;
pub mod caller;
pub mod cloudtrail;
pub mod credential_report;
pub mod credentials;
pub mod error;
pub mod iam;
pub mod identity_admin;
pub mod identity_center;
pub mod model;
pub mod organizations;
pub mod permission_set_admin;
pub mod permission_sets;
pub mod ratelimit;
pub mod sts;
pub mod trust;

pub use caller::{Caller, RetryPolicy};
pub use credentials::{AwsBase, Session, Timeouts};
pub use error::{AwsError, ErrorKind};
pub use ratelimit::{RateLimits, Service};
