//! IAM: users, groups and roles in one paginated GetAccountAuthorizationDetails (instead of
//! ListUsers + ListGroups + GetGroup per group + ListRoles), and access keys.

use aws_sdk_iam::types::EntityType;

use super::credentials::Session;
use super::error::AwsError;
use super::model::Page;
use super::model::{AccessKey, AttachedPolicies, IamGroup, IamRole, IamUser, PolicyRef};
use super::ratelimit::Service;
use super::trust::trusted_principals;

/// The most an IAM list call returns per page.
pub const MAX_PAGE: i32 = 1000;

/// One page of GetAccountAuthorizationDetails: users (with their groups), groups and roles.
#[derive(Default)]
pub struct AuthorizationDetails {
    pub users: Vec<IamUser>,
    pub groups: Vec<IamGroup>,
    pub roles: Vec<IamRole>,
}

fn date(d: Option<&aws_smithy_types::DateTime>) -> Option<String> {
    d.and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
}

/// A page of GetAccountAuthorizationDetails. With `policies`, each item's attached managed
/// policies and inline policy names, which the page carries anyway.
pub async fn authorization_details(
    session: &Session,
    marker: Option<String>,
    page_size: i32,
    policies: bool,
) -> Result<Page<AuthorizationDetails>, AwsError> {
    let client = aws_sdk_iam::Client::new(&session.global);
    let output = session
        .caller
        .call(Service::Iam, "GetAccountAuthorizationDetails", || async {
            client
                .get_account_authorization_details()
                .filter(EntityType::User)
                .filter(EntityType::Group)
                .filter(EntityType::Role)
                .set_marker(marker.clone())
                .max_items(page_size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetAccountAuthorizationDetails", e))
        })
        .await?;
    let details = AuthorizationDetails {
        users: output
            .user_detail_list()
            .iter()
            .map(|u| IamUser {
                name: u.user_name().unwrap_or_default().into(),
                id: u.user_id().unwrap_or_default().to_string(),
                arn: u.arn().unwrap_or_default().to_string(),
                path: u.path().unwrap_or("/").to_string(),
                groups: u.group_list().iter().map(|g| g.as_str().into()).collect(),
                access_keys: None,
                policies: policies.then(|| {
                    attached(
                        u.attached_managed_policies(),
                        u.user_policy_list().iter().filter_map(|p| p.policy_name()),
                    )
                }),
                account_id: None,
            })
            .collect(),
        groups: output
            .group_detail_list()
            .iter()
            .map(|g| IamGroup {
                name: g.group_name().unwrap_or_default().to_string(),
                id: g.group_id().unwrap_or_default().to_string(),
                arn: g.arn().unwrap_or_default().to_string(),
                path: g.path().unwrap_or("/").to_string(),
                members: Vec::new(),
                policies: policies.then(|| {
                    attached(
                        g.attached_managed_policies(),
                        g.group_policy_list().iter().filter_map(|p| p.policy_name()),
                    )
                }),
                account_id: None,
            })
            .collect(),
        roles: output
            .role_detail_list()
            .iter()
            .map(|r| IamRole {
                name: r.role_name().unwrap_or_default().to_string(),
                id: r.role_id().unwrap_or_default().to_string(),
                arn: r.arn().unwrap_or_default().to_string(),
                path: r.path().unwrap_or("/").to_string(),
                trusted_principals: r
                    .assume_role_policy_document()
                    .map(trusted_principals)
                    .unwrap_or_default(),
                policies: policies.then(|| {
                    attached(
                        r.attached_managed_policies(),
                        r.role_policy_list().iter().filter_map(|p| p.policy_name()),
                    )
                }),
                account_id: None,
            })
            .collect(),
    };
    let next = if output.is_truncated() {
        output.marker().map(str::to_string)
    } else {
        None
    };
    Ok(Page::new(details, next))
}

fn attached<'a>(
    managed: &[aws_sdk_iam::types::AttachedPolicy],
    inline: impl Iterator<Item = &'a str>,
) -> AttachedPolicies {
    AttachedPolicies {
        managed: managed
            .iter()
            .map(|p| PolicyRef {
                name: p.policy_name().unwrap_or_default().to_string(),
                arn: p.policy_arn().unwrap_or_default().to_string(),
            })
            .collect(),
        inline: inline.map(str::to_string).collect(),
    }
}

/// One page of a user's access keys.
pub async fn list_access_keys(
    session: &Session,
    user: &str,
    marker: Option<String>,
    page_size: i32,
) -> Result<Page<Vec<AccessKey>>, AwsError> {
    let client = aws_sdk_iam::Client::new(&session.global);
    let output = session
        .caller
        .call(Service::Iam, "ListAccessKeys", || async {
            client
                .list_access_keys()
                .user_name(user)
                .set_marker(marker.clone())
                .max_items(page_size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListAccessKeys", e))
        })
        .await?;
    let keys = output
        .access_key_metadata()
        .iter()
        .map(|k| AccessKey {
            id: k.access_key_id().unwrap_or_default().to_string(),
            status: k
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            created: date(k.create_date()),
            last_used: None,
            last_used_service: None,
        })
        .collect();
    let next = if output.is_truncated() {
        output.marker().map(str::to_string)
    } else {
        None
    };
    Ok(Page::new(keys, next))
}

/// When and where an access key was last used (IAM has no list call for this).
pub async fn access_key_last_used(session: &Session, key: &mut AccessKey) -> Result<(), AwsError> {
    let client = aws_sdk_iam::Client::new(&session.global);
    let output = session
        .caller
        .call(Service::Iam, "GetAccessKeyLastUsed", || async {
            client
                .get_access_key_last_used()
                .access_key_id(&key.id)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetAccessKeyLastUsed", e))
        })
        .await?;
    if let Some(used) = output.access_key_last_used() {
        key.last_used = date(used.last_used_date());
        key.last_used_service =
            Some(used.service_name().to_string()).filter(|s| !s.is_empty() && s != "N/A");
    }
    Ok(())
}
