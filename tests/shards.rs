//! Shards: two installations side by side on one set of CRDs, each serving the connectors its
//! `--shard-selector` picks. A connector outside a shard is never reached through it, and one
//! moved between shards while its grants are being granted is handed over without a second
//! write: every access is created once.

use std::time::Duration;

use aws_access_operator::api::{AccessGrant, AwsConnector};
use aws_access_operator::controller::claims::{ShardSettings, lease_name};
use aws_access_operator::controller::leader::Timing;
use aws_access_operator::controller::{self, shutdown};
use aws_access_operator::shard::ShardSelector;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::grants::sso_user;
use crate::support::cluster::TestCluster;
use crate::support::moto::{Moto, SMALL_ORG, member_accounts};
use crate::support::operator::{TIMEOUT, aws, grant, settings, wait_condition, wait_grant};
use crate::support::wait;

const SHARD_LABEL: &str = "awsaccess.io/shard";

fn connector(name: &str, shard: &str) -> AwsConnector {
    serde_json::from_value(json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": name, "labels": {SHARD_LABEL: shard}},
        "spec": {"region": "us-east-1", "auth": {}}
    }))
    .expect("connector")
}

/// One shard, in-process: its own leader lease and name, the selector `shard=<color>`, and
/// claims short enough for a test (held 4 s unrenewed).
async fn start_shard(
    client: &Client,
    namespace: &str,
    color: &str,
    moto: &Moto,
) -> (shutdown::Trigger, controller::Operator) {
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let mut settings = settings(namespace, &format!("pod-{color}"), aws(moto).await);
    if let Some(election) = settings.leader_election.as_mut() {
        election.lease_name = format!("shard-{color}");
    }
    settings.shard = Some(ShardSettings {
        selector: ShardSelector::parse(&format!("{SHARD_LABEL}={color}")).expect("selector"),
        name: format!("shard-{color}"),
        claim: Timing {
            duration: Duration::from_secs(4),
            grace: Duration::from_secs(2),
        },
    });
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(client.clone(), settings, stop)
        .await
        .expect("operator starts");
    (trigger, operator)
}

/// AWS calls an operator made through `connector`, by its own metrics.
fn calls_through(operator: &controller::Operator, connector: &str) -> u64 {
    let label = format!("connector=\"{connector}\"");
    operator
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("aws_access_operator_aws_calls_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn claim_holder(leases: &Api<Lease>, connector_key: &str) -> Option<String> {
    leases
        .get_opt(&lease_name(connector_key))
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn each_shard_serves_its_connectors_and_a_moved_one_is_granted_once() {
    let moto = Moto::start();
    let seed = moto.seed(SMALL_ORG);
    let cluster = TestCluster::start("shards").await;
    let (ns, client) = (cluster.namespace.clone(), cluster.client.clone());
    let (blue_stop, blue) = start_shard(&client, &ns, "blue", &moto).await;
    let (green_stop, green) = start_shard(&client, &ns, "green", &moto).await;

    // Two connectors to the same organization, one in each shard.
    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), &ns);
    for (name, shard) in [("north", "blue"), ("south", "green")] {
        connectors
            .create(&PostParams::default(), &connector(name, shard))
            .await
            .expect("connector");
    }
    wait_condition(&connectors, "north", "Ready", "True").await;
    wait_condition(&connectors, "south", "Ready", "True").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let (north, south) = (format!("{ns}/north"), format!("{ns}/south"));
    assert_eq!(
        claim_holder(&leases, &north).await.as_deref(),
        Some("shard-blue")
    );
    assert_eq!(
        claim_holder(&leases, &south).await.as_deref(),
        Some("shard-green")
    );
    assert!(calls_through(&blue, &north) > 0);
    assert!(calls_through(&green, &south) > 0);
    assert_eq!(
        calls_through(&blue, &south),
        0,
        "blue never reached AWS for south"
    );
    assert_eq!(
        calls_through(&green, &north),
        0,
        "green never reached AWS for north"
    );

    // Grants on north, their creates held in AWS while north moves to the green shard.
    let accounts: Vec<String> = member_accounts(&seed);
    let account = accounts.first().expect("a member account").clone();
    let grants: Api<AccessGrant> = Api::namespaced(client.clone(), &ns);
    moto.reset_calls();
    moto.set_faults(json!({"hold_operations": ["CreateAccountAssignment"]}));
    let target =
        json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": account});
    // Users 2 to 5: users 0 and 1 are assigned in the seed.
    for user in 2..5 {
        grants
            .create(
                &PostParams::default(),
                &grant(
                    &format!("north-{user}"),
                    "north",
                    sso_user(user),
                    target.clone(),
                    json!({}),
                ),
            )
            .await
            .expect("grant");
    }
    wait::until("three creates held in AWS", TIMEOUT, || async {
        (moto.calls().get("CreateAccountAssignment") == Some(&3)).then_some(())
    })
    .await;
    connectors
        .patch(
            "north",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {SHARD_LABEL: "green"}}})),
        )
        .await
        .expect("move north");
    // Longer than a claim lasts unrenewed: blue keeps it while its creates are under way, and
    // green writes nothing meanwhile.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        claim_holder(&leases, &north).await.as_deref(),
        Some("shard-blue")
    );
    assert_eq!(
        calls_through(&green, &north),
        0,
        "green waits for the claim"
    );
    moto.set_faults(json!({}));
    wait::until("green to hold north's claim", TIMEOUT, || async {
        (claim_holder(&leases, &north).await.as_deref() == Some("shard-green")).then_some(())
    })
    .await;
    for user in 2..5 {
        wait_grant(&grants, &format!("north-{user}"), "Granted").await;
    }
    // A grant made after the move is green's.
    let blue_calls = calls_through(&blue, &north);
    grants
        .create(
            &PostParams::default(),
            &grant("north-5", "north", sso_user(5), target.clone(), json!({})),
        )
        .await
        .expect("grant");
    wait_grant(&grants, "north-5", "Granted").await;
    assert!(
        calls_through(&green, &north) > 0,
        "green reached AWS for north"
    );
    assert_eq!(
        calls_through(&blue, &north),
        blue_calls,
        "blue made no call for north after handing it over"
    );

    // Every access created exactly once, and held.
    let calls = moto.calls();
    assert_eq!(
        calls.get("CreateAccountAssignment"),
        Some(&4),
        "one create per access: {calls:?}"
    );
    let sso = aws_sdk_ssoadmin::Client::new(&moto.sdk_config().await);
    let instance = seed["identityCenter"]["instanceArn"]
        .as_str()
        .expect("instance");
    let set = seed["permissionSets"]
        .as_array()
        .expect("sets")
        .iter()
        .find(|p| p["name"] == "PermissionSet00")
        .and_then(|p| p["arn"].as_str())
        .expect("set");
    let held = sso
        .list_account_assignments()
        .instance_arn(instance)
        .account_id(&account)
        .permission_set_arn(set)
        .max_results(100)
        .send()
        .await
        .expect("assignments");
    for user in 2..6 {
        let id = seed["ssoUsers"][user]["id"].as_str().expect("user id");
        let n = held
            .account_assignments()
            .iter()
            .filter(|a| a.principal_id() == Some(id))
            .count();
        assert_eq!(n, 1, "user {user} assigned once");
    }
    let ledger = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("awsaccess.io/ledger"))
        .await
        .expect("ledger");
    assert_eq!(ledger.items.len(), 4, "one ledger entry per access");

    blue_stop.fire();
    green_stop.fire();
    blue.task.await.expect("join").expect("clean shutdown");
    green.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}
