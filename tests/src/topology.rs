//! [`Topology`]: the owner of everything one test creates, which removes it all on drop,
//! also when the test panics.

use std::path::PathBuf;
use std::sync::Once;

use crate::bpffs::{self, BpffsError};
use crate::cgroup::{self, Cgroup, CgroupError};
use crate::link::{self, HostLink, LinkError};
use crate::names::{self, Tag};
use crate::netns::{self, Netns, NetnsError};
use crate::{error_chain, sweep};

/// Longest label accepted for a namespace or cgroup.
const MAX_LABEL_LEN: usize = 32;

/// Building a topology failed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The helpers create namespaces, interfaces and cgroups, which needs root.
    #[error("lattice-tests needs root to create network namespaces, veths and cgroups; run `cargo test -p lattice-tests` as root")]
    NotRoot,
    /// A label is empty, too long or has characters other than ASCII letters, digits, `-`.
    #[error("label {label:?} must be 1 to {MAX_LABEL_LEN} ASCII letters, digits or '-'")]
    BadLabel { label: String },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Bpffs(#[from] BpffsError),
}

/// One object the topology created, in creation order.
#[derive(Debug)]
enum Owned {
    Netns(String),
    HostLink(String),
    Cgroup(PathBuf),
    BpffsRoot(PathBuf),
}

/// Network namespaces, veth pairs and cgroups of one test, all named with one unique
/// [`Tag`], all removed when the topology is dropped.
///
/// Drop removes in reverse creation order and never panics: a failure is printed to
/// stderr and the rest is still removed (what remains is swept by a later run).
/// Servers and sockets in a namespace keep the kernel namespace alive after its name is
/// deleted: drop them first (declare them after the topology).
#[derive(Debug)]
pub struct Topology {
    tag: Tag,
    owned: Vec<Owned>,
    host_links: u64,
}

impl Topology {
    /// An empty topology with a fresh tag. Sweeps leftovers of dead test processes first;
    /// the first topology of a process also sweeps names with its own pid, left by an
    /// earlier process that had the same pid.
    pub fn new() -> Result<Topology, TopologyError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(TopologyError::NotRoot);
        }
        static FIRST: Once = Once::new();
        FIRST.call_once(|| {
            let own = std::process::id();
            report_sweep(sweep::sweep_owned_by(|pid| pid == own));
        });
        report_sweep(sweep::sweep());
        Ok(Topology {
            tag: Tag::next(),
            owned: Vec::new(),
            host_links: 0,
        })
    }

    /// The tag all of this topology's names start with.
    pub fn tag(&self) -> &Tag {
        &self.tag
    }

    /// Creates network namespace `<tag>-<label>` with loopback up.
    pub fn add_netns(&mut self, label: &str) -> Result<Netns, TopologyError> {
        let netns = Netns::add(self.tag.name(check_label(label)?))?;
        self.owned.push(Owned::Netns(netns.name().to_owned()));
        netns.set_up("lo")?;
        Ok(netns)
    }

    /// Creates a veth pair from the host to `netns`: the host end gets a generated name
    /// (`<tag>-v<n>`), the namespace end is called `ns_ifname`; both are up.
    pub fn add_veth_to_host(
        &mut self,
        netns: &Netns,
        ns_ifname: &str,
    ) -> Result<HostLink, TopologyError> {
        let host_name = self
            .tag
            .name(&format!("v{}", names::base36(self.host_links)));
        self.host_links += 1;
        let host = link::veth_to_host(&host_name, netns, ns_ifname)?;
        self.owned.push(Owned::HostLink(host.name().to_owned()));
        link::set_up(host.name())?;
        netns.set_up(ns_ifname)?;
        Ok(host)
    }

    /// Creates a veth pair between two namespaces of this topology, `a_ifname` in `a` and
    /// `b_ifname` in `b`, both up. It never appears on the host and goes with the
    /// namespaces.
    pub fn add_veth_between(
        &mut self,
        a: &Netns,
        a_ifname: &str,
        b: &Netns,
        b_ifname: &str,
    ) -> Result<(), TopologyError> {
        link::veth_between(a, a_ifname, b, b_ifname)?;
        a.set_up(a_ifname)?;
        b.set_up(b_ifname)?;
        Ok(())
    }

    /// Creates cgroup `<tag>-<label>` under the cgroup2 root.
    pub fn add_cgroup(&mut self, label: &str) -> Result<Cgroup, TopologyError> {
        let cgroup = Cgroup::create(&self.tag.name(check_label(label)?))?;
        self.owned.push(Owned::Cgroup(cgroup.path().to_owned()));
        Ok(cgroup)
    }

    /// A bpffs directory (under /sys/fs/bpf, named with this topology's tag) for the
    /// test's pinned programs and maps; not created here (the agent creates it), removed
    /// with everything pinned under it when the topology is dropped.
    pub fn bpffs_root(&mut self, label: &str) -> Result<PathBuf, TopologyError> {
        let path = bpffs::root_for(&self.tag.name(check_label(label)?));
        self.owned.push(Owned::BpffsRoot(path.clone()));
        Ok(path)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        while let Some(owned) = self.owned.pop() {
            let result = match &owned {
                Owned::Netns(name) => netns::delete(name).map_err(TopologyError::from),
                Owned::HostLink(name) => link::delete(name).map_err(TopologyError::from),
                Owned::Cgroup(path) => cgroup::remove(path).map_err(TopologyError::from),
                Owned::BpffsRoot(path) => bpffs::remove(path).map_err(TopologyError::from),
            };
            if let Err(e) = result {
                eprintln!(
                    "lattice-tests: removing {owned:?} of topology {} failed: {}",
                    self.tag,
                    error_chain(&e)
                );
            }
        }
    }
}

fn check_label(label: &str) -> Result<&str, TopologyError> {
    let fine = (1..=MAX_LABEL_LEN).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if fine {
        Ok(label)
    } else {
        Err(TopologyError::BadLabel {
            label: label.to_owned(),
        })
    }
}

/// Logs a failed sweep and carries on: leftovers of other runs do not collide with the
/// fresh names of a new topology.
fn report_sweep(result: Result<sweep::Swept, sweep::SweepError>) {
    if let Err(e) = result {
        eprintln!("lattice-tests: {}", error_chain(&e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(check_label("client-1").is_ok());
        for bad in ["", "a b", "x/y", "é", &"l".repeat(MAX_LABEL_LEN + 1)] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }
}
