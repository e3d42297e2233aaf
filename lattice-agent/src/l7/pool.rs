//! HTTP/1.1 connections to a target group's targets, kept open between requests.
//!
//! hyper's connection-level client (`hyper::client::conn::http1`) under a pool of
//! lattice's own, rather than hyper-util's legacy `Client`. That client is general: a
//! pool keyed by scheme and authority (SipHash per request), a checkout raced against a
//! lazily built connect future, and request futures it boxes and moves several times; a
//! profile of HTTP/1.1 forwarding had a third of the agent's `memcpy` and about 1 µs of
//! user CPU per request in it. Here a request knows its target already, so the pool is a
//! list of idle connections per target address behind one short lock.
//!
//! What the pool does, as the legacy client did:
//! - the most recently returned idle connection of the target goes first (its socket and
//!   buffers are warm, and older ones age out);
//! - a request that a reused connection could not take (the target closed it as it was
//!   picked: hyper gives the request back unsent) goes to the next idle connection, then
//!   to a new one;
//! - a safe request without a body (GET, HEAD, OPTIONS, TRACE) written on a connection
//!   that had been idle for [`REPLAY_AFTER_IDLE`] or longer, and that the target closed
//!   before answering, is sent once more on a new connection: the target's idle
//!   timeout fired as the request arrived (uvicorn closes idle connections after 5 s
//!   without saying so), which Go's `http.Transport` retries the same way. Any other
//!   request that was written is never sent twice;
//! - a connection comes back when its response's body has ended and it can take the
//!   next request; one that cannot yet (its request body is still streaming) comes back
//!   from a task of its own once it can; one whose response was abandoned is closed;
//! - idle connections are closed after [`IDLE_TIMEOUT`], and at most
//!   [`MAX_IDLE_PER_TARGET`] are kept per target;
//! - a target that says how long it keeps an idle connection (`Keep-Alive: timeout=5`,
//!   as Node.js servers do by default) has its connections reused only until a second
//!   before that: a request written as the target closes the connection fails (a 502
//!   for the caller), and such targets close idle connections long before 60 s.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, Once, PoisonError, Weak},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::{Either, Full};
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::{
    mux::OpenStream,
    received::{Received, TargetBody},
    upstream::{NamespaceConnector, UpstreamError},
};

/// How long an idle connection is kept (as the legacy client's pool was set); HTTP/2
/// connections ([`super::mux`]) too.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per target; more come back only after a burst of concurrency,
/// and those are closed.
pub const MAX_IDLE_PER_TARGET: usize = 1024;
/// How long a connection must have been idle for a safe request written on it to be
/// sent again when the target closes it unanswered. Targets close idle connections after
/// seconds; one busy a moment ago that closes under a request did not time out (it
/// crashed, or refused that very request), and the copy of the request head this costs
/// stays off the busy path.
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);
/// How often idle connections are looked over for age and for targets that closed them.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Why a request could not be exchanged with a target.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    #[error("HTTP exchange with the target: {0}")]
    Exchange(#[from] hyper::Error),
    /// Another request's attempt, which this one waited for (HTTP/2 connections are
    /// opened once for all the requests that need one).
    #[error(transparent)]
    Shared(Arc<PoolError>),
}

/// The pool of one target group.
#[derive(Debug)]
pub struct Http1Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    connector: NamespaceConnector,
    /// Per target: its idle connections, the most recently returned last. A group has a
    /// few targets, so a list beats hashing the address on every request.
    idle: Mutex<Vec<(SocketAddr, Vec<IdleConnection>)>>,
    sweeper: Sweeper,
}

#[derive(Debug)]
struct IdleConnection {
    sender: SendRequest<TargetBody>,
    /// When it came back to the pool.
    since: Instant,
    /// Reused only before this.
    until: Instant,
}

/// How long before a target's own keep-alive timeout its connection stops being reused.
const KEEP_ALIVE_MARGIN: Duration = Duration::from_secs(1);

/// How long a connection may stay idle in the pool after this response: the pool's
/// [`IDLE_TIMEOUT`], or less when the target's `Keep-Alive: timeout=N` says it closes
/// sooner ([`KEEP_ALIVE_MARGIN`] before that; zero when that leaves nothing).
fn keep_for<B>(response: &Response<B>) -> Duration {
    const KEEP_ALIVE: header::HeaderName = header::HeaderName::from_static("keep-alive");
    let Some(value) = response.headers().get(KEEP_ALIVE) else {
        return IDLE_TIMEOUT;
    };
    let timeout = value
        .to_str()
        .unwrap_or_default()
        .split(',')
        .filter_map(|param| param.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("timeout"))
        .and_then(|(_, secs)| secs.trim().parse::<u64>().ok());
    match timeout {
        Some(secs) => Duration::from_secs(secs)
            .saturating_sub(KEEP_ALIVE_MARGIN)
            .min(IDLE_TIMEOUT),
        None => IDLE_TIMEOUT,
    }
}

