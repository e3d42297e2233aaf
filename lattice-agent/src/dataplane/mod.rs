//! The kernel side of the agent: the bpf filesystem, the embedded object, loading and
//! pinning its programs and maps, attaching programs, and reading the counters.
//!
//! Everything the agent leaves in the kernel lives under one bpffs root (default
//! `/sys/fs/bpf/lattice`, layout in `lattice_common::pins`), so `bpftool` can inspect it
//! and `lattice-agent cleanup` can remove it.

mod bpffs;
mod error;
mod loader;
mod object;

pub use bpffs::{ensure_bpffs, remove_root};
pub use error::DataplaneError;
pub use loader::{Dataplane, TcAttachment};
pub use object::{embedded_object, toolchain_used, MapSpec};
