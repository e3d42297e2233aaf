//! Building lattice's eBPF object.
//!
//! The kernel programs are `no_std` Rust compiled for `bpfel-unknown-none` with
//! `-Z build-std=core`, which needs the `core` sources of the very compiler that builds
//! them, and `bpf-linker` built against that compiler's LLVM. Two toolchains can do it
//! (see shared/TOOLCHAIN.md):
//!
//! 1. a rustup toolchain that has the rust-src component (a developer laptop with
//!    internet: `rustup toolchain install nightly --component rust-src`), preferred;
//! 2. Debian's `rustc-web` (`/usr/bin/rustc`) with the matching `rust-web-src` sources,
//!    driven by rustup's cargo with `RUSTC_BOOTSTRAP=1` (machines where rustup cannot
//!    fetch rust-src).
//!
//! Both `cargo xtask build-ebpf` and the agent's `build.rs` call [`build`], so the object
//! the agent embeds is always built from the current sources, with the same flags, and
//! the build says which toolchain it used.

use std::{
    env, fmt,
    path::{Path, PathBuf},
    process::Command,
};

/// The eBPF crate's directory, relative to the workspace root.
pub const EBPF_CRATE_DIR: &str = "lattice-ebpf";
/// The target the kernel programs are built for.
pub const BPF_TARGET: &str = "bpfel-unknown-none";
/// The binary name of the eBPF crate: the object file's name.
pub const OBJECT_NAME: &str = "lattice";
/// Where Debian's LLVM 22 lives; bpf-linker is built against it.
const DEBIAN_LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
/// Debian's rustc-web compiler.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

/// What can go wrong while building the object.
#[derive(Debug)]
pub enum BuildError {
    /// No toolchain able to build for bpfel-unknown-none was found.
    NoToolchain { tried: Vec<String> },
    /// bpf-linker is not installed.
    NoLinker,
    /// A command could not be started.
    Spawn {
        what: String,
        source: std::io::Error,
    },
    /// The cargo build of the eBPF crate failed.
    BuildFailed { command: String, status: String },
    /// The build finished but the object is not where it should be.
    MissingObject { path: PathBuf },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoToolchain { tried } => write!(
                f,
                "no toolchain can build the eBPF programs (tried: {}); run `cargo xtask setup`, \
                 or install a nightly with rust-src (`rustup toolchain install nightly \
                 --component rust-src`)",
                tried.join("; ")
            ),
            BuildError::NoLinker => write!(
                f,
                "bpf-linker is not installed; run `cargo xtask setup` (it builds bpf-linker \
                 against the LLVM of the compiler in use)"
            ),
            BuildError::Spawn { what, source } => write!(f, "could not run {what}: {source}"),
            BuildError::BuildFailed { command, status } => {
                write!(f, "building the eBPF programs failed ({status}): {command}")
            }
            BuildError::MissingObject { path } => write!(
                f,
                "the eBPF build succeeded but {} does not exist",
                path.display()
            ),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A toolchain able to build the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// A rustup toolchain with the rust-src component.
    RustupWithSrc { name: String },
    /// Debian's rustc-web and rust-web-src, driven by rustup's cargo.
    DebianRustcWeb { rustc: PathBuf },
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Toolchain::RustupWithSrc { name } => {
                write!(f, "rustup toolchain `{name}` with rust-src")
            }
            Toolchain::DebianRustcWeb { rustc } => {
                write!(
                    f,
                    "Debian rustc-web ({}) with rust-web-src",
                    rustc.display()
                )
            }
        }
    }
}

/// Which profile to build the object with. Both are optimised (the verifier needs it);
/// release adds nothing but a separate output directory, as cargo users expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Dev,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Dev => "debug",
            Profile::Release => "release",
        }
    }
}

/// The result of a successful build.
#[derive(Clone, Debug)]
pub struct Built {
    /// The ELF object with BTF.
    pub object: PathBuf,
    /// The toolchain that built it.
    pub toolchain: Toolchain,
}

/// The target directory the eBPF build uses: inside the workspace's, apart from it.
pub fn target_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("bpf")
}

/// Where the object of `profile` ends up.
pub fn object_path(workspace_root: &Path, profile: Profile) -> PathBuf {
    target_dir(workspace_root)
        .join(BPF_TARGET)
        .join(profile.dir())
        .join(OBJECT_NAME)
}

/// Files and directories whose change must rebuild the object (for `rerun-if-changed`).
pub fn inputs(workspace_root: &Path) -> Vec<PathBuf> {
    let ebpf = workspace_root.join(EBPF_CRATE_DIR);
    let common = workspace_root.join("lattice-common");
    vec![
        ebpf.join("src"),
        ebpf.join("Cargo.toml"),
        ebpf.join("Cargo.lock"),
        common.join("src"),
        common.join("Cargo.toml"),
    ]
}

/// Finds the toolchain to use: rustup toolchains with rust-src first (nightlies before
/// others), then Debian's rustc-web.
pub fn detect_toolchain() -> Result<Toolchain, BuildError> {
    let mut tried = Vec::new();
    for name in rustup_toolchains() {
        match sysroot_of(Command::new("rustup").args(["run", &name, "rustc"])) {
            Some(sysroot) if has_core_sources(&sysroot) => {
                return Ok(Toolchain::RustupWithSrc { name })
            }
            _ => tried.push(format!("rustup `{name}`: no rust-src")),
        }
    }
    let rustc = PathBuf::from(DEBIAN_RUSTC);
    if rustc.exists() {
        match sysroot_of(&mut Command::new(&rustc)) {
            Some(sysroot) if has_core_sources(&sysroot) => {
                return Ok(Toolchain::DebianRustcWeb { rustc })
            }
            _ => tried.push(format!(
                "{DEBIAN_RUSTC}: no core sources (Debian package rust-web-src)"
            )),
        }
    } else {
        tried.push(format!(
            "{DEBIAN_RUSTC}: not installed (Debian package rustc-web)"
        ));
    }
    Err(BuildError::NoToolchain { tried })
}

