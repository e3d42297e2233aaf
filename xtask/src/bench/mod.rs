//! `cargo xtask bench l4`: lattice's kernel TCP path side by side with direct routing and
//! two userspace L4 proxies, in one run on the same namespaces.
//!
//! A benchmark, not a test: it never fails because a number is low. It prints absolute
//! values, their ratios against the direct baseline and against each peer, and a line per
//! target of the issue (met / NOT MET / not measured), and writes the same as JSON to
//! `target/bench/l4-<UTC timestamp>.json`. It fails only when it cannot measure the
//! baseline or a peer.
//!
//! Variants, each reached from the client namespace at its own address (see [`net`] for
//! the topology):
//!
//! | variant | path | forwarding CPU |
//! | --- | --- | --- |
//! | direct | routed over one veth, client ns -> server ns (the baseline) | none |
//! | routed | client ns -> proxy ns forwarding as a plain router -> server ns: two veths, as many as lattice's path | none |
//! | haproxy | Debian's HAProxy, `mode tcp`, 1 thread, in the proxy ns | haproxy |
//! | nginx | Debian's nginx-full stream module, 1 worker, in the proxy ns | master + worker |
//! | lattice | the release agent's kernel path: client -> VIP:port -> target | agent (+ softirq) |
//!
//! They run in [`ROUNDS`] interleaved rounds (each round starting with the next variant);
//! the table shows medians. Measurements, the same for every variant in every round:
//!
//! - bulk throughput: `iperf3 -c DST -t 3 -J`, one stream (`end.sum_received`);
//! - small messages: `sockperf ping-pong --tcp --full-rtt -m 64 -t 2`: p50/p99 round trip
//!   and round trips per second, once with client, server and forwarding process pinned
//!   to one vCPU and once unpinned (a hand-off between the two vCPUs costs ~45 us here:
//!   only like is compared with like);
//! - connection setup: 4 client threads for 2 s (at most 80 000 connections), each round
//!   connect + 1-byte request + 1-byte reply + the server's close (this module's own
//!   client and responder);
//! - CPU over each measurement: the whole machine's busy time from `/proc/stat` (the
//!   kernel path's cost is softirq, in no process) and the forwarding processes' utime +
//!   stime from `/proc/<pid>/stat`; throughput per busy core is system-wide, so every
//!   column is charged the same way;
//! - memory: VmHWM / VmRSS of the proxy or the agent, and the conntrack map's size as
//!   bpftool shows it.
//!
//! The whole run takes about three minutes (plus the agent's release build).

mod auth;
mod control;
mod l7;
mod lattice;
mod load;
mod net;
mod peers;
mod procs;
mod report;
mod sockmap;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::bail;
use lattice_tests::Topology;

pub use auth::auth;
pub use control::control;
pub use l7::l7;
pub use sockmap::sockmap;

use crate::step;
use load::{
    Servers, CONNECT_CONCURRENCY, CONNECT_MAX_PER_THREAD, CONNECT_SECONDS, IPERF3_SECONDS,
    MESSAGE_BYTES, SOCKPERF_SECONDS,
};
use net::{Baseline, BenchNet, HAPROXY_ADDR, NGINX_ADDR, SERVER_ADDR};
use procs::{Memory, Proc};
use report::{Machine, Report, Round, Settings, Variant};

/// Every variant is measured this many times, in rounds that interleave the variants;
/// the table shows medians (the JSON has every round), so a burst of other work on the
/// machine hits one round of several variants rather than all rounds of one.
const ROUNDS: usize = 3;

