//! A piece of access as recorded in an AccessGrant's status, for people (never read back to
//! decide anything).

use crate::api::grant::AccessRecord;
pub use crate::aws::model::Access;

impl From<&Access> for AccessRecord {
    fn from(access: &Access) -> Self {
        match access.clone() {
            Access::Assignment {
                instance_arn,
                account_id,
                permission_set_arn,
                principal_type,
                principal_id,
            } => Self {
                kind: "Assignment".into(),
                instance_arn: Some(instance_arn),
                account_id: Some(account_id),
                permission_set_arn: Some(permission_set_arn),
                principal_type: Some(principal_type),
                principal_id: Some(principal_id),
                ..Self::default()
            },
            Access::SsoMembership {
                identity_store_id,
                group_id,
                user_id,
            } => Self {
                kind: "SsoMembership".into(),
                identity_store_id: Some(identity_store_id),
                group_id: Some(group_id),
                user_id: Some(user_id),
                ..Self::default()
            },
            Access::IamMembership { group, user } => Self {
                kind: "IamMembership".into(),
                group: Some(group),
                user: Some(user),
                ..Self::default()
            },
        }
    }
}

impl TryFrom<&AccessRecord> for Access {
    type Error = String;

    fn try_from(record: &AccessRecord) -> Result<Self, String> {
        let field = |value: &Option<String>, name: &str| {
            value
                .clone()
                .ok_or_else(|| format!("status.access.{name} is missing"))
        };
        Ok(match record.kind.as_str() {
            "Assignment" => Self::Assignment {
                instance_arn: field(&record.instance_arn, "instanceArn")?,
                account_id: field(&record.account_id, "accountId")?,
                permission_set_arn: field(&record.permission_set_arn, "permissionSetArn")?,
                principal_type: field(&record.principal_type, "principalType")?,
                principal_id: field(&record.principal_id, "principalId")?,
            },
            "SsoMembership" => Self::SsoMembership {
                identity_store_id: field(&record.identity_store_id, "identityStoreId")?,
                group_id: field(&record.group_id, "groupId")?,
                user_id: field(&record.user_id, "userId")?,
            },
            "IamMembership" => Self::IamMembership {
                group: field(&record.group, "group")?,
                user: field(&record.user, "user")?,
            },
            other => return Err(format!("status.access.kind {other:?} is unknown")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let all = [
            Access::Assignment {
                instance_arn: "i".into(),
                account_id: "1".into(),
                permission_set_arn: "p".into(),
                principal_type: "GROUP".into(),
                principal_id: "g".into(),
            },
            Access::SsoMembership {
                identity_store_id: "d".into(),
                group_id: "g".into(),
                user_id: "u".into(),
            },
            Access::IamMembership {
                group: "g".into(),
                user: "u".into(),
            },
        ];
        for access in all {
            let record = AccessRecord::from(&access);
            assert_eq!(Access::try_from(&record), Ok(access));
        }
        let broken = AccessRecord {
            kind: "IamMembership".into(),
            ..AccessRecord::default()
        };
        assert!(
            Access::try_from(&broken)
                .unwrap_err()
                .contains("status.access.group")
        );
    }
}
