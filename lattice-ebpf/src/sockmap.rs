//! Socket-level acceleration for same-host hops (contract in `lattice_common::sockmap`).
//!
//! - `lt_sock_ops` (on the agent's cgroup, the VPC cgroups and `--sockmap-cgroup`s):
//!   when an IPv4 TCP socket is established and its local or remote end is a lattice
//!   endpoint, records it in `LT_SOCKS_V1` under (netns, local, remote) with its
//!   starting sequence numbers in its socket storage.
//! - `lt_sk_msg` (on `LT_SOCKS_V1`, so it runs for every send of a recorded socket):
//!   redirects the message into the receive queue of the peer socket (the mirrored key)
//!   when it is recorded too; otherwise the message goes the normal way. The peer reads
//!   redirected bytes before TCP bytes, so a direction starts (or resumes) redirecting
//!   only when none of its TCP bytes is unread; it goes back to TCP when the peer is
//!   gone, or holds more unread redirected bytes than its limit (the kernel does not hold
//!   a redirecting sender back: TCP's flow control takes over until the peer catches
//!   up).
//!
//! Neither program ever drops or changes a message: every error means the normal path.

use aya_ebpf::{
    bindings::{
        sk_action::SK_PASS, BPF_F_INGRESS, BPF_NOEXIST, BPF_SK_STORAGE_GET_F_CREATE,
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
    },
    helpers::generated::{
        bpf_get_netns_cookie, bpf_msg_redirect_hash, bpf_probe_read_kernel, bpf_sk_storage_get,
        bpf_skc_to_tcp_sock, bpf_sock_hash_update,
    },
    macros::{sk_msg, sock_ops},
    programs::{SkMsgContext, SockOpsContext},
};
use lattice_common::sockmap::{
    ConnId, Endpoint, PeerInfo, SockKey, SockState, SockmapConfig, SockmapCounters,
};

use crate::maps::{
    LT_SKCFG_V1, LT_SKCONNS_V1, LT_SKEPS_V1, LT_SKPEERS_V1, LT_SKSTATE_V1, LT_SKSTATS_V1,
    LT_SOCKS_V1,
};

const AF_INET: u32 = 2;
const EEXIST: i64 = 17;
const BPF_ANY: u64 = 0;

#[sock_ops]
pub fn lt_sock_ops(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        record(&ctx);
    }
    // The established callbacks take no reply.
    1
}

#[sk_msg]
pub fn lt_sk_msg(ctx: SkMsgContext) -> u32 {
    redirect(&ctx);
    // SK_PASS sends the message to the peer when bpf_msg_redirect_hash found it, and
    // the normal way otherwise: never a drop.
    SK_PASS
}

/// Records an established socket whose local or remote end is a lattice endpoint.
#[inline(always)]
fn record(ctx: &SockOpsContext) {
    if ctx.family() != AF_INET {
        return;
    }
    let Some(config) = LT_SKCFG_V1.get_ptr(0) else {
        return;
    };
    // SAFETY: a map value pointer the helper returned; read at once.
    if unsafe { (*config).enabled } == 0 {
        return;
    }
    let local_addr = ctx.local_ip4();
    let remote_addr = ctx.remote_ip4();
    let local_port = (ctx.local_port() as u16).to_be();
    let remote_port = remote_port(ctx.remote_port());
    if !is_endpoint(local_addr, local_port) && !is_endpoint(remote_addr, remote_port) {
        return;
    }
    // SAFETY: `ops` is the kernel's bpf_sock_ops of this call.
    let ops = unsafe { &*ctx.ops };
    // Payload already went through TCP during the handshake (TCP Fast Open): the peer
    // may not have read it, and redirected bytes would overtake it. Not accelerated.
    if ops.data_segs_out != 0 || ops.data_segs_in != 0 {
        return;
    }
    // SAFETY: reading the context's socket pointer (checked for null below).
    let sk = unsafe { ops.__bindgen_anon_2.sk };
    if sk.is_null() {
        return;
    }
    // SAFETY: helper call with this program's map and the context's full socket.
    let state = unsafe {
        bpf_sk_storage_get(
            state_map(),
            sk.cast(),
            core::ptr::null_mut(),
            u64::from(BPF_SK_STORAGE_GET_F_CREATE),
        )
    }
    .cast::<SockState>();
    if state.is_null() {
        count(|c| c.insert_errors += 1);
        return;
    }
    let (snd_start, rcv_start) = (ops.snd_nxt, ops.rcv_nxt);
    // SAFETY: the socket's storage; this callback runs with the socket locked.
    unsafe {
        *state = SockState {
            snd_start,
            rcv_start,
            flags: 0,
            _pad: 0,
            peer_sk: 0,
        };
    }
    let mut key = SockKey {
        // SAFETY: helper call on this program's context.
        netns: unsafe { bpf_get_netns_cookie(ctx.ops.cast()) },
        local_addr,
        remote_addr,
        local_port,
        remote_port,
        _pad: 0,
    };
    // NOEXIST: a socket of a cgroup under two attached ones is seen twice.
    // SAFETY: helper call with this program's context, map and a stack key.
    let ret = unsafe {
        bpf_sock_hash_update(
            ctx.ops,
            socks_map(),
            core::ptr::from_mut(&mut key).cast(),
            u64::from(BPF_NOEXIST),
        )
    };
    if ret == 0 {
        count(|c| c.sockets += 1);
    } else if ret != -EEXIST {
        count(|c| c.insert_errors += 1);
        return;
    }
    // Where the socket lives, for the peer's sk_msg (see `may_redirect`).
    let peer = PeerInfo {
        sk: sk as u64,
        snd_start,
        rcv_start,
    };
    if LT_SKPEERS_V1.insert(key, peer, BPF_ANY).is_err() {
        count(|c| c.insert_errors += 1);
    }
}

