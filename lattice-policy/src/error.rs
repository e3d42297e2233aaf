//! The one error type of parsing: a problem and where it is in the document.

/// A problem with a policy document, at a JSON path relative to the document root
/// (`Statement[1].Condition.StringEquals`; empty for the document itself). Callers that
/// hold the document under a field of their own add their prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct PolicyError {
    /// Where the problem is, e.g. `Statement[0].Principal.AWS[2]`.
    pub path: String,
    /// What is wrong, phrased to follow the path.
    pub message: String,
}

/// The problems found so far; parsing goes on after each one so that a document is
/// refused with all of them at once.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<PolicyError>,
}

impl Problems {
    pub(crate) fn push(&mut self, path: &str, message: impl Into<String>) {
        self.list.push(PolicyError {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<PolicyError> {
        self.list
    }
}

/// `parent.child`, or `child` at the root.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}
