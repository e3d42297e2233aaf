//! Where the agent pins its kernel objects.
//!
//! The layout under the bpffs root (default `/sys/fs/bpf/lattice`):
//!
//! | path | what |
//! | --- | --- |
//! | `<root>/<MAP_NAME>` | every map, by its versioned name (`bpftool map dump pinned ...`) |
//! | `<root>/progs/<program>` | every loaded program (`bpftool prog show pinned ...`) |
//! | `<root>/links/<attachment>` | links that keep programs attached across agent restarts |

/// The default bpffs root of a production agent.
pub const DEFAULT_BPFFS_ROOT: &str = "/sys/fs/bpf/lattice";
/// Sub-directory of the root holding pinned programs.
pub const PROGS_DIR: &str = "progs";
/// Sub-directory of the root holding pinned links.
pub const LINKS_DIR: &str = "links";

/// Names of the programs in the object, one per hook.
pub mod programs {
    /// tc ingress on the host end of every VPC veth: per-interface accounting.
    pub const TC_INGRESS: &str = "lt_tc_ingress";
    /// Every program the object must contain; the agent refuses an object lacking one.
    pub const ALL: &[&str] = &[TC_INGRESS];
}