pub fn l4(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    // First, while nothing runs: cargo may wait for another build's lock.
    step("bench l4: building the release agent (cargo build --release -p lattice-agent)");
    let agent_bin = lattice::build(root);
    let mut lattice_unavailable = None;
    if let Err(e) = &agent_bin {
        println!("    lattice: not available: {e:#}");
    }

    step("bench l4: namespaces (client, server, proxy), servers");
    let mut topo = Topology::new()?;
    let net = BenchNet::build(&mut topo)?;
    let bpffs_root = topo.bpffs_root("bench")?;
    let work = WorkDir::new(topo.tag().as_str())?;
    println!(
        "    client {} (10.81.0.10), server {} (10.82.0.10), proxy {}",
        net.client.name(),
        net.server.name(),
        net.proxy.name()
    );
    let servers = Servers::start(&net, &work.path)?;
    let mut background = Vec::new();
    let pin_cpu = procs::cpus() - 1;
    let bench = Bench {
        client: load::ClientSide::vpc(&net.client),
        sockperf_server: servers.sockperf.pid(),
        connect_from: Some(&net.client),
        concurrent: None,
        work: &work.path,
        pin_cpu,
    };

    // The peers run for the whole benchmark (idle while others are measured); the agent
    // runs only during its own measurements, so the baselines see no lattice program.
    let mut haproxy = start_peer("haproxy", peers::haproxy(&net, &work.path));
    let mut nginx = start_peer("nginx", peers::nginx(&net, &work.path));
    let mut agent_bin = match agent_bin {
        Ok(bin) => Some(bin),
        Err(e) => {
            lattice_unavailable = Some(format!("{e:#}"));
            None
        }
    };

    let mut variants = vec![
        Variant::new("direct", "baseline"),
        Variant::new("routed", "baseline"),
        Variant::new("haproxy", "peer"),
        Variant::new("nginx", "peer"),
        Variant::new("lattice", "lattice"),
    ];
    for (name, peer) in [("haproxy", &haproxy), ("nginx", &nginx)] {
        if let Err(e) = peer {
            variant_mut(&mut variants, name).errors.push(e.clone());
        }
    }
    for round in 1..=ROUNDS {
        // Each round starts with another variant, so none always runs first or last.
        let order: Vec<&'static str> = (0..variants.len())
            .map(|i| variants[(i + round - 1) % variants.len()].name)
            .collect();
        step(&format!(
            "bench l4: round {round}/{ROUNDS} ({})",
            order.join(", ")
        ));
        background.push(idle_check()?);
        for name in order {
            let v = variant_mut(&mut variants, name);
            match name {
                "direct" | "routed" => {
                    let baseline = if name == "direct" {
                        Baseline::Direct
                    } else {
                        Baseline::Routed
                    };
                    net.add_baseline_routes(baseline)?;
                    bench.round(v, round, [SERVER_ADDR; 2], None);
                    net.remove_baseline_routes()?;
                }
                "haproxy" | "nginx" => {
                    let (peer, addr) = if name == "haproxy" {
                        (&mut haproxy, HAPROXY_ADDR)
                    } else {
                        (&mut nginx, NGINX_ADDR)
                    };
                    let Ok(proc) = peer else { continue };
                    match proc.check_running() {
                        Ok(()) => bench.round(v, round, [addr; 2], Some(proc)),
                        Err(e) => {
                            v.errors.push(format!("round {round}: {e:#}"));
                            *peer = Err(format!("{e:#}"));
                        }
                    }
                }
                _ => {
                    let Some(bin) = &agent_bin else { continue };
                    match lattice::Lattice::start(bin, &net, &bpffs_root, &work.path) {
                        Ok(mut l) => {
                            println!(
                                "    lattice: agent ready; service bench at {}, bench-connect at {}",
                                l.vip, l.connect_vip
                            );
                            bench.round(v, round, [l.vip, l.connect_vip], Some(&l.agent));
                            if v.conntrack.is_none() {
                                match l.conntrack() {
                                    Ok(c) => v.conntrack = Some(c),
                                    Err(e) => {
                                        v.errors.push(format!("reading the conntrack map: {e:#}"))
                                    }
                                }
                            }
                            if let Err(e) = l.agent.check_running() {
                                v.errors.push(format!("round {round}: {e:#}"));
                            }
                            println!("    lattice: agent {}", l.agent.stop());
                        }
                        Err(e) if round == 1 => {
                            println!("    lattice: not available: {e:#}");
                            lattice_unavailable = Some(format!("{e:#}"));
                            agent_bin = None;
                        }
                        Err(e) => {
                            println!("    lattice: agent did not start: {e:#}");
                            v.errors.push(format!("round {round}: {e:#}"));
                        }
                    }
                }
            }
        }
    }
    for (name, peer) in [("haproxy", &mut haproxy), ("nginx", &mut nginx)] {
        if let Ok(proc) = peer {
            println!("    {name}: {}", proc.stop());
        }
    }
    for v in &mut variants {
        if v.name == "lattice" {
            v.not_available = lattice_unavailable.clone();
        }
        v.summarise();
    }

    drop(servers);
    let (file_stamp, stamp) = report::timestamps();
    let report = Report {
        benchmark: "l4",
        timestamp: stamp,
        machine: Machine::here(background),
        settings: Settings {
            rounds: ROUNDS,
            iperf3_seconds: IPERF3_SECONDS,
            iperf3_streams: 1,
            sockperf_seconds: SOCKPERF_SECONDS,
            message_bytes: MESSAGE_BYTES,
            latency_pinned_cpu: pin_cpu,
            connect_seconds: CONNECT_SECONDS,
            connect_concurrency: CONNECT_CONCURRENCY,
            connect_max: CONNECT_CONCURRENCY * CONNECT_MAX_PER_THREAD,
            peer_workers: 1,
        },
        ratios: report::ratios(&variants),
        targets: report::targets(&variants),
        variants,
        duration_s: started.elapsed().as_secs_f64(),
    };
    publish(root, "l4", &file_stamp, &report.render(), |path| {
        report::write_json(path, &report)
    })?;

    drop(work);
    drop(topo);
    fail_unless_measured(
        report
            .variants
            .iter()
            .filter(|v| v.role != "lattice" && !v.errors.is_empty())
            .map(|v| v.name.to_owned()),
    )
}

