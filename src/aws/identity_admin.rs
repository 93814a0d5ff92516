//! Writing the identities the operator manages: Identity Store users and groups (create,
//! describe, update with attribute operations, delete) and IAM users (get, create, path, tags,
//! permissions boundary, delete), and the reads that say what still hangs on one before it may
//! be deleted.

use std::collections::BTreeMap;

use aws_sdk_identitystore::types::{
    AlternateIdentifier, AttributeOperation, Email, MemberId, Name, UniqueAttribute,
};
use aws_smithy_types::Document;

use super::credentials::Session;
use super::error::{AwsError, ErrorKind};
use super::identity_center::{MAX_PAGE, list_group_memberships};
use super::model::every_page;
use super::ratelimit::Service;
use crate::identity::record::IdentityKind;
use crate::identity::shape::{Change, EmailShape, GroupShape, IamShape, Shape, UserShape};

fn store_client(session: &Session) -> aws_sdk_identitystore::Client {
    aws_sdk_identitystore::Client::new(&session.sso)
}

fn iam_client(session: &Session) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&session.global)
}

fn invalid(operation: &'static str, error: impl std::fmt::Display) -> AwsError {
    AwsError::new(operation, ErrorKind::Invalid, error.to_string())
}

/// A JSON value as the Identity Store's document type.
fn document(value: &serde_json::Value) -> Document {
    match value {
        serde_json::Value::Null => Document::Null,
        serde_json::Value::Bool(b) => Document::Bool(*b),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(u) => Document::Number(aws_smithy_types::Number::PosInt(u)),
            None => Document::Number(aws_smithy_types::Number::Float(
                n.as_f64().unwrap_or_default(),
            )),
        },
        serde_json::Value::String(s) => Document::String(s.clone()),
        serde_json::Value::Array(items) => Document::Array(items.iter().map(document).collect()),
        serde_json::Value::Object(map) => {
            Document::Object(map.iter().map(|(k, v)| (k.clone(), document(v))).collect())
        }
    }
}

/// One user or group as AWS holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// UserId or GroupId; the IAM user's id.
    pub id: String,
    /// The IAM user's ARN.
    pub arn: Option<String>,
    pub shape: Shape,
    /// The IAM user's create-token tag.
    pub token: Option<String>,
}

/// Where identities are: the identity store (its id), or the IAM of the session's account.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    pub kind: IdentityKind,
    pub store: &'a str,
}

/// The one with this name (a user name, a group's display name), if there is one.
pub async fn find(
    session: &Session,
    place: Place<'_>,
    name: &str,
) -> Result<Option<Found>, AwsError> {
    match place.kind {
        IdentityKind::IdentityCenterUser | IdentityKind::IdentityCenterGroup => {
            let Some(id) = store_id_of(session, place, name).await? else {
                return Ok(None);
            };
            read(session, place, &id).await
        }
        IdentityKind::IamUser => read(session, place, name).await,
    }
}

