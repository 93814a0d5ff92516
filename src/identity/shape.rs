//! What a user or group is, on both sides: the attributes an object declares and the ones AWS
//! holds, in one shape per kind, and the fewest writes that make AWS hold what is declared.
//! Identity Store attributes change in one UpdateUser (or UpdateGroup) carrying an operation
//! per attribute; an IAM user's path, tags and boundary each have their own call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::identity::{AnyIdentity, IamUserSpec, IdentityCenterUserSpec};
use crate::fingerprint::short_hash;
use crate::permission_set::shape::CREATE_TOKEN_TAG;

/// An Identity Center user's attributes (its user name aside, which never changes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserShape {
    pub display_name: String,
    pub given_name: String,
    pub family_name: String,
    pub email: Option<EmailShape>,
    pub title: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailShape {
    pub value: String,
    pub kind: String,
    pub primary: bool,
}

/// An Identity Center group's attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupShape {
    pub display_name: String,
    pub description: Option<String>,
}

/// An IAM user's attributes (its name and account aside, which never change). `tags` leaves
/// out the operator's own create token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamShape {
    pub path: String,
    pub tags: BTreeMap<String, String>,
    pub boundary: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shape {
    User(UserShape),
    Group(GroupShape),
    Iam(IamShape),
}

impl Shape {
    pub fn declared(identity: &AnyIdentity) -> Self {
        match identity {
            AnyIdentity::User(o) => Self::User(user(&o.spec)),
            AnyIdentity::Group(o) => Self::Group(GroupShape {
                display_name: o.spec.display_name.clone(),
                description: o.spec.description.clone(),
            }),
            AnyIdentity::IamUser(o) => Self::Iam(iam(&o.spec)),
        }
    }

    /// A fingerprint of the attributes: an Identity Store user or group found after a create
    /// that may not have happened is the record's only if it holds exactly what the create
    /// wrote (the Identity Store has no tags to mark it with).
    pub fn fingerprint(&self) -> String {
        short_hash(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }
}

fn user(spec: &IdentityCenterUserSpec) -> UserShape {
    UserShape {
        display_name: spec.display_name.clone(),
        given_name: spec.name.given_name.clone(),
        family_name: spec.name.family_name.clone(),
        email: spec.emails.iter().find(|e| e.primary).map(|e| EmailShape {
            value: e.value.clone(),
            kind: e.kind.map_or("work", |k| k.as_str()).to_string(),
            primary: true,
        }),
        title: spec.title.clone(),
        locale: spec.locale.clone(),
        timezone: spec.timezone.clone(),
    }
}

fn iam(spec: &IamUserSpec) -> IamShape {
    IamShape {
        path: spec.path().to_string(),
        tags: spec
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
        boundary: spec.permissions_boundary.clone(),
    }
}

/// One write that makes AWS hold what is declared.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// One attribute of an Identity Store user or group, by its AttributePath; `None` removes
    /// it. All of a pass's go in one UpdateUser or UpdateGroup.
    Attribute {
        path: &'static str,
        value: Option<Value>,
    },
    /// UpdateUser with NewPath.
    IamPath(String),
    /// TagUser with these tags (new ones and new values).
    IamTag(BTreeMap<String, String>),
    /// UntagUser of these keys.
    IamUntag(Vec<String>),
    /// PutUserPermissionsBoundary.
    IamBoundary(String),
    /// DeleteUserPermissionsBoundary.
    IamBoundaryRemoved,
}

