//! The IAM credential report: for every user of the account, in one CSV, whether they have
//! access keys and when each was last used. Two or three calls (GenerateCredentialReport until
//! it is complete, then GetCredentialReport) instead of ListAccessKeys for every user and
//! GetAccessKeyLastUsed for every key. AWS regenerates it at most every 4 hours, so the last
//! use it reports can be up to 4 hours old.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::credentials::Session;
use super::error::AwsError;
use super::model::AccessKey;
use super::ratelimit::Service;

/// How often, and how many times, a report still being generated is asked for again.
const POLL_EVERY: Duration = Duration::from_secs(2);
const POLLS: u32 = 30;

/// One access key slot of a user's row (`access_key_1_*` or `access_key_2_*`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReportKey {
    /// When the key was created or last rotated (RFC 3339).
    pub last_rotated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_service: Option<String>,
}

/// The users of the report and their keys; a user without keys has none listed.
pub type Report = BTreeMap<String, Vec<ReportKey>>;

/// Asks AWS for the account's credential report, waiting while it is generated.
pub async fn fetch(session: &Session) -> Result<Report, AwsError> {
    let client = aws_sdk_iam::Client::new(&session.global);
    for poll in 0..POLLS {
        let generated = session
            .caller
            .call(Service::Iam, "GenerateCredentialReport", || async {
                client
                    .generate_credential_report()
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("GenerateCredentialReport", e))
            })
            .await?;
        let complete = generated
            .state()
            .is_some_and(|s| *s == aws_sdk_iam::types::ReportStateType::Complete);
        if complete {
            break;
        }
        if poll + 1 == POLLS {
            return Err(AwsError {
                operation: "GenerateCredentialReport",
                kind: super::error::ErrorKind::Transient,
                code: None,
                message: format!(
                    "the report was still being generated after {}s",
                    (POLL_EVERY * POLLS).as_secs()
                ),
                request_id: None,
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let report = session
        .caller
        .call(Service::Iam, "GetCredentialReport", || async {
            client
                .get_credential_report()
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetCredentialReport", e))
        })
        .await?;
    let content = report.content().map(|b| b.as_ref()).unwrap_or_default();
    parse(&String::from_utf8_lossy(content)).map_err(|message| AwsError {
        operation: "GetCredentialReport",
        kind: super::error::ErrorKind::Other,
        code: None,
        message,
        request_id: None,
    })
}

/// Reads the report's CSV. Only the columns used here are required.
pub fn parse(csv: &str) -> Result<Report, String> {
    let mut rows = records(csv).into_iter();
    let header = rows.next().ok_or("the credential report is empty")?;
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(format!("the credential report has no column {name}"))
    };
    let user = column("user")?;
    let slots = [1, 2]
        .into_iter()
        .map(|n| {
            Ok::<_, String>((
                column(&format!("access_key_{n}_last_rotated"))?,
                column(&format!("access_key_{n}_last_used_date"))?,
                column(&format!("access_key_{n}_last_used_service"))?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = Report::new();
    for row in rows {
        let Some(name) = row.get(user) else { continue };
        // The account's root user is not an IAM user.
        if name == "<root_account>" || name.is_empty() {
            continue;
        }
        let value = |at: usize| {
            row.get(at)
                .map(String::as_str)
                .filter(|v| !matches!(*v, "" | "N/A" | "no_information" | "not_supported"))
                .map(normalize_time)
        };
        let keys = slots
            .iter()
            .filter_map(|&(rotated, used, service)| {
                Some(ReportKey {
                    last_rotated: value(rotated)?,
                    last_used: value(used),
                    last_used_service: row
                        .get(service)
                        .filter(|v| !matches!(v.as_str(), "" | "N/A" | "not_supported"))
                        .cloned(),
                })
            })
            .collect();
        report.insert(name.clone(), keys);
    }
    Ok(report)
}

/// An RFC 3339 time as the rest of the inventory writes it (`...Z`); as it was when it does not
/// parse.
fn normalize_time(text: &str) -> String {
    text.parse::<jiff::Timestamp>()
        .map_or_else(|_| text.to_string(), |t| t.to_string())
}

fn second(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// Fills in when and where each listed key was last used from the report's slots: a slot
/// belongs to the key created when it was last rotated; keys created in the same second are
/// taken in the order AWS lists them.
pub fn fill_last_use(keys: &mut [AccessKey], slots: &[ReportKey]) {
    let mut free: Vec<&ReportKey> = slots.iter().collect();
    for key in keys.iter_mut() {
        let created = key.created.as_deref().and_then(second);
        let at = free
            .iter()
            .position(|s| created.is_some() && second(&s.last_rotated) == created)
            .or(if free.is_empty() { None } else { Some(0) });
        if let Some(at) = at {
            let slot = free.remove(at);
            key.last_used = slot.last_used.clone();
            key.last_used_service = slot.last_used_service.clone();
        }
    }
}

/// Splits CSV text into records of fields (RFC 4180: fields may be quoted, with `""` for a
/// quote; IAM user names may contain commas).
fn records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records.retain(|r| !(r.len() == 1 && r[0].is_empty()));
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    #[test]
    fn reads_keys_and_their_last_use_and_skips_the_root_user() {
        let csv = format!(
            "{HEADER}\n\
<root_account>,arn:aws:iam::111122223333:root,2020-01-01T00:00:00+00:00,not_supported,2024-01-01T00:00:00+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
alice,arn:aws:iam::111122223333:user/alice,2021-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2022-02-02T10:00:00+00:00,2024-03-03T12:00:00+00:00,us-east-1,s3,false,2023-01-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A\n\
\"bob,ops\",arn:aws:iam::111122223333:user/bob,2021-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n"
        );
        let report = parse(&csv).expect("parses");
        assert_eq!(report.len(), 2, "{report:?}");
        assert_eq!(report["bob,ops"], Vec::<ReportKey>::new(), "no keys");
        let alice = &report["alice"];
        assert_eq!(alice.len(), 2, "an inactive key is still a key");
        assert_eq!(alice[0].last_rotated, "2022-02-02T10:00:00Z");
        assert_eq!(alice[0].last_used.as_deref(), Some("2024-03-03T12:00:00Z"));
        assert_eq!(alice[0].last_used_service.as_deref(), Some("s3"));
        assert_eq!(alice[1].last_used, None);
    }

    #[test]
    fn a_report_without_the_columns_is_refused() {
        assert!(parse("").is_err());
        let error = parse("user,arn\nalice,x\n").expect_err("no key columns");
        assert!(error.contains("access_key_1_last_rotated"), "{error}");
    }

    #[test]
    fn last_use_goes_to_the_key_created_when_the_slot_was_rotated() {
        let key = |id: &str, created: &str| AccessKey {
            id: id.into(),
            status: "Active".into(),
            created: Some(created.into()),
            last_used: None,
            last_used_service: None,
        };
        // Listed newest first: matched by creation time, not position.
        let mut keys = vec![
            key("AKIANEW", "2023-01-01T00:00:00Z"),
            key("AKIAOLD", "2022-02-02T10:00:00.000Z"),
        ];
        let slots = vec![
            ReportKey {
                last_rotated: "2022-02-02T10:00:00Z".into(),
                last_used: Some("2024-03-03T12:00:00Z".into()),
                last_used_service: Some("s3".into()),
            },
            ReportKey {
                last_rotated: "2023-01-01T00:00:00Z".into(),
                last_used: None,
                last_used_service: None,
            },
        ];
        fill_last_use(&mut keys, &slots);
        assert_eq!(keys[1].last_used.as_deref(), Some("2024-03-03T12:00:00Z"));
        assert_eq!(keys[0].last_used, None);
    }
}
