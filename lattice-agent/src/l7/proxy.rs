//! The proxy: serves every site's connections and takes each request through the
//! phases of the pipeline. HTTP listeners speak HTTP/1.1 and HTTP/2 with prior
//! knowledge; HTTPS listeners terminate TLS first ([`tls`]: the service's certificate by
//! SNI) and speak what ALPN agreed; TLS_PASSTHROUGH listeners route by SNI and splice
//! ([`passthrough`]). An HTTP request goes through:
//! listener (the site) -> rule ([`route`]) -> target pick (weights, then health and
//! round robin) -> forward (pooled, in the target's namespace, with Lattice's headers).
//! Failures answer as Lattice does: 503 when no target can take the request, 502 when
//! the target refuses or breaks the exchange, 504 when it does not answer in time.

use std::{
    borrow::Cow,
    collections::HashMap,
    convert::Infallible,
    future::Future as _,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError, Weak,
    },
    task::Poll,
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{
    header,
    uri::{Authority, PathAndQuery},
    HeaderMap, HeaderName, HeaderValue, Request, Response, Version,
};
use http_body_util::combinators::BoxBody;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpStream, sync::watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::{
    answer::{plain, Answer},
    authz::{self, Connection, ConnectionHeaders, Refusal},
    balance::{pick, BytesOut, Outstanding, Tracked},
    log::{AuthOutcome, Facts, RequestLog},
    passthrough::{self, PassthroughError},
    path,
    pool::Leased,
    received,
    route::{pick_target_group, route, RequestHead},
    sites::{Site, SiteKey},
    switch::ProxySwitch,
    tls,
    upstream::{client_for, connector_for, TargetClient},
};
use crate::{
    accesslog::AccessLogs,
    auth::{
        identity::{Caller, Proof},
        sigv4::SignedTarget,
        Authenticator,
    },
    config::{
        Action, Config, ListenerProtocol, LoadBalancing, ProtocolVersion, TargetGroup,
        TargetGroupRef, TargetId, WeightedTargetGroup,
    },
    health::{Connector, GroupKey, HealthSnapshot},
    metrics::ProxyMetrics,
    resolve::Resolved,
};

/// How long a client may take to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TCP target may take to accept a passthrough connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head (request line and headers) the proxy accepts; larger ones
/// get 431 (HTTP/1.1) or a stream reset (HTTP/2).
const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings that find dead connections.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// How long a target may take to answer a request once it has been sent whole
/// (Lattice's request timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The body of every response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

// Lattice's header names, made once: a name given as text is parsed and checked each
// time a header map is asked for it.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_FOR_PORT: HeaderName = HeaderName::from_static("x-forwarded-for-port");
const X_FORWARDED_FOR_PROTO: HeaderName = HeaderName::from_static("x-forwarded-for-proto");
const X_AMZN_LATTICE_IDENTITY: HeaderName = HeaderName::from_static("x-amzn-lattice-identity");
const X_AMZN_LATTICE_IDENTITY_TAGS: HeaderName =
    HeaderName::from_static("x-amzn-lattice-identity-tags");
const X_AMZN_LATTICE_NETWORK: HeaderName = HeaderName::from_static("x-amzn-lattice-network");
const X_AMZN_LATTICE_TARGET: HeaderName = HeaderName::from_static("x-amzn-lattice-target");

/// Headers a caller may not set: Lattice removes them from incoming requests so they
/// cannot be spoofed, and sets its own.
const CALLER_HEADERS: [HeaderName; 4] = [
    X_AMZN_LATTICE_IDENTITY,
    X_AMZN_LATTICE_IDENTITY_TAGS,
    X_AMZN_LATTICE_NETWORK,
    X_AMZN_LATTICE_TARGET,
];

/// Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, not the request.
/// `Trailer` is not one: it announces the trailer fields that follow the body (and
/// hyper's HTTP/1.1 client sends only the trailers it announces).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
];

/// The same in a target's response; `Transfer-Encoding` is the HTTP/1.1 codec's.
const RESPONSE_HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::UPGRADE,
];

/// The proxy could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("target group {group:?}: the TLS client configuration for its targets: {source}")]
    TargetTls {
        group: String,
        #[source]
        source: rustls::Error,
    },
}

/// One generation of the proxy: what every connection accepted on it shares (the
/// config it serves, target health, one pooled client per target group). A new config
/// makes a new generation; [`ProxySwitch`] hands new connections and requests to the
/// newest one.
pub struct Proxy {
    config: Config,
    resolved: Resolved,
    health: watch::Receiver<HealthSnapshot>,
    /// The sites of this config, by (namespace, VIP, port).
    sites: HashMap<SiteKey, Arc<Site>>,
    /// Per target group (config order); shared with the generation before when the group
    /// connects the same way, so pools and outstanding counts carry over.
    upstreams: Vec<Arc<Upstream>>,
    /// Per service (config order): the TLS acceptor of its HTTPS listeners.
    tls: Vec<Option<TlsAcceptor>>,
    /// The access keys and account CAs that prove callers.
    auth: Arc<Authenticator>,
    /// Where requests are logged.
    logs: Arc<AccessLogs>,
    /// Request, response and connection counters.
    metrics: Arc<ProxyMetrics>,
    /// `x-amzn-lattice-target` per (service network, target group): a target group
    /// serves one service, so the pair names the whole value.
    target_headers: HashMap<(usize, usize), HeaderValue>,
    /// Per target group (config order): its key in health snapshots, and its usable
    /// targets as of the last snapshot a request saw. Choosing them takes a pass over
    /// the group's health; a snapshot changes only when some target's state does.
    group_keys: Vec<GroupKey>,
    usable: Vec<ArcSwapOption<UsableTargets>>,
    /// Per target group: its access log fields, escaped once.
    group_log_fields: Vec<String>,
}

