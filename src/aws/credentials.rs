//! Credentials for one connector: the default chain (IRSA web identity in EKS, environment,
//! profile) as the base, then zero, one or two assumed roles. Each hop is wrapped so that a
//! failure names the field of the hop that failed. The final credentials are cached by the SDK
//! and refreshed before they expire.

use std::fmt;
use std::sync::Arc;

use aws_config::identity::IdentityCache;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use super::caller::{ATTEMPT_TIMEOUT, CALL_TIMEOUT, Caller, RetryPolicy, jitter_random};
use super::error::{ErrorKind, classify};
use super::ratelimit::Service;
use crate::api::AwsConnectorSpec;

/// How long connecting to an AWS endpoint may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long AWS may take to answer: one attempt, and one call with its retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub attempt: std::time::Duration,
    pub call: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            attempt: ATTEMPT_TIMEOUT,
            call: CALL_TIMEOUT,
        }
    }
}

/// The session name when the connector sets none.
pub const DEFAULT_SESSION_NAME: &str = "aws-access-operator";

/// Where credentials and endpoints come from before any role is assumed.
#[derive(Clone, Debug)]
pub struct AwsBase {
    config: SdkConfig,
    timeouts: Timeouts,
}

impl AwsBase {
    /// aws-config's default chain; `AWS_ENDPOINT_URL` and the other standard variables apply.
    pub async fn from_env(timeouts: Timeouts) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self::from_config(config).with_timeouts(timeouts)
    }

    /// The same base with AWS's answers bounded by `timeouts`.
    pub fn with_timeouts(self, timeouts: Timeouts) -> Self {
        Self {
            config: Self::bounded(self.config, timeouts),
            timeouts,
        }
    }

    /// A base built elsewhere (tests point it at an emulator without touching the process
    /// environment), with the default timeouts.
    pub fn from_config(config: SdkConfig) -> Self {
        let timeouts = Timeouts::default();
        Self {
            config: Self::bounded(config, timeouts),
            timeouts,
        }
    }

    /// Retries are ours (see `Caller`, and `Hop` for AssumeRole), so the SDK's are off. Every
    /// attempt is bounded by the attempt timeout, loading credentials included (the SDK
    /// resolves them inside the attempt); loading the whole role chain, with its own retries,
    /// by the call timeout.
    fn bounded(config: SdkConfig, timeouts: Timeouts) -> SdkConfig {
        config
            .into_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT.min(timeouts.attempt))
                    .operation_attempt_timeout(timeouts.attempt)
                    .build(),
            )
            .identity_cache(IdentityCache::lazy().load_timeout(timeouts.call).build())
            .build()
    }

    /// How this base's calls are retried and bounded.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempt_timeout: self.timeouts.attempt,
            call_timeout: self.timeouts.call,
            ..RetryPolicy::default()
        }
    }

    fn in_region(&self, region: &str) -> SdkConfig {
        self.config
            .clone()
            .into_builder()
            .region(Region::new(region.to_string()))
            .build()
    }
}

/// Why STS refused a hop, in a line: the service's error code and message when there is one.
fn sts_cause(error: &CredentialsError) -> String {
    use aws_sdk_sts::error::ProvideErrorMetadata;
    type AssumeRoleFailure = aws_sdk_sts::error::SdkError<
        aws_sdk_sts::operation::assume_role::AssumeRoleError,
        aws_smithy_runtime_api::http::Response,
    >;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(failure) = e.downcast_ref::<AssumeRoleFailure>()
            && let Some(code) = failure.code()
        {
            return format!("{code}: {}", failure.message().unwrap_or("no message"));
        }
        current = e.source();
    }
    super::error::describe_chain(error)
}

/// One hop of the role chain, named by the field that configures it.
struct Hop {
    field: &'static str,
    role_arn: String,
    provider: AssumeRoleProvider,
    caller: Caller,
}

/// How long before they expire assumed credentials are no longer handed out.
const REFRESH_BEFORE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(300);

impl fmt::Debug for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hop")
            .field("field", &self.field)
            .field("role_arn", &self.role_arn)
            .finish()
    }
}

/// Why a hop could not be assumed. Never carries the external ID.
#[derive(Clone, Debug)]
pub struct HopError {
    pub field: &'static str,
    pub role_arn: String,
    pub cause: String,
}

impl fmt::Display for HopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot assume {} ({}): {}",
            self.field, self.role_arn, self.cause
        )
    }
}

impl std::error::Error for HopError {}

