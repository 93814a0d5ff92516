//! What a permission set is, in one comparable form for both sides: what its object declares
//! and what AWS holds. The changes that take AWS from one to the other are computed here,
//! without I/O, one AWS write each, and only where the two differ.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::api::duration;
use crate::api::iam_policy::minified;
use crate::api::permission_set::{Boundary, CustomerManagedPolicy, PermissionSetSpec};
use crate::aws::model::{CustomerPolicyRef, PermissionSetContents, PermissionsBoundary};

/// The tag the operator puts on a set it creates, with the token its record keeps: after a
/// restart between CreatePermissionSet and the record of its ARN, the set found by name is
/// known to be the one this record created (and not someone else's, which is never taken).
pub const CREATE_TOKEN_TAG: &str = "awsaccess.io/create-token";

/// Identity Center's default session: one hour.
pub const DEFAULT_SESSION: u64 = 3600;

/// The attributes UpdatePermissionSet writes together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `None` on the declared side: not declared, whatever AWS holds is kept (AWS cannot clear
    /// a description or relay state once set).
    pub description: Option<String>,
    pub session_seconds: u64,
    pub relay_state: Option<String>,
}

/// A permission set, declared or held.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    pub settings: Settings,
    pub managed: BTreeSet<String>,
    pub customer: BTreeSet<CustomerPolicyRef>,
    /// The inline policy document (JSON), if any.
    pub inline: Option<Value>,
    /// The inline policy as AWS holds it, when it is not JSON at all (drift to put back).
    pub unreadable_inline: bool,
    pub boundary: Option<PermissionsBoundary>,
    /// Tags, without the operator's own.
    pub tags: BTreeMap<String, String>,
}

fn customer(policy: &CustomerManagedPolicy) -> CustomerPolicyRef {
    CustomerPolicyRef {
        name: policy.name.clone(),
        path: policy.path().to_string(),
    }
}

fn boundary(declared: &Boundary) -> PermissionsBoundary {
    PermissionsBoundary {
        managed_policy_arn: declared.managed_policy_arn.clone(),
        customer_managed_policy: declared.customer_managed_policy.as_ref().map(customer),
    }
}

/// `PT8H`, `PT1H30M`: ISO 8601, as Identity Center writes session durations.
pub fn iso_duration(seconds: u64) -> String {
    let (hours, rest) = (seconds / 3600, seconds % 3600);
    let (minutes, seconds) = (rest / 60, rest % 60);
    let mut text = "PT".to_string();
    for (value, unit) in [(hours, 'H'), (minutes, 'M'), (seconds, 'S')] {
        if value > 0 {
            text.push_str(&format!("{value}{unit}"));
        }
    }
    if text == "PT" {
        text.push_str("0S");
    }
    text
}

/// Seconds of an ISO 8601 time duration (`PT1H30M`); `None` when it is not one.
pub fn parse_iso_duration(text: &str) -> Option<u64> {
    let body = text.strip_prefix("PT")?;
    let lowered = body.to_ascii_lowercase();
    if lowered.is_empty() {
        return None;
    }
    duration::parse(&lowered).map(|d| d.as_secs())
}

impl Shape {
    /// What the object declares.
    pub fn declared(spec: &PermissionSetSpec) -> Self {
        let session_seconds = spec
            .session_duration
            .as_deref()
            .and_then(duration::parse)
            .map_or(DEFAULT_SESSION, |d| d.as_secs());
        Self {
            settings: Settings {
                description: spec.description.clone(),
                session_seconds,
                relay_state: spec.relay_state.clone(),
            },
            managed: spec.managed_policies.iter().cloned().collect(),
            customer: spec
                .customer_managed_policies
                .iter()
                .map(customer)
                .collect(),
            inline: spec.inline_policy.clone(),
            unreadable_inline: false,
            boundary: spec.permissions_boundary.as_ref().map(boundary),
            tags: spec
                .tags
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
        }
    }

    /// What a set created from `declared` holds at once: its settings and tags (they come with
    /// CreatePermissionSet), nothing attached.
    pub fn created(declared: &Shape) -> Self {
        Self {
            settings: declared.settings.clone(),
            tags: declared.tags.clone(),
            ..Self::default()
        }
    }

