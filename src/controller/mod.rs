//! The operator: both controllers under kube-runtime, behind a leader lease, with health and
//! metrics endpoints and a graceful shutdown.

pub mod admission;
pub mod claims;
pub mod configmaps;
pub mod connector;
pub mod context;
pub mod error;
pub mod events;
pub mod grant;
pub mod health;
pub mod identity;
pub mod json_configmap;
pub mod leader;
pub mod ledger;
pub mod memory;
pub mod metrics;
pub mod notices;
pub mod notifier;
pub mod orphans;
pub mod permission_set;
pub mod records;
pub mod request;
pub mod request_record;
pub mod runtime;
pub mod session;
pub mod shares;
pub mod shutdown;
pub mod status;
pub mod watch_backoff;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::GetParams;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{
    AccessGrant, AccessRequest, AwsConnector, IamUser, IdentityCenterGroup, IdentityCenterUser,
    PermissionSet,
};
use crate::fence::Fence;
use claims::Entry;
pub use context::AwsSettings;
use context::Context;
use error::{Error, backoff};
use health::Health;
use metrics::Metrics;
use shutdown::Shutdown;
use watch_backoff::{NoWait, watch};

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty watches every namespace.
    pub namespaces: Vec<String>,
    /// Namespaces whose AwsConnectors are served (and whose Secrets are read); empty for all.
    pub connector_namespaces: Vec<String>,
    /// `None` runs without leader election (one replica, or tests).
    pub leader_election: Option<LeaderElection>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; `None` serves nothing.
    pub health_addr: Option<SocketAddr>,
    /// This replica's name in events (the pod name in a cluster).
    pub instance: String,
    /// The operator's own namespace, where its ownership ledger and the connectors' ConfigMaps
    /// live (tenants cannot write there), and the only one where it writes ConfigMaps.
    pub home_namespace: String,
    /// The ValidatingAdmissionPolicy (and binding) that vouches for AccessRequests; without
    /// it no request is approved.
    pub request_admission_policy: Option<String>,
    /// How many connectors may sync at once.
    pub max_concurrent_syncs: usize,
    /// With a shard selector, this installation serves only the connectors it picks.
    pub shard: Option<claims::ShardSettings>,
    pub aws: AwsSettings,
}

#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    /// How long the lease holds without renewal.
    pub lease_seconds: u64,
    /// How long before the lease could be taken by another replica the holder stops writing
    /// (allowance for clock skew and requests on the wire).
    pub renew_grace_seconds: u64,
}

