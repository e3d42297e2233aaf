//! The authn/authz phase: who is calling, then whether the service network's and the
//! service's auth policies let it invoke the service, as Lattice evaluates them.
//!
//! | step | rule |
//! | --- | --- |
//! | auth type NONE on both the network and the service | nothing to check: the request goes on, anonymous, and a signature it carries is not even read |
//! | caller | a SigV4 `Authorization` header must verify (else 403, whatever the policies say); otherwise the connection's client certificate's principal; otherwise anonymous |
//! | network | when its auth type is AWS_IAM, its policy must allow |
//! | service | when its auth type is AWS_IAM, its policy must allow |
//! | a policy | an explicit Deny wins; no Allow is a deny (the policy engine, `lattice-policy`) |
//!
//! A signed request whose payload hash is signed (not `UNSIGNED-PAYLOAD`) has its body
//! read in full, up to [`MAX_SIGNED_BODY`], to check the hash before anything reaches
//! the target; bodies that must stream (gRPC streams, uploads) are signed with
//! `UNSIGNED-PAYLOAD`, as AWS's SDKs do for streaming.

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::{Body as _, Incoming};
use lattice_policy::{
    Caller as PolicyCaller, Context, DecisionRef, Request as PolicyRequest, StatementId,
};

use super::sites::Site;
use crate::{
    auth::{
        context::{fill_request_context, NO_READS},
        identity::Caller,
        sigv4::{self, Payload, PayloadCheck, SigV4Error},
        Authenticator,
    },
    config::{AuthType, Config},
    resolve::{Resolved, ResolvedService},
};

/// The largest body the proxy reads to check a signed payload hash.
pub const MAX_SIGNED_BODY: usize = 8 * 1024 * 1024;

/// The action every request invokes.
pub const INVOKE: &str = "vpc-lattice-svcs:Invoke";

/// A request body as it goes to the target: still streaming, or read in full by this
/// phase.
pub type ForwardBody = Either<Incoming, Full<Bytes>>;

/// What the phase knows of the connection a request came on.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    /// Whether the connection is TLS (`aws:SecureTransport`, `x-forwarded-for-proto`).
    pub tls: bool,
    /// The principal the client certificate proved, if any.
    pub certified: Caller,
    /// The client's certificate chain, if it sent one: a request that reaches a newer
    /// generation (its CAs and principals may have changed) is identified again.
    pub client_chain: Option<Arc<[rustls::pki_types::CertificateDer<'static>]>>,
    /// HTTPS: the ClientHello's SNI and the TLS version agreed (for access logs).
    pub sni: Option<String>,
    pub tls_version: Option<&'static str>,
    /// Header values that stay the same for every request of the connection.
    pub headers: ConnectionHeaders,
}

impl Connection {
    /// A plain HTTP connection: no TLS, so no certificate and no SNI.
    pub fn plain(peer: SocketAddr, site: &Site, resolved: &Resolved) -> Connection {
        Connection {
            peer,
            tls: false,
            certified: Caller::Anonymous,
            client_chain: None,
            sni: None,
            tls_version: None,
            headers: ConnectionHeaders::new(peer, site, resolved),
        }
    }
}

/// Lattice's header values that depend only on the connection and its site.
#[derive(Debug, Clone)]
pub struct ConnectionHeaders {
    /// `x-forwarded-for`: the client's address.
    pub forwarded_for: http::HeaderValue,
    /// `x-forwarded-for-port`: the listener's port.
    pub port: http::HeaderValue,
    /// `x-amzn-lattice-network`: `SourceVpcArn=<the site's VPC>`.
    pub network: http::HeaderValue,
}

impl ConnectionHeaders {
    pub fn new(peer: SocketAddr, site: &Site, resolved: &Resolved) -> ConnectionHeaders {
        let value = |text: String| {
            http::HeaderValue::from_str(&text).unwrap_or(http::HeaderValue::from_static(""))
        };
        ConnectionHeaders {
            forwarded_for: value(peer.ip().to_string()),
            port: http::HeaderValue::from(site.port),
            network: value(format!("SourceVpcArn={}", resolved.vpcs[site.vpc].arn)),
        }
    }
}

