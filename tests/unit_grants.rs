//! AccessGrants whose target is an organizational unit, through the real controllers against
//! moto: the permission set on every ACTIVE account under the unit (nested units too), each
//! account tracked on its own; an account moved into the unit gains the access at the next sync,
//! one moved out loses it; deleting the grant revokes every account's.

use aws_access_operator::api::AwsConnector;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::grants::{Org, org, sso_user};
use crate::support::moto::{seeded_accounts_in, seeded_unit};
use crate::support::operator::{TIMEOUT, grant, wait_grant};
use crate::support::wait;

/// The seeded unit named `name`.
fn unit(org: &Org, name: &str) -> String {
    seeded_unit(&org.seed, name)
}

/// The seeded accounts whose parent is `parent`.
fn accounts_in(org: &Org, parent: &str) -> Vec<String> {
    seeded_accounts_in(&org.seed, parent)
}

async fn move_account(org: &Org, account: &str, from: &str, to: &str) {
    let client = aws_sdk_organizations::Client::new(&org.moto.sdk_config().await);
    client
        .move_account()
        .account_id(account)
        .source_parent_id(from)
        .destination_parent_id(to)
        .send()
        .await
        .expect("move account");
}

/// Asks for a sync and waits until the connector has handled the request.
pub(crate) async fn sync_now(org: &Org, value: &str) {
    let connectors: Api<AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"awsaccess.io/sync-now": value}}})),
        )
        .await
        .expect("annotate");
    wait::until("the sync asked for", TIMEOUT, || async {
        let status = connectors.get("org").await.ok()?.status?;
        (status.last_handled_sync_now.as_deref() == Some(value)).then_some(())
    })
    .await;
}

/// The accounts in the grant's status, with their state, once they are `expected`.
async fn wait_accounts(org: &Org, name: &str, expected: &[(String, &str)]) -> Value {
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(a, s)| (a.clone(), s.to_string()))
        .collect();
    want.sort();
    wait::until(&format!("{name} to list {want:?}"), TIMEOUT, || async {
        let grant = org.grants.get(name).await.ok()?;
        let status = grant.status?;
        let seen: Vec<(String, String)> = status
            .accounts
            .iter()
            .map(|a| (a.account_id.clone(), a.state.clone()))
            .collect();
        (seen == want).then(|| serde_json::to_value(&status).unwrap_or_default())
    })
    .await
}

