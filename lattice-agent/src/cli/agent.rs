//! `lattice-agent run` and `cleanup`: the daemon's life cycle.

use std::{
    path::{Path, PathBuf},
    sync::{mpsc::RecvTimeoutError, Arc},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;
use ipnet::Ipv4Net;
use tracing::{error, info, warn};

use super::SettingsArgs;
use crate::{accesslog, api, dataplane, dns, health, l7, live, metrics, resolve, state};

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
    /// Flows the kernel's conntrack table holds (the least recently used go first when it
    /// is full). Changing it needs `cleanup` first: a pinned table keeps its size.
    #[arg(long, default_value_t = dataplane::Sizes::default().max_flows)]
    max_flows: u32,
    /// Turns socket acceleration off: no new connection between two sockets of this
    /// host is handed across by sk_msg (connections already accelerated finish as
    /// they are).
    #[arg(long)]
    no_sockmap: bool,
    /// A cgroup (path under the cgroup2 mount) whose processes' sockets may be
    /// accelerated besides the agent's own cgroup and the VPC cgroups: where the
    /// workloads inside VPC namespaces run. Repeatable; never the root cgroup.
    #[arg(long, value_name = "PATH")]
    sockmap_cgroup: Vec<PathBuf>,
    /// How often namespaces are looked for and the kernel tables checked.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    sync_interval: Duration,
    /// The least time between two sweeps of ended flows from the conntrack table (a
    /// sweep of a large table waits ten times as long as it took). At least 1s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    conntrack_sweep_interval: Duration,
    /// Client connections the L7 listeners (HTTP, HTTPS, TLS passthrough) hold at once,
    /// all together; past it new ones wait in the kernel's accept queue. Default: half
    /// the open file limit left after a reserve for the agent's own files.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Threads of the agent's async runtime: the L7 proxy, health checks, DNS (default:
    /// one per CPU). Like nginx's worker_processes or Envoy's --concurrency; one thread
    /// keeps a request's hops (client side, target side) on one core.
    #[arg(long, env = "LATTICE_PROXY_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    proxy_threads: Option<u16>,
    /// The resolvers that answer names lattice does not own (`addr` or `addr:port`,
    /// repeated or comma-separated), instead of the nameservers of /etc/resolv.conf.
    #[arg(long, env = "LATTICE_DNS_UPSTREAM", value_delimiter = ',', value_parser = parse_upstream)]
    dns_upstream: Vec<std::net::SocketAddr>,
    /// Serve Prometheus metrics (`GET /metrics`) on this address, e.g. 127.0.0.1:9464.
    /// Off unless given.
    #[arg(long, env = "LATTICE_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Access log files are rotated past this size (renamed `<file>.1`, older ones
    /// shifted); 0 never rotates. A file moved away by logrotate is reopened anyway.
    #[arg(long, default_value_t = accesslog::Rotation::default().max_bytes, value_name = "BYTES")]
    access_log_max_bytes: u64,
    /// How many rotated access log files are kept.
    #[arg(long, default_value_t = accesslog::Rotation::default().keep, value_name = "N")]
    access_log_keep: usize,
    /// The control API's Unix socket (mode 0600: root only). `lattice` talks to it.
    #[arg(long, env = "LATTICE_API_SOCKET", default_value = api::DEFAULT_SOCKET)]
    api_socket: PathBuf,
    /// Also serve the control API on TCP here (e.g. 127.0.0.1:9465); needs
    /// --api-token-file. Off unless given.
    #[arg(long, env = "LATTICE_API_ADDR", requires = "api_token_file")]
    api_addr: Option<std::net::SocketAddr>,
    /// The bearer token TCP callers of the control API must send (at least 16
    /// characters; the file should be readable by root only).
    #[arg(long, env = "LATTICE_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// The mesh-wide CA (PEM) of client certificates: it proves the mtlsSubjects of
    /// every account that names no mtlsCaFile of its own.
    #[arg(long, env = "LATTICE_MTLS_CA", value_name = "FILE")]
    mtls_ca: Option<PathBuf>,
    /// The network namespace of the host processes that VPC cgroups hold, as a
    /// namespace file (e.g. /proc/1/ns/net when the agent runs in a namespace of its
    /// own): their HTTP, HTTPS and TLS passthrough connections are accepted there.
    /// Default: the agent's own namespace.
    #[arg(long, env = "LATTICE_HOST_NETNS", value_name = "FILE")]
    host_netns: Option<PathBuf>,
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

fn parse_upstream(text: &str) -> Result<std::net::SocketAddr, String> {
    let text = text.trim();
    text.parse()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("{text:?} is not an address like 192.0.2.53 or 192.0.2.53:5353"))
}

