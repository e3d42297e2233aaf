//! Flows the kernel has translated: one entry per direction, and when a flow is over.

/// `LT_CT_V2`: LRU hash [`FlowKey`] -> [`Nat`]. Written by tc ingress when it opens a
/// flow (both directions at once: the client's packets, keyed by the client VPC's view,
/// and the target's replies, keyed by the target VPC's view); read by tc ingress for
/// every later packet, which also keeps the entry's clock and close flags current.
/// The agent deletes flows that are over ([`flow_expired`]) every few seconds, and tc
/// ingress may take the SNAT port of one that is over before that. Pinned, so
/// established flows survive agent restarts. Max entries: [`DEFAULT_CT_ENTRIES`] as
/// compiled (one flow takes two); the agent sizes it at load time (`--max-flows`).
pub const CT_MAP: &str = "LT_CT_V2";

/// `LT_CT_V1`: the layout before flows expired ([`NatV1`] values). An agent that finds
/// it pinned copies its flows into [`CT_MAP`] and removes it.
pub const CT_MAP_V1: &str = "LT_CT_V1";

/// Entries of the conntrack map unless the agent says otherwise: 1 M flows, two
/// directions each.
pub const DEFAULT_CT_ENTRIES: u32 = 2 * 1024 * 1024;

/// A flow whose target never answered its SYN is over after this long (Cilium's
/// `CT_SYN_TIMEOUT`; Linux keeps SYN_SENT for 120 s).
pub const SYN_TIMEOUT_NS: u64 = 60 * NS_PER_SEC;
/// A flow closed in both directions, or reset, is over this long after its last packet
/// (Cilium's `CT_CLOSE_TIMEOUT`): late retransmissions still find it.
pub const CLOSE_TIMEOUT_NS: u64 = 10 * NS_PER_SEC;
/// An established flow without a packet for this long is over (Cilium's TCP lifetime;
/// connections idle longer need keepalives, as through any NAT).
pub const IDLE_TIMEOUT_NS: u64 = 6 * 3600 * NS_PER_SEC;
/// tc ingress writes an entry's clock at most this often: a busy flow's packets mostly
/// only read their entry.
pub const REFRESH_NS: u64 = NS_PER_SEC;

const NS_PER_SEC: u64 = 1_000_000_000;

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

/// How to rewrite a packet of the flow and where to send it, and what the flow has
/// seen in this direction.
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
    /// The VPC key of that interface: with the new addresses and ports it names the
    /// flow's other entry ([`Nat::partner`]).
    pub vpc: u32,
    /// The listener index (counters).
    pub listener: u32,
    /// The backend id (counters; 0 in the reply direction's entry is never used).
    pub backend: u32,
    /// [`Nat::REPLY`], [`Nat::SEEN`], [`Nat::FIN`], [`Nat::RST`].
    pub flags: u32,
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC, to a tick) of a packet of this
    /// direction no older than [`REFRESH_NS`] than the last one, or of the flow's
    /// opening.
    pub last_seen: u64,
}

const _: () = assert!(core::mem::size_of::<Nat>() == 40);

impl Nat {
    /// The entry translates replies (target to client).
    pub const REPLY: u32 = 1;
    /// A packet went this way (the client's SYN for the forward entry; the target's
    /// answer for the reply entry).
    pub const SEEN: u32 = 2;
    /// A FIN went this way.
    pub const FIN: u32 = 4;
    /// A RST went this way.
    pub const RST: u32 = 8;

    /// The key of the flow's entry for the other direction: the packets this entry
    /// produces, answered.
    pub fn partner(&self) -> FlowKey {
        FlowKey {
            vpc: self.vpc,
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: crate::services::PROTO_TCP,
            _pad: [0; 3],
        }
    }
}

/// Whether the flow of `entry` is over at `now` (the clock of [`Nat::last_seen`]),
/// given its other direction's entry when there is one: reset, or closed both ways,
/// [`CLOSE_TIMEOUT_NS`] after its last packet; its target never answered,
/// [`SYN_TIMEOUT_NS`]; otherwise [`IDLE_TIMEOUT_NS`]. The kernel and the agent both
/// decide with this, so a port the kernel reuses is one the agent would delete.
pub fn flow_expired(entry: &Nat, partner: Option<&Nat>, now: u64) -> bool {
    let (flags, last) = match partner {
        Some(p) => (
            Flags::of(entry).and(Flags::of(p)),
            entry.last_seen.max(p.last_seen),
        ),
        // Alone (its partner was evicted, or the agent crashed between two deletes):
        // only its own direction is known.
        None => (Flags::of(entry), entry.last_seen),
    };
    let timeout = if flags.reset || flags.fin_both {
        CLOSE_TIMEOUT_NS
    } else if !flags.answered {
        SYN_TIMEOUT_NS
    } else {
        IDLE_TIMEOUT_NS
    };
    now.saturating_sub(last) > timeout
}

/// What a flow's entries say together.
struct Flags {
    reset: bool,
    fin_both: bool,
    answered: bool,
}

impl Flags {
    fn of(n: &Nat) -> Flags {
        let reply = n.flags & Nat::REPLY != 0;
        Flags {
            reset: n.flags & Nat::RST != 0,
            fin_both: n.flags & Nat::FIN != 0,
            // A forward entry alone says nothing of the target.
            answered: !reply || n.flags & Nat::SEEN != 0,
        }
    }

