//! The one shell that carries a declared permission set out in AWS, for the operator and for
//! `apply` alike. Every write is fenced and recorded first: the record says a create is under
//! way before CreatePermissionSet, that the accounts are due a provisioning before the change
//! that makes them due, and each provisioning request as AWS answers it. A restart resumes from
//! the record: a create is confirmed by the token tagged on the set, a provisioning finishes
//! where it stopped, once.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::record::{Declarer, Provisioning, SetRecord, SetRecords, key};
use super::shape::{
    CREATE_TOKEN_TAG, Change, Settings, Shape, changes, iso_duration, parse_iso_duration,
};
use crate::api::permission_set::{AccountProvisioning, PermissionSetSpec, ResourceDeletionPolicy};
use crate::aws::model::Assignment;
use crate::aws::permission_set_admin::{self as admin, Provisioned};
use crate::aws::{AwsError, ErrorKind, Session, permission_sets};
use crate::fence::Fence;
use crate::fingerprint::short_hash;
use crate::grant::ledger::Origin;

pub use crate::records::ShellError as SetError;

/// One declared set to converge.
pub struct SetAsk<'a> {
    /// The connector, `namespace/name`.
    pub connector: &'a str,
    pub instance: &'a str,
    pub declarer: Declarer,
    pub spec: &'a PermissionSetSpec,
    pub generation: Option<i64>,
    pub read_only: bool,
    /// Look the name up before creating: the last attempt found it taken. (A create of a taken
    /// name is refused by AWS, but it is a write attempt every check.)
    pub look_up_first: bool,
}

/// What converging found and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub arn: String,
    pub origin: Option<Origin>,
    /// The set was created (or, gone from AWS, created again) in this pass.
    pub created: bool,
    /// The changes written in this pass (or, read-only, that would be).
    pub changes: Vec<String>,
    /// Of those, the ones that put back a change made outside the operator: the object had not
    /// changed since AWS last matched it.
    pub drift: Vec<String>,
    /// Each account provisioned in this pass, with its outcome.
    pub accounts: Vec<AccountProvisioning>,
    /// Provisioning requests AWS is still working on.
    pub in_progress: bool,
    /// How many accounts the set is provisioned to.
    pub accounts_provisioned: u32,
}

impl Report {
    /// Each account whose provisioning failed, as `account: AWS's reason`.
    pub fn failed(&self) -> Vec<String> {
        self.accounts
            .iter()
            .filter(|a| a.state == FAILED)
            .map(|a| {
                format!(
                    "{}: {}",
                    a.account_id,
                    a.message.clone().unwrap_or_default()
                )
            })
            .collect()
    }
}

/// An account's provisioning outcomes, as `status.accounts[].state` says them.
pub const PROVISIONED: &str = "Provisioned";
pub const FAILED: &str = "Failed";

/// Why a set is not converged.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// A set of that name exists in AWS and this object did not create it.
    OwnedElsewhere(String),
    /// Another object declares the set (its `namespace/name`).
    DeclaredElsewhere(String),
    /// The connector is read-only and the set does not exist yet.
    ReadOnly(String),
}

pub enum Outcome {
    Converged(Report),
    Refused(Refusal),
}

