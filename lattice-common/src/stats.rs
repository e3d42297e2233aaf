//! Per-CPU counters of listeners, backends and refusals. The agent sums the CPUs.

/// `LT_LSTATS_V1`: per-CPU array, listener index -> [`Traffic`]. Written by tc ingress;
/// read by the agent. Max entries: `services::MAX_LISTENERS`.
pub const LISTENER_STATS_MAP: &str = "LT_LSTATS_V1";
/// `LT_BSTATS_V1`: per-CPU array, backend id -> [`Traffic`] (client-to-target direction
/// counts flows). Written by tc ingress; read by the agent.
/// Max entries: `services::MAX_BACKENDS`.
pub const BACKEND_STATS_MAP: &str = "LT_BSTATS_V1";
/// `LT_REFUSED_V1`: per-CPU hash, [`RefusalKey`] -> packets (`u64`). Written by tc
/// ingress when it refuses a packet to a VIP; read by the agent.
/// Max entries: [`MAX_REFUSAL_KEYS`].
pub const REFUSALS_MAP: &str = "LT_REFUSED_V1";

pub const MAX_REFUSAL_KEYS: u32 = 16384;

/// Traffic of a listener or backend on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Flows opened.
    pub connections: u64,
    /// Packets and bytes from clients to targets.
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Packets and bytes from targets to clients.
    pub packets_out: u64,
    pub bytes_out: u64,
}

const _: () = assert!(core::mem::size_of::<Traffic>() == 40);

impl Traffic {
    /// Adds another CPU's counters.
    pub fn add(&mut self, o: &Traffic) {
        self.connections = self.connections.wrapping_add(o.connections);
        self.packets_in = self.packets_in.wrapping_add(o.packets_in);
        self.bytes_in = self.bytes_in.wrapping_add(o.bytes_in);
        self.packets_out = self.packets_out.wrapping_add(o.packets_out);
        self.bytes_out = self.bytes_out.wrapping_add(o.bytes_out);
    }
}

/// Why a packet to a VIP was refused, per VPC.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RefusalKey {
    pub vpc: u32,
    pub reason: u32,
}

const _: () = assert!(core::mem::size_of::<RefusalKey>() == 8);

/// Refusal reasons (`RefusalKey::reason`).
pub mod reason {
    /// No listener at that VIP and port.
    pub const NO_LISTENER: u32 = 1;
    /// The VPC is not associated with a service network holding the service.
    pub const NOT_ASSOCIATED: u32 = 2;
    /// The source is outside the association's allowedCidrs.
    pub const OUTSIDE_ALLOWED_CIDRS: u32 = 3;
    /// The listener has no target that can take new flows.
    pub const NO_BACKEND: u32 = 4;
    /// Every SNAT port tried for the flow was taken.
    pub const NO_SNAT_PORT: u32 = 5;
    /// A host process's connect() picked a target inside a namespace, which host
    /// sockets cannot reach.
    pub const NOT_FROM_HOST: u32 = 6;
    /// A host process connected to the agent's proxy address itself, not to a VIP:
    /// only connect4's rewrite may go there (it stands for the VPC).
    pub const DIRECT_TO_PROXY: u32 = 7;

    /// The reason's name as the agent prints it.
    pub fn name(reason: u32) -> &'static str {
        match reason {
            NO_LISTENER => "no-listener",
            NOT_ASSOCIATED => "not-associated",
            OUTSIDE_ALLOWED_CIDRS => "outside-allowed-cidrs",
            NO_BACKEND => "no-backend",
            NO_SNAT_PORT => "no-snat-port",
            NOT_FROM_HOST => "target-not-reachable-from-host",
            DIRECT_TO_PROXY => "direct-to-proxy",
            _ => "unknown",
        }
    }
}

crate::user_pod!(Traffic, RefusalKey);
