//! PermissionSets in `plan` and `apply`: per set, what would change in AWS (each write, a
//! readable difference of the inline policy, the accounts to provision) and what it costs in
//! calls; `apply` converges them through the operator's shell, with the records in
//! `--state-dir`, before the grants that may name them are planned.

use std::io::Write;

use serde::Serialize;

use crate::api::permission_set_validation::validate_permission_set;
use crate::api::validation::describe;
use crate::api::{AwsConnector, PermissionSet};
use crate::aws::Session;
use crate::fence::Fence;
use crate::grant::policy::namespace_allowed_by;
use crate::grant::resolve::DeclaredSet;
use crate::permission_set::execute::{Outcome, Previewed, Refusal, SetAsk, Shell};
use crate::permission_set::policy;
use crate::permission_set::record::{Declarer, FileSetRecords};

/// The reads of one check of a declared set (see docs/performance.md).
pub const CHECK_READS: usize = 7;

/// What one set's provisioning to one account costs: ProvisionPermissionSet and at least one
/// DescribePermissionSetProvisioningStatus when AWS does not answer at once.
const PROVISION_CALLS: usize = 1;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetLine {
    pub namespace: String,
    pub name: String,
    /// The set's name in Identity Center.
    pub permission_set: String,
    pub action: ObjectAction,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inline_policy_diff: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub provision: Vec<String>,
    /// AWS calls: the reads of the check, the writes, the provisioning.
    pub calls: Calls,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectAction {
    Create,
    Adopt,
    Change,
    NoChange,
    /// The connector's permissionSetPolicy (or its namespaces) refuses it.
    NotAllowed,
    /// Someone else's set of that name, or another object's declaration.
    Refused,
    Invalid,
    /// Not looked up in AWS (an `--inventory` plan).
    NotLookedUp,
}

impl ObjectAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Adopt => "adopt",
            Self::Change => "change",
            Self::NoChange => "no change",
            Self::NotAllowed => "not allowed",
            Self::Refused => "refused",
            Self::Invalid => "invalid",
            Self::NotLookedUp => "not looked up",
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Calls {
    pub reads: usize,
    pub writes: usize,
    pub provisioning: usize,
}

fn object_namespace(set: &PermissionSet) -> String {
    set.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn line(set: &PermissionSet, action: ObjectAction, detail: String) -> SetLine {
    SetLine {
        namespace: object_namespace(set),
        name: set.metadata.name.clone().unwrap_or_default(),
        permission_set: set.spec.name.clone(),
        action,
        changes: Vec::new(),
        inline_policy_diff: Vec::new(),
        provision: Vec::new(),
        calls: Calls::default(),
        detail,
        result: None,
    }
}

/// Why an object in `namespace` that names `reference` is not served by `connector` (the one
/// connector `plan` and `apply` are given).
pub fn other_connector(
    reference: &crate::api::grant::ConnectorRef,
    namespace: &str,
    connector: &AwsConnector,
) -> Option<String> {
    let connector_namespace = connector
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let connector_name = connector.metadata.name.clone().unwrap_or_default();
    let named = reference
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.to_string());
    (reference.name != connector_name || named != connector_namespace).then(|| {
        format!(
            "spec.connectorRef names another connector than {connector_namespace}/{connector_name}"
        )
    })
}

/// Why the set may not be converged through `connector`, before any AWS call.
fn refused(set: &PermissionSet, connector: &AwsConnector) -> Option<(ObjectAction, String)> {
    let errors = validate_permission_set(&set.spec);
    if !errors.is_empty() {
        return Some((ObjectAction::Invalid, describe(&errors)));
    }
    if let Some(message) =
        other_connector(&set.spec.connector_ref, &object_namespace(set), connector)
    {
        return Some((ObjectAction::NotAllowed, message));
    }
    let connector_namespace = connector
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let policy = &connector.spec.permission_set_policy;
    if let Err(message) = namespace_allowed_by(
        ("permissionSetPolicy", "PermissionSets"),
        &policy.allowed_namespaces,
        &connector_namespace,
        &object_namespace(set),
        None,
    ) {
        return Some((ObjectAction::NotAllowed, message));
    }
    let broken = policy::check(policy, &set.spec);
    (!broken.is_empty()).then(|| (ObjectAction::NotAllowed, broken.join("; ")))
}

/// Plans (or, `apply`, converges) every set; returns the lines and the sets grants may name.
pub async fn run(
    sets: &[PermissionSet],
    connector: &AwsConnector,
    session: Option<&Session>,
    instance: Option<&str>,
    state_dir: &std::path::Path,
    apply: bool,
) -> (Vec<SetLine>, Vec<DeclaredSet>) {
    let connector_key = super::connector_key(connector);
    let records = FileSetRecords::new(state_dir);
    let fence = Fence::unfenced();
    let mut lines = Vec::new();
    let mut declared = Vec::new();
    let mut names: Option<std::collections::BTreeMap<String, String>> = None;
    for set in sets {
        let object = format!(
            "{}/{}",
            object_namespace(set),
            set.metadata.name.clone().unwrap_or_default()
        );
        if let Some((action, detail)) = refused(set, connector) {
            lines.push(line(set, action, detail));
            continue;
        }
        let (Some(session), Some(instance)) = (session, instance) else {
            lines.push(line(
                set,
                ObjectAction::NotLookedUp,
                "permission sets are looked up in AWS: run without --inventory, or the organization has no Identity Center instance".into(),
            ));
            continue;
        };
        let shell = Shell {
            session,
            records: &records,
            fence: &fence,
        };
        let ask = SetAsk {
            connector: &connector_key,
            instance,
            // `apply` has no object uid: the object's namespace and name stand for it.
            declarer: Declarer {
                uid: object.clone(),
                object: object.clone(),
            },
            spec: &set.spec,
            generation: None,
            read_only: connector.spec.read_only,
            look_up_first: false,
        };
        // Every set of the instance by name, read once for the whole plan.
        if names.is_none() {
            match crate::aws::permission_set_admin::names(session, instance).await {
                Ok(found) => names = Some(found),
                Err(error) => {
                    lines.push(line(set, ObjectAction::Refused, error.to_string()));
                    continue;
                }
            }
        }
        let preview = match shell
            .preview(&ask, names.as_ref().unwrap_or(&Default::default()))
            .await
        {
            Ok(preview) => preview,
            Err(error) => {
                lines.push(line(set, ObjectAction::Refused, error.to_string()));
                continue;
            }
        };
        let (action, detail) = match &preview.action {
            Previewed::Create => (ObjectAction::Create, format!("create {}", set.spec.name)),
            Previewed::Adopt => (ObjectAction::Adopt, format!("adopt {}", set.spec.name)),
            Previewed::Change => (
                ObjectAction::Change,
                format!("{} change(s)", preview.changes.len()),
            ),
            Previewed::NoChange => (
                ObjectAction::NoChange,
                "AWS holds what the object declares".into(),
            ),
            Previewed::Refused(refusal) => (ObjectAction::Refused, refusal_text(refusal)),
        };
        let mut planned = line(set, action, detail);
        planned.changes = preview.changes.iter().map(|c| c.describe()).collect();
        planned.inline_policy_diff = preview.inline_diff.clone();
        planned.provision = preview.provision.clone();
        planned.calls = Calls {
            reads: if preview.arn.is_some() {
                CHECK_READS
            } else {
                0
            },
            writes: preview.changes.len()
                + usize::from(matches!(preview.action, Previewed::Create)),
            provisioning: preview.provision.len() * PROVISION_CALLS,
        };
        if matches!(preview.action, Previewed::Refused(_)) {
            lines.push(planned);
            continue;
        }
        if !apply {
            declared.push(DeclaredSet {
                name: set.spec.name.clone(),
                arn: preview.arn.clone(),
                object: object.clone(),
            });
            lines.push(planned);
            continue;
        }
        planned.result = Some(match shell.converge(&ask).await {
            Ok(Outcome::Converged(report)) => {
                declared.push(DeclaredSet {
                    name: set.spec.name.clone(),
                    arn: Some(report.arn.clone()),
                    object: object.clone(),
                });
                let failed = report.failed();
                if report.in_progress {
                    "applied; provisioning still in progress (apply again to follow it)".to_string()
                } else if failed.is_empty() {
                    format!("applied ({} account(s) provisioned)", report.accounts.len())
                } else {
                    format!("failed: provisioning failed in {}", failed.join("; "))
                }
            }
            Ok(Outcome::Refused(refusal)) => format!("failed: {}", refusal_text(&refusal)),
            Err(error) => format!("failed: {error}"),
        });
        lines.push(planned);
    }
    (lines, declared)
}

fn refusal_text(refusal: &Refusal) -> String {
    match refusal {
        Refusal::OwnedElsewhere(message) | Refusal::ReadOnly(message) => message.clone(),
        Refusal::DeclaredElsewhere(other) => format!("declared by PermissionSet {other}"),
    }
}

/// Whether a line stops `apply` (a refused or invalid set, or one that failed).
pub fn failed(line: &SetLine) -> bool {
    matches!(
        line.action,
        ObjectAction::Invalid | ObjectAction::NotAllowed | ObjectAction::Refused
    ) || line
        .result
        .as_deref()
        .is_some_and(|r| r.starts_with("failed"))
}

pub fn print_table(lines: &[SetLine], applied: bool, out: &mut impl Write) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let width = lines
        .iter()
        .map(|l| l.namespace.len() + l.name.len() + 1)
        .max()
        .unwrap_or(14)
        .max(14);
    let header = if applied { "RESULT" } else { "DETAIL" };
    writeln!(
        out,
        "{:<width$}  {:<11}  {:<5}  {header}",
        "PERMISSION SET", "ACTION", "CALLS"
    )?;
    for set in lines {
        let object = format!("{}/{}", set.namespace, set.name);
        let calls = set.calls.reads + set.calls.writes + set.calls.provisioning;
        let last = match (&set.result, applied) {
            (Some(result), true) => result.as_str(),
            _ => set.detail.as_str(),
        };
        writeln!(
            out,
            "{object:<width$}  {:<11}  {calls:<5}  {last}",
            set.action.as_str()
        )?;
        for change in &set.changes {
            writeln!(out, "    {change}")?;
        }
        for diff in &set.inline_policy_diff {
            writeln!(out, "      {diff}")?;
        }
        if !set.provision.is_empty() {
            writeln!(out, "    provision to {}", set.provision.join(", "))?;
        }
    }
    writeln!(out)
}
