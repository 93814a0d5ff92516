//! IdentityCenterUsers, IdentityCenterGroups and IamUsers through the real controllers, against
//! moto and the API server: created with exact write counts, changed in place with the fewest
//! writes, drift put back, an existing one refused or adopted, deletion held while access is
//! declared for it or something the operator did not add hangs on it.

use std::collections::BTreeMap;

use aws_access_operator::api::{IamUser, IdentityCenterGroup, IdentityCenterUser};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::grants::{Org, org};
use crate::support::moto::SMALL_ORG;
use crate::support::operator::{TIMEOUT, grant};
use crate::support::wait;

fn object<K: DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    let mut body = json!({"connectorRef": {"name": "org"}});
    for (k, v) in spec.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": kind,
        "metadata": {"name": name}, "spec": body}))
    .expect(kind)
}

fn jane(extra: Value) -> Value {
    let mut spec = json!({"userName": "jane@example.com", "displayName": "Jane Doe",
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": "jane@example.com", "type": "work", "primary": true}]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    spec
}

/// Waits until the object's Ready condition, for its current generation, has `reason`;
/// returns its status.
async fn ready<K>(
    api: &Api<K>,
    name: &str,
    reason: &str,
) -> aws_access_operator::api::IdentityStatus
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + HasStatus,
{
    wait::until(
        &format!("{name} Ready reason {reason}"),
        TIMEOUT,
        || async {
            let object = api.get_opt(name).await.ok()??;
            let status = object.identity_status()?;
            if status.observed_generation != object.meta().generation {
                return None;
            }
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.reason == reason).then_some(status)
        },
    )
    .await
}

trait HasStatus {
    fn identity_status(&self) -> Option<aws_access_operator::api::IdentityStatus>;
}

impl HasStatus for IdentityCenterUser {
    fn identity_status(&self) -> Option<aws_access_operator::api::IdentityStatus> {
        self.status.clone()
    }
}

impl HasStatus for IdentityCenterGroup {
    fn identity_status(&self) -> Option<aws_access_operator::api::IdentityStatus> {
        self.status.clone()
    }
}

impl HasStatus for IamUser {
    fn identity_status(&self) -> Option<aws_access_operator::api::IdentityStatus> {
        self.status.clone()
    }
}

async fn gone<K>(api: &Api<K>, name: &str)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait::until(&format!("{name} to go"), TIMEOUT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// The AWS writes moto recorded, by operation.
fn writes(calls: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    calls
        .iter()
        .filter(|(op, _)| {
            !["List", "Get", "Describe"]
                .iter()
                .any(|r| op.starts_with(r))
                && op.as_str() != "AssumeRole"
        })
        .map(|(op, n)| (op.clone(), *n))
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The IamUser `ci` (ci-bot) declared and converged, then put in iam-group-01 by the grant
/// `ci-deployers`, waited for until Granted.
async fn ci_bot_in_a_group(org: &Org) -> Api<IamUser> {
    let users: Api<IamUser> = Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    users
        .create(
            &PostParams::default(),
            &object("IamUser", "ci", json!({"userName": "ci-bot"})),
        )
        .await
        .expect("iam user");
    ready(&users, "ci", "Converged").await;
    org.create(grant(
        "ci-deployers",
        "org",
        json!({"kind": "IamUser", "name": "ci-bot"}),
        json!({"kind": "IamGroupMembership", "group": "iam-group-01"}),
        json!({}),
    ))
    .await;
    crate::support::operator::wait_grant(&org.grants, "ci-deployers", "Granted").await;
    users
}

fn store_of(org: &Org) -> String {
    org.seed["identityCenter"]["identityStoreId"]
        .as_str()
        .expect("identity store")
        .to_string()
}

/// The identity store's user `id`, as AWS holds it now.
async fn user_in_store(
    client: &aws_sdk_identitystore::Client,
    store: &str,
    id: &str,
) -> Option<aws_sdk_identitystore::operation::describe_user::DescribeUserOutput> {
    client
        .describe_user()
        .identity_store_id(store)
        .user_id(id)
        .send()
        .await
        .ok()
}

async fn store_client(org: &Org) -> aws_sdk_identitystore::Client {
    aws_sdk_identitystore::Client::new(&org.moto.sdk_config().await)
}

/// A user is created with one CreateUser, changed with one UpdateUser naming only what changed,
/// put back after a change made in AWS, and deleted once no grant names it.
#[tokio::test]
async fn an_identity_center_user_is_created_changed_put_back_and_deleted() {
    let org = org("ids-user", SMALL_ORG, json!({}), |_| {}).await;
    let users: Api<IdentityCenterUser> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    users
        .create(
            &PostParams::default(),
            &object("IdentityCenterUser", "jane", jane(json!({"title": "SRE"}))),
        )
        .await
        .expect("create");
    let status = ready(&users, "jane", "Converged").await;
    let id = status.id.clone().expect("user id");
    assert_eq!(status.adopted, Some(false));
    assert_eq!(
        writes(&org.moto.calls()),
        counts(&[("CreateUser", 1)]),
        "one create, nothing else written"
    );
    let store = store_of(&org);
    let client = store_client(&org).await;
    let described = user_in_store(&client, &store, &id).await.expect("describe");
    assert_eq!(described.display_name(), Some("Jane Doe"));
    assert_eq!(described.title(), Some("SRE"));
    assert_eq!(described.emails()[0].value(), Some("jane@example.com"));

    // A change in the object: one UpdateUser with the two attributes that changed.
    org.moto.reset_calls();
    users
        .patch(
            "jane",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"displayName": "Jane Roe", "name": {"familyName": "Roe"}}}),
            ),
        )
        .await
        .expect("patch");
    wait::until("the new display name in AWS", TIMEOUT, || async {
        let user = user_in_store(&client, &store, &id).await?;
        (user.display_name() == Some("Jane Roe")
            && user.name().and_then(|n| n.family_name()) == Some("Roe"))
        .then_some(())
    })
    .await;
    ready(&users, "jane", "Converged").await;
    assert_eq!(writes(&org.moto.calls()), counts(&[("UpdateUser", 1)]));

    // A change made in AWS is put back at the next check, and reported.
    let operation = aws_sdk_identitystore::types::AttributeOperation::builder()
        .attribute_path("title")
        .attribute_value(aws_smithy_types::Document::String("Intern".into()))
        .build()
        .expect("operation");
    client
        .update_user()
        .identity_store_id(&store)
        .user_id(&id)
        .operations(operation)
        .send()
        .await
        .expect("tamper");
    wait::until("the title put back", TIMEOUT, || async {
        let user = user_in_store(&client, &store, &id).await?;
        (user.title() == Some("SRE")).then_some(())
    })
    .await;
    let status = wait::until("drift reported", TIMEOUT, || async {
        let status = users.get("jane").await.ok()?.status?;
        (!status.drift.is_empty()).then_some(status)
    })
    .await;
    assert_eq!(status.drift, ["title set to SRE"]);

    // A grant naming the user holds its deletion, named in the condition.
    org.create(grant(
        "jane-reads",
        "org",
        json!({"kind": "SsoUser", "name": "jane@example.com"}),
        json!({"kind": "SsoGroupMembership", "group": "group-01"}),
        json!({}),
    ))
    .await;
    crate::support::operator::wait_grant(&org.grants, "jane-reads", "Granted").await;
    org.moto.reset_calls();
    users
        .delete("jane", &DeleteParams::default())
        .await
        .expect("delete");
    let held = ready(&users, "jane", "InUse").await;
    let message = &held
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("ready")
        .message;
    assert!(
        message.contains(&format!("AccessGrant {}/jane-reads", org.cluster.namespace)),
        "{message}"
    );
    assert_eq!(writes(&org.moto.calls()).get("DeleteUser"), None);
    // The grant goes (its membership revoked), then the user.
    org.delete_and_wait("jane-reads").await;
    gone(&users, "jane").await;
    let calls = writes(&org.moto.calls());
    assert_eq!(calls.get("DeleteGroupMembership"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("DeleteUser"), Some(&1), "{calls:?}");
    assert!(
        user_in_store(&client, &store, &id).await.is_none(),
        "the user is gone from AWS"
    );
    org.finish().await;
}