async fn store_id_of(
    session: &Session,
    place: Place<'_>,
    name: &str,
) -> Result<Option<String>, AwsError> {
    let client = store_client(session);
    let user = place.kind == IdentityKind::IdentityCenterUser;
    let unique = UniqueAttribute::builder()
        .attribute_path(if user { "userName" } else { "displayName" })
        .attribute_value(Document::String(name.to_string()))
        .build()
        .map_err(|e| invalid("UniqueAttribute", e))?;
    let identifier = AlternateIdentifier::UniqueAttribute(unique);
    let found = if user {
        call!(
            session,
            Service::IdentityStore,
            "GetUserId",
            client
                .get_user_id()
                .identity_store_id(place.store)
                .alternate_identifier(identifier.clone())
        )
        .map(|o| o.user_id().to_string())
    } else {
        call!(
            session,
            Service::IdentityStore,
            "GetGroupId",
            client
                .get_group_id()
                .identity_store_id(place.store)
                .alternate_identifier(identifier.clone())
        )
        .map(|o| o.group_id().to_string())
    };
    match found {
        Ok(id) => Ok(Some(id)),
        Err(error) if error.kind == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The one with this id (Identity Store) or name (IAM); `None` when AWS has none.
pub async fn read(
    session: &Session,
    place: Place<'_>,
    id: &str,
) -> Result<Option<Found>, AwsError> {
    let read = match place.kind {
        IdentityKind::IdentityCenterUser => describe_user(session, place.store, id).await,
        IdentityKind::IdentityCenterGroup => describe_group(session, place.store, id).await,
        IdentityKind::IamUser => get_iam_user(session, id).await,
    };
    match read {
        Ok(found) => Ok(Some(found)),
        Err(error) if error.kind == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

async fn describe_user(session: &Session, store: &str, id: &str) -> Result<Found, AwsError> {
    let client = store_client(session);
    let user = call!(
        session,
        Service::IdentityStore,
        "DescribeUser",
        client.describe_user().identity_store_id(store).user_id(id)
    )?;
    let email = user
        .emails()
        .iter()
        .find(|e| e.primary())
        .or(user.emails().first())
        .map(|e| EmailShape {
            value: e.value().unwrap_or_default().to_string(),
            kind: e.r#type().unwrap_or("work").to_string(),
            primary: e.primary(),
        });
    let name = user.name();
    Ok(Found {
        id: user.user_id().to_string(),
        arn: None,
        shape: Shape::User(UserShape {
            display_name: user.display_name().unwrap_or_default().to_string(),
            given_name: name
                .and_then(|n| n.given_name())
                .unwrap_or_default()
                .to_string(),
            family_name: name
                .and_then(|n| n.family_name())
                .unwrap_or_default()
                .to_string(),
            email,
            title: user.title().map(str::to_string),
            locale: user.locale().map(str::to_string),
            timezone: user.timezone().map(str::to_string),
        }),
        token: None,
    })
}

async fn describe_group(session: &Session, store: &str, id: &str) -> Result<Found, AwsError> {
    let client = store_client(session);
    let group = call!(
        session,
        Service::IdentityStore,
        "DescribeGroup",
        client
            .describe_group()
            .identity_store_id(store)
            .group_id(id)
    )?;
    Ok(Found {
        id: group.group_id().to_string(),
        arn: None,
        shape: Shape::Group(GroupShape {
            display_name: group.display_name().unwrap_or_default().to_string(),
            description: group.description().map(str::to_string),
        }),
        token: None,
    })
}

async fn get_iam_user(session: &Session, name: &str) -> Result<Found, AwsError> {
    let client = iam_client(session);
    let output = call!(
        session,
        Service::Iam,
        "GetUser",
        client.get_user().user_name(name)
    )?;
    let user = output
        .user()
        .ok_or_else(|| invalid("GetUser", "the answer has no user"))?;
    let mut tags: BTreeMap<String, String> = user
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    let token = tags.remove(crate::permission_set::shape::CREATE_TOKEN_TAG);
    Ok(Found {
        id: user.user_id().to_string(),
        arn: Some(user.arn().to_string()),
        shape: Shape::Iam(IamShape {
            path: user.path().to_string(),
            tags,
            boundary: user
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_string),
        }),
        token,
    })
}

/// Creates it with every declared attribute; `token` is tagged on an IAM user. Returns its id
/// (and an IAM user's ARN).
pub async fn create(
    session: &Session,
    place: Place<'_>,
    name: &str,
    shape: &Shape,
    token: &str,
) -> Result<(String, Option<String>), AwsError> {
    match shape {
        Shape::User(user) => {
            let client = store_client(session);
            let person = Name::builder()
                .given_name(&user.given_name)
                .family_name(&user.family_name)
                .build();
            let emails = user.email.as_ref().map(|e| {
                vec![
                    Email::builder()
                        .value(&e.value)
                        .r#type(&e.kind)
                        .primary(e.primary)
                        .build(),
                ]
            });
            let output = call!(
                session,
                Service::IdentityStore,
                "CreateUser",
                client
                    .create_user()
                    .identity_store_id(place.store)
                    .user_name(name)
                    .display_name(&user.display_name)
                    .name(person.clone())
                    .set_emails(emails.clone())
                    .set_title(user.title.clone())
                    .set_locale(user.locale.clone())
                    .set_timezone(user.timezone.clone())
            )?;
            Ok((output.user_id().to_string(), None))
        }
        Shape::Group(group) => {
            let client = store_client(session);
            let output = call!(
                session,
                Service::IdentityStore,
                "CreateGroup",
                client
                    .create_group()
                    .identity_store_id(place.store)
                    .display_name(&group.display_name)
                    .set_description(group.description.clone())
            )?;
            Ok((output.group_id().to_string(), None))
        }
        Shape::Iam(user) => {
            let client = iam_client(session);
            let mut tags = iam_tags(&user.tags)?;
            tags.push(iam_tag(
                crate::permission_set::shape::CREATE_TOKEN_TAG,
                token,
            )?);
            let output = call!(
                session,
                Service::Iam,
                "CreateUser",
                client
                    .create_user()
                    .user_name(name)
                    .path(&user.path)
                    .set_tags(Some(tags.clone()))
                    .set_permissions_boundary(user.boundary.clone())
            )?;
            let created = output
                .user()
                .ok_or_else(|| invalid("CreateUser", "the answer has no user"))?;
            Ok((
                created.user_id().to_string(),
                Some(created.arn().to_string()),
            ))
        }
    }
}

fn iam_tag(key: &str, value: &str) -> Result<aws_sdk_iam::types::Tag, AwsError> {
    aws_sdk_iam::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| invalid("Tag", e))
}

fn iam_tags(tags: &BTreeMap<String, String>) -> Result<Vec<aws_sdk_iam::types::Tag>, AwsError> {
    tags.iter().map(|(k, v)| iam_tag(k, v)).collect()
}

/// Makes the changes: the Identity Store's in one UpdateUser or UpdateGroup, an IAM user's one
/// call each. `id` is the UserId or GroupId, or the IAM user's name.
pub async fn write(
    session: &Session,
    place: Place<'_>,
    id: &str,
    changes: &[Change],
) -> Result<(), AwsError> {
    let operations: Vec<AttributeOperation> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Attribute { path, value } => Some(
                AttributeOperation::builder()
                    .attribute_path(*path)
                    .set_attribute_value(value.as_ref().map(document))
                    .build()
                    .map_err(|e| invalid("AttributeOperation", e)),
            ),
            _ => None,
        })
        .collect::<Result<_, _>>()?;
    if !operations.is_empty() {
        let client = store_client(session);
        if place.kind == IdentityKind::IdentityCenterUser {
            call!(
                session,
                Service::IdentityStore,
                "UpdateUser",
                client
                    .update_user()
                    .identity_store_id(place.store)
                    .user_id(id)
                    .set_operations(Some(operations.clone()))
            )?;
        } else {
            call!(
                session,
                Service::IdentityStore,
                "UpdateGroup",
                client
                    .update_group()
                    .identity_store_id(place.store)
                    .group_id(id)
                    .set_operations(Some(operations.clone()))
            )?;
        }
    }
    let client = iam_client(session);
    for change in changes {
        match change {
            Change::Attribute { .. } => {}
            Change::IamPath(path) => {
                call!(
                    session,
                    Service::Iam,
                    "UpdateUser",
                    client.update_user().user_name(id).new_path(path)
                )?;
            }
            Change::IamTag(tags) => {
                let tags = iam_tags(tags)?;
                call!(
                    session,
                    Service::Iam,
                    "TagUser",
                    client.tag_user().user_name(id).set_tags(Some(tags.clone()))
                )?;
            }
            Change::IamUntag(keys) => {
                call!(
                    session,
                    Service::Iam,
                    "UntagUser",
                    client
                        .untag_user()
                        .user_name(id)
                        .set_tag_keys(Some(keys.clone()))
                )?;
            }
            Change::IamBoundary(arn) => {
                call!(
                    session,
                    Service::Iam,
                    "PutUserPermissionsBoundary",
                    client
                        .put_user_permissions_boundary()
                        .user_name(id)
                        .permissions_boundary(arn)
                )?;
            }
            Change::IamBoundaryRemoved => {
                call!(
                    session,
                    Service::Iam,
                    "DeleteUserPermissionsBoundary",
                    client.delete_user_permissions_boundary().user_name(id)
                )?;
            }
        }
    }
    Ok(())
}

