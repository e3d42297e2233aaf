//! Builds the kernel programs and hands their object to the agent, which embeds it.
//!
//! The object is rebuilt whenever a source of lattice-ebpf or lattice-common changes, so
//! the agent never embeds a stale one. When no toolchain can build it, the build fails
//! and says which command prepares the machine.

use std::{env, fs, path::PathBuf};

use lattice_ebpf_build::{build, inputs, Profile};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace_root = manifest_dir
        .parent()
        .expect("lattice-agent lives in the workspace root")
        .to_path_buf();
    for input in inputs(&workspace_root) {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    let cargo = PathBuf::from(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let built = match build(&workspace_root, &cargo, Profile::Release) {
        Ok(built) => built,
        Err(error) => {
            eprintln!("error: lattice-agent embeds its eBPF programs and could not build them:");
            eprintln!("  {error}");
            eprintln!("  To prepare this machine: `cargo xtask setup`; to build alone: `cargo xtask build-ebpf`.");
            std::process::exit(1);
        }
    };
    // Embed a copy private to this build, so a later build of another profile or a
    // concurrent xtask run can't change what this agent binary contains.
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let embedded = out_dir.join("lattice.bpf.o");
    fs::copy(&built.object, &embedded).unwrap_or_else(|e| {
        panic!(
            "copying {} to {}: {e}",
            built.object.display(),
            embedded.display()
        )
    });
    println!("cargo:rustc-env=LATTICE_BPF_OBJECT={}", embedded.display());
    println!("cargo:rustc-env=LATTICE_BPF_TOOLCHAIN={}", built.toolchain);
}
