//! What holding or giving back a request's access came to, read from the shell's report.

use std::time::Duration;

use jiff::Timestamp;

use super::{PENDING_RETRY, RECHECK, stamp};
use crate::api::grant::AccessRecord;
use crate::api::request::{AccessRequestSpec, State};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::grant::{Wanted, ending_text, kept_why, retry_after, shell_reason};
use crate::grant::execute::{Done, GrantReport, ShellError};
use crate::grant::plan::Names;
use crate::request::lifecycle;
use crate::request::record::{EndReason, Ended, Record};

/// What carrying the step out came to, for status.
pub(super) struct Outcome {
    pub state: State,
    pub reason: String,
    pub message: String,
    pub requeue: Option<Duration>,
    pub held: Option<AccessRecord>,
    pub request_id: Option<String>,
}

/// A fence or ledger failure stops the reconciliation (it is retried); an AWS failure is the
/// request's to report.
fn retried(
    report: Result<GrantReport, ShellError>,
) -> Result<Result<GrantReport, ShellError>, Error> {
    match report {
        Err(ShellError::Fenced(f)) => Err(Error::Pending(f.to_string())),
        Err(ShellError::Ledger(e)) => Err(Error::Pending(e.to_string())),
        other => Ok(other),
    }
}

/// The outcome of holding the access, noting in the record when it was first held.
pub(super) fn held(
    spec: &AccessRequestSpec,
    report: Result<GrantReport, ShellError>,
    wanted: &Wanted,
    names: &Names,
    record: &mut Record,
    ctx: &Context,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let report = match retried(report)? {
        Err(error) => {
            let reason = shell_reason(&error);
            return Ok(Outcome {
                state: State::Approved,
                reason: reason.into(),
                message: error.to_string(),
                requeue: Some(retry_after(reason, ctx)),
                held: None,
                request_id: None,
            });
        }
        Ok(report) => report,
    };
    if let Wanted::Refused(reason, message, retry) = wanted {
        return Ok(Outcome {
            state: State::Approved,
            reason: (*reason).into(),
            message: message.clone(),
            requeue: Some(*retry),
            held: None,
            request_id: None,
        });
    }
    let total = report.wanted.len();
    let mut held = 0;
    let mut first_since: Option<String> = None;
    let mut problem: Option<(String, String, Duration)> = None;
    let mut request_id = None;
    let mut record_of = None;
    for (access, result) in &report.wanted {
        let shown = names.describe(access);
        match result {
            Ok(Done::Held {
                since,
                request_id: id,
                ..
            }) => {
                held += 1;
                if !since.is_empty() && first_since.as_ref().is_none_or(|s| since < s) {
                    first_since = Some(since.clone());
                }
                request_id = request_id.or(id.clone());
                record_of.get_or_insert_with(|| AccessRecord::from(access));
            }
            Ok(Done::InProgress { request_id: id, .. }) => {
                request_id = Some(id.clone());
                problem.get_or_insert((
                    "Pending".into(),
                    format!("granting {shown}: AWS is still working on it (request {id})"),
                    PENDING_RETRY,
                ));
            }
            Ok(Done::Wait { reason, message } | Done::Refused { reason, message }) => {
                problem.get_or_insert((
                    (*reason).into(),
                    format!("{shown}: {message}"),
                    retry_after(reason, ctx),
                ));
            }
            Ok(
                Done::Revoked { ending, .. }
                | Done::Released { ending, .. }
                | Done::Nothing(ending),
            ) => {
                problem.get_or_insert((
                    "Ending".into(),
                    format!("{shown}: {}", ending_text(ending)),
                    Duration::from_secs(1),
                ));
            }
            Err(error) => {
                let reason = shell_reason(error);
                problem.get_or_insert((
                    reason.into(),
                    format!("{shown}: {error}"),
                    retry_after(reason, ctx),
                ));
            }
        }
    }
    if record.held_since.is_none() {
        record.held_since = first_since;
    }
    let ends = lifecycle::ends_at(spec, record);
    match problem {
        Some((reason, message, retry)) => Ok(Outcome {
            state: if held > 0 {
                State::Active
            } else {
                State::Approved
            },
            reason,
            message: format!("held on {held} of {total}; {message}"),
            requeue: Some(retry),
            held: record_of,
            request_id,
        }),
        None if total > 0 => {
            let until =
                ends.map(|at| now.duration_until(at).unsigned_abs() + Duration::from_millis(200));
            Ok(Outcome {
                state: State::Active,
                reason: "Active".into(),
                message: match ends {
                    Some(at) => format!("the access is held until {}", stamp(at)),
                    None => "the access is held".into(),
                },
                requeue: Some(until.map_or(RECHECK, |u| {
                    u.min(ctx.aws.grant_check.max(Duration::from_secs(1)))
                })),
                held: record_of,
                request_id,
            })
        }
        None => Ok(Outcome {
            state: State::Approved,
            reason: "NoAccounts".into(),
            message: "no ACTIVE account under the organizational unit as of the last sync".into(),
            requeue: Some(RECHECK),
            held: None,
            request_id,
        }),
    }
}

/// The outcome of giving the access back after the request ended.
pub(super) fn ended(
    ended: &Ended,
    report: Result<GrantReport, ShellError>,
    names: &Names,
) -> Result<Outcome, Error> {
    let state = match ended.reason {
        EndReason::Denied => State::Denied,
        EndReason::Expired => State::Expired,
        EndReason::Unvouched => State::Unvouched,
        _ => State::Ended,
    };
    let report = match retried(report)? {
        Err(error) => {
            let reason = shell_reason(&error);
            return Ok(Outcome {
                state,
                reason: reason.into(),
                message: format!("{}; giving the access back: {error}", ended.message),
                requeue: Some(Duration::from_secs(10)),
                held: None,
                request_id: None,
            });
        }
        Ok(report) => report,
    };
    let mut notes = Vec::new();
    let mut unsettled = None;
    for (access, result) in &report.others {
        let shown = names.describe(access);
        match result {
            Ok(Done::Revoked { .. }) => notes.push(format!("{shown} revoked")),
            Ok(Done::Released { kept, .. }) => {
                notes.push(format!("{shown} left in place: {}", kept_why(kept)))
            }
            Ok(Done::Nothing(_)) => {}
            Ok(other) => {
                unsettled.get_or_insert(format!("{shown}: {other:?}"));
            }
            Err(error) => {
                unsettled.get_or_insert(format!("revoking {shown}: {error}"));
            }
        }
    }
    let mut message = ended.message.clone();
    if !notes.is_empty() {
        message.push_str(&format!("; {}", notes.join("; ")));
    }
    if let Some(problem) = unsettled {
        return Ok(Outcome {
            state,
            reason: "Revoking".into(),
            message: format!("{message}; {problem}"),
            requeue: Some(PENDING_RETRY),
            held: None,
            request_id: None,
        });
    }
    Ok(Outcome {
        state,
        reason: ended.reason.as_str().into(),
        message,
        requeue: None,
        held: None,
        request_id: None,
    })
}
