//! The inventory sync: every page of every list call, resumable from the last saved page,
//! with a cache that spares calls on the next sync.

pub mod cache;
pub mod engine;
pub mod inventory;
pub mod schedule;
pub mod state;
pub mod store;
pub mod trust;

pub use engine::{SyncError, SyncOptions, run};
pub use inventory::Inventory;
pub use store::{DirStore, MemoryStore, StateStore, StoreError};

/// One page of a list call.
pub struct Page<T> {
    pub items: T,
    /// The token of the next page; `None` on the last one.
    pub next: Option<String>,
}

impl<T> Page<T> {
    pub fn new(items: T, next: Option<String>) -> Self {
        // Some services return an empty token on the last page.
        Self {
            items,
            next: next.filter(|t| !t.is_empty()),
        }
    }
}
