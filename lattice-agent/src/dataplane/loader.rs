//! Loading the embedded object into the kernel, pinning it, attaching its programs.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    maps::PerCpuHashMap,
    programs::{tc::SchedClassifierLinkId, SchedClassifier, TcAttachType},
    Ebpf, EbpfLoader,
};
use lattice_common::{
    conntrack,
    ifstats::{self, IfaceCounters},
    pins::{self, programs},
};

use super::{
    bpffs::ensure_bpffs,
    object::{check_pinned_maps, embedded_object, map_specs},
    DataplaneError,
};

/// The loaded object: its programs loaded and pinned, its maps pinned (adopted when a
/// compatible pin already existed). Dropping it detaches what it attached; the pins stay
/// (see `remove_root`).
pub struct Dataplane {
    pub(super) ebpf: Ebpf,
    root: PathBuf,
    mounted_bpffs: bool,
    /// Set when socket acceleration is on (see `sockmap`).
    pub(super) sockmap: Option<super::sockmap::SockmapState>,
}

/// Sizes of the tables an operator may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Flows the conntrack table holds (two entries each); the least recently used go
    /// first when it is full.
    pub max_flows: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            max_flows: conntrack::DEFAULT_CT_ENTRIES / 2,
        }
    }
}

/// A program attached to an interface; pass it back to [`Dataplane::detach`].
#[derive(Debug)]
pub struct TcAttachment {
    pub interface: String,
    program: &'static str,
    link: SchedClassifierLinkId,
}

impl Dataplane {
    /// [`Dataplane::load_with`] with the default sizes.
    pub fn load(root: &Path) -> Result<Self, DataplaneError> {
        Self::load_with(root, &Sizes::default())
    }

