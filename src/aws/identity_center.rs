//! IAM Identity Center: the instance (sso-admin), users, groups and memberships
//! (identitystore), permission sets and account assignments (sso-admin).

use aws_sdk_ssoadmin::types::PrincipalType;

use super::credentials::Session;
use super::error::AwsError;
use super::model::Page;
use super::model::{Assignment, PermissionSet, SsoGroup, SsoUser};
use super::ratelimit::Service;
use crate::api::connector::IdentityCenterRef;

/// The most the Identity Center list calls return per page.
pub const MAX_PAGE: i32 = 100;

fn sso_admin(session: &Session) -> aws_sdk_ssoadmin::Client {
    aws_sdk_ssoadmin::Client::new(&session.sso)
}

fn identity_store(session: &Session) -> aws_sdk_identitystore::Client {
    aws_sdk_identitystore::Client::new(&session.sso)
}

/// The organization's Identity Center instance (there is at most one).
pub async fn instance(session: &Session) -> Result<Option<IdentityCenterRef>, AwsError> {
    let client = sso_admin(session);
    let output = session
        .caller
        .call(Service::SsoAdmin, "ListInstances", || async {
            client
                .list_instances()
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListInstances", e))
        })
        .await?;
    Ok(output.instances().first().map(|i| IdentityCenterRef {
        instance_arn: i.instance_arn().unwrap_or_default().to_string(),
        identity_store_id: i.identity_store_id().unwrap_or_default().to_string(),
    }))
}

