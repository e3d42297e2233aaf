//! Unique, parseable names for everything a test creates.
//!
//! Every object is named `ltt<pid>_<n>-<suffix>`, where `<pid>` is the creating process's id
//! and `<n>` a per-process counter, both in base 36. The counter keeps topologies of parallel
//! tests in one process apart, the pid keeps parallel test processes apart and lets
//! [`crate::sweep()`] recognise leftovers of crashed runs (their owner is no longer alive).
//! Base 36 and one-character separators keep host interface names within the kernel's 15
//! characters: `ltt` + pid (at most 5 digits, Linux pids stay below 2^22) + `_` + counter +
//! `-v` + link index stays within 15 while counter and index have at most two digits each
//! (1296 topologies per process, 1296 host links per topology); longer names are refused
//! when the link is created, never truncated.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// What every name starts with. Objects without it are never touched.
pub const PREFIX: &str = "ltt";

/// Longest interface name Linux accepts (IFNAMSIZ minus the terminating NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// Per-process counter behind [`Tag::next`].
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The unique part shared by all names of one [`crate::Topology`]: `ltt<pid>_<n>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    /// A tag not handed out before by this process. Crate-private: only
    /// [`crate::Topology::new`] allocates tags, after sweeping stale names of this pid.
    pub(crate) fn next() -> Tag {
        Tag::for_owner(std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The tag process `pid` would use for its `n`-th topology. Public so tests of the sweep
    /// can fake leftovers of a dead process; topologies get fresh ones from [`crate::Topology::new`].
    pub fn for_owner(pid: u32, n: u64) -> Tag {
        Tag(format!("{PREFIX}{}_{}", base36(pid.into()), base36(n)))
    }

    /// The tag itself, e.g. `ltt1k2_0`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of one object of this tag: `<tag>-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.0)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The pid that created `name`, or `None` if `name` is not one of ours.
///
/// Strict on purpose: the sweep deletes what this accepts, so an unrelated object that just
/// starts with `ltt` (say an `lttng0` interface) must not parse.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('_')?;
    let (counter, _suffix) = rest.split_once('-')?;
    let is_base36 = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    if !is_base36(pid) || !is_base36(counter) || pid.len() > 6 {
        return None;
    }
    let pid = u32::from_str_radix(pid, 36).ok()?;
    (pid > 0 && pid <= i32::MAX as u32).then_some(pid)
}

/// `n` in base 36 with lowercase digits.
pub(crate) fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(u64::from_str_radix(&base36(4_194_304), 36), Ok(4_194_304));
    }

    #[test]
    fn names_round_trip_to_their_owner() {
        let tag = Tag::for_owner(4_194_304, 1295);
        assert_eq!(owner_pid(&tag.name("v0")), Some(4_194_304));
        assert_eq!(owner_pid(&tag.name("client-ns")), Some(4_194_304));
        // The largest pid Linux allows, a two-digit counter and a two-digit link index
        // still fit an interface name.
        assert!(
            tag.name("vzz").len() <= MAX_IFNAME_LEN,
            "{}",
            tag.name("vzz")
        );
    }

    #[test]
    fn foreign_names_do_not_parse() {
        for name in [
            "lttng0",
            "ltt",
            "ltt_0-x",
            "lttab_-x",
            "lttab_0",
            "lttAB_0-x",
            "eth0",
            "ltt0_0-x",
            "xltt1_0-x",
        ] {
            assert_eq!(owner_pid(name), None, "{name}");
        }
    }

    #[test]
    fn tags_are_unique_within_a_process() {
        let a = Tag::next();
        let b = Tag::next();
        assert_ne!(a, b);
        assert_eq!(owner_pid(&a.name("x")), Some(std::process::id()));
    }
}