/// A started operator.
pub struct Operator {
    /// The bound address of the health server, if one was asked for.
    pub health_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    /// Finishes when the operator stops: after shutdown, or with an error when the leader
    /// lease is lost.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the operator; it runs until `shutdown` resolves.
pub async fn start(
    client: Client,
    settings: Settings,
    shutdown: Shutdown,
) -> anyhow::Result<Operator> {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let health_addr = match settings.health_addr {
        Some(addr) => Some(
            health::serve(addr, health.clone(), metrics.clone(), shutdown.clone())
                .await
                .with_context(|| format!("cannot serve health endpoints on {addr}"))?,
        ),
        None => None,
    };
    if let Some(addr) = health_addr {
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    let reporter = Reporter {
        controller: "aws-access-operator".into(),
        instance: Some(settings.instance.clone()),
    };
    // Without leader election there is one writer and nothing to fence; with it, nothing is
    // written until the lease is held.
    let fence = if settings.leader_election.is_some() {
        Fence::closed()
    } else {
        Fence::unfenced()
    };
    let claims = settings.shard.clone().map(|shard| {
        tracing::info!(selector = %shard.selector, shard = %shard.name, "serving only the connectors the shard selector picks");
        Arc::new(claims::Claims::new(
            shard,
            client.clone(),
            &settings.home_namespace,
            fence.clone(),
            shutdown.clone(),
        ))
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        reporter,
        metrics.clone(),
        fence,
        claims,
        &settings,
    ));
    health.set_ready(true);
    tokio::spawn(memory::give_back_while_quiet(ctx.clone(), shutdown.clone()));
    let task = tokio::spawn({
        let (health, shutdown) = (health.clone(), shutdown.clone());
        async move {
            let result = lead_then_run(client, settings, ctx, shutdown).await;
            health.set_ready(false);
            result
        }
    });
    Ok(Operator {
        health_addr,
        metrics,
        task,
    })
}

async fn lead_then_run(
    client: Client,
    settings: Settings,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let Some(election) = &settings.leader_election else {
        run_controllers(&client, &settings.namespaces, ctx, shutdown).await;
        return Ok(());
    };
    let lease = leader::Election::new(
        Api::namespaced(client.clone(), &election.lease_namespace),
        &election.lease_name,
        &election.identity,
        leader::Timing {
            duration: Duration::from_secs(election.lease_seconds),
            grace: Duration::from_secs(election.renew_grace_seconds),
        },
        ctx.fence.clone(),
    );
    tracing::info!(lease = %election.lease_name, namespace = %election.lease_namespace, identity = %election.identity, "waiting for the leader lease");
    if !lease.acquire(&shutdown).await {
        return Ok(());
    }
    tracing::info!(identity = %election.identity, "became the leader");
    ctx.metrics.leader.set(1);
    let metrics = ctx.metrics.clone();
    let controllers = run_controllers(&client, &settings.namespaces, ctx, shutdown);
    tokio::pin!(controllers);
    let result = tokio::select! {
        () = &mut controllers => Ok(()),
        why = lease.hold() => Err(anyhow::anyhow!(
            "lost the leader lease ({why}); stopping so that only one replica writes"
        )),
    };
    metrics.leader.set(0);
    lease.release().await;
    result
}

/// The APIs to watch a kind through: one per namespace, or one for the whole cluster.
fn scopes<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// What the controllers' caches keep of an object: not its `managedFields` nor kubectl's
/// last-applied copy of it, which together can be larger than the object and which nothing
/// here reads (with a thousand AccessGrants, most of what the caches would hold).
fn slim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// What the cache of a kind that names a connector keeps of an object: `slim`, and no status
/// where the kind says so.
fn cached_copy<K: ConnectorUser>(object: &mut K) {
    slim(object);
    if !K::STATUS_CACHED {
        object.drop_status();
    }
}

/// The namespace of each API `scopes` returns: `None` for the whole cluster.
fn scope_names(namespaces: &[String]) -> Vec<Option<String>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    }
}

/// Where to watch Secrets for the connectors watched in `scope` (`None`: the whole cluster):
/// only the namespaces where connectors are served, which are all there are when
/// `connector_namespaces` is empty. The operator has no right to read Secrets elsewhere.
fn secret_scopes(scope: Option<&str>, connector_namespaces: &[String]) -> Vec<Option<String>> {
    match scope {
        None if connector_namespaces.is_empty() => vec![None],
        None => connector_namespaces.iter().cloned().map(Some).collect(),
        Some(namespace) if session::serves(connector_namespaces, namespace) => {
            vec![Some(namespace.to_string())]
        }
        Some(_) => Vec::new(),
    }
}

