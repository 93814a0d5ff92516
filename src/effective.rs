//! Effective access: who can get into which account with which permission set, and why: every
//! Identity Center assignment of an inventory, a group's expanded into its members, each path
//! with the AccessGrants (if any) that declare it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::request::State;
use crate::api::{AccessGrant, AccessRequest, AwsConnector};
use crate::grant::access::Access;
use crate::grant::expiry::Expiry;
use crate::grant::resolve::{Directory, resolve};
use crate::sync::Inventory;
use crate::sync::inventory::{Assignment, PermissionSetContents, SsoGroup, SsoUser};

/// An AccessGrant that declares a piece of a path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Declaration {
    /// `namespace/name` of the AccessGrant.
    pub grant: String,
    /// When the grant ends: an RFC 3339 time, `8h after it is granted`, or none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Set when an approved AccessRequest (named by `grant`) holds the access, not a grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<HeldByRequest>,
}

/// An AccessRequest that holds a piece of a path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldByRequest {
    /// Who approved it; empty when its rule approved it by itself.
    pub approved_by: Vec<String>,
    /// Every review in the order made (`bob Approve`, `bob Revoke`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<String>,
}

/// Which AccessGrants declare each piece of access.
pub type Declarations = BTreeMap<Access, Vec<Declaration>>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    pub id: String,
    pub user_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sign_in_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    pub id: String,
    pub name: String,
    /// The organizational units it sits in, from the root down (names).
    pub organizational_units: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionSetRef {
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<String>,
    /// Its policies (with `sync.policies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<PermissionSetContents>,
}

/// How the user holds the assignment: as a user, or as a member of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Via {
    Direct,
    #[serde(rename_all = "camelCase")]
    Group {
        id: String,
        display_name: String,
        /// The AccessGrants that declare the user's membership of the group.
        membership_declared_by: Vec<Declaration>,
    },
}

/// One way a user gets into an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Path {
    pub user: UserRef,
    pub account: AccountRef,
    pub permission_set: PermissionSetRef,
    pub via: Via,
    /// The AccessGrants that declare the assignment.
    pub declared_by: Vec<Declaration>,
}

impl Path {
    /// Whether AccessGrants declare the whole path: the assignment and, through a group, the
    /// membership.
    pub fn declared(&self) -> bool {
        let membership = match &self.via {
            Via::Direct => true,
            Via::Group {
                membership_declared_by,
                ..
            } => !membership_declared_by.is_empty(),
        };
        !self.declared_by.is_empty() && membership
    }
}

/// One user holding one assignment: directly, or as a member of `group`.
struct Holding<'a> {
    assignment: &'a Assignment,
    user: &'a SsoUser,
    group: Option<&'a SsoGroup>,
}

/// Every user holding every assignment of `inventory` (a group's assignment once per member
/// the inventory knows), with the access an AccessGrant would declare for each part: the
/// assignment, and the membership when through a group. Nothing is copied but the keys.
fn holdings(inventory: &Inventory) -> Vec<(Holding<'_>, Access, Option<Access>)> {
    let Some(ic) = &inventory.identity_center else {
        return Vec::new();
    };
    let users: BTreeMap<&str, &SsoUser> = inventory.sso_users.iter().map(|u| (&*u.id, u)).collect();
    let groups: BTreeMap<&str, &SsoGroup> = inventory
        .sso_groups
        .iter()
        .map(|g| (g.id.as_str(), g))
        .collect();
    let mut found = Vec::new();
    for assignment in &inventory.assignments {
        let holders: Vec<(&str, Option<&SsoGroup>)> = if &*assignment.principal_type == "GROUP" {
            // A group the inventory does not have: nobody to hold it.
            let Some(group) = groups.get(&*assignment.principal_id) else {
                continue;
            };
            group.members.iter().map(|u| (&**u, Some(*group))).collect()
        } else {
            vec![(&*assignment.principal_id, None)]
        };
        for (user_id, group) in holders {
            let Some(user) = users.get(user_id).copied() else {
                continue;
            };
            let access = Access::of_assignment(&ic.instance_arn, assignment);
            let membership = group.map(|group| Access::SsoMembership {
                identity_store_id: ic.identity_store_id.clone(),
                group_id: group.id.clone(),
                user_id: user.id.to_string(),
            });
            let holding = Holding {
                assignment,
                user,
                group,
            };
            found.push((holding, access, membership));
        }
    }
    found
}