/// Why the phase refused a request; each is a 403 except where noted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Signature(#[from] SigV4Error),
    #[error(transparent)]
    Denied(#[from] Denied),
    /// 413: a signed body too large to check.
    #[error("the signed payload is larger than {MAX_SIGNED_BODY} bytes; sign large or streaming bodies with UNSIGNED-PAYLOAD")]
    BodyTooLarge,
    /// 400: the body broke while being read.
    #[error("the request body could not be read: {0}")]
    Body(String),
}

impl Refusal {
    /// The caller the phase had proven before it refused, if any.
    pub fn caller(&self) -> Option<&Caller> {
        match self {
            Refusal::Denied(d) => Some(&d.caller_identity),
            _ => None,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Refusal::Signature(_) | Refusal::Denied(_) => 403,
            Refusal::BodyTooLarge => 413,
            Refusal::Body(_) => 400,
        }
    }
}

/// Which level's policy refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Network,
    Service,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Network => "network",
            Level::Service => "service",
        }
    }
}

/// A denial, in the words of Lattice's AccessDeniedException.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "AccessDeniedException: User: {caller} is not authorized to perform: \
     vpc-lattice-svcs:Invoke on resource: {resource} {}",
    self.because()
)]
pub struct Denied {
    /// The caller's principal ARN, or `anonymous`.
    pub caller: String,
    /// The invoked resource: `<service ARN>/<request path>`.
    pub resource: String,
    pub level: Level,
    /// The statement that denied explicitly; `None`: no statement allowed.
    pub statement: Option<String>,
    /// Who was denied.
    pub caller_identity: Caller,
}

impl Denied {
    fn because(&self) -> String {
        match &self.statement {
            Some(_) => format!(
                "with an explicit deny in a {}-based policy",
                self.level.as_str()
            ),
            None => format!(
                "because no {}-based policy allows the vpc-lattice-svcs:Invoke action",
                self.level.as_str()
            ),
        }
    }
}

/// The outcome of the phase for an admitted request.
#[derive(Debug)]
pub struct Admitted<'a> {
    /// Borrowed from the keyring or the connection: a request does not touch the
    /// principal's reference count, which every worker thread shares.
    pub caller: &'a Caller,
    pub body: ForwardBody,
    /// The statements that allowed it, for the access log.
    pub allowed_by: AllowedBy<'a>,
}

/// The statements that allowed a request, per level (none at a level whose auth type
/// is NONE); borrowed from the policies, as the caller is.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowedBy<'a> {
    pub network: Option<&'a StatementId>,
    pub service: Option<&'a StatementId>,
}

impl<'a> AllowedBy<'a> {
    pub fn is_empty(&self) -> bool {
        self.network.is_none() && self.service.is_none()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Level, &'a StatementId)> {
        let network = self.network.map(|s| (Level::Network, s));
        let service = self.service.map(|s| (Level::Service, s));
        network.into_iter().chain(service)
    }
}

/// The caller of requests that prove nothing.
static ANONYMOUS: Caller = Caller::Anonymous;