/// A group of a name the identity store has is refused without `adopt`, adopted with it, and
/// released (not deleted) when its object goes.
#[tokio::test]
async fn an_existing_group_is_refused_then_adopted_and_released() {
    let org = org("ids-group", SMALL_ORG, json!({}), |_| {}).await;
    let groups: Api<IdentityCenterGroup> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    groups
        .create(
            &PostParams::default(),
            &object(
                "IdentityCenterGroup",
                "g1",
                json!({"displayName": "group-01", "description": "Ops"}),
            ),
        )
        .await
        .expect("create");
    let refused = ready(&groups, "g1", "OwnedElsewhere").await;
    assert!(
        refused.conditions[0].message.contains("spec.adopt: true"),
        "{:?}",
        refused.conditions
    );
    groups
        .patch(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"adopt": true}})),
        )
        .await
        .expect("adopt");
    let adopted = ready(&groups, "g1", "Converged").await;
    assert_eq!(adopted.adopted, Some(true));
    let id = adopted.id.expect("group id");
    let calls = writes(&org.moto.calls());
    assert_eq!(
        calls.get("CreateGroup"),
        Some(&1),
        "the refused create: {calls:?}"
    );
    assert_eq!(
        calls.get("UpdateGroup"),
        Some(&1),
        "the description: {calls:?}"
    );
    groups
        .delete("g1", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&groups, "g1").await;
    let client = store_client(&org).await;
    let group = client
        .describe_group()
        .identity_store_id(store_of(&org))
        .group_id(&id)
        .send()
        .await
        .expect("an adopted group stays");
    assert_eq!(group.description(), Some("Ops"));
    assert_eq!(writes(&org.moto.calls()).get("DeleteGroup"), None);
    org.finish().await;
}

