//! AccessRequests on the real API server: the chart's admission policy vouches for requesters
//! and reviewers (refusals name their rule), the CRD keeps what was asked and every review
//! unchanged, and the controller grants an approved request once, ends it on time, and writes
//! nothing for a request that is pending, denied, refused by policy or withdrawn.

use std::time::Duration;

use aws_access_operator::api::AccessRequest;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::grants::{Org, org_on};
use crate::support::cluster::{TestCluster, kubeconfig, unique_suffix};
use crate::support::moto::SMALL_ORG;
use crate::support::operator::TIMEOUT;
use crate::support::service_account::{Identity, with_rules};
use crate::support::tools::{chart, helm_ok, kubectl_at, kubectl_ok};
use crate::support::wait;

const ACCOUNT: &str = "123456789012";

/// The chart's admission policy for AccessRequests, installed under a name of its own.
pub(crate) struct AdmissionPolicy {
    pub(crate) name: String,
    manifest: String,
    /// The cluster it is applied to.
    kubeconfig: std::path::PathBuf,
}

impl AdmissionPolicy {
    pub(crate) fn install() -> Self {
        Self::install_in(&kubeconfig())
    }

    /// Installs it in the cluster `kubeconfig` names.
    pub(crate) fn install_in(kubeconfig: &std::path::Path) -> Self {
        let policy = Self::render_for(kubeconfig);
        policy.apply();
        policy
    }

