//! Serving DNS inside every attached VPC namespace at the agent's address, port 53.
//!
//! The agent's address (the first host of the VIP pool) is the gateway of the pool
//! route inside each namespace: packets to it leave through `lattice0` for the host.
//! For port 53 only, a policy rule sends them to table [`DNS_TABLE`], where the address
//! is local (`local <agent>/32 dev lo src <VPC address>`), and an IP_TRANSPARENT UDP
//! socket and TCP listener of the agent bound there answer. This is the L7 sites' way
//! (`l7::listen`) with a table of its own, so that neither sweeps the other's rules.
//!
//! A namespace is served from the first sync that finds it attached until the sync
//! that finds it gone; the first time the agent sees a namespace it removes the DNS
//! rules an earlier agent left there (their sockets died with it). The sockets keep
//! their namespace alive, so "gone" is decided by its name: when `/run/netns/<name>`
//! is deleted (or names another namespace) the sockets are closed at the next sync, and
//! the kernel can then free the namespace and its `lattice0` link (once no other
//! socket, an L7 site's say, holds it).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
    sync::Arc,
    time::Duration,
};

use hickory_server::ServerFuture;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn,
};
use tokio::{runtime::Handle, sync::watch};
use tracing::{info, warn};

use super::{forward::Forwarder, server::Handler, zone::Zones};
use crate::dataplane::ip_command;

