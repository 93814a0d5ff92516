//! The one shell that carries a declared user or group out in AWS. Every write is fenced and
//! recorded first: the record says a create is under way before the create, so a restart
//! finds what the create made (an IAM user by the token tagged on it, an Identity Store user
//! or group by holding exactly the attributes the create wrote) and records it instead of
//! creating a second one. Only what the record says the operator created is ever deleted.

use jiff::Timestamp;

use super::record::{IdentityKind, IdentityRecord, key};
use super::shape::{Shape, changes};
use crate::api::permission_set::ResourceDeletionPolicy;
use crate::aws::identity_admin::{self as admin, Found, Place};
use crate::aws::{ErrorKind, Session};
use crate::fence::Fence;
use crate::fingerprint::short_hash;
use crate::grant::ledger::Origin;
use crate::permission_set::execute::{Previewed, Refusal};
use crate::permission_set::record::Declarer;
use crate::records::Records;

pub use crate::records::ShellError as IdentityError;

/// One declared user or group to converge.
pub struct IdentityAsk<'a> {
    /// The connector, `namespace/name`.
    pub connector: &'a str,
    /// The identity store's id (unused for IAM users).
    pub store: &'a str,
    /// The IAM user's account, when not the connector's own.
    pub account: Option<&'a str>,
    pub kind: IdentityKind,
    /// The user name, or the group's display name.
    pub name: &'a str,
    pub declarer: Declarer,
    pub declared: Shape,
    pub adopt: bool,
    pub generation: Option<i64>,
    pub read_only: bool,
    /// Look the name up before creating: the last attempt found it taken.
    pub look_up_first: bool,
}

impl IdentityAsk<'_> {
    fn place(&self) -> Place<'_> {
        Place {
            kind: self.kind,
            store: self.store,
        }
    }

    pub fn key(&self) -> String {
        let name = match self.kind {
            IdentityKind::IdentityCenterGroup => &self.declarer.uid,
            _ => self.name,
        };
        key(self.kind, self.connector, self.account, name)
    }

    fn what(&self) -> String {
        format!("{} {}", self.kind.noun(), self.name)
    }
}

/// What converging found and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub id: String,
    pub arn: Option<String>,
    pub origin: Option<Origin>,
    /// Created (or, gone from AWS, created again) in this pass.
    pub created: bool,
    /// The changes written in this pass (or, read-only, that would be).
    pub changes: Vec<String>,
    /// Of those, the ones that put back a change made outside the operator.
    pub drift: Vec<String>,
}

pub enum Outcome {
    Converged(Report),
    Refused(Refusal),
}

/// What converging would do, found with reads only (`plan`).
#[derive(Clone, Debug, PartialEq)]
pub struct Preview {
    pub action: Previewed,
    /// The id AWS has for it, when it exists.
    pub id: Option<String>,
    /// The writes after an adopt, or of a change.
    pub changes: Vec<String>,
}

/// What deleting the object did.
#[derive(Clone, Debug, PartialEq)]
pub enum Removal {
    /// Deleted from AWS, or released (adopted, retained, never created here, declared by
    /// another object): the finalizer may go.
    Done(String),
    /// Something the operator did not add hangs on it: it is kept until that goes.
    Blocked(Vec<String>),
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn owned_elsewhere(what: &str) -> Refusal {
    Refusal::OwnedElsewhere(format!(
        "{what} exists in AWS and was not created by this object; set spec.adopt: true to take it over"
    ))
}

pub struct Shell<'a, S: Records<IdentityRecord>> {
    pub session: &'a Session,
    pub records: &'a S,
    pub fence: &'a Fence,
}

/// The token of a create: tagged on an IAM user; for the Identity Store, the fingerprint of
/// what the create writes.
fn create_token(ask: &IdentityAsk<'_>) -> String {
    match ask.kind {
        IdentityKind::IamUser => {
            short_hash(format!("{}/{}", ask.declarer.uid, Timestamp::now()).as_bytes())
        }
        _ => ask.declared.fingerprint(),
    }
}

