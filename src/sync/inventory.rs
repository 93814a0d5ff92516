//! The inventory of one organization, as written to `sync -o` and to the inventory ConfigMaps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::connector::{CallerIdentity, IdentityCenterRef, InventoryCounts};
pub use crate::aws::model::{
    AccessKey, Account, Assignment, AttachedPolicies, IamGroup, IamRole, IamUser, MemberAccount,
    OrganizationRoot, OrganizationalUnit, PermissionSet, PermissionSetContents, PolicyRef,
    SsoGroup, SsoUser, member_outcome,
};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub accounts: Vec<Account>,
    /// The organization's tree: its root, and every organizational unit under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roots: Vec<OrganizationRoot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizational_units: Vec<OrganizationalUnit>,
    pub iam_users: Vec<IamUser>,
    pub iam_groups: Vec<IamGroup>,
    pub iam_roles: Vec<IamRole>,
    /// IAM of each member account (`sync.memberAccounts`), with whether it could be entered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_accounts: Vec<MemberAccount>,
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
    /// IAM groups' members (of the connector's account and of each member account), from the
    /// users' group lists: no GetGroup per group.
    pub fn derive_iam_group_members(&mut self) {
        derive_members(&self.iam_users, &mut self.iam_groups);
        for member in &mut self.member_accounts {
            derive_members(&member.iam_users, &mut member.iam_groups);
        }
    }

    /// How many member accounts had each outcome, e.g. `1 AccessDenied, 2 Entered` (outcomes in
    /// name order).
    pub fn member_outcomes(&self) -> String {
        let mut outcomes = BTreeMap::<&str, usize>::new();
        for member in &self.member_accounts {
            *outcomes.entry(member.outcome.as_str()).or_default() += 1;
        }
        outcomes
            .iter()
            .map(|(outcome, n)| format!("{n} {outcome}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The organizational units under `parent` (a root or an organizational unit), nested ones
    /// included, `parent` itself too.
    pub fn units_under<'a>(&'a self, parent: &'a str) -> BTreeSet<&'a str> {
        let mut under = BTreeSet::from([parent]);
        // The tree is at most five levels deep; each pass adds the next level down.
        loop {
            let before = under.len();
            for unit in &self.organizational_units {
                if under.contains(unit.parent_id.as_str()) {
                    under.insert(unit.id.as_str());
                }
            }
            if under.len() == before {
                return under;
            }
        }
    }

    /// The accounts anywhere under `parent` (a root or an organizational unit).
    pub fn accounts_under(&self, parent: &str) -> Vec<&Account> {
        let units = self.units_under(parent);
        self.accounts
            .iter()
            .filter(|a| a.parent_id.as_deref().is_some_and(|p| units.contains(p)))
            .collect()
    }

    /// The organizational units from the root down to the one `account` sits in (empty when
    /// it sits in the root, or the tree is not known).
    pub fn unit_path(&self, account: &str) -> Vec<&OrganizationalUnit> {
        let mut path = Vec::new();
        let mut at = self
            .accounts
            .iter()
            .find(|a| a.id == account)
            .and_then(|a| a.parent_id.as_deref());
        while let Some(unit) =
            at.and_then(|id| self.organizational_units.iter().find(|u| u.id == id))
        {
            if path.iter().any(|u: &&OrganizationalUnit| u.id == unit.id) {
                break;
            }
            path.push(unit);
            at = Some(unit.parent_id.as_str());
        }
        path.reverse();
        path
    }

    /// Sorts every list so that two syncs of the same organization are byte-identical.
    pub fn normalize(&mut self) {
        self.accounts.sort_by(|a, b| a.id.cmp(&b.id));
        // An account moved between two parents' lists during the sync is listed twice.
        self.accounts.dedup_by(|a, b| a.id == b.id);
        self.roots.sort_by(|a, b| a.id.cmp(&b.id));
        self.organizational_units.sort_by(|a, b| a.id.cmp(&b.id));
        normalize_iam(
            &mut self.iam_users,
            &mut self.iam_groups,
            &mut self.iam_roles,
        );
        self.member_accounts
            .sort_by(|a, b| a.account_id.cmp(&b.account_id));
        for member in &mut self.member_accounts {
            normalize_iam(
                &mut member.iam_users,
                &mut member.iam_groups,
                &mut member.iam_roles,
            );
        }
        // The largest lists sort in place: a stable sort takes a scratch copy of the list, and
        // at the end of a sync, with the whole inventory held, that copy is the peak (1.4 MB of
        // 15,000 assignments). An id is a user's whole identity: one listed twice (pages that
        // shifted during the sync) is kept once.
        self.sso_users.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        self.sso_users.dedup_by(|a, b| a.id == b.id);
        self.sso_groups.sort_by(|a, b| a.id.cmp(&b.id));
        for group in &mut self.sso_groups {
            group.members.sort();
            group.members.dedup();
        }
        // Ordered by every field: equal ones are the same assignment, so no order is lost.
        self.assignments.sort_unstable();
        self.assignments.dedup();
        self.permission_sets.sort_by(|a, b| a.arn.cmp(&b.arn));
        // Each set's accounts found without a copy per assignment, then kept at their size:
        // this runs with the whole inventory held.
        for ps in &mut self.permission_sets {
            let accounts: BTreeSet<&str> = self
                .assignments
                .iter()
                .filter(|a| *a.permission_set_arn == *ps.arn)
                .map(|a| &*a.account_id)
                .collect();
            ps.accounts = accounts.into_iter().map(str::to_string).collect();
        }
    }

    /// Counts for the connector's status.
    pub fn counts(&self, unmanaged_assignments: u64) -> InventoryCounts {
        let n = |len: usize| len as u64;
        InventoryCounts {
            accounts: n(self.accounts.len()),
            organizational_units: n(self.organizational_units.len()),
            iam_users: n(self.iam_users.len()),
            iam_groups: n(self.iam_groups.len()),
            iam_roles: n(self.iam_roles.len()),
            member_accounts_entered: n(self
                .member_accounts
                .iter()
                .filter(|m| m.outcome == member_outcome::ENTERED)
                .count()),
            member_iam_users: n(self.member_accounts.iter().map(|m| m.iam_users.len()).sum()),
            member_iam_groups: n(self
                .member_accounts
                .iter()
                .map(|m| m.iam_groups.len())
                .sum()),
            member_iam_roles: n(self.member_accounts.iter().map(|m| m.iam_roles.len()).sum()),
            sso_users: n(self.sso_users.len()),
            sso_users_signed_in: n(self
                .sso_users
                .iter()
                .filter(|u| u.last_sign_in_at.is_some())
                .count()),
            sso_groups: n(self.sso_groups.len()),
            permission_sets: n(self.permission_sets.len()),
            assignments: n(self.assignments.len()),
            unmanaged_assignments,
            // Counted against the AccessGrants by the operator (see `effective`).
            undeclared_access_paths: 0,
        }
    }
}

fn derive_members(users: &[IamUser], groups: &mut [IamGroup]) {
    let mut members: BTreeMap<&str, Vec<Arc<str>>> = BTreeMap::new();
    for user in users {
        for group in &user.groups {
            members
                .entry(group)
                .or_default()
                .push(Arc::clone(&user.name));
        }
    }
    for group in groups {
        group.members = members.remove(group.name.as_str()).unwrap_or_default();
    }
}

fn sort_policies(policies: &mut Option<AttachedPolicies>) {
    if let Some(policies) = policies {
        policies.managed.sort();
        policies.inline.sort();
    }
}

fn normalize_iam(users: &mut [IamUser], groups: &mut [IamGroup], roles: &mut [IamRole]) {
    users.sort_by(|a, b| a.name.cmp(&b.name));
    for user in users {
        user.groups.sort();
        if let Some(keys) = &mut user.access_keys {
            keys.sort_by(|a, b| a.id.cmp(&b.id));
        }
        sort_policies(&mut user.policies);
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    for group in groups {
        group.members.sort();
        sort_policies(&mut group.policies);
    }
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    for role in roles {
        role.trusted_principals.sort();
        role.trusted_principals.dedup();
        sort_policies(&mut role.policies);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(id: &str, parent: &str) -> OrganizationalUnit {
        OrganizationalUnit {
            id: id.into(),
            name: id.into(),
            parent_id: parent.into(),
            ..OrganizationalUnit::default()
        }
    }

    fn account(id: &str, parent: &str) -> Account {
        Account {
            id: id.into(),
            parent_id: Some(parent.into()),
            ..Account::default()
        }
    }

    /// r ─ ou-a ─ ou-c ─ ou-d; r ─ ou-b. Accounts: 1 in r, 2 in ou-a, 3 in ou-d, 4 in ou-b.
    fn tree() -> Inventory {
        Inventory {
            organizational_units: vec![
                unit("ou-d", "ou-c"),
                unit("ou-a", "r"),
                unit("ou-c", "ou-a"),
                unit("ou-b", "r"),
            ],
            accounts: vec![
                account("1", "r"),
                account("2", "ou-a"),
                account("3", "ou-d"),
                account("4", "ou-b"),
            ],
            ..Inventory::default()
        }
    }

    #[test]
    fn accounts_under_a_unit_include_those_of_nested_units() {
        let inventory = tree();
        let ids = |parent: &str| -> Vec<String> {
            inventory
                .accounts_under(parent)
                .iter()
                .map(|a| a.id.clone())
                .collect()
        };
        assert_eq!(ids("ou-a"), ["2", "3"]);
        assert_eq!(ids("ou-c"), ["3"]);
        assert_eq!(ids("ou-b"), ["4"]);
        assert_eq!(ids("r"), ["1", "2", "3", "4"]);
        assert!(ids("ou-unknown").is_empty());
    }

    #[test]
    fn counts_say_what_the_new_keys_hold() {
        let mut inventory = tree();
        inventory.sso_users = vec![
            SsoUser {
                id: "u1".into(),
                last_sign_in_at: Some("2026-11-20T09:00:00Z".into()),
                ..SsoUser::default()
            },
            SsoUser {
                id: "u2".into(),
                ..SsoUser::default()
            },
        ];
        inventory.member_accounts = vec![
            MemberAccount {
                account_id: "2".into(),
                outcome: member_outcome::ENTERED.into(),
                iam_users: vec![IamUser::default(), IamUser::default()],
                ..MemberAccount::default()
            },
            MemberAccount {
                account_id: "3".into(),
                outcome: member_outcome::ACCESS_DENIED.into(),
                ..MemberAccount::default()
            },
        ];
        let counts = inventory.counts(0);
        assert_eq!(counts.organizational_units, 4);
        assert_eq!(counts.sso_users_signed_in, 1);
        assert_eq!(counts.member_accounts_entered, 1);
        assert_eq!(counts.member_iam_users, 2);
    }

    #[test]
    fn normalizing_orders_users_and_assignments_and_keeps_each_once() {
        let user = |id: &str| SsoUser {
            id: id.into(),
            user_name: format!("{id}@example.com"),
            ..SsoUser::default()
        };
        let assignment = |account: &str, principal: &str| Assignment {
            account_id: account.into(),
            permission_set_arn: "arn:ps".into(),
            principal_type: "USER".into(),
            principal_id: principal.into(),
        };
        let mut inventory = Inventory {
            sso_users: vec![user("c"), user("a"), user("b"), user("a")],
            assignments: vec![
                assignment("2", "a"),
                assignment("1", "b"),
                assignment("2", "a"),
                assignment("1", "a"),
            ],
            ..Inventory::default()
        };
        inventory.normalize();
        let ids: Vec<&str> = inventory.sso_users.iter().map(|u| &*u.id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(
            inventory.assignments,
            [
                assignment("1", "a"),
                assignment("1", "b"),
                assignment("2", "a")
            ]
        );
    }

    #[test]
    fn an_accounts_unit_path_runs_from_the_root_down() {
        let inventory = tree();
        let path = |account: &str| -> Vec<String> {
            inventory
                .unit_path(account)
                .iter()
                .map(|u| u.id.clone())
                .collect()
        };
        assert_eq!(path("3"), ["ou-a", "ou-c", "ou-d"]);
        assert_eq!(path("4"), ["ou-b"]);
        assert!(path("1").is_empty(), "in the root");
        assert!(path("9").is_empty(), "not known");
    }
}
