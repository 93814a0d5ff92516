//! The real binary's `run` against the API server: health endpoints, metrics, leadership, and
//! a graceful stop on SIGTERM that releases the lease.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::support::cluster::{TestCluster, kubeconfig};
use crate::support::wait;

/// The operator's stderr, read line by line as it is written: the pipe never fills (a full
/// pipe would stop the process at its next log line), and the test can wait for a line.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(pipe: impl Read + Send + 'static) -> (Self, std::thread::JoinHandle<()>) {
        let lines = Lines::default();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                sink.0.lock().expect("log lines").push(line);
            }
        });
        (lines, reader)
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().expect("log lines").clone()
    }
}

/// The port the health server bound, from its JSON log line: the operator is started on port
/// 0, because a port picked beforehand can be taken by another test's server before the
/// operator binds it.
fn bound_port(lines: &Lines) -> Option<u16> {
    lines.all().iter().find_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        let message = entry.get("message")?.as_str()?;
        if !message.starts_with("serving /healthz") {
            return None;
        }
        let addr: std::net::SocketAddr = entry.get("addr")?.as_str()?.parse().ok()?;
        Some(addr.port())
    })
}

/// A minimal HTTP GET; returns (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

#[tokio::test]
async fn serves_health_and_stops_gracefully_on_sigterm() {
    let cluster = TestCluster::start("process").await;
    let ns = cluster.namespace.as_str();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aws-access-operator"))
        .args([
            "run",
            "--namespaces",
            ns,
            "--lease-namespace",
            ns,
            "--identity",
            "pod-1",
        ])
        .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
        .env("KUBECONFIG", kubeconfig())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .env_remove("WATCH_NAMESPACES")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the operator");
    let (lines, reader) = Lines::follow(child.stderr.take().expect("stderr"));

    let port = wait::until(
        "the health server's address in the log",
        Duration::from_secs(30),
        || async { bound_port(&lines) },
    )
    .await;
    let (status, _) = wait::until("/readyz", Duration::from_secs(30), || async {
        get(port, "/readyz").filter(|(status, _)| *status == 200)
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    let metrics = wait::until(
        "leadership in /metrics",
        Duration::from_secs(30),
        || async {
            get(port, "/metrics")
                .filter(|(_, body)| body.lines().any(|l| l == "aws_access_operator_leader 1"))
                .map(|r| r.1)
        },
    )
    .await;
    assert!(metrics.contains("# EOF"), "OpenMetrics text");

    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), ns);
    wait::until(
        "the lease to name pod-1",
        Duration::from_secs(30),
        || async {
            let held = leases.get("aws-access-operator").await.ok()?;
            (held.spec?.holder_identity.as_deref() == Some("pod-1")).then_some(())
        },
    )
    .await;

    // SIGTERM, as the kubelet sends it, to the process this test started.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator did not stop within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    reader.join().expect("the log reader");
    let stderr = lines.all().join("\n");
    assert!(exit.success(), "exit {exit:?}; logs:\n{stderr}");
    for line in stderr.lines() {
        let _: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
    }
    assert!(stderr.contains("released the leader lease"), "{stderr}");
    let released = leases.get("aws-access-operator").await.expect("lease");
    assert_eq!(
        released.spec.and_then(|s| s.holder_identity),
        None,
        "the lease is free for the next leader"
    );
}
