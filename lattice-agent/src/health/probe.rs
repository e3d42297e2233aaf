//! One health check of one target: a TCP connect, or an HTTP/1.1 `GET` whose status
//! must match the group's matcher, all within the check's timeout.

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
            // Reset, closed early, or not HTTP/1 (HTTP/2).
            Self::Http(_) | Self::Http2(_) => ReasonCode::FailedHealthChecks,
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
            match &check.probe {
                Probe::TcpConnect => Ok(()),
                Probe::Http1 { path, matcher } => {
                    let host = addr.to_string();
                    let status =
                        tokio::time::timeout_at(deadline, http1::status(stream, &host, path))
                            .await
                            .map_err(|_| ProbeError::Timeout { timeout })??;
                    matched(matcher, status)
                }
                Probe::Http2 { path, matcher } => {
                    let status =
                        tokio::time::timeout_at(deadline, http2_status(stream, addr, path))
                            .await
                            .map_err(|_| ProbeError::Timeout { timeout })??;
                    matched(matcher, status)
                }
            }
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

/// `GET path` over HTTP/2 with prior knowledge on `stream`; the response's status.
async fn http2_status(
    stream: tokio::net::TcpStream,
    addr: SocketAddrV4,
    path: &str,
) -> Result<u16, ProbeError> {
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .map_err(ProbeError::Http2)?;
    let driver = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|_| ProbeError::Status { status: 0 })?;
    let result = sender
        .send_request(request)
        .await
        .map_err(ProbeError::Http2);
    driver.abort();
    Ok(result?.status().as_u16())
}
