//! Who is calling: a principal of the config (proven by a signed request or a client
//! certificate) or anonymous, and how targets learn it (Lattice's caller identity
//! headers).

use std::{collections::BTreeMap, fmt::Write as _, sync::Arc};

use http::HeaderValue;

use crate::config::PrincipalType;

/// A principal of the config, as the auth phase needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `arn:lattice:iam::<account>:role/<name>`.
    pub arn: String,
    pub account: String,
    pub kind: PrincipalType,
    pub tags: BTreeMap<String, String>,
    /// Its identity headers when a signature proved it, made once: every signed request
    /// of the principal carries the same (`None` when a value is no valid header value).
    signed_headers: (Option<HeaderValue>, Option<HeaderValue>),
}

impl Principal {
    pub fn new(
        arn: String,
        account: String,
        kind: PrincipalType,
        tags: BTreeMap<String, String>,
    ) -> Principal {
        let mut principal = Principal {
            arn,
            account,
            kind,
            tags,
            signed_headers: (None, None),
        };
        let signed = Caller::Authenticated {
            principal: Arc::new(principal.clone()),
            proof: Proof::Signature {
                access_key_id: Arc::from(""),
            },
        };
        let value = |text: Option<String>| HeaderValue::try_from(text?).ok();
        principal.signed_headers = (value(signed.identity_header()), value(signed.tags_header()));
        principal
    }
}

/// The fields of a client certificate that Lattice passes on (Roles Anywhere's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct X509Fields {
    pub issuer_ou: Option<String>,
    pub san_dns: Option<String>,
    pub san_uri: Option<String>,
    pub subject_cn: Option<String>,
}

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A SigV4 signature with this access key.
    Signature { access_key_id: Arc<str> },
    /// A client certificate of the principal's account CA.
    Certificate(Arc<X509Fields>),
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Authenticated {
        principal: Arc<Principal>,
        proof: Proof,
    },
}

impl Caller {
    /// What access logs and denial messages call the caller: the principal's ARN, or
    /// `anonymous`.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Authenticated { principal, .. } => &principal.arn,
        }
    }

    /// The `x-amzn-lattice-identity` value: `Principal=<arn>`, then the certificate's
    /// fields when a certificate proved it. `None` for anonymous callers, who get no
    /// such header.
    pub fn identity_header(&self) -> Option<String> {
        let Caller::Authenticated { principal, proof } = self else {
            return None;
        };
        let mut out = String::new();
        field(&mut out, "Principal", &principal.arn);
        if let Proof::Certificate(x509) = proof {
            for (name, value) in [
                ("X509Issuer/OU", &x509.issuer_ou),
                ("X509SAN/DNS", &x509.san_dns),
                ("X509SAN/URI", &x509.san_uri),
                ("X509Subject/CN", &x509.subject_cn),
            ] {
                if let Some(value) = value {
                    field(&mut out, name, value);
                }
            }
        }
        Some(out)
    }

    /// The `x-amzn-lattice-identity` and `x-amzn-lattice-identity-tags` header values
    /// (`None`: no such header): a signed caller's are the principal's, made once; a
    /// certificate's fields are the connection's, so they are made here.
    pub fn identity_values(&self) -> (Option<HeaderValue>, Option<HeaderValue>) {
        match self {
            Caller::Anonymous => (None, None),
            Caller::Authenticated {
                principal,
                proof: Proof::Signature { .. },
            } => principal.signed_headers.clone(),
            Caller::Authenticated {
                principal,
                proof: Proof::Certificate(_),
            } => (
                self.identity_header()
                    .and_then(|v| HeaderValue::try_from(v).ok()),
                principal.signed_headers.1.clone(),
            ),
        }
    }

    /// The `x-amzn-lattice-identity-tags` value: `principal=<arn>` and each tag as
    /// `key=value`. `None` for anonymous callers.
    pub fn tags_header(&self) -> Option<String> {
        let Caller::Authenticated { principal, .. } = self else {
            return None;
        };
        let mut out = String::new();
        field(&mut out, "principal", &principal.arn);
        for (key, value) in &principal.tags {
            field(&mut out, key, value);
        }
        Some(out)
    }
}

/// Appends `;name=value`, escaping semicolons in the value with a backslash as Lattice
/// does, and backslashes too, so that a value (a certificate's CN is the holder's to
/// choose) cannot end in a backslash that un-escapes the next separator for a target's
/// parser. Control characters, which no header may carry, are dropped.
fn field(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(';');
    }
    let _ = write!(out, "{name}=");
    for c in value.chars() {
        if c.is_control() {
            continue;
        }
        if c == ';' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Arc<Principal> {
        Arc::new(Principal::new(
            "arn:lattice:iam::111111111111:role/web".into(),
            "111111111111".into(),
            PrincipalType::Role,
            BTreeMap::from([("team".into(), "store;front".into())]),
        ))
    }

    #[test]
    fn a_value_cannot_break_out_of_its_field() {
        let mut out = String::new();
        field(
            &mut out,
            "X509Subject/CN",
            "web\\;X509SAN/URI=spiffe://x/admin\n",
        );
        assert_eq!(out, "X509Subject/CN=web\\\\\\;X509SAN/URI=spiffe://x/admin");
        // Read back as a target would (a backslash escapes the next character), the
        // value is one field.
        let mut fields = 1;
        let mut escaped = false;
        for c in out.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, ';') => fields += 1,
                _ => {}
            }
        }
        assert_eq!(fields, 1, "{out}");
    }

    #[test]
    fn headers_as_lattice_writes_them() {
        assert_eq!(Caller::Anonymous.identity_header(), None);
        assert_eq!(Caller::Anonymous.name(), "anonymous");
        let signed = Caller::Authenticated {
            principal: web(),
            proof: Proof::Signature {
                access_key_id: Arc::from("LKIA"),
            },
        };
        assert_eq!(
            signed.identity_header().unwrap(),
            "Principal=arn:lattice:iam::111111111111:role/web"
        );
        assert_eq!(
            signed.tags_header().unwrap(),
            "principal=arn:lattice:iam::111111111111:role/web;team=store\\;front"
        );
        let certified = Caller::Authenticated {
            principal: web(),
            proof: Proof::Certificate(Arc::new(X509Fields {
                issuer_ou: Some("lattice".into()),
                san_dns: None,
                san_uri: Some("spiffe://lattice/account/111111111111/role/web".into()),
                subject_cn: Some("web".into()),
            })),
        };
        assert_eq!(
            certified.identity_header().unwrap(),
            "Principal=arn:lattice:iam::111111111111:role/web;X509Issuer/OU=lattice;\
             X509SAN/URI=spiffe://lattice/account/111111111111/role/web;X509Subject/CN=web"
        );
        // The header values as sent are the same texts, whichever way they are made.
        for caller in [&signed, &certified] {
            let (identity, tags) = caller.identity_values();
            assert_eq!(
                identity.unwrap().to_str().unwrap(),
                caller.identity_header().unwrap()
            );
            assert_eq!(
                tags.unwrap().to_str().unwrap(),
                caller.tags_header().unwrap()
            );
        }
        assert_eq!(Caller::Anonymous.identity_values(), (None, None));
    }
}
