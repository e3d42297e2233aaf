//! HTTP/2 connections to a target group's targets (protocol versions HTTP2 and GRPC):
//! one connection per target, which every request to that target is multiplexed on.
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
//! - Requests past the target's `SETTINGS_MAX_CONCURRENT_STREAMS` wait for a stream of
//!   that connection, as with the legacy client (no second connection is opened).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::http2::{self, SendRequest},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tracing::debug;

use super::{
    pool::{PoolError, Sweep, Sweeper, IDLE_TIMEOUT},
    received::TargetBody,
    upstream::NamespaceConnector,
};

/// How often an HTTP/2 connection to a target is pinged.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP/2 connections of one target group.
#[derive(Debug)]
pub struct Http2Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    connector: NamespaceConnector,
    /// Per target, its connection. A group has a few targets, so a list beats hashing
    /// the address on every request.
    conns: Mutex<Vec<(SocketAddr, Connection)>>,
    sweeper: Sweeper,
}

#[derive(Debug)]
struct Connection {
    sender: SendRequest<TargetBody>,
    used: Instant,
}

impl Http2Pool {
    pub fn new(connector: NamespaceConnector) -> Http2Pool {
        Http2Pool {
            shared: Arc::new(Shared {
                connector,
                conns: Mutex::new(Vec::new()),
                sweeper: Sweeper::new(),
            }),
        }
    }

    /// Sends `req` (absolute URI: its scheme and authority become `:scheme` and
    /// `:authority`) to `target` on the target's connection, opened if it has none.
    pub async fn request(
        &self,
        target: SocketAddr,
        mut req: Request<TargetBody>,
    ) -> Result<Response<Incoming>, PoolError> {
        if let Some(mut sender) = self.shared.check_out(target) {
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(response),
                Err(mut refused) => match refused.take_message() {
                    // The connection closed as the request was handed to it.
                    Some(unsent) => req = unsent,
                    None => return Err(PoolError::Exchange(refused.into_error())),
                },
            }
        }
        // Boxed: connecting (a TLS handshake, for HTTPS groups) is most of this future's
        // size but rare.
        let mut sender = Box::pin(self.connect(target)).await?;
        Ok(sender.send_request(req).await?)
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
        self.shared.keep(target, sender.clone());
        Ok(sender)
    }

    /// Whether the pool holds an open connection to `target`, for tests.
    #[cfg(test)]
    fn has_connection(&self, target: SocketAddr) -> bool {
        let conns = self
            .shared
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        conns
            .iter()
            .any(|(t, c)| *t == target && !c.sender.is_closed())
    }
}

impl Shared {
    /// The target's connection, unless it has none open.
    fn check_out(&self, target: SocketAddr) -> Option<SendRequest<TargetBody>> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, conn) = conns.iter_mut().find(|(t, _)| *t == target)?;
        if conn.sender.is_closed() {
            return None;
        }
        conn.used = Instant::now();
        Some(conn.sender.clone())
    }

    /// Keeps a new connection as the target's (one opened by a request that raced
    /// another's replaces it: the other's streams finish on it, then it closes).
    fn keep(self: &Arc<Self>, target: SocketAddr, sender: SendRequest<TargetBody>) {
        self.sweeper.start(self);
        let conn = Connection {
            sender,
            used: Instant::now(),
        };
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        match conns.iter_mut().find(|(t, _)| *t == target) {
            Some((_, old)) => *old = conn,
            None => conns.push((target, conn)),
        }
    }
}

impl Sweep for Shared {
    /// Lets go of connections that closed or that no request used for the idle timeout.
    fn sweep(&self, now: Instant) {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.retain(|(_, c)| {
            !c.sender.is_closed() && now.saturating_duration_since(c.used) < IDLE_TIMEOUT
        });
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
    use crate::{health::HostConnector, l7::received::Received};

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

    async fn text(response: Response<Incoming>) -> String {
        let body = response.into_body().collect().await.unwrap().to_bytes();
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
        assert!(pool.has_connection(addr));
    }

    #[tokio::test]
    async fn an_idle_connection_is_let_go_and_the_next_request_opens_another() {
        let (addr, accepted) = target().await;
        let pool = pool();
        pool.request(addr, get("http://a/")).await.unwrap();
        pool.shared.sweep(Instant::now() + IDLE_TIMEOUT / 2);
        assert!(pool.has_connection(addr), "used recently: kept");
        pool.shared.sweep(Instant::now() + IDLE_TIMEOUT);
        assert!(!pool.has_connection(addr), "idle past the timeout: let go");
        let response = pool.request(addr, get("https://b:8443/")).await.unwrap();
        assert_eq!(text(response).await, "b:8443 https None");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