/// Raises the soft limit of open files to the hard one, as Go programs and nginx's
/// `worker_rlimit_nofile` do: every proxied connection takes two descriptors (and DNS
/// forwards, health checks and targets' pools more), and the usual soft limit of 1024
/// would cap the agent near 500 connections for every VPC at once.
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), Some(maximum)) = (limit.current, limit.maximum) else {
        // Unlimited already.
        return limit.current;
    };
    if current >= maximum {
        return Some(current);
    }
    let raised = rustix::process::Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            info!(from = current, to = maximum, "open file limit raised");
            Some(maximum)
        }
        Err(e) => {
            warn!(limit = current, error = %e, "open file limit not raised");
            Some(current)
        }
    }
}

/// The L7 listeners' connection budget for an open file limit (`None`: unlimited):
/// a reserve for the agent's own files (maps, a listening socket per site, health
/// checks, DNS, the API, log files) of a quarter of the limit, at most 4096, and two
/// descriptors per connection of the rest (the client's, and a target's when the
/// connection does not share a pooled one).
fn default_max_connections(open_files: Option<u64>) -> u64 {
    let Some(limit) = open_files else {
        return 1 << 20;
    };
    let reserve = (limit / 4).min(4096);
    ((limit - reserve) / 2).max(64)
}

/// Validates and resolves the config, persists the VIP allocations, loads and pins the
/// kernel programs, then serves until SIGTERM/SIGINT, following the config file as it
/// changes (see [`crate::live`]).
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = args.settings.to_settings()?;
    anyhow::ensure!(
        !args.snat_pool.contains(&settings.vip_pool.network())
            && !settings.vip_pool.contains(&args.snat_pool.network()),
        "--snat-pool {} overlaps the VIP pool {}",
        args.snat_pool,
        settings.vip_pool
    );
    anyhow::ensure!(
        args.conntrack_sweep_interval >= Duration::from_secs(1),
        "--conntrack-sweep-interval {:?}: must be at least 1s",
        args.conntrack_sweep_interval
    );
    anyhow::ensure!(
        (1024..=16 * 1024 * 1024).contains(&args.max_flows),
        "--max-flows {}: must be between 1024 and 16777216",
        args.max_flows
    );
    if let Some(netns) = &args.host_netns {
        // Checked before anything starts: the host sites would only retry it forever.
        std::fs::File::open(netns)
            .with_context(|| format!("--host-netns {}: cannot open it", netns.display()))?;
    }
    let state_dir = state::StateDir::open(&args.state_dir)
        .with_context(|| format!("opening state directory {}", args.state_dir.display()))?;
    let vips = resolve::VipAllocations::load(&state_dir)?;
    let open_files = raise_open_file_limit();
    let max_connections = args
        .max_connections
        .unwrap_or_else(|| default_max_connections(open_files));

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.proxy_threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let checker = {
        let _entered = runtime.enter();
        health::HealthChecker::start(health::CheckerOptions::default())
    };
    let fixed = live::Fixed {
        path_settings: dataplane::compile::PathSettings {
            vip_pool: settings.vip_pool.trunc(),
            agent_addr: resolve::agent_address(&settings)?,
            snat_pool: args.snat_pool,
        },
        settings: settings.clone(),
        mesh_ca: args.mtls_ca.clone(),
        host_netns: args.host_netns.clone(),
        log_rotation: accesslog::Rotation {
            max_bytes: args.access_log_max_bytes,
            keep: args.access_log_keep,
        },
        runtime: runtime.handle().clone(),
        health: checker.subscribe(),
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
    };
    // Everything the document names (keys, certificates) is read before anything in
    // the kernel changes: a bad document refuses the start whole, unless the agent
    // applied a good one before, which it then comes back with.
    let first = first_generation(&args.config, &fixed, &state_dir, &vips)?;

    let sizes = dataplane::Sizes {
        max_flows: args.max_flows,
    };
    let mut dataplane =
        dataplane::Dataplane::load_with(&args.bpffs_root, &sizes).with_context(|| {
            format!(
                "loading the kernel programs under {}",
                args.bpffs_root.display()
            )
        })?;
    if dataplane.mounted_bpffs() {
        info!("mounted bpffs at /sys/fs/bpf");
    }
    // An agent from before flows expired left its flows in the older layout: they come
    // over before the new programs replace the old ones, so that no packet of an open
    // flow finds no entry (the sweeper carries what the old programs open meanwhile).
    match dataplane::conntrack::Conntrack::open(&args.bpffs_root)
        .and_then(|mut c| c.carry_over_v1(dataplane::conntrack::kernel_now_ns()))
    {
        Ok(Some(carried)) => info!(carried, "flows of the older conntrack layout carried over"),
        Ok(None) => {}
        Err(e) => warn!(error = %e, "carrying over the older conntrack map failed"),
    }
    set_up_sockmap(&mut dataplane, &args, &first.snapshot)?;
    let maps = dataplane.map_names();
    let reconciler = dataplane::Reconciler::new(dataplane, fixed.path_settings)
        .context("taking over the kernel tables")?;
    let dns = start_dns(&args.dns_upstream, &first, &runtime)?;
    let metrics_addr = args.metrics_addr;
    let mut running = live::Running::start(
        fixed,
        state_dir,
        args.config.clone(),
        reconciler,
        checker,
        dns,
        first,
    )?;
    // TCP flows are logged from the kernel's reports (only sent while a subscription
    // wants them).
    match running.reconciler.dataplane().take_flow_events() {
        Some(ring) => {
            runtime.spawn(crate::flowlog::serve(ring, Arc::clone(&running.switch)));
        }
        None => warn!("TCP flow logs off: the kernel's ring buffer is missing"),
    }
    // Closed flows leave the kernel's conntrack map on their own thread: a sweep of a
    // large map takes seconds, which API calls must not wait for. Started after the
    // first sync replaced the programs, so an older layout's flows are all carried.
    let (stop_sweeper, sweeper_stops) = std::sync::mpsc::channel::<()>();
    let sweeps = Arc::new(dataplane::conntrack::SweepStats::default());
    let sweeper = {
        let root = args.bpffs_root.clone();
        let sweeps = Arc::clone(&sweeps);
        let every = args.conntrack_sweep_interval;
        std::thread::Builder::new()
            .name("conntrack-sweep".into())
            .spawn(move || dataplane::conntrack::run_sweeper(&root, every, &sweeper_stops, &sweeps))
            .context("starting the conntrack sweeper")?
    };
    if let Some(addr) = metrics_addr {
        let listener = metrics::serve::bind(addr)
            .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?;
        let source = Arc::new(metrics::serve::MetricsSource {
            proxy: Arc::clone(&running.switch),
            health: running.fixed.health.clone(),
            bpffs_root: args.bpffs_root.clone(),
            sweeps,
        });
        runtime.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => metrics::serve::serve(listener, source).await,
                Err(e) => warn!(error = %e, "metrics endpoint failed"),
            }
        });
        info!(%addr, "serving metrics at /metrics");
    }
    // The sync thread owns everything that follows the config; signals and control
    // API calls reach it as messages, and it wakes at least every --sync-interval. The
    // API's socket is bound before `ready`: a caller that waits for it can connect.
    let (tx, rx) = std::sync::mpsc::channel::<Wake>();
    start_api(&args, &runtime, tx.clone())?;
    info!(
        config = %args.config.display(),
        services = running.resolved.services.len(),
        tcp_listeners = running.snapshot.listeners.len(),
        max_flows = args.max_flows,
        max_connections,
        l7_sites = running.sites.served(),
        dns_namespaces = running.dns.served(),
        dns_address = %running.resolved.agent_address,
        attached_namespaces = running.reconciler.attachments().count(),
        bpffs_root = %args.bpffs_root.display(),
        maps = ?maps,
        ebpf_toolchain = dataplane::toolchain_used(),
        "lattice-agent ready"
    );
    let interval = args.sync_interval;
    let sync_loop = std::thread::Builder::new()
        .name("kernel-sync".into())
        .spawn(move || {
            let mut file_looked_at = Instant::now();
            loop {
                match rx.recv_timeout(interval) {
                    Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    Ok(Wake::Reload) => {
                        running.follow_file(true);
                        file_looked_at = Instant::now();
                    }
                    Ok(Wake::Api(pending)) => {
                        let _ = pending.reply.send(running.call(pending.call));
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
                // Every interval, however often API calls wake the loop: a client
                // polling the API must not keep edits of the file from applying.
                if file_looked_at.elapsed() >= interval {
                    running.follow_file(false);
                    file_looked_at = Instant::now();
                }
                running.tick();
            }
            running
        })
        .context("starting the kernel sync thread")?;

    let signal = runtime.block_on(wait_for_shutdown(tx.clone()))?;
    info!(
        signal,
        "lattice-agent stopping; programs stay attached and flows keep going"
    );
    let _ = tx.send(Wake::Stop);
    let _ = stop_sweeper.send(());
    let _ = sweeper.join();
    let running = sync_loop
        .join()
        .map_err(|_| anyhow::anyhow!("the kernel sync thread panicked"))?;
    let _ = runtime.block_on(running.checker.shutdown());
    if !running
        .switch
        .current()
        .logs()
        .flush(Duration::from_secs(5))
    {
        warn!("some access log records were not written before the agent stopped");
    }
    // The socket file would outlive the agent; a caller then gets "refused", not a
    // stale path that looks alive.
    let _ = std::fs::remove_file(&args.api_socket);
    Ok(())
}

/// What wakes the sync thread besides its interval.
enum Wake {
    /// SIGHUP: read the config file again, even if it did not change.
    Reload,
    /// A control API call to execute.
    Api(api::server::Pending),
    Stop,
}

/// Serves the control API on the Unix socket (and on TCP with a token, when asked);
/// calls go to the sync thread.
fn start_api(
    args: &RunArgs,
    runtime: &tokio::runtime::Runtime,
    sync: std::sync::mpsc::Sender<Wake>,
) -> anyhow::Result<()> {
    let sync = std::sync::Mutex::new(sync);
    let dispatch: api::server::Dispatch = Arc::new(move |pending| {
        if let Ok(sync) = sync.lock() {
            let _ = sync.send(Wake::Api(pending));
        }
    });
    let socket = {
        let _entered = runtime.enter();
        api::server::bind_socket(&args.api_socket)?
    };
    runtime.spawn(api::server::serve_socket(
        socket,
        args.api_socket.clone(),
        Arc::clone(&dispatch),
    ));
    if let (Some(addr), Some(token_file)) = (args.api_addr, &args.api_token_file) {
        let token = api::server::read_token(token_file)?;
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("--api-addr {addr}: cannot listen"))?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        runtime.spawn(api::server::serve_tcp(listener, token, dispatch));
        info!(%addr, "control API on TCP (bearer token)");
    }
    Ok(())
}

