//! aws-access-operator: manages access to AWS (IAM Identity Center and IAM) from Kubernetes.

pub mod api;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod grant;
pub mod manifest;
pub mod telemetry;
pub mod validate;