    /// The policy and its binding as the chart renders them, for the cluster `kubeconfig`
    /// names, not applied.
    pub(crate) fn render_for(kubeconfig: &std::path::Path) -> Self {
        let release = format!("r{}", unique_suffix());
        let manifest = helm_ok(
            kubeconfig,
            &[
                "template",
                &release,
                &chart().display().to_string(),
                "--show-only",
                "templates/accessrequest-policy.yaml",
            ],
        );
        Self {
            name: format!("{release}-aws-access-operator-access-requests"),
            manifest,
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    fn kubectl(&self, args: &[&str], stdin: &str) {
        let out = kubectl_at(&self.kubeconfig, args, stdin);
        assert!(out.status.success(), "kubectl {args:?}: {out:?}");
    }

    /// Creates the policy and its binding (anew, if they were deleted).
    pub(crate) fn apply(&self) {
        self.kubectl(&["apply", "-f", "-"], &self.manifest);
    }

    /// Deletes the binding alone: the policy stays, but nothing enforces it.
    pub(crate) fn remove_binding(&self) {
        self.kubectl(
            &[
                "delete",
                "validatingadmissionpolicybinding",
                &self.name,
                "--wait=true",
            ],
            "",
        );
    }

    /// Deletes the policy and its binding, keeping what it takes to create them again.
    pub(crate) fn delete(&self) {
        self.kubectl(&["delete", "--ignore-not-found", "-f", "-"], &self.manifest);
    }

    pub(crate) fn remove(self) {
        self.delete();
    }
}

pub(crate) fn request(name: &str, requester: &str, extra: Value) -> AccessRequest {
    let mut spec = json!({"connectorRef": {"name": "org"},
        "requester": {"user": requester},
        "principal": {"kind": "SsoUser", "name": "user-03@example.com"},
        "target": {"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": ACCOUNT},
        "duration": "1h", "reason": "INC-42: hotfix"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": name}, "spec": spec}),
    )
    .expect("request")
}

/// People: a requester who may also approve (so that only the self-review rule refuses her),
/// two approvers, and a user who may edit requests but not approve them.
pub(crate) struct People {
    pub(crate) alice: Identity,
    pub(crate) bob: Identity,
    pub(crate) carol: Identity,
    pub(crate) mallory: Identity,
}

pub(crate) async fn people(cluster: &TestCluster, namespace: &str) -> People {
    let edit = json!(["get", "list", "watch", "create", "update", "patch"]);
    let approve = json!(["get", "list", "watch", "update", "patch", "approve"]);
    let rules = |verbs: &Value| json!([{"apiGroups": ["awsaccess.io"], "resources": ["accessrequests"], "verbs": verbs}]);
    let mut alice_verbs = edit.clone();
    alice_verbs
        .as_array_mut()
        .expect("verbs")
        .push(json!("approve"));
    let person = |name: &'static str, verbs: Value| async move {
        with_rules(
            cluster,
            namespace,
            name,
            json!([]),
            &[(namespace, rules(&verbs))],
        )
        .await
    };
    People {
        alice: person("alice", alice_verbs).await,
        bob: person("bob", approve.clone()).await,
        carol: person("carol", approve).await,
        mallory: person("mallory", edit).await,
    }
}

pub(crate) async fn api(identity: &Identity, namespace: &str) -> Api<AccessRequest> {
    Api::namespaced(identity.client().await, namespace)
}

/// The API server's refusal of `result`, with the message it gave.
pub(crate) fn refused<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.code == 403 || status.code == 422,
                "refused with {}: {}",
                status.code,
                status.message
            );
            status.message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Adds a review as a client would: read, append, write back; again on a conflict (the
/// operator writes the request's finalizer and status meanwhile).
pub(crate) async fn add_review(
    api: &Api<AccessRequest>,
    name: &str,
    user: &str,
    decision: &str,
) -> Result<AccessRequest, kube::Error> {
    loop {
        let mut current = api.get(name).await?;
        current.spec.reviews.push(
            serde_json::from_value(json!({"user": user, "decision": decision})).expect("review"),
        );
        match api.replace(name, &PostParams::default(), &current).await {
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_vouches_for_requesters_and_reviewers() {
    let cluster = TestCluster::start("req-admission").await;
    let ns = cluster.namespace.clone();
    let policy = AdmissionPolicy::install();
    let who = people(&cluster, &ns).await;
    let alice = api(&who.alice, &ns).await;
    // The policy is enforced once the API server has loaded it: a request in someone else's
    // name is refused, naming the rule.
    // (Until the API server has loaded it, such a request is created: each try has a name of its
    // own, and the administrator deletes what got through.)
    let admin: Api<AccessRequest> = Api::namespaced(cluster.client.clone(), &ns);
    let tries = std::sync::atomic::AtomicUsize::new(0);
    let message = wait::until("the admission policy to be enforced", TIMEOUT, || async {
        let name = format!(
            "forged-{}",
            tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        match alice
            .create(
                &PostParams::default(),
                &request(&name, &who.bob.username, json!({})),
            )
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 403 => Some(status.message),
            Ok(_) => {
                admin
                    .delete(&name, &Default::default())
                    .await
                    .expect("delete what got through");
                None
            }
            Err(error) => panic!("creating {name}: {error}"),
        }
    })
    .await;
    assert!(message.contains("[requester-is-caller]"), "{message}");
    assert!(message.contains(&who.alice.username), "{message}");

    // Groups the requester does not belong to are refused.
    let groups = refused(
        alice
            .create(
                &PostParams::default(),
                &request("groups", &who.alice.username, json!({"requester": {"user": who.alice.username, "groups": ["system:masters"]}})),
            )
            .await,
    );
    assert!(groups.contains("[requester-groups]"), "{groups}");

    alice
        .create(
            &PostParams::default(),
            &request("hotfix", &who.alice.username, json!({})),
        )
        .await
        .expect("a request in her own name");

    let self_review = refused(add_review(&alice, "hotfix", &who.alice.username, "Approve").await);
    assert!(self_review.contains("[no-self-review]"), "{self_review}");
    let mallory = api(&who.mallory, &ns).await;
    let no_verb = refused(add_review(&mallory, "hotfix", &who.mallory.username, "Approve").await);
    assert!(no_verb.contains("[approve-verb]"), "{no_verb}");
    let bob = api(&who.bob, &ns).await;
    let forged = refused(add_review(&bob, "hotfix", &who.carol.username, "Approve").await);
    assert!(forged.contains("[reviewer-is-caller]"), "{forged}");
    // bob approves with the command line, which names him as the API server knows him.
    let approved = as_user(
        &who.bob,
        &["approve", "hotfix", "-n", &ns, "--comment", "go"],
    );
    assert!(approved.status.success(), "{approved:?}");
    assert_eq!(
        String::from_utf8_lossy(&approved.stdout).trim(),
        format!("{ns}/hotfix approved by {}", who.bob.username)
    );
    let again = as_user(&who.bob, &["approve", "hotfix", "-n", &ns]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("reviewed it already"),
        "{again:?}"
    );
    let no_right = as_user(&who.mallory, &["deny", "hotfix", "-n", &ns]);
    assert_eq!(no_right.status.code(), Some(1), "{no_right:?}");
    assert!(
        String::from_utf8_lossy(&no_right.stderr).contains("[approve-verb]"),
        "{no_right:?}"
    );
    let review = &bob.get("hotfix").await.expect("get").spec.reviews[0];
    assert_eq!(
        (review.user.as_str(), review.comment.as_deref()),
        (who.bob.username.as_str(), Some("go"))
    );

    // A review, once made, is never changed or removed, by its author or anyone.
    let mut changed = bob.get("hotfix").await.expect("get");
    changed.spec.reviews[0].decision = aws_access_operator::api::request::Decision::Deny;
    let change = refused(
        bob.replace("hotfix", &PostParams::default(), &changed)
            .await,
    );
    assert!(change.contains("cannot be changed"), "{change}");
    let mut removed = bob.get("hotfix").await.expect("get");
    removed.spec.reviews.clear();
    let removal = refused(
        bob.replace("hotfix", &PostParams::default(), &removed)
            .await,
    );
    assert!(
        removal.contains("cannot be removed") || removal.contains("cannot be changed or removed"),
        "{removal}"
    );

    // What was asked is fixed once the request is made.
    let edit = refused(
        alice
            .patch(
                "hotfix",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"target": {"permissionSet": "PermissionSet01"}}})),
            )
            .await,
    );
    assert!(edit.contains("cannot change once it is made"), "{edit}");

    // Only the requester withdraws.
    let withdraw = refused(
        bob.patch(
            "hotfix",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"withdrawn": true}})),
        )
        .await,
    );
    assert!(withdraw.contains("[requester-withdraws]"), "{withdraw}");
    let withdrawn = as_user(&who.alice, &["withdraw", "hotfix", "-n", &ns]);
    assert!(withdrawn.status.success(), "{withdrawn:?}");
    assert_eq!(
        alice.get("hotfix").await.expect("get").spec.withdrawn,
        Some(true)
    );
    let back = refused(
        alice
            .patch(
                "hotfix",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"withdrawn": false}})),
            )
            .await,
    );
    assert!(back.contains("cannot be taken back"), "{back}");

    // A reviewer who approved may take it back, once, with a Revoke (the command line allows
    // it); nothing else is added twice by one reviewer.
    alice
        .create(
            &PostParams::default(),
            &request("second", &who.alice.username, json!({})),
        )
        .await
        .expect("request");
    let carol = api(&who.carol, &ns).await;
    let approve = as_user(&who.bob, &["approve", "second", "-n", &ns]);
    assert!(approve.status.success(), "{approve:?}");
    let take_back = as_user(&who.bob, &["revoke", "second", "-n", &ns]);
    assert!(take_back.status.success(), "{take_back:?}");
    let decisions: Vec<(String, String)> = bob
        .get("second")
        .await
        .expect("get")
        .spec
        .reviews
        .iter()
        .map(|r| (r.user.clone(), format!("{:?}", r.decision)))
        .collect();
    assert_eq!(
        decisions,
        vec![
            (who.bob.username.clone(), "Approve".into()),
            (who.bob.username.clone(), "Revoke".into())
        ]
    );
    let twice = as_user(&who.bob, &["approve", "second", "-n", &ns]);
    assert_eq!(twice.status.code(), Some(1), "{twice:?}");
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("reviewed it already (Approve, Revoke)"),
        "{twice:?}"
    );
    let deny_too = refused(add_review(&bob, "second", &who.bob.username, "Deny").await);
    assert!(deny_too.contains("one review per reviewer"), "{deny_too}");
    // An approval after one's own Revoke is out of order: the admission policy refuses it.
    add_review(&carol, "second", &who.carol.username, "Revoke")
        .await
        .expect("carol's revoke");
    let after = refused(add_review(&carol, "second", &who.carol.username, "Approve").await);
    assert!(after.contains("[revoke-own-approval]"), "{after}");

    policy.remove();
    cluster.cleanup().await;
}

/// An org whose connector serves requests from alice (approvals needed: `approvals`), with the
/// chart's admission policy in place and the operator told its name.
pub(crate) async fn requests_org(prefix: &str, approvals: u32) -> (Org, AdmissionPolicy, People) {
    requests_org_with(prefix, SMALL_ORG, approvals, |_| {}).await
}

/// `requests_org` on an organization seeded with `seed`, the operator's AWS settings tuned.
pub(crate) async fn requests_org_with(
    prefix: &str,
    seed: &[&str],
    approvals: u32,
    tune: impl FnOnce(&mut aws_access_operator::controller::AwsSettings),
) -> (Org, AdmissionPolicy, People) {
    let cluster = TestCluster::start(prefix).await;
    let policy = AdmissionPolicy::install();
    let (org, who) =
        requests_org_under(cluster, policy.name.clone(), prefix, seed, approvals, tune).await;
    // Only requests created after the operator confirms the policy enforced are trusted.
    crate::support::operator::enforced(
        &org.cluster.client,
        &org.cluster.namespace,
        &policy.name,
        None,
    )
    .await;
    (org, policy, who)
}