/// Whether `found` is what the record's interrupted create made.
fn made_by(record: &IdentityRecord, found: &Found) -> bool {
    match record.kind {
        IdentityKind::IamUser => found.token.as_deref() == Some(record.create_token.as_str()),
        _ => found.shape.fingerprint() == record.create_token,
    }
}

impl<S: Records<IdentityRecord>> Shell<'_, S> {
    async fn save(
        &self,
        record: &mut IdentityRecord,
        version: &mut Option<String>,
    ) -> Result<(), IdentityError> {
        record.updated_at = now();
        *version = Some(self.records.save(record, version.as_deref()).await?);
        Ok(())
    }

    async fn forget(
        &self,
        record: &IdentityRecord,
        version: &Option<String>,
    ) -> Result<(), IdentityError> {
        if let Some(v) = version {
            self.records.remove(record, v).await?;
        }
        Ok(())
    }

    /// The id AWS calls it by in writes: the Identity Store's id, or the IAM user's name.
    fn handle<'r>(ask: &'r IdentityAsk<'_>, record: &'r IdentityRecord) -> &'r str {
        match ask.kind {
            IdentityKind::IamUser => ask.name,
            _ => record.id.as_deref().unwrap_or_default(),
        }
    }

    /// Creates it, recorded before and after.
    async fn create(
        &self,
        ask: &IdentityAsk<'_>,
        record: &mut IdentityRecord,
        version: &mut Option<String>,
    ) -> Result<(), IdentityError> {
        self.fence.check()?;
        record.creating = Some(now());
        record.id = None;
        record.arn = None;
        record.create_token = create_token(ask);
        self.save(record, version).await?;
        self.fence.check()?;
        let (id, arn) = admin::create(
            self.session,
            ask.place(),
            ask.name,
            &ask.declared,
            &record.create_token,
        )
        .await?;
        record.id = Some(id);
        record.arn = arn;
        record.origin = Some(Origin::Created);
        record.creating = None;
        record.converged_generation = ask.generation;
        self.save(record, version).await?;
        Ok(())
    }

    /// What `converge` would do, with reads only (`plan`): the record (or, without one, what
    /// AWS has under the name) and what AWS holds.
    pub async fn preview(&self, ask: &IdentityAsk<'_>) -> Result<Preview, IdentityError> {
        let refused = |refusal| Preview {
            action: Previewed::Refused(refusal),
            id: None,
            changes: Vec::new(),
        };
        let record = self.records.load(&ask.key()).await?;
        let found = match &record {
            Some((record, _)) if record.declarer.uid != ask.declarer.uid => {
                return Ok(refused(Refusal::DeclaredElsewhere(
                    record.declarer.object.clone(),
                )));
            }
            Some((record, _)) if record.id.is_some() => {
                let handle = Self::handle(ask, record).to_string();
                match admin::read(self.session, ask.place(), &handle).await? {
                    Some(found) => (Previewed::Change, found),
                    None => {
                        return Ok(Preview {
                            action: Previewed::Create,
                            id: None,
                            changes: Vec::new(),
                        });
                    }
                }
            }
            _ => match admin::find(self.session, ask.place(), ask.name).await? {
                Some(found) if ask.adopt => (Previewed::Adopt, found),
                Some(found)
                    if record
                        .as_ref()
                        .is_some_and(|(record, _)| made_by(record, &found)) =>
                {
                    (Previewed::Change, found)
                }
                Some(_) => return Ok(refused(owned_elsewhere(&ask.what()))),
                None => {
                    // Created with every declared attribute: nothing follows.
                    return Ok(Preview {
                        action: Previewed::Create,
                        id: None,
                        changes: Vec::new(),
                    });
                }
            },
        };
        let (action, found) = found;
        let changes: Vec<String> = changes(&ask.declared, &found.shape)
            .iter()
            .map(|c| c.describe())
            .collect();
        let action = match action {
            Previewed::Change if changes.is_empty() => Previewed::NoChange,
            other => other,
        };
        Ok(Preview {
            action,
            id: Some(found.id),
            changes,
        })
    }

    /// Makes AWS hold what the object declares.
    pub async fn converge(&self, ask: &IdentityAsk<'_>) -> Result<Outcome, IdentityError> {
        let (mut record, mut version) = match self.records.load(&ask.key()).await? {
            Some((record, version)) => (record, Some(version)),
            None => {
                // Looked up by name only to adopt (or, read-only, to say what is there): a
                // taken name makes the create fail, one call where a lookup is one too.
                let found = if ask.adopt || ask.read_only || ask.look_up_first {
                    admin::find(self.session, ask.place(), ask.name).await?
                } else {
                    None
                };
                if found.is_some() && !ask.adopt {
                    return Ok(Outcome::Refused(owned_elsewhere(&ask.what())));
                }
                if found.is_none() && ask.read_only {
                    return Ok(Outcome::Refused(Refusal::ReadOnly(format!(
                        "the connector is readOnly: {} does not exist in AWS and is not created",
                        ask.what()
                    ))));
                }
                let mut record = IdentityRecord {
                    kind: ask.kind,
                    connector: ask.connector.to_string(),
                    account: ask.account.map(str::to_string),
                    name: ask.name.to_string(),
                    declarer: ask.declarer.clone(),
                    origin: None,
                    id: None,
                    arn: None,
                    create_token: create_token(ask),
                    creating: None,
                    converged_generation: None,
                    updated_at: now(),
                };
                let mut version = None;
                if let Some(found) = found {
                    self.fence.check()?;
                    record.id = Some(found.id);
                    record.arn = found.arn;
                    record.origin = Some(Origin::Adopted);
                    self.save(&mut record, &mut version).await?;
                }
                (record, version)
            }
        };
        if record.declarer.uid != ask.declarer.uid {
            return Ok(Outcome::Refused(Refusal::DeclaredElsewhere(
                record.declarer.object.clone(),
            )));
        }
        let mut report = Report::default();
        // A create that may or may not have happened: what AWS has under the name is the
        // record's only if the create made it.
        if record.id.is_none() && record.creating.is_some() {
            match admin::find(self.session, ask.place(), ask.name).await? {
                Some(found) if made_by(&record, &found) => {
                    self.fence.check()?;
                    tracing::info!(identity = %ask.what(), id = %found.id, "found what an interrupted create made: recorded, not created again");
                    record.id = Some(found.id);
                    record.arn = found.arn;
                    record.origin = Some(Origin::Created);
                    record.creating = None;
                    self.save(&mut record, &mut version).await?;
                }
                Some(_) => {
                    self.forget(&record, &version).await?;
                    return Ok(Outcome::Refused(Refusal::OwnedElsewhere(format!(
                        "{} was created in AWS by someone else while this object's create was under way; set spec.adopt: true to take it over",
                        ask.what()
                    ))));
                }
                None => {}
            }
        }
        if record.id.is_none() {
            match self.create(ask, &mut record, &mut version).await {
                Ok(()) => {}
                Err(IdentityError::Aws(error)) if error.kind == ErrorKind::Conflict => {
                    self.forget(&record, &version).await?;
                    return Ok(Outcome::Refused(owned_elsewhere(&ask.what())));
                }
                Err(error) => return Err(error),
            }
            report.created = true;
            return Ok(Outcome::Converged(finish(record, report)));
        }
        let held = admin::read(self.session, ask.place(), Self::handle(ask, &record)).await?;
        let held = match held {
            // The IAM user of that name is another one: deleted and made again elsewhere.
            Some(found) if record.id.as_deref() != Some(found.id.as_str()) => {
                return Ok(Outcome::Refused(Refusal::OwnedElsewhere(format!(
                    "{} was deleted and created again outside the operator (its id is now {}); set spec.adopt: true and recreate the object to take it over",
                    ask.what(),
                    found.id
                ))));
            }
            Some(found) => found,
            None if ask.read_only => {
                report
                    .changes
                    .push(format!("{} was deleted in AWS", ask.what()));
                report.id = record.id.clone().unwrap_or_default();
                report.origin = record.origin;
                return Ok(Outcome::Converged(report));
            }
            None => {
                // Deleted outside the operator: declared, so created again.
                report
                    .drift
                    .push(format!("{} was deleted in AWS", ask.what()));
                self.create(ask, &mut record, &mut version).await?;
                report.created = true;
                return Ok(Outcome::Converged(finish(record, report)));
            }
        };
        let found = changes(&ask.declared, &held.shape);
        report.changes = found.iter().map(|c| c.describe()).collect();
        if !found.is_empty() && !ask.read_only {
            self.fence.check()?;
            admin::write(
                self.session,
                ask.place(),
                Self::handle(ask, &record),
                &found,
            )
            .await?;
            // The object has not changed since AWS last matched it: the change was made in AWS.
            if record.converged_generation.is_some()
                && record.converged_generation == ask.generation
            {
                report.drift = report.changes.clone();
            }
        }
        if !ask.read_only
            && (record.converged_generation != ask.generation || record.name != ask.name)
        {
            record.converged_generation = ask.generation;
            record.name = ask.name.to_string();
            self.save(&mut record, &mut version).await?;
        }
        Ok(Outcome::Converged(finish(record, report)))
    }

    /// Deletes it from AWS when the operator created it and nothing it did not add hangs on
    /// it; releases it otherwise. (What the operator's own grants gave it is the caller's to
    /// see revoked first.)
    pub async fn remove(
        &self,
        ask: &IdentityAsk<'_>,
        policy: ResourceDeletionPolicy,
    ) -> Result<Removal, IdentityError> {
        let Some((mut record, version)) = self.records.load(&ask.key()).await? else {
            return Ok(Removal::Done(format!(
                "{} was not created by this object: left in AWS",
                ask.what()
            )));
        };
        let mut version = Some(version);
        if record.declarer.uid != ask.declarer.uid {
            return Ok(Removal::Done(format!(
                "{} is declared by {}: left to it",
                ask.what(),
                record.declarer.object
            )));
        }
        if record.id.is_none() && record.creating.is_some() {
            match admin::find(self.session, ask.place(), ask.name).await? {
                Some(found) if made_by(&record, &found) => {
                    self.fence.check()?;
                    record.id = Some(found.id);
                    record.arn = found.arn;
                    record.origin = Some(Origin::Created);
                    record.creating = None;
                    self.save(&mut record, &mut version).await?;
                }
                _ => {}
            }
        }
        let release = match (&record.id, record.origin, policy) {
            (None, _, _) => Some("was never created: nothing to delete".to_string()),
            (_, Some(Origin::Adopted), _) => Some("was adopted: released, not deleted".into()),
            (_, _, ResourceDeletionPolicy::Retain) => {
                Some("is retained (deletionPolicy: Retain): left in AWS".into())
            }
            _ if ask.read_only => Some("is left in AWS: the connector is readOnly".into()),
            _ => None,
        };
        if let Some(why) = release {
            self.fence.check()?;
            self.forget(&record, &version).await?;
            return Ok(Removal::Done(format!("{} {why}", ask.what())));
        }
        let handle = Self::handle(ask, &record).to_string();
        // Gone from AWS already: nothing hangs on it.
        match admin::read(self.session, ask.place(), &handle).await? {
            Some(found) if record.id.as_deref() != Some(found.id.as_str()) => {
                // Not the one the operator created (deleted and made again elsewhere).
                self.fence.check()?;
                self.forget(&record, &version).await?;
                return Ok(Removal::Done(format!(
                    "{} in AWS is not the one the operator created: left in AWS",
                    ask.what()
                )));
            }
            Some(_) => {}
            None => {
                self.forget(&record, &version).await?;
                return Ok(Removal::Done(format!(
                    "{} was already gone from AWS",
                    ask.what()
                )));
            }
        }
        {
            let remaining = admin::attachments(self.session, ask.place(), &handle).await?;
            if !remaining.is_empty() {
                return Ok(Removal::Blocked(remaining));
            }
            self.fence.check()?;
            admin::delete(self.session, ask.place(), &handle).await?;
        }
        self.forget(&record, &version).await?;
        Ok(Removal::Done(format!("{} deleted in AWS", ask.what())))
    }
}

fn finish(record: IdentityRecord, mut report: Report) -> Report {
    report.id = record.id.unwrap_or_default();
    report.arn = record.arn;
    report.origin = record.origin;
    report
}
