//! Making TCP connections from the right network namespace.
//!
//! Targets live inside their vpc's network namespace and cannot be reached from the
//! host's. A socket belongs for its whole life to the namespace of the thread that
//! created it, so [`NetnsConnector`] keeps one plain thread that entered the namespace
//! once and creates sockets on request; the async side then connects them on the
//! runtime like any other socket. Runtime threads never call `setns`: tokio reuses them
//! (blocking-pool threads too), and a thread left in a vpc's namespace would quietly
//! put unrelated sockets there.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Requests queued for a namespace's socket thread before callers wait.
const SOCKET_QUEUE: usize = 64;

/// A connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("opening network namespace {netns} at {}: {source}", path.display())]
    OpenNetns {
        netns: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("entering network namespace {netns} with setns(CLONE_NEWNET): {source} (the agent needs CAP_SYS_ADMIN)")]
    EnterNetns {
        netns: String,
        #[source]
        source: nix::Error,
    },
    #[error("starting the socket thread of network namespace {netns}: {source}")]
    Thread {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("the socket thread of network namespace {netns} stopped")]
    ThreadGone { netns: String },
    #[error("creating a socket in {}: {source}", namespace_label(netns.as_deref()))]
    Socket {
        /// `None`: the agent's own namespace.
        netns: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
}

fn namespace_label(netns: Option<&str>) -> String {
    match netns {
        Some(name) => format!("network namespace {name}"),
        None => "the agent's network namespace".to_owned(),
    }
}

/// The future of [`Connector::connect`].
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<TcpStream, ConnectError>> + Send + 'a>>;

/// Makes TCP connections from one network namespace. Behind a trait so the probes (and
/// later the proxy) can be given the namespace of a target's vpc, or a fake.
pub trait Connector: Send + Sync + fmt::Debug {
    /// Connects to `addr`, giving up after `timeout`.
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> ConnectFuture<'_>;
}

/// Connects from the agent's own network namespace (vpcs made of host cgroups).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostConnector;

impl Connector for HostConnector {
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> ConnectFuture<'_> {
        Box::pin(async move {
            let socket = new_socket(addr.is_ipv6()).map_err(|source| ConnectError::Socket {
                netns: None,
                source,
            })?;
            connect_within(socket, addr, timeout).await
        })
    }
}

/// Connects from inside a named network namespace (`/run/netns/<name>`).
///
/// The socket thread starts on the first connect once the namespace exists, and again
/// when the name has come to refer to another namespace (deleted and created again) or
/// the thread died, so a connector outlives namespace churn. Dropping the connector
/// stops the thread.
#[derive(Debug)]
pub struct NetnsConnector {
    netns: String,
    path: PathBuf,
    worker: Mutex<Option<Worker>>,
}

/// A thread inside one namespace that creates sockets on request.
#[derive(Debug)]
struct Worker {
    /// The namespace file's (device, inode) when the thread entered it.
    namespace: (u64, u64),
    requests: mpsc::Sender<SocketRequest>,
    thread: JoinHandle<()>,
}

#[derive(Debug)]
struct SocketRequest {
    ipv6: bool,
    reply: oneshot::Sender<Result<TcpSocket, ConnectError>>,
}

impl NetnsConnector {
    /// A connector for namespace `netns` under [`NETNS_RUN_DIR`]. Nothing is opened
    /// yet: errors surface on [`Connector::connect`].
    pub fn new(netns: impl Into<String>) -> Self {
        let netns = netns.into();
        let path = Path::new(NETNS_RUN_DIR).join(&netns);
        Self {
            netns,
            path,
            worker: Mutex::new(None),
        }
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// A fresh socket created inside the namespace, for `addr`'s address family.
    async fn socket(&self, addr: SocketAddr) -> Result<TcpSocket, ConnectError> {
        let requests = self.requests()?;
        let gone = || ConnectError::ThreadGone {
            netns: self.netns.clone(),
        };
        let (reply, answer) = oneshot::channel();
        requests
            .send(SocketRequest {
                ipv6: addr.is_ipv6(),
                reply,
            })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// The running worker's queue, starting a worker if there is none or the name now
    /// refers to another namespace than the worker's.
    fn requests(&self) -> Result<mpsc::Sender<SocketRequest>, ConnectError> {
        let open_error = |source| ConnectError::OpenNetns {
            netns: self.netns.clone(),
            path: self.path.clone(),
            source,
        };
        let current = namespace_id(&std::fs::metadata(&self.path).map_err(open_error)?);
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = worker.as_ref() {
            if running.namespace == current && !running.requests.is_closed() {
                return Ok(running.requests.clone());
            }
        }
        // A replaced worker's thread ends by itself once its queue closes.
        let file = File::open(&self.path).map_err(open_error)?;
        let namespace = namespace_id(&file.metadata().map_err(open_error)?);
        let (requests, queue) = mpsc::channel(SOCKET_QUEUE);
        let netns = self.netns.clone();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{}", self.netns))
            .spawn(move || serve_sockets(&netns, file, queue))
            .map_err(|source| ConnectError::Thread {
                netns: self.netns.clone(),
                source,
            })?;
        *worker = Some(Worker {
            namespace,
            requests: requests.clone(),
            thread,
        });
        Ok(requests)
    }
}

impl Connector for NetnsConnector {
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> ConnectFuture<'_> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let socket = tokio::time::timeout_at(deadline, self.socket(addr))
                .await
                .map_err(|_| ConnectError::Timeout { addr, timeout })??;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            connect_within(socket, addr, left)
                .await
                .map_err(|error| match error {
                    // Report the whole budget, not what was left of it.
                    ConnectError::Timeout { addr, .. } => ConnectError::Timeout { addr, timeout },
                    other => other,
                })
        })
    }
}

impl Drop for NetnsConnector {
    fn drop(&mut self) {
        let worker = self
            .worker
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(Worker {
            requests, thread, ..
        }) = worker
        {
            // Closing the queue ends the thread: it only ever waits for requests, and no
            // request can be in flight once the connector itself is being dropped.
            drop(requests);
            if thread.join().is_err() {
                tracing::error!(netns = %self.netns, "the namespace socket thread panicked");
            }
        }
    }
}

/// The socket thread: enters the namespace once, then creates a socket per request
/// until the queue closes. If entering failed, every request gets that error (a
/// namespace that is deleted and created again gets a new thread, see
/// [`NetnsConnector::requests`]).
fn serve_sockets(netns: &str, file: File, mut queue: mpsc::Receiver<SocketRequest>) {
    let entered = setns(&file, CloneFlags::CLONE_NEWNET);
    drop(file);
    while let Some(request) = queue.blocking_recv() {
        let socket = match entered {
            Ok(()) => new_socket(request.ipv6).map_err(|source| ConnectError::Socket {
                netns: Some(netns.to_owned()),
                source,
            }),
            Err(source) => Err(ConnectError::EnterNetns {
                netns: netns.to_owned(),
                source,
            }),
        };
        // The caller may have given up (timeout); the socket is then just closed.
        let _ = request.reply.send(socket);
    }
}

/// A socket for IPv4 or IPv6, created in the calling thread's namespace. Creating a
/// tokio `TcpSocket` needs no runtime (only connecting does), so the namespace thread
/// can make them.
fn new_socket(ipv6: bool) -> io::Result<TcpSocket> {
    if ipv6 {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    }
}

async fn connect_within(
    socket: TcpSocket,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(ConnectError::Connect { addr, source }),
        Err(_) => Err(ConnectError::Timeout { addr, timeout }),
    }
}

/// A namespace file's identity: nsfs device and inode.
fn namespace_id(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}
