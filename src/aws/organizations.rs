//! AWS Organizations: the organization's tree (its root and organizational units) and the
//! accounts in it.

use super::credentials::Session;
use super::error::AwsError;
use super::model::Page;
use super::model::{Account, OrganizationRoot, OrganizationalUnit};
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

/// The error code of a call made by an account that belongs to no organization.
pub const NOT_IN_USE: &str = "AWSOrganizationsNotInUseException";

/// The most Organizations' list calls return per page.
pub const MAX_PAGE: i32 = 20;

/// The organization's root (AWS has one per organization; the list is kept as AWS gives it).
pub async fn list_roots(
    session: &Session,
    token: Option<String>,
    page_size: i32,
) -> Result<Page<Vec<OrganizationRoot>>, AwsError> {
    let client = aws_sdk_organizations::Client::new(&session.global);
    let output = session
        .caller
        .call(Service::Organizations, "ListRoots", || async {
            client
                .list_roots()
                .set_next_token(token.clone())
                .max_results(page_size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListRoots", e))
        })
        .await?;
    let items = output
        .roots()
        .iter()
        .map(|r| OrganizationRoot {
            id: r.id().unwrap_or_default().to_string(),
            name: r.name().unwrap_or_default().to_string(),
            arn: r.arn().unwrap_or_default().to_string(),
        })
        .collect();
    Ok(Page::new(items, output.next_token().map(str::to_string)))
}

/// The organizational units directly under `parent` (a root or an organizational unit).
pub async fn list_organizational_units(
    session: &Session,
    parent: &str,
    token: Option<String>,
    page_size: i32,
) -> Result<Page<Vec<OrganizationalUnit>>, AwsError> {
    let client = aws_sdk_organizations::Client::new(&session.global);
    let output = session
        .caller
        .call(
            Service::Organizations,
            "ListOrganizationalUnitsForParent",
            || async {
                client
                    .list_organizational_units_for_parent()
                    .parent_id(parent)
                    .set_next_token(token.clone())
                    .max_results(page_size.min(MAX_PAGE))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("ListOrganizationalUnitsForParent", e))
            },
        )
        .await?;
    let items = output
        .organizational_units()
        .iter()
        .map(|ou| OrganizationalUnit {
            id: ou.id().unwrap_or_default().to_string(),
            name: ou.name().unwrap_or_default().to_string(),
            arn: ou.arn().unwrap_or_default().to_string(),
            parent_id: parent.to_string(),
        })
        .collect();
    Ok(Page::new(items, output.next_token().map(str::to_string)))
}

/// The accounts directly under `parent` (a root or an organizational unit): the accounts of
/// the organization, each with where it sits, when every parent is listed.
pub async fn list_accounts_for_parent(
    session: &Session,
    parent: &str,
    token: Option<String>,
    page_size: i32,
) -> Result<Page<Vec<Account>>, AwsError> {
    let client = aws_sdk_organizations::Client::new(&session.global);
    let output = session
        .caller
        .call(Service::Organizations, "ListAccountsForParent", || async {
            client
                .list_accounts_for_parent()
                .parent_id(parent)
                .set_next_token(token.clone())
                .max_results(page_size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListAccountsForParent", e))
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
            parent_id: Some(parent.to_string()),
        })
        .collect();
    Ok(Page::new(items, output.next_token().map(str::to_string)))
}
