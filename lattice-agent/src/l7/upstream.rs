//! Forwarding to targets: pooled HTTP clients whose connections are made inside the
//! target VPC's namespace (or the host's, for VPCs of host cgroups), over TLS for
//! target groups of protocol HTTPS.
//!
//! HTTP/1.1 target groups go through lattice's own pool ([`super::pool`]), which knows
//! the target of each request; HTTP/2 and gRPC groups through hyper-util's client, which
//! multiplexes requests over one connection per target.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{
    uri::{self, Authority, PathAndQuery, Scheme},
    Request, Response, Uri,
};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{
        connect::{Connected, Connection},
        Client,
    },
    rt::{TokioExecutor, TokioIo},
};
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::{
    pool::{Http1Pool, Lease, PoolError, IDLE_TIMEOUT},
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
    #[error("{uri} names no target address")]
    BadTarget { uri: String },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("TLS handshake with target {target}: {source}")]
    Tls {
        target: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Connects hyper's client from the right namespace, over TLS when `tls` is set.
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

impl Connection for TargetStream {
    fn connected(&self) -> Connected {
        match self {
            TargetStream::Plain(_) => Connected::new(),
            TargetStream::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(ALPN_H2) => {
                Connected::new().negotiated_h2()
            }
            TargetStream::Tls(_) => Connected::new(),
        }
    }
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

impl tower_service::Service<Uri> for NamespaceConnector {
    type Response = TokioIo<TargetStream>;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let addr: std::net::SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| UpstreamError::BadTarget {
                    uri: uri.to_string(),
                })?;
            Ok(TokioIo::new(connector.open(addr).await?))
        })
    }
}

/// The client of one target group.
#[derive(Debug)]
pub enum TargetClient {
    /// HTTP/1.1 targets: a connection per request in flight, kept between requests.
    Http1(Http1Pool),
    /// HTTP/2 and gRPC targets: requests multiplexed on a connection per target.
    Http2(Box<Client<NamespaceConnector, TargetBody>>),
}

/// Why a request could not be exchanged with a target.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Http1(#[from] PoolError),
    #[error(transparent)]
    Http2(#[from] hyper_util::client::legacy::Error),
}

impl TargetClient {
    /// The request target this client sends for `path` at `authority` (the picked
    /// target): origin-form over HTTP/1.1 (`/path?query`, the Host header names the
    /// service), absolute over HTTP/2, where it gives `:scheme` and `:authority`.
    pub fn uri(
        &self,
        authority: &Authority,
        path: PathAndQuery,
    ) -> Result<Uri, uri::InvalidUriParts> {
        let mut parts = uri::Parts::default();
        if let TargetClient::Http2(_) = self {
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(authority.clone());
        }
        parts.path_and_query = Some(path);
        Uri::from_parts(parts)
    }

    /// Sends `req` (its URI made by [`TargetClient::uri`]) to `target`. An HTTP/1.1
    /// connection comes with a lease that the response's body must carry to its end.
    pub async fn request(
        &self,
        target: std::net::SocketAddr,
        req: Request<TargetBody>,
    ) -> Result<(Response<Incoming>, Option<Lease>), ForwardError> {
        match self {
            TargetClient::Http1(pool) => {
                let (response, lease) = pool.request(target, req).await?;
                Ok((response, Some(lease)))
            }
            TargetClient::Http2(client) => Ok((client.request(req).await?, None)),
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
    let connector = NamespaceConnector::new(connector, tls);
    if !h2 {
        return Ok(TargetClient::Http1(Http1Pool::new(connector)));
    }
    let mut builder = Client::builder(TokioExecutor::new());
    // Idle HTTP/2 connections close when idle HTTP/1.1 ones do.
    builder.pool_idle_timeout(IDLE_TIMEOUT).http2_only(true);
    Ok(TargetClient::Http2(Box::new(builder.build(connector))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HostConnector;

    #[test]
    fn http1_targets_get_origin_form_and_http2_targets_absolute_uris() {
        let connector = || NamespaceConnector::new(Arc::new(HostConnector), None);
        let http1 = TargetClient::Http1(Http1Pool::new(connector()));
        let mut builder = Client::builder(TokioExecutor::new());
        builder.http2_only(true);
        let http2 = TargetClient::Http2(Box::new(builder.build(connector())));
        let authority = || Authority::from_static("10.0.0.1:8080");
        let path = || PathAndQuery::from_static("/orders?id=7");
        assert_eq!(http1.uri(&authority(), path()).unwrap(), "/orders?id=7");
        assert_eq!(
            http2.uri(&authority(), path()).unwrap(),
            "http://10.0.0.1:8080/orders?id=7"
        );
    }
}