impl Change {
    pub fn describe(&self) -> String {
        match self {
            Self::Attribute {
                path,
                value: Some(value),
            } => format!("{path} set to {}", short(value)),
            Self::Attribute { path, value: None } => format!("{path} removed"),
            Self::IamPath(path) => format!("path set to {path}"),
            Self::IamTag(tags) => format!(
                "tags {} set",
                tags.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            Self::IamUntag(keys) => format!("tags {} removed", keys.join(", ")),
            Self::IamBoundary(arn) => format!("permissions boundary set to {arn}"),
            Self::IamBoundaryRemoved => "permissions boundary removed".to_string(),
        }
    }
}

/// A value as a change names it: strings bare, the rest as JSON.
fn short(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.get("value").map_or_else(|| i.to_string(), short))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn attribute(
    out: &mut Vec<Change>,
    path: &'static str,
    declared: Option<&str>,
    held: Option<&str>,
) {
    if declared != held {
        out.push(Change::Attribute {
            path,
            value: declared.map(|v| json!(v)),
        });
    }
}

/// The Identity Store's form of an email list.
pub fn emails_value(email: &EmailShape) -> Value {
    json!([{"value": email.value, "type": email.kind, "primary": email.primary}])
}

/// The writes, in order, that make `held` into `declared`. Shapes of different kinds never
/// meet (the record keeps one kind); they give no change.
pub fn changes(declared: &Shape, held: &Shape) -> Vec<Change> {
    let mut out = Vec::new();
    match (declared, held) {
        (Shape::User(d), Shape::User(h)) => {
            attribute(
                &mut out,
                "displayName",
                Some(&d.display_name),
                Some(&h.display_name),
            );
            attribute(
                &mut out,
                "name.givenName",
                Some(&d.given_name),
                Some(&h.given_name),
            );
            attribute(
                &mut out,
                "name.familyName",
                Some(&d.family_name),
                Some(&h.family_name),
            );
            if d.email != h.email {
                out.push(Change::Attribute {
                    path: "emails",
                    value: d.email.as_ref().map(emails_value),
                });
            }
            attribute(&mut out, "title", d.title.as_deref(), h.title.as_deref());
            attribute(&mut out, "locale", d.locale.as_deref(), h.locale.as_deref());
            attribute(
                &mut out,
                "timezone",
                d.timezone.as_deref(),
                h.timezone.as_deref(),
            );
        }
        (Shape::Group(d), Shape::Group(h)) => {
            attribute(
                &mut out,
                "displayName",
                Some(&d.display_name),
                Some(&h.display_name),
            );
            attribute(
                &mut out,
                "description",
                d.description.as_deref(),
                h.description.as_deref(),
            );
        }
        (Shape::Iam(d), Shape::Iam(h)) => {
            if d.path != h.path {
                out.push(Change::IamPath(d.path.clone()));
            }
            let set: BTreeMap<String, String> = d
                .tags
                .iter()
                .filter(|(k, v)| h.tags.get(*k) != Some(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !set.is_empty() {
                out.push(Change::IamTag(set));
            }
            let gone: Vec<String> = h
                .tags
                .keys()
                .filter(|k| !d.tags.contains_key(*k) && k.as_str() != CREATE_TOKEN_TAG)
                .cloned()
                .collect();
            if !gone.is_empty() {
                out.push(Change::IamUntag(gone));
            }
            match (&d.boundary, &h.boundary) {
                (Some(want), have) if Some(want) != have.as_ref() => {
                    out.push(Change::IamBoundary(want.clone()));
                }
                (None, Some(_)) => out.push(Change::IamBoundaryRemoved),
                _ => {}
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane() -> UserShape {
        UserShape {
            display_name: "Jane Doe".into(),
            given_name: "Jane".into(),
            family_name: "Doe".into(),
            email: Some(EmailShape {
                value: "jane@example.com".into(),
                kind: "work".into(),
                primary: true,
            }),
            title: Some("SRE".into()),
            locale: None,
            timezone: None,
        }
    }

    #[test]
    fn a_user_changes_only_the_attributes_that_differ() {
        let held = jane();
        let mut declared = jane();
        assert_eq!(
            changes(&Shape::User(declared.clone()), &Shape::User(held.clone())),
            []
        );
        declared.family_name = "Roe".into();
        declared.title = None;
        declared.locale = Some("en-GB".into());
        let found = changes(&Shape::User(declared), &Shape::User(held));
        assert_eq!(
            found,
            [
                Change::Attribute {
                    path: "name.familyName",
                    value: Some(json!("Roe"))
                },
                Change::Attribute {
                    path: "title",
                    value: None
                },
                Change::Attribute {
                    path: "locale",
                    value: Some(json!("en-GB"))
                },
            ]
        );
        assert_eq!(
            found.iter().map(Change::describe).collect::<Vec<_>>(),
            [
                "name.familyName set to Roe",
                "title removed",
                "locale set to en-GB"
            ]
        );
    }

    #[test]
    fn an_email_is_replaced_whole() {
        let mut declared = jane();
        if let Some(email) = declared.email.as_mut() {
            email.value = "jane.doe@example.com".into();
        }
        assert_eq!(
            changes(&Shape::User(declared), &Shape::User(jane())),
            [Change::Attribute {
                path: "emails",
                value: Some(
                    json!([{"value": "jane.doe@example.com", "type": "work", "primary": true}])
                )
            }]
        );
    }

    #[test]
    fn an_iam_user_keeps_the_create_token_and_drops_undeclared_tags() {
        let held = IamShape {
            path: "/".into(),
            tags: [("team", "a"), ("extra", "x"), (CREATE_TOKEN_TAG, "t")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            boundary: Some("arn:aws:iam::aws:policy/A".into()),
        };
        let declared = IamShape {
            path: "/people/".into(),
            tags: [("team".to_string(), "b".to_string())].into(),
            boundary: None,
        };
        assert_eq!(
            changes(&Shape::Iam(declared), &Shape::Iam(held)),
            [
                Change::IamPath("/people/".into()),
                Change::IamTag([("team".to_string(), "b".to_string())].into()),
                Change::IamUntag(vec!["extra".into()]),
                Change::IamBoundaryRemoved,
            ]
        );
    }

    #[test]
    fn the_fingerprint_follows_every_attribute() {
        let a = Shape::User(jane());
        let mut other = jane();
        other.timezone = Some("UTC".into());
        assert_eq!(a.fingerprint(), Shape::User(jane()).fingerprint());
        assert_ne!(a.fingerprint(), Shape::User(other).fingerprint());
    }
}
