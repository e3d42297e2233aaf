//! Listeners (VIP:port), who may reach them, and the weighted backend tables behind them.

/// `LT_LISTENERS_V1`: [`ListenerKey`] -> [`Listener`]. Written by the agent last, after
/// the listener's backends, slots and access entries (so a packet that finds a listener
/// finds everything behind it); read by tc ingress for packets to a VIP.
/// Max entries: [`MAX_LISTENERS`].
pub const LISTENERS_MAP: &str = "LT_LISTENERS_V1";
/// `LT_SLOTS_V1`: array index `(listener.index * 2 + listener.bank) * SLOTS + slot` ->
/// backend id (`u32`, 0 = no backend). Each listener has two banks of [`SLOTS`] slots:
/// the agent fills the inactive bank, then flips `Listener::bank` in one update, so a
/// packet sees either the old table or the new one, never half of each.
/// Max entries: `MAX_LISTENERS * 2 * SLOTS`.
pub const SLOTS_MAP: &str = "LT_SLOTS_V1";
/// `LT_BACKENDS_V1`: backend id (`u32`) -> [`Backend`]. Written by the agent before any
/// slot names the id; read by tc ingress when it opens a flow. Max entries:
/// [`MAX_BACKENDS`].
pub const BACKENDS_MAP: &str = "LT_BACKENDS_V1";
/// `LT_ACCESS_V1`: LPM trie of [`AccessData`] (with a prefix length) -> [`Access`]: which source addresses of
/// which VPC may open flows to which service. Written by the agent; read by tc ingress
/// for the first packet of a flow. Max entries: [`MAX_ACCESS`].
pub const ACCESS_MAP: &str = "LT_ACCESS_V1";

pub const MAX_LISTENERS: u32 = 1024;
pub const MAX_BACKENDS: u32 = 65536;
pub const MAX_ACCESS: u32 = 65536;
/// Slots per listener table: a weight's share is rounded to 1/SLOTS.
pub const SLOTS: u32 = 256;

/// IP protocol numbers as listener keys use them.
pub const PROTO_TCP: u8 = 6;

/// A listener's address: the service's VIP and the listener's port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    /// VIP, network order.
    pub vip: u32,
    /// Port, network order.
    pub port: u16,
    /// IP protocol ([`PROTO_TCP`]).
    pub proto: u8,
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<ListenerKey>() == 8);

/// What the kernel needs to open a flow to a listener.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Listener {
    /// The listener's index (0..MAX_LISTENERS): its slot banks and counters.
    pub index: u32,
    /// The service's key: access entries are per (VPC, service).
    pub service: u32,
    /// The active slot bank (0 or 1).
    pub bank: u32,
    /// How many slots of the bank hold a backend (0: no target can take flows).
    pub slots: u32,
}

const _: () = assert!(core::mem::size_of::<Listener>() == 16);

/// Where a flow to a listener ends: a target, in its VPC.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Target address, network order.
    pub addr: u32,
    /// Target port, network order.
    pub port: u16,
    pub _pad: u16,
    /// The host end of the target VPC's veth: where packets to the target are sent.
    pub ifindex: u32,
    /// The target's VPC key.
    pub vpc: u32,
    /// The agent's key of the target group the backend belongs to (for the agent's
    /// bookkeeping: with `addr` and `port` it identifies the backend across restarts).
    pub target_group: u32,
}

const _: () = assert!(core::mem::size_of::<Backend>() == 20);

/// The data of an access trie key (the trie adds the prefix length in front): the
/// prefix covers `vpc` and `service` (64 bits) and then the bits of `addr` that the CIDR
/// fixes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessData {
    pub vpc: u32,
    pub service: u32,
    /// Source address, network order.
    pub addr: u32,
}

const _: () = assert!(core::mem::size_of::<AccessData>() == 12);

/// Bits of an [`AccessData`] before the address.
pub const ACCESS_KEY_FIXED_BITS: u32 = 64;

/// The value of an access entry. An association is stored twice: a /64 entry (any
/// address of the VPC) with [`Access::OUTSIDE_ALLOWED_CIDRS`], and one entry per allowed
/// CIDR with [`Access::ALLOWED`]; the longest match tells the two refusals apart from
/// no match at all (not associated).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub verdict: u32,
}

impl Access {
    pub const ALLOWED: u32 = 1;
    pub const OUTSIDE_ALLOWED_CIDRS: u32 = 2;
}

crate::user_pod!(ListenerKey, Listener, Backend, AccessData, Access);
