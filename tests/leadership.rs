//! Losing the API server: a leader cut off from it stops writing before another replica can
//! take the lease, and the watches of an operator cut off recover within seconds once it
//! answers again. One replica is cut off by a TCP forwarder in front of the API server that can
//! drop every connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_access_operator::controller::leader::{Election, Timing};
use aws_access_operator::controller::shutdown;
use aws_access_operator::fence::Fence;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};

use aws_access_operator::api::AccessGrant;
use aws_access_operator::api::conditions::Conditions;
use aws_access_operator::controller;
use kube::api::PostParams;
use serde_json::json;

use crate::support::cluster::{TestCluster, kubeconfig};
use crate::support::control_plane::{ControlPlane, client_from};
use crate::support::moto::Moto;
use crate::support::operator::{aws, grant, settings, wait_grant};
use crate::support::wait;

/// A TCP forwarder to an API server that can be cut: every connection through it is dropped,
/// and new ones are refused.
struct Cable {
    addr: SocketAddr,
    /// The client configuration of the server behind it.
    config: kube::Config,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Cable {
    async fn to(config: kube::Config) -> Self {
        let upstream: SocketAddr = tokio::net::lookup_host(
            config
                .cluster_url
                .authority()
                .expect("the server's address")
                .as_str(),
        )
        .await
        .expect("resolve the server")
        .next()
        .expect("an address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cut = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let (cut, connections) = (cut.clone(), connections.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(task.abort_handle());
                }
            }
        });
        Self {
            addr,
            config,
            cut,
            connections,
            accept,
        }
    }

    /// A cable to the cluster a kubeconfig names.
    async fn to_cluster(kubeconfig: &std::path::Path) -> Self {
        let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .expect("kubeconfig");
        Self::to(config).await
    }

    /// A client whose connections go through the cable. It still checks the server's
    /// certificate against the server's own name.
    fn client(&self) -> kube::Client {
        let mut config = self.config.clone();
        let host = config
            .cluster_url
            .host()
            .expect("the server's host")
            .to_string();
        config.tls_server_name.get_or_insert(host);
        config.cluster_url = format!("https://{}", self.addr).parse().expect("url");
        kube::Client::try_from(config).expect("client")
    }

    /// Lets connections through again.
    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for connection in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            connection.abort();
        }
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[tokio::test]
async fn a_leader_cut_off_stops_writing_before_another_can_lead() {
    let cluster = TestCluster::start("leader-cut").await;
    let ns = cluster.namespace.clone();
    let cable = Cable::to_cluster(&kubeconfig()).await;
    let timing = Timing {
        duration: Duration::from_secs(4),
        grace: Duration::from_secs(2),
    };
    let (_trigger, stop) = shutdown::channel();

    let fence_a = Fence::closed();
    let a = Election::new(
        Api::<Lease>::namespaced(cable.client(), &ns),
        "leader",
        "replica-a",
        timing.clone(),
        fence_a.clone(),
    );
    assert!(
        fence_a.check().is_err(),
        "nothing is written before leading"
    );
    assert!(a.acquire(&stop).await);
    assert!(fence_a.check().is_ok(), "the leader may write");

    let fence_b = Fence::closed();
    let b = Election::new(
        Api::<Lease>::namespaced(cluster.client.clone(), &ns),
        "leader",
        "replica-b",
        timing.clone(),
        fence_b.clone(),
    );
    let standby = tokio::spawn({
        let stop = stop.clone();
        async move {
            let led = b.acquire(&stop).await;
            (led, Instant::now())
        }
    });
    let holding = tokio::spawn(async move { a.hold().await });

    // While A renews, B waits, however long.
    tokio::time::sleep(timing.duration * 2).await;
    assert!(!standby.is_finished(), "B must not lead while A renews");
    assert!(fence_a.check().is_ok());
    assert!(fence_b.check().is_err());

    // A loses the API server.
    cable.cut();
    let closed_at = wait::until("A's fence to close", Duration::from_secs(30), || async {
        fence_a.check().is_err().then(Instant::now)
    })
    .await;
    let (led, led_at) = standby.await.expect("join");
    assert!(led, "B takes the lease once A stopped renewing");
    assert!(fence_b.check().is_ok());
    assert!(
        closed_at < led_at,
        "A stopped writing before B could lead ({:?} before)",
        led_at.duration_since(closed_at)
    );
    assert!(fence_a.check().is_err(), "and A stays fenced");
    let why = holding.await.expect("join");
    assert!(why.contains("not renewed"), "{why}");

    // The lease names B now.
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), &ns);
    let lease = leases.get("leader").await.expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("replica-b")
    );
}

/// The operator's watches back off while the API server is unreachable, and the history they
/// would resume from is compacted meanwhile (their resume answers 410 Gone). Once the server
/// answers again, a new AccessGrant is seen within seconds: the waits between retries stay
/// short and start over at the first success, instead of growing to half a minute for the
/// relist that follows the 410 too.
///
/// This test needs the etcd behind the API server, to compact it, and an API server without
/// its watch cache, so that a resume reads etcd's compacted history: it runs a control plane
/// of its own, even when `TEST_KUBECONFIG` names a cluster.
#[tokio::test]
async fn watches_recover_within_seconds_after_an_outage() {
    let moto = Moto::start();
    let plane = ControlPlane::start(&["--watch-cache=false"], true);
    let admin = client_from(&plane.endpoints.kubeconfig).await;
    let cable = Cable::to_cluster(&plane.endpoints.kubeconfig).await;
    let ns = "outage";
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace"),
        )
        .await
        .expect("namespace");
    let mut settings = settings(ns, "replica", aws(&moto).await);
    settings.leader_election = None;
    let (trigger, stop) = shutdown::channel();
    let operator = controller::start(cable.client(), settings, stop)
        .await
        .expect("operator");

    let grants: Api<AccessGrant> = Api::namespaced(admin.clone(), ns);
    let missing_connector = |name: &str| {
        grant(
            name,
            "no-such-connector",
            json!({"kind": "IamUser", "name": "iam-user-00"}),
            json!({"kind": "IamGroupMembership", "group": "iam-group-00"}),
            json!({}),
        )
    };
    grants
        .create(&PostParams::default(), &missing_connector("before"))
        .await
        .expect("grant");
    wait_grant(&grants, "before", "ConnectorNotFound").await;

    // Long enough for retries that double from under a second to reach half a minute apart.
    cable.cut();
    tokio::time::sleep(OUTAGE).await;
    plane.compact();
    cable.mend();

    grants
        .create(&PostParams::default(), &missing_connector("after"))
        .await
        .expect("grant");
    wait::until(
        "the grant created after the outage to be seen",
        RECOVERY,
        || async {
            let grant = grants.get_opt("after").await.ok()??;
            let ready = grant.status?.conditions.condition("Ready")?.clone();
            (ready.reason == "ConnectorNotFound").then_some(())
        },
    )
    .await;
    trigger.fire();
    operator.task.await.expect("join").expect("stop");
}

/// How long the API server is unreachable.
const OUTAGE: Duration = Duration::from_secs(35);
/// How soon after it answers again the operator must be watching: the longest wait between
/// retries (5 s), a relist, and a reconciliation, with room for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(15);
