//! aws-access-operator: manages access to AWS (IAM Identity Center and IAM) from Kubernetes.

pub mod api;
pub mod aws;
pub mod cli;
pub mod connect;
pub mod controller;
pub mod crd;
pub mod effective;
pub mod fence;
pub mod fingerprint;
pub mod grant;
pub mod identity;
pub mod manifest;
pub mod permission_set;
pub mod records;
pub mod request;
pub mod shard;
pub mod state_file;
pub mod sync;
pub mod telemetry;
pub mod validate;