/// What converging would do, found with reads only (`plan`).
#[derive(Clone, Debug, PartialEq)]
pub enum Previewed {
    Create,
    Adopt,
    Change,
    NoChange,
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Preview {
    pub action: Previewed,
    pub arn: Option<String>,
    /// The writes after the create (or instead of it), in order.
    pub changes: Vec<Change>,
    /// The inline policy's difference, when it changes.
    pub inline_diff: Vec<String>,
    /// The accounts that would be provisioned.
    pub provision: Vec<String>,
}

/// What deleting the object did.
#[derive(Clone, Debug, PartialEq)]
pub enum Removal {
    /// Deleted from AWS, released (adopted, retained, never created here), or declared by
    /// another object: the finalizer may go.
    Done(String),
    /// Assignments of the set remain: it is kept until they go.
    Blocked(Vec<Assignment>),
}

fn owned_elsewhere(name: &str) -> Refusal {
    Refusal::OwnedElsewhere(format!(
        "a permission set named {name} exists in AWS and was not created by this object; set spec.adopt: true to take it over"
    ))
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub struct Shell<'a, S: SetRecords> {
    pub session: &'a Session,
    pub records: &'a S,
    pub fence: &'a Fence,
}

/// The token that marks a set this record creates.
fn create_token(declarer: &Declarer) -> String {
    short_hash(format!("{}/{}", declarer.uid, now()).as_bytes())
}

impl<S: SetRecords> Shell<'_, S> {
    async fn save(
        &self,
        record: &mut SetRecord,
        version: &mut Option<String>,
    ) -> Result<(), SetError> {
        record.updated_at = now();
        *version = Some(self.records.save(record, version.as_deref()).await?);
        Ok(())
    }

    /// Creates the set, recorded before and after, tagged with the record's token.
    async fn create(
        &self,
        ask: &SetAsk<'_>,
        record: &mut SetRecord,
        version: &mut Option<String>,
    ) -> Result<String, SetError> {
        self.fence.check()?;
        record.creating = Some(now());
        record.arn = None;
        self.save(record, version).await?;
        let declared = Shape::declared(ask.spec);
        let mut tags = declared.tags.clone();
        tags.insert(CREATE_TOKEN_TAG.to_string(), record.create_token.clone());
        self.fence.check()?;
        let arn = admin::create(
            self.session,
            ask.instance,
            &ask.spec.name,
            ask.spec.description.as_deref(),
            &iso_duration(declared.settings.session_seconds),
            ask.spec.relay_state.as_deref(),
            &tags,
        )
        .await?;
        record.arn = Some(arn.clone());
        record.origin = Some(Origin::Created);
        record.creating = None;
        // Every attribute comes with the create but the attachments, which follow as changes.
        record.converged_generation = None;
        self.save(record, version).await?;
        Ok(arn)
    }

    /// Whether the set AWS has under this name is the one `record` created.
    async fn carries_token(
        &self,
        instance: &str,
        arn: &str,
        record: &SetRecord,
    ) -> Result<bool, SetError> {
        let tags = admin::list_tags(self.session, instance, arn).await?;
        Ok(tags.get(CREATE_TOKEN_TAG) == Some(&record.create_token))
    }

