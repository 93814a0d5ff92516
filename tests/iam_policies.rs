//! The IAM policies shipped under docs/iam/ allow exactly the AWS operations the code can call:
//! every operation name in src/aws/ must have an action here, and the policies allow nothing
//! else.

use std::collections::BTreeSet;
use std::path::Path;

/// Operation → the IAM action that authorizes it. `None`: no permission is needed.
const ACTIONS: &[(&str, Option<&str>)] = &[
    ("GetCallerIdentity", None),
    ("LookupEvents", Some("cloudtrail:LookupEvents")),
    ("AssumeRole", Some("sts:AssumeRole")),
    ("ListRoots", Some("organizations:ListRoots")),
    (
        "ListOrganizationalUnitsForParent",
        Some("organizations:ListOrganizationalUnitsForParent"),
    ),
    (
        "ListAccountsForParent",
        Some("organizations:ListAccountsForParent"),
    ),
    (
        "GetAccountAuthorizationDetails",
        Some("iam:GetAccountAuthorizationDetails"),
    ),
    ("ListAccessKeys", Some("iam:ListAccessKeys")),
    ("GetAccessKeyLastUsed", Some("iam:GetAccessKeyLastUsed")),
    (
        "GenerateCredentialReport",
        Some("iam:GenerateCredentialReport"),
    ),
    ("GetCredentialReport", Some("iam:GetCredentialReport")),
    ("ListGroupsForUser", Some("iam:ListGroupsForUser")),
    ("AddUserToGroup", Some("iam:AddUserToGroup")),
    ("RemoveUserFromGroup", Some("iam:RemoveUserFromGroup")),
    ("ListInstances", Some("sso:ListInstances")),
    ("ListPermissionSets", Some("sso:ListPermissionSets")),
    ("DescribeAccount", Some("organizations:DescribeAccount")),
    ("DescribePermissionSet", Some("sso:DescribePermissionSet")),
    (
        "ListManagedPoliciesInPermissionSet",
        Some("sso:ListManagedPoliciesInPermissionSet"),
    ),
    (
        "ListCustomerManagedPolicyReferencesInPermissionSet",
        Some("sso:ListCustomerManagedPolicyReferencesInPermissionSet"),
    ),
    (
        "GetInlinePolicyForPermissionSet",
        Some("sso:GetInlinePolicyForPermissionSet"),
    ),
    (
        "GetPermissionsBoundaryForPermissionSet",
        Some("sso:GetPermissionsBoundaryForPermissionSet"),
    ),
    (
        "ListAccountsForProvisionedPermissionSet",
        Some("sso:ListAccountsForProvisionedPermissionSet"),
    ),
    (
        "ListPermissionSetsProvisionedToAccount",
        Some("sso:ListPermissionSetsProvisionedToAccount"),
    ),
    ("ListAccountAssignments", Some("sso:ListAccountAssignments")),
    (
        "ListAccountAssignmentsForPrincipal",
        Some("sso:ListAccountAssignmentsForPrincipal"),
    ),
    (
        "DescribeAccountAssignmentCreationStatus",
        Some("sso:DescribeAccountAssignmentCreationStatus"),
    ),
    (
        "DescribeAccountAssignmentDeletionStatus",
        Some("sso:DescribeAccountAssignmentDeletionStatus"),
    ),
    (
        "CreateAccountAssignment",
        Some("sso:CreateAccountAssignment"),
    ),
    (
        "DeleteAccountAssignment",
        Some("sso:DeleteAccountAssignment"),
    ),
    ("ListUsers", Some("identitystore:ListUsers")),
    ("ListGroups", Some("identitystore:ListGroups")),
    (
        "ListGroupMemberships",
        Some("identitystore:ListGroupMemberships"),
    ),
    ("GetUserId", Some("identitystore:GetUserId")),
    ("GetGroupId", Some("identitystore:GetGroupId")),
    (
        "GetGroupMembershipId",
        Some("identitystore:GetGroupMembershipId"),
    ),
    (
        "CreateGroupMembership",
        Some("identitystore:CreateGroupMembership"),
    ),
    (
        "DeleteGroupMembership",
        Some("identitystore:DeleteGroupMembership"),
    ),
    ("CreatePermissionSet", Some("sso:CreatePermissionSet")),
    ("UpdatePermissionSet", Some("sso:UpdatePermissionSet")),
    ("DeletePermissionSet", Some("sso:DeletePermissionSet")),
    (
        "AttachManagedPolicyToPermissionSet",
        Some("sso:AttachManagedPolicyToPermissionSet"),
    ),
    (
        "DetachManagedPolicyFromPermissionSet",
        Some("sso:DetachManagedPolicyFromPermissionSet"),
    ),
    (
        "AttachCustomerManagedPolicyReferenceToPermissionSet",
        Some("sso:AttachCustomerManagedPolicyReferenceToPermissionSet"),
    ),
    (
        "DetachCustomerManagedPolicyReferenceFromPermissionSet",
        Some("sso:DetachCustomerManagedPolicyReferenceFromPermissionSet"),
    ),
    (
        "PutInlinePolicyToPermissionSet",
        Some("sso:PutInlinePolicyToPermissionSet"),
    ),
    (
        "DeleteInlinePolicyFromPermissionSet",
        Some("sso:DeleteInlinePolicyFromPermissionSet"),
    ),
    (
        "PutPermissionsBoundaryToPermissionSet",
        Some("sso:PutPermissionsBoundaryToPermissionSet"),
    ),
    (
        "DeletePermissionsBoundaryFromPermissionSet",
        Some("sso:DeletePermissionsBoundaryFromPermissionSet"),
    ),
    ("TagResource", Some("sso:TagResource")),
    ("UntagResource", Some("sso:UntagResource")),
    ("ListTagsForResource", Some("sso:ListTagsForResource")),
    ("ProvisionPermissionSet", Some("sso:ProvisionPermissionSet")),
    (
        "DescribePermissionSetProvisioningStatus",
        Some("sso:DescribePermissionSetProvisioningStatus"),
    ),
    // Declared users and groups. The Identity Store and IAM share three operation names: the
    // code calls both, so both actions are needed.
    ("GetUserId", Some("identitystore:GetUserId")),
    ("GetGroupId", Some("identitystore:GetGroupId")),
    ("DescribeUser", Some("identitystore:DescribeUser")),
    ("DescribeGroup", Some("identitystore:DescribeGroup")),
    (
        "CreateUser",
        Some("identitystore:CreateUser iam:CreateUser"),
    ),
    (
        "UpdateUser",
        Some("identitystore:UpdateUser iam:UpdateUser"),
    ),
    (
        "DeleteUser",
        Some("identitystore:DeleteUser iam:DeleteUser"),
    ),
    ("CreateGroup", Some("identitystore:CreateGroup")),
    ("UpdateGroup", Some("identitystore:UpdateGroup")),
    ("DeleteGroup", Some("identitystore:DeleteGroup")),
    (
        "ListGroupMembershipsForMember",
        Some("identitystore:ListGroupMembershipsForMember"),
    ),
    ("GetUser", Some("iam:GetUser")),
    ("TagUser", Some("iam:TagUser")),
    ("UntagUser", Some("iam:UntagUser")),
    (
        "PutUserPermissionsBoundary",
        Some("iam:PutUserPermissionsBoundary"),
    ),
    (
        "DeleteUserPermissionsBoundary",
        Some("iam:DeleteUserPermissionsBoundary"),
    ),
    ("ListGroupsForUser", Some("iam:ListGroupsForUser")),
    (
        "ListAttachedUserPolicies",
        Some("iam:ListAttachedUserPolicies"),
    ),
    ("ListUserPolicies", Some("iam:ListUserPolicies")),
    ("GetLoginProfile", Some("iam:GetLoginProfile")),
    ("ListMFADevices", Some("iam:ListMFADevices")),
];

