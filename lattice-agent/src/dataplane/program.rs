//! Writing a compiled [`Snapshot`] into the kernel maps, in an order no packet can see
//! half of: backends first, then access entries, then each listener's new slot table
//! into its inactive bank, then the listener entry that flips to it (one map update);
//! stale entries are deleted last. Only what changed is written: a listener whose slot
//! table is the one in force keeps its bank, and backends and access entries already
//! holding the wanted value are left alone, so a change to one service of thousands
//! costs a few map updates. The bookkeeping of what was written (listener indexes,
//! backend ids and values, access verdicts) is rebuilt from the maps at start, so a
//! restarted agent reuses them instead of starting over.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aya::maps::{
    lpm_trie::{Key as LpmKey, LpmTrie},
    Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, PerCpuHashMap,
};
use lattice_common::{
    config::{DataplaneConfig, CONFIG_MAP},
    services::{
        Access, AccessData, Backend, Listener, ListenerKey, ACCESS_KEY_FIXED_BITS, ACCESS_MAP,
        BACKENDS_MAP, LISTENERS_MAP, MAX_BACKENDS, MAX_LISTENERS, SLOTS, SLOTS_MAP,
    },
    stats::{self, RefusalKey, Traffic},
};

use super::{
    attach::Attachment,
    compile::{
        ip_from_net_order, ip_net_order, slot_table, BackendId, GroupPlan, PathSettings, Snapshot,
    },
    loader::{map_err, open},
    Dataplane, DataplaneError,
};

/// What the agent has written to the service maps.
#[derive(Debug, Default)]
pub struct Programmer {
    listeners: HashMap<ListenerKey, Listener>,
    /// The backend ids in the active bank of each listener, slot by slot, as this agent
    /// wrote them (unknown after a restart until the first write).
    tables: HashMap<ListenerKey, Vec<u32>>,
    backends: HashMap<BackendId, u32>,
    /// What each backend id holds.
    backend_values: HashMap<u32, Backend>,
    access: BTreeMap<(u32, [u32; 3]), u32>,
}

/// What one apply did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub listeners: usize,
    pub backends: usize,
    /// Listeners with no target able to take new flows.
    pub empty_listeners: Vec<String>,
    /// Targets whose VPC has no attached namespace yet.
    pub unplaced_targets: usize,
    pub removed: usize,
}

/// Which targets of a group may take new flows (health decides; the default is all).
pub type Usable<'a> = &'a dyn Fn(&GroupPlan) -> Vec<BackendId>;

impl Dataplane {
    /// Writes the host-wide settings and turns translation on.
    pub fn write_config(&mut self, settings: &PathSettings) -> Result<(), DataplaneError> {
        let value = DataplaneConfig {
            vip_net: ip_net_order(settings.vip_pool.network()),
            vip_mask: ip_net_order(settings.vip_pool.netmask()),
            enabled: 1,
            agent_addr: ip_net_order(settings.agent_addr),
        };
        let mut map: Array<_, DataplaneConfig> = open(&mut self.ebpf, CONFIG_MAP)?;
        map.set(0, value, 0).map_err(map_err("writing", CONFIG_MAP))
    }

    /// Per-listener counters (summed over CPUs), by listener index.
    pub fn listener_traffic(&mut self, index: u32) -> Result<Traffic, DataplaneError> {
        per_cpu_traffic(&mut self.ebpf, stats::LISTENER_STATS_MAP, index)
    }

    /// Per-backend counters (summed over CPUs), by backend id.
    pub fn backend_traffic(&mut self, id: u32) -> Result<Traffic, DataplaneError> {
        per_cpu_traffic(&mut self.ebpf, stats::BACKEND_STATS_MAP, id)
    }

