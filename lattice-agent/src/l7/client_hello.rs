//! The server name of a TLS ClientHello, read without terminating TLS (for
//! TLS_PASSTHROUGH listeners): the handshake records are put together into the
//! ClientHello message (RFC 8446 5.1: a message may span records), the message is read
//! as RFC 8446 4.1.2 and RFC 5246 7.4.1.2 lay it out, and its `server_name` extension
//! as RFC 6066 3 does.
//!
//! Only the layout is checked. Which versions, cipher suites and extensions a client
//! offers is for the target to judge, as Envoy's `tls_inspector` leaves it: a TLS 1.0
//! client without `signature_algorithms` is routed like any other, where a TLS
//! library's server side (rustls's `Acceptor`) would refuse it.

/// `ContentType.handshake`.
const HANDSHAKE: u8 = 22;
/// `HandshakeType.client_hello`.
const CLIENT_HELLO: u8 = 1;
/// `ExtensionType.server_name`.
const SERVER_NAME: u16 = 0;
/// `NameType.host_name`.
const HOST_NAME: u8 = 0;
/// The most a record's fragment holds (RFC 8446 5.1: 2^14).
const MAX_FRAGMENT: usize = 1 << 14;

/// Why some bytes are not the start of a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not TLS (the first record is not a handshake record)")]
    NotTls,
    #[error("the first handshake message is not a ClientHello")]
    NotClientHello,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

impl HelloError {
    /// The fatal alert to tell a TLS client why (`decode_error`, `unexpected_message`),
    /// in a TLS 1.2 record as servers send before a version is agreed; none for bytes
    /// that are not TLS at all.
    pub fn alert(&self) -> Option<[u8; 7]> {
        let description = match self {
            HelloError::NotTls => return None,
            HelloError::NotClientHello => 10,
            HelloError::Malformed(_) => 50,
        };
        Some([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description])
    }
}

/// What the first bytes of a connection hold so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A ClientHello may still be on its way; nothing can change before `needed` bytes
    /// have come (the end of the record under way, or the next record's header).
    Incomplete { needed: usize },
    /// A whole ClientHello, and the host name it asks for, if any.
    Hello { server_name: Option<String> },
}

/// Reads the ClientHello at the start of `bytes` (a connection's first bytes).
pub fn parse(bytes: &[u8]) -> Result<Parsed, HelloError> {
    let mut message = Vec::new();
    let mut rest = bytes;
    loop {
        if message.len() >= 4 {
            if message[0] != CLIENT_HELLO {
                return Err(HelloError::NotClientHello);
            }
            let length = usize::from(message[1]) << 16
                | usize::from(message[2]) << 8
                | usize::from(message[3]);
            if message.len() >= 4 + length {
                return client_hello(&message[4..4 + length])
                    .map(|server_name| Parsed::Hello { server_name });
            }
        } else if let Some(&kind) = message.first() {
            if kind != CLIENT_HELLO {
                return Err(HelloError::NotClientHello);
            }
        }
        let at = bytes.len() - rest.len();
        if rest.len() < 5 {
            // The next record header is not here yet; what there is must fit one.
            return match rest.first() {
                Some(&kind) if kind != HANDSHAKE => Err(HelloError::NotTls),
                Some(_) if rest.len() >= 2 && rest[1] != 3 => Err(HelloError::NotTls),
                _ => Ok(Parsed::Incomplete { needed: at + 5 }),
            };
        }
        if rest[0] != HANDSHAKE || rest[1] != 3 {
            // An alert, application data, an SSL 2 hello (high bit set) or plain text.
            return Err(HelloError::NotTls);
        }
        let length = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if length == 0 || length > MAX_FRAGMENT {
            return Err(HelloError::Malformed(
                "a record of a length TLS does not allow",
            ));
        }
        let Some(fragment) = rest.get(5..5 + length) else {
            return Ok(Parsed::Incomplete {
                needed: at + 5 + length,
            });
        };
        message.extend_from_slice(fragment);
        rest = &rest[5 + length..];
    }
}

