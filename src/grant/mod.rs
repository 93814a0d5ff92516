//! Access grants: which connector a grant may use, and (in time) planning and applying access.

pub mod access;
pub mod expiry;
pub mod plan;
pub mod policy;
pub mod resolve;