    /// What AWS holds: the set's description, its contents and its tags.
    pub fn held(
        settings: Settings,
        contents: &PermissionSetContents,
        tags: &BTreeMap<String, String>,
    ) -> Self {
        let inline = contents
            .inline_policy
            .as_deref()
            .map(serde_json::from_str::<Value>);
        Self {
            settings,
            managed: contents
                .aws_managed_policies
                .iter()
                .map(|p| p.arn.clone())
                .collect(),
            customer: contents.customer_managed_policies.iter().cloned().collect(),
            unreadable_inline: matches!(inline, Some(Err(_))),
            inline: inline.and_then(Result::ok),
            boundary: contents.permissions_boundary.clone(),
            tags: tags
                .iter()
                .filter(|(k, _)| k.as_str() != CREATE_TOKEN_TAG)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// One AWS write that takes the held set one step toward the declared one.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Update(Settings),
    AttachManaged(String),
    DetachManaged(String),
    AttachCustomer(CustomerPolicyRef),
    DetachCustomer(CustomerPolicyRef),
    PutInline(String),
    DeleteInline,
    PutBoundary(PermissionsBoundary),
    DeleteBoundary,
    Tag(BTreeMap<String, String>),
    Untag(Vec<String>),
}

fn customer_text(policy: &CustomerPolicyRef) -> String {
    format!("{}{}", policy.path, policy.name)
}

impl Change {
    /// The AWS operation that writes it.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Update(_) => "UpdatePermissionSet",
            Self::AttachManaged(_) => "AttachManagedPolicyToPermissionSet",
            Self::DetachManaged(_) => "DetachManagedPolicyFromPermissionSet",
            Self::AttachCustomer(_) => "AttachCustomerManagedPolicyReferenceToPermissionSet",
            Self::DetachCustomer(_) => "DetachCustomerManagedPolicyReferenceFromPermissionSet",
            Self::PutInline(_) => "PutInlinePolicyToPermissionSet",
            Self::DeleteInline => "DeleteInlinePolicyFromPermissionSet",
            Self::PutBoundary(_) => "PutPermissionsBoundaryToPermissionSet",
            Self::DeleteBoundary => "DeletePermissionsBoundaryFromPermissionSet",
            Self::Tag(_) => "TagResource",
            Self::Untag(_) => "UntagResource",
        }
    }

    /// Whether the accounts that use the set must be provisioned again for it to count there:
    /// tags and the description live only in Identity Center.
    pub fn needs_provisioning(&self) -> bool {
        !matches!(self, Self::Tag(_) | Self::Untag(_))
    }