/// The org of `requests_org_with`, the operator told that the admission policy `name`
/// vouches for requests, whether or not it exists yet.
pub(crate) async fn requests_org_under(
    cluster: TestCluster,
    name: String,
    prefix: &str,
    seed: &[&str],
    approvals: u32,
    tune: impl FnOnce(&mut aws_access_operator::controller::AwsSettings),
) -> (Org, People) {
    requests_org_notifying(cluster, name, prefix, seed, approvals, tune, json!([]), &[]).await
}

/// A Secret `hooks` holding each receiver's URL under its name.
pub(crate) async fn webhook_secret(client: &kube::Client, namespace: &str, urls: &[(&str, &str)]) {
    use k8s_openapi::api::core::v1::Secret;
    let data: serde_json::Map<String, Value> = urls
        .iter()
        .map(|(k, v)| (k.to_string(), json!(crate::support::operator::base64(v))))
        .collect();
    let secret: Secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "hooks"}, "data": data}))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
}

/// A receiver of notices whose URL is the key `name` of the Secret `hooks`.
pub(crate) fn receiver(name: &str, format: &str) -> Value {
    json!({"name": name, "format": format, "urlSecretRef": {"name": "hooks", "key": name}})
}

/// `requests_org_under` with the requestPolicy's `notify` receivers, whose URLs (by receiver
/// name) are in the Secret `hooks`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn requests_org_notifying(
    cluster: TestCluster,
    name: String,
    prefix: &str,
    seed: &[&str],
    approvals: u32,
    tune: impl FnOnce(&mut aws_access_operator::controller::AwsSettings),
    notify: Value,
    urls: &[(&str, &str)],
) -> (Org, People) {
    if !urls.is_empty() {
        webhook_secret(&cluster.client, &cluster.namespace, urls).await;
    }
    // The requester's name is known only once her ServiceAccount exists, in the org's
    // namespace: the rule allows ServiceAccounts by their group instead.
    let org = org_on(
        cluster,
        prefix,
        seed,
        json!({"requestPolicy": {"enabled": true, "pendingExpiry": "1h", "notify": notify, "rules": [
            {"name": "oncall", "groups": ["system:serviceaccounts"], "principals": "Any",
             "permissionSets": ["PermissionSet00"], "accounts": ["*"],
             "approvals": approvals, "maxDuration": "1h"}]}}),
        tune,
        move |settings| settings.request_admission_policy = Some(name),
    )
    .await;
    let ns = org.cluster.namespace.clone();
    let who = people(&org.cluster, &ns).await;
    (org, who)
}

/// Waits for the request's status to count `want` approvals, e.g. `1/2`.
pub(crate) async fn approvals(api: &Api<AccessRequest>, name: &str, want: &str) {
    wait::until(&format!("{want} approvals of {name}"), TIMEOUT, || async {
        let r = api.get(name).await.ok()?;
        (r.status?.approvals.as_deref() == Some(want)).then_some(())
    })
    .await;
}

pub(crate) async fn state(api: &Api<AccessRequest>, name: &str, want: &str) -> AccessRequest {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let request = api.get_opt(name).await.ok().flatten();
        let state = request
            .as_ref()
            .and_then(|r| r.status.as_ref()?.state)
            .map(|s| s.as_str());
        if let (Some(request), Some(state)) = (&request, state)
            && state == want
        {
            return request.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for request {name} {want}; it is {:#?}",
            request.and_then(|r| r.status)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The requester withdraws `name`, and the request has Ended.
pub(crate) async fn withdrawn(api: &Api<AccessRequest>, name: &str) -> AccessRequest {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"withdrawn": true}})),
    )
    .await
    .expect("withdraw");
    state(api, name, "Ended").await
}

/// Alice asks for `name` (as `as_alice`) and the request is Pending.
pub(crate) async fn asked(api: &Api<AccessRequest>, who: &People, name: &str, duration: &str) {
    api.create(&PostParams::default(), &as_alice(who, name, duration))
        .await
        .expect("request");
    state(api, name, "Pending").await;
}