/// Prints a bench's report and writes its JSON to `target/bench/<kind>-<stamp>.json`.
fn publish(
    root: &Path,
    kind: &str,
    stamp: &str,
    rendered: &str,
    write_json: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    step(&format!("bench {kind}: results"));
    print!("{rendered}");
    let json = bench_dir(root).join(format!("{kind}-{stamp}.json"));
    write_json(&json)?;
    println!("    written to {}", json.display());
    Ok(())
}

/// A bench fails only when a baseline or a peer could not be measured (named here);
/// lattice's own misses are results, not failures.
fn fail_unless_measured(failed: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let failed: Vec<String> = failed.collect();
    if !failed.is_empty() {
        bail!("measurements of {} failed (see above)", failed.join(", "));
    }
    Ok(())
}

/// `target/bench` (or `$CARGO_TARGET_DIR/bench`).
fn bench_dir(root: &Path) -> PathBuf {
    target_dir(root).join("bench")
}

/// `target` (or `$CARGO_TARGET_DIR`).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// What every variant's measurements share.
struct Bench<'a> {
    /// Where iperf3 and sockperf's clients run.
    client: load::ClientSide<'a>,
    /// The sockperf server, pinned with the client for the pinned latency.
    sockperf_server: u32,
    /// Where the connection-rate threads connect from (none: not measured).
    connect_from: Option<&'a lattice_tests::Netns>,
    /// How many ping-pong connections run at once for the concurrent rate (none: not
    /// measured).
    concurrent: Option<usize>,
    work: &'a Path,
    pin_cpu: usize,
}

impl Bench<'_> {
    /// Runs every measurement once against `dst` (iperf3 and sockperf) and
    /// `connect_dst` (the connection-rate responder, when measured), and adds the round
    /// to `v`.
    /// `forwarder` is the process whose CPU and memory are charged to the variant (none
    /// for the baselines).
    fn round(
        &self,
        v: &mut Variant,
        round: usize,
        [dst, connect_dst]: [Ipv4Addr; 2],
        forwarder: Option<&Proc>,
    ) {
        let name = v.name;
        v.destination.get_or_insert_with(|| {
            if dst == connect_dst {
                dst.to_string()
            } else {
                format!("{dst} (iperf3, sockperf), {connect_dst} (connections)")
            }
        });
        let client = &self.client;
        let cost: Vec<u32> = forwarder.map(Proc::pid).into_iter().collect();
        // Pinned: sockperf's server and the forwarder's threads (and workers) go to the
        // client's CPU for that measurement.
        let mut pin_pids = vec![self.sockperf_server];
        if let Some(f) = forwarder {
            pin_pids.extend(procs::tree(f.pid()));
        }
        let label = format!("{name}-{round}");
        let errors = &mut v.errors;
        let mut r = Round {
            round,
            ..Round::default()
        };

        r.throughput = record(
            errors,
            name,
            "iperf3",
            load::iperf3(client, dst, &cost, self.work, &label),
        );
        if let Some(t) = &r.throughput {
            println!(
                "    {name:8} iperf3: {:.2} Gbit/s, {:.2} busy cores, {} retransmits",
                t.gbit_per_s, t.cpu.system_busy_cores, t.retransmits
            );
        }
        for pinned in [true, false] {
            let mode = if pinned { "pinned" } else { "unpinned" };
            let pin = pinned.then_some((self.pin_cpu, pin_pids.as_slice()));
            let latency = record(
                errors,
                name,
                &format!("sockperf {mode}"),
                load::sockperf(
                    client,
                    dst,
                    pin,
                    &cost,
                    self.work,
                    &format!("{label}-{mode}"),
                ),
            );
            if let Some(l) = &latency {
                println!(
                    "    {name:8} sockperf {mode}: p50 {:.1} us, p99 {:.1} us, {:.0} round trips/s",
                    l.p50_us, l.p99_us, l.round_trips_per_s
                );
            }
            if pinned {
                r.latency_pinned = latency;
            } else {
                r.latency_unpinned = latency;
            }
        }
        if let Some(connections) = self.concurrent {
            r.concurrent = record(
                errors,
                name,
                "concurrent sockperf",
                load::sockperf_concurrent(
                    client,
                    dst,
                    connections,
                    &cost,
                    self.work,
                    &format!("{label}-concurrent"),
                ),
            );
            if let Some(c) = &r.concurrent {
                println!(
                    "    {name:8} sockperf x{}: {:.0} round trips/s, p50 {:.1} us, {:.2} busy cores",
                    c.connections, c.round_trips_per_s, c.p50_us, c.cpu.system_busy_cores
                );
            }
        }
        if let Some(from) = self.connect_from {
            r.connect = record(
                errors,
                name,
                "connection rate",
                load::connect_rate(from, connect_dst, &cost),
            );
        }
        if let Some(c) = &r.connect {
            println!(
                "    {name:8} connections: {:.0}/s ({} in {:.1} s, {} failed), p50 {:.1} us",
                c.per_s, c.connections, c.cpu.seconds, c.failures, c.p50_us
            );
        }
        r.memory = forwarder.and_then(|f| Memory::of_tree(f.pid()));
        v.rounds.push(r);
    }
}

