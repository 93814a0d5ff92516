//! AccessGrants through the real controllers, against moto and the API emulator (or a real
//! cluster): every kind of access granted, adopted, revoked, re-granted after drift and
//! expired; policy refusals that write nothing; asynchronous, throttled and failed assignment
//! operations; spec changes; and 200 grants at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_access_operator::api::{AccessGrant, AwsConnector};
use aws_access_operator::controller::{self, shutdown};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::cluster::TestCluster;
use crate::support::moto::{Moto, SMALL_ORG, member_accounts};
use crate::support::operator::{
    TIMEOUT, aws, grant, granted, settings, wait_condition, wait_grant,
};
use crate::support::wait;

pub(crate) struct Org {
    /// A second namespace the operator also watches.
    pub(crate) other: String,
    pub(crate) moto: Moto,
    pub(crate) seed: Value,
    pub(crate) cluster: TestCluster,
    trigger: shutdown::Trigger,
    pub(crate) operator: controller::Operator,
    pub(crate) grants: Api<AccessGrant>,
}

/// moto seeded with `seed_args`, an operator, and a Ready connector `org` with `spec` merged in.
pub(crate) async fn org(
    prefix: &str,
    seed_args: &[&str],
    spec: Value,
    tune: impl FnOnce(&mut controller::AwsSettings),
) -> Org {
    org_with(prefix, seed_args, spec, tune, |_| {}).await
}

/// `org`, with the operator's settings tuned too.
pub(crate) async fn org_with(
    prefix: &str,
    seed_args: &[&str],
    spec: Value,
    tune: impl FnOnce(&mut controller::AwsSettings),
    tune_operator: impl FnOnce(&mut controller::Settings),
) -> Org {
    let cluster = TestCluster::start(prefix).await;
    org_on(cluster, prefix, seed_args, spec, tune, tune_operator).await
}

/// `org_with` in the test namespace of `cluster`.
pub(crate) async fn org_on(
    cluster: TestCluster,
    prefix: &str,
    seed_args: &[&str],
    spec: Value,
    tune: impl FnOnce(&mut controller::AwsSettings),
    tune_operator: impl FnOnce(&mut controller::Settings),
) -> Org {
    let moto = Moto::start();
    let seed = moto.seed(seed_args);
    let other = TestCluster::namespace_in(&cluster, &format!("{prefix}-other")).await;
    let mut aws_settings = aws(&moto).await;
    tune(&mut aws_settings);
    let (trigger, stop) = shutdown::channel();
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let mut settings = settings(&cluster.namespace, "replica", aws_settings);
    settings.namespaces.push(other.clone());
    tune_operator(&mut settings);
    let operator = controller::start(cluster.client.clone(), settings, stop)
        .await
        .expect("operator");
    let connectors: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut body = json!({"region": "us-east-1"});
    if let (Some(b), Some(extra)) = (body.as_object_mut(), spec.as_object()) {
        b.extend(extra.clone());
    }
    let connector: AwsConnector =
        serde_json::from_value(json!({"apiVersion": "awsaccess.io/v1alpha1",
        "kind": "AwsConnector", "metadata": {"name": "org"}, "spec": body}))
        .expect("connector");
    connectors
        .create(&PostParams::default(), &connector)
        .await
        .expect("connector");
    wait_condition(&connectors, "org", "Ready", "True").await;
    moto.reset_calls();
    let grants = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    Org {
        other,
        moto,
        seed,
        cluster,
        trigger,
        operator,
        grants,
    }
}

impl Org {
    pub(crate) async fn create(&self, grant: AccessGrant) {
        self.grants
            .create(&PostParams::default(), &grant)
            .await
            .expect("create grant");
    }

