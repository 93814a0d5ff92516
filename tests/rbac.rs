//! The chart's RBAC is exactly what the operator uses, and where: the operator runs a scenario
//! that exercises every path against the API emulator, which records each request in RBAC
//! terms with its namespace. Every request must be allowed by a rule that applies in that
//! namespace, every rule must be used where it applies, and nothing is granted cluster-wide
//! that a Role in one namespace could grant instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aws_access_operator::api::{AccessGrant, AwsConnector};
use aws_access_operator::controller::{self, shutdown};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::apiserver::{Access, ApiServer};
use crate::support::moto::Moto;
use crate::support::operator::{
    VALID_ID, aws, create_org_connector, grant, secret, settings, wait_condition, wait_grant,
};
use crate::support::wait;

/// Verbs the code uses that the emulator cannot observe: kube-runtime's event recorder
/// PATCHes an event it repeats within minutes (its series count).
const UNOBSERVABLE: &[(&str, &str, &str)] = &[("events.k8s.io", "events", "patch")];

/// The scenario's namespaces: the operator's own (the chart's release namespace), the one
/// where connectors are served (`connectorNamespaces`), and a tenant's.
const HOME: &str = "rbac-operator";
const PLATFORM: &str = "rbac-platform";
const TEAM: &str = "rbac-team";

/// The release's full name in the scenario (the chart's default for a release of that name):
/// the leader Lease's name.
const FULLNAME: &str = "aws-access-operator";

/// A rule of the chart, rendered for the scenario: (group, resource, verb), the namespace it
/// applies in (`None`: cluster-wide, a ClusterRole), and the object names it is limited to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Granted {
    rule: Rule,
    namespace: Option<String>,
    names: Option<Vec<String>>,
}

impl Granted {
    /// Whether this rule allows a request in `namespace` ("" for cluster-wide) on `name` (""
    /// when the request names no object).
    fn allows(&self, namespace: &str, name: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self
                .names
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
    }
}

/// (group, resource, verb) of a rule.
type Rule = (String, String, String);