/// Points sk_msg's verdict at the peer socket when the message may go there.
#[inline(always)]
fn redirect(ctx: &SkMsgContext) {
    // SAFETY: `msg` is the kernel's sk_msg_md of this call.
    let msg = unsafe { &*ctx.msg };
    let size = u64::from(msg.size);
    // SAFETY: reading the context's socket pointer (checked for null below).
    let sk = unsafe { msg.__bindgen_anon_3.sk };
    if msg.family != AF_INET || sk.is_null() {
        return;
    }
    // SAFETY: helper call with this program's map and the context's socket.
    let state = unsafe { bpf_sk_storage_get(state_map(), sk.cast(), core::ptr::null_mut(), 0) }
        .cast::<SockState>();
    let Some(config) = LT_SKCFG_V1.get_ptr(0) else {
        return;
    };
    // SAFETY: a map value pointer the helper returned; copied at once.
    let config = unsafe { *config };
    if state.is_null() {
        count(|c| normal(c, size));
        return;
    }
    // SAFETY: the socket's storage; sk_msg runs with the socket locked.
    let st = unsafe { &mut *state };
    let local_port = (msg.local_port as u16).to_be();
    let remote_port = remote_port(msg.remote_port);
    // The peer's own key: our remote end is its local end.
    let mut peer = SockKey {
        // SAFETY: helper call on this program's context.
        netns: unsafe { bpf_get_netns_cookie(ctx.msg.cast()) },
        local_addr: msg.remote_ip4,
        remote_addr: msg.local_ip4,
        local_port: remote_port,
        remote_port: local_port,
        _pad: 0,
    };
    match may_redirect(sk.cast(), st, &config, &peer, size) {
        Verdict::Redirect => {}
        Verdict::Normal => {
            st.flags &= !SockState::REDIRECTING;
            count(|c| normal(c, size));
            return;
        }
        Verdict::Throttled => {
            st.flags &= !SockState::REDIRECTING;
            count(|c| {
                normal(c, size);
                c.throttled_msgs += 1;
            });
            return;
        }
    }
    // SAFETY: helper call with this program's context, map and a stack key.
    let verdict = unsafe {
        bpf_msg_redirect_hash(
            ctx.msg,
            socks_map(),
            core::ptr::from_mut(&mut peer).cast(),
            u64::from(BPF_F_INGRESS),
        )
    };
    if verdict != i64::from(SK_PASS) {
        // The peer left the map (it closed): TCP, as for any socket.
        st.flags &= !SockState::REDIRECTING;
        st.peer_sk = 0;
        count(|c| normal(c, size));
        return;
    }
    st.flags |= SockState::REDIRECTING;
    if st.flags & SockState::EVER_REDIRECTED == 0 {
        st.flags |= SockState::EVER_REDIRECTED;
        let (low, high) =
            if end_order(msg.local_ip4, local_port) <= end_order(msg.remote_ip4, remote_port) {
                (
                    (msg.local_ip4, local_port, st.snd_start),
                    (msg.remote_ip4, remote_port, st.rcv_start),
                )
            } else {
                (
                    (msg.remote_ip4, remote_port, st.rcv_start),
                    (msg.local_ip4, local_port, st.snd_start),
                )
            };
        let id = ConnId {
            netns: peer.netns,
            low_addr: low.0,
            high_addr: high.0,
            low_port: low.1,
            high_port: high.1,
            low_seq: low.2,
            high_seq: high.2,
            _pad: 0,
        };
        // The other end may have counted the connection already.
        if LT_SKCONNS_V1
            .insert(id, 1u32, u64::from(BPF_NOEXIST))
            .is_ok()
        {
            count(|c| c.connections += 1);
        }
    }
    count(|c| {
        c.redirected_msgs += 1;
        c.redirected_bytes += size;
    });
}

/// Where a message may go.
enum Verdict {
    Redirect,
    /// Through TCP: no recorded peer, our TCP bytes are not all read yet, or something
    /// could not be read (unknown means TCP).
    Normal,
    /// Through TCP: the peer holds more unread redirected bytes than its limit.
    Throttled,
}

