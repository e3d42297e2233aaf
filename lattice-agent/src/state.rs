//! The agent's state directory: small files that must survive restarts (virtual IP
//! allocations, ...), each replaced atomically so a crash leaves the old or the new
//! content, never a torn one.
//!
//! A write goes to a temporary file in the same directory (mode 0600), is flushed to
//! disk, renamed over the target, and the directory is flushed so the rename itself is
//! durable.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use serde::{de::DeserializeOwned, Serialize};

/// Why a state-directory operation failed: the operation, the path, the cause.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{name:?} is not a plain file name inside the state directory")]
    InvalidName { name: String },
    #[error("decode {}: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("encode {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The agent's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens `path`, creating it (and missing parents) with mode 0700. An existing
    /// directory is used as it is; its mode is not changed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io_error("create directory", path))?;
        let meta = fs::metadata(path).map_err(io_error("stat", path))?;
        if !meta.is_dir() {
            return Err(StateError::NotADirectory {
                path: path.to_owned(),
            });
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the state file `name` (a plain file name).
    pub fn file_path(&self, name: &str) -> Result<PathBuf, StateError> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\0');
        if plain {
            Ok(self.path.join(name))
        } else {
            Err(StateError::InvalidName {
                name: name.to_owned(),
            })
        }
    }

    /// The content of `name`, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.file_path(name)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path)(e)),
        }
    }

    /// Replaces `name` with `contents` atomically and durably.
    pub fn write_atomic(&self, name: &str, contents: &[u8]) -> Result<(), StateError> {
        let path = self.file_path(name)?;
        // Unique per process and call, so concurrent writers never share a temporary.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temp = self.path.join(format!(
            ".{name}.tmp.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)
                .map_err(io_error("create", &temp))?;
            file.write_all(contents).map_err(io_error("write", &temp))?;
            file.sync_all().map_err(io_error("fsync", &temp))?;
            drop(file);
            fs::rename(&temp, &path).map_err(io_error("rename into place", &path))?;
            let dir = fs::File::open(&self.path).map_err(io_error("open", &self.path))?;
            dir.sync_all().map_err(io_error("fsync", &self.path))
        })();
        if result.is_err() {
            // Best effort: the temporary may not exist (or was already renamed).
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Decodes the JSON file `name`, or `None` when it does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let Some(bytes) = self.read(name)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Decode {
                path: self.path.join(name),
                source,
            })
    }

    /// Writes `value` as pretty JSON to `name`, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Encode {
            path: self.path.join(name),
            source,
        })?;
        bytes.push(b'\n');
        self.write_atomic(name, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path().join("a/state")).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Opening again is fine.
        StateDir::open(dir.path()).unwrap();
    }

    #[test]
    fn atomic_replace_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        assert_eq!(dir.read("x.json").unwrap(), None);
        dir.write_atomic("x.json", b"one").unwrap();
        dir.write_atomic("x.json", b"two").unwrap();
        assert_eq!(dir.read("x.json").unwrap().as_deref(), Some(&b"two"[..]));
        let mode = fs::metadata(dir.path().join("x.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.json"]);
    }

    #[test]
    fn refuses_paths_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        assert!(matches!(
            dir.write_atomic("../x", b""),
            Err(StateError::InvalidName { .. })
        ));
        assert!(matches!(dir.read(""), Err(StateError::InvalidName { .. })));
    }

    #[test]
    fn json_round_trip_and_decode_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        dir.write_json("v.json", &vec![1, 2, 3]).unwrap();
        assert_eq!(
            dir.read_json::<Vec<u32>>("v.json").unwrap(),
            Some(vec![1, 2, 3])
        );
        dir.write_atomic("bad.json", b"{").unwrap();
        assert!(matches!(
            dir.read_json::<Vec<u32>>("bad.json"),
            Err(StateError::Decode { .. })
        ));
    }
}
