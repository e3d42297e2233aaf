//! tc ingress on the host end of every VPC veth: the kernel TCP data path.
//!
//! A packet from a VPC namespace is, in this order:
//! 1. accounted to its interface (`LT_IFSTATS_V1`);
//! 2. passed on untouched when the interface is not a VPC link lattice owns, or it is
//!    not IPv4 (ARP for the agent's address must reach the host stack);
//! 3. translated and sent into the peer namespace when it belongs to a flow lattice
//!    already translates (`LT_CT_V2`, both directions), keeping the flow's clock and
//!    close flags current so that the agent can delete it when it is over;
//! 4. the first packet of a new flow when it goes to a VIP: the listener is looked up,
//!    the source VPC and address checked against the service's associations, a target
//!    picked from the listener's weighted slot table by a stable hash of the flow, both
//!    directions recorded, and the packet translated (full NAT: the target sees the
//!    source VPC's lattice SNAT address) and redirected into the target's namespace;
//!    refused packets are counted per VPC and reason, and a refused SYN is answered
//!    with a RST; an opened flow is reported to the agent (`LT_FLOWLOG_V1`) when access
//!    logs want TCP flows;
//! 5. passed to the host when it is for the agent's own address, dropped otherwise: a
//!    VPC link is no path into the host's networks.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns, bpf_redirect_peer},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use lattice_common::{
    config::DataplaneConfig,
    conntrack::{flow_expired, FlowKey, Nat, REFRESH_NS},
    flowlog::FlowEvent,
    ifstats::IfaceCounters,
    services::{Access, AccessData, ListenerKey, ACCESS_KEY_FIXED_BITS, PROTO_TCP, SLOTS},
    stats::{reason, RefusalKey, Traffic},
    vpcs::Iface,
};

