//! Socket-level acceleration for same-host hops (contract in `lattice_common::sockmap`):
//! the sk_msg program goes on the SOCKHASH, sock_ops on the cgroups whose sockets are
//! lattice's, and the endpoints of the document go into the map sock_ops filters by.
//!
//! Which cgroups: the agent's own (from `/proc/self/cgroup`: its accepted and upstream
//! sockets, wherever their namespace), every attached VPC cgroup (host clients and host
//! targets; attached with connect4 in `attach`), and the `--sockmap-cgroup`s an operator
//! names (where the workloads of VPC namespaces run: a socket belongs to the cgroup of
//! the process that made it, not to its namespace). Never the root cgroup.
//!
//! Restarts: the sk_msg program is attached to the pinned SOCKHASH itself, so it stays
//! with the map when the agent goes, and a new agent's program replaces it in one step;
//! sock_ops links are pinned like connect4's and replaced side by side. Sockets already
//! in the map keep the program they were recorded with and go on being accelerated.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, SockHash},
    programs::SkMsg,
};
use lattice_common::{
    pins::{programs, LINKS_DIR},
    sockmap::{
        endpoint, Endpoint, SockKey, SockmapConfig, SockmapCounters, CONFIG_MAP,
        DEFAULT_BACKLOG_LIMIT, ENDPOINTS_MAP, SOCKS_MAP, STATS_MAP,
    },
};
use tracing::info;

use super::{
    attach::cgroup2_mount,
    btf::{KernelTypes, VMLINUX_BTF},
    compile::ip_net_order,
    loader::{map_err, open},
    Dataplane, DataplaneError,
};

/// What acceleration is on for, besides the VPC cgroups.
#[derive(Debug, Default)]
pub struct SockmapState {
    /// Ids of the cgroups sock_ops is attached to for the agent itself and the
    /// `--sockmap-cgroup`s.
    own: BTreeSet<u64>,
    /// The endpoints written to `LT_SKEPS_V1`.
    endpoints: BTreeSet<Endpoint>,
}

impl SockmapState {
    /// Whether cgroup `id` is one of the agent's own acceleration cgroups.
    pub(super) fn owns(&self, id: u64) -> bool {
        self.own.contains(&id)
    }
}

/// How acceleration was set up, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SockmapStatus {
    /// The cgroups sock_ops was attached to.
    pub cgroups: Vec<PathBuf>,
    /// Cgroups left out, and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// What sk_msg was told about the kernel's socket layout, and the backlog limit.
    pub layout: SockmapConfig,
}

impl SockmapStatus {
    /// Whether `cgroup` was left out for being the root cgroup.
    pub fn root_skipped(&self, cgroup: &Path) -> bool {
        cgroup2_mount().is_ok_and(|m| m == cgroup)
    }
}

/// The acceleration counters and sockets, as `lattice-agent maps` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SockmapRow {
    /// Whether the agent that wrote the maps had acceleration on.
    pub enabled: bool,
    /// Sockets in the SOCKHASH now.
    pub open_sockets: u64,
    /// Connections with both ends in the SOCKHASH now.
    pub open_pairs: u64,
    /// Since the maps were created.
    pub sockets_recorded: u64,
    pub insert_errors: u64,
    pub connections_accelerated: u64,
    pub redirected_messages: u64,
    pub redirected_bytes: u64,
    pub normal_messages: u64,
    pub normal_bytes: u64,
    /// Messages sent through TCP because the receiver had too many unread bytes.
    pub throttled_messages: u64,
}

