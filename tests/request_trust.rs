//! Trust has a start, on the real API server: an AccessRequest counts only if the API server
//! provably checked it under the admission policy in force. A request admitted while the
//! binding was away, while the operator was stopped and the policy replaced, or in the first
//! instants after the policy was created is never granted, even after the policy is back; a
//! chart upgrade that leaves the policy alone, and a restart of the operator, change nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_access_operator::api::AccessRequest;
use aws_access_operator::request::trust::Enforcement;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::requests::{
    AdmissionPolicy, People, add_review, api, approvals, as_alice, asked, calls, kill_9,
    oncall_rule, operator_process, people, process_org, receiver, requests_org_notifying,
    requests_org_under, state,
};
use crate::support::cluster::{TestCluster, named_cluster, unique_suffix};
use crate::support::moto::SMALL_ORG;
use crate::support::operator::{TIMEOUT, enforced};
use crate::support::receiver::{Answer, Receiver};
use crate::support::tools::{chart, helm_ok};
use crate::support::wait;

/// A control plane of the test's own: every AccessRequest admission policy applies to the whole
/// cluster, so a forged request is admitted only where no other test's policy is in place.
/// `None` on a cluster `TEST_KUBECONFIG` names, which every test shares.
async fn own_cluster(prefix: &str) -> Option<TestCluster> {
    if named_cluster().is_some() {
        eprintln!(
            "{prefix}: skipped on the cluster TEST_KUBECONFIG names: forging a request needs a cluster where no other test's admission policy applies"
        );
        return None;
    }
    Some(TestCluster::start_isolated(prefix).await)
}

/// alice's request for `principal`, already holding approvals in bob's and carol's names:
/// created as soon as nothing checks it (each try has a name of its own; a refused try
/// stores nothing). Its name.
async fn forge(alice: &Api<AccessRequest>, who: &People, prefix: &str, principal: &str) -> String {
    let tries = AtomicUsize::new(0);
    wait::until("a forged request to be admitted", TIMEOUT, || async {
        let name = format!("{prefix}-{}", tries.fetch_add(1, Ordering::Relaxed));
        let mut forged = as_alice(who, &name, "30m");
        forged.spec.principal.name = Some(principal.to_string());
        forged.spec.reviews = serde_json::from_value(json!([
            {"user": who.bob.username, "decision": "Approve"},
            {"user": who.carol.username, "decision": "Approve"}]))
        .expect("reviews");
        match alice.create(&PostParams::default(), &forged).await {
            Ok(_) => Some(name),
            Err(kube::Error::Api(status)) if status.code == 403 => None,
            Err(error) => panic!("creating {name}: {error}"),
        }
    })
    .await
}

/// Waits for the request to end `Unvouched`, none of its reviews counted, and says why.
async fn unvouched(api: &Api<AccessRequest>, name: &str) {
    let request = state(api, name, "Unvouched").await;
    let status = request.status.expect("status");
    assert_eq!(
        status.end_reason.as_deref(),
        Some("Unvouched"),
        "{status:?}"
    );
    assert!(
        status.reviews.iter().all(|r| !r.counted
            && r.note
                .as_deref()
                .is_some_and(|n| n.contains("before the admission policy"))),
        "{:?}",
        status.reviews
    );
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Approved"
            && c.status == "False"
            && c.reason == "Unvouched"
            && c.message.contains("ask again")),
        "{:?}",
        status.conditions
    );
}

fn pins_of(name: &str) -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
    let get =
        |kind: &str| crate::support::tools::kubectl_ok(&["get", kind, name, "-o", "json"], "");
    (
        serde_json::from_str(&get("validatingadmissionpolicy")).expect("policy"),
        serde_json::from_str(&get("validatingadmissionpolicybinding")).expect("binding"),
    )
}

