//! `cargo xtask setup`: makes a Debian machine ready to build, test and run lattice.
//! Idempotent: it checks first and only does what is missing, and says what it did.

use std::{fs, path::Path, process::Command};

use anyhow::{bail, Context as _};
use lattice_ebpf_build::{detect_toolchain, find_linker, llvm_major, Toolchain};

use crate::{shell, step};

/// Tools the tests, the demo and operators use: `ip`/`tc` (namespaces, veths), `bpftool`
/// (inspecting pinned maps), curl, h2load and wrk (real HTTP clients), openssl (certificates),
/// python3 with venv (the auth tests sign requests with botocore from PyPI).
const RUNTIME_PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "curl",
    "nghttp2-client",
    "openssl",
    "ca-certificates",
    "python3",
    "python3-venv",
    // dig: the DNS test and the demo query the agent inside VPC namespaces.
    "bind9-dnsutils",
    // promtool: the metrics test checks the page with Prometheus' own parser.
    "prometheus",
    // wrk: HTTP load while the live reconfiguration test applies documents.
    "wrk",
];
/// The Python environment of the tests and the demo, under the workspace's target
/// folder, with botocore from PyPI: AWS's own SigV4 signer is the client the auth tests
/// must satisfy.
pub const PYTHON_ENV: &str = "target/lattice-py";
/// botocore releases the tests are known to work with.
const BOTOCORE: &str = "botocore>=1.31,<2";
/// The load tools and peers of `cargo xtask bench`: iperf3 (bulk throughput), sockperf
/// (small-message latency), HAProxy and nginx-full (its stream module) as userspace L4
/// peers, util-linux's taskset (pinning) and setpriv (servers stop with the benchmark),
/// and bpftool (map sizes).
const BENCH_PACKAGES: &[&str] = &[
    "iperf3",
    "sockperf",
    "haproxy",
    "nginx-full",
    "util-linux",
    "bpftool",
];
/// Debian's compiler whose `core` sources Debian ships (rustup can't fetch rust-src here).
const DEBIAN_RUST_PACKAGES: &[&str] = &["rustc-web", "rust-web-src"];
/// The LLVM version Debian's rustc-web 1.96 uses.
const DEBIAN_RUSTC_LLVM: u32 = 22;
/// bpf-linker version range known to work with aya-ebpf 0.2.
const BPF_LINKER_VERSION: &str = "^0.13";

pub fn run(workspace: &Path) -> anyhow::Result<()> {
    step("setup: checking this machine (Debian packages, eBPF toolchain, bpf-linker, bpffs)");
    if !cfg!(target_os = "linux") {
        bail!("lattice runs on Linux only (it loads eBPF programs)");
    }
    let root = is_root()?;

    let mut wanted: Vec<String> = RUNTIME_PACKAGES.iter().map(|s| s.to_string()).collect();
    let toolchain = detect_toolchain().ok();
    if toolchain.is_none() {
        wanted.extend(DEBIAN_RUST_PACKAGES.iter().map(|s| s.to_string()));
    }
    let llvm = toolchain
        .as_ref()
        .and_then(llvm_major)
        .unwrap_or(DEBIAN_RUSTC_LLVM);
    let need_linker = find_linker().is_none();
    if need_linker {
        // To build bpf-linker against the compiler's LLVM.
        wanted.extend([
            format!("llvm-{llvm}-dev"),
            format!("libpolly-{llvm}-dev"),
            "libzstd-dev".into(),
            "zlib1g-dev".into(),
        ]);
    }
    let fresh_prometheus = !installed("prometheus");
    install_packages(&wanted, root)?;
    if fresh_prometheus {
        stop_services(&["prometheus"]);
    }

    let toolchain = detect_toolchain().context("after installing Debian's rustc-web")?;
    println!("    eBPF toolchain: {toolchain}");
    if let Toolchain::DebianRustcWeb { .. } = toolchain {
        println!(
            "    (a rustup toolchain with rust-src would be preferred; none found: \
             `rustup toolchain install nightly --component rust-src` where rustup can fetch it)"
        );
    }
    let llvm = llvm_major(&toolchain).unwrap_or(DEBIAN_RUSTC_LLVM);
    match find_linker() {
        Some(path) => println!("    bpf-linker: {} (present)", path.display()),
        None => install_bpf_linker(llvm)?,
    }
    ensure_bpffs(root)?;
    match cgroup2_mount()? {
        Some(mount) => println!("    cgroup2: mounted at {mount}"),
        None => bail!("no cgroup2 filesystem is mounted (see /proc/mounts); lattice's cgroup programs need one"),
    }
    ensure_botocore(workspace)?;
    println!("    setup complete");
    Ok(())
}

