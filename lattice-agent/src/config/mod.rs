//! The desired-state document (config-contract.yaml): parsed once, validated whole.
//!
//! | file | what |
//! | --- | --- |
//! | `raw.rs` | serde structs mirroring the document (YAML or JSON) |
//! | `validate.rs` | the pass raw -> [`Config`], collecting every error |
//! | `names.rs` | shape rules of names and strings (Lattice, IAM, DNS, HTTP) |
//! | `policy.rs` | auth policies: Lattice's size quota and declared principals (the grammar is `lattice_policy`'s) |
//! | `model.rs` | the validated domain types |
//! | `error.rs` | [`ConfigError`], [`FieldError`] |
//!
//! ```no_run
//! # fn main() -> Result<(), lattice_agent::config::ConfigError> {
//! let config = lattice_agent::config::load_file("config.yaml".as_ref())?;
//! config.check_files()?; // before applying
//! # Ok(()) }
//! ```

mod error;
mod model;
mod names;
mod policy;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

use std::{
    fs,
    path::{Path, PathBuf},
};

pub use error::{ConfigError, ConfigErrors, FieldError, ParseDetail, ResourceKind, ResourceName};
pub use model::*;
pub use validate::{
    MAX_HEADER_MATCHES, MAX_LISTENERS_PER_SERVICE, MAX_RULES_PER_LISTENER,
    MAX_SERVICE_ASSOCIATIONS, MAX_TARGET_GROUPS_PER_FORWARD,
};

/// A validated desired state. Lists keep document order; the typed references
/// ([`VpcRef`], [`ServiceRef`], ...) index them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) source: PathBuf,
    pub(crate) base_dir: PathBuf,
    pub(crate) accounts: Vec<Account>,
    pub(crate) vpcs: Vec<Vpc>,
    pub(crate) service_networks: Vec<ServiceNetwork>,
    pub(crate) resource_shares: Vec<ResourceShare>,
    pub(crate) services: Vec<Service>,
    pub(crate) target_groups: Vec<TargetGroup>,
    pub(crate) access_log_subscriptions: Vec<AccessLogSubscription>,
}

/// The syntax of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` is JSON and `.yaml`/`.yml` YAML; anything else (stdin, no extension) is
    /// sniffed: JSON when the text starts with `{`, YAML otherwise.
    pub fn detect(source: &Path, text: &str) -> Self {
        match source
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => Self::Json,
            Some("yaml" | "yml") => Self::Yaml,
            _ if text.trim_start().starts_with('{') => Self::Json,
            _ => Self::Yaml,
        }
    }
}

/// Reads, parses and validates the document at `path`.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = fs::read_to_string(path).map_err(|detail| ConfigError::Read {
        path: path.to_owned(),
        detail,
    })?;
    parse_str(&text, path)
}

/// Parses and validates `text`. `source` names the document in errors, chooses the
/// format (see [`Format::detect`]) and anchors relative file paths (its folder; for
/// stdin pass e.g. `-`, which anchors them at the current directory).
pub fn parse_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
    let parse_error = |line, column, detail| ConfigError::Parse {
        file: source.to_owned(),
        line,
        column,
        detail,
    };
    let doc: raw::Document = match Format::detect(source, text) {
        Format::Json => serde_json::from_str(text)
            .map_err(|e| parse_error(Some(e.line()), Some(e.column()), ParseDetail::Json(e)))?,
        Format::Yaml if is_empty_yaml(text) => {
            return Err(ConfigError::Empty {
                file: source.to_owned(),
            })
        }
        // JSON is YAML too, and the JSON parser is many times faster: a document that
        // parses as JSON (what the control API writes) is taken as such; anything else
        // (flow-style YAML included) goes to the YAML parser, whose errors are shown.
        Format::Yaml => match text
            .trim_start()
            .starts_with('{')
            .then(|| serde_json::from_str(text).ok())
            .flatten()
        {
            Some(doc) => doc,
            None => serde_norway::from_str(text).map_err(|e| {
                let location = e.location();
                parse_error(
                    location.as_ref().map(|l| l.line()),
                    location.as_ref().map(|l| l.column()),
                    ParseDetail::Yaml(e),
                )
            })?,
        },
    };
    let base_dir = std::path::absolute(source)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    validate::validate(&doc, source, &base_dir).map_err(ConfigError::Invalid)
}

impl Config {
    /// The document, as named to [`load_file`] or [`parse_str`].
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The absolute folder relative file paths were resolved against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    pub fn vpcs(&self) -> &[Vpc] {
        &self.vpcs
    }

    pub fn service_networks(&self) -> &[ServiceNetwork] {
        &self.service_networks
    }

    pub fn resource_shares(&self) -> &[ResourceShare] {
        &self.resource_shares
    }

    pub fn services(&self) -> &[Service] {
        &self.services
    }

    pub fn target_groups(&self) -> &[TargetGroup] {
        &self.target_groups
    }

