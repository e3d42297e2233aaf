//! Per-interface packet accounting on the interfaces lattice attaches to.

/// `LT_IFSTATS_V1`: ifindex (`u32`) -> [`IfaceCounters`], per CPU.
/// Written by the tc ingress program (it creates an interface's entry on its first
/// packet); read by the agent, which sums the CPUs. The agent deletes the entry of an
/// interface it detaches from. Max entries: [`MAX_INTERFACES`].
pub const MAP_NAME: &str = "LT_IFSTATS_V1";

/// How many interfaces one host can have lattice programs on.
pub const MAX_INTERFACES: u32 = 4096;

/// Counters of one interface on one CPU. The agent sums them over CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    /// Packets seen at tc ingress.
    pub packets: u64,
    /// Bytes of those packets (skb length, L2 header included).
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<IfaceCounters>() == 16);

impl IfaceCounters {
    /// Adds another CPU's counters to these.
    pub fn add(&mut self, other: &IfaceCounters) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

crate::user_pod!(IfaceCounters);
