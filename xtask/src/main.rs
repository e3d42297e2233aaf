//! Project tasks: `cargo xtask <task>`.
//!
//! | task | what |
//! | --- | --- |
//! | `setup` | makes this machine ready: Debian packages, bpf-linker, bpffs |
//! | `build-ebpf` | builds the kernel programs into one BPF object with BTF |
//! | `test` | setup, then every test of the workspace (real kernel, needs root) |
//! | `lint` | rustfmt and clippy over the workspace and the kernel programs, as CI runs them |
//! | `demo` | setup, then the demo topology with the agent and real traffic |
//! | `bench l4` | setup, then lattice's TCP path vs direct, HAProxy and nginx (ratios, JSON) |
//! | `bench l7` | setup, then lattice's HTTP listeners vs direct, nginx and HAProxy (ratios, JSON) |
//! | `bench auth` | setup, then policy decision time (criterion) and requests/s with SigV4 verification on vs off (ratio, JSON) |
//! | `bench sockmap` | setup, then a same-host hop with socket acceleration on, off, and plain loopback (ratios, JSON) |
//! | `bench control` | setup, then the time to apply a change to 1,000 services vs an nginx reload, the agent's memory, and access logging on vs off (ratios, JSON) |

mod bench;
mod demo;
mod setup;
mod shell;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "lattice project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Makes this machine ready to build and test lattice (idempotent; says what it does).
    Setup,
    /// Builds the eBPF programs into one object with BTF.
    BuildEbpf {
        /// Build with the release profile (both are optimised; the verifier needs it).
        #[arg(long)]
        release: bool,
    },
    /// Runs setup, then every test of the workspace against the real kernel (root).
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// rustfmt --check and clippy -D warnings over the workspace and the kernel programs.
    Lint,
    /// Runs setup, then the demo: a topology of network namespaces shaped like
    /// config-contract.yaml, the agent on it, real traffic, and a report.
    Demo,
    /// Runs setup, then a benchmark: lattice side by side with a baseline and peers in
    /// the same run, reported as ratios (never a pass/fail on timings).
    Bench {
        #[command(subcommand)]
        which: BenchKind,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// TCP: direct routing, HAProxy and nginx (stream) vs lattice's kernel path:
    /// throughput, latency, connection rate, CPU, memory; JSON under target/bench/.
    L4,
    /// HTTP: the backend directly, nginx and HAProxy as reverse proxies vs lattice's
    /// HTTP/HTTPS listeners: requests/s, p50/p99, CPU per request (wrk, h2load); JSON
    /// under target/bench/.
    L7,
    /// Auth: lattice-policy's decision time for a 20-statement policy (criterion), and
    /// HTTP requests/s through the agent with SigV4 verification and auth policies on, as
    /// a ratio to auth off in the same run (wrk); JSON under target/bench/.
    Auth,
    /// Socket acceleration: a same-host hop (host client -> TCP listener -> host target)
    /// with sock_ops/sk_msg on, with `--no-sockmap`, and plain loopback without lattice:
    /// latency p50/p99 and request/response rate (sockperf), bulk throughput (iperf3),
    /// the acceleration counters; JSON under target/bench/.
    Sockmap,
    /// Control plane: the time to apply a change through the control API to a config
    /// of 1,000 services x 10 targets (p50, p99) and the agent's memory at that size,
    /// beside nginx reloading the same fleet; and HTTP requests/s with access logging
    /// on, as a ratio to logging off in the same run (wrk); JSON under target/bench/.
    Control,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Setup => setup::run(&root),
        Task::BuildEbpf { release } => build_ebpf(&root, release),
        Task::Test { cargo_test_args } => {
            setup::run(&root)?;
            step("running every test of the workspace (cargo test --workspace)");
            let mut args = vec!["test", "--workspace", "--no-fail-fast"];
            if !cargo_test_args.is_empty() {
                args.push("--");
                args.extend(cargo_test_args.iter().map(String::as_str));
            }
            shell::cargo(&root, &args)
        }
        Task::Lint => {
            step("cargo fmt --all --check");
            shell::cargo(&root, &["fmt", "--all", "--check"])?;
            step("cargo clippy --workspace --all-targets -- -D warnings");
            shell::cargo(
                &root,
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            )?;
            lint_kernel_programs(&root)
        }
        Task::Demo => {
            setup::run(&root)?;
            demo::run(&root)
        }
        Task::Bench { which } => {
            setup::run(&root)?;
            setup::bench_tools()?;
            match which {
                BenchKind::L4 => bench::l4(&root),
                BenchKind::L7 => {
                    setup::bench_http_tools()?;
                    bench::l7(&root)
                }
                BenchKind::Auth => {
                    setup::bench_http_tools()?;
                    bench::auth(&root)
                }
                BenchKind::Sockmap => bench::sockmap(&root),
                BenchKind::Control => {
                    setup::bench_http_tools()?;
                    bench::control(&root)
                }
            }
        }
    }
}

fn build_ebpf(root: &std::path::Path, release: bool) -> anyhow::Result<()> {
    let profile = if release {
        lattice_ebpf_build::Profile::Release
    } else {
        lattice_ebpf_build::Profile::Dev
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = lattice_ebpf_build::build(root, PathBuf::from(cargo).as_path(), profile)?;
    let copy = lattice_ebpf_build::target_dir(root).join("lattice.bpf.o");
    std::fs::copy(&built.object, &copy)
        .with_context(|| format!("copying {} to {}", built.object.display(), copy.display()))?;
    println!("built {} with {}", built.object.display(), built.toolchain);
    println!("copied to {}", copy.display());
    println!("inspect: bpftool btf dump file {}", copy.display());
    Ok(())
}

/// rustfmt and clippy over `lattice-ebpf`, which is a workspace of its own (see its
/// Cargo.toml) that `--workspace` does not reach. Clippy checks it for the host's
/// target: clippy comes with rustup's compiler, which has no `core` for
/// `bpfel-unknown-none` without rust-src (see the toolchain notes), and the programs'
/// source has no target-dependent parts, so the host check reads the same code the BPF
/// build compiles. Its own target directory keeps it apart from the BPF build's.
fn lint_kernel_programs(root: &std::path::Path) -> anyhow::Result<()> {
    let ebpf = root.join(lattice_ebpf_build::EBPF_CRATE_DIR);
    step("cargo fmt --check in lattice-ebpf");
    shell::cargo(&ebpf, &["fmt", "--check"])?;
    let host = host_triple()?;
    let target_dir = root.join("target").join("ebpf-lint");
    let target_dir = target_dir.to_string_lossy();
    step(&format!(
        "cargo clippy in lattice-ebpf (checked for {host}) -- -D warnings"
    ));
    shell::cargo(
        &ebpf,
        &[
            "clippy",
            // aya-build, a build dependency of aya-ebpf, declares a newer rust-version
            // than it needs (see the toolchain notes).
            "--ignore-rust-version",
            "--target",
            &host,
            "--target-dir",
            &target_dir,
            "--",
            "-D",
            "warnings",
        ],
    )
}

/// The target triple rustup's compiler builds for by default (`rustc -vV`'s `host`).
fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("running {} -vV", rustc.to_string_lossy()))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .with_context(|| format!("{} -vV named no host target", rustc.to_string_lossy()))
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Announces a step, so a newcomer sees what the task is doing.
pub fn step(what: &str) {
    println!("==> {what}");
}
