//! Project tasks: `cargo xtask <task>`.
//!
//! | task | what |
//! | --- | --- |
//! | `setup` | makes this machine ready: Debian packages, bpf-linker, bpffs |
//! | `build-ebpf` | builds the kernel programs into one BPF object with BTF |
//! | `test` | setup, then every test of the workspace (real kernel, needs root) |
//! | `lint` | rustfmt and clippy, as CI runs them |
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
    /// rustfmt --check and clippy -D warnings over the workspace.
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
            )
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
