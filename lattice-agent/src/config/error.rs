//! The errors of the config module: one per failing step (read, parse), and for a
//! document that parses but breaks rules, the whole list of [`FieldError`]s at once.

use std::{fmt, io, path::PathBuf};

/// The kinds of resource a desired-state document declares, as its errors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Account,
    Vpc,
    ServiceNetwork,
    ResourceShare,
    Service,
    TargetGroup,
    AccessLogSubscription,
}

impl ResourceKind {
    /// The document's top-level key that lists resources of this kind.
    pub fn list_key(self) -> &'static str {
        match self {
            Self::Account => "accounts",
            Self::Vpc => "vpcs",
            Self::ServiceNetwork => "serviceNetworks",
            Self::ResourceShare => "resourceShares",
            Self::Service => "services",
            Self::TargetGroup => "targetGroups",
            Self::AccessLogSubscription => "accessLogSubscriptions",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Account => "account",
            Self::Vpc => "vpc",
            Self::ServiceNetwork => "service network",
            Self::ResourceShare => "resource share",
            Self::Service => "service",
            Self::TargetGroup => "target group",
            Self::AccessLogSubscription => "access log subscription",
        })
    }
}

/// How an error names its resource: by the name (or account id) the document gives it,
/// or by its position when it has none (access log subscriptions, or a missing name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourceName {
    Named(String),
    /// Index in the resource's top-level list.
    Unnamed(usize),
}

impl ResourceName {
    /// The name, if the resource has one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Named(name) => Some(name),
            Self::Unnamed(_) => None,
        }
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Named(name) => write!(f, "{name:?}"),
            Self::Unnamed(index) => write!(f, "#{index}"),
        }
    }
}

/// One broken rule: which file, which resource, which field, what is wrong.
///
/// Displays as `config.yaml: service "orders": listeners[0].rules[1].priority: 0 is out
/// of range 1-2000`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {kind} {name}: {field}: {message}", file.display())]
pub struct FieldError {
    /// The document, as it was named to the loader.
    pub file: PathBuf,
    pub kind: ResourceKind,
    pub name: ResourceName,
    /// Path of the field inside the resource, e.g. `listeners[0].rules[1].priority`.
    pub field: String,
    pub message: String,
    /// The field passes one of Lattice's quotas (the API answers
    /// ServiceQuotaExceededException rather than a validation error).
    pub quota: bool,
}

/// Every [`FieldError`] of a document, in document order; displays one per line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(Vec<FieldError>);

impl ConfigErrors {
    pub(crate) fn new(errors: Vec<FieldError>) -> Self {
        Self(errors)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What the YAML or JSON parser said (syntax, unknown field, wrong type).
#[derive(Debug, thiserror::Error)]
pub enum ParseDetail {
    #[error("{0}")]
    Yaml(serde_norway::Error),
    #[error("{0}")]
    Json(serde_json::Error),
}

/// Why a desired-state document was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {detail}", path.display())]
    Read { path: PathBuf, detail: io::Error },
    /// The text is not YAML/JSON of the document's shape. The parser's message says
    /// where (line and column) and, for YAML, the path of the offending field.
    #[error("{}: {detail}", file.display())]
    Parse {
        file: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        detail: ParseDetail,
    },
    /// The YAML document has no content (empty, or only comments). A desired state
    /// without resources is written `{}`, so a truncated file never reads as "remove
    /// everything".
    #[error("{}: the document is empty (write {{}} for a desired state without resources)", file.display())]
    Empty { file: PathBuf },
    /// The document parses but breaks rules; all of them are listed.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// Files the document names (keys, certificates, log folders) are missing or
    /// unreadable; reported by [`crate::config::Config::check_files`].
    #[error("{0}")]
    Files(ConfigErrors),
}

impl ConfigError {
    /// The individual field errors, for `Invalid` and `Files`; empty otherwise.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Self::Invalid(errors) | Self::Files(errors) => &errors.0,
            Self::Read { .. } | Self::Parse { .. } | Self::Empty { .. } => &[],
        }
    }
}
