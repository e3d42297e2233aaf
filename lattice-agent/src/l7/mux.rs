//! HTTP/2 connections to a target group's targets (protocol versions HTTP2 and GRPC):
//! requests to a target are multiplexed on one connection, and on more only when that
//! one carries [`MAX_STREAMS_PER_CONNECTION`] streams.
//!
//! hyper's connection-level client (`hyper::client::conn::http2`) under a table of
//! lattice's own, rather than hyper-util's legacy `Client`. That client keys its pool by
//! the request URI's authority, which therefore had to be the target's address: every
//! request reached the target with `:authority: 10.0.1.5:8080` beside the caller's
//! `host`, which Go's net/http, virtual hosts and Envoy routes read as the name asked
//! for. Here a request knows its target already, so its URI carries what the caller
//! asked for ([`super::upstream::TargetClient::uri`]: RFC 9113 8.3.1 has an
//! intermediary make `:authority` from the caller's Host), and `:scheme` is `https` to
//! TLS targets.
//!
//! - A connection that has closed (the target went away, sent GOAWAY, or missed a
//!   ping) is replaced by a new one at the next request; a request it could not take
//!   (hyper gives it back unsent) goes on the new one, and a sent request is never
//!   sent twice.
//! - Pings every [`KEEP_ALIVE_INTERVAL`] find a target that vanished without closing
//!   its connections (a host powered off, a dropped route): no answer within
//!   [`KEEP_ALIVE_TIMEOUT`] closes the connection, rather than requests waiting on it
//!   until their timeout.
//! - A connection no request has used for [`IDLE_TIMEOUT`] is let go; streams still
//!   running on it (a long gRPC stream) keep it open until they end.
//! - A connection carries at most [`MAX_STREAMS_PER_CONNECTION`] streams at a time;
//!   the next request opens another connection to the target (as Go's `http2.Transport`
//!   does at the target's limit). hyper's client does not tell the target's
//!   `SETTINGS_MAX_CONCURRENT_STREAMS`, and requests past it would wait inside the
//!   connection for a stream to end: with long gRPC streams, for ever. 100 is the
//!   least RFC 9113 asks servers to allow (hyper's servers allow 200, Go's 250, nginx
//!   128); a target that allows fewer still queues the rest on its connection.
//! - Each request takes the first connection with room, so load stays on few
//!   connections and the others go idle and are let go.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::http2::{self, SendRequest},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tracing::debug;

use super::{
    pool::{Lease, PoolError, Sweep, Sweeper, IDLE_TIMEOUT},
    received::TargetBody,
    upstream::NamespaceConnector,
};

/// How often an HTTP/2 connection to a target is pinged.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams one connection to a target carries at a time before requests open another.
pub const MAX_STREAMS_PER_CONNECTION: usize = 100;

/// The HTTP/2 connections of one target group.
#[derive(Debug)]
pub struct Http2Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    connector: NamespaceConnector,
    /// Per target, its connections. A group has a few targets, so a list beats hashing
    /// the address on every request.
    targets: Mutex<Vec<Target>>,
    sweeper: Sweeper,
}

#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    /// The first opened first.
    conns: Vec<Connection>,
    /// A connection being opened, which requests that find no room wait for rather
    /// than each opening one of their own.
    opening: Option<watch::Receiver<Opened>>,
}

/// How the opening of a connection ended: `None` while it is under way. Its error is
/// every waiting request's.
type Opened = Option<Result<(), Arc<PoolError>>>;

#[derive(Debug)]
struct Connection {
    sender: SendRequest<TargetBody>,
    used: Instant,
    /// Its streams open now.
    streams: Arc<AtomicUsize>,
}

