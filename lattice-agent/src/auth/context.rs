//! The condition keys of a request, as Lattice's auth policy documentation defines
//! them ("Condition keys" of VPC Lattice auth policies), plus IAM's global keys that
//! apply here.
//!
//! | key | value |
//! | --- | --- |
//! | `vpc-lattice-svcs:Port` | the listener's port |
//! | `vpc-lattice-svcs:RequestMethod` | the method |
//! | `vpc-lattice-svcs:RequestPath` | the path, without the query, as sent |
//! | `vpc-lattice-svcs:RequestHeader/<name>` | each header's value (one key per header name; several values when sent several times) |
//! | `vpc-lattice-svcs:RequestQueryString/<key>` | each query parameter's decoded value |
//! | `vpc-lattice-svcs:ServiceArn`, `ServiceNetworkArn` | the invoked service and the network it is reached through |
//! | `vpc-lattice-svcs:SourceVpc`, `SourceVpcOwnerAccount` | the caller's VPC id and its account |
//! | `aws:PrincipalType` | `Anonymous`, `AssumedRole` (role principals) or `User` |
//! | `aws:PrincipalAccount`, `aws:PrincipalArn`, `aws:PrincipalTag/<key>` | of an authenticated caller only (absent for anonymous callers) |
//! | `aws:SourceIp` | the client's address (the kernel keeps it: no SNAT on the way in) |
//! | `aws:CurrentTime` | now, ISO 8601 UTC |
//! | `aws:SecureTransport` | `true` on TLS connections |
//!
//! A key goes into the context only when a policy being evaluated reads it
//! ([`RequestReads`], found once per policy): a key no condition reads cannot change a
//! decision, and a request carries a dozen headers.

use std::{sync::LazyLock, time::SystemTime};

use http::{request::Parts, HeaderName};
use lattice_policy::{Context, ContextKey};

use super::identity::Caller;
use crate::{
    config::PrincipalType,
    l7::{authz::Connection, sites::Site},
    resolve::Resolved,
};

const HEADER_PREFIX: &str = "vpc-lattice-svcs:requestheader/";
const QUERY_PREFIX: &str = "vpc-lattice-svcs:requestquerystring/";

const PRINCIPAL_TAG_PREFIX: &str = "aws:principaltag/";

/// The keys of a request that are not per header or query parameter, in the order of
/// [`FIXED_KEYS`]; `PrincipalTag` stands for every `aws:PrincipalTag/<key>`.
#[derive(Debug, Clone, Copy)]
enum Fixed {
    Port,
    Method,
    Path,
    ServiceArn,
    NetworkArn,
    SourceVpc,
    SourceVpcOwner,
    PrincipalType,
    PrincipalAccount,
    PrincipalArn,
    PrincipalTag,
    SourceIp,
    CurrentTime,
    SecureTransport,
}

const FIXED_KEYS: [&str; 14] = [
    "vpc-lattice-svcs:Port",
    "vpc-lattice-svcs:RequestMethod",
    "vpc-lattice-svcs:RequestPath",
    "vpc-lattice-svcs:ServiceArn",
    "vpc-lattice-svcs:ServiceNetworkArn",
    "vpc-lattice-svcs:SourceVpc",
    "vpc-lattice-svcs:SourceVpcOwnerAccount",
    "aws:PrincipalType",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    PRINCIPAL_TAG_PREFIX,
    "aws:SourceIp",
    "aws:CurrentTime",
    "aws:SecureTransport",
];

/// The keys a policy's conditions read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestReads {
    /// One bit per [`Fixed`] key.
    fixed: u16,
    headers: Vec<HeaderName>,
    /// Lowercased, as the context compares keys.
    queries: Vec<Box<str>>,
}

/// Reads nothing (a level whose auth type is NONE).
pub static NO_READS: RequestReads = RequestReads {
    fixed: 0,
    headers: Vec::new(),
    queries: Vec::new(),
};

