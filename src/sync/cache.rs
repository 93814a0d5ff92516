//! What one sync keeps for the next: permission set details (DescribePermissionSet has no list
//! form) and principal name → id lookups for resolving grants.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::inventory::{Inventory, PermissionSet};

pub const CACHE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedPermissionSet {
    pub details: PermissionSet,
    /// Unix seconds of the DescribePermissionSet this came from.
    pub fetched_at: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncCache {
    pub version: u32,
    pub permission_sets: BTreeMap<String, CachedPermissionSet>,
    /// Identity Center user name → user id.
    pub sso_users: BTreeMap<String, String>,
    /// Identity Center group display name → group id.
    pub sso_groups: BTreeMap<String, String>,
    /// Permission set name → ARN.
    pub permission_set_arns: BTreeMap<String, String>,
    /// IAM user names and IAM group names that exist.
    pub iam_users: Vec<String>,
    pub iam_groups: Vec<String>,
    /// The organization's account ids.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Identity Center user id → last sign-in (RFC 3339), with `sync.lastSignIn`: the next
    /// sync reads CloudTrail only from the newest of these on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sign_ins: BTreeMap<String, String>,
    /// The organization's tree, for organizational-unit grants: account id → the root or
    /// unit it sits in, and unit id → its parent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub account_parents: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unit_parents: BTreeMap<String, String>,
    /// Accounts of the organization that are not ACTIVE (suspended, leaving).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inactive_accounts: Vec<String>,
}

/// Where an account stands with respect to an organizational unit, as of the last sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// ACTIVE, under the unit (nested units included).
    Under,
    /// Elsewhere in the organization, or not ACTIVE.
    Outside,
    /// Not in the last sync at all (left the organization, or moved while it listed).
    Unknown,
}

/// Now, in the seconds `fetched_at` counts.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl SyncCache {
    /// Whether the last sync saw organizational unit `unit`.
    pub fn knows_unit(&self, unit: &str) -> bool {
        self.unit_parents.contains_key(unit)
    }

    /// Whether `unit` is `ancestor` or nested under it.
    pub fn unit_within(&self, unit: &str, ancestor: &str) -> bool {
        let mut at = Some(unit);
        // The tree is at most five levels deep; the bound stops a damaged cache's loop.
        for _ in 0..8 {
            match at {
                Some(id) if id == ancestor => return true,
                Some(id) => at = self.unit_parents.get(id).map(String::as_str),
                None => return false,
            }
        }
        false
    }

    pub fn placement(&self, account: &str, unit: &str) -> Placement {
        match self.account_parents.get(account) {
            None => Placement::Unknown,
            Some(_) if self.inactive_accounts.iter().any(|a| a == account) => Placement::Outside,
            Some(parent) if self.unit_within(parent, unit) => Placement::Under,
            Some(_) => Placement::Outside,
        }
    }

    /// The ACTIVE accounts under `unit`, nested units included.
    pub fn accounts_under(&self, unit: &str) -> Vec<String> {
        self.account_parents
            .keys()
            .filter(|account| self.placement(account, unit) == Placement::Under)
            .cloned()
            .collect()
    }

    /// The newest sign-in already known: CloudTrail is read again from shortly before it.
    pub fn newest_sign_in(&self) -> Option<&str> {
        self.sign_ins.values().max().map(String::as_str)
    }

    /// Keeps a permission set just described, by ARN and by name.
    pub fn remember(&mut self, arn: &str, details: PermissionSet) {
        self.permission_set_arns
            .insert(details.name.clone(), arn.to_string());
        self.permission_sets.insert(
            arn.to_string(),
            CachedPermissionSet {
                details,
                fetched_at: unix_now(),
            },
        );
    }

    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice::<Self>(bytes)
            .ok()
            .filter(|c| c.version == CACHE_VERSION)
            .unwrap_or_else(|| Self {
                version: CACHE_VERSION,
                ..Self::default()
            })
    }

    /// A permission set's details if fetched less than `ttl_seconds` ago.
    pub fn fresh_permission_set(
        &self,
        arn: &str,
        now: i64,
        ttl_seconds: i64,
    ) -> Option<&PermissionSet> {
        self.permission_sets
            .get(arn)
            .filter(|c| now - c.fetched_at < ttl_seconds)
            .map(|c| &c.details)
    }

    /// Rebuilds the lookups from a finished inventory; keeps only permission sets that still
    /// exist.
    pub fn refresh_from(&mut self, inventory: &Inventory) {
        self.version = CACHE_VERSION;
        self.permission_sets
            .retain(|arn, _| inventory.permission_sets.iter().any(|p| &p.arn == arn));
        self.sso_users = inventory
            .sso_users
            .iter()
            .map(|u| (u.user_name.clone(), u.id.to_string()))
            .collect();
        self.sso_groups = inventory
            .sso_groups
            .iter()
            .map(|g| (g.display_name.clone(), g.id.clone()))
            .collect();
        self.permission_set_arns = inventory
            .permission_sets
            .iter()
            .map(|p| (p.name.clone(), p.arn.clone()))
            .collect();
        self.sign_ins = inventory
            .sso_users
            .iter()
            .filter_map(|u| Some((u.id.to_string(), u.last_sign_in_at.clone()?)))
            .collect();
        self.iam_users = inventory
            .iam_users
            .iter()
            .map(|u| u.name.to_string())
            .collect();
        // For grantPolicy's "any account of the organization" when allowedAccounts is empty.
        self.accounts = inventory.accounts.iter().map(|a| a.id.clone()).collect();
        self.account_parents = inventory
            .accounts
            .iter()
            .filter_map(|a| Some((a.id.clone(), a.parent_id.clone()?)))
            .collect();
        self.inactive_accounts = inventory
            .accounts
            .iter()
            .filter(|a| a.status != "ACTIVE")
            .map(|a| a.id.clone())
            .collect();
        self.unit_parents = inventory
            .organizational_units
            .iter()
            .map(|u| (u.id.clone(), u.parent_id.clone()))
            .collect();
        self.iam_groups = inventory
            .iam_groups
            .iter()
            .map(|g| g.name.clone())
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_vanish_with_their_permission_set() {
        let mut cache = SyncCache::decode(b"not json");
        assert_eq!(cache.version, CACHE_VERSION);
        let ps = PermissionSet {
            arn: "arn:ps-1".into(),
            name: "ReadOnly".into(),
            ..Default::default()
        };
        cache.permission_sets.insert(
            ps.arn.clone(),
            CachedPermissionSet {
                details: ps.clone(),
                fetched_at: 1000,
            },
        );
        assert_eq!(
            cache.fresh_permission_set("arn:ps-1", 1500, 3600),
            Some(&ps)
        );
        assert_eq!(cache.fresh_permission_set("arn:ps-1", 5000, 3600), None);
        let inventory = Inventory {
            permission_sets: vec![ps.clone()],
            ..Default::default()
        };
        let inventory = Inventory {
            accounts: vec![crate::sync::inventory::Account {
                id: "111122223333".into(),
                ..Default::default()
            }],
            ..inventory
        };
        cache.refresh_from(&inventory);
        assert_eq!(cache.permission_set_arns["ReadOnly"], "arn:ps-1");
        assert_eq!(
            cache.accounts,
            ["111122223333"],
            "the organization's accounts"
        );
        cache.refresh_from(&Inventory::default());
        assert!(cache.permission_sets.is_empty());
    }
}
