//! The path condition of a rule: exact or prefix, with or without case.

use super::text;
use crate::config::{PathMatch, PathMatchType};

/// Whether the request's URI path meets `condition`.
///
/// `path` is the path as sent: no query (Lattice routes on "the path patterns in the
/// request URLs"; the query is not part of the path), no percent-decoding, no removal of
/// dot segments or doubled slashes. A trailing slash is an ordinary character: exact
/// `/api` does not take `/api/`. A prefix is a prefix of the string, not of path
/// segments (Lattice documents no segment rule): prefix `/api` takes `/api`, `/api/x`
/// and also `/apiary`; write `/api/` to mean the folder.
pub(super) fn holds(condition: &PathMatch, path: &str) -> bool {
    let case_sensitive = condition.case_sensitive;
    match &condition.matcher {
        PathMatchType::Exact(want) => {
            text::equals(path.as_bytes(), want.as_bytes(), case_sensitive)
        }
        PathMatchType::Prefix(want) => {
            text::starts_with(path.as_bytes(), want.as_bytes(), case_sensitive)
        }
    }
}
