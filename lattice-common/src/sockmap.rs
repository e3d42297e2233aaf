//! Socket-level acceleration: when both ends of a TCP connection are sockets on this
//! host (a client and the agent's proxy, the proxy and a local target, a host client and
//! a host target behind a TCP listener), sock_ops records them in a SOCKHASH and sk_msg
//! hands each message straight to the peer socket's receive queue, skipping the TCP/IP
//! stack.
//!
//! The peer reads redirected bytes before bytes that came through TCP, so a direction
//! switches to redirecting only when nothing it wrote through TCP is still unread: its
//! own `write_seq` equals its `snd_una` (everything sent was acknowledged) and the
//! peer's `copied_seq` equals its `rcv_nxt` (the peer read all of it). Switching back to
//! TCP is always safe. A direction goes back to TCP when the peer is gone or has more
//! unread redirected bytes than its limit: the kernel does not hold a redirecting sender
//! back, so that is where TCP's flow control takes over again.

/// `LT_SOCKS_V1`: SOCKHASH, [`SockKey`] -> socket. Written by sock_ops when a TCP socket of an attached cgroup
/// is established and one of its ends is a lattice endpoint ([`ENDPOINTS_MAP`]); read
/// by sk_msg, which looks up the peer of the sending socket (the mirrored key). The
/// kernel removes a socket when it is closed, so no stale entry remains. Max entries:
/// [`MAX_SOCKETS`].
pub const SOCKS_MAP: &str = "LT_SOCKS_V1";
/// `LT_SKCFG_V1`: array of one [`SockmapConfig`]. Written by the agent at start; read
/// by sock_ops (inserting at all) and sk_msg (starting to redirect at all).
pub const CONFIG_MAP: &str = "LT_SKCFG_V1";
/// `LT_SKEPS_V1`: hash, [`Endpoint`] -> kind (`u32`, [`endpoint`]). The addresses
/// lattice's hops connect to: every listener's VIP:port and every target's
/// address:port. Written by the agent from its document; read by sock_ops, which only
/// records sockets with a local or remote end here. Max entries: [`MAX_ENDPOINTS`].
pub const ENDPOINTS_MAP: &str = "LT_SKEPS_V1";
/// `LT_SKSTATE_V1`: socket storage, one [`SockState`] per recorded socket. Written by
/// sock_ops when it records a socket and by sk_msg when the socket's messages change
/// path; freed by the kernel with the socket.
pub const STATE_MAP: &str = "LT_SKSTATE_V1";
/// `LT_SKPEERS_V1`: LRU hash, [`SockKey`] -> [`PeerInfo`]: where each recorded socket
/// lives in kernel memory, so that the socket sending to it can read its receive state.
/// Written by sock_ops with the SOCKHASH entry; read by sk_msg, which checks that the
/// entry is its peer's (the sequence numbers match) before using it. Max entries:
/// [`MAX_PEERS`]; entries of closed sockets go when newer ones need the room.
pub const PEERS_MAP: &str = "LT_SKPEERS_V1";
/// `LT_SKCONNS_V1`: LRU hash, [`ConnId`] -> `u32` (1). Written by sk_msg when one end
/// of a connection first redirects (the first end only: the insert fails for the
/// second), so each accelerated connection is counted once. Max entries:
/// [`MAX_CONNS`]; the least recently used go first.
pub const CONNS_MAP: &str = "LT_SKCONNS_V1";
/// `LT_SKSTATS_V1`: per-CPU array of one [`SockmapCounters`]. Written by sock_ops and
/// sk_msg; read by the agent (`lattice-agent maps`), which sums the CPUs.
pub const STATS_MAP: &str = "LT_SKSTATS_V1";

pub const MAX_SOCKETS: u32 = 65536;
pub const MAX_ENDPOINTS: u32 = 65536;
pub const MAX_CONNS: u32 = 16384;
pub const MAX_PEERS: u32 = 2 * MAX_SOCKETS;
/// Unread redirected bytes a receiving socket may hold before its senders go back to
/// TCP, unless its receive buffer is larger (the agent writes the host's
/// `net.ipv4.tcp_rmem` maximum when it is larger than this).
pub const DEFAULT_BACKLOG_LIMIT: u32 = 4 * 1024 * 1024;

/// One end of a connection as seen from a socket: its network namespace and its local
/// and remote address and port. The peer socket of the same connection has the same
/// namespace with local and remote swapped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockKey {
    /// The socket's network namespace cookie: two VPC namespaces may use the same
    /// addresses.
    pub netns: u64,
    /// Addresses and ports, network order.
    pub local_addr: u32,
    pub remote_addr: u32,
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<SockKey>() == 24);

impl SockKey {
    /// The key the peer socket of the same connection has.
    pub const fn mirrored(&self) -> SockKey {
        SockKey {
            netns: self.netns,
            local_addr: self.remote_addr,
            remote_addr: self.local_addr,
            local_port: self.remote_port,
            remote_port: self.local_port,
            _pad: 0,
        }
    }
}

