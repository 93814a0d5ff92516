//! The chart's RBAC, judged by the real authorizer: the chart is installed with helm (with its
//! defaults, and with `watchNamespaces`), and the operator binary runs with the chart's
//! environment and its ServiceAccount's token (from TokenRequest) through a flow that exercises
//! every path: connectors Ready and refused, Secrets read, a grant granted and revoked, syncs
//! asked for (two that fail, so that the event recorder counts a repeat), connectors deleted,
//! the lease released. The API server's audit log then shows that no request was denied, that
//! every rule of the chart's Roles and ClusterRoles was used where it applies, and that nothing
//! is granted cluster-wide that one namespace's Role could grant instead.
//!
//! The operator also runs as a ServiceAccount that may not list AccessGrants cluster-wide.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};

use aws_access_operator::api::{AccessGrant, AccessRequest, AwsConnector};
use aws_access_operator::controller::{self, shutdown};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::support::audit::{self, Request};
use crate::support::cluster::{TestCluster, create_namespace, unique_suffix};
use crate::support::moto::{AMBIENT_AWS_VARIABLES, Moto, SMALL_ORG};
use crate::support::operator::{
    VALID_ID, aws, create_org_connector, grant, secret, settings, wait_condition, wait_grant,
};
use crate::support::service_account::{self, with_rules};
use crate::support::tools::{chart, helm_ok, operator_container};
use crate::support::wait;

/// A rule of the chart as the cluster holds it: (group, resource, verb), the namespace it
/// applies in (`None`: everywhere, a ClusterRole bound cluster-wide), and the object names it
/// is limited to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Granted {
    rule: Rule,
    namespace: Option<String>,
    names: Option<Vec<String>>,
}

/// (group, resource, verb) of a rule.
type Rule = (String, String, String);

impl Granted {
    /// Whether this rule allows `request` (in RBAC, a create, list or watch names no object).
    fn allows(&self, request: &Request) -> bool {
        let name = match request.verb.as_str() {
            "create" | "list" | "watch" | "deletecollection" => "",
            _ => request.name.as_str(),
        };
        (&self.rule.0, &self.rule.1, &self.rule.2)
            == (&request.group, &request.resource, &request.verb)
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| n == request.namespace)
            && self
                .names
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
    }
}

