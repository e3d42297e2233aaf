//! `cargo xtask bench sockmap`: socket acceleration (sock_ops + sk_msg) on a same-host
//! hop, side by side with the same hop without it and with plain loopback, in one run.
//!
//! The hop is a host client reaching a host target through a TCP listener: the client
//! processes run in a VPC cgroup (`web`), the servers in another (`targets`, a VPC of
//! host cgroups whose target is 127.1.0.10), all in one namespace standing in for the
//! host. connect() to the VIP is rewritten to the target by connect4, so the
//! connection is plain loopback TCP between two sockets of the host; with acceleration
//! both are in the SOCKHASH and every message goes socket to socket.
//!
//! | variant | client connects to | programs |
//! | --- | --- | --- |
//! | loopback | 127.1.0.10 directly | none (nothing of lattice is loaded) |
//! | sockmap-off | the VIP | the agent with `--no-sockmap`: connect4 only |
//! | sockmap-on | the VIP | the agent: connect4, sock_ops on both cgroups, sk_msg |
//!
//! The measurements are `bench l4`'s (see [`super::load`]): iperf3 (bulk throughput, one
//! stream), sockperf ping-pong with 64-byte messages (p50, p99 and round trips per
//! second, one request outstanding), pinned to one vCPU and unpinned, and 8 sockperf
//! ping-pong connections at once (unpinned: the request/response rate the CPUs sustain
//! rather than one connection's wake-ups). Rounds interleave
//! the variants; the agent runs only during its own variant and `lattice-agent cleanup`
//! removes everything it pinned afterwards, so the other variants see no program. For
//! sockmap-on, the acceleration counters (`lattice-agent maps`) before and after each
//! round show the traffic really went through sk_msg redirect.
//!
//! Targets (the issue's): with acceleration, p50 at least 30% lower and round trips per
//! second at least 1.5x those without (sockmap-off), pinned, unpinned and with 8
//! connections compared separately (like with like). A benchmark: it never fails because a number is low, only when the
//! loopback baseline cannot be measured. JSON goes to `target/bench/sockmap-<stamp>.json`.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lattice_tests::{Cgroup, Netns, Topology};
use serde::Serialize;

use super::{
    fail_unless_measured, idle_check, lattice,
    load::{ClientSide, CONCURRENT_CONNECTIONS, IPERF3_SECONDS, MESSAGE_BYTES, SOCKPERF_SECONDS},
    net::{self, IPERF3_PORT, SOCKPERF_PORT},
    procs::{self, Proc},
    publish, report, variant_mut, Bench, WorkDir,
};
use crate::{shell, step};

const ROUNDS: usize = 3;
/// The target's address on the stand-in host's loopback.
const TARGET: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 10);
/// The variants, in the order of the table.
const VARIANTS: [(&str, &str); 3] = [
    ("loopback", "baseline"),
    ("sockmap-off", "lattice"),
    ("sockmap-on", "lattice"),
];
/// Ratios are taken against these.
const REFERENCES: [&str; 2] = ["loopback", "sockmap-off"];
/// The issue's targets: p50 at most this fraction, round trips at least this multiple.
const P50_LIMIT: f64 = 0.7;
const RATE_LIMIT: f64 = 1.5;

/// What the acceleration counters moved by during one round of a variant.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Acceleration {
    pub variant: &'static str,
    pub round: usize,
    pub sockets_recorded: u64,
    pub connections_accelerated: u64,
    pub redirected_bytes: u64,
    pub normal_bytes: u64,
}

#[derive(Serialize)]
struct SockmapReport {
    #[serde(flatten)]
    report: report::Report,
    /// The counters of the lattice variants, per round.
    acceleration: Vec<Acceleration>,
}