/// Runs the phase for one request.
pub async fn check<'a>(
    config: &'a Config,
    resolved: &Resolved,
    auth: &'a Authenticator,
    site: &Site,
    conn: &'a Connection,
    parts: &Parts,
    body: Incoming,
) -> Result<Admitted<'a>, Refusal> {
    let network_iam = config.service_networks()[site.network].auth.auth_type() == AuthType::AwsIam;
    let service_iam = config.services()[site.service].auth.auth_type() == AuthType::AwsIam;
    if !network_iam && !service_iam {
        return Ok(Admitted {
            caller: &ANONYMOUS,
            body: Either::Left(body),
            allowed_by: AllowedBy::default(),
        });
    }
    // One reading of the clock for the signature's time window and aws:CurrentTime.
    let now = SystemTime::now();
    let service = &resolved.services[site.service];
    let (caller, body) = authenticate(auth, conn, parts, body, now, service).await?;
    let levels = [(Level::Network, network_iam), (Level::Service, service_iam)];
    let allowed_by = SCRATCH.with_borrow_mut(|scratch| {
        decide(
            scratch, config, resolved, site, conn, parts, caller, levels, now,
        )
    })?;
    Ok(Admitted {
        caller,
        body,
        allowed_by,
    })
}

/// A request context and a resource name, kept by each thread for its next request:
/// the decision is made without an await, so one thread's scratch is never shared.
#[derive(Default)]
struct Scratch {
    context: Context,
    resource: String,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Whether the network's and the service's policies (at the levels whose auth type is
/// AWS_IAM) let `caller` invoke the service with this request; the statements that
/// allowed it.
#[allow(clippy::too_many_arguments)]
fn decide<'a>(
    scratch: &mut Scratch,
    config: &'a Config,
    resolved: &Resolved,
    site: &Site,
    conn: &Connection,
    parts: &Parts,
    caller: &Caller,
    levels: [(Level, bool); 2],
    now: SystemTime,
) -> Result<AllowedBy<'a>, Denied> {
    let Scratch { context, resource } = scratch;
    resource.clear();
    resource.push_str(&resolved.services[site.service].arn);
    resource.push_str(parts.uri.path());
    let policy = |level| match level {
        Level::Network => config.service_networks()[site.network].auth.policy(),
        Level::Service => config.services()[site.service].auth.policy(),
    };
    let mut reads = [&NO_READS; 2];
    for (read, (level, iam)) in reads.iter_mut().zip(levels) {
        if let (true, Some(policy)) = (iam, policy(level)) {
            *read = policy.reads();
        }
    }
    context.clear();
    fill_request_context(context, &reads, resolved, site, conn, parts, caller, now);
    let policy_caller = match caller {
        Caller::Anonymous => PolicyCaller::Anonymous,
        Caller::Authenticated { principal, .. } => PolicyCaller::Principal {
            arn: &principal.arn,
            account: &principal.account,
        },
    };
    let request = PolicyRequest {
        caller: policy_caller,
        action: INVOKE,
        resource,
        context,
    };
    let mut allowed_by = AllowedBy::default();
    for (level, iam) in levels {
        if !iam {
            continue;
        }
        let decision = match policy(level) {
            Some(policy) => lattice_policy::evaluate_ref(policy.parsed(), &request),
            // AWS_IAM without a policy: nothing allows.
            None => DecisionRef::ImplicitDeny,
        };
        let denied = |statement: Option<String>| Denied {
            caller: caller.name().to_owned(),
            resource: resource.clone(),
            level,
            statement,
            caller_identity: caller.clone(),
        };
        match decision {
            DecisionRef::Allow(statement) => match level {
                Level::Network => allowed_by.network = Some(statement),
                Level::Service => allowed_by.service = Some(statement),
            },
            DecisionRef::Deny(statement) => return Err(denied(Some(statement.to_string()))),
            DecisionRef::ImplicitDeny => return Err(denied(None)),
        }
    }
    Ok(allowed_by)
}

