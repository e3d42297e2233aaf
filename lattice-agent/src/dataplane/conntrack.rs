//! The flows tc ingress has opened (`LT_CT_V2`): deleting those that are over, and
//! carrying over the flows of a pinned map of the older layout (`LT_CT_V1`).
//!
//! The kernel never deletes an entry on its own, except to reuse the SNAT port of a
//! flow that is over (`lattice_common::conntrack::flow_expired`, the rule this sweep
//! follows too) or when the LRU map is full. Without the sweep, closed flows would
//! fill the map until the LRU evicted live ones.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapError};
use lattice_common::{
    conntrack::{flow_expired, FlowKey, Nat, NatV1, CLOSE_TIMEOUT_NS, CT_MAP, CT_MAP_V1},
    vpcs::{Iface, IFACES_MAP},
};

use super::{loader::map_errno, DataplaneError};

/// `BPF_NOEXIST`: a carried flow never replaces one the new programs opened.
const BPF_NOEXIST: u64 = 1;

/// The sweeper waits this many times as long as its last sweep took, and at least its
/// interval, so that a map of a million flows costs a tenth of a core at most.
const SWEEP_PACING: u32 = 10;
/// The sweeper's nice value: sweeping is background work, which the host's processes
/// should not wait behind (the kernel's own path does not run at any nice value).
const SWEEPER_NICE: i32 = 10;

/// The clock of `bpf_ktime_get_ns()` (CLOCK_MONOTONIC as the host's time namespace
/// has it), in nanoseconds. An agent in a time namespace of its own (a container's)
/// reads its monotonic clock shifted by the namespace's offset; the kernel's is not.
pub fn kernel_now_ns() -> u64 {
    static OFFSET_NS: OnceLock<i128> = OnceLock::new();
    let offset = *OFFSET_NS.get_or_init(|| {
        monotonic_offset_ns(&fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default())
    });
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
        .unwrap_or(0);
    u64::try_from(now - offset).unwrap_or(0)
}

/// The monotonic clock's offset in `/proc/self/timens_offsets` (time_namespaces(7):
/// a line `monotonic <seconds> <nanoseconds>` per clock); 0 without one.
fn monotonic_offset_ns(text: &str) -> i128 {
    text.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            if fields.next()? != "monotonic" {
                return None;
            }
            let secs: i64 = fields.next()?.parse().ok()?;
            let nanos: i64 = fields.next()?.parse().ok()?;
            Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
        })
        .unwrap_or(0)
}

/// What a sweep found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Entries looked at (two per flow).
    pub entries: usize,
    /// Entries deleted.
    pub deleted: usize,
}

/// What the sweeps found so far, for the metrics endpoint (which must not walk the
/// map on every scrape).
#[derive(Debug, Default)]
pub struct SweepStats {
    sweeps: AtomicU64,
    entries: AtomicU64,
    deleted: AtomicU64,
}

impl SweepStats {
    fn record(&self, swept: Swept) {
        self.entries.store(swept.entries as u64, Ordering::Relaxed);
        self.deleted
            .fetch_add(swept.deleted as u64, Ordering::Relaxed);
        self.sweeps.fetch_add(1, Ordering::Relaxed);
    }

    /// Sweeps done.
    pub fn sweeps(&self) -> u64 {
        self.sweeps.load(Ordering::Relaxed)
    }

    /// Entries in the map at the last sweep (two per flow).
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Entries the sweeps deleted, all told.
    pub fn deleted(&self) -> u64 {
        self.deleted.load(Ordering::Relaxed)
    }
}

/// The pinned conntrack map, opened apart from the loaded object: the sweep runs on
/// its own thread.
pub struct Conntrack {
    root: PathBuf,
    flows: BpfHashMap<MapData, FlowKey, Nat>,
}

impl Conntrack {
    /// Opens the conntrack map pinned under `root`.
    pub fn open(root: &Path) -> Result<Self, DataplaneError> {
        let flows = open_pinned(root, CT_MAP, Map::LruHashMap)?;
        Ok(Conntrack {
            root: root.to_path_buf(),
            flows,
        })
    }