/// The routing table, inside VPC namespaces, that makes the agent's address local for
/// DNS (the L7 sites use 4242).
pub const DNS_TABLE: &str = "4243";
/// Preference of the DNS rules: before the main table (32766), next to the sites'
/// (1000); their selectors never overlap.
const DNS_RULE_PREF: &str = "999";
/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// An error making DNS ready in a namespace.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("routing {addr}:{DNS_PORT} to the agent in namespace {netns}: {source}")]
    Route {
        netns: String,
        addr: Ipv4Addr,
        #[source]
        source: Box<crate::dataplane::DataplaneError>,
    },
    #[error("binding {addr} ({what}) in namespace {netns}: {source}")]
    Socket {
        netns: String,
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Swaps the records every served namespace answers from: the next query reads the
/// new ones. Cheap to clone; what live reconfiguration calls.
#[derive(Clone)]
pub struct ZoneSwitch {
    tx: Arc<watch::Sender<Arc<Zones>>>,
}

impl ZoneSwitch {
    pub fn new(zones: Zones) -> ZoneSwitch {
        ZoneSwitch {
            tx: Arc::new(watch::channel(Arc::new(zones)).0),
        }
    }

    /// Replaces the records (with [`Zones::build`] of the new config).
    pub fn set(&self, zones: Zones) {
        self.tx.send_replace(Arc::new(zones));
    }

    /// The records answered from now.
    pub fn current(&self) -> Arc<Zones> {
        Arc::clone(&self.tx.borrow())
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Zones>> {
        self.tx.subscribe()
    }
}

/// The DNS servers of the attached namespaces.
pub struct DnsServer {
    zones: ZoneSwitch,
    forwarder: Arc<Forwarder>,
    addr: Ipv4Addr,
    runtime: Handle,
    served: BTreeMap<String, Served>,
    failing: BTreeMap<String, String>,
    /// Namespaces whose earlier DNS rules this agent has removed.
    swept: BTreeSet<String>,
}

struct Served {
    /// The VPC address the local route names as source.
    src: Ipv4Addr,
    /// The namespace's identity (the inode of its nsfs file) when it was served.
    ino: u64,
    /// Dropping it stops the tasks, which closes the sockets.
    _server: ServerFuture<Handler>,
}

impl DnsServer {
    /// DNS at `addr` (the agent's address) with `zones`, forwarding through `forwarder`;
    /// the servers run on `runtime`.
    pub fn new(zones: ZoneSwitch, forwarder: Forwarder, addr: Ipv4Addr, runtime: Handle) -> Self {
        DnsServer {
            zones,
            forwarder: Arc::new(forwarder),
            addr,
            runtime,
            served: BTreeMap::new(),
            failing: BTreeMap::new(),
            swept: BTreeSet::new(),
        }
    }

    /// The switch that changes the records of every served namespace.
    pub fn zones(&self) -> &ZoneSwitch {
        &self.zones
    }

    /// How many namespaces are served.
    pub fn served(&self) -> usize {
        self.served.len()
    }

    /// Serves the `attached` namespaces (name -> the namespace's VPC address), stops the
    /// others. Failures are logged once and retried on the next call.
    pub fn sync(&mut self, attached: &BTreeMap<String, Ipv4Addr>) {
        // Attached and still there under that name, with its identity.
        let present: BTreeMap<&String, (Ipv4Addr, u64)> = attached
            .iter()
            .filter_map(|(netns, &src)| {
                crate::dataplane::netns_inode(netns).map(|ino| (netns, (src, ino)))
            })
            .collect();
        self.served.retain(|netns, served| {
            let keep = present
                .get(netns)
                .is_some_and(|&(_, ino)| ino == served.ino);
            if !keep {
                info!(%netns, "stopped serving DNS");
            }
            keep
        });
        self.failing.retain(|netns, _| present.contains_key(netns));
        self.swept.retain(|netns| present.contains_key(netns));
        for (netns, (src, ino)) in present {
            if self.swept.insert(netns.clone()) {
                let removed = unroute_all(netns);
                if removed > 0 {
                    info!(%netns, rules = removed, "removed DNS rules of an earlier agent");
                }
            }
            if let Some(served) = self.served.get_mut(netns) {
                // The namespace's VPC address changed: the route's source follows.
                if served.src != src {
                    match route(netns, self.addr, src) {
                        Ok(()) => served.src = src,
                        Err(e) => self.report(netns, e),
                    }
                }
                continue;
            }
            match self.start(netns, src, ino) {
                Ok(served) => {
                    self.failing.remove(netns);
                    self.served.insert(netns.clone(), served);
                    info!(%netns, addr = %self.addr, "serving DNS");
                }
                Err(e) => self.report(netns, e),
            }
        }
    }

    fn report(&mut self, netns: &str, e: ServeError) {
        let message = e.to_string();
        if self.failing.get(netns) != Some(&message) {
            warn!(error = %message, "cannot serve DNS yet; retrying");
            self.failing.insert(netns.to_owned(), message);
        }
    }

    fn start(&self, netns: &str, src: Ipv4Addr, ino: u64) -> Result<Served, ServeError> {
        route(netns, self.addr, src)?;
        let (udp, tcp) = sockets_in_netns(netns, self.addr)?;
        let socket_err = |what, source| ServeError::Socket {
            netns: netns.to_owned(),
            addr: SocketAddr::from((self.addr, DNS_PORT)),
            what,
            source,
        };
        // hickory spawns its tasks on the current runtime.
        let _entered = self.runtime.enter();
        let handler = Handler::new(
            netns.to_owned(),
            self.zones.subscribe(),
            Arc::clone(&self.forwarder),
        );
        let mut server = ServerFuture::new(handler);
        server
            .register_socket_std(udp)
            .map_err(|e| socket_err("udp", e))?;
        server
            .register_listener_std(tcp, TCP_IDLE)
            .map_err(|e| socket_err("tcp", e))?;
        Ok(Served {
            src,
            ino,
            _server: server,
        })
    }
}

/// Makes `addr:53` (UDP and TCP) local in `netns`: a local route for `addr` in
/// [`DNS_TABLE`] with the namespace's VPC address `src` as the source clients pick, and
/// one rule per protocol. Idempotent: rules are replaced, not added twice.
fn route(netns: &str, addr: Ipv4Addr, src: Ipv4Addr) -> Result<(), ServeError> {
    let err = |source| ServeError::Route {
        netns: netns.to_owned(),
        addr,
        source: Box::new(source),
    };
    let dst = format!("{addr}/32");
    let src = src.to_string();
    let port = DNS_PORT.to_string();
    ip_command(&[
        "-n", netns, "route", "replace", "local", &dst, "dev", "lo", "src", &src, "table",
        DNS_TABLE,
    ])
    .map_err(err)?;
    for proto in ["udp", "tcp"] {
        let selector = [
            "to",
            &dst,
            "ipproto",
            proto,
            "dport",
            &port,
            "lookup",
            DNS_TABLE,
            "pref",
            DNS_RULE_PREF,
        ];
        // `ip rule add` would add a second copy: delete first (absent is fine).
        let mut del = vec!["-n", netns, "rule", "del"];
        del.extend_from_slice(&selector);
        let _ = ip_command(&del);
        let mut add = vec!["-n", netns, "rule", "add"];
        add.extend_from_slice(&selector);
        ip_command(&add).map_err(err)?;
    }
    Ok(())
}

/// Removes every DNS rule and route the agent added in `netns` (at first sight, and for
/// `cleanup`). Returns how many rules went.
pub fn unroute_all(netns: &str) -> usize {
    let mut removed = 0;
    // One rule per call; bounded in case `ip` keeps succeeding for another reason.
    while removed < 1_000 && ip_command(&["-n", netns, "rule", "del", "lookup", DNS_TABLE]).is_ok()
    {
        removed += 1;
    }
    let _ = ip_command(&["-n", netns, "route", "flush", "table", DNS_TABLE]);
    removed
}

/// A UDP socket and a TCP listener bound to `addr:53` inside `netns`. The address is
/// local only through [`DNS_TABLE`], which neither `bind` nor the route of an answer
/// from it consults: IP_TRANSPARENT lets the sockets use it all the same.
fn sockets_in_netns(netns: &str, addr: Ipv4Addr) -> Result<(UdpSocket, TcpListener), ServeError> {
    let local = SocketAddrV4::new(addr, DNS_PORT);
    let err = |what, source| ServeError::Socket {
        netns: netns.to_owned(),
        addr: local.into(),
        what,
        source,
    };
    let path = std::path::Path::new("/run/netns").join(netns);
    let file = File::open(&path).map_err(|e| err("opening the namespace", e))?;
    // A thread of its own enters the namespace, so no other thread ever changes
    // namespace; the sockets it makes belong to the namespace for good.
    let handle = std::thread::Builder::new()
        .name("netns-dns".into())
        .spawn(
            move || -> Result<(OwnedFd, OwnedFd), (&'static str, io::Error)> {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| ("entering", e.into()))?;
                let bound = |kind: SockType| -> io::Result<OwnedFd> {
                    let fd = socket(
                        AddressFamily::Inet,
                        kind,
                        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                        None,
                    )?;
                    if kind == SockType::Stream {
                        // Connections of an earlier socket may linger in TIME_WAIT. Not for
                        // UDP: two bound sockets would share the queries.
                        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
                    }
                    setsockopt(&fd, sockopt::IpTransparent, &true)?;
                    bind(fd.as_raw_fd(), &SockaddrIn::from(local))?;
                    Ok(fd)
                };
                let udp = bound(SockType::Datagram).map_err(|e| ("udp", e))?;
                let tcp = bound(SockType::Stream).map_err(|e| ("tcp", e))?;
                listen(
                    &tcp,
                    Backlog::new(128)
                        .map_err(io::Error::from)
                        .map_err(|e| ("tcp", e))?,
                )
                .map_err(|e| ("tcp", e.into()))?;
                Ok((udp, tcp))
            },
        )
        .map_err(|e| err("starting a thread", e))?;
    let (udp, tcp) = handle
        .join()
        .map_err(|_| err("the namespace thread", io::Error::other("panicked")))?
        .map_err(|(what, e)| err(what, e))?;
    Ok((UdpSocket::from(udp), TcpListener::from(tcp)))
}
