//! Gives the heap a burst of reconciliations freed back to the system once the operator is
//! quiet. glibc's allocator keeps freed memory in its arenas for reuse: after 1,000 AccessGrants
//! were applied, half of the idle operator's heap was memory it had freed (measured in
//! docs/performance.md). Once a minute with no reconciliation running, `malloc_trim` returns it.
//! With another allocator this does nothing.

use std::sync::Arc;
use std::time::Duration;

use super::context::Context;
use super::shutdown::Shutdown;

const EVERY: Duration = Duration::from_secs(60);

/// Runs until shutdown.
pub async fn give_back_while_quiet(ctx: Arc<Context>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        if ctx.is_quiet() {
            release_free_heap();
        }
    }
}

/// Allocations of 64 KiB and more get their own mapping, returned to the system when freed.
/// glibc otherwise raises that threshold to the largest block freed so far (up to 32 MiB), so
/// the response buffers of a sync stay in the heap as holes that later, smaller allocations
/// only partly fill: about 0.8 MiB of the largest sync's peak (docs/performance.md, "The
/// largest sync's peak memory").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    // SAFETY: mallopt takes no pointer; it only sets one of the allocator's parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    // SAFETY: malloc_trim takes no pointer; it only returns memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}