    /// Refused packets by (VPC key, reason), summed over CPUs.
    pub fn refusals(&mut self) -> Result<BTreeMap<(u32, u32), u64>, DataplaneError> {
        let name = stats::REFUSALS_MAP;
        let map: PerCpuHashMap<_, RefusalKey, u64> = open(&mut self.ebpf, name)?;
        let mut out = BTreeMap::new();
        for entry in map.iter() {
            let (key, values) = entry.map_err(map_err("reading", name))?;
            out.insert((key.vpc, key.reason), values.iter().sum());
        }
        Ok(out)
    }
}

impl Programmer {
    /// Rebuilds the bookkeeping from what the maps hold (a previous agent's work).
    pub fn adopt(dp: &mut Dataplane) -> Result<Programmer, DataplaneError> {
        let mut p = Programmer::default();
        let listeners: BpfHashMap<_, ListenerKey, Listener> = open(&mut dp.ebpf, LISTENERS_MAP)?;
        for entry in listeners.iter() {
            let (k, v) = entry.map_err(map_err("reading", LISTENERS_MAP))?;
            p.listeners.insert(k, v);
        }
        let backends: BpfHashMap<_, u32, Backend> = open(&mut dp.ebpf, BACKENDS_MAP)?;
        for entry in backends.iter() {
            let (id, b) = entry.map_err(map_err("reading", BACKENDS_MAP))?;
            p.backends.insert(backend_id_of(&b), id);
            p.backend_values.insert(id, b);
        }
        let access: LpmTrie<_, AccessData, Access> = open(&mut dp.ebpf, ACCESS_MAP)?;
        for entry in access.iter() {
            let (key, value) = entry.map_err(map_err("reading", ACCESS_MAP))?;
            let data = key.data();
            p.access.insert(
                (key.prefix_len(), [data.vpc, data.service, data.addr]),
                value.verdict,
            );
        }
        Ok(p)
    }

    /// The listener index and active bank the kernel uses for a listener.
    pub fn listener(&self, key: &ListenerKey) -> Option<Listener> {
        self.listeners.get(key).copied()
    }

    /// The backend id of a target.
    pub fn backend(&self, id: &BackendId) -> Option<u32> {
        self.backends.get(id).copied()
    }