impl RequestReads {
    pub fn of(policy: &lattice_policy::Policy) -> RequestReads {
        let mut reads = RequestReads::default();
        // The policy's keys are lowercased.
        for key in policy.condition_keys() {
            if let Some(name) = key.strip_prefix(HEADER_PREFIX) {
                // A name no header can have is a key no request has.
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    reads.headers.push(name);
                }
            } else if let Some(name) = key.strip_prefix(QUERY_PREFIX) {
                reads.queries.push(name.into());
            } else if key.starts_with(PRINCIPAL_TAG_PREFIX) {
                reads.fixed |= Fixed::PrincipalTag.bit();
            } else if let Some(i) = FIXED_KEYS.iter().position(|k| k.eq_ignore_ascii_case(key)) {
                reads.fixed |= 1 << i;
            }
            // Any other key is one no request of lattice's has.
        }
        reads
    }
}

impl Fixed {
    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The keys of [`Fixed`], lowercased and hashed once, and the prefixes of the keys per
/// header and query parameter.
struct Keys {
    fixed: [ContextKey; 14],
    header: ContextKey,
    query: ContextKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    fixed: FIXED_KEYS.map(ContextKey::new),
    header: ContextKey::new(HEADER_PREFIX),
    query: ContextKey::new(QUERY_PREFIX),
});

/// The condition keys of one request that the policies of `reads` can read, into `c`
/// (empty; the caller reuses one context's buffers request after request).
#[allow(clippy::too_many_arguments)]
pub fn fill_request_context(
    c: &mut Context,
    reads: &[&RequestReads],
    resolved: &Resolved,
    site: &Site,
    conn: &Connection,
    parts: &Parts,
    caller: &Caller,
    now: SystemTime,
) {
    let k = &*KEYS;
    let read = reads.iter().fold(0, |bits, r| bits | r.fixed);
    let mut insert = |key: Fixed, value: &str| {
        if read & key.bit() != 0 {
            c.insert_key(&k.fixed[key as usize], value);
        }
    };
    insert(
        Fixed::Port,
        crate::decimal::to_str(&mut [0; 20], u64::from(site.port)),
    );
    insert(Fixed::Method, parts.method.as_str());
    insert(Fixed::Path, parts.uri.path());
    insert(
        Fixed::ServiceArn,
        resolved.services[site.service].arn.as_str(),
    );
    insert(
        Fixed::NetworkArn,
        resolved.service_networks[site.network].arn.as_str(),
    );
    let vpc = &resolved.vpcs[site.vpc];
    insert(Fixed::SourceVpc, vpc.id.as_str());
    insert(Fixed::SourceVpcOwner, vpc.account.as_str());
    match caller {
        Caller::Anonymous => insert(Fixed::PrincipalType, "Anonymous"),
        Caller::Authenticated { principal, .. } => {
            let kind = match principal.kind {
                PrincipalType::Role => "AssumedRole",
                PrincipalType::User => "User",
            };
            insert(Fixed::PrincipalType, kind);
            insert(Fixed::PrincipalAccount, principal.account.as_str());
            insert(Fixed::PrincipalArn, principal.arn.as_str());
        }
    }
    if read & Fixed::SourceIp.bit() != 0 {
        // x-forwarded-for holds the same text, made once per connection.
        match conn.headers.forwarded_for.to_str() {
            Ok(ip) => insert(Fixed::SourceIp, ip),
            Err(_) => insert(Fixed::SourceIp, &conn.peer.ip().to_string()),
        }
    }
    if read & Fixed::CurrentTime.bit() != 0 {
        let now = crate::clock::iso8601_text(now);
        insert(
            Fixed::CurrentTime,
            std::str::from_utf8(&now).unwrap_or_default(),
        );
    }
    insert(
        Fixed::SecureTransport,
        if conn.tls { "true" } else { "false" },
    );
    if read & Fixed::PrincipalTag.bit() != 0 {
        if let Caller::Authenticated { principal, .. } = caller {
            for (tag, value) in &principal.tags {
                c.insert_under(&k.fixed[Fixed::PrincipalTag as usize], tag, value);
            }
        }
    }
    request_keys(c, reads, parts);
}

