//! The log phase: one access log record per request, with Lattice's access log fields
//! ("Access log contents" in the VPC Lattice User Guide), written when the response's
//! body ends (or the client goes away), so `duration` and `bytesSent` are the whole
//! exchange.
//!
//! Lattice's fields, and where they come from here:
//!
//! | field | value |
//! | --- | --- |
//! | `startTime`, `eventTimestamp` | when the request arrived / when its record was made (ISO 8601, ms) |
//! | `duration` | ms from arrival to the response's last byte |
//! | `requestToTargetDuration`, `responseFromTargetDuration` | ms from arrival to the forward / from the forward to the target's response head; `null` when nothing was forwarded |
//! | `requestMethod`, `requestPath`, `protocol`, `userAgent` | of the request (`requestPath` with the query) |
//! | `responseCode`, `grpcResponseCode` | the status sent; `grpc-status` when the target sent it in the head |
//! | `bytesReceived`, `bytesSent` | the request's `content-length` (0 when streamed without one) / response body bytes sent |
//! | `sourceIpPort`, `sourceVpcArn`, `sourceVpcId` | the caller |
//! | `serviceNetworkArn`, `serviceArn`, `targetGroupArn`, `targetIpPort`, `destinationVpcId` | where it went (`null` when nowhere) |
//! | `serverNameIndication`, `tlsVersion` | of HTTPS connections (`null` over HTTP) |
//! | `callerPrincipal`, `callerX509SubjectCN`, `callerX509IssuerOU`, `callerX509SANDNS`, `callerX509SANURI` | the authenticated caller (`null` for anonymous) |
//! | `authDeniedReason` | Lattice's denial text, `null` when admitted |
//!
//! lattice adds `authDecision` (`Allow`, `Deny` or `NotEvaluated` when both auth types
//! are NONE) and `authStatements` (`{"network": ..., "service": ...}`: the statements
//! that allowed, or the one that denied), so an audit can tell which statement decided.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, SizeHint};
use lattice_policy::StatementId;
use serde_json::{json, Map, Value};

use super::{
    authz::{Connection, Level},
    proxy::ProxyBody,
    sites::Site,
};
use crate::{
    accesslog::AccessLogs,
    auth::identity::{Caller, Proof},
    resolve::Resolved,
};

/// What the pipeline learned about a request, for its record.
#[derive(Debug, Default)]
pub struct Facts {
    pub caller: Option<Caller>,
    pub auth: AuthOutcome,
    pub target_group: Option<usize>,
    pub target: Option<SocketAddr>,
    pub forwarded_at: Option<Instant>,
    pub response_head_at: Option<Instant>,
}

/// The auth phase's outcome.
#[derive(Debug, Default)]
pub enum AuthOutcome {
    /// Both auth types NONE (or the request never reached the phase).
    #[default]
    NotEvaluated,
    Allowed(Vec<(Level, StatementId)>),
    Denied {
        reason: String,
        /// The level and statement that denied, if one did explicitly.
        by: Option<(Level, String)>,
    },
}

/// A request's record in the making, from its arrival.
pub struct RequestLog {
    start: SystemTime,
    started: Instant,
    record: Fields,
}

/// A record's fields in the order they are written: no map to build per request.
type Fields = Vec<(&'static str, Value)>;

/// Writes [`Fields`] as a JSON object.
struct Record<'a>(&'a Fields);

impl serde::Serialize for Record<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl RequestLog {
    /// Notes what the request head says, before the pipeline consumes it.
    pub fn begin<B>(
        req: &Request<B>,
        site: &Site,
        conn: &Connection,
        resolved: &Resolved,
    ) -> RequestLog {
        let mut record = Fields::with_capacity(40);
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let vpc = &resolved.vpcs[site.vpc];
        let fields = [
            ("requestMethod", json!(req.method().as_str())),
            ("requestPath", json!(path)),
            ("protocol", json!(format!("{:?}", req.version()))),
            ("userAgent", json!(header("user-agent"))),
            (
                "bytesReceived",
                json!(header("content-length")
                    .and_then(|l| l.parse::<u64>().ok())
                    .unwrap_or(0)),
            ),
            ("sourceIpPort", json!(conn.peer.to_string())),
            ("sourceVpcArn", json!(vpc.arn)),
            ("sourceVpcId", json!(vpc.id)),
            (
                "serviceNetworkArn",
                json!(resolved.service_networks[site.network].arn),
            ),
            ("serviceArn", json!(resolved.services[site.service].arn)),
            ("serverNameIndication", json!(conn.sni)),
            ("tlsVersion", json!(conn.tls_version)),
        ];
        for (k, v) in fields {
            record.push((k, v));
        }
        RequestLog {
            start: SystemTime::now(),
            started: Instant::now(),
            record,
        }
    }

