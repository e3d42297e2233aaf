//! Authentication and the request context of auth policies.
//!
//! | module | concern |
//! | --- | --- |
//! | [`identity`] | the caller (a principal or anonymous) and Lattice's identity headers |
//! | [`sigv4`] | verifying AWS Signature Version 4 requests against the config's access keys |
//! | [`mtls`] | client certificates of HTTPS listeners: the account CAs and the principal of a certificate |
//! | [`context`] | the condition keys of a request, as Lattice defines them |
//!
//! The decision itself is the policy engine's (`lattice-policy`); the proxy's authz
//! phase ([`crate::l7::authz`]) puts the pieces together.

pub mod context;
pub mod identity;
pub mod mtls;
pub mod sigv4;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{config::Config, resolve::arn};

use identity::{Caller, Principal, Proof};
use mtls::{CaOrigin, MtlsAuthority, MtlsSetupError};
use sigv4::Keyring;

/// The credentials of the config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("account {account}: principals[{principal}].accessKeys[{key}].secretFile {}: {source}", path.display())]
    Secret {
        account: String,
        principal: usize,
        key: usize,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("account {account}: principals[{principal}].accessKeys[{key}].secretFile {} is empty", path.display())]
    EmptySecret {
        account: String,
        principal: usize,
        key: usize,
        path: PathBuf,
    },
    #[error(transparent)]
    Mtls(#[from] MtlsSetupError),
}

/// What proves callers: the access keys and the account CAs of the config.
pub struct Authenticator {
    /// Each access key's owner, as the caller its signatures prove.
    keyring: Keyring<Caller>,
    mtls: Option<MtlsAuthority>,
}

impl Authenticator {
    /// Reads every secret and CA file the config names, and `mesh_ca` (the CA of the
    /// accounts that name none); fails, naming the field and the file, before anything
    /// is served.
    pub fn load(
        config: &Config,
        region: &str,
        mesh_ca: Option<&Path>,
    ) -> Result<Self, AuthSetupError> {
        let mut keyring = Keyring::new(region);
        let mut subjects = HashMap::new();
        let mut cas = Vec::new();
        if let Some(path) = mesh_ca {
            cas.push((CaOrigin::Mesh, path.to_owned()));
        }
        for account in config.accounts() {
            let id = account.id.to_string();
            match &account.mtls_ca_file {
                Some(path) => cas.push((CaOrigin::Account(id.clone()), path.clone())),
                None if mesh_ca.is_none() => {
                    for principal in account.principals.iter() {
                        if !principal.mtls_subjects.is_empty() {
                            tracing::warn!(
                                account = %id,
                                principal = %principal.name,
                                "the principal has mtlsSubjects, but neither the account's \
                                 mtlsCaFile nor --mtls-ca names a CA: no client certificate \
                                 can prove it"
                            );
                        }
                    }
                }
                None => {}
            }
            for (p, principal) in account.principals.iter().enumerate() {
                let info = Arc::new(Principal::new(
                    arn::principal(&id, principal.kind.as_str(), principal.name.as_str()),
                    id.clone(),
                    principal.kind,
                    principal.tags.clone(),
                ));
                for subject in &principal.mtls_subjects {
                    subjects.insert(subject.clone(), Arc::clone(&info));
                }
                for (k, key) in principal.access_keys.iter().enumerate() {
                    let secret = std::fs::read_to_string(&key.secret_file).map_err(|source| {
                        AuthSetupError::Secret {
                            account: id.clone(),
                            principal: p,
                            key: k,
                            path: key.secret_file.clone(),
                            source,
                        }
                    })?;
                    if secret.trim().is_empty() {
                        return Err(AuthSetupError::EmptySecret {
                            account: id.clone(),
                            principal: p,
                            key: k,
                            path: key.secret_file.clone(),
                        });
                    }
                    let caller = Caller::Authenticated {
                        principal: Arc::clone(&info),
                        proof: Proof::Signature {
                            access_key_id: Arc::from(key.access_key_id.as_str()),
                        },
                    };
                    keyring.insert(key.access_key_id.clone(), &secret, caller);
                }
            }
        }
        Ok(Authenticator {
            keyring,
            mtls: MtlsAuthority::load(&cas, subjects)?,
        })
    }

    pub fn keyring(&self) -> &Keyring<Caller> {
        &self.keyring
    }

    /// The account CAs, when any account has one.
    pub fn mtls(&self) -> Option<&MtlsAuthority> {
        self.mtls.as_ref()
    }
}
