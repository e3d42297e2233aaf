//! Client certificates on HTTPS listeners: who a certificate proves.
//!
//! Each account may name the CA that issues its client certificates
//! (`accounts[].mtlsCaFile`), and each principal the URI SANs that are it
//! (`mtlsSubjects`). Accounts that name none share the agent's mesh-wide CA
//! (`--mtls-ca`, the trust anchor Istio and Linkerd have one of), when it is given.
//! The TLS handshake asks for a certificate and accepts one that chains to any of
//! these CAs, or none at all (the caller is then anonymous, as over plain HTTP). After
//! the handshake the certificate names its principal by its URI SAN, and only if the
//! chain also verifies against that principal's own account's CA (or the mesh CA, for
//! an account without one): account A's CA cannot mint account B's identities. A
//! verified certificate whose SAN names no such principal proves nothing: its caller
//! is anonymous.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, UnixTime},
    server::{danger::ClientCertVerifier, WebPkiClientVerifier},
    RootCertStore,
};
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

use super::identity::{Principal, X509Fields};

/// The mTLS setup could not be built from the config.
#[derive(Debug, thiserror::Error)]
pub enum MtlsSetupError {
    #[error("{origin} {}: {source}", path.display())]
    Pem {
        origin: CaOrigin,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{origin} {} holds no usable CA certificate", path.display())]
    NoCa { origin: CaOrigin, path: PathBuf },
    #[error("building the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Where a client CA is configured, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaOrigin {
    /// `accounts[].mtlsCaFile` of this account id.
    Account(String),
    /// The agent's `--mtls-ca`.
    Mesh,
}

impl std::fmt::Display for CaOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaOrigin::Account(id) => write!(f, "account {id}: mtlsCaFile"),
            CaOrigin::Mesh => f.write_str("--mtls-ca"),
        }
    }
}

/// The CAs of every account and the principals their certificates name.
pub struct MtlsAuthority {
    any_account: Arc<dyn ClientCertVerifier>,
    per_account: HashMap<String, Arc<dyn ClientCertVerifier>>,
    /// The mesh-wide CA, for the accounts without one of their own.
    mesh: Option<Arc<dyn ClientCertVerifier>>,
    subjects: HashMap<String, Arc<Principal>>,
}

impl std::fmt::Debug for MtlsAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsAuthority")
            .field("accounts", &self.per_account.keys().collect::<Vec<_>>())
            .field("subjects", &self.subjects.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl MtlsAuthority {
    /// `cas`: each CA file and whose it is; `subjects`: URI SAN -> principal. `None`
    /// when there is no CA at all (HTTPS listeners then ask for no certificate).
    pub fn load(
        cas: &[(CaOrigin, PathBuf)],
        subjects: HashMap<String, Arc<Principal>>,
    ) -> Result<Option<Self>, MtlsSetupError> {
        if cas.is_empty() {
            return Ok(None);
        }
        let provider = crate::l7::tls::provider();
        let mut all = RootCertStore::empty();
        let mut per_account = HashMap::new();
        let mut mesh = None;
        for (origin, path) in cas {
            let pem = |source| MtlsSetupError::Pem {
                origin: origin.clone(),
                path: path.clone(),
                source,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(pem)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(pem)?;
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
            all.add_parsable_certificates(certs);
            if added == 0 {
                return Err(MtlsSetupError::NoCa {
                    origin: origin.clone(),
                    path: path.clone(),
                });
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()?;
            match origin {
                CaOrigin::Account(id) => {
                    per_account.insert(id.clone(), verifier);
                }
                CaOrigin::Mesh => mesh = Some(verifier),
            }
        }
        let any_account = WebPkiClientVerifier::builder_with_provider(Arc::new(all), provider)
            .allow_unauthenticated()
            .build()?;
        Ok(Some(MtlsAuthority {
            any_account,
            per_account,
            mesh,
            subjects,
        }))
    }

    /// The verifier of the TLS handshake: any account's CA, or no certificate.
    pub fn handshake_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.any_account)
    }

    /// The principal a handshake's certificate chain proves, with the certificate's
    /// fields; `None` when it proves none (see the module's rules).
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Option<(Arc<Principal>, X509Fields)> {
        let (leaf, intermediates) = chain.split_first()?;
        let fields = x509_fields(leaf)?;
        let uris = uri_sans(leaf);
        let principal = uris.iter().find_map(|uri| self.subjects.get(uri))?;
        let verifier = self
            .per_account
            .get(&principal.account)
            .or(self.mesh.as_ref())?;
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .ok()?;
        let fields = X509Fields {
            san_uri: uris.into_iter().find(|u| self.subjects.contains_key(u)),
            ..fields
        };
        Some((Arc::clone(principal), fields))
    }
}

/// The fields Lattice passes on from a certificate (the first value of each).
fn x509_fields(der: &CertificateDer<'_>) -> Option<X509Fields> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let issuer_ou = cert
        .issuer()
        .iter_organizational_unit()
        .find_map(|a| a.as_str().ok().map(str::to_owned));
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .find_map(|a| a.as_str().ok().map(str::to_owned));
    let san_dns = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                _ => None,
            })
        });
    Some(X509Fields {
        issuer_ou,
        san_dns,
        san_uri: None,
        subject_cn,
    })
}

/// Every URI SAN of a certificate.
fn uri_sans(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect()
}
