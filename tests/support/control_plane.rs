//! A real Kubernetes control plane for the tests: etcd and kube-apiserver, built by
//! `controlplane/build.sh` from the Go module proxy and started by its harness on loopback
//! ports. One is shared by every test of this binary (each test in a namespace of its own, as
//! envtest does); a test that needs an outage or other server flags starts its own.
//!
//! The harness runs until its standard input closes. This process holds the write end, so the
//! control plane stops (API server first, then etcd) when the tests end, however they end:
//! the kernel closes the pipe of a process that exited, panicked or was killed.
//!
//! `TEST_KUBERNETES_VERSION` picks the version (`1.37`, the default, or `1.30`, the oldest the
//! chart supports); `KUBEBUILDER_ASSETS` replaces the built servers with envtest's binaries.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize;

/// What the harness reports once the API server is ready.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub kubeconfig: PathBuf,
    pub server: String,
    pub etcd: String,
    pub audit_log: PathBuf,
    pub dir: PathBuf,
    pub version: String,
}

pub struct ControlPlane {
    pub endpoints: Endpoints,
    /// The binaries (kubectl and helm among them).
    pub bin: PathBuf,
    child: Mutex<Option<(Child, ChildStdin)>>,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Kubernetes version the tests run against.
pub fn version() -> String {
    std::env::var("TEST_KUBERNETES_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "1.37".to_string())
}

/// The directory of the control plane's binaries, built at the first call (seconds when
/// `make test` built them already).
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo().join("controlplane/build.sh"))
            .arg(version())
            .stderr(Stdio::inherit())
            .output()
            .expect("run controlplane/build.sh");
        assert!(
            output.status.success(),
            "controlplane/build.sh {} failed",
            version()
        );
        let text = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(
            text.lines()
                .last()
                .expect("build.sh prints the bin directory"),
        )
    })
}

impl ControlPlane {
    /// The control plane every test of this binary shares, with the CRDs installed.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        SHARED.get_or_init(|| ControlPlane::start(&[], true))
    }

    /// A control plane of the caller's own, stopped when dropped; `apiserver_args` are extra
    /// kube-apiserver flags.
    pub fn start(apiserver_args: &[&str], crds: bool) -> ControlPlane {
        let bin = bin().to_path_buf();
        let mut command = Command::new(bin.join("harness"));
        command.arg("--bin").arg(&bin).arg("--watch-stdin");
        if crds {
            command.arg("--crds").arg(repo().join("crds"));
        }
        for arg in apiserver_args {
            command.arg(format!("--apiserver-arg={arg}"));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the control plane harness");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let line = super::first_line(stdout, Duration::from_secs(180));
        let endpoints: Endpoints = match serde_json::from_str(&line) {
            Ok(endpoints) => endpoints,
            Err(_) => {
                drop(stdin);
                let _ = child.wait();
                panic!(
                    "the control plane did not start (first line {line:?}); the harness said why on stderr"
                );
            }
        };
        ControlPlane {
            endpoints,
            bin,
            child: Mutex::new(Some((child, stdin))),
        }
    }

    /// A client with the admin's credentials.
    pub async fn client(&self) -> Client {
        client_from(&self.endpoints.kubeconfig).await
    }

    /// Compacts etcd's history up to its current revision, as the API server does every five
    /// minutes: watches that resume from before it are answered 410 Gone (when the API server
    /// runs without its watch cache, `--watch-cache=false`; with it, the cache keeps history
    /// of its own).
    pub fn compact(&self) {
        let etcd = &self.endpoints.etcd;
        let (status, body) = super::http::request(
            "POST",
            &format!("{etcd}/v3/kv/range"),
            r#"{"key":"AA==","limit":1}"#,
        )
        .expect("read etcd's revision");
        assert_eq!(status, 200, "{body}");
        let revision = json_in(&body)["header"]["revision"]
            .as_str()
            .expect("etcd's revision")
            .to_string();
        let (status, body) = super::http::request(
            "POST",
            &format!("{etcd}/v3/kv/compaction"),
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )
        .expect("compact etcd");
        assert_eq!(status, 200, "{body}");
    }

    /// Stops the control plane and waits until both servers are gone.
    pub fn stop(&self) {
        let taken = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The JSON object in an HTTP body (which may come in chunks).
fn json_in(body: &str) -> serde_json::Value {
    let (start, end) = (
        body.find('{').unwrap_or(0),
        body.rfind('}').map_or(body.len(), |i| i + 1),
    );
    serde_json::from_str(&body[start..end]).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A client for the cluster a kubeconfig file names.
pub async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()));
    Client::try_from(config).expect("client")
}
