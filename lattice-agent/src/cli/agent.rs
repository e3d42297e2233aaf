//! `lattice-agent run` and `cleanup`: the daemon's life cycle.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use tracing::info;

use super::SettingsArgs;
use crate::{config, dataplane, resolve, state};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The desired-state document.
    #[arg(long)]
    config: PathBuf,
    /// Where the agent keeps what must survive restarts (virtual IP allocations, ...).
    #[arg(long, env = "LATTICE_STATE_DIR", default_value = "/var/lib/lattice")]
    state_dir: PathBuf,
    /// Where programs, maps and links are pinned.
    #[arg(long, env = "LATTICE_BPFFS_ROOT", default_value = lattice_common::pins::DEFAULT_BPFFS_ROOT)]
    bpffs_root: PathBuf,
    #[command(flatten)]
    settings: SettingsArgs,
}

/// Validates and resolves the config, persists the VIP allocations, loads and pins the
/// kernel programs, then serves until SIGTERM/SIGINT.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = args.settings.to_settings()?;
    let config = config::load_file(&args.config)?;
    config.check_files()?;
    let state_dir = state::StateDir::open(&args.state_dir)
        .with_context(|| format!("opening state directory {}", args.state_dir.display()))?;
    let mut vips = resolve::VipAllocations::load(&state_dir)?;
    let resolved = resolve::resolve(&config, &settings, &mut vips)?;
    // Allocations are durable before anything uses them: a crash after this point
    // restarts with the same VIPs.
    vips.save(&state_dir)?;

    let dataplane = dataplane::Dataplane::load(&args.bpffs_root).with_context(|| {
        format!(
            "loading the kernel programs under {}",
            args.bpffs_root.display()
        )
    })?;
    if dataplane.mounted_bpffs() {
        info!("mounted bpffs at /sys/fs/bpf");
    }
    info!(
        config = %args.config.display(),
        services = resolved.services.len(),
        service_networks = resolved.service_networks.len(),
        bpffs_root = %dataplane.root().display(),
        maps = ?dataplane.map_names(),
        ebpf_toolchain = dataplane::toolchain_used(),
        "lattice-agent ready"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let signal = runtime.block_on(wait_for_shutdown())?;
    info!(
        signal,
        "lattice-agent stopping; pinned state stays for the next agent"
    );
    drop(dataplane);
    Ok(())
}

/// Removes the bpffs root and everything under it.
pub fn cleanup(bpffs_root: &Path) -> anyhow::Result<()> {
    if dataplane::remove_root(bpffs_root)? {
        info!(bpffs_root = %bpffs_root.display(), "removed pinned programs and maps");
    } else {
        info!(bpffs_root = %bpffs_root.display(), "nothing pinned");
    }
    Ok(())
}

async fn wait_for_shutdown() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