    pub(crate) async fn delete_and_wait(&self, name: &str) {
        self.grants
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        wait::until(&format!("{name} to be gone"), TIMEOUT, || async {
            self.grants
                .get_opt(name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
    }

    pub(crate) fn user_id(&self, index: usize) -> String {
        self.seed["ssoUsers"][index]["id"]
            .as_str()
            .expect("user id")
            .to_string()
    }

    pub(crate) fn group_id(&self, index: usize) -> String {
        self.seed["ssoGroups"][index]["id"]
            .as_str()
            .expect("group id")
            .to_string()
    }

    fn store(&self) -> String {
        self.seed["identityCenter"]["identityStoreId"]
            .as_str()
            .expect("store")
            .to_string()
    }

    pub(crate) fn instance(&self) -> String {
        self.seed["identityCenter"]["instanceArn"]
            .as_str()
            .expect("instance")
            .to_string()
    }

    pub(crate) fn permission_set(&self, name: &str) -> String {
        self.seed["permissionSets"]
            .as_array()
            .expect("sets")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["arn"].as_str())
            .expect("permission set")
            .to_string()
    }

    /// The principals assigned `permission_set` on `account`, as AWS has them.
    pub(crate) async fn assigned(&self, account: &str, permission_set: &str) -> Vec<String> {
        let client = aws_sdk_ssoadmin::Client::new(&self.moto.sdk_config().await);
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = client
                .list_account_assignments()
                .instance_arn(self.instance())
                .account_id(account)
                .permission_set_arn(permission_set)
                .set_next_token(token)
                .send()
                .await
                .expect("list assignments");
            out.extend(
                page.account_assignments()
                    .iter()
                    .filter_map(|a| a.principal_id().map(str::to_string)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return out;
            }
        }
    }

    pub(crate) async fn sso_members(&self, group: &str) -> Vec<String> {
        let client = aws_sdk_identitystore::Client::new(&self.moto.sdk_config().await);
        let page = client
            .list_group_memberships()
            .identity_store_id(self.store())
            .group_id(group)
            .send()
            .await
            .expect("memberships");
        page.group_memberships()
            .iter()
            .filter_map(|m| match m.member_id() {
                Some(aws_sdk_identitystore::types::MemberId::UserId(id)) => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    async fn iam_groups(&self, user: &str) -> Vec<String> {
        let client = aws_sdk_iam::Client::new(&self.moto.sdk_config().await);
        let page = client
            .list_groups_for_user()
            .user_name(user)
            .send()
            .await
            .expect("groups for user");
        page.groups()
            .iter()
            .map(|g| g.group_name().to_string())
            .collect()
    }

    /// AWS calls that change something, as moto received them.
    pub(crate) fn writes(&self) -> BTreeMap<String, u64> {
        self.moto
            .calls()
            .into_iter()
            .filter(|(op, _)| {
                ["Create", "Delete", "Add", "Remove", "Provision"]
                    .iter()
                    .any(|w| op.starts_with(w))
            })
            .collect()
    }

    pub(crate) async fn events(&self, reason: &str) -> Vec<Event> {
        let events: Api<Event> =
            Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace);
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    /// Waits for an event of `reason` saying `note`.
    pub(crate) async fn event_noted(&self, reason: &str, note: &str) {
        wait::until(&format!("a {reason} event: {note}"), TIMEOUT, || async {
            self.events(reason)
                .await
                .iter()
                .any(|e| e.note.as_deref() == Some(note))
                .then_some(())
        })
        .await;
    }

    pub(crate) async fn finish(self) {
        self.trigger.fire();
        self.operator
            .task
            .await
            .expect("join")
            .expect("clean shutdown");
        self.cluster.cleanup().await;
    }
}

pub(crate) fn sso_user(index: usize) -> Value {
    json!({"kind": "SsoUser", "name": format!("user-{index:02}@example.com")})
}

/// A grant of IAM user `user`'s membership of IAM group `group`.
fn iam_member(name: &str, connector: &str, user: &str, group: &str, extra: Value) -> AccessGrant {
    grant(
        name,
        connector,
        json!({"kind": "IamUser", "name": user}),
        json!({"kind": "IamGroupMembership", "group": group}),
        extra,
    )
}

/// A grant of `user-<index>`'s membership of Identity Center group `group`.
fn sso_member(name: &str, connector: &str, user: usize, group: &str, extra: Value) -> AccessGrant {
    grant(
        name,
        connector,
        sso_user(user),
        json!({"kind": "SsoGroupMembership", "group": group}),
        extra,
    )
}

/// A grant of `permission_set` on `account` to `user-<index>`.
fn assignment(
    name: &str,
    connector: &str,
    user: usize,
    permission_set: &str,
    account: &str,
    extra: Value,
) -> AccessGrant {
    grant(
        name,
        connector,
        sso_user(user),
        json!({"kind": "PermissionSet", "permissionSet": permission_set, "accountId": account}),
        extra,
    )
}

#[tokio::test]
async fn each_kind_is_granted_then_revoked_on_delete() {
    let org = org("grants-kinds", SMALL_ORG, json!({}), |_| {}).await;
    let ps = org.permission_set("PermissionSet00");
    org.create(assignment(
        "assignment",
        "org",
        3,
        "PermissionSet00",
        "123456789012",
        json!({}),
    ))
    .await;
    org.create(sso_member("sso-member", "org", 5, "group-00", json!({})))
        .await;
    org.create(iam_member(
        "iam-member",
        "org",
        "iam-user-00",
        "iam-group-00",
        json!({}),
    ))
    .await;
    for name in ["assignment", "sso-member", "iam-member"] {
        wait_grant(&org.grants, name, "Granted").await;
        let status = org
            .grants
            .get(name)
            .await
            .expect("get")
            .status
            .expect("status");
        assert_eq!(status.adopted, Some(false), "{name}");
        assert!(
            status.granted_at.is_some() && status.access.is_some(),
            "{name}"
        );
    }
    assert!(
        org.assigned("123456789012", &ps)
            .await
            .contains(&org.user_id(3))
    );
    assert!(
        org.sso_members(&org.group_id(0))
            .await
            .contains(&org.user_id(5))
    );
    assert!(
        org.iam_groups("iam-user-00")
            .await
            .contains(&"iam-group-00".to_string())
    );
    let status = org
        .grants
        .get("assignment")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(
        status.resolved.and_then(|r| r.principal_id),
        Some(org.user_id(3))
    );
    assert!(status.last_request_id.is_some());
    let granted = org.events("Granted").await;
    assert_eq!(granted.len(), 3);
    // Events speak of the names people wrote, not only of ids.
    let notes: Vec<String> = granted.iter().filter_map(|e| e.note.clone()).collect();
    assert!(
        notes.iter().any(
            |n| n.contains("user user-03@example.com: PermissionSet00 on account 123456789012")
        ),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("user-05@example.com in Identity Center group group-00")),
        "{notes:?}"
    );

    for name in ["assignment", "sso-member", "iam-member"] {
        org.delete_and_wait(name).await;
    }
    assert!(
        !org.assigned("123456789012", &ps)
            .await
            .contains(&org.user_id(3))
    );
    assert!(
        !org.sso_members(&org.group_id(0))
            .await
            .contains(&org.user_id(5))
    );
    assert!(org.iam_groups("iam-user-00").await.is_empty());
    assert_eq!(org.events("Revoked").await.len(), 3);
    org.finish().await;
}

#[tokio::test]
async fn existing_access_is_adopted_and_left_unless_revoke_is_explicit() {
    let org = org("grants-adopt", SMALL_ORG, json!({}), |_| {}).await;
    // The seed assigned user-00 a permission set on an account, and put user-00 in group-00.
    let seeded = org.seed["assignments"][0].clone();
    let account = seeded["accountId"].as_str().expect("account").to_string();
    let ps_arn = seeded["permissionSetArn"]
        .as_str()
        .expect("arn")
        .to_string();
    assert_eq!(seeded["principalId"], json!(org.user_id(0)));
    org.create(grant(
        "adopted",
        "org",
        sso_user(0),
        json!({"kind": "PermissionSet", "permissionSet": ps_arn, "accountId": account}),
        json!({}),
    ))
    .await;
    org.create(sso_member(
        "adopted-revoke",
        "org",
        0,
        "group-00",
        json!({"deletionPolicy": "Revoke"}),
    ))
    .await;
    for name in ["adopted", "adopted-revoke"] {
        let message = wait_grant(&org.grants, name, "Adopted").await;
        assert!(message.contains("already existed"), "{message}");
        assert_eq!(
            org.grants
                .get(name)
                .await
                .expect("get")
                .status
                .expect("status")
                .adopted,
            Some(true)
        );
    }
    assert!(
        org.writes().is_empty(),
        "adoption writes nothing: {:?}",
        org.writes()
    );

    org.delete_and_wait("adopted").await;
    assert!(
        org.assigned(&account, &ps_arn)
            .await
            .contains(&org.user_id(0)),
        "adopted access is left in place"
    );
    assert_eq!(org.events("Retained").await.len(), 1);
    org.delete_and_wait("adopted-revoke").await;
    assert!(
        !org.sso_members(&org.group_id(0))
            .await
            .contains(&org.user_id(0)),
        "deletionPolicy: Revoke revokes adopted access"
    );
    org.finish().await;
}

#[tokio::test]
async fn access_removed_outside_is_granted_again_and_expired_access_is_revoked() {
    let org = org("grants-drift", SMALL_ORG, json!({}), |_| {}).await;
    org.create(iam_member(
        "drift",
        "org",
        "iam-user-00",
        "iam-group-01",
        json!({}),
    ))
    .await;
    org.create(sso_member(
        "short",
        "org",
        3,
        "group-00",
        json!({"duration": "3s"}),
    ))
    .await;
    wait_grant(&org.grants, "drift", "Granted").await;
    let message = wait_grant(&org.grants, "short", "Granted").await;
    assert!(message.contains(" until "), "{message}");
    assert!(
        org.sso_members(&org.group_id(0))
            .await
            .contains(&org.user_id(3))
    );

    // Someone removes the membership by hand: the next check (every second here) restores it.
    let iam = aws_sdk_iam::Client::new(&org.moto.sdk_config().await);
    iam.remove_user_from_group()
        .group_name("iam-group-01")
        .user_name("iam-user-00")
        .send()
        .await
        .expect("remove");
    wait::until("the membership to be back", TIMEOUT, || async {
        org.iam_groups("iam-user-00")
            .await
            .contains(&"iam-group-01".to_string())
            .then_some(())
    })
    .await;
    wait::until("a Regranted event", TIMEOUT, || async {
        (!org.events("Regranted").await.is_empty()).then_some(())
    })
    .await;

    // The 3 s grant expires: revoked in AWS, the object kept, Ready with reason Expired.
    let message = wait_grant(&org.grants, "short", "Expired").await;
    assert!(message.contains("holds no access"), "{message}");
    // The event is published after the status is written: wait for it, then count.
    let expired = wait::until("the Expired event", TIMEOUT, || async {
        let found = org.events("Expired").await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(expired.len(), 1, "one Expired event");
    let note = expired[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("revoked") && note.contains("expired at"),
        "{note}"
    );
    let status = org
        .grants
        .get("short")
        .await
        .expect("still there")
        .status
        .expect("status");
    let granted = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Granted")
        .expect("Granted");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(
        (granted.status.as_str(), ready.status.as_str()),
        ("False", "True")
    );
    assert!(
        !org.sso_members(&org.group_id(0))
            .await
            .contains(&org.user_id(3))
    );

    // The expired grant is looked at again (a change of its connector wakes every grant that
    // uses it): its access stays revoked, the grant's duration does not start over.
    let before = org.writes();
    crate::unit_grants::sync_now(&org, "after-expiry").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        org.writes(),
        before,
        "an expired grant was granted again (and, 3 s later, expired again)"
    );
    wait_grant(&org.grants, "short", "Expired").await;
    org.finish().await;
}

#[tokio::test]
async fn policy_refusals_and_read_only_connectors_write_nothing() {
    let policy = json!({"grantPolicy": {"deniedPermissionSets": ["PermissionSet01"], "allowedAccounts": ["123456789012"], "maxDuration": "12h"}});
    let org = org("grants-policy", SMALL_ORG, policy, |_| {}).await;
    let ps = |name: &str, account: &str| json!({"kind": "PermissionSet", "permissionSet": name, "accountId": account});
    let eight = json!({"duration": "8h"});
    org.create(grant(
        "denied",
        "org",
        sso_user(3),
        ps("PermissionSet01", "123456789012"),
        eight.clone(),
    ))
    .await;
    org.create(grant(
        "account",
        "org",
        sso_user(3),
        ps("PermissionSet00", "111122223333"),
        eight.clone(),
    ))
    .await;
    org.create(grant(
        "forever",
        "org",
        sso_user(3),
        ps("PermissionSet00", "123456789012"),
        json!({}),
    ))
    .await;
    org.create(grant(
        "too-long",
        "org",
        sso_user(3),
        ps("PermissionSet00", "123456789012"),
        json!({"duration": "24h"}),
    ))
    .await;
    org.create(grant(
        "unknown-user",
        "org",
        json!({"kind": "SsoUser", "name": "nobody@example.com"}),
        ps("PermissionSet00", "123456789012"),
        eight.clone(),
    ))
    .await;
    org.create(grant(
        "unknown-set",
        "org",
        sso_user(3),
        ps("NoSuchSet", "123456789012"),
        eight.clone(),
    ))
    .await;
    org.create(sso_member(
        "unknown-group",
        "org",
        3,
        "no-such-group",
        json!({"duration": "1h"}),
    ))
    .await;
    for (name, reason, rule) in [
        ("denied", "NotAllowed", "deniedPermissionSets"),
        ("account", "NotAllowed", "allowedAccounts"),
        ("forever", "NotAllowed", "maxDuration"),
        ("too-long", "NotAllowed", "maxDuration"),
        ("unknown-user", "PrincipalNotFound", "nobody@example.com"),
        ("unknown-set", "PermissionSetNotFound", "NoSuchSet"),
        ("unknown-group", "GroupNotFound", "no-such-group"),
    ] {
        let message = wait_grant(&org.grants, name, reason).await;
        assert!(message.contains(rule), "{name}: {message}");
    }
    // The connector's own namespace only: a grant from elsewhere is refused.
    let elsewhere: Api<AccessGrant> = Api::namespaced(org.cluster.client.clone(), &org.other);
    let mut outsider = grant(
        "outsider",
        "org",
        sso_user(3),
        ps("PermissionSet00", "123456789012"),
        eight.clone(),
    );
    outsider.spec.connector_ref.namespace = Some(org.cluster.namespace.clone());
    elsewhere
        .create(&PostParams::default(), &outsider)
        .await
        .expect("create");
    let message = wait_grant(&elsewhere, "outsider", "NotAllowed").await;
    assert!(message.contains("allowedNamespaces"), "{message}");

    // A read-only connector plans but never writes.
    let connectors: Api<AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    let observer: AwsConnector = serde_json::from_value(
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "observer"}, "spec": {"region": "us-east-1", "readOnly": true}}),
    )
    .expect("connector");
    connectors
        .create(&PostParams::default(), &observer)
        .await
        .expect("create");
    wait_condition(&connectors, "observer", "Ready", "True").await;
    org.create(grant(
        "read-only",
        "observer",
        sso_user(3),
        ps("PermissionSet00", "123456789012"),
        json!({}),
    ))
    .await;
    let message = wait_grant(&org.grants, "read-only", "ReadOnly").await;
    assert!(message.contains("readOnly"), "{message}");

    assert!(
        org.writes().is_empty(),
        "refused grants reached AWS: {:?}",
        org.writes()
    );
    org.finish().await;
}

#[tokio::test]
async fn assignment_operations_in_progress_throttled_and_failed() {
    let org = org("grants-faults", SMALL_ORG, json!({}), |_| {}).await;
    let target = |account: &str| json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": account});
    org.moto.set_faults(json!({"in_progress_polls": 2}));
    org.create(grant(
        "slow",
        "org",
        sso_user(3),
        target("123456789012"),
        json!({}),
    ))
    .await;
    wait_grant(&org.grants, "slow", "Granted").await;
    assert!(
        org.moto.calls()["DescribeAccountAssignmentCreationStatus"] >= 2,
        "polled until SUCCEEDED"
    );

    org.moto.set_faults(json!({"throttle_every": 2}));
    org.create(grant(
        "throttled",
        "org",
        sso_user(4),
        target("123456789012"),
        json!({}),
    ))
    .await;
    wait_grant(&org.grants, "throttled", "Granted").await;

    org.moto.set_faults(
        json!({"fail_assignments": "The permission set is not provisioned to the account"}),
    );
    org.create(grant(
        "failed",
        "org",
        sso_user(5),
        target("123456789012"),
        json!({}),
    ))
    .await;
    let message = wait_grant(&org.grants, "failed", "AwsError").await;
    assert!(
        message.contains("FAILED") && message.contains("not provisioned"),
        "{message}"
    );
    org.moto.set_faults(json!({}));
    // Once AWS accepts it, the retry grants it.
    wait_grant(&org.grants, "failed", "Granted").await;
    let ps = org.permission_set("PermissionSet00");
    let assigned = org.assigned("123456789012", &ps).await;
    for user in [3, 4, 5] {
        assert_eq!(
            assigned.iter().filter(|p| **p == org.user_id(user)).count(),
            1,
            "user {user}: {assigned:?}"
        );
    }
    org.finish().await;
}

#[tokio::test]
async fn changing_a_grant_grants_the_new_access_and_revokes_the_old() {
    let org = org("grants-change", SMALL_ORG, json!({}), |_| {}).await;
    org.create(iam_member(
        "moving",
        "org",
        "iam-user-00",
        "iam-group-00",
        json!({}),
    ))
    .await;
    wait_grant(&org.grants, "moving", "Granted").await;
    org.grants
        .patch(
            "moving",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"target": {"group": "iam-group-02"}}})),
        )
        .await
        .expect("patch");
    wait::until("the new access, and the old one gone", TIMEOUT, || async {
        (org.iam_groups("iam-user-00").await == ["iam-group-02"]).then_some(())
    })
    .await;
    let replaced = wait::until("a Replaced event", TIMEOUT, || async {
        org.events("Replaced").await.pop()
    })
    .await;
    let note = replaced.note.unwrap_or_default();
    assert!(
        note.contains("iam-group-00") && note.contains("iam-group-02"),
        "{note}"
    );
    let message = wait_grant(&org.grants, "moving", "Granted").await;
    assert!(message.contains("iam-group-02"), "{message}");
    assert_eq!(org.iam_groups("iam-user-00").await, ["iam-group-02"]);
    org.finish().await;
}

