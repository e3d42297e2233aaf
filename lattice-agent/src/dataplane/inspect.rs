//! Reading the pinned maps of an agent, running or not, for `lattice-agent maps`: every
//! table decoded into plain values (addresses, ports, counters summed over CPUs).

use std::{net::Ipv4Addr, path::Path};

use aya::maps::{
    lpm_trie::LpmTrie, Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, PerCpuHashMap,
};
use lattice_common::{
    cgroups::{HostSite, HostSiteKey, HOSTSITES_MAP},
    conntrack::{FlowKey, Nat, CT_MAP},
    ifstats::{self, IfaceCounters},
    services::{
        Access, AccessData, Backend, Listener, ListenerKey, ACCESS_KEY_FIXED_BITS, ACCESS_MAP,
        BACKENDS_MAP, LISTENERS_MAP, SLOTS, SLOTS_MAP,
    },
    stats::{self, reason, RefusalKey, Traffic},
    vpcs::{Iface, IFACES_MAP},
};
use serde::Serialize;

use super::{compile::ip_from_net_order, DataplaneError};

/// Everything the service maps hold.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    pub interfaces: Vec<InterfaceRow>,
    pub listeners: Vec<ListenerRow>,
    pub backends: Vec<BackendRow>,
    pub access: Vec<AccessRow>,
    pub refusals: Vec<RefusalRow>,
    /// The agent's proxy sockets for host processes (absent when the maps predate them).
    pub host_sites: Vec<HostSiteRow>,
    /// Socket acceleration (absent when the maps predate it).
    pub sockmap: Option<super::sockmap::SockmapRow>,
}