    /// What `converge` would do, without writing: the record (or, without one, the set found by
    /// name) and what AWS holds.
    /// `names` is every set of the instance by name (`admin::names`), read once for a plan.
    pub async fn preview(
        &self,
        ask: &SetAsk<'_>,
        names: &std::collections::BTreeMap<String, String>,
    ) -> Result<Preview, SetError> {
        let declared = Shape::declared(ask.spec);
        let record = self
            .records
            .load(&key(ask.connector, &ask.spec.name))
            .await?;
        let arn = match &record {
            Some((record, _)) if record.declarer.uid != ask.declarer.uid => {
                return Ok(Preview {
                    action: Previewed::Refused(Refusal::DeclaredElsewhere(
                        record.declarer.object.clone(),
                    )),
                    arn: record.arn.clone(),
                    changes: Vec::new(),
                    inline_diff: Vec::new(),
                    provision: Vec::new(),
                });
            }
            Some((record, _)) => record.arn.clone(),
            None => None,
        };
        let (action, arn) = match arn {
            Some(arn) => (Previewed::Change, Some(arn)),
            None => match names.get(&ask.spec.name) {
                Some(found) if ask.spec.adopt || record.is_some() => {
                    (Previewed::Adopt, Some(found.clone()))
                }
                Some(_) => {
                    return Ok(Preview {
                        action: Previewed::Refused(Refusal::OwnedElsewhere(format!(
                            "a permission set named {} exists in AWS and was not created by this object; set spec.adopt: true to take it over",
                            ask.spec.name
                        ))),
                        arn: None,
                        changes: Vec::new(),
                        inline_diff: Vec::new(),
                        provision: Vec::new(),
                    });
                }
                None => (Previewed::Create, None),
            },
        };
        let Some(arn) = arn else {
            // Created with its settings and tags; the rest follows as changes.
            let empty = Shape {
                settings: declared.settings.clone(),
                tags: declared.tags.clone(),
                ..Shape::default()
            };
            return Ok(Preview {
                action,
                arn: None,
                changes: changes(&declared, &empty),
                inline_diff: super::diff::policy_diff(None, declared.inline.as_ref()),
                provision: Vec::new(),
            });
        };
        let held = self.held(ask.instance, &arn).await?;
        let found = changes(&declared, &held);
        let provision = if found.iter().any(Change::needs_provisioning) {
            admin::provisioned_accounts(self.session, ask.instance, &arn).await?
        } else {
            Vec::new()
        };
        let inline_diff = if declared.inline != held.inline || held.unreadable_inline {
            super::diff::policy_diff(held.inline.as_ref(), declared.inline.as_ref())
        } else {
            Vec::new()
        };
        let action = match action {
            Previewed::Change if found.is_empty() => Previewed::NoChange,
            other => other,
        };
        Ok(Preview {
            action,
            arn: Some(arn),
            changes: found,
            inline_diff,
            provision,
        })
    }

    /// Makes AWS hold what the object declares, then provisions what changed.
    pub async fn converge(&self, ask: &SetAsk<'_>) -> Result<Outcome, SetError> {
        let key = key(ask.connector, &ask.spec.name);
        let (mut record, mut version) = match self.records.load(&key).await? {
            Some((record, version)) => (record, Some(version)),
            None => {
                // Looked up by name only to adopt (or, read-only, to say what is there): a name
                // the instance has already makes CreatePermissionSet answer ConflictException,
                // which costs one call where a lookup costs one per set in the instance.
                let found = if ask.spec.adopt || ask.read_only || ask.look_up_first {
                    admin::find_by_name(self.session, ask.instance, &ask.spec.name).await?
                } else {
                    None
                };
                if found.is_some() && !ask.spec.adopt {
                    return Ok(Outcome::Refused(owned_elsewhere(&ask.spec.name)));
                }
                if found.is_none() && ask.read_only {
                    return Ok(Outcome::Refused(Refusal::ReadOnly(format!(
                        "the connector is readOnly: permission set {} does not exist in AWS and is not created",
                        ask.spec.name
                    ))));
                }
                let mut record = SetRecord::new(
                    ask.connector,
                    &ask.spec.name,
                    ask.declarer.clone(),
                    create_token(&ask.declarer),
                    &now(),
                );
                if let Some(found) = found {
                    self.fence.check()?;
                    record.arn = Some(found.arn);
                    record.origin = Some(Origin::Adopted);
                    let mut version = None;
                    self.save(&mut record, &mut version).await?;
                    (record, version)
                } else {
                    (record, None)
                }
            }
        };
        if record.declarer.uid != ask.declarer.uid {
            return Ok(Outcome::Refused(Refusal::DeclaredElsewhere(
                record.declarer.object.clone(),
            )));
        }
        let mut report = Report::default();
        // A create that may or may not have happened: the set under this name is ours only if
        // it carries the record's token.
        if record.arn.is_none() && record.creating.is_some() {
            match admin::find_by_name(self.session, ask.instance, &ask.spec.name).await? {
                Some(found)
                    if self
                        .carries_token(ask.instance, &found.arn, &record)
                        .await? =>
                {
                    self.fence.check()?;
                    record.arn = Some(found.arn);
                    record.origin = Some(Origin::Created);
                    record.creating = None;
                    self.save(&mut record, &mut version).await?;
                }
                Some(_) => {
                    if let Some(v) = &version {
                        self.records.remove(&record, v).await?;
                    }
                    return Ok(Outcome::Refused(Refusal::OwnedElsewhere(format!(
                        "a permission set named {} was created in AWS by someone else while this object's create was under way; set spec.adopt: true to take it over",
                        ask.spec.name
                    ))));
                }
                None => {}
            }
        }
        let arn = match record.arn.clone() {
            Some(arn) => arn,
            None => {
                let arn = match self.create(ask, &mut record, &mut version).await {
                    Ok(arn) => arn,
                    // The name is taken, by a set this record did not create.
                    Err(SetError::Aws(error)) if error.kind == ErrorKind::Conflict => {
                        if let Some(v) = &version {
                            self.records.remove(&record, v).await?;
                        }
                        return Ok(Outcome::Refused(owned_elsewhere(&ask.spec.name)));
                    }
                    Err(error) => return Err(error),
                };
                report.created = true;
                // What a set just created holds is known: its settings and tags, nothing
                // attached, no account.
                let held = Shape::created(&Shape::declared(ask.spec));
                return self
                    .finish(ask, record, version, report, arn, (held, Some(Vec::new())))
                    .await;
            }
        };
        let held = match self.held(ask.instance, &arn).await {
            Ok(held) => held,
            Err(error) if error.kind == ErrorKind::NotFound && !ask.read_only => {
                // Deleted outside the operator: declared, so created again.
                report.created = true;
                report.drift.push(format!(
                    "permission set {} was deleted in AWS",
                    ask.spec.name
                ));
                let arn = self.create(ask, &mut record, &mut version).await?;
                let held = Shape::created(&Shape::declared(ask.spec));
                return self
                    .finish(ask, record, version, report, arn, (held, Some(Vec::new())))
                    .await;
            }
            Err(error) => return Err(error.into()),
        };
        self.finish(ask, record, version, report, arn, (held, None))
            .await
    }