/// The request headers and query parameters some policy of `reads` reads (query
/// parameters by decoded name, in any case), with their values (decoded); one sent
/// several times has several values.
fn request_keys(c: &mut Context, reads: &[&RequestReads], parts: &Parts) {
    let k = &*KEYS;
    for (i, read) in reads.iter().enumerate() {
        for name in &read.headers {
            // Two policies may read the same header: its values go in once.
            if reads[..i].iter().any(|r| r.headers.contains(name)) {
                continue;
            }
            for value in parts.headers.get_all(name) {
                // A value with bytes past ASCII is still a value (read as UTF-8, bad
                // sequences replaced): skipped, it would be a key the policy thinks
                // missing while the target gets it.
                let value = String::from_utf8_lossy(value.as_bytes());
                c.insert_under(&k.header, name.as_str(), &value);
            }
        }
    }
    if reads.iter().all(|r| r.queries.is_empty()) {
        return;
    }
    for pair in parts.uri.query().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = crate::percent::decode_text(name).to_lowercase();
        let read = reads.iter().any(|r| r.queries.iter().any(|q| **q == *name));
        if read {
            let value = crate::percent::decode_text(value);
            c.insert_under(&k.query, &name, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(condition: &str) -> lattice_policy::Policy {
        let document = format!(
            r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Allow", "Principal": "*",
                "Action": "vpc-lattice-svcs:Invoke", "Resource": "*",
                "Condition": {condition}}}}}"#
        );
        lattice_policy::parse(&serde_json::from_str(&document).unwrap()).unwrap()
    }

    /// The context of a signed `GET /orders` from vpc-web to service api through
    /// network shop, for `policy`.
    fn filled(policy: &lattice_policy::Policy) -> Context {
        let yaml = r#"
accounts: [{ id: "111111111111" }]
vpcs:
  - { name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{ netns: web }] }
serviceNetworks:
  - { name: shop, account: "111111111111", authType: NONE, vpcAssociations: [{ vpc: vpc-web }], serviceAssociations: [api] }
services:
  - name: api
    account: "111111111111"
    authType: NONE
    listeners: [{ name: http, protocol: HTTP, port: 80, defaultAction: { fixedResponse: { statusCode: 404 } } }]
