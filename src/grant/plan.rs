//! Desired against actual: what applying a set of grants would change, and the access that no
//! grant declares (reported, never revoked).

use std::collections::BTreeSet;

use serde::Serialize;

use super::access::Access;
use crate::sync::Inventory;

/// Every piece of access an inventory shows.
pub fn actual_access(inventory: &Inventory) -> BTreeSet<Access> {
    let mut all = BTreeSet::new();
    if let Some(ic) = &inventory.identity_center {
        for a in &inventory.assignments {
            all.insert(Access::of_assignment(&ic.instance_arn, a));
        }
        for group in &inventory.sso_groups {
            for user in &group.members {
                all.insert(Access::SsoMembership {
                    identity_store_id: ic.identity_store_id.clone(),
                    group_id: group.id.clone(),
                    user_id: user.to_string(),
                });
            }
        }
    }
    for user in &inventory.iam_users {
        for group in &user.groups {
            all.insert(Access::IamMembership {
                group: group.to_string(),
                user: user.name.to_string(),
            });
        }
    }
    all
}

/// The access in `inventory` that no grant declares.
pub fn unmanaged(inventory: &Inventory, declared: &BTreeSet<Access>) -> Vec<Access> {
    actual_access(inventory)
        .into_iter()
        .filter(|a| !declared.contains(a))
        .collect()
}

/// What applying one grant would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// The access is missing: grant it.
    Create,
    /// The access exists already.
    NoChange,
    /// The grant has expired and its access still exists: revoke it.
    Delete,
    /// The grant has expired and its access is gone.
    Expired,
    /// The connector's policy refuses the grant.
    NotAllowed,
    /// The spec breaks a rule.
    Invalid,
    /// A name did not resolve (`PrincipalNotFound`, ...).
    Unresolved,
    /// The ledger has access for a grant these files no longer declare: kept (without
    /// `--prune`).
    Unlisted,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::NoChange => "no change",
            Self::Delete => "delete",
            Self::Expired => "expired",
            Self::NotAllowed => "not allowed",
            Self::Invalid => "invalid",
            Self::Unresolved => "unresolved",
            Self::Unlisted => "not in files",
        }
    }

    /// Whether this line stops `apply` from succeeding.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::NotAllowed | Self::Invalid | Self::Unresolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::connector::IdentityCenterRef;
    use crate::sync::inventory::{Assignment, IamUser, SsoGroup};

    fn inventory() -> Inventory {
        Inventory {
            identity_center: Some(IdentityCenterRef {
                instance_arn: "arn:ins".into(),
                identity_store_id: "d-1".into(),
            }),
            assignments: vec![Assignment {
                account_id: "111122223333".into(),
                permission_set_arn: "arn:ps".into(),
                principal_type: "USER".into(),
                principal_id: "u1".into(),
            }],
            sso_groups: vec![SsoGroup {
                id: "g1".into(),
                display_name: "eng".into(),
                members: vec!["u1".into(), "u2".into()],
            }],
            iam_users: vec![IamUser {
                name: "carol".into(),
                groups: vec!["deployers".into()],
                ..IamUser::default()
            }],
            ..Inventory::default()
        }
    }

    #[test]
    fn unmanaged_is_what_no_grant_declares() {
        let inventory = inventory();
        let all = actual_access(&inventory);
        assert_eq!(all.len(), 4);
        let declared: BTreeSet<Access> = [Access::SsoMembership {
            identity_store_id: "d-1".into(),
            group_id: "g1".into(),
            user_id: "u1".into(),
        }]
        .into();
        let rest = unmanaged(&inventory, &declared);
        assert_eq!(rest.len(), 3);
        assert!(rest.contains(&Access::IamMembership {
            group: "deployers".into(),
            user: "carol".into()
        }));
    }
}

/// Ids → names, from an inventory, for telling people what access is about.
pub struct Names {
    users: std::collections::BTreeMap<String, String>,
    groups: std::collections::BTreeMap<String, String>,
    permission_sets: std::collections::BTreeMap<String, String>,
}

impl Names {
    pub fn new(inventory: &Inventory) -> Self {
        Self {
            users: inventory
                .sso_users
                .iter()
                .map(|u| (u.id.to_string(), u.user_name.clone()))
                .collect(),
            groups: inventory
                .sso_groups
                .iter()
                .map(|g| (g.id.clone(), g.display_name.clone()))
                .collect(),
            permission_sets: inventory
                .permission_sets
                .iter()
                .map(|p| (p.arn.clone(), p.name.clone()))
                .collect(),
        }
    }

