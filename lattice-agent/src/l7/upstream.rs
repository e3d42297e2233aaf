//! Forwarding to targets: pooled HTTP clients whose connections are made inside the
//! target VPC's namespace (or the host's, for VPCs of host cgroups), over TLS for
//! target groups of protocol HTTPS.
//!
//! HTTP/1.1 target groups go through lattice's own pool ([`super::pool`]), a connection
//! per request in flight; HTTP/2 and gRPC groups through [`super::mux`], which
//! multiplexes requests over a connection per target (more when one carries its most
//! streams).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{
    header,
    uri::{self, Authority, PathAndQuery, Scheme},
    HeaderMap, Request, Response, Uri,
};
use hyper::body::Incoming;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::{
    mux::Http2Pool,
    pool::{Http1Pool, Lease, PoolError},
    received::TargetBody,
    tls::{target_client_config, ALPN_H2, ALPN_HTTP11},
};
use crate::{
    config::{Attachment, Config, ProtocolVersion, TargetGroup, TargetGroupProtocol},
    health::{ConnectError, Connector, HostConnector, NetnsConnector},
};

/// How long a connection to a target may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection to a target could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("TLS handshake with target {target}: {source}")]
    Tls {
        target: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Opens connections to targets from the right namespace, over TLS when `tls` is set.
#[derive(Clone)]
pub struct NamespaceConnector {
    connector: Arc<dyn Connector>,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for NamespaceConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceConnector")
            .field("connector", &self.connector)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A connection to a target: plain TCP, or TLS over it.
pub enum TargetStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for TargetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            TargetStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TargetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            TargetStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            TargetStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            TargetStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl NamespaceConnector {
    pub fn new(connector: Arc<dyn Connector>, tls: Option<TlsConnector>) -> NamespaceConnector {
        NamespaceConnector { connector, tls }
    }

    /// A connection to `addr`, with its TLS handshake done for HTTPS groups.
    pub async fn open(&self, addr: std::net::SocketAddr) -> Result<TargetStream, UpstreamError> {
        let stream = self.connector.connect(addr, CONNECT_TIMEOUT).await?;
        // As on the client side: no Nagle delay for small request writes.
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(TargetStream::Plain(stream));
        };
        // Targets are addressed by IP: no SNI is sent, and no name is checked.
        let name = ServerName::IpAddress(addr.ip().into());
        let handshake = tls.connect(name, stream);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time"))
            .and_then(|r| r)
            .map_err(|source| UpstreamError::Tls {
                target: addr,
                source,
            })?;
        Ok(TargetStream::Tls(Box::new(stream)))
    }
}

/// The client of one target group.
#[derive(Debug)]
pub enum TargetClient {
    /// HTTP/1.1 targets: a connection per request in flight, kept between requests.
    Http1(Http1Pool),
    /// HTTP/2 and gRPC targets: requests multiplexed on a connection per target.
    Http2 { pool: Http2Pool, scheme: Scheme },
}

impl TargetClient {
    /// The request target this client sends for `path`, and the caller's Host moved
    /// where it belongs. Over HTTP/1.1: origin-form (`/path?query`), the Host header
    /// naming the service as the caller sent it. Over HTTP/2: absolute, giving
    /// `:scheme` (`https` to TLS targets) and `:authority`, made from the caller's Host
    /// as RFC 9113 8.3.1 has an intermediary do (the Host header then goes: HTTP/2
    /// says the name once); a caller that sent no Host (HTTP/1.0) names the picked
    /// target, `target`.
    pub fn uri(
        &self,
        target: &Authority,
        headers: &mut HeaderMap,
        path: PathAndQuery,
    ) -> Result<Uri, uri::InvalidUriParts> {
        let mut parts = uri::Parts::default();
        if let TargetClient::Http2 { scheme, .. } = self {
            let caller = headers
                .remove(header::HOST)
                .and_then(|host| Authority::try_from(host.as_bytes()).ok());
            parts.scheme = Some(scheme.clone());
            parts.authority = Some(caller.unwrap_or_else(|| target.clone()));
        }
        parts.path_and_query = Some(path);
        Uri::from_parts(parts)
    }

    /// Sends `req` (its URI made by [`TargetClient::uri`]) to `target`. The response
    /// comes with a lease of its connection (HTTP/1.1) or stream (HTTP/2) that the
    /// response's body must carry to its end.
    pub async fn request(
        &self,
        target: std::net::SocketAddr,
        req: Request<TargetBody>,
    ) -> Result<(Response<Incoming>, Lease), PoolError> {
        match self {
            TargetClient::Http1(pool) => pool.request(target, req).await,
            TargetClient::Http2 { pool, .. } => pool.request(target, req).await,
        }
    }
}

/// Where connections to a target group's targets are made from: the namespace of the
/// group's VPC, or the host's for VPCs made only of host cgroups.
pub fn connector_for(config: &Config, group: &TargetGroup) -> Arc<dyn Connector> {
    let vpc = config.vpc(group.vpc);
    match vpc.attachments.iter().find_map(|a| match a {
        Attachment::Netns(ns) => Some(ns.clone()),
        Attachment::Cgroup(_) => None,
    }) {
        Some(ns) => Arc::new(NetnsConnector::new(ns)),
        None => Arc::new(HostConnector),
    }
}

/// The client of a target group: HTTP/1.1 or HTTP/2 as the group's protocol version
/// says (prior knowledge over TCP, ALPN offering only that protocol over TLS),
/// connecting through `connector`, over TLS when the group's protocol is HTTPS.
pub fn client_for(
    group: &TargetGroup,
    connector: Arc<dyn Connector>,
) -> Result<TargetClient, rustls::Error> {
    let h2 = matches!(
        group.protocol_version,
        Some(ProtocolVersion::Http2 | ProtocolVersion::Grpc)
    );
    let tls = match group.protocol {
        TargetGroupProtocol::Https => Some(TlsConnector::from(target_client_config(if h2 {
            ALPN_H2
        } else {
            ALPN_HTTP11
        })?)),
        TargetGroupProtocol::Http | TargetGroupProtocol::Tcp => None,
    };
    let scheme = if tls.is_some() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let connector = NamespaceConnector::new(connector, tls);
    Ok(if h2 {
        TargetClient::Http2 {
            pool: Http2Pool::new(connector),
            scheme,
        }
    } else {
        TargetClient::Http1(Http1Pool::new(connector))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HostConnector;

    #[test]
    fn http1_targets_get_origin_form_and_http2_targets_the_callers_authority() {
        let connector = || NamespaceConnector::new(Arc::new(HostConnector), None);
        let http1 = TargetClient::Http1(Http1Pool::new(connector()));
        let http2 = |scheme| TargetClient::Http2 {
            pool: Http2Pool::new(connector()),
            scheme,
        };
        let target = Authority::from_static("10.0.0.1:8080");
        let path = || PathAndQuery::from_static("/orders?id=7");
        let host = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, http::HeaderValue::from_static(value));
            headers
        };
        let mut headers = host("orders.shop.internal");
        assert_eq!(
            http1.uri(&target, &mut headers, path()).unwrap(),
            "/orders?id=7"
        );
        assert!(headers.contains_key(header::HOST), "HTTP/1.1 keeps Host");
        for (scheme, mut headers, expected) in [
            (
                Scheme::HTTP,
                host("orders.shop.internal"),
                "http://orders.shop.internal/orders?id=7",
            ),
            (
                Scheme::HTTPS,
                host("orders.example.com:8443"),
                "https://orders.example.com:8443/orders?id=7",
            ),
            // No Host (HTTP/1.0), or one that is no authority: the target's address.
            (
                Scheme::HTTP,
                HeaderMap::new(),
                "http://10.0.0.1:8080/orders?id=7",
            ),
            (
                Scheme::HTTP,
                host("a b"),
                "http://10.0.0.1:8080/orders?id=7",
            ),
        ] {
            let uri = http2(scheme).uri(&target, &mut headers, path()).unwrap();
            assert_eq!(uri, expected);
            assert!(!headers.contains_key(header::HOST), "{expected}: said once");
        }
    }
}
