//! What both controllers need of a connector: its external ID (inline or from its Secret), its
//! role chain (built once, reused while nothing it depends on changes), the directory of names
//! its last sync saw, and its limit on assignment operations in flight.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use tokio::sync::Semaphore;

use super::configmaps::ConnectorConfigMaps;
use super::context::Context;
use super::error::Error;
use crate::api::AwsConnector;
use crate::api::validation::{FieldError, check_external_id};
use crate::aws::Session;
use crate::connect;
use crate::sync::cache::SyncCache;
use crate::sync::engine::CACHE_KEY;

/// Assignment operations in flight per connector: AWS allows 15 and others share them.
pub const ASSIGNMENTS_IN_FLIGHT: usize = 10;

/// The key of a connector in the operator's memory.
pub fn key(connector: &AwsConnector) -> String {
    connector.uid().unwrap_or_else(|| {
        format!(
            "{}/{}",
            connector.namespace().unwrap_or_default(),
            connector.name_any()
        )
    })
}

/// The connector's external ID: inline, or read from the Secret `externalIdSecretRef` names and
/// checked with the same rule. The value never leaves here except to authenticate.
pub async fn external_id(
    ctx: &Context,
    connector: &AwsConnector,
) -> Result<Result<Option<String>, FieldError>, Error> {
    const FIELD: &str = "spec.auth.externalIdSecretRef";
    let Some(reference) = &connector.spec.auth.external_id_secret_ref else {
        return Ok(Ok(connector.spec.auth.external_id.clone()));
    };
    let namespace = connector
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok(Err(FieldError {
            field: FIELD.into(),
            message: format!(
                "{FIELD}: Secret {namespace}/{} does not exist",
                reference.name
            ),
        }));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes.0)
                .trim_end_matches('\n')
                .to_string()
        });
    let Some(value) = value else {
        return Ok(Err(FieldError {
            field: FIELD.into(),
            message: format!(
                "{FIELD}: Secret {namespace}/{} has no key {}",
                reference.name, reference.key
            ),
        }));
    };
    let mut errors = Vec::new();
    check_external_id(FIELD, &value, &mut errors);
    Ok(match errors.pop() {
        Some(error) => Err(error),
        None => Ok(Some(value)),
    })
}

/// The connector's role chain: the kept one if it was built for the same settings, else a new
/// one (kept once it is known to work, see `keep`).
pub async fn session(
    ctx: &Context,
    connector: &AwsConnector,
    external_id: Option<&str>,
) -> (Session, String) {
    let fingerprint = connect::session_fingerprint(connector, external_id);
    if let Some(session) = ctx.session(&key(connector), &fingerprint) {
        return (session, fingerprint);
    }
    let mut session =
        connect::session(&ctx.aws.base, connector, external_id, &ctx.aws.limits).await;
    let metrics = ctx.metrics.clone();
    let name = format!(
        "{}/{}",
        connector.namespace().unwrap_or_default(),
        connector.name_any()
    );
    session.caller =
        session
            .caller
            .clone()
            .with_observer(Arc::new(move |service, operation, outcome| {
                metrics.observe_call(&name, service, operation, outcome)
            }));
    (session, fingerprint)
}

/// The names the connector's last sync saw: kept in memory by the connector controller, or
/// read from the connector's cache ConfigMaps after a restart.
pub async fn directory(ctx: &Context, connector: &AwsConnector) -> Result<Arc<SyncCache>, Error> {
    let key = key(connector);
    if let Some(cache) = ctx.directory(&key) {
        return Ok(cache);
    }
    let store = ConnectorConfigMaps::new(ctx.client.clone(), connector)
        .ok_or(Error::MissingField("namespace"))?;
    let cache = Arc::new(SyncCache::decode(
        &store.read(CACHE_KEY).await?.unwrap_or_default(),
    ));
    ctx.keep_directory(&key, cache.clone());
    Ok(cache)
}

/// The connector's permits for assignment operations.
pub fn assignment_slots(ctx: &Context, connector: &AwsConnector) -> Arc<Semaphore> {
    ctx.slots(&key(connector), ASSIGNMENTS_IN_FLIGHT)
}
