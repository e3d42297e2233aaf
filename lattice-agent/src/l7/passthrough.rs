//! TLS_PASSTHROUGH listeners: the agent never decrypts. It reads the client's
//! ClientHello (buffering it, to replay it to the target unchanged), routes by its SNI,
//! and then splices bytes both ways between the client and a TCP target.
//!
//! Lattice's rules ("TLS listeners" in the VPC Lattice User Guide), and ours:
//!
//! | what | semantics | source |
//! | --- | --- | --- |
//! | routing | by the SNI of the ClientHello | User Guide |
//! | match | SNI equal to the service's custom domain name (DNS case-insensitive, a trailing dot ignored); the service's certificate is not used | User Guide ("used as a Server Name Indication (SNI) match"; "an exact match to the client-hello") |
//! | no SNI, another SNI, or not TLS | refused: a fatal `unrecognized_name` alert (`decode_error` for a malformed hello, nothing for bytes that are not TLS), then close | assumed: nothing documented |
//! | target | the listener's default forward action, TCP target groups, by weight, then healthy targets round robin | User Guide ("The default action ... must be a forward action to a TCP target group") |
//! | duration | a connection lasts at most 10 minutes | User Guide ("Connection duration is limited to 10 minutes") |
//! | ECH / ESNI | not supported: the outer SNI is what routes | User Guide |
//!
//! The ClientHello is read by [`client_hello`], which checks its layout only: the
//! target, not the agent, judges the TLS versions and extensions a client offers.

use std::{io, time::Duration};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::client_hello::{self, HelloError, Parsed};

/// How long a client may take to send its ClientHello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Lattice's limit on the life of a TLS passthrough connection.
pub const MAX_CONNECTION: Duration = Duration::from_secs(600);
/// The most the agent buffers while waiting for a whole ClientHello (the handshake
/// message's own limit is 64 KiB, plus record headers).
pub const MAX_HELLO_BYTES: usize = 70 * 1024;

/// A TLS alert record: fatal (2), `unrecognized_name` (112), in a TLS 1.2 record as
/// servers send before a version is agreed.
pub const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// Why a passthrough connection was not spliced to a target.
#[derive(Debug, thiserror::Error)]
pub enum PassthroughError {
    #[error("reading the ClientHello: {0}")]
    Read(#[source] io::Error),
    #[error("the client closed before sending a whole ClientHello")]
    Closed,
    #[error("no whole ClientHello within {} bytes", MAX_HELLO_BYTES)]
    TooLarge,
    #[error("no ClientHello within {:?}", HELLO_TIMEOUT)]
    Timeout,
    #[error("not a TLS ClientHello: {0}")]
    NotTls(#[source] HelloError),
    #[error("SNI {sni:?} is not the service's custom domain name {expected:?}")]
    WrongSni {
        sni: Option<String>,
        expected: String,
    },
    #[error("no target: {0}")]
    NoTarget(&'static str),
    #[error("connecting to target {target}: {source}")]
    Connect {
        target: std::net::SocketAddr,
        #[source]
        source: crate::health::ConnectError,
    },
}

impl PassthroughError {
    /// What to send the client before closing, if anything.
    pub fn alert(&self) -> Option<[u8; 7]> {
        match self {
            PassthroughError::NotTls(e) => e.alert(),
            PassthroughError::WrongSni { .. } => Some(UNRECOGNIZED_NAME_ALERT),
            _ => None,
        }
    }
}

/// Collects a connection's first bytes until they hold a whole ClientHello.
#[derive(Default)]
pub struct HelloReader {
    buffered: Vec<u8>,
    /// Bytes to have before parsing again: a hello is read once per record, however
    /// finely its bytes arrive.
    needed: usize,
}

/// A whole ClientHello: its SNI, and every byte read so far (to replay to the target).
#[derive(Debug)]
pub struct Hello {
    pub sni: Option<String>,
    pub bytes: Vec<u8>,
}

impl HelloReader {
    /// Adds bytes read from the client; `Ok(None)` while the ClientHello is incomplete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Hello>, PassthroughError> {
        self.buffered.extend_from_slice(chunk);
        if self.buffered.len() > MAX_HELLO_BYTES {
            return Err(PassthroughError::TooLarge);
        }
        if self.buffered.len() < self.needed {
            return Ok(None);
        }
        match client_hello::parse(&self.buffered).map_err(PassthroughError::NotTls)? {
            Parsed::Hello { server_name } => Ok(Some(Hello {
                sni: server_name,
                bytes: std::mem::take(&mut self.buffered),
            })),
            Parsed::Incomplete { needed } if needed > MAX_HELLO_BYTES => {
                Err(PassthroughError::TooLarge)
            }
            Parsed::Incomplete { needed } => {
                self.needed = needed;
                Ok(None)
            }
        }
    }
}

/// Reads the client's ClientHello (within [`HELLO_TIMEOUT`]).
pub async fn read_hello<S: AsyncRead + Unpin>(client: &mut S) -> Result<Hello, PassthroughError> {
    let read = async {
        let mut reader = HelloReader::default();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = client
                .read(&mut chunk)
                .await
                .map_err(PassthroughError::Read)?;
            if n == 0 {
                return Err(PassthroughError::Closed);
            }
            if let Some(hello) = reader.push(&chunk[..n])? {
                return Ok(hello);
            }
        }
    };
    tokio::time::timeout(HELLO_TIMEOUT, read)
        .await
        .map_err(|_| PassthroughError::Timeout)?
}

/// Whether the SNI routes to a service with this custom domain name.
pub fn sni_matches(sni: Option<&str>, custom_domain_name: &str) -> bool {
    sni.is_some_and(|sni| {
        sni.strip_suffix('.')
            .unwrap_or(sni)
            .eq_ignore_ascii_case(custom_domain_name)
    })
}

/// Replays the ClientHello to the target, then copies both ways until both sides are
/// done or [`MAX_CONNECTION`] passes. Returns the bytes sent each way (client to target
/// including the ClientHello, target to client).
pub async fn splice<C, T>(client: &mut C, target: &mut T, hello: &[u8]) -> io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let spliced = async {
        target.write_all(hello).await?;
        let (up, down) = tokio::io::copy_bidirectional(client, target).await?;
        Ok((up + hello.len() as u64, down))
    };
    match tokio::time::timeout(MAX_CONNECTION, spliced).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS passthrough connections last at most 10 minutes",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::{pki_types::ServerName, ClientConfig, ClientConnection, RootCertStore};