/// A stream counted open on its connection until this is dropped (the response's body
/// ended, or was given up).
#[derive(Debug)]
pub struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn open(streams: &Arc<AtomicUsize>) -> OpenStream {
        streams.fetch_add(1, Ordering::Relaxed);
        OpenStream(Arc::clone(streams))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a request found for its stream.
enum Checkout {
    /// A connection with room, the stream counted on it.
    Stream(SendRequest<TargetBody>, OpenStream),
    /// No room, and a connection is being opened: wait for it.
    Wait(watch::Receiver<Opened>),
    /// No room: this request opens the next connection.
    Open(Opener),
}

/// The request opening a target's next connection; tells the waiting ones how it went.
/// Dropped unfinished (the request was given up), it lets the next request open one.
struct Opener {
    shared: Arc<Shared>,
    addr: SocketAddr,
    told: watch::Sender<Opened>,
}

impl Opener {
    /// Keeps the new connection for the next requests, with a stream counted on it for
    /// the request that opened it, and wakes the waiting requests.
    fn opened(self, sender: SendRequest<TargetBody>) -> OpenStream {
        self.shared.sweeper.start(&self.shared);
        let streams = Arc::new(AtomicUsize::new(0));
        let open = OpenStream::open(&streams);
        let conn = Connection {
            sender,
            used: Instant::now(),
            streams,
        };
        self.shared.with_target(self.addr, |target| {
            target.conns.push(conn);
            target.opening = None;
        });
        self.told.send_replace(Some(Ok(())));
        open
    }

    /// The connection could not be opened: the waiting requests fail as this one.
    fn failed(self, error: PoolError) -> PoolError {
        let error = Arc::new(error);
        self.shared
            .with_target(self.addr, |target| target.opening = None);
        self.told.send_replace(Some(Err(Arc::clone(&error))));
        PoolError::Shared(error)
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        if self.told.borrow().is_none() {
            self.shared
                .with_target(self.addr, |target| target.opening = None);
        }
    }
}

impl Http2Pool {
    pub fn new(connector: NamespaceConnector) -> Http2Pool {
        Http2Pool {
            shared: Arc::new(Shared {
                connector,
                targets: Mutex::new(Vec::new()),
                sweeper: Sweeper::new(),
            }),
        }
    }

    /// Sends `req` (absolute URI: its scheme and authority become `:scheme` and
    /// `:authority`) to `target` on a connection with room for its stream, opened if
    /// the target has none. The stream is counted open until the lease is dropped.
    pub async fn request(
        &self,
        target: SocketAddr,
        mut req: Request<TargetBody>,
    ) -> Result<(Response<Incoming>, Lease), PoolError> {
        loop {
            match self.shared.check_out(target) {
                Checkout::Stream(mut sender, stream) => {
                    match sender.try_send_request(req).await {
                        Ok(response) => return Ok((response, Lease::Stream(stream))),
                        Err(mut refused) => match refused.take_message() {
                            // The connection closed as the request was handed to it:
                            // the next look skips it.
                            Some(unsent) => req = unsent,
                            None => return Err(PoolError::Exchange(refused.into_error())),
                        },
                    }
                }
                Checkout::Wait(mut opening) => {
                    let opened = opening.wait_for(Option::is_some).await.map(|o| o.clone());
                    if let Ok(Some(Err(error))) = opened {
                        return Err(PoolError::Shared(error));
                    }
                    // Opened, or its opener was given up: look again.
                }
                Checkout::Open(opener) => {
                    // Boxed: connecting (a TLS handshake, for HTTPS groups) is most of
                    // this future's size but rare.
                    let (mut sender, stream) = match Box::pin(self.connect(target)).await {
                        Ok(sender) => (sender.clone(), opener.opened(sender)),
                        Err(error) => return Err(opener.failed(error)),
                    };
                    let response = sender.send_request(req).await?;
                    return Ok((response, Lease::Stream(stream)));
                }
            }
        }
    }

    async fn connect(&self, target: SocketAddr) -> Result<SendRequest<TargetBody>, PoolError> {
        let stream = self.shared.connector.open(target).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%target, error = %e, "HTTP/2 connection to target ended");
            }
        });
        Ok(sender)
    }

    /// The pool's open connections to `target`, for tests.
    #[cfg(test)]
    fn connections(&self, target: SocketAddr) -> usize {
        let targets = self
            .shared
            .targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        targets
            .iter()
            .filter(|t| t.addr == target)
            .flat_map(|t| &t.conns)
            .filter(|c| !c.sender.is_closed())
            .count()
    }
}

impl Shared {
    /// A stream on the target's first open connection with room; else the connection
    /// being opened to wait for, or the task of opening it. Connections found closed
    /// are let go.
    fn check_out(self: &Arc<Self>, addr: SocketAddr) -> Checkout {
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match targets.iter().position(|t| t.addr == addr) {
            Some(index) => index,
            None => {
                targets.push(Target {
                    addr,
                    conns: Vec::new(),
                    opening: None,
                });
                targets.len() - 1
            }
        };
        let target = &mut targets[index];
        target.conns.retain(|c| !c.sender.is_closed());
        let room = target
            .conns
            .iter_mut()
            .find(|c| c.streams.load(Ordering::Relaxed) < MAX_STREAMS_PER_CONNECTION);
        if let Some(conn) = room {
            conn.used = Instant::now();
            return Checkout::Stream(conn.sender.clone(), OpenStream::open(&conn.streams));
        }
        if let Some(opening) = &target.opening {
            return Checkout::Wait(opening.clone());
        }
        let (told, opening) = watch::channel(None);
        target.opening = Some(opening);
        Checkout::Open(Opener {
            shared: Arc::clone(self),
            addr,
            told,
        })
    }

