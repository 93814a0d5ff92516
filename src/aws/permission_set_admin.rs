//! Writing permission sets (sso-admin): create, update, attach and detach, inline policy,
//! boundary, tags, provisioning and delete; and the reads a declared set is checked with (its
//! tags, the accounts it is provisioned to, a set found by name).

use std::collections::BTreeMap;

use aws_sdk_ssoadmin::types::{
    CustomerManagedPolicyReference, PermissionSetProvisioningStatus, ProvisionTargetType,
    StatusValues, Tag,
};

use super::credentials::Session;
use super::error::{AwsError, ErrorKind};
use super::identity_center::{describe_permission_set, list_permission_sets};
use super::model::{CustomerPolicyRef, PermissionSet, PermissionsBoundary, every_page};
use super::ratelimit::Service;

fn client(session: &Session) -> aws_sdk_ssoadmin::Client {
    aws_sdk_ssoadmin::Client::new(&session.sso)
}

fn reference(policy: &CustomerPolicyRef) -> Result<CustomerManagedPolicyReference, AwsError> {
    CustomerManagedPolicyReference::builder()
        .name(&policy.name)
        .path(&policy.path)
        .build()
        .map_err(|e| {
            AwsError::new(
                "CustomerManagedPolicyReference",
                ErrorKind::Invalid,
                e.to_string(),
            )
        })
}

fn tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| AwsError::new("Tag", ErrorKind::Invalid, e.to_string()))
        })
        .collect()
}

/// Runs one sso-admin call through the throttle-aware caller.
macro_rules! sso {
    ($session:expr, $operation:literal, $call:expr) => {
        call!($session, Service::SsoAdmin, $operation, $call)
    };
}

/// Creates a set; returns its ARN.
pub async fn create(
    session: &Session,
    instance: &str,
    name: &str,
    description: Option<&str>,
    session_duration: &str,
    relay_state: Option<&str>,
    with_tags: &BTreeMap<String, String>,
) -> Result<String, AwsError> {
    let client = client(session);
    let tags = tags(with_tags)?;
    let output = sso!(
        session,
        "CreatePermissionSet",
        client
            .create_permission_set()
            .instance_arn(instance)
            .name(name)
            .set_description(description.map(str::to_string))
            .session_duration(session_duration)
            .set_relay_state(relay_state.map(str::to_string))
            .set_tags(Some(tags.clone()))
    )?;
    output
        .permission_set()
        .and_then(|p| p.permission_set_arn())
        .map(str::to_string)
        .ok_or_else(|| {
            AwsError::new(
                "CreatePermissionSet",
                ErrorKind::Invalid,
                "the answer has no ARN".to_string(),
            )
        })
}

pub async fn update(
    session: &Session,
    instance: &str,
    arn: &str,
    description: Option<&str>,
    session_duration: &str,
    relay_state: Option<&str>,
) -> Result<(), AwsError> {
    let client = client(session);
    sso!(
        session,
        "UpdatePermissionSet",
        client
            .update_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
            .set_description(description.map(str::to_string))
            .session_duration(session_duration)
            .set_relay_state(relay_state.map(str::to_string))
    )?;
    Ok(())
}

pub async fn attach_managed(
    session: &Session,
    instance: &str,
    arn: &str,
    policy: &str,
) -> Result<(), AwsError> {
    let client = client(session);
    sso!(
        session,
        "AttachManagedPolicyToPermissionSet",
        client
            .attach_managed_policy_to_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
            .managed_policy_arn(policy)
    )?;
    Ok(())
}

pub async fn detach_managed(
    session: &Session,
    instance: &str,
    arn: &str,
    policy: &str,
) -> Result<(), AwsError> {
    let client = client(session);
    sso!(
        session,
        "DetachManagedPolicyFromPermissionSet",
        client
            .detach_managed_policy_from_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
            .managed_policy_arn(policy)
    )?;
    Ok(())
}

pub async fn attach_customer(
    session: &Session,
    instance: &str,
    arn: &str,
    policy: &CustomerPolicyRef,
) -> Result<(), AwsError> {
    let client = client(session);
    let reference = reference(policy)?;
    sso!(
        session,
        "AttachCustomerManagedPolicyReferenceToPermissionSet",
        client
            .attach_customer_managed_policy_reference_to_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
            .customer_managed_policy_reference(reference.clone())
    )?;
    Ok(())
}

