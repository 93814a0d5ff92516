//! What one reconciliation costs the API server does not grow with the number of grants: no
//! step lists or reads every grant, every ledger entry or the whole inventory. Counted from the
//! API server's audit log, the operator running as a ServiceAccount of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_access_operator::api::{AccessGrant, AwsConnector};
use aws_access_operator::controller::{self, shutdown};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::grants::sso_user;
use crate::support::audit::requests_of;
use crate::support::cluster::TestCluster;
use crate::support::moto::{FORTY_USERS_FIVE_ACCOUNTS, Moto, member_accounts};
use crate::support::operator::{
    TIMEOUT, aws, grant, granted, request_sync, settings, wait_condition,
};
use crate::support::service_account::with_rules;
use crate::support::wait;

/// The requests (verb, resource, object) the operator made to the API server while it
/// reconciled the grant `probe` once after its spec changed to `deletion_policy`; leases and
/// events left out (they come on their own clock).
async fn one_reconciliation(
    grants: &Api<AccessGrant>,
    audit: &std::path::Path,
    username: &str,
    deletion_policy: &str,
) -> BTreeMap<(String, String, String), usize> {
    let before = requests_of(audit, username).len();
    let patched = grants
        .patch(
            "probe",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deletionPolicy": deletion_policy}})),
        )
        .await
        .expect("patch");
    let generation = patched.metadata.generation;
    wait::until("the probe reconciled", TIMEOUT, || async {
        let grant = grants.get("probe").await.ok()?;
        (grant.status?.observed_generation == generation).then_some(())
    })
    .await;
    // What follows the status write (an event, say) is in the window too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut counted = BTreeMap::new();
    for r in requests_of(audit, username).into_iter().skip(before) {
        if r.resource == "leases" || r.resource == "events" || r.verb == "watch" {
            continue;
        }
        // A list is named by what it asks for (its label selector, say).
        // A read at a resourceVersion (answered from the API server's watch cache) says so.
        let name = if r.verb == "list" {
            r.uri
        } else if r.uri.contains("resourceVersion=") {
            format!("{} at a resourceVersion", r.name)
        } else {
            r.name
        };
        *counted.entry((r.verb, r.resource, name)).or_default() += 1;
    }
    counted
}

