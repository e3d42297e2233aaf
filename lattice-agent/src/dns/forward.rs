//! Forwarding names lattice does not own to the host's resolver.
//!
//! The upstreams are the `nameserver` lines of the host's `/etc/resolv.conf` (read by
//! the agent in its own namespace), or `--dns-upstream`. resolv.conf is followed as it
//! changes (a DHCP lease, a VPN, systemd-resolved rewrite it): before forwarding, the
//! file's identity (inode, size, modification time) is looked at, at most once per
//! [`RESOLV_CONF_RECHECK`], and a changed file is read again, as dnsmasq does.
//!
//! Sockets to the upstreams are made by the agent's runtime threads, which stay in the
//! host's namespace: a
//! query asked inside a VPC namespace leaves from the host, as the host's own would.
//! A query that came over UDP goes on over UDP (a truncated answer is passed on
//! truncated, so the client retries over TCP), one that came over TCP over TCP. The
//! upstreams are tried in order, each for [`UPSTREAM_TIMEOUT`]; with none, or none
//! answering, the client gets SERVFAIL rather than waiting.
//!
//! At most [`MAX_FORWARDS_IN_FLIGHT`] queries are forwarded at a time, for every VPC
//! together (dnsmasq's `dns-forward-max` is 150): each holds a socket until its answer
//! or its timeouts, so a slow upstream and a busy client would otherwise take every
//! file descriptor of the agent, and with them the proxy's connections and the health
//! checks of every VPC. Queries past the limit get SERVFAIL at once.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;

use hickory_proto::{
    op::{Message, MessageType, Query, ResponseCode},
    ProtoError,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::Semaphore,
};
use tracing::{info, warn};

/// Where the host's resolvers are listed.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// How often, at most, resolv.conf is looked at for a change.
pub const RESOLV_CONF_RECHECK: Duration = Duration::from_secs(2);
/// How long one upstream may take to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1500);
/// At most this many upstreams are tried per query (glibc's MAXNS): with
/// [`UPSTREAM_TIMEOUT`], a client waits under 5 s (dig's default timeout) at worst.
pub const MAX_UPSTREAMS: usize = 3;
/// The largest answer taken from an upstream over UDP (the EDNS size asked for is
/// 1232, DNS flag day 2020's value).
const UDP_BUFFER: usize = 4096;
pub const UPSTREAM_EDNS_PAYLOAD: u16 = 1232;
/// Queries forwarded at once, at most.
pub const MAX_FORWARDS_IN_FLIGHT: usize = 256;

/// Why a query could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(
        "no upstream resolver: {RESOLV_CONF} lists no nameserver and --dns-upstream is not set"
    )]
    NoUpstream,
    #[error("upstream {upstream}: {source}")]
    Io {
        upstream: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("upstream {upstream} did not answer within {UPSTREAM_TIMEOUT:?}")]
    Timeout { upstream: SocketAddr },
    #[error("upstream {upstream} sent an answer that does not parse: {source}")]
    Malformed {
        upstream: SocketAddr,
        #[source]
        source: ProtoError,
    },
    #[error("upstream {upstream} answered another question")]
    Mismatch { upstream: SocketAddr },
    #[error("encoding the query: {0}")]
    Encode(#[source] ProtoError),
    #[error("{MAX_FORWARDS_IN_FLIGHT} queries are being forwarded already")]
    Busy,
}

/// The `nameserver` addresses of a resolv.conf text, port 53, in order (IPv6 ones with
/// a `%zone` are skipped: a zone index names a host interface only the host can use
/// with the right scope, which the forwarder does not track).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|addr| addr.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The upstream resolvers and the way to ask them.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: ArcSwap<Vec<SocketAddr>>,
    /// Where the upstreams come from when they follow a file.
    resolv_conf: Option<ResolvConf>,
    timeout: Duration,
    /// Whether the last forward failed (logged once per change, not per query).
    failing: AtomicBool,
    /// A permit per query being forwarded.
    in_flight: Semaphore,
    /// Whether the last query found every permit taken (logged once per episode).
    busy: AtomicBool,
}

/// A followed resolv.conf: its path, and what was seen of it.
#[derive(Debug)]
struct ResolvConf {
    path: PathBuf,
    seen: Mutex<Seen>,
}

