//! veth pairs, and the host-side interfaces a topology owns.
//!
//! Interfaces inside a test's namespaces may have any name (`eth0`): nothing else lives
//! there. Only host-side ends share a namespace with the machine's own interfaces, so only
//! they get generated unique names (see [`crate::names`]) and explicit deletion.

use nix::net::if_::{if_nameindex, if_nametoindex};

use crate::cmd::{self, CmdError};
use crate::netns::Netns;

/// Creating, configuring or deleting an interface failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// An `ip` command failed.
    #[error("{action} failed (needs root and iproute2)")]
    Ip {
        action: String,
        #[source]
        source: CmdError,
    },
    /// A generated host interface name is longer than Linux allows.
    #[error(
        "interface name {name} is longer than {} characters",
        crate::names::MAX_IFNAME_LEN
    )]
    NameTooLong { name: String },
    /// The host's interfaces could not be listed.
    #[error("listing the host's interfaces failed")]
    List {
        #[source]
        source: nix::Error,
    },
    /// A host interface's index could not be read.
    #[error("looking up interface {name} failed")]
    Index {
        name: String,
        #[source]
        source: nix::Error,
    },
}

/// A host-side interface created by a [`crate::Topology`], deleted when it is dropped.
/// Its name is unique to the test; attach programs or add addresses to it, nothing else
/// on the host is touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLink {
    name: String,
}

impl HostLink {
    /// The interface name, at most 15 characters.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index, e.g. for attaching XDP or tc programs.
    pub fn ifindex(&self) -> Result<u32, LinkError> {
        if_nametoindex(self.name.as_str()).map_err(|source| LinkError::Index {
            name: self.name.clone(),
            source,
        })
    }

    /// Adds the IPv4 address `cidr` to this host interface.
    ///
    /// This also adds a connected route on the host: pick a prefix the host does not use
    /// (`ip route`), so the test never diverts the machine's own traffic.
    pub fn add_addr(&self, cidr: &str) -> Result<(), LinkError> {
        ip(
            &["addr", "add", cidr, "dev", &self.name],
            format!("adding address {cidr} to host interface {}", self.name),
        )
    }
}

/// Creates a veth pair with end `host_name` in the host's namespace and end `ns_ifname`
/// in `netns`, both up.
pub(crate) fn veth_to_host(
    host_name: &str,
    netns: &Netns,
    ns_ifname: &str,
) -> Result<HostLink, LinkError> {
    if host_name.len() > crate::names::MAX_IFNAME_LEN {
        return Err(LinkError::NameTooLong {
            name: host_name.to_owned(),
        });
    }
    let action = format!(
        "creating veth {host_name} (host) <-> {ns_ifname} (in {})",
        netns.name()
    );
    ip(
        &[
            "link",
            "add",
            host_name,
            "type",
            "veth",
            "peer",
            "name",
            ns_ifname,
            "netns",
            netns.name(),
        ],
        action,
    )?;
    Ok(HostLink {
        name: host_name.to_owned(),
    })
}

/// Creates a veth pair between two namespaces, without it ever appearing on the host:
/// `a_ifname` in `a`, `b_ifname` in `b`, both still down.
pub(crate) fn veth_between(
    a: &Netns,
    a_ifname: &str,
    b: &Netns,
    b_ifname: &str,
) -> Result<(), LinkError> {
    let action = format!(
        "creating veth {a_ifname} (in {}) <-> {b_ifname} (in {})",
        a.name(),
        b.name()
    );
    ip(
        &[
            "-n",
            a.name(),
            "link",
            "add",
            a_ifname,
            "type",
            "veth",
            "peer",
            "name",
            b_ifname,
            "netns",
            b.name(),
        ],
        action,
    )
}

/// Sets the host interface `name` up.
pub(crate) fn set_up(name: &str) -> Result<(), LinkError> {
    ip(
        &["link", "set", name, "up"],
        format!("setting host interface {name} up"),
    )
}

/// Deletes the host interface `name` (and its veth peer); one already gone counts as
/// deleted.
pub(crate) fn delete(name: &str) -> Result<(), LinkError> {
    match ip(
        &["link", "delete", name],
        format!("deleting host interface {name}"),
    ) {
        Err(_) if if_nametoindex(name).is_err() => Ok(()),
        result => result,
    }
}

/// The names of all interfaces in the host's (the calling thread's) namespace.
pub(crate) fn list_host() -> Result<Vec<String>, LinkError> {
    let interfaces = if_nameindex().map_err(|source| LinkError::List { source })?;
    Ok(interfaces
        .iter()
        .map(|interface| interface.name().to_string_lossy().into_owned())
        .collect())
}

fn ip(args: &[&str], action: String) -> Result<(), LinkError> {
    cmd::ip(args)
        .map(drop)
        .map_err(|source| LinkError::Ip { action, source })
}