/// Makes the tests' Python environment ([`PYTHON_ENV`]) with botocore from PyPI, unless
/// it is there already.
fn ensure_botocore(workspace: &Path) -> anyhow::Result<()> {
    let env = workspace.join(PYTHON_ENV);
    let python = env.join("bin/python3");
    let has_botocore = |python: &Path| {
        Command::new(python)
            .args(["-c", "import botocore"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_botocore(&python) {
        println!("    botocore: {} (present)", env.display());
        return Ok(());
    }
    println!(
        "    botocore: making {} and installing {BOTOCORE} from PyPI",
        env.display()
    );
    shell::status(Command::new("python3").arg("-m").arg("venv").arg(&env))
        .context("python3 -m venv (Debian package python3-venv)")?;
    shell::status(Command::new(env.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        BOTOCORE,
    ]))
    .context("pip install botocore from PyPI")?;
    anyhow::ensure!(
        has_botocore(&python),
        "botocore is still not importable by {}",
        python.display()
    );
    Ok(())
}

/// Installs the benchmark's tools and peers that are missing (after [`run`]).
pub fn bench_tools() -> anyhow::Result<()> {
    step("bench: checking the load tools and peers (iperf3, sockperf, haproxy, nginx)");
    let wanted: Vec<String> = BENCH_PACKAGES.iter().map(|s| s.to_string()).collect();
    let fresh: Vec<&str> = ["haproxy", "nginx"]
        .into_iter()
        .filter(|p| !installed(if *p == "nginx" { "nginx-full" } else { p }))
        .collect();
    install_packages(&wanted, is_root()?)?;
    // The bench runs its own peers inside namespaces; the distribution's services that
    // installing the packages may have started would listen on the host's ports.
    stop_services(&fresh);
    Ok(())
}

/// Stops and disables services that installing their packages started: lattice only
/// wants the packages' tools, not daemons listening on the host's ports.
fn stop_services(services: &[&str]) {
    if services.is_empty() || !shell::have("systemctl") {
        return;
    }
    let _ = Command::new("systemctl")
        .args(["disable", "--now"])
        .args(services)
        .status();
    println!(
        "    stopped and disabled the {} service(s) the packages started",
        services.join(" and ")
    );
}

/// The HTTP load tools of `cargo xtask bench l7` (after [`bench_tools`]): wrk
/// (HTTP/1.1 keep-alive, with and without TLS), h2load from nghttp2-client (h2c and h2
/// over TLS), and openssl (the benchmark's certificate). None of them starts a service.
const BENCH_HTTP_PACKAGES: &[&str] = &["wrk", "nghttp2-client", "openssl"];

/// Installs the HTTP load tools that are missing.
pub fn bench_http_tools() -> anyhow::Result<()> {
    step("bench l7: checking the HTTP load tools (wrk, h2load)");
    let wanted: Vec<String> = BENCH_HTTP_PACKAGES.iter().map(|s| s.to_string()).collect();
    install_packages(&wanted, is_root()?)
}

fn is_root() -> anyhow::Result<bool> {
    let uid = shell::output(Command::new("id").arg("-u"))?;
    Ok(uid.trim() == "0")
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn install_packages(wanted: &[String], root: bool) -> anyhow::Result<()> {
    if !shell::have("dpkg-query") || !shell::have("apt-get") {
        bail!(
            "this is not a Debian-like system (no dpkg-query/apt-get): install these packages \
             or their equivalents yourself: {}",
            wanted.join(" ")
        );
    }
    let missing: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        println!("    Debian packages: all present ({})", wanted.join(" "));
        return Ok(());
    }
    if !root {
        bail!(
            "missing Debian packages {}; run setup as root so it can install them",
            missing.join(" ")
        );
    }
    println!("    installing Debian packages: {}", missing.join(" "));
    shell::status(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    shell::status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| {
        format!(
            "installing {} (on Debian 12, rustc-web, rust-web-src and llvm-22-dev come from \
             bookworm-security)",
            missing.join(" ")
        )
    })
}

fn install_bpf_linker(llvm: u32) -> anyhow::Result<()> {
    println!("    building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm} (about a minute)");
    let llvm_bin = format!("/usr/lib/llvm-{llvm}/bin");
    let path = std::env::var("PATH").unwrap_or_default();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    shell::status(
        Command::new(cargo)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm}"),
            ])
            .env("PATH", format!("{llvm_bin}:{path}")),
    )
    .context("building bpf-linker")?;
    if find_linker().is_none() {
        bail!("bpf-linker was installed but is not on PATH nor in cargo's bin directory");
    }
    Ok(())
}

fn ensure_bpffs(root: bool) -> anyhow::Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[1] == "/sys/fs/bpf" && f[2] == "bpf"
    });
    if mounted {
        println!("    bpffs: mounted at /sys/fs/bpf");
        return Ok(());
    }
    if !root {
        bail!("bpffs is not mounted at /sys/fs/bpf; run setup as root to mount it");
    }
    shell::status(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    println!("    bpffs: mounted it at /sys/fs/bpf");
    Ok(())
}

fn cgroup2_mount() -> anyhow::Result<Option<String>> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2] == "cgroup2").then(|| f[1].to_owned())
    }))
}