    /// Completes the record with what the pipeline learned and the response, and
    /// returns the response with a body that writes the record when it ends.
    pub fn finish(
        mut self,
        response: Response<ProxyBody>,
        facts: Facts,
        resolved: &Resolved,
        logs: Arc<AccessLogs>,
        site: &Site,
    ) -> Response<ProxyBody> {
        let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_millis() as u64;
        let r = &mut self.record;
        r.push(("responseCode", json!(response.status().as_u16())));
        let grpc = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        r.push(("grpcResponseCode", json!(grpc)));
        r.push((
            "targetGroupArn",
            json!(facts
                .target_group
                .map(|g| resolved.target_groups[g].arn.clone())),
        ));
        r.push((
            "destinationVpcId",
            json!(facts.target_group.and_then(|g| {
                let vpc = &resolved.target_groups[g].vpc;
                resolved
                    .vpcs
                    .iter()
                    .find(|v| &v.name == vpc)
                    .map(|v| v.id.clone())
            })),
        ));
        r.push(("targetIpPort", json!(facts.target.map(|t| t.to_string()))));
        r.push((
            "requestToTargetDuration",
            json!(facts.forwarded_at.map(|at| ms(self.started, at))),
        ));
        r.push((
            "responseFromTargetDuration",
            json!(facts
                .forwarded_at
                .zip(facts.response_head_at)
                .map(|(f, h)| ms(f, h))),
        ));
        caller_fields(r, facts.caller.as_ref());
        let (decision, reason, statements) = match &facts.auth {
            AuthOutcome::NotEvaluated => ("NotEvaluated", None, Map::new()),
            AuthOutcome::Allowed(by) => (
                "Allow",
                None,
                statement_map(by.iter().map(|(l, s)| (*l, s.to_string()))),
            ),
            AuthOutcome::Denied { reason, by } => (
                "Deny",
                Some(reason.clone()),
                statement_map(by.iter().cloned()),
            ),
        };
        r.push(("authDeniedReason", json!(reason)));
        r.push(("authDecision", json!(decision)));
        r.push(("authStatements", Value::Object(statements)));
        let (parts, body) = response.into_parts();
        let body = Logged {
            inner: body,
            sent: 0,
            log: Some(Pending {
                log: self,
                logs,
                service: site.service,
                network: site.network,
            }),
        };
        Response::from_parts(parts, http_body_util::BodyExt::boxed(body))
    }
}

fn statement_map(by: impl Iterator<Item = (Level, String)>) -> Map<String, Value> {
    by.map(|(level, statement)| {
        let key = match level {
            Level::Network => "network",
            Level::Service => "service",
        };
        (key.to_owned(), json!(statement))
    })
    .collect()
}

fn caller_fields(r: &mut Fields, caller: Option<&Caller>) {
    let (principal, x509) = match caller {
        Some(Caller::Authenticated { principal, proof }) => (
            Some(principal.arn.clone()),
            match proof {
                Proof::Certificate(x509) => Some(Arc::clone(x509)),
                Proof::Signature { .. } => None,
            },
        ),
        _ => (None, None),
    };
    r.push(("callerPrincipal", json!(principal)));
    let x = x509.as_deref();
    r.push((
        "callerX509SubjectCN",
        json!(x.and_then(|x| x.subject_cn.clone())),
    ));
    r.push((
        "callerX509IssuerOU",
        json!(x.and_then(|x| x.issuer_ou.clone())),
    ));
    r.push(("callerX509SANDNS", json!(x.and_then(|x| x.san_dns.clone()))));
    r.push(("callerX509SANURI", json!(x.and_then(|x| x.san_uri.clone()))));
}

/// A record waiting for its response's end.
struct Pending {
    log: RequestLog,
    logs: Arc<AccessLogs>,
    service: usize,
    network: usize,
}

impl Pending {
    fn write(mut self, sent: u64) {
        let r = &mut self.log.record;
        r.push(("bytesSent", json!(sent)));
        r.push((
            "duration",
            json!(self.log.started.elapsed().as_millis() as u64),
        ));
        r.push(("startTime", json!(crate::clock::iso8601_ms(self.log.start))));
        r.push((
            "eventTimestamp",
            json!(crate::clock::iso8601_ms(SystemTime::now())),
        ));
        let line = serde_json::to_string(&Record(r)).unwrap_or_default();
        self.logs.record(self.service, self.network, line);
    }
}

/// A response body that counts what it sends and writes the request's record when it
/// ends or is dropped (a client that went away still gets its record).
struct Logged {
    inner: ProxyBody,
    sent: u64,
    log: Option<Pending>,
}

impl Body for Logged {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(pending) = self.log.take() {
                    pending.write(self.sent);
                }
            }
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

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(pending) = self.log.take() {
            pending.write(self.sent);
        }
    }
}