/// What hangs on the user or group that deleting it would take away, each named: group
/// memberships (a user), members (a group); for an IAM user, what IAM requires gone first
/// (groups, attached and inline policies, access keys, a console password, MFA devices).
pub async fn attachments(
    session: &Session,
    place: Place<'_>,
    id: &str,
) -> Result<Vec<String>, AwsError> {
    match place.kind {
        IdentityKind::IdentityCenterUser => {
            let client = store_client(session);
            let groups = every_page(|token| {
                let client = client.clone();
                async move {
                    let output = call!(
                        session,
                        Service::IdentityStore,
                        "ListGroupMembershipsForMember",
                        client
                            .list_group_memberships_for_member()
                            .identity_store_id(place.store)
                            .member_id(MemberId::UserId(id.to_string()))
                            .set_next_token(token.clone())
                            .max_results(MAX_PAGE)
                    )?;
                    let groups: Vec<String> = output
                        .group_memberships()
                        .iter()
                        .filter_map(|m| m.group_id().map(str::to_string))
                        .collect();
                    Ok::<_, AwsError>(super::model::Page::new(
                        groups,
                        output.next_token().map(str::to_string),
                    ))
                }
            })
            .await?;
            Ok(groups
                .into_iter()
                .map(|g| format!("membership of group {g}"))
                .collect())
        }
        IdentityKind::IdentityCenterGroup => {
            let members = every_page(|token| {
                list_group_memberships(session, place.store, id, token, MAX_PAGE)
            })
            .await?;
            Ok(members.into_iter().map(|m| format!("member {m}")).collect())
        }
        IdentityKind::IamUser => iam_attachments(session, id).await,
    }
}

