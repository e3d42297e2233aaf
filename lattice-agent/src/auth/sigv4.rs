//! AWS Signature Version 4, the verifying side: requests signed for the service
//! `vpc-lattice-svcs` with one of the access keys of the config's principals.
//!
//! The canonical request is rebuilt from what arrived, exactly as the signer built it
//! (AWS's "Create a signed AWS API request" steps, and what botocore's `SigV4Auth` and
//! Rust's `aws-sigv4` do for a non-S3 service):
//!
//! | part | rule |
//! | --- | --- |
//! | method | as sent |
//! | URI | dot segments and empty segments removed, then percent-encoded once more (so `%20` becomes `%2520`): non-S3 services encode twice |
//! | query | pairs sorted by key then value; each key and value decoded and re-encoded with only unreserved characters left (botocore signs the pairs as they are written in the URL: when that differs, that form is tried too) |
//! | headers | the names listed in SignedHeaders, each `name:value` with the values of all its fields joined by `,`, trimmed and with inner runs of spaces made one; HTTP/2's `:authority` stands for `host` |
//! | payload | the `x-amz-content-sha256` header when present (`UNSIGNED-PAYLOAD` or a hex SHA-256), otherwise the SHA-256 of the body |
//!
//! Replay limit: the request's `x-amz-date` (or `Date`) must be within five minutes of
//! the agent's clock, in either direction, and the credential scope's date must be that
//! date; a captured request is useless after that. Session tokens
//! (`x-amz-security-token`) are refused: lattice has no token service that could have
//! issued one. Signatures are compared in constant time.

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt::Write as _,
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwapOption;
use hmac::{Hmac, Mac};

use crate::{
    clock::{format_amz_date, parse_amz_date},
    percent,
};
use http::{header, request::Parts, HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The signing algorithm of SigV4 (SigV4a's ECDSA is not supported).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service name requests to lattice services are signed for.
pub const SERVICE: &str = "vpc-lattice-svcs";
/// The payload hash of a request whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// How far the request's time may be from the agent's clock (AWS: five minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);
/// The SHA-256 of an empty body, in hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// The headers SigV4 reads, named once (a name given as text is parsed at each lookup).
const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Why a signed request is refused. The messages are AWS's where AWS has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    #[error("IncompleteSignatureException: Authorization header requires {0}")]
    Incomplete(&'static str),
    #[error("IncompleteSignatureException: {0}")]
    Malformed(String),
    #[error("UnrecognizedClientException: The security token included in the request is invalid (unknown access key {0:?})")]
    UnknownAccessKey(String),
    #[error("InvalidSignatureException: Credential should be scoped to {what} {expected:?}, not {got:?}")]
    Scope {
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error("IncompleteSignatureException: the request has no x-amz-date or Date header")]
    MissingDate,
    #[error("IncompleteSignatureException: Date {0:?} is not a valid date")]
    BadDate(String),
    #[error("InvalidSignatureException: Signature expired or not yet valid: {request_time} is more than 5 minutes from the agent's time {now}")]
    Expired { request_time: String, now: String },
    #[error("InvalidSignatureException: 'host' must be a signed header")]
    HostNotSigned,
    #[error("InvalidSignatureException: signed header {0:?} is not in the request")]
    SignedHeaderMissing(String),
    #[error(
        "UnrecognizedClientException: session tokens (x-amz-security-token) are not supported"
    )]
    SessionToken,
    #[error("InvalidSignatureException: The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")]
    Mismatch,
    #[error("InvalidSignatureException: The provided 'x-amz-content-sha256' header does not match what was computed.")]
    PayloadMismatch,
    /// The signature holds, but for a host that is not the service called: a request
    /// signed for one service is not taken by another (replayed at its address).
    #[error("InvalidSignatureException: the request was signed for host {host:?}, which does not name this service ({service})")]
    ForAnotherHost { host: String, service: String },
}

/// The secret of one access key and who owns it.
struct Key<T> {
    /// `"AWS4" + secret`, the HMAC key of the first derivation step.
    k_secret: Vec<u8>,
    owner: T,
    /// The HMAC keyed with the last derived signing key, and its day (`YYYYMMDD`):
    /// deriving takes four HMACs and keying a fifth one two hashes, and a day's requests
    /// all use the same one. Read without a lock: a mutex here was a write to a cache
    /// line every worker thread shares, twice per request.
    signing: ArcSwapOption<([u8; 8], HmacSha256)>,
}

impl<T> Key<T> {
    /// An HMAC keyed with the signing key of `date` and `region`, ready for the string
    /// to sign.
    fn signing_mac(&self, date: &str, region: &str) -> HmacSha256 {
        let day: Option<[u8; 8]> = date.as_bytes().try_into().ok();
        if let (Some(day), Some(cached)) = (day, &*self.signing.load()) {
            if cached.0 == day {
                return cached.1.clone();
            }
        }
        let k_date = hmac(&self.k_secret, date.as_bytes());
        let k_region = hmac(&k_date, region.as_bytes());
        let k_service = hmac(&k_region, SERVICE.as_bytes());
        let k_signing = hmac(&k_service, b"aws4_request");
        let mac = HmacSha256::new_from_slice(&k_signing).expect("HMAC takes any key");
        if let Some(day) = day {
            self.signing.store(Some(Arc::new((day, mac.clone()))));
        }
        mac
    }
}

