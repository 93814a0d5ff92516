//! What a permission set carries: its AWS managed policies, its customer managed policy
//! references, its inline policy and its permissions boundary. (Its name and session duration
//! come from DescribePermissionSet, in `identity_center`.)

use super::credentials::Session;
use super::error::{AwsError, ErrorKind};
use super::model::{CustomerPolicyRef, PermissionSetContents, PermissionsBoundary, PolicyRef};
use super::ratelimit::Service;

/// The most the two list calls return per page.
const MAX_PAGE: i32 = 100;

fn customer(
    reference: &aws_sdk_ssoadmin::types::CustomerManagedPolicyReference,
) -> CustomerPolicyRef {
    CustomerPolicyRef {
        name: reference.name().to_string(),
        path: reference.path().unwrap_or("/").to_string(),
    }
}

/// Everything permission set `arn` carries: four calls (more only past 100 policies of a kind,
/// which AWS's quotas do not allow by default).
pub async fn contents(
    session: &Session,
    instance: &str,
    arn: &str,
) -> Result<PermissionSetContents, AwsError> {
    let client = aws_sdk_ssoadmin::Client::new(&session.sso);
    let mut found = PermissionSetContents::default();
    let mut token = None;
    loop {
        let output = session
            .caller
            .call(
                Service::SsoAdmin,
                "ListManagedPoliciesInPermissionSet",
                || async {
                    client
                        .list_managed_policies_in_permission_set()
                        .instance_arn(instance)
                        .permission_set_arn(arn)
                        .set_next_token(token.clone())
                        .max_results(MAX_PAGE)
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("ListManagedPoliciesInPermissionSet", e))
                },
            )
            .await?;
        found
            .aws_managed_policies
            .extend(
                output
                    .attached_managed_policies()
                    .iter()
                    .map(|p| PolicyRef {
                        name: p.name().unwrap_or_default().to_string(),
                        arn: p.arn().unwrap_or_default().to_string(),
                    }),
            );
        token = output
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    loop {
        let output = session
            .caller
            .call(
                Service::SsoAdmin,
                "ListCustomerManagedPolicyReferencesInPermissionSet",
                || async {
                    client
                        .list_customer_managed_policy_references_in_permission_set()
                        .instance_arn(instance)
                        .permission_set_arn(arn)
                        .set_next_token(token.clone())
                        .max_results(MAX_PAGE)
                        .send()
                        .await
                        .map_err(|e| {
                            AwsError::from_sdk(
                                "ListCustomerManagedPolicyReferencesInPermissionSet",
                                e,
                            )
                        })
                },
            )
            .await?;
        found.customer_managed_policies.extend(
            output
                .customer_managed_policy_references()
                .iter()
                .map(customer),
        );
        token = output
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let inline = session
        .caller
        .call(
            Service::SsoAdmin,
            "GetInlinePolicyForPermissionSet",
            || async {
                client
                    .get_inline_policy_for_permission_set()
                    .instance_arn(instance)
                    .permission_set_arn(arn)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("GetInlinePolicyForPermissionSet", e))
            },
        )
        .await?;
    // No inline policy reads as an empty one.
    found.inline_policy = inline
        .inline_policy()
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let boundary = session
        .caller
        .call(
            Service::SsoAdmin,
            "GetPermissionsBoundaryForPermissionSet",
            || async {
                client
                    .get_permissions_boundary_for_permission_set()
                    .instance_arn(instance)
                    .permission_set_arn(arn)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("GetPermissionsBoundaryForPermissionSet", e))
            },
        )
        .await;
    found.permissions_boundary = match boundary {
        Ok(output) => output.permissions_boundary().map(|b| PermissionsBoundary {
            managed_policy_arn: b.managed_policy_arn().map(str::to_string),
            customer_managed_policy: b.customer_managed_policy_reference().map(customer),
        }),
        // A permission set without a boundary answers ResourceNotFoundException; one that is
        // gone failed the calls before this one.
        Err(error) if error.kind == ErrorKind::NotFound => None,
        Err(error) => return Err(error),
    };
    Ok(found)
}
