//! tc ingress on the host end of a VPC's veth.
//!
//! Today it accounts packets and bytes per interface and lets everything pass; the VIP
//! data path (listener lookup, NAT, redirect) grows here.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use lattice_common::ifstats::IfaceCounters;

use crate::maps::LT_IFSTATS_V1;

/// BPF_NOEXIST: create the entry only if no other CPU created it first.
const BPF_NOEXIST: u64 = 1;

#[classifier]
pub fn lt_tc_ingress(ctx: TcContext) -> i32 {
    match try_tc_ingress(&ctx) {
        Ok(action) => action,
        // Accounting must never cost a packet: on any failure, pass it on.
        Err(_) => TC_ACT_OK,
    }
}

fn try_tc_ingress(ctx: &TcContext) -> Result<i32, i64> {
    // SAFETY: `skb` points to the kernel's __sk_buff for this invocation.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let len = u64::from(ctx.len());
    match LT_IFSTATS_V1.get_ptr_mut(&ifindex) {
        Some(counters) => {
            // SAFETY: a per-CPU value is only touched by this CPU while we run.
            let counters = unsafe { &mut *counters };
            counters.packets += 1;
            counters.bytes += len;
        }
        None => {
            let first = IfaceCounters {
                packets: 1,
                bytes: len,
            };
            // Another CPU may have created it meanwhile: then this one packet is not
            // counted, which is cheaper than a retry loop.
            LT_IFSTATS_V1
                .insert(ifindex, first, BPF_NOEXIST)
                .map_err(i64::from)?;
        }
    }
    Ok(TC_ACT_OK)
}