impl Http1Pool {
    pub fn new(connector: NamespaceConnector) -> Http1Pool {
        Http1Pool {
            shared: Arc::new(Shared {
                connector,
                idle: Mutex::new(Vec::new()),
                sweeper: Sweeper::new(),
            }),
        }
    }

    /// Sends `req` (origin-form URI) to `target` over an idle connection or a new one.
    /// The lease goes with the response's body ([`Leased`]): the connection comes back
    /// when that body has ended.
    pub async fn request(
        &self,
        target: SocketAddr,
        mut req: Request<TargetBody>,
    ) -> Result<(Response<Incoming>, Lease), PoolError> {
        if !req.headers().contains_key(header::HOST) {
            // HTTP/1.1 requires one; a caller that sent none (HTTP/1.0) gets the target's.
            if let Ok(host) = HeaderValue::from_str(&target.to_string()) {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        while let Some((mut sender, idle_for)) = self.shared.check_out(target) {
            // An idle connection is ready, unless the target has closed it since.
            if sender.ready().await.is_err() {
                continue;
            }
            let replay = if idle_for >= REPLAY_AFTER_IDLE {
                replayable(&req)
            } else {
                None
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let lease = self.lease(target, sender, keep_for(&response));
                    return Ok((response, lease));
                }
                Err(mut refused) => match refused.take_message() {
                    Some(unsent) => req = unsent,
                    None => {
                        let error = refused.into_error();
                        match replay {
                            Some(copy) if closed_unanswered(&error) => {
                                debug!(%target, error = %error, "idle connection closed under a safe request; sending it again on a new one");
                                req = copy;
                                break;
                            }
                            _ => return Err(PoolError::Exchange(error)),
                        }
                    }
                },
            }
        }
        // Boxed: connecting (a TLS handshake, for HTTPS groups) is most of this future's
        // size but rare, and every request's future, which hyper moves and spawns for
        // HTTP/2 callers, would otherwise carry it inline.
        let mut sender = Box::pin(self.connect(target)).await?;
        let response = sender.send_request(req).await?;
        let lease = self.lease(target, sender, keep_for(&response));
        Ok((response, lease))
    }

    async fn connect(&self, target: SocketAddr) -> Result<SendRequest<TargetBody>, PoolError> {
        let stream = self.shared.connector.open(target).await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%target, error = %e, "connection to target ended");
            }
        });
        Ok(sender)
    }

    fn lease(
        &self,
        target: SocketAddr,
        sender: SendRequest<TargetBody>,
        keep_for: Duration,
    ) -> Lease {
        Lease::Connection(ConnectionLease {
            shared: Arc::clone(&self.shared),
            target,
            sender,
            keep_for,
        })
    }

    /// Makes every idle connection look idle `by` longer, for tests.
    #[cfg(test)]
    fn age_idle(&self, by: Duration) {
        let mut idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, conns) in idle.iter_mut() {
            for conn in conns {
                conn.since = conn.since.checked_sub(by).unwrap_or(conn.since);
            }
        }
    }

    /// Idle connections per target, for tests.
    #[cfg(test)]
    fn idle_count(&self, target: SocketAddr) -> usize {
        let idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        idle.iter()
            .find(|(t, _)| *t == target)
            .map_or(0, |(_, conns)| conns.len())
    }
}

impl Shared {
    /// The target's most recently returned idle connection, and how long it has been
    /// idle.
    fn check_out(&self, target: SocketAddr) -> Option<(SendRequest<TargetBody>, Duration)> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, conns) = idle.iter_mut().find(|(t, _)| *t == target)?;
        let now = Instant::now();
        while let Some(conn) = conns.pop() {
            if !conn.sender.is_closed() && now < conn.until {
                return Some((conn.sender, now.saturating_duration_since(conn.since)));
            }
        }
        None
    }

    fn check_in(
        self: &Arc<Self>,
        target: SocketAddr,
        sender: SendRequest<TargetBody>,
        keep_for: Duration,
    ) {
        if keep_for.is_zero() {
            // The target closes it about now: not worth a request.
            return;
        }
        self.sweeper.start(self);
        let now = Instant::now();
        let conn = IdleConnection {
            sender,
            since: now,
            until: now + keep_for,
        };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        match idle.iter_mut().find(|(t, _)| *t == target) {
            Some((_, conns)) if conns.len() < MAX_IDLE_PER_TARGET => conns.push(conn),
            Some(_) => {}
            None => idle.push((target, vec![conn])),
        }
    }
}