/// An IAM user is created with its tags and boundary in one CreateUser, changed with one call
/// per attribute, and kept while it is in a group the operator did not put it in.
#[tokio::test]
async fn an_iam_user_is_converged_and_its_deletion_blocked_by_what_it_did_not_add() {
    let org = org("ids-iam", SMALL_ORG, json!({}), |_| {}).await;
    let users: Api<IamUser> = Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    users
        .create(
            &PostParams::default(),
            &object(
                "IamUser",
                "deploy",
                json!({"userName": "deploy", "path": "/ci/",
                    "tags": [{"key": "team", "value": "ci"}, {"key": "old", "value": "x"}],
                    "permissionsBoundary": "arn:aws:iam::aws:policy/PowerUserAccess"}),
            ),
        )
        .await
        .expect("create");
    let status = ready(&users, "deploy", "Converged").await;
    assert!(
        status
            .arn
            .as_deref()
            .is_some_and(|a| a.ends_with(":user/ci/deploy")),
        "{status:?}"
    );
    assert_eq!(writes(&org.moto.calls()), counts(&[("CreateUser", 1)]));
    let iam = aws_sdk_iam::Client::new(&org.moto.sdk_config().await);
    let user = iam
        .get_user()
        .user_name("deploy")
        .send()
        .await
        .expect("get user");
    let user = user.user().expect("user");
    assert_eq!(
        user.permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn()),
        Some("arn:aws:iam::aws:policy/PowerUserAccess")
    );

    org.moto.reset_calls();
    users
        .patch(
            "deploy",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"path": "/build/", "tags": [{"key": "team", "value": "build"}],
                "permissionsBoundary": null}}),
            ),
        )
        .await
        .expect("patch");
    ready(&users, "deploy", "Converged").await;
    wait::until("the changes written", TIMEOUT, || async {
        let calls = writes(&org.moto.calls());
        (calls.get("DeleteUserPermissionsBoundary") == Some(&1)).then_some(())
    })
    .await;
    assert_eq!(
        writes(&org.moto.calls()),
        counts(&[
            ("UpdateUser", 1),
            ("TagUser", 1),
            ("UntagUser", 1),
            ("DeleteUserPermissionsBoundary", 1)
        ])
    );

    // Put in a group outside the operator: deleting the object leaves the user, and says why.
    iam.add_user_to_group()
        .group_name("iam-group-01")
        .user_name("deploy")
        .send()
        .await
        .expect("add to group");
    org.moto.reset_calls();
    users
        .delete("deploy", &DeleteParams::default())
        .await
        .expect("delete");
    let blocked = ready(&users, "deploy", "DeletionBlocked").await;
    assert!(
        blocked.conditions[0]
            .message
            .contains("membership of IAM group iam-group-01"),
        "{:?}",
        blocked.conditions
    );
    assert_eq!(writes(&org.moto.calls()).get("DeleteUser"), None);
    iam.remove_user_from_group()
        .group_name("iam-group-01")
        .user_name("deploy")
        .send()
        .await
        .expect("remove from group");
    gone(&users, "deploy").await;
    assert!(iam.get_user().user_name("deploy").send().await.is_err());
    org.finish().await;
}