/// The hop that failed further up the chain, if the failure is an earlier hop's: its error
/// names the right field and role.
fn earlier_hop(error: &CredentialsError) -> Option<HopError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(hop) = e.downcast_ref::<HopError>() {
            return Some(hop.clone());
        }
        current = e.source();
    }
    None
}

/// Whether assuming the role again may succeed: STS throttled it or failed transiently, or the
/// request never got an answer.
fn retryable(error: &CredentialsError) -> bool {
    use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
    type AssumeRoleFailure = SdkError<
        aws_sdk_sts::operation::assume_role::AssumeRoleError,
        aws_smithy_runtime_api::http::Response,
    >;
    if matches!(error, CredentialsError::ProviderTimedOut(_)) {
        return true;
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(failure) = e.downcast_ref::<AssumeRoleFailure>() {
            return match failure {
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
                SdkError::ResponseError(_) => true,
                other => {
                    let status = other.raw_response().map(|r| r.status().as_u16());
                    matches!(
                        classify(other.code(), status),
                        ErrorKind::Throttled | ErrorKind::Transient
                    )
                }
            };
        }
        current = e.source();
    }
    false
}

impl ProvideCredentials for Hop {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let policy = self.caller.retry_policy();
            let mut attempt = 0;
            // As for any call, the attempts and the waits between them are bounded together.
            let mut spent = std::time::Duration::ZERO;
            loop {
                // Through the STS lane like any call: member accounts are entered by the
                // hundred.
                self.caller.pace(Service::Sts).await;
                self.caller.record("AssumeRole");
                let started = tokio::time::Instant::now();
                let provided = self.provider.provide_credentials().await;
                spent += started.elapsed();
                let error = match provided {
                    Ok(credentials) => return Ok(credentials),
                    Err(error) => error,
                };
                // An earlier hop failed (and was retried there): say which, not this one.
                if let Some(earlier) = earlier_hop(&error) {
                    return Err(CredentialsError::provider_error(earlier));
                }
                let delay = policy.delay(attempt, jitter_random());
                if retryable(&error)
                    && attempt + 1 < policy.max_attempts
                    && spent + delay < policy.call_timeout
                {
                    spent += delay;
                    tracing::debug!(field = self.field, attempt, ?delay, cause = %sts_cause(&error), "assuming the role again");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    continue;
                }
                return Err(CredentialsError::provider_error(HopError {
                    field: self.field,
                    role_arn: self.role_arn.clone(),
                    cause: sts_cause(&error),
                }));
            }
        })
    }
}

async fn hop(
    field: &'static str,
    role_arn: &str,
    external_id: Option<&str>,
    session_name: &str,
    base: &SdkConfig,
    through: Option<SharedCredentialsProvider>,
    caller: &Caller,
) -> SharedCredentialsProvider {
    let mut builder = AssumeRoleProvider::builder(role_arn)
        .session_name(session_name)
        .configure(base);
    if let Some(region) = base.region() {
        builder = builder.region(region.clone());
    }
    if let Some(id) = external_id {
        builder = builder.external_id(id);
    }
    let previous = match (through, base.credentials_provider()) {
        (Some(previous), _) => Some(previous),
        // The pod's own credentials (IRSA), kept between this hop's attempts.
        (None, Some(own)) => Some(own.cached()),
        (None, None) => None,
    };
    let provider = match previous {
        Some(previous) => builder.build_from_provider(previous).await,
        None => builder.build().await,
    };
    Hop {
        field,
        role_arn: role_arn.to_string(),
        provider,
        caller: caller.clone(),
    }
    .cached()
}

/// Credentials kept until shortly before they expire. The SDK caches what its clients use, but
/// not what an AssumeRole provider asks of the provider before it: without this, every attempt
/// of a hop would fetch the hop before it (or the pod's web identity) again.
struct Cached {
    inner: SharedCredentialsProvider,
    last: tokio::sync::Mutex<Option<aws_credential_types::Credentials>>,
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("inner", &self.inner)
            .finish()
    }
}

impl ProvideCredentials for Cached {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let mut last = self.last.lock().await;
            let fresh = |c: &aws_credential_types::Credentials| {
                c.expiry()
                    .is_none_or(|at| at > std::time::SystemTime::now() + REFRESH_BEFORE_EXPIRY)
            };
            if let Some(credentials) = last.as_ref().filter(|c| fresh(c)) {
                return Ok(credentials.clone());
            }
            let credentials = self.inner.provide_credentials().await?;
            *last = Some(credentials.clone());
            Ok(credentials)
        })
    }
}

trait CachedExt {
    fn cached(self) -> SharedCredentialsProvider;
}

