//! Host processes in VPC cgroups: socket-level load balancing at connect() time.

/// `LT_CGROUPS_V1`: cgroup id (`u64`, the cgroup2 directory's inode) -> VPC key (`u32`).
/// Written by the agent before it attaches the cgroup programs to that cgroup; read by
/// connect4, which looks up the calling task's cgroup and its ancestors (a process in a
/// sub-cgroup belongs to the attached cgroup's VPC). Max entries: [`MAX_CGROUPS`].
pub const CGROUPS_MAP: &str = "LT_CGROUPS_V1";
/// `LT_SOCKVIP_V1`: LRU hash, socket cookie (`u64`) -> [`SockVip`]: the VIP a socket
/// connected to before connect4 rewrote it to a target. Written by connect4; read by
/// getpeername4, which gives the application the VIP back. Max entries:
/// [`MAX_SOCKETS`].
pub const SOCKVIP_MAP: &str = "LT_SOCKVIP_V1";

pub const MAX_CGROUPS: u32 = 1024;
pub const MAX_SOCKETS: u32 = 262_144;
/// How many cgroup levels connect4 walks up from the caller's cgroup.
pub const MAX_CGROUP_DEPTH: i32 = 16;

/// The address a socket asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockVip {
    /// VIP, network order.
    pub vip: u32,
    /// Port, network order.
    pub port: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<SockVip>() == 8);

crate::user_pod!(SockVip);
