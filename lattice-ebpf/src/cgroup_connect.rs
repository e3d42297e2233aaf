//! connect4 and getpeername4 on VPC cgroups: a host process that connects to a VIP is
//! connected straight to a target the listener picks (socket-level load balancing, no
//! per-packet work afterwards), and getpeername() shows it the VIP it asked for.
//!
//! Only targets reachable from the host (a VPC made of cgroups, not namespaces) can be
//! reached this way; a connect() that would need a target inside a namespace is refused
//! (EPERM) and counted.
//!
//! A connect() to an HTTP, HTTPS or TLS passthrough listener goes to the agent's proxy
//! instead: to the socket the agent keeps for that (VPC, VIP, port) on the loopback
//! address `HOST_PROXY_ADDR` (`LT_HOSTSITES_V1`), so the socket that accepts tells the
//! agent who called what. A VPC process's own connect() to that address is refused: it
//! would let the process speak for any VPC.

use aya_ebpf::{
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    maps::lpm_trie::Key,
    programs::SockAddrContext,
};
use lattice_common::{
    cgroups::{HostSiteKey, SockVip, HOST_PROXY_ADDR, MAX_CGROUP_DEPTH},
    services::{AccessData, ListenerKey, ACCESS_KEY_FIXED_BITS, PROTO_TCP, SLOTS},
    stats::{reason, RefusalKey},
};

use crate::maps::{
    LT_ACCESS_V1, LT_BACKENDS_V1, LT_BSTATS_V1, LT_CGROUPS_V1, LT_CONFIG_V1, LT_HOSTSITES_V1,
    LT_LISTENERS_V1, LT_LSTATS_V1, LT_REFUSED_V1, LT_SLOTS_V1, LT_SOCKVIP_V1,
};

/// Return values of cgroup sock_addr programs.
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;
const IPPROTO_TCP: u32 = 6;
const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;

#[cgroup_sock_addr(connect4)]
pub fn lt_connect4(ctx: SockAddrContext) -> i32 {
    // On an internal error the connect goes ahead unchanged (and fails on its own if the
    // VIP is not reachable otherwise): never break a host's unrelated connections.
    try_connect4(&ctx).unwrap_or(ALLOW)
}

#[cgroup_sock_addr(getpeername4)]
pub fn lt_getpeername4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the context pointer is the kernel's bpf_sock_addr for this call.
    let sa = unsafe { &mut *ctx.sock_addr };
    // SAFETY: a plain helper call on this program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    if let Some(v) = LT_SOCKVIP_V1.get_ptr(cookie) {
        // SAFETY: a map value pointer the helper returned; copied at once.
        let v = unsafe { *v };
        sa.user_ip4 = v.vip;
        sa.user_port = u32::from(v.port);
    }
    ALLOW
}

#[inline(always)]
fn try_connect4(ctx: &SockAddrContext) -> Result<i32, i64> {
    // SAFETY: as above.
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.protocol != IPPROTO_TCP {
        return Ok(ALLOW);
    }
    let Some(config) = LT_CONFIG_V1.get_ptr(0) else {
        return Ok(ALLOW);
    };
    // SAFETY: as above.
    let config = unsafe { *config };
    let vip = sa.user_ip4;
    if config.enabled == 0 {
        return Ok(ALLOW);
    }
    if vip == u32::from_ne_bytes(HOST_PROXY_ADDR) {
        return Ok(to_proxy(ctx));
    }
    // The agent's own address is inside the pool but is no listener's.
    if vip == config.agent_addr || vip & config.vip_mask != config.vip_net {
        return Ok(ALLOW);
    }
    let port = sa.user_port as u16;
    let Some(vpc) = caller_vpc() else {
        return Ok(ALLOW);
    };
    let Some(listener) = LT_LISTENERS_V1.get_ptr(ListenerKey {
        vip,
        port,
        proto: PROTO_TCP,
        _pad: 0,
    }) else {
        return Ok(refuse(vpc, reason::NO_LISTENER));
    };
    // SAFETY: as above.
    let listener = unsafe { *listener };
    // L7 listeners are in the table with no slots (for tc's refusals): one the caller's
    // VPC has a host site for goes to the agent. Without one, the checks below refuse
    // it as for a TCP listener (not associated, or no target).
    if listener.slots == 0 {
        if let Some(verdict) = to_host_site(ctx, vpc, vip, port) {
            return verdict;
        }
    }
    // A host process has no VPC source address yet: the association decides, the
    // allowedCidrs (which name VPC addresses) do not apply.
    let access = Key::new(
        ACCESS_KEY_FIXED_BITS,
        AccessData {
            vpc,
            service: listener.service,
            addr: 0,
        },
    );
    if LT_ACCESS_V1.get(&access).is_none() {
        return Ok(refuse(vpc, reason::NOT_ASSOCIATED));
    }
    // SAFETY: a plain helper call on this program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let hash = (cookie ^ (cookie >> 32)) as u32;
    let slot =
        (listener.index * 2 + (listener.bank & 1)) * SLOTS + hash.wrapping_mul(0x9e37_79b1) % SLOTS;
    let backend_id = match LT_SLOTS_V1.get_ptr(slot) {
        // SAFETY: as above.
        Some(id) if listener.slots != 0 => unsafe { *id },
        _ => 0,
    };
    let Some(backend) = LT_BACKENDS_V1.get_ptr(backend_id) else {
        return Ok(refuse(vpc, reason::NO_BACKEND));
    };
    // SAFETY: as above.
    let backend = unsafe { *backend };
    if backend.ifindex != 0 {
        // The target lives in a namespace, which a host socket cannot reach: refuse
        // rather than let the connection wander off along the host's default route.
        return Ok(refuse(vpc, reason::NOT_FROM_HOST));
    }
    LT_SOCKVIP_V1
        .insert(
            cookie,
            SockVip {
                vip,
                port,
                proxy_port: 0,
            },
            BPF_ANY,
        )
        .map_err(i64::from)?;
    sa.user_ip4 = backend.addr;
    sa.user_port = u32::from(backend.port);
    if let Some(t) = LT_LSTATS_V1.get_ptr_mut(listener.index) {
        // SAFETY: per-CPU value, this CPU only.
        unsafe { (*t).connections += 1 };
    }
    if let Some(t) = LT_BSTATS_V1.get_ptr_mut(backend_id) {
        // SAFETY: per-CPU value, this CPU only.
        unsafe { (*t).connections += 1 };
    }
    Ok(ALLOW)
}