impl<P: ProvideCredentials + 'static> CachedExt for P {
    fn cached(self) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(Cached {
            inner: SharedCredentialsProvider::new(self),
            last: tokio::sync::Mutex::new(None),
        })
    }
}

/// AWS access for one connector: a configuration per region, sharing one credential chain.
#[derive(Clone)]
pub struct Session {
    /// IAM, STS and Organizations (`spec.region`).
    pub global: SdkConfig,
    /// sso-admin and identitystore (`spec.ssoRegion`).
    pub sso: SdkConfig,
    pub caller: Caller,
    /// The role the operator works as, if any (for messages).
    pub role_arn: Option<String>,
    /// Who the chain makes the operator, once it authenticated: its account is the one whose
    /// IAM the sync reads directly, and its partition names member accounts' roles.
    pub identity: Option<crate::api::connector::CallerIdentity>,
    /// The external ID for member accounts' roles (`spec.sync.memberAccounts`), resolved.
    pub member_external_id: Option<String>,
}

impl Session {
    /// Shares the rate limits of every session that reaches `account` (see
    /// `Caller::share`), once the role chain says which account that is.
    pub fn share_limits(&self, account: &str) {
        let region =
            |config: &SdkConfig| config.region().map(ToString::to_string).unwrap_or_default();
        let (global, sso) = (region(&self.global), region(&self.sso));
        self.caller.share(account, |service| match service {
            // CloudTrail is read in the Identity Center region.
            Service::SsoAdmin | Service::IdentityStore | Service::CloudTrail => sso.clone(),
            // IAM and Organizations are metered globally.
            Service::Iam | Service::Organizations => String::new(),
            Service::Sts => global.clone(),
        });
    }

    /// A session in member account `account`, through role `role_name` assumed there with
    /// this session's credentials (and the member external ID, if any). The same rate-limit
    /// lanes and call counters; nothing is called until the first request.
    pub async fn member(&self, account: &str, role_name: &str) -> Self {
        let partition = self
            .identity
            .as_ref()
            .and_then(|i| i.arn.split(':').nth(1))
            .unwrap_or("aws");
        let role_arn = format!("arn:{partition}:iam::{account}:role/{role_name}");
        let credentials = hop(
            "spec.sync.memberAccounts.roleName",
            &role_arn,
            self.member_external_id.as_deref(),
            DEFAULT_SESSION_NAME,
            &self.global,
            self.global.credentials_provider(),
            &self.caller,
        )
        .await;
        Self {
            global: self
                .global
                .clone()
                .into_builder()
                .credentials_provider(credentials)
                .build(),
            caller: self.caller.in_member_account(account),
            role_arn: Some(role_arn),
            identity: None,
            ..self.clone()
        }
    }

    /// The same credentials with fresh call counters (one sync's cost).
    pub fn with_caller(&self, caller: Caller) -> Self {
        Self {
            caller,
            ..self.clone()
        }
    }

    /// Builds the chain of `spec.auth`. `external_id` is the resolved one (inline or from the
    /// Secret). Nothing is called until the first request.
    pub async fn new(
        base: &AwsBase,
        spec: &AwsConnectorSpec,
        external_id: Option<&str>,
        caller: Caller,
    ) -> Self {
        let auth = &spec.auth;
        let global_base = base.in_region(&spec.region);
        let session_name = auth.session_name.as_deref().unwrap_or(DEFAULT_SESSION_NAME);
        let first = match &auth.global_role_arn {
            Some(arn) => Some(
                hop(
                    "spec.auth.globalRoleArn",
                    arn,
                    auth.global_external_id.as_deref(),
                    session_name,
                    &global_base,
                    None,
                    &caller,
                )
                .await,
            ),
            None => None,
        };
        let credentials = match &auth.role_arn {
            Some(arn) => Some(
                hop(
                    "spec.auth.roleArn",
                    arn,
                    external_id,
                    session_name,
                    &global_base,
                    first,
                    &caller,
                )
                .await,
            ),
            None => None,
        };
        let with_credentials = |config: SdkConfig| match &credentials {
            Some(provider) => config
                .into_builder()
                .credentials_provider(provider.clone())
                .build(),
            None => config,
        };
        Self {
            global: with_credentials(global_base),
            sso: with_credentials(base.in_region(spec.sso_region())),
            caller,
            role_arn: auth.role_arn.clone(),
            identity: None,
            member_external_id: None,
        }
    }
}

/// Shared ownership of a session across tasks.
pub type SharedSession = Arc<Session>;