/// Every access key the agent accepts, with the principal (`T`) it belongs to.
pub struct Keyring<T> {
    region: String,
    keys: HashMap<String, Key<T>>,
}

impl<T> Keyring<T> {
    /// A keyring for requests scoped to `region`.
    pub fn new(region: impl Into<String>) -> Self {
        Keyring {
            region: region.into(),
            keys: HashMap::new(),
        }
    }

    /// Adds an access key (the secret is the whole content of the key's secret file,
    /// without surrounding whitespace).
    pub fn insert(&mut self, access_key_id: impl Into<String>, secret: &str, owner: T) {
        let mut k_secret = b"AWS4".to_vec();
        k_secret.extend_from_slice(secret.trim().as_bytes());
        let key = Key {
            k_secret,
            owner,
            signing: ArcSwapOption::empty(),
        };
        self.keys.insert(access_key_id.into(), key);
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// The SignedHeaders value as sent (`a;b;c`: lowercase, none empty).
    pub signed_headers: &'a str,
    pub signature: [u8; 32],
}

impl<'a> Authorization<'a> {
    /// The names of the signed headers, in their order.
    pub fn signed_header_names(&self) -> impl Iterator<Item = &'a str> {
        pieces(self.signed_headers, b';')
    }
}

/// `text` split at each `sep` (an ASCII byte). The pieces of an Authorization header
/// are a few bytes to a few dozen long: `str::split`'s searcher cost a quarter of the
/// verification in a profile, and a byte-at-a-time scan most of the parse; `memchr`
/// looks at a word or a vector at a time.
fn pieces(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(sep, current.as_bytes()) {
            Some(i) => {
                rest = Some(&current[i + 1..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Whether a request claims an AWS signature: an `Authorization` header of an `AWS4-`
/// scheme (any case: SigV4, or SigV4A, which `verify` refuses), or a presigned query
/// (`X-Amz-Signature`, `X-Amz-Algorithm`). Lattice authenticates every request so
/// signed, and refuses it when that fails, rather than letting it on as anonymous
/// with a signature nobody checked. Other `Authorization` schemes are the
/// application's business: such a request is anonymous to lattice and the header goes
/// on to the target.
pub fn is_signed(headers: &HeaderMap, query: Option<&str>) -> bool {
    // The scheme is all that is read here: `verify` checks the whole value's text.
    let aws_scheme = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| {
            let v = v.as_bytes().trim_ascii_start();
            v.len() >= 5 && v[..5].eq_ignore_ascii_case(b"AWS4-")
        });
    aws_scheme || query.is_some_and(presigned)
}

/// Whether a query carries a presigned URL's signature parameters.
fn presigned(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        name.eq_ignore_ascii_case("X-Amz-Signature") || name.eq_ignore_ascii_case("X-Amz-Algorithm")
    })
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20261124/local/vpc-lattice-svcs/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=<64 hex>`.
pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    let rest = value
        .trim_ascii()
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| SigV4Error::Malformed(format!("the algorithm must be {ALGORITHM}")))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in pieces(rest, b',') {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        let (name, v) = memchr::memchr(b'=', part.as_bytes())
            .map(|i| (&part[..i], &part[i + 1..]))
            .ok_or_else(|| SigV4Error::Malformed(format!("{part:?} is not name=value")))?;
        match name.trim_ascii() {
            "Credential" => credential = Some(v.trim_ascii()),
            "SignedHeaders" => signed = Some(v.trim_ascii()),
            "Signature" => signature = Some(v.trim_ascii()),
            other => {
                return Err(SigV4Error::Malformed(format!(
                    "unknown Authorization component {other:?}"
                )))
            }
        }
    }
    let credential = credential.ok_or(SigV4Error::Incomplete("a Credential"))?;
    let signed = signed.ok_or(SigV4Error::Incomplete("a SignedHeaders"))?;
    let signature = signature.ok_or(SigV4Error::Incomplete("a Signature"))?;
    let mut scope = pieces(credential, b'/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(SigV4Error::Malformed(format!(
            "Credential {credential:?} must be <key id>/<yyyymmdd>/<region>/<service>/aws4_request"
        )));
    };
    if terminator != "aws4_request" {
        return Err(SigV4Error::Malformed(format!(
            "Credential {credential:?} must end in aws4_request"
        )));
    }
    let signature = decode_signature(signature)
        .ok_or_else(|| SigV4Error::Malformed("Signature must be 64 hex digits".into()))?;
    if pieces(signed, b';').any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase())) {
        return Err(SigV4Error::Malformed(format!(
            "SignedHeaders {signed:?} must be lowercase names separated by ';'"
        )));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed,
        signature,
    })
}

/// 64 hex digits (either case) as the 32 bytes of a signature.
fn decode_signature(hex: &str) -> Option<[u8; 32]> {
    let digits: &[u8; 64] = hex.as_bytes().try_into().ok()?;
    let mut out = [0u8; 32];
    // A table lookup a digit, and one test for a bad digit at the end: the branches of
    // a per-digit match were a tenth of the verification.
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        bad |= high | low;
        *byte = high << 4 | (low & 0x0f);
    }
    (bad & NOT_HEX == 0).then_some(out)
}

/// Marks a byte that is not a hex digit in [`NIBBLES`].
const NOT_HEX: u8 = 0x80;

/// Each byte's value as a hex digit, or [`NOT_HEX`].
const NIBBLES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            d @ b'0'..=b'9' => d - b'0',
            d @ b'a'..=b'f' => d - b'a' + 10,
            d @ b'A'..=b'F' => d - b'A' + 10,
            _ => NOT_HEX,
        };
        b += 1;
    }
    table
};

/// What remains to check once the head verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadCheck {
    /// Nothing: the payload is unsigned, or its hash was computed from the body.
    Done,
    /// The body must hash to this (lowercase hex), as `x-amz-content-sha256` claims.
    MustHash(String),
}

/// Where the payload hash of the canonical request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// The `x-amz-content-sha256` header is present: its value is what was signed.
    Claimed(&'a str),
    /// No such header: the signer hashed the body; this is that hash (hex).
    Hashed(&'a str),
}

impl<'a> Payload<'a> {
    /// The claimed payload hash of a request, if it names one.
    pub fn claimed(headers: &'a HeaderMap) -> Option<Payload<'a>> {
        headers
            .get(X_AMZ_CONTENT_SHA256)
            .and_then(|v| v.to_str().ok())
            .map(|v| Payload::Claimed(v.trim()))
    }
}

/// The request target as the caller sent it, kept in the request's extensions when the
/// proxy put its path in normal form (`l7::path`): the signature was made over this one.
#[derive(Debug, Clone)]
pub struct SignedTarget(pub http::Uri);

/// Verifies a signed request's head. `payload` says what the payload hash is; `now` is
/// the agent's clock. On success, the owner of the access key and what is left to
/// check of the body.
pub fn verify<'k, T>(
    keyring: &'k Keyring<T>,
    parts: &Parts,
    payload: Payload<'_>,
    now: SystemTime,
) -> Result<(&'k T, PayloadCheck), SigV4Error> {
    let (auth, key, amz_date) = checked_head(keyring, parts, now)?;
    let payload_hash = match payload {
        Payload::Claimed(v) | Payload::Hashed(v) => v,
    };
    // The path and query as the caller sent (and signed) them.
    let target = parts
        .extensions
        .get::<SignedTarget>()
        .map_or(&parts.uri, |t| &t.0);
    let uri = canonical_uri(target.path());
    let keyed = key.signing_mac(auth.date, &keyring.region);
    let query = target.query().unwrap_or("");
    let canonical_query = canonical_query(query);
    let as_written = query_as_written(query);
    let mut queries = [Some(canonical_query.as_str()), None];
    if as_written != canonical_query {
        queries[1] = Some(as_written.as_str());
    }
    // The canonical request and the string to sign are each assembled in one buffer
    // and hashed in one call: fed to the hash a piece at a time (eleven pieces, most a
    // few bytes), the hash's buffering cost more than the hashing.
    let mut canonical = String::with_capacity(512);
    let mut to_sign = String::with_capacity(160);
    let mut matched = false;
    for q in queries.into_iter().flatten() {
        canonical.clear();
        for part in [parts.method.as_str(), "\n", &uri, "\n", q, "\n"] {
            canonical.push_str(part);
        }
        write_canonical_headers(&mut canonical, parts, auth.signed_header_names())?;
        for part in ["\n", auth.signed_headers, "\n", payload_hash] {
            canonical.push_str(part);
        }
        let mut hex_hash = [0u8; 64];
        hex::encode_to_slice(Sha256::digest(canonical.as_bytes()), &mut hex_hash)
            .expect("64 hex digits");
        to_sign.clear();
        for part in [
            ALGORITHM,
            "\n",
            &amz_date,
            "\n",
            auth.date,
            "/",
            auth.region,
            "/",
            auth.service,
            "/aws4_request\n",
            std::str::from_utf8(&hex_hash).expect("hex digits are ASCII"),
        ] {
            to_sign.push_str(part);
        }
        let mut mac = keyed.clone();
        mac.update(to_sign.as_bytes());
        if mac.verify_slice(&auth.signature).is_ok() {
            matched = true;
            break;
        }
    }
    if !matched {
        return Err(SigV4Error::Mismatch);
    }
    let check = match payload {
        Payload::Claimed(v) if v == UNSIGNED_PAYLOAD => PayloadCheck::Done,
        Payload::Claimed(v) => {
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(SigV4Error::PayloadMismatch);
            }
            PayloadCheck::MustHash(v.to_ascii_lowercase())
        }
        Payload::Hashed(_) => PayloadCheck::Done,
    };
    Ok((&key.owner, check))
}

/// Everything about a signed request that can be checked without its body: the
/// Authorization header, the access key, the credential scope, the time window, a
/// signed host. A body is read to hash it only after these hold, so an unsigned
/// stranger cannot make the proxy buffer megabytes for a signature that names no key.
pub fn precheck<T>(keyring: &Keyring<T>, parts: &Parts, now: SystemTime) -> Result<(), SigV4Error> {
    checked_head(keyring, parts, now).map(|_| ())
}

/// [`precheck`]'s checks; the parsed header, the key, and the request's `x-amz-date`.
fn checked_head<'k, 'p, T>(
    keyring: &'k Keyring<T>,
    parts: &'p Parts,
    now: SystemTime,
) -> Result<(Authorization<'p>, &'k Key<T>, Cow<'p, str>), SigV4Error> {
    if parts.uri.query().is_some_and(presigned) {
        return Err(SigV4Error::Malformed(
            "signatures in the query string (presigned URLs) are not supported; sign the Authorization header".into(),
        ));
    }
    let mut headers = parts.headers.get_all(http::header::AUTHORIZATION).iter();
    let header = headers
        .next()
        .ok_or(SigV4Error::Incomplete("an Authorization header"))?;
    if headers.next().is_some() {
        return Err(SigV4Error::Malformed(
            "more than one Authorization header".into(),
        ));
    }
    let header = header
        .to_str()
        .map_err(|_| SigV4Error::Malformed("the Authorization header is not ASCII text".into()))?;
    let auth = parse_authorization(header)?;
    if parts.headers.contains_key(X_AMZ_SECURITY_TOKEN) {
        return Err(SigV4Error::SessionToken);
    }
    let key = keyring
        .keys
        .get(auth.access_key_id)
        .ok_or_else(|| SigV4Error::UnknownAccessKey(auth.access_key_id.to_owned()))?;
    if auth.service != SERVICE {
        return Err(SigV4Error::Scope {
            what: "service",
            expected: SERVICE.into(),
            got: auth.service.into(),
        });
    }
    if auth.region != keyring.region {
        return Err(SigV4Error::Scope {
            what: "region",
            expected: keyring.region.clone(),
            got: auth.region.into(),
        });
    }
    let (amz_date, request_time) = request_time(&parts.headers)?;
    let skew = match now.duration_since(request_time) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > MAX_SKEW {
        return Err(SigV4Error::Expired {
            request_time: amz_date.into_owned(),
            now: format_amz_date(now),
        });
    }
    if auth.date != &amz_date[..8] {
        return Err(SigV4Error::Scope {
            what: "date",
            expected: amz_date[..8].to_owned(),
            got: auth.date.into(),
        });
    }
    if !auth.signed_header_names().any(|h| h == "host") {
        return Err(SigV4Error::HostNotSigned);
    }
    Ok((auth, key, amz_date))
}

/// The SHA-256 of a body, in lowercase hex.
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The request's signing time: `x-amz-date` (`20261124T234007Z`), or else `Date`
/// (RFC 9110 format). Returned as the x-amz-date string and as a time.
fn request_time(headers: &HeaderMap) -> Result<(Cow<'_, str>, SystemTime), SigV4Error> {
    if let Some(v) = headers.get(X_AMZ_DATE) {
        let text = v
            .to_str()
            .map_err(|_| SigV4Error::BadDate(format!("{v:?}")))?
            .trim();
        let time = parse_amz_date(text).ok_or_else(|| SigV4Error::BadDate(text.to_owned()))?;
        return Ok((Cow::Borrowed(text), time));
    }
    let v = headers
        .get(http::header::DATE)
        .ok_or(SigV4Error::MissingDate)?;
    let text = v
        .to_str()
        .map_err(|_| SigV4Error::BadDate(format!("{v:?}")))?;
    let time =
        httpdate::parse_http_date(text.trim()).map_err(|_| SigV4Error::BadDate(text.to_owned()))?;
    Ok((Cow::Owned(format_amz_date(time)), time))
}

/// Appends `name:value\n` for each signed header to `out`, in the order SignedHeaders
/// lists them.
fn write_canonical_headers<'a>(
    out: &mut String,
    parts: &Parts,
    signed: impl Iterator<Item = &'a str>,
) -> Result<(), SigV4Error> {
    for name in signed {
        out.push_str(name);
        out.push(':');
        // The names every signer signs are looked up without parsing them.
        let values = match name {
            "host" => parts.headers.get_all(header::HOST),
            "x-amz-date" => parts.headers.get_all(X_AMZ_DATE),
            "x-amz-content-sha256" => parts.headers.get_all(X_AMZ_CONTENT_SHA256),
            other => parts.headers.get_all(other),
        };
        let mut values = values.iter().peekable();
        if values.peek().is_none() {
            // HTTP/2 carries the host in `:authority`, which hyper puts in the URI.
            match (name, parts.uri.authority()) {
                ("host", Some(authority)) => out.push_str(authority.as_str()),
                _ => return Err(SigV4Error::SignedHeaderMissing(name.to_owned())),
            }
        }
        let mut first = true;
        for value in values {
            if !first {
                out.push(',');
            }
            first = false;
            let text = String::from_utf8_lossy(value.as_bytes());
            let mut words = text.split_ascii_whitespace();
            if let Some(w) = words.next() {
                out.push_str(w);
                for w in words {
                    out.push(' ');
                    out.push_str(w);
                }
            }
        }
        out.push('\n');
    }
    Ok(())
}

/// Whether a byte stays as it is in URI encoding (RFC 3986's unreserved characters).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn encode_into(out: &mut String, bytes: &[u8], keep_slash: bool) {
    for &b in bytes {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The canonical URI of a path as it arrived (already percent-encoded once by the
/// client): dot and empty segments removed, then encoded again.
pub fn canonical_uri(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    // The usual path (`/api/orders`) is its own canonical form: nothing to remove,
    // nothing to encode.
    let plain = path.starts_with('/')
        && !path.contains("//")
        && path
            .split('/')
            .all(|segment| segment != "." && segment != "..")
        && path.bytes().all(|b| unreserved(b) || b == b'/');
    if plain {
        return Cow::Borrowed(path);
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = String::with_capacity(path.len() + 2);
    if path.starts_with('/') {
        normalized.push('/');
    }
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    let mut out = String::with_capacity(normalized.len() + 8);
    encode_into(&mut out, normalized.as_bytes(), true);
    Cow::Owned(out)
}

/// The canonical query string by the SigV4 rules: each key and value decoded, then
/// encoded with only unreserved characters kept; pairs sorted.
pub fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let mut key = String::new();
            let mut value = String::new();
            encode_into(&mut key, &percent::decode(k), false);
            encode_into(&mut value, &percent::decode(v), false);
            (key, value)
        })
        .collect();
    pairs.sort();
    join_pairs(&pairs)
}

/// The query as botocore signs a URL's own query: pairs as written, sorted.
fn query_as_written(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    pairs.sort();
    join_pairs(&pairs)
}

fn join_pairs(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn at(amz: &str) -> SystemTime {
        parse_amz_date(amz).unwrap()
    }

    /// AWS's SigV4 test suite, "get-vanilla" (service `service`, region `us-east-1`),
    /// re-scoped: the derivation and the string to sign are the same code.
    #[test]
    fn aws_test_suite_get_vanilla_derivation() {
        let k_secret = b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_vec();
        let k = hmac(&k_secret, b"20150830");
        let k = hmac(&k, b"us-east-1");
        let k = hmac(&k, b"service");
        let k = hmac(&k, b"aws4_request");
        let canonical = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let sts = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical))
        );
        assert_eq!(
            hex::encode(hmac(&k, sts.as_bytes())),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// Signed by botocore 1.43 (`SigV4Auth(Credentials(AKID, SECRET), "vpc-lattice-svcs",
    /// "local")`) with the clock at 2026-11-24T23:50:00Z: the request below, as sent.
    const AKID: &str = "LKIAWEB0000000000001";
    const SECRET: &str = "lattice-test-secret-key/0000000000000000";

    fn keyring() -> Keyring<&'static str> {
        let mut k = Keyring::new("local");
        k.insert(AKID, SECRET, "web");
        k
    }

    /// Signs like a client would (the same canonicalization; the independent check is
    /// the botocore end-to-end test).
    fn sign(parts: &mut Parts, payload: &str, amz_date: &str, secret: &str) {
        let mut names: Vec<String> = parts
            .headers
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        names.sort();
        names.dedup();
        let signed: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut ch = String::new();
        write_canonical_headers(&mut ch, parts, signed.iter().copied()).unwrap();
        let cr = format!(
            "{}\n{}\n{}\n{ch}\n{}\n{payload}",
            parts.method,
            canonical_uri(parts.uri.path()),
            canonical_query(parts.uri.query().unwrap_or("")),
            signed.join(";")
        );
        let date = &amz_date[..8];
        let sts = format!(
            "{ALGORITHM}\n{amz_date}\n{date}/local/{SERVICE}/aws4_request\n{}",
            hex::encode(Sha256::digest(cr))
        );
        let mut k = b"AWS4".to_vec();
        k.extend_from_slice(secret.as_bytes());
        let k = hmac(
            &hmac(
                &hmac(&hmac(&k, date.as_bytes()), b"local"),
                SERVICE.as_bytes(),
            ),
            b"aws4_request",
        );
        let sig = hex::encode(hmac(&k, sts.as_bytes()));
        let value = format!(
            "{ALGORITHM} Credential={AKID}/{date}/local/{SERVICE}/aws4_request, SignedHeaders={}, Signature={sig}",
            signed.join(";")
        );
        parts
            .headers
            .insert(http::header::AUTHORIZATION, value.parse().unwrap());
    }

    const NOW: &str = "20261124T235000Z";

    fn signed_get(extra: &[(&str, &str)]) -> Parts {
        let mut headers = vec![("host", "orders.shop.internal"), ("x-amz-date", NOW)];
        headers.extend_from_slice(extra);
        let mut p = parts("GET", "/api/items?b=2&a=1", &headers);
        sign(&mut p, EMPTY_SHA256, NOW, SECRET);
        p
    }

    #[test]
    fn a_correctly_signed_request_verifies() {
        let p = signed_get(&[]);
        let keyring = keyring();
        let (owner, check) = verify(&keyring, &p, Payload::Hashed(EMPTY_SHA256), at(NOW)).unwrap();
        assert_eq!(*owner, "web");
        assert_eq!(check, PayloadCheck::Done);
    }

    /// Signatures botocore 1.43 made (`SigV4Auth(Credentials(AKID, SECRET),
    /// "vpc-lattice-svcs", "local")`, clock at 2026-11-24T23:50:00Z): an independent
    /// signer agrees with this verifier on paths, repeated query keys and bodies.
    #[test]
    fn botocore_signatures_verify() {
        let k = keyring();
        let get = parts(
            "GET",
            "/api/items%20x?tag=b&tag=a&q=a%20b",
            &[
                ("host", "orders.shop.internal"),
                ("x-amz-date", NOW),
                ("authorization", "AWS4-HMAC-SHA256 Credential=LKIAWEB0000000000001/20261124/local/vpc-lattice-svcs/aws4_request, SignedHeaders=host;x-amz-date, Signature=2925f64d6f52e01f471975e70f5439357ba94b1846295c4b3cd2367f4796a961"),
            ],
        );
        assert!(verify(&k, &get, Payload::Hashed(EMPTY_SHA256), at(NOW)).is_ok());
        let body = br#"{"qty":1}"#;
        let post = parts(
            "POST",
            "/api/orders",
            &[
                ("host", "orders.shop.internal"),
                ("content-type", "application/json"),
                ("x-amz-date", NOW),
                ("authorization", "AWS4-HMAC-SHA256 Credential=LKIAWEB0000000000001/20261124/local/vpc-lattice-svcs/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=f79b23f0cef4fb02e254bd5e814976f07b24e20a85204b9ca0aa437269a8a880"),
            ],
        );
        let hash = sha256_hex(body);
        assert!(verify(&k, &post, Payload::Hashed(&hash), at(NOW)).is_ok());
        let other = sha256_hex(br#"{"qty":9}"#);
        assert_eq!(
            verify(&k, &post, Payload::Hashed(&other), at(NOW)).unwrap_err(),
            SigV4Error::Mismatch
        );
    }

    /// Requests signed by AWS's Rust signer (`aws-sigv4`, as the AWS SDK for Rust uses
    /// it): hashed and unsigned payloads, a query to re-encode, a path with a space.
    #[test]
    fn aws_sigv4_crate_signatures_verify() {
        use aws_credential_types::Credentials;
        use aws_sigv4::http_request::{
            sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
        };

        let identity = Credentials::new(AKID, SECRET, None, None, "test").into();
        let k = keyring();
        let cases: [(&str, &str, &[u8], bool); 4] = [
            ("GET", "/api/items", b"", false),
            (
                "GET",
                "/api/a%20b/items?tag=b&tag=a&q=x%2Fy&empty=",
                b"",
                false,
            ),
            ("POST", "/api/orders", br#"{"qty":1}"#, false),
            ("PUT", "/api/orders/7", b"streamed", true),
        ];
        for (method, path, body, unsigned) in cases {
            let mut settings = SigningSettings::default();
            if unsigned {
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            }
            let params = aws_sigv4::sign::v4::SigningParams::builder()
                .identity(&identity)
                .region("local")
                .name(SERVICE)
                .time(at(NOW))
                .settings(settings)
                .build()
                .unwrap()
                .into();
            let url = format!("http://orders.shop.internal{path}");
            let headers = [
                ("host", "orders.shop.internal"),
                ("content-type", "text/plain"),
            ];
            let signable_body = if unsigned {
                SignableBody::UnsignedPayload
            } else {
                SignableBody::Bytes(body)
            };
            let signable =
                SignableRequest::new(method, &url, headers.into_iter(), signable_body).unwrap();
            let (instructions, _) = sign(signable, &params).unwrap().into_parts();
            let mut request = http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "orders.shop.internal")
                .header("content-type", "text/plain")
                .body(())
                .unwrap();
            instructions.apply_to_request_http1x(&mut request);
            let (p, ()) = request.into_parts();
            let hash = sha256_hex(body);
            let payload = Payload::claimed(&p.headers).unwrap_or(Payload::Hashed(&hash));
            let verified = verify(&k, &p, payload, at(NOW));
            assert!(verified.is_ok(), "{method} {path}: {verified:?}");
        }
    }

    #[test]
    fn refusals_name_their_reason() {
        let k = keyring();
        let now = at(NOW);
        // A changed signed header.
        let mut p = signed_get(&[("x-team", "a")]);
        p.headers.insert("x-team", "b".parse().unwrap());
        assert_eq!(
            verify(&k, &p, Payload::Hashed(EMPTY_SHA256), now).unwrap_err(),
            SigV4Error::Mismatch
        );
        // A wrong secret.
        let mut p = parts("GET", "/", &[("host", "h"), ("x-amz-date", NOW)]);
        sign(&mut p, EMPTY_SHA256, NOW, "not-the-secret");
        assert_eq!(
            verify(&k, &p, Payload::Hashed(EMPTY_SHA256), now).unwrap_err(),
            SigV4Error::Mismatch
        );
        // Sixteen minutes old.
        let old = "20261124T233400Z";
        let mut p = parts("GET", "/", &[("host", "h"), ("x-amz-date", old)]);
        sign(&mut p, EMPTY_SHA256, old, SECRET);
        assert!(matches!(
            verify(&k, &p, Payload::Hashed(EMPTY_SHA256), now).unwrap_err(),
            SigV4Error::Expired { .. }
        ));
        // Four minutes in the future is within the window.
        let soon = "20261124T235400Z";
        let mut p = parts("GET", "/", &[("host", "h"), ("x-amz-date", soon)]);
        sign(&mut p, EMPTY_SHA256, soon, SECRET);
        assert!(verify(&k, &p, Payload::Hashed(EMPTY_SHA256), now).is_ok());
        // A changed path, query or method.
        for (method, uri) in [
            ("GET", "/api/items?b=2&a=2"),
            ("GET", "/api/other?b=2&a=1"),
            ("POST", "/api/items?b=2&a=1"),
        ] {
            let mut p = signed_get(&[]);
            p.method = method.parse().unwrap();
            p.uri = uri.parse().unwrap();
            assert_eq!(
                verify(&k, &p, Payload::Hashed(EMPTY_SHA256), now).unwrap_err(),
                SigV4Error::Mismatch,
                "{method} {uri}"
            );
        }
        // Unknown key, session token, host not signed.
        let mut p = signed_get(&[]);
        let auth = p.headers[http::header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .replace(AKID, "LKIAOTHER");
        p.headers
            .insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        assert!(
            matches!(verify(&k, &p, Payload::Hashed(EMPTY_SHA256), now).unwrap_err(), SigV4Error::UnknownAccessKey(id) if id == "LKIAOTHER")
        );
        let mut p = signed_get(&[]);
        p.headers
            .insert("x-amz-security-token", "t".parse().unwrap());
        assert_eq!(
            verify(&k, &p, Payload::Hashed(EMPTY_SHA256), now).unwrap_err(),
            SigV4Error::SessionToken
        );
    }

    #[test]
    fn a_claimed_payload_hash_is_signed_and_must_match_the_body() {
        let k = keyring();
        let body_hash = sha256_hex(b"{\"qty\":1}");
        let mut p = parts(
            "POST",
            "/api/orders",
            &[
                ("host", "h"),
                ("x-amz-date", NOW),
                ("x-amz-content-sha256", &body_hash),
            ],
        );
        sign(&mut p, &body_hash, NOW, SECRET);
        let claimed = Payload::claimed(&p.headers).unwrap();
        let (_, check) = verify(&k, &p, claimed, at(NOW)).unwrap();
        assert_eq!(check, PayloadCheck::MustHash(body_hash));

        let mut p = parts(
            "POST",
            "/api/orders",
            &[
                ("host", "h"),
                ("x-amz-date", NOW),
                ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
            ],
        );
        sign(&mut p, UNSIGNED_PAYLOAD, NOW, SECRET);
        let claimed = Payload::claimed(&p.headers).unwrap();
        assert_eq!(
            verify(&k, &p, claimed, at(NOW)).unwrap().1,
            PayloadCheck::Done
        );
    }

    #[test]
    fn canonical_forms() {
        // Non-S3 services encode the path twice, and normalize it.
        assert_eq!(canonical_uri("/a%20b/./c/../d"), "/a%2520b/d");
        assert_eq!(canonical_uri("//x//y/"), "/x/y/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/~user/a-b_c.d"), "/~user/a-b_c.d");
        // Paths that look plain but are not: each takes the full rules.
        assert_eq!(canonical_uri("/a/./b"), "/a/b");
        assert_eq!(canonical_uri("/a/.."), "/");
        assert_eq!(canonical_uri("/a b"), "/a%20b");
        assert_eq!(canonical_uri("a/b"), "a/b");
        assert!(matches!(
            canonical_uri("/api/orders/"),
            Cow::Borrowed("/api/orders/")
        ));
        // Query pairs sorted by key then value, strictly encoded.
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("q=a b*&x"), "q=a%20b%2A&x=");
        assert_eq!(canonical_query("q=%7e%2f"), "q=~%2F");
        assert_eq!(query_as_written("q=a*&b=1"), "b=1&q=a*");
    }

    #[test]
    fn authorization_headers_parse_or_name_what_is_wrong() {
        let sig = "ab".repeat(32);
        let scope = "AKID/20261124/local/vpc-lattice-svcs/aws4_request";
        let ok = format!(
            "AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, Signature={sig}"
        );
        let a = parse_authorization(&ok).unwrap();
        assert_eq!(
            (a.access_key_id, a.date, a.region, a.service),
            ("AKID", "20261124", "local", "vpc-lattice-svcs")
        );
        assert_eq!(
            a.signed_header_names().collect::<Vec<_>>(),
            ["host", "x-amz-date"]
        );
        assert_eq!(a.signature, [0xab; 32]);
        // Spacing and order as various signers write them.
        let spaced = format!(
            "  AWS4-HMAC-SHA256 Signature = {sig} ,SignedHeaders=host,, Credential={scope}  "
        );
        let b = parse_authorization(&spaced).unwrap();
        assert_eq!((b.signed_headers, b.signature), ("host", [0xab; 32]));
        for (value, wrong) in [
            (format!("AWS4-HMAC-SHA512 Credential={scope}"), "the algorithm"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, Oops"), "\"Oops\" is not name=value"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, Extra=1"), "unknown Authorization component \"Extra\""),
            (format!("AWS4-HMAC-SHA256 SignedHeaders=host, Signature={sig}"), "a Credential"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, Signature={sig}"), "a SignedHeaders"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host"), "a Signature"),
            (format!("AWS4-HMAC-SHA256 Credential=AKID/20261124/local/aws4_request, SignedHeaders=host, Signature={sig}"), "must be <key id>/"),
            (format!("AWS4-HMAC-SHA256 Credential=AKID/20261124/local/s/x/aws4_request, SignedHeaders=host, Signature={sig}"), "must be <key id>/"),
            (format!("AWS4-HMAC-SHA256 Credential=AKID/20261124/local/s/aws4, SignedHeaders=host, Signature={sig}"), "must end in aws4_request"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=abc"), "64 hex digits"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature={}", "zz".repeat(32)), "64 hex digits"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=Host, Signature={sig}"), "lowercase names"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;;x, Signature={sig}"), "lowercase names"),
        ] {
            let error = parse_authorization(&value).unwrap_err().to_string();
            assert!(error.contains(wrong), "{value}: {error}");
        }
    }

    #[test]
    fn signatures_decode_from_hex_of_either_case_and_nothing_else() {
        let bytes: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        let lower = hex::encode(&bytes);
        assert_eq!(decode_signature(&lower).map(Vec::from), Some(bytes.clone()));
        let upper = lower.to_ascii_uppercase();
        assert_eq!(decode_signature(&upper).map(Vec::from), Some(bytes));
        // Every byte that is not a hex digit, at the first, a middle and the last place.
        for bad in (0..=0x7fu8).filter(|b| !b.is_ascii_hexdigit()) {
            for at in [0, 31, 63] {
                let mut digits = lower.clone().into_bytes();
                digits[at] = bad;
                let text = String::from_utf8(digits).unwrap();
                assert_eq!(decode_signature(&text), None, "{bad:#x} at {at}");
            }
        }
        // Bytes above 0x7f (here a two-byte character in place of two digits).
        assert_eq!(decode_signature(&format!("é{}", &lower[2..])), None);
        assert_eq!(decode_signature(&lower[1..]), None, "63 digits");
        assert_eq!(decode_signature(&format!("{lower}0")), None, "65 digits");
    }

    #[test]
    fn the_head_is_checked_before_any_body_is_read() {
        let k = keyring();
        assert!(precheck(&k, &signed_get(&[]), at(NOW)).is_ok());
        let mut unknown = signed_get(&[]);
        let value = unknown.headers[http::header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .replacen("Credential=", "Credential=NOSUCHKEY", 1);
        unknown
            .headers
            .insert(http::header::AUTHORIZATION, value.parse().unwrap());
        assert!(matches!(
            precheck(&k, &unknown, at(NOW)),
            Err(SigV4Error::UnknownAccessKey(_))
        ));
        let late = at(NOW) + Duration::from_secs(16 * 60);
        assert!(matches!(
            precheck(&k, &signed_get(&[]), late),
            Err(SigV4Error::Expired { .. })
        ));
    }

    #[test]
    fn aws_signatures_of_any_form_are_claims_and_other_schemes_are_not() {
        let headers = |value: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_bytes(value).unwrap(),
            );
            h
        };
        assert!(is_signed(
            &headers(b"  AWS4-HMAC-SHA256 Credential=x"),
            None
        ));
        assert!(is_signed(&headers(b"aws4-hmac-sha256 Credential=x"), None));
        assert!(is_signed(
            &headers(b"AWS4-ECDSA-P256-SHA256 Credential=x"),
            None
        ));
        assert!(!is_signed(&headers(b"Bearer abc"), None));
        assert!(!is_signed(&HeaderMap::new(), None));
        assert!(!is_signed(&HeaderMap::new(), Some("id=7&amz=1")));
        assert!(is_signed(
            &HeaderMap::new(),
            Some("id=7&X-Amz-Signature=abc&x-amz-algorithm=AWS4-HMAC-SHA256")
        ));
        let k = keyring();
        let refused = |p: &Parts| {
            matches!(
                verify(&k, p, Payload::Hashed(EMPTY_SHA256), at(NOW)),
                Err(SigV4Error::Malformed(_))
            )
        };
        // Claimed, but not text: refused, never taken as anonymous.
        let mut p = parts("GET", "/", &[("host", "h"), ("x-amz-date", NOW)]);
        p.headers = headers(b"AWS4-HMAC-SHA256 Credential=\xff");
        p.headers.insert("host", "h".parse().unwrap());
        assert!(refused(&p));
        // SigV4A, a lowercase scheme, presigned URLs, two Authorization headers.
        for value in [
            &b"AWS4-ECDSA-P256-SHA256 Credential=x"[..],
            b"aws4-hmac-sha256 x",
        ] {
            let mut p = parts("GET", "/", &[("host", "h"), ("x-amz-date", NOW)]);
            p.headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_bytes(value).unwrap(),
            );
            assert!(refused(&p), "{value:?}");
        }
        let p = parts(
            "GET",
            "/?X-Amz-Signature=abc",
            &[("host", "h"), ("x-amz-date", NOW)],
        );
        assert!(refused(&p));
        let mut p = signed_get(&[]);
        let first = p.headers[http::header::AUTHORIZATION].clone();
        p.headers.append(http::header::AUTHORIZATION, first);
        assert!(refused(&p), "two Authorization headers");
    }

    #[test]
    fn the_date_header_is_read_too() {
        let p = parts("GET", "/", &[("date", "Tue, 24 Nov 2026 23:50:00 GMT")]);
        assert_eq!(request_time(&p.headers).unwrap().0, NOW);
    }
}
