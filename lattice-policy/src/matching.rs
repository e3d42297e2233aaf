//! Wildcard patterns (`*` any run of characters, `?` one character) and ARN patterns,
//! which apply a wildcard pattern to each colon-separated segment separately.
//!
//! Patterns are classified once, at parse time, so that the common shapes (`*`, a
//! literal, a literal followed by one trailing `*`) are compared without running the
//! general matcher.

/// Whether letters must match in case. Actions are case-insensitive in IAM; string
/// conditions, resources and ARNs are case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    Sensitive,
    /// ASCII case folding: action names and service prefixes are ASCII.
    InsensitiveAscii,
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    shape: Shape,
    case: Case,
}

#[derive(Debug, Clone)]
enum Shape {
    /// `*`: every text, including the empty one.
    Any,
    /// No wildcard: the text itself.
    Exact(Box<str>),
    /// `literal*` with no other wildcard.
    Prefix(Box<str>),
    /// Anything else.
    Glob(Box<str>),
}

impl Pattern {
    pub(crate) fn new(pattern: &str, case: Case) -> Self {
        let has_wildcard = |s: &str| s.contains(['*', '?']);
        let shape = if pattern == "*" {
            Shape::Any
        } else if !has_wildcard(pattern) {
            Shape::Exact(pattern.into())
        } else if let Some(prefix) = pattern.strip_suffix('*').filter(|p| !has_wildcard(p)) {
            Shape::Prefix(prefix.into())
        } else {
            Shape::Glob(pattern.into())
        };
        Self { shape, case }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        let fold = self.case == Case::InsensitiveAscii;
        match &self.shape {
            Shape::Any => true,
            Shape::Exact(literal) if fold => literal.eq_ignore_ascii_case(text),
            Shape::Exact(literal) => **literal == *text,
            Shape::Prefix(prefix) => text
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|head| bytes_eq(prefix.as_bytes(), head, fold)),
            Shape::Glob(pattern) => glob(pattern.as_bytes(), text.as_bytes(), fold),
        }
    }
}