    /// Makes the service maps hold `snapshot`, with targets placed on the attachments of
    /// their VPCs and only `usable` targets in the slot tables.
    pub fn apply(
        &mut self,
        dp: &mut Dataplane,
        snapshot: &Snapshot,
        attachments: &[Attachment],
        usable: Usable<'_>,
    ) -> Result<Applied, DataplaneError> {
        let mut applied = Applied::default();

        // 1. Backends: every target that can be reached (its VPC has an attachment).
        let mut wanted_backends: BTreeMap<BackendId, Backend> = BTreeMap::new();
        for listener in &snapshot.listeners {
            for group in &listener.groups {
                for target in &group.targets {
                    match place(group.vpc, target, attachments, snapshot) {
                        Some(ifindex) => {
                            wanted_backends.insert(
                                *target,
                                Backend {
                                    addr: ip_net_order(target.addr),
                                    port: target.port.to_be(),
                                    _pad: 0,
                                    ifindex,
                                    vpc: group.vpc,
                                    target_group: target.target_group,
                                },
                            );
                        }
                        None => applied.unplaced_targets += 1,
                    }
                }
            }
        }
        {
            let mut map: BpfHashMap<_, u32, Backend> = open(&mut dp.ebpf, BACKENDS_MAP)?;
            for (target, backend) in &wanted_backends {
                let id = match self.backends.get(target) {
                    Some(id) => *id,
                    None => lowest_free(self.backends.values().copied(), 1, MAX_BACKENDS)
                        .ok_or_else(|| DataplaneError::Full {
                            what: format!("{MAX_BACKENDS} backends"),
                        })?,
                };
                if self.backend_values.get(&id) != Some(backend) {
                    map.insert(id, backend, 0)
                        .map_err(map_err("writing", BACKENDS_MAP))?;
                    self.backend_values.insert(id, *backend);
                }
                self.backends.insert(*target, id);
            }
        }
        applied.backends = wanted_backends.len();

        // 2. Access entries.
        let mut wanted_access = BTreeMap::new();
        {
            let mut map: LpmTrie<_, AccessData, Access> = open(&mut dp.ebpf, ACCESS_MAP)?;
            for a in &snapshot.access {
                let (prefix_len, addr) = match a.cidr {
                    Some(cidr) => (
                        ACCESS_KEY_FIXED_BITS + u32::from(cidr.prefix_len()),
                        ip_net_order(cidr.network()),
                    ),
                    None => (ACCESS_KEY_FIXED_BITS, 0),
                };
                let data = AccessData {
                    vpc: a.vpc,
                    service: a.service,
                    addr,
                };
                let verdict = if a.allowed {
                    Access::ALLOWED
                } else {
                    Access::OUTSIDE_ALLOWED_CIDRS
                };
                let id = (prefix_len, [a.vpc, a.service, addr]);
                if self.access.get(&id) != Some(&verdict) {
                    map.insert(&LpmKey::new(prefix_len, data), Access { verdict }, 0)
                        .map_err(map_err("writing", ACCESS_MAP))?;
                }
                wanted_access.insert(id, verdict);
            }
        }

        // 3. Listeners: slot table into the inactive bank, then the entry that flips.
        let mut wanted_listeners = std::collections::HashSet::new();
        for plan in &snapshot.listeners {
            let groups: Vec<(u16, Vec<BackendId>)> = plan
                .groups
                .iter()
                .map(|g| {
                    let ok: Vec<BackendId> = usable(g)
                        .into_iter()
                        .filter(|t| wanted_backends.contains_key(t))
                        .collect();
                    (g.weight, ok)
                })
                .collect();
            let table = slot_table(&groups);
            let ids: Vec<u32> = (0..SLOTS as usize)
                .map(|slot| {
                    table
                        .get(slot)
                        .and_then(|t| self.backends.get(t))
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            wanted_listeners.insert(plan.key);
            if table.is_empty() {
                applied.empty_listeners.push(plan.label.clone());
            }
            // The table in force already: nothing to write, no bank to flip.
            let unchanged = self.listeners.get(&plan.key).is_some_and(|l| {
                l.service == plan.service
                    && l.slots == table.len() as u32
                    && self.tables.get(&plan.key) == Some(&ids)
            });
            if unchanged {
                continue;
            }
            let (index, bank) = match self.listeners.get(&plan.key) {
                Some(l) => (l.index, 1 - (l.bank & 1)),
                None => (
                    lowest_free(self.listeners.values().map(|l| l.index), 0, MAX_LISTENERS)
                        .ok_or_else(|| DataplaneError::Full {
                            what: format!("{MAX_LISTENERS} listeners"),
                        })?,
                    0,
                ),
            };
            {
                let mut slots: Array<_, u32> = open(&mut dp.ebpf, SLOTS_MAP)?;
                let base = (index * 2 + bank) * SLOTS;
                for (slot, id) in (0..SLOTS).zip(&ids) {
                    slots
                        .set(base + slot, *id, 0)
                        .map_err(map_err("writing", SLOTS_MAP))?;
                }
            }
            let entry = Listener {
                index,
                service: plan.service,
                bank,
                slots: table.len() as u32,
            };
            let mut map: BpfHashMap<_, ListenerKey, Listener> = open(&mut dp.ebpf, LISTENERS_MAP)?;
            map.insert(plan.key, entry, 0)
                .map_err(map_err("writing", LISTENERS_MAP))?;
            self.listeners.insert(plan.key, entry);
            self.tables.insert(plan.key, ids);
        }
        applied.listeners = wanted_listeners.len();

        // 4. Stale entries, roots first: listeners, then access, then backends. Flows
        // already open keep their translation in conntrack (draining).
        let stale: Vec<ListenerKey> = self
            .listeners
            .keys()
            .filter(|k| !wanted_listeners.contains(*k))
            .copied()
            .collect();
        if !stale.is_empty() {
            let mut map: BpfHashMap<_, ListenerKey, Listener> = open(&mut dp.ebpf, LISTENERS_MAP)?;
            for key in stale {
                remove_ok(map.remove(&key)).map_err(map_err("deleting from", LISTENERS_MAP))?;
                self.listeners.remove(&key);
                self.tables.remove(&key);
                applied.removed += 1;
            }
        }
        let stale: Vec<(u32, [u32; 3])> = self
            .access
            .keys()
            .filter(|k| !wanted_access.contains_key(*k))
            .copied()
            .collect();
        if !stale.is_empty() {
            let mut map: LpmTrie<_, AccessData, Access> = open(&mut dp.ebpf, ACCESS_MAP)?;
            for (prefix_len, [vpc, service, addr]) in stale {
                let key = LpmKey::new(prefix_len, AccessData { vpc, service, addr });
                remove_ok(map.remove(&key)).map_err(map_err("deleting from", ACCESS_MAP))?;
                applied.removed += 1;
            }
        }
        self.access = wanted_access;
        let stale: Vec<(BackendId, u32)> = self
            .backends
            .iter()
            .filter(|(t, _)| !wanted_backends.contains_key(*t))
            .map(|(t, id)| (*t, *id))
            .collect();
        if !stale.is_empty() {
            let mut map: BpfHashMap<_, u32, Backend> = open(&mut dp.ebpf, BACKENDS_MAP)?;
            for (target, id) in stale {
                remove_ok(map.remove(&id)).map_err(map_err("deleting from", BACKENDS_MAP))?;
                self.backends.remove(&target);
                self.backend_values.remove(&id);
                applied.removed += 1;
            }
        }
        Ok(applied)
    }
}

/// The interface a target is reached through: the attachment of its VPC whose namespace
/// has its address; 0 (the host itself) for a VPC of host cgroups; else the VPC's first
/// namespace attachment.
fn place(
    vpc: u32,
    target: &BackendId,
    attachments: &[Attachment],
    snapshot: &Snapshot,
) -> Option<u32> {
    let of_vpc = || attachments.iter().filter(|a| a.vpc == vpc);
    if let Some(a) = of_vpc().find(|a| a.addresses.contains(&target.addr)) {
        return Some(a.ifindex);
    }
    let host_vpc = snapshot
        .vpcs
        .iter()
        .any(|v| v.key == vpc && !v.cgroups.is_empty());
    if host_vpc {
        return Some(0);
    }
    of_vpc().next().map(|a| a.ifindex)
}

fn backend_id_of(b: &Backend) -> BackendId {
    BackendId {
        target_group: b.target_group,
        addr: ip_from_net_order(b.addr),
        port: u16::from_be(b.port),
    }
}

/// The lowest number in `from..to` not in `used`.
fn lowest_free(used: impl Iterator<Item = u32>, from: u32, to: u32) -> Option<u32> {
    let used: BTreeSet<u32> = used.collect();
    (from..to).find(|n| !used.contains(n))
}

fn remove_ok(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

fn per_cpu_traffic(
    ebpf: &mut aya::Ebpf,
    name: &'static str,
    index: u32,
) -> Result<Traffic, DataplaneError> {
    let map: PerCpuArray<&mut MapData, Traffic> = open(ebpf, name)?;
    let values = map.get(&index, 0).map_err(map_err("reading", name))?;
    let mut total = Traffic::default();
    for v in values.iter() {
        total.add(v);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_fills_gaps() {
        assert_eq!(lowest_free([1, 2, 4].into_iter(), 1, 10), Some(3));
        assert_eq!(lowest_free([].into_iter(), 0, 10), Some(0));
        assert_eq!(lowest_free([0, 1].into_iter(), 0, 2), None);
    }
}