pub(crate) fn as_alice(who: &People, name: &str, duration: &str) -> AccessRequest {
    request(
        name,
        &who.alice.username,
        json!({"duration": duration, "requester": {"user": who.alice.username, "groups": ["system:serviceaccounts"]}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvals_grant_once_and_the_duration_revokes_on_time() {
    let (org, policy, who) = requests_org("req-life", 2).await;
    let ns = org.cluster.namespace.clone();
    let alice = api(&who.alice, &ns).await;
    let bob = api(&who.bob, &ns).await;
    let carol = api(&who.carol, &ns).await;
    let user = org.user_id(3);
    let ps = org.permission_set("PermissionSet00");

    alice
        .create(&PostParams::default(), &as_alice(&who, "short", "8s"))
        .await
        .expect("request");
    let pending = state(&alice, "short", "Pending").await;
    assert_eq!(
        pending
            .status
            .as_ref()
            .and_then(|s| s.approvals.clone())
            .as_deref(),
        Some("0/2")
    );
    add_review(&bob, "short", &who.bob.username, "Approve")
        .await
        .expect("bob");
    approvals(&alice, "short", "1/2").await;
    let reviewed = format!("{} approved it", who.bob.username);
    org.event_noted("Reviewed", &reviewed).await;
    assert!(
        org.writes().is_empty(),
        "one approval of two wrote {:?}",
        org.writes()
    );

    add_review(&carol, "short", &who.carol.username, "Approve")
        .await
        .expect("carol");
    let active = state(&alice, "short", "Active").await;
    // The second review is an event of its own too, not a repeat of the first.
    let second = format!("{} approved it", who.carol.username);
    org.event_noted("Reviewed", &second).await;
    let status = active.status.expect("status");
    assert!(
        status.active_since.is_some() && status.ends_at.is_some(),
        "{status:?}"
    );
    assert!(org.assigned(ACCOUNT, &ps).await.contains(&user));
    assert_eq!(org.writes().get("CreateAccountAssignment"), Some(&1));

    // The duration runs from when the access was first held: revoked within seconds of it.
    let ended = state(&alice, "short", "Ended").await;
    let status = ended.status.expect("status");
    assert_eq!(status.end_reason.as_deref(), Some("DurationOver"));
    let ends: jiff::Timestamp = status
        .ends_at
        .as_deref()
        .expect("endsAt")
        .parse()
        .expect("time");
    let ended_at: jiff::Timestamp = status
        .ended_at
        .as_deref()
        .expect("endedAt")
        .parse()
        .expect("time");
    assert!(
        ended_at.duration_since(ends).abs() < jiff::SignedDuration::from_secs(5),
        "ends {ends}, ended {ended_at}"
    );
    assert!(!org.assigned(ACCOUNT, &ps).await.contains(&user));
    let writes = org.writes();
    assert_eq!(
        writes.get("CreateAccountAssignment"),
        Some(&1),
        "{writes:?}"
    );
    assert_eq!(
        writes.get("DeleteAccountAssignment"),
        Some(&1),
        "{writes:?}"
    );

    // Nothing grants it again: not a later reconciliation, not a late approval.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(org.writes().get("CreateAccountAssignment"), Some(&1));

    // A denial after one approval ends the request with nothing written.
    org.moto.reset_calls();
    alice
        .create(&PostParams::default(), &as_alice(&who, "denied", "30m"))
        .await
        .expect("request");
    add_review(&bob, "denied", &who.bob.username, "Approve")
        .await
        .expect("bob");
    add_review(&carol, "denied", &who.carol.username, "Deny")
        .await
        .expect("carol");
    let denied = state(&alice, "denied", "Denied").await;
    assert_eq!(
        denied.status.and_then(|s| s.end_reason).as_deref(),
        Some("Denied")
    );

    // Policy refusals name the rule and write nothing.
    alice
        .create(&PostParams::default(), &as_alice(&who, "too-long", "2h"))
        .await
        .expect("request");
    let long = state(&alice, "too-long", "NotAllowed").await;
    let message = long
        .status
        .expect("status")
        .conditions
        .iter()
        .find(|c| c.type_ == "Active")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("rule oncall: duration 2h is over its maxDuration 1h"),
        "{message}"
    );
    // The rule narrowed to the requester's own user (her ServiceAccount's name at
    // example.com): a request for someone else, or for a permission set the rule does not name,
    // is refused by name.
    let connectors: Api<aws_access_operator::api::AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &ns);
    let narrowed = json!({"spec": {"requestPolicy": {
        "userMapping": {"stripPrefix": format!("system:serviceaccount:{ns}:"), "suffix": "@example.com"},
        "rules": [{"name": "oncall", "groups": ["system:serviceaccounts"], "principals": "Self",
            "permissionSets": ["PermissionSet00"], "accounts": ["*"], "approvals": 2, "maxDuration": "1h"}]}}});
    connectors
        .patch("org", &PatchParams::default(), &Patch::Merge(narrowed))
        .await
        .expect("narrow the policy");
    alice
        .create(
            &PostParams::default(),
            &as_alice(&who, "for-someone-else", "30m"),
        )
        .await
        .expect("request");
    let mut other_set = as_alice(&who, "other-set", "30m");
    other_set.spec.principal =
        serde_json::from_value(json!({"kind": "SsoUser", "name": "alice@example.com"}))
            .expect("principal");
    other_set.spec.target.permission_set = Some("PermissionSet01".into());
    alice
        .create(&PostParams::default(), &other_set)
        .await
        .expect("request");
    for (name, rule) in [
        (
            "for-someone-else",
            "rule oncall: principals is Self: the principal must be the requester's own user, alice@example.com",
        ),
        (
            "other-set",
            "rule oncall: permission set PermissionSet01 is not in its permissionSets",
        ),
    ] {
        let refused = state(&alice, name, "NotAllowed").await;
        let message = refused
            .status
            .expect("status")
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Approved")
            .map(|c| c.message)
            .unwrap_or_default();
        assert!(message.contains(rule), "{name}: {message}");
    }
    let wide = json!({"spec": {"requestPolicy": {"userMapping": null,
        "rules": [{"name": "oncall", "groups": ["system:serviceaccounts"], "principals": "Any",
            "permissionSets": ["PermissionSet00"], "accounts": ["*"], "approvals": 2, "maxDuration": "1h"}]}}});
    connectors
        .patch("org", &PatchParams::default(), &Patch::Merge(wide))
        .await
        .expect("widen the policy again");
    assert!(
        org.writes().is_empty(),
        "refused or denied requests wrote {:?}",
        org.writes()
    );

    // A withdrawn request gives the access back at once.
    alice
        .create(&PostParams::default(), &as_alice(&who, "withdrawn", "30m"))
        .await
        .expect("request");
    add_review(&bob, "withdrawn", &who.bob.username, "Approve")
        .await
        .expect("bob");
    add_review(&carol, "withdrawn", &who.carol.username, "Approve")
        .await
        .expect("carol");
    // kubectl as the interface: wait for the condition, see the columns.
    kubectl_ok(
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=Active",
            "accessrequest/withdrawn",
            "--timeout=60s",
        ],
        "",
    );
    let table = kubectl_ok(&["get", "accessrequests", "-n", &ns, "withdrawn"], "");
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REQUESTER",
            "ACCESS",
            "STATE",
            "APPROVALS",
            "ENDS",
            "AGE"
        ],
        "{table}"
    );
    let row = lines.next().unwrap_or_default();
    for shown in [
        who.alice.username.as_str(),
        "PermissionSet00",
        "Active",
        "2/2",
    ] {
        assert!(row.contains(shown), "{shown} not in {row}");
    }
    assert!(org.assigned(ACCOUNT, &ps).await.contains(&user));

    // `access --principal` shows the access held through the request, from the request as
    // `kubectl get` prints it.
    let shown = access_of_user_03(&org, "withdrawn");
    let expected = format!(
        "request {ns}/withdrawn, approved by {}, {}, ends ",
        who.bob.username, who.carol.username
    );
    assert!(shown.contains(&expected), "{expected:?} not in:\n{shown}");

    let withdrawn = withdrawn(&alice, "withdrawn").await;
    assert_eq!(
        withdrawn.status.and_then(|s| s.end_reason).as_deref(),
        Some("Withdrawn")
    );
    assert!(!org.assigned(ACCOUNT, &ps).await.contains(&user));
    assert_eq!(org.writes().get("CreateAccountAssignment"), Some(&1));
    assert_eq!(org.writes().get("DeleteAccountAssignment"), Some(&1));

    // A request past its deadline for approvals expires, and a later approval does nothing.
    org.moto.reset_calls();
    let connectors: Api<aws_access_operator::api::AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &ns);
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"requestPolicy": {"pendingExpiry": "3s"}}})),
        )
        .await
        .expect("patch");
    alice
        .create(&PostParams::default(), &as_alice(&who, "late", "30m"))
        .await
        .expect("request");
    let expired = state(&alice, "late", "Expired").await;
    assert_eq!(
        expired.status.and_then(|s| s.end_reason).as_deref(),
        Some("Expired")
    );
    add_review(&bob, "late", &who.bob.username, "Approve")
        .await
        .expect("bob");
    add_review(&carol, "late", &who.carol.username, "Approve")
        .await
        .expect("carol");
    wait::until("the late reviews to be seen", TIMEOUT, || async {
        let status = alice.get("late").await.ok()?.status?;
        (status.reviews.len() == 2).then_some(status)
    })
    .await;
    let late = alice
        .get("late")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(late.state.map(|s| s.as_str()), Some("Expired"));
    assert!(
        late.reviews.iter().all(|r| !r.counted),
        "{:?}",
        late.reviews
    );
    assert!(
        org.writes().is_empty(),
        "an expired request wrote {:?}",
        org.writes()
    );

    // Without the admission policy nobody vouches for reviewers: approvals are not counted.
    // (The operator looks at the policy every 15 s at most: past that, it knows.)
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"requestPolicy": {"pendingExpiry": "1h"}}})),
        )
        .await
        .expect("patch");
    policy.remove();
    tokio::time::sleep(Duration::from_secs(16)).await;
    alice
        .create(&PostParams::default(), &as_alice(&who, "unvouched", "30m"))
        .await
        .expect("request");
    add_review(&bob, "unvouched", &who.bob.username, "Approve")
        .await
        .expect("bob");
    add_review(&carol, "unvouched", &who.carol.username, "Approve")
        .await
        .expect("carol");
    wait::until("both reviews seen, none counted", TIMEOUT, || async {
        let status = alice.get("unvouched").await.ok()?.status?;
        let waiting = status.conditions.iter().any(|c| {
            c.type_ == "Approved" && c.status == "False" && c.reason == "AdmissionPolicyMissing"
        });
        (status.reviews.len() == 2 && waiting).then_some(())
    })
    .await;
    let unvouched = alice
        .get("unvouched")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(unvouched.state.map(|s| s.as_str()), Some("Pending"));
    assert!(org.writes().is_empty(), "{:?}", org.writes());
    org.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_takes_back_an_approval_or_ends_the_access_it_gave() {
    let (org, policy, who) = requests_org("req-take-back", 2).await;
    let ns = org.cluster.namespace.clone();
    let alice = api(&who.alice, &ns).await;
    let dave = with_rules(
        &org.cluster,
        &ns,
        "dave",
        json!([]),
        &[(
            ns.as_str(),
            json!([{"apiGroups": ["awsaccess.io"], "resources": ["accessrequests"],
                    "verbs": ["get", "list", "watch", "update", "patch", "approve"]}]),
        )],
    )
    .await;
    asked(&alice, &who, "hotfix", "30m").await;
    let run = |identity: &Identity, verb: &str| {
        let out = as_user(identity, &[verb, "hotfix", "-n", &ns]);
        assert!(out.status.success(), "{verb}: {out:?}");
    };
    // bob approves, then takes it back while the request is pending: the count drops.
    run(&who.bob, "approve");
    approvals(&alice, "hotfix", "1/2").await;
    run(&who.bob, "revoke");
    let taken_back = wait::until("bob's approval taken back", TIMEOUT, || async {
        let status = alice.get("hotfix").await.ok()?.status?;
        (status.reviews.len() == 2 && status.approvals.as_deref() == Some("0/2")).then_some(status)
    })
    .await;
    assert_eq!(taken_back.state.map(|s| s.as_str()), Some("Pending"));
    assert!(
        !taken_back.reviews[0].counted
            && taken_back.reviews[0]
                .note
                .as_deref()
                .is_some_and(|n| n.contains("took it back")),
        "{:?}",
        taken_back.reviews
    );
    let note = format!("{} took back their approval", who.bob.username);
    org.event_noted("Reviewed", &note).await;
    assert!(org.writes().is_empty(), "{:?}", org.writes());

    // carol and dave approve: held, and `access` shows every review in order.
    run(&who.carol, "approve");
    run(&dave, "approve");
    let active = state(&alice, "hotfix", "Active").await;
    assert_eq!(
        active.status.as_ref().and_then(|s| s.approvals.as_deref()),
        Some("2/2")
    );
    assert_eq!(
        org.writes().get("CreateAccountAssignment").copied(),
        Some(1)
    );
    let shown = access_of_user_03(&org, "hotfix");
    let trail = format!(
        "reviews: {bob} Approve, {bob} Revoke, {carol} Approve, {dave} Approve",
        bob = who.bob.username,
        carol = who.carol.username,
        dave = dave.username
    );
    assert!(shown.contains(&trail), "{shown}");

    // carol takes hers back once the access is held: it ends, and is given back.
    run(&who.carol, "revoke");
    let ended = state(&alice, "hotfix", "Ended").await;
    let status = ended.status.expect("status");
    assert_eq!(status.end_reason.as_deref(), Some("Revoked"));
    let order: Vec<(String, String)> = status
        .reviews
        .iter()
        .map(|r| (r.user.clone(), format!("{:?}", r.decision)))
        .collect();
    assert_eq!(
        order,
        vec![
            (who.bob.username.clone(), "Approve".into()),
            (who.bob.username.clone(), "Revoke".into()),
            (who.carol.username.clone(), "Approve".into()),
            (dave.username.clone(), "Approve".into()),
            (who.carol.username.clone(), "Revoke".into()),
        ]
    );
    wait::until("the access given back", TIMEOUT, || async {
        (org.writes().get("DeleteAccountAssignment").copied() == Some(1)).then_some(())
    })
    .await;
    policy.remove();
    org.finish().await;
}

