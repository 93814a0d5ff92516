//! PermissionSets without I/O, and the one shell that carries them out: what a set is on both
//! sides and the writes between them (shape.rs), the connector's permissionSetPolicy
//! (policy.rs), the operator's record of each set (record.rs), and the shell that
//! converges, provisions and deletes them in AWS (execute.rs).

pub mod diff;
pub mod execute;
pub mod policy;
pub mod record;
pub mod shape;