    async fn finish(
        &self,
        ask: &SetAsk<'_>,
        mut record: SetRecord,
        mut version: Option<String>,
        mut report: Report,
        arn: String,
        // What AWS holds, and the accounts the set is provisioned to when known without asking.
        (held, accounts): (Shape, Option<Vec<String>>),
    ) -> Result<Outcome, SetError> {
        let declared = Shape::declared(ask.spec);
        let found = changes(&declared, &held);
        let unchanged_object =
            record.converged_generation.is_some() && record.converged_generation == ask.generation;
        report.changes = found.iter().map(Change::describe).collect();
        // Read-only, the operator never writes: whatever differs was changed in AWS.
        if unchanged_object || ask.read_only {
            report.drift.extend(report.changes.iter().cloned());
        }
        report.arn = arn.clone();
        report.origin = record.origin;
        let accounts = match accounts {
            Some(accounts) => accounts,
            None => admin::provisioned_accounts(self.session, ask.instance, &arn).await?,
        };
        report.accounts_provisioned = u32::try_from(accounts.len()).unwrap_or(u32::MAX);
        if ask.read_only {
            return Ok(Outcome::Converged(report));
        }
        if !found.is_empty() {
            self.fence.check()?;
            record.provision_due |= found.iter().any(Change::needs_provisioning);
            self.save(&mut record, &mut version).await?;
            for change in &found {
                self.fence.check()?;
                self.write(ask.instance, &arn, change).await?;
            }
        }
        if record.converged_generation != ask.generation || !found.is_empty() {
            record.converged_generation = ask.generation;
            self.save(&mut record, &mut version).await?;
        }
        self.provision(
            ask.instance,
            &arn,
            accounts,
            &mut record,
            &mut version,
            &mut report,
        )
        .await?;
        Ok(Outcome::Converged(report))
    }