pub fn sockmap(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    step("bench sockmap: building the release agent (cargo build --release -p lattice-agent)");
    let agent_bin = lattice::build(root).map_err(|e| format!("{e:#}"));
    if let Err(e) = &agent_bin {
        println!("    lattice: not available: {e}");
    }

    step("bench sockmap: a namespace for the host, cgroups for clients and targets, servers");
    let mut topo = Topology::new()?;
    let host = topo.add_netns("host")?;
    host.add_addr("lo", &format!("{TARGET}/32"))?;
    let web = topo.add_cgroup("web")?;
    let targets = topo.add_cgroup("targets")?;
    let bpffs_root = topo.bpffs_root("bench")?;
    let work = WorkDir::new(topo.tag().as_str())?;
    let (_iperf3, sockperf) = servers(&host, &targets, &work.path)?;
    println!(
        "    host {}, clients in cgroup {}, servers in cgroup {} at {TARGET}",
        host.name(),
        web.path().display(),
        targets.path().display()
    );
    let bench = Bench {
        client: ClientSide {
            netns: &host,
            cgroup: Some(&web),
            bind: None,
        },
        sockperf_server: sockperf.pid(),
        connect_from: None,
        concurrent: Some(CONCURRENT_CONNECTIONS),
        work: &work.path,
        pin_cpu: procs::cpus() - 1,
    };
    let config = config(&web, &targets);

    let mut variants: Vec<report::Variant> = VARIANTS
        .iter()
        .map(|(name, role)| report::Variant::new(name, role))
        .collect();
    for v in variants.iter_mut().filter(|v| v.role == "lattice") {
        v.not_available = agent_bin.as_ref().err().cloned();
    }
    let mut acceleration = Vec::new();
    let mut background = Vec::new();
    for round in 1..=ROUNDS {
        let order: Vec<&'static str> = (0..VARIANTS.len())
            .map(|i| VARIANTS[(i + round - 1) % VARIANTS.len()].0)
            .collect();
        step(&format!(
            "bench sockmap: round {round}/{ROUNDS} ({})",
            order.join(", ")
        ));
        background.push(idle_check()?);
        for name in order {
            let v = variant_mut(&mut variants, name);
            if name == "loopback" {
                bench.round(v, round, [TARGET; 2], None);
                continue;
            }
            let Ok(bin) = &agent_bin else { continue };
            if v.not_available.is_some() {
                continue;
            }
            match measure_lattice(&bench, bin, &bpffs_root, &config, v, round) {
                Ok(a) => {
                    println!(
                        "    {name:11} counters: {} sockets recorded, {} connections accelerated, \
                         {} bytes redirected, {} bytes the normal way",
                        a.sockets_recorded,
                        a.connections_accelerated,
                        a.redirected_bytes,
                        a.normal_bytes
                    );
                    acceleration.push(a);
                }
                Err(e) => {
                    println!("    {name:11} {e:#}");
                    if v.rounds.is_empty() {
                        v.not_available = Some(format!("{e:#}"));
                    } else {
                        v.errors.push(format!("round {round}: {e:#}"));
                    }
                }
            }
        }
    }
    for v in &mut variants {
        v.summarise();
    }

    let (file_stamp, stamp) = report::timestamps();
    let report = SockmapReport {
        report: report::Report {
            benchmark: "sockmap",
            timestamp: stamp,
            machine: report::Machine::here(background),
            settings: report::Settings {
                rounds: ROUNDS,
                iperf3_seconds: IPERF3_SECONDS,
                iperf3_streams: 1,
                sockperf_seconds: SOCKPERF_SECONDS,
                message_bytes: MESSAGE_BYTES,
                latency_pinned_cpu: bench.pin_cpu,
                connect_seconds: 0.0,
                connect_concurrency: 0,
                connect_max: 0,
                peer_workers: 0,
            },
            ratios: report::ratios_against(&variants, &REFERENCES),
            targets: sockmap_targets(&variants, &acceleration),
            variants,
            duration_s: started.elapsed().as_secs_f64(),
        },
        acceleration,
    };
    let rendered = render(&report);
    publish(root, "sockmap", &file_stamp, &rendered, |path| {
        report::write_json(path, &report)
    })?;
    if let Ok(bin) = &agent_bin {
        cleanup(bin, &bpffs_root);
    }
    drop(sockperf);
    drop(work);
    drop(topo);
    fail_unless_measured(
        report
            .report
            .variants
            .iter()
            .filter(|v| v.role == "baseline" && (!v.errors.is_empty() || v.rounds.is_empty()))
            .map(|v| v.name.to_owned()),
    )
}

