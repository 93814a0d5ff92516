//! Member accounts through the operator: each account's outcome in the connector's status, the
//! Synced condition and the `member_accounts` metric; an account whose role is missing is
//! reported AccessDenied naming the role, and the others are synced.

use aws_access_operator::api::AwsConnector;
use kube::Api;
use serde_json::json;

use crate::grants::org;
use crate::unit_grants::sync_now;

#[tokio::test]
async fn each_member_account_outcome_is_in_status_and_metrics() {
    let org = org(
        "members",
        &[
            "--accounts",
            "3",
            "--member-iam-users",
            "1",
            "--members-without-role",
            "1",
            "--sso-users",
            "4",
            "--sso-groups",
            "1",
            "--iam-users",
            "2",
            "--permission-sets",
            "1",
            "--assigned-users",
            "1",
        ],
        json!({"sync": {"memberAccounts": {"enabled": true, "concurrency": 2}}}),
        |_| {},
    )
    .await;
    // From now on a role that does not exist cannot be assumed, as in AWS.
    org.moto.set_faults(json!({"assume_role_needs_role": true}));
    sync_now(&org, "members").await;
    let connectors: Api<AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    let status = connectors
        .get("org")
        .await
        .expect("get")
        .status
        .expect("status");
    let members = org.seed["memberAccounts"].as_object().expect("members");
    assert_eq!(status.member_accounts.len(), members.len());
    for member in &status.member_accounts {
        let seeded = &members[&member.account_id];
        if seeded["role"] == true {
            assert_eq!(member.outcome, "Entered", "{member:?}");
            assert_eq!(member.message, None);
        } else {
            assert_eq!(member.outcome, "AccessDenied", "{member:?}");
            let message = member.message.clone().unwrap_or_default();
            assert!(
                message.contains(&format!(
                    "arn:aws:iam::{}:role/OrganizationAccountAccessRole",
                    member.account_id
                )),
                "{message}"
            );
        }
    }
    let counts = status.inventory.expect("counts");
    assert_eq!(counts.member_accounts_entered, members.len() as u64 - 1);
    assert_eq!(
        counts.member_iam_users,
        members.len() as u64 - 1,
        "one user in each entered account"
    );
    let synced = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Synced")
        .expect("Synced");
    assert_eq!(
        synced.status, "True",
        "one account that cannot be entered is not fatal"
    );
    assert!(
        synced
            .message
            .contains("member accounts: 1 AccessDenied, 2 Entered"),
        "{}",
        synced.message
    );
    let metrics = org.operator.metrics.render();
    let gauge = |outcome: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("aws_access_operator_member_accounts{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(gauge("Entered").as_deref(), Some("2"), "{metrics}");
    assert_eq!(gauge("AccessDenied").as_deref(), Some("1"), "{metrics}");
    org.moto.set_faults(json!({}));
    org.finish().await;
}