/// 200 grants applied at once converge, with no duplicate assignment in AWS. The time and the
/// calls are printed for the record (`--nocapture`); the time is not asserted.
/// The drift re-checks of many grants on one (account, permission set) pair share one listing
/// of the pair per check interval, instead of each paging it.
#[tokio::test]
async fn rechecks_of_grants_on_one_pair_share_its_listing() {
    // Re-checked every second.
    let org = org("grants-shared", SMALL_ORG, json!({}), |_| {}).await;
    let account = org.seed["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| *a != "123456789012")
        .expect("a member account")
        .to_string();
    for user in 0..6 {
        org.create(assignment(
            &format!("u{user}"),
            "org",
            user,
            "PermissionSet01",
            &account,
            json!({}),
        ))
        .await;
    }
    for user in 0..6 {
        let name = format!("u{user}");
        wait::until(&format!("{name} to hold its access"), TIMEOUT, || async {
            let grant = org.grants.get_opt(&name).await.ok()??;
            let status = grant.status?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            ["Granted", "Adopted"]
                .contains(&ready.reason.as_str())
                .then_some(())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    org.moto.reset_calls();
    let window = Duration::from_secs(6);
    tokio::time::sleep(window).await;
    let listings = org
        .moto
        .calls()
        .get("ListAccountAssignments")
        .copied()
        .unwrap_or(0);
    // Each of the six grants paging the pair on its own would make about 36 listings here.
    assert!(listings >= 3, "the grants are still re-checked: {listings}");
    assert!(
        listings <= 12,
        "{listings} listings of one pair in {window:?}: the re-checks do not share them"
    );
    // And drift is still seen: an assignment removed by hand comes back.
    let sso = aws_sdk_ssoadmin::Client::new(&org.moto.sdk_config().await);
    sso.delete_account_assignment()
        .instance_arn(org.instance())
        .target_id(&account)
        .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
        .permission_set_arn(org.permission_set("PermissionSet01"))
        .principal_type(aws_sdk_ssoadmin::types::PrincipalType::User)
        .principal_id(org.user_id(4))
        .send()
        .await
        .expect("remove by hand");
    wait::until("the assignment to be back", TIMEOUT, || async {
        org.assigned(&account, &org.permission_set("PermissionSet01"))
            .await
            .contains(&org.user_id(4))
            .then_some(())
    })
    .await;
    org.finish().await;
}

#[tokio::test]
async fn two_hundred_grants_converge_without_duplicates() {
    let rate = 50.0;
    let org = org(
        "grants-200",
        crate::support::moto::FORTY_USERS_FIVE_ACCOUNTS,
        json!({}),
        |aws| {
            aws.grant_check = Duration::from_secs(600);
            aws.limits = aws_access_operator::aws::RateLimits::parse(&format!(
                "identitycenter={rate},iam=1000,sts=1000,organizations=1000"
            ))
            .expect("limits");
        },
    )
    .await;
    let accounts: Vec<String> = member_accounts(&org.seed);
    assert_eq!(accounts.len(), 5);
    let started = Instant::now();
    let mut names = Vec::new();
    for user in 0..40 {
        for account in &accounts {
            let name = format!("g-{user:02}-{account}");
            org.create(grant(&name, "org", sso_user(user), json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": account}), json!({}))).await;
            names.push(name);
        }
    }
    assert_eq!(names.len(), 200);
    wait::until("200 grants Granted", Duration::from_secs(240), || async {
        let (granted, _) = granted(&org.grants).await?;
        (granted == 200).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    let ps = org.permission_set("PermissionSet00");
    for account in &accounts {
        let principals = org.assigned(account, &ps).await;
        let mut distinct = principals.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            principals.len(),
            "no duplicate assignment on {account}"
        );
        for user in 0..40 {
            assert!(
                principals.contains(&org.user_id(user)),
                "user {user} on {account}"
            );
        }
    }
    let calls = org.moto.calls();
    let total: u64 = calls.values().sum();
    eprintln!(
        "200 grants converged in {:.1} s with {total} AWS calls: {calls:?}",
        elapsed.as_secs_f64()
    );
    let identity_center: u64 = calls
        .iter()
        .filter(|(op, _)| !matches!(op.as_str(), "GetCallerIdentity" | "AssumeRole"))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "bound: 1.3 x {identity_center} Identity Center calls / {rate} per second = {:.1} s",
        1.3 * identity_center as f64 / rate
    );
    assert_eq!(
        calls.get("CreateAccountAssignment"),
        Some(&200),
        "one create per grant"
    );
    org.finish().await;
}

#[tokio::test]
async fn unmanaged_access_is_counted_and_listed_never_revoked() {
    let org = org("grants-unmanaged", SMALL_ORG, json!({}), |_| {}).await;
    let connectors: Api<AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    let seeded = org.seed["assignments"].as_array().map_or(0, Vec::len)
        + org.seed["ssoGroups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["members"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
        + 3; // iam-user-01 in one IAM group, iam-user-02 in two
    let counts = connectors
        .get("org")
        .await
        .expect("get")
        .status
        .expect("status")
        .inventory
        .expect("counts");
    assert_eq!(
        counts.unmanaged_assignments, seeded as u64,
        "nothing is declared yet"
    );
    // Every access path: one per user assignment, one per member of an assigned group.
    let groups = org.seed["ssoGroups"].as_array().expect("groups");
    let paths: usize = org.seed["assignments"]
        .as_array()
        .expect("assignments")
        .iter()
        .map(
            |a| match groups.iter().find(|g| g["id"] == a["principalId"]) {
                Some(group) => group["members"].as_array().map_or(0, Vec::len),
                None => 1,
            },
        )
        .sum();
    assert!(paths > org.seed["assignments"].as_array().map_or(0, Vec::len));
    assert_eq!(counts.undeclared_access_paths, paths as u64);

    // Declare one existing membership; after the next sync it is no longer unmanaged.
    org.create(sso_member("declared", "org", 0, "group-00", json!({})))
        .await;
    wait_grant(&org.grants, "declared", "Adopted").await;
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"awsaccess.io/sync-now": "after-grant"}}}),
            ),
        )
        .await
        .expect("annotate");
    let counts = wait::until("the next sync", TIMEOUT, || async {
        let status = connectors.get("org").await.ok()?.status?;
        (status.last_handled_sync_now.as_deref() == Some("after-grant"))
            .then_some(status.inventory?)
    })
    .await;
    assert_eq!(counts.unmanaged_assignments, seeded as u64 - 1);
    // A membership alone declares no whole path: the group's assignments are not declared.
    assert_eq!(counts.undeclared_access_paths, paths as u64);
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    let listed = config_maps
        .get(&format!(
            "{}-0",
            aws_access_operator::controller::configmaps::base_name(
                &org.cluster.namespace,
                "org",
                "unmanaged"
            )
        ))
        .await
        .expect("unmanaged ConfigMap");
    let bytes = &listed.binary_data.expect("binaryData")["content"].0;
    let list: Vec<String> = serde_json::from_slice(bytes).expect("a JSON list");
    assert_eq!(list.len(), seeded - 1);
    assert!(
        org.writes().is_empty(),
        "unmanaged access is never revoked: {:?}",
        org.writes()
    );
    org.finish().await;
}

/// The seeded assignment of user-00, as (account, permission set ARN).
fn seeded_assignment(org: &Org) -> (String, String) {
    let seeded = &org.seed["assignments"][0];
    (
        seeded["accountId"].as_str().expect("account").to_string(),
        seeded["permissionSetArn"]
            .as_str()
            .expect("arn")
            .to_string(),
    )
}

fn write_count(org: &Org, operation: &str) -> u64 {
    org.moto.calls().get(operation).copied().unwrap_or(0)
}

/// Two grants declare one access: it is created once, deleting one keeps it, deleting both
/// revokes it. A status rewritten to name someone else's assignment changes nothing: what to
/// revoke comes from the ledger.
#[tokio::test]
async fn two_grants_one_access_and_a_forged_status() {
    let org = org("grants-shared", SMALL_ORG, json!({}), |_| {}).await;
    let ps = org.permission_set("PermissionSet00");
    let target = json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": "123456789012"});
    org.create(grant(
        "first",
        "org",
        sso_user(3),
        target.clone(),
        json!({}),
    ))
    .await;
    org.create(grant(
        "second",
        "org",
        sso_user(3),
        target.clone(),
        json!({}),
    ))
    .await;
    wait_grant(&org.grants, "first", "Granted").await;
    wait_grant(&org.grants, "second", "Granted").await;
    assert_eq!(
        write_count(&org, "CreateAccountAssignment"),
        1,
        "one create for two grants"
    );

    // Someone with access to accessgrants/status points "second" at user-00's own assignment.
    let (account, foreign_ps) = seeded_assignment(&org);
    let forged = json!({"status": {"access": {"kind": "Assignment", "instanceArn": org.instance(),
        "accountId": account, "permissionSetArn": foreign_ps, "principalType": "USER",
        "principalId": org.user_id(0)}, "adopted": false}});
    org.grants
        .patch_status("second", &PatchParams::default(), &Patch::Merge(forged))
        .await
        .expect("forge the status");

    org.delete_and_wait("first").await;
    assert!(
        org.assigned("123456789012", &ps)
            .await
            .contains(&org.user_id(3)),
        "still declared by the second grant"
    );
    assert_eq!(write_count(&org, "DeleteAccountAssignment"), 0);
    org.delete_and_wait("second").await;
    assert!(
        !org.assigned("123456789012", &ps)
            .await
            .contains(&org.user_id(3)),
        "revoked with the last grant"
    );
    assert!(
        org.assigned(&account, &foreign_ps)
            .await
            .contains(&org.user_id(0)),
        "the assignment the forged status named is untouched"
    );
    assert_eq!(write_count(&org, "DeleteAccountAssignment"), 1);
    assert_eq!(write_count(&org, "CreateAccountAssignment"), 1);
    org.finish().await;
}

/// Expiry and policy come first: a grant whose connector lost its external-ID Secret is still
/// revoked when it expires, and one that a tightened grantPolicy no longer allows is revoked.
#[tokio::test]
async fn expiry_and_tightened_policy_revoke_whatever_else_is_wrong() {
    let org = org("grants-expire", SMALL_ORG, json!({}), |_| {}).await;
    let connectors: Api<AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    secrets
        .create(
            &PostParams::default(),
            &crate::support::operator::secret("external-id", crate::support::operator::VALID_ID),
        )
        .await
        .expect("secret");
    let with_secret: AwsConnector = serde_json::from_value(json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "chained"},
        "spec": {"region": "us-east-1", "auth": {"roleArn": "arn:aws:iam::123456789012:role/ops",
            "externalIdSecretRef": {"name": "external-id", "key": "externalId"}}}
    }))
    .expect("connector");
    connectors
        .create(&PostParams::default(), &with_secret)
        .await
        .expect("connector");
    wait_condition(&connectors, "chained", "Ready", "True").await;
    org.create(iam_member(
        "short",
        "chained",
        "iam-user-00",
        "iam-group-00",
        json!({"duration": "8s"}),
    ))
    .await;
    org.create(assignment(
        "tightened",
        "org",
        4,
        "PermissionSet00",
        "123456789012",
        json!({}),
    ))
    .await;
    wait_grant(&org.grants, "short", "Granted").await;
    wait_grant(&org.grants, "tightened", "Granted").await;
    assert_eq!(org.iam_groups("iam-user-00").await, ["iam-group-00"]);

    // The Secret goes, and the connector says so.
    secrets
        .delete("external-id", &DeleteParams::default())
        .await
        .expect("delete the secret");
    connectors
        .patch(
            "chained",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"awsaccess.io/sync-now": "now"}}})),
        )
        .await
        .expect("annotate");
    wait_condition(&connectors, "chained", "Ready", "False").await;
    // The grant still expires on time, and its access is revoked.
    wait_grant(&org.grants, "short", "Expired").await;
    assert!(
        org.iam_groups("iam-user-00").await.is_empty(),
        "revoked although the connector is not Ready"
    );

    // The policy is tightened under a live grant: it is revoked.
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"grantPolicy": {"deniedPermissionSets": ["PermissionSet00"]}}}),
            ),
        )
        .await
        .expect("tighten");
    let message = wait_grant(&org.grants, "tightened", "NotAllowed").await;
    assert!(message.contains("deniedPermissionSets"), "{message}");
    let ps = org.permission_set("PermissionSet00");
    wait::until("the assignment to be revoked", TIMEOUT, || async {
        (!org
            .assigned("123456789012", &ps)
            .await
            .contains(&org.user_id(4)))
        .then_some(())
    })
    .await;
    org.finish().await;
}

