//! Every map of the object, as BTF map definitions so that `bpftool map dump` and
//! `bpftool btf dump file` show the key and value types of `lattice_common`. Names are the
//! versioned names of `lattice_common` (one module per map family there, with who writes
//! and reads each map); the agent pins each map by that name under its bpffs root, so a
//! restarted agent adopts them.

use aya_ebpf::{
    btf_maps::{
        Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, SkStorage,
        SockHash,
    },
    macros::btf_map,
};
use lattice_common::{
    cgroups::{HostSite, HostSiteKey, SockVip, MAX_CGROUPS, MAX_HOST_SITES, MAX_SOCKETS},
    config::DataplaneConfig,
    conntrack::{FlowKey, Nat, DEFAULT_CT_ENTRIES},
    flowlog::{FlowEvent, FlowLogConfig, EVENTS_BYTES},
    ifstats::{IfaceCounters, MAX_INTERFACES},
    services::{
        Access, AccessData, Backend, Listener, ListenerKey, MAX_ACCESS, MAX_BACKENDS,
        MAX_LISTENERS, SLOTS,
    },
    sockmap::{
        ConnId, Endpoint, PeerInfo, SockKey, SockState, SockmapConfig, SockmapCounters, MAX_CONNS,
        MAX_ENDPOINTS, MAX_PEERS, MAX_SOCKETS as MAX_ACCELERATED_SOCKETS,
    },
    stats::{RefusalKey, Traffic, MAX_REFUSAL_KEYS},
    vpcs::{Iface, MAX_IFACES},
};

/// `lattice_common::ifstats::MAP_NAME`
#[btf_map]
pub static LT_IFSTATS_V1: PerCpuHashMap<u32, IfaceCounters, { MAX_INTERFACES as usize }> =
    PerCpuHashMap::new();

/// `lattice_common::config::CONFIG_MAP`
#[btf_map]
pub static LT_CONFIG_V1: Array<DataplaneConfig, 1> = Array::new();

/// `lattice_common::vpcs::IFACES_MAP`
#[btf_map]
pub static LT_IFACES_V1: HashMap<u32, Iface, { MAX_IFACES as usize }> = HashMap::new();

/// `lattice_common::services::LISTENERS_MAP`
#[btf_map]
pub static LT_LISTENERS_V1: HashMap<ListenerKey, Listener, { MAX_LISTENERS as usize }> =
    HashMap::new();

/// `lattice_common::services::SLOTS_MAP`
#[btf_map]
pub static LT_SLOTS_V1: Array<u32, { (MAX_LISTENERS * 2 * SLOTS) as usize }> = Array::new();

/// `lattice_common::services::BACKENDS_MAP`
#[btf_map]
pub static LT_BACKENDS_V1: HashMap<u32, Backend, { MAX_BACKENDS as usize }> = HashMap::new();

/// `lattice_common::services::ACCESS_MAP`
#[btf_map]
pub static LT_ACCESS_V1: LpmTrie<AccessData, Access, { MAX_ACCESS as usize }> = LpmTrie::new();

/// `lattice_common::conntrack::CT_MAP`
#[btf_map]
pub static LT_CT_V2: LruHashMap<FlowKey, Nat, { DEFAULT_CT_ENTRIES as usize }> = LruHashMap::new();

/// `lattice_common::flowlog::EVENTS_MAP`
#[btf_map]
pub static LT_FLOWLOG_V1: RingBuf<FlowEvent, { EVENTS_BYTES as usize }> = RingBuf::new();

/// `lattice_common::flowlog::FLOWLOG_CONFIG_MAP`
#[btf_map]
pub static LT_FLOWLOGCFG_V1: Array<FlowLogConfig, 1> = Array::new();

/// `lattice_common::stats::LISTENER_STATS_MAP`
#[btf_map]
pub static LT_LSTATS_V1: PerCpuArray<Traffic, { MAX_LISTENERS as usize }> = PerCpuArray::new();

/// `lattice_common::stats::BACKEND_STATS_MAP`
#[btf_map]
pub static LT_BSTATS_V1: PerCpuArray<Traffic, { MAX_BACKENDS as usize }> = PerCpuArray::new();

/// `lattice_common::stats::REFUSALS_MAP`
#[btf_map]
pub static LT_REFUSED_V1: PerCpuHashMap<RefusalKey, u64, { MAX_REFUSAL_KEYS as usize }> =
    PerCpuHashMap::new();

/// `lattice_common::cgroups::CGROUPS_MAP`
#[btf_map]
pub static LT_CGROUPS_V1: HashMap<u64, u32, { MAX_CGROUPS as usize }> = HashMap::new();

/// `lattice_common::cgroups::SOCKVIP_MAP`
#[btf_map]
pub static LT_SOCKVIP_V1: LruHashMap<u64, SockVip, { MAX_SOCKETS as usize }> = LruHashMap::new();

/// `lattice_common::cgroups::HOSTSITES_MAP`
#[btf_map]
pub static LT_HOSTSITES_V1: HashMap<HostSiteKey, HostSite, { MAX_HOST_SITES as usize }> =
    HashMap::new();

/// `lattice_common::sockmap::SOCKS_MAP`
#[btf_map]
pub static LT_SOCKS_V1: SockHash<SockKey, { MAX_ACCELERATED_SOCKETS as usize }> = SockHash::new();

/// `lattice_common::sockmap::CONFIG_MAP`
#[btf_map]
pub static LT_SKCFG_V1: Array<SockmapConfig, 1> = Array::new();

/// `lattice_common::sockmap::ENDPOINTS_MAP`
#[btf_map]
pub static LT_SKEPS_V1: HashMap<Endpoint, u32, { MAX_ENDPOINTS as usize }> = HashMap::new();

/// `lattice_common::sockmap::STATE_MAP`
#[btf_map]
pub static LT_SKSTATE_V1: SkStorage<SockState> = SkStorage::new();

/// `lattice_common::sockmap::PEERS_MAP`
#[btf_map]
pub static LT_SKPEERS_V1: LruHashMap<SockKey, PeerInfo, { MAX_PEERS as usize }> = LruHashMap::new();

/// `lattice_common::sockmap::CONNS_MAP`
#[btf_map]
pub static LT_SKCONNS_V1: LruHashMap<ConnId, u32, { MAX_CONNS as usize }> = LruHashMap::new();

/// `lattice_common::sockmap::STATS_MAP`
#[btf_map]
pub static LT_SKSTATS_V1: PerCpuArray<SockmapCounters, 1> = PerCpuArray::new();
