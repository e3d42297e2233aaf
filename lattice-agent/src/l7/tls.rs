//! The TLS/SNI phase of HTTPS listeners: each service's certificate, chosen by the SNI
//! of the ClientHello, and ALPN that decides between HTTP/2 and HTTP/1.1.
//!
//! A listener serves one service, so "choosing the certificate" is really deciding
//! whether the SNI names this service:
//!
//! | ClientHello | answer | why |
//! | --- | --- | --- |
//! | SNI is the service's default DNS name or its custom domain name (any case) | the service's certificate | the names Lattice gives a service |
//! | no SNI (a client dialing the VIP by address) | the service's certificate | the VIP:port already names the service; the client decides whether to trust it |
//! | SNI names anything else | handshake refused (fatal alert) | serving the certificate would only fail the client's name check later and less clearly; a name we do not serve is a misdirected client |
//!
//! Target groups of protocol HTTPS are reached over TLS ([`target_client_config`])
//! without verifying the target's certificate, as Lattice does not; ALPN offers only
//! what the group's protocol version speaks.
//!
//! The certificate and key are read when the agent starts, so a file that is not PEM,
//! or a key that does not belong to the certificate, stops the start with an error that
//! names the service and the file, before anything in the kernel changes.

use std::{fmt, io, path::PathBuf, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme,
};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::{
    auth::mtls::MtlsAuthority,
    config::{Config, ListenerProtocol},
    resolve::Resolved,
};

/// ALPN protocol ids, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A service's certificate could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("service {service:?}: reading {field} {}: {source}", path.display())]
    Pem {
        service: String,
        field: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("service {service:?}: certificate.certFile {} holds no certificate", path.display())]
    NoCertificate { service: String, path: PathBuf },
    #[error("service {service:?}: certificate.keyFile {} does not fit certificate.certFile {}: {source}", key.display(), cert.display())]
    Key {
        service: String,
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("service {service:?}: building the TLS server configuration: {source}")]
    Config {
        service: String,
        #[source]
        source: Box<rustls::Error>,
    },
}

/// The crypto provider of every TLS session of the agent: ring, named explicitly so
/// that no process-wide default (or a second provider enabled by another crate) decides.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Picks the certificate of one service by the ClientHello's SNI (see the module's
/// table).
pub struct ServiceCertResolver {
    /// Lowercase: the default DNS name, then the custom domain name.
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

impl ServiceCertResolver {
    pub fn new(names: Vec<String>, key: Arc<CertifiedKey>) -> Self {
        let names = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        ServiceCertResolver { names, key }
    }

    /// Whether a ClientHello with this SNI gets the certificate.
    pub fn serves(&self, sni: Option<&str>) -> bool {
        match sni {
            None => true,
            Some(name) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
            }
        }
    }
}

impl fmt::Debug for ServiceCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceCertResolver")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ServiceCertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = client_hello.server_name();
        if self.serves(sni) {
            Some(Arc::clone(&self.key))
        } else {
            // rustls answers `None` with a fatal alert and ends the handshake.
            debug!(sni = ?sni, names = ?self.names, "TLS handshake refused: SNI names another service");
            None
        }
    }
}

/// Reads a service's PEM certificate chain and private key and checks they fit.
pub fn load_certified_key(
    service: &str,
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let pem = |field, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem {
            service: service.to_owned(),
            field,
            path,
            source,
        }
    };
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(pem("certificate.certFile", cert_file))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            service: service.to_owned(),
            path: cert_file.to_path_buf(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(pem("certificate.keyFile", key_file))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        service: service.to_owned(),
        cert: cert_file.to_path_buf(),
        key: key_file.to_path_buf(),
        source: Box::new(source),
    })
}

/// The TLS acceptor of every service that has an HTTPS listener (`None` for the
/// others), indexed like the config's services.
/// With `mtls`, HTTPS listeners ask for a client certificate of any account's CA
/// (none is fine too: the caller is then anonymous).
pub fn acceptors(
    config: &Config,
    resolved: &Resolved,
    mtls: Option<&MtlsAuthority>,
) -> Result<Vec<Option<TlsAcceptor>>, TlsError> {
    let provider = provider();
    config
        .services()
        .iter()
        .enumerate()
        .map(|(s, service)| {
            let terminates = service
                .listeners
                .iter()
                .any(|l| l.protocol == ListenerProtocol::Https);
            // Validation requires a certificate on services with HTTPS listeners.
            let (true, Some(cert)) = (terminates, &service.certificate) else {
                return Ok(None);
            };
            let name = service.name.to_string();
            let key = load_certified_key(&name, &cert.cert_file, &cert.key_file, &provider)?;
            let rs = &resolved.services[s];
            let names = std::iter::once(rs.dns_name.clone())
                .chain(rs.custom_domain_name.clone())
                .collect();
            let resolver = ServiceCertResolver::new(names, Arc::new(key));
            let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|source| TlsError::Config {
                    service: name.clone(),
                    source: Box::new(source),
                })?;
            let builder = match mtls {
                Some(mtls) => builder.with_client_cert_verifier(mtls.handshake_verifier()),
                None => builder.with_no_client_auth(),
            };
            let mut server = builder.with_cert_resolver(Arc::new(resolver));
            server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
            Ok(Some(TlsAcceptor::from(Arc::new(server))))
        })
        .collect()
}

/// Whether a finished handshake agreed on HTTP/2. Without ALPN (a client that offers
/// none) the connection is HTTP/1.1, as RFC 9113 3.2 requires "h2" to be negotiated.
pub fn negotiated_h2<IO>(stream: &tokio_rustls::server::TlsStream<IO>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(ALPN_H2)
}

/// The TLS client configuration for a target group's targets: no certificate check
/// (Lattice does not verify targets' certificates, which are often self-signed or name
/// an address), `alpn` offered (one protocol: the group's version decides).
pub fn target_client_config(alpn: &[u8]) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyTargetCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate a target presents, but still checks the handshake's
/// signatures, so the session keys are the target's (only the name is not checked).
#[derive(Debug)]
struct AnyTargetCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyTargetCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An `io::Error` for a handshake that took too long.
pub fn handshake_timeout() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_must_name_the_service_or_be_absent() {
        let resolver = ServiceCertResolver {
            names: vec![
                "api-0123.abcdef0.vpc-lattice-svcs.local.on.lattice".into(),
                "api.example.test".into(),
            ],
            key: Arc::new(CertifiedKey::new(
                vec![],
                Arc::new(NoKey) as Arc<dyn rustls::sign::SigningKey>,
            )),
        };
        assert!(resolver.serves(None));
        assert!(resolver.serves(Some("api.example.test")));
        assert!(resolver.serves(Some("API.Example.Test.")));
        assert!(resolver.serves(Some("api-0123.abcdef0.vpc-lattice-svcs.local.on.lattice")));
        assert!(!resolver.serves(Some("other.example.test")));
        assert!(!resolver.serves(Some("example.test")));
    }

    #[derive(Debug)]
    struct NoKey;

    impl rustls::sign::SigningKey for NoKey {
        fn choose_scheme(
            &self,
            _: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }

        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ECDSA
        }
    }
}