/// A copy of `req` to send again if the connection it goes on closes unanswered: only
/// of a safe method (RFC 9110 9.2.1: the target changes nothing for it) and without a
/// body, as Go's `http.Transport` replays.
fn replayable(req: &Request<TargetBody>) -> Option<Request<TargetBody>> {
    let safe = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !safe || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(Received::uncounted(Either::Right(Full::new(Bytes::new()))));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Whether the target closed the connection before any response came: it read end of
/// stream, or its socket was reset, where the response head should have been.
fn closed_unanswered(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        source = cause.source();
    }
    false
}

impl Sweep for Shared {
    /// Closes connections idle past the timeout and forgets those the targets closed,
    /// and targets left without any.
    fn sweep(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, conns) in idle.iter_mut() {
            conns.retain(|c| !c.sender.is_closed() && now < c.until);
        }
        idle.retain(|(_, conns)| !conns.is_empty());
    }
}

/// A pool whose connections are looked over every [`SWEEP_INTERVAL`]: this one's idle
/// HTTP/1.1 connections, and [`super::mux`]'s HTTP/2 ones.
pub(super) trait Sweep: Send + Sync + 'static {
    /// Lets go of connections that closed or aged past their time.
    fn sweep(&self, now: Instant);
}

/// The sweeping task of one pool, started with the pool's first kept connection
/// (inside the runtime, which the pool's constructor may not be).
#[derive(Debug)]
pub(super) struct Sweeper(Once);

impl Sweeper {
    pub(super) const fn new() -> Sweeper {
        Sweeper(Once::new())
    }

    /// Starts sweeping `pool`, once; the task ends when the pool is gone (its
    /// generation and every lease dropped).
    pub(super) fn start<P: Sweep>(&self, pool: &Arc<P>) {
        self.0.call_once(|| {
            let pool: Weak<P> = Arc::downgrade(pool);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SWEEP_INTERVAL).await;
                    let Some(pool) = pool.upgrade() else {
                        return;
                    };
                    pool.sweep(Instant::now());
                }
            });
        });
    }
}

/// What a target's response holds of its connection until the response has ended.
#[derive(Debug)]
pub enum Lease {
    /// A whole HTTP/1.1 connection, given back to the pool at the end.
    Connection(ConnectionLease),
    /// One of an HTTP/2 connection's streams, counted open until the end.
    Stream(OpenStream),
}

impl Lease {
    /// The exchange's response has ended.
    fn release(self) {
        match self {
            Lease::Connection(connection) => connection.release(),
            Lease::Stream(_) => {}
        }
    }
}

/// An HTTP/1.1 connection in use by one exchange.
#[derive(Debug)]
pub struct ConnectionLease {
    shared: Arc<Shared>,
    target: SocketAddr,
    sender: SendRequest<TargetBody>,
    /// How long the connection may then stay idle ([`keep_for`]).
    keep_for: Duration,
}

impl ConnectionLease {
    /// The exchange's response has ended: the connection goes back to the pool once it
    /// can take the next request.
    fn release(self) {
        let ConnectionLease {
            shared,
            target,
            mut sender,
            keep_for,
        } = self;
        if sender.is_ready() {
            shared.check_in(target, sender, keep_for);
        } else if !sender.is_closed() {
            // Its request body is still going out (the target answered early), or hyper
            // has not yet seen the response end: wait aside, not in the pool, where the
            // next request would wait on it.
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    shared.check_in(target, sender, keep_for);
                }
            });
        }
    }
}

/// A target's response body that gives its connection back to the pool (HTTP/1.1) or
/// its stream's place on the connection (HTTP/2) when it has ended; dropped before
/// that (the caller went away), an HTTP/1.1 connection is closed, since the rest of
/// the response would still come on it.
pub struct Leased<B: Body> {
    inner: B,
    lease: Option<Lease>,
}