pub async fn detach_customer(
    session: &Session,
    instance: &str,
    arn: &str,
    policy: &CustomerPolicyRef,
) -> Result<(), AwsError> {
    let client = client(session);
    let reference = reference(policy)?;
    sso!(
        session,
        "DetachCustomerManagedPolicyReferenceFromPermissionSet",
        client
            .detach_customer_managed_policy_reference_from_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
            .customer_managed_policy_reference(reference.clone())
    )?;
    Ok(())
}

pub async fn put_inline(
    session: &Session,
    instance: &str,
    arn: &str,
    document: &str,
) -> Result<(), AwsError> {
    let client = client(session);
    sso!(
        session,
        "PutInlinePolicyToPermissionSet",
        client
            .put_inline_policy_to_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
            .inline_policy(document)
    )?;
    Ok(())
}

pub async fn delete_inline(session: &Session, instance: &str, arn: &str) -> Result<(), AwsError> {
    let client = client(session);
    sso!(
        session,
        "DeleteInlinePolicyFromPermissionSet",
        client
            .delete_inline_policy_from_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
    )?;
    Ok(())
}

pub async fn put_boundary(
    session: &Session,
    instance: &str,
    arn: &str,
    boundary: &PermissionsBoundary,
) -> Result<(), AwsError> {
    let client = client(session);
    let value = aws_sdk_ssoadmin::types::PermissionsBoundary::builder()
        .set_managed_policy_arn(boundary.managed_policy_arn.clone())
        .set_customer_managed_policy_reference(
            boundary
                .customer_managed_policy
                .as_ref()
                .map(reference)
                .transpose()?,
        )
        .build();
    sso!(
        session,
        "PutPermissionsBoundaryToPermissionSet",
        client
            .put_permissions_boundary_to_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
            .permissions_boundary(value.clone())
    )?;
    Ok(())
}

pub async fn delete_boundary(session: &Session, instance: &str, arn: &str) -> Result<(), AwsError> {
    let client = client(session);
    sso!(
        session,
        "DeletePermissionsBoundaryFromPermissionSet",
        client
            .delete_permissions_boundary_from_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
    )?;
    Ok(())
}

pub async fn tag(
    session: &Session,
    instance: &str,
    arn: &str,
    with: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let client = client(session);
    let tags = tags(with)?;
    sso!(
        session,
        "TagResource",
        client
            .tag_resource()
            .instance_arn(instance)
            .resource_arn(arn)
            .set_tags(Some(tags.clone()))
    )?;
    Ok(())
}

pub async fn untag(
    session: &Session,
    instance: &str,
    arn: &str,
    keys: &[String],
) -> Result<(), AwsError> {
    let client = client(session);
    sso!(
        session,
        "UntagResource",
        client
            .untag_resource()
            .instance_arn(instance)
            .resource_arn(arn)
            .set_tag_keys(Some(keys.to_vec()))
    )?;
    Ok(())
}

/// Every tag on a set (one call: a set holds at most 50).
pub async fn list_tags(
    session: &Session,
    instance: &str,
    arn: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let client = client(session);
    let mut found = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let output = sso!(
            session,
            "ListTagsForResource",
            client
                .list_tags_for_resource()
                .instance_arn(instance)
                .resource_arn(arn)
                .set_next_token(token.clone())
        )?;
        found.extend(
            output
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string())),
        );
        token = output
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(found);
        }
    }
}

pub async fn delete(session: &Session, instance: &str, arn: &str) -> Result<(), AwsError> {
    let client = client(session);
    sso!(
        session,
        "DeletePermissionSet",
        client
            .delete_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
    )?;
    Ok(())
}

/// Every account the set is provisioned to.
pub async fn provisioned_accounts(
    session: &Session,
    instance: &str,
    arn: &str,
) -> Result<Vec<String>, AwsError> {
    every_page(|token| {
        super::identity_center::list_provisioned_accounts(
            session,
            instance,
            arn,
            token,
            super::identity_center::MAX_PAGE,
        )
    })
    .await
}

/// How a provisioning request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provisioned {
    InProgress,
    Succeeded,
    Failed(String),
}