/// What `access --principal user-03@example.com` shows from the org's connector and the request
/// `name` as `kubectl get -o yaml` prints it.
fn access_of_user_03(org: &Org, name: &str) -> String {
    let ns = &org.cluster.namespace;
    let dir = tempfile::tempdir().expect("tempdir");
    let held = kubectl_ok(&["get", "accessrequests", "-n", ns, name, "-o", "yaml"], "");
    std::fs::write(dir.path().join("requests.yaml"), held).expect("write");
    std::fs::write(
        dir.path().join("connector.yaml"),
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
            "metadata": {"name": "org", "namespace": ns}, "spec": {"region": "us-east-1"}})
        .to_string(),
    )
    .expect("write");
    access(
        &org.moto,
        &[
            "access",
            "-f",
            dir.path().to_str().expect("utf-8"),
            "--principal",
            "user-03@example.com",
        ],
    )
}

/// `aws-access-operator` with `args`, reaching AWS at `moto`; its standard output.
pub(crate) fn access(moto: &crate::support::moto::Moto, args: &[&str]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aws-access-operator"));
    command.args(args);
    for variable in crate::support::moto::AMBIENT_AWS_VARIABLES {
        command.env_remove(variable);
    }
    for (key, value) in moto.env() {
        command.env(key, value);
    }
    command.env(
        "RATE_LIMITS",
        "sts=1000,iam=1000,organizations=1000,identitycenter=1000",
    );
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The binary with `args`, authenticated as `identity`.
pub(crate) fn as_user(identity: &Identity, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aws-access-operator"))
        .args(args)
        .env("KUBECONFIG", &identity.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run")
}

pub(crate) fn calls(moto: &crate::support::moto::Moto, operation: &str) -> u64 {
    moto.calls().get(operation).copied().unwrap_or(0)
}

/// The real binary, serving requests through the admission policy `policy`.
pub(crate) fn operator_process(
    moto: &crate::support::moto::Moto,
    kubeconfig: &std::path::Path,
    namespace: &str,
    policy: &str,
) -> std::process::Child {
    crate::support::operator::spawn_operator(
        std::path::Path::new(env!("CARGO_BIN_EXE_aws-access-operator")),
        moto,
        kubeconfig,
        namespace,
        &[
            "--rate-limits",
            "sts=1000,iam=1000,organizations=1000,identitycenter=1000",
            "--request-admission-policy",
            policy,
        ],
    )
}

/// The rule of the process tests: ServiceAccounts may ask for PermissionSet00 on the management
/// account, for anyone, with `approvals`.
pub(crate) fn oncall_rule(approvals: u32) -> Value {
    json!({"name": "oncall", "groups": ["system:serviceaccounts"], "principals": "Any",
        "permissionSets": ["PermissionSet00"], "accounts": [ACCOUNT], "approvals": approvals})
}

/// The real binary serving `cluster`'s namespace through the admission policy `policy`, with the
/// connector `org` serving requests under `request_policy`: returned once the connector is Ready
/// (the seed's AWS calls forgotten) and the operator has confirmed the policy enforced.
pub(crate) async fn process_org(
    moto: &crate::support::moto::Moto,
    cluster: &TestCluster,
    policy: &AdmissionPolicy,
    request_policy: Value,
) -> std::process::Child {
    let ns = &cluster.namespace;
    let operator = operator_process(moto, &cluster.kubeconfig_file(), ns, &policy.name);
    let connectors: Api<aws_access_operator::api::AwsConnector> =
        Api::namespaced(cluster.client.clone(), ns);
    connectors
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "awsaccess.io/v1alpha1",
                "kind": "AwsConnector", "metadata": {"name": "org"},
                "spec": {"region": "us-east-1", "requestPolicy": request_policy}}))
            .expect("connector"),
        )
        .await
        .expect("connector");
    crate::support::operator::wait_condition(&connectors, "org", "Ready", "True").await;
    moto.reset_calls();
    crate::support::operator::enforced(&cluster.client, ns, &policy.name, None).await;
    operator
}

