//! Ownership across a hard stop: the real binary is killed with SIGKILL while AWS holds a
//! CreateAccountAssignment IN_PROGRESS, and the restarted operator resumes the request from its
//! ledger (it neither adopts the access nor creates it again). Then two replicas, the leader
//! aborted in the middle of applying grants: every grant is applied exactly once.

use std::process::{Child, Command};
use std::time::Duration;

use aws_access_operator::api::AccessGrant;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::support::cluster::TestCluster;
use crate::support::moto::{Moto, SMALL_ORG, assigned, member_accounts};
use crate::support::operator::{
    create_org_connector, grant, spawn_operator, start_operator, wait_condition, wait_grant,
};
use crate::support::wait;

/// The real binary, against `moto` with rate limits that keep the tests quick.
fn operator(moto: &Moto, kubeconfig: &std::path::Path, namespace: &str) -> Child {
    spawn_operator(
        std::path::Path::new(env!("CARGO_BIN_EXE_aws-access-operator")),
        moto,
        kubeconfig,
        namespace,
        &[
            "--rate-limits",
            "sts=1000,iam=1000,organizations=1000,identitycenter=1000",
        ],
    )
}

/// Creates the AwsConnector `org` (the pod's own credentials) and waits until it is Ready.
async fn ready_connector(cluster: &TestCluster) {
    let connectors = create_org_connector(&cluster.client, &cluster.namespace).await;
    wait_condition(&connectors, "org", "Ready", "True").await;
}

fn calls(moto: &Moto, operation: &str) -> u64 {
    moto.calls().get(operation).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_kill_during_an_in_progress_create_resumes_from_the_ledger() {
    let moto = Moto::start();
    let seed = moto.seed(SMALL_ORG);
    let cluster = TestCluster::start("restart").await;
    let config = cluster.kubeconfig_file();
    let ns = cluster.namespace.clone();
    let mut first = operator(&moto, &config, &ns);

    ready_connector(&cluster).await;

    // AWS keeps the creation IN_PROGRESS for 8 status polls: the kill comes after 5.
    moto.set_faults(json!({"in_progress_polls": 8}));
    moto.reset_calls();
    let grants: Api<AccessGrant> = Api::namespaced(cluster.client.clone(), &ns);
    grants
        .create(
            &PostParams::default(),
            &grant(
                "slow",
                "org",
                json!({"kind": "SsoUser", "name": "user-03@example.com"}),
                json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": "123456789012"}),
                json!({}),
            ),
        )
        .await
        .expect("grant");
    wait::until(
        "five polls of the creation",
        Duration::from_secs(60),
        || async { (calls(&moto, "DescribeAccountAssignmentCreationStatus") >= 5).then_some(()) },
    )
    .await;
    // SIGKILL to the process this test started: nothing of it runs after this.
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    assert_eq!(calls(&moto, "CreateAccountAssignment"), 1);

    let mut second = operator(&moto, &config, &ns);
    let message = wait_grant(&grants, "slow", "Granted").await;
    assert!(message.contains("is granted"), "{message}");
    let status = grants
        .get("slow")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(status.adopted, Some(false), "resumed, not adopted");
    assert_eq!(
        calls(&moto, "CreateAccountAssignment"),
        1,
        "the restart resumed the request instead of creating again"
    );

    // Deleting it revokes it: the operator created it.
    moto.set_faults(json!({}));
    grants
        .delete("slow", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until("the grant to be gone", Duration::from_secs(60), || async {
        grants.get_opt("slow").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(calls(&moto, "DeleteAccountAssignment"), 1);
    let user = seed["ssoUsers"][3]["id"].as_str().expect("id").to_string();
    assert!(
        !assigned(&moto, &seed, "123456789012", "PermissionSet00")
            .await
            .contains(&user),
        "revoked"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let _ = second.wait();
    cluster.cleanup().await;
}

#[tokio::test]
async fn killing_the_leader_mid_apply_applies_every_grant_once() {
    let moto = Moto::start();
    let seed = moto.seed(&[
        "--accounts",
        "3",
        "--sso-users",
        "8",
        "--sso-groups",
        "1",
        "--iam-users",
        "1",
        "--permission-sets",
        "1",
        "--assigned-users",
        "0",
    ]);
    let cluster = TestCluster::start("restart-leader").await;
    let ns = cluster.namespace.clone();
    let (_trigger_a, a) = start_operator(&cluster.client, &ns, "replica-a", &moto).await;
    wait::until("replica-a to lead", Duration::from_secs(30), || async {
        (a.metrics.leader.get() == 1).then_some(())
    })
    .await;
    let (trigger_b, b) = start_operator(&cluster.client, &ns, "replica-b", &moto).await;
    ready_connector(&cluster).await;
    // Every creation takes a few polls, so that the leader dies with some in flight.
    moto.set_faults(json!({"in_progress_polls": 3}));
    moto.reset_calls();
    let grants: Api<AccessGrant> = Api::namespaced(cluster.client.clone(), &ns);
    let accounts: Vec<String> = member_accounts(&seed);
    let mut names = Vec::new();
    for user in 0..8 {
        for account in accounts.iter().take(2) {
            let name = format!("g-{user}-{account}");
            grants
                .create(
                    &PostParams::default(),
                    &grant(
                        &name,
                        "org",
                        json!({"kind": "SsoUser", "name": format!("user-{user:02}@example.com")}),
                        json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": account}),
                        json!({}),
                    ),
                )
                .await
                .expect("grant");
            names.push(name);
        }
    }
    wait::until(
        "some creations under way",
        Duration::from_secs(60),
        || async { (calls(&moto, "CreateAccountAssignment") >= 3).then_some(()) },
    )
    .await;
    // The leader dies mid-apply: its task is dropped where it stands, the lease is not released.
    a.task.abort();
    let ready = |g: &AccessGrant| {
        g.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "Granted")
        })
    };
    wait::until("every grant Granted", Duration::from_secs(120), || async {
        let list = grants.list(&ListParams::default()).await.ok()?;
        (list.items.iter().filter(|g| ready(g)).count() == names.len()).then_some(())
    })
    .await;
    assert_eq!(b.metrics.leader.get(), 1, "replica-b took over");
    assert_eq!(
        calls(&moto, "CreateAccountAssignment"),
        names.len() as u64,
        "every grant applied exactly once: {:?}",
        moto.calls()
    );
    trigger_b.fire();
    b.task.await.expect("join").expect("stop");
    cluster.cleanup().await;
}
