//! Access grants: which connector a grant may use, and (in time) planning and applying access.

pub mod policy;