/// Runs both controllers until shutdown.
async fn run_controllers(
    client: &Client,
    namespaces: &[String],
    ctx: Arc<Context>,
    shutdown: Shutdown,
) {
    let mut runs = Vec::new();
    for (api, scope) in scopes::<AwsConnector>(client, namespaces)
        .into_iter()
        .zip(scope_names(namespaces))
    {
        // Only spec (generation: deletion moves it too), annotation (sync-now) and finalizer
        // changes start a reconciliation: the operator's own status writes do not wake it again.
        let (reader, writer) = reflector::store();
        // A shard watches only its own connectors: the API server filters them.
        let mut config = watcher::Config::default().any_semantic();
        if let Some(claims) = &ctx.claims {
            config = config.labels_from(claims.selector().selector());
        }
        let changes = watch(api, config)
            .modify(slim)
            .reflect(writer)
            .applied_objects()
            .predicate_filter(
                predicates::generation
                    .combine(predicates::annotations)
                    .combine(predicates::finalizers),
                Default::default(),
            );
        // Each watch feeding the controller waits on its own after an error (`watch`).
        let mut controller = Controller::for_stream(changes, reader).trigger_backoff(NoWait);
        // A Secret an AwsConnector names (`externalIdSecretRef`) that appears or changes after
        // the connector re-evaluates it. Only the Secrets' metadata is watched, and only where
        // connectors are served: their values are read when needed, never held.
        for secrets_in in secret_scopes(scope.as_deref(), &ctx.connector_namespaces) {
            let secrets: Api<PartialObjectMeta<Secret>> = match &secrets_in {
                Some(namespace) => Api::namespaced(client.clone(), namespace),
                None => Api::all(client.clone()),
            };
            let store = controller.store();
            let secret_changes = watch(secrets, watcher::Config::default()).touched_objects();
            controller = controller.watches_stream(
                secret_changes,
                move |secret: PartialObjectMeta<Secret>| {
                    let (name, namespace) = (secret.name_any(), secret.namespace());
                    store
                        .state()
                        .into_iter()
                        .filter(|c| {
                            let auth = &c.spec.auth;
                            c.namespace() == namespace
                                && [
                                    &auth.external_id_secret_ref,
                                    &auth.global_external_id_secret_ref,
                                ]
                                .into_iter()
                                .flatten()
                                .any(|r| r.name == name)
                        })
                        .map(|c| ObjectRef::from_obj(&*c))
                        .collect::<Vec<_>>()
                },
            );
        }
        let run = controller
            .run(
                |obj, ctx| timed(connector::CONTROLLER, obj, ctx, connector::reconcile),
                |obj, error, ctx| error_policy(connector::CONTROLLER, obj, error, ctx),
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));
        let run: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(run);
        runs.push(run);
    }
    for ((grants, connectors), sets) in scopes::<AccessGrant>(client, namespaces)
        .into_iter()
        .zip(scopes::<AwsConnector>(client, namespaces))
        .zip(scopes::<PermissionSet>(client, namespaces))
    {
        runs.push(run_connector_user(
            grants,
            connectors,
            Some(sets),
            grant::CONTROLLER,
            grant::reconcile,
            ctx.clone(),
        ));
    }
    for (sets, connectors) in scopes::<PermissionSet>(client, namespaces)
        .into_iter()
        .zip(scopes::<AwsConnector>(client, namespaces))
    {
        runs.push(run_connector_user(
            sets,
            connectors,
            None,
            permission_set::CONTROLLER,
            permission_set::reconcile,
            ctx.clone(),
        ));
    }
    for (connectors, (users, (groups, iam_users))) in
        scopes::<AwsConnector>(client, namespaces).into_iter().zip(
            scopes::<IdentityCenterUser>(client, namespaces)
                .into_iter()
                .zip(
                    scopes::<IdentityCenterGroup>(client, namespaces)
                        .into_iter()
                        .zip(scopes::<IamUser>(client, namespaces)),
                ),
        )
    {
        runs.push(run_connector_user(
            users,
            connectors.clone(),
            None,
            identity::USER_CONTROLLER,
            identity::reconcile::<IdentityCenterUser>,
            ctx.clone(),
        ));
        runs.push(run_connector_user(
            groups,
            connectors.clone(),
            None,
            identity::GROUP_CONTROLLER,
            identity::reconcile::<IdentityCenterGroup>,
            ctx.clone(),
        ));
        runs.push(run_connector_user(
            iam_users,
            connectors,
            None,
            identity::IAM_USER_CONTROLLER,
            identity::reconcile::<IamUser>,
            ctx.clone(),
        ));
    }
    // AccessRequests are watched only when the operator serves them (it was told which
    // admission policy vouches for them): otherwise it may have no right to read them.
    let request_scopes = if ctx.admission.configured() {
        scopes::<AccessRequest>(client, namespaces)
    } else {
        Vec::new()
    };
    if ctx.admission.configured() {
        // Confirms enforcement as soon as the policy is in place, and keeps the answer fresh.
        runs.push(Box::pin(admission::watch_over(ctx.clone())));
        runs.push(Box::pin(notifier::Notifier::run(ctx.clone())));
    }
    for ((requests, connectors), sets) in request_scopes
        .into_iter()
        .zip(scopes::<AwsConnector>(client, namespaces))
        .zip(scopes::<PermissionSet>(client, namespaces))
    {
        runs.push(run_connector_user(
            requests,
            connectors,
            Some(sets),
            request::CONTROLLER,
            request::reconcile,
            ctx.clone(),
        ));
    }
    tracing::info!(
        scope = if namespaces.is_empty() {
            "all namespaces".to_string()
        } else {
            namespaces.join(",")
        },
        "controllers started"
    );
    // Stopping: no new reconciliation starts (see `timed`), the ones in flight get up to
    // FORCE_STOP_AFTER to finish, then the controllers are dropped. (kube-runtime's own graceful
    // shutdown also waits for the first list of every watch, forever if the stop comes first.)
    // A sync under way saves its page state as it stands and ends (`stop_requested`); the next
    // start resumes it.
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        () = async {
            shutdown.wait().await;
            ctx.stop_starting();
            if tokio::time::timeout(FORCE_STOP_AFTER, ctx.idle()).await.is_err() {
                tracing::warn!("reconciliations still running after {FORCE_STOP_AFTER:?}; stopping them");
            }
        } => {}
    }
    tracing::info!("controllers stopped");
}