/// Where connect4 sends a VPC's host processes that connect to an L7 listener.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostSiteRow {
    pub vpc: u32,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// The proxy socket's port on `HOST_PROXY_ADDR`.
    pub proxy_port: u16,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceRow {
    pub ifindex: u32,
    pub vpc: u32,
    pub snat_addr: Ipv4Addr,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerRow {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub index: u32,
    pub service: u32,
    pub bank: u32,
    /// Slots per backend id in the active bank.
    pub slots: Vec<(u32, u32)>,
    pub traffic: TrafficRow,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRow {
    pub id: u32,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub vpc: u32,
    pub target_group: u32,
    pub ifindex: u32,
    pub traffic: TrafficRow,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRow {
    pub vpc: u32,
    pub service: u32,
    /// `None`: the VPC-wide entry.
    pub cidr: Option<String>,
    pub allowed: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusalRow {
    pub vpc: u32,
    pub reason: &'static str,
    pub packets: u64,
}

/// A listener's or backend's counters, summed over CPUs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRow {
    pub connections: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
}

impl From<Traffic> for TrafficRow {
    fn from(t: Traffic) -> Self {
        TrafficRow {
            connections: t.connections,
            packets_in: t.packets_in,
            bytes_in: t.bytes_in,
            packets_out: t.packets_out,
            bytes_out: t.bytes_out,
        }
    }
}

fn pinned(root: &Path, name: &'static str) -> Result<MapData, DataplaneError> {
    let path = root.join(name);
    MapData::from_pin(&path).map_err(|source| DataplaneError::ReadPin { path, source })
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        op: "reading",
        name,
        source,
    }
}

/// Reads every service map pinned under `root`.
pub fn inspect(root: &Path) -> Result<Inspection, DataplaneError> {
    let mut out = Inspection::default();

    let counters: PerCpuHashMap<_, u32, IfaceCounters> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(pinned(root, ifstats::MAP_NAME)?))
            .map_err(map_err(ifstats::MAP_NAME))?;
    let ifaces: BpfHashMap<_, u32, Iface> =
        BpfHashMap::try_from(Map::HashMap(pinned(root, IFACES_MAP)?))
            .map_err(map_err(IFACES_MAP))?;
    for entry in ifaces.iter() {
        let (ifindex, iface) = entry.map_err(map_err(IFACES_MAP))?;
        let mut total = IfaceCounters::default();
        if let Ok(values) = counters.get(&ifindex, 0) {
            for v in values.iter() {
                total.add(v);
            }
        }
        out.interfaces.push(InterfaceRow {
            ifindex,
            vpc: iface.vpc,
            snat_addr: ip_from_net_order(iface.snat_addr),
            packets: total.packets,
            bytes: total.bytes,
        });
    }

    let lstats: PerCpuArray<_, Traffic> =
        PerCpuArray::try_from(Map::PerCpuArray(pinned(root, stats::LISTENER_STATS_MAP)?))
            .map_err(map_err(stats::LISTENER_STATS_MAP))?;
    let slots: Array<_, u32> =
        Array::try_from(Map::Array(pinned(root, SLOTS_MAP)?)).map_err(map_err(SLOTS_MAP))?;
    let listeners: BpfHashMap<_, ListenerKey, Listener> =
        BpfHashMap::try_from(Map::HashMap(pinned(root, LISTENERS_MAP)?))
            .map_err(map_err(LISTENERS_MAP))?;
    for entry in listeners.iter() {
        let (key, l) = entry.map_err(map_err(LISTENERS_MAP))?;
        let mut by_backend: Vec<(u32, u32)> = Vec::new();
        let base = (l.index * 2 + (l.bank & 1)) * SLOTS;
        for slot in 0..SLOTS {
            let id = slots.get(&(base + slot), 0).map_err(map_err(SLOTS_MAP))?;
            if id == 0 {
                continue;
            }
            match by_backend.iter_mut().find(|(b, _)| *b == id) {
                Some((_, n)) => *n += 1,
                None => by_backend.push((id, 1)),
            }
        }
        by_backend.sort();
        out.listeners.push(ListenerRow {
            vip: ip_from_net_order(key.vip),
            port: u16::from_be(key.port),
            index: l.index,
            service: l.service,
            bank: l.bank,
            slots: by_backend,
            traffic: sum(&lstats, l.index, stats::LISTENER_STATS_MAP)?,
        });
    }
    out.listeners.sort_by_key(|l| (l.vip, l.port));

    let bstats: PerCpuArray<_, Traffic> =
        PerCpuArray::try_from(Map::PerCpuArray(pinned(root, stats::BACKEND_STATS_MAP)?))
            .map_err(map_err(stats::BACKEND_STATS_MAP))?;
    let backends: BpfHashMap<_, u32, Backend> =
        BpfHashMap::try_from(Map::HashMap(pinned(root, BACKENDS_MAP)?))
            .map_err(map_err(BACKENDS_MAP))?;
    for entry in backends.iter() {
        let (id, b) = entry.map_err(map_err(BACKENDS_MAP))?;
        out.backends.push(BackendRow {
            id,
            addr: ip_from_net_order(b.addr),
            port: u16::from_be(b.port),
            vpc: b.vpc,
            target_group: b.target_group,
            ifindex: b.ifindex,
            traffic: sum(&bstats, id, stats::BACKEND_STATS_MAP)?,
        });
    }
    out.backends.sort_by_key(|b| b.id);

    let access: LpmTrie<_, AccessData, Access> =
        LpmTrie::try_from(Map::LpmTrie(pinned(root, ACCESS_MAP)?)).map_err(map_err(ACCESS_MAP))?;
    for entry in access.iter() {
        let (key, value) = entry.map_err(map_err(ACCESS_MAP))?;
        let data = key.data();
        let bits = key.prefix_len().saturating_sub(ACCESS_KEY_FIXED_BITS);
        out.access.push(AccessRow {
            vpc: data.vpc,
            service: data.service,
            cidr: (key.prefix_len() > ACCESS_KEY_FIXED_BITS)
                .then(|| format!("{}/{bits}", ip_from_net_order(data.addr))),
            allowed: value.verdict == Access::ALLOWED,
        });
    }

    let refusals: PerCpuHashMap<_, RefusalKey, u64> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(pinned(root, stats::REFUSALS_MAP)?))
            .map_err(map_err(stats::REFUSALS_MAP))?;
    for entry in refusals.iter() {
        let (key, values) = entry.map_err(map_err(stats::REFUSALS_MAP))?;
        out.refusals.push(RefusalRow {
            vpc: key.vpc,
            reason: reason::name(key.reason),
            packets: values.iter().sum(),
        });
    }

    if root.join(HOSTSITES_MAP).exists() {
        let sites: BpfHashMap<_, HostSiteKey, HostSite> =
            BpfHashMap::try_from(Map::HashMap(pinned(root, HOSTSITES_MAP)?))
                .map_err(map_err(HOSTSITES_MAP))?;
        for entry in sites.iter() {
            let (key, site) = entry.map_err(map_err(HOSTSITES_MAP))?;
            out.host_sites.push(HostSiteRow {
                vpc: key.vpc,
                vip: ip_from_net_order(key.vip),
                port: u16::from_be(key.port),
                proxy_port: u16::from_be(site.port),
            });
        }
        out.host_sites.sort_by_key(|h| (h.vip, h.port, h.vpc));
    }

    out.sockmap = inspect_sockmap(root)?;
    Ok(out)
}