/// Deleting a connector revokes what the operator created through it, never what it adopted,
/// and goes only once its ledger is empty; its grants then report the connector missing.
#[tokio::test]
async fn deleting_a_connector_revokes_what_it_created() {
    let org = org("grants-retire", SMALL_ORG, json!({}), |_| {}).await;
    org.create(iam_member(
        "made",
        "org",
        "iam-user-00",
        "iam-group-00",
        json!({}),
    ))
    .await;
    org.create(assignment(
        "assigned",
        "org",
        3,
        "PermissionSet00",
        "123456789012",
        json!({}),
    ))
    .await;
    org.create(sso_member(
        "found",
        "org",
        0,
        "group-00",
        json!({"deletionPolicy": "Revoke"}),
    ))
    .await;
    wait_grant(&org.grants, "made", "Granted").await;
    wait_grant(&org.grants, "assigned", "Granted").await;
    wait_grant(&org.grants, "found", "Adopted").await;

    let connectors: Api<AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    connectors
        .delete("org", &DeleteParams::default())
        .await
        .expect("delete the connector");
    wait::until("the connector to be gone", TIMEOUT, || async {
        connectors
            .get_opt("org")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let ps = org.permission_set("PermissionSet00");
    assert!(
        org.iam_groups("iam-user-00").await.is_empty(),
        "created: revoked"
    );
    assert!(
        !org.assigned("123456789012", &ps)
            .await
            .contains(&org.user_id(3)),
        "created: revoked"
    );
    assert!(
        org.sso_members(&org.group_id(0))
            .await
            .contains(&org.user_id(0)),
        "adopted: left in place"
    );
    // Its inventory, cache and unmanaged list went with it.
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    let left = config_maps
        .list(&kube::api::ListParams::default().labels("awsaccess.io/connector=org"))
        .await
        .expect("list");
    assert!(
        left.items.is_empty(),
        "the connector's ConfigMaps are deleted with it: {:?}",
        left.items
            .iter()
            .map(|c| c.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    let message = wait_grant(&org.grants, "made", "ConnectorNotFound").await;
    assert!(message.contains("does not exist"), "{message}");
    // With nothing left in the ledger, the grants go without touching AWS.
    let before = org.writes();
    for name in ["made", "assigned", "found"] {
        org.delete_and_wait(name).await;
    }
    assert_eq!(org.writes(), before);
    org.finish().await;
}

/// A grant deleted with its finalizer removed by hand never revoked its access; the next sync
/// finds its uid in the ledger without a grant, and revokes what the operator created for it
/// (and leaves what it adopted).
#[tokio::test]
async fn access_of_a_grant_gone_without_its_finalizer_is_revoked_at_the_next_sync() {
    let mut org = org("grants-orphan", SMALL_ORG, json!({}), |_| {}).await;
    org.create(iam_member(
        "made",
        "org",
        "iam-user-00",
        "iam-group-00",
        json!({}),
    ))
    .await;
    org.create(sso_member("found", "org", 0, "group-00", json!({})))
        .await;
    wait_grant(&org.grants, "made", "Granted").await;
    wait_grant(&org.grants, "found", "Adopted").await;
    // While the operator is down, someone removes the finalizers by hand and deletes the grants.
    org.trigger.fire();
    (&mut org.operator.task)
        .await
        .expect("join")
        .expect("clean stop");
    for name in ["made", "found"] {
        org.grants
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .expect("remove the finalizer by hand");
        org.delete_and_wait(name).await;
    }
    let (trigger, operator) = crate::support::operator::start_operator(
        &org.cluster.client,
        &org.cluster.namespace,
        "replica",
        &org.moto,
    )
    .await;
    (org.trigger, org.operator) = (trigger, operator);
    assert_eq!(
        org.iam_groups("iam-user-00").await,
        ["iam-group-00"],
        "nothing revoked it yet"
    );
    let connectors: Api<AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"awsaccess.io/sync-now": "sweep"}}})),
        )
        .await
        .expect("annotate");
    wait::until("the orphaned membership to be revoked", TIMEOUT, || async {
        org.iam_groups("iam-user-00").await.is_empty().then_some(())
    })
    .await;
    assert!(
        org.sso_members(&org.group_id(0))
            .await
            .contains(&org.user_id(0)),
        "adopted access stays"
    );
    assert_eq!(org.writes().get("RemoveUserFromGroup"), Some(&1));
    assert_eq!(org.writes().get("DeleteGroupMembership"), None);
    org.finish().await;
}

