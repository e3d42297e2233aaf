//! How a request's text compares with a condition's text, with or without case.
//!
//! Comparisons are over bytes, because header values are bytes (RFC 9110 lets them carry
//! opaque octets) and because a path is compared as sent, percent-escapes and all.
//! Ignoring case folds ASCII letters only: HTTP paths and field values are ASCII in
//! practice, and an ASCII fold never touches the bytes of a multi-byte UTF-8 character,
//! so it cannot make a non-ASCII pattern match something else.

/// `value` is `pattern`.
pub(super) fn equals(value: &[u8], pattern: &[u8], case_sensitive: bool) -> bool {
    if case_sensitive {
        value == pattern
    } else {
        value.eq_ignore_ascii_case(pattern)
    }
}

/// `value` begins with `pattern`.
pub(super) fn starts_with(value: &[u8], pattern: &[u8], case_sensitive: bool) -> bool {
    value
        .get(..pattern.len())
        .is_some_and(|head| equals(head, pattern, case_sensitive))
}

/// `pattern` occurs somewhere in `value`. Naive search: patterns are at most 200
/// characters (Lattice's limit) and header values short, so nothing cleverer pays.
pub(super) fn contains(value: &[u8], pattern: &[u8], case_sensitive: bool) -> bool {
    // `windows(0)` panics; the empty pattern (refused by validation) is in every value.
    pattern.is_empty()
        || value
            .windows(pattern.len())
            .any(|window| equals(window, pattern, case_sensitive))
}
