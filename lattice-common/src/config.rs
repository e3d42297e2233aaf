//! Host-wide settings the programs read.

/// `LT_CONFIG_V1`: array of one [`DataplaneConfig`] at index 0. Written by the agent at
/// start (before it attaches anything); read by tc ingress on every packet.
pub const CONFIG_MAP: &str = "LT_CONFIG_V1";

/// The address ranges lattice owns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// The VIP pool, network order: a packet whose destination is inside it is for a
    /// listener (or refused).
    pub vip_net: u32,
    pub vip_mask: u32,
    /// Non-zero once the agent has written the config: until then nothing is translated.
    pub enabled: u32,
    /// The agent's own address on every VPC link (network order): the namespaces' next
    /// hop to the VIP pool, and where they reach the agent. IPv4 from a VPC to anything
    /// but the VIP pool, the agent's address or a flow lattice translated is dropped: a
    /// VPC link is no path into the host's networks.
    pub agent_addr: u32,
}

const _: () = assert!(core::mem::size_of::<DataplaneConfig>() == 16);

crate::user_pod!(DataplaneConfig);