/// The rules of the Roles and ClusterRoles in a chart template, rendered for the scenario.
/// There is no helm here, so the few expressions that place rules are put in by hand (the
/// release namespace, the full name, and `{{ . }}` inside the range over connectorNamespaces,
/// which has one member here); every other template line carries labels or control flow and
/// is dropped. A ClusterRole applies cluster-wide (watchNamespaces empty, the default).
fn rules(template: &str) -> BTreeSet<Granted> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/aws-access-operator/templates")
        .join(template);
    let text = std::fs::read_to_string(&path)
        .expect("template")
        .replace("{{ .Release.Namespace }}", HOME)
        .replace(
            r#"{{ include "aws-access-operator.fullname" . | quote }}"#,
            &format!("{FULLNAME:?}"),
        )
        .replace(
            r#"{{ include "aws-access-operator.fullname" . }}"#,
            FULLNAME,
        )
        .replace("{{ $fullname }}", FULLNAME)
        .replace("{{ . }}", PLATFORM);
    let mut out = BTreeSet::new();
    for document in text.split("\n---") {
        let plain: String = document
            .lines()
            .filter(|l| !l.contains("{{"))
            .map(|l| format!("{l}\n"))
            .collect();
        let Ok(value) = serde_saphyr::from_str::<Value>(&plain) else {
            continue;
        };
        let namespace = match value["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(
                value["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{template}: a Role without a namespace"))
                    .to_string(),
            ),
            _ => continue,
        };
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        for rule in value["rules"].as_array().into_iter().flatten() {
            let names = rule["resourceNames"]
                .as_array()
                .map(|names| names.iter().map(s).collect::<Vec<_>>());
            for group in rule["apiGroups"].as_array().into_iter().flatten() {
                for resource in rule["resources"].as_array().into_iter().flatten() {
                    for verb in rule["verbs"].as_array().into_iter().flatten() {
                        out.insert(Granted {
                            rule: (s(group), s(resource), s(verb)),
                            namespace: namespace.clone(),
                            names: names.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn chart_rbac_is_exactly_what_the_operator_uses_and_where() {
    let moto = Moto::start();
    moto.seed(&[
        "--accounts",
        "2",
        "--sso-users",
        "4",
        "--sso-groups",
        "2",
        "--iam-users",
        "2",
        "--permission-sets",
        "2",
    ]);
    let server = ApiServer::start().await;
    let client = server.client();
    for name in [HOME, PLATFORM] {
        create_namespace(&client, name).await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": TEAM, "labels": {"grants": "yes"}}}),
            )
            .expect("ns"),
        )
        .await
        .expect("namespace");

    // The operator as the chart runs it by default: every namespace watched, connectors served
    // in one, its ledger and ConfigMaps at home. It talks to the recording listener; the test
    // to the plain one.
    let mut settings = settings(HOME, "replica", aws(&moto).await);
    settings.namespaces.clear();
    settings.connector_namespaces = vec![PLATFORM.to_string()];
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(server.recorded_client(), settings, stop)
        .await
        .expect("operator");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), PLATFORM);
    secrets
        .create(&PostParams::default(), &secret("external-id", VALID_ID))
        .await
        .expect("secret");
    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), PLATFORM);
    let connector: AwsConnector = serde_json::from_value(json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org"},
        "spec": {"region": "us-east-1",
                 "auth": {"roleArn": "arn:aws:iam::123456789012:role/ops", "externalIdSecretRef": {"name": "external-id", "key": "externalId"}},
                 "grantPolicy": {"allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"grants": "yes"}}}}}}))
    .expect("connector");
    connectors
        .create(&PostParams::default(), &connector)
        .await
        .expect("connector");
    wait_condition(&connectors, "org", "Ready", "True").await;

    // A connector a tenant made in their own namespace, naming a Secret there: refused, and
    // the Secret is never read.
    let team_secrets: Api<Secret> = Api::namespaced(client.clone(), TEAM);
    team_secrets
        .create(&PostParams::default(), &secret("external-id", VALID_ID))
        .await
        .expect("secret");
    let strays: Api<AwsConnector> = Api::namespaced(client.clone(), TEAM);
    strays
        .create(&PostParams::default(), &connector)
        .await
        .expect("connector");
    let (reason, message) = wait_condition(&strays, "org", "Ready", "False").await;
    assert_eq!(reason, "NamespaceNotAllowed", "{message}");
    assert!(message.contains(PLATFORM), "{message}");

    let grants: Api<AccessGrant> = Api::namespaced(client.clone(), TEAM);
    let mut g = grant(
        "member",
        "org",
        json!({"kind": "IamUser", "name": "iam-user-00"}),
        json!({"kind": "IamGroupMembership", "group": "iam-group-00"}),
        json!({}),
    );
    g.spec.connector_ref.namespace = Some(PLATFORM.to_string());
    grants
        .create(&PostParams::default(), &g)
        .await
        .expect("grant");
    wait_grant(&grants, "member", "Granted").await;
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"awsaccess.io/sync-now": "1"}}})),
        )
        .await
        .expect("annotate");
    wait::until(
        "the second sync",
        crate::support::operator::TIMEOUT,
        || async {
            (connectors
                .get("org")
                .await
                .ok()?
                .status?
                .last_handled_sync_now
                .as_deref()
                == Some("1"))
            .then_some(())
        },
    )
    .await;
    grants
        .delete("member", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until(
        "the grant to go",
        crate::support::operator::TIMEOUT,
        || async { grants.get_opt("member").await.ok()?.is_none().then_some(()) },
    )
    .await;
    for api in [&connectors, &strays] {
        api.delete("org", &DeleteParams::default())
            .await
            .expect("delete the connector");
    }
    for api in [&connectors, &strays] {
        wait::until(
            "the connector to go",
            crate::support::operator::TIMEOUT,
            || async { api.get_opt("org").await.ok()?.is_none().then_some(()) },
        )
        .await;
    }
    trigger.fire();
    operator.task.await.expect("join").expect("stop");

    let used: BTreeSet<Access> = server.recorded();
    let granted: BTreeSet<Granted> = [
        "clusterrole.yaml",
        "leader-election.yaml",
        "configmaps.yaml",
        "secrets.yaml",
    ]
    .into_iter()
    .flat_map(rules)
    .collect();
    let unobservable: BTreeSet<Rule> = UNOBSERVABLE
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();

    // Every request is allowed where it was made, on the object it named.
    let missing: Vec<&Access> = used
        .iter()
        .filter(|(g, r, v, ns, name)| {
            !granted.iter().any(|rule| {
                (&rule.rule.0, &rule.rule.1, &rule.rule.2) == (g, r, v) && rule.allows(ns, name)
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the operator makes requests the chart does not allow there: {missing:?}"
    );

    // Every rule is used where it applies.
    let unused: Vec<&Granted> = granted
        .iter()
        .filter(|rule| {
            !unobservable.contains(&rule.rule)
                && !used.iter().any(|(g, r, v, ns, name)| {
                    (g, r, v) == (&rule.rule.0, &rule.rule.1, &rule.rule.2) && rule.allows(ns, name)
                })
        })
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants what the operator never uses there: {unused:?}"
    );
    for extra in &unobservable {
        assert!(
            granted.iter().any(|rule| &rule.rule == extra),
            "{extra:?} is needed and must stay granted"
        );
    }

    // Nothing cluster-wide that one namespace's Role could grant: a cluster-wide rule is used
    // across namespaces, or on cluster-scoped resources, or is on the operator's own kinds,
    // which tenants create in any namespace.
    let mut namespaces_of: BTreeMap<Rule, BTreeSet<&str>> = BTreeMap::new();
    for (g, r, v, ns, _) in &used {
        namespaces_of
            .entry((g.clone(), r.clone(), v.clone()))
            .or_default()
            .insert(ns);
    }
    for rule in &granted {
        if rule.namespace.is_some()
            || rule.rule.0 == "awsaccess.io"
            || unobservable.contains(&rule.rule)
        {
            continue;
        }
        let seen = &namespaces_of[&rule.rule];
        assert!(
            seen.contains("") || seen.len() > 1,
            "{:?} is granted cluster-wide but used only in {seen:?}: a Role there would do",
            rule.rule
        );
    }

    // The ones that matter most, said plainly: ConfigMaps only at home, Secrets only where
    // connectors are served, and the Lease read and renewed by its name only.
    for (g, r, v, ns, _) in &used {
        if g.is_empty() && r == "configmaps" {
            assert_eq!(ns, HOME, "ConfigMaps {v} outside the operator's namespace");
        }
        if g.is_empty() && r == "secrets" {
            assert_eq!(ns, PLATFORM, "Secrets {v} outside the connector namespaces");
        }
    }
    assert!(
        !granted.iter().any(|rule| rule.namespace.is_none()
            && rule.rule.0.is_empty()
            && (rule.rule.1 == "configmaps" || rule.rule.1 == "secrets")),
        "no ClusterRole grants ConfigMaps or Secrets"
    );
    assert!(
        granted
            .iter()
            .filter(|rule| rule.rule.1 == "leases" && rule.rule.2 != "create")
            .all(|rule| rule.names.as_deref() == Some(&[FULLNAME.to_string()][..])),
        "the Lease is read and renewed only by its name"
    );
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name}}))
            .expect("namespace"),
        )
        .await
        .expect("namespace");
}

