//! Removal of what crashed or killed test runs left behind.
//!
//! A test process killed by a signal (or `panic = "abort"`) never runs `Drop`, so its
//! namespaces, host interfaces and cgroups stay. Their names carry the owner's pid (see
//! [`crate::names`]); whatever has an owner that is no longer alive is removed here. Names
//! that do not parse as ours are never touched.

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::bpffs::{self, BpffsError};
use crate::cgroup::{self, CgroupError};
use crate::error_chain;
use crate::link::{self, LinkError};
use crate::names::owner_pid;
use crate::netns::{self, NetnsError};

/// What a sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Network namespace names.
    pub netns: Vec<String>,
    /// Host interface names.
    pub host_links: Vec<String>,
    /// cgroup directories.
    pub cgroups: Vec<PathBuf>,
    /// bpffs pin roots.
    pub bpffs_roots: Vec<PathBuf>,
}

impl Swept {
    /// Whether nothing was left over.
    pub fn is_empty(&self) -> bool {
        self.netns.is_empty()
            && self.host_links.is_empty()
            && self.cgroups.is_empty()
            && self.bpffs_roots.is_empty()
    }
}

/// Listing or removing one kind of leftover failed.
#[derive(Debug, thiserror::Error)]
pub enum SweepFailure {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Bpffs(#[from] BpffsError),
}

/// Some leftovers could not be listed or removed; the others were.
#[derive(Debug, thiserror::Error)]
#[error("sweeping leftovers of dead test runs failed: {}", Failures(failures))]
pub struct SweepError {
    /// What was removed nevertheless.
    pub swept: Swept,
    /// Every failure, each with its cause.
    pub failures: Vec<SweepFailure>,
}

/// Removes the namespaces, host interfaces and cgroups of test processes that are no
/// longer alive. Cheap when there is nothing to do: three directory listings.
pub fn sweep() -> Result<Swept, SweepError> {
    sweep_owned_by(|pid| !is_alive(pid))
}

/// Removes every test object whose owner pid satisfies `stale`. Cgroups go first (they
/// hold no network state), then host interfaces, then namespaces, so a host veth end is
/// deleted directly rather than when the kernel gets round to destroying its peer's
/// namespace.
pub(crate) fn sweep_owned_by(stale: impl Fn(u32) -> bool) -> Result<Swept, SweepError> {
    let is_stale = |name: &str| owner_pid(name).is_some_and(&stale);
    let mut swept = Swept::default();
    let mut failures = Vec::new();

    // Pinned programs first: they may be attached to interfaces removed below.
    match bpffs::list() {
        Ok(roots) => {
            for root in roots {
                let name = root
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if is_stale(&name) {
                    match bpffs::remove(&root) {
                        Ok(()) => swept.bpffs_roots.push(root),
                        Err(e) => failures.push(e.into()),
                    }
                }
            }
        }
        Err(e) => failures.push(e.into()),
    }
    match cgroup::list() {
        Ok(dirs) => {
            for dir in dirs {
                let name = dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if is_stale(&name) {
                    match cgroup::remove(&dir) {
                        Ok(()) => swept.cgroups.push(dir),
                        Err(e) => failures.push(e.into()),
                    }
                }
            }
        }
        Err(e) => failures.push(e.into()),
    }
    match link::list_host() {
        Ok(names) => {
            for name in names.into_iter().filter(|name| is_stale(name)) {
                match link::delete(&name) {
                    Ok(()) => swept.host_links.push(name),
                    Err(e) => failures.push(e.into()),
                }
            }
        }
        Err(e) => failures.push(e.into()),
    }
    match netns::list() {
        Ok(names) => {
            for name in names.into_iter().filter(|name| is_stale(name)) {
                match netns::delete(&name) {
                    Ok(()) => swept.netns.push(name),
                    Err(e) => failures.push(e.into()),
                }
            }
        }
        Err(e) => failures.push(e.into()),
    }

    if failures.is_empty() {
        Ok(swept)
    } else {
        Err(SweepError { swept, failures })
    }
}

/// Whether a process `pid` exists (signal 0 checks without sending anything; EPERM means
/// it exists but is not ours to signal). Zombies count as alive.
fn is_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // owner_pid never yields 0 or negative pids, which kill() would treat as groups.
    pid > 0 && !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// Displays every failure with its chain of causes, separated by `; `.
struct Failures<'a>(&'a [SweepFailure]);

impl fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.0.iter().map(|failure| error_chain(failure)).collect();
        f.write_str(&all.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness() {
        assert!(is_alive(std::process::id()));
        assert!(is_alive(1));
        assert!(!is_alive(u32::MAX));
    }
}