    use super::*;

    /// A real ClientHello, from rustls's client, for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let config = ClientConfig::builder_with_provider(crate::l7::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = ClientConnection::new(Arc::new(config), server_name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn sni_of_a_whole_hello() {
        let hello = client_hello("api.example.test");
        let got = HelloReader::default().push(&hello).unwrap().unwrap();
        assert_eq!(got.sni.as_deref(), Some("api.example.test"));
        assert_eq!(got.bytes, hello, "every byte is kept for the target");
    }

    #[test]
    fn sni_of_a_hello_that_arrives_byte_by_byte() {
        let hello = client_hello("api.example.test");
        let mut reader = HelloReader::default();
        for (i, byte) in hello.iter().enumerate() {
            let got = reader.push(std::slice::from_ref(byte)).unwrap();
            if i + 1 < hello.len() {
                assert!(
                    got.is_none(),
                    "complete after {} of {} bytes",
                    i + 1,
                    hello.len()
                );
            } else {
                let got = got.expect("whole at the last byte");
                assert_eq!(got.sni.as_deref(), Some("api.example.test"));
                assert_eq!(got.bytes, hello);
            }
        }
    }

    #[test]
    fn no_sni_when_the_client_dials_an_address() {
        let hello = client_hello("169.254.171.1");
        let got = HelloReader::default().push(&hello).unwrap().unwrap();
        assert_eq!(got.sni, None);
    }

    #[test]
    fn plain_http_is_not_tls() {
        let err = HelloReader::default()
            .push(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap_err();
        assert!(matches!(err, PassthroughError::NotTls(_)), "{err}");
        assert_eq!(
            err.alert(),
            None,
            "no TLS alert to a client that is not TLS"
        );
    }

    #[test]
    fn sni_must_be_the_custom_domain_name() {
        assert!(sni_matches(Some("api.example.test"), "api.example.test"));
        assert!(sni_matches(Some("API.example.test."), "api.example.test"));
        assert!(!sni_matches(
            Some("www.api.example.test"),
            "api.example.test"
        ));
        assert!(!sni_matches(Some("example.test"), "api.example.test"));
        assert!(!sni_matches(None, "api.example.test"));
    }
}
