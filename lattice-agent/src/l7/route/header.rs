//! The header conditions of a rule: exact, prefix or contains, with or without case.

use http::HeaderMap;

use super::text;
use crate::config::{HeaderMatch, HeaderMatchType};

/// Whether some field line of the header that `condition` names meets it.
///
/// Header names compare without case (Lattice: "The header name and the match evaluation
/// are not case sensitive"; the config lowercases names and [`HeaderMap`] stores them
/// lowercase). A missing header meets no condition. A header sent several times is
/// several values, and the condition holds if any one of them meets it: Lattice does
/// not document this case, and "any" is what a client that sends `x-env` twice would
/// expect. Each value is taken whole (a comma-separated list on one line is one value),
/// so `contains` finds a member of such a list and `exact` does not.
pub(super) fn holds(condition: &HeaderMatch, headers: &HeaderMap) -> bool {
    headers
        .get_all(condition.name.as_str())
        .iter()
        .any(|value| {
            value_holds(
                &condition.matcher,
                value.as_bytes(),
                condition.case_sensitive,
            )
        })
}

fn value_holds(matcher: &HeaderMatchType, value: &[u8], case_sensitive: bool) -> bool {
    match matcher {
        HeaderMatchType::Exact(want) => text::equals(value, want.as_bytes(), case_sensitive),
        HeaderMatchType::Prefix(want) => text::starts_with(value, want.as_bytes(), case_sensitive),
        HeaderMatchType::Contains(want) => text::contains(value, want.as_bytes(), case_sensitive),
    }
}
