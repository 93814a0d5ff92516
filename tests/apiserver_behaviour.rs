//! Pins each behaviour of the Kubernetes API emulator that the operator relies on, through the
//! real kube client. Where these differ from a real apiserver, the real one is right and the
//! emulator is what changes.

use std::time::Duration;

use aws_access_operator::api::AwsConnector;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::apiserver::{ApiServer, Options};

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}))
    .expect("configmap")
}

fn connector(name: &str) -> AwsConnector {
    serde_json::from_value(
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": name}, "spec": {"region": "us-east-1"}}),
    )
    .expect("connector")
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn rv(object: &impl kube::Resource) -> u64 {
    object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("resourceVersion")
}

#[tokio::test]
async fn create_get_and_stale_writes() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let created = api
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let again = api_error(
        api.create(&PostParams::default(), &config_map("a", json!({})))
            .await,
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    let mut first = api.get("a").await.expect("get");
    let mut second = first.clone();
    first.data = Some([("k".to_string(), "first".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &first)
        .await
        .expect("replace");
    assert!(
        rv(&updated) > rv(&created),
        "every write moves the resourceVersion"
    );
    second.data = Some([("k".to_string(), "second".to_string())].into());
    let stale = api_error(api.replace("a", &PostParams::default(), &second).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        api.get("a").await.expect("get").data.expect("data")["k"],
        "first"
    );

    let missing = api_error(api.get("nope").await);
    assert_eq!(missing.code, 404);
    // A no-op write leaves the version alone.
    let same = api
        .replace("a", &PostParams::default(), &updated)
        .await
        .expect("no-op");
    assert_eq!(rv(&same), rv(&updated));
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let server = ApiServer::start().await;
    let api: Api<AwsConnector> = Api::namespaced(server.client(), "ns");
    let mut with_status = connector("c");
    with_status.status = Some(Default::default());
    let created = api
        .create(&PostParams::default(), &with_status)
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.status.is_none(), "status is not set on create");

    let status = json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "status": {"observedGeneration": 1}, "spec": {"region": "eu-west-1"}});
    let after = api
        .patch_status(
            "c",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("status");
    assert_eq!(
        after.status.as_ref().and_then(|s| s.observed_generation),
        Some(1)
    );
    assert_eq!(
        after.spec.region, "us-east-1",
        "/status does not change spec"
    );
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );

    let spec_change = api
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"region": "eu-west-1"}, "status": {"observedGeneration": 9}}),
            ),
        )
        .await
        .expect("spec");
    assert_eq!(spec_change.metadata.generation, Some(2));
    assert_eq!(
        spec_change.status.and_then(|s| s.observed_generation),
        Some(1),
        "the main resource does not change status"
    );
    let labels_only = api
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("labels");
    assert_eq!(
        labels_only.metadata.generation,
        Some(2),
        "metadata changes keep the generation"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let mut cm = config_map("f", json!({}));
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    api.delete("f", &DeleteParams::default())
        .await
        .expect("delete");
    let held = api.get("f").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());

    let add = api_error(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "x/y"]}})),
        )
        .await,
    );
    assert_eq!(
        add.code, 422,
        "no new finalizers while deleting (Invalid, as the real server answers)"
    );
    assert!(
        add.message.contains("metadata.finalizers"),
        "{}",
        add.message
    );

    // The same JSON patch kube-runtime's finalizer helper sends.
    let wrong_test = json_patch::Patch(
        serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "other"},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ]))
        .expect("patch"),
    );
    let failed = api_error(
        api.patch("f", &PatchParams::default(), &Patch::<()>::Json(wrong_test))
            .await,
    );
    assert_eq!(
        failed.code, 422,
        "a failed test operation rejects the patch"
    );
    let remove = json_patch::Patch(
        serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/hold"},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ]))
        .expect("patch"),
    );
    api.patch("f", &PatchParams::default(), &Patch::<()>::Json(remove))
        .await
        .expect("remove finalizer");
    assert!(
        api.get_opt("f").await.expect("get").is_none(),
        "gone with its last finalizer"
    );
}