#[derive(Debug)]
struct Seen {
    /// When the file was last looked at.
    checked: Instant,
    /// The file's identity when it was last read; `None`: it did not exist.
    identity: Option<FileIdentity>,
    /// The last look failed (said once, until a look succeeds).
    unreadable: bool,
}

/// What tells a rewritten file from the one read: resolvconf and systemd-resolved
/// replace it (a new inode), editors and DHCP clients rewrite it (new size or time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileIdentity {
    fn of(path: &Path) -> io::Result<Option<FileIdentity>> {
        use std::os::unix::fs::MetadataExt as _;
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(FileIdentity {
                inode: meta.ino(),
                len: meta.len(),
                modified: meta.modified().ok(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The nameservers of the resolv.conf at `path`; a missing file lists none.
fn read_resolv_conf(path: &Path) -> io::Result<Vec<SocketAddr>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_resolv_conf(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

impl Forwarder {
    /// Fixed upstreams (`--dns-upstream`).
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder::with_timeout(upstreams, UPSTREAM_TIMEOUT)
    }

    pub fn with_timeout(upstreams: Vec<SocketAddr>, timeout: Duration) -> Forwarder {
        Forwarder {
            upstreams: ArcSwap::from_pointee(upstreams),
            resolv_conf: None,
            timeout,
            failing: AtomicBool::new(false),
            in_flight: Semaphore::new(MAX_FORWARDS_IN_FLIGHT),
            busy: AtomicBool::new(false),
        }
    }

    /// The nameservers of `path` (the host's resolv.conf), followed as the file changes;
    /// a missing file means none until it appears. An unreadable file is an error here,
    /// at the start; later, the last nameservers read stay.
    pub fn from_resolv_conf(path: &Path) -> io::Result<Forwarder> {
        let identity = FileIdentity::of(path)?;
        let upstreams = read_resolv_conf(path)?;
        Ok(Forwarder {
            resolv_conf: Some(ResolvConf {
                path: path.to_owned(),
                seen: Mutex::new(Seen {
                    checked: Instant::now(),
                    identity,
                    unreadable: false,
                }),
            }),
            ..Forwarder::new(upstreams)
        })
    }

    /// The upstreams queries go to now.
    pub fn upstreams(&self) -> Arc<Vec<SocketAddr>> {
        self.upstreams.load_full()
    }

    /// Reads resolv.conf again if it changed, unless it was looked at less than
    /// [`RESOLV_CONF_RECHECK`] before `now`.
    pub(crate) fn refresh(&self, now: Instant) {
        let Some(followed) = &self.resolv_conf else {
            return;
        };
        let mut seen = followed.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(seen.checked) < RESOLV_CONF_RECHECK {
            return;
        }
        seen.checked = now;
        let path = &followed.path;
        let identity = match FileIdentity::of(path) {
            Ok(identity) => identity,
            Err(e) => {
                if !seen.unreadable {
                    warn!(path = %path.display(), error = %e, "resolv.conf cannot be looked at; its last nameservers stay");
                }
                seen.unreadable = true;
                return;
            }
        };
        if seen.identity == identity && !seen.unreadable {
            return;
        }
        seen.identity = identity;
        let upstreams = match read_resolv_conf(path) {
            Ok(upstreams) => upstreams,
            Err(e) => {
                if !seen.unreadable {
                    warn!(path = %path.display(), error = %e, "resolv.conf cannot be read; its last nameservers stay");
                }
                seen.unreadable = true;
                return;
            }
        };
        seen.unreadable = false;
        if **self.upstreams.load() == upstreams {
            return;
        }
        if upstreams.is_empty() {
            warn!(path = %path.display(), "resolv.conf changed and lists no nameserver: names lattice does not own get SERVFAIL");
        } else {
            info!(path = %path.display(), ?upstreams, "resolv.conf changed: DNS forwards to its nameservers");
        }
        self.upstreams.store(Arc::new(upstreams));
    }

    /// Asks the upstreams `query` in order, over TCP when `tcp`, and returns the first
    /// answer that is not SERVFAIL or REFUSED (or the last such one, when all are).
    pub async fn forward(&self, query: &Message, tcp: bool) -> Result<Message, ForwardError> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            if !self.busy.swap(true, Ordering::Relaxed) {
                warn!(
                    limit = MAX_FORWARDS_IN_FLIGHT,
                    "DNS forwarding at its limit of queries in flight (slow upstreams?); answering SERVFAIL past it"
                );
            }
            return Err(ForwardError::Busy);
        };
        if self.busy.swap(false, Ordering::Relaxed) {
            info!("DNS forwarding below its limit of queries in flight again");
        }
        self.refresh(Instant::now());
        let upstreams = self.upstreams.load_full();
        let result = self.ask_all(&upstreams, query, tcp).await;
        match &result {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!("DNS forwarding works again");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!(error = %e, "DNS forwarding failed; answering SERVFAIL until it works");
                }
            }
        }
        result
    }

    async fn ask_all(
        &self,
        upstreams: &[SocketAddr],
        query: &Message,
        tcp: bool,
    ) -> Result<Message, ForwardError> {
        let bytes = query.to_vec().map_err(ForwardError::Encode)?;
        let question = query.query().cloned();
        let mut last = Err(ForwardError::NoUpstream);
        for &upstream in upstreams.iter().take(MAX_UPSTREAMS) {
            let asked = if tcp {
                ask_tcp(upstream, &bytes, query.id(), self.timeout).await
            } else {
                ask_udp(upstream, &bytes, query.id(), self.timeout).await
            };
            let asked = match asked {
                Ok(answer) if answer.query().cloned() != question => {
                    Err(ForwardError::Mismatch { upstream })
                }
                other => other,
            };
            match asked {
                Ok(answer)
                    if matches!(
                        answer.response_code(),
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    last = Ok(answer);
                }
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    if last.is_err() {
                        last = Err(e);
                    }
                }
            }
        }
        last
    }
}

