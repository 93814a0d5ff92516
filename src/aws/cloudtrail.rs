//! CloudTrail: when Identity Center users signed in, from the event history of the Identity
//! Center region (`LookupEvents`, 90 days, 2 calls per second).

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use super::credentials::Session;
use super::error::AwsError;
use super::model::Page;
use super::ratelimit::Service;

/// The most LookupEvents returns per page.
pub const MAX_PAGE: i32 = 50;

/// Where Identity Center's sign-in events come from.
pub const SSO_SOURCE: &str = "sso.amazonaws.com";

/// The events that say a user signed in: `Authenticate` (into the access portal) and
/// `Federate` (into an account through it).
pub const SIGN_IN_EVENTS: [&str; 2] = ["Authenticate", "Federate"];

/// A successful sign-in: who (the Identity Store user id when the event names it, else the
/// user name) and when (RFC 3339).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignIn {
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub at: String,
}

/// How far before the newest sign-in already read the next sync reads again: CloudTrail may
/// deliver an event up to about 15 minutes after it happened, and one read twice changes
/// nothing.
pub const OVERLAP_SECONDS: i64 = 15 * 60;

/// Where a sync that read up to `newest` (RFC 3339) reads from next time.
pub fn read_from(newest: &str) -> Option<String> {
    let newest = DateTime::from_str(newest, Format::DateTime).ok()?;
    DateTime::from_secs(newest.secs() - OVERLAP_SECONDS)
        .fmt(Format::DateTime)
        .ok()
}

/// One page of Identity Center's `event` events since `since` (RFC 3339, inclusive; `None`:
/// as far back as CloudTrail keeps). Events of other sources and failed sign-ins are left out.
pub async fn sign_ins(
    session: &Session,
    event: &str,
    since: Option<&str>,
    token: Option<String>,
    page_size: i32,
) -> Result<Page<Vec<SignIn>>, AwsError> {
    let client = aws_sdk_cloudtrail::Client::new(&session.sso);
    let start = match since {
        Some(text) => Some(DateTime::from_str(text, Format::DateTime).map_err(|e| {
            AwsError::new(
                "LookupEvents",
                super::error::ErrorKind::Invalid,
                format!("the saved sign-in cursor {text:?} is not a time: {e}"),
            )
        })?),
        None => None,
    };
    let output = session
        .caller
        .call(Service::CloudTrail, "LookupEvents", || async {
            client
                .lookup_events()
                .lookup_attributes(
                    LookupAttribute::builder()
                        .attribute_key(LookupAttributeKey::EventName)
                        .attribute_value(event)
                        .build()
                        .map_err(|e| {
                            AwsError::new(
                                "LookupEvents",
                                super::error::ErrorKind::Invalid,
                                e.to_string(),
                            )
                        })?,
                )
                .set_start_time(start)
                .set_next_token(token.clone())
                .max_results(page_size.min(MAX_PAGE))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("LookupEvents", e))
        })
        .await?;
    let items = output
        .events()
        .iter()
        .filter(|e| e.event_source() == Some(SSO_SOURCE))
        .filter_map(|e| {
            let at = e.event_time()?.fmt(Format::DateTime).ok()?;
            let record: serde_json::Value = e
                .cloud_trail_event()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            // A refused sign-in is recorded too, with its error.
            if record.get("errorCode").is_some() {
                return None;
            }
            let identity = &record["userIdentity"];
            let user_id = identity["onBehalfOf"]["userId"]
                .as_str()
                .map(str::to_string);
            let user_name = e
                .username()
                .or_else(|| identity["userName"].as_str())
                .map(str::to_string);
            (user_id.is_some() || user_name.is_some()).then_some(SignIn {
                user_id,
                user_name,
                at,
            })
        })
        .collect();
    Ok(Page::new(items, output.next_token().map(str::to_string)))
}