#[tokio::test]
async fn server_side_apply_ownership() {
    let server = ApiServer::start().await;
    let api: Api<Lease> = Api::namespaced(server.client(), "ns");
    let lease = |holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l"}, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 10}})
    };
    let created = api
        .patch("l", &PatchParams::apply("a"), &Patch::Apply(lease("a")))
        .await
        .expect("apply creates");
    assert_eq!(
        created
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref()),
        Some("a")
    );

    let conflict = api_error(
        api.patch("l", &PatchParams::apply("b"), &Patch::Apply(lease("b")))
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict.message.contains("holderIdentity"),
        "{}",
        conflict.message
    );
    // The same value is no conflict; force takes ownership.
    api.patch("l", &PatchParams::apply("b"), &Patch::Apply(lease("a")))
        .await
        .expect("same value");
    api.patch(
        "l",
        &PatchParams::apply("b").force(),
        &Patch::Apply(lease("b")),
    )
    .await
    .expect("force");

    // Fields an applier stops sending are removed when nobody else owns them. (Above, b sent
    // the duration a had set, so both own it; a new value makes b its only owner.)
    let longer = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l"}, "spec": {"holderIdentity": "b", "leaseDurationSeconds": 20}});
    api.patch("l", &PatchParams::apply("b").force(), &Patch::Apply(longer))
        .await
        .expect("a new duration");
    let without_duration = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l"}, "spec": {"holderIdentity": "b"}});
    let after = api
        .patch(
            "l",
            &PatchParams::apply("b").force(),
            &Patch::Apply(without_duration),
        )
        .await
        .expect("apply");
    let spec = after.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(
        spec.lease_duration_seconds, None,
        "dropped by its only owner"
    );

    // An update by another manager takes ownership of what it changes.
    api.patch(
        "l",
        &PatchParams::apply("c").force(),
        &Patch::Apply(lease("c")),
    )
    .await
    .expect("c");
    api.patch(
        "l",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"holderIdentity": null}})),
    )
    .await
    .expect("release");
    api.patch("l", &PatchParams::apply("d"), &Patch::Apply(lease("d")))
        .await
        .expect("a released field is free");

    // A field another manager also applied stays when one of them stops sending it.
    let duration_only = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 10}});
    api.patch("l", &PatchParams::apply("e"), &Patch::Apply(duration_only))
        .await
        .expect("co-own the duration");
    let without_duration = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l"}, "spec": {"holderIdentity": "d"}});
    let kept = api
        .patch(
            "l",
            &PatchParams::apply("d"),
            &Patch::Apply(without_duration),
        )
        .await
        .expect("apply");
    assert_eq!(
        kept.spec.and_then(|s| s.lease_duration_seconds),
        Some(10),
        "still owned by e"
    );
}

#[tokio::test]
async fn selectors_and_paging() {
    let server = ApiServer::start().await;
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "ns");
    for (name, tier) in [
        ("a", "prod"),
        ("b", "dev"),
        ("c", "prod"),
        ("d", "test"),
        ("e", "prod"),
    ] {
        api.create(
            &PostParams::default(),
            &config_map(name, json!({"tier": tier, "app": "x"})),
        )
        .await
        .expect("create");
    }
    Api::<ConfigMap>::namespaced(client.clone(), "other")
        .create(
            &PostParams::default(),
            &config_map("z", json!({"tier": "prod"})),
        )
        .await
        .expect("create");
    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=prod"))
                .await
                .expect("list")
        ),
        ["a", "c", "e"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier!=prod,app"))
                .await
                .expect("list")
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (dev,test)"))
                .await
                .expect("list")
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier notin (prod),!missing"))
                .await
                .expect("list")
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .expect("list")
        ),
        ["c"]
    );
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default().labels("tier=prod"))
            .await
            .expect("list")
            .items
            .len(),
        4
    );

    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = api.list(&params).await.expect("page");
        pages += 1;
        let token = page.metadata.continue_.clone();
        seen.extend(names(page));
        match token {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
}

#[tokio::test]
async fn watches_replay_bookmark_and_expire() {
    let server = ApiServer::start_with(Options {
        bookmark_interval: Duration::from_millis(100),
        history_limit: 100,
        ..Options::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let first = api
        .create(
            &PostParams::default(),
            &config_map("w", json!({"watch": "me"})),
        )
        .await
        .expect("create");
    let from = rv(&first).to_string();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .expect("patch");
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watch": "no"}}})),
    )
    .await
    .expect("relabel");

    let params = WatchParams::default().labels("watch=me").timeout(5);
    let events: Vec<WatchEvent<ConfigMap>> = api
        .watch(&params, &from)
        .await
        .expect("watch")
        .take(3)
        .try_collect()
        .await
        .expect("events");
    assert!(
        matches!(&events[0], WatchEvent::Modified(cm) if cm.data.as_ref().is_some_and(|d| d["k"] == "2")),
        "{events:?}"
    );
    assert!(
        matches!(&events[1], WatchEvent::Deleted(_)),
        "leaving the selector reads as DELETED: {events:?}"
    );
    assert!(
        matches!(&events[2], WatchEvent::Bookmark(b) if !b.metadata.resource_version.is_empty()),
        "{events:?}"
    );

    server.with_store(|s| s.compact());
    let mut expired = Box::pin(
        api.watch(&WatchParams::default(), &from)
            .await
            .expect("watch"),
    );
    match expired.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }

    // A watch with a timeout ends by itself.
    let quiet = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .expect("watch");
    let ended = tokio::time::timeout(Duration::from_secs(5), quiet.collect::<Vec<_>>()).await;
    assert!(ended.is_ok(), "the watch closed after its timeout");
}

