//! The AWS edge: credentials, one module per service, errors, rate limits, and the items it
//! returns.

pub mod access;
pub mod caller;
pub mod cloudtrail;
pub mod credential_report;
pub mod credentials;
pub mod error;
pub mod iam;
pub mod identity_center;
pub mod model;
pub mod organizations;
pub mod permission_set_admin;
pub mod permission_sets;
pub mod ratelimit;
pub mod sts;
pub mod trust;

pub use caller::{Caller, RetryPolicy};
pub use credentials::{AwsBase, Session};
pub use error::{AwsError, ErrorKind};
pub use ratelimit::{RateLimits, Service};