/// Whether a message of `size` bytes of socket `sk` may go to the peer socket `peer`.
/// Switching from TCP to redirecting needs every byte this direction sent through TCP
/// read by the peer (our `write_seq` == `snd_una`: all acknowledged; the peer's
/// `copied_seq` == `rcv_nxt`: all read), since the peer reads redirected bytes first.
/// Redirecting needs the peer to hold at most its limit of unread bytes.
#[inline(always)]
fn may_redirect(
    sk: *mut core::ffi::c_void,
    st: &mut SockState,
    config: &SockmapConfig,
    peer: &SockKey,
    size: u64,
) -> Verdict {
    if !config.layout_known() {
        return Verdict::Normal;
    }
    let redirecting = st.flags & SockState::REDIRECTING != 0;
    if !redirecting {
        if config.enabled == 0 {
            return Verdict::Normal;
        }
        // SAFETY: helper call on the context's socket.
        let tp = unsafe { bpf_skc_to_tcp_sock(sk) };
        if tp.is_null() {
            return Verdict::Normal;
        }
        let base = tp.cast::<u8>();
        match (
            read_u32(base, config.write_seq),
            read_u32(base, config.snd_una),
        ) {
            (Some(write_seq), Some(snd_una)) if write_seq == snd_una => {}
            _ => return Verdict::Normal,
        }
    }
    if st.peer_sk == 0 {
        let Some(info) = LT_SKPEERS_V1.get_ptr(*peer) else {
            return Verdict::Normal;
        };
        // SAFETY: a map value pointer the helper returned; copied at once.
        let info: PeerInfo = unsafe { *info };
        // The entry is our peer's only if its sequence numbers are ours mirrored (a
        // reused 4-tuple's old entry is not).
        if info.snd_start != st.rcv_start || info.rcv_start != st.snd_start {
            return Verdict::Normal;
        }
        st.peer_sk = info.sk;
    }
    let base = st.peer_sk as usize as *const u8;
    let Some(unread) = read_u32(base, config.rmem_alloc) else {
        return Verdict::Normal;
    };
    let unread = u64::from(unread) + size;
    // The receive buffer counts only when the limit alone would refuse.
    if unread > u64::from(config.backlog_limit) {
        match read_u32(base, config.rcvbuf) {
            Some(rcvbuf) if unread <= u64::from(rcvbuf) => {}
            _ => return Verdict::Throttled,
        }
    }
    if !redirecting {
        match (
            read_u32(base, config.copied_seq),
            read_u32(base, config.rcv_nxt),
        ) {
            (Some(copied_seq), Some(rcv_nxt)) if copied_seq == rcv_nxt => {}
            _ => return Verdict::Normal,
        }
    }
    Verdict::Redirect
}

/// Reads a `u32` of kernel memory at `base + offset` (a field of a socket, at the
/// offset the agent found in the running kernel's BTF). The helper fails safely on a
/// bad address.
#[inline(always)]
fn read_u32(base: *const u8, offset: u32) -> Option<u32> {
    let mut value: u32 = 0;
    // SAFETY: bpf_probe_read_kernel copies 4 bytes into the stack variable, or fails.
    let ret = unsafe {
        bpf_probe_read_kernel(
            core::ptr::from_mut(&mut value).cast(),
            4,
            base.wrapping_add(offset as usize).cast(),
        )
    };
    (ret == 0).then_some(value)
}

/// Whether an address and port (network order) is a lattice endpoint.
#[inline(always)]
fn is_endpoint(addr: u32, port: u16) -> bool {
    LT_SKEPS_V1
        .get_ptr(Endpoint {
            addr,
            port,
            _pad: 0,
        })
        .is_some()
}

/// The remote port of a sock_ops or sk_msg context in network order: the kernel stores
/// the 16 network-order bits in the upper half of the field on little-endian hosts.
#[inline(always)]
fn remote_port(field: u32) -> u16 {
    if field > 0xffff {
        (field >> 16) as u16
    } else {
        field as u16
    }
}

/// A total order of connection ends that both ends compute alike.
#[inline(always)]
fn end_order(addr: u32, port: u16) -> u64 {
    (u64::from(u32::from_be(addr)) << 16) | u64::from(u16::from_be(port))
}

#[inline(always)]
fn normal(c: &mut SockmapCounters, size: u64) {
    c.normal_msgs += 1;
    c.normal_bytes += size;
}

#[inline(always)]
fn count(f: impl FnOnce(&mut SockmapCounters)) {
    if let Some(c) = LT_SKSTATS_V1.get_ptr_mut(0) {
        // SAFETY: per-CPU value, this CPU only.
        f(unsafe { &mut *c });
    }
}

/// The SOCKHASH as helpers take it.
#[inline(always)]
fn socks_map() -> *mut core::ffi::c_void {
    core::ptr::addr_of!(LT_SOCKS_V1).cast_mut().cast()
}

/// The socket storage map as helpers take it.
#[inline(always)]
fn state_map() -> *mut core::ffi::c_void {
    core::ptr::addr_of!(LT_SKSTATE_V1).cast_mut().cast()
}