/// A spec changed to access the policy refuses leaves the grant holding what it had: the old
/// access is revoked only once the new one is held.
#[tokio::test]
async fn a_change_to_refused_access_keeps_the_old_access() {
    let policy = json!({"grantPolicy": {"deniedPermissionSets": ["PermissionSet01"]}});
    let org = org("grants-refused-change", SMALL_ORG, policy, |_| {}).await;
    org.create(assignment(
        "moving",
        "org",
        3,
        "PermissionSet00",
        "123456789012",
        json!({}),
    ))
    .await;
    wait_grant(&org.grants, "moving", "Granted").await;
    org.grants
        .patch(
            "moving",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"target": {"permissionSet": "PermissionSet01"}}})),
        )
        .await
        .expect("patch");
    let message = wait_grant(&org.grants, "moving", "NotAllowed").await;
    assert!(message.contains("deniedPermissionSets"), "{message}");
    // A few checks later (every second here), the old access is still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ps = org.permission_set("PermissionSet00");
    assert!(
        org.assigned("123456789012", &ps)
            .await
            .contains(&org.user_id(3)),
        "the old access stays while the new one is refused"
    );
    assert_eq!(write_count(&org, "DeleteAccountAssignment"), 0);
    // Deleting the grant revokes it.
    org.delete_and_wait("moving").await;
    assert!(
        !org.assigned("123456789012", &ps)
            .await
            .contains(&org.user_id(3))
    );
    org.finish().await;
}

/// With `allowedAccounts` empty, any account of the organization is allowed, and only those:
/// an account the last sync did not see is refused before any AWS call.
#[tokio::test]
async fn an_account_outside_the_organization_is_refused() {
    let org = org("grants-outside", SMALL_ORG, json!({}), |_| {}).await;
    org.create(assignment(
        "outside",
        "org",
        3,
        "PermissionSet00",
        "999999999999",
        json!({}),
    ))
    .await;
    let message = wait_grant(&org.grants, "outside", "NotAllowed").await;
    assert!(
        message.contains("not an account of the organization"),
        "{message}"
    );
    assert!(org.writes().is_empty(), "{:?}", org.writes());
    org.finish().await;
}