/// The generation the agent starts with: the config file's, or when that is refused,
/// the last one this state directory applied (saying why, loudly).
fn first_generation(
    path: &Path,
    fixed: &live::Fixed,
    state_dir: &state::StateDir,
    vips: &resolve::VipAllocations,
) -> anyhow::Result<live::Generation> {
    let file = live::Document::read(path);
    // Changes made through the control API since the file was last read survive a
    // restart, unless the file changed meanwhile.
    if let (Ok(file), Some(last)) = (&file, live::Document::last_applied(state_dir)?) {
        if last.file_text.as_ref() == Some(&file.text) && last.text != file.text {
            info!(
                config = %path.display(),
                "the config file is unchanged since the control API's last change: starting with that"
            );
            return live::Generation::prepare(last, fixed, vips, None)
                .context("the last applied config (made through the control API) is refused");
        }
    }
    let from_file =
        file.and_then(|document| live::Generation::prepare(document, fixed, vips, None));
    let refused = match from_file {
        Ok(generation) => return Ok(generation),
        Err(e) => e,
    };
    let Some(last) = live::Document::last_applied(state_dir)? else {
        return Err(refused);
    };
    error!(
        config = %path.display(),
        error = format!("{refused:#}"),
        "config refused; starting with the last applied config of the state directory"
    );
    live::Generation::prepare(last, fixed, vips, None)
        .context("the last applied config is refused too")
        .with_context(|| format!("{refused:#}"))
}