fn expand(
    rules: &[k8s_openapi::api::rbac::v1::PolicyRule],
    namespace: Option<&str>,
) -> Vec<Granted> {
    let mut out = Vec::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    out.push(Granted {
                        rule: (group.clone(), resource.clone(), verb.clone()),
                        namespace: namespace.map(str::to_string),
                        names: rule.resource_names.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Every rule the release's bindings give, where it applies.
async fn chart_rules(admin: &Client, release: &str) -> BTreeSet<Granted> {
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let cluster_roles: Api<ClusterRole> = Api::all(admin.clone());
    let roles_in = |ns: &str| Api::<Role>::namespaced(admin.clone(), ns);
    let mut out = BTreeSet::new();
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    for binding in cluster_bindings.list(&selector).await.expect("bindings") {
        let role = cluster_roles
            .get(&binding.role_ref.name)
            .await
            .expect("role");
        out.extend(expand(role.rules.as_deref().unwrap_or_default(), None));
    }
    let bindings: Api<RoleBinding> = Api::all(admin.clone());
    for binding in bindings.list(&selector).await.expect("bindings") {
        let ns = binding.namespace().expect("a namespace");
        let rules = match binding.role_ref.kind.as_str() {
            "ClusterRole" => {
                cluster_roles
                    .get(&binding.role_ref.name)
                    .await
                    .expect("role")
                    .rules
            }
            _ => {
                roles_in(&ns)
                    .get(&binding.role_ref.name)
                    .await
                    .expect("role")
                    .rules
            }
        };
        out.extend(expand(rules.as_deref().unwrap_or_default(), Some(&ns)));
    }
    assert!(!out.is_empty(), "the release {release} binds no role");
    out
}

/// The operator binary as the chart's Deployment runs it, outside a pod: the container's
/// arguments and environment, the ServiceAccount's token in place of the one a pod would
/// have mounted, and moto's dummy keys in place of IRSA. Only the metrics address moves, to a
/// loopback port the kernel picks when it binds (a pod has a network namespace of its own; this
/// process does not, and a port chosen beforehand can be taken by a server of another test).
async fn start_as_the_chart(
    admin: &Client,
    home: &str,
    release: &str,
    kubeconfig: &std::path::Path,
    moto: &Moto,
    log: &std::path::Path,
) -> Child {
    let (args, env) = operator_container(admin, home, release, "pod-1").await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_aws-access-operator"));
    command.args(&args);
    for variable in AMBIENT_AWS_VARIABLES {
        command.env_remove(variable);
    }
    command
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    for (name, value) in &env {
        command.env(name, value);
    }
    for (name, value) in moto.env() {
        if name != "AWS_ENDPOINT_URL" {
            command.env(name, value);
        }
    }
    command
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    command.spawn().expect("start the operator")
}

/// Stops the operator as the kubelet would (SIGTERM) and waits for it.
fn stop(mut child: Child, log: &std::path::Path) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            assert!(
                exit.success(),
                "the operator exited {exit:?}; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The chart's defaults: every namespace watched (a ClusterRoleBinding), connectors served in
/// one namespace.
#[tokio::test]
async fn the_chart_rbac_allows_exactly_what_the_operator_does_and_where() {
    chart_flow(Watching::Everywhere).await;
}

/// `watchNamespaces` set: the operator's ClusterRole is bound by RoleBindings in just those
/// namespaces, so a single cluster-wide list or watch of its kinds would be refused.
#[tokio::test]
async fn the_chart_rbac_watching_some_namespaces_allows_what_the_operator_does() {
    chart_flow(Watching::TheTestsNamespaces).await;
}

#[derive(Clone, Copy, PartialEq)]
enum Watching {
    Everywhere,
    TheTestsNamespaces,
}

async fn chart_flow(watching: Watching) {
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
    // An operator that watches every namespace runs on an API server of its own.
    let cluster = match watching {
        Watching::Everywhere => TestCluster::start_isolated("rbac-home").await,
        Watching::TheTestsNamespaces => TestCluster::start("rbac-home").await,
    };
    let client = cluster.client.clone();
    let home = cluster.namespace.clone();
    let platform = create_namespace(&client, "rbac-platform", json!({})).await;
    let team = create_namespace(&client, "rbac-team", json!({"grants": "yes"})).await;

    // The chart as a platform team installs it: connectors served in one namespace. The CRDs
    // are the cluster's already.
    let release = format!("aws-access-operator-{}", unique_suffix());
    let connectors_in = format!("connectorNamespaces=[\"{platform}\"]");
    let watched = format!("watchNamespaces=[\"{home}\",\"{platform}\",\"{team}\"]");
    let mut values = vec!["--set-json", &connectors_in];
    if watching == Watching::TheTestsNamespaces {
        // Also one shard of several: its claims on connectors are judged too.
        values.extend([
            "--set-json",
            &watched,
            "--set",
            "shard.selector=awsaccess.io/shard=rbac",
            "--set",
            "shard.claimSeconds=6",
        ]);
    }
    helm_ok(
        &cluster.kubeconfig,
        &[
            "install",
            &release,
            chart().to_str().expect("utf-8"),
            "--namespace",
            &home,
            "--set",
            "crds.install=false",
            "--set",
            "replicaCount=1",
            "--set",
            &format!("aws.endpointUrl={}", moto.endpoint),
            "--set",
            "aws.region=us-east-1",
        ]
        .into_iter()
        .chain(values)
        .collect::<Vec<_>>(),
    );
    let identity = service_account::identity(&cluster, &home, &release).await;
    // The authorizer reads bindings from its informers: the operator starts once it has the
    // release's (one right from each binding).
    let as_operator = identity.client().await;
    wait::until(
        "the authorizer to see the release's bindings",
        crate::support::operator::TIMEOUT,
        || async {
            let rights = [
                (
                    ("awsaccess.io", "awsconnectors/status", "patch"),
                    platform.as_str(),
                ),
                (("coordination.k8s.io", "leases", "create"), home.as_str()),
                (("", "configmaps", "create"), home.as_str()),
                (("awsaccess.io", "accessrequests", "create"), home.as_str()),
                (("", "secrets", "list"), platform.as_str()),
                (("", "namespaces", "get"), ""),
            ];
            for (asked, namespace) in rights {
                if !service_account::may(&as_operator, asked, namespace, "").await {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    if watching == Watching::TheTestsNamespaces {
        // Asked of the authorizer rather than tried, so that the audit log holds only what the
        // operator itself asked for.
        assert!(
            !service_account::may(
                &as_operator,
                ("awsaccess.io", "accessgrants", "list"),
                "",
                ""
            )
            .await,
            "the operator may not list AccessGrants cluster-wide: it must list them namespace by namespace"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let operator =
        start_as_the_chart(&client, &home, &release, &identity.kubeconfig, &moto, &log).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &platform);
    secrets
        .create(&PostParams::default(), &secret("external-id", VALID_ID))
        .await
        .expect("secret");
    let connectors: Api<AwsConnector> = Api::namespaced(client.clone(), &platform);
    let connector: AwsConnector = serde_json::from_value(json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
        "metadata": {"name": "org", "labels": {"awsaccess.io/shard": "rbac"}},
        "spec": {"region": "us-east-1",
                 "auth": {"roleArn": "arn:aws:iam::123456789012:role/ops", "externalIdSecretRef": {"name": "external-id", "key": "externalId"}},
                 "grantPolicy": {"allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"grants": "yes"}}}},
                 "requestPolicy": {"enabled": true, "rules": [{"name": "self-service", "groups": ["system:serviceaccounts"],
                     "principals": "Any", "memberships": ["iam-group-01"], "approvals": 0}]}}}))
    .expect("connector");
    connectors
        .create(&PostParams::default(), &connector)
        .await
        .expect("connector");
    wait_condition(&connectors, "org", "Ready", "True").await;

    // A connector a tenant made in their own namespace, naming a Secret there: refused, and
    // the Secret is never read.
    let team_secrets: Api<Secret> = Api::namespaced(client.clone(), &team);
    team_secrets
        .create(&PostParams::default(), &secret("external-id", VALID_ID))
        .await
        .expect("secret");
    let strays: Api<AwsConnector> = Api::namespaced(client.clone(), &team);
    strays
        .create(&PostParams::default(), &connector)
        .await
        .expect("connector");
    let (reason, message) = wait_condition(&strays, "org", "Ready", "False").await;
    assert_eq!(reason, "NamespaceNotAllowed", "{message}");
    assert!(message.contains(&platform), "{message}");
    let grants: Api<AccessGrant> = Api::namespaced(client.clone(), &team);
    let mut g = grant(
        "member",
        "org",
        json!({"kind": "IamUser", "name": "iam-user-00"}),
        json!({"kind": "IamGroupMembership", "group": "iam-group-00"}),
        json!({}),
    );
    g.spec.connector_ref.namespace = Some(platform.clone());
    grants
        .create(&PostParams::default(), &g)
        .await
        .expect("grant");
    wait_grant(&grants, "member", "Granted").await;
    // A PermissionSet in the connector's namespace: created in AWS (the finalizer and the
    // status are the operator's to write), then deleted.
    let sets: Api<aws_access_operator::api::PermissionSet> =
        Api::namespaced(client.clone(), &platform);
    let declared: aws_access_operator::api::PermissionSet = serde_json::from_value(json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": "PermissionSet", "metadata": {"name": "rbac"},
        "spec": {"connectorRef": {"name": "org"}, "name": "RbacTest"}}))
    .expect("permission set");
    sets.create(&PostParams::default(), &declared)
        .await
        .expect("permission set");
    wait::until(
        "the permission set to converge",
        crate::support::operator::TIMEOUT,
        || async {
            let status = sets.get("rbac").await.ok()?.status?;
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        },
    )
    .await;
    sets.delete("rbac", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until(
        "the permission set to go",
        crate::support::operator::TIMEOUT,
        || async { sets.get_opt("rbac").await.ok()?.is_none().then_some(()) },
    )
    .await;
    // A user, a group and an IAM user in the connector's namespace: each created, then deleted
    // (the finalizer and the status are the operator's to write).
    for (kind, spec) in [
        (
            "IdentityCenterUser",
            json!({"userName": "rbac@example.com", "displayName": "RBAC",
                "name": {"givenName": "R", "familyName": "BAC"},
                "emails": [{"value": "rbac@example.com", "primary": true}]}),
        ),
        ("IdentityCenterGroup", json!({"displayName": "rbac-test"})),
        ("IamUser", json!({"userName": "rbac-test"})),
    ] {
        declare_and_delete(&client, &platform, kind, spec).await;
    }
    // An AccessRequest the rule approves by itself: held, then deleted (the finalizer and the
    // status are the operator's to write, the admission policy's binding its to read). It is
    // trusted only if created after the operator saw the policy enforced (its dry-run probe).
    crate::support::operator::enforced(&client, &home, &format!("{release}-access-requests"), None)
        .await;
    let requester = service_account::with_rules(
        &cluster,
        &team,
        "requester",
        json!([]),
        &[(
            team.as_str(),
            json!([{"apiGroups": ["awsaccess.io"], "resources": ["accessrequests"], "verbs": ["create", "get", "delete"]}]),
        )],
    )
    .await;
    let requests: Api<AccessRequest> = Api::namespaced(requester.client().await, &team);
    let request: AccessRequest = serde_json::from_value(json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "join"},
        "spec": {"connectorRef": {"name": "org", "namespace": platform}, "requester": {"user": requester.username, "groups": ["system:serviceaccounts"]},
                 "principal": {"kind": "IamUser", "name": "iam-user-01"},
                 "target": {"kind": "IamGroupMembership", "group": "iam-group-01"},
                 "duration": "1h", "reason": "RBAC test"}}))
    .expect("request");
    requests
        .create(&PostParams::default(), &request)
        .await
        .expect("request");
    wait::until(
        "the request to be Active",
        crate::support::operator::TIMEOUT,
        || async {
            let state = requests.get("join").await.ok()?.status?.state?;
            (state.as_str() == "Active").then_some(())
        },
    )
    .await;
    requests
        .delete("join", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until(
        "the request to go",
        crate::support::operator::TIMEOUT,
        || async { requests.get_opt("join").await.ok()?.is_none().then_some(()) },
    )
    .await;
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
    // Two syncs that fail the same way: the recorder counts the second on the first's Event
    // (a patch of its series) instead of writing another.
    moto.set_faults(json!({"deny_operations": ["ListRoots"]}));
    for asked in ["2", "3"] {
        crate::support::operator::request_sync(&connectors, "org", asked).await;
        wait::until(
            "the failed sync",
            crate::support::operator::TIMEOUT,
            || async {
                let status = connectors.get("org").await.ok()?.status?;
                (status.last_handled_sync_now.as_deref() == Some(asked)).then_some(())
            },
        )
        .await;
    }
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), &platform);
    wait::until(
        "the second failure to be counted on the first's Event",
        crate::support::operator::TIMEOUT,
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("SyncFailed")
                        && e.series.as_ref().is_some_and(|s| s.count >= 2)
                })
                .then_some(())
        },
    )
    .await;
    moto.set_faults(json!({}));
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
    stop(operator, &log);
    let granted = chart_rules(&client, &release).await;

    let Some(audit_log) = cluster.audit_log() else {
        eprintln!(
            "TEST_KUBECONFIG names a cluster whose audit log this test cannot read: the flow ran with the chart's RBAC, the audit is skipped"
        );
        return;
    };
    let used = audit::requests_of(&audit_log, &identity.username);
    assert!(
        used.len() > 20,
        "the audit log has the operator's requests: {used:?}"
    );

    // Nothing the operator asked for was refused by RBAC. (Its dry-run probe of the admission
    // policy is authorized, then refused by the policy once the API server enforces it: that
    // refusal is what it looks for.)
    let probes: Vec<&Request> = used
        .iter()
        .filter(|r| r.resource == "accessrequests" && r.verb == "create")
        .collect();
    assert!(
        probes
            .iter()
            .all(|r| r.namespace == home && r.decision == "allow" && r.uri.contains("dryRun=All")),
        "the operator creates AccessRequests only as a dry run, at home: {probes:#?}"
    );
    assert!(
        probes
            .iter()
            .any(|r| r.code == 403 && r.message.contains("[requester-is-caller]")),
        "the admission policy refused the operator's probe: {probes:#?}"
    );
    let denied: Vec<&Request> = used
        .iter()
        .filter(|r| r.decision != "allow" || (r.code == 403 && !probes.contains(r)))
        .collect();
    assert!(
        denied.is_empty(),
        "the chart's RBAC refused the operator: {denied:#?}"
    );

    // Every rule is used where it applies (a ClusterRole bound in several namespaces: in one of
    // them at least).
    let unused: Vec<&Granted> = granted
        .iter()
        .filter(|rule| {
            !granted
                .iter()
                .filter(|same| (&same.rule, &same.names) == (&rule.rule, &rule.names))
                .any(|same| used.iter().any(|request| same.allows(request)))
        })
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants what the operator never uses there: {unused:#?}"
    );

    // Nothing cluster-wide that one namespace's Role could grant: a cluster-wide rule is used
    // across namespaces, or on cluster-scoped resources, or is on the operator's own kinds,
    // which tenants create in any namespace.
    let mut namespaces_of: BTreeMap<Rule, BTreeSet<&str>> = BTreeMap::new();
    for r in &used {
        namespaces_of
            .entry((r.group.clone(), r.resource.clone(), r.verb.clone()))
            .or_default()
            .insert(&r.namespace);
    }
    for rule in &granted {
        // Namespaces are read for grantPolicy.allowedNamespaces.selector, and events written
        // beside their objects: whichever tenant namespace a grant comes from, which no Role
        // can foresee.
        if rule.namespace.is_some()
            || rule.rule.0 == "awsaccess.io"
            || rule.rule.0 == "events.k8s.io"
            || rule.rule.1 == "namespaces"
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
    for r in &used {
        if r.group.is_empty() && r.resource == "configmaps" {
            assert_eq!(
                r.namespace, home,
                "ConfigMaps {} outside the operator's namespace",
                r.verb
            );
        }
        if r.group.is_empty() && r.resource == "secrets" {
            assert_eq!(
                r.namespace, platform,
                "Secrets {} outside the connector namespaces",
                r.verb
            );
        }
    }
    assert!(
        !granted.iter().any(|rule| rule.namespace.is_none()
            && rule.rule.0.is_empty()
            && (rule.rule.1 == "configmaps" || rule.rule.1 == "secrets")),
        "no ClusterRole grants ConfigMaps or Secrets cluster-wide"
    );
    assert!(
        granted
            .iter()
            .filter(|rule| rule.rule.1 == "leases" && rule.rule.2 != "create")
            .all(|rule| rule.names.as_deref() == Some(&[release.clone()][..])
                // A shard's claims are named after connectors, in the release namespace only.
                || (watching == Watching::TheTestsNamespaces
                    && rule.namespace.as_deref() == Some(home.as_str()))),
        "the leader Lease is read and renewed only by its name, and claims only at home"
    );
    helm_ok(
        &cluster.kubeconfig,
        &["uninstall", &release, "--namespace", &home],
    );
}

/// What the chart's ClusterRole gives the operator, as rules, without AccessGrants: the tests
/// below give those only in some namespaces.
fn operator_rules_but_grants() -> Value {
    json!([
        {"apiGroups": ["awsaccess.io"], "resources": ["awsconnectors"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["awsaccess.io"], "resources": ["awsconnectors/status", "accessgrants/status"], "verbs": ["patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}
    ])
}

/// The operator's rights in its own namespace: its ConfigMaps, its Lease, Secrets.
fn home_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "update", "patch", "delete"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}
    ])
}