/// With `watchNamespaces` set, the chart binds the operator's ClusterRole with RoleBindings in
/// those namespaces only, so it cannot list AccessGrants cluster-wide: it must list them
/// namespace by namespace, and its connector still becomes Ready.
#[tokio::test]
async fn watching_some_namespaces_never_lists_grants_cluster_wide() {
    let moto = Moto::start();
    moto.seed(crate::support::moto::SMALL_ORG);
    let server = ApiServer::start_with(crate::support::apiserver::Options {
        namespaced_only: vec!["accessgrants", "awsconnectors"],
        ..Default::default()
    })
    .await;
    let client = server.client();
    create_namespace(&client, "team").await;
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(
        client.clone(),
        settings("team", "replica", aws(&moto).await),
        stop,
    )
    .await
    .expect("operator");
    let connectors = create_org_connector(&client, "team").await;
    let (reason, _) = wait_condition(&connectors, "org", "Ready", "True").await;
    assert_eq!(reason, "Ready");
    trigger.fire();
    operator.task.await.expect("join").expect("stop");
}

/// When AccessGrants cannot be listed (no right to, or no CRD), the connector's sync still
/// lands: a Kubernetes-side failure never costs a second AWS sync.
#[tokio::test]
async fn a_grant_listing_failure_never_costs_another_sync() {
    let moto = Moto::start();
    moto.seed(crate::support::moto::SMALL_ORG);
    moto.reset_calls();
    let server = ApiServer::start_with(crate::support::apiserver::Options {
        namespaced_only: vec!["accessgrants"],
        ..Default::default()
    })
    .await;
    let client = server.client();
    create_namespace(&client, "ops").await;
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let mut watch_all = settings("ops", "replica", aws(&moto).await);
    watch_all.namespaces.clear();
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(client.clone(), watch_all, stop)
        .await
        .expect("operator");
    let connectors = create_org_connector(&client, "ops").await;
    let (_, message) = wait_condition(&connectors, "org", "Synced", "True").await;
    assert!(
        message.contains("unmanaged access not counted"),
        "{message}"
    );
    wait_condition(&connectors, "org", "Ready", "True").await;
    // Well past the first error backoff: still one sync.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert_eq!(
        moto.calls().get("GetCallerIdentity"),
        Some(&1),
        "one sync only: {:?}",
        moto.calls()
    );
    trigger.fire();
    operator.task.await.expect("join").expect("stop");
}
