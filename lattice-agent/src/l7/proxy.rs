//! The HTTP proxy: serves every site's connections (HTTP/1.1, and HTTP/2 with prior
//! knowledge) and takes each request through the phases of the pipeline:
//! listener (the site) -> rule ([`route`]) -> target pick (weights, then health and
//! round robin) -> forward (pooled, in the target's namespace, with Lattice's headers).
//! Failures answer as Lattice does: 503 when no target can take the request, 502 when
//! the target refuses or breaks the exchange, 504 when it does not answer in time.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{
    header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
};
use http_body_util::{combinators::BoxBody, BodyExt as _, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::{
    route::{pick_target_group, route, RequestHead},
    sites::Site,
    upstream::{client_for, UpstreamClient},
};
use crate::{
    config::{Action, Config, ProtocolVersion, TargetId},
    health::{GroupKey, HealthSnapshot},
    resolve::Resolved,
};

/// How long a target may take to answer a request (Lattice's request timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The body of every response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Headers a caller may not set: Lattice removes them from incoming requests so they
/// cannot be spoofed, and sets its own.
const CALLER_HEADERS: [&str; 3] = [
    "x-amzn-lattice-identity",
    "x-amzn-lattice-network",
    "x-amzn-lattice-target",
];

/// Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, not the request.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// What every connection of the proxy shares: the config it serves, target health,
/// and one pooled client per target group.
pub struct Proxy {
    config: Config,
    resolved: Resolved,
    health: watch::Receiver<HealthSnapshot>,
    upstreams: Vec<Upstream>,
}

struct Upstream {
    client: UpstreamClient,
    /// Round robin among the group's usable targets.
    next: AtomicUsize,
}

impl Proxy {
    pub fn new(
        config: Config,
        resolved: Resolved,
        health: watch::Receiver<HealthSnapshot>,
    ) -> Self {
        let upstreams = config
            .target_groups()
            .iter()
            .map(|g| Upstream {
                client: client_for(&config, g),
                next: AtomicUsize::new(0),
            })
            .collect();
        Proxy {
            config,
            resolved,
            health,
            upstreams,
        }
    }

    /// Accepts the site's connections until the listener fails; each connection is
    /// served on its own task.
    pub async fn serve(self: Arc<Self>, listener: std::net::TcpListener, site: Site) {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(netns = %site.netns, error = %e, "cannot serve site");
                return;
            }
        };
        let site = Arc::new(site);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(netns = %site.netns, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let proxy = Arc::clone(&self);
            let site = Arc::clone(&site);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    let site = Arc::clone(&site);
                    async move { Ok::<_, Infallible>(proxy.handle(&site, peer, req).await) }
                });
                if let Err(e) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }

    /// One request through the pipeline.
    async fn handle(
        &self,
        site: &Site,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let listener = &self.config.services()[site.service].listeners[site.listener];
        let decision = route(listener, &RequestHead::from(&req));
        let groups = match decision.action {
            Action::FixedResponse(status) => return plain(status.code(), ""),
            Action::Forward(groups) => groups,
        };
        let Some(group_ref) = pick_target_group(groups, rand::random()) else {
            return plain(503, "no target group can take the request\n");
        };
        let group = self.config.target_group(group_ref);
        let targets: Vec<SocketAddr> = {
            let health = self.health.borrow();
            health
                .select(&GroupKey::of(group), &group.targets)
                .targets
                .into_iter()
                .filter_map(|t| match t.id {
                    TargetId::Ip(ip) => Some(SocketAddr::from((ip, t.port.get()))),
                    TargetId::Instance(_) => None,
                })
                .collect()
        };
        if targets.is_empty() {
            return plain(503, "no healthy target\n");
        }
        let upstream = &self.upstreams[group_ref.index()];
        let target = targets[upstream.next.fetch_add(1, Ordering::Relaxed) % targets.len()];

        let (mut parts, body) = req.into_parts();
        // HTTP/2 callers name the authority in the URI, not in Host: the target still
        // gets the name the caller asked for.
        if !parts.headers.contains_key(header::HOST) {
            if let Some(authority) = parts.uri.authority() {
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    parts.headers.insert(header::HOST, host);
                }
            }
        }
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        parts.uri = match format!("http://{target}{path}").parse::<Uri>() {
            Ok(uri) => uri,
            Err(_) => return plain(400, "malformed request target\n"),
        };
        // The target speaks its group's protocol version, whatever the client spoke.
        parts.version = match group.protocol_version {
            Some(ProtocolVersion::Http2 | ProtocolVersion::Grpc) => Version::HTTP_2,
            _ => Version::HTTP_11,
        };
        self.lattice_headers(&mut parts.headers, site, peer, group_ref.index());
        let forwarded = Request::from_parts(parts, body);
        match tokio::time::timeout(REQUEST_TIMEOUT, upstream.client.request(forwarded)).await {
            Ok(Ok(response)) => response.map(|b| b.boxed()),
            Ok(Err(e)) => {
                debug!(%target, error = %e, "forwarding failed");
                plain(502, "the target refused or broke the exchange\n")
            }
            Err(_) => plain(504, "the target did not answer in time\n"),
        }
    }

    /// Removes what a caller may not set or what describes only its connection, and adds
    /// the headers Lattice adds, so a target written for Lattice runs unchanged.
    fn lattice_headers(
        &self,
        headers: &mut HeaderMap,
        site: &Site,
        peer: SocketAddr,
        group: usize,
    ) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
        for name in HOP_BY_HOP.iter().chain(&CALLER_HEADERS) {
            headers.remove(*name);
        }
        let client_ip = match peer.ip() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => v6.to_string(),
        };
        let service = &self.resolved.services[site.service];
        let network = &self.resolved.service_networks[site.network];
        let target_group = &self.resolved.target_groups[group];
        let values = [
            ("x-forwarded-for", client_ip),
            ("x-forwarded-for-port", site.port.to_string()),
            ("x-forwarded-for-proto", "http".to_owned()),
            (
                "x-amzn-lattice-network",
                format!("SourceVpcArn={}", self.resolved.vpcs[site.vpc].arn),
            ),
            (
                "x-amzn-lattice-target",
                format!(
                    "ServiceArn={};ServiceNetworkArn={};TargetGroupArn={}",
                    service.arn, network.arn, target_group.arn
                ),
            ),
        ];
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
}

/// A short plain-text response of the proxy's own.
fn plain(status: u16, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