/// The DNS servers of the VPC namespaces, with the config's records, forwarding to
/// `upstreams` (the host's resolv.conf when empty). Serves nothing until `sync`.
fn start_dns(
    upstreams: &[std::net::SocketAddr],
    first: &live::Generation,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<dns::DnsServer> {
    let forwarder = if upstreams.is_empty() {
        let path = Path::new(dns::forward::RESOLV_CONF);
        dns::Forwarder::from_resolv_conf(path)
            .with_context(|| format!("reading {}", path.display()))?
    } else {
        dns::Forwarder::new(upstreams.to_vec())
    };
    if forwarder.upstreams().is_empty() {
        warn!("no DNS upstream (no nameserver in /etc/resolv.conf, no --dns-upstream): names lattice does not own get SERVFAIL until resolv.conf lists one");
    } else {
        info!(upstreams = ?forwarder.upstreams(), "DNS forwards names lattice does not own");
    }
    Ok(dns::DnsServer::new(
        dns::ZoneSwitch::new(first.zones.clone()),
        forwarder,
        first.resolved.agent_address,
        runtime.handle().clone(),
    ))
}

/// Turns socket acceleration on (logging which cgroups it covers) or, with
/// `--no-sockmap`, off.
fn set_up_sockmap(
    dataplane: &mut dataplane::Dataplane,
    args: &RunArgs,
    snapshot: &dataplane::compile::Snapshot,
) -> anyhow::Result<()> {
    if args.no_sockmap {
        let removed = dataplane
            .disable_sockmap()
            .context("turning socket acceleration off")?;
        info!(
            removed_links = removed,
            "socket acceleration off (--no-sockmap)"
        );
        return Ok(());
    }
    let status = dataplane
        .enable_sockmap(&args.sockmap_cgroup, &snapshot.sock_endpoints)
        .context("turning socket acceleration on (--no-sockmap turns it off)")?;
    for (cgroup, why) in &status.skipped {
        if status.root_skipped(cgroup) {
            // The usual case when the agent is started by hand: not a problem to warn of.
            info!(cgroup = %cgroup.display(), reason = %why, "socket acceleration: cgroup left out");
        } else {
            warn!(cgroup = %cgroup.display(), reason = %why, "socket acceleration: cgroup left out");
        }
    }
    info!(
        cgroups = ?status.cgroups,
        endpoints = snapshot.sock_endpoints.len(),
        backlog_limit = status.layout.backlog_limit,
        "socket acceleration on (sock_ops on these cgroups and the VPC cgroups, sk_msg on LT_SOCKS_V1)"
    );
    Ok(())
}

/// `lattice-agent targets`: the health of every target, as the running agent last
/// recorded it in its state directory.
pub fn targets(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let dir = state::StateDir::open(state_dir)?;
    let rows: Vec<live::TargetRow> = dir.read_json(live::TARGETS_FILE)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no {}: is an agent running with this state directory?",
            state_dir.display(),
            live::TARGETS_FILE
        )
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<24} {:<18} {:<6} {:<12} REASON",
            "TARGET GROUP", "TARGET", "PORT", "STATUS"
        );
        for r in rows {
            println!(
                "{:<24} {:<18} {:<6} {:<12} {}",
                r.target_group,
                r.id,
                r.port,
                r.status,
                r.reason_code.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Removes the L7 site and DNS rules and the VPC veths the agent made, then the bpffs root and
/// everything under it (programs detach when their pinned links go).
pub fn cleanup(bpffs_root: &Path) -> anyhow::Result<()> {
    for ifindex in dataplane::pinned_interfaces(bpffs_root)? {
        if let Ok(name) = nix::net::if_::if_indextoname(ifindex) {
            let name = name.to_string_lossy().into_owned();
            // The L7 site rules the agent added inside the VPC namespace go too.
            if let Some(netns) = dataplane::peer_netns_of(&name) {
                let rules = l7::listen::unroute_all(&netns);
                if rules > 0 {
                    info!(netns = %netns, rules, "removed L7 site rules");
                }
                let rules = dns::serve::unroute_all(&netns);
                if rules > 0 {
                    info!(netns = %netns, rules, "removed DNS rules");
                }
            }
            // Deleting the host end deletes the pair.
            match std::process::Command::new("ip")
                .args(["link", "del", "dev", &name])
                .status()
            {
                Ok(s) if s.success() => info!(link = %name, "removed VPC link"),
                _ => warn!(link = %name, "could not remove VPC link"),
            }
        }
    }
    if dataplane::remove_root(bpffs_root)? {
        info!(bpffs_root = %bpffs_root.display(), "removed pinned programs and maps");
    } else {
        info!(bpffs_root = %bpffs_root.display(), "nothing pinned");
    }
    Ok(())
}

/// Waits for SIGTERM or SIGINT; every SIGHUP in between asks the sync thread to read
/// the config file again.
async fn wait_for_shutdown(sync: std::sync::mpsc::Sender<Wake>) -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => {
                info!("SIGHUP: reading the config again");
                let _ = sync.send(Wake::Reload);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

    #[test]
    fn the_connection_budget_leaves_a_reserve_and_two_descriptors_each() {
        let budget = super::default_max_connections;
        assert_eq!(budget(Some(1_048_576)), (1_048_576 - 4096) / 2);
        assert_eq!(budget(Some(524_288)), (524_288 - 4096) / 2);
        assert_eq!(
            budget(Some(1024)),
            (1024 - 256) / 2,
            "a quarter kept at a low limit"
        );
        assert_eq!(budget(Some(100)), 64, "never below 64");
        assert_eq!(budget(None), 1 << 20, "unlimited");
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_one() {
        // As a systemd service starts: soft 1024 under a higher hard limit.
        let before = getrlimit(Resource::Nofile);
        let lowered = Rlimit {
            current: Some(before.maximum.map_or(1024, |m| m.min(1024))),
            maximum: before.maximum,
        };
        setrlimit(Resource::Nofile, lowered).unwrap();
        super::raise_open_file_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum, "{limit:?}");
    }
}
