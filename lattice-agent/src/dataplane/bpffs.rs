//! The bpf filesystem where the agent pins its programs, maps and links.

use std::{
    fs,
    path::{Path, PathBuf},
};

use nix::mount::{mount, MsFlags};

use super::DataplaneError;

/// Where bpffs is conventionally mounted; on some hosts nothing mounts it at boot.
const BPFFS_MOUNT_POINT: &str = "/sys/fs/bpf";

/// Makes sure `root` is a directory on a bpf filesystem: mounts bpffs at /sys/fs/bpf
/// when `root` is under it and it is not mounted, then creates `root` and its `progs` and
/// `links` sub-directories. Returns whether it mounted bpffs.
pub fn ensure_bpffs(root: &Path) -> Result<bool, DataplaneError> {
    let mut mounted = false;
    let (mount_point, fstype) = mount_of(root)?;
    if fstype != "bpf" {
        if root.starts_with(BPFFS_MOUNT_POINT) {
            mount(
                Some("bpf"),
                BPFFS_MOUNT_POINT,
                Some("bpf"),
                MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|source| DataplaneError::MountBpffs {
                path: BPFFS_MOUNT_POINT.into(),
                source,
            })?;
            mounted = true;
        } else {
            return Err(DataplaneError::NotBpffs {
                path: root.to_path_buf(),
                fstype,
                mount_point,
            });
        }
    }
    for dir in [
        root.to_path_buf(),
        root.join(lattice_common::pins::PROGS_DIR),
        root.join(lattice_common::pins::LINKS_DIR),
    ] {
        fs::create_dir_all(&dir).map_err(|source| DataplaneError::Fs {
            op: "creating",
            path: dir.clone(),
            source,
        })?;
    }
    Ok(mounted)
}

/// Removes everything pinned under `root`, and `root` itself. Programs stay attached
/// only as long as something holds them: with the pins gone, the kernel frees them when
/// the last link or process lets go. Returns false if there was nothing to remove.
pub fn remove_root(root: &Path) -> Result<bool, DataplaneError> {
    match fs::remove_dir_all(root) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DataplaneError::Fs {
            op: "removing",
            path: root.to_path_buf(),
            source,
        }),
    }
}

/// The mount point and filesystem type that `path` (or its nearest existing ancestor)
/// lives on, from /proc/mounts: the longest mount point that is a prefix of it.
fn mount_of(path: &Path) -> Result<(PathBuf, String), DataplaneError> {
    let mounts = fs::read_to_string("/proc/mounts").map_err(DataplaneError::ReadMounts)?;
    Ok(longest_mount(&mounts, path))
}

fn longest_mount(mounts: &str, path: &Path) -> (PathBuf, String) {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            let mount_point = PathBuf::from(unescape_mount(fields.next()?));
            let fstype = fields.next()?.to_owned();
            path.starts_with(&mount_point)
                .then_some((mount_point, fstype))
        })
        // The last of equally long mount points is the one on top.
        .fold((PathBuf::from("/"), String::from("rootfs")), |best, m| {
            if m.0.as_os_str().len() >= best.0.as_os_str().len() {
                m
            } else {
                best
            }
        })
}

/// /proc/mounts escapes spaces, tabs, newlines and backslashes as octal.
fn unescape_mount(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/vda / ext4 rw 0 0
sysfs /sys sysfs rw 0 0
bpf /sys/fs/bpf bpf rw 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0
";

    #[test]
    fn finds_the_longest_mount_prefix() {
        let (mp, fs) = longest_mount(MOUNTS, Path::new("/sys/fs/bpf/lattice"));
        assert_eq!(
            (mp.as_path(), fs.as_str()),
            (Path::new("/sys/fs/bpf"), "bpf")
        );
        let (mp, fs) = longest_mount(MOUNTS, Path::new("/sys/kernel"));
        assert_eq!((mp.as_path(), fs.as_str()), (Path::new("/sys"), "sysfs"));
        // A path component prefix is not a mount prefix.
        let (_, fs) = longest_mount(MOUNTS, Path::new("/sys/fs/bpfx"));
        assert_eq!(fs, "sysfs");
    }

    #[test]
    fn the_last_of_stacked_mounts_wins() {
        let mounts = "sysfs /sys sysfs rw 0 0\nbpf /sys bpf rw 0 0\n";
        assert_eq!(longest_mount(mounts, Path::new("/sys/x")).1, "bpf");
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
    }
}
