//! bpffs roots of tests: each test that loads lattice's programs pins them under its own
//! directory of /sys/fs/bpf, named with its tag, never under the production root.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::names::owner_pid;

/// Where bpffs is mounted on the machines lattice supports.
const BPFFS: &str = "/sys/fs/bpf";

/// An error removing or listing test pin roots.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct BpffsError {
    op: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// The pin root a test with this name uses.
pub fn root_for(name: &str) -> PathBuf {
    Path::new(BPFFS).join(name)
}

/// Removes a test pin root and everything pinned under it; absent is fine.
pub fn remove(path: &Path) -> Result<(), BpffsError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BpffsError {
            op: "removing",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Test pin roots (named by a test tag) under /sys/fs/bpf; none when bpffs is not there.
pub fn list() -> Result<Vec<PathBuf>, BpffsError> {
    let entries = match fs::read_dir(BPFFS) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(BpffsError {
                op: "listing",
                path: BPFFS.into(),
                source,
            })
        }
    };
    Ok(entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| owner_pid(n).is_some())
        })
        .collect())
}
