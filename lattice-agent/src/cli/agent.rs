//! `lattice-agent run` and `cleanup`: the daemon's life cycle.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;
use ipnet::Ipv4Net;
use tracing::{info, warn};

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
    /// Where the source addresses targets see come from (one per VPC, link-local).
    #[arg(long, env = "LATTICE_SNAT_POOL", default_value = "169.254.172.0/22")]
    snat_pool: Ipv4Net,
    /// How often namespaces are looked for and the kernel tables checked.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    sync_interval: Duration,
    #[command(flatten)]
    settings: SettingsArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| text.split_at(i))
        .unwrap_or((text, "s"));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms or 2s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("{text:?}: unit must be ms or s")),
    }
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

    anyhow::ensure!(
        !args.snat_pool.contains(&settings.vip_pool.network())
            && !settings.vip_pool.contains(&args.snat_pool.network()),
        "--snat-pool {} overlaps the VIP pool {}",
        args.snat_pool,
        settings.vip_pool
    );
    let path_settings = dataplane::compile::PathSettings {
        vip_pool: resolved.vip_pool,
        agent_addr: resolved.agent_address,
        snat_pool: args.snat_pool,
    };
    let snapshot = dataplane::compile::compile(&config, &resolved, &path_settings);

    let dataplane = dataplane::Dataplane::load(&args.bpffs_root).with_context(|| {
        format!(
            "loading the kernel programs under {}",
            args.bpffs_root.display()
        )
    })?;
    if dataplane.mounted_bpffs() {
        info!("mounted bpffs at /sys/fs/bpf");
    }
    let maps = dataplane.map_names();
    let mut reconciler = dataplane::Reconciler::new(dataplane, path_settings)
        .context("taking over the kernel tables")?;
    let all_targets = |g: &dataplane::compile::GroupPlan| g.targets.clone();
    let synced = reconciler
        .sync(&snapshot, &all_targets)
        .context("programming the kernel")?;
    let applied = synced.applied.unwrap_or_default();
    info!(
        config = %args.config.display(),
        services = resolved.services.len(),
        tcp_listeners = applied.listeners,
        backends = applied.backends,
        attached_namespaces = reconciler.attachments().count(),
        bpffs_root = %args.bpffs_root.display(),
        maps = ?maps,
        ebpf_toolchain = dataplane::toolchain_used(),
        "lattice-agent ready"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sync_loop = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("kernel-sync".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(args.sync_interval);
                    match reconciler.sync(&snapshot, &all_targets) {
                        Ok(s) if s.applied.is_some() => {
                            info!(applied = ?s.applied, "kernel tables updated")
                        }
                        Ok(_) => {}
                        Err(e) => warn!(error = %e, "syncing the kernel failed; retrying"),
                    }
                }
            })
            .context("starting the kernel sync thread")?
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let signal = runtime.block_on(wait_for_shutdown())?;
    info!(
        signal,
        "lattice-agent stopping; programs stay attached and flows keep going"
    );
    stop.store(true, Ordering::Relaxed);
    let _ = sync_loop.join();
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
