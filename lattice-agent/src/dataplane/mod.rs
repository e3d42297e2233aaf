//! The kernel side of the agent: the bpf filesystem, the embedded object, loading and
//! pinning its programs and maps, attaching programs, and reading the counters.
//!
//! Everything the agent leaves in the kernel lives under one bpffs root (default
//! `/sys/fs/bpf/lattice`, layout in `lattice_common::pins`), so `bpftool` can inspect it
//! and `lattice-agent cleanup` can remove it.

mod attach;
mod bpffs;
mod btf;
pub mod compile;
pub mod conntrack;
mod error;
mod flows;
mod host_sites;
mod inspect;
mod ip;
mod loader;
mod object;
mod program;
mod reconcile;
mod sockmap;
mod testrun;

pub use attach::{host_link_name, Attachment, NS_LINK};
pub use bpffs::{ensure_bpffs, remove_root};
pub use error::DataplaneError;
pub use inspect::{count_flows, inspect, pinned_interfaces, Inspection};
pub use ip::netns_inode;
pub use ip::{ip as ip_command, peer_netns_of};
pub use loader::{Dataplane, Sizes, TcAttachment};
pub use object::{embedded_object, toolchain_used, MapSpec};
pub use program::{Applied, Programmer};
pub use reconcile::{Reconciler, Synced};
pub use sockmap::{open_pairs, SockmapRow, SockmapStatus};