/// iperf3 and sockperf servers on the target address, in the targets cgroup.
fn servers(host: &Netns, targets: &Cgroup, work: &Path) -> anyhow::Result<(Proc, Proc)> {
    let target = TARGET.to_string();
    let mut iperf3 = targets.command_in(host, "iperf3");
    iperf3.args(["-s", "-B", &target, "-p", &IPERF3_PORT.to_string()]);
    let mut iperf3 = Proc::spawn("iperf3 server", iperf3, &work.join("iperf3-server.log"))?;
    // An address list and epoll: sockperf's server then serves several connections at
    // once (given one address it blocks in recvfrom() on one connection at a time).
    let feed = work.join("sockperf-server.feed");
    std::fs::write(&feed, format!("T:{target}:{SOCKPERF_PORT}\n"))?;
    let mut sockperf = targets.command_in(host, "sockperf");
    sockperf.args(["sr", "-F", "epoll", "-f"]).arg(&feed);
    let mut sockperf = Proc::spawn(
        "sockperf server",
        sockperf,
        &work.join("sockperf-server.log"),
    )?;
    for port in [IPERF3_PORT, SOCKPERF_PORT] {
        net::wait_tcp(
            host,
            SocketAddrV4::new(TARGET, port),
            Duration::from_secs(10),
        )?;
    }
    iperf3.check_running()?;
    sockperf.check_running()?;
    Ok((iperf3, sockperf))
}

/// A VPC of client cgroups associated with service `bench`, whose TCP listeners forward
/// the iperf3 and sockperf ports to the target in a VPC of host cgroups. Health checks
/// are off: iperf3's server serves one test at a time and takes any connection for one.
fn config(web: &Cgroup, targets: &Cgroup) -> String {
    let group = |name: &str, port: u16| {
        format!(
            "  - {{ name: bench-{name}, type: IP, config: {{ vpcIdentifier: vpc-host, protocol: TCP, \
             port: {port}, healthCheck: {{ enabled: false }} }}, targets: [{{ id: {TARGET} }}] }}\n"
        )
    };
    let listener = |name: &str, port: u16| {
        format!(
            "      - {{ name: {name}, protocol: TCP, port: {port}, defaultAction: {{ forward: \
             {{ targetGroups: [{{ targetGroupIdentifier: bench-{name} }}] }} }} }}\n"
        )
    };
    format!(
        r#"accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-clients, account: "111111111111", cidr: 10.86.0.0/16, attachments: [{{ cgroup: {web} }}] }}
  - {{ name: vpc-host, account: "111111111111", cidr: 127.1.0.0/16, attachments: [{{ cgroup: {targets} }}] }}
serviceNetworks:
  - name: bench-net
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-clients }}]
    serviceAssociations: [bench]
services:
  - name: bench
    account: "111111111111"
    authType: NONE
    listeners:
{iperf3}{sockperf}targetGroups:
{g_iperf3}{g_sockperf}"#,
        web = web.relative_path().trim_start_matches('/'),
        targets = targets.relative_path().trim_start_matches('/'),
        iperf3 = listener("iperf3", IPERF3_PORT),
        sockperf = listener("sockperf", SOCKPERF_PORT),
        g_iperf3 = group("iperf3", IPERF3_PORT),
        g_sockperf = group("sockperf", SOCKPERF_PORT),
    )
}

/// One round of a lattice variant: the agent (with `--no-sockmap` for sockmap-off), the
/// measurements against the VIP, the counters' movement, the agent stopped and its
/// pins removed.
fn measure_lattice(
    bench: &Bench<'_>,
    bin: &Path,
    bpffs_root: &Path,
    config: &str,
    v: &mut report::Variant,
    round: usize,
) -> anyhow::Result<Acceleration> {
    let name = v.name;
    let args: &[&str] = if name == "sockmap-on" {
        &[]
    } else {
        &["--no-sockmap"]
    };
    let (mut agent, shown) = lattice::launch_with(
        bin,
        bpffs_root,
        bench.work,
        "lattice-bench-sockmap.yaml",
        config,
        args,
    )?;
    let vip = lattice::vip_of(&shown, "bench")?;
    let before = counters(bin, bpffs_root)?;
    bench.round(v, round, [vip; 2], None);
    let after = counters(bin, bpffs_root)?;
    agent.check_running()?;
    println!("    {name:11} agent {}", agent.stop());
    cleanup(bin, bpffs_root);
    let delta = |key: &str| {
        after[key]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before[key].as_u64().unwrap_or(0))
    };
    Ok(Acceleration {
        variant: name,
        round,
        sockets_recorded: delta("socketsRecorded"),
        connections_accelerated: delta("connectionsAccelerated"),
        redirected_bytes: delta("redirectedBytes"),
        normal_bytes: delta("normalBytes"),
    })
}

/// The acceleration counters (`lattice-agent maps --json`, `.sockmap`).
pub(super) fn counters(bin: &Path, bpffs_root: &Path) -> anyhow::Result<serde_json::Value> {
    let json = shell::output(
        Command::new(bin)
            .args(["maps", "--json", "--bpffs-root"])
            .arg(bpffs_root),
    )?;
    let maps: serde_json::Value =
        serde_json::from_str(&json).context("parsing lattice-agent maps --json")?;
    Ok(maps["sockmap"].clone())
}

