//! `aws-access-operator access`: who can get into what, and why. Answers from an inventory
//! (`--inventory`, or a sync of the connector) and the AccessGrants in the files given: every
//! path of a user or group into accounts, or every path into one account.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::args::{AccessArgs, OutputFormat};
use crate::api::identity::AnyIdentity;
use crate::api::validation::validate_grant;
use crate::api::{AccessGrant, AccessRequest, AwsConnector, PermissionSet};
use crate::effective::{Declaration, Declarations, Path, Via, paths};
use crate::grant::resolve::Directory;
use crate::manifest::{Document, load};
use crate::sync::cache::SyncCache;
use crate::sync::inventory::{IamGroup, IamRole, IamUser, Inventory};
use crate::sync::{NoStore, SyncOptions};

/// The answer, as `-o json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// What was asked: `principal` or `account`, and the value.
    pub asked: BTreeMap<&'static str, String>,
    pub paths: Vec<Path>,
    /// Paths no AccessGrant declares whole.
    pub undeclared: usize,
    /// The account's own IAM users, groups and roles (with `--account`, when the inventory
    /// has that account's IAM: the connector's account, or a member account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iam: Option<AccountIam>,
    /// The PermissionSets in the files that these paths go through: what each declares next to
    /// what AWS holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permission_sets: Vec<DeclaredSet>,
    /// The IdentityCenterUsers and IdentityCenterGroups in the files that the paths (or the
    /// principal asked about) are: what each declares, next to what the inventory holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<DeclaredIdentityView>,
}

/// A user or group of the files, compared with the one of that name in the inventory.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredIdentityView {
    pub kind: &'static str,
    /// The object, `namespace/name`.
    pub object: String,
    /// The user name, or the group's display name.
    pub name: String,
    /// What the object declares, for people.
    pub declared: Vec<String>,
    /// Whether the inventory has it (the operator creates it otherwise).
    pub in_inventory: bool,
    /// What differs from the inventory's copy (display name, email: what a sync reads).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
}

/// The declared users and groups named `names`, each next to the inventory.
fn compare_identities(
    identities: &[AnyIdentity],
    inventory: &Inventory,
    names: &BTreeSet<String>,
) -> Vec<DeclaredIdentityView> {
    let mut out = Vec::new();
    for identity in identities {
        if !names.contains(identity.aws_name()) {
            continue;
        }
        let object = format!(
            "{}/{}",
            identity
                .metadata()
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            identity.metadata().name.clone().unwrap_or_default()
        );
        let (declared, in_inventory, differences) = match identity {
            AnyIdentity::User(user) => {
                let email = user.spec.emails.first().map(|e| e.value.clone());
                let held = inventory
                    .sso_users
                    .iter()
                    .find(|u| u.user_name == user.spec.user_name);
                let mut differences = Vec::new();
                if let Some(held) = held {
                    if held.display_name.as_deref() != Some(user.spec.display_name.as_str()) {
                        differences.push(format!(
                            "display name {:?} in AWS",
                            held.display_name.clone().unwrap_or_default()
                        ));
                    }
                    if held.email.is_some() && held.email != email {
                        differences.push(format!(
                            "email {} in AWS",
                            held.email.clone().unwrap_or_default()
                        ));
                    }
                }
                (
                    vec![
                        format!("display name {:?}", user.spec.display_name),
                        format!("email {}", email.unwrap_or_default()),
                    ],
                    held.is_some(),
                    differences,
                )
            }
            AnyIdentity::Group(group) => (
                vec![format!("display name {:?}", group.spec.display_name)],
                inventory
                    .sso_groups
                    .iter()
                    .any(|g| g.display_name == group.spec.display_name),
                Vec::new(),
            ),
            AnyIdentity::IamUser(_) => continue,
        };
        out.push(DeclaredIdentityView {
            kind: identity.kind(),
            object,
            name: identity.aws_name().to_string(),
            declared,
            in_inventory,
            differences,
        });
    }
    out
}