/// The caller of a request: its signature's principal when it is signed (and the
/// signature must then verify, for a host that names `service`), else the connection's
/// certificate's, else anonymous.
async fn authenticate<'a>(
    auth: &'a Authenticator,
    conn: &'a Connection,
    parts: &Parts,
    body: Incoming,
    now: SystemTime,
    service: &ResolvedService,
) -> Result<(&'a Caller, ForwardBody), Refusal> {
    if !sigv4::is_signed(&parts.headers, parts.uri.query()) {
        return Ok((&conn.certified, Either::Left(body)));
    }
    // The signed host (the proxy settled Host before this phase) must name the service
    // called. Checked before the body is read: a signature for another host fails here.
    let host = parts
        .headers
        .get(http::header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()))
        .unwrap_or_default();
    if !names_service(&host, service) {
        return Err(SigV4Error::ForAnotherHost {
            host: host.into_owned(),
            service: service.dns_name.clone(),
        }
        .into());
    }
    let (caller, body) = match Payload::claimed(&parts.headers) {
        Some(claimed) => {
            let (caller, check) = sigv4::verify(auth.keyring(), parts, claimed, now)?;
            match check {
                PayloadCheck::Done => (caller, Either::Left(body)),
                PayloadCheck::MustHash(expected) => {
                    let bytes = read_body(body).await?;
                    if sigv4::sha256_hex(&bytes) != expected {
                        return Err(SigV4Error::PayloadMismatch.into());
                    }
                    (caller, Either::Right(Full::new(bytes)))
                }
            }
        }
        None if body.is_end_stream() => {
            let (caller, _) = sigv4::verify(
                auth.keyring(),
                parts,
                Payload::Hashed(sigv4::EMPTY_SHA256),
                now,
            )?;
            (caller, Either::Left(body))
        }
        None => {
            // Hashing the body needs it whole: first what can be checked without it.
            sigv4::precheck(auth.keyring(), parts, now)?;
            let bytes = read_body(body).await?;
            let hash = sigv4::sha256_hex(&bytes);
            let (caller, _) = sigv4::verify(auth.keyring(), parts, Payload::Hashed(&hash), now)?;
            (caller, Either::Right(Full::new(bytes)))
        }
    };
    Ok((caller, body))
}

/// Whether a Host value (with or without a port, any case, a trailing dot or not)
/// names the service: its DNS name, its custom domain name, or its VIP. Lattice routes
/// by this name, so a signature over it is a signature for the service.
fn names_service(host: &str, service: &ResolvedService) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    // DNS names compare as the passthrough phase compares an SNI: any case, a
    // trailing dot ignored.
    let same_name = |dns_name: &str| super::passthrough::sni_matches(Some(name), dns_name);
    same_name(&service.dns_name)
        || service.custom_domain_name.as_deref().is_some_and(same_name)
        || name
            .strip_suffix('.')
            .unwrap_or(name)
            .parse::<std::net::Ipv4Addr>()
            == Ok(service.vip)
}

async fn read_body(body: Incoming) -> Result<Bytes, Refusal> {
    match Limited::new(body, MAX_SIGNED_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::BodyTooLarge),
        Err(e) => Err(Refusal::Body(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_host_must_name_the_service() {
        let service = ResolvedService {
            name: "orders".into(),
            account: "111111111111".into(),
            id: "svc-0123".into(),
            arn: "arn:lattice:vpc-lattice:local:111111111111:service/svc-0123".into(),
            dns_name: "orders-0123.7d67968.vpc-lattice-svcs.local.on.aws".into(),
            custom_domain_name: Some("orders.shop.internal".into()),
            vip: std::net::Ipv4Addr::new(169, 254, 171, 2),
            auth_type: AuthType::AwsIam,
            service_networks: vec![],
            listeners: vec![],
        };
        for (host, names) in [
            ("orders-0123.7d67968.vpc-lattice-svcs.local.on.aws", true),
            ("ORDERS-0123.7d67968.vpc-lattice-svcs.local.on.aws:80", true),
            ("orders.shop.internal", true),
            ("orders.shop.internal.:443", true),
            ("169.254.171.2", true),
            ("169.254.171.2:8080", true),
            ("payments.shop.internal", false),
            ("169.254.171.3", false),
            ("orders.shop.internal.evil", false),
            ("", false),
        ] {
            assert_eq!(names_service(host, &service), names, "{host:?}");
        }
    }
}
