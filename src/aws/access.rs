//! Granting, checking and revoking the three kinds of access. Every operation is idempotent:
//! creating what exists and deleting what is gone are answered as success, with the caller told
//! which.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_identitystore::types::{AlternateIdentifier, MemberId, UniqueAttribute};
use aws_sdk_ssoadmin::types::{PrincipalType, StatusValues, TargetType};
use aws_smithy_types::Document;

use super::credentials::Session;
use super::error::{AwsError, ErrorKind};
use super::identity_center;
use super::model::{Access, every_page};
use super::ratelimit::Service;

/// How long one call waits for an asynchronous assignment operation before handing back its
/// request id to be looked at again later.
pub const POLL_BUDGET: Duration = Duration::from_secs(60);

/// Where an asynchronous assignment operation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    Succeeded,
    Failed(String),
    InProgress,
}

/// What a grant or revoke call did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Done now (the request id of an assignment operation, if any).
    Done(Option<String>),
    /// It was already so (the access existed, or was already gone).
    AlreadySo,
    /// Still running in AWS: look again with this request id.
    InProgress(String),
}

/// Runs an assignment operation, trying again while AWS reports a conflicting operation on the
/// same assignment (ConflictException) still running.
async fn through_conflicts<T, F, Fut>(mut operation: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let mut delay = Duration::from_millis(500);
    for _ in 0..6 {
        match operation().await {
            Err(e) if e.kind == ErrorKind::Conflict => {
                tracing::debug!(error = %e, ?delay, "a conflicting assignment operation is running; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
            other => return other,
        }
    }
    operation().await
}

fn progress(status: Option<&StatusValues>, reason: Option<&str>) -> Progress {
    match status {
        Some(StatusValues::Succeeded) => Progress::Succeeded,
        Some(StatusValues::Failed) => {
            Progress::Failed(reason.unwrap_or("no reason given").to_string())
        }
        _ => Progress::InProgress,
    }
}

/// Whether `access` exists in AWS now.
pub async fn exists(session: &Session, access: &Access) -> Result<bool, AwsError> {
    match access {
        Access::Assignment {
            instance_arn,
            account_id,
            permission_set_arn,
            principal_type,
            principal_id,
        } => Ok(
            pair_assignments(session, instance_arn, account_id, permission_set_arn)
                .await?
                .contains(&(principal_type.clone(), principal_id.clone())),
        ),
        Access::SsoMembership {
            identity_store_id,
            group_id,
            user_id,
        } => Ok(membership_id(session, identity_store_id, group_id, user_id)
            .await?
            .is_some()),
        Access::IamMembership { group, user } => {
            Ok(iam_groups_of_user(session, user).await?.contains(group))
        }
    }
}

/// Every principal (type, id) assigned a permission set on an account: the same paged listing
/// the sync uses, for one (account, permission set) pair.
pub async fn pair_assignments(
    session: &Session,
    instance_arn: &str,
    account_id: &str,
    permission_set_arn: &str,
) -> Result<BTreeSet<(String, String)>, AwsError> {
    let assignments = every_page(|token| {
        identity_center::list_account_assignments(
            session,
            instance_arn,
            account_id,
            permission_set_arn,
            token,
            identity_center::MAX_PAGE,
        )
    })
    .await?;
    Ok(assignments
        .into_iter()
        .map(|a| (a.principal_type.to_string(), a.principal_id.to_string()))
        .collect())
}

/// The names of the IAM groups a user belongs to.
pub async fn iam_groups_of_user(
    session: &Session,
    user: &str,
) -> Result<BTreeSet<String>, AwsError> {
    let client = aws_sdk_iam::Client::new(&session.global);
    let mut found = BTreeSet::new();
    let mut marker: Option<String> = None;
    loop {
        let output = session
            .caller
            .call(Service::Iam, "ListGroupsForUser", || async {
                client
                    .list_groups_for_user()
                    .user_name(user)
                    .set_marker(marker.clone())
                    .max_items(1000)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("ListGroupsForUser", e))
            })
            .await?;
        found.extend(output.groups().iter().map(|g| g.group_name().to_string()));
        marker = output
            .marker()
            .map(str::to_string)
            .filter(|_| output.is_truncated());
        if marker.is_none() {
            return Ok(found);
        }
    }
}

async fn membership_id(
    session: &Session,
    store: &str,
    group: &str,
    user: &str,
) -> Result<Option<String>, AwsError> {
    let client = aws_sdk_identitystore::Client::new(&session.sso);
    let result = session
        .caller
        .call(Service::IdentityStore, "GetGroupMembershipId", || async {
            client
                .get_group_membership_id()
                .identity_store_id(store)
                .group_id(group)
                .member_id(MemberId::UserId(user.to_string()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetGroupMembershipId", e))
        })
        .await;
    match result {
        Ok(output) => Ok(Some(output.membership_id().to_string())),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Starts granting `access`. An assignment AWS is still creating comes back as
/// `Change::InProgress` with its request id, to be recorded and then `settle`d.
pub async fn grant(session: &Session, access: &Access) -> Result<Change, AwsError> {
    match access {
        Access::Assignment {
            instance_arn,
            account_id,
            permission_set_arn,
            principal_type,
            principal_id,
        } => {
            let client = aws_sdk_ssoadmin::Client::new(&session.sso);
            let output = through_conflicts(|| {
                session
                    .caller
                    .call(Service::SsoAdmin, "CreateAccountAssignment", || async {
                        client
                            .create_account_assignment()
                            .instance_arn(instance_arn)
                            .target_id(account_id)
                            .target_type(TargetType::AwsAccount)
                            .permission_set_arn(permission_set_arn)
                            .principal_type(PrincipalType::from(principal_type.as_str()))
                            .principal_id(principal_id)
                            .send()
                            .await
                            .map_err(|e| AwsError::from_sdk("CreateAccountAssignment", e))
                    })
            })
            .await?;
            let status = output.account_assignment_creation_status();
            let request = status
                .and_then(|s| s.request_id())
                .unwrap_or_default()
                .to_string();
            let first = progress(
                status.and_then(|s| s.status()),
                status.and_then(|s| s.failure_reason()),
            );
            first_answer(request, first, Direction::Create)
        }
        Access::SsoMembership {
            identity_store_id,
            group_id,
            user_id,
        } => {
            let client = aws_sdk_identitystore::Client::new(&session.sso);
            let result = session
                .caller
                .call(Service::IdentityStore, "CreateGroupMembership", || async {
                    client
                        .create_group_membership()
                        .identity_store_id(identity_store_id)
                        .group_id(group_id)
                        .member_id(MemberId::UserId(user_id.clone()))
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("CreateGroupMembership", e))
                })
                .await;
            match result {
                Ok(_) => Ok(Change::Done(None)),
                Err(e) if e.kind == ErrorKind::Conflict => Ok(Change::AlreadySo),
                Err(e) => Err(e),
            }
        }
        Access::IamMembership { group, user } => {
            let client = aws_sdk_iam::Client::new(&session.global);
            session
                .caller
                .call(Service::Iam, "AddUserToGroup", || async {
                    client
                        .add_user_to_group()
                        .group_name(group)
                        .user_name(user)
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("AddUserToGroup", e))
                })
                .await?;
            Ok(Change::Done(None))
        }
    }
}

/// Starts revoking `access`. An assignment AWS is still deleting comes back as
/// `Change::InProgress` with its request id, to be recorded and then `settle`d.
pub async fn revoke(session: &Session, access: &Access) -> Result<Change, AwsError> {
    match access {
        Access::Assignment {
            instance_arn,
            account_id,
            permission_set_arn,
            principal_type,
            principal_id,
        } => {
            let client = aws_sdk_ssoadmin::Client::new(&session.sso);
            let result = through_conflicts(|| {
                session
                    .caller
                    .call(Service::SsoAdmin, "DeleteAccountAssignment", || async {
                        client
                            .delete_account_assignment()
                            .instance_arn(instance_arn)
                            .target_id(account_id)
                            .target_type(TargetType::AwsAccount)
                            .permission_set_arn(permission_set_arn)
                            .principal_type(PrincipalType::from(principal_type.as_str()))
                            .principal_id(principal_id)
                            .send()
                            .await
                            .map_err(|e| AwsError::from_sdk("DeleteAccountAssignment", e))
                    })
            })
            .await;
            let output = match result {
                Ok(output) => output,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(Change::AlreadySo),
                Err(e) => return Err(e),
            };
            let status = output.account_assignment_deletion_status();
            let request = status
                .and_then(|s| s.request_id())
                .unwrap_or_default()
                .to_string();
            let first = progress(
                status.and_then(|s| s.status()),
                status.and_then(|s| s.failure_reason()),
            );
            first_answer(request, first, Direction::Delete)
        }
        Access::SsoMembership {
            identity_store_id,
            group_id,
            user_id,
        } => {
            let Some(id) = membership_id(session, identity_store_id, group_id, user_id).await?
            else {
                return Ok(Change::AlreadySo);
            };
            let client = aws_sdk_identitystore::Client::new(&session.sso);
            let result = session
                .caller
                .call(Service::IdentityStore, "DeleteGroupMembership", || async {
                    client
                        .delete_group_membership()
                        .identity_store_id(identity_store_id)
                        .membership_id(&id)
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("DeleteGroupMembership", e))
                })
                .await;
            match result {
                Ok(_) => Ok(Change::Done(None)),
                Err(e) if e.kind == ErrorKind::NotFound => Ok(Change::AlreadySo),
                Err(e) => Err(e),
            }
        }
        Access::IamMembership { group, user } => {
            let client = aws_sdk_iam::Client::new(&session.global);
            let result = session
                .caller
                .call(Service::Iam, "RemoveUserFromGroup", || async {
                    client
                        .remove_user_from_group()
                        .group_name(group)
                        .user_name(user)
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("RemoveUserFromGroup", e))
                })
                .await;
            match result {
                Ok(_) => Ok(Change::Done(None)),
                Err(e) if e.kind == ErrorKind::NotFound => Ok(Change::AlreadySo),
                Err(e) => Err(e),
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Create,
    Delete,
}

impl Direction {
    fn operation(self) -> &'static str {
        match self {
            Self::Create => "CreateAccountAssignment",
            Self::Delete => "DeleteAccountAssignment",
        }
    }
}

/// A FAILED assignment operation, as an error that carries AWS's reason.
fn failed(direction: Direction, request: String, reason: &str) -> AwsError {
    let mut error = AwsError::new(
        direction.operation(),
        ErrorKind::Other,
        format!("the request FAILED: {reason}"),
    );
    error.code = Some("FAILED".into());
    error.request_id = Some(request);
    error
}

/// What the answer to a create or delete says, before any poll.
fn first_answer(
    request: String,
    first: Progress,
    direction: Direction,
) -> Result<Change, AwsError> {
    match first {
        Progress::Succeeded => Ok(Change::Done(Some(request))),
        Progress::Failed(reason) => Err(failed(direction, request, &reason)),
        Progress::InProgress => Ok(Change::InProgress(request)),
    }
}

/// Looks at an assignment operation by request id.
pub async fn poll(
    session: &Session,
    instance: &str,
    request: &str,
    direction: Direction,
) -> Result<Progress, AwsError> {
    let client = aws_sdk_ssoadmin::Client::new(&session.sso);
    match direction {
        Direction::Create => {
            let output = session
                .caller
                .call(
                    Service::SsoAdmin,
                    "DescribeAccountAssignmentCreationStatus",
                    || async {
                        client
                            .describe_account_assignment_creation_status()
                            .instance_arn(instance)
                            .account_assignment_creation_request_id(request)
                            .send()
                            .await
                            .map_err(|e| {
                                AwsError::from_sdk("DescribeAccountAssignmentCreationStatus", e)
                            })
                    },
                )
                .await?;
            let s = output.account_assignment_creation_status();
            Ok(progress(
                s.and_then(|s| s.status()),
                s.and_then(|s| s.failure_reason()),
            ))
        }
        Direction::Delete => {
            let output = session
                .caller
                .call(
                    Service::SsoAdmin,
                    "DescribeAccountAssignmentDeletionStatus",
                    || async {
                        client
                            .describe_account_assignment_deletion_status()
                            .instance_arn(instance)
                            .account_assignment_deletion_request_id(request)
                            .send()
                            .await
                            .map_err(|e| {
                                AwsError::from_sdk("DescribeAccountAssignmentDeletionStatus", e)
                            })
                    },
                )
                .await?;
            let s = output.account_assignment_deletion_status();
            Ok(progress(
                s.and_then(|s| s.status()),
                s.and_then(|s| s.failure_reason()),
            ))
        }
    }
}

/// Waits for an assignment operation to leave IN_PROGRESS, polling with a growing delay, up to
/// `POLL_BUDGET`; a FAILED operation becomes an error carrying AWS's reason.
pub async fn settle(
    session: &Session,
    instance: &str,
    request: String,
    first: Progress,
    direction: Direction,
) -> Result<Change, AwsError> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut state = first;
    loop {
        match state {
            Progress::Succeeded => return Ok(Change::Done(Some(request))),
            Progress::Failed(reason) => return Err(failed(direction, request, &reason)),
            Progress::InProgress if started.elapsed() >= POLL_BUDGET => {
                return Ok(Change::InProgress(request));
            }
            Progress::InProgress => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                state = poll(session, instance, &request, direction).await?;
            }
        }
    }
}

/// Looks up an Identity Center user id by user name, or a group id by display name.
pub async fn principal_id(
    session: &Session,
    store: &str,
    group: bool,
    name: &str,
) -> Result<Option<String>, AwsError> {
    let client = aws_sdk_identitystore::Client::new(&session.sso);
    let (path, operation) = if group {
        ("displayName", "GetGroupId")
    } else {
        ("userName", "GetUserId")
    };
    let attribute = UniqueAttribute::builder()
        .attribute_path(path)
        .attribute_value(Document::String(name.to_string()))
        .build()
        .map_err(|e| AwsError::new(operation, ErrorKind::Invalid, e.to_string()))?;
    let identifier = AlternateIdentifier::UniqueAttribute(attribute);
    let result = if group {
        session
            .caller
            .call(Service::IdentityStore, operation, || async {
                client
                    .get_group_id()
                    .identity_store_id(store)
                    .alternate_identifier(identifier.clone())
                    .send()
                    .await
                    .map(|o| o.group_id().to_string())
                    .map_err(|e| AwsError::from_sdk(operation, e))
            })
            .await
    } else {
        session
            .caller
            .call(Service::IdentityStore, operation, || async {
                client
                    .get_user_id()
                    .identity_store_id(store)
                    .alternate_identifier(identifier.clone())
                    .send()
                    .await
                    .map(|o| o.user_id().to_string())
                    .map_err(|e| AwsError::from_sdk(operation, e))
            })
            .await
    };
    match result {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