/// Every path of `inventory`: each user assignment, and each group assignment once per member,
/// in a stable order (user name, account, permission set name, group).
pub fn paths(inventory: &Inventory, declarations: &Declarations) -> Vec<Path> {
    let declared = |access: &Access| declarations.get(access).cloned().unwrap_or_default();
    // Each account and permission set described once, however many paths lead through it.
    let mut accounts: BTreeMap<&str, AccountRef> = BTreeMap::new();
    let mut sets: BTreeMap<&str, PermissionSetRef> = BTreeMap::new();
    let mut found: Vec<Path> = holdings(inventory)
        .into_iter()
        .map(|(holding, access, membership)| {
            let (account, set) = (
                &*holding.assignment.account_id,
                &*holding.assignment.permission_set_arn,
            );
            let user = holding.user;
            let via = match (holding.group, membership) {
                (Some(group), Some(membership)) => Via::Group {
                    id: group.id.clone(),
                    display_name: group.display_name.clone(),
                    membership_declared_by: declared(&membership),
                },
                _ => Via::Direct,
            };
            Path {
                user: UserRef {
                    id: user.id.to_string(),
                    user_name: user.user_name.clone(),
                    display_name: user.display_name.clone(),
                    last_sign_in_at: user.last_sign_in_at.clone(),
                },
                account: accounts
                    .entry(account)
                    .or_insert_with(|| account_ref(inventory, account))
                    .clone(),
                permission_set: sets
                    .entry(set)
                    .or_insert_with(|| permission_set_ref(inventory, set))
                    .clone(),
                via,
                declared_by: declared(&access),
            }
        })
        .collect();
    found.sort_by(|a, b| {
        let key = |p: &Path| {
            let group = match &p.via {
                Via::Direct => String::new(),
                Via::Group { display_name, .. } => display_name.clone(),
            };
            (
                p.user.user_name.clone(),
                p.account.id.clone(),
                p.permission_set.name.clone(),
                group,
            )
        };
        key(a).cmp(&key(b))
    });
    found
}

fn account_ref(inventory: &Inventory, id: &str) -> AccountRef {
    AccountRef {
        id: id.to_string(),
        name: inventory
            .accounts
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.name.clone())
            .unwrap_or_default(),
        organizational_units: inventory
            .unit_path(id)
            .into_iter()
            .map(|u| u.name.clone())
            .collect(),
    }
}

fn permission_set_ref(inventory: &Inventory, arn: &str) -> PermissionSetRef {
    let set = inventory.permission_sets.iter().find(|p| p.arn == arn);
    PermissionSetRef {
        arn: arn.to_string(),
        name: set.map(|p| p.name.clone()).unwrap_or_default(),
        session_duration: set.and_then(|p| p.session_duration.clone()),
        contents: set.and_then(|p| p.contents.clone()),
    }
}