impl Dataplane {
    /// Turns acceleration on: writes the switch and the kernel layout facts sk_msg needs,
    /// the endpoints, attaches sk_msg to the SOCKHASH (before any socket can be recorded,
    /// since a socket takes the map's program when it is recorded), then sock_ops to the
    /// agent's own cgroup and `extra_cgroups` (paths under the cgroup2 mount). VPC
    /// cgroups get sock_ops when they are attached. A cgroup that cannot take it (the
    /// root, one that does not exist) is reported, not fatal.
    pub fn enable_sockmap(
        &mut self,
        extra_cgroups: &[PathBuf],
        endpoints: &BTreeSet<(Ipv4Addr, u16, u32)>,
    ) -> Result<SockmapStatus, DataplaneError> {
        let layout = kernel_layout(Path::new(VMLINUX_BTF))?;
        self.write_sockmap_config(layout)?;
        self.sockmap = Some(SockmapState::default());
        self.set_sock_endpoints(endpoints)?;
        self.attach_sk_msg()?;

        let mut status = SockmapStatus {
            layout,
            ..SockmapStatus::default()
        };
        let mount = cgroup2_mount()?;
        let mut wanted: Vec<PathBuf> = Vec::new();
        match own_cgroup() {
            Ok(relative) => wanted.push(relative),
            Err(why) => status
                .skipped
                .push((PathBuf::from("(the agent's cgroup)"), why)),
        }
        wanted.extend(extra_cgroups.iter().cloned());
        for relative in wanted {
            let relative = relative
                .strip_prefix("/")
                .unwrap_or(&relative)
                .to_path_buf();
            let path = mount.join(&relative);
            if relative.as_os_str().is_empty() {
                status.skipped.push((
                    path,
                    "the root cgroup: lattice never attaches there (run the agent in a \
                     cgroup of its own, as a systemd service does)"
                        .into(),
                ));
                continue;
            }
            let id = match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => meta.ino(),
                Ok(_) => {
                    status.skipped.push((path, "not a cgroup directory".into()));
                    continue;
                }
                Err(e) => {
                    status.skipped.push((path, e.to_string()));
                    continue;
                }
            };
            self.attach_cgroup_program(programs::SOCK_OPS, &path, id)?;
            if let Some(state) = self.sockmap.as_mut() {
                state.own.insert(id);
            }
            status.cgroups.push(path);
        }
        Ok(status)
    }

    /// Turns acceleration off (`--no-sockmap`): nothing new is recorded or starts
    /// redirecting, and the sock_ops links a previous agent pinned go. Connections
    /// already accelerated go on until they close. Returns how many links went.
    pub fn disable_sockmap(&mut self) -> Result<usize, DataplaneError> {
        // The layout stays known, so that directions already redirecting can still
        // check their peer's backlog (without it they would all fall back to TCP).
        let layout = kernel_layout(Path::new(VMLINUX_BTF)).unwrap_or_default();
        self.write_sockmap_config(SockmapConfig {
            enabled: 0,
            ..layout
        })?;
        self.sockmap = None;
        self.sweep_sock_ops(&BTreeSet::new())
    }

    /// Whether acceleration is on.
    pub fn sockmap_enabled(&self) -> bool {
        self.sockmap.is_some()
    }

    /// Makes `LT_SKEPS_V1` hold exactly `wanted` (address, port, kind bits): new ones
    /// first, stale ones deleted last. Nothing when acceleration is off.
    pub fn set_sock_endpoints(
        &mut self,
        wanted: &BTreeSet<(Ipv4Addr, u16, u32)>,
    ) -> Result<(), DataplaneError> {
        let Some(state) = self.sockmap.as_ref() else {
            return Ok(());
        };
        let mut kinds: std::collections::BTreeMap<Endpoint, u32> = Default::default();
        for (addr, port, kind) in wanted {
            let key = Endpoint {
                addr: ip_net_order(*addr),
                port: port.to_be(),
                _pad: 0,
            };
            *kinds.entry(key).or_default() |= kind;
        }
        let stale: Vec<Endpoint> = state
            .endpoints
            .iter()
            .filter(|e| !kinds.contains_key(e))
            .copied()
            .collect();
        let mut map: BpfHashMap<_, Endpoint, u32> = open(&mut self.ebpf, ENDPOINTS_MAP)?;
        for (key, kind) in &kinds {
            map.insert(key, kind, 0)
                .map_err(map_err("writing", ENDPOINTS_MAP))?;
        }
        // Entries a previous agent wrote that this one does not want go too (once
        // each: what this agent wrote is pinned as well).
        let pinned: Vec<Endpoint> = map.keys().filter_map(Result::ok).collect();
        let unwanted: BTreeSet<Endpoint> = stale
            .into_iter()
            .chain(pinned.into_iter().filter(|k| !kinds.contains_key(k)))
            .collect();
        for key in unwanted {
            match map.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                // Gone already: what deleting wanted.
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(map_err("deleting from", ENDPOINTS_MAP)(e)),
            }
        }
        if let Some(state) = self.sockmap.as_mut() {
            state.endpoints = kinds.into_keys().collect();
        }
        Ok(())
    }

    /// Removes the sock_ops links pinned for cgroups that are neither the agent's own
    /// acceleration cgroups nor in `keep` (the attached VPC cgroups): a previous agent's
    /// choices this one does not share. Returns how many went.
    pub fn sweep_sock_ops(&mut self, keep: &BTreeSet<u64>) -> Result<usize, DataplaneError> {
        let dir = self.root().join(LINKS_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(DataplaneError::Fs {
                    op: "listing",
                    path: dir,
                    source,
                })
            }
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = sock_ops_link_cgroup(&name) else {
                continue;
            };
            let owned = self.sockmap.as_ref().is_some_and(|s| s.owns(id));
            if owned || keep.contains(&id) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    removed += 1;
                    info!(link = %name, "removed a sock_ops link this agent does not want");
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DataplaneError::Fs {
                        op: "unpinning",
                        path: entry.path(),
                        source,
                    })
                }
            }
        }
        Ok(removed)
    }

    /// The acceleration counters, summed over CPUs.
    pub fn sockmap_counters(&mut self) -> Result<SockmapCounters, DataplaneError> {
        let map: PerCpuArray<_, SockmapCounters> = open(&mut self.ebpf, STATS_MAP)?;
        sum_counters(&map)
    }

    /// The sockets in the SOCKHASH now.
    pub fn accelerated_sockets(&mut self) -> Result<Vec<SockKey>, DataplaneError> {
        let map: SockHash<_, SockKey> = open(&mut self.ebpf, SOCKS_MAP)?;
        Ok(map.keys().filter_map(Result::ok).collect())
    }

    fn write_sockmap_config(&mut self, value: SockmapConfig) -> Result<(), DataplaneError> {
        let mut map: Array<_, SockmapConfig> = open(&mut self.ebpf, CONFIG_MAP)?;
        map.set(0, value, 0).map_err(map_err("writing", CONFIG_MAP))
    }

    /// Attaches sk_msg to the SOCKHASH, replacing a previous agent's program there.
    fn attach_sk_msg(&mut self) -> Result<(), DataplaneError> {
        let name = programs::SK_MSG;
        let fd = {
            let map: SockHash<_, SockKey> = open(&mut self.ebpf, SOCKS_MAP)?;
            map.fd().try_clone().map_err(|source| DataplaneError::Fs {
                op: "duplicating the descriptor of",
                path: self.root().join(SOCKS_MAP),
                source,
            })?
        };
        let program: &mut SkMsg = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| DataplaneError::Missing {
                kind: "program",
                name: name.to_owned(),
            })?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                op: "typing",
                name,
                source,
            })?;
        let id = program
            .attach(&fd)
            .map_err(|source| DataplaneError::Program {
                op: "attaching",
                name,
                source,
            })?;
        let link = program
            .take_link(id)
            .map_err(|source| DataplaneError::Program {
                op: "taking link of",
                name,
                source,
            })?;
        // The attachment belongs to the pinned map from now on: dropping the link would
        // detach the program when the agent exits, and established accelerated
        // connections must outlive the agent. Its two descriptors stay open meanwhile.
        std::mem::forget(link);
        Ok(())
    }
}

