//! IdentityCenterUsers, IdentityCenterGroups and IamUsers in `plan` and `apply`: per object,
//! whether it would be created, adopted or changed (each attribute) and what that costs in
//! calls; `apply` converges them through the operator's shell, with the records in
//! `--state-dir`, before the grants that may name them are planned.

use std::io::Write;

use serde::Serialize;

use super::set_plan::{Calls, ObjectAction, other_connector};
use crate::api::AwsConnector;
use crate::api::connector::IdentityCenterRef;
use crate::api::identity::AnyIdentity;
use crate::api::validation::describe;
use crate::aws::Session;
use crate::controller::identity::kind_of;
use crate::fence::Fence;
use crate::grant::policy::namespace_allowed_by;
use crate::grant::resolve::DeclaredIdentity;
use crate::identity::execute::{IdentityAsk, Outcome, Shell};
use crate::identity::policy;
use crate::identity::record::{FileIdentityRecords, IdentityKind};
use crate::identity::shape::Shape;
use crate::permission_set::execute::{Previewed, Refusal};
use crate::permission_set::record::Declarer;

/// The reads of one check of a declared user or group: one describe (Identity Store) or
/// GetUser (IAM).
pub const CHECK_READS: usize = 1;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityLine {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// The user name, or the group's display name.
    pub aws_name: String,
    pub action: ObjectAction,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    pub calls: Calls,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

fn object_namespace(identity: &AnyIdentity) -> String {
    identity
        .metadata()
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn line(identity: &AnyIdentity, action: ObjectAction, detail: String) -> IdentityLine {
    IdentityLine {
        kind: identity.kind(),
        namespace: object_namespace(identity),
        name: identity.metadata().name.clone().unwrap_or_default(),
        aws_name: identity.aws_name().to_string(),
        action,
        changes: Vec::new(),
        calls: Calls::default(),
        detail,
        result: None,
    }
}

/// Why the object may not be converged through `connector`, before any AWS call.
fn refused(identity: &AnyIdentity, connector: &AwsConnector) -> Option<(ObjectAction, String)> {
    let errors = identity.validate();
    if !errors.is_empty() {
        return Some((ObjectAction::Invalid, describe(&errors)));
    }
    let namespace = object_namespace(identity);
    if let Some(message) = other_connector(identity.connector_ref(), &namespace, connector) {
        return Some((ObjectAction::NotAllowed, message));
    }
    let connector_namespace = connector
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (rule, allowed) = policy::namespaces(&connector.spec.identity_policy, identity);
    if let Err(message) =
        namespace_allowed_by(rule, allowed, &connector_namespace, &namespace, None)
    {
        return Some((ObjectAction::NotAllowed, message));
    }
    let mut broken = policy::check(&connector.spec.identity_policy, identity);
    broken.extend(policy::unreachable_account(identity, connector));
    (!broken.is_empty()).then(|| (ObjectAction::NotAllowed, broken.join("; ")))
}

/// Plans (or, `apply`, converges) every user and group; returns the lines and what grants may
/// name.
pub async fn run(
    identities: &[AnyIdentity],
    connector: &AwsConnector,
    session: Option<&Session>,
    identity_center: Option<&IdentityCenterRef>,
    state_dir: &std::path::Path,
    apply: bool,
) -> (Vec<IdentityLine>, Vec<DeclaredIdentity>) {
    let connector_key = super::connector_key(connector);
    let records = FileIdentityRecords::new(state_dir);
    // What each object declared when last applied: a user name (an account) is never changed
    // in place, as the API server refuses it in a cluster.
    let recorded = records.all().await.unwrap_or_default();
    let fence = Fence::unfenced();
    let mut lines = Vec::new();
    let mut declared = Vec::new();
    for identity in identities {
        let object = format!(
            "{}/{}",
            object_namespace(identity),
            identity.metadata().name.clone().unwrap_or_default()
        );
        if let Some((action, detail)) = refused(identity, connector) {
            lines.push(line(identity, action, detail));
            continue;
        }
        let kind = kind_of(identity);
        let account = match identity {
            AnyIdentity::IamUser(user) => user.spec.account.clone(),
            _ => None,
        };
        if let Some(earlier) = recorded.iter().find(|r| {
            r.kind == kind
                && r.declarer.uid == object
                && kind != IdentityKind::IdentityCenterGroup
                && (r.name != identity.aws_name() || r.account != account)
        }) {
            lines.push(line(
                identity,
                ObjectAction::Refused,
                format!(
                    "spec.userName (and an IamUser's spec.account) cannot change in place: {object} declared {} {}{}; a user of another name is another person, declared by another object",
                    kind.noun(),
                    earlier.name,
                    earlier
                        .account
                        .as_deref()
                        .map(|a| format!(" in account {a}"))
                        .unwrap_or_default()
                ),
            ));
            continue;
        }
        let store = identity_center.map(|ic| ic.identity_store_id.as_str());
        let reached = match (session, kind, store) {
            (None, _, _) => None,
            (Some(session), IdentityKind::IamUser, _) => match identity {
                AnyIdentity::IamUser(user) if user.spec.account.is_some() => {
                    let role = connector
                        .spec
                        .sync
                        .members()
                        .map(|m| m.role_name.clone())
                        .unwrap_or_default();
                    let account = user.spec.account.clone().unwrap_or_default();
                    Some((session.member(&account, &role).await, String::new()))
                }
                _ => Some((session.clone(), String::new())),
            },
            (Some(session), _, Some(store)) => Some((session.clone(), store.to_string())),
            (Some(_), _, None) => None,
        };
        let Some((session, store)) = reached else {
            lines.push(line(
                identity,
                ObjectAction::NotLookedUp,
                "users and groups are looked up in AWS: run without --inventory, or the organization has no Identity Center instance".into(),
            ));
            continue;
        };
        let shell = Shell {
            session: &session,
            records: &records,
            fence: &fence,
        };
        let ask = IdentityAsk {
            connector: &connector_key,
            store: &store,
            account: match identity {
                AnyIdentity::IamUser(user) => user.spec.account.as_deref(),
                _ => None,
            },
            kind,
            name: identity.aws_name(),
            // `apply` has no object uid: the object's namespace and name stand for it.
            declarer: Declarer {
                uid: object.clone(),
                object: object.clone(),
            },
            declared: Shape::declared(identity),
            adopt: identity.adopt(),
            generation: None,
            read_only: connector.spec.read_only,
            look_up_first: false,
        };
        let preview = match shell.preview(&ask).await {
            Ok(preview) => preview,
            Err(error) => {
                lines.push(line(identity, ObjectAction::Refused, error.to_string()));
                continue;
            }
        };
        let what = format!("{} {}", kind.noun(), identity.aws_name());
        let (action, detail) = match &preview.action {
            Previewed::Create => (ObjectAction::Create, format!("create {what}")),
            Previewed::Adopt => (ObjectAction::Adopt, format!("adopt {what}")),
            Previewed::Change => (
                ObjectAction::Change,
                format!("{} change(s)", preview.changes.len()),
            ),
            Previewed::NoChange => (
                ObjectAction::NoChange,
                "AWS holds what the object declares".into(),
            ),
            Previewed::Refused(refusal) => (ObjectAction::Refused, refusal_text(kind, refusal)),
        };
        let mut planned = line(identity, action, detail);
        planned.changes = preview.changes.clone();
        // The Identity Store's changes go in one update; an IAM user's one call each.
        let writes = match (kind, preview.changes.len()) {
            (_, 0) => 0,
            (IdentityKind::IamUser, n) => n,
            _ => 1,
        };
        planned.calls = Calls {
            reads: if preview.id.is_some() { CHECK_READS } else { 0 },
            writes: writes + usize::from(matches!(preview.action, Previewed::Create)),
            provisioning: 0,
        };
        if matches!(preview.action, Previewed::Refused(_)) {
            lines.push(planned);
            continue;
        }
        let named = |id: Option<String>| DeclaredIdentity {
            kind,
            name: identity.aws_name().to_string(),
            id,
            object: format!("{} {object}", identity.kind()),
        };
        // Grants reach IAM users of the connector's own account only.
        let grants_reach = !matches!(identity, AnyIdentity::IamUser(u) if u.spec.account.is_some());
        if !apply {
            if grants_reach {
                declared.push(named(preview.id.clone()));
            }
            lines.push(planned);
            continue;
        }
        planned.result = Some(match shell.converge(&ask).await {
            Ok(Outcome::Converged(report)) => {
                if grants_reach {
                    declared.push(named(Some(report.id.clone())));
                }
                if report.created {
                    format!("applied (created, id {})", report.id)
                } else {
                    format!("applied ({} change(s))", report.changes.len())
                }
            }
            Ok(Outcome::Refused(refusal)) => format!("failed: {}", refusal_text(kind, &refusal)),
            Err(error) => format!("failed: {error}"),
        });
        lines.push(planned);
    }
    (lines, declared)
}

fn refusal_text(kind: IdentityKind, refusal: &Refusal) -> String {
    match refusal {
        Refusal::OwnedElsewhere(message) | Refusal::ReadOnly(message) => message.clone(),
        Refusal::DeclaredElsewhere(other) => format!("declared by {} {other}", kind.as_str()),
    }
}

/// Whether a line stops `apply` (a refused or invalid object, or one that failed).
pub fn failed(line: &IdentityLine) -> bool {
    matches!(
        line.action,
        ObjectAction::Invalid | ObjectAction::NotAllowed | ObjectAction::Refused
    ) || line
        .result
        .as_deref()
        .is_some_and(|r| r.starts_with("failed"))
}

pub fn print_table(
    lines: &[IdentityLine],
    applied: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let objects: Vec<String> = lines
        .iter()
        .map(|l| format!("{} {}/{}", l.kind, l.namespace, l.name))
        .collect();
    let width = objects.iter().map(String::len).max().unwrap_or(8).max(8);
    let header = if applied { "RESULT" } else { "DETAIL" };
    writeln!(
        out,
        "{:<width$}  {:<11}  {:<5}  {header}",
        "IDENTITY", "ACTION", "CALLS"
    )?;
    for (identity, object) in lines.iter().zip(&objects) {
        let calls = identity.calls.reads + identity.calls.writes;
        let last = match (&identity.result, applied) {
            (Some(result), true) => result.as_str(),
            _ => identity.detail.as_str(),
        };
        writeln!(
            out,
            "{object:<width$}  {:<11}  {calls:<5}  {last}",
            identity.action.as_str()
        )?;
        for change in &identity.changes {
            writeln!(out, "    {change}")?;
        }
    }
    writeln!(out)
}