/// A target group's targets that take new requests, as of one health snapshot.
struct UsableTargets {
    version: u64,
    addrs: Vec<SocketAddr>,
    /// `addrs[i]` as a URI authority, made once: a forwarded request's URI is put
    /// together from it and the caller's path without formatting or parsing.
    authorities: Vec<Authority>,
}

/// The target a request goes to: an index into the usable targets it was picked from
/// (whose `Arc` the pick loaded anyway), so its authority is cloned only by a client
/// that sends it (HTTP/2), not per HTTP/1.1 request.
struct Picked {
    targets: Arc<UsableTargets>,
    index: usize,
}

impl Picked {
    fn addr(&self) -> SocketAddr {
        self.targets.addrs[self.index]
    }

    fn authority(&self) -> &Authority {
        &self.targets.authorities[self.index]
    }
}

struct Upstream {
    client: TargetClient,
    /// For TCP target groups (TLS passthrough), connections without HTTP.
    connector: Arc<dyn Connector>,
    /// Turns among the group's usable targets.
    next: AtomicUsize,
    /// Requests in flight per target (least outstanding requests).
    outstanding: Arc<Outstanding>,
}

/// What a target group's pooled client depends on: the same shape connects the same
/// way, so the client (and its pool) can carry over to the next generation.
fn upstream_shape(config: &Config, group: &TargetGroup) -> impl PartialEq {
    (
        group.protocol,
        group.protocol_version,
        config.vpc(group.vpc).attachments.clone(),
    )
}

