//! Approvers hear about requests where they work: real HTTP receivers on loopback get each
//! state change once, in their format (Slack, Teams, CloudEvents), while a failing receiver is
//! retried until it recovers and a hanging one holds up nothing; a notice due when the
//! operator is killed is delivered once after the restart; `requests` lists what the
//! kubeconfig's user may review now.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

use crate::requests::{
    AdmissionPolicy, add_review, api, as_alice, as_user, asked, calls, kill_9, oncall_rule,
    operator_process, people, process_org, receiver, requests_org_notifying, state, webhook_secret,
    withdrawn,
};
use crate::support::cluster::TestCluster;
use crate::support::moto::SMALL_ORG;
use crate::support::operator::{TIMEOUT, enforced};
use crate::support::receiver::{Answer, Receiver};
use crate::support::wait;

const ACCOUNT: &str = "123456789012";

/// The states a receiver accepted notices of, in order.
fn states(receiver: &Receiver, of: impl Fn(&Value) -> String) -> Vec<String> {
    receiver.accepted().iter().map(|r| of(&r.body)).collect()
}

fn slack_state(body: &Value) -> String {
    body["blocks"][1]["text"]["text"]
        .as_str()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("*State:* ")))
        .unwrap_or_default()
        .to_string()
}

fn event_state(body: &Value) -> String {
    body["data"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn received(what: &str, check: impl Fn() -> bool) {
    wait::until(what, TIMEOUT, || async { check().then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_hear_each_state_once_in_their_format() {
    let slack = Receiver::start(Answer::Accept).await;
    let teams = Receiver::start(Answer::Accept).await;
    let events = Receiver::start(Answer::Accept).await;
    let flaky = Receiver::start(Answer::Fail(500)).await;
    let hung = Receiver::start(Answer::Hang).await;
    let cluster = TestCluster::start("notify").await;
    let policy = AdmissionPolicy::install();
    let (org, who) = requests_org_notifying(
        cluster,
        policy.name.clone(),
        "notify",
        SMALL_ORG,
        2,
        |_| {},
        json!([
            receiver("slack", "Slack"),
            receiver("teams", "Teams"),
            receiver("events", "CloudEvents"),
            receiver("flaky", "Slack"),
            receiver("hung", "CloudEvents")
        ]),
        &[
            ("slack", &slack.url),
            ("teams", &teams.url),
            ("events", &events.url),
            ("flaky", &flaky.url),
            ("hung", &hung.url),
        ],
    )
    .await;
    let ns = org.cluster.namespace.clone();
    enforced(&org.cluster.client, &ns, &policy.name, None).await;
    let alice = api(&who.alice, &ns).await;
    let bob = api(&who.bob, &ns).await;
    let carol = api(&who.carol, &ns).await;

    asked(&alice, &who, "hotfix", "30m").await;
    received("the Pending notice on Slack and as a CloudEvent", || {
        !slack.accepted().is_empty()
            && !events.accepted().is_empty()
            && !teams.accepted().is_empty()
    })
    .await;
    // Slack: who asks, for what, why, for how long, how many approvals, and the command.
    let posted = &slack.accepted()[0];
    assert_eq!(
        posted.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let text = posted.body.to_string();
    for needle in [
        format!(
            "{} asks for user user-03@example.com: PermissionSet00 on account {ACCOUNT} for 30m: INC-42: hotfix",
            who.alice.username
        ),
        "*Approvals:* 0/2".to_string(),
        format!("aws-access-operator approve hotfix -n {ns}"),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in {text}");
    }
    // Teams: an Adaptive Card with the same facts.
    let card = &teams.accepted()[0].body;
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(card.to_string().contains("INC-42: hotfix"), "{card}");
    // CloudEvents 1.0, structured mode.
    let event = &events.accepted()[0];
    assert!(
        event
            .headers
            .get("content-type")
            .is_some_and(|t| t.starts_with("application/cloudevents+json")),
        "{:?}",
        event.headers
    );
    let uid = alice
        .get("hotfix")
        .await
        .expect("get")
        .metadata
        .uid
        .expect("uid");
    assert_eq!(event.body["specversion"], "1.0");
    assert_eq!(event.body["id"], format!("{uid}-pending"));
    assert_eq!(event.body["type"], "io.awsaccess.accessrequest.pending");
    assert_eq!(event.body["subject"], format!("{ns}/hotfix"));
    assert_eq!(event.body["data"]["requester"], who.alice.username.as_str());
    assert_eq!(event.body["data"]["duration"], "30m");
    assert_eq!(event.body["data"]["approvalsNeeded"], 2);
    assert_eq!(
        event.body["data"]["approveCommand"],
        format!("aws-access-operator approve hotfix -n {ns}")
    );
    // The hanging receiver holds up nothing, and the failing one is tried again.
    received("the hung receiver reached", || !hung.received().is_empty()).await;
    received("the flaky receiver tried twice", || {
        flaky.received().len() >= 2
    })
    .await;
    assert!(flaky.accepted().is_empty());

    // `requests`: what the kubeconfig's user may review now, as the API server decides.
    let listed = as_user(&who.bob, &["requests", "-n", &ns, "-o", "json"]);
    assert!(listed.status.success(), "{listed:?}");
    let waiting: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(waiting[0]["name"], "hotfix", "{waiting}");
    assert_eq!(waiting[0]["approvals"], "0/2");
    for nobody in [&who.mallory, &who.alice] {
        let out = as_user(nobody, &["requests", "-n", &ns, "-o", "json"]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            serde_json::from_slice::<Value>(&out.stdout).expect("json"),
            json!([])
        );
    }

    add_review(&bob, "hotfix", &who.bob.username, "Approve")
        .await
        .expect("bob");
    let after = as_user(&who.bob, &["requests", "-n", &ns]);
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("No AccessRequest waits"),
        "{after:?}"
    );
    add_review(&carol, "hotfix", &who.carol.username, "Approve")
        .await
        .expect("carol");
    // Held while the hung receiver still hangs: delivery never holds up reconciliation.
    state(&alice, "hotfix", "Active").await;
    flaky.answer(Answer::Accept);
    withdrawn(&alice, "hotfix").await;
    received("Active and Ended everywhere", || {
        states(&slack, slack_state).len() == 3
            && states(&events, event_state).len() == 3
            && states(&flaky, slack_state).len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Each state once per receiver, in order; the flaky one caught up once it recovered.
    let order = vec!["Pending", "Active", "Ended"];
    assert_eq!(states(&slack, slack_state), order);
    assert_eq!(states(&events, event_state), order);
    assert_eq!(states(&flaky, slack_state), order);
    assert_eq!(teams.accepted().len(), 3);
    let ids: std::collections::BTreeSet<String> = events
        .accepted()
        .iter()
        .map(|r| r.body["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    // Failures are counted by receiver; nothing secret is in events, status or the record.
    let metrics = org.operator.metrics.render();
    assert!(
        metrics.contains(r#"outcome="failed""#) && metrics.contains(r#"receiver="flaky""#),
        "{metrics}"
    );
    let status = serde_json::to_string(&alice.get("hotfix").await.expect("get")).expect("json");
    let kept: Vec<ConfigMap> = Api::<ConfigMap>::namespaced(org.cluster.client.clone(), &ns)
        .list(&ListParams::default().labels("awsaccess.io/request-notices"))
        .await
        .expect("notices")
        .items;
    assert_eq!(kept.len(), 1);
    let record = serde_json::to_string(&kept[0]).expect("json");
    let events_text = format!("{:?}", org.events("Reviewed").await);
    for url in [&slack.url, &events.url, &flaky.url, &hung.url] {
        let host = url.trim_start_matches("http://").trim_end_matches("/hook");
        for (what, text) in [
            ("status", &status),
            ("record", &record),
            ("events", &events_text),
        ] {
            assert!(!text.contains(host), "a webhook URL in the {what}: {text}");
        }
    }
    assert!(record.contains("deliveredAt"), "{record}");
    policy.remove();
    org.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_due_when_the_operator_is_killed_is_delivered_once_after_the_restart() {
    let events = Receiver::start(Answer::Accept).await;
    let moto = crate::support::moto::Moto::start();
    moto.seed(SMALL_ORG);
    let cluster = TestCluster::start("notify-kill").await;
    let config = cluster.kubeconfig_file();
    let ns = cluster.namespace.clone();
    let policy = AdmissionPolicy::install();
    webhook_secret(&cluster.client, &ns, &[("events", &events.url)]).await;
    let mut operator = process_org(
        &moto,
        &cluster,
        &policy,
        json!({"enabled": true, "notify": [receiver("events", "CloudEvents")],
               "rules": [oncall_rule(1)]}),
    )
    .await;
    let who = people(&cluster, &ns).await;
    let alice = api(&who.alice, &ns).await;
    let bob = api(&who.bob, &ns).await;
    alice
        .create(&PostParams::default(), &as_alice(&who, "hotfix", "30m"))
        .await
        .expect("request");
    received("the Pending notice", || events.accepted().len() == 1).await;

    // The receiver fails; bob approves: the Active notice is due, and failing, when the
    // operator is killed.
    events.answer(Answer::Fail(503));
    add_review(&bob, "hotfix", &who.bob.username, "Approve")
        .await
        .expect("bob");
    state(&alice, "hotfix", "Active").await;
    received("the Active notice tried", || {
        events
            .received()
            .iter()
            .any(|r| event_state(&r.body) == "Active")
    })
    .await;
    kill_9(&mut operator);
    let kept: Vec<ConfigMap> = Api::<ConfigMap>::namespaced(cluster.client.clone(), &ns)
        .list(&ListParams::default().labels("awsaccess.io/request-notices"))
        .await
        .expect("notices")
        .items;
    assert_eq!(kept.len(), 1);
    let record: Value = serde_json::from_str(
        kept[0]
            .data
            .as_ref()
            .and_then(|d| d.get("notices"))
            .expect("notices"),
    )
    .expect("json");
    let delivered: Vec<(String, bool)> = record["dues"]
        .as_array()
        .expect("dues")
        .iter()
        .map(|d| {
            (
                d["notice"]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                d.get("deliveredAt").is_some(),
            )
        })
        .collect();
    assert_eq!(
        delivered,
        vec![("Pending".to_string(), true), ("Active".to_string(), false)],
        "the Pending notice is recorded as delivered, the Active one as due: {record}"
    );
    events.answer(Answer::Accept);
    let mut operator = operator_process(&moto, &config, &ns, &policy.name);
    received("the Active notice after the restart", || {
        states(&events, event_state) == vec!["Pending", "Active"]
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        states(&events, event_state),
        vec!["Pending", "Active"],
        "each state once: the delivered Pending notice is not sent again"
    );
    assert_eq!(calls(&moto, "CreateAccountAssignment"), 1);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &operator.id().to_string()])
        .status();
    let _ = operator.wait();
    policy.remove();
    cluster.cleanup().await;
}
