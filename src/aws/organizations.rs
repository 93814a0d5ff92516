//! AWS Organizations: the accounts of the organization.

use super::credentials::Session;
use super::error::AwsError;
use super::model::Account;
use super::model::Page;
use super::ratelimit::Service;

/// Whether `account` is an account of the organization: `Ok` if so, a NotFound error
/// (AccountNotFoundException) if not.
pub async fn describe_account(session: &Session, account: &str) -> Result<(), AwsError> {
    let client = aws_sdk_organizations::Client::new(&session.global);
    session
        .caller
        .call(Service::Organizations, "DescribeAccount", || async {
            client
                .describe_account()
                .account_id(account)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeAccount", e))
        })
        .await
        .map(|_| ())
}

/// The most ListAccounts returns per page.
pub const MAX_PAGE: i32 = 20;

pub async fn list_accounts(
    session: &Session,
    token: Option<String>,
    page_size: i32,
) -> Result<Page<Vec<Account>>, AwsError> {
    let client = aws_sdk_organizations::Client::new(&session.global);
    let output = session
        .caller
        .call(Service::Organizations, "ListAccounts", || async {
            client
                .list_accounts()
                .set_next_token(token.clone())
                .max_results(page_size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListAccounts", e))
        })
        .await?;
    let items = output
        .accounts()
        .iter()
        .map(|a| Account {
            id: a.id().unwrap_or_default().to_string(),
            name: a.name().unwrap_or_default().to_string(),
            email: a.email().unwrap_or_default().to_string(),
            status: a
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            arn: a.arn().unwrap_or_default().to_string(),
        })
        .collect();
    Ok(Page::new(items, output.next_token().map(str::to_string)))
}
