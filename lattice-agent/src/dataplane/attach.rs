//! Joining a VPC's network namespace to the lattice: a veth pair the agent owns, the
//! routes that send the namespace's VIP traffic into it, and the tc program on its host
//! end, attached through a pinned link so it stays attached (and is replaced
//! atomically) across agent restarts.

use std::{
    collections::BTreeSet,
    io,
    net::Ipv4Addr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::HashMap as BpfHashMap,
    programs::{
        links::{FdLink, LinkError, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        CgroupAttachMode, LinkOrder, TcAttachType,
    },
};
use lattice_common::{
    cgroups::CGROUPS_MAP,
    pins::{programs, LINKS_DIR},
    vpcs::{self, Iface},
};
use sha2::{Digest as _, Sha256};
use tracing::info;

use super::{
    compile::{ip_net_order, PathSettings, VpcPlan},
    ip::{self, addresses_in, ifindex_of, link_exists, mac_of, netns_inode, vpc_address},
    loader::{classifier, map_err, map_errno, open},
    Dataplane, DataplaneError,
};

/// The name of lattice's link inside every attached namespace.
pub const NS_LINK: &str = "lattice0";

/// A cgroup of host processes joined to the lattice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupAttachment {
    pub vpc: u32,
    /// The cgroup's directory under the cgroup2 mount.
    pub path: PathBuf,
    /// Its cgroup id (the directory's inode), as the kernel reports it.
    pub id: u64,
}

/// Where cgroup2 is mounted (found in /proc/mounts: hybrid hosts mount it at
/// /sys/fs/cgroup/unified, unified ones at /sys/fs/cgroup).
pub fn cgroup2_mount() -> Result<PathBuf, DataplaneError> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(DataplaneError::ReadMounts)?;
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .ok_or_else(|| DataplaneError::Command {
            command: "finding the cgroup2 mount in /proc/mounts".into(),
            message: "no cgroup2 filesystem is mounted".into(),
        })
}

/// A namespace joined to the lattice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub vpc: u32,
    pub netns: String,
    /// The namespace joined ([`super::ip::netns_inode`] when it was): a namespace made
    /// again under the same name is another one, to be joined afresh.
    pub netns_inode: u64,
    /// The host end of the veth.
    pub host_link: String,
    pub ifindex: u32,
    /// The namespace's own address inside the VPC's CIDR: the source of its VIP traffic.
    pub vpc_addr: Ipv4Addr,
    /// Every IPv4 address of the namespace (targets are found by address).
    pub addresses: Vec<Ipv4Addr>,
}

/// The host end's name: `ltv` and a hash of the VPC and namespace (at most 15 bytes, the
/// same name for the same attachment whichever agent makes it).
pub fn host_link_name(vpc: u32, netns: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(vpc.to_be_bytes());
    hasher.update(netns.as_bytes());
    format!("ltv{}", &hex::encode(hasher.finalize())[..10])
}