/// A PermissionSet of the files, compared with the set of that name in the inventory.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredSet {
    /// The object, `namespace/name`.
    pub object: String,
    pub name: String,
    /// What the object declares: session, managed and customer managed policies, inline
    /// policy, boundary.
    pub declared: Vec<String>,
    /// What AWS would need to match it (empty: it matches); `None` when the inventory has not
    /// the set's contents (synced without `sync.policies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub differences: Option<Vec<String>>,
}

/// What a shape declares, for people.
fn summary(shape: &crate::permission_set::shape::Shape) -> Vec<String> {
    use crate::permission_set::shape::iso_duration;
    let mut out = vec![format!(
        "session {}",
        iso_duration(shape.settings.session_seconds)
    )];
    out.extend(shape.managed.iter().cloned());
    out.extend(
        shape
            .customer
            .iter()
            .map(|p| format!("{}{} (customer managed)", p.path, p.name)),
    );
    if shape.inline.is_some() {
        out.push("an inline policy".into());
    }
    if let Some(boundary) = &shape.boundary {
        let named = boundary.managed_policy_arn.clone().or_else(|| {
            boundary
                .customer_managed_policy
                .as_ref()
                .map(|p| format!("{}{}", p.path, p.name))
        });
        out.push(format!("boundary {}", named.unwrap_or_default()));
    }
    out
}