impl<B: Body> Leased<B> {
    pub fn new(inner: B, lease: Lease) -> Self {
        Leased {
            inner,
            lease: Some(lease),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Leased<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
            }
            // An error breaks the connection: it is not given back.
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for Leased<B> {
    fn drop(&mut self) {
        // hyper's server stops polling a body that says it has ended (its length is
        // reached) without asking for the end: such a body is finished, too.
        if let Some(lease) = self.lease.take() {
            if self.inner.is_end_stream() {
                lease.release();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::Ipv4Addr,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use http_body_util::BodyExt as _;
    use hyper::{server::conn::http1 as server, service::service_fn};
    use tokio::net::TcpListener;

    use super::*;
    use crate::health::HostConnector;

    /// A target on loopback that answers `hello` and counts the connections it accepts;
    /// it closes each connection after `per_connection` requests.
    async fn target(per_connection: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        target_saying(per_connection, None).await
    }

    /// The same, with this `Keep-Alive` header in its responses.
    async fn target_saying(
        per_connection: usize,
        keep_alive: Option<&'static str>,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let served = Arc::new(AtomicUsize::new(0));
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                        let host = req.headers().get(header::HOST).cloned();
                        async move {
                            let mut response = Response::new(Full::new(Bytes::from("hello")));
                            if let Some(host) = host {
                                response.headers_mut().insert("x-seen-host", host);
                            }
                            if let Some(value) = keep_alive {
                                response
                                    .headers_mut()
                                    .insert("keep-alive", HeaderValue::from_static(value));
                            }
                            if n >= per_connection {
                                response
                                    .headers_mut()
                                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = server::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn pool() -> Http1Pool {
        Http1Pool::new(NamespaceConnector::new(Arc::new(HostConnector), None))
    }

    fn get() -> Request<TargetBody> {
        Request::builder()
            .uri("/")
            .body(crate::l7::received::Received::uncounted(Either::Right(
                Full::new(Bytes::new()),
            )))
            .unwrap()
    }

    async fn exchange(pool: &Http1Pool, target: SocketAddr) -> Bytes {
        body_of(pool, target, get()).await
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let (addr, accepted) = target(usize::MAX).await;
        let pool = pool();
        for _ in 0..20 {
            assert_eq!(exchange(&pool, addr).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(addr), 1);
    }

    #[tokio::test]
    async fn a_request_without_host_gets_the_targets_and_one_with_keeps_its_own() {
        let (addr, _) = target(usize::MAX).await;
        let pool = pool();
        let seen = |response: &Response<Incoming>| response.headers()["x-seen-host"].clone();
        let (response, _) = pool.request(addr, get()).await.unwrap();
        assert_eq!(seen(&response), addr.to_string());
        let mut named = get();
        named
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_static("orders.example"));
        let (response, _) = pool.request(addr, named).await.unwrap();
        assert_eq!(seen(&response), "orders.example");
    }

    #[tokio::test]
    async fn a_connection_the_target_closed_is_not_reused() {
        // The target closes after every second request: the pool must open a new
        // connection then, and no request may fail.
        let (addr, accepted) = target(2).await;
        let pool = pool();
        for _ in 0..10 {
            assert_eq!(exchange(&pool, addr).await, "hello");
            // Let the closed connection's task notice the close.
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn an_abandoned_response_closes_its_connection() {
        let (addr, accepted) = target(usize::MAX).await;
        let pool = pool();
        let (response, lease) = pool.request(addr, get()).await.unwrap();
        // Dropped unread: the rest of the response would still come on the connection,
        // so it is not given back.
        let body = Leased::new(response.into_body(), lease);
        assert!(!body.is_end_stream());
        drop(body);
        assert_eq!(pool.idle_count(addr), 0);
        assert_eq!(exchange(&pool, addr).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_them() {
        let (addr, accepted) = target(usize::MAX).await;
        let pool = Arc::new(pool());
        for _ in 0..3 {
            let all: Vec<_> = (0..8)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move { exchange(&pool, addr).await })
                })
                .collect();
            for one in all {
                assert_eq!(one.await.unwrap(), "hello");
            }
        }
        let opened = accepted.load(Ordering::SeqCst);
        assert!(
            (1..=8).contains(&opened),
            "{opened} connections for 8 at a time"
        );
        assert_eq!(pool.idle_count(addr), opened);
    }

    #[tokio::test]
    async fn a_targets_keep_alive_timeout_shortens_reuse() {
        // Node.js's default: the target closes idle connections after 5 s, so they are
        // reused for 4 s.
        let (addr, accepted) = target_saying(usize::MAX, Some("timeout=5")).await;
        let pool = pool();
        exchange(&pool, addr).await;
        exchange(&pool, addr).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused within 4 s");
        pool.shared
            .sweep(Instant::now() + Duration::from_millis(3900));
        assert_eq!(pool.idle_count(addr), 1);
        pool.shared.sweep(Instant::now() + Duration::from_secs(4));
        assert_eq!(pool.idle_count(addr), 0, "gone before the target closes it");
        // A target that keeps idle connections a second or less: never reused.
        let (addr, accepted) = target_saying(usize::MAX, Some("timeout=1, max=100")).await;
        exchange(&pool, addr).await;
        exchange(&pool, addr).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle_count(addr), 0);
    }

    /// A target that answers the first request of each connection with the
    /// connection's number, then closes it as soon as the next request's bytes arrive,
    /// unanswered: a server whose idle timeout fires as a request comes in.
    async fn target_closing_on_second_request() -> (SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    let body = format!("conn{n}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    // The next request: read a little of it, then close.
                    let _ = stream.read(&mut buf).await;
                });
            }
        });
        (addr, accepted)
    }

    fn request(method: Method, body: &'static str) -> Request<TargetBody> {
        Request::builder()
            .method(method)
            .uri("/")
            .header(header::HOST, "orders.example")
            .body(Received::uncounted(Either::Right(Full::new(Bytes::from(
                body,
            )))))
            .unwrap()
    }

    async fn body_of(pool: &Http1Pool, target: SocketAddr, req: Request<TargetBody>) -> Bytes {
        let (response, lease) = pool.request(target, req).await.unwrap();
        let body = Leased::new(response.into_body(), lease);
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_safe_request_on_a_connection_closed_after_idling_is_sent_again_once() {
        let (addr, accepted) = target_closing_on_second_request().await;
        let pool = pool();
        assert_eq!(
            body_of(&pool, addr, request(Method::GET, "")).await,
            "conn1"
        );
        assert_eq!(pool.idle_count(addr), 1);
        // Idle long enough for a target's timeout: the GET that meets the close is sent
        // again on a new connection, and the caller never sees the close.
        pool.age_idle(REPLAY_AFTER_IDLE);
        assert_eq!(
            body_of(&pool, addr, request(Method::GET, "")).await,
            "conn2"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // A POST, or a GET with a body, may have been acted on: never sent twice.
        for (method, body) in [(Method::POST, ""), (Method::GET, "a body")] {
            let before = accepted.load(Ordering::SeqCst);
            if pool.idle_count(addr) == 0 {
                assert_eq!(
                    body_of(&pool, addr, request(Method::GET, "")).await,
                    format!("conn{}", before + 1)
                );
            }
            pool.age_idle(REPLAY_AFTER_IDLE);
            let failed = pool.request(addr, request(method.clone(), body)).await;
            assert!(
                matches!(failed, Err(PoolError::Exchange(_))),
                "{method} {body:?}: {failed:?}"
            );
            assert_eq!(pool.idle_count(addr), 0);
        }
        // A connection used a moment ago that closes under a request did not time out:
        // the request fails rather than going to the target twice.
        let before = accepted.load(Ordering::SeqCst);
        assert_eq!(
            body_of(&pool, addr, request(Method::GET, "")).await,
            format!("conn{}", before + 1)
        );
        let failed = pool.request(addr, request(Method::GET, "")).await;
        assert!(matches!(failed, Err(PoolError::Exchange(_))), "{failed:?}");
    }

    #[test]
    fn keep_alive_timeouts_are_read_as_the_target_wrote_them() {
        for (value, expected) in [
            (None, IDLE_TIMEOUT),
            (Some("timeout=5"), Duration::from_secs(4)),
            (Some("max=100, Timeout = 10"), Duration::from_secs(9)),
            (Some("timeout=600"), IDLE_TIMEOUT),
            (Some("timeout=0"), Duration::ZERO),
            (Some("timeout=soon"), IDLE_TIMEOUT),
        ] {
            let mut response = Response::new(());
            if let Some(value) = value {
                response
                    .headers_mut()
                    .insert("keep-alive", HeaderValue::from_static(value));
            }
            assert_eq!(keep_for(&response), expected, "{value:?}");
        }
    }

    #[test]
    fn the_sweep_drops_connections_idle_too_long() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (addr, _) = target(usize::MAX).await;
            let pool = pool();
            exchange(&pool, addr).await;
            assert_eq!(pool.idle_count(addr), 1);
            pool.shared.sweep(Instant::now());
            assert_eq!(pool.idle_count(addr), 1);
            pool.shared.sweep(Instant::now() + IDLE_TIMEOUT);
            assert_eq!(pool.idle_count(addr), 0);
        });
    }
}