impl Proxy {
    /// A generation for `config`; `previous` (the running one) lends it the upstreams
    /// of target groups that still connect the same way.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        resolved: Resolved,
        health: watch::Receiver<HealthSnapshot>,
        tls: Vec<Option<TlsAcceptor>>,
        auth: Arc<Authenticator>,
        logs: Arc<AccessLogs>,
        metrics: Arc<ProxyMetrics>,
        previous: Option<&Proxy>,
    ) -> Result<Self, ProxyError> {
        let upstreams = config
            .target_groups()
            .iter()
            .map(|g| {
                let carried = previous.and_then(|p| {
                    let old = p.config.target_group_by_name(g.name.as_str())?;
                    let same = upstream_shape(&p.config, p.config.target_group(old))
                        == upstream_shape(&config, g);
                    same.then(|| Arc::clone(&p.upstreams[old.index()]))
                });
                if let Some(upstream) = carried {
                    return Ok(upstream);
                }
                let connector = connector_for(&config, g);
                let client = client_for(g, Arc::clone(&connector)).map_err(|source| {
                    ProxyError::TargetTls {
                        group: g.name.to_string(),
                        source,
                    }
                })?;
                Ok(Arc::new(Upstream {
                    client,
                    connector,
                    next: AtomicUsize::new(0),
                    outstanding: Arc::default(),
                }))
            })
            .collect::<Result<_, ProxyError>>()?;
        let target_headers = target_headers(&config, &resolved);
        let sites = super::sites::sites(&config, &resolved)
            .into_iter()
            .map(|site| (site.key(), Arc::new(site)))
            .collect();
        let group_keys = config.target_groups().iter().map(GroupKey::of).collect();
        let group_log_fields = (0..config.target_groups().len())
            .map(|g| super::log::group_fields(&config, &resolved, g))
            .collect();
        let usable = config
            .target_groups()
            .iter()
            .map(|_| ArcSwapOption::empty())
            .collect();
        Ok(Proxy {
            config,
            resolved,
            health,
            sites,
            upstreams,
            tls,
            auth,
            logs,
            metrics,
            target_headers,
            group_keys,
            usable,
            group_log_fields,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    pub fn metrics(&self) -> &Arc<ProxyMetrics> {
        &self.metrics
    }

    pub fn logs(&self) -> &Arc<AccessLogs> {
        &self.logs
    }

    /// The sites this generation serves.
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.sites.values().map(|s| s.as_ref())
    }

    /// The site at `key` in this generation, if the config still has it.
    pub fn site(&self, key: &SiteKey) -> Option<&Arc<Site>> {
        self.sites.get(key)
    }

    /// Serves one accepted connection of `site` on this generation: the whole
    /// connection for TLS and passthrough listeners (its handshake chose the
    /// certificate), each request on the newest generation for HTTP (see
    /// [`Proxy::serve_http`]).
    pub async fn serve_connection(
        self: Arc<Self>,
        switch: Arc<ProxySwitch>,
        stream: TcpStream,
        peer: SocketAddr,
        site: Arc<Site>,
    ) {
        let _counted = self.metrics.connection(site.service);
        let protocol = self.config.services()[site.service].listeners[site.listener].protocol;
        match protocol {
            ListenerProtocol::Http => {
                let conn = Connection::plain(peer, &site, &self.resolved);
                self.serve_http(switch, stream, Arc::new(conn), site, None)
                    .await
            }
            ListenerProtocol::Https => self.serve_https(switch, stream, peer, site).await,
            ListenerProtocol::TlsPassthrough => self.serve_passthrough(stream, peer, site).await,
            // The kernel serves TCP listeners; no site is made for them.
            ListenerProtocol::Tcp => {}
        }
    }

    /// The site and connection facts of a request that arrived on a connection of an
    /// earlier generation: the same site in this one (its indexes and headers may have
    /// changed), or `None` when this config no longer has it.
    fn rebind(&self, site: &Site, conn: &Connection) -> Option<(Arc<Site>, Arc<Connection>)> {
        let site = Arc::clone(self.sites.get(&site.key())?);
        let conn = Connection {
            headers: ConnectionHeaders::new(conn.peer, &site, &self.resolved),
            // Under this generation's CAs and principals: one removed since the
            // handshake proves nothing now, and tags are this generation's.
            certified: self.identify_client(conn.peer, conn.client_chain.as_deref()),
            ..conn.clone()
        };
        Some((site, Arc::new(conn)))
    }

    /// The principal a client certificate chain proves under this generation.
    fn identify_client(
        &self,
        peer: SocketAddr,
        chain: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    ) -> Caller {
        let (Some(mtls), Some(chain)) = (self.auth.mtls(), chain) else {
            return Caller::Anonymous;
        };
        match mtls.identify(chain) {
            Some((principal, fields)) => Caller::Authenticated {
                principal,
                proof: Proof::Certificate(Arc::new(fields)),
            },
            None => {
                debug!(%peer, "the client certificate names no principal of its CA's account; anonymous");
                Caller::Anonymous
            }
        }
    }

    /// Serves HTTP on one connection (plain, or already decrypted when `tls`): HTTP/1.1
    /// or HTTP/2 by what the client sends, unless ALPN already decided (`alpn_h2`).
    ///
    /// Each request goes to the newest generation: after a reconfiguration, requests
    /// of open keep-alive connections follow the new config at once, while those in
    /// flight finish on the generation they started on.
    async fn serve_http<IO>(
        self: Arc<Self>,
        switch: Arc<ProxySwitch>,
        io: IO,
        conn: Arc<Connection>,
        site: Arc<Site>,
        alpn_h2: Option<bool>,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let peer = conn.peer;
        // Set by the first request: until then the connection is on the clock.
        let spoke = Arc::new(AtomicBool::new(false));
        let first_request = Arc::clone(&spoke);
        // The connection as the newest generation sees it, made once per generation:
        // rebinding checks a client certificate chain again.
        let rebound: Arc<Mutex<Option<Rebound>>> = Arc::default();
        // Set when a request finds the connection's site gone from the config.
        let gone = Arc::new(AtomicBool::new(false));
        let site_gone = Arc::clone(&gone);
        let service = service_fn(move |req| {
            if !first_request.load(Ordering::Relaxed) {
                first_request.store(true, Ordering::Relaxed);
            }
            let current = switch.current();
            let bound = if Arc::ptr_eq(&current, &self) {
                Some((Arc::clone(&site), Arc::clone(&conn)))
            } else {
                let mut rebound = rebound.lock().unwrap_or_else(PoisonError::into_inner);
                match &*rebound {
                    // A Weak keeps its allocation: the same address is the same
                    // generation.
                    Some((generation, bound))
                        if std::ptr::eq(generation.as_ptr(), Arc::as_ptr(&current)) =>
                    {
                        bound.clone()
                    }
                    _ => {
                        let bound = current.rebind(&site, &conn);
                        *rebound = Some((Arc::downgrade(&current), bound.clone()));
                        bound
                    }
                }
            };
            if bound.is_none() {
                site_gone.store(true, Ordering::Relaxed);
            }
            // Boxed: a request's future is a few kilobytes, and over HTTP/2 hyper spawns
            // a task per request stream, moving the future whole several times on the way
            // (into the stream, through spawn, into the task's cell, and the cell's stage
            // rewritten at the end); a box moves as a pointer.
            Box::pin(async move {
                Ok::<_, Infallible>(match bound {
                    Some((site, conn)) => current.handle(&site, &conn, req).await,
                    None => {
                        let mut gone = plain(503, "the listener no longer exists\n");
                        gone.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        gone.map(BoxBody::new)
                    }
                })
            })
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Bounded request heads, and a client that never finishes sending one is let go.
        builder
            .http1()
            .max_buf_size(MAX_REQUEST_HEAD_BYTES)
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder
            .http2()
            .max_header_list_size(MAX_REQUEST_HEAD_BYTES as u32)
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEP_ALIVE);
        builder = match alpn_h2 {
            Some(true) => builder.http2_only(),
            Some(false) => builder.http1_only(),
            None => builder,
        };
        let serving = builder.serve_connection(TokioIo::new(io), service);
        // HTTP/2 drops the 503's `Connection: close`: a GOAWAY ends the connection
        // once its streams have (HTTP/1.1: after the answer in hand).
        let shut_down = |serving: Pin<&mut _>| auto::Connection::graceful_shutdown(serving);
        match watch_connection(serving, &spoke, HEADER_READ_TIMEOUT, &gone, shut_down).await {
            Some(Ok(())) => {}
            Some(Err(e)) => debug!(%peer, error = %e, "connection ended with an error"),
            None => debug!(%peer, "no request within {HEADER_READ_TIMEOUT:?}; closed"),
        }
    }

    /// Terminates TLS with the service's certificate, then serves the protocol ALPN
    /// agreed (HTTP/1.1 when the client offered none).
    async fn serve_https(
        self: Arc<Self>,
        switch: Arc<ProxySwitch>,
        stream: TcpStream,
        peer: SocketAddr,
        site: Arc<Site>,
    ) {
        let Some(acceptor) = self.tls[site.service].clone() else {
            warn!(place = %site.place, "HTTPS listener without a certificate; closing");
            return;
        };
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, error = %tls::handshake_timeout(), "TLS handshake failed");
                return;
            }
        };
        let h2 = tls::negotiated_h2(&stream);
        let session = stream.get_ref().1;
        let client_chain: Option<Arc<[_]>> = session.peer_certificates().map(Arc::from);
        let certified = self.identify_client(peer, client_chain.as_deref());
        let conn = Connection {
            peer,
            tls: true,
            certified,
            client_chain,
            sni: session.server_name().map(str::to_owned),
            tls_version: session.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
                _ => "TLS",
            }),
            headers: ConnectionHeaders::new(peer, &site, &self.resolved),
        };
        self.serve_http(switch, stream, Arc::new(conn), site, Some(h2))
            .await
    }

    /// Routes a TLS connection by its SNI, without decrypting, and splices it to a TCP
    /// target.
    async fn serve_passthrough(
        self: Arc<Self>,
        mut client: TcpStream,
        peer: SocketAddr,
        site: Arc<Site>,
    ) {
        match self.passthrough(&mut client, &site).await {
            Ok((mut target, addr, hello)) => {
                match passthrough::splice(&mut client, &mut target, &hello).await {
                    Ok((up, down)) => {
                        debug!(%peer, target = %addr, up, down, "TLS passthrough connection ended")
                    }
                    Err(e) => debug!(%peer, target = %addr, error = %e, "TLS passthrough ended"),
                }
            }
            Err(e) => {
                info!(%peer, place = %site.place, vip = %site.vip, port = site.port, error = %e, "TLS passthrough connection refused");
                if let Some(alert) = e.alert() {
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut client, &alert).await;
                }
            }
        }
    }

    /// The phases of a passthrough connection before the splice: ClientHello, SNI
    /// match, target pick, connect.
    async fn passthrough(
        &self,
        client: &mut TcpStream,
        site: &Site,
    ) -> Result<(TcpStream, SocketAddr, Vec<u8>), PassthroughError> {
        let hello = passthrough::read_hello(client).await?;
        let service = &self.resolved.services[site.service];
        // Validation requires a custom domain name on services with such listeners.
        let expected = service.custom_domain_name.clone().unwrap_or_default();
        if !passthrough::sni_matches(hello.sni.as_deref(), &expected) {
            return Err(PassthroughError::WrongSni {
                sni: hello.sni,
                expected,
            });
        }
        let listener = &self.config.services()[site.service].listeners[site.listener];
        let Action::Forward(groups) = &listener.default_action else {
            return Err(PassthroughError::NoTarget(
                "the listener answers a fixed response",
            ));
        };
        let (group, picked) = self
            .pick_target(groups)
            .map_err(|e| PassthroughError::NoTarget(e.reason()))?;
        let target = picked.addr();
        let stream = self.upstreams[group.index()]
            .connector
            .connect(target, CONNECT_TIMEOUT)
            .await
            .map_err(|source| PassthroughError::Connect { target, source })?;
        Ok((stream, target, hello.bytes))
    }

    /// The target pick phase: a target group by weight, then a usable target of it
    /// round robin (healthy ones, or all of them when none is: fail open).
    fn pick_target(
        &self,
        groups: &[WeightedTargetGroup],
    ) -> Result<(TargetGroupRef, Picked), NoTarget> {
        let group_ref = pick_target_group(groups, rand::random()).ok_or(NoTarget::NoGroup)?;
        let group = self.config.target_group(group_ref);
        let targets = self.usable_targets(group_ref);
        if targets.addrs.is_empty() {
            return Err(NoTarget::NoHealthyTarget);
        }
        let upstream = &self.upstreams[group_ref.index()];
        let i = pick(
            &targets.addrs,
            group.load_balancing,
            &upstream.next,
            &upstream.outstanding,
        );
        Ok((group_ref, Picked { targets, index: i }))
    }

    /// The usable targets of a group under the current health snapshot: chosen again
    /// only when the snapshot is newer than the one they were chosen under.
    fn usable_targets(&self, group_ref: TargetGroupRef) -> Arc<UsableTargets> {
        let health = self.health.borrow();
        let cache = &self.usable[group_ref.index()];
        if let Some(cached) = cache.load_full() {
            if cached.version == health.version {
                return cached;
            }
        }
        let group = self.config.target_group(group_ref);
        let (addrs, authorities) = health
            .select(&self.group_keys[group_ref.index()], &group.targets)
            .targets
            .into_iter()
            .filter_map(|t| match t.id {
                TargetId::Ip(ip) => {
                    let addr = SocketAddr::from((ip, t.port.get()));
                    // An address and port always make an authority.
                    let authority = addr.to_string().parse::<Authority>().ok()?;
                    Some((addr, authority))
                }
                TargetId::Instance(_) => None,
            })
            .unzip();
        let fresh = Arc::new(UsableTargets {
            version: health.version,
            addrs,
            authorities,
        });
        cache.store(Some(Arc::clone(&fresh)));
        fresh
    }

    /// One request through the pipeline, and its access log record when the site's
    /// service or network is logged.
    async fn handle(
        &self,
        site: &Site,
        conn: &Connection,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let log = self
            .logs
            .wants(site.service, site.network)
            .then(|| RequestLog::begin(&req, site, conn, started));
        let mut facts = Facts::default();
        let response = self
            .pipeline(site, conn, req, &mut facts, log.is_some())
            .await;
        self.metrics.response(
            site.service,
            facts.target_group,
            response.status().as_u16(),
            started.elapsed(),
        );
        let Some(log) = log else {
            return response.map(BoxBody::new);
        };
        let group_fields = facts
            .target_group
            .map(|g| self.group_log_fields[g].as_str());
        log.finish(response, facts, group_fields, Arc::clone(&self.logs), site)
    }

    /// The phases of one request: rule, authn/authz, target pick, forward. `logged`:
    /// the request's access log record wants the body bytes it forwards.
    async fn pipeline<'a>(
        &'a self,
        site: &Site,
        conn: &'a Connection,
        req: Request<Incoming>,
        facts: &mut Facts<'a>,
        logged: bool,
    ) -> Response<Answer> {
        let peer = conn.peer;
        let listener = &self.config.services()[site.service].listeners[site.listener];
        let (mut parts, body) = req.into_parts();
        if let Err(why) = settle_host(&mut parts) {
            return plain(400, why);
        }
        if let Some(normal) = path::normalize(parts.uri.path()) {
            let sent = parts.uri.clone();
            match with_path(&sent, &normal) {
                Some(uri) => parts.uri = uri,
                None => return plain(400, "malformed request target\n"),
            }
            parts.extensions.insert(SignedTarget(sent));
        }
        let decision = route(listener, &RequestHead::from(&parts));
        let admitted = match authz::check(
            &self.config,
            &self.resolved,
            &self.auth,
            site,
            conn,
            &parts,
            body,
        )
        .await
        {
            Ok(admitted) => admitted,
            Err(refusal) => {
                info!(%peer, method = %parts.method, path = parts.uri.path(), %refusal, "request refused by the auth phase");
                facts.auth = AuthOutcome::Denied {
                    reason: refusal.to_string(),
                    by: match &refusal {
                        Refusal::Denied(d) => d.statement.clone().map(|s| (d.level, s)),
                        _ => None,
                    },
                };
                facts.caller = refusal.caller().cloned().map(Cow::Owned);
                return refusal_response(&refusal);
            }
        };
        facts.caller = Some(Cow::Borrowed(admitted.caller));
        if !admitted.allowed_by.is_empty() {
            facts.auth = AuthOutcome::Allowed(admitted.allowed_by);
        }
        let groups = match decision.action {
            Action::FixedResponse(status) => return plain(status.code(), ""),
            Action::Forward(groups) => groups,
        };
        let (group_ref, picked) = match self.pick_target(groups) {
            Ok(picked) => picked,
            Err(NoTarget::NoGroup) => return plain(503, "no target group can take the request\n"),
            Err(NoTarget::NoHealthyTarget) => return plain(503, "no healthy target\n"),
        };
        let group = self.config.target_group(group_ref);
        let upstream = &self.upstreams[group_ref.index()];
        let target = picked.addr();
        facts.target_group = Some(group_ref.index());
        facts.target = Some(target);

        // The caller's URI is replaced: its path moves into the new one, uncloned.
        let path = std::mem::take(&mut parts.uri)
            .into_parts()
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = match upstream
            .client
            .uri(picked.authority(), &mut parts.headers, path)
        {
            Ok(uri) => uri,
            Err(_) => return plain(400, "malformed request target\n"),
        };
        // The target speaks its group's protocol version, whatever the client spoke.
        let from_http2 = parts.version == Version::HTTP_2;
        parts.version = match group.protocol_version {
            Some(ProtocolVersion::Http2 | ProtocolVersion::Grpc) => Version::HTTP_2,
            _ => Version::HTTP_11,
        };
        if from_http2 && parts.version == Version::HTTP_11 {
            join_cookies(&mut parts.headers);
        }
        self.lattice_headers(&mut parts, site, conn, group_ref, admitted.caller);
        let received::Forwarded {
            body,
            received,
            sent,
        } = received::count(
            admitted.body,
            &self.metrics,
            site.service,
            group_ref.index(),
            logged,
        );
        facts.received = received;
        let forwarded = Request::from_parts(parts, body);
        // Only least outstanding requests reads the counts: round robin skips the lock.
        let in_flight = (group.load_balancing == LoadBalancing::LeastOutstandingRequests)
            .then(|| upstream.outstanding.start(target));
        facts.forwarded_at = Some(Instant::now());
        // Boxed: the exchange's future (pools, replay, HTTP/2 streams) is the largest
        // of a request's, nearly 2 KB; inline, every future around it grew by it three
        // times over and was copied whole on each move, the last into the box hyper
        // polls (16 KB per request, 8% of the proxy's CPU in memcpy).
        let exchange = Box::pin(upstream.client.request(target, forwarded));
        let answered = answer_within(REQUEST_TIMEOUT, sent, exchange).await;
        facts.response_head_at = Some(Instant::now());
        match answered {
            Ok(Ok((mut response, lease))) => {
                // The target's `Connection: close` or `Keep-Alive: timeout=5` speaks of
                // its connection to the agent, not of the caller's.
                remove_hop_fields(response.headers_mut(), &RESPONSE_HOP_BY_HOP);
                let counted = BytesOut {
                    metrics: Arc::clone(&self.metrics),
                    service: site.service,
                    group: group_ref.index(),
                };
                response.map(|b| {
                    Answer::Target(Tracked::new(Leased::new(b, lease), in_flight, counted))
                })
            }
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
        parts: &mut http::request::Parts,
        site: &Site,
        conn: &Connection,
        group: TargetGroupRef,
        caller: &Caller,
    ) {
        // `te: trailers` is HTTP/2's to send (gRPC); over HTTP/1.1 TE would have to be
        // named in Connection, and nothing there needs it.
        let trailers = parts.version == Version::HTTP_2 && accepts_trailers(&parts.headers);
        let headers = &mut parts.headers;
        remove_hop_fields(headers, &HOP_BY_HOP);
        remove_any(headers, &CALLER_HEADERS);
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        // Values that only depend on the connection and the site are made once.
        let values = &conn.headers;
        headers.insert(X_FORWARDED_FOR, values.forwarded_for.clone());
        headers.insert(X_FORWARDED_FOR_PORT, values.port.clone());
        headers.insert(
            X_FORWARDED_FOR_PROTO,
            HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
        );
        headers.insert(X_AMZN_LATTICE_NETWORK, values.network.clone());
        if let Some(target) = self.target_headers.get(&(site.network, group.index())) {
            headers.insert(X_AMZN_LATTICE_TARGET, target.clone());
        }
        let (identity, tags) = caller.identity_values();
        for (name, value) in [
            (X_AMZN_LATTICE_IDENTITY, identity),
            (X_AMZN_LATTICE_IDENTITY_TAGS, tags),
        ] {
            if let Some(value) = value {
                headers.insert(name, value);
            }
        }
    }
}

