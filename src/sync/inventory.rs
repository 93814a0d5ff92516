//! The inventory of one organization, as written to `sync -o` and to the inventory ConfigMaps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::connector::{CallerIdentity, IdentityCenterRef, InventoryCounts};
pub use crate::aws::model::{
    AccessKey, Account, Assignment, IamGroup, IamRole, IamUser, PermissionSet, SsoGroup, SsoUser,
};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub accounts: Vec<Account>,
    pub iam_users: Vec<IamUser>,
    pub iam_groups: Vec<IamGroup>,
    pub iam_roles: Vec<IamRole>,
    pub sso_users: Vec<SsoUser>,
    pub sso_groups: Vec<SsoGroup>,
    pub permission_sets: Vec<PermissionSet>,
    pub assignments: Vec<Assignment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_center: Option<IdentityCenterRef>,
    /// Who the operator was in AWS for this sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<CallerIdentity>,
    #[serde(default)]
    pub stats: SyncStats,
}

/// What a sync cost.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncStats {
    /// Calls by operation, including retries and those of an interrupted run this one resumed.
    pub api_calls: BTreeMap<String, u64>,
    pub total_calls: u64,
    pub throttled: u64,
    pub duration_seconds: f64,
    /// Whether this sync continued an interrupted one.
    pub resumed: bool,
    /// `perAccount` or `perPrincipal`: how assignments were listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_listing: Option<String>,
    /// Permission set details served from the cache instead of DescribePermissionSet.
    pub cache_hits: u64,
    /// `perPermissionSet` or `perAccount`: how the (account, permission set) pairs were found,
    /// when assignments were listed per pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_discovery: Option<String>,
    /// `credentialReport` or `perUser`: where access keys' last use came from (with
    /// `sync.accessKeys` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_keys_from: Option<String>,
}

impl Inventory {
    /// IAM groups' members, from the users' group lists: no GetGroup per group.
    pub fn derive_iam_group_members(&mut self) {
        let mut members: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for user in &self.iam_users {
            for group in &user.groups {
                members
                    .entry(group.as_str())
                    .or_default()
                    .push(user.name.clone());
            }
        }
        for group in &mut self.iam_groups {
            group.members = members.remove(group.name.as_str()).unwrap_or_default();
        }
    }

    /// Sorts every list so that two syncs of the same organization are byte-identical.
    pub fn normalize(&mut self) {
        self.accounts.sort_by(|a, b| a.id.cmp(&b.id));
        self.iam_users.sort_by(|a, b| a.name.cmp(&b.name));
        for user in &mut self.iam_users {
            user.groups.sort();
            if let Some(keys) = &mut user.access_keys {
                keys.sort_by(|a, b| a.id.cmp(&b.id));
            }
        }
        self.iam_groups.sort_by(|a, b| a.name.cmp(&b.name));
        for group in &mut self.iam_groups {
            group.members.sort();
        }
        self.iam_roles.sort_by(|a, b| a.name.cmp(&b.name));
        for role in &mut self.iam_roles {
            role.trusted_principals.sort();
            role.trusted_principals.dedup();
        }
        self.sso_users.sort_by(|a, b| a.id.cmp(&b.id));
        self.sso_groups.sort_by(|a, b| a.id.cmp(&b.id));
        for group in &mut self.sso_groups {
            group.members.sort();
            group.members.dedup();
        }
        self.assignments.sort();
        self.assignments.dedup();
        self.permission_sets.sort_by(|a, b| a.arn.cmp(&b.arn));
        for ps in &mut self.permission_sets {
            let mut accounts: Vec<String> = self
                .assignments
                .iter()
                .filter(|a| a.permission_set_arn == ps.arn)
                .map(|a| a.account_id.clone())
                .collect();
            accounts.sort();
            accounts.dedup();
            ps.accounts = accounts;
        }
    }

    /// Counts for the connector's status.
    pub fn counts(&self, unmanaged_assignments: u64) -> InventoryCounts {
        let n = |len: usize| len as u64;
        InventoryCounts {
            accounts: n(self.accounts.len()),
            iam_users: n(self.iam_users.len()),
            iam_groups: n(self.iam_groups.len()),
            iam_roles: n(self.iam_roles.len()),
            sso_users: n(self.sso_users.len()),
            sso_groups: n(self.sso_groups.len()),
            permission_sets: n(self.permission_sets.len()),
            assignments: n(self.assignments.len()),
            unmanaged_assignments,
        }
    }
}
