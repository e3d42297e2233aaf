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
//! | `bytesReceived`, `bytesSent` | request body bytes forwarded to the target, streamed or not ([`super::received`]; 0 when nothing was forwarded) / response body bytes sent |
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
    borrow::Cow,
    io::Write as _,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use http::{Request, Response, Version};
use hyper::body::{Body, Frame, SizeHint};

use super::{
    answer::Answer,
    authz::{AllowedBy, Connection, Level},
    proxy::ProxyBody,
    received::ReceivedBytes,
    sites::Site,
};
use crate::{
    accesslog::AccessLogs,
    auth::identity::{Caller, Proof},
    config::Config,
    resolve::Resolved,
};

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// What the pipeline learned about a request, for its record.
#[derive(Debug, Default)]
pub struct Facts<'a> {
    /// Borrowed from the keyring or the connection when the request was admitted.
    pub caller: Option<Cow<'a, Caller>>,
    pub auth: AuthOutcome<'a>,
    pub target_group: Option<usize>,
    pub target: Option<SocketAddr>,
    pub forwarded_at: Option<Instant>,
    pub response_head_at: Option<Instant>,
    /// The request body bytes forwarded; a streaming body's still being counted.
    pub received: ReceivedBytes,
}

/// The auth phase's outcome.
#[derive(Debug, Default)]
pub enum AuthOutcome<'a> {
    /// Both auth types NONE (or the request never reached the phase).
    #[default]
    NotEvaluated,
    Allowed(AllowedBy<'a>),
    Denied {
        reason: String,
        /// The level and statement that denied, if one did explicitly.
        by: Option<(Level, String)>,
    },
}

/// A request's record in the making, from its arrival: the JSON object is written as
/// the facts come in, straight into the line that is queued (no map, no value tree, no
/// copy of the names and ARNs it contains).
pub struct RequestLog {
    start: SystemTime,
    started: Instant,
    /// gRPC runs over HTTP/2 only: other responses are not searched for `grpc-status`.
    http2: bool,
    line: JsonLine,
}

impl RequestLog {
    /// Notes what the request head says, before the pipeline consumes it. `started` is
    /// the caller's, which needs it for its metrics anyway.
    pub fn begin<B>(
        req: &Request<B>,
        site: &Site,
        conn: &Connection,
        started: Instant,
    ) -> RequestLog {
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut line = JsonLine::new();
        line.str("requestMethod", req.method().as_str());
        line.str("requestPath", path);
        line.str("protocol", protocol(req.version()));
        line.opt_str("userAgent", header(http::header::USER_AGENT));
        line.addr("sourceIpPort", conn.peer);
        line.fields(&site.log_fields);
        line.opt_str("serverNameIndication", conn.sni.as_deref());
        line.opt_str("tlsVersion", conn.tls_version);
        RequestLog {
            start: SystemTime::now(),
            started,
            http2: req.version() == Version::HTTP_2,
            line,
        }
    }

    /// Completes the record with what the pipeline learned and the response, and
    /// returns the response with a body that writes the record when it ends.
    /// `group_fields` are the forward's target group's fields ([`group_fields`]).
    pub fn finish(
        mut self,
        response: Response<Answer>,
        facts: Facts<'_>,
        group_fields: Option<&str>,
        logs: Arc<AccessLogs>,
        site: &Site,
    ) -> Response<ProxyBody> {
        let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_millis() as u64;
        let r = &mut self.line;
        r.u64("responseCode", u64::from(response.status().as_u16()));
        let grpc = self
            .http2
            .then(|| response.headers().get(GRPC_STATUS))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        r.opt_u64("grpcResponseCode", grpc.map(u64::from));
        match group_fields {
            Some(fields) => r.fields(fields),
            None => {
                r.null("targetGroupArn");
                r.null("destinationVpcId");
            }
        }
        match facts.target {
            Some(target) => r.addr("targetIpPort", target),
            None => r.null("targetIpPort"),
        }
        r.opt_u64(
            "requestToTargetDuration",
            facts.forwarded_at.map(|at| ms(self.started, at)),
        );
        r.opt_u64(
            "responseFromTargetDuration",
            facts
                .forwarded_at
                .zip(facts.response_head_at)
                .map(|(f, h)| ms(f, h)),
        );
        caller_fields(r, facts.caller.as_deref());
        match &facts.auth {
            AuthOutcome::NotEvaluated => {
                r.null("authDeniedReason");
                r.str("authDecision", "NotEvaluated");
                statements(r, std::iter::empty::<(Level, &str)>());
            }
            AuthOutcome::Allowed(by) => {
                r.null("authDeniedReason");
                r.str("authDecision", "Allow");
                let by = by
                    .iter()
                    .map(|(level, statement)| (level, statement.to_string()));
                statements(r, by);
            }
            AuthOutcome::Denied { reason, by } => {
                r.str("authDeniedReason", reason);
                r.str("authDecision", "Deny");
                statements(r, by.iter().map(|(level, s)| (*level, s.as_str())));
            }
        }
        let (parts, body) = response.into_parts();
        let body = Logged {
            inner: body,
            sent: 0,
            log: Some(Pending {
                log: self,
                received: facts.received,
                logs,
                service: site.service,
                network: site.network,
            }),
        };
        Response::from_parts(parts, ProxyBody::new(body))
    }
}

