//! Credentials for one connector: the default chain (IRSA web identity in EKS, environment,
//! profile) as the base, then zero, one or two assumed roles. Each hop is wrapped so that a
//! failure names the field of the hop that failed. The final credentials are cached by the SDK
//! and refreshed before they expire.

use std::fmt;
use std::sync::Arc;

use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_smithy_types::retry::RetryConfig;

use super::caller::Caller;
use crate::api::AwsConnectorSpec;

/// The session name when the connector sets none.
pub const DEFAULT_SESSION_NAME: &str = "aws-access-operator";

/// Where credentials and endpoints come from before any role is assumed.
#[derive(Clone, Debug)]
pub struct AwsBase {
    config: SdkConfig,
}

impl AwsBase {
    /// aws-config's default chain; `AWS_ENDPOINT_URL` and the other standard variables apply.
    /// Retries are ours (see `Caller`), so the SDK's are off.
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        Self { config }
    }

    /// A base built elsewhere (tests point it at an emulator without touching the process
    /// environment).
    pub fn from_config(config: SdkConfig) -> Self {
        Self {
            config: config
                .into_builder()
                .retry_config(RetryConfig::disabled())
                .build(),
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

impl fmt::Debug for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hop")
            .field("field", &self.field)
            .field("role_arn", &self.role_arn)
            .finish()
    }
}

/// Why a hop could not be assumed. Never carries the external ID.
#[derive(Debug)]
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

impl ProvideCredentials for Hop {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.caller.record("AssumeRole");
            self.provider.provide_credentials().await.map_err(|error| {
                CredentialsError::provider_error(HopError {
                    field: self.field,
                    role_arn: self.role_arn.clone(),
                    cause: sts_cause(&error),
                })
            })
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
    let provider = match through {
        Some(previous) => builder.build_from_provider(previous).await,
        None => builder.build().await,
    };
    SharedCredentialsProvider::new(Hop {
        field,
        role_arn: role_arn.to_string(),
        provider,
        caller: caller.clone(),
    })
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
}

impl Session {
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
        }
    }
}

/// Shared ownership of a session across tasks.
pub type SharedSession = Arc<Session>;