    fn with_target(&self, addr: SocketAddr, change: impl FnOnce(&mut Target)) {
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(target) = targets.iter_mut().find(|t| t.addr == addr) {
            change(target);
        }
    }
}

impl Sweep for Shared {
    /// Lets go of connections that closed or that no request used for the idle timeout
    /// (their streams still running finish on them), and of targets left without any.
    fn sweep(&self, now: Instant) {
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        for target in targets.iter_mut() {
            target.conns.retain(|c| {
                !c.sender.is_closed() && now.saturating_duration_since(c.used) < IDLE_TIMEOUT
            });
        }
        targets.retain(|t| !t.conns.is_empty() || t.opening.is_some());
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Either, Full};

    use super::*;
    use crate::{
        health::HostConnector,
        l7::{pool::Leased, received::Received},
    };

    /// An h2c target on loopback that answers with the `:authority`, `:scheme` and
    /// `host` it was sent; counts its connections.
    async fn target() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let seen = format!(
                            "{} {} {:?}",
                            req.uri().authority().map_or("-", |a| a.as_str()),
                            req.uri().scheme_str().unwrap_or("-"),
                            req.headers().get(http::header::HOST),
                        );
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(seen))))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn pool() -> Http2Pool {
        Http2Pool::new(NamespaceConnector::new(Arc::new(HostConnector), None))
    }

    fn get(uri: &str) -> Request<TargetBody> {
        Request::builder()
            .uri(uri)
            .body(Received::uncounted(Either::Right(Full::new(Bytes::new()))))
            .unwrap()
    }

    async fn text((response, lease): (Response<Incoming>, Lease)) -> String {
        let body = Leased::new(response.into_body(), lease);
        let body = body.collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn requests_carry_the_callers_authority_and_share_one_connection() {
        let (addr, accepted) = target().await;
        let pool = pool();
        for _ in 0..3 {
            let response = pool
                .request(addr, get("http://orders.shop.internal/x"))
                .await
                .unwrap();
            assert_eq!(text(response).await, "orders.shop.internal http None");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "multiplexed");
        assert_eq!(pool.connections(addr), 1);
    }

    #[tokio::test]
    async fn an_idle_connection_is_let_go_and_the_next_request_opens_another() {
        let (addr, accepted) = target().await;
        let pool = pool();
        text(pool.request(addr, get("http://a/")).await.unwrap()).await;
        pool.shared.sweep(Instant::now() + IDLE_TIMEOUT / 2);
        assert_eq!(pool.connections(addr), 1, "used recently: kept");
        pool.shared.sweep(Instant::now() + IDLE_TIMEOUT);
        assert_eq!(pool.connections(addr), 0, "idle past the timeout: let go");
        let response = pool.request(addr, get("https://b:8443/")).await.unwrap();
        assert_eq!(text(response).await, "b:8443 https None");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// An h2c target that allows [`MAX_STREAMS_PER_CONNECTION`] streams per connection
    /// and answers no request before `all` have arrived (long gRPC streams, say).
    async fn target_answering_together(all: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        let together = Arc::new(tokio::sync::Barrier::new(all));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let together = Arc::clone(&together);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                        let together = Arc::clone(&together);
                        async move {
                            together.wait().await;
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION as u32)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn streams_past_a_connections_limit_open_one_more_connection_for_all() {
        // 150 streams at once on an empty pool: one request opens a connection while
        // the others wait for it, 100 go on it, and the other 50 on one more. On one
        // connection, 50 would wait for streams that end only when they are answered.
        let all = MAX_STREAMS_PER_CONNECTION + 50;
        let (addr, accepted) = target_answering_together(all).await;
        let pool = Arc::new(pool());
        let requests: Vec<_> = (0..all)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    text(pool.request(addr, get("http://a/")).await.unwrap()).await
                })
            })
            .collect();
        let answered = tokio::time::timeout(Duration::from_secs(20), async {
            for request in requests {
                assert_eq!(request.await.unwrap(), "ok");
            }
        })
        .await;
        assert!(
            answered.is_ok(),
            "streams past the limit waited on one connection"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.connections(addr), 2);
    }

    #[tokio::test]
    async fn a_connection_that_cannot_be_opened_fails_every_request_waiting_for_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let pool = Arc::new(pool());
        for _ in 0..2 {
            let requests: Vec<_> = (0..5)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move { pool.request(addr, get("http://a/")).await })
                })
                .collect();
            for request in requests {
                let failed = tokio::time::timeout(Duration::from_secs(10), request)
                    .await
                    .expect("a request waited for an opening that had ended")
                    .unwrap();
                assert!(failed.is_err());
            }
        }
        assert_eq!(pool.connections(addr), 0);
    }
}
