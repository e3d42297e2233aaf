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

use std::time::SystemTime;

use http::request::Parts;
use lattice_policy::Context;

use super::{identity::Caller, sigv4};
use crate::{
    config::PrincipalType,
    l7::{authz::Connection, sites::Site},
    resolve::Resolved,
};

/// Every condition key of one request, into `c` (empty; the caller reuses one
/// context's buffers request after request).
pub fn fill_request_context(
    c: &mut Context,
    resolved: &Resolved,
    site: &Site,
    conn: &Connection,
    parts: &Parts,
    caller: &Caller,
    now: SystemTime,
) {
    // One buffer for the keys made of a prefix and a name.
    let mut key = String::with_capacity(64);
    let mut port = [0u8; 5];
    c.insert("vpc-lattice-svcs:Port", decimal(&mut port, site.port));
    c.insert("vpc-lattice-svcs:RequestMethod", parts.method.as_str());
    c.insert("vpc-lattice-svcs:RequestPath", parts.uri.path());
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            c.insert(
                prefixed(&mut key, "vpc-lattice-svcs:RequestHeader/", name.as_str()),
                value,
            );
        }
    }
    for pair in parts.uri.query().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = String::from_utf8_lossy(&sigv4::percent_decode(name)).into_owned();
        let value = String::from_utf8_lossy(&sigv4::percent_decode(value)).into_owned();
        c.insert(
            prefixed(&mut key, "vpc-lattice-svcs:RequestQueryString/", &name),
            &value,
        );
    }
    c.insert(
        "vpc-lattice-svcs:ServiceArn",
        resolved.services[site.service].arn.as_str(),
    );
    c.insert(
        "vpc-lattice-svcs:ServiceNetworkArn",
        resolved.service_networks[site.network].arn.as_str(),
    );
    let vpc = &resolved.vpcs[site.vpc];
    c.insert("vpc-lattice-svcs:SourceVpc", vpc.id.as_str());
    c.insert(
        "vpc-lattice-svcs:SourceVpcOwnerAccount",
        vpc.account.as_str(),
    );
    match caller {
        Caller::Anonymous => c.insert("aws:PrincipalType", "Anonymous"),
        Caller::Authenticated { principal, .. } => {
            let kind = match principal.kind {
                PrincipalType::Role => "AssumedRole",
                PrincipalType::User => "User",
            };
            c.insert("aws:PrincipalType", kind);
            c.insert("aws:PrincipalAccount", principal.account.as_str());
            c.insert("aws:PrincipalArn", principal.arn.as_str());
            for (tag, value) in &principal.tags {
                c.insert(prefixed(&mut key, "aws:PrincipalTag/", tag), value);
            }
        }
    }
    // x-forwarded-for holds the same text, made once per connection.
    match conn.headers.forwarded_for.to_str() {
        Ok(ip) => c.insert("aws:SourceIp", ip),
        Err(_) => c.insert("aws:SourceIp", &conn.peer.ip().to_string()),
    }
    let now = crate::clock::iso8601_text(now);
    c.insert(
        "aws:CurrentTime",
        std::str::from_utf8(&now).unwrap_or_default(),
    );
    c.insert(
        "aws:SecureTransport",
        if conn.tls { "true" } else { "false" },
    );
}

/// `value` in decimal, in `digits`.
fn decimal(digits: &mut [u8; 5], mut value: u16) -> &str {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[start..]).unwrap_or_default()
}

/// `prefix` + `name` in `buf`.
fn prefixed<'b>(buf: &'b mut String, prefix: &str, name: &str) -> &'b str {
    buf.clear();
    buf.push_str(prefix);
    buf.push_str(name);
    buf
}