async fn iam_attachments(session: &Session, name: &str) -> Result<Vec<String>, AwsError> {
    let client = iam_client(session);
    let mut found = Vec::new();
    let groups = call!(
        session,
        Service::Iam,
        "ListGroupsForUser",
        client.list_groups_for_user().user_name(name)
    )?;
    found.extend(
        groups
            .groups()
            .iter()
            .map(|g| format!("membership of IAM group {}", g.group_name())),
    );
    let attached = call!(
        session,
        Service::Iam,
        "ListAttachedUserPolicies",
        client.list_attached_user_policies().user_name(name)
    )?;
    found.extend(
        attached
            .attached_policies()
            .iter()
            .map(|p| format!("attached policy {}", p.policy_arn().unwrap_or_default())),
    );
    let inline = call!(
        session,
        Service::Iam,
        "ListUserPolicies",
        client.list_user_policies().user_name(name)
    )?;
    found.extend(
        inline
            .policy_names()
            .iter()
            .map(|p| format!("inline policy {p}")),
    );
    let keys = call!(
        session,
        Service::Iam,
        "ListAccessKeys",
        client.list_access_keys().user_name(name)
    )?;
    found.extend(
        keys.access_key_metadata()
            .iter()
            .map(|k| format!("access key {}", k.access_key_id().unwrap_or_default())),
    );
    match call!(
        session,
        Service::Iam,
        "GetLoginProfile",
        client.get_login_profile().user_name(name)
    ) {
        Ok(_) => found.push("a console password".to_string()),
        Err(error) if error.kind == ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let devices = call!(
        session,
        Service::Iam,
        "ListMFADevices",
        client.list_mfa_devices().user_name(name)
    )?;
    found.extend(
        devices
            .mfa_devices()
            .iter()
            .map(|d| format!("MFA device {}", d.serial_number())),
    );
    Ok(found)
}

/// Deletes it; gone already counts as deleted.
pub async fn delete(session: &Session, place: Place<'_>, id: &str) -> Result<(), AwsError> {
    let deleted = match place.kind {
        IdentityKind::IdentityCenterUser => {
            let client = store_client(session);
            call!(
                session,
                Service::IdentityStore,
                "DeleteUser",
                client
                    .delete_user()
                    .identity_store_id(place.store)
                    .user_id(id)
            )
            .map(|_| ())
        }
        IdentityKind::IdentityCenterGroup => {
            let client = store_client(session);
            call!(
                session,
                Service::IdentityStore,
                "DeleteGroup",
                client
                    .delete_group()
                    .identity_store_id(place.store)
                    .group_id(id)
            )
            .map(|_| ())
        }
        IdentityKind::IamUser => {
            let client = iam_client(session);
            call!(
                session,
                Service::Iam,
                "DeleteUser",
                client.delete_user().user_name(id)
            )
            .map(|_| ())
        }
    };
    match deleted {
        Err(error) if error.kind == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
