//! Host processes in VPC cgroups: socket-level load balancing at connect() time.

/// `LT_CGROUPS_V1`: cgroup id (`u64`, the cgroup2 directory's inode) -> VPC key (`u32`).
/// Written by the agent before it attaches the cgroup programs to that cgroup; read by
/// connect4, which looks up the calling task's cgroup and its ancestors (a process in a
/// sub-cgroup belongs to the attached cgroup's VPC). Max entries: [`MAX_CGROUPS`].
pub const CGROUPS_MAP: &str = "LT_CGROUPS_V1";
/// `LT_SOCKVIP_V1`: LRU hash, socket cookie (`u64`) -> [`SockVip`]: the VIP a socket
/// connected to before connect4 rewrote it to a target or the agent's proxy. Written
/// by connect4 (each time it rewrites); read by getpeername4, which gives the
/// application the VIP back, and by connect4 for a connect() to the proxy address.
/// Max entries: [`MAX_SOCKETS`].
pub const SOCKVIP_MAP: &str = "LT_SOCKVIP_V1";

/// `LT_HOSTSITES_V1`: hash, [`HostSiteKey`] -> [`HostSite`]: the HTTP, HTTPS and TLS
/// passthrough listeners host processes of a VPC may reach, and where the agent's proxy
/// accepts them for that VPC. Written by the agent when it starts (or stops) serving a
/// site; read by connect4, which rewrites a connect() to the VIP to the proxy's socket
/// (so the agent knows the VPC and the VIP:port by the socket that accepted), and
/// refuses a VPC process's own connect() to [`HOST_PROXY_ADDR`]: only the rewrite gets
/// there. Max entries: [`MAX_HOST_SITES`].
pub const HOSTSITES_MAP: &str = "LT_HOSTSITES_V1";

pub const MAX_CGROUPS: u32 = 1024;
pub const MAX_HOST_SITES: u32 = 16_384;
/// The loopback address the agent's proxy sockets for host processes listen on (one
/// port per site): an address of 127.0.0.0/8 that nothing else uses, so connect4 can
/// tell a rewritten connect() from a process's own. 127.76.65.84: "LAT" on loopback.
pub const HOST_PROXY_ADDR: [u8; 4] = [127, 76, 65, 84];
pub const MAX_SOCKETS: u32 = 262_144;
/// How many cgroup levels connect4 walks up from the caller's cgroup.
pub const MAX_CGROUP_DEPTH: i32 = 16;

/// The address a socket asked for, and where connect4 sent it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockVip {
    /// VIP, network order.
    pub vip: u32,
    /// Port, network order.
    pub port: u16,
    /// The agent's proxy port (on [`HOST_PROXY_ADDR`]) the connect() was rewritten to,
    /// network order; 0 when it went to a target. Only a connect() to this very port
    /// passes connect4 again (two agents' programs during a restart): the entry of a
    /// socket rewritten once is no pass to another VPC's proxy socket. (Was padding,
    /// always 0: the layout is unchanged.)
    pub proxy_port: u16,
}

const _: () = assert!(core::mem::size_of::<SockVip>() == 8);

crate::user_pod!(SockVip);

/// An L7 listener as the host processes of one VPC reach it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostSiteKey {
    /// The caller's VPC key (as in `LT_CGROUPS_V1`).
    pub vpc: u32,
    /// VIP, network order.
    pub vip: u32,
    /// Listener port, network order.
    pub port: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<HostSiteKey>() == 12);

crate::user_pod!(HostSiteKey);

/// Where the agent accepts a host site's connections: `HOST_PROXY_ADDR:port`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSite {
    /// The proxy socket's port, network order.
    pub port: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<HostSite>() == 4);

crate::user_pod!(HostSite);