/// `lattice-agent cleanup`: the programs detach, so the next variant sees none.
pub(super) fn cleanup(bin: &Path, bpffs_root: &Path) {
    if let Err(e) = shell::output(
        Command::new(bin)
            .args(["cleanup", "--bpffs-root"])
            .arg(bpffs_root),
    ) {
        println!("    lattice-agent cleanup failed: {e:#}");
    }
}

/// The issue's targets: sockmap-on against sockmap-off, pinned and unpinned; and the
/// counters' proof that sockmap-on's traffic went socket to socket.
fn sockmap_targets(
    variants: &[report::Variant],
    acceleration: &[Acceleration],
) -> Vec<report::TargetResult> {
    let (on, off) = ("sockmap-on", "sockmap-off");
    let spread = |name: &str, key: &str, d: usize| {
        let s = variants.iter().find(|v| v.name == name)?.summary.get(key)?;
        Some(format!(
            "{name} {:.d$} ({:.d$}-{:.d$})",
            s.median, s.min, s.max
        ))
    };
    let target = |target: &'static str, key: &str, limit: f64, at_least: bool, d: usize| {
        let value = report::ratio_of(variants, key, on, off);
        report::TargetResult {
            target,
            value,
            limit,
            met: value.map(|v| if at_least { v >= limit } else { v <= limit }),
            detail: match (value, spread(on, key, d), spread(off, key, d)) {
                (Some(v), Some(a), Some(b)) => format!("{v:.2}x: {a} vs {b}"),
                _ => "not measured (see above)".to_owned(),
            },
        }
    };
    let on_rounds: Vec<&Acceleration> = acceleration.iter().filter(|a| a.variant == on).collect();
    let redirected: u64 = on_rounds.iter().map(|a| a.redirected_bytes).sum();
    let normal: u64 = on_rounds.iter().map(|a| a.normal_bytes).sum();
    let connections: u64 = on_rounds.iter().map(|a| a.connections_accelerated).sum();
    let share = (redirected + normal > 0).then(|| redirected as f64 / (redirected + normal) as f64);
    vec![
        target(
            "sockmap-on p50 <= 0.7x sockmap-off (pinned, 64 B)",
            "pinned_p50_us",
            P50_LIMIT,
            false,
            1,
        ),
        target(
            "sockmap-on p50 <= 0.7x sockmap-off (unpinned, 64 B)",
            "unpinned_p50_us",
            P50_LIMIT,
            false,
            1,
        ),
        target(
            "sockmap-on request/response rate >= 1.5x sockmap-off (pinned)",
            "pinned_round_trips_per_s",
            RATE_LIMIT,
            true,
            0,
        ),
        target(
            "sockmap-on request/response rate >= 1.5x sockmap-off (unpinned)",
            "unpinned_round_trips_per_s",
            RATE_LIMIT,
            true,
            0,
        ),
        target(
            "sockmap-on request/response rate >= 1.5x sockmap-off (8 connections, unpinned)",
            "concurrent_round_trips_per_s",
            RATE_LIMIT,
            true,
            0,
        ),
        report::TargetResult {
            target: "sockmap-on's traffic went through sk_msg redirect (>= 99% of the bytes of recorded sockets)",
            value: share,
            limit: 0.99,
            met: share.map(|s| s >= 0.99),
            detail: match share {
                Some(s) => format!(
                    "{:.2}%: {redirected} bytes redirected, {normal} the normal way, \
                     {connections} connections accelerated over {} rounds",
                    s * 100.0,
                    on_rounds.len()
                ),
                None => "not measured (see above)".to_owned(),
            },
        },
    ]
}

fn render(report: &SockmapReport) -> String {
    let mut out = String::new();
    out.push_str(
        "same-host hop: host client (VPC cgroup) -> TCP listener -> host target (VPC cgroup), \
         one namespace; loopback = the target directly, no lattice program\n",
    );
    out.push_str(&report.report.render_against(&REFERENCES));
    out.push_str("acceleration counters of the lattice variants per round (lattice-agent maps):\n");
    for a in &report.acceleration {
        out.push_str(&format!(
            "  round {} {:11} {} sockets recorded, {} connections accelerated, {} bytes redirected, {} bytes the normal way\n",
            a.round,
            a.variant,
            a.sockets_recorded,
            a.connections_accelerated,
            a.redirected_bytes,
            a.normal_bytes
        ));
    }
    out
}