impl Dataplane {
    /// Joins `netns` to the lattice as part of `vpc`: creates the veth pair (or keeps the
    /// one a previous agent made), sets the routes for the VIP and SNAT pools with the
    /// namespace's VPC address as source, records the interface in `LT_IFACES_V1`, and
    /// attaches the tc program through a pinned link. Idempotent.
    pub fn attach_netns(
        &mut self,
        vpc: &VpcPlan,
        netns: &str,
        settings: &PathSettings,
    ) -> Result<Attachment, DataplaneError> {
        // Read first: a namespace replaced while it is joined is noticed on the next sync.
        let netns_inode = netns_inode(netns).ok_or_else(|| DataplaneError::Command {
            command: format!("finding network namespace {netns} under /run/netns"),
            message: "it does not exist (any more)".into(),
        })?;
        let addresses = addresses_in(netns)?;
        let vpc_addr =
            vpc_address(&addresses, vpc.cidr).ok_or_else(|| DataplaneError::NoVpcAddress {
                vpc: vpc.name.clone(),
                netns: netns.to_owned(),
                cidr: vpc.cidr,
            })?;
        let host = host_link_name(vpc.key, netns);
        let created = !link_exists(&host);
        if created {
            ip::ip(&[
                "link", "add", &host, "type", "veth", "peer", "name", NS_LINK, "netns", netns,
            ])?;
        }
        let agent = format!("{}/32", settings.agent_addr);
        let src = vpc_addr.to_string();
        let via = settings.agent_addr.to_string();
        ip::ip(&["link", "set", &host, "up"])?;
        ip::ip(&["addr", "replace", &agent, "dev", &host])?;
        ip::ip(&["-n", netns, "link", "set", NS_LINK, "up"])?;
        ip::ip(&[
            "-n", netns, "route", "replace", &agent, "dev", NS_LINK, "scope", "link", "src", &src,
        ])?;
        for pool in [settings.vip_pool, settings.snat_pool] {
            ip::ip(&[
                "-n",
                netns,
                "route",
                "replace",
                &pool.to_string(),
                "via",
                &via,
                "dev",
                NS_LINK,
                "src",
                &src,
                "onlink",
            ])?;
        }
        let ifindex = ifindex_of(&host)?;
        let iface = Iface {
            vpc: vpc.key,
            snat_addr: ip_net_order(vpc.snat_addr),
            host_mac: mac_of(None, &host)?,
            peer_mac: mac_of(Some(netns), NS_LINK)?,
        };
        self.ifaces_mut()?
            .insert(ifindex, iface, 0)
            .map_err(|source| DataplaneError::Map {
                op: "writing",
                name: vpcs::IFACES_MAP,
                source,
            })?;
        self.attach_pinned(&host, created)?;
        if created {
            info!(vpc = %vpc.name, netns, host_link = %host, %vpc_addr, "attached VPC namespace");
        }
        Ok(Attachment {
            vpc: vpc.key,
            netns: netns.to_owned(),
            netns_inode,
            host_link: host,
            ifindex,
            vpc_addr,
            addresses,
        })
    }