fn started_later(first: &Enforcement, second: &Enforcement) {
    assert!(
        second.since() > first.since(),
        "a new start after the change: {first:?} then {second:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_forged_while_the_binding_was_away_never_count() {
    let Some(cluster) = own_cluster("trust-gap").await else {
        return;
    };
    let policy = AdmissionPolicy::install_in(&cluster.kubeconfig_file());
    // Approvers hear of requests waiting for them, and of unvouched ones.
    let events = Receiver::start(Answer::Accept).await;
    let mut pending_and_unvouched = receiver("events", "CloudEvents");
    pending_and_unvouched["states"] = json!(["Pending", "Unvouched"]);
    let (org, who) = requests_org_notifying(
        cluster,
        policy.name.clone(),
        "trust-gap",
        SMALL_ORG,
        2,
        |_| {},
        json!([pending_and_unvouched]),
        &[("events", &events.url)],
    )
    .await;
    let ns = org.cluster.namespace.clone();
    let client = org.cluster.client.clone();
    let alice = api(&who.alice, &ns).await;
    let bob = api(&who.bob, &ns).await;
    let carol = api(&who.carol, &ns).await;
    let first = enforced(&client, &ns, &policy.name, None).await;
    asked(&alice, &who, "before", "30m").await;

    // The binding goes (a rollback, a toggled value): alice files a request that already
    // holds two approvals in the on-call engineers' names, and nothing refuses it.
    policy.remove_binding();
    let forged = forge(&alice, &who, "forged", "user-04@example.com").await;
    wait::until(
        "the forged request pending, nothing counted",
        TIMEOUT,
        || async {
            let status = alice.get(&forged).await.ok()?.status?;
            let waiting = status.conditions.iter().any(|c| {
                c.type_ == "Approved" && c.status == "False" && c.reason == "AdmissionPolicyMissing"
            });
            (waiting && status.reviews.len() == 2 && status.reviews.iter().all(|r| !r.counted))
                .then_some(())
        },
    )
    .await;
    assert!(org.writes().is_empty(), "{:?}", org.writes());

    // The binding is back: a new start, after which the forged request is never trusted, and
    // neither is the one created before (the policy was not enforced throughout its life).
    policy.apply();
    let second = enforced(&client, &ns, &policy.name, Some(&first)).await;
    started_later(&first, &second);
    assert_eq!(second.pins.policy, first.pins.policy, "the policy stayed");
    assert_ne!(second.pins.binding.uid, first.pins.binding.uid);
    unvouched(&alice, &forged).await;
    unvouched(&alice, "before").await;
    // Nobody was asked to approve the forged request: its requester is not vouched for.
    let subjects = |kind: &str| -> Vec<String> {
        events
            .accepted()
            .iter()
            .filter(|r| r.body["type"] == format!("io.awsaccess.accessrequest.{kind}"))
            .map(|r| r.body["subject"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    wait::until("the forged request's Unvouched notice", TIMEOUT, || async {
        subjects("unvouched")
            .contains(&format!("{ns}/{forged}"))
            .then_some(())
    })
    .await;
    assert!(
        !subjects("pending").contains(&format!("{ns}/{forged}")),
        "{:?}",
        subjects("pending")
    );
    assert!(subjects("pending").contains(&format!("{ns}/before")));
    let forged_status = alice
        .get(&forged)
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(forged_status.approvals.as_deref(), Some("0/2"));
    // A review added now, checked by the API server, does not make it count either.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        org.writes().is_empty(),
        "an unvouched request reached AWS: {:?}",
        org.writes()
    );
    wait::until("an Unvouched warning", TIMEOUT, || async {
        org.events("Unvouched")
            .await
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning"))
            .then_some(())
    })
    .await;

    // A request created now is trusted as before.
    asked(&alice, &who, "after", "30m").await;
    add_review(&bob, "after", &who.bob.username, "Approve")
        .await
        .expect("bob");
    add_review(&carol, "after", &who.carol.username, "Approve")
        .await
        .expect("carol");
    state(&alice, "after", "Active").await;
    assert_eq!(
        org.writes().get("CreateAccountAssignment").copied(),
        Some(1),
        "{:?}",
        org.writes()
    );
    policy.remove();
    org.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_the_first_instants_of_the_policy_is_not_trusted() {
    let Some(cluster) = own_cluster("trust-new").await else {
        return;
    };
    // The operator is told the policy's name before the policy exists.
    let policy = AdmissionPolicy::render_for(&cluster.kubeconfig_file());
    let (org, who) = requests_org_under(
        cluster,
        policy.name.clone(),
        "trust-new",
        SMALL_ORG,
        2,
        |_| {},
    )
    .await;
    let ns = org.cluster.namespace.clone();
    let alice = api(&who.alice, &ns).await;
    // helm install: the policy is created, and in the same instant a request is filed. Until
    // the API server has loaded the policy, it checks nothing; should it have loaded it already,
    // the policy goes and the next try comes.
    let mut early = None;
    for attempt in 0..5 {
        policy.apply();
        let mut forged = as_alice(&who, &format!("early-{attempt}"), "30m");
        forged.spec.reviews = serde_json::from_value(json!([
            {"user": who.bob.username, "decision": "Approve"},
            {"user": who.carol.username, "decision": "Approve"}]))
        .expect("reviews");
        match alice.create(&PostParams::default(), &forged).await {
            Ok(_) => {
                early = Some(format!("early-{attempt}"));
                break;
            }
            Err(kube::Error::Api(status)) if status.code == 403 => {
                policy.delete();
                forge(
                    &alice,
                    &who,
                    &format!("gone-{attempt}"),
                    "user-05@example.com",
                )
                .await;
            }
            Err(error) => panic!("{error}"),
        }
    }
    let early = early.expect("a request admitted in the policy's first instants");
    enforced(&org.cluster.client, &ns, &policy.name, None).await;
    unvouched(&alice, &early).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(org.writes().is_empty(), "{:?}", org.writes());
    // From the start on, requests are trusted: two approvals of two needed are counted.
    alice
        .create(&PostParams::default(), &as_alice(&who, "later", "30m"))
        .await
        .expect("request");
    let later = state(&alice, "later", "Pending").await;
    assert_eq!(
        later.status.and_then(|s| s.approvals).as_deref(),
        Some("0/2")
    );
    policy.remove();
    org.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_upgrade_that_leaves_the_policy_alone_keeps_pending_requests_trusted() {
    let release = format!("up{}", unique_suffix());
    let name = format!("{release}-aws-access-operator-access-requests");
    let cluster = TestCluster::start("trust-up").await;
    let (org, who) =
        requests_org_under(cluster, name.clone(), "trust-up", SMALL_ORG, 2, |_| {}).await;
    let ns = org.cluster.namespace.clone();
    let kubeconfig = crate::support::cluster::kubeconfig();
    let chart = chart();
    let install = |verb: &str, extra: &[&str]| {
        let mut args = vec![
            verb,
            release.as_str(),
            chart.to_str().expect("utf-8"),
            "--namespace",
            ns.as_str(),
            "--set",
            "crds.install=false",
            "--set",
            "replicaCount=1",
            "--set",
            "aws.region=us-east-1",
        ];
        args.extend(extra);
        helm_ok(&kubeconfig, &args);
    };
    install("install", &[]);
    let first = enforced(&org.cluster.client, &ns, &name, None).await;
    let alice = api(&who.alice, &ns).await;
    let bob = api(&who.bob, &ns).await;
    let carol = api(&who.carol, &ns).await;
    alice
        .create(&PostParams::default(), &as_alice(&who, "pending", "30m"))
        .await
        .expect("request");
    add_review(&bob, "pending", &who.bob.username, "Approve")
        .await
        .expect("bob");
    approvals(&alice, "pending", "1/2").await;

    // An upgrade that changes the Deployment, not the policy: same objects, same generations.
    let (policy, binding) = pins_of(&name);
    install("upgrade", &["--set", "logLevel=debug"]);
    let (policy_after, binding_after) = pins_of(&name);
    assert_eq!(policy.metadata.uid, policy_after.metadata.uid);
    assert_eq!(policy.metadata.generation, policy_after.metadata.generation);
    assert_eq!(binding.metadata.uid, binding_after.metadata.uid);
    assert_eq!(
        binding.metadata.generation,
        binding_after.metadata.generation
    );
    // The operator looks again within 15 s: the start stays where it was.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let kept = enforced(&org.cluster.client, &ns, &name, None).await;
    assert_eq!(kept, first, "the upgrade did not start trust anew");
    add_review(&carol, "pending", &who.carol.username, "Approve")
        .await
        .expect("carol");
    state(&alice, "pending", "Active").await;
    assert_eq!(
        org.writes().get("CreateAccountAssignment").copied(),
        Some(1)
    );
    helm_ok(&kubeconfig, &["uninstall", &release, "--namespace", &ns]);
    org.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_neither_lose_nor_invent_trust() {
    let Some(cluster) = own_cluster("trust-restart").await else {
        return;
    };
    let config = cluster.kubeconfig_file();
    let ns = cluster.namespace.clone();
    let policy = AdmissionPolicy::install_in(&config);
    let moto = crate::support::moto::Moto::start();
    moto.seed(SMALL_ORG);
    let mut operator = process_org(
        &moto,
        &cluster,
        &policy,
        json!({"enabled": true, "rules": [oncall_rule(2)]}),
    )
    .await;
    let first = enforced(&cluster.client, &ns, &policy.name, None).await;
    let who = people(&cluster, &ns).await;
    let alice = api(&who.alice, &ns).await;
    let bob = api(&who.bob, &ns).await;
    let carol = api(&who.carol, &ns).await;

    // A trusted request, one approval before a kill -9, the second while the operator is down:
    // the restarted operator keeps the start it had and grants it.
    asked(&alice, &who, "kept", "30m").await;
    add_review(&bob, "kept", &who.bob.username, "Approve")
        .await
        .expect("bob");
    approvals(&alice, "kept", "1/2").await;
    kill_9(&mut operator);
    add_review(&carol, "kept", &who.carol.username, "Approve")
        .await
        .expect("carol");
    let mut operator = operator_process(&moto, &config, &ns, &policy.name);
    state(&alice, "kept", "Active").await;
    assert_eq!(calls(&moto, "CreateAccountAssignment"), 1);
    assert_eq!(
        enforced(&cluster.client, &ns, &policy.name, None).await,
        first,
        "a restart keeps the start"
    );
    let mut waiting = as_alice(&who, "waiting", "30m");
    waiting.spec.principal.name = Some("user-04@example.com".into());
    alice
        .create(&PostParams::default(), &waiting)
        .await
        .expect("request");
    state(&alice, "waiting", "Pending").await;

    // Stopped; the policy deleted, a forged request filed meanwhile, the policy created again.
    kill_9(&mut operator);
    policy.delete();
    let forged = forge(&alice, &who, "forged", "user-05@example.com").await;
    policy.apply();
    let mut operator = operator_process(&moto, &config, &ns, &policy.name);
    let second = enforced(&cluster.client, &ns, &policy.name, Some(&first)).await;
    started_later(&first, &second);
    assert_ne!(second.pins.policy.uid, first.pins.policy.uid);
    unvouched(&alice, &forged).await;
    unvouched(&alice, "waiting").await;
    // An approval recorded while trusted stands.
    state(&alice, "kept", "Active").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        calls(&moto, "CreateAccountAssignment"),
        1,
        "nothing new granted"
    );

    // Trusted again from the new start.
    let mut fresh = as_alice(&who, "fresh", "30m");
    fresh.spec.principal.name = Some("user-02@example.com".into());
    alice
        .create(&PostParams::default(), &fresh)
        .await
        .expect("request");
    state(&alice, "fresh", "Pending").await;
    add_review(&bob, "fresh", &who.bob.username, "Approve")
        .await
        .expect("bob");
    add_review(&carol, "fresh", &who.carol.username, "Approve")
        .await
        .expect("carol");
    state(&alice, "fresh", "Active").await;
    assert_eq!(calls(&moto, "CreateAccountAssignment"), 2);

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &operator.id().to_string()])
        .status();
    let _ = operator.wait();
    policy.remove();
    cluster.cleanup().await;
}