    /// What AWS holds of the set: DescribePermissionSet, its four kinds of contents and its
    /// tags (six reads; with the accounts it is provisioned to, a check costs seven).
    async fn held(&self, instance: &str, arn: &str) -> Result<Shape, AwsError> {
        let described = admin::describe(self.session, instance, arn).await?;
        let contents = permission_sets::contents(self.session, instance, arn).await?;
        let tags = admin::list_tags(self.session, instance, arn).await?;
        let settings = Settings {
            description: described.description,
            session_seconds: described
                .session_duration
                .as_deref()
                .and_then(parse_iso_duration)
                .unwrap_or(super::shape::DEFAULT_SESSION),
            relay_state: described.relay_state,
        };
        Ok(Shape::held(settings, &contents, &tags))
    }

    async fn write(&self, instance: &str, arn: &str, change: &Change) -> Result<(), AwsError> {
        let session = self.session;
        match change {
            Change::Update(settings) => {
                admin::update(
                    session,
                    instance,
                    arn,
                    settings.description.as_deref(),
                    &iso_duration(settings.session_seconds),
                    settings.relay_state.as_deref(),
                )
                .await
            }
            Change::AttachManaged(policy) => {
                admin::attach_managed(session, instance, arn, policy).await
            }
            Change::DetachManaged(policy) => {
                admin::detach_managed(session, instance, arn, policy).await
            }
            Change::AttachCustomer(policy) => {
                admin::attach_customer(session, instance, arn, policy).await
            }
            Change::DetachCustomer(policy) => {
                admin::detach_customer(session, instance, arn, policy).await
            }
            Change::PutInline(document) => {
                admin::put_inline(session, instance, arn, document).await
            }
            Change::DeleteInline => admin::delete_inline(session, instance, arn).await,
            Change::PutBoundary(boundary) => {
                admin::put_boundary(session, instance, arn, boundary).await
            }
            Change::DeleteBoundary => admin::delete_boundary(session, instance, arn).await,
            Change::Tag(tags) => admin::tag(session, instance, arn, tags).await,
            Change::Untag(keys) => admin::untag(session, instance, arn, keys).await,
        }
    }

    /// Provisions the set to the accounts that are due it: every account it is provisioned to
    /// after a change, the ones that failed before otherwise. Each request is recorded as AWS
    /// answers it and followed to its end; one still in progress is looked at again later.
    async fn provision(
        &self,
        instance: &str,
        arn: &str,
        provisioned: Vec<String>,
        record: &mut SetRecord,
        version: &mut Option<String>,
        report: &mut Report,
    ) -> Result<(), SetError> {
        if record.provisioning.is_none() {
            let accounts: Vec<String> = if record.provision_due {
                provisioned
            } else {
                record.retry_accounts.clone()
            };
            if accounts.is_empty() {
                if record.provision_due {
                    record.provision_due = false;
                    self.save(record, version).await?;
                }
                return Ok(());
            }
            self.fence.check()?;
            record.provisioning = Some(Provisioning {
                accounts: accounts.into_iter().map(|a| (a, None)).collect(),
                started_at: now(),
            });
            record.provision_due = false;
            record.retry_accounts.clear();
            self.save(record, version).await?;
        }
        let pending: Vec<(String, Option<String>)> = record
            .provisioning
            .as_ref()
            .map(|p| p.accounts.clone().into_iter().collect())
            .unwrap_or_default();
        let mut outcomes: BTreeMap<String, Provisioned> = BTreeMap::new();
        for (account, request) in pending {
            // A request AWS no longer knows (its status is kept for a while only) is made again.
            let known = match &request {
                Some(request) => {
                    match admin::provisioning_status(self.session, instance, request).await {
                        Ok(state) => Some(state),
                        Err(error) if error.kind == ErrorKind::NotFound => None,
                        Err(error) => return Err(error.into()),
                    }
                }
                None => None,
            };
            let state = match known {
                Some(state) => state,
                None => {
                    self.fence.check()?;
                    let (request, state) =
                        admin::provision(self.session, instance, arn, &account).await?;
                    if let Some(p) = record.provisioning.as_mut() {
                        p.accounts.insert(account.clone(), Some(request));
                    }
                    self.save(record, version).await?;
                    state
                }
            };
            outcomes.insert(account, state);
        }
        if outcomes.values().any(|s| *s == Provisioned::InProgress) {
            report.in_progress = true;
            return Ok(());
        }
        report.accounts = outcomes
            .iter()
            .map(|(account, state)| match state {
                Provisioned::Failed(reason) => AccountProvisioning {
                    account_id: account.clone(),
                    state: FAILED.into(),
                    message: Some(reason.clone()),
                },
                _ => AccountProvisioning {
                    account_id: account.clone(),
                    state: PROVISIONED.into(),
                    message: None,
                },
            })
            .collect();
        record.retry_accounts = report
            .accounts
            .iter()
            .filter(|a| a.state == FAILED)
            .map(|a| a.account_id.clone())
            .collect();
        record.provisioning = None;
        self.save(record, version).await?;
        // Changes written while this provisioning was under way are due one of their own.
        if record.provision_due {
            report.in_progress = true;
        }
        Ok(())
    }