pub async fn list_users(
    session: &Session,
    store: &str,
    token: Option<String>,
    size: i32,
) -> Result<Page<Vec<SsoUser>>, AwsError> {
    let client = identity_store(session);
    let output = session
        .caller
        .call(Service::IdentityStore, "ListUsers", || async {
            client
                .list_users()
                .identity_store_id(store)
                .set_next_token(token.clone())
                .max_results(size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListUsers", e))
        })
        .await?;
    let users = output
        .users()
        .iter()
        .map(|u| SsoUser {
            last_sign_in_at: None,
            id: u.user_id().into(),
            user_name: u.user_name().unwrap_or_default().to_string(),
            display_name: u.display_name().map(str::to_string),
            email: u
                .emails()
                .iter()
                .find(|e| e.primary())
                .or_else(|| u.emails().first())
                .and_then(|e| e.value().map(str::to_string)),
        })
        .collect();
    Ok(Page::new(users, output.next_token().map(str::to_string)))
}

pub async fn list_groups(
    session: &Session,
    store: &str,
    token: Option<String>,
    size: i32,
) -> Result<Page<Vec<SsoGroup>>, AwsError> {
    let client = identity_store(session);
    let output = session
        .caller
        .call(Service::IdentityStore, "ListGroups", || async {
            client
                .list_groups()
                .identity_store_id(store)
                .set_next_token(token.clone())
                .max_results(size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListGroups", e))
        })
        .await?;
    let groups = output
        .groups()
        .iter()
        .map(|g| SsoGroup {
            id: g.group_id().to_string(),
            display_name: g.display_name().unwrap_or_default().to_string(),
            members: Vec::new(),
        })
        .collect();
    Ok(Page::new(groups, output.next_token().map(str::to_string)))
}

/// One page of a group's member user ids.
pub async fn list_group_memberships(
    session: &Session,
    store: &str,
    group_id: &str,
    token: Option<String>,
    size: i32,
) -> Result<Page<Vec<String>>, AwsError> {
    let client = identity_store(session);
    let output = session
        .caller
        .call(Service::IdentityStore, "ListGroupMemberships", || async {
            client
                .list_group_memberships()
                .identity_store_id(store)
                .group_id(group_id)
                .set_next_token(token.clone())
                .max_results(size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListGroupMemberships", e))
        })
        .await?;
    let members = output
        .group_memberships()
        .iter()
        .filter_map(|m| match m.member_id() {
            Some(aws_sdk_identitystore::types::MemberId::UserId(id)) => Some(id.clone()),
            _ => None,
        })
        .collect();
    Ok(Page::new(members, output.next_token().map(str::to_string)))
}

/// One page of permission set ARNs.
pub async fn list_permission_sets(
    session: &Session,
    instance: &str,
    token: Option<String>,
    size: i32,
) -> Result<Page<Vec<String>>, AwsError> {
    let client = sso_admin(session);
    let output = session
        .caller
        .call(Service::SsoAdmin, "ListPermissionSets", || async {
            client
                .list_permission_sets()
                .instance_arn(instance)
                .set_next_token(token.clone())
                .max_results(size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListPermissionSets", e))
        })
        .await?;
    Ok(Page::new(
        output.permission_sets().to_vec(),
        output.next_token().map(str::to_string),
    ))
}

/// A permission set's name and settings (there is no list call that returns them).
pub async fn describe_permission_set(
    session: &Session,
    instance: &str,
    arn: &str,
) -> Result<PermissionSet, AwsError> {
    let client = sso_admin(session);
    let output = session
        .caller
        .call(Service::SsoAdmin, "DescribePermissionSet", || async {
            client
                .describe_permission_set()
                .instance_arn(instance)
                .permission_set_arn(arn)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribePermissionSet", e))
        })
        .await?;
    let ps = output.permission_set();
    Ok(PermissionSet {
        arn: arn.to_string(),
        name: ps.and_then(|p| p.name()).unwrap_or_default().to_string(),
        description: ps.and_then(|p| p.description()).map(str::to_string),
        session_duration: ps.and_then(|p| p.session_duration()).map(str::to_string),
        accounts: Vec::new(),
        contents: None,
        declared_by: None,
    })
}

/// One page of the accounts a permission set is provisioned to.
pub async fn list_provisioned_accounts(
    session: &Session,
    instance: &str,
    permission_set: &str,
    token: Option<String>,
    size: i32,
) -> Result<Page<Vec<String>>, AwsError> {
    let client = sso_admin(session);
    let output = session
        .caller
        .call(
            Service::SsoAdmin,
            "ListAccountsForProvisionedPermissionSet",
            || async {
                client
                    .list_accounts_for_provisioned_permission_set()
                    .instance_arn(instance)
                    .permission_set_arn(permission_set)
                    .set_next_token(token.clone())
                    .max_results(size.min(MAX_PAGE))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("ListAccountsForProvisionedPermissionSet", e))
            },
        )
        .await?;
    Ok(Page::new(
        output.account_ids().to_vec(),
        output.next_token().map(str::to_string),
    ))
}

/// One page of the permission sets provisioned to an account: the other way to find the
/// (account, permission set) pairs, cheaper when there are fewer accounts than sets.
pub async fn list_provisioned_permission_sets(
    session: &Session,
    instance: &str,
    account: &str,
    token: Option<String>,
    size: i32,
) -> Result<Page<Vec<String>>, AwsError> {
    let client = sso_admin(session);
    let output = session
        .caller
        .call(
            Service::SsoAdmin,
            "ListPermissionSetsProvisionedToAccount",
            || async {
                client
                    .list_permission_sets_provisioned_to_account()
                    .instance_arn(instance)
                    .account_id(account)
                    .set_next_token(token.clone())
                    .max_results(size.min(MAX_PAGE))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("ListPermissionSetsProvisionedToAccount", e))
            },
        )
        .await?;
    Ok(Page::new(
        output.permission_sets().to_vec(),
        output.next_token().map(str::to_string),
    ))
}

/// One page of the assignments of a permission set on an account.
pub async fn list_account_assignments(
    session: &Session,
    instance: &str,
    account: &str,
    permission_set: &str,
    token: Option<String>,
    size: i32,
) -> Result<Page<Vec<Assignment>>, AwsError> {
    let client = sso_admin(session);
    let output = session
        .caller
        .call(Service::SsoAdmin, "ListAccountAssignments", || async {
            client
                .list_account_assignments()
                .instance_arn(instance)
                .account_id(account)
                .permission_set_arn(permission_set)
                .set_next_token(token.clone())
                .max_results(size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListAccountAssignments", e))
        })
        .await?;
    let assignments = output
        .account_assignments()
        .iter()
        .map(|a| Assignment {
            account_id: a.account_id().unwrap_or(account).into(),
            permission_set_arn: a.permission_set_arn().unwrap_or(permission_set).into(),
            principal_type: a
                .principal_type()
                .map(|t| t.as_str())
                .unwrap_or_default()
                .into(),
            principal_id: a.principal_id().unwrap_or_default().into(),
        })
        .collect();
    Ok(Page::new(
        assignments,
        output.next_token().map(str::to_string),
    ))
}

/// One page of the assignments of a user (`USER`) or group (`GROUP`).
pub async fn list_assignments_for_principal(
    session: &Session,
    instance: &str,
    principal_type: &str,
    principal_id: &str,
    token: Option<String>,
    size: i32,
) -> Result<Page<Vec<Assignment>>, AwsError> {
    let client = sso_admin(session);
    let kind = PrincipalType::from(principal_type);
    let output = session
        .caller
        .call(
            Service::SsoAdmin,
            "ListAccountAssignmentsForPrincipal",
            || async {
                client
                    .list_account_assignments_for_principal()
                    .instance_arn(instance)
                    .principal_type(kind.clone())
                    .principal_id(principal_id)
                    .set_next_token(token.clone())
                    .max_results(size.min(MAX_PAGE))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("ListAccountAssignmentsForPrincipal", e))
            },
        )
        .await?;
    let assignments = output
        .account_assignments()
        .iter()
        .map(|a| Assignment {
            account_id: a.account_id().unwrap_or_default().into(),
            permission_set_arn: a.permission_set_arn().unwrap_or_default().into(),
            principal_type: principal_type.into(),
            principal_id: principal_id.into(),
        })
        .collect();
    Ok(Page::new(
        assignments,
        output.next_token().map(str::to_string),
    ))
}
