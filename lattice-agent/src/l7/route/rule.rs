//! A rule's conditions taken together: every condition present must hold.

use super::{header, path, RequestHead};
use crate::config::{HttpMatch, Method};

/// Whether `request` meets every condition of `conditions` (method, path, each header).
/// Validation guarantees at least one condition, so no rule takes every request by
/// accident of an empty match.
pub(super) fn holds(conditions: &HttpMatch, request: &RequestHead<'_>) -> bool {
    conditions
        .method
        .is_none_or(|method| method_holds(method, request.method))
        && conditions
            .path_match
            .as_ref()
            .is_none_or(|condition| path::holds(condition, request.path))
        && conditions
            .header_matches
            .iter()
            .all(|condition| header::holds(condition, request.headers))
}

/// Lattice: "The method match is case sensitive. The method name must be an exact
/// match." So `HEAD` is not `GET`, and an extension method `get` is not `GET`.
fn method_holds(want: Method, got: &http::Method) -> bool {
    want.as_str() == got.as_str()
}
