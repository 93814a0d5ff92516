//! What a stream learns, one fact at a time. A fact is applied to the stream's page state as it
//! is learned and, when the sync keeps state, appended to the stream's journal: a checkpoint
//! writes only the facts learned since the previous one, as a new segment written once, and a
//! resumed run replays the segments. The saved page state itself holds only cursors, so no
//! checkpoint rewrites the inventory gathered so far.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::intern::Interner;
use super::inventory::{
    AccessKey, Account, Assignment, IamGroup, IamRole, IamUser, MemberAccount, OrganizationRoot,
    OrganizationalUnit, PermissionSet, SsoGroup, SsoUser, member_outcome,
};
use super::state::{KeySource, PageState, Phase};
use crate::api::connector::IdentityCenterRef;
use crate::aws::cloudtrail::SignIn;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum Fact {
    Roots(Vec<OrganizationRoot>),
    /// A page of the organizational units under one parent.
    OrganizationalUnits(Vec<OrganizationalUnit>),
    /// A page of the accounts under one parent.
    Accounts(Vec<Account>),
    /// An organizational unit deleted after it was listed.
    OrganizationalUnitGone(String),
    IamDetails {
        users: Vec<IamUser>,
        groups: Vec<IamGroup>,
        roles: Vec<IamRole>,
    },
    /// Where access keys' last use comes from.
    KeySource(KeySource),
    /// A page of a user's access keys.
    AccessKeys {
        user: String,
        keys: Vec<AccessKey>,
    },
    /// An IAM user deleted after it was listed.
    IamUserGone(String),
    /// A page of a member account's IAM: the account was entered.
    MemberIam {
        account: String,
        users: Vec<IamUser>,
        groups: Vec<IamGroup>,
        roles: Vec<IamRole>,
    },
    /// A member account was not entered, or not read to the end: the outcome, and why.
    MemberOutcome {
        account: String,
        outcome: String,
        message: String,
    },
    Instance(Option<IdentityCenterRef>),
    SsoUsers(Vec<SsoUser>),
    /// A page of sign-ins: each user's newest is kept.
    SignIns(Vec<SignIn>),
    SsoGroups(Vec<SsoGroup>),
    /// A page of a group's members.
    Members {
        group: String,
        users: Vec<Arc<str>>,
    },
    /// An Identity Center group deleted after it was listed.
    SsoGroupGone(String),
    /// The ids of the Identity Store stream's users and groups, as the Identity Center stream
    /// holds them for its listing choice and its listing per principal.
    Principals {
        users: Vec<Arc<str>>,
        groups: Vec<Arc<str>>,
    },
    PermissionSetArns(Vec<String>),
    PermissionSet(PermissionSet),
    /// A permission set deleted after it was listed.
    PermissionSetGone(String),
    /// A page of the accounts a permission set is provisioned to.
    ProvisionedTo {
        permission_set: String,
        accounts: Vec<String>,
    },
    /// A page of the permission sets provisioned to an account; only those listed by this
    /// stream are kept.
    ProvisionedIn {
        account: String,
        permission_sets: Vec<String>,
    },
    Assignments(Vec<Assignment>),
    /// An item of a per-item phase was listed whole (or left out): a resumed run skips it.
    ItemDone(Phase, String),
    /// What `Phase` and every later phase of the stream gathered was forgotten, to be listed
    /// again.
    Rewound(Phase),
}

impl Fact {
    /// Makes the ids this fact shares with others (users' ids and names, the names of the
    /// IAM groups users are in, and the accounts, permission sets and principals of
    /// assignments) the copies the sync already holds.
    pub fn intern(&mut self, interner: &Interner) {
        match self {
            Self::IamDetails { users, .. } | Self::MemberIam { users, .. } => {
                for user in users {
                    interner.intern(&mut user.name);
                    interner.intern_all(&mut user.groups);
                }
            }
            Self::SsoUsers(users) => interner.intern_all(users.iter_mut().map(|u| &mut u.id)),
            Self::Members { users, .. } => interner.intern_all(users),
            Self::Principals { users, groups } => {
                interner.intern_all(users);
                interner.intern_all(groups);
            }
            Self::Assignments(assignments) => {
                for a in assignments {
                    interner.intern_all([
                        &mut a.account_id,
                        &mut a.permission_set_arn,
                        &mut a.principal_type,
                        &mut a.principal_id,
                    ]);
                }
            }
            _ => {}
        }
    }
}

