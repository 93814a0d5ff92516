//! From the names in an AccessGrant to the ids of `Access`, through the connector's cache
//! (filled by every sync) and, for principals the last sync did not see, identitystore lookups.

use crate::api::connector::IdentityCenterRef;
use crate::api::grant::{AccessGrantSpec, PrincipalKind, TargetKind};
use crate::aws::{AwsError, Session, access};
use crate::identity::record::IdentityKind;
use crate::sync::cache::SyncCache;

use super::access::Access;

/// Why a grant's names did not resolve; retried later, not an error loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// `PrincipalNotFound`, `PermissionSetNotFound`, `PermissionSetPending`, `GroupNotFound`,
    /// `IdentityPending` or `OrganizationalUnitNotFound`.
    pub reason: &'static str,
    pub message: String,
}

impl Unresolved {
    fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }
}

/// What a grant resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The access; for an organizational-unit grant, the assignment with every id but the
    /// account's (`account_id` empty), which `accesses` gives per account.
    pub access: Access,
    /// Each piece of access the grant stands for: `access` itself, or one assignment per
    /// ACTIVE account under the organizational unit (none when it has none).
    pub accesses: Vec<Access>,
    /// The permission set's name, for the connector's allow and deny lists.
    pub permission_set_name: Option<String>,
    /// The organizational unit of an organizational-unit grant.
    pub unit: Option<String>,
}

impl Resolved {
    fn one(access: Access, permission_set_name: Option<String>) -> Self {
        Self {
            accesses: vec![access.clone()],
            access,
            permission_set_name,
            unit: None,
        }
    }
}

/// Where names are looked up: the cache of the last sync, the Identity Center instance, and
/// (optionally) AWS for what the cache does not know.
pub struct Directory<'a> {
    pub cache: &'a SyncCache,
    pub identity_center: Option<&'a IdentityCenterRef>,
    pub session: Option<&'a Session>,
    /// The PermissionSet object that declares the set the grant names, if one does: its ARN
    /// (from the operator's record) counts before the last sync's, and while it is being
    /// created the grant waits for it.
    pub declared: Option<&'a DeclaredSet>,
    /// The users and groups the grant names that objects of the operator's declare: their ids
    /// count before the last sync's (which may not have seen them yet), and while one is being
    /// created the grant waits for it.
    pub identities: &'a [DeclaredIdentity],
}

/// A user or group declared by an IdentityCenterUser, IdentityCenterGroup or IamUser, as its
/// reconciler last converged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredIdentity {
    pub kind: IdentityKind,
    /// The user name, or the group's display name.
    pub name: String,
    /// `None` while it is being created.
    pub id: Option<String>,
    /// The declaring object, `Kind namespace/name`.
    pub object: String,
}

/// A permission set declared by a PermissionSet object, as the operator's record has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredSet {
    pub name: String,
    /// `None` while it is being created.
    pub arn: Option<String>,
    /// The PermissionSet object, `namespace/name`.
    pub object: String,
}

impl Directory<'_> {
    fn declared(&self, kind: IdentityKind, name: &str) -> Option<&DeclaredIdentity> {
        self.identities
            .iter()
            .find(|d| d.kind == kind && d.name == name)
    }

    /// Why the grant waits, when a user or group it names is declared and being created.
    fn pending(&self, field: &str, kind: IdentityKind, name: &str) -> Option<Unresolved> {
        let declared = self.declared(kind, name).filter(|d| d.id.is_none())?;
        Some(Unresolved::new(
            "IdentityPending",
            format!(
                "{field}: {name} is declared by {} and is being created",
                declared.object
            ),
        ))
    }

    async fn principal(&self, group: bool, name: &str) -> Result<Option<String>, AwsError> {
        let kind = if group {
            IdentityKind::IdentityCenterGroup
        } else {
            IdentityKind::IdentityCenterUser
        };
        if let Some(id) = self.declared(kind, name).and_then(|d| d.id.clone()) {
            return Ok(Some(id));
        }
        let cached = if group {
            self.cache.sso_groups.get(name)
        } else {
            self.cache.sso_users.get(name)
        };
        if let Some(id) = cached {
            return Ok(Some(id.clone()));
        }
        match (self.session, self.identity_center) {
            (Some(session), Some(ic)) => {
                access::principal_id(session, &ic.identity_store_id, group, name).await
            }
            _ => Ok(None),
        }
    }

    fn permission_set_name(&self, arn: &str) -> Option<String> {
        self.cache
            .permission_set_arns
            .iter()
            .find(|(_, a)| a.as_str() == arn)
            .map(|(name, _)| name.clone())
    }
}

fn no_identity_center() -> Unresolved {
    Unresolved::new(
        "PrincipalNotFound",
        "the connector has no IAM Identity Center instance (or has not synced yet)".into(),
    )
}