fn bytes_eq(a: &[u8], b: &[u8], fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Length in bytes of the UTF-8 character that starts with `lead`.
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

/// The general matcher: one pass with backtracking to the last `*` only, so it is linear
/// in practice and never recursive. `?` and a `*` that grows consume whole characters,
/// so a multi-byte character is never split.
fn glob(pattern: &[u8], text: &[u8], fold: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after a mismatch: the pattern after the last `*`, and the text
    // position that `*` has grown to.
    let mut resume: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                resume = Some((p, t));
                continue;
            }
            Some(b'?') => {
                p += 1;
                t += char_len(c);
                continue;
            }
            Some(&literal) if bytes_eq(&[literal], &[c], fold) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        let Some((after_star, grown)) = resume else {
            return false;
        };
        let Some(&lead) = text.get(grown) else {
            return false;
        };
        let grown = grown + char_len(lead);
        resume = Some((after_star, grown));
        p = after_star;
        t = grown;
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// An ARN pattern: `arn:partition:service:region:account:resource`, each of the six
/// segments a wildcard pattern matched against the same segment of the ARN. The resource
/// segment is everything after the fifth colon, so it may hold colons and slashes and a
/// `*` there matches across them; a `*` elsewhere stays within its segment.
#[derive(Debug, Clone)]
pub(crate) enum ArnPattern {
    /// No wildcard before the resource segment (the usual case): then matching segment
    /// by segment is the same as matching the whole text, since only the resource
    /// segment can stretch, and it may cross colons anyway. One pass, no splitting.
    Whole(Pattern),
    Segments(Box<[Pattern; 6]>),
}

impl ArnPattern {
    /// `None` unless the text has the six segments of an ARN and starts with `arn`.
    pub(crate) fn new(pattern: &str) -> Option<Self> {
        if !pattern.starts_with("arn:") {
            return None;
        }
        let mut parts = pattern.splitn(6, ':');
        let mut next = || parts.next();
        let segments = [next()?, next()?, next()?, next()?, next()?, next()?];
        let literal_head = segments[..5].iter().all(|s| !s.contains(['*', '?']));
        Some(if literal_head {
            Self::Whole(Pattern::new(pattern, Case::Sensitive))
        } else {
            Self::Segments(Box::new(segments.map(|s| Pattern::new(s, Case::Sensitive))))
        })
    }

    pub(crate) fn matches(&self, arn: &str) -> bool {
        match self {
            Self::Whole(pattern) => pattern.matches(arn),
            Self::Segments(segments) => {
                let mut parts = arn.splitn(6, ':');
                segments
                    .iter()
                    .all(|segment| parts.next().is_some_and(|part| segment.matches(part)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let cases: &[(&str, &str, Case, bool)] = &[
            ("*", "", Case::Sensitive, true),
            ("*", "anything", Case::Sensitive, true),
            ("abc", "abc", Case::Sensitive, true),
            ("abc", "ABC", Case::Sensitive, false),
            ("abc", "ABC", Case::InsensitiveAscii, true),
            ("ab*", "ab", Case::Sensitive, true),
            ("ab*", "abcdef", Case::Sensitive, true),
            ("ab*", "aB", Case::Sensitive, false),
            ("AB*", "abX", Case::InsensitiveAscii, true),
            ("a?c", "abc", Case::Sensitive, true),
            ("a?c", "ac", Case::Sensitive, false),
            ("a?c", "aéc", Case::Sensitive, true),
            ("a??c", "aéc", Case::Sensitive, false),
            ("*.txt", "notes.txt", Case::Sensitive, true),
            ("*.txt", "notes.txt.bak", Case::Sensitive, false),
            ("*a*b*c*", "xxaxxbxxcxx", Case::Sensitive, true),
            ("*a*b*c*", "xxaxxcxxbxx", Case::Sensitive, false),
            ("a*b?d", "aXXbcd", Case::Sensitive, true),
            ("a*b?d", "aXXbd", Case::Sensitive, false),
            ("*é", "café", Case::Sensitive, true),
            ("**", "", Case::Sensitive, true),
            ("?", "", Case::Sensitive, false),
            (
                "vpc-lattice-svcs:*",
                "VPC-Lattice-Svcs:Invoke",
                Case::InsensitiveAscii,
                true,
            ),
            (
                "vpc-lattice-svcs:In*ke",
                "vpc-lattice-svcs:invoke",
                Case::InsensitiveAscii,
                true,
            ),
        ];
        for &(pattern, text, case, expected) in cases {
            assert_eq!(
                Pattern::new(pattern, case).matches(text),
                expected,
                "{pattern:?} ~ {text:?} ({case:?})"
            );
        }
    }

    #[test]
    fn arn_segments() {
        // IAM's own example: StringLike would match, ArnLike must not, since the first
        // `*` may not cross the colons of the region and account segments.
        let pattern = ArnPattern::new("arn:aws:someservice:*:111122223333:finance/*").unwrap();
        assert!(!pattern.matches(
            "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
        ));
        assert!(pattern.matches("arn:aws:someservice:us-east-2:111122223333:finance/doc.txt"));
        let service = ArnPattern::new("arn:lattice:vpc-lattice:*:*:service/svc-1/*").unwrap();
        assert!(service.matches("arn:lattice:vpc-lattice:local:111111111111:service/svc-1/a/b:c"));
        assert!(!service.matches("arn:lattice:vpc-lattice:local:111111111111:service/svc-2/a"));
        assert!(!service.matches("arn:lattice:vpc-lattice:local"));
        let literal = ArnPattern::new("arn:lattice:vpc-lattice:local:1:service/svc-1/*").unwrap();
        assert!(matches!(literal, ArnPattern::Whole(_)));
        assert!(literal.matches("arn:lattice:vpc-lattice:local:1:service/svc-1/a:b"));
        assert!(!literal.matches("arn:lattice:vpc-lattice:local:1:service/svc-12/a"));
        let exact = ArnPattern::new("arn:lattice:iam::1:root").unwrap();
        assert!(exact.matches("arn:lattice:iam::1:root"));
        assert!(!exact.matches("arn:lattice:iam::1:root:x"));
        assert!(ArnPattern::new("arn:lattice:iam::1").is_none());
        assert!(ArnPattern::new("urn:a:b:c:d:e").is_none());
    }
}