/// The host name a ClientHello's body asks for.
fn client_hello(body: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader(body);
    let version = r.u16("legacy_version")?;
    if version >> 8 != 3 {
        return Err(HelloError::Malformed("legacy_version is not 3.x"));
    }
    r.take(32, "random")?;
    let session_id = r.vec8("legacy_session_id")?;
    if session_id.len() > 32 {
        return Err(HelloError::Malformed(
            "legacy_session_id longer than 32 bytes",
        ));
    }
    let suites = r.vec16("cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("cipher_suites"));
    }
    if r.vec8("legacy_compression_methods")?.is_empty() {
        return Err(HelloError::Malformed("no compression method"));
    }
    // TLS 1.0 and 1.1 clients may send no extensions at all.
    if r.0.is_empty() {
        return Ok(None);
    }
    let mut extensions = Reader(r.vec16("extensions")?);
    if !r.0.is_empty() {
        return Err(HelloError::Malformed("bytes after the extensions"));
    }
    let mut server_name = None;
    let mut seen = false;
    while !extensions.0.is_empty() {
        let kind = extensions.u16("extension type")?;
        let data = extensions.vec16("extension data")?;
        if kind != SERVER_NAME {
            continue;
        }
        if seen {
            return Err(HelloError::Malformed("two server_name extensions"));
        }
        seen = true;
        server_name = host_name(data)?;
    }
    Ok(server_name)
}

/// The `host_name` of a `server_name` extension's `ServerNameList`.
fn host_name(data: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16("server_name_list")?);
    if !r.0.is_empty() {
        return Err(HelloError::Malformed("bytes after server_name_list"));
    }
    let mut found = None;
    while !list.0.is_empty() {
        let kind = list.u8("name_type")?;
        let name = list.vec16("server name")?;
        if kind != HOST_NAME {
            continue;
        }
        if found.is_some() {
            return Err(HelloError::Malformed("two host names"));
        }
        // RFC 6066: ASCII, no trailing dot required, never empty.
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return Err(HelloError::Malformed("a host name that is not a DNS name"));
        }
        found = Some(String::from_utf8_lossy(name).into_owned());
    }
    Ok(found)
}