/// A site's fields of every record, in their place after `sourceIpPort`.
pub fn site_fields(resolved: &Resolved, vpc: usize, network: usize, service: usize) -> String {
    let vpc = &resolved.vpcs[vpc];
    fields_once(|fields| {
        fields.str("sourceVpcArn", &vpc.arn);
        fields.str("sourceVpcId", &vpc.id);
        fields.str("serviceNetworkArn", &resolved.service_networks[network].arn);
        fields.str("serviceArn", &resolved.services[service].arn);
    })
}

/// A target group's fields of every record forwarded to it, in their place after
/// `grpcResponseCode`.
pub fn group_fields(config: &Config, resolved: &Resolved, group: usize) -> String {
    let vpc = config.target_groups()[group].vpc.index();
    fields_once(|fields| {
        fields.str("targetGroupArn", &resolved.target_groups[group].arn);
        fields.str("destinationVpcId", &resolved.vpcs[vpc].id);
    })
}

/// Fields made once and spliced into every record: the JSON object `write` makes,
/// without its braces (`"a":1,"b":2`).
fn fields_once(write: impl FnOnce(&mut JsonLine)) -> String {
    let mut fields = JsonLine::new();
    write(&mut fields);
    let object = fields.finish();
    // Text in, text out: what the fields hold is `&str`s, escaped.
    let inner = String::from_utf8_lossy(&object[1..object.len() - 1]).into_owned();
    give_back(object);
    inner
}

/// `HTTP/1.1`, `HTTP/2.0`, ...: the request's protocol as Lattice logs it.
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `"authStatements": {"network": ..., "service": ...}`.
fn statements<S: AsRef<str>>(r: &mut JsonLine, by: impl Iterator<Item = (Level, S)>) {
    r.key("authStatements");
    r.0.push(b'{');
    for (i, (level, statement)) in by.enumerate() {
        if i > 0 {
            r.0.push(b',');
        }
        r.0.extend_from_slice(match level {
            Level::Network => b"\"network\":",
            Level::Service => b"\"service\":",
        });
        escape_into(&mut r.0, statement.as_ref());
    }
    r.0.push(b'}');
}

fn caller_fields(r: &mut JsonLine, caller: Option<&Caller>) {
    let (principal, x509) = match caller {
        Some(Caller::Authenticated { principal, proof }) => (
            Some(principal.arn.as_str()),
            match proof {
                Proof::Certificate(x509) => Some(&**x509),
                Proof::Signature { .. } => None,
            },
        ),
        _ => (None, None),
    };
    r.opt_str("callerPrincipal", principal);
    r.opt_str(
        "callerX509SubjectCN",
        x509.and_then(|x| x.subject_cn.as_deref()),
    );
    r.opt_str(
        "callerX509IssuerOU",
        x509.and_then(|x| x.issuer_ou.as_deref()),
    );
    r.opt_str("callerX509SANDNS", x509.and_then(|x| x.san_dns.as_deref()));
    r.opt_str("callerX509SANURI", x509.and_then(|x| x.san_uri.as_deref()));
}

/// A JSON object written field by field, as serde_json would write it (compact, the
/// same string escapes). Bytes, not a `String`: what goes in is text or ASCII already,
/// and a `String` would check each number's and timestamp's digits again.
struct JsonLine(Vec<u8>);

/// Record buffers a thread has finished with, for its next records: a record is about
/// 1 KiB, and a fresh allocation of that size per request is a large-chunk malloc (with
/// glibc, one that may first consolidate the thread's small free chunks).
const SPARE_BUFFERS: usize = 64;
/// A buffer that grew past this (a huge path, say) is freed rather than kept.
const SPARE_BUFFER_BYTES: usize = 8 * 1024;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A record buffer: a spare one of this thread, or a new one.
fn take_buffer() -> Vec<u8> {
    SPARE
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(2048))
}

/// Keeps a finished record's buffer for the thread's next record.
fn give_back(mut text: Vec<u8>) {
    if text.capacity() > SPARE_BUFFER_BYTES {
        return;
    }
    text.clear();
    // try_with: a record finished while the thread exits just frees its buffer.
    let _ = SPARE.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut() {
            if spare.len() < SPARE_BUFFERS {
                spare.push(text);
            }
        }
    });
}

