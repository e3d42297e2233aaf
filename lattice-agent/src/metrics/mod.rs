//! Metrics in Prometheus' text format, on the address of `--metrics-addr`.
//!
//! | module | concern |
//! | --- | --- |
//! | [`counters`] | the proxy's counters per service and target group (atomic, lock-free) |
//! | [`render`] | the exposition: Lattice's metric names and dimensions, with the kernel's counters and target health |
//! | [`serve`] | the HTTP endpoint (`GET /metrics`) |

pub mod counters;
pub mod render;
pub mod serve;

pub use counters::{ConnectionGuard, ProxyMetrics};