/// Reads a message front to back; every read names the field it is for.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed(field));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self, field: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u8(field)?;
        self.take(usize::from(n), field)
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self, field: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u16(field)?;
        self.take(usize::from(n), field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello body: `version`, a zero random, `session` bytes of session id,
    /// one cipher suite, null compression, then `extensions` (type, data) if any.
    fn body(version: u16, session: usize, extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend([0u8; 32]);
        b.push(session as u8);
        b.extend(vec![7u8; session]);
        b.extend([0, 2, 0x00, 0x2f, 1, 0]);
        if let Some(extensions) = extensions {
            let mut all = Vec::new();
            for (kind, data) in extensions {
                all.extend(kind.to_be_bytes());
                all.extend((data.len() as u16).to_be_bytes());
                all.extend(data);
            }
            b.extend((all.len() as u16).to_be_bytes());
            b.extend(all);
        }
        b
    }

    /// A `server_name` extension's data naming `names` as (type, name).
    fn names(names: &[(u8, &str)]) -> Vec<u8> {
        let mut list = Vec::new();
        for (kind, name) in names {
            list.push(*kind);
            list.extend((name.len() as u16).to_be_bytes());
            list.extend(name.as_bytes());
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        data
    }

    /// The handshake message of `body`, in records of at most `split` bytes.
    fn records(body: &[u8], split: usize) -> Vec<u8> {
        let mut message = vec![CLIENT_HELLO];
        message.extend(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend(body);
        let mut out = Vec::new();
        for chunk in message.chunks(split) {
            out.extend([HANDSHAKE, 3, 1]);
            out.extend((chunk.len() as u16).to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    fn hello(server_name: Option<&str>) -> Result<Parsed, HelloError> {
        Ok(Parsed::Hello {
            server_name: server_name.map(str::to_owned),
        })
    }

    #[test]
    fn reads_the_host_name_of_any_well_formed_hello() {
        let sni = |name| (SERVER_NAME, names(&[(HOST_NAME, name)]));
        let alpn = (16u16, vec![0, 3, 2, b'h', b'2']);
        let cases: Vec<(&str, Vec<u8>, Result<Parsed, HelloError>)> = vec![
            (
                "TLS 1.2 layout",
                records(&body(0x0303, 32, Some(&[sni("api.example.test")])), 1 << 14),
                hello(Some("api.example.test")),
            ),
            (
                "TLS 1.0, no signature_algorithms",
                records(&body(0x0301, 0, Some(&[sni("old.example.test")])), 1 << 14),
                hello(Some("old.example.test")),
            ),
            (
                "other extensions around it",
                records(
                    &body(
                        0x0303,
                        0,
                        Some(&[alpn.clone(), sni("a.test"), alpn.clone()]),
                    ),
                    1 << 14,
                ),
                hello(Some("a.test")),
            ),
            (
                "one handshake message over three records",
                records(&body(0x0303, 32, Some(&[sni("split.example.test")])), 40),
                hello(Some("split.example.test")),
            ),
            (
                "no extensions at all",
                records(&body(0x0301, 0, None), 1 << 14),
                hello(None),
            ),
            (
                "extensions without server_name",
                records(&body(0x0303, 0, Some(std::slice::from_ref(&alpn))), 1 << 14),
                hello(None),
            ),
            (
                "a name type other than host_name is passed over",
                records(
                    &body(
                        0x0303,
                        0,
                        Some(&[(SERVER_NAME, names(&[(7, "x"), (HOST_NAME, "b.test")]))]),
                    ),
                    1 << 14,
                ),
                hello(Some("b.test")),
            ),
            (
                "plain HTTP",
                b"GET / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
                Err(HelloError::NotTls),
            ),
            (
                "an SSL 2 hello",
                vec![0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0x15],
                Err(HelloError::NotTls),
            ),
            (
                "an alert record first",
                vec![0x15, 3, 3, 0, 2, 2, 40],
                Err(HelloError::NotTls),
            ),
            (
                "a ServerHello",
                {
                    let mut r = records(&body(0x0303, 0, None), 1 << 14);
                    r[5] = 2;
                    r
                },
                Err(HelloError::NotClientHello),
            ),
            (
                "an empty record",
                vec![HANDSHAKE, 3, 1, 0, 0],
                Err(HelloError::Malformed(
                    "a record of a length TLS does not allow",
                )),
            ),
            (
                "a record past 2^14",
                vec![HANDSHAKE, 3, 1, 0x40, 0x01],
                Err(HelloError::Malformed(
                    "a record of a length TLS does not allow",
                )),
            ),
            (
                "a session id of 33 bytes",
                records(&body(0x0303, 33, None), 1 << 14),
                Err(HelloError::Malformed(
                    "legacy_session_id longer than 32 bytes",
                )),
            ),
            (
                "two server_name extensions",
                records(
                    &body(0x0303, 0, Some(&[sni("a.test"), sni("b.test")])),
                    1 << 14,
                ),
                Err(HelloError::Malformed("two server_name extensions")),
            ),
            (
                "two host names",
                records(
                    &body(
                        0x0303,
                        0,
                        Some(&[(SERVER_NAME, names(&[(HOST_NAME, "a"), (HOST_NAME, "b")]))]),
                    ),
                    1 << 14,
                ),
                Err(HelloError::Malformed("two host names")),
            ),
            (
                "an empty host name",
                records(&body(0x0303, 0, Some(&[sni("")])), 1 << 14),
                Err(HelloError::Malformed("a host name that is not a DNS name")),
            ),
            (
                "a host name with a NUL",
                records(&body(0x0303, 0, Some(&[sni("a.test\0.evil")])), 1 << 14),
                Err(HelloError::Malformed("a host name that is not a DNS name")),
            ),
            (
                "an extension longer than the extensions",
                {
                    let mut b = body(0x0303, 0, Some(std::slice::from_ref(&alpn)));
                    let n = b.len();
                    b[n - 6] = 0x40;
                    records(&b, 1 << 14)
                },
                Err(HelloError::Malformed("extension data")),
            ),
            (
                "bytes after the extensions",
                {
                    let mut b = body(0x0303, 0, Some(std::slice::from_ref(&alpn)));
                    b.push(0);
                    records(&b, 1 << 14)
                },
                Err(HelloError::Malformed("bytes after the extensions")),
            ),
        ];
        for (case, bytes, expected) in cases {
            assert_eq!(parse(&bytes), expected, "{case}");
        }
    }

    #[test]
    fn every_prefix_of_a_hello_is_incomplete_not_wrong() {
        let sni = (SERVER_NAME, names(&[(HOST_NAME, "api.example.test")]));
        let whole = records(&body(0x0303, 32, Some(&[sni])), 50);
        for n in 0..whole.len() {
            match parse(&whole[..n]) {
                Ok(Parsed::Incomplete { needed }) => {
                    assert!(needed > n && needed <= whole.len(), "{n} bytes: {needed}")
                }
                other => panic!("{n} bytes: {other:?}"),
            }
        }
        assert_eq!(parse(&whole), hello(Some("api.example.test")));
    }

    #[test]
    fn alerts_say_why_to_tls_clients_only() {
        assert_eq!(HelloError::NotTls.alert(), None);
        assert_eq!(
            HelloError::Malformed("x").alert(),
            Some([0x15, 3, 3, 0, 2, 2, 50])
        );
        assert_eq!(
            HelloError::NotClientHello.alert(),
            Some([0x15, 3, 3, 0, 2, 2, 10])
        );
    }
}
