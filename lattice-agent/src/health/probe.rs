//! One health check of one target: a TCP connect, or an HTTP/1.1 or HTTP/2 `GET`
//! (over TLS for the HTTPS protocol) whose status must match the group's matcher, all
//! within the check's timeout.

use std::fmt;
use std::future::Future;
use std::net::{SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::connect::{ConnectError, Connector};
use super::http1::{self, Http1Error};
use super::plan::{ActiveCheck, Probe};
use super::state::{ProbeOutcome, ReasonCode};
use crate::l7::tls::{target_client_config, ALPN_H2, ALPN_HTTP11};

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no response within {timeout:?}")]
    Timeout { timeout: Duration },
    #[error(transparent)]
    Http(#[from] Http1Error),
    #[error("status {status} does not match the health check's matcher")]
    Status { status: u16 },
    #[error("HTTP/2: {0}")]
    Http2(#[source] hyper::Error),
    #[error("TLS handshake: {0}")]
    Tls(#[source] std::io::Error),
}

impl ProbeError {
    /// The reason code an UNHEALTHY target reports after this failure.
    pub fn reason(&self) -> ReasonCode {
        match self {
            Self::Connect(ConnectError::Timeout { .. }) | Self::Timeout { .. } => {
                ReasonCode::Timeout
            }
            Self::Connect(ConnectError::Connect { .. }) => ReasonCode::FailedHealthChecks,
            // The check itself could not be made: no socket in the vpc's namespace.
            Self::Connect(_) => ReasonCode::InternalError,
            // Reset, closed early, not HTTP/1 (HTTP/2), or no TLS.
            Self::Http(_) | Self::Http2(_) | Self::Tls(_) => ReasonCode::FailedHealthChecks,
            Self::Status { .. } => ReasonCode::ResponseCodeMismatch,
        }
    }

    /// The outcome the state machine applies.
    pub fn outcome(result: &Result<(), ProbeError>) -> ProbeOutcome {
        match result {
            Ok(()) => ProbeOutcome::Pass,
            Err(error) => ProbeOutcome::Fail(error.reason()),
        }
    }
}

/// The future of [`Prober::probe`].
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProbeError>> + Send + 'a>>;

/// Runs checks. Behind a trait so the scheduler can be tested with scripted results.
pub trait Prober: Send + Sync + fmt::Debug {
    /// Checks the target at `addr` (the health check port already applied) once.
    fn probe<'a>(&'a self, addr: SocketAddrV4, check: &'a ActiveCheck) -> ProbeFuture<'a>;
}

/// Checks over real sockets made by a [`Connector`] (the vpc's namespace).
#[derive(Debug, Clone)]
pub struct SocketProber {
    connector: Arc<dyn Connector>,
}

impl SocketProber {
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Self { connector }
    }
}

impl Prober for SocketProber {
    fn probe<'a>(&'a self, addr: SocketAddrV4, check: &'a ActiveCheck) -> ProbeFuture<'a> {
        Box::pin(async move {
            let timeout = check.timeout;
            let deadline = Instant::now() + timeout;
            let stream = self
                .connector
                .connect(SocketAddr::V4(addr), timeout)
                .await?;
            let (matcher, status) = match &check.probe {
                Probe::TcpConnect => return Ok(()),
                Probe::Http1 { path, matcher, tls } => {
                    let host = addr.to_string();
                    let exchange = async {
                        if *tls {
                            let stream = tls_connect(stream, addr, ALPN_HTTP11).await?;
                            Ok(http1::status(stream, &host, path).await?)
                        } else {
                            Ok(http1::status(stream, &host, path).await?)
                        }
                    };
                    (matcher, tokio::time::timeout_at(deadline, exchange).await)
                }
                Probe::Http2 { path, matcher, tls } => {
                    let exchange = async {
                        if *tls {
                            let stream = tls_connect(stream, addr, ALPN_H2).await?;
                            http2_status(stream, addr, "https", path).await
                        } else {
                            http2_status(stream, addr, "http", path).await
                        }
                    };
                    (matcher, tokio::time::timeout_at(deadline, exchange).await)
                }
            };
            let status = status.map_err(|_| ProbeError::Timeout { timeout })??;
            matched(matcher, status)
        })
    }
}

fn matched(matcher: &crate::config::StatusMatcher, status: u16) -> Result<(), ProbeError> {
    if matcher.matches(status) {
        Ok(())
    } else {
        Err(ProbeError::Status { status })
    }
}

/// A TLS session to a target, offering `alpn`, without verifying its certificate (as
/// traffic to HTTPS targets; see [`crate::l7::tls::target_client_config`]).
async fn tls_connect(
    stream: tokio::net::TcpStream,
    addr: SocketAddrV4,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ProbeError> {
    let config =
        target_client_config(alpn).map_err(|e| ProbeError::Tls(std::io::Error::other(e)))?;
    let name = rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V4(*addr.ip()).into());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(ProbeError::Tls)
}

/// `GET path` over HTTP/2 on `stream` (prior knowledge, or h2 agreed by ALPN); the
/// response's status.
async fn http2_status<S>(
    stream: S,
    addr: SocketAddrV4,
    scheme: &str,
    path: &str,
) -> Result<u16, ProbeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .map_err(ProbeError::Http2)?;
    let driver = tokio::spawn(connection);
    let request = http::Request::get(format!("{scheme}://{addr}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|_| ProbeError::Status { status: 0 })?;
    let result = sender
        .send_request(request)
        .await
        .map_err(ProbeError::Http2);
    driver.abort();
    Ok(result?.status().as_u16())
}
