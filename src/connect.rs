//! From a connector's spec to an authenticated AWS session: the part the CLI and the operator
//! share.

use crate::api::AwsConnector;
use crate::api::connector::CallerIdentity;
use crate::aws::{AwsBase, AwsError, Caller, RateLimits, RetryPolicy, Session, sts};

/// A session whose identity has been confirmed with GetCallerIdentity.
pub struct Authenticated {
    pub session: Session,
    pub identity: CallerIdentity,
}

/// Builds the connector's role chain and confirms it works. The external ID is the resolved
/// value (inline, or read from the Secret or the environment by the caller).
pub async fn authenticate(
    base: &AwsBase,
    connector: &AwsConnector,
    external_id: Option<&str>,
    limits: &RateLimits,
) -> Result<Authenticated, AwsError> {
    let caller = Caller::new(limits, RetryPolicy::default());
    let session = Session::new(base, &connector.spec, external_id, caller).await;
    let identity = sts::who_am_i(&session).await?;
    Ok(Authenticated { session, identity })
}

/// What a saved sync state must match to be resumed: the same connector, regions, identity
/// and sync settings.
pub fn scope(connector: &AwsConnector, identity: &CallerIdentity) -> String {
    let spec = &connector.spec;
    let sync = &spec.sync;
    format!(
        "{}/{}|{}|{}|{}|iam={},sso={},org={},keys={}",
        connector.metadata.namespace.as_deref().unwrap_or(""),
        connector.metadata.name.as_deref().unwrap_or(""),
        spec.region,
        spec.sso_region(),
        identity.arn,
        sync.iam,
        sync.identity_center,
        sync.organizations,
        sync.access_keys
    )
}