/// A controller running until its watches end.
type ControllerRun = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The kinds that name a connector in `spec.connectorRef`.
trait ConnectorUser:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn connector_ref(&self) -> &crate::api::grant::ConnectorRef;

    /// How many of the kind are reconciled at once. Bounded: thousands applied at once would
    /// otherwise each hold a reconciliation (its future is about 11 KB, with the connector it
    /// read) waiting on a rate limit, memory that buys no speed (docs/performance.md).
    const CONCURRENCY: u16 = grant::CONCURRENCY;

    /// The permission set the object names by name, if it does: a PermissionSet declaring it
    /// that changes (is created, converges) looks at the object again.
    fn permission_set_name(&self) -> Option<&str> {
        None
    }

    /// Whether the controller's cache keeps the kind's status. A kind of which there are
    /// thousands keeps it out (`drop_status`): each reconciliation then reads the object, status
    /// included, from the API server's watch cache (`with_status`).
    const STATUS_CACHED: bool = true;

    /// Drops the status of a kind whose cache does not keep it.
    fn drop_status(&mut self) {}

    /// Whether the kind depends on its connector's inventory only through the names it resolves
    /// (users, groups, permission sets, accounts, units, IAM): a sync that finds new
    /// assignments, sign-ins or undeclared access paths, and nothing new by name, does not look
    /// at every object of the kind again (`what_users_see`).
    const NAMES_ONLY: bool = false;
}

impl ConnectorUser for AccessGrant {
    fn connector_ref(&self) -> &crate::api::grant::ConnectorRef {
        &self.spec.connector_ref
    }

    /// A granted AccessGrant's status (two conditions, the resolved ids, the access record) is
    /// more than half of what its cached copy costs: about 1.3 of 2.9 KB. With 10,000 grants that
    /// is 13 MB kept for a read each reconciliation can make instead (docs/performance.md).
    const STATUS_CACHED: bool = false;

    fn drop_status(&mut self) {
        self.status = None;
    }

    const NAMES_ONLY: bool = true;

    fn permission_set_name(&self) -> Option<&str> {
        self.spec.target.permission_set.as_deref()
    }
}

impl ConnectorUser for PermissionSet {
    fn connector_ref(&self) -> &crate::api::grant::ConnectorRef {
        &self.spec.connector_ref
    }
}

impl ConnectorUser for IdentityCenterUser {
    const CONCURRENCY: u16 = identity::CONCURRENCY;

    fn connector_ref(&self) -> &crate::api::grant::ConnectorRef {
        &self.spec.connector_ref
    }
}

impl ConnectorUser for IdentityCenterGroup {
    const CONCURRENCY: u16 = identity::CONCURRENCY;

    fn connector_ref(&self) -> &crate::api::grant::ConnectorRef {
        &self.spec.connector_ref
    }
}

impl ConnectorUser for IamUser {
    const CONCURRENCY: u16 = identity::CONCURRENCY;

    fn connector_ref(&self) -> &crate::api::grant::ConnectorRef {
        &self.spec.connector_ref
    }
}

impl ConnectorUser for AccessRequest {
    fn connector_ref(&self) -> &crate::api::grant::ConnectorRef {
        &self.spec.connector_ref
    }

    const NAMES_ONLY: bool = true;

    fn permission_set_name(&self) -> Option<&str> {
        self.spec.target.permission_set.as_deref()
    }
}