/// The source file of the operations only declared users and groups call: their actions are
/// in a policy of their own (docs/iam/identity-policy.json).
const IDENTITY_SOURCE: &str = "identity_admin.rs";

/// The source file of the operations only declared permission sets call: their actions are in
/// a policy of their own (docs/iam/permission-set-policy.json), attached only where
/// PermissionSets are declared.
const PERMISSION_SET_SOURCE: &str = "permission_set_admin.rs";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Operation names (string literals such as "ListUsers") in the non-test code of src/aws/,
/// each with the file names that call it.
fn operations_by_file() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let pattern = regex_lite::Regex::new(
        r#""((?:List|Get|Generate|Describe|Create|Update|Delete|Add|Remove|Attach|Detach|Put|Tag|Untag|Assume|Provision|Lookup)[A-Z][A-Za-z]+)""#,
    )
    .expect("regex");
    let mut found = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    for entry in std::fs::read_dir(repo().join("src/aws")).expect("src/aws") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for capture in pattern.captures_iter(code) {
            found
                .entry(capture[1].to_string())
                .or_default()
                .insert(file.clone());
        }
    }
    found
}

fn operations_in_code() -> BTreeSet<String> {
    operations_by_file().into_keys().collect()
}

fn allowed(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/iam").join(file)).expect("policy");
    let policy: serde_json::Value = serde_json::from_str(&text).expect("policy JSON");
    let mut out = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        assert_eq!(statement["Effect"], "Allow", "{file}");
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                out.insert(a.clone());
            }
            serde_json::Value::Array(list) => {
                out.extend(list.iter().filter_map(|a| a.as_str().map(str::to_string)))
            }
            other => panic!("{file}: unexpected Action {other}"),
        }
    }
    out
}