/// A fresh query for `question` to send upstream: a random id, recursion as the client
/// asked, and EDNS with `payload` (and the client's DO bit), or none.
pub fn upstream_query(
    question: Query,
    recursion_desired: bool,
    checking_disabled: bool,
    dnssec_ok: bool,
    payload: Option<u16>,
) -> Message {
    let mut message = Message::new();
    message
        .set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_recursion_desired(recursion_desired)
        .set_checking_disabled(checking_disabled)
        .add_query(question);
    if let Some(payload) = payload {
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(payload)
            .set_version(0)
            .set_dnssec_ok(dnssec_ok);
        message.set_edns(edns);
    }
    message
}

/// The EDNS payload to ask an upstream for on behalf of a client: over UDP, what the
/// client takes (at most [`UPSTREAM_EDNS_PAYLOAD`]), and no EDNS for a client that sent
/// none, which takes 512 bytes (RFC 1035 4.2.1): the upstream then truncates the answer
/// to fit, and the client, seeing TC, asks again over TCP. Over TCP, the most.
pub fn upstream_payload(client_payload: Option<u16>, tcp: bool) -> Option<u16> {
    if tcp {
        return Some(UPSTREAM_EDNS_PAYLOAD);
    }
    client_payload.map(|p| p.clamp(512, UPSTREAM_EDNS_PAYLOAD))
}

fn unspecified_for(upstream: SocketAddr) -> SocketAddr {
    match upstream {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

async fn ask_udp(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Message, ForwardError> {
    let io = |source| ForwardError::Io { upstream, source };
    let exchange = async {
        let socket = UdpSocket::bind(unspecified_for(upstream))
            .await
            .map_err(io)?;
        socket.connect(upstream).await.map_err(io)?;
        socket.send(bytes).await.map_err(io)?;
        let mut buf = vec![0u8; UDP_BUFFER];
        // Datagrams of other ids (late answers to nobody) are skipped; the timeout
        // bounds the loop.
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            match Message::from_vec(&buf[..n]) {
                Ok(m) if m.id() == id && m.message_type() == MessageType::Response => return Ok(m),
                Ok(_) => continue,
                Err(source) => return Err(ForwardError::Malformed { upstream, source }),
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ForwardError::Timeout { upstream }))
}

async fn ask_tcp(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Message, ForwardError> {
    let io = |source| ForwardError::Io { upstream, source };
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
        let len = u16::try_from(bytes.len())
            .map_err(|_| io(io::Error::other("query longer than 65535 bytes")))?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).await.map_err(io)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.map_err(io)?;
        let m = Message::from_vec(&buf)
            .map_err(|source| ForwardError::Malformed { upstream, source })?;
        if m.id() != id || m.message_type() != MessageType::Response {
            return Err(ForwardError::Mismatch { upstream });
        }
        Ok(m)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ForwardError::Timeout { upstream }))
}
