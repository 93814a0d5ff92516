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

/// Whether connectors in `namespace` are served (`allowed` empty: everywhere).
pub fn serves(allowed: &[String], namespace: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|n| n == namespace)
}

/// A connector's `namespace/name`: what the ledger, records, metrics and claims (and
/// `Context::fence_for`) know it by.
pub fn name_key(connector: &AwsConnector) -> String {
    format!(
        "{}/{}",
        connector.namespace().unwrap_or_default(),
        connector.name_any()
    )
}

/// The key of a connector in the operator's memory.
pub fn key(connector: &AwsConnector) -> String {
    connector.uid().unwrap_or_else(|| name_key(connector))
}

/// What a connector's role chain is built from: the connector with its first hop's external
/// ID in place (inline, or read from `globalExternalIdSecretRef`), and the second hop's external
/// ID (inline, or read from `externalIdSecretRef`). The values never leave here except to
/// authenticate.
pub struct Chain {
    pub connector: AwsConnector,
    pub external_id: Option<String>,
    /// The external ID for member accounts' roles, when the connector names a Secret for it.
    pub member_external_id: Option<String>,
}

/// Reads the external IDs a connector names, each checked with the same rule as an inline one.
pub async fn external_id(
    ctx: &Context,
    connector: &AwsConnector,
) -> Result<Result<Chain, FieldError>, Error> {
    // Outside the connector namespaces the operator may not read Secrets: nothing is asked.
    let namespace = connector.namespace().unwrap_or_default();
    if !serves(&ctx.connector_namespaces, &namespace) {
        return Ok(Err(FieldError::new(
            "metadata.namespace",
            format!("AwsConnectors are not served in namespace {namespace}"),
        )));
    }
    let auth = &connector.spec.auth;
    let external_id = match &auth.external_id_secret_ref {
        None => auth.external_id.clone(),
        Some(reference) => {
            match secret_value(ctx, connector, "spec.auth.externalIdSecretRef", reference).await? {
                Ok(value) => Some(value),
                Err(error) => return Ok(Err(error)),
            }
        }
    };
    let mut resolved = connector.clone();
    if let Some(reference) = &auth.global_external_id_secret_ref {
        match secret_value(
            ctx,
            connector,
            "spec.auth.globalExternalIdSecretRef",
            reference,
        )
        .await?
        {
            Ok(value) => {
                resolved.spec.auth.global_external_id = Some(value);
                resolved.spec.auth.global_external_id_secret_ref = None;
            }
            Err(error) => return Ok(Err(error)),
        }
    }
    let member_external_id = match connector
        .spec
        .sync
        .members()
        .and_then(|m| m.external_id_secret_ref.as_ref())
    {
        None => None,
        Some(reference) => {
            let field = "spec.sync.memberAccounts.externalIdSecretRef";
            match secret_value(ctx, connector, field, reference).await? {
                Ok(value) => Some(value),
                Err(error) => return Ok(Err(error)),
            }
        }
    };
    Ok(Ok(Chain {
        connector: resolved,
        external_id,
        member_external_id,
    }))
}

/// The value under `reference` in a Secret of the connector's namespace, checked as an
/// external ID; a missing Secret, key or bad value names `field`, never the value.
async fn secret_value(
    ctx: &Context,
    connector: &AwsConnector,
    field: &str,
    reference: &crate::api::connector::SecretKeyRef,
) -> Result<Result<String, FieldError>, Error> {
    let namespace = connector
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok(Err(FieldError {
            field: field.into(),
            message: format!(
                "{field}: Secret {namespace}/{} does not exist",
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
            field: field.into(),
            message: format!(
                "{field}: Secret {namespace}/{} has no key {}",
                reference.name, reference.key
            ),
        }));
    };
    let mut errors = Vec::new();
    check_external_id(field, &value, &mut errors);
    Ok(match errors.pop() {
        Some(error) => Err(error),
        None => Ok(value),
    })
}

/// The connector's role chain: the kept one if it was built for the same settings, else a new
/// one (kept once it is known to work, see `keep`).
pub async fn session(ctx: &Context, chain: &Chain) -> (Session, String) {
    let (connector, external_id) = (&chain.connector, chain.external_id.as_deref());
    let member_external_id = chain.member_external_id.as_deref();
    let fingerprint = connect::session_fingerprint(connector, external_id, member_external_id);
    if let Some(session) = ctx.session(&key(connector), &fingerprint) {
        return (session, fingerprint);
    }
    let mut session =
        connect::session(&ctx.aws.base, connector, external_id, &ctx.aws.limits).await;
    session.member_external_id = member_external_id.map(str::to_string);
    let metrics = ctx.metrics.clone();
    let name = name_key(connector);
    session.caller =
        session
            .caller
            .clone()
            .with_observer(Arc::new(move |service, operation, outcome| {
                metrics.observe_call(&name, service, operation, outcome)
            }));
    // The account the connector last authenticated as, so that a session built here (for a
    // grant, before the connector's own) shares its rate limits from the first call.
    if let Some(identity) = connector.status.as_ref().and_then(|s| s.identity.as_ref()) {
        session.share_limits(&identity.account);
    }
    (session, fingerprint)
}

/// The names the connector's last sync saw: kept in memory by the connector controller, or
/// read from the connector's cache ConfigMaps after a restart.
pub async fn directory(ctx: &Context, connector: &AwsConnector) -> Result<Arc<SyncCache>, Error> {
    let key = key(connector);
    if let Some(cache) = ctx.directory(&key) {
        return Ok(cache);
    }
    let store = ConnectorConfigMaps::new(ctx.client.clone(), &ctx.home_namespace, connector)
        .ok_or(Error::MissingField("namespace"))?;
    let cache = Arc::new(SyncCache::decode(
        &store.read(CACHE_KEY).await?.unwrap_or_default(),
    ));
    ctx.keep_directory(&key, cache.clone());
    Ok(cache)
}

/// The connector's permits for assignment operations.
pub fn assignment_slots(ctx: &Context, connector: &AwsConnector) -> Arc<Semaphore> {
    ctx.runtime(&key(connector)).slots.clone()
}