impl PageState {
    /// Applies what was learned: live, and again when a journal is replayed.
    pub fn apply(&mut self, fact: Fact) {
        let inventory = &mut self.inventory;
        match fact {
            Fact::Roots(roots) => inventory.roots.extend(roots),
            Fact::OrganizationalUnits(units) => inventory.organizational_units.extend(units),
            Fact::Accounts(accounts) => inventory.accounts.extend(accounts),
            Fact::OrganizationalUnitGone(id) => {
                inventory.organizational_units.retain(|u| u.id != id)
            }
            Fact::IamDetails {
                users,
                groups,
                roles,
            } => {
                inventory.iam_users.extend(users);
                inventory.iam_groups.extend(groups);
                inventory.iam_roles.extend(roles);
            }
            Fact::KeySource(source) => self.key_source = Some(source),
            Fact::AccessKeys { user, keys } => {
                if let Some(user) = inventory.iam_users.iter_mut().find(|u| *u.name == *user) {
                    user.access_keys.get_or_insert_with(Vec::new).extend(keys);
                }
            }
            Fact::IamUserGone(name) => inventory.iam_users.retain(|u| *u.name != *name),
            Fact::MemberIam {
                account,
                users,
                groups,
                roles,
            } => {
                let member = member_entry(&mut inventory.member_accounts, &account);
                let at = || Some(account.clone());
                member.iam_users.extend(users.into_iter().map(|u| IamUser {
                    account_id: at(),
                    ..u
                }));
                member
                    .iam_groups
                    .extend(groups.into_iter().map(|g| IamGroup {
                        account_id: at(),
                        ..g
                    }));
                member.iam_roles.extend(roles.into_iter().map(|r| IamRole {
                    account_id: at(),
                    ..r
                }));
            }
            Fact::MemberOutcome {
                account,
                outcome,
                message,
            } => {
                let member = member_entry(&mut inventory.member_accounts, &account);
                member.outcome = outcome;
                member.message = Some(message);
            }
            Fact::Instance(instance) => inventory.identity_center = instance,
            Fact::SsoUsers(users) => inventory.sso_users.extend(users),
            Fact::SignIns(sign_ins) => {
                for sign_in in sign_ins {
                    let user = inventory
                        .sso_users
                        .iter_mut()
                        .find(|u| match &sign_in.user_id {
                            Some(id) => *u.id == **id,
                            None => sign_in.user_name.as_ref() == Some(&u.user_name),
                        });
                    if let Some(user) = user
                        && user.last_sign_in_at.as_ref() < Some(&sign_in.at)
                    {
                        user.last_sign_in_at = Some(sign_in.at);
                    }
                }
            }
            Fact::SsoGroups(groups) => inventory.sso_groups.extend(groups),
            Fact::Members { group, users } => {
                if let Some(group) = inventory.sso_groups.iter_mut().find(|g| g.id == group) {
                    group.members.extend(users);
                }
            }
            Fact::SsoGroupGone(id) => inventory.sso_groups.retain(|g| g.id != id),
            Fact::Principals { users, groups } => {
                inventory.sso_users = users
                    .into_iter()
                    .map(|id| SsoUser {
                        id,
                        ..SsoUser::default()
                    })
                    .collect();
                inventory.sso_groups = groups
                    .into_iter()
                    .map(|id| SsoGroup {
                        id: id.to_string(),
                        ..SsoGroup::default()
                    })
                    .collect();
            }
            Fact::PermissionSetArns(arns) => self.permission_set_arns.extend(arns),
            Fact::PermissionSet(details) => inventory.permission_sets.push(details),
            Fact::PermissionSetGone(arn) => {
                self.permission_set_arns.retain(|a| a != &arn);
                inventory.permission_sets.retain(|p| p.arn != arn);
                self.provisioned.remove(&arn);
            }
            Fact::ProvisionedTo {
                permission_set,
                accounts,
            } => {
                self.provisioned
                    .entry(permission_set)
                    .or_default()
                    .extend(accounts);
            }
            Fact::ProvisionedIn {
                account,
                permission_sets,
            } => {
                for arn in permission_sets {
                    if self.permission_set_arns.contains(&arn) {
                        self.provisioned
                            .entry(arn)
                            .or_default()
                            .push(account.clone());
                    }
                }
            }
            Fact::Assignments(assignments) => inventory.assignments.extend(assignments),
            Fact::ItemDone(phase, key) => {
                self.done.insert((phase, key));
            }
            Fact::Rewound(phase) => self.forget_from(phase),
        }
    }
}

/// The entry of member account `account`, made (as entered) on its first fact.
fn member_entry<'a>(members: &'a mut Vec<MemberAccount>, account: &str) -> &'a mut MemberAccount {
    let at = match members.iter().position(|m| m.account_id == account) {
        Some(at) => at,
        None => {
            members.push(MemberAccount {
                account_id: account.to_string(),
                outcome: member_outcome::ENTERED.to_string(),
                ..MemberAccount::default()
            });
            members.len() - 1
        }
    };
    &mut members[at]
}

/// Appends `fact` to a journal segment being gathered: one JSON document per line.
pub fn record(segment: &mut Vec<u8>, fact: &Fact) {
    // Serializing these plain data types cannot fail; a failure would only lose the fact from
    // the journal, and a resume replaying it would then list that item again.
    if serde_json::to_writer(&mut *segment, fact).is_ok() {
        segment.push(b'\n');
    }
}