/// Resolves a valid grant spec.
pub async fn resolve(
    spec: &AccessGrantSpec,
    directory: &Directory<'_>,
) -> Result<Result<Resolved, Unresolved>, AwsError> {
    let principal = &spec.principal;
    let target = &spec.target;
    let label = principal
        .name
        .as_deref()
        .or(principal.id.as_deref())
        .unwrap_or_default();
    let sso_principal = |group: bool| async move {
        if let Some(id) = &principal.id {
            return Ok(Some(id.clone()));
        }
        directory
            .principal(group, principal.name.as_deref().unwrap_or_default())
            .await
    };
    if let Some(name) = &principal.name {
        let kind = match principal.kind {
            PrincipalKind::SsoUser => IdentityKind::IdentityCenterUser,
            PrincipalKind::SsoGroup => IdentityKind::IdentityCenterGroup,
            PrincipalKind::IamUser => IdentityKind::IamUser,
        };
        if let Some(pending) = directory.pending("spec.principal", kind, name) {
            return Ok(Err(pending));
        }
    }
    if target.kind == TargetKind::SsoGroupMembership
        && let Some(group) = &target.group
        && let Some(pending) = directory.pending(
            "spec.target.group",
            IdentityKind::IdentityCenterGroup,
            group,
        )
    {
        return Ok(Err(pending));
    }
    match target.kind {
        TargetKind::PermissionSet => {
            let Some(ic) = directory.identity_center else {
                return Ok(Err(no_identity_center()));
            };
            let group = principal.kind == PrincipalKind::SsoGroup;
            let Some(principal_id) = sso_principal(group).await? else {
                let what = if group {
                    "Identity Center group"
                } else {
                    "Identity Center user"
                };
                return Ok(Err(Unresolved::new(
                    "PrincipalNotFound",
                    format!("spec.principal: no {what} {label:?}"),
                )));
            };
            let requested = target.permission_set.as_deref().unwrap_or_default();
            let (arn, name) = if requested.starts_with("arn:") {
                (
                    requested.to_string(),
                    directory.permission_set_name(requested),
                )
            } else if let Some(declared) = directory.declared.filter(|d| d.name == requested) {
                match &declared.arn {
                    Some(arn) => (arn.clone(), Some(requested.to_string())),
                    None => {
                        return Ok(Err(Unresolved::new(
                            "PermissionSetPending",
                            format!(
                                "spec.target.permissionSet: {requested} is declared by PermissionSet {} and is being created",
                                declared.object
                            ),
                        )));
                    }
                }
            } else {
                match directory.cache.permission_set_arns.get(requested) {
                    Some(arn) => (arn.clone(), Some(requested.to_string())),
                    None => {
                        return Ok(Err(Unresolved::new(
                            "PermissionSetNotFound",
                            format!(
                                "spec.target.permissionSet: no permission set named {requested:?} in the last sync"
                            ),
                        )));
                    }
                }
            };
            let assignment = |account_id: String| Access::Assignment {
                instance_arn: ic.instance_arn.clone(),
                account_id,
                permission_set_arn: arn.clone(),
                principal_type: if group { "GROUP" } else { "USER" }.to_string(),
                principal_id: principal_id.clone(),
            };
            let Some(unit) = &target.organizational_unit else {
                let account = target.account_id.clone().unwrap_or_default();
                return Ok(Ok(Resolved::one(assignment(account), name)));
            };
            if !directory.cache.knows_unit(unit) {
                return Ok(Err(Unresolved::new(
                    "OrganizationalUnitNotFound",
                    format!(
                        "spec.target.organizationalUnit: no organizational unit {unit} in the last sync"
                    ),
                )));
            }
            Ok(Ok(Resolved {
                access: assignment(String::new()),
                accesses: directory
                    .cache
                    .accounts_under(unit)
                    .into_iter()
                    .map(assignment)
                    .collect(),
                permission_set_name: name,
                unit: Some(unit.clone()),
            }))
        }
        TargetKind::SsoGroupMembership => {
            let Some(ic) = directory.identity_center else {
                return Ok(Err(no_identity_center()));
            };
            let Some(user_id) = sso_principal(false).await? else {
                return Ok(Err(Unresolved::new(
                    "PrincipalNotFound",
                    format!("spec.principal: no Identity Center user {label:?}"),
                )));
            };
            let group = target.group.as_deref().unwrap_or_default();
            let Some(group_id) = directory.principal(true, group).await? else {
                return Ok(Err(Unresolved::new(
                    "GroupNotFound",
                    format!("spec.target.group: no Identity Center group {group:?}"),
                )));
            };
            Ok(Ok(Resolved::one(
                Access::SsoMembership {
                    identity_store_id: ic.identity_store_id.clone(),
                    group_id,
                    user_id,
                },
                None,
            )))
        }
        TargetKind::IamGroupMembership => {
            let user = principal
                .name
                .clone()
                .or_else(|| principal.id.clone())
                .unwrap_or_default();
            let group = target.group.clone().unwrap_or_default();
            // IAM calls take names; the cache only tells whether they existed at the last sync.
            let synced =
                !directory.cache.iam_users.is_empty() || !directory.cache.iam_groups.is_empty();
            let declared = directory
                .declared(IdentityKind::IamUser, &user)
                .is_some_and(|d| d.id.is_some());
            if synced && !declared && !directory.cache.iam_users.contains(&user) {
                return Ok(Err(Unresolved::new(
                    "PrincipalNotFound",
                    format!("spec.principal: no IAM user {user:?}"),
                )));
            }
            if synced && !directory.cache.iam_groups.contains(&group) {
                return Ok(Err(Unresolved::new(
                    "GroupNotFound",
                    format!("spec.target.group: no IAM group {group:?}"),
                )));
            }
            Ok(Ok(Resolved::one(
                Access::IamMembership { group, user },
                None,
            )))
        }
    }
}
