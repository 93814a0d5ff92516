//! From a connector's spec to an authenticated AWS session: the part the CLI and the operator
//! share.

use crate::api::AwsConnector;
use crate::api::connector::CallerIdentity;
use crate::aws::{AwsBase, AwsError, Caller, RateLimits, Session, sts};

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
    let mut session = session(base, connector, external_id, limits).await;
    let identity = sts::who_am_i(&session).await?;
    session.share_limits(&identity.account);
    session.identity = Some(identity.clone());
    Ok(Authenticated { session, identity })
}

/// The connector's role chain; nothing is called yet.
pub async fn session(
    base: &AwsBase,
    connector: &AwsConnector,
    external_id: Option<&str>,
    limits: &RateLimits,
) -> Session {
    let caller = Caller::new(limits, base.retry_policy());
    Session::new(base, &connector.spec, external_id, caller).await
}

/// What a session depends on: when this changes, the chain must be built again. The external
/// ID enters only as a hash.
pub fn session_fingerprint(
    connector: &AwsConnector,
    external_id: Option<&str>,
    member_external_id: Option<&str>,
) -> String {
    let spec = &connector.spec;
    let auth = &spec.auth;
    let hash = |id: &str| crate::fingerprint::content_hash(id.as_bytes());
    let id = external_id.map(hash);
    format!(
        "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        spec.region,
        spec.sso_region(),
        auth.role_arn,
        auth.global_role_arn,
        auth.global_external_id
            .as_deref()
            .map(|g| crate::fingerprint::content_hash(g.as_bytes())),
        auth.session_name,
        id,
        member_external_id.map(hash)
    )
}

/// What a saved sync state must match to be resumed: the same connector, regions, identity
/// and sync settings.
pub fn scope(connector: &AwsConnector, identity: &CallerIdentity) -> String {
    let spec = &connector.spec;
    let sync = &spec.sync;
    format!(
        "{}/{}|{}|{}|{}|iam={},sso={},org={},keys={},members={:?},policies={},signin={}",
        connector.metadata.namespace.as_deref().unwrap_or(""),
        connector.metadata.name.as_deref().unwrap_or(""),
        spec.region,
        spec.sso_region(),
        identity.arn,
        sync.iam,
        sync.identity_center,
        sync.organizations,
        sync.access_keys,
        sync.members().map(|m| &m.role_name),
        sync.policies,
        sync.last_sign_in
    )
}
