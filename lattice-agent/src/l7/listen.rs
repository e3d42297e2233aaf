//! Listening sockets inside VPC namespaces, and the namespace's routing that sends a
//! site's `VIP:port` to them.

use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener},
    os::fd::OwnedFd,
    path::Path,
};

use lattice_common::cgroups::HOST_PROXY_ADDR;

use nix::{
    sched::{setns, CloneFlags},
    sys::socket::{
        bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
        SockaddrIn,
    },
};

use super::sites::Site;
use crate::dataplane::ip_command;

/// The routing table, inside VPC namespaces, that makes L7 sites local. Namespaces are
/// the agent's own to route (it already routes the VIP pool there); the host's tables
/// are untouched.
pub const SITE_TABLE: &str = "4242";
/// Preference of the site rules: before the main table (32766).
const SITE_RULE_PREF: &str = "1000";

/// An error making a site ready.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("routing {vip}:{port} to the agent in namespace {netns}: {source}")]
    Route {
        netns: String,
        vip: std::net::Ipv4Addr,
        port: u16,
        #[source]
        source: Box<crate::dataplane::DataplaneError>,
    },
    #[error("listening on {addr} in namespace {netns}: {source}")]
    Listen {
        netns: String,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Makes `VIP:port` local in the site's namespace for its allowed sources: a local route
/// for the VIP in [`SITE_TABLE`] (with the namespace's VPC address `src` as the source
/// a client picks, since the VIP itself is local nowhere else), and one policy rule per
/// allowed source prefix that sends TCP to that port there. Idempotent: rules are
/// replaced, not added twice.
pub fn route_site(site: &Site, ns: &str, src: std::net::Ipv4Addr) -> Result<(), ListenError> {
    let err = |source| ListenError::Route {
        netns: ns.to_owned(),
        vip: site.vip,
        port: site.port,
        source: Box::new(source),
    };
    let vip = format!("{}/32", site.vip);
    let src = src.to_string();
    ip_command(&[
        "-n", ns, "route", "replace", "local", &vip, "dev", "lo", "src", &src, "table", SITE_TABLE,
    ])
    .map_err(err)?;
    for selector in rule_selectors(site) {
        let selector: Vec<&str> = selector.iter().map(String::as_str).collect();
        // `ip rule add` would add a second copy: delete first (absent is fine).
        let _ = ip_command(&[&["-n", ns, "rule", "del"], selector.as_slice()].concat());
        ip_command(&[&["-n", ns, "rule", "add"], selector.as_slice()].concat()).map_err(err)?;
    }
    Ok(())
}

/// The policy rules of a site, one per allowed source prefix: TCP from there to
/// `VIP:port` looks up [`SITE_TABLE`].
fn rule_selectors(site: &Site) -> Vec<Vec<String>> {
    let sources: Vec<String> = match &site.allowed {
        Some(cidrs) => cidrs.iter().map(|c| c.to_string()).collect(),
        None => vec!["0.0.0.0/0".into()],
    };
    sources
        .into_iter()
        .map(|from| {
            [
                "from",
                &from,
                "to",
                &format!("{}/32", site.vip),
                "ipproto",
                "tcp",
                "dport",
                &site.port.to_string(),
                "lookup",
                SITE_TABLE,
                "pref",
                SITE_RULE_PREF,
            ]
            .map(str::to_owned)
            .to_vec()
        })
        .collect()
}

/// Undoes [`route_site`] for a site that left the config (or changed its sources):
/// its rules go, and its VIP's local route too unless `keep_route` (another site of
/// the namespace still uses the VIP). Absent rules are fine.
pub fn unroute_site(site: &Site, ns: &str, keep_route: bool) {
    for selector in rule_selectors(site) {
        let selector: Vec<&str> = selector.iter().map(String::as_str).collect();
        let _ = ip_command(&[&["-n", ns, "rule", "del"], selector.as_slice()].concat());
    }
    if !keep_route {
        let vip = format!("{}/32", site.vip);
        let _ = ip_command(&[
            "-n", ns, "route", "del", "local", &vip, "dev", "lo", "table", SITE_TABLE,
        ]);
    }
}

/// Removes every site rule and route the agent added in `netns` (for `cleanup`).
/// Returns how many rules went.
pub fn unroute_all(netns: &str) -> usize {
    let mut removed = 0;
    // One rule per call; bounded in case `ip` keeps succeeding for another reason.
    while removed < 10_000
        && ip_command(&["-n", netns, "rule", "del", "lookup", SITE_TABLE]).is_ok()
    {
        removed += 1;
    }
    let _ = ip_command(&["-n", netns, "route", "flush", "table", SITE_TABLE]);
    removed
}

/// A listening socket bound to `VIP:port` inside the site's namespace. The VIP is local
/// only through the site table, which neither `bind` nor the route of a SYN-ACK from the
/// VIP consults: IP_TRANSPARENT lets the socket use it all the same.
pub fn listen_in_netns(site: &Site, ns: &str) -> Result<TcpListener, ListenError> {
    let addr = SocketAddrV4::new(site.vip, site.port);
    let path = std::path::Path::new("/run/netns").join(ns);
    listen_at(&path, addr, true)
}

/// A listening socket for a host site: on `HOST_PROXY_ADDR` with a port of the
/// kernel's choosing, in the host's namespace (`host_netns`, a namespace file such as
/// `/proc/1/ns/net`; `None`: the agent's own).
pub fn listen_on_host(host_netns: Option<&Path>) -> Result<TcpListener, ListenError> {
    let addr = SocketAddrV4::new(Ipv4Addr::from(HOST_PROXY_ADDR), 0);
    match host_netns {
        Some(path) => listen_at(path, addr, false),
        None => {
            let err = |source| ListenError::Listen {
                netns: "(the agent's)".to_owned(),
                addr: addr.into(),
                source,
            };
            let listener = TcpListener::bind(addr).map_err(err)?;
            listener.set_nonblocking(true).map_err(err)?;
            Ok(listener)
        }
    }
}

/// A listening socket bound to `addr` in the namespace of the file at `netns`.
fn listen_at(
    netns: &Path,
    addr: SocketAddrV4,
    transparent: bool,
) -> Result<TcpListener, ListenError> {
    let err = |source| ListenError::Listen {
        netns: netns.display().to_string(),
        addr: addr.into(),
        source,
    };
    let file = File::open(netns).map_err(err)?;
    // A thread of its own enters the namespace, so no other thread ever changes
    // namespace; the socket it makes belongs to the namespace for good.
    let handle = std::thread::Builder::new()
        .name("netns-listen".into())
        .spawn(move || -> io::Result<OwnedFd> {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )?;
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            if transparent {
                setsockopt(&fd, sockopt::IpTransparent, &true)?;
            }
            bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &SockaddrIn::from(addr),
            )?;
            listen(&fd, Backlog::new(1024).map_err(io::Error::from)?)?;
            Ok(fd)
        })
        .map_err(err)?;
    let fd = handle
        .join()
        .map_err(|_| err(io::Error::other("the namespace thread panicked")))?
        .map_err(err)?;
    Ok(TcpListener::from(fd))
}
