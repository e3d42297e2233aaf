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
    /// tc ingress on the host end of every VPC veth: the kernel TCP path.
    pub const TC_INGRESS: &str = "lt_tc_ingress";
    /// cgroup connect4 of VPC cgroups: socket-level load balancing for host processes.
    pub const CONNECT4: &str = "lt_connect4";
    /// cgroup getpeername4 of VPC cgroups: gives applications the VIP back.
    pub const GETPEERNAME4: &str = "lt_getpeername4";
    /// sock_ops of the agent's cgroup, VPC cgroups and `--sockmap-cgroup`s: records
    /// established sockets of lattice's hops in the SOCKHASH.
    pub const SOCK_OPS: &str = "lt_sock_ops";
    /// sk_msg on the SOCKHASH: hands messages socket to socket.
    pub const SK_MSG: &str = "lt_sk_msg";
    /// Every program the object must contain; the agent refuses an object lacking one.
    pub const ALL: &[&str] = &[TC_INGRESS, CONNECT4, GETPEERNAME4, SOCK_OPS, SK_MSG];
}