/// `uri` with its path replaced by `path` (its query kept).
fn with_path(uri: &http::Uri, path: &str) -> Option<http::Uri> {
    let path_and_query = match uri.query() {
        Some(query) => PathAndQuery::try_from(format!("{path}?{query}")),
        None => PathAndQuery::try_from(path),
    }
    .ok()?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    http::Uri::from_parts(parts).ok()
}

/// Makes the request's Host the one name every phase reads (the rules, the signature,
/// the policies' `RequestHeader/host`) and the target receives: the request target's
/// authority when it has one (an HTTP/2 caller's `:authority`, an HTTP/1.1
/// absolute-form target: RFC 9112 3.2.2 and RFC 9113 8.3.1 put it before Host), else
/// the Host header. A request with two Host headers is refused: which one a phase or a
/// target would read is anyone's guess.
fn settle_host(parts: &mut http::request::Parts) -> Result<(), &'static str> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    if hosts.next().is_some() && hosts.next().is_some() {
        return Err("more than one Host header\n");
    }
    if let Some(authority) = parts.uri.authority() {
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| "the request target's authority is not a valid Host\n")?;
        parts.headers.insert(header::HOST, host);
    }
    Ok(())
}

/// Waits for a target's answer for at most `limit` once the request has been sent
/// whole: a body that streams (an upload, a gRPC client stream) may take as long as
/// it takes, and the clock starts when it has ended (`sent`), as Envoy's route timeout
/// does. An answer that comes earlier (a target refusing an upload) is taken at once.
/// `answer` is a pointer to the exchange, so that it is stored once, whichever way.
async fn answer_within<F: std::future::Future + Unpin>(
    limit: Duration,
    sent: Option<tokio::sync::oneshot::Receiver<()>>,
    mut answer: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let Some(sent) = sent else {
        return tokio::time::timeout(limit, answer).await;
    };
    tokio::select! {
        answered = &mut answer => Ok(answered),
        // Sent, or given up (the sender dropped): the clock starts either way.
        _ = sent => tokio::time::timeout(limit, answer).await,
    }
}