    /// Forgets an interface whose namespace is gone (the kernel deleted the veth with it):
    /// its `LT_IFACES_V1` entry and its pinned link.
    pub fn forget_interface(
        &mut self,
        ifindex: u32,
        host_link: &str,
    ) -> Result<(), DataplaneError> {
        match self.ifaces_mut()?.remove(&ifindex) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(source) => {
                return Err(DataplaneError::Map {
                    op: "deleting from",
                    name: vpcs::IFACES_MAP,
                    source,
                })
            }
        }
        let pin = self.link_pin(host_link);
        match std::fs::remove_file(&pin) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DataplaneError::Fs {
                op: "unpinning",
                path: pin,
                source,
            }),
        }
    }

    /// Removes every VPC link recorded in `LT_IFACES_V1` (for `cleanup`).
    pub fn remove_all_links(&mut self) -> Result<Vec<u32>, DataplaneError> {
        let ifindexes: Vec<u32> = self.ifaces_mut()?.keys().filter_map(Result::ok).collect();
        for ifindex in &ifindexes {
            if let Some(name) = name_of_ifindex(*ifindex) {
                // Deleting one end deletes the pair.
                let _ = ip::ip(&["link", "del", "dev", &name]);
            }
        }
        Ok(ifindexes)
    }

    /// Joins a cgroup of host processes to the lattice as part of `vpc`: records its id
    /// in `LT_CGROUPS_V1` and attaches connect4 and getpeername4 through pinned links.
    /// A previous agent's links are replaced without a gap: the new programs are
    /// attached next to the old ones (which then see addresses already rewritten and
    /// let them pass), and the old links are unpinned afterwards. Idempotent.
    pub fn attach_cgroup(
        &mut self,
        vpc: &VpcPlan,
        relative: &Path,
    ) -> Result<CgroupAttachment, DataplaneError> {
        let path = cgroup2_mount()?.join(relative.strip_prefix("/").unwrap_or(relative));
        let meta = std::fs::metadata(&path).map_err(|source| DataplaneError::Fs {
            op: "opening cgroup",
            path: path.clone(),
            source,
        })?;
        let id = meta.ino();
        let mut cgroups: BpfHashMap<_, u64, u32> = open(&mut self.ebpf, CGROUPS_MAP)?;
        cgroups
            .insert(id, vpc.key, 0)
            .map_err(map_err("writing", CGROUPS_MAP))?;
        for name in [programs::CONNECT4, programs::GETPEERNAME4] {
            self.attach_cgroup_program(name, &path, id)?;
        }
        if self.sockmap.is_some() {
            self.attach_cgroup_program(programs::SOCK_OPS, &path, id)?;
        }
        Ok(CgroupAttachment {
            vpc: vpc.key,
            path,
            id,
        })
    }

    /// Attaches program `name` (connect4, getpeername4 or sock_ops) to the cgroup at
    /// `cgroup` (id `id`) through a link pinned as `links/cg<id>-<name>`, replacing a
    /// link pinned there before without a gap.
    pub(super) fn attach_cgroup_program(
        &mut self,
        name: &'static str,
        cgroup: &Path,
        id: u64,
    ) -> Result<(), DataplaneError> {
        let pin = self.root().join(LINKS_DIR).join(cgroup_link_name(id, name));
        // bpffs refuses names with dots.
        let fresh = self
            .root()
            .join(LINKS_DIR)
            .join(format!("{}-new", cgroup_link_name(id, name)));
        let file = std::fs::File::open(cgroup).map_err(|source| DataplaneError::Fs {
            op: "opening cgroup",
            path: cgroup.to_path_buf(),
            source,
        })?;
        let fd_link = cgroup_link(&mut self.ebpf, name, &file).map_err(|e| match e {
            CgroupLinkError::Program(source) => DataplaneError::Program {
                op: "attaching",
                name,
                source,
            },
            CgroupLinkError::Link(source) => DataplaneError::Link {
                op: "converting",
                path: pin.clone(),
                source,
            },
        })?;
        let _ = std::fs::remove_file(&fresh);
        fd_link.pin(&fresh).map_err(|source| DataplaneError::Pin {
            what: format!("link of {name} on {}", cgroup.display()),
            path: fresh.clone(),
            source,
        })?;
        // The old link (if any) is released when its pin goes: the rename replaces it.
        std::fs::rename(&fresh, &pin).map_err(|source| DataplaneError::Fs {
            op: "renaming pin",
            path: fresh,
            source,
        })
    }

    /// Forgets the VPC cgroups a previous agent attached that are not in `keep` (this
    /// agent's attached ones): their `LT_CGROUPS_V1` entries and connect4/getpeername4
    /// links, found in the map and among the link pins. Without this, processes of a
    /// cgroup the new config dropped kept their VPC's access. Returns how many went.
    pub fn sweep_cgroups(&mut self, keep: &BTreeSet<u64>) -> Result<usize, DataplaneError> {
        let map: BpfHashMap<_, u64, u32> = open(&mut self.ebpf, CGROUPS_MAP)?;
        let mut found: BTreeSet<u64> = map.keys().filter_map(Result::ok).collect();
        let dir = self.root().join(LINKS_DIR);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                found.extend(
                    [programs::CONNECT4, programs::GETPEERNAME4]
                        .iter()
                        .filter_map(|program| link_cgroup(&name, program)),
                );
            }
        }
        let stale: Vec<u64> = found.difference(keep).copied().collect();
        for &id in &stale {
            self.forget_cgroup(id)?;
            info!(
                cgroup_id = id,
                "forgot a VPC cgroup a previous agent attached"
            );
        }
        Ok(stale.len())
    }

    /// Forgets a cgroup that is gone or no longer attached: its map entry and links.
    pub fn forget_cgroup(&mut self, id: u64) -> Result<(), DataplaneError> {
        let mut map: BpfHashMap<_, u64, u32> = open(&mut self.ebpf, CGROUPS_MAP)?;
        match map.remove(&id) {
            Ok(()) => {}
            Err(e) if map_errno(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(map_err("deleting from", CGROUPS_MAP)(e)),
        }
        let mut names = vec![programs::CONNECT4, programs::GETPEERNAME4];
        // The agent's own cgroups keep their sock_ops link.
        if !self.sockmap.as_ref().is_some_and(|s| s.owns(id)) {
            names.push(programs::SOCK_OPS);
        }
        for name in names {
            let pin = self.root().join(LINKS_DIR).join(cgroup_link_name(id, name));
            let _ = std::fs::remove_file(pin);
        }
        Ok(())
    }

    fn link_pin(&self, host_link: &str) -> PathBuf {
        self.root().join(LINKS_DIR).join(host_link)
    }

    /// Attaches the tc ingress program to `host` through the link pinned for it: an
    /// existing link is updated in place (atomic program swap, no packet unprocessed);
    /// otherwise a new tcx link is made and pinned. A link pinned for an interface that
    /// was just created is a leftover of the interface's previous life and is replaced.
    fn attach_pinned(&mut self, host: &str, fresh_interface: bool) -> Result<(), DataplaneError> {
        let pin = self.link_pin(host);
        if fresh_interface {
            let _ = std::fs::remove_file(&pin);
        }
        let name = programs::TC_INGRESS;
        let program = classifier(&mut self.ebpf, name)?;
        let link_id = match PinnedLink::from_pin(&pin) {
            Ok(old) => {
                let link: SchedClassifierLink =
                    FdLink::from(old)
                        .try_into()
                        .map_err(|source| DataplaneError::Link {
                            op: "adopting",
                            path: pin.clone(),
                            source,
                        })?;
                program
                    .attach_to_link(link)
                    .map_err(|source| DataplaneError::Program {
                        op: "replacing",
                        name,
                        source,
                    })?
            }
            Err(LinkError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {
                program
                    .attach_with_options(
                        host,
                        TcAttachType::Ingress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(|source| DataplaneError::Program {
                        op: "attaching",
                        name,
                        source,
                    })?
            }
            Err(source) => {
                return Err(DataplaneError::Link {
                    op: "opening",
                    path: pin,
                    source,
                })
            }
        };
        // Owned by the pin from now on, not by this process: the program stays attached
        // when the agent exits or is killed.
        let link = program
            .take_link(link_id)
            .map_err(|source| DataplaneError::Program {
                op: "taking link of",
                name,
                source,
            })?;
        let fd_link: FdLink = link.try_into().map_err(|source| DataplaneError::Link {
            op: "converting",
            path: pin.clone(),
            source,
        })?;
        if !pin.exists() {
            fd_link.pin(&pin).map_err(|source| DataplaneError::Pin {
                what: format!("link of {host}"),
                path: pin.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn ifaces_mut(
        &mut self,
    ) -> Result<BpfHashMap<&mut aya::maps::MapData, u32, Iface>, DataplaneError> {
        open(&mut self.ebpf, vpcs::IFACES_MAP)
    }
}

/// The pin name of the link of program `name` on cgroup `id`.
pub(super) fn cgroup_link_name(id: u64, name: &str) -> String {
    format!("cg{id}-{name}")
}

/// The cgroup id of a link pin named by [`cgroup_link_name`] for `program`.
pub(super) fn link_cgroup(pin: &str, program: &str) -> Option<u64> {
    let id = pin
        .strip_prefix("cg")?
        .strip_suffix(program)?
        .strip_suffix('-')?;
    let id: u64 = id.parse().ok()?;
    (cgroup_link_name(id, program) == pin).then_some(id)
}

enum CgroupLinkError {
    Program(aya::programs::ProgramError),
    Link(LinkError),
}

/// Attaches a cgroup program of the object to `cgroup` and returns the link, owned by
/// the caller (the program's own link list no longer holds it).
fn cgroup_link(
    ebpf: &mut aya::Ebpf,
    name: &'static str,
    cgroup: &std::fs::File,
) -> Result<FdLink, CgroupLinkError> {
    use aya::programs::{Program, ProgramError};
    // A link-based cgroup attachment always runs alongside the cgroup's other programs
    // (the kernel refuses the ALLOW_MULTI flag on links).
    let mode = CgroupAttachMode::Single;
    match ebpf.program_mut(name) {
        Some(Program::CgroupSockAddr(p)) => {
            let id = p.attach(cgroup, mode).map_err(CgroupLinkError::Program)?;
            let link = p.take_link(id).map_err(CgroupLinkError::Program)?;
            link.try_into().map_err(CgroupLinkError::Link)
        }
        Some(Program::SockOps(p)) => {
            let id = p.attach(cgroup, mode).map_err(CgroupLinkError::Program)?;
            let link = p.take_link(id).map_err(CgroupLinkError::Program)?;
            link.try_into().map_err(CgroupLinkError::Link)
        }
        _ => Err(CgroupLinkError::Program(
            ProgramError::UnexpectedProgramType,
        )),
    }
}

fn name_of_ifindex(ifindex: u32) -> Option<String> {
    nix::net::if_::if_indextoname(ifindex)
        .ok()
        .and_then(|n| n.into_string().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_link_names_fit_and_are_stable() {
        let a = host_link_name(7, "lt-web");
        assert_eq!(a, host_link_name(7, "lt-web"));
        assert_ne!(a, host_link_name(8, "lt-web"));
        assert_ne!(a, host_link_name(7, "lt-orders"));
        assert!(a.len() <= 15 && a.starts_with("ltv"), "{a}");
    }
}