fn grant_rules() -> Value {
    json!([{"apiGroups": ["awsaccess.io"], "resources": ["accessgrants"], "verbs": ["get", "list", "watch", "patch"]}])
}

/// When AccessGrants cannot be listed (no right to, or no CRD), the connector's sync still
/// lands: a Kubernetes-side failure never costs a second AWS sync.
#[tokio::test]
async fn a_grant_listing_failure_never_costs_another_sync() {
    let moto = Moto::start();
    moto.seed(SMALL_ORG);
    moto.reset_calls();
    // Watches every namespace: on an API server of its own.
    let cluster = TestCluster::start_isolated("rbac-nolist").await;
    let ops = cluster.namespace.clone();
    // Everything cluster-wide but AccessGrants, which only one namespace's Role allows.
    let identity = with_rules(
        &cluster,
        &ops,
        "operator",
        operator_rules_but_grants(),
        &[(&ops, {
            let mut rules = home_rules().as_array().cloned().unwrap_or_default();
            rules.extend(grant_rules().as_array().cloned().unwrap_or_default());
            Value::Array(rules)
        })],
    )
    .await;
    aws_access_operator::telemetry::init(aws_access_operator::telemetry::LogFormat::Plain, "warn");
    let mut watch_all = settings(&ops, "replica", aws(&moto).await);
    watch_all.namespaces.clear();
    watch_all.connector_namespaces = vec![ops.clone()];
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(identity.client().await, watch_all, stop)
        .await
        .expect("operator");
    let connectors = create_org_connector(&cluster.client, &ops).await;
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
    cluster.cleanup().await;
}

/// Creates an object of one of the identity kinds in `namespace`, waits until it is Ready, then
/// deletes it and waits until it is gone.
async fn declare_and_delete(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    mut spec: serde_json::Value,
) {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    spec["connectorRef"] = json!({"name": "org"});
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("awsaccess.io", "v1alpha1", kind),
        &format!("{}s", kind.to_lowercase()),
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "awsaccess.io/v1alpha1", "kind": kind,
        "metadata": {"name": "rbac"}, "spec": spec}))
    .expect(kind);
    api.create(&PostParams::default(), &object)
        .await
        .expect(kind);
    wait::until(
        &format!("the {kind} to converge"),
        crate::support::operator::TIMEOUT,
        || async {
            let object = api.get("rbac").await.ok()?;
            let conditions = object.data["status"]["conditions"].as_array()?.clone();
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                .then_some(())
        },
    )
    .await;
    api.delete("rbac", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until(
        &format!("the {kind} to go"),
        crate::support::operator::TIMEOUT,
        || async { api.get_opt("rbac").await.ok()?.is_none().then_some(()) },
    )
    .await;
}