/// A connect() to an L7 listener's VIP:port goes to the agent's proxy socket for the
/// caller's VPC and that listener. `None`: the agent serves no such site (the VPC may
/// not reach the listener, or its socket is not up yet).
#[inline(always)]
fn to_host_site(ctx: &SockAddrContext, vpc: u32, vip: u32, port: u16) -> Option<Result<i32, i64>> {
    let key = HostSiteKey {
        vpc,
        vip,
        port,
        _pad: 0,
    };
    let site = LT_HOSTSITES_V1.get_ptr(key)?;
    // SAFETY: a map value pointer the helper returned; copied at once.
    let site = unsafe { *site };
    // SAFETY: a plain helper call on this program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let asked = SockVip {
        vip,
        port,
        proxy_port: site.port,
    };
    if let Err(e) = LT_SOCKVIP_V1.insert(cookie, asked, BPF_ANY) {
        return Some(Err(i64::from(e)));
    }
    // SAFETY: the context pointer is the kernel's bpf_sock_addr for this call.
    let sa = unsafe { &mut *ctx.sock_addr };
    sa.user_ip4 = u32::from_ne_bytes(HOST_PROXY_ADDR);
    sa.user_port = u32::from(site.port);
    Some(Ok(ALLOW))
}

/// A connect() to the proxy address itself: fine outside VPC cgroups (the agent's own
/// checks, tools), and for a socket a lattice connect4 has just rewritten to this very
/// port (an earlier agent's programs run next to this one's during a restart); refused
/// for a VPC process's own attempt, also with a socket rewritten before (to a target,
/// or to another site: another VPC's proxy socket would take it for that VPC's).
#[inline(always)]
fn to_proxy(ctx: &SockAddrContext) -> i32 {
    let Some(vpc) = caller_vpc() else {
        return ALLOW;
    };
    // SAFETY: a plain helper call on this program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    // SAFETY: the context pointer is the kernel's bpf_sock_addr for this call.
    let port = unsafe { (*ctx.sock_addr).user_port } as u16;
    if let Some(asked) = LT_SOCKVIP_V1.get_ptr(cookie) {
        // SAFETY: a map value pointer the helper returned; read at once.
        let proxy_port = unsafe { (*asked).proxy_port };
        if proxy_port != 0 && proxy_port == port {
            return ALLOW;
        }
    }
    refuse(vpc, reason::DIRECT_TO_PROXY)
}

/// The VPC of the calling task: its cgroup or the nearest ancestor lattice attached.
#[inline(always)]
fn caller_vpc() -> Option<u32> {
    let mut found = None;
    for level in 0..MAX_CGROUP_DEPTH {
        // SAFETY: a plain helper call.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            break;
        }
        if let Some(vpc) = LT_CGROUPS_V1.get_ptr(id) {
            // SAFETY: as above.
            found = Some(unsafe { *vpc });
        }
    }
    found
}

#[inline(always)]
fn refuse(vpc: u32, why: u32) -> i32 {
    let key = RefusalKey { vpc, reason: why };
    match LT_REFUSED_V1.get_ptr_mut(key) {
        // SAFETY: per-CPU value, this CPU only.
        Some(count) => unsafe { *count += 1 },
        None => {
            let _ = LT_REFUSED_V1.insert(key, 1u64, BPF_NOEXIST);
        }
    }
    REFUSE
}