/// The declared sets the selected paths go through, each next to what AWS holds.
fn compare_sets(sets: &[PermissionSet], paths: &[Path]) -> Vec<DeclaredSet> {
    use crate::permission_set::shape::{Settings, Shape, changes, parse_iso_duration};
    let mut out = Vec::new();
    for set in sets {
        let Some(path) = paths
            .iter()
            .find(|p| p.permission_set.name == set.spec.name)
        else {
            continue;
        };
        let declared = Shape::declared(&set.spec);
        // What the inventory does not carry (description, relay state, tags) counts as equal.
        let differences = path.permission_set.contents.as_ref().map(|contents| {
            let settings = Settings {
                description: declared.settings.description.clone(),
                session_seconds: path
                    .permission_set
                    .session_duration
                    .as_deref()
                    .and_then(parse_iso_duration)
                    .unwrap_or(crate::permission_set::shape::DEFAULT_SESSION),
                relay_state: declared.settings.relay_state.clone(),
            };
            let held = Shape::held(settings, contents, &declared.tags);
            changes(&declared, &held)
                .iter()
                .map(|c| c.describe())
                .collect()
        });
        out.push(DeclaredSet {
            object: format!(
                "{}/{}",
                set.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                set.metadata.name.clone().unwrap_or_default()
            ),
            name: set.spec.name.clone(),
            declared: summary(&declared),
            differences,
        });
    }
    out
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountIam {
    pub users: Vec<IamUser>,
    pub groups: Vec<IamGroup>,
    pub roles: Vec<IamRole>,
}

pub async fn run(args: AccessArgs) -> anyhow::Result<ExitCode> {
    let (loaded, _) = load(&args.files)?;
    let mut connectors = Vec::new();
    let mut grants = Vec::new();
    let mut requests = Vec::new();
    let mut sets = Vec::new();
    let mut identities = Vec::new();
    for document in loaded {
        match document.document {
            Document::Connector(c) => connectors.push(*c),
            Document::Grant(g) => grants.push(*g),
            Document::Request(r) => requests.push(*r),
            Document::PermissionSet(s) => sets.push(*s),
            Document::Identity(i) => identities.push(i),
            Document::Undecodable { kind, message, .. } => {
                return Err(super::InvalidInput(format!(
                    "{}: invalid {kind}: {message}",
                    document.source
                ))
                .into());
            }
        }
    }
    let Some(connector) = super::one_valid_connector(connectors)? else {
        return Ok(ExitCode::from(1));
    };
    let inventory = match &args.inventory {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str::<Inventory>(&text)
                .with_context(|| format!("{}: not an inventory", path.display()))?
        }
        None => match sync(&args, &connector).await? {
            Ok(inventory) => inventory,
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(1));
            }
        },
    };
    let declarations = declarations(&connector, &grants, &requests, &inventory).await;
    let all = paths(&inventory, &declarations);
    let mut asked = BTreeMap::new();
    let (selected, iam) = if let Some(principal) = &args.principal {
        asked.insert("principal", principal.clone());
        match of_principal(&inventory, all, principal) {
            Some(selected) => (selected, None),
            // Declared in the files and not created yet: no path, and the declaration says so.
            None if identities
                .iter()
                .any(|i| i.aws_name() == principal.as_str()) =>
            {
                (Vec::new(), None)
            }
            None => {
                eprintln!(
                    "error: --principal {principal:?}: no Identity Center user (user name, id or email) or group (display name or id) of that name in the inventory"
                );
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        let wanted = args.account.clone().unwrap_or_default();
        asked.insert("account", wanted.clone());
        let Some(account) = inventory
            .accounts
            .iter()
            .find(|a| a.id == wanted || a.name == wanted)
            .map(|a| a.id.clone())
            .or_else(|| {
                all.iter()
                    .any(|p| p.account.id == wanted)
                    .then_some(wanted.clone())
            })
        else {
            eprintln!(
                "error: --account {wanted:?}: no account of that id or name in the inventory"
            );
            return Ok(ExitCode::from(1));
        };
        let selected = all
            .into_iter()
            .filter(|p| p.account.id == account)
            .collect();
        (selected, account_iam(&inventory, &account))
    };
    let answer = Answer {
        asked,
        undeclared: selected.iter().filter(|p| !p.declared()).count(),
        permission_sets: compare_sets(&sets, &selected),
        identities: compare_identities(&identities, &inventory, &{
            let mut names: BTreeSet<String> = selected
                .iter()
                .flat_map(|p| {
                    let group = match &p.via {
                        crate::effective::Via::Group { display_name, .. } => {
                            Some(display_name.clone())
                        }
                        crate::effective::Via::Direct => None,
                    };
                    std::iter::once(p.user.user_name.clone()).chain(group)
                })
                .collect();
            names.extend(args.principal.clone());
            names
        }),
        paths: selected,
        iam,
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &answer)?;
            writeln!(out)?;
        }
        OutputFormat::Table => write!(out, "{}", render(&answer))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A sync of the connector, kept nowhere.
async fn sync(
    args: &AccessArgs,
    connector: &AwsConnector,
) -> anyhow::Result<Result<Inventory, String>> {
    let reach = super::sync::Reach {
        external_id_env: &args.external_id_env,
        global_external_id_env: &args.global_external_id_env,
        member_external_id_env: Some(&args.member_external_id_env),
        rate_limits: &args.rate_limits,
        timeouts: args.aws_timeouts.timeouts(),
    };
    let authenticated = match super::sync::authenticated(connector, reach).await? {
        Ok(authenticated) => authenticated,
        Err(message) => return Ok(Err(message)),
    };
    let scope = crate::connect::scope(connector, &authenticated.identity);
    let result = crate::sync::run(
        &authenticated.session,
        &connector.spec.sync,
        &scope,
        &NoStore,
        &SyncOptions::default(),
    )
    .await;
    Ok(result
        .map(|mut inventory| {
            inventory.identity = Some(authenticated.identity.clone());
            inventory
        })
        .map_err(|e| e.to_string()))
}

/// The access the valid AccessGrants among `grants` declare in `inventory`, and the access the
/// Active AccessRequests among `requests` hold (as their status says: files from `kubectl get
/// accessrequests -o yaml`). Those of other connectors are left out.
async fn declarations(
    connector: &AwsConnector,
    grants: &[AccessGrant],
    requests: &[AccessRequest],
    inventory: &Inventory,
) -> Declarations {
    let mut cache = SyncCache::default();
    cache.refresh_from(inventory);
    let directory = Directory {
        cache: &cache,
        identity_center: inventory.identity_center.as_ref(),
        session: None,
        declared: None,
        identities: &[],
    };
    let valid = grants.iter().filter(|g| validate_grant(&g.spec).is_empty());
    let mut found = crate::effective::declarations(connector, valid, &directory).await;
    crate::effective::add_requests(&mut found, connector, requests, &directory).await;
    found
}

/// The paths of a user (by user name, id or email), or else of a group's members through it
/// (by display name or id); `None` when the inventory has neither.
fn of_principal(inventory: &Inventory, all: Vec<Path>, principal: &str) -> Option<Vec<Path>> {
    let user = inventory.sso_users.iter().find(|u| {
        u.user_name == principal || *u.id == *principal || u.email.as_deref() == Some(principal)
    });
    if let Some(user) = user {
        return Some(all.into_iter().filter(|p| *p.user.id == *user.id).collect());
    }
    let group = inventory
        .sso_groups
        .iter()
        .find(|g| g.display_name == principal || g.id == principal)?;
    Some(
        all.into_iter()
            .filter(|p| matches!(&p.via, Via::Group { id, .. } if *id == group.id))
            .collect(),
    )
}

/// The IAM of `account`, when the inventory read it.
fn account_iam(inventory: &Inventory, account: &str) -> Option<AccountIam> {
    let own = inventory
        .identity
        .as_ref()
        .is_some_and(|i| i.account == account);
    if own {
        return Some(AccountIam {
            users: inventory.iam_users.clone(),
            groups: inventory.iam_groups.clone(),
            roles: inventory.iam_roles.clone(),
        });
    }
    inventory
        .member_accounts
        .iter()
        .find(|m| {
            m.account_id == account && m.outcome == crate::aws::model::member_outcome::ENTERED
        })
        .map(|m| AccountIam {
            users: m.iam_users.clone(),
            groups: m.iam_groups.clone(),
            roles: m.iam_roles.clone(),
        })
}

/// `1 path`, `3 paths`.
fn counted(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn declared_text(declared_by: &[Declaration]) -> String {
    if declared_by.is_empty() {
        return "NOT DECLARED by any AccessGrant".into();
    }
    declared_by
        .iter()
        .map(|d| match (&d.request, &d.expires) {
            (Some(request), ends) => {
                let approved = match request.approved_by.as_slice() {
                    [] => "approved by its rule".to_string(),
                    by => format!("approved by {}", by.join(", ")),
                };
                let ends = ends
                    .as_deref()
                    .map(|at| format!(", ends {at}"))
                    .unwrap_or_default();
                // The whole trail only when it says more than who approved.
                let trail = if request.reviews.len() > request.approved_by.len() {
                    format!(" (reviews: {})", request.reviews.join(", "))
                } else {
                    String::new()
                };
                format!("request {}, {approved}{trail}{ends}", d.grant)
            }
            (None, Some(at)) => format!("{} (expires {at})", d.grant),
            (None, None) => d.grant.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The answer for people: paths grouped by user and account.
fn render(answer: &Answer) -> String {
    let mut out = String::new();
    let asked: Vec<String> = answer
        .asked
        .iter()
        .map(|(k, v)| format!("--{k} {v}"))
        .collect();
    let users: std::collections::BTreeSet<&str> = answer
        .paths
        .iter()
        .map(|p| p.user.user_name.as_str())
        .collect();
    let accounts: std::collections::BTreeSet<&str> =
        answer.paths.iter().map(|p| p.account.id.as_str()).collect();
    out.push_str(&format!(
        "{}: {}, {}, {}; {} not declared by any AccessGrant\n",
        asked.join(" "),
        counted(answer.paths.len(), "path"),
        counted(users.len(), "user"),
        counted(accounts.len(), "account"),
        answer.undeclared
    ));
    let mut last: Option<(&str, &str)> = None;
    for path in &answer.paths {
        let here = (path.user.user_name.as_str(), path.account.id.as_str());
        if last != Some(here) {
            let units = if path.account.organizational_units.is_empty() {
                "root".to_string()
            } else {
                path.account.organizational_units.join(" / ")
            };
            let signed_in = path
                .user
                .last_sign_in_at
                .as_deref()
                .map(|at| format!(", last sign-in {at}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "\n{} → account {} {} (in {units}){signed_in}\n",
                path.user.user_name, path.account.id, path.account.name
            ));
            last = Some(here);
        }
        let via = match &path.via {
            Via::Direct => "directly".to_string(),
            Via::Group {
                display_name,
                membership_declared_by,
                ..
            } => format!(
                "through group {display_name} (membership: {})",
                declared_text(membership_declared_by)
            ),
        };
        let session = path
            .permission_set
            .session_duration
            .as_deref()
            .map(|d| format!(", sessions {d}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}{session}, {via}\n    assignment: {}\n",
            path.permission_set.name,
            declared_text(&path.declared_by)
        ));
        if let Some(contents) = &path.permission_set.contents {
            let mut policies: Vec<String> = contents
                .aws_managed_policies
                .iter()
                .map(|p| p.name.clone())
                .collect();
            policies.extend(
                contents
                    .customer_managed_policies
                    .iter()
                    .map(|p| format!("{}{} (customer managed)", p.path, p.name)),
            );
            if contents.inline_policy.is_some() {
                policies.push("an inline policy".into());
            }
            if let Some(boundary) = &contents.permissions_boundary {
                let named = boundary
                    .managed_policy_arn
                    .clone()
                    .or_else(|| {
                        boundary
                            .customer_managed_policy
                            .as_ref()
                            .map(|p| format!("{}{}", p.path, p.name))
                    })
                    .unwrap_or_default();
                policies.push(format!("boundary {named}"));
            }
            if policies.is_empty() {
                policies.push("none".into());
            }
            out.push_str(&format!("    policies: {}\n", policies.join(", ")));
        }
    }
    if !answer.permission_sets.is_empty() {
        out.push_str("\nDeclared permission sets:\n");
        for set in &answer.permission_sets {
            let against = match &set.differences {
                None => "AWS's side not synced (sync.policies)".to_string(),
                Some(d) if d.is_empty() => "AWS holds the same".to_string(),
                Some(d) => format!("AWS differs: {}", d.join("; ")),
            };
            out.push_str(&format!(
                "  {} (PermissionSet {}): {}\n    {against}\n",
                set.name,
                set.object,
                set.declared.join(", ")
            ));
        }
    }
    if !answer.identities.is_empty() {
        out.push_str("\nDeclared users and groups:\n");
        for identity in &answer.identities {
            let against = if !identity.in_inventory {
                "not in the inventory: the operator creates it".to_string()
            } else if identity.differences.is_empty() {
                "AWS holds the same".to_string()
            } else {
                format!("AWS differs: {}", identity.differences.join("; "))
            };
            out.push_str(&format!(
                "  {} ({} {}): {}\n    {against}\n",
                identity.name,
                identity.kind,
                identity.object,
                identity.declared.join(", ")
            ));
        }
    }
    if let Some(iam) = &answer.iam {
        out.push_str(&format!(
            "\nIAM in the account: {} users, {} groups, {} roles\n",
            iam.users.len(),
            iam.groups.len(),
            iam.roles.len()
        ));
        for user in &iam.users {
            let groups = if user.groups.is_empty() {
                "no groups".to_string()
            } else {
                format!("groups: {}", user.groups.join(", "))
            };
            out.push_str(&format!("  user {} ({groups})\n", user.name));
        }
        for role in &iam.roles {
            out.push_str(&format!(
                "  role {} (assumable by: {})\n",
                role.name,
                role.trusted_principals.join(", ")
            ));
        }
    }
    out
}