/// The access the AccessGrants of `connector` among `grants` declare, each with the grant and
/// when it ends. Names resolve in `directory` alone (its session, if any, is for names it does
/// not know): a name it does not know declares nothing.
pub async fn declarations<'a>(
    connector: &AwsConnector,
    grants: impl IntoIterator<Item = &'a AccessGrant>,
    directory: &Directory<'_>,
) -> Declarations {
    let connector_namespace = connector.metadata.namespace.clone().unwrap_or_default();
    let connector_name = connector.metadata.name.clone().unwrap_or_default();
    let mut found = Declarations::new();
    for grant in grants {
        let namespace = grant.metadata.namespace.clone().unwrap_or_default();
        let reference = &grant.spec.connector_ref;
        let referenced = reference.namespace.as_ref().unwrap_or(&namespace);
        if reference.name != connector_name || *referenced != connector_namespace {
            continue;
        }
        let Ok(Ok(resolved)) = resolve(&grant.spec, directory).await else {
            continue;
        };
        let declaration = Declaration {
            grant: format!(
                "{namespace}/{}",
                grant.metadata.name.clone().unwrap_or_default()
            ),
            expires: expires(grant),
            request: None,
        };
        for access in resolved.accesses {
            found.entry(access).or_default().push(declaration.clone());
        }
    }
    found
}

/// Adds the access the Active AccessRequests of `connector` among `requests` hold, as their
/// status says, to `found`.
pub async fn add_requests<'a>(
    found: &mut Declarations,
    connector: &AwsConnector,
    requests: impl IntoIterator<Item = &'a AccessRequest>,
    directory: &Directory<'_>,
) {
    let connector_namespace = connector.metadata.namespace.clone().unwrap_or_default();
    let connector_name = connector.metadata.name.clone().unwrap_or_default();
    for request in requests {
        let Some(status) = request
            .status
            .as_ref()
            .filter(|s| s.state == Some(State::Active))
        else {
            continue;
        };
        let namespace = request.metadata.namespace.clone().unwrap_or_default();
        let reference = &request.spec.connector_ref;
        let referenced = reference.namespace.as_ref().unwrap_or(&namespace);
        if reference.name != connector_name || *referenced != connector_namespace {
            continue;
        }
        let Ok(Ok(resolved)) = resolve(&request.spec.as_grant_spec(), directory).await else {
            continue;
        };
        let declaration = Declaration {
            grant: format!(
                "{namespace}/{}",
                request.metadata.name.clone().unwrap_or_default()
            ),
            expires: status.ends_at.clone(),
            request: Some(HeldByRequest {
                approved_by: status.approvers(),
                reviews: status.review_trail(),
            }),
        };
        for access in resolved.accesses {
            found.entry(access).or_default().push(declaration.clone());
        }
    }
}