/// Host-wide switches, and the kernel layout facts sk_msg needs: byte offsets of fields
/// of `struct tcp_sock` and `struct sock`, from the running kernel's BTF (they differ
/// between kernels). An offset of zero means unknown: then nothing starts redirecting.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockmapConfig {
    /// Non-zero: sock_ops records sockets and sk_msg starts redirecting. Zero
    /// (`--no-sockmap`): nothing new is accelerated; directions already redirecting go
    /// on until they close.
    pub enabled: u32,
    /// Unread redirected bytes a receiver may hold (see [`DEFAULT_BACKLOG_LIMIT`]).
    pub backlog_limit: u32,
    /// `tcp_sock.write_seq`, `snd_una`, `copied_seq`, `rcv_nxt`.
    pub write_seq: u32,
    pub snd_una: u32,
    pub copied_seq: u32,
    pub rcv_nxt: u32,
    /// `sock.sk_backlog.rmem_alloc` (`sk_rmem_alloc`: the kernel charges redirected
    /// bytes there) and `sock.sk_rcvbuf`.
    pub rmem_alloc: u32,
    pub rcvbuf: u32,
}

const _: () = assert!(core::mem::size_of::<SockmapConfig>() == 32);

impl SockmapConfig {
    /// Whether every offset is known.
    pub const fn layout_known(&self) -> bool {
        self.write_seq != 0
            && self.snd_una != 0
            && self.copied_seq != 0
            && self.rcv_nxt != 0
            && self.rmem_alloc != 0
            && self.rcvbuf != 0
    }
}

/// A recorded socket's kernel address, and the sequence numbers that tell whether an
/// entry is still the one of a given connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The socket's `struct sock` address.
    pub sk: u64,
    /// The socket's [`SockState::snd_start`] and [`SockState::rcv_start`].
    pub snd_start: u32,
    pub rcv_start: u32,
}

const _: () = assert!(core::mem::size_of::<PeerInfo>() == 16);

/// A lattice endpoint: an address and port some hop of lattice connects to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Network order.
    pub addr: u32,
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<Endpoint>() == 8);

/// Kinds of [`Endpoint`] (a bit set: a VIP may also be a target's address).
pub mod endpoint {
    /// A listener's VIP:port (clients connect to it; the agent accepts on it).
    pub const LISTENER: u32 = 1;
    /// A target's address:port (the agent or a host client connects to it).
    pub const TARGET: u32 = 2;
}

/// What lattice knows about one recorded socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockState {
    /// `snd_nxt` when the socket was established.
    pub snd_start: u32,
    /// `rcv_nxt` when the socket was established (the peer's `snd_start`).
    pub rcv_start: u32,
    /// Bits: [`SockState::REDIRECTING`], [`SockState::EVER_REDIRECTED`].
    pub flags: u32,
    pub _pad: u32,
    /// The peer socket's address once found in [`PEERS_MAP`] (0 before): sk_msg then
    /// needs no lookup per message.
    pub peer_sk: u64,
}

const _: () = assert!(core::mem::size_of::<SockState>() == 24);

impl SockState {
    /// The socket's messages go to the peer socket now.
    pub const REDIRECTING: u32 = 1;
    /// Some of the socket's messages went to the peer socket (the connection is
    /// counted).
    pub const EVER_REDIRECTED: u32 = 2;
}

/// One connection, the same from both ends: the namespace, the two ends ordered by
/// address and port, and each end's initial sequence number (so a 4-tuple reused by a
/// later connection is another id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub netns: u64,
    pub low_addr: u32,
    pub high_addr: u32,
    pub low_port: u16,
    pub high_port: u16,
    pub low_seq: u32,
    pub high_seq: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<ConnId>() == 32);

/// Acceleration counters of one CPU. The agent sums them over CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockmapCounters {
    /// Sockets sock_ops recorded in the SOCKHASH.
    pub sockets: u64,
    /// Records that failed (the SOCKHASH is full, say).
    pub insert_errors: u64,
    /// Connections whose messages went socket to socket (counted once, by the first
    /// end that redirected).
    pub connections: u64,
    /// Messages and bytes sk_msg handed to the peer socket.
    pub redirected_msgs: u64,
    pub redirected_bytes: u64,
    /// Messages and bytes of recorded sockets that went through TCP (the peer is no
    /// socket lattice recorded, or the direction's earlier TCP bytes are unread, or the
    /// peer holds too many unread bytes). A lower bound: after a write TCP could not
    /// take at once (EAGAIN), the kernel applies the last verdict to the next write
    /// without running sk_msg.
    pub normal_msgs: u64,
    pub normal_bytes: u64,
    /// Of those, messages sent through TCP because the peer held more unread
    /// redirected bytes than its limit (TCP's flow control takes over).
    pub throttled_msgs: u64,
}

const _: () = assert!(core::mem::size_of::<SockmapCounters>() == 64);

impl SockmapCounters {
    /// Adds another CPU's counters.
    pub fn add(&mut self, o: &SockmapCounters) {
        self.sockets = self.sockets.wrapping_add(o.sockets);
        self.insert_errors = self.insert_errors.wrapping_add(o.insert_errors);
        self.connections = self.connections.wrapping_add(o.connections);
        self.redirected_msgs = self.redirected_msgs.wrapping_add(o.redirected_msgs);
        self.redirected_bytes = self.redirected_bytes.wrapping_add(o.redirected_bytes);
        self.normal_msgs = self.normal_msgs.wrapping_add(o.normal_msgs);
        self.normal_bytes = self.normal_bytes.wrapping_add(o.normal_bytes);
        self.throttled_msgs = self.throttled_msgs.wrapping_add(o.throttled_msgs);
    }
}

crate::user_pod!(
    SockKey,
    SockmapConfig,
    PeerInfo,
    Endpoint,
    SockState,
    ConnId,
    SockmapCounters
);
