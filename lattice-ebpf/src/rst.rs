//! Answering a refused SYN with a RST, so the client fails at once instead of retrying
//! into a silent drop until it times out.

use aya_ebpf::{
    bindings::TC_ACT_SHOT,
    helpers::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};

use crate::packet::{csum_add, csum_fold, Tcp4, ETH_HLEN, TCP_ACK, TCP_RST};

/// Ethernet + IPv4 without options + TCP without options.
const RST_LEN: usize = ETH_HLEN + 20 + 20;

/// Turns the SYN in `ctx` into the RST+ACK its sender expects from a closed port and
/// sends it back out of `ifindex` (the interface the SYN came in on). Packets with IP
/// options are just dropped.
#[inline(always)]
pub fn reply_rst(ctx: &mut TcContext, p: &Tcp4, ifindex: u32) -> Result<i32, i64> {
    if p.ip_options {
        return Ok(TC_ACT_SHOT);
    }
    // A fixed-size load: the verifier rejects load_bytes' clamped, possibly empty read.
    let macs: [u8; 12] = ctx.load(0)?;

    let mut pkt = [0u8; RST_LEN];
    // Ethernet: back to the sender.
    pkt[0..6].copy_from_slice(&macs[6..12]);
    pkt[6..12].copy_from_slice(&macs[0..6]);
    pkt[12] = 0x08;
    // IPv4, 40 bytes, don't fragment, TTL 64, TCP; addresses swapped.
    pkt[14] = 0x45;
    pkt[17] = 40;
    pkt[20] = 0x40;
    pkt[22] = 64;
    pkt[23] = 6;
    pkt[26..30].copy_from_slice(&p.daddr.to_ne_bytes());
    pkt[30..34].copy_from_slice(&p.saddr.to_ne_bytes());
    let ip_csum = csum_fold(csum_add(0, &pkt[14..34]));
    pkt[24..26].copy_from_slice(&ip_csum.to_be_bytes());
    // TCP: ports swapped, acknowledging the SYN, RST+ACK, no window.
    pkt[34..36].copy_from_slice(&p.dport.to_ne_bytes());
    pkt[36..38].copy_from_slice(&p.sport.to_ne_bytes());
    pkt[42..46].copy_from_slice(&p.seq.wrapping_add(1).to_be_bytes());
    pkt[46] = 5 << 4;
    pkt[47] = TCP_RST | TCP_ACK;
    // Pseudo header (addresses, protocol, TCP length) and the header itself.
    let pseudo = csum_add(0, &pkt[26..34]) + 6 + 20;
    let tcp_csum = csum_fold(csum_add(pseudo, &pkt[34..54]));
    pkt[50..52].copy_from_slice(&tcp_csum.to_be_bytes());

    // SAFETY: the skb pointer is the one the kernel gave this invocation.
    let ret = unsafe { bpf_skb_change_tail(ctx.skb.skb, RST_LEN as u32, 0) };
    if ret != 0 {
        return Err(ret);
    }
    ctx.store(0, &pkt, 0)?;
    // SAFETY: a plain helper call; it only records where the skb goes.
    Ok(unsafe { bpf_redirect(ifindex, 0) } as i32)
}
