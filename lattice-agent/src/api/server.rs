//! Serving the API: who may call, and handing each call to the agent.
//!
//! - The Unix socket (`--api-socket`) is made mode 0600 in a root-owned folder, and
//!   each connection's peer credentials are checked as well: a caller whose uid is
//!   not 0 gets 403 AccessDeniedException for every request.
//! - TCP (`--api-addr`, off by default) needs `--api-token-file`: every request must
//!   carry `Authorization: Bearer <token>`, compared in constant time; otherwise 401.
//!
//! Calls are executed one at a time by the agent's sync thread, which owns the running
//! config ([`crate::live::Running::call`]); a request waits for its answer.

use std::{
    convert::Infallible,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{error::ApiError, route::route, Call};

/// The largest request body (a whole document for `lattice apply`).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A call waiting for the agent, with where its answer goes.
pub struct Pending {
    pub call: Call,
    pub reply: oneshot::Sender<Result<Value, ApiError>>,
}

/// Hands a call to whoever executes calls (the agent's sync thread).
pub type Dispatch = Arc<dyn Fn(Pending) + Send + Sync>;

/// Who is calling, as far as the listener can tell.
#[derive(Clone)]
enum Caller {
    /// A socket peer with this uid.
    Local { uid: u32 },
    /// A TCP client; the token (its SHA-256) every request must carry.
    Remote { token: Arc<[u8; 32]> },
}

/// Binds the Unix socket: a fresh socket file, mode 0600, in a folder made 0755 if it
/// is missing. A stale socket of an earlier agent is replaced.
pub fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing the stale {}", path.display())),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("--api-socket {}: cannot listen", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(listener)?)
}

/// Reads the bearer token of the TCP listener (surrounding whitespace ignored).
pub fn read_token(path: &Path) -> anyhow::Result<[u8; 32]> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--api-token-file {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        token.len() >= 16,
        "--api-token-file {}: the token must be at least 16 characters",
        path.display()
    );
    Ok(Sha256::digest(token.as_bytes()).into())
}

/// Serves the socket until the runtime stops.
pub async fn serve_socket(listener: tokio::net::UnixListener, path: PathBuf, dispatch: Dispatch) {
    info!(socket = %path.display(), "control API on the Unix socket (root only)");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        // No credentials: treated as a caller that is not root.
        let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
        tokio::spawn(serve_connection(
            stream,
            Caller::Local { uid },
            Arc::clone(&dispatch),
        ));
    }
}

/// Serves TCP (with the token) until the runtime stops.
pub async fn serve_tcp(listener: tokio::net::TcpListener, token: [u8; 32], dispatch: Dispatch) {
    let token: Arc<[u8; 32]> = Arc::new(token);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let caller = Caller::Remote {
            token: Arc::clone(&token),
        };
        tokio::spawn(serve_connection(stream, caller, Arc::clone(&dispatch)));
    }
}

/// Logs a failed accept and pauses, so that a lasting error (out of file
/// descriptors) does not spin.
async fn accept_failed(error: std::io::Error) {
    warn!(%error, "control API: accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

async fn serve_connection<IO>(io: IO, caller: Caller, dispatch: Dispatch)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let caller = caller.clone();
        let dispatch = Arc::clone(&dispatch);
        async move { Ok::<_, Infallible>(answer(req, &caller, &dispatch).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        debug!(error = %e, "control API connection ended with an error");
    }
}

/// Whether the caller may use the API at all.
fn admit(req: &Request<Incoming>, caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Local { uid: 0 } => Ok(()),
        Caller::Local { uid } => Err(ApiError::AccessDenied {
            status: 403,
            message: format!("uid {uid} may not use the control API: it is root's"),
        }),
        Caller::Remote { token } => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| Sha256::digest(t.trim().as_bytes()));
            // Digests of equal length compared without an early exit.
            let matches = given.is_some_and(|g| {
                g.iter()
                    .zip(token.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            });
            if matches {
                Ok(())
            } else {
                Err(ApiError::AccessDenied {
                    status: 401,
                    message: "missing or wrong bearer token".into(),
                })
            }
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    caller: &Caller,
    dispatch: &Dispatch,
) -> Response<Full<Bytes>> {
    let result = async {
        admit(&req, caller)?;
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| ApiError::validation(format!("reading the request body: {e}")))?
            .to_bytes();
        let if_match = parts
            .headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok());
        let call = route(
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            if_match,
            &body,
        )?;
        let (reply, answer) = oneshot::channel();
        dispatch(Pending { call, reply });
        answer
            .await
            .map_err(|_| ApiError::Internal("the agent is stopping".into()))?
    }
    .await;
    match result {
        Ok(value) => json_response(StatusCode::OK, &value, None),
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            json_response(status, &e.body(), Some(e.error_type()))
        }
    }
}

fn json_response(
    status: StatusCode,
    value: &Value,
    error_type: Option<&'static str>,
) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(t) = error_type {
        headers.insert("x-amzn-errortype", http::HeaderValue::from_static(t));
    }
    response
}