use crate::{
    maps::{
        LT_ACCESS_V1, LT_BACKENDS_V1, LT_BSTATS_V1, LT_CONFIG_V1, LT_CT_V2, LT_FLOWLOGCFG_V1,
        LT_FLOWLOG_V1, LT_IFACES_V1, LT_IFSTATS_V1, LT_LISTENERS_V1, LT_LSTATS_V1, LT_REFUSED_V1,
        LT_SLOTS_V1,
    },
    packet::{parse, rewrite, set_macs, Parsed, Tcp4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    rst::reply_rst,
};

/// BPF_ANY / BPF_NOEXIST map update flags.
const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;
/// SNAT ports tried for a new flow: the client's own port first, then hashed ones.
const SNAT_TRIES: u32 = 4;
/// Hashed SNAT ports come from the usual ephemeral range.
const SNAT_PORT_BASE: u32 = 32768;
const SNAT_PORT_SPAN: u32 = 28232;

#[aya_ebpf::macros::classifier]
pub fn lt_tc_ingress(mut ctx: TcContext) -> i32 {
    match try_tc_ingress(&mut ctx) {
        Ok(action) => action,
        // A packet of a VPC link the program could not handle (truncated, or a helper
        // failed half-way through a rewrite) is dropped rather than let into the host.
        Err(_) => TC_ACT_SHOT,
    }
}

#[inline(always)]
fn try_tc_ingress(ctx: &mut TcContext) -> Result<i32, i64> {
    // SAFETY: `skb` points to the kernel's __sk_buff for this invocation.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    count_interface(ifindex, ctx.len());

    let Some(iface) = LT_IFACES_V1.get_ptr(ifindex) else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: a map value pointer the helper returned; copied at once.
    let iface: Iface = unsafe { *iface };
    let Some(config) = LT_CONFIG_V1.get_ptr(0) else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: as above.
    let config: DataplaneConfig = unsafe { *config };
    if config.enabled == 0 {
        return Ok(TC_ACT_OK);
    }

    let p = match parse(ctx)? {
        Parsed::NotIpv4 => return Ok(TC_ACT_OK),
        Parsed::OtherIpv4 { daddr } => return Ok(to_host_or_drop(&config, daddr)),
        Parsed::Tcp(p) => p,
    };
    let key = FlowKey {
        vpc: iface.vpc,
        saddr: p.saddr,
        daddr: p.daddr,
        sport: p.sport,
        dport: p.dport,
        proto: PROTO_TCP,
        _pad: [0; 3],
    };
    let mut replaced = None;
    if let Some(entry) = LT_CT_V2.get_ptr_mut(key) {
        // SAFETY: as above.
        let nat: Nat = unsafe { *entry };
        if !is_fresh_syn(&p) || nat.flags & Nat::REPLY != 0 {
            touch(entry, &nat, &p);
            return forward(ctx, &p, &nat);
        }
        // A fresh SYN on a known tuple is a new connection reusing the ports: it is
        // picked again like any new flow, since the targets' health and weights may
        // have changed since (a retransmitted SYN picks the same target while the
        // table stands, and its own SNAT port again).
        replaced = Some(nat.partner());
    }
    // The agent's own address sits inside the VIP pool (its first host): it is the
    // agent's (DNS, proxy), not a listener's.
    if p.daddr != config.agent_addr && p.daddr & config.vip_mask == config.vip_net {
        return open_flow(ctx, &p, &key, &iface, ifindex, replaced);
    }
    Ok(to_host_or_drop(&config, p.daddr))
}

#[inline(always)]
fn to_host_or_drop(config: &DataplaneConfig, daddr: u32) -> i32 {
    if daddr == config.agent_addr {
        TC_ACT_OK
    } else {
        TC_ACT_SHOT
    }
}

/// Keeps a flow entry's clock and flags current for [`flow_expired`]: written only when
/// a flag is new or [`REFRESH_NS`] passed, so most packets of a busy flow only read it.
/// Two CPUs may race on a write; the loser's flag comes back with its next packet.
#[inline(always)]
fn touch(entry: *mut Nat, nat: &Nat, p: &Tcp4) {
    let mut flags = nat.flags | Nat::SEEN;
    if p.flags & TCP_FIN != 0 {
        flags |= Nat::FIN;
    }
    if p.flags & TCP_RST != 0 {
        flags |= Nat::RST;
    }
    // The coarse clock (CLOCK_MONOTONIC_COARSE, a tick behind at most) costs a load,
    // not a clock read, on every packet; flows are timed in seconds.
    // SAFETY: a plain helper call without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: a map value pointer the helper returned; the entry stays valid while the
    // program runs (RCU), an LRU eviction meanwhile only makes the write moot.
    unsafe {
        if flags != nat.flags {
            (*entry).flags = flags;
        }
        if now.wrapping_sub(nat.last_seen) >= REFRESH_NS {
            (*entry).last_seen = now;
        }
    }
}

#[inline(always)]
fn is_fresh_syn(p: &Tcp4) -> bool {
    p.flags & TCP_SYN != 0 && p.flags & TCP_ACK == 0
}

/// The first packet of a flow to a VIP: check, pick, record, translate. `replaced`:
/// the reply key of the flow a fresh SYN on known ports replaces.
#[inline(always)]
fn open_flow(
    ctx: &mut TcContext,
    p: &Tcp4,
    key: &FlowKey,
    iface: &Iface,
    ifindex: u32,
    replaced: Option<FlowKey>,
) -> Result<i32, i64> {
    let lkey = ListenerKey {
        vip: p.daddr,
        port: p.dport,
        proto: PROTO_TCP,
        _pad: 0,
    };
    let Some(listener) = LT_LISTENERS_V1.get_ptr(lkey) else {
        return refuse(ctx, p, iface.vpc, reason::NO_LISTENER, ifindex);
    };
    // SAFETY: as above.
    let listener = unsafe { *listener };

    let access_key = Key::new(
        ACCESS_KEY_FIXED_BITS + 32,
        AccessData {
            vpc: iface.vpc,
            service: listener.service,
            addr: p.saddr,
        },
    );
    match LT_ACCESS_V1.get(&access_key) {
        None => return refuse(ctx, p, iface.vpc, reason::NOT_ASSOCIATED, ifindex),
        Some(a) if a.verdict != Access::ALLOWED => {
            return refuse(ctx, p, iface.vpc, reason::OUTSIDE_ALLOWED_CIDRS, ifindex)
        }
        Some(_) => {}
    }

    let hash = flow_hash(key);
    let slot = (listener.index * 2 + (listener.bank & 1)) * SLOTS + hash % SLOTS;
    let backend_id = match LT_SLOTS_V1.get_ptr(slot) {
        // SAFETY: as above.
        Some(id) if listener.slots != 0 => unsafe { *id },
        _ => 0,
    };
    let Some(backend) = LT_BACKENDS_V1.get_ptr(backend_id) else {
        return refuse(ctx, p, iface.vpc, reason::NO_BACKEND, ifindex);
    };
    // SAFETY: as above.
    let backend = unsafe { *backend };
    if backend.ifindex == 0 {
        // A target among host processes (a VPC of cgroups): a namespace's flow has no
        // link to reach it by. Refused now, rather than recorded and then dropped.
        return refuse(ctx, p, iface.vpc, reason::NO_BACKEND, ifindex);
    }

    // SAFETY: a plain helper call without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // The client's SYN is this direction's first packet.
    let forward_nat = |snat_port: u16| Nat {
        saddr: iface.snat_addr,
        daddr: backend.addr,
        sport: snat_port,
        dport: backend.port,
        ifindex: backend.ifindex,
        vpc: backend.vpc,
        listener: listener.index,
        backend: backend_id,
        flags: Nat::SEEN,
        last_seen: now,
    };
    let reply_nat = Nat {
        saddr: p.daddr,
        daddr: p.saddr,
        sport: p.dport,
        dport: p.sport,
        ifindex,
        vpc: iface.vpc,
        listener: listener.index,
        backend: backend_id,
        flags: Nat::REPLY,
        last_seen: now,
    };
    for attempt in 0..SNAT_TRIES {
        let snat_port = if attempt == 0 {
            p.sport
        } else {
            let h = hash.wrapping_add(attempt.wrapping_mul(0x9e37_79b9));
            ((SNAT_PORT_BASE + h % SNAT_PORT_SPAN) as u16).to_be()
        };
        let reply_key = FlowKey {
            vpc: backend.vpc,
            saddr: backend.addr,
            daddr: iface.snat_addr,
            sport: backend.port,
            dport: snat_port,
            proto: PROTO_TCP,
            _pad: [0; 3],
        };
        if let Some(taken) = LT_CT_V2.get_ptr(reply_key) {
            // SAFETY: as above.
            let taken: Nat = unsafe { *taken };
            // The same client flow (a retransmitted SYN, or a new connection on the
            // same ports to the same VIP and port: the entry names this key back) may
            // take its own entry again; a flow of the same client ports to another
            // listener may not, or the two would share one tuple at the target.
            // Another client's flow that is over gives its port up, and its forward
            // entry goes with it.
            let own = taken.partner() == *key;
            if !own && !take_over(&taken, &reply_key, now) {
                continue;
            }
        }
        let nat = forward_nat(snat_port);
        LT_CT_V2
            .insert(reply_key, reply_nat, BPF_ANY)
            .map_err(i64::from)?;
        LT_CT_V2.insert(*key, nat, BPF_ANY).map_err(i64::from)?;
        if let Some(old) = replaced.filter(|old| *old != reply_key) {
            drop_reply(old, key);
        }
        count_traffic(&nat, 0, true);
        report_flow(p, iface, &nat, backend.target_group);
        return forward(ctx, p, &nat);
    }
    refuse(ctx, p, iface.vpc, reason::NO_SNAT_PORT, ifindex)
}

/// Deletes the reply entry at `reply_key` when it is still the flow's of `forward_key`
/// (it names it back): that flow moved to another tuple, and no reply entry may
/// outlive its flow to be paired with a newer one.
#[inline(always)]
fn drop_reply(reply_key: FlowKey, forward_key: &FlowKey) {
    if let Some(reply) = LT_CT_V2.get_ptr(reply_key) {
        // SAFETY: a map value pointer the helper returned; read at once.
        if unsafe { (*reply).partner() } == *forward_key {
            let _ = LT_CT_V2.remove(reply_key);
        }
    }
}

/// Whether the flow whose reply entry is `taken`, stored under `taken_key`, is over,
/// by the rule the agent's sweep follows; if so its forward entry is deleted, so that
/// its client's late packets cannot reach the new flow's tuple at the target. A
/// forward entry that does not name `taken_key` back is another, newer flow's.
#[inline(always)]
fn take_over(taken: &Nat, taken_key: &FlowKey, now: u64) -> bool {
    let partner_key = taken.partner();
    let partner: Option<Nat> = LT_CT_V2
        .get_ptr(partner_key)
        // SAFETY: a map value pointer the helper returned; copied at once.
        .map(|p| unsafe { *p })
        .filter(|p| p.partner() == *taken_key);
    if !flow_expired(taken, partner.as_ref(), now) {
        return false;
    }
    if partner.is_some() {
        let _ = LT_CT_V2.remove(partner_key);
    }
    true
}

/// Tells the agent of an opened flow, when access logs want TCP flows. A full ring
/// loses the record, never the packet.
#[inline(always)]
fn report_flow(p: &Tcp4, iface: &Iface, nat: &Nat, target_group: u32) {
    let enabled = match LT_FLOWLOGCFG_V1.get_ptr(0) {
        // SAFETY: a map value pointer the helper returned; read at once.
        Some(c) => unsafe { (*c).enabled != 0 },
        None => false,
    };
    if !enabled {
        return;
    }
    let event = FlowEvent {
        // SAFETY: a plain helper call without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        vpc: iface.vpc,
        target_group,
        saddr: p.saddr,
        vip: p.daddr,
        snat_addr: nat.saddr,
        target_addr: nat.daddr,
        sport: p.sport,
        vport: p.dport,
        snat_port: nat.sport,
        target_port: nat.dport,
    };
    let _ = LT_FLOWLOG_V1.output(event, 0);
}

/// Translates a packet of a known flow and sends it into the other VPC's namespace.
#[inline(always)]
fn forward(ctx: &mut TcContext, p: &Tcp4, nat: &Nat) -> Result<i32, i64> {
    let Some(out) = LT_IFACES_V1.get_ptr(nat.ifindex) else {
        // The other side's VPC link is gone: nothing can deliver this packet.
        return Ok(TC_ACT_SHOT);
    };
    // SAFETY: as above.
    let out: Iface = unsafe { *out };
    let len = ctx.len();
    rewrite(ctx, p, nat.saddr, nat.daddr, nat.sport, nat.dport)?;
    set_macs(ctx, &out.host_mac, &out.peer_mac)?;
    count_traffic(nat, len, false);
    // SAFETY: a plain helper call; it only records where the skb goes.
    Ok(unsafe { bpf_redirect_peer(nat.ifindex, 0) } as i32)
}

#[inline(always)]
fn refuse(ctx: &mut TcContext, p: &Tcp4, vpc: u32, why: u32, ifindex: u32) -> Result<i32, i64> {
    let key = RefusalKey { vpc, reason: why };
    match LT_REFUSED_V1.get_ptr_mut(key) {
        // SAFETY: a per-CPU value is only touched by this CPU while we run.
        Some(count) => unsafe { *count += 1 },
        None => {
            let _ = LT_REFUSED_V1.insert(key, 1u64, BPF_NOEXIST);
        }
    }
    if is_fresh_syn(p) {
        reply_rst(ctx, p, ifindex)
    } else {
        Ok(TC_ACT_SHOT)
    }
}

/// A stable hash of the flow (murmur3's mixing): the same flow always picks the same
/// slot while the table is unchanged.
#[inline(always)]
fn flow_hash(k: &FlowKey) -> u32 {
    let mut h = 0x5f3759dfu32;
    for word in [
        k.vpc,
        k.saddr,
        k.daddr,
        (u32::from(k.sport) << 16) | u32::from(k.dport),
    ] {
        let mut x = word.wrapping_mul(0xcc9e_2d51);
        x = x.rotate_left(15).wrapping_mul(0x1b87_3593);
        h ^= x;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn count_interface(ifindex: u32, len: u32) {
    match LT_IFSTATS_V1.get_ptr_mut(ifindex) {
        Some(c) => {
            // SAFETY: a per-CPU value is only touched by this CPU while we run.
            let c = unsafe { &mut *c };
            c.packets += 1;
            c.bytes += u64::from(len);
        }
        None => {
            let first = IfaceCounters {
                packets: 1,
                bytes: u64::from(len),
            };
            // Another CPU may have created it meanwhile: then this packet is not counted,
            // which is cheaper than a retry loop.
            let _ = LT_IFSTATS_V1.insert(ifindex, first, BPF_NOEXIST);
        }
    }
}

/// Adds a packet (or, with `opened`, a new flow) to its listener's and backend's
/// counters.
#[inline(always)]
fn count_traffic(nat: &Nat, len: u32, opened: bool) {
    let reply = nat.flags & Nat::REPLY != 0;
    let add = |t: &mut Traffic| {
        if opened {
            t.connections += 1;
        } else if reply {
            t.packets_out += 1;
            t.bytes_out += u64::from(len);
        } else {
            t.packets_in += 1;
            t.bytes_in += u64::from(len);
        }
    };
    if let Some(t) = LT_LSTATS_V1.get_ptr_mut(nat.listener) {
        // SAFETY: per-CPU value, this CPU only.
        add(unsafe { &mut *t });
    }
    if let Some(t) = LT_BSTATS_V1.get_ptr_mut(nat.backend) {
        // SAFETY: per-CPU value, this CPU only.
        add(unsafe { &mut *t });
    }
}