/// Sums a per-CPU counters array (of one entry).
pub(super) fn sum_counters<T: std::borrow::Borrow<MapData>>(
    map: &PerCpuArray<T, SockmapCounters>,
) -> Result<SockmapCounters, DataplaneError> {
    let mut total = SockmapCounters::default();
    for c in map
        .get(&0, 0)
        .map_err(map_err("reading", STATS_MAP))?
        .iter()
    {
        total.add(c);
    }
    Ok(total)
}

/// How many of `keys` have their peer (the mirrored key) in the set too, as connections.
pub fn open_pairs(keys: &[SockKey]) -> u64 {
    let set: BTreeSet<(u64, u32, u32, u16, u16)> = keys
        .iter()
        .map(|k| {
            (
                k.netns,
                k.local_addr,
                k.remote_addr,
                k.local_port,
                k.remote_port,
            )
        })
        .collect();
    let paired = keys
        .iter()
        .filter(|k| {
            let m = k.mirrored();
            set.contains(&(
                m.netns,
                m.local_addr,
                m.remote_addr,
                m.local_port,
                m.remote_port,
            ))
        })
        .count();
    (paired / 2) as u64
}

/// The endpoints of lattice's hops in a document: every listener's VIP:port and every
/// IP target's address:port, with their kinds.
pub fn endpoints(
    config: &crate::config::Config,
    resolved: &crate::resolve::Resolved,
) -> BTreeSet<(Ipv4Addr, u16, u32)> {
    let mut out = BTreeSet::new();
    for (s, service) in config.services().iter().enumerate() {
        for listener in &service.listeners {
            out.insert((
                resolved.services[s].vip,
                listener.port.get(),
                endpoint::LISTENER,
            ));
        }
    }
    for group in config.target_groups() {
        for target in &group.targets {
            if let crate::config::TargetId::Ip(addr) = target.id {
                out.insert((addr, target.port.get(), endpoint::TARGET));
            }
        }
    }
    out
}