/// Removes the fields of one hop: those `Connection` names, then `fixed` (which holds
/// `Connection` itself).
fn remove_hop_fields(headers: &mut HeaderMap, fixed: &[HeaderName]) {
    if headers.contains_key(header::CONNECTION) {
        // Nearly every Connection says `keep-alive` or `close` (a target's response
        // does, every time): those name no field to remove beyond `fixed`, and making
        // a header name of them would allocate. Only other names are looked up, and
        // collected (allocating) only when the request has such a field.
        let mut listed = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                if ["keep-alive", "close", "te", "upgrade"]
                    .iter()
                    .any(|known| token.eq_ignore_ascii_case(known))
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    if headers.contains_key(&name) {
                        listed.push(name);
                    }
                }
            }
        }
        for name in listed {
            headers.remove(name);
        }
    }
    remove_any(headers, fixed);
}

/// Removes `names` from `headers`: one pass over the few names a head has, rather than a
/// hashed lookup per name, since most heads have none of them.
fn remove_any(headers: &mut HeaderMap, names: &[HeaderName]) {
    if headers.keys().any(|name| names.contains(name)) {
        for name in names {
            headers.remove(name);
        }
    }
}

/// An HTTP/2 caller may send its cookies as several `cookie` fields (RFC 9113 8.2.3);
/// to an HTTP/1.1 target they go as one, joined with `; `, as that RFC has it (many
/// HTTP/1.1 servers read one Cookie line, or join repeated ones with commas).
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// Whether the caller's `TE` names `trailers`: that one value goes on to the target, as
/// Envoy and nginx's grpc_pass send it. gRPC clients send `te: trailers` to detect
/// proxies that would drop trailers, and gRPC's C core (the servers of grpcio, C++,
/// Ruby, PHP) refuses a call without it. Every other TE value is the hop's own.
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let name = coding.split(';').next().unwrap_or_default();
            name.trim().eq_ignore_ascii_case("trailers")
        })
}

