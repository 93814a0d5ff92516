//! What `plan` and `apply` look up in AWS when they have no inventory: only what the grants
//! name. The principals by name (one identitystore call each, through the directory), the
//! permission sets by name (from the cached list in `--state-dir`, else listed and described
//! until every name is found), the accounts the grants target (DescribeAccount, once), and
//! whether each piece of access exists (one listing per (account, permission set) pair). A
//! pipeline pays for its grants, not for the size of the organization; the access no grant
//! declares is reported only with `--unmanaged` or `--inventory`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::api::connector::IdentityCenterRef;
use crate::api::grant::TargetKind;
use crate::api::{AccessGrant, AwsConnector};
use crate::aws::error::ErrorKind;
use crate::aws::model::every_page;
use crate::aws::{AwsError, Session, identity_center, organizations};
use crate::grant::access::Access;
use crate::grant::observations::Observations;
use crate::sync::cache::SyncCache;

/// What the grants need to be planned.
pub struct Lookup {
    pub cache: SyncCache,
    pub identity_center: Option<IdentityCenterRef>,
    /// Whether the accounts the grants target are in the organization.
    pub accounts: AccountCheck,
}

/// What DescribeAccount said of the accounts the grants target.
#[derive(Debug, Default)]
pub struct AccountCheck {
    /// Not in the organization.
    pub outside: BTreeSet<String>,
    /// Not checked: DescribeAccount was denied (AWS refuses an assignment to an account outside
    /// the organization anyway; the plan says so).
    pub unchecked: BTreeSet<String>,
}

/// Looks up what `grants` name that `cache` (from `--state-dir`, possibly empty) does not know.
pub async fn look_up(
    session: &Session,
    connector: &AwsConnector,
    grants: &[AccessGrant],
    mut cache: SyncCache,
) -> Result<Lookup, AwsError> {
    let uses_identity_center = grants.iter().any(|g| {
        matches!(
            g.spec.target.kind,
            TargetKind::PermissionSet | TargetKind::SsoGroupMembership
        )
    });
    let identity_center = if uses_identity_center {
        identity_center::instance(session).await?
    } else {
        None
    };

    // Permission sets by name: those the grants name and those the connector's policy names.
    let policy = &connector.spec.grant_policy;
    let mut wanted: BTreeSet<String> = grants
        .iter()
        .filter(|g| g.spec.target.kind == TargetKind::PermissionSet)
        .filter_map(|g| g.spec.target.permission_set.clone())
        .filter(|name| !name.starts_with("arn:"))
        .chain(policy.allowed_permission_sets.iter().cloned())
        .chain(policy.denied_permission_sets.iter().cloned())
        .filter(|name| !cache.permission_set_arns.contains_key(name))
        .collect();
    if let (Some(ic), false) = (&identity_center, wanted.is_empty()) {
        let mut token = None;
        'pages: loop {
            let page = identity_center::list_permission_sets(
                session,
                &ic.instance_arn,
                token,
                identity_center::MAX_PAGE,
            )
            .await?;
            for arn in page.items {
                if cache.permission_sets.contains_key(&arn) {
                    continue;
                }
                let details =
                    identity_center::describe_permission_set(session, &ic.instance_arn, &arn)
                        .await?;
                wanted.remove(&details.name);
                cache.remember(&arn, details);
                if wanted.is_empty() {
                    break 'pages;
                }
            }
            token = page.next;
            if token.is_none() {
                break;
            }
        }
    }

    // Organizational-unit grants need the organization's tree: a few calls, not the
    // directories.
    if grants
        .iter()
        .any(|g| g.spec.target.organizational_unit.is_some())
    {
        organization_tree(session, &mut cache).await?;
    }

    // The accounts the grants target, when the policy allows any account of the organization.
    let mut accounts = AccountCheck::default();
    if policy.allowed_accounts.is_empty() && connector.spec.sync.organizations {
        let targeted: BTreeSet<String> = grants
            .iter()
            .filter(|g| g.spec.target.kind == TargetKind::PermissionSet)
            .filter_map(|g| g.spec.target.account_id.clone())
            .filter(|account| !cache.accounts.contains(account))
            .collect();
        let mut denied = false;
        for account in targeted {
            if denied {
                accounts.unchecked.insert(account);
                continue;
            }
            match organizations::describe_account(session, &account).await {
                Ok(()) => cache.accounts.push(account),
                Err(e) if e.kind == ErrorKind::NotFound => {
                    accounts.outside.insert(account);
                }
                Err(e) if e.kind == ErrorKind::AccessDenied => {
                    tracing::warn!(error = %e, "cannot tell whether the targeted accounts are in the organization: not checked");
                    accounts.unchecked.insert(account);
                    denied = true;
                }
                Err(e) => return Err(e),
            }
        }
        cache.accounts.sort();
        cache.accounts.dedup();
    }
    Ok(Lookup {
        cache,
        identity_center,
        accounts,
    })
}

/// The organization's tree into `cache`: the root, every organizational unit level by level,
/// and each parent's accounts (as the sync lists them).
async fn organization_tree(session: &Session, cache: &mut SyncCache) -> Result<(), AwsError> {
    let size = organizations::MAX_PAGE;
    cache.account_parents.clear();
    cache.unit_parents.clear();
    cache.inactive_accounts.clear();
    let mut parents: Vec<String> =
        every_page(|token| organizations::list_roots(session, token, size))
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
    let mut at = 0;
    while at < parents.len() {
        let parent = parents[at].clone();
        at += 1;
        let units = every_page(|token| {
            organizations::list_organizational_units(session, &parent, token, size)
        })
        .await?;
        for unit in units {
            cache.unit_parents.insert(unit.id.clone(), unit.parent_id);
            parents.push(unit.id);
        }
        let accounts = every_page(|token| {
            organizations::list_accounts_for_parent(session, &parent, token, size)
        })
        .await?;
        for account in accounts {
            if account.status != "ACTIVE" {
                cache.inactive_accounts.push(account.id.clone());
            }
            cache
                .account_parents
                .insert(account.id.clone(), parent.clone());
            cache.accounts.push(account.id);
        }
    }
    cache.accounts.sort();
    cache.accounts.dedup();
    Ok(())
}

/// Whether access exists, from an inventory or asked of AWS.
pub enum Actual {
    /// Every piece of access an inventory shows.
    Known(BTreeSet<Access>),
    /// Asked of AWS, one listing per (account, permission set) pair shared by its grants.
    Asked(Box<Asked>),
}

/// A session and the listings it made.
pub struct Asked {
    session: Session,
    observations: Observations,
}

impl Actual {
    pub fn asked(session: Session) -> Self {
        // One run of plan: a listing serves it whole.
        Self::Asked(Box::new(Asked {
            session,
            observations: Observations::new(Duration::from_secs(3600)),
        }))
    }

    pub async fn has(&self, access: &Access) -> Result<bool, AwsError> {
        match self {
            Self::Known(all) => Ok(all.contains(access)),
            Self::Asked(asked) => {
                asked
                    .observations
                    .exists(&asked.session, access, true)
                    .await
            }
        }
    }
}
