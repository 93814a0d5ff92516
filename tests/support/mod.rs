//! Real components for the tests: a real Kubernetes control plane (or the cluster named by
//! `TEST_KUBECONFIG`) and moto's server behind the project's launcher.

#![allow(dead_code)]

pub mod audit;
pub mod cluster;
pub mod control_plane;
pub mod http;
pub mod moto;
pub mod operator;
pub mod receiver;
pub mod service_account;
pub mod tools;
pub mod wait;

/// The first line a child process writes on `stdout`, or an empty string if none comes within
/// `timeout`.
pub fn first_line(stdout: std::process::ChildStdout, timeout: std::time::Duration) -> String {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout).unwrap_or_default()
}
