//! Real components for the tests: the Kubernetes API emulator (or a real cluster named by
//! `TEST_KUBECONFIG`) and moto's server behind the project's launcher.

#![allow(dead_code)]

pub mod apiserver;
pub mod cluster;
pub mod http;
pub mod moto;
pub mod operator;
pub mod wait;