fn provisioned(status: Option<&PermissionSetProvisioningStatus>) -> Provisioned {
    match status.and_then(|s| s.status()) {
        Some(StatusValues::Succeeded) => Provisioned::Succeeded,
        Some(StatusValues::Failed) => Provisioned::Failed(
            status
                .and_then(|s| s.failure_reason())
                .unwrap_or("no reason given")
                .to_string(),
        ),
        _ => Provisioned::InProgress,
    }
}

/// Provisions the set to one account; returns the request id and where it stands.
pub async fn provision(
    session: &Session,
    instance: &str,
    arn: &str,
    account: &str,
) -> Result<(String, Provisioned), AwsError> {
    let client = client(session);
    let output = sso!(
        session,
        "ProvisionPermissionSet",
        client
            .provision_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
            .target_type(ProvisionTargetType::AwsAccount)
            .target_id(account)
    )?;
    let status = output.permission_set_provisioning_status();
    let request = status
        .and_then(|s| s.request_id())
        .map(str::to_string)
        .ok_or_else(|| {
            AwsError::new(
                "ProvisionPermissionSet",
                ErrorKind::Invalid,
                "the answer has no request id".to_string(),
            )
        })?;
    Ok((request, provisioned(status)))
}

pub async fn provisioning_status(
    session: &Session,
    instance: &str,
    request: &str,
) -> Result<Provisioned, AwsError> {
    let client = client(session);
    let output = sso!(
        session,
        "DescribePermissionSetProvisioningStatus",
        client
            .describe_permission_set_provisioning_status()
            .instance_arn(instance)
            .provision_permission_set_request_id(request)
    )?;
    Ok(provisioned(output.permission_set_provisioning_status()))
}

/// Every set of the instance by name (name → ARN): one listing and a description of each,
/// for a plan of many sets at once.
pub async fn names(
    session: &Session,
    instance: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let arns = every_page(|token| {
        list_permission_sets(session, instance, token, super::identity_center::MAX_PAGE)
    })
    .await?;
    let mut found = BTreeMap::new();
    for arn in &arns {
        let set = describe_permission_set(session, instance, arn).await?;
        found.insert(set.name, set.arn);
    }
    Ok(found)
}

/// The set named `name` in the instance, if there is one: every set is listed and described
/// until it is found (there is no lookup by name), so this runs only when a set is first
/// declared or its creation must be confirmed.
pub async fn find_by_name(
    session: &Session,
    instance: &str,
    name: &str,
) -> Result<Option<PermissionSet>, AwsError> {
    let mut token = None;
    loop {
        let page = list_permission_sets(session, instance, token, super::identity_center::MAX_PAGE)
            .await?;
        for arn in &page.items {
            let set = describe_permission_set(session, instance, arn).await?;
            if set.name == name {
                return Ok(Some(set));
            }
        }
        token = page.next;
        if token.is_none() {
            return Ok(None);
        }
    }
}

/// A set's name and the settings UpdatePermissionSet writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Described {
    pub name: String,
    pub description: Option<String>,
    pub session_duration: Option<String>,
    pub relay_state: Option<String>,
}

pub async fn describe(session: &Session, instance: &str, arn: &str) -> Result<Described, AwsError> {
    let client = client(session);
    let output = sso!(
        session,
        "DescribePermissionSet",
        client
            .describe_permission_set()
            .instance_arn(instance)
            .permission_set_arn(arn)
    )?;
    let set = output.permission_set();
    let text = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_string);
    Ok(Described {
        name: set.and_then(|s| s.name()).unwrap_or_default().to_string(),
        description: text(set.and_then(|s| s.description())),
        session_duration: text(set.and_then(|s| s.session_duration())),
        relay_state: text(set.and_then(|s| s.relay_state())),
    })
}

/// Every assignment of the set on `account`.
pub async fn assignments(
    session: &Session,
    instance: &str,
    account: &str,
    arn: &str,
) -> Result<Vec<super::model::Assignment>, AwsError> {
    every_page(|token| {
        super::identity_center::list_account_assignments(
            session,
            instance,
            account,
            arn,
            token,
            super::identity_center::MAX_PAGE,
        )
    })
    .await
}