/// The order of the variants in round `round` (from 1) of an interleaved run: each
/// round starts with the variant the previous one ended with (the list turns by one),
/// so no variant always runs on a machine fresh from another's idle gap.
fn round_order<T: Copy, const N: usize>(round: usize, variants: [T; N]) -> [T; N] {
    let mut order = variants;
    order.rotate_right(round.saturating_sub(1) % N.max(1));
    order
}

/// Starts round `round` of `rounds` of interleaved variants named by `names` (in this
/// round's order): says so, records how busy the machine was before it
/// (`background`), and fails when the shared backend has stopped.
fn begin_round(
    what: &str,
    round: usize,
    rounds: usize,
    names: &[&str],
    background: &mut Vec<f64>,
    backend: &mut Proc,
) -> anyhow::Result<()> {
    step(&format!("{what} {round}/{rounds} ({})", names.join(", ")));
    background.push(idle_check()?);
    if let Err(e) = backend.check_running() {
        bail!("the backend stopped: {e:#}");
    }
    Ok(())
}

/// Busy cores of the machine during half a second with nothing of the benchmark
/// running; warns when something else (a build, tests) is competing for the CPUs.
fn idle_check() -> anyhow::Result<f64> {
    let busy = procs::background_load(Duration::from_millis(500))?;
    if busy > 0.15 {
        println!(
            "    warning: the machine is {busy:.2} cores busy with something else; \
             this round's numbers will be noisy"
        );
    }
    Ok(busy)
}

fn start_peer(name: &str, started: anyhow::Result<Proc>) -> Result<Proc, String> {
    started.map_err(|e| {
        println!("    {name}: did not start: {e:#}");
        format!("starting {name}: {e:#}")
    })
}

fn variant_mut<'a>(variants: &'a mut [Variant], name: &str) -> &'a mut Variant {
    variants
        .iter_mut()
        .find(|v| v.name == name)
        .expect("every variant is in the list")
}

fn record<T>(
    errors: &mut Vec<String>,
    variant: &str,
    what: &str,
    result: anyhow::Result<T>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            println!("    {variant:8} {what} failed: {e:#}");
            errors.push(format!("{what}: {e:#}"));
            None
        }
    }
}

/// Configs, logs and the agent's state of one run, removed at the end.
struct WorkDir {
    path: PathBuf,
}

/// Work directories are `<tmp>/lattice-bench-<tag>-work`.
const WORK_PREFIX: &str = "lattice-bench-";

impl WorkDir {
    /// Creates this run's directory, after removing those of runs whose process is gone
    /// (killed before its destructors ran; the topology's sweep removes the rest).
    fn new(tag: &str) -> anyhow::Result<WorkDir> {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let owner = name
                    .strip_prefix(WORK_PREFIX)
                    .and_then(lattice_tests::names::owner_pid);
                if let Some(pid) = owner {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let path = tmp.join(format!("{WORK_PREFIX}{tag}-work"));
        std::fs::create_dir_all(&path)?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::round_order;

    #[test]
    fn each_round_starts_with_the_variant_the_last_one_ended_with() {
        assert_eq!(round_order(1, ["a", "b"]), ["a", "b"]);
        assert_eq!(round_order(2, ["a", "b"]), ["b", "a"]);
        assert_eq!(round_order(3, ["a", "b"]), ["a", "b"]);
        let three = ["a", "b", "c"];
        assert_eq!(round_order(1, three), ["a", "b", "c"]);
        assert_eq!(round_order(2, three), ["c", "a", "b"]);
        assert_eq!(round_order(3, three), ["b", "c", "a"]);
        assert_eq!(round_order(4, three), ["a", "b", "c"]);
    }
}