/// SIGKILL to a process this test started, and its exit collected.
pub(crate) fn kill_9(child: &mut std::process::Child) {
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_approval_and_grant_and_between_end_and_revoke_each_happens_once() {
    let moto = crate::support::moto::Moto::start();
    let seed = moto.seed(SMALL_ORG);
    let cluster = TestCluster::start("req-kill").await;
    let config = cluster.kubeconfig_file();
    let ns = cluster.namespace.clone();
    let policy = AdmissionPolicy::install();
    let mut operator = process_org(
        &moto,
        &cluster,
        &policy,
        json!({"enabled": true, "rules": [oncall_rule(1)]}),
    )
    .await;
    let who = people(&cluster, &ns).await;
    let alice = api(&who.alice, &ns).await;
    let bob = api(&who.bob, &ns).await;

    // AWS keeps the creation IN_PROGRESS for 8 status polls: the kill comes after 5, with the
    // approval recorded and the creation under way.
    moto.set_faults(json!({"in_progress_polls": 8}));
    moto.reset_calls();
    asked(&alice, &who, "hotfix", "40s").await;
    add_review(&bob, "hotfix", &who.bob.username, "Approve")
        .await
        .expect("bob");
    wait::until("five polls of the creation", TIMEOUT, || async {
        (calls(&moto, "DescribeAccountAssignmentCreationStatus") >= 5).then_some(())
    })
    .await;
    kill_9(&mut operator);
    assert_eq!(calls(&moto, "CreateAccountAssignment"), 1);
    let mut operator = operator_process(&moto, &config, &ns, &policy.name);
    let active = state(&alice, "hotfix", "Active").await;
    assert_eq!(
        calls(&moto, "CreateAccountAssignment"),
        1,
        "the restart resumed the creation from the ledger"
    );
    let status = active.status.expect("status");
    assert_eq!(status.approvals.as_deref(), Some("1/1"));
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Approved"
            && c.status == "True"
            && c.message.contains(&who.bob.username)),
        "{:?}",
        status.conditions
    );

    // The deletion at the end stays IN_PROGRESS too: killed after 5 polls of it.
    wait::until("the revoke to start", Duration::from_secs(90), || async {
        (calls(&moto, "DescribeAccountAssignmentDeletionStatus") >= 5).then_some(())
    })
    .await;
    kill_9(&mut operator);
    assert_eq!(calls(&moto, "DeleteAccountAssignment"), 1);
    let mut operator = operator_process(&moto, &config, &ns, &policy.name);
    let ended = state(&alice, "hotfix", "Ended").await;
    assert_eq!(
        ended.status.and_then(|s| s.end_reason).as_deref(),
        Some("DurationOver")
    );
    assert_eq!(calls(&moto, "DeleteAccountAssignment"), 1, "revoked once");
    // A fresh start reconciles every request: the ended one is not granted again (its record,
    // not its status, says it ended).
    kill_9(&mut operator);
    let mut operator = operator_process(&moto, &config, &ns, &policy.name);
    alice
        .create(&PostParams::default(), &as_alice(&who, "after", "1m"))
        .await
        .expect("request");
    // A later request reconciled means the restarted operator has looked at the ended one too.
    state(&alice, "after", "Pending").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(calls(&moto, "CreateAccountAssignment"), 1, "never again");
    let user = seed["ssoUsers"][3]["id"].as_str().expect("id").to_string();
    assert!(
        !crate::support::moto::assigned(&moto, &seed, ACCOUNT, "PermissionSet00")
            .await
            .contains(&user),
        "revoked"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &operator.id().to_string()])
        .status();
    let _ = operator.wait();
    policy.remove();
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_request_leaves_adopted_access_and_access_a_grant_still_declares() {
    // The rule needs no approval: the request is approved as soon as it is made.
    let (org, policy, who) = requests_org("req-shared", 0).await;
    let ns = org.cluster.namespace.clone();
    let alice = api(&who.alice, &ns).await;
    let ps = org.permission_set("PermissionSet00");
    let target =
        json!({"kind": "PermissionSet", "permissionSet": "PermissionSet00", "accountId": ACCOUNT});

    // user-03's access is declared by a standing grant too.
    org.create(crate::support::operator::grant(
        "standing",
        "org",
        crate::grants::sso_user(3),
        target.clone(),
        json!({}),
    ))
    .await;
    crate::support::operator::wait_grant(&org.grants, "standing", "Granted").await;
    // user-04's access exists before anyone asks for it.
    let ssoadmin = aws_sdk_ssoadmin::Client::new(&org.moto.sdk_config().await);
    ssoadmin
        .create_account_assignment()
        .instance_arn(org.instance())
        .target_id(ACCOUNT)
        .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
        .permission_set_arn(&ps)
        .principal_type(aws_sdk_ssoadmin::types::PrincipalType::User)
        .principal_id(org.user_id(4))
        .send()
        .await
        .expect("assignment made outside the operator");
    org.moto.reset_calls();

    for (name, user) in [("joins", 3), ("adopts", 4)] {
        let mut asked = as_alice(&who, name, "30m");
        asked.spec.principal =
            serde_json::from_value(crate::grants::sso_user(user)).expect("principal");
        alice
            .create(&PostParams::default(), &asked)
            .await
            .expect("request");
        let active = state(&alice, name, "Active").await;
        let approved = active
            .status
            .expect("status")
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Approved")
            .expect("Approved");
        assert!(
            approved
                .message
                .contains("approved automatically by rule oncall"),
            "{approved:?}"
        );
        let ended = withdrawn(&alice, name).await;
        let message = ended
            .status
            .expect("status")
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ended")
            .expect("Ended")
            .message;
        assert!(message.contains("left in place"), "{message}");
        assert!(
            org.assigned(ACCOUNT, &ps)
                .await
                .contains(&org.user_id(user)),
            "{name}: the access stays"
        );
    }
    assert!(
        org.writes().is_empty(),
        "joining and leaving shared or adopted access wrote {:?}",
        org.writes()
    );

    // A reviewer revokes held access before its time.
    let bob = api(&who.bob, &ns).await;
    let mut asked = as_alice(&who, "revoked", "30m");
    asked.spec.principal = serde_json::from_value(crate::grants::sso_user(5)).expect("principal");
    alice
        .create(&PostParams::default(), &asked)
        .await
        .expect("request");
    state(&alice, "revoked", "Active").await;
    assert!(org.assigned(ACCOUNT, &ps).await.contains(&org.user_id(5)));
    add_review(&bob, "revoked", &who.bob.username, "Revoke")
        .await
        .expect("bob revokes");
    let revoked = state(&alice, "revoked", "Ended").await;
    let status = revoked.status.expect("status");
    assert_eq!(status.end_reason.as_deref(), Some("Revoked"));
    assert!(!org.assigned(ACCOUNT, &ps).await.contains(&org.user_id(5)));

    // A request deleted with its finalizer removed by hand: the connector's next sync settles
    // what it held through the ledger, and removes its record.
    let mut asked = as_alice(&who, "forced", "30m");
    asked.spec.principal = serde_json::from_value(crate::grants::sso_user(5)).expect("principal");
    alice
        .create(&PostParams::default(), &asked)
        .await
        .expect("request");
    state(&alice, "forced", "Active").await;
    let admin: Api<AccessRequest> = Api::namespaced(org.cluster.client.clone(), &ns);
    admin
        .patch(
            "forced",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("remove the finalizer");
    admin
        .delete("forced", &Default::default())
        .await
        .expect("delete");
    crate::unit_grants::sync_now(&org, "forced").await;
    let connectors: Api<aws_access_operator::api::AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &ns);
    let records: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(org.cluster.client.clone(), &ns);
    wait::until(
        "the forced request's access and record to go",
        TIMEOUT,
        || async {
            let gone = !org.assigned(ACCOUNT, &ps).await.contains(&org.user_id(5));
            let list = records
                .list(&kube::api::ListParams::default().labels("awsaccess.io/request-record=true"))
                .await
                .ok()?;
            let kept = list.items.iter().any(|c| {
                c.data
                    .as_ref()
                    .and_then(|d| d.get("record"))
                    .is_some_and(|r| r.contains(&format!("\"{ns}/forced\"")))
            });
            (gone && !kept).then_some(())
        },
    )
    .await;
    // The other requests' records stay.
    let list = records
        .list(&kube::api::ListParams::default().labels("awsaccess.io/request-record=true"))
        .await
        .expect("records");
    assert!(list.items.len() >= 3, "{}", list.items.len());

    // Access a request created ends when the policy is tightened, and when the connector is
    // deleted: revoked either way.
    let held = |name: &'static str, user: usize| {
        let mut asked = as_alice(&who, name, "30m");
        asked.spec.principal =
            serde_json::from_value(crate::grants::sso_user(user)).expect("principal");
        asked
    };
    alice
        .create(&PostParams::default(), &held("tightened", 5))
        .await
        .expect("request");
    state(&alice, "tightened", "Active").await;
    assert!(org.assigned(ACCOUNT, &ps).await.contains(&org.user_id(5)));
    // The connector stops serving requests: what they hold ends (standing grants are not
    // touched).
    let serving = |on: bool| Patch::Merge(json!({"spec": {"requestPolicy": {"enabled": on}}}));
    connectors
        .patch("org", &PatchParams::default(), &serving(false))
        .await
        .expect("tighten");
    let tightened = state(&alice, "tightened", "Ended").await;
    let status = tightened.status.expect("status");
    assert_eq!(status.end_reason.as_deref(), Some("NotAllowed"));
    assert!(!org.assigned(ACCOUNT, &ps).await.contains(&org.user_id(5)));
    connectors
        .patch("org", &PatchParams::default(), &serving(true))
        .await
        .expect("loosen");

    alice
        .create(&PostParams::default(), &held("connector-gone", 2))
        .await
        .expect("request");
    state(&alice, "connector-gone", "Active").await;
    assert!(org.assigned(ACCOUNT, &ps).await.contains(&org.user_id(2)));
    connectors
        .delete("org", &Default::default())
        .await
        .expect("delete the connector");
    let gone = state(&alice, "connector-gone", "Ended").await;
    assert_eq!(
        gone.status.and_then(|s| s.end_reason).as_deref(),
        Some("ConnectorDeleted")
    );
    assert!(!org.assigned(ACCOUNT, &ps).await.contains(&org.user_id(2)));
    // Deleting the connector revokes what the operator created through it (the grant's access
    // too); the adopted access stays.
    assert!(org.assigned(ACCOUNT, &ps).await.contains(&org.user_id(4)));
    // Created: user-05's three times (revoked, forced, tightened) and user-02's; deleted: each
    // of those once, and the grant's (user-03, created before the count began) with the
    // connector. A reconciliation that read the connector just before its deletion writes its
    // intent, reads the connector again and stops there: nothing is created after the deletion
    // began.
    wait::until("the connector to go", TIMEOUT, || async {
        connectors
            .get_opt("org")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let writes = org.writes();
    assert_eq!(
        writes.get("CreateAccountAssignment"),
        Some(&4),
        "{writes:?}"
    );
    assert_eq!(
        writes.get("DeleteAccountAssignment"),
        Some(&5),
        "{writes:?}"
    );
    assert!(!org.assigned(ACCOUNT, &ps).await.contains(&org.user_id(3)));
    policy.remove();
    org.finish().await;
}

/// Waits until `count` requests are in `state`.
async fn all_in(api: &Api<AccessRequest>, state: &str, count: usize, timeout: Duration) {
    wait::until(&format!("{count} requests {state}"), timeout, || async {
        let list = api.list(&Default::default()).await.ok()?;
        let there = list
            .items
            .iter()
            .filter(|r| r.status.as_ref().and_then(|s| s.state).map(|s| s.as_str()) == Some(state))
            .count();
        (there == count).then_some(())
    })
    .await;
}

/// 200 requests approved at once on one connector converge, each granted once, at the pace of
/// the Identity Center lanes. Measured by `make bench` (`--ignored --nocapture`): the time and
/// the calls are printed against their bound, never asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench"]
async fn two_hundred_requests_approved_at_once() {
    let rate = 20.0;
    // With notifications on: every request's Pending and Active go to a receiver on loopback.
    let events =
        crate::support::receiver::Receiver::start(crate::support::receiver::Answer::Accept).await;
    let cluster = TestCluster::start("req-200").await;
    let policy = AdmissionPolicy::install();
    let (org, who) = requests_org_notifying(
        cluster,
        policy.name.clone(),
        "req-200",
        crate::support::moto::FORTY_USERS_FIVE_ACCOUNTS,
        1,
        |aws| {
            aws.grant_check = Duration::from_secs(600);
            aws.limits = aws_access_operator::aws::RateLimits::parse(&format!(
                "identitycenter={rate},iam=1000,sts=1000,organizations=1000"
            ))
            .expect("limits");
        },
        json!([receiver("events", "CloudEvents")]),
        &[("events", &events.url)],
    )
    .await;
    crate::support::operator::enforced(
        &org.cluster.client,
        &org.cluster.namespace,
        &policy.name,
        None,
    )
    .await;
    let ns = org.cluster.namespace.clone();
    let alice = api(&who.alice, &ns).await;
    let bob = api(&who.bob, &ns).await;
    let accounts: Vec<String> = org.seed["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a.as_str())
        .filter(|a| *a != ACCOUNT)
        .map(str::to_string)
        .collect();
    let mut names = Vec::new();
    for user in 0..40 {
        for account in &accounts {
            let name = format!("r-{user:02}-{account}");
            let mut asked = as_alice(&who, &name, "1h");
            asked.spec.principal =
                serde_json::from_value(crate::grants::sso_user(user)).expect("principal");
            asked.spec.target.account_id = Some(account.clone());
            alice
                .create(&PostParams::default(), &asked)
                .await
                .expect("request");
            names.push(name);
        }
    }
    all_in(&alice, "Pending", 200, Duration::from_secs(120)).await;
    org.moto.reset_calls();
    let started = std::time::Instant::now();
    use futures::StreamExt;
    futures::stream::iter(names.iter())
        .for_each_concurrent(20, |name| {
            let (bob, user) = (&bob, &who.bob.username);
            async move {
                add_review(bob, name, user, "Approve")
                    .await
                    .expect("approve");
            }
        })
        .await;
    let approved_in = started.elapsed();
    all_in(&alice, "Active", 200, Duration::from_secs(300)).await;
    let elapsed = started.elapsed();
    wait::until("every Pending and Active notice", TIMEOUT, || async {
        (events.accepted().len() >= 400).then_some(())
    })
    .await;
    eprintln!(
        "notices: {} delivered ({} after the first approval)",
        events.accepted().len(),
        format_args!("{:.1} s", started.elapsed().as_secs_f64())
    );
    let calls = org.moto.calls();
    let identity_center: u64 = calls
        .iter()
        .filter(|(op, _)| !matches!(op.as_str(), "GetCallerIdentity" | "AssumeRole"))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "200 requests: approved in {:.1} s, all Active {:.1} s after the first approval, {identity_center} AWS calls: {calls:?}",
        approved_in.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    eprintln!(
        "bound: {identity_center} Identity Center calls / {rate} per second = {:.1} s",
        identity_center as f64 / rate
    );
    assert_eq!(
        calls.get("CreateAccountAssignment"),
        Some(&200),
        "one create per request"
    );
    policy.remove();
    org.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_an_organizational_unit_is_held_on_each_of_its_accounts() {
    let (org, policy, who) =
        requests_org_with("req-unit", crate::support::moto::UNIT_ORG, 0, |_| {}).await;
    let ns = org.cluster.namespace.clone();
    let alice = api(&who.alice, &ns).await;
    let unit = |name: &str| crate::support::moto::seeded_unit(&org.seed, name);
    let (ou0, ou1, ou2) = (unit("ou-00"), unit("ou-01"), unit("ou-02"));
    let under_ou0: Vec<String> = [&ou0, &ou2]
        .iter()
        .flat_map(|u| crate::support::moto::seeded_accounts_in(&org.seed, u))
        .collect();
    assert_eq!(under_ou0.len(), 2, "{under_ou0:?}");
    let connectors: Api<aws_access_operator::api::AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &ns);
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"requestPolicy": {"rules": [{"name": "units",
                "groups": ["system:serviceaccounts"], "principals": "Any",
                "permissionSets": ["PermissionSet00"], "organizationalUnits": [ou0],
                "approvals": 0, "maxDuration": "1h"}]}}}),
            ),
        )
        .await
        .expect("a rule for the unit");
    let ask = |name: &str, unit: &str| {
        let mut asked = as_alice(&who, name, "30m");
        asked.spec.target = serde_json::from_value(json!({"kind": "PermissionSet",
            "permissionSet": "PermissionSet00", "organizationalUnit": unit}))
        .expect("target");
        asked
    };
    alice
        .create(&PostParams::default(), &ask("other-unit", &ou1))
        .await
        .expect("request");
    let refused = state(&alice, "other-unit", "NotAllowed").await;
    let message = refused
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Approved")
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains(&format!(
            "rule units: organizational unit {ou1} is not in its organizationalUnits"
        )),
        "{message}"
    );
    assert!(org.writes().is_empty(), "{:?}", org.writes());

    alice
        .create(&PostParams::default(), &ask("unit", &ou0))
        .await
        .expect("request");
    state(&alice, "unit", "Active").await;
    let user = org.user_id(3);
    for account in &under_ou0 {
        assert!(
            org.assigned(account, &org.permission_set("PermissionSet00"))
                .await
                .contains(&user),
            "{account}"
        );
    }
    assert_eq!(org.writes().get("CreateAccountAssignment"), Some(&2));
    withdrawn(&alice, "unit").await;
    for account in &under_ou0 {
        assert!(
            !org.assigned(account, &org.permission_set("PermissionSet00"))
                .await
                .contains(&user),
            "{account}"
        );
    }
    assert_eq!(org.writes().get("DeleteAccountAssignment"), Some(&2));
    policy.remove();
    org.finish().await;
}
