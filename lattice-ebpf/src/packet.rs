//! Reading and rewriting IPv4/TCP packets in an skb: header offsets, the fields lattice
//! translates, checksum-preserving stores. Everything goes through the skb load/store
//! helpers, whose bounds the kernel checks at run time, so the verifier has no packet
//! pointer arithmetic to prove.

use aya_ebpf::programs::TcContext;

pub const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;

/// Offsets in the IPv4 header.
const IP_CSUM: usize = ETH_HLEN + 10;
const IP_SADDR: usize = ETH_HLEN + 12;
const IP_DADDR: usize = ETH_HLEN + 16;
/// Offsets in the TCP header, relative to its start.
const TCP_SPORT: usize = 0;
const TCP_DPORT: usize = 2;
const TCP_SEQ: usize = 4;
const TCP_FLAGS: usize = 13;
const TCP_CSUM: usize = 16;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// `BPF_F_PSEUDO_HDR`: the changed field is part of the TCP pseudo header.
const BPF_F_PSEUDO_HDR: u64 = 0x10;

/// The fields of an IPv4 TCP packet lattice looks at. Addresses and ports are kept as
/// they are in the packet (network order), as the maps hold them.
#[derive(Clone, Copy)]
pub struct Tcp4 {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    /// The sequence number, host order (for building a RST).
    pub seq: u32,
    /// Where the TCP header starts.
    pub l4: usize,
    /// Whether the IP header has options (a RST is only built without them).
    pub ip_options: bool,
}

/// What kind of packet this is, as far as lattice cares.
pub enum Parsed {
    Tcp(Tcp4),
    /// Other IPv4: its destination.
    OtherIpv4 {
        daddr: u32,
    },
    /// ARP, IPv6 and everything else: not lattice's business.
    NotIpv4,
}

#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Parsed, i64> {
    let proto: u16 = ctx.load(12)?;
    if u16::from_be(proto) != ETH_P_IP {
        return Ok(Parsed::NotIpv4);
    }
    let ver_ihl: u8 = ctx.load(ETH_HLEN)?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return Err(-1);
    }
    let daddr: u32 = ctx.load(IP_DADDR)?;
    let proto: u8 = ctx.load(ETH_HLEN + 9)?;
    let frag: u16 = ctx.load(ETH_HLEN + 6)?;
    // Fragments other than the first carry no TCP header.
    if proto != IPPROTO_TCP || u16::from_be(frag) & 0x1fff != 0 {
        return Ok(Parsed::OtherIpv4 { daddr });
    }
    let l4 = ETH_HLEN + ihl;
    Ok(Parsed::Tcp(Tcp4 {
        saddr: ctx.load(IP_SADDR)?,
        daddr,
        sport: ctx.load(l4 + TCP_SPORT)?,
        dport: ctx.load(l4 + TCP_DPORT)?,
        flags: ctx.load(l4 + TCP_FLAGS)?,
        seq: u32::from_be(ctx.load(l4 + TCP_SEQ)?),
        l4,
        ip_options: ihl != 20,
    }))
}

/// Rewrites the addresses and ports of a TCP packet, keeping both checksums right
/// (also for packets whose TCP checksum the stack has not finished yet).
#[inline(always)]
pub fn rewrite(
    ctx: &mut TcContext,
    p: &Tcp4,
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
) -> Result<(), i64> {
    let tcp_csum = p.l4 + TCP_CSUM;
    if saddr != p.saddr {
        ctx.l4_csum_replace(
            tcp_csum,
            u64::from(p.saddr),
            u64::from(saddr),
            BPF_F_PSEUDO_HDR | 4,
        )?;
        ctx.l3_csum_replace(IP_CSUM, u64::from(p.saddr), u64::from(saddr), 4)?;
        ctx.store(IP_SADDR, &saddr, 0)?;
    }
    if daddr != p.daddr {
        ctx.l4_csum_replace(
            tcp_csum,
            u64::from(p.daddr),
            u64::from(daddr),
            BPF_F_PSEUDO_HDR | 4,
        )?;
        ctx.l3_csum_replace(IP_CSUM, u64::from(p.daddr), u64::from(daddr), 4)?;
        ctx.store(IP_DADDR, &daddr, 0)?;
    }
    if sport != p.sport {
        ctx.l4_csum_replace(tcp_csum, u64::from(p.sport), u64::from(sport), 2)?;
        ctx.store(p.l4 + TCP_SPORT, &sport, 0)?;
    }
    if dport != p.dport {
        ctx.l4_csum_replace(tcp_csum, u64::from(p.dport), u64::from(dport), 2)?;
        ctx.store(p.l4 + TCP_DPORT, &dport, 0)?;
    }
    Ok(())
}

/// Sets the Ethernet addresses of the frame.
#[inline(always)]
pub fn set_macs(ctx: &mut TcContext, src: &[u8; 6], dst: &[u8; 6]) -> Result<(), i64> {
    ctx.store(0, dst, 0)?;
    ctx.store(6, src, 0)?;
    Ok(())
}

/// The one's complement sum of 16-bit words, folded, as IP and TCP checksums use it.
#[inline(always)]
pub fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Adds the big-endian 16-bit words of `bytes` (even length) to `sum`.
#[inline(always)]
pub fn csum_add(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}