"#;
        let (config, resolved) = crate::resolve::resolved_for_test(yaml);
        let site = crate::l7::sites::sites(&config, &resolved).remove(0);
        let peer = std::net::SocketAddr::from(([10, 91, 0, 7], 40000));
        let conn = Connection::plain(peer, &site, &resolved);
        let principal = super::super::identity::Principal::new(
            "arn:lattice:iam::111111111111:role/web".into(),
            "111111111111".into(),
            PrincipalType::Role,
            [("team".to_owned(), "shop".to_owned())].into(),
        );
        let caller = Caller::Authenticated {
            principal: std::sync::Arc::new(principal),
            proof: super::super::identity::Proof::Signature {
                access_key_id: "LKIAWEB0000000000001".into(),
            },
        };
        let (parts, ()) = http::Request::get("/orders").body(()).unwrap().into_parts();
        let mut c = Context::new();
        let reads = RequestReads::of(policy);
        fill_request_context(
            &mut c,
            &[&NO_READS, &reads],
            &resolved,
            &site,
            &conn,
            &parts,
            &caller,
            SystemTime::UNIX_EPOCH,
        );
        c
    }

    #[test]
    fn every_fixed_key_a_policy_reads_has_its_value() {
        let keys = FIXED_KEYS
            .iter()
            .map(|k| format!(r#""{k}": "*""#))
            .chain([r#""aws:PrincipalTag/Team": "*""#.to_owned()])
            .collect::<Vec<_>>()
            .join(", ");
        let c = filled(&policy(&format!(r#"{{"StringLike": {{{keys}}}}}"#)));
        let value = |key: &str| c.values(key).collect::<Vec<_>>().join(",");
        assert_eq!(value("vpc-lattice-svcs:Port"), "80");
        assert_eq!(value("vpc-lattice-svcs:RequestMethod"), "GET");
        assert_eq!(value("vpc-lattice-svcs:RequestPath"), "/orders");
        assert!(value("vpc-lattice-svcs:ServiceArn").contains(":service/svc-"));
        assert!(value("vpc-lattice-svcs:ServiceNetworkArn").contains(":servicenetwork/"));
        assert!(value("vpc-lattice-svcs:SourceVpc").starts_with("vpc-"));
        assert_eq!(
            value("vpc-lattice-svcs:SourceVpcOwnerAccount"),
            "111111111111"
        );
        assert_eq!(value("aws:PrincipalType"), "AssumedRole");
        assert_eq!(value("aws:PrincipalAccount"), "111111111111");
        assert_eq!(
            value("aws:PrincipalArn"),
            "arn:lattice:iam::111111111111:role/web"
        );
        assert_eq!(value("aws:PrincipalTag/team"), "shop");
        assert_eq!(value("aws:SourceIp"), "10.91.0.7");
        assert_eq!(value("aws:CurrentTime"), "1970-01-01T00:00:00Z");
        assert_eq!(value("aws:SecureTransport"), "false");
    }

    #[test]
    fn fixed_keys_no_policy_reads_stay_out() {
        let c = filled(&policy(
            r#"{"IpAddress": {"aws:SourceIp": "10.91.0.0/16"}, "Bool": {"aws:SecureTransport": "false"}}"#,
        ));
        assert_eq!(c.values("aws:SourceIp").collect::<Vec<_>>(), ["10.91.0.7"]);
        assert_eq!(
            c.values("aws:securetransport").collect::<Vec<_>>(),
            ["false"]
        );
        for unread in [
            "vpc-lattice-svcs:Port",
            "aws:PrincipalArn",
            "aws:CurrentTime",
            "aws:PrincipalTag/team",
        ] {
            assert!(!c.contains(unread), "{unread}");
        }
    }

    #[test]
    fn only_the_headers_and_parameters_a_policy_reads_go_in() {
        let network = RequestReads::of(&policy(
            r#"{"StringEquals": {"vpc-lattice-svcs:RequestHeader/X-Team": "a",
                                 "vpc-lattice-svcs:RequestQueryString/Env": "prod"}}"#,
        ));
        let service = RequestReads::of(&policy(
            r#"{"StringLike": {"vpc-lattice-svcs:RequestHeader/x-team": "*"},
                "Null": {"vpc-lattice-svcs:RequestHeader/x-absent": "true"}}"#,
        ));
        let request = http::Request::get("/p?env=prod&ENV=dev&other=1&e%6Ev=enc")
            .header("x-team", "a")
            .header("x-team", "b")
            .header("x-other", "c")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let mut c = Context::new();
        request_keys(&mut c, &[&network, &service], &parts);
        let values = |key: &str| -> Vec<String> { c.values(key).map(str::to_owned).collect() };
        // Both policies read x-team: its two values, once each.
        assert_eq!(values("vpc-lattice-svcs:RequestHeader/X-Team"), ["a", "b"]);
        assert!(values("vpc-lattice-svcs:RequestHeader/x-other").is_empty());
        assert!(values("vpc-lattice-svcs:RequestHeader/x-absent").is_empty());
        assert_eq!(
            values("vpc-lattice-svcs:RequestQueryString/env"),
            ["prod", "dev", "enc"]
        );
        assert!(values("vpc-lattice-svcs:RequestQueryString/other").is_empty());

        // A policy that reads neither: nothing of the request goes in.
        let mut c = Context::new();
        request_keys(
            &mut c,
            &[&NO_READS, &RequestReads::of(&policy("{}"))],
            &parts,
        );
        assert!(c.is_empty());
    }
}
