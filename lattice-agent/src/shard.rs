//! Which part of a sharded structure a thread writes. State that every request updates
//! (the metrics' counters, the access log buffers) is split into [`SHARDS`] parts, each
//! on cache lines of its own, and a thread always writes the same part, as Envoy's
//! per-thread stats or the kernel's per-CPU maps do: a write to a line another core
//! wrote last costs a cache-line transfer, and two worker threads serving the same
//! service would otherwise make one on every write. Readers combine the parts.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Parts per structure: enough for the worker threads of a small host to write apart
/// (more threads share parts, which is correct, only slower).
pub const SHARDS: usize = 4;

/// The part this thread writes: threads take turns as they first write.
pub fn index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    SHARD.try_with(|s| *s).unwrap_or(0)
}