/// The object to reconcile, as the cache has it, or for a kind whose cache does not keep the
/// status, read with its status from the API server: at the cached `resourceVersion` or newer,
/// which the API server answers from its watch cache, not from etcd. `None`: it is gone.
async fn with_status<K: ConnectorUser>(
    cached: Arc<K>,
    ctx: &Context,
) -> Result<Option<Arc<K>>, Error> {
    if K::STATUS_CACHED {
        return Ok(Some(cached));
    }
    let namespace = cached.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = cached
        .meta()
        .resource_version
        .as_deref()
        .map_or_else(GetParams::any, GetParams::at);
    match api.get_with(&cached.name_any(), &params).await {
        Ok(object) => Ok(Some(Arc::new(object))),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The controller of a kind that names a connector (AccessGrants, AccessRequests) in one
/// scope. Spec changes, deletion (which moves the generation) and finalizer changes start a
/// reconciliation; the operator's own status writes do not. A connector that changes (becomes
/// Ready, changes its policies) re-evaluates the objects that use it.
fn run_connector_user<K, R, Fut>(
    objects: Api<K>,
    connectors: Api<AwsConnector>,
    sets: Option<Api<PermissionSet>>,
    controller: &'static str,
    reconcile: R,
    ctx: Arc<Context>,
) -> ControllerRun
where
    K: ConnectorUser,
    R: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let (reader, writer) = reflector::store();
    let changes = watch(objects, watcher::Config::default().any_semantic())
        .modify(cached_copy::<K>)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    // Each connector's objects take at most its share of the reconciliations at once; the rest
    // wait in its line and are started as its own end (`shares`).
    let waiting = ctx
        .metrics
        .waiting_for_share
        .get_or_create(&metrics::ControllerLabels { controller })
        .clone();
    let (shares, woken) = shares::Shares::<K>::new(shares::SHARE, waiting);
    // Each watch feeding the controller waits on its own after an error (`watch`).
    let runner = Controller::for_stream(changes, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(K::CONCURRENCY))
        .trigger_backoff(NoWait)
        .reconcile_on(woken);
    let store = runner.store();
    // The connectors, kept to tell (in a shard) whether an object's connector is served here.
    let (known_connectors, connector_writer) = reflector::store();
    let connector_changes = watch(connectors, watcher::Config::default().any_semantic())
        .modify(slim)
        .reflect(connector_writer)
        .touched_objects()
        .predicate_filter(what_users_see::<K>, Default::default());
    // A declared permission set that changes (its record now has an ARN, it converged) looks
    // at the objects that name it again: a grant applied with its set need not wait a minute.
    let runner = match sets {
        Some(sets) => {
            let store = runner.store();
            let set_changes =
                watch(sets, watcher::Config::default().any_semantic()).touched_objects();
            runner.watches_stream(set_changes, move |set: PermissionSet| {
                let namespace = set.namespace();
                let reference = &set.spec.connector_ref;
                let connector_namespace = reference.namespace.clone().or(namespace);
                store
                    .state()
                    .into_iter()
                    .filter(|object| {
                        let theirs = object.connector_ref();
                        object.permission_set_name() == Some(set.spec.name.as_str())
                            && theirs.name == reference.name
                            && theirs.namespace.clone().or_else(|| object.namespace())
                                == connector_namespace
                    })
                    .map(|object| ObjectRef::from_obj(&*object))
                    .collect::<Vec<_>>()
            })
        }
        None => runner,
    };
    let run = runner
        .watches_stream(connector_changes, move |connector: AwsConnector| {
            let (name, namespace) = (connector.name_any(), connector.namespace());
            store
                .state()
                .into_iter()
                .filter(|object| {
                    let reference = object.connector_ref();
                    reference.name == name
                        && reference.namespace.clone().or_else(|| object.namespace()) == namespace
                })
                .map(|object| ObjectRef::from_obj(&*object))
                .collect::<Vec<_>>()
        })
        .run(
            move |obj, ctx| {
                let known = known_connectors.clone();
                let shares = shares.clone();
                async move {
                    let connector = obj.connector_ref().key(obj.namespace().as_deref());
                    let Some(_turn) = shares.enter(&connector, line_place(&*obj)) else {
                        tracing::debug!(object = %obj.name_any(), namespace = ?obj.namespace(), %connector, "waiting: the connector's share of reconciliations is running");
                        return Ok(Action::requeue(shares::WAIT_RECHECK));
                    };
                    // In a shard, an object whose connector is not this shard's is not looked
                    // at (nothing is written to it, not even a finalizer); one whose
                    // connector's claim is not held yet waits for it.
                    let _claimed = match shard_entry(&*obj, &known, &ctx).await {
                        None => None,
                        Some(Entry::Serve(in_flight)) => Some(in_flight),
                        Some(Entry::Waiting) => {
                            let again = ctx
                                .claims
                                .as_ref()
                                .map_or(claims::CLAIM_RECHECK, |c| c.recheck());
                            return Ok(Action::requeue(again));
                        }
                        Some(Entry::Elsewhere) => return Ok(Action::await_change()),
                    };
                    let obj = match with_status(obj, &ctx).await? {
                        Some(obj) => obj,
                        // Gone since the cache saw it: nothing is left to reconcile.
                        None => return Ok(Action::await_change()),
                    };
                    let result = timed(controller, obj.clone(), ctx.clone(), reconcile).await;
                    if result.is_err() && handed_over(&*obj, &ctx) {
                        return Ok(Action::requeue(claims::CLAIM_RECHECK));
                    }
                    result
                }
            },
            move |obj, error, ctx| error_policy(controller, obj, error, ctx),
            ctx,
        )
        .for_each(|_| futures::future::ready(()));
    Box::pin(run)
}

/// An object's place in its connector's line: its name and namespace, without the version and
/// uid its reference would carry (thousands may wait).
fn line_place<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<K> {
    let place = ObjectRef::new(&object.name_any());
    match object.namespace() {
        Some(namespace) => place.within(&namespace),
        None => place,
    }
}

/// What of a connector the objects that name it depend on: its spec (generation), labels (its
/// shard), deletion, conditions (type, status and reason; not the message, which carries
/// times), whom it authenticated as, its Identity Center, and the inventory's counts (a sync that
/// found something new; for a kind that depends only on names, `NAMES_ONLY`, the counts of
/// what it can name). A status write that changes none of these (the times of a sync with
/// nothing new, which every sync writes) does not look at all of them again: with ten thousand
/// grants on a connector, it would be ten thousand reconciliations per sync, for nothing. A
/// grant waiting for a name the counts do not show as new (one user replaced by another) looks
/// again by itself (`controller::grant::RESOLVE_RETRY`).
fn what_users_see<K: ConnectorUser>(connector: &AwsConnector) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    connector.metadata.generation.hash(&mut hasher);
    connector.metadata.labels.hash(&mut hasher);
    connector
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    if let Some(status) = &connector.status {
        for condition in &status.conditions {
            (&condition.type_, &condition.status, &condition.reason).hash(&mut hasher);
        }
        serde_json::to_string(&(&status.identity, &status.identity_center))
            .unwrap_or_default()
            .hash(&mut hasher);
        match &status.inventory {
            Some(inventory) if K::NAMES_ONLY => Some(inventory.named()).hash(&mut hasher),
            inventory => serde_json::to_string(inventory)
                .unwrap_or_default()
                .hash(&mut hasher),
        }
    }
    Some(hasher.finish())
}

