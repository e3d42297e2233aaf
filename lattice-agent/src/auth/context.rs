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
//! Request headers and query parameters go into the context only when a policy being
//! evaluated reads them ([`RequestReads`], found once per policy): a key no condition
//! reads cannot change a decision, and a request carries a dozen headers.

use std::{sync::LazyLock, time::SystemTime};

use http::{request::Parts, HeaderName};
use lattice_policy::{Context, ContextKey};

use super::{identity::Caller, sigv4};
use crate::{
    config::PrincipalType,
    l7::{authz::Connection, sites::Site},
    resolve::Resolved,
};

const HEADER_PREFIX: &str = "vpc-lattice-svcs:requestheader/";
const QUERY_PREFIX: &str = "vpc-lattice-svcs:requestquerystring/";

/// The request headers and query parameters a policy's conditions read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestReads {
    headers: Vec<HeaderName>,
    /// Lowercased, as the context compares keys.
    queries: Vec<Box<str>>,
}

/// Reads nothing (a level whose auth type is NONE).
pub static NO_READS: RequestReads = RequestReads {
    headers: Vec::new(),
    queries: Vec::new(),
};

impl RequestReads {
    pub fn of(policy: &lattice_policy::Policy) -> RequestReads {
        let mut headers = Vec::new();
        let mut queries = Vec::new();
        for key in policy.condition_keys() {
            if let Some(name) = key.strip_prefix(HEADER_PREFIX) {
                // A name no header can have is a key no request has.
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    headers.push(name);
                }
            } else if let Some(name) = key.strip_prefix(QUERY_PREFIX) {
                queries.push(name.into());
            }
        }
        RequestReads { headers, queries }
    }
}

/// The keys every context holds, lowercased and hashed once.
struct Keys {
    port: ContextKey,
    method: ContextKey,
    path: ContextKey,
    header: ContextKey,
    query: ContextKey,
    service_arn: ContextKey,
    network_arn: ContextKey,
    source_vpc: ContextKey,
    source_vpc_owner: ContextKey,
    principal_type: ContextKey,
    principal_account: ContextKey,
    principal_arn: ContextKey,
    principal_tag: ContextKey,
    source_ip: ContextKey,
    current_time: ContextKey,
    secure_transport: ContextKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    port: ContextKey::new("vpc-lattice-svcs:Port"),
    method: ContextKey::new("vpc-lattice-svcs:RequestMethod"),
    path: ContextKey::new("vpc-lattice-svcs:RequestPath"),
    header: ContextKey::new(HEADER_PREFIX),
    query: ContextKey::new(QUERY_PREFIX),
    service_arn: ContextKey::new("vpc-lattice-svcs:ServiceArn"),
    network_arn: ContextKey::new("vpc-lattice-svcs:ServiceNetworkArn"),
    source_vpc: ContextKey::new("vpc-lattice-svcs:SourceVpc"),
    source_vpc_owner: ContextKey::new("vpc-lattice-svcs:SourceVpcOwnerAccount"),
    principal_type: ContextKey::new("aws:PrincipalType"),
    principal_account: ContextKey::new("aws:PrincipalAccount"),
    principal_arn: ContextKey::new("aws:PrincipalArn"),
    principal_tag: ContextKey::new("aws:PrincipalTag/"),
    source_ip: ContextKey::new("aws:SourceIp"),
    current_time: ContextKey::new("aws:CurrentTime"),
    secure_transport: ContextKey::new("aws:SecureTransport"),
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
    c.insert_key(
        &k.port,
        crate::decimal::to_str(&mut [0; 20], u64::from(site.port)),
    );
    c.insert_key(&k.method, parts.method.as_str());
    c.insert_key(&k.path, parts.uri.path());
    request_keys(c, reads, parts);
    c.insert_key(&k.service_arn, resolved.services[site.service].arn.as_str());
    c.insert_key(
        &k.network_arn,
        resolved.service_networks[site.network].arn.as_str(),
    );
    let vpc = &resolved.vpcs[site.vpc];
    c.insert_key(&k.source_vpc, vpc.id.as_str());
    c.insert_key(&k.source_vpc_owner, vpc.account.as_str());
    match caller {
        Caller::Anonymous => c.insert_key(&k.principal_type, "Anonymous"),
        Caller::Authenticated { principal, .. } => {
            let kind = match principal.kind {
                PrincipalType::Role => "AssumedRole",
                PrincipalType::User => "User",
            };
            c.insert_key(&k.principal_type, kind);
            c.insert_key(&k.principal_account, principal.account.as_str());
            c.insert_key(&k.principal_arn, principal.arn.as_str());
            for (tag, value) in &principal.tags {
                c.insert_under(&k.principal_tag, tag, value);
            }
        }
    }
    // x-forwarded-for holds the same text, made once per connection.
    match conn.headers.forwarded_for.to_str() {
        Ok(ip) => c.insert_key(&k.source_ip, ip),
        Err(_) => c.insert_key(&k.source_ip, &conn.peer.ip().to_string()),
    }
    let now = crate::clock::iso8601_text(now);
    c.insert_key(
        &k.current_time,
        std::str::from_utf8(&now).unwrap_or_default(),
    );
    c.insert_key(&k.secure_transport, if conn.tls { "true" } else { "false" });
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
                if let Ok(value) = value.to_str() {
                    c.insert_under(&k.header, name.as_str(), value);
                }
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
        let name = String::from_utf8_lossy(&sigv4::percent_decode(name)).to_lowercase();
        let read = reads.iter().any(|r| r.queries.iter().any(|q| **q == *name));
        if read {
            let value = String::from_utf8_lossy(&sigv4::percent_decode(value)).into_owned();
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
