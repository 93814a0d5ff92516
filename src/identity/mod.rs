//! Users and groups without I/O, and the one shell that carries them out: what each is on both
//! sides and the writes between them (shape.rs), the operator's record of each (record.rs),
//! the connector's identityPolicy (policy.rs), and the shell that creates, converges and
//! deletes them in AWS (execute.rs).

pub mod execute;
pub mod policy;
pub mod record;
pub mod shape;
