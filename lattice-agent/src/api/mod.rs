//! The control API: HTTP/JSON on a Unix socket only root may use (and, when asked, on
//! TCP with a bearer token), with Amazon VPC Lattice's operations, paths and error
//! shapes. Every change becomes a new desired-state document that the agent validates
//! whole and applies like an edit of its config file ([`crate::live`]).
//!
//! | module | concern |
//! | --- | --- |
//! | [`route`] | HTTP method and path to a [`Call`], request bodies and query parameters |
//! | [`identifier`] | ids and ARNs in a call's path (Lattice's identifiers) to the document's names |
//! | [`ops`] | the operations as pure functions over the document |
//! | [`error`] | Lattice's exceptions: status, `x-amzn-ErrorType`, JSON body |
//! | [`server`] | the listeners, who may call, and handing calls to the agent |
//! | [`client`] | the `lattice` CLI's side: requests over the socket or TCP |

pub mod client;
pub mod error;
pub mod identifier;
pub mod ops;
pub mod route;
pub mod server;

use serde_json::Value;

pub use error::ApiError;
use ops::{Kind, Page};

use crate::live::Document;

/// Where the agent serves the API unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lattice/api.sock";

/// One call of the API, as the agent executes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// The document in force and its generation.
    GetDocument,
    /// Replaces the whole document (`lattice apply`); with `dry_run` only validates it
    /// and reports the diff. `if_generation`: refuse (409) unless the agent still runs
    /// that generation.
    PutDocument {
        document: Document,
        dry_run: bool,
        if_generation: Option<u64>,
    },
    List {
        kind: Kind,
        parents: Vec<String>,
        page: Page,
    },
    Get {
        kind: Kind,
        id: Vec<String>,
    },
    Create {
        kind: Kind,
        parents: Vec<String>,
        item: Value,
    },
    Update {
        kind: Kind,
        id: Vec<String>,
        patch: Value,
    },
    Delete {
        kind: Kind,
        id: Vec<String>,
    },
    RegisterTargets {
        group: String,
        targets: Vec<Value>,
    },
    DeregisterTargets {
        group: String,
        targets: Vec<Value>,
    },
    /// With each target's health state and reason code.
    ListTargets {
        group: String,
        page: Page,
    },
    PutAuthPolicy {
        resource: PolicyResource,
        policy: Value,
    },
    GetAuthPolicy {
        resource: PolicyResource,
    },
    DeleteAuthPolicy {
        resource: PolicyResource,
    },
    /// Live per-service and per-target-group counters.
    Stats,
}

/// The resource of an auth policy call: a service or a service network.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyResource {
    pub name: String,
    /// The kind the call's id or ARN named; `None` for a name, which a service and a
    /// service network may share.
    pub kind: Option<Kind>,
}

impl PolicyResource {
    pub fn named(name: impl Into<String>) -> PolicyResource {
        PolicyResource {
            name: name.into(),
            kind: None,
        }
    }
}

impl Call {
    /// Whether the call changes the desired state.
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            Call::GetDocument
                | Call::List { .. }
                | Call::Get { .. }
                | Call::ListTargets { .. }
                | Call::GetAuthPolicy { .. }
                | Call::Stats
        ) && !matches!(self, Call::PutDocument { dry_run: true, .. })
    }
}
