//! Just-in-time access: what a connector's requestPolicy allows, where a request stands, and
//! the operator's own record of it. The controller (`controller::request`) carries the access
//! out through the same ledger and shell as grants, with the request as the holder.

pub mod lifecycle;
pub mod notice;
pub mod policy;
pub mod record;
pub mod trust;