/// When a grant ends, as far as its manifest says.
fn expires(grant: &AccessGrant) -> Option<String> {
    let recorded = grant.status.as_ref().and_then(|s| s.expires_at.clone());
    match Expiry::of(&grant.spec) {
        Expiry::Never => None,
        Expiry::At(at) => Some(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        Expiry::After(_) | Expiry::AfterNoLaterThan(..) => recorded.or_else(|| {
            grant
                .spec
                .duration
                .as_ref()
                .map(|d| format!("{d} after it is granted"))
        }),
    }
}

/// How many paths of `inventory` no AccessGrant declares whole: counted after every sync, so
/// without building the paths (their users, accounts and permission sets copied) first.
pub fn undeclared(inventory: &Inventory, declarations: &Declarations) -> usize {
    holdings(inventory)
        .into_iter()
        .filter(|(_, access, membership)| {
            let whole = declarations.contains_key(access)
                && membership
                    .as_ref()
                    .is_none_or(|m| declarations.contains_key(m));
            !whole
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::connector::IdentityCenterRef;
    use crate::sync::inventory::{Account, OrganizationalUnit, PermissionSet, SsoGroup, SsoUser};

    const INSTANCE: &str = "arn:aws:sso:::instance/ssoins-1";

    fn inventory() -> Inventory {
        let user = |id: &str, name: &str| SsoUser {
            id: id.into(),
            user_name: name.into(),
            ..SsoUser::default()
        };
        let assignment = |account: &str, ps: &str, kind: &str, principal: &str| Assignment {
            account_id: account.into(),
            permission_set_arn: ps.into(),
            principal_type: kind.into(),
            principal_id: principal.into(),
        };
        Inventory {
            identity_center: Some(IdentityCenterRef {
                instance_arn: INSTANCE.into(),
                identity_store_id: "d-1".into(),
            }),
            accounts: vec![Account {
                id: "111".into(),
                name: "prod".into(),
                parent_id: Some("ou-b".into()),
                ..Account::default()
            }],
            organizational_units: vec![
                OrganizationalUnit {
                    id: "ou-a".into(),
                    name: "workloads".into(),
                    parent_id: "r-1".into(),
                    ..OrganizationalUnit::default()
                },
                OrganizationalUnit {
                    id: "ou-b".into(),
                    name: "prod".into(),
                    parent_id: "ou-a".into(),
                    ..OrganizationalUnit::default()
                },
            ],
            sso_users: vec![user("u1", "alice"), user("u2", "bob")],
            sso_groups: vec![SsoGroup {
                id: "g1".into(),
                display_name: "platform".into(),
                members: vec!["u1".into(), "u2".into()],
            }],
            permission_sets: vec![
                PermissionSet {
                    arn: "ps-admin".into(),
                    name: "Admin".into(),
                    ..PermissionSet::default()
                },
                PermissionSet {
                    arn: "ps-ro".into(),
                    name: "ReadOnly".into(),
                    ..PermissionSet::default()
                },
            ],
            assignments: vec![
                assignment("111", "ps-admin", "USER", "u1"),
                assignment("111", "ps-ro", "GROUP", "g1"),
            ],
            ..Inventory::default()
        }
    }

    fn assignment(ps: &str, kind: &str, principal: &str) -> Access {
        Access::Assignment {
            instance_arn: INSTANCE.into(),
            account_id: "111".into(),
            permission_set_arn: ps.into(),
            principal_type: kind.into(),
            principal_id: principal.into(),
        }
    }

    fn by(grant: &str) -> Vec<Declaration> {
        vec![Declaration {
            request: None,
            grant: grant.into(),
            expires: None,
        }]
    }

    #[test]
    fn groups_expand_into_their_members_with_the_account_place_in_the_tree() {
        let found = paths(&inventory(), &Declarations::new());
        let seen: Vec<(&str, &str, bool)> = found
            .iter()
            .map(|p| {
                (
                    p.user.user_name.as_str(),
                    p.permission_set.name.as_str(),
                    p.via == Via::Direct,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("alice", "Admin", true),
                ("alice", "ReadOnly", false),
                ("bob", "ReadOnly", false)
            ]
        );
        assert_eq!(found[0].account.organizational_units, ["workloads", "prod"]);
        assert_eq!(found[0].account.name, "prod");
    }

    #[test]
    fn a_group_path_is_declared_only_with_its_membership() {
        let inventory = inventory();
        let mut declarations = Declarations::new();
        declarations.insert(assignment("ps-admin", "USER", "u1"), by("team/alice-admin"));
        declarations.insert(assignment("ps-ro", "GROUP", "g1"), by("team/platform-ro"));
        declarations.insert(
            Access::SsoMembership {
                identity_store_id: "d-1".into(),
                group_id: "g1".into(),
                user_id: "u1".into(),
            },
            by("team/alice-platform"),
        );
        let found = paths(&inventory, &declarations);
        let declared: Vec<(&str, &str, bool)> = found
            .iter()
            .map(|p| {
                (
                    p.user.user_name.as_str(),
                    p.permission_set.name.as_str(),
                    p.declared(),
                )
            })
            .collect();
        assert_eq!(
            declared,
            [
                ("alice", "Admin", true),
                ("alice", "ReadOnly", true),
                ("bob", "ReadOnly", false)
            ]
        );
        assert_eq!(undeclared(&inventory, &declarations), 1);
        assert_eq!(undeclared(&inventory, &Declarations::new()), 3);
    }
}
