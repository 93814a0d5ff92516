//! The inventory sync: every page of every list call, resumable from the last saved page,
//! with a cache that spares calls on the next sync.

pub mod cache;
pub mod census;
pub mod engine;
pub mod facts;
pub mod fetch;
pub mod intern;
pub mod inventory;
pub mod schedule;
pub mod state;
pub mod store;
pub use crate::aws::trust;

pub use engine::{SyncError, SyncOptions, run, run_until};
pub use inventory::Inventory;
pub use store::{DirStore, NoStore, StateStore, StoreError};

pub use crate::aws::model::Page;