    /// What deleting the object does in AWS: a set this object created is deleted once no
    /// assignment of it remains; anything else is released.
    pub async fn remove(
        &self,
        connector: &str,
        instance: &str,
        declarer: &Declarer,
        spec: &PermissionSetSpec,
        read_only: bool,
    ) -> Result<Removal, SetError> {
        let key = key(connector, &spec.name);
        let Some((mut record, version)) = self.records.load(&key).await? else {
            return Ok(Removal::Done("nothing was created in AWS for it".into()));
        };
        if record.declarer.uid != declarer.uid {
            return Ok(Removal::Done(format!(
                "the set is declared by {}; left to it",
                record.declarer.object
            )));
        }
        // A create that may have happened before a restart: the set is this record's if it
        // carries the record's token.
        if record.arn.is_none()
            && record.creating.is_some()
            && let Some(found) = admin::find_by_name(self.session, instance, &spec.name).await?
            && self.carries_token(instance, &found.arn, &record).await?
        {
            record.arn = Some(found.arn);
            record.origin = Some(Origin::Created);
        }
        let retain = spec.deletion_policy == Some(ResourceDeletionPolicy::Retain);
        let arn = match (&record.arn, record.origin) {
            (Some(arn), Some(Origin::Created)) if !retain && !read_only => arn.clone(),
            (_, origin) => {
                self.fence.check()?;
                self.records.remove(&record, &version).await?;
                let why = match origin {
                    Some(Origin::Adopted) => "adopted, so released and left in AWS",
                    _ if retain => "deletionPolicy Retain: left in AWS",
                    _ if read_only => "the connector is readOnly: released and left in AWS",
                    _ => "it was never created",
                };
                return Ok(Removal::Done(format!(
                    "permission set {}: {why}",
                    spec.name
                )));
            }
        };
        let mut remaining = Vec::new();
        match admin::provisioned_accounts(self.session, instance, &arn).await {
            Ok(accounts) => {
                for account in accounts {
                    remaining
                        .extend(admin::assignments(self.session, instance, &account, &arn).await?);
                }
            }
            Err(error) if error.kind == ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
        if !remaining.is_empty() {
            return Ok(Removal::Blocked(remaining));
        }
        self.fence.check()?;
        let mut version = Some(version);
        record.deleting = Some(now());
        self.save(&mut record, &mut version).await?;
        self.fence.check()?;
        match admin::delete(self.session, instance, &arn).await {
            Ok(()) => {}
            Err(error) if error.kind == ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
        if let Some(version) = &version {
            self.records.remove(&record, version).await?;
        }
        Ok(Removal::Done(format!(
            "permission set {} deleted from AWS",
            spec.name
        )))
    }
}