/// Killed with SIGKILL while its creates were on their way to AWS: the restarted binary finds
/// the Identity Center user (holding exactly what the create wrote) and the IAM user (carrying
/// the record's token) and records them, with no second create.
#[tokio::test]
async fn a_kill_during_a_create_records_what_it_made_without_a_second_create() {
    use crate::support::cluster::TestCluster;
    use crate::support::moto::Moto;
    use crate::support::operator::{create_org_connector, spawn_operator, wait_condition};
    let moto = Moto::start();
    let seed = moto.seed(SMALL_ORG);
    let cluster = TestCluster::start("ids-kill").await;
    let config = cluster.kubeconfig_file();
    let ns = cluster.namespace.clone();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_aws-access-operator"));
    let limits = [
        "--rate-limits",
        "sts=1000,iam=1000,organizations=1000,identitycenter=1000",
    ];
    let mut first = spawn_operator(binary, &moto, &config, &ns, &limits);
    let connectors = create_org_connector(&cluster.client, &ns).await;
    wait_condition(&connectors, "org", "Ready", "True").await;
    moto.set_faults(json!({"hold_operations": ["CreateUser"]}));
    moto.reset_calls();
    let users: Api<IdentityCenterUser> = Api::namespaced(cluster.client.clone(), &ns);
    let iam_users: Api<IamUser> = Api::namespaced(cluster.client.clone(), &ns);
    users
        .create(
            &PostParams::default(),
            &object("IdentityCenterUser", "jane", jane(json!({}))),
        )
        .await
        .expect("user");
    iam_users
        .create(
            &PostParams::default(),
            &object("IamUser", "deploy", json!({"userName": "deploy"})),
        )
        .await
        .expect("iam user");
    // Both creates reached AWS and wait there; the records say so.
    wait::until("both creates under way", TIMEOUT, || async {
        (moto.calls().get("CreateUser") == Some(&2)).then_some(())
    })
    .await;
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(cluster.client.clone(), &ns);
    let records = maps
        .list(&kube::api::ListParams::default().labels("awsaccess.io/identity-record"))
        .await
        .expect("records");
    assert_eq!(records.items.len(), 2);
    assert!(
        records.items.iter().all(|m| m
            .data
            .as_ref()
            .is_some_and(|d| d["record"].contains("\"creating\""))),
        "{records:?}"
    );
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    // The held creates go through with nobody to hear the answers.
    moto.set_faults(json!({}));
    let iam = aws_sdk_iam::Client::new(&moto.sdk_config().await);
    let made = wait::until("the IAM user made", TIMEOUT, || async {
        let user = iam.get_user().user_name("deploy").send().await.ok()?;
        user.user().map(|u| u.user_id().to_string())
    })
    .await;
    let store = seed["identityCenter"]["identityStoreId"]
        .as_str()
        .expect("store")
        .to_string();
    let ids = aws_sdk_identitystore::Client::new(&moto.sdk_config().await);
    let listed = ids
        .list_users()
        .identity_store_id(&store)
        .send()
        .await
        .expect("users");
    let jane_id = listed
        .users()
        .iter()
        .find(|u| u.user_name() == Some("jane@example.com"))
        .map(|u| u.user_id().to_string())
        .expect("the Identity Center user made");
    moto.reset_calls();

    let mut second = spawn_operator(binary, &moto, &config, &ns, &limits);
    let user = ready(&users, "jane", "Converged").await;
    let iam_user = ready(&iam_users, "deploy", "Converged").await;
    assert_eq!(user.id.as_deref(), Some(jane_id.as_str()));
    assert_eq!(iam_user.id.as_deref(), Some(made.as_str()));
    assert_eq!((user.adopted, iam_user.adopted), (Some(false), Some(false)));
    let calls = writes(&moto.calls());
    assert_eq!(calls.get("CreateUser"), None, "no second create: {calls:?}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let _ = second.wait();
    cluster.cleanup().await;
}

/// A namespace the connector's identityPolicy does not allow, and a name its patterns do not
/// match, are refused naming the rule, and nothing reaches AWS; a user name cannot change in
/// place (the API server refuses it: another name is another person).
#[tokio::test]
async fn a_tenant_and_a_name_outside_the_policy_are_refused_and_a_user_name_cannot_change() {
    let org = org(
        "ids-tenant",
        SMALL_ORG,
        json!({"identityPolicy": {"iamUsers": {"allowedNames": ["svc-*"]}}}),
        |_| {},
    )
    .await;
    let elsewhere: Api<IdentityCenterUser> =
        Api::namespaced(org.cluster.client.clone(), &org.other);
    let mut tenant: IdentityCenterUser = object("IdentityCenterUser", "jane", jane(json!({})));
    tenant.spec.connector_ref.namespace = Some(org.cluster.namespace.clone());
    elsewhere
        .create(&PostParams::default(), &tenant)
        .await
        .expect("create");
    let refused = ready(&elsewhere, "jane", "NotAllowed").await;
    assert!(
        refused.conditions[0]
            .message
            .contains("identityPolicy.users"),
        "{:?}",
        refused.conditions
    );
    let iam_users: Api<IamUser> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    iam_users
        .create(
            &PostParams::default(),
            &object("IamUser", "admin", json!({"userName": "admin"})),
        )
        .await
        .expect("create");
    let refused = ready(&iam_users, "admin", "NotAllowed").await;
    assert!(
        refused.conditions[0]
            .message
            .contains("spec.userName: admin is not allowed by the connector's identityPolicy.iamUsers.allowedNames (svc-*)"),
        "{:?}",
        refused.conditions
    );
    assert_eq!(
        writes(&org.moto.calls()),
        BTreeMap::new(),
        "nothing written"
    );

    iam_users
        .create(
            &PostParams::default(),
            &object("IamUser", "svc", json!({"userName": "svc-deploy"})),
        )
        .await
        .expect("create");
    ready(&iam_users, "svc", "Converged").await;
    let renamed = iam_users
        .patch(
            "svc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"userName": "svc-other"}})),
        )
        .await;
    match renamed {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(
                status
                    .message
                    .contains("spec.userName, spec.account and spec.connectorRef cannot change"),
                "{}",
                status.message
            );
        }
        other => panic!("a new user name is refused: {other:?}"),
    }
    org.finish().await;
}