    /// Mounts bpffs if needed, checks that maps already pinned under `root` fit this
    /// agent's object and `sizes` (refusing otherwise), loads the object with every map
    /// pinned by its name under `root`, and loads and pins every program under
    /// `root/progs`.
    pub fn load_with(root: &Path, sizes: &Sizes) -> Result<Self, DataplaneError> {
        let mounted_bpffs = ensure_bpffs(root)?;
        let mut specs = map_specs(embedded_object())?;
        let ct_entries = sizes.max_flows.saturating_mul(2);
        for spec in specs.iter_mut().filter(|s| s.name == conntrack::CT_MAP) {
            spec.max_entries = ct_entries;
        }
        check_pinned_maps(root, &specs)?;

        let mut loader = EbpfLoader::new();
        loader.map_max_entries(conntrack::CT_MAP, ct_entries);
        for spec in &specs {
            loader.map_pin_path(spec.name.as_str(), root.join(&spec.name));
        }
        let mut ebpf = loader
            .load(embedded_object())
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;

        for &name in programs::ALL {
            let program = ebpf
                .program_mut(name)
                .ok_or_else(|| DataplaneError::Missing {
                    kind: "program",
                    name: name.to_owned(),
                })?;
            let loaded = match program {
                aya::programs::Program::SchedClassifier(p) => p.load(),
                aya::programs::Program::CgroupSockAddr(p) => p.load(),
                aya::programs::Program::SockOps(p) => p.load(),
                aya::programs::Program::SkMsg(p) => p.load(),
                _ => Err(aya::programs::ProgramError::UnexpectedProgramType),
            };
            loaded.map_err(|source| DataplaneError::Program {
                op: "loading",
                name,
                source,
            })?;
            let path = root.join(pins::PROGS_DIR).join(name);
            // A previous agent's pin: the program it names stays alive as long as links
            // use it; the pin now names this agent's program.
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DataplaneError::Fs {
                        op: "replacing pin",
                        path,
                        source,
                    })
                }
            }
            let program = ebpf
                .program_mut(name)
                .ok_or_else(|| DataplaneError::Missing {
                    kind: "program",
                    name: name.to_owned(),
                })?;
            program.pin(&path).map_err(|source| DataplaneError::Pin {
                what: format!("program {name}"),
                path: path.clone(),
                source,
            })?;
        }
        Ok(Dataplane {
            ebpf,
            root: root.to_path_buf(),
            mounted_bpffs,
            sockmap: None,
        })
    }

    /// The bpffs root everything is pinned under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether loading had to mount bpffs first.
    pub fn mounted_bpffs(&self) -> bool {
        self.mounted_bpffs
    }

    /// Names of the pinned maps, as `bpftool map dump pinned <root>/<name>` takes them.
    pub fn map_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ebpf
            .maps()
            .map(|(n, _)| n.to_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Attaches the tc ingress program to `interface` in the calling thread's network
    /// namespace (tcx on kernels that have it, else a clsact qdisc filter).
    pub fn attach_tc_ingress(&mut self, interface: &str) -> Result<TcAttachment, DataplaneError> {
        let name = programs::TC_INGRESS;
        let program = classifier(&mut self.ebpf, name)?;
        let link = program
            .attach(interface, TcAttachType::Ingress)
            .map_err(|source| DataplaneError::Program {
                op: "attaching",
                name,
                source,
            })?;
        Ok(TcAttachment {
            interface: interface.to_owned(),
            program: name,
            link,
        })
    }

    /// Detaches what [`Dataplane::attach_tc_ingress`] attached.
    pub fn detach(&mut self, attachment: TcAttachment) -> Result<(), DataplaneError> {
        let program = classifier(&mut self.ebpf, attachment.program)?;
        program
            .detach(attachment.link)
            .map_err(|source| DataplaneError::Program {
                op: "detaching",
                name: attachment.program,
                source,
            })
    }

    /// Per-interface counters summed over CPUs, by ifindex.
    pub fn interface_counters(&self) -> Result<Vec<(u32, IfaceCounters)>, DataplaneError> {
        let name = ifstats::MAP_NAME;
        let map = self.ebpf.map(name).ok_or_else(|| DataplaneError::Missing {
            kind: "map",
            name: name.to_owned(),
        })?;
        let map: PerCpuHashMap<_, u32, IfaceCounters> =
            PerCpuHashMap::try_from(map).map_err(|source| DataplaneError::Map {
                op: "opening",
                name,
                source,
            })?;
        let mut out = Vec::new();
        for entry in map.iter() {
            let (ifindex, per_cpu) = entry.map_err(|source| DataplaneError::Map {
                op: "reading",
                name,
                source,
            })?;
            let mut total = IfaceCounters::default();
            for counters in per_cpu.iter() {
                total.add(counters);
            }
            out.push((ifindex, total));
        }
        out.sort_by_key(|(ifindex, _)| *ifindex);
        Ok(out)
    }
}

pub(super) fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, DataplaneError> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| DataplaneError::Missing {
            kind: "program",
            name: name.to_owned(),
        })?;
    program
        .try_into()
        .map_err(|source| DataplaneError::Program {
            op: "typing",
            name,
            source,
        })
}

/// The errno of a failed map syscall: aya reports a missing key on delete, or an
/// existing one on a BPF_NOEXIST update, only as the syscall's error.
pub(super) fn map_errno(e: &aya::maps::MapError) -> Option<i32> {
    match e {
        aya::maps::MapError::SyscallError(e) => e.io_error.raw_os_error(),
        _ => None,
    }
}

/// Turns a map error into a dataplane error naming the map and the operation.
pub(super) fn map_err(
    op: &'static str,
    name: &'static str,
) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { op, name, source }
}

/// Opens a map of the loaded object as a typed map.
pub(super) fn open<'a, M>(ebpf: &'a mut aya::Ebpf, name: &'static str) -> Result<M, DataplaneError>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or_else(|| DataplaneError::Missing {
        kind: "map",
        name: name.to_owned(),
    })?;
    M::try_from(map).map_err(map_err("opening", name))
}
