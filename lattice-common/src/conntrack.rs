//! Flows the kernel has translated: one entry per direction.

/// `LT_CT_V1`: LRU hash [`FlowKey`] -> [`Nat`]. Written by tc ingress when it opens a
/// flow (both directions at once: the client's packets, keyed by the client VPC's view,
/// and the target's replies, keyed by the target VPC's view); read by tc ingress for
/// every later packet. Pinned, so established flows survive agent restarts; the agent
/// never flushes it. Max entries: [`DEFAULT_CT_ENTRIES`] as compiled (one flow takes two);
/// the agent sizes it at load time (`--max-flows`).
pub const CT_MAP: &str = "LT_CT_V1";

/// Entries of the conntrack map unless the agent says otherwise: 1 M flows, two
/// directions each.
pub const DEFAULT_CT_ENTRIES: u32 = 2 * 1024 * 1024;

/// A packet's flow as it arrives on a VPC interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The VPC key of the interface the packet arrived on: VPCs with the same CIDR are
    /// told apart by it.
    pub vpc: u32,
    /// Addresses and ports, network order.
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 20);

/// How to rewrite a packet of the flow and where to send it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nat {
    /// New addresses and ports, network order.
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// The interface (host end of a VPC veth) to send it out of.
    pub ifindex: u32,
    /// The listener index (counters).
    pub listener: u32,
    /// The backend id (counters; 0 in the reply direction's entry is never used).
    pub backend: u32,
    /// [`Nat::REPLY`] for the target-to-client direction.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<Nat>() == 28);

impl Nat {
    /// The entry translates replies (target to client).
    pub const REPLY: u32 = 1;
}

crate::user_pod!(FlowKey, Nat);
