//! Who the operator is after the role chain.

use super::credentials::Session;
use super::error::AwsError;
use super::ratelimit::Service;
use crate::api::connector::CallerIdentity;

/// GetCallerIdentity through the whole chain; a failing hop surfaces here, named.
pub async fn who_am_i(session: &Session) -> Result<CallerIdentity, AwsError> {
    let client = aws_sdk_sts::Client::new(&session.global);
    let identity = session
        .caller
        .call(Service::Sts, "GetCallerIdentity", || async {
            client
                .get_caller_identity()
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetCallerIdentity", e))
        })
        .await?;
    Ok(CallerIdentity {
        account: identity.account().unwrap_or_default().to_string(),
        arn: identity.arn().unwrap_or_default().to_string(),
    })
}