impl JsonLine {
    fn new() -> JsonLine {
        let mut text = take_buffer();
        text.push(b'{');
        JsonLine(text)
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        escape_into(&mut self.0, value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.null(key),
        }
    }

    fn null(&mut self, key: &str) {
        self.raw(key, "null");
    }

    fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        crate::decimal::push_bytes(&mut self.0, value);
    }

    fn opt_u64(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(value) => self.u64(key, value),
            None => self.null(key),
        }
    }

    /// An address as a string: `10.0.0.1:80`, `[::1]:80`.
    fn addr(&mut self, key: &str, addr: SocketAddr) {
        self.key(key);
        match addr {
            // Every request has one or two: digits by hand, not the formatting machinery.
            SocketAddr::V4(v4) => {
                self.0.push(b'"');
                for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        self.0.push(b'.');
                    }
                    crate::decimal::push_bytes(&mut self.0, u64::from(octet));
                }
                self.0.push(b':');
                crate::decimal::push_bytes(&mut self.0, u64::from(v4.port()));
                self.0.push(b'"');
            }
            SocketAddr::V6(v6) => {
                let _ = write!(self.0, "\"{v6}\"");
            }
        }
    }

    /// A time as ISO 8601 UTC with milliseconds.
    fn time(&mut self, key: &str, t: SystemTime) {
        self.key(key);
        self.0.push(b'"');
        crate::clock::write_iso8601_ms_bytes(&mut self.0, t);
        self.0.push(b'"');
    }

    /// Fields already written as JSON (`"a":1,"b":2`).
    fn fields(&mut self, fields: &str) {
        if fields.is_empty() {
            return;
        }
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        self.0.extend_from_slice(fields.as_bytes());
    }

    /// A value that is already JSON.
    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.0.extend_from_slice(json.as_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.push(b'}');
        self.0
    }
}

/// `value` as a JSON string: quotes, backslashes and control characters escaped as
/// serde_json escapes them; everything else (UTF-8 included) as it is.
fn escape_into(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = value.as_bytes();
    out.push(b'"');
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !NEEDS_ESCAPE[usize::from(b)] {
            continue;
        }
        out.extend_from_slice(&bytes[plain..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            // The other control characters: `\u00XX`.
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// The bytes a JSON string cannot hold as they are: one lookup per byte.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A record waiting for its response's end.
struct Pending {
    log: RequestLog,
    received: ReceivedBytes,
    logs: Arc<AccessLogs>,
    service: usize,
    network: usize,
}

impl Pending {
    fn write(mut self, sent: u64) {
        let r = &mut self.log.line;
        r.u64("bytesReceived", self.received.get());
        r.u64("bytesSent", sent);
        let elapsed = self.log.started.elapsed();
        r.u64("duration", elapsed.as_millis() as u64);
        r.time("startTime", self.log.start);
        // The wall clock at the arrival plus the monotonic time since: one clock read
        // fewer per record.
        r.time("eventTimestamp", self.log.start + elapsed);
        let line = self.log.line.finish();
        self.logs.record(self.service, self.network, &line);
        give_back(line);
    }
}

/// A response body that counts what it sends and writes the request's record when it
/// ends or is dropped (a client that went away still gets its record).
struct Logged {
    inner: Answer,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_the_formatter_would() {
        for addr in [
            "10.0.0.1:80",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "[::1]:8080",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut line = JsonLine(b"{".to_vec());
            line.addr("a", addr);
            assert_eq!(line.finish(), format!("{{\"a\":\"{addr}\"}}").into_bytes());
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for value in [
            "",
            "plain",
            "a \"quoted\" path",
            "back\\slash",
            "tab\there, newline\n, return\r",
            "\u{0} \u{1} \u{8} \u{c} \u{1f} \u{7f}",
            "naïve ünïcode ✓ and 🦀",
            "curl/8.5.0",
        ] {
            let mut ours = Vec::new();
            escape_into(&mut ours, value);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(value).unwrap(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_its_fields_in_order() {
        let mut line = JsonLine::new();
        line.str("requestPath", "/a\"b");
        line.opt_str("userAgent", None);
        line.u64("bytesReceived", 42);
        line.opt_u64("grpcResponseCode", None);
        line.addr("sourceIpPort", SocketAddr::from(([10, 0, 0, 1], 80)));
        line.time("startTime", SystemTime::UNIX_EPOCH);
        statements(
            &mut line,
            [(Level::Network, "Allow#1".to_owned())].into_iter(),
        );
        let text = String::from_utf8(line.finish()).unwrap();
        assert_eq!(
            text,
            r#"{"requestPath":"/a\"b","userAgent":null,"bytesReceived":42,"grpcResponseCode":null,"sourceIpPort":"10.0.0.1:80","startTime":"1970-01-01T00:00:00.000Z","authStatements":{"network":"Allow#1"}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["requestPath"], "/a\"b");
    }
}
