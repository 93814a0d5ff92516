//! Integration tests: real controllers against the Kubernetes API emulator (or a real cluster),
//! and AWS behaviour against moto's server.

mod support;

mod access;
mod apiserver_behaviour;
mod cli;
mod configmap_store;
mod e2e;
mod grants;
mod iam_policies;
mod idle_memory;
mod leadership;
mod member_accounts;
mod moto_launcher;
mod operator_process;
mod plan;
mod rbac;
mod restart;
mod sync;
mod unit_grants;