    /// What it changes, for people (events, status, plans).
    pub fn describe(&self) -> String {
        match self {
            Self::Update(s) => format!(
                "settings (session {}{}{})",
                iso_duration(s.session_seconds),
                s.description
                    .as_ref()
                    .map(|d| format!(", description {d:?}"))
                    .unwrap_or_default(),
                s.relay_state
                    .as_ref()
                    .map(|r| format!(", relay state {r}"))
                    .unwrap_or_default()
            ),
            Self::AttachManaged(arn) => format!("attach {arn}"),
            Self::DetachManaged(arn) => format!("detach {arn}"),
            Self::AttachCustomer(p) => format!("attach customer managed {}", customer_text(p)),
            Self::DetachCustomer(p) => format!("detach customer managed {}", customer_text(p)),
            Self::PutInline(_) => "put the inline policy".to_string(),
            Self::DeleteInline => "delete the inline policy".to_string(),
            Self::PutBoundary(b) => format!(
                "set the permissions boundary to {}",
                b.managed_policy_arn.clone().unwrap_or_else(|| b
                    .customer_managed_policy
                    .as_ref()
                    .map(customer_text)
                    .unwrap_or_default())
            ),
            Self::DeleteBoundary => "remove the permissions boundary".to_string(),
            Self::Tag(tags) => format!(
                "tag {}",
                tags.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            Self::Untag(keys) => format!("untag {}", keys.join(", ")),
        }
    }
}

/// The writes that make `held` what `declared` says, in an order AWS takes: settings first,
/// detaching before attaching (the 20-policy quota counts both), tags last.
pub fn changes(declared: &Shape, held: &Shape) -> Vec<Change> {
    let mut out = Vec::new();
    let wanted = &declared.settings;
    let have = &held.settings;
    let settings_differ = wanted.session_seconds != have.session_seconds
        || (wanted.description.is_some() && wanted.description != have.description)
        || (wanted.relay_state.is_some() && wanted.relay_state != have.relay_state);
    if settings_differ {
        out.push(Change::Update(wanted.clone()));
    }
    out.extend(
        held.managed
            .difference(&declared.managed)
            .cloned()
            .map(Change::DetachManaged),
    );
    out.extend(
        held.customer
            .difference(&declared.customer)
            .cloned()
            .map(Change::DetachCustomer),
    );
    out.extend(
        declared
            .managed
            .difference(&held.managed)
            .cloned()
            .map(Change::AttachManaged),
    );
    out.extend(
        declared
            .customer
            .difference(&held.customer)
            .cloned()
            .map(Change::AttachCustomer),
    );
    match (&declared.inline, &held.inline) {
        (Some(want), have) if Some(want) != have.as_ref() || held.unreadable_inline => {
            out.push(Change::PutInline(minified(want)))
        }
        (None, Some(_)) => out.push(Change::DeleteInline),
        (None, None) if held.unreadable_inline => out.push(Change::DeleteInline),
        _ => {}
    }
    match (&declared.boundary, &held.boundary) {
        (Some(want), have) if Some(want) != have.as_ref() => {
            out.push(Change::PutBoundary(want.clone()))
        }
        (None, Some(_)) => out.push(Change::DeleteBoundary),
        _ => {}
    }
    let stale: Vec<String> = held
        .tags
        .keys()
        .filter(|k| !declared.tags.contains_key(*k))
        .cloned()
        .collect();
    if !stale.is_empty() {
        out.push(Change::Untag(stale));
    }
    let missing: BTreeMap<String, String> = declared
        .tags
        .iter()
        .filter(|(k, v)| held.tags.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !missing.is_empty() {
        out.push(Change::Tag(missing));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::model::PolicyRef;
    use serde_json::json;

    fn spec(extra: Value) -> PermissionSetSpec {
        let mut base = json!({"connectorRef": {"name": "org"}, "name": "Data"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).expect("spec")
    }

    #[test]
    fn iso_durations_both_ways() {
        assert_eq!(iso_duration(3600), "PT1H");
        assert_eq!(iso_duration(5400), "PT1H30M");
        assert_eq!(iso_duration(43_200), "PT12H");
        assert_eq!(parse_iso_duration("PT1H30M"), Some(5400));
        assert_eq!(parse_iso_duration("PT90M"), Some(5400));
        assert_eq!(parse_iso_duration("1h"), None);
        assert_eq!(parse_iso_duration("PT"), None);
    }

    #[test]
    fn nothing_to_change_when_aws_holds_what_is_declared() {
        let declared = Shape::declared(&spec(json!({
            "description": "d", "sessionDuration": "8h",
            "managedPolicies": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "customerManagedPolicies": [{"name": "lake"}],
            "inlinePolicy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]},
            "permissionsBoundary": {"managedPolicyArn": "arn:aws:iam::aws:policy/PowerUserAccess"},
            "tags": [{"key": "team", "value": "data"}]})));
        let contents = PermissionSetContents {
            aws_managed_policies: vec![PolicyRef {
                name: "ReadOnlyAccess".into(),
                arn: "arn:aws:iam::aws:policy/ReadOnlyAccess".into(),
            }],
            customer_managed_policies: vec![CustomerPolicyRef {
                name: "lake".into(),
                path: "/".into(),
            }],
            // Key order and white space are AWS's business: the document is what counts.
            inline_policy: Some(
                r#"{"Statement": [{"Resource": "*", "Action": "s3:*", "Effect": "Allow"}], "Version": "2012-10-17"}"#.into(),
            ),
            permissions_boundary: Some(PermissionsBoundary {
                managed_policy_arn: Some("arn:aws:iam::aws:policy/PowerUserAccess".into()),
                customer_managed_policy: None,
            }),
        };
        let tags = BTreeMap::from([
            ("team".to_string(), "data".to_string()),
            (CREATE_TOKEN_TAG.to_string(), "t".to_string()),
        ]);
        let settings = Settings {
            description: Some("d".into()),
            session_seconds: 28_800,
            relay_state: Some("https://kept.example.com".into()),
        };
        let held = Shape::held(settings, &contents, &tags);
        assert_eq!(changes(&declared, &held), []);
    }

    #[test]
    fn each_difference_is_one_write_and_detaching_comes_first() {
        let declared = Shape::declared(&spec(json!({
            "sessionDuration": "2h",
            "managedPolicies": ["arn:aws:iam::aws:policy/A"],
            "customerManagedPolicies": [{"name": "c", "path": "/t/"}],
            "permissionsBoundary": {"customerManagedPolicy": {"name": "b"}},
            "tags": [{"key": "k", "value": "new"}]})));
        let contents = PermissionSetContents {
            aws_managed_policies: vec![PolicyRef {
                name: "B".into(),
                arn: "arn:aws:iam::aws:policy/B".into(),
            }],
            customer_managed_policies: vec![],
            inline_policy: Some("not json".into()),
            permissions_boundary: None,
        };
        let tags = BTreeMap::from([
            ("k".to_string(), "old".to_string()),
            ("extra".to_string(), "x".to_string()),
        ]);
        let held = Shape::held(
            Settings {
                session_seconds: 3600,
                ..Settings::default()
            },
            &contents,
            &tags,
        );
        let found = changes(&declared, &held);
        let operations: Vec<&str> = found.iter().map(Change::operation).collect();
        assert_eq!(
            operations,
            [
                "UpdatePermissionSet",
                "DetachManagedPolicyFromPermissionSet",
                "AttachManagedPolicyToPermissionSet",
                "AttachCustomerManagedPolicyReferenceToPermissionSet",
                "DeleteInlinePolicyFromPermissionSet",
                "PutPermissionsBoundaryToPermissionSet",
                "UntagResource",
                "TagResource",
            ]
        );
        assert_eq!(found[6], Change::Untag(vec!["extra".into()]));
        assert!(!found[7].needs_provisioning() && found[1].needs_provisioning());
    }

    #[test]
    fn undeclared_description_and_relay_state_are_left_alone() {
        let declared = Shape::declared(&spec(json!({})));
        let held = Shape::held(
            Settings {
                description: Some("someone's".into()),
                session_seconds: 3600,
                relay_state: Some("https://x".into()),
            },
            &PermissionSetContents::default(),
            &BTreeMap::new(),
        );
        assert_eq!(changes(&declared, &held), []);
    }
}