    /// Learns the names a grant wrote for the ids its access resolved to (what `plan` knows of
    /// names when it looked up only what the grants name).
    pub fn learn(&mut self, spec: &crate::api::grant::AccessGrantSpec, access: &Access) {
        let principal = spec.principal.name.clone();
        match access {
            Access::Assignment {
                principal_type,
                principal_id,
                ..
            } => {
                let known = if principal_type == "GROUP" {
                    &mut self.groups
                } else {
                    &mut self.users
                };
                if let Some(name) = principal {
                    known.entry(principal_id.clone()).or_insert(name);
                }
            }
            Access::SsoMembership {
                group_id, user_id, ..
            } => {
                if let Some(name) = principal {
                    self.users.entry(user_id.clone()).or_insert(name);
                }
                if let Some(group) = spec.target.group.clone() {
                    self.groups.entry(group_id.clone()).or_insert(group);
                }
            }
            Access::IamMembership { .. } => {}
        }
    }

    /// Names from a connector's cache of its last sync (the operator has no inventory at hand
    /// when it reports on a grant).
    pub fn from_cache(cache: &crate::sync::cache::SyncCache) -> Self {
        let invert = |map: &std::collections::BTreeMap<String, String>| {
            map.iter()
                .map(|(name, id)| (id.clone(), name.clone()))
                .collect()
        };
        Self {
            users: invert(&cache.sso_users),
            groups: invert(&cache.sso_groups),
            permission_sets: invert(&cache.permission_set_arns),
        }
    }

    fn name<'a>(map: &'a std::collections::BTreeMap<String, String>, id: &'a str) -> &'a str {
        map.get(id).map_or(id, String::as_str)
    }

    /// `user alice@example.com: ReadOnly on 111122223333`, `alice@example.com in Identity Center
    /// group engineers`, `IAM user carol in IAM group deployers`.
    pub fn describe(&self, access: &Access) -> String {
        match access {
            Access::Assignment {
                account_id,
                permission_set_arn,
                principal_type,
                principal_id,
                ..
            } => {
                let (kind, who) = if principal_type == "GROUP" {
                    ("group", Self::name(&self.groups, principal_id))
                } else {
                    ("user", Self::name(&self.users, principal_id))
                };
                let set = Self::name(&self.permission_sets, permission_set_arn);
                format!("{kind} {who}: {set} on account {account_id}")
            }
            Access::SsoMembership {
                group_id, user_id, ..
            } => format!(
                "{} in Identity Center group {}",
                Self::name(&self.users, user_id),
                Self::name(&self.groups, group_id)
            ),
            Access::IamMembership { group, user } => {
                format!("IAM user {user} in IAM group {group}")
            }
        }
    }
}

#[cfg(test)]
mod names_tests {
    use super::*;
    use crate::sync::inventory::{PermissionSet, SsoGroup, SsoUser};

    #[test]
    fn names_replace_ids_where_known() {
        let inventory = Inventory {
            sso_users: vec![SsoUser {
                id: "u1".into(),
                user_name: "alice@example.com".into(),
                ..SsoUser::default()
            }],
            sso_groups: vec![SsoGroup {
                id: "g1".into(),
                display_name: "eng".into(),
                members: vec![],
            }],
            permission_sets: vec![PermissionSet {
                arn: "arn:ps".into(),
                name: "ReadOnly".into(),
                ..PermissionSet::default()
            }],
            ..Inventory::default()
        };
        let names = Names::new(&inventory);
        let a = Access::Assignment {
            instance_arn: "i".into(),
            account_id: "111122223333".into(),
            permission_set_arn: "arn:ps".into(),
            principal_type: "USER".into(),
            principal_id: "u1".into(),
        };
        assert_eq!(
            names.describe(&a),
            "user alice@example.com: ReadOnly on account 111122223333"
        );
        let m = Access::SsoMembership {
            identity_store_id: "d".into(),
            group_id: "g2".into(),
            user_id: "u1".into(),
        };
        assert_eq!(
            names.describe(&m),
            "alice@example.com in Identity Center group g2"
        );
    }
}
