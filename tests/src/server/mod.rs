//! Tiny servers for test backends: bound inside a namespace, served on background threads,
//! stopped and joined when dropped.
//!
//! The listening socket is created in the namespace (with [`Netns::run`]) and then served
//! from ordinary threads: a socket keeps its namespace. Every wait is bounded so a drop
//! never hangs: the accept loop polls with a short timeout, connection I/O uses short
//! socket timeouts, and both look at a shared stop flag in between.

mod echo;
mod http;

pub use echo::EchoServer;
pub use http::{HttpServer, SERVER_HEADER};

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::netns::{Netns, NetnsError};

/// How long the accept loop sleeps in poll before looking at the stop flag (ms).
const ACCEPT_POLL_MS: u16 = 50;

/// Socket timeout of connection reads and writes, after which the stop flag is checked.
const IO_TICK: Duration = Duration::from_millis(100);

/// Starting a test server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The listening socket could not be bound.
    #[error("binding {what} to {addr} in network namespace {netns} failed")]
    Bind {
        what: String,
        addr: SocketAddr,
        netns: String,
        #[source]
        source: io::Error,
    },
    /// The bound listener could not be prepared or its thread not started.
    #[error("starting {what} in network namespace {netns} failed")]
    Start {
        what: String,
        netns: String,
        #[source]
        source: io::Error,
    },
}

/// A listener served on a background thread, one more thread per connection, until
/// dropped. Dropping sets the stop flag and joins all of them.
#[derive(Debug)]
struct Acceptor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Binds `addr` in `netns` and hands every accepted connection to `handler`.
    /// `what` names the server in errors and logs.
    fn start<H>(
        what: String,
        netns: &Netns,
        addr: SocketAddr,
        handler: H,
    ) -> Result<Acceptor, ServerError>
    where
        H: Fn(Conn) -> io::Result<()> + Send + Sync + 'static,
    {
        let bound = netns.run(|| TcpListener::bind(addr))?;
        let listener = bound.map_err(|source| ServerError::Bind {
            what: what.clone(),
            addr,
            netns: netns.name().to_owned(),
            source,
        })?;
        let start_error = |source| ServerError::Start {
            what: what.clone(),
            netns: netns.name().to_owned(),
            source,
        };
        let addr = listener.local_addr().map_err(start_error)?;
        listener.set_nonblocking(true).map_err(start_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("test-server".to_owned())
            .spawn({
                let stop = Arc::clone(&stop);
                let what = what.clone();
                move || accept_loop(&what, &listener, &stop, Arc::new(handler))
            })
            .map_err(start_error)?;
        Ok(Acceptor {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!(
                    "lattice-tests: the accept thread of the server on {} panicked",
                    self.addr
                );
            }
        }
    }
}

fn accept_loop<H>(what: &str, listener: &TcpListener, stop: &Arc<AtomicBool>, handler: Arc<H>)
where
    H: Fn(Conn) -> io::Result<()> + Send + Sync + 'static,
{
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ACCEPT_POLL_MS)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                eprintln!("lattice-tests: {what}: poll failed, no longer accepting: {e}");
                break;
            }
        }
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                eprintln!("lattice-tests: {what}: accept failed: {e}");
                continue;
            }
        };
        connections.retain(|connection| !connection.is_finished());
        let conn = match Conn::new(stream, peer, Arc::clone(stop)) {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!(
                    "lattice-tests: {what}: setting up the connection from {peer} failed: {e}"
                );
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        let stop = Arc::clone(stop);
        let server = what.to_owned();
        let spawned = std::thread::Builder::new()
            .name("test-conn".to_owned())
            .spawn(move || {
                if let Err(e) = handler(conn) {
                    if !stop.load(Ordering::Relaxed) {
                        eprintln!("lattice-tests: {server}: connection from {peer}: {e}");
                    }
                }
            });
        match spawned {
            Ok(connection) => connections.push(connection),
            Err(e) => {
                eprintln!("lattice-tests: {what}: no thread for the connection from {peer}: {e}")
            }
        }
    }
    for connection in connections {
        // A panicking handler has already printed its message.
        let _ = connection.join();
    }
}

/// An accepted connection whose reads and writes wait for data as long as the server
/// runs and fail with "server stopped" once it is dropped.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Conn {
    fn new(stream: TcpStream, peer: SocketAddr, stop: Arc<AtomicBool>) -> io::Result<Conn> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(IO_TICK))?;
        stream.set_write_timeout(Some(IO_TICK))?;
        Ok(Conn { stream, peer, stop })
    }

    /// The client's address as this server sees it.
    fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Repeats `op` while it times out and the server is not stopped.
    fn retry<T>(&mut self, mut op: impl FnMut(&mut TcpStream) -> io::Result<T>) -> io::Result<T> {
        loop {
            match op(&mut self.stream) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.stop.load(Ordering::Relaxed) {
                        return Err(io::Error::other("server stopped"));
                    }
                }
                result => return result,
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.retry(|stream| stream.read(buf))
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.retry(|stream| stream.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