/// Whether a failed reconciliation of `object` stopped at its connector's claim (the
/// connector left the shard, or the claim lapsed): not a failure of the object to report in an
/// event or back off for, only a moment to look again (and find whose it is now).
fn handed_over<K: ConnectorUser>(object: &K, ctx: &Context) -> bool {
    let key = object.connector_ref().key(object.namespace().as_deref());
    let fenced = ctx.claims.is_some() && ctx.fence_for(&key).check().is_err();
    if fenced {
        tracing::info!(object = %object.name_any(), namespace = ?object.namespace(), connector = %key, "stopped: this shard no longer holds the connector's claim");
    }
    fenced
}

/// Whether this shard serves an object that names a connector (`None`: not sharded, it does).
/// The connector is taken from the watch's cache, or read when it is in a namespace the watch
/// does not cover (a connectorRef across namespaces while namespaces are listed).
async fn shard_entry<K: ConnectorUser>(
    object: &K,
    known: &reflector::Store<AwsConnector>,
    ctx: &Context,
) -> Option<Entry> {
    let claims = ctx.claims.as_ref()?;
    let reference = object.connector_ref();
    let namespace = reference.namespace.clone().or_else(|| object.namespace())?;
    let cached = known.get(&ObjectRef::new(&reference.name).within(&namespace));
    let connector = match cached {
        Some(connector) => Some(connector),
        None => {
            let api: Api<AwsConnector> = Api::namespaced(ctx.client.clone(), &namespace);
            match api.get_opt(&reference.name).await {
                Ok(found) => found.map(Arc::new),
                Err(error) => {
                    tracing::warn!(connector = %reference.key(Some(&namespace)), %error, "cannot read the connector to tell whether this shard serves it; looking again");
                    return Some(Entry::Waiting);
                }
            }
        }
    };
    Some(match connector {
        Some(connector) => claims.enter(&connector),
        // No connector: no shard can claim it, and none writes anything about it.
        None => Entry::Elsewhere,
    })
}