#[tokio::test]
async fn cel_rules_are_enforced_at_admission() {
    let server = ApiServer::start().await;
    let api: Api<AwsConnector> = Api::namespaced(server.client(), "ns");
    let mut bad = connector("bad");
    bad.spec.auth.role_arn = Some("arn:aws:iam::1234567890123:role/x".into());
    let refused = api_error(api.create(&PostParams::default(), &bad).await);
    assert_eq!(refused.code, 422);
    assert!(
        refused.message.contains("spec.auth.roleArn"),
        "{}",
        refused.message
    );
    // As the real server words it: an invalid value is quoted back...
    assert!(
        refused
            .message
            .contains("spec.auth.roleArn: Invalid value: \"arn:aws:iam::1234567890123:role/x\": "),
        "{}",
        refused.message
    );
    // ...and a rule with reason FieldValueForbidden refuses without echoing it.
    let mut secret = connector("secret");
    secret.spec.auth.role_arn = Some("arn:aws:iam::123456789012:role/x".into());
    secret.spec.auth.external_id = Some("short-secret-value".into());
    let forbidden = api_error(api.create(&PostParams::default(), &secret).await);
    assert_eq!(forbidden.code, 422);
    assert!(
        forbidden
            .message
            .contains("spec.auth.externalId: Forbidden: "),
        "{}",
        forbidden.message
    );
    assert!(!forbidden.message.contains("short-secret-value"));

    api.create(&PostParams::default(), &connector("good"))
        .await
        .expect("create");
    let update = api_error(
        api.patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"region": "Mars"}})),
        )
        .await,
    );
    assert_eq!(update.code, 422, "updates are admitted by the same rules");
}

#[tokio::test]
async fn delete_honours_a_resource_version_precondition() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let created = api
        .create(&PostParams::default(), &config_map("p", json!({})))
        .await
        .expect("create");
    let stale = created.metadata.resource_version.clone();
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"changed": "yes"}}})),
    )
    .await
    .expect("change it");
    let with = |version: Option<String>| DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: version,
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let refused = api_error(api.delete("p", &with(stale)).await.map(|_| ()));
    assert_eq!(refused.code, 409, "a stale precondition is a conflict");
    assert!(api.get_opt("p").await.expect("get").is_some());
    let current = api.get("p").await.expect("get").metadata.resource_version;
    api.delete("p", &with(current)).await.expect("delete");
    assert!(api.get_opt("p").await.expect("get").is_none());
}

#[tokio::test]
async fn namespaced_only_resources_refuse_cluster_wide_lists() {
    let server = ApiServer::start_with(Options {
        namespaced_only: vec!["configmaps"],
        ..Options::default()
    })
    .await;
    let all: Api<ConfigMap> = Api::all(server.client());
    let refused = api_error(all.list(&ListParams::default()).await);
    assert_eq!(
        refused.code, 403,
        "as RBAC bound only in namespaces answers"
    );
    let one: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    assert!(one.list(&ListParams::default()).await.is_ok());
}

#[tokio::test]
async fn labels_and_names_are_checked_like_the_real_server() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let mut long_label = config_map("l", json!({}));
    long_label.metadata.labels = Some([("a".to_string(), "v".repeat(64))].into());
    let refused = api_error(api.create(&PostParams::default(), &long_label).await);
    assert_eq!(refused.code, 422);
    assert!(
        refused.message.contains("metadata.labels"),
        "{}",
        refused.message
    );
    let mut bad_end = config_map("e", json!({}));
    bad_end.metadata.labels = Some([("a".to_string(), "ends-".to_string())].into());
    assert_eq!(
        api_error(api.create(&PostParams::default(), &bad_end).await).code,
        422
    );
    let long_name = config_map(&"n".repeat(254), json!({}));
    assert_eq!(
        api_error(api.create(&PostParams::default(), &long_name).await).code,
        422
    );
    let mut fine = config_map("fine", json!({}));
    fine.metadata.labels = Some([("example.com/a".to_string(), "v".repeat(63))].into());
    api.create(&PostParams::default(), &fine)
        .await
        .expect("63 characters fit");
}