/// The facts of a saved segment, in order.
pub fn replay(segment: &[u8]) -> Result<Vec<Fact>, serde_json::Error> {
    segment
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(serde_json::from_slice)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::state::Stream;

    fn user(name: &str) -> IamUser {
        IamUser {
            name: name.into(),
            ..IamUser::default()
        }
    }

    #[test]
    fn facts_learned_apart_hold_one_copy_of_each_id() {
        let interner = Interner::default();
        let assignment = |account: &str, principal: &str| Assignment {
            account_id: Arc::from(account),
            permission_set_arn: Arc::from("arn:ps-1"),
            principal_type: Arc::from("USER"),
            principal_id: Arc::from(principal),
        };
        let mut users = Fact::SsoUsers(vec![SsoUser {
            id: Arc::from("u1"),
            ..SsoUser::default()
        }]);
        let mut assignments = Fact::Assignments(vec![assignment("1", "u1"), assignment("2", "u1")]);
        let mut members = Fact::Members {
            group: "g1".into(),
            users: vec![Arc::from("u1")],
        };
        let mut iam = Fact::IamDetails {
            users: vec![
                IamUser {
                    groups: vec![Arc::from("admins")],
                    ..user("a")
                },
                IamUser {
                    groups: vec![Arc::from("admins")],
                    ..user("b")
                },
            ],
            groups: Vec::new(),
            roles: Vec::new(),
        };
        for fact in [&mut users, &mut assignments, &mut members, &mut iam] {
            fact.intern(&interner);
        }
        let (
            Fact::SsoUsers(users),
            Fact::Assignments(assignments),
            Fact::Members { users: members, .. },
            Fact::IamDetails { users: iam, .. },
        ) = (users, assignments, members, iam)
        else {
            unreachable!("the facts built above")
        };
        let id = &users[0].id;
        assert!(Arc::ptr_eq(id, &assignments[0].principal_id));
        assert!(Arc::ptr_eq(id, &assignments[1].principal_id));
        assert!(
            Arc::ptr_eq(id, &members[0]),
            "a member is the user's own id"
        );
        let (first, second) = (&assignments[0], &assignments[1]);
        assert!(Arc::ptr_eq(
            &first.permission_set_arn,
            &second.permission_set_arn
        ));
        assert!(Arc::ptr_eq(&first.principal_type, &second.principal_type));
        assert!(!Arc::ptr_eq(&first.account_id, &second.account_id));
        assert!(Arc::ptr_eq(&iam[0].groups[0], &iam[1].groups[0]));
        // Interning changes no text.
        assert_eq!((&*first.account_id, &*second.account_id), ("1", "2"));
    }

    #[test]
    fn a_replayed_journal_rebuilds_what_was_learned() {
        let facts = vec![
            Fact::IamDetails {
                users: vec![user("a"), user("b"), user("c")],
                groups: Vec::new(),
                roles: Vec::new(),
            },
            Fact::AccessKeys {
                user: "a".into(),
                keys: vec![AccessKey {
                    id: "AKIA1".into(),
                    ..AccessKey::default()
                }],
            },
            Fact::IamUserGone("b".into()),
            Fact::PermissionSetArns(vec!["ps-1".into(), "ps-2".into()]),
            Fact::ProvisionedIn {
                account: "111".into(),
                permission_sets: vec!["ps-2".into(), "ps-unknown".into()],
            },
            Fact::PermissionSetGone("ps-1".into()),
        ];
        let mut live = PageState::fresh_for(String::new(), Stream::Iam);
        let mut journal = Vec::new();
        for fact in facts {
            record(&mut journal, &fact);
            live.apply(fact);
        }
        let mut replayed = PageState::fresh_for(String::new(), Stream::Iam);
        for fact in replay(&journal).expect("replayed") {
            replayed.apply(fact);
        }
        assert_eq!(replayed, live);
        let names: Vec<&str> = live.inventory.iam_users.iter().map(|u| &*u.name).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(
            live.inventory.iam_users[0]
                .access_keys
                .as_ref()
                .map(Vec::len),
            Some(1)
        );
        assert_eq!(live.permission_set_arns, ["ps-2"]);
        assert_eq!(
            live.provisioned.get("ps-2").map(Vec::as_slice),
            Some(&["111".to_string()][..]),
            "only the permission sets this stream listed"
        );
        assert!(!live.provisioned.contains_key("ps-unknown"));
    }

    #[test]
    fn a_damaged_segment_is_refused() {
        let mut journal = Vec::new();
        record(&mut journal, &Fact::Accounts(Vec::new()));
        journal.extend_from_slice(b"{\"accounts\":[tru\n");
        assert!(replay(&journal).is_err());
    }
}