    pub fn access_log_subscriptions(&self) -> &[AccessLogSubscription] {
        &self.access_log_subscriptions
    }

    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.iter().find(|a| &a.id == id)
    }

    pub fn vpc(&self, r: VpcRef) -> &Vpc {
        &self.vpcs[r.0]
    }

    pub fn service_network(&self, r: ServiceNetworkRef) -> &ServiceNetwork {
        &self.service_networks[r.0]
    }

    pub fn service(&self, r: ServiceRef) -> &Service {
        &self.services[r.0]
    }

    pub fn target_group(&self, r: TargetGroupRef) -> &TargetGroup {
        &self.target_groups[r.0]
    }

    pub fn vpc_by_name(&self, name: &str) -> Option<VpcRef> {
        self.vpcs
            .iter()
            .position(|v| v.name.as_str() == name)
            .map(VpcRef)
    }

    pub fn service_network_by_name(&self, name: &str) -> Option<ServiceNetworkRef> {
        self.service_networks
            .iter()
            .position(|n| n.name.as_str() == name)
            .map(ServiceNetworkRef)
    }

    pub fn service_by_name(&self, name: &str) -> Option<ServiceRef> {
        self.services
            .iter()
            .position(|s| s.name.as_str() == name)
            .map(ServiceRef)
    }

    pub fn target_group_by_name(&self, name: &str) -> Option<TargetGroupRef> {
        self.target_groups
            .iter()
            .position(|t| t.name.as_str() == name)
            .map(TargetGroupRef)
    }

    /// The service networks a service is associated with.
    pub fn networks_of_service(
        &self,
        service: ServiceRef,
    ) -> impl Iterator<Item = ServiceNetworkRef> + '_ {
        self.service_networks
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.service_associations.contains(&service))
            .map(|(i, _)| ServiceNetworkRef(i))
    }

    /// Checks that the files the document names can be used: secret, certificate and
    /// key files are readable regular files; a log file is a regular file or does not
    /// exist yet, and its folder exists or can be created (the nearest existing
    /// ancestor is a directory). Validation does not touch the filesystem; the apply
    /// path calls this.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut push = |kind, name, field: String, message| {
            errors.push(FieldError {
                file: self.source.clone(),
                kind,
                name,
                field,
                message,
                quota: false,
            });
        };
        for account in &self.accounts {
            if let Some(path) = &account.mtls_ca_file {
                if let Err(message) = readable_file(path) {
                    push(
                        ResourceKind::Account,
                        ResourceName::Named(account.id.to_string()),
                        "mtlsCaFile".to_owned(),
                        message,
                    );
                }
            }
            for (p, principal) in account.principals.iter().enumerate() {
                for (k, key) in principal.access_keys.iter().enumerate() {
                    if let Err(message) = readable_file(&key.secret_file) {
                        push(
                            ResourceKind::Account,
                            ResourceName::Named(account.id.to_string()),
                            format!("principals[{p}].accessKeys[{k}].secretFile"),
                            message,
                        );
                    }
                }
            }
        }
        for service in &self.services {
            if let Some(cert) = &service.certificate {
                for (field, path) in [
                    ("certificate.certFile", &cert.cert_file),
                    ("certificate.keyFile", &cert.key_file),
                ] {
                    if let Err(message) = readable_file(path) {
                        push(
                            ResourceKind::Service,
                            ResourceName::Named(service.name.to_string()),
                            field.to_owned(),
                            message,
                        );
                    }
                }
            }
        }
        for (i, sub) in self.access_log_subscriptions.iter().enumerate() {
            if let LogDestination::File(path) = &sub.destination {
                if let Err(message) = creatable_file(path) {
                    push(
                        ResourceKind::AccessLogSubscription,
                        ResourceName::Unnamed(i),
                        "destination".to_owned(),
                        message,
                    );
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Files(ConfigErrors::new(errors)))
        }
    }
}

/// Whether a YAML text holds no value at all (empty, comments, a bare `---`). An
/// explicit `null` or `~` is content, not emptiness.
fn is_empty_yaml(text: &str) -> bool {
    // Only blank lines, comments and document markers can make an empty document, so a
    // text with anything else is not parsed a second time (at a thousand services the
    // YAML parse costs more than the rest of an apply).
    let content = text
        .lines()
        .map(str::trim)
        .any(|line| !(line.is_empty() || line.starts_with('#') || line == "---" || line == "..."));
    !content
        && matches!(
            serde_norway::from_str::<serde_norway::Value>(text),
            Ok(serde_norway::Value::Null)
        )
}

fn readable_file(path: &Path) -> Result<(), String> {
    match fs::File::open(path).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(format!("{} is not a regular file", path.display())),
        Err(e) => Err(format!("{} cannot be read: {e}", path.display())),
    }
}

fn creatable_file(path: &Path) -> Result<(), String> {
    if let Ok(meta) = fs::metadata(path) {
        return if meta.is_file() {
            Ok(())
        } else {
            Err(format!(
                "{} exists and is not a regular file",
                path.display()
            ))
        };
    }
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        if let Ok(meta) = fs::metadata(dir) {
            return if meta.is_dir() {
                Ok(())
            } else {
                Err(format!(
                    "log file {} cannot be created: {} is not a directory",
                    path.display(),
                    dir.display()
                ))
            };
        }
        ancestor = dir.parent();
    }
    Ok(())
}