    /// Deletes every flow that is over at `now` (both entries), deciding each flow once
    /// from its forward entry, or from a reply entry left alone. A flow is looked at
    /// again just before its deletion: one reopened meanwhile (a new SYN on the same
    /// ports) is kept. One reopened in the microseconds between that look and the
    /// deletion loses its entries, and its client's retransmitted SYN opens it again.
    pub fn sweep(&mut self, now: u64) -> Result<Swept, DataplaneError> {
        let mut swept = Swept::default();
        let mut over = Vec::new();
        for item in self.flows.iter() {
            let (key, nat) = match item {
                Ok(entry) => entry,
                // Deleted by the kernel while we walked.
                Err(MapError::KeyNotFound) => continue,
                Err(source) => return Err(map_error("reading", source)),
            };
            swept.entries += 1;
            // No flow ends sooner than CLOSE_TIMEOUT after a packet either way: a recent
            // entry is left without reading its partner (most of a busy map).
            if now.saturating_sub(nat.last_seen) <= CLOSE_TIMEOUT_NS {
                continue;
            }
            let partner = self.partner(&key, &nat);
            if nat.flags & Nat::REPLY != 0 && partner.is_some() {
                continue;
            }
            if flow_expired(&nat, partner.as_ref(), now) {
                over.push(key);
            }
        }
        for key in over {
            let Ok(nat) = self.flows.get(&key, 0) else {
                continue;
            };
            let partner = self.partner(&key, &nat);
            if !flow_expired(&nat, partner.as_ref(), now) {
                continue;
            }
            let partner_key = nat.partner();
            for key in std::iter::once(key).chain(partner.map(|_| partner_key)) {
                match self.flows.remove(&key) {
                    Ok(()) => swept.deleted += 1,
                    // The kernel took the port over and deleted it first.
                    Err(e) if map_errno(&e) == Some(libc::ENOENT) => {}
                    Err(source) => return Err(map_error("deleting from", source)),
                }
            }
        }
        Ok(swept)
    }

    /// The entry of the other direction of the flow whose entry `nat` is stored under
    /// `key`, if that entry names `key` back (otherwise it is a newer flow's).
    fn partner(&self, key: &FlowKey, nat: &Nat) -> Option<Nat> {
        self.flows
            .get(&nat.partner(), 0)
            .ok()
            .filter(|p| p.partner() == *key)
    }

    /// Copies the flows of a pinned `LT_CT_V1` (an agent before flows expired) into
    /// this map as of `now`, never over an entry already there; how many were carried,
    /// or `None` when there is no such pin. Flows whose interface is gone are dropped:
    /// nothing could deliver their packets. Done once before the new programs replace
    /// the old ones (which write `LT_CT_V1` until then), and once after, when
    /// [`Conntrack::retire_v1`] follows.
    pub fn carry_over_v1(&mut self, now: u64) -> Result<Option<usize>, DataplaneError> {
        let path = self.root.join(CT_MAP_V1);
        if !path.exists() {
            return Ok(None);
        }
        let old: BpfHashMap<MapData, FlowKey, NatV1> =
            open_pinned(&self.root, CT_MAP_V1, Map::LruHashMap)?;
        let ifaces: BpfHashMap<MapData, u32, Iface> =
            open_pinned(&self.root, IFACES_MAP, Map::HashMap)?;
        let mut carried = 0;
        for (key, nat) in old.iter().filter_map(Result::ok) {
            let Ok(iface) = ifaces.get(&nat.ifindex, 0) else {
                continue;
            };
            match self
                .flows
                .insert(key, nat.upgrade(iface.vpc, now), BPF_NOEXIST)
            {
                Ok(()) => carried += 1,
                // Already opened again by the new programs.
                Err(e) if map_errno(&e) == Some(libc::EEXIST) => {}
                Err(source) => return Err(map_error("writing", source)),
            }
        }
        Ok(Some(carried))
    }