/// The agent's cgroup (relative to the cgroup2 mount), from `/proc/self/cgroup`.
fn own_cgroup() -> Result<PathBuf, String> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    cgroup2_path_of(&text).ok_or_else(|| "no cgroup2 line (0::) in /proc/self/cgroup".into())
}

/// The cgroup2 path in `/proc/<pid>/cgroup` text (the `0::` line).
fn cgroup2_path_of(text: &str) -> Option<PathBuf> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim()))
}

/// The cgroup id of a sock_ops link pin name (`cg<id>-lt_sock_ops`).
fn sock_ops_link_cgroup(pin: &str) -> Option<u64> {
    super::attach::link_cgroup(pin, programs::SOCK_OPS)
}

/// The kernel layout facts sk_msg needs (see `SockmapConfig`), from the running
/// kernel's BTF, with the backlog limit.
pub fn kernel_layout(btf: &Path) -> Result<SockmapConfig, DataplaneError> {
    let types = KernelTypes::read(btf)?;
    let field = |strukt: &str, path: &[&str]| {
        types
            .offset(strukt, path)
            .map_err(|message| DataplaneError::Command {
                command: format!("finding {strukt}.{} in {}", path.join("."), btf.display()),
                message,
            })
    };
    Ok(SockmapConfig {
        enabled: 1,
        backlog_limit: backlog_limit(),
        write_seq: field("tcp_sock", &["write_seq"])?,
        snd_una: field("tcp_sock", &["snd_una"])?,
        copied_seq: field("tcp_sock", &["copied_seq"])?,
        rcv_nxt: field("tcp_sock", &["rcv_nxt"])?,
        rmem_alloc: field("sock", &["sk_backlog", "rmem_alloc"])?,
        rcvbuf: field("sock", &["sk_rcvbuf"])?,
    })
}

/// Unread redirected bytes a receiver may hold: what TCP lets a receive buffer grow to
/// on this host (`net.ipv4.tcp_rmem`'s maximum), at least the default limit.
fn backlog_limit() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse::<u32>().ok())
        .unwrap_or(0)
        .max(DEFAULT_BACKLOG_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cgroup2_path() {
        let text = "4:memory:/x\n0::/system.slice/lattice.service\n";
        assert_eq!(
            cgroup2_path_of(text),
            Some(PathBuf::from("/system.slice/lattice.service"))
        );
        assert_eq!(cgroup2_path_of("1:cpu:/\n"), None);
    }

    #[test]
    fn sock_ops_link_names() {
        assert_eq!(sock_ops_link_cgroup("cg42-lt_sock_ops"), Some(42));
        assert_eq!(sock_ops_link_cgroup("cg42-lt_connect4"), None);
        assert_eq!(sock_ops_link_cgroup("cg42-lt_sock_ops-new"), None);
        assert_eq!(sock_ops_link_cgroup("ltv0123456789"), None);
    }

    #[test]
    fn counts_open_pairs() {
        let a = SockKey {
            netns: 7,
            local_addr: 1,
            remote_addr: 2,
            local_port: 10,
            remote_port: 20,
            _pad: 0,
        };
        let lone = SockKey {
            local_port: 11,
            ..a
        };
        let other_ns = SockKey {
            netns: 8,
            ..a.mirrored()
        };
        assert_eq!(open_pairs(&[a, a.mirrored(), lone, other_ns]), 1);
        assert_eq!(open_pairs(&[a]), 0);
    }
}
