//! Real components for the tests: a real Kubernetes control plane (or the cluster named by
//! `TEST_KUBECONFIG`) and moto's server behind the project's launcher.

#![allow(dead_code)]

pub mod audit;
pub mod cluster;
pub mod control_plane;
pub mod http;
pub mod moto;
pub mod operator;
pub mod service_account;
pub mod tools;
pub mod wait;
