//! The metrics endpoint: `GET /metrics` answers the page rendered at that moment (the
//! kernel's pinned counters are read per scrape); anything else is 404.

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, sync::Arc};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::render::render;
use crate::{dataplane, health::HealthSnapshot, l7::switch::ProxySwitch};

/// What a scrape reads: the current proxy generation (its config, resolved model and
/// counters), target health, the kernel's counters.
pub struct MetricsSource {
    pub proxy: Arc<ProxySwitch>,
    pub health: watch::Receiver<HealthSnapshot>,
    /// Where the kernel's maps are pinned.
    pub bpffs_root: PathBuf,
    /// What the conntrack sweeps counted.
    pub sweeps: Arc<dataplane::conntrack::SweepStats>,
}

impl MetricsSource {
    /// The page as of now.
    pub fn page(&self) -> String {
        let kernel = match dataplane::inspect(&self.bpffs_root) {
            Ok(k) => Some(k),
            Err(e) => {
                debug!(error = %e, "metrics: kernel counters unavailable");
                None
            }
        };
        let health = self.health.borrow().clone();
        let proxy = self.proxy.current();
        render(
            proxy.config(),
            proxy.resolved(),
            proxy.metrics(),
            &health,
            kernel.as_ref(),
            &self.sweeps,
            proxy.logs().dropped(),
        )
    }
}

/// Binds `addr` (the caller reports a failure to bind before the agent is ready) and
/// serves scrapes until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, source: Arc<MetricsSource>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = Arc::clone(&source);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let source = Arc::clone(&source);
                async move { Ok::<_, Infallible>(answer(&source, &req)) }
            });
            let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

fn answer(source: &MetricsSource, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            source.page(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the metrics are at GET /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// A listener on `addr`, made before the agent says it is ready.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