/// Runs one reconciliation, measuring it and resetting the object's backoff on success.
async fn timed<K, F, Fut>(
    controller: &'static str,
    obj: Arc<K>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    // Once stopping, nothing new starts; the object is looked at again by the next leader.
    let Some(_running) = ctx.start_reconcile() else {
        return Ok(Action::await_change());
    };
    let started = Instant::now();
    let result = reconcile(obj.clone(), ctx.clone()).await;
    ctx.metrics.observe_reconcile(controller, started.elapsed());
    if result.is_ok() {
        ctx.record_success(&*obj);
    }
    result
}

/// Requeues a failed object with its own exponential backoff, and reports the failure.
fn error_policy<K>(
    controller: &'static str,
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Send + Sync + 'static,
{
    ctx.metrics.observe_error(controller, error.metric_label());
    let failures = ctx.record_failure(&*obj);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let delay = backoff(failures.saturating_sub(1), seed);
    tracing::warn!(controller, object = %obj.name_any(), namespace = ?obj.namespace(), %error, failures, retry_in = ?delay, "reconcile failed");
    let note = error.to_string();
    tokio::spawn(async move {
        ctx.publish(
            &*obj,
            EventType::Warning,
            "ReconcileFailed",
            "Reconcile",
            note,
        )
        .await;
    });
    Action::requeue(delay)
}

/// Default lease timings: a lease of 15 s renewed 5 s before it expires.
pub const LEASE_SECONDS: u64 = 15;
pub const RENEW_GRACE_SECONDS: u64 = 5;

/// How long `run` waits for controllers to finish in-flight work after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long controllers get to stop by themselves before they are dropped (less than
/// `SHUTDOWN_GRACE`, so that the lease is still released).
pub const FORCE_STOP_AFTER: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_keep_neither_managed_fields_nor_the_last_applied_copy() {
        let mut grant: AccessGrant = serde_json::from_value(serde_json::json!({
            "apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": "g", "namespace": "team",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "payments"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"connectorRef": {"name": "org"}, "principal": {"kind": "SsoUser", "name": "a"},
                     "target": {"kind": "SsoGroupMembership", "group": "g"}}}))
        .expect("grant");
        slim(&mut grant);
        assert_eq!(grant.metadata.managed_fields, None);
        let annotations = grant.metadata.annotations.expect("annotations");
        assert_eq!(
            annotations.len(),
            1,
            "other annotations stay: {annotations:?}"
        );
        assert_eq!(annotations["team"], "payments");
    }

    #[test]
    fn the_grants_cache_keeps_no_status_and_the_requests_cache_does() {
        let status = serde_json::json!({"conditions": [{"type": "Ready", "status": "True",
            "reason": "Granted", "message": "granted", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let mut grant: AccessGrant = serde_json::from_value(serde_json::json!({
            "apiVersion": "awsaccess.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": "g", "namespace": "team"},
            "spec": {"connectorRef": {"name": "org"}, "principal": {"kind": "SsoUser", "name": "a"},
                     "target": {"kind": "SsoGroupMembership", "group": "g"}},
            "status": status}))
        .expect("grant");
        assert!(grant.status.is_some());
        cached_copy(&mut grant);
        assert_eq!(grant.status, None);
        // The status is boxed: a cached grant without one does not carry its room either.
        assert!(
            std::mem::size_of::<AccessGrant>() < 700,
            "an AccessGrant is {} bytes",
            std::mem::size_of::<AccessGrant>()
        );
        // Requests, short-lived and far fewer than grants, keep their status in the cache.
        const { assert!(<AccessRequest as ConnectorUser>::STATUS_CACHED) };
    }

    #[test]
    fn a_sync_that_found_nothing_new_does_not_wake_what_names_the_connector() {
        let connector = |ready: &str, finished: &str, accounts: u64| -> AwsConnector {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
                "metadata": {"name": "org", "namespace": "platform", "generation": 3},
                "spec": {"region": "us-east-1", "auth": {}},
                "status": {
                    "conditions": [{"type": "Ready", "status": ready, "reason": "Ready",
                        "message": format!("synced at {finished}"),
                        "lastTransitionTime": finished}],
                    "lastSync": {"finishedAt": finished, "durationSeconds": 2},
                    "inventory": {"accounts": accounts, "ssoUsers": 1, "ssoGroups": 1,
                        "permissionSets": 1, "assignments": 1, "iamUsers": 1, "iamGroups": 1,
                        "iamRoles": 1, "unmanagedAssignments": 0}}
            }))
            .expect("connector")
        };
        let sees = what_users_see::<AccessGrant>;
        let before = sees(&connector("True", "2026-01-01T00:00:00Z", 4));
        assert_eq!(
            before,
            sees(&connector("True", "2026-01-01T00:10:00Z", 4)),
            "only the times of the sync changed"
        );
        assert_ne!(before, sees(&connector("False", "2026-01-01T00:10:00Z", 4)));
        assert_ne!(
            before,
            sees(&connector("True", "2026-01-01T00:10:00Z", 5)),
            "a new account"
        );
        let mut moved = connector("True", "2026-01-01T00:00:00Z", 4);
        moved.metadata.labels =
            Some([("awsaccess.io/shard".to_string(), "green".to_string())].into());
        assert_ne!(before, sees(&moved), "a new shard");

        // New assignments and sign-ins: nothing a grant or a request names, though a declared
        // permission set (which provisions where it is assigned) looks again.
        let mut busier = connector("True", "2026-01-01T00:10:00Z", 4);
        if let Some(inventory) = busier.status.as_mut().and_then(|s| s.inventory.as_mut()) {
            inventory.assignments += 10;
            inventory.unmanaged_assignments += 1;
            inventory.sso_users_signed_in += 3;
            inventory.undeclared_access_paths += 2;
        }
        assert_eq!(before, sees(&busier), "grants do not look again");
        assert_eq!(
            what_users_see::<AccessRequest>(&connector("True", "2026-01-01T00:00:00Z", 4)),
            what_users_see::<AccessRequest>(&busier),
            "requests do not look again"
        );
        assert_ne!(
            what_users_see::<PermissionSet>(&connector("True", "2026-01-01T00:00:00Z", 4)),
            what_users_see::<PermissionSet>(&busier),
            "permission sets do"
        );
        let mut new_user = connector("True", "2026-01-01T00:10:00Z", 4);
        if let Some(inventory) = new_user.status.as_mut().and_then(|s| s.inventory.as_mut()) {
            inventory.sso_users += 1;
        }
        assert_ne!(
            before,
            sees(&new_user),
            "a new user: grants waiting for it look again"
        );
    }

    #[test]
    fn secrets_are_watched_only_where_connectors_are_served() {
        let served = vec!["platform".to_string(), "aws".to_string()];
        assert_eq!(secret_scopes(None, &[]), [None]);
        assert_eq!(
            secret_scopes(None, &served),
            [Some("platform".to_string()), Some("aws".to_string())]
        );
        assert_eq!(
            secret_scopes(Some("platform"), &served),
            [Some("platform".to_string())]
        );
        assert!(secret_scopes(Some("team-a"), &served).is_empty());
        assert_eq!(
            secret_scopes(Some("team-a"), &[]),
            [Some("team-a".to_string())]
        );
        assert_eq!(scope_names(&[]), [None]);
    }
}