/// The flows in the conntrack map (two entries each), by walking it whole: a CLI's
/// question (the metrics endpoint shows what the sweeps counted instead).
pub fn count_flows(root: &Path) -> Result<usize, DataplaneError> {
    let ct: BpfHashMap<_, FlowKey, Nat> =
        BpfHashMap::try_from(Map::LruHashMap(pinned(root, CT_MAP)?)).map_err(map_err(CT_MAP))?;
    Ok(ct.keys().filter(Result::is_ok).count() / 2)
}

/// The acceleration switch, counters and open sockets.
fn inspect_sockmap(root: &Path) -> Result<Option<super::sockmap::SockmapRow>, DataplaneError> {
    use lattice_common::sockmap::{SockKey, SockmapConfig, CONFIG_MAP, SOCKS_MAP, STATS_MAP};
    if !root.join(SOCKS_MAP).exists() {
        return Ok(None);
    }
    let config: Array<_, SockmapConfig> =
        Array::try_from(Map::Array(pinned(root, CONFIG_MAP)?)).map_err(map_err(CONFIG_MAP))?;
    let stats: PerCpuArray<_, lattice_common::sockmap::SockmapCounters> =
        PerCpuArray::try_from(Map::PerCpuArray(pinned(root, STATS_MAP)?))
            .map_err(map_err(STATS_MAP))?;
    let socks: aya::maps::SockHash<_, SockKey> =
        aya::maps::SockHash::try_from(Map::SockHash(pinned(root, SOCKS_MAP)?))
            .map_err(map_err(SOCKS_MAP))?;
    let keys: Vec<SockKey> = socks.keys().filter_map(Result::ok).collect();
    let c = super::sockmap::sum_counters(&stats)?;
    Ok(Some(super::sockmap::SockmapRow {
        enabled: config.get(&0, 0).map_err(map_err(CONFIG_MAP))?.enabled != 0,
        open_sockets: keys.len() as u64,
        open_pairs: super::sockmap::open_pairs(&keys),
        sockets_recorded: c.sockets,
        insert_errors: c.insert_errors,
        connections_accelerated: c.connections,
        redirected_messages: c.redirected_msgs,
        redirected_bytes: c.redirected_bytes,
        normal_messages: c.normal_msgs,
        normal_bytes: c.normal_bytes,
        throttled_messages: c.throttled_msgs,
    }))
}

fn sum(
    map: &PerCpuArray<MapData, Traffic>,
    index: u32,
    name: &'static str,
) -> Result<TrafficRow, DataplaneError> {
    let mut total = Traffic::default();
    for v in map.get(&index, 0).map_err(map_err(name))?.iter() {
        total.add(v);
    }
    Ok(total.into())
}

/// The host ends of the VPC veths an agent recorded under `root` (for `cleanup`).
pub fn pinned_interfaces(root: &Path) -> Result<Vec<u32>, DataplaneError> {
    let path = root.join(IFACES_MAP);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let ifaces: BpfHashMap<_, u32, Iface> =
        BpfHashMap::try_from(Map::HashMap(pinned(root, IFACES_MAP)?))
            .map_err(map_err(IFACES_MAP))?;
    Ok(ifaces.keys().filter_map(Result::ok).collect())
}