/// The `x-amzn-lattice-target` value of every (service network, target group) a
/// request can be forwarded through: `ServiceArn=...;ServiceNetworkArn=...;
/// TargetGroupArn=...`, made once rather than per request.
fn target_headers(config: &Config, resolved: &Resolved) -> HashMap<(usize, usize), HeaderValue> {
    let mut out = HashMap::new();
    for (s, service) in config.services().iter().enumerate() {
        let Some(service_ref) = config.service_by_name(service.name.as_str()) else {
            continue;
        };
        let groups = service.listeners.iter().flat_map(|l| {
            std::iter::once(&l.default_action).chain(l.rules.iter().map(|r| &r.action))
        });
        let groups: Vec<usize> = groups
            .filter_map(|action| match action {
                Action::Forward(groups) => Some(groups),
                Action::FixedResponse(_) => None,
            })
            .flatten()
            .map(|g| g.target_group.index())
            .collect();
        for network in config.networks_of_service(service_ref) {
            for &g in &groups {
                let value = format!(
                    "ServiceArn={};ServiceNetworkArn={};TargetGroupArn={}",
                    resolved.services[s].arn,
                    resolved.service_networks[network.index()].arn,
                    resolved.target_groups[g].arn
                );
                if let Ok(value) = HeaderValue::from_str(&value) {
                    out.insert((network.index(), g), value);
                }
            }
        }
    }
    out
}