    fn and(self, other: Flags) -> Flags {
        Flags {
            reset: self.reset || other.reset,
            fin_both: self.fin_both && other.fin_both,
            answered: self.answered && other.answered,
        }
    }
}

/// The value of [`CT_MAP_V1`], read only to carry its flows over.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatV1 {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub ifindex: u32,
    pub listener: u32,
    pub backend: u32,
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<NatV1>() == 28);

/// A flow carried from [`CT_MAP_V1`] without a packet for this long is over: that map
/// never deleted a flow, so most of what it holds ended long ago, and nothing tells
/// which. A flow that carries a packet meanwhile is refreshed like any other.
pub const CARRIED_GRACE_NS: u64 = 600 * NS_PER_SEC;

impl NatV1 {
    /// The same flow in today's layout, `vpc` being the VPC key of its interface: seen
    /// in both directions, and idle for all but [`CARRIED_GRACE_NS`] of
    /// [`IDLE_TIMEOUT_NS`] at `now`.
    pub fn upgrade(&self, vpc: u32, now: u64) -> Nat {
        Nat {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: self.sport,
            dport: self.dport,
            ifindex: self.ifindex,
            vpc,
            listener: self.listener,
            backend: self.backend,
            flags: (self.flags & Nat::REPLY) | Nat::SEEN,
            last_seen: now.saturating_sub(IDLE_TIMEOUT_NS - CARRIED_GRACE_NS),
        }
    }
}

crate::user_pod!(FlowKey, Nat, NatV1);

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_SEC;

    fn entry(reply: bool, flags: u32, last_seen_s: u64) -> Nat {
        Nat {
            flags: flags | if reply { Nat::REPLY } else { 0 },
            last_seen: last_seen_s * S,
            ..Nat::default()
        }
    }

    #[test]
    fn a_flow_expires_by_what_both_directions_saw() {
        let (seen, fin, rst) = (Nat::SEEN, Nat::FIN, Nat::RST);
        /// An entry's flags and the second of its last packet.
        type Seen = (u32, u64);
        // (case, forward entry, reply entry, now (s), expired)
        let cases: &[(&str, Seen, Option<Seen>, u64, bool)] = &[
            (
                "answered, active",
                (seen, 100),
                Some((seen, 100)),
                200,
                false,
            ),
            (
                "answered, idle 6 h",
                (seen, 100),
                Some((seen, 50)),
                100 + 6 * 3600,
                false,
            ),
            (
                "answered, idle past 6 h",
                (seen, 100),
                Some((seen, 50)),
                101 + 6 * 3600,
                true,
            ),
            (
                "unanswered SYN, 60 s",
                (seen, 100),
                Some((0, 100)),
                160,
                false,
            ),
            (
                "unanswered SYN, past 60 s",
                (seen, 100),
                Some((0, 100)),
                161,
                true,
            ),
            (
                "FIN one way only",
                (seen | fin, 100),
                Some((seen, 100)),
                1000,
                false,
            ),
            (
                "FIN both ways, 10 s",
                (seen | fin, 100),
                Some((seen | fin, 95)),
                110,
                false,
            ),
            (
                "FIN both ways, past 10 s",
                (seen | fin, 100),
                Some((seen | fin, 95)),
                111,
                true,
            ),
            (
                "RST from the target",
                (seen, 100),
                Some((seen | rst, 100)),
                111,
                true,
            ),
            (
                "RST from the client",
                (seen | rst, 100),
                Some((seen, 100)),
                111,
                true,
            ),
            (
                "last packet counts",
                (seen | fin, 100),
                Some((seen | fin, 200)),
                205,
                false,
            ),
            ("forward alone", (seen, 100), None, 100 + 3600, false),
            ("forward alone, FIN", (seen | fin, 100), None, 111, true),
            ("clock behind", (seen, 100), Some((seen, 100)), 5, false),
        ];
        for &(case, fwd, reply, now, expired) in cases {
            let fwd = entry(false, fwd.0, fwd.1);
            let reply = reply.map(|(f, t)| entry(true, f, t));
            assert_eq!(
                flow_expired(&fwd, reply.as_ref(), now * S),
                expired,
                "{case}, from the forward entry"
            );
            if let Some(reply) = reply {
                assert_eq!(
                    flow_expired(&reply, Some(&fwd), now * S),
                    expired,
                    "{case}, from the reply entry"
                );
            }
        }
        let lone_reply = entry(true, 0, 100);
        assert!(
            flow_expired(&lone_reply, None, 161 * S),
            "an unanswered reply entry alone"
        );
    }

    #[test]
    fn the_partner_of_each_direction_is_the_other() {
        let forward_key = FlowKey {
            vpc: 1,
            saddr: 10,
            daddr: 20,
            sport: 1000,
            dport: 80,
            proto: crate::services::PROTO_TCP,
            _pad: [0; 3],
        };
        let reply_key = FlowKey {
            vpc: 2,
            saddr: 30,
            daddr: 40,
            sport: 8080,
            dport: 2000,
            ..forward_key
        };
        let forward = Nat {
            saddr: 40,
            daddr: 30,
            sport: 2000,
            dport: 8080,
            vpc: 2,
            ..Nat::default()
        };
        let reply = Nat {
            saddr: 20,
            daddr: 10,
            sport: 80,
            dport: 1000,
            vpc: 1,
            flags: Nat::REPLY,
            ..Nat::default()
        };
        assert_eq!(forward.partner(), reply_key);
        assert_eq!(reply.partner(), forward_key);
    }
}