#[test]
fn shipped_policies_allow_exactly_what_the_code_calls() {
    let by_file = operations_by_file();
    let operations = operations_in_code();
    assert!(
        operations.len() > 20,
        "the scan finds the operations: {operations:?}"
    );
    let action_of = |operation: &str| -> Vec<String> {
        ACTIONS
            .iter()
            .find(|(op, _)| *op == operation)
            .and_then(|(_, action)| *action)
            .map(|a| a.split(' ').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let only_in = |source: &str| -> BTreeSet<String> {
        by_file
            .iter()
            .filter(|(_, files)| files.len() == 1 && files.contains(source))
            .flat_map(|(operation, _)| action_of(operation))
            .collect()
    };
    let permission_sets = only_in(PERMISSION_SET_SOURCE);
    let identities = only_in(IDENTITY_SOURCE);
    assert!(
        identities.contains("identitystore:UpdateUser") && identities.contains("iam:UpdateUser"),
        "{identities:?}"
    );
    assert_eq!(
        allowed("identity-policy.json"),
        identities,
        "the policy of declared users and groups"
    );
    assert!(
        permission_sets.contains("sso:CreatePermissionSet")
            && permission_sets.contains("sso:DescribePermissionSetProvisioningStatus"),
        "{permission_sets:?}"
    );
    assert_eq!(
        allowed("permission-set-policy.json"),
        permission_sets,
        "the policy of declared permission sets"
    );
    let mut needed = BTreeSet::new();
    for operation in &operations {
        let action = ACTIONS
            .iter()
            .find(|(op, _)| op == operation)
            .unwrap_or_else(|| {
                panic!("{operation} is called but has no IAM action here: add it, and to docs/iam/")
            })
            .1;
        needed.extend(
            action
                .into_iter()
                .flat_map(|a| a.split(' '))
                .map(str::to_string)
                .filter(|a| !permission_sets.contains(a) && !identities.contains(a)),
        );
    }
    let writes: BTreeSet<String> = needed
        .iter()
        .filter(|a| {
            ["Create", "Delete", "Add", "Remove"]
                .iter()
                .any(|w| a.split(':').nth(1).is_some_and(|n| n.starts_with(w)))
        })
        .cloned()
        .collect();
    let assume: BTreeSet<String> = ["sts:AssumeRole".to_string()].into();
    let reads: BTreeSet<String> = needed
        .difference(&writes)
        .filter(|a| !assume.contains(*a))
        .cloned()
        .collect();

    assert_eq!(
        allowed("sync-policy.json"),
        reads,
        "the read-only sync policy"
    );
    assert_eq!(allowed("grant-policy.json"), writes, "the grant policy");
    assert_eq!(
        allowed("irsa-role-policy.json"),
        assume,
        "the IRSA role only assumes the connector roles"
    );
    // Member accounts: the connector role only enters them; the role it assumes there only
    // reads IAM.
    assert_eq!(
        allowed("member-accounts-policy.json"),
        assume,
        "the connector role enters the member accounts"
    );
    assert_eq!(
        allowed("member-role-policy.json"),
        BTreeSet::from(["iam:GetAccountAuthorizationDetails".to_string()]),
        "the member role reads IAM only"
    );
    for trust in [
        "member-role-trust-policy.json",
        "irsa-trust-policy.json",
        "connector-role-trust-policy.json",
        "broker-role-trust-policy.json",
    ] {
        let text =
            std::fs::read_to_string(repo().join("docs/iam").join(trust)).expect("trust policy");
        let _: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{trust}: {e}"));
    }
    // Nothing listed that the code no longer calls.
    for (operation, _) in ACTIONS {
        assert!(
            operations.contains(*operation),
            "{operation} is listed but no longer called"
        );
    }
}