/// Why the target pick phase found no target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoTarget {
    /// Every weight of the forward is 0.
    NoGroup,
    /// The picked group has no target the proxy can address.
    NoHealthyTarget,
}

impl NoTarget {
    fn reason(self) -> &'static str {
        match self {
            NoTarget::NoGroup => "no target group can take the connection",
            NoTarget::NoHealthyTarget => "no healthy target",
        }
    }
}

/// The answer to a request the auth phase refused: Lattice's exception text.
fn refusal_response(refusal: &Refusal) -> Response<Answer> {
    plain(refusal.status(), format!("{refusal}\n"))
}

/// A connection's site and facts under a newer generation than the one it was accepted
/// by (`None`: that generation no longer has its site).
type Rebound = (Weak<Proxy>, Option<(Arc<Site>, Arc<Connection>)>);

/// Runs a connection's `serving` to its end, with two exceptions:
/// - no request has started on it (`spoke`, set by the service) within `limit`: it is
///   dropped, and with it the connection (`None`). hyper's header timeout starts only
///   once it knows the protocol, so a client that sends nothing, or part of the
///   HTTP/2 preface (or nothing after a TLS handshake that chose h2), would hold its
///   connection and task for ever, and enough of them every descriptor of the agent;
/// - its site left the config (`gone`, set by the service while the connection runs):
///   it is shut down gracefully (`shut_down`), at its next wake-up.
///
/// Two relaxed loads per wake-up once a request has started: no timer or notification
/// is polled on the busy path.
async fn watch_connection<F: std::future::Future>(
    serving: F,
    spoke: &AtomicBool,
    limit: Duration,
    gone: &AtomicBool,
    shut_down: impl FnOnce(Pin<&mut F>),
) -> Option<F::Output> {
    tokio::pin!(serving);
    let mut silence = Some(Box::pin(tokio::time::sleep(limit)));
    let mut shut_down = Some(shut_down);
    std::future::poll_fn(|cx| {
        if shut_down.is_some() && gone.load(Ordering::Relaxed) {
            if let Some(shut_down) = shut_down.take() {
                shut_down(serving.as_mut());
            }
        }
        if let Poll::Ready(served) = serving.as_mut().poll(cx) {
            return Poll::Ready(Some(served));
        }
        if let Some(timer) = &mut silence {
            if spoke.load(Ordering::Relaxed) {
                silence = None;
            } else if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hops_own_fields_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-hop"),
            ("connection", "X-Other"),
            ("x-hop", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "h2c"),
            ("trailer", "grpc-status"),
            ("content-type", "text/plain"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        remove_hop_fields(&mut headers, &RESPONSE_HOP_BY_HOP);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["trailer", "content-type"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_is_dropped_at_the_limit() {
        let limit = Duration::from_secs(30);
        let closes_at = |secs| async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            "closed"
        };
        fn never<F>(_: Pin<&mut F>) {
            panic!("not shut down");
        }
        let gone = AtomicBool::new(false);
        // Silent: dropped at the limit, however long it would have stayed.
        let silent = AtomicBool::new(false);
        let started = tokio::time::Instant::now();
        let pending = std::future::pending::<()>();
        assert_eq!(
            watch_connection(pending, &silent, limit, &gone, never).await,
            None
        );
        assert_eq!(started.elapsed(), limit);
        // A connection that ends by itself before the limit, or that has served a
        // request by then, runs to its end.
        assert_eq!(
            watch_connection(closes_at(5), &silent, limit, &gone, never).await,
            Some("closed")
        );
        let spoke = AtomicBool::new(true);
        assert_eq!(
            watch_connection(closes_at(3600), &spoke, limit, &gone, never).await,
            Some("closed")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_site_left_is_shut_down_once() {
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let serving = async move {
            let _ = closed.await;
            "shut down"
        };
        let spoke = AtomicBool::new(true);
        // Set before the watch begins (a request found the site gone).
        let gone = AtomicBool::new(true);
        let shut_down = move |_: Pin<&mut _>| {
            close.send(()).unwrap();
        };
        let limit = Duration::from_secs(30);
        assert_eq!(
            watch_connection(serving, &spoke, limit, &gone, shut_down).await,
            Some("shut down")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_answers_clock_starts_when_the_request_has_been_sent() {
        let limit = Duration::from_secs(60);
        let answer_at = |secs| Box::pin(tokio::time::sleep(Duration::from_secs(secs)));
        // Nothing to stream: the clock runs from the start.
        assert!(answer_within(limit, None, answer_at(59)).await.is_ok());
        assert!(answer_within(limit, None, answer_at(61)).await.is_err());
        // An upload that streams for 100 s, then an answer 50 s later: in time.
        let (done, sent) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            let _ = done.send(());
        });
        assert!(answer_within(limit, Some(sent), answer_at(150))
            .await
            .is_ok());
        // The same, answered 61 s after the upload ended: too late.
        let (done, sent) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            drop(done);
        });
        assert!(answer_within(limit, Some(sent), answer_at(161))
            .await
            .is_err());
        // A target answering while the upload still streams: at once.
        let (_streaming, sent) = tokio::sync::oneshot::channel::<()>();
        assert!(answer_within(limit, Some(sent), answer_at(5)).await.is_ok());
    }

    #[test]
    fn the_host_is_the_authority_when_there_is_one_and_never_two() {
        let head = |uri: &str, hosts: &[&'static str]| {
            let mut req = Request::builder().uri(uri);
            for host in hosts {
                req = req.header(header::HOST, *host);
            }
            req.body(()).unwrap().into_parts().0
        };
        for (uri, hosts, expected) in [
            ("/x", &["orders.example"][..], Ok(Some("orders.example"))),
            ("/x", &[][..], Ok(None)),
            // HTTP/2's :authority, alone or beside a Host that says otherwise.
            (
                "http://orders.example/x",
                &[][..],
                Ok(Some("orders.example")),
            ),
            (
                "http://orders.example/x",
                &["other.example"][..],
                Ok(Some("orders.example")),
            ),
            ("/x", &["a.example", "b.example"][..], Err(())),
        ] {
            let mut parts = head(uri, hosts);
            let settled = settle_host(&mut parts)
                .map(|()| {
                    parts
                        .headers
                        .get(header::HOST)
                        .map(|h| h.to_str().unwrap().to_owned())
                })
                .map_err(|_| ());
            assert_eq!(
                settled,
                expected.map(|h| h.map(str::to_owned)),
                "{uri} {hosts:?}"
            );
        }
    }

    #[test]
    fn an_http2_callers_cookies_are_joined_into_one() {
        let mut headers = HeaderMap::new();
        for value in ["a=1", "b=2", "c=3"] {
            headers.append(header::COOKIE, HeaderValue::from_static(value));
        }
        join_cookies(&mut headers);
        let cookies: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3"]);
        join_cookies(&mut headers);
        assert_eq!(
            headers[header::COOKIE],
            "a=1; b=2; c=3",
            "one stays as it is"
        );
    }

    #[test]
    fn only_trailers_of_the_callers_te_goes_on() {
        for (te, expected) in [
            (&[][..], false),
            (&["trailers"][..], true),
            (&["Trailers"][..], true),
            (&["gzip, trailers;q=0.5"][..], true),
            (&["deflate", "trailers"][..], true),
            (&["gzip"][..], false),
            (&["trailersx"][..], false),
        ] {
            let mut headers = HeaderMap::new();
            for value in te {
                headers.append(header::TE, HeaderValue::from_static(value));
            }
            assert_eq!(accepts_trailers(&headers), expected, "{te:?}");
        }
    }
}