/// Creates grants `range` of the sequence (users 0 to 38 on the first account, then on the
/// second, ...: every one a distinct access) and waits until every grant is Granted.
async fn create_granted(
    grants: &Api<AccessGrant>,
    accounts: &[String],
    range: std::ops::Range<usize>,
) {
    let mut names = Vec::new();
    for k in range {
        let (user, account) = (k % 39, &accounts[k / 39]);
        let name = format!("g-{k:03}");
        let target = json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": account});
        grants
            .create(
                &PostParams::default(),
                &grant(&name, "org", sso_user(user), target, json!({})),
            )
            .await
            .expect("grant");
        names.push(name);
    }
    wait::until("every grant Granted", Duration::from_secs(180), || async {
        let (granted, all) = granted(grants).await?;
        (granted == all).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_grant_reconciliation_costs_the_same_with_four_grants_as_with_sixty_four() {
    let moto = Moto::start();
    let seed = moto.seed(FORTY_USERS_FIVE_ACCOUNTS);
    let cluster = TestCluster::start("cost").await;
    let Some(audit) = cluster.audit_log() else {
        eprintln!("skipped: this cluster's audit log cannot be read here");
        return;
    };
    let ns = cluster.namespace.clone();
    let identity = with_rules(
        &cluster,
        &ns,
        "cost-operator",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        &[],
    )
    .await;
    let client = identity.client().await;
    let mut aws_settings = aws(&moto).await;
    // Nothing comes back on its own during the test: drift checks and syncs are far off.
    aws_settings.grant_check = Duration::from_secs(3600);
    let mut settings = settings(&ns, "cost", aws_settings);
    settings.leader_election = None;
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(client.clone(), settings, stop)
        .await
        .expect("operator");
    let connectors: Api<AwsConnector> = Api::namespaced(cluster.client.clone(), &ns);
    let connector: AwsConnector = serde_json::from_value(json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org"},
        "spec": {"region": "us-east-1", "auth": {}, "sync": {"interval": "1h"}}
    }))
    .expect("connector");
    connectors
        .create(&PostParams::default(), &connector)
        .await
        .expect("connector");
    wait_condition(&connectors, "org", "Ready", "True").await;

    let accounts: Vec<String> = member_accounts(&seed);
    let grants: Api<AccessGrant> = Api::namespaced(cluster.client.clone(), &ns);
    let target = json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": accounts[0]});
    grants
        .create(
            &PostParams::default(),
            &grant("probe", "org", sso_user(39), target, json!({})),
        )
        .await
        .expect("probe");
    create_granted(&grants, &accounts, 0..3).await;
    let with_four = one_reconciliation(&grants, &audit, &identity.username, "Retain").await;
    create_granted(&grants, &accounts, 3..63).await;
    let with_sixty_four = one_reconciliation(&grants, &audit, &identity.username, "Revoke").await;
    eprintln!("one reconciliation, with 4 grants: {with_four:?}");
    eprintln!("one reconciliation, with 64 grants: {with_sixty_four:?}");
    assert!(
        with_four
            .keys()
            .any(|(verb, resource, _)| verb == "get" && resource == "accessgrants"),
        "each reconciliation reads its grant (the cache keeps no status): {with_four:?}"
    );
    assert!(
        with_four
            .keys()
            .any(|(verb, resource, name)| verb == "patch"
                && resource == "accessgrants/status"
                && name == "probe"),
        "the window holds the reconciliation: {with_four:?}"
    );
    // The grant's ledger entry is read once: a round that only looked at AWS decides again on
    // the entry it read.
    let entry_reads: Vec<usize> = with_four
        .iter()
        .filter(|((verb, resource, name), _)| {
            verb == "get" && resource == "configmaps" && name.starts_with("aws-access-ledger-")
        })
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(entry_reads, [1], "one read of the one entry: {with_four:?}");
    // The one list is the ledger's index: the entries this grant holds, by their label.
    let uid = grants
        .get("probe")
        .await
        .expect("probe")
        .metadata
        .uid
        .expect("uid");
    for (verb, resource, asked) in with_sixty_four.keys() {
        // The cache keeps grants without their status: the reconciliation reads its grant at
        // the cached resourceVersion or newer, which the API server answers from its watch
        // cache.
        if resource == "accessgrants" && verb == "get" {
            assert_eq!(
                asked, "probe at a resourceVersion",
                "the grant is read at a resourceVersion"
            );
        }
        if verb == "list" {
            assert_eq!(resource, "configmaps", "only ledger entries are listed");
            assert!(
                asked.contains("labelSelector=") && asked.contains(&uid),
                "a list names the grant's own entries: {asked}"
            );
        }
    }
    assert_eq!(
        with_four, with_sixty_four,
        "the same requests whatever the number of grants"
    );

    // A sync that finds nothing new writes the connector's status (its times) and wakes none of
    // its 64 grants: the first sync after the grants counts their assignments (something new),
    // the second finds the same.
    for value in ["1", "2"] {
        let before = requests_of(&audit, &identity.username).len();
        request_sync(&connectors, "org", value).await;
        wait::until("the sync asked for", TIMEOUT, || async {
            let status = connectors.get("org").await.ok()?.status?;
            (status.last_handled_sync_now.as_deref() == Some(value)).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let woken = requests_of(&audit, &identity.username)
            .into_iter()
            .skip(before)
            .filter(|r| r.verb == "get" && r.name.starts_with("aws-access-ledger-"))
            .count();
        eprintln!("sync {value}: {woken} ledger entries read by grant reconciliations");
        if value == "2" {
            assert_eq!(
                woken, 0,
                "no grant looked at again after a sync with nothing new"
            );
        }
    }

    trigger.fire();
    operator.task.await.expect("join").expect("clean shutdown");
    cluster.cleanup().await;
}
