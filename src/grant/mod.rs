//! Access grants: resolving names, the connector's policy, expiry, the ownership ledger, the
//! pure decision core, the shell that carries decisions out in AWS, and the listings grants
//! of one connector share.

pub mod access;
pub mod decide;
pub mod execute;
pub mod expiry;
pub mod ledger;
pub mod observations;
pub mod plan;
pub mod policy;
pub mod resolve;
pub mod units;