    /// Removes the pin of `LT_CT_V1` once no program writes it any more.
    pub fn retire_v1(&self) -> Result<(), DataplaneError> {
        let path = self.root.join(CT_MAP_V1);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DataplaneError::Fs {
                op: "removing the old conntrack pin",
                path,
                source,
            }),
        }
    }
}

/// How long the sweeper waits after a sweep that took `took`, sweeping at most every
/// `interval`.
pub fn sweep_pause(took: Duration, interval: Duration) -> Duration {
    interval.max(took * SWEEP_PACING)
}

/// Carries over an old layout's flows, then sweeps every [`sweep_pause`] until
/// `stop` says so, the first time one interval after the start (an agent starting is
/// busy enough); failures are logged and retried on the next round.
pub fn run_sweeper(
    root: &Path,
    interval: Duration,
    stop: &std::sync::mpsc::Receiver<()>,
    stats: &SweepStats,
) {
    // On Linux a nice value is the calling thread's own.
    if let Err(e) = rustix::process::setpriority_process(None, SWEEPER_NICE) {
        tracing::debug!(error = %e, "the conntrack sweeper keeps the agent's priority");
    }
    let mut conntrack = match Conntrack::open(root) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "conntrack sweeps off: cannot open the map; closed flows stay until the LRU evicts them");
            return;
        }
    };
    // The new programs are attached by now: what the old ones opened meanwhile comes
    // over, and the old map goes.
    let carried = conntrack
        .carry_over_v1(kernel_now_ns())
        .and_then(|carried| conntrack.retire_v1().map(|()| carried));
    match carried {
        Ok(Some(carried)) => tracing::info!(
            carried,
            from = CT_MAP_V1,
            to = CT_MAP,
            "flows of the older conntrack layout carried over; the old map is removed"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "carrying over the older conntrack map failed"),
    }
    let mut took = Duration::ZERO;
    loop {
        match stop.recv_timeout(sweep_pause(took, interval)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let started = Instant::now();
        match conntrack.sweep(kernel_now_ns()) {
            Ok(s) => {
                stats.record(s);
                if s.deleted > 0 {
                    tracing::debug!(entries = s.entries, deleted = s.deleted, "conntrack swept");
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeping the conntrack map failed; retrying"),
        }
        took = started.elapsed();
    }
}

fn open_pinned<K: aya::Pod, V: aya::Pod>(
    root: &Path,
    name: &'static str,
    kind: fn(MapData) -> Map,
) -> Result<BpfHashMap<MapData, K, V>, DataplaneError> {
    let path = root.join(name);
    let data =
        MapData::from_pin(&path).map_err(|source| DataplaneError::ReadPin { path, source })?;
    BpfHashMap::try_from(kind(data)).map_err(|source| DataplaneError::Map {
        op: "opening",
        name,
        source,
    })
}

fn map_error(op: &'static str, source: MapError) -> DataplaneError {
    DataplaneError::Map {
        op,
        name: CT_MAP,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_namespaces_monotonic_offset_is_taken_off() {
        let host = "monotonic           0         0\nboottime            0         0\n";
        assert_eq!(monotonic_offset_ns(host), 0);
        let shifted = "monotonic      86400       500\nboottime          -7         0\n";
        assert_eq!(monotonic_offset_ns(shifted), 86_400_000_000_500);
        let behind = "boottime 0 0\nmonotonic -3600 0\n";
        assert_eq!(monotonic_offset_ns(behind), -3_600_000_000_000);
        assert_eq!(
            monotonic_offset_ns(""),
            0,
            "kernels without time namespaces"
        );
    }

    #[test]
    fn sweeps_are_paced_by_their_cost() {
        let every = Duration::from_secs(10);
        assert_eq!(sweep_pause(Duration::from_millis(5), every), every);
        assert_eq!(
            sweep_pause(Duration::from_secs(3), every),
            Duration::from_secs(30)
        );
    }
}