/// The `rustc -vV` LLVM major version of a toolchain, which bpf-linker must match.
pub fn llvm_major(toolchain: &Toolchain) -> Option<u32> {
    let output = match toolchain {
        Toolchain::RustupWithSrc { name } => Command::new("rustup")
            .args(["run", name, "rustc", "-vV"])
            .output(),
        Toolchain::DebianRustcWeb { rustc } => Command::new(rustc).arg("-vV").output(),
    }
    .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?;
    version.split('.').next()?.trim().parse().ok()
}

/// Finds bpf-linker on PATH or in cargo's bin directory.
pub fn find_linker() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = cargo_home() {
        dirs.push(home.join("bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.is_file())
}

/// cargo's home (`$CARGO_HOME`, else `~/.cargo`).
pub fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Builds the object. `cargo` is the cargo binary to drive the build with (the one
/// running us, normally). Build output goes to our stderr.
pub fn build(workspace_root: &Path, cargo: &Path, profile: Profile) -> Result<Built, BuildError> {
    let toolchain = detect_toolchain()?;
    let linker = find_linker().ok_or(BuildError::NoLinker)?;

    let mut cmd = match &toolchain {
        Toolchain::RustupWithSrc { name } => {
            let mut c = Command::new("rustup");
            c.args(["run", name, "cargo"]);
            scrub_cargo_env(&mut c);
            c
        }
        Toolchain::DebianRustcWeb { rustc } => {
            let mut c = Command::new(cargo);
            scrub_cargo_env(&mut c);
            c.env("RUSTC", rustc);
            c
        }
    };
    let mut path = vec![linker.parent().map(Path::to_path_buf).unwrap_or_default()];
    if Path::new(DEBIAN_LLVM_BIN).is_dir() {
        path.push(PathBuf::from(DEBIAN_LLVM_BIN));
    }
    if let Some(p) = env::var_os("PATH") {
        path.extend(env::split_paths(&p));
    }
    cmd.env("PATH", env::join_paths(path).unwrap_or_default())
        // -Z build-std on a stable driver (and Debian's stable rustc) needs this.
        .env("RUSTC_BOOTSTRAP", "1")
        // Debug info becomes BTF through bpf-linker: `bpftool btf dump` and typed
        // `bpftool map dump` need it.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Cdebuginfo=2\u{1f}-Clink-arg=--btf",
        )
        .current_dir(workspace_root.join(EBPF_CRATE_DIR))
        .args(["build", "--target", BPF_TARGET, "-Z", "build-std=core"])
        // aya-build (a build dependency of aya-ebpf) declares a rust-version newer than
        // the compilers that build it fine.
        .arg("--ignore-rust-version")
        .arg("--target-dir")
        .arg(target_dir(workspace_root));
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    let command = format!("{cmd:?}");
    let status = cmd.status().map_err(|source| BuildError::Spawn {
        what: command.clone(),
        source,
    })?;
    if !status.success() {
        return Err(BuildError::BuildFailed {
            command,
            status: status.to_string(),
        });
    }
    let object = object_path(workspace_root, profile);
    if !object.is_file() {
        return Err(BuildError::MissingObject { path: object });
    }
    Ok(Built { object, toolchain })
}

/// Removes what an outer cargo (the agent's build script runs inside one) sets for its
/// own build, so the inner build of a different target is not steered by it.
fn scrub_cargo_env(cmd: &mut Command) {
    const KEEP: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_OFFLINE",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
    ];
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_var = key.starts_with("CARGO_") && !KEEP.iter().any(|k| key.starts_with(k));
        let build_var = matches!(
            key,
            "RUSTC"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "RUSTFLAGS"
                | "RUSTDOC"
                | "RUSTDOCFLAGS"
                | "RUSTUP_TOOLCHAIN"
                | "TARGET"
                | "HOST"
                | "OUT_DIR"
                | "OPT_LEVEL"
                | "PROFILE"
                | "DEBUG"
                | "NUM_JOBS"
        );
        if cargo_var || build_var {
            cmd.env_remove(key);
        }
    }
}

fn rustup_toolchains() -> Vec<String> {
    let Ok(output) = Command::new("rustup").args(["toolchain", "list"]).output() else {
        return Vec::new();
    };
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    // Nightlies first: they take -Z flags without RUSTC_BOOTSTRAP.
    names.sort_by_key(|n| !n.starts_with("nightly"));
    names
}

fn sysroot_of(cmd: &mut Command) -> Option<PathBuf> {
    let output = cmd.args(["--print", "sysroot"]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!text.is_empty()).then(|| PathBuf::from(text))
}

fn has_core_sources(sysroot: &Path) -> bool {
    sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_path_is_under_target_bpf() {
        let p = object_path(Path::new("/ws"), Profile::Release);
        assert_eq!(
            p,
            Path::new("/ws/target/bpf/bpfel-unknown-none/release/lattice")
        );
        let p = object_path(Path::new("/ws"), Profile::Dev);
        assert_eq!(
            p,
            Path::new("/ws/target/bpf/bpfel-unknown-none/debug/lattice")
        );
    }

    #[test]
    fn inputs_cover_both_crates() {
        let inputs = inputs(Path::new("/ws"));
        assert!(inputs.contains(&PathBuf::from("/ws/lattice-ebpf/src")));
        assert!(inputs.contains(&PathBuf::from("/ws/lattice-common/src")));
    }
}