#[tokio::test]
async fn a_unit_grant_follows_accounts_into_and_out_of_the_unit() {
    let org = org(
        "grants-unit",
        crate::support::moto::UNIT_ORG,
        json!({}),
        |_| {},
    )
    .await;
    let root = org.seed["root"].as_str().expect("root").to_string();
    let (ou0, ou1, ou2) = (
        unit(&org, "ou-00"),
        unit(&org, "ou-01"),
        unit(&org, "ou-02"),
    );
    let in_ou0 = accounts_in(&org, &ou0);
    let in_ou1 = accounts_in(&org, &ou1);
    let in_ou2 = accounts_in(&org, &ou2);
    assert_eq!((in_ou0.len(), in_ou1.len(), in_ou2.len()), (1, 1, 1));
    let (direct, nested, outside) = (in_ou0[0].clone(), in_ou2[0].clone(), in_ou1[0].clone());
    let set = org.permission_set("PermissionSet01");
    let user = org.user_id(5);

    org.create(grant(
        "team-ou",
        "org",
        sso_user(5),
        json!({"kind": "PermissionSet", "permissionSet": "PermissionSet01", "organizationalUnit": ou0}),
        json!({}),
    ))
    .await;
    let message = wait_grant(&org.grants, "team-ou", "Granted").await;
    assert!(message.contains("granted on all 2 accounts"), "{message}");
    let granted = vec![(direct.clone(), "Granted"), (nested.clone(), "Granted")];
    wait_accounts(&org, "team-ou", &granted).await;
    for account in [&direct, &nested] {
        assert!(
            org.assigned(account, &set).await.contains(&user),
            "{account}"
        );
    }
    for account in [&outside] {
        assert!(
            !org.assigned(account, &set).await.contains(&user),
            "{account}"
        );
    }
    assert_eq!(org.writes().get("CreateAccountAssignment"), Some(&2));

    // An account moved under the unit (into the nested ou-02) gains the access at the next
    // sync.
    move_account(&org, &outside, &ou1, &ou2).await;
    sync_now(&org, "joined").await;
    let mut three = granted.clone();
    three.push((outside.clone(), "Granted"));
    wait_accounts(&org, "team-ou", &three).await;
    assert!(org.assigned(&outside, &set).await.contains(&user));
    assert_eq!(org.writes().get("CreateAccountAssignment"), Some(&3));
    assert_eq!(org.writes().get("DeleteAccountAssignment"), None);

    // One moved out (to the root) loses it at the next sync; the others keep theirs.
    move_account(&org, &direct, &ou0, &root).await;
    sync_now(&org, "left").await;
    wait_accounts(
        &org,
        "team-ou",
        &[(nested.clone(), "Granted"), (outside.clone(), "Granted")],
    )
    .await;
    assert!(!org.assigned(&direct, &set).await.contains(&user));
    for account in [&nested, &outside] {
        assert!(
            org.assigned(account, &set).await.contains(&user),
            "{account}"
        );
    }
    assert_eq!(
        org.writes().get("DeleteAccountAssignment"),
        Some(&1),
        "only the account that left"
    );
    assert_eq!(
        org.writes().get("CreateAccountAssignment"),
        Some(&3),
        "nothing granted twice"
    );
    let revoked = org.events("Revoked").await;
    assert!(
        revoked
            .iter()
            .any(|e| e.note.as_deref().unwrap_or_default().contains(&direct)),
        "the revoke names the account: {revoked:?}"
    );

    // Deleting the grant revokes every account's.
    org.delete_and_wait("team-ou").await;
    for account in [&nested, &outside] {
        assert!(
            !org.assigned(account, &set).await.contains(&user),
            "{account}"
        );
    }
    assert_eq!(org.writes().get("DeleteAccountAssignment"), Some(&3));
    org.finish().await;
}

#[tokio::test]
async fn a_unit_grant_is_refused_outside_the_allowed_units_and_unknown_units_do_not_resolve() {
    let org = org(
        "grants-unit-policy",
        &[
            "--accounts",
            "3",
            "--ous",
            "2",
            "--sso-users",
            "6",
            "--sso-groups",
            "2",
            "--iam-users",
            "3",
            "--permission-sets",
            "2",
            "--assigned-users",
            "2",
        ],
        json!({"grantPolicy": {"allowedOrganizationalUnits": ["ou-aaaa-bbbbbbbb"]}}),
        |_| {},
    )
    .await;
    let ou0 = unit(&org, "ou-00");
    org.create(grant(
        "not-allowed",
        "org",
        sso_user(5),
        json!({"kind": "PermissionSet", "permissionSet": "PermissionSet01", "organizationalUnit": ou0}),
        json!({}),
    ))
    .await;
    let message = wait_grant(&org.grants, "not-allowed", "NotAllowed").await;
    assert!(message.contains("allowedOrganizationalUnits"), "{message}");
    org.create(grant(
        "unknown-unit",
        "org",
        sso_user(5),
        json!({"kind": "PermissionSet", "permissionSet": "PermissionSet01", "organizationalUnit": "ou-zzzz-99999999"}),
        json!({}),
    ))
    .await;
    let message = wait_grant(&org.grants, "unknown-unit", "OrganizationalUnitNotFound").await;
    assert!(
        message.contains("spec.target.organizationalUnit"),
        "{message}"
    );
    assert_eq!(
        org.writes(),
        Default::default(),
        "nothing reached AWS: {:?}",
        org.writes()
    );
    org.finish().await;
}
