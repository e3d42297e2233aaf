//! Every map of the object, as BTF map definitions so that `bpftool map dump` and
//! `bpftool btf dump file` show the key and value types of `lattice_common`. Names are the
//! versioned names of `lattice_common`; the agent pins each map by that name under its
//! bpffs root, so a restarted agent adopts them.

use aya_ebpf::{btf_maps::PerCpuHashMap, macros::btf_map};
use lattice_common::ifstats::{IfaceCounters, MAX_INTERFACES};

/// See `lattice_common::ifstats::MAP_NAME`.
#[btf_map]
pub static LT_IFSTATS_V1: PerCpuHashMap<u32, IfaceCounters, { MAX_INTERFACES as usize }> =
    PerCpuHashMap::new();