/// Grants that name a declared user and group wait for them while they are being created (a
/// reason saying so, not a failure), then grant at once; a declared IAM user is put in an IAM
/// group before any sync has seen it.
#[tokio::test]
async fn grants_wait_for_the_users_and_groups_they_name() {
    let org = org("ids-wait", SMALL_ORG, json!({}), |_| {}).await;
    let users: Api<IdentityCenterUser> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    let groups: Api<IdentityCenterGroup> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    org.moto
        .set_faults(json!({"hold_operations": ["CreateUser", "CreateGroup"]}));
    users
        .create(
            &PostParams::default(),
            &object("IdentityCenterUser", "jane", jane(json!({}))),
        )
        .await
        .expect("user");
    groups
        .create(
            &PostParams::default(),
            &object(
                "IdentityCenterGroup",
                "oncall",
                json!({"displayName": "on-call"}),
            ),
        )
        .await
        .expect("group");
    wait::until("both creates under way", TIMEOUT, || async {
        let calls = org.moto.calls();
        (calls.get("CreateUser") == Some(&1) && calls.get("CreateGroup") == Some(&1)).then_some(())
    })
    .await;
    org.create(grant(
        "jane-on-call",
        "org",
        json!({"kind": "SsoUser", "name": "jane@example.com"}),
        json!({"kind": "SsoGroupMembership", "group": "on-call"}),
        json!({}),
    ))
    .await;
    let message =
        crate::support::operator::wait_grant(&org.grants, "jane-on-call", "IdentityPending").await;
    assert!(
        message.contains(&format!(
            "jane@example.com is declared by IdentityCenterUser {}/jane and is being created",
            org.cluster.namespace
        )),
        "{message}"
    );
    org.moto.set_faults(json!({}));
    let user = ready(&users, "jane", "Converged").await;
    let group = ready(&groups, "oncall", "Converged").await;
    crate::support::operator::wait_grant(&org.grants, "jane-on-call", "Granted").await;
    let ids = store_client(&org).await;
    let members = ids
        .list_group_memberships()
        .identity_store_id(store_of(&org))
        .group_id(group.id.expect("group id"))
        .send()
        .await
        .expect("members");
    let member_ids: Vec<String> = members
        .group_memberships()
        .iter()
        .filter_map(|m| match m.member_id() {
            Some(aws_sdk_identitystore::types::MemberId::UserId(id)) => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(member_ids, [user.id.expect("user id")]);

    // An IAM user the last sync has not seen, put in a group as soon as it exists.
    ci_bot_in_a_group(&org).await;
    org.finish().await;
}

/// Resident memory of `pid` in KiB: (now, peak).
fn rss(pid: u32) -> (u64, u64) {
    use crate::support::operator::status_kib;
    (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"))
}

/// 1,000 Identity Center users and 100 groups declared at once and converged from nothing by
/// the operator's release binary, as a process; then one check of each with nothing to change.
/// Measured by `make bench-identities` (`--ignored --nocapture`): the calls against their
/// lower bound, the time against the Identity Store lane's bound, and the operator's memory
/// are printed, never asserted as time. `BENCH_OPERATOR` names the binary (default
/// `target/release/aws-access-operator`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench-identities"]
async fn a_thousand_users_and_a_hundred_groups_converged() {
    use crate::support::cluster::TestCluster;
    use crate::support::moto::Moto;
    use crate::support::operator::{create_org_connector, spawn_operator, wait_condition};
    const USERS: usize = 1000;
    const GROUPS: usize = 100;
    let rate = 20.0;
    let binary = crate::support::operator::bench_operator();
    let moto = Moto::start();
    moto.seed(SMALL_ORG);
    let cluster = TestCluster::start("ids-bench").await;
    let config = cluster.kubeconfig_file();
    let ns = cluster.namespace.clone();
    let limits = format!("identitycenter={rate},iam=1000,sts=1000,organizations=1000");
    let mut operator = spawn_operator(
        std::path::Path::new(&binary),
        &moto,
        &config,
        &ns,
        &[
            "--rate-limits",
            &limits,
            "--grant-check-interval",
            "2m",
            "--log-format",
            "json",
        ],
    );
    let pid = operator.id();
    let connectors = create_org_connector(&cluster.client, &ns).await;
    wait_condition(&connectors, "org", "Ready", "True").await;
    let (before, _) = rss(pid);
    let users: Api<IdentityCenterUser> = Api::namespaced(cluster.client.clone(), &ns);
    let groups: Api<IdentityCenterGroup> = Api::namespaced(cluster.client.clone(), &ns);
    moto.reset_calls();
    let started = std::time::Instant::now();
    for i in 0..GROUPS {
        groups
            .create(
                &PostParams::default(),
                &object(
                    "IdentityCenterGroup",
                    &format!("team-{i:03}"),
                    json!({"displayName": format!("team-{i:03}"), "description": "A bench team"}),
                ),
            )
            .await
            .expect("group");
    }
    for i in 0..USERS {
        let name = format!("person-{i:04}@example.com");
        users
            .create(
                &PostParams::default(),
                &object(
                    "IdentityCenterUser",
                    &format!("person-{i:04}"),
                    json!({"userName": name, "displayName": format!("Person {i}"),
                        "name": {"givenName": "Person", "familyName": format!("{i}")},
                        "emails": [{"value": name, "primary": true}], "title": "Engineer"}),
                ),
            )
            .await
            .expect("user");
    }
    let converged_count = |list: Vec<Option<aws_access_operator::api::IdentityStatus>>| {
        list.iter()
            .filter(|s| {
                s.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.reason == "Converged")
                })
            })
            .count()
    };
    wait::until(
        "every user and group Converged",
        std::time::Duration::from_secs(900),
        || async {
            let u = users.list(&Default::default()).await.ok()?;
            let g = groups.list(&Default::default()).await.ok()?;
            let done = converged_count(u.items.into_iter().map(|o| o.status).collect())
                + converged_count(g.items.into_iter().map(|o| o.status).collect());
            (done == USERS + GROUPS).then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    let (after, peak) = rss(pid);
    let calls = moto.calls();
    let total: u64 = calls.values().sum();
    // Lower bound: one create each, every attribute with it.
    let lower = (USERS + GROUPS) as u64;
    let bound = lower as f64 / rate;
    println!(
        "bench: {USERS} users and {GROUPS} groups converged from nothing in {:.1} s (Identity Store lane bound {bound:.1} s at {rate} TPS, {:.2}x); {total} AWS calls, lower bound {lower}: {calls:?}",
        took.as_secs_f64(),
        took.as_secs_f64() / bound
    );
    println!(
        "bench: operator memory: {:.1} MiB before, {:.1} MiB after converging (peak {:.1} MiB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    assert_eq!(
        writes(&calls),
        counts(&[("CreateUser", USERS as u64), ("CreateGroup", GROUPS as u64)]),
        "one create each: {calls:?}"
    );

    // One check of each, with nothing to change: one read each, no write.
    moto.reset_calls();
    let round = wait::until(
        "a check of every user and group",
        std::time::Duration::from_secs(600),
        || async {
            let calls = moto.calls();
            (calls.get("DescribeUser").copied() >= Some(USERS as u64)
                && calls.get("DescribeGroup").copied() >= Some(GROUPS as u64))
            .then_some(calls)
        },
    )
    .await;
    let (idle, peak) = rss(pid);
    println!(
        "bench: a check of {} users and groups with nothing to change: {round:?}; operator memory {:.1} MiB (peak {:.1} MiB)",
        USERS + GROUPS,
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    assert!(
        writes(&round).is_empty(),
        "a check with nothing to change writes nothing: {round:?}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = operator.wait();
    cluster.cleanup().await;
}

/// On a readOnly connector a user that does not exist is not created, and an adopted group that
/// differs from its object is reported (condition, status), never written.
#[tokio::test]
async fn a_read_only_connector_reports_and_writes_nothing() {
    let org = org("ids-ro", SMALL_ORG, json!({"readOnly": true}), |_| {}).await;
    let users: Api<IdentityCenterUser> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    let groups: Api<IdentityCenterGroup> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    users
        .create(
            &PostParams::default(),
            &object("IdentityCenterUser", "jane", jane(json!({}))),
        )
        .await
        .expect("user");
    let refused = ready(&users, "jane", "ReadOnly").await;
    assert!(
        refused.conditions[0].message.contains("is not created"),
        "{:?}",
        refused.conditions
    );
    groups
        .create(
            &PostParams::default(),
            &object(
                "IdentityCenterGroup",
                "g0",
                json!({"displayName": "group-00", "description": "Declared", "adopt": true}),
            ),
        )
        .await
        .expect("group");
    let drifted = ready(&groups, "g0", "Drifted").await;
    assert_eq!(drifted.drift, ["description set to Declared"]);
    assert_eq!(
        writes(&org.moto.calls()),
        BTreeMap::new(),
        "a readOnly connector writes nothing"
    );
    org.finish().await;
}

/// An IAM user a grant put in an IAM group is deleted in order: kept while the grant declares
/// the membership, then, once the grant is gone and its membership revoked, deleted.
#[tokio::test]
async fn an_iam_user_is_deleted_after_the_membership_the_operator_gave_it() {
    let org = org("ids-iam-order", SMALL_ORG, json!({}), |_| {}).await;
    let users = ci_bot_in_a_group(&org).await;
    org.moto.reset_calls();
    users
        .delete("ci", &DeleteParams::default())
        .await
        .expect("delete");
    let held = ready(&users, "ci", "InUse").await;
    assert!(
        held.conditions[0].message.contains(&format!(
            "AccessGrant {}/ci-deployers",
            org.cluster.namespace
        )),
        "{:?}",
        held.conditions
    );
    org.delete_and_wait("ci-deployers").await;
    gone(&users, "ci").await;
    let calls = writes(&org.moto.calls());
    assert_eq!(
        (calls.get("RemoveUserFromGroup"), calls.get("DeleteUser")),
        (Some(&1), Some(&1)),
        "{calls:?}"
    );
    let iam = aws_sdk_iam::Client::new(&org.moto.sdk_config().await);
    assert!(iam.get_user().user_name("ci-bot").send().await.is_err());
    org.finish().await;
}

/// An IamUser of a member account is created there, through the role the connector assumes in
/// member accounts, and nowhere else; without `sync.memberAccounts` it is refused, naming it.
#[tokio::test]
async fn an_iam_user_of_a_member_account_is_created_there() {
    let org = org(
        "ids-member",
        &[
            "--accounts",
            "3",
            "--member-iam-users",
            "1",
            "--sso-users",
            "2",
            "--permission-sets",
            "1",
        ],
        json!({"sync": {"memberAccounts": {"enabled": true}}}),
        |_| {},
    )
    .await;
    let members: Vec<String> = org.seed["memberAccounts"]
        .as_object()
        .expect("members")
        .iter()
        .filter(|(_, m)| m["role"] == true)
        .map(|(id, _)| id.clone())
        .collect();
    let member = members
        .first()
        .expect("a member account with its role")
        .clone();
    let users: Api<IamUser> = Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    users
        .create(
            &PostParams::default(),
            &object(
                "IamUser",
                "member-ci",
                json!({"userName": "member-ci", "account": member}),
            ),
        )
        .await
        .expect("create");
    let status = ready(&users, "member-ci", "Converged").await;
    assert_eq!(status.account.as_deref(), Some(member.as_str()));
    assert!(
        status
            .arn
            .as_deref()
            .is_some_and(|a| a.contains(&format!(":{member}:user/member-ci"))),
        "{status:?}"
    );
    // Seen from inside the member account; the management account has no such user.
    let inside = org.moto.iam_in(&member).await;
    inside
        .get_user()
        .user_name("member-ci")
        .send()
        .await
        .expect("the user is in the member account");
    let management = aws_sdk_iam::Client::new(&org.moto.sdk_config().await);
    assert!(
        management
            .get_user()
            .user_name("member-ci")
            .send()
            .await
            .is_err(),
        "not in the management account"
    );
    // A connector that does not enter member accounts refuses one, naming why.
    let connectors: Api<aws_access_operator::api::AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"sync": {"memberAccounts": {"enabled": false}}}})),
        )
        .await
        .expect("patch");
    users
        .create(
            &PostParams::default(),
            &object(
                "IamUser",
                "member-other",
                json!({"userName": "member-other", "account": member}),
            ),
        )
        .await
        .expect("create");
    let refused = ready(&users, "member-other", "NotAllowed").await;
    assert!(
        refused.conditions[0]
            .message
            .contains("spec.sync.memberAccounts.enabled is false"),
        "{:?}",
        refused.conditions
    );
    org.finish().await;
}
