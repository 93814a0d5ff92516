//! Integration tests: real controllers against a real Kubernetes API server (the local control
//! plane, or the cluster `TEST_KUBECONFIG` names), and AWS behaviour against moto's server.

mod support;

mod access;
mod chart;
mod cli;
mod configmap_store;
mod crds;
mod e2e;
mod grants;
mod iam_policies;
mod identities;
mod idle_memory;
mod leadership;
mod member_accounts;
mod moto_launcher;
mod operator_process;
mod organizations;
mod permission_sets;
mod plan;
mod rbac;
mod reconcile_cost;
mod request_notices;
mod request_trust;
mod requests;
mod restart;
mod shards;
mod sync;
mod unit_grants;
