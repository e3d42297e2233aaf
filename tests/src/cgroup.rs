//! cgroup v2 directories for tests: lattice's cgroup hooks (connect4, getpeername4,
//! sock_ops) act on the sockets of processes in a cgroup, so a test puts its client
//! processes into a cgroup of its own and attaches there, never to the root cgroup.
//!
//! The cgroup2 mount is found in `/proc/mounts` (hybrid hosts mount it at
//! `/sys/fs/cgroup/unified`, pure v2 hosts at `/sys/fs/cgroup`). Test cgroups are direct
//! children of its root. Only whole processes are moved: a single thread can only join a
//! *threaded* cgroup, which would change the type of the parent, a cgroup we do not own.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::Netns;

/// Script that moves the shell into the cgroup whose `cgroup.procs` is `$1`, then becomes
/// the program `$2...`: the program is in the cgroup from its first instruction.
const ENTER_AND_EXEC: &str = r#"echo $$ > "$1" && shift && exec "$@""#;

/// How often [`remove`] retries `rmdir` while exiting processes still hold the cgroup.
const REMOVE_ATTEMPTS: u32 = 50;

/// Finding, creating, filling or removing a cgroup failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 file system is mounted.
    #[error("no cgroup2 mount in /proc/mounts (lattice's cgroup hooks need cgroup v2)")]
    NoCgroup2,
    /// A file operation on the cgroup tree failed.
    #[error("{op} {} failed (needs root)", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A path given for removal is not a test cgroup.
    #[error("refusing to remove {}: not a cgroup created by lattice-tests", path.display())]
    NotOurs { path: PathBuf },
}

/// A cgroup created by a [`crate::Topology`]. Cloning is cheap; the topology moves any
/// processes still inside to the parent and removes the directory when dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Creates the cgroup `name` under the cgroup2 root.
    pub(crate) fn create(name: &str) -> Result<Cgroup, CgroupError> {
        let path = cgroup2_root()?.join(name);
        std::fs::create_dir(&path).map_err(|source| io_error("creating cgroup", &path, source))?;
        Ok(Cgroup { path })
    }

    /// The cgroup's directory, e.g. to open it for attaching a cgroup program.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path `/proc/<pid>/cgroup` shows for members: `/<name>`.
    pub fn relative_path(&self) -> String {
        format!(
            "/{}",
            self.path.file_name().unwrap_or_default().to_string_lossy()
        )
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        let procs = self.path.join("cgroup.procs");
        std::fs::write(&procs, format!("{pid}\n"))
            .map_err(|source| io_error("moving a process into", &procs, source))
    }

    /// The processes currently in this cgroup.
    pub fn procs(&self) -> Result<Vec<u32>, CgroupError> {
        read_procs(&self.path)
    }

    /// A command that runs `program` inside this cgroup from its first instruction (a
    /// shell moves itself in, then execs the program). Add arguments, then spawn it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("sh");
        command
            .args(["-c", ENTER_AND_EXEC, "sh"])
            .arg(self.path.join("cgroup.procs"))
            .arg(program);
        command
    }

    /// Like [`Cgroup::command`], with the program also inside network namespace `netns`.
    /// The cgroup is joined first: `ip netns exec` hides the host's `/sys`.
    pub fn command_in(&self, netns: &Netns, program: impl AsRef<OsStr>) -> Command {
        let mut command = self.command("ip");
        command.args(["netns", "exec", netns.name()]).arg(program);
        command
    }
}

/// The root of the cgroup2 hierarchy, from `/proc/mounts`.
pub fn cgroup2_root() -> Result<PathBuf, CgroupError> {
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|source| io_error("reading", Path::new("/proc/mounts"), source))?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_device, mount_point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            (fs_type == "cgroup2").then(|| PathBuf::from(unescape_mount_path(mount_point)))
        })
        .next()
        .ok_or(CgroupError::NoCgroup2)
}

/// Removes the test cgroup at `path`: sub-cgroups first, then processes still inside are
/// moved to the parent, then the directory goes. A cgroup already gone counts as removed.
pub(crate) fn remove(path: &Path) -> Result<(), CgroupError> {
    let is_ours = path
        .file_name()
        .and_then(OsStr::to_str)
        .and_then(crate::names::owner_pid)
        .is_some();
    if !is_ours {
        return Err(CgroupError::NotOurs {
            path: path.to_owned(),
        });
    }
    remove_tree(path)
}

fn remove_tree(path: &Path) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        entries => entries.map_err(|source| io_error("listing", path, source))?,
    };
    for entry in entries {
        let entry = entry.map_err(|source| io_error("listing", path, source))?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    let parent_procs = path.parent().unwrap_or(path).join("cgroup.procs");
    let mut attempt = 0;
    loop {
        for pid in read_procs(path)? {
            match std::fs::write(&parent_procs, format!("{pid}\n")) {
                // The process exited meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                result => result
                    .map_err(|source| io_error("moving a process to", &parent_procs, source))?,
            }
        }
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // A process forked or was still exiting: move again.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < REMOVE_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => return Err(io_error("removing cgroup", path, source)),
        }
    }
}

/// The test cgroups (and anything else) directly under the cgroup2 root.
pub(crate) fn list() -> Result<Vec<PathBuf>, CgroupError> {
    let root = cgroup2_root()?;
    let entries = std::fs::read_dir(&root).map_err(|source| io_error("listing", &root, source))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io_error("listing", &root, source))?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

fn read_procs(cgroup: &Path) -> Result<Vec<u32>, CgroupError> {
    let procs = cgroup.join("cgroup.procs");
    match std::fs::read_to_string(&procs) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(io_error("reading", &procs, source)),
    }
}

/// `/proc/mounts` writes space, tab, newline and backslash in paths as `\ooo` octal.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(
            unescape_mount_path(r"/sys/fs/cgroup/unified"),
            "/sys/fs/cgroup/unified"
        );
        assert_eq!(
            unescape_mount_path(r"/mnt/with\040space"),
            "/mnt/with space"
        );
        assert_eq!(unescape_mount_path(r"/odd\"), r"/odd\");
    }

    #[test]
    fn cgroup2_root_is_a_cgroup2_directory() {
        let root = cgroup2_root().unwrap();
        assert!(root.join("cgroup.procs").exists(), "{}", root.display());
    }

    #[test]
    fn removal_refuses_foreign_paths() {
        let err = remove(Path::new("/sys/fs/cgroup/unified")).unwrap_err();
        assert!(matches!(err, CgroupError::NotOurs { .. }), "{err:?}");
    }
}
