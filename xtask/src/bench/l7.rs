//! `cargo xtask bench l7`: lattice's HTTP listeners (the agent's userspace proxy) side by
//! side with the backend reached directly and with nginx and HAProxy as HTTP reverse
//! proxies for the same route, in one run on the namespaces of `bench l4` (see
//! [`super::net`]).
//!
//! | variant | client connects to | forwarding process |
//! | --- | --- | --- |
//! | direct | the backend, 10.82.0.10: 8080 (HTTP/1.1), 8081 (h2c), 8443 (TLS, ALPN h2 + http/1.1) | none |
//! | nginx | 10.83.0.11: 80, 81 (h2c), 443 (TLS) in the proxy ns, 1 worker | master + worker |
//! | haproxy | 10.83.0.10: 80, 81 (`proto h2`), 443 (TLS), 1 thread | haproxy |
//! | lattice | the service's VIP: 80 (HTTP/1.1 and h2c), 443 (HTTPS) | agent, hops accelerated |
//! | lattice-tcp | the same | agent with `--no-sockmap` |
//!
//! The backend is nginx (1 worker) in the server namespace answering `GET /` with a fixed
//! 14-byte body. The load tools run in a cgroup of their own (`client`), the backend in
//! another (`server`) and the agent in a third, for every variant. `lattice` is the
//! agent as deployed: `--sockmap-cgroup` names the client and server cgroups, so both
//! of its hops (client to agent inside the client namespace, agent to backend inside
//! the server namespace) go socket to socket through sk_msg; the counters of
//! `lattice-agent maps` are checked each round to show they did. `lattice-tcp` is the
//! same agent with every hop through TCP, as the peers' hops go (they cannot do
//! otherwise). The programs are attached only while an agent runs: `lattice-agent
//! cleanup` follows every stop. The targets are judged on `lattice`, with
//! `lattice-tcp`'s ratio beside. Every proxy reaches it over pooled HTTP/1.1 keep-alive connections to
//! 10.82.0.10:8080 (nginx 1.22 speaks h2c only on a listener of its own, and neither
//! nginx nor HAProxy pools h2c upstream the same way; lattice's target group is `HTTP1`).
//! nginx 1.22's `http2` on a plain listener speaks h2c only (no HTTP/1.1), so h2c has
//! ports of its own on the backend and the peers; lattice's HTTP listener takes both.
//!
//! Protocols (the same command against each variant's address):
//! - `http1`: `wrk` (HTTP/1.1 keep-alive);
//! - `h2c`: `h2load` (HTTP/2 prior knowledge);
//! - `https-h1`: `wrk` over TLS (wrk sends the address as SNI, or none: the agent serves
//!   the service's certificate to a client that names no service);
//! - `https-h2`: `h2load` over TLS, ALPN h2, SNI the service's custom domain name
//!   (`--connect-to` the variant's address).
//!
//! Each protocol runs three times per round: a load of [`LOAD_CONNECTIONS`] connections
//! (requests/s, p50/p99, CPU per request); one connection with one request at a time
//! (the latency a request pays, for "added p50"); and the same with the load tool, the
//! forwarder and the backend pinned to one vCPU (a hand-off between the two vCPUs costs
//! about 45 us here, and how many a request takes is the scheduler's choice: only the
//! pinned one compares like with like, as `bench l4` does). CPU is the whole machine's busy time
//! from `/proc/stat` (the load tool and the backend are in it, the same for every column)
//! and the forwarding processes' own. Rounds interleave the variants; medians are shown.
//!
//! Never fails because a target is missed; fails only when the baseline or a peer cannot
//! be measured.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use lattice_tests::{Cgroup, Netns, Topology};
use serde::Serialize;

use super::{
    begin_round, fail_unless_measured,
    lattice::{self, AgentArgs},
    load::ClientSide,
    net::{self, Baseline, BenchNet, HAPROXY_ADDR, NGINX_ADDR, SERVER_ADDR},
    procs::{self, run_bounded, CpuMeter, Memory, Pinned, Proc},
    publish, record, report, round_order, sockmap, start_peer, WorkDir,
};
use crate::{shell, step};

const ROUNDS: usize = 3;
/// Seconds of each load.
pub(super) const LOAD_SECONDS: u32 = 3;
/// Connections of the throughput load (one client thread).
pub(super) const LOAD_CONNECTIONS: u32 = 16;
/// The backend's ports: HTTP/1.1, h2c, TLS (ALPN h2, http/1.1).
pub(super) const BACKEND_H1: u16 = 8080;
const BACKEND_H2C: u16 = 8081;
const BACKEND_TLS: u16 = 8443;
/// The peers' ports.
const PEER_H1: u16 = 80;
const PEER_H2C: u16 = 81;
const PEER_TLS: u16 = 443;
/// The service's custom domain name (and the certificate's name).
const DOMAIN: &str = "bench.lattice.internal";
pub(super) const BODY: &str = "lattice bench\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Proto {
    Http1,
    H2c,
    HttpsH1,
    HttpsH2,
}

const PROTOS: [Proto; 4] = [Proto::Http1, Proto::H2c, Proto::HttpsH1, Proto::HttpsH2];

impl Proto {
    pub(super) fn key(self) -> &'static str {
        match self {
            Proto::Http1 => "http1",
            Proto::H2c => "h2c",
            Proto::HttpsH1 => "https-h1",
            Proto::HttpsH2 => "https-h2",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Proto::HttpsH1 | Proto::HttpsH2)
    }

    pub(super) fn tool(self) -> &'static str {
        match self {
            Proto::Http1 | Proto::HttpsH1 => "wrk",
            Proto::H2c | Proto::HttpsH2 => "h2load",
        }
    }
}

/// Where a variant listens: address and the port per protocol; and the headers every
/// request to it carries (`Name: value`, as wrk's and h2load's `-H` take them).
#[derive(Clone, Copy, Debug)]
pub(super) struct Dest<'a> {
    pub addr: Ipv4Addr,
    pub h1: u16,
    pub h2c: u16,
    pub tls: u16,
    pub headers: &'a [String],
}

impl Dest<'_> {
    fn port(&self, p: Proto) -> u16 {
        match p {
            Proto::Http1 => self.h1,
            Proto::H2c => self.h2c,
            Proto::HttpsH1 | Proto::HttpsH2 => self.tls,
        }
    }
}

/// One load against one destination.
#[derive(Clone, Debug, Serialize)]
pub struct HttpLoad {
    pub tool: &'static str,
    pub connections: u32,
    pub requests: u64,
    /// Responses other than 2xx/3xx and socket errors.
    pub errors: u64,
    pub requests_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu: procs::Cpu,
    /// Requests/s divided by the machine's busy cores.
    pub requests_per_s_per_busy_core: f64,
    /// Busy CPU time of the machine per request, microseconds.
    pub cpu_us_per_request: f64,
    /// The forwarding process's CPU per request, microseconds.
    pub process_cpu_us_per_request: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Round {
    pub round: usize,
    /// `<proto>/load`, `<proto>/single` and `<proto>/pinned`.
    pub loads: BTreeMap<String, HttpLoad>,
    pub memory: Option<Memory>,
}

#[derive(Debug, Serialize)]
pub struct Variant {
    pub name: &'static str,
    pub role: &'static str,
    pub destination: Option<String>,
    pub not_available: Option<String>,
    pub summary: BTreeMap<String, report::Summary>,
    pub rounds: Vec<Round>,
    pub errors: Vec<String>,
}

impl Variant {
    pub(super) fn new(name: &'static str, role: &'static str) -> Variant {
        Variant {
            name,
            role,
            destination: None,
            not_available: None,
            summary: BTreeMap::new(),
            rounds: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub(super) fn summarise(&mut self) {
        for proto in PROTOS {
            for m in METRICS {
                let key = metric_key(proto, m);
                let mut values: Vec<f64> = self
                    .rounds
                    .iter()
                    .filter_map(|r| (m.get)(r.loads.get(&load_key(proto, m.shape))?))
                    .collect();
                if values.is_empty() {
                    continue;
                }
                values.sort_by(f64::total_cmp);
                let n = values.len();
                let median = if n % 2 == 1 {
                    values[n / 2]
                } else {
                    (values[n / 2 - 1] + values[n / 2]) / 2.0
                };
                self.summary.insert(
                    key,
                    report::Summary {
                        median,
                        min: values[0],
                        max: values[n - 1],
                        rounds: n,
                    },
                );
            }
        }
    }

    pub(super) fn value(&self, key: &str) -> Option<f64> {
        self.summary.get(key).map(|s| s.median)
    }
}

/// The loads of a round, per protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// [`LOAD_CONNECTIONS`] connections: throughput, p50/p99 under load, CPU.
    Load,
    /// One connection, one request at a time: the latency a request pays, unpinned.
    Single,
    /// The same with the load tool, the forwarder and the backend on one vCPU: on this
    /// VM a hand-off between the two vCPUs costs about 45 us and the scheduler decides
    /// how many a request takes, so only this one compares like with like (the kernel
    /// path's latency benches report both too).
    Pinned,
}

const SHAPES: [Shape; 3] = [Shape::Load, Shape::Single, Shape::Pinned];

impl Shape {
    fn connections(self) -> u32 {
        match self {
            Shape::Load => LOAD_CONNECTIONS,
            Shape::Single | Shape::Pinned => 1,
        }
    }
}

fn load_key(proto: Proto, shape: Shape) -> String {
    let shape = match shape {
        Shape::Load => "load",
        Shape::Single => "single",
        Shape::Pinned => "pinned",
    };
    format!("{}/{shape}", proto.key())
}

struct Metric {
    name: &'static str,
    label: &'static str,
    shape: Shape,
    decimals: usize,
    ratios: bool,
    get: fn(&HttpLoad) -> Option<f64>,
}

fn metric_key(proto: Proto, m: &Metric) -> String {
    format!("{}.{}", proto.key(), m.name)
}

const METRICS: &[Metric] = &[
    Metric {
        name: "requests_per_s",
        label: "requests/s",
        shape: Shape::Load,
        decimals: 0,
        ratios: true,
        get: |l| Some(l.requests_per_s),
    },
    Metric {
        name: "p50_us",
        label: "  p50, us",
        shape: Shape::Load,
        decimals: 0,
        ratios: true,
        get: |l| Some(l.p50_us),
    },
    Metric {
        name: "p99_us",
        label: "  p99, us",
        shape: Shape::Load,
        decimals: 0,
        ratios: true,
        get: |l| Some(l.p99_us),
    },
    Metric {
        name: "system_busy_cores",
        label: "  system CPU busy, cores",
        shape: Shape::Load,
        decimals: 2,
        ratios: false,
        get: |l| Some(l.cpu.system_busy_cores),
    },
    Metric {
        name: "process_cores",
        label: "  proxy/agent process CPU, cores",
        shape: Shape::Load,
        decimals: 2,
        ratios: false,
        get: |l| l.cpu.process_cores,
    },
    Metric {
        name: "cpu_us_per_request",
        label: "  system CPU per request, us",
        shape: Shape::Load,
        decimals: 1,
        ratios: true,
        get: |l| Some(l.cpu_us_per_request),
    },
    Metric {
        name: "process_cpu_us_per_request",
        label: "  proxy/agent CPU per request, us",
        shape: Shape::Load,
        decimals: 1,
        ratios: false,
        get: |l| l.process_cpu_us_per_request,
    },
    Metric {
        name: "requests_per_s_per_busy_core",
        label: "  requests/s per busy core",
        shape: Shape::Load,
        decimals: 0,
        ratios: true,
        get: |l| Some(l.requests_per_s_per_busy_core),
    },
    Metric {
        name: "single_p50_us",
        label: "1 connection, 1 request at a time: p50, us",
        shape: Shape::Single,
        decimals: 1,
        ratios: true,
        get: |l| Some(l.p50_us),
    },
    Metric {
        name: "single_p99_us",
        label: "  p99, us",
        shape: Shape::Single,
        decimals: 1,
        ratios: true,
        get: |l| Some(l.p99_us),
    },
    Metric {
        name: "single_requests_per_s",
        label: "  requests/s",
        shape: Shape::Single,
        decimals: 0,
        ratios: false,
        get: |l| Some(l.requests_per_s),
    },
    Metric {
        name: "pinned_p50_us",
        label: "1 connection, all on one vCPU: p50, us",
        shape: Shape::Pinned,
        decimals: 1,
        ratios: true,
        get: |l| Some(l.p50_us),
    },
    Metric {
        name: "pinned_p99_us",
        label: "  p99, us",
        shape: Shape::Pinned,
        decimals: 1,
        ratios: true,
        get: |l| Some(l.p99_us),
    },
];

const REFERENCES: [&str; 3] = ["direct", "nginx", "haproxy"];

#[derive(Debug, Serialize)]
pub struct Settings {
    pub rounds: usize,
    pub load_seconds: u32,
    pub load_connections: u32,
    pub load_threads: u32,
    pub peer_workers: u32,
    pub backend: String,
    pub upstream_protocol: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Ratio {
    pub metric: String,
    pub variant: &'static str,
    pub reference: &'static str,
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub timestamp: String,
    pub machine: report::Machine,
    pub settings: Settings,
    pub variants: Vec<Variant>,
    pub ratios: Vec<Ratio>,
    pub targets: Vec<report::TargetResult>,
    pub duration_s: f64,
}

pub fn l7(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    step("bench l7: building the release agent (cargo build --release -p lattice-agent)");
    let agent_bin = lattice::build(root);
    if let Err(e) = &agent_bin {
        println!("    lattice: not available: {e:#}");
    }

    step("bench l7: namespaces (client, server, proxy), certificate, backend");
    let mut topo = Topology::new()?;
    let net = BenchNet::build(&mut topo)?;
    let cgroups = BenchCgroups {
        client: topo.add_cgroup("client")?,
        server: topo.add_cgroup("server")?,
        agent: topo.add_cgroup("agent")?,
    };
    let bpffs_root = topo.bpffs_root("bench")?;
    let work = WorkDir::new(topo.tag().as_str())?;
    let certs = Certs::make(&work.path)?;
    let mut backend =
        backend(&net, Some(&cgroups.server), &work.path, &certs).context("starting the backend")?;
    // Every variant's load tool runs in the client cgroup; programs are attached to
    // the cgroups only while the accelerated agent runs.
    let client = ClientSide::tool(&net.client, Some(&cgroups.client));
    println!(
        "    client {}, server {} (backend nginx at {SERVER_ADDR}:{BACKEND_H1}/{BACKEND_H2C}/{BACKEND_TLS}), proxy {}",
        net.client.name(),
        net.server.name(),
        net.proxy.name()
    );
    let mut haproxy = start_peer("haproxy", haproxy(&net, &work.path, &certs));
    let mut nginx = start_peer("nginx", nginx(&net, &work.path, &certs));
    let mut agent_bin = agent_bin.map_err(|e| format!("{e:#}"));

    let mut variants: Vec<Variant> = VARIANTS
        .iter()
        .map(|&(name, role)| Variant::new(name, role))
        .collect();
    for (name, peer) in [("haproxy", &haproxy), ("nginx", &nginx)] {
        if let Err(e) = peer {
            variant_mut(&mut variants, name).errors.push(e.clone());
        }
    }
    let mut background = Vec::new();
    for round in 1..=ROUNDS {
        let order = round_order(round, VARIANTS.map(|(name, _)| name));
        begin_round(
            "bench l7: round",
            round,
            ROUNDS,
            &order,
            &mut background,
            &mut backend,
        )?;
        let backend_pids = procs::tree(backend.pid());
        for name in order {
            let v = variant_mut(&mut variants, name);
            match name {
                "direct" => {
                    net.add_baseline_routes(Baseline::Direct)?;
                    let dest = Dest {
                        addr: SERVER_ADDR,
                        h1: BACKEND_H1,
                        h2c: BACKEND_H2C,
                        tls: BACKEND_TLS,
                        headers: &[],
                    };
                    run_round(
                        client,
                        &work.path,
                        v,
                        round,
                        dest,
                        None,
                        &backend_pids,
                        &PROTOS,
                        LOAD_SECONDS,
                    );
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
                        Ok(()) => {
                            let dest = Dest {
                                addr,
                                h1: PEER_H1,
                                h2c: PEER_H2C,
                                tls: PEER_TLS,
                                headers: &[],
                            };
                            run_round(
                                client,
                                &work.path,
                                v,
                                round,
                                dest,
                                Some(proc),
                                &backend_pids,
                                &PROTOS,
                                LOAD_SECONDS,
                            );
                        }
                        Err(e) => {
                            v.errors.push(format!("round {round}: {e:#}"));
                            *peer = Err(format!("{e:#}"));
                        }
                    }
                }
                _ => {
                    let Ok(bin) = agent_bin.clone() else { continue };
                    let bin = bin.as_path();
                    let accelerated = name == LATTICE;
                    let site = LatticeSite {
                        bin,
                        net: &net,
                        cgroups: &cgroups,
                        bpffs_root: &bpffs_root,
                        work: &work.path,
                        certs: &certs,
                    };
                    match start_lattice(&site, accelerated) {
                        Ok((mut agent, vip)) => {
                            println!("    {name}: agent ready; service bench-http at {vip}");
                            let before = accelerated
                                .then(|| sockmap::counters(bin, &bpffs_root))
                                .transpose();
                            let dest = Dest {
                                addr: vip,
                                h1: 80,
                                h2c: 80,
                                tls: 443,
                                headers: &[],
                            };
                            run_round(
                                client,
                                &work.path,
                                v,
                                round,
                                dest,
                                Some(&agent),
                                &backend_pids,
                                &PROTOS,
                                LOAD_SECONDS,
                            );
                            if accelerated {
                                let after = sockmap::counters(bin, &bpffs_root);
                                match acceleration(before, after) {
                                    Ok(a) => println!("    {name}: {a}"),
                                    Err(e) => {
                                        // Numbers of an agent whose hops were not
                                        // accelerated would pass for lattice's.
                                        v.rounds.pop();
                                        println!("    {name}: round dropped: {e:#}");
                                        v.errors.push(format!("round {round} dropped: {e:#}"));
                                    }
                                }
                            }
                            if let Err(e) = agent.check_running() {
                                v.errors.push(format!("round {round}: {e:#}"));
                            }
                            println!("    {name}: agent {}", agent.stop());
                        }
                        Err(e) if round == 1 => {
                            println!("    {name}: not available: {e:#}");
                            agent_bin = Err(format!("{e:#}"));
                        }
                        Err(e) => {
                            println!("    {name}: agent did not start: {e:#}");
                            v.errors.push(format!("round {round}: {e:#}"));
                        }
                    }
                    // The programs detach (also those of an agent that did not get
                    // ready), so the other variants run without them.
                    sockmap::cleanup(bin, &bpffs_root);
                }
            }
        }
    }
    for (name, peer) in [("haproxy", &mut haproxy), ("nginx", &mut nginx)] {
        if let Ok(proc) = peer {
            println!("    {name}: {}", proc.stop());
        }
    }
    println!("    backend: {}", backend.stop());
    for v in &mut variants {
        if v.role == "lattice" {
            v.not_available = agent_bin.as_ref().err().cloned();
        }
        v.summarise();
    }

    let (file_stamp, stamp) = report::timestamps();
    let report = Report {
        benchmark: "l7",
        timestamp: stamp,
        machine: report::Machine::here(background),
        settings: Settings {
            rounds: ROUNDS,
            load_seconds: LOAD_SECONDS,
            load_connections: LOAD_CONNECTIONS,
            load_threads: 1,
            peer_workers: 1,
            backend: format!(
                "nginx, 1 worker, GET / -> 200 with a {}-byte body",
                BODY.len()
            ),
            upstream_protocol: "HTTP/1.1 keep-alive to 10.82.0.10:8080 for every proxy",
        },
        ratios: ratios(&variants, &PROTOS, &REFERENCES),
        targets: targets(&variants),
        variants,
        duration_s: started.elapsed().as_secs_f64(),
    };
    publish(root, "l7", &file_stamp, &report.render(), |path| {
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

pub(super) fn variant_mut<'a>(variants: &'a mut [Variant], name: &str) -> &'a mut Variant {
    variants
        .iter_mut()
        .find(|v| v.name == name)
        .expect("every variant is in the list")
}

/// Each of `protos` once under load (for `load_seconds`), then with a single
/// connection (for [`LOAD_SECONDS`]) unpinned and pinned (see [`Shape`]). `backend`
/// are the processes that answer besides the forwarder, pinned with it.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_round(
    client: ClientSide<'_>,
    work: &Path,
    v: &mut Variant,
    round: usize,
    dest: Dest<'_>,
    forwarder: Option<&Proc>,
    backend: &[u32],
    protos: &[Proto],
    load_seconds: u32,
) {
    let name = v.name;
    v.destination.get_or_insert_with(|| {
        format!(
            "{}: {} (HTTP/1.1), {} (h2c), {} (TLS)",
            dest.addr, dest.h1, dest.h2c, dest.tls
        )
    });
    let cost: Vec<u32> = forwarder.map(Proc::pid).into_iter().collect();
    let serving: Vec<u32> = backend
        .iter()
        .copied()
        .chain(forwarder.map(|f| procs::tree(f.pid())).unwrap_or_default())
        .collect();
    // The last vCPU, as `bench l4`'s pinned latency.
    let pin_cpu = procs::cpus().saturating_sub(1);
    let mut r = Round {
        round,
        ..Round::default()
    };
    for &proto in protos {
        for shape in SHAPES {
            let conns = shape.connections();
            let pinned = (shape == Shape::Pinned).then_some(pin_cpu);
            let label = format!(
                "{name}-{round}-{}-{conns}{}",
                proto.key(),
                if pinned.is_some() { "-pinned" } else { "" }
            );
            let what = format!(
                "{} {} x{conns}{}",
                proto.key(),
                proto.tool(),
                if pinned.is_some() { " pinned" } else { "" }
            );
            let seconds = match shape {
                Shape::Load => load_seconds,
                Shape::Single | Shape::Pinned => LOAD_SECONDS,
            };
            let load = Load {
                proto,
                conns,
                seconds,
                pinned,
            };
            let result = match pinned.map(|cpu| Pinned::new(&serving, cpu)) {
                Some(Err(e)) => Err(e.context("pinning the serving processes")),
                pinning => {
                    let result = http_load(client, load, dest, &cost, work, &label);
                    drop(pinning);
                    result
                }
            };
            if let Some(l) = record(&mut v.errors, name, &what, result) {
                println!(
                    "    {name:8} {what:22} {:>8.0} req/s, p50 {:>7.1} us, p99 {:>7.1} us, {:.2} busy cores, {:.1} us CPU/req{}",
                    l.requests_per_s,
                    l.p50_us,
                    l.p99_us,
                    l.cpu.system_busy_cores,
                    l.cpu_us_per_request,
                    if l.errors > 0 { format!(", {} errors", l.errors) } else { String::new() }
                );
                r.loads.insert(load_key(proto, shape), l);
            }
        }
    }
    r.memory = forwarder.and_then(|f| Memory::of_tree(f.pid()));
    v.rounds.push(r);
}

/// What one load sends: which protocol, over how many connections, for how long, and
/// the vCPU the load tool runs on when pinned.
#[derive(Debug, Clone, Copy)]
struct Load {
    proto: Proto,
    conns: u32,
    seconds: u32,
    pinned: Option<usize>,
}

/// One bounded load from the client side.
fn http_load(
    client: ClientSide<'_>,
    load: Load,
    dest: Dest<'_>,
    cost: &[u32],
    work: &Path,
    label: &str,
) -> anyhow::Result<HttpLoad> {
    let Load {
        proto,
        conns,
        seconds,
        pinned,
    } = load;
    let port = dest.port(proto);
    let addr = dest.addr;
    let log = work.join(format!("h2load-{label}.log"));
    let mut cmd = match pinned {
        Some(cpu) => {
            let mut cmd = client.command("taskset");
            cmd.args(["-c", &cpu.to_string(), proto.tool()]);
            cmd
        }
        None => client.command(proto.tool()),
    };
    for header in dest.headers {
        cmd.args(["-H", header]);
    }
    match proto {
        Proto::Http1 | Proto::HttpsH1 => {
            let scheme = if proto.tls() { "https" } else { "http" };
            cmd.args(["-t", "1", "-c", &conns.to_string()])
                .args(["-d", &format!("{seconds}s"), "--timeout", "5s"])
                .arg("--latency")
                .arg(format!("{scheme}://{addr}:{port}/"));
        }
        Proto::H2c => {
            cmd.args(["-t", "1", "-c", &conns.to_string(), "-m", "1"])
                .args(["-D", &seconds.to_string(), "--warm-up-time", "200ms"])
                .arg(format!("--log-file={}", log.display()))
                .arg(format!("http://{addr}:{port}/"));
        }
        Proto::HttpsH2 => {
            cmd.args(["-t", "1", "-c", &conns.to_string(), "-m", "1"])
                .args(["-D", &seconds.to_string(), "--warm-up-time", "200ms"])
                .args(["--npn-list", "h2"])
                .arg(format!("--connect-to={addr}:{port}"))
                .arg(format!("--log-file={}", log.display()))
                .arg(format!("https://{DOMAIN}:{port}/"));
        }
    }
    let meter = CpuMeter::start(cost)?;
    let ran = run_bounded(
        cmd,
        Duration::from_secs(u64::from(seconds) + 20),
        work,
        &format!("{}-{label}", proto.tool()),
    )?;
    let cpu = meter.finish()?;
    let text = ran.all_output();
    let tail = || text.lines().rev().take(14).collect::<Vec<_>>().join("\n");
    let parsed = match proto.tool() {
        "wrk" => parse_wrk(&text),
        _ => parse_h2load(&text, &log),
    }
    .with_context(|| {
        format!(
            "{} to {addr}:{port} ({}): unexpected output:\n{}",
            proto.tool(),
            ran.status,
            tail()
        )
    })?;
    if parsed.requests == 0 {
        bail!(
            "{} to {addr}:{port}: no request completed:\n{}",
            proto.tool(),
            tail()
        );
    }
    if parsed.errors * 100 > parsed.requests {
        bail!(
            "{} to {addr}:{port}: {} of {} requests failed:\n{}",
            proto.tool(),
            parsed.errors,
            parsed.requests,
            tail()
        );
    }
    let rps = parsed.requests_per_s;
    Ok(HttpLoad {
        tool: proto.tool(),
        connections: conns,
        requests: parsed.requests,
        errors: parsed.errors,
        requests_per_s: rps,
        p50_us: parsed.p50_us,
        p99_us: parsed.p99_us,
        requests_per_s_per_busy_core: rps / cpu.system_busy_cores.max(1e-9),
        cpu_us_per_request: cpu.system_busy_cores / rps.max(1e-9) * 1e6,
        process_cpu_us_per_request: cpu.process_cores.map(|c| c / rps.max(1e-9) * 1e6),
        cpu,
    })
}

struct Parsed {
    requests: u64,
    errors: u64,
    requests_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// wrk's `--latency` summary.
fn parse_wrk(text: &str) -> anyhow::Result<Parsed> {
    let percentile = |p: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(p))
            .and_then(|rest| duration_us(rest.trim()))
            .with_context(|| format!("no latency percentile {p}"))
    };
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .context("no `N requests in` line")?;
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|r| r.trim().parse().ok())
        .context("no Requests/sec")?;
    let mut errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|r| r.trim().parse::<u64>().ok())
        .unwrap_or(0);
    // Socket errors: connect 0, read 0, write 0, timeout 0
    if let Some(line) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
    {
        errors += line
            .split(',')
            .filter_map(|f| f.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(Parsed {
        requests,
        errors,
        requests_per_s: rps,
        p50_us: percentile("50%")?,
        p99_us: percentile("99%")?,
    })
}

/// `50.00us`, `1.32ms`, `2.00s` in microseconds.
fn duration_us(text: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    Some(num.trim().parse::<f64>().ok()? * scale)
}

/// h2load's summary, with percentiles from its per-request log (start time, status,
/// duration in microseconds).
fn parse_h2load(text: &str, log: &Path) -> anyhow::Result<Parsed> {
    // finished in 3.00s, 20434.33 req/s, 1.20MB/s
    let rps = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1)?.strip_suffix(" req/s")?.parse().ok())
        .context("no `finished in .., N req/s` line")?;
    // requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .context("no requests: line")?;
    let count = |what: &str| {
        line.split(',')
            .find(|f| f.trim().ends_with(what))
            .and_then(|f| f.split_whitespace().rev().nth(1)?.parse::<u64>().ok())
            .with_context(|| format!("no `N {what}` in {line}"))
    };
    let done = count("done")?;
    let succeeded = count("succeeded")?;
    let errors = done.saturating_sub(succeeded) + count("errored")? + count("timeout")?;
    let log_text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut times: Vec<f64> = log_text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let status: u32 = f.get(1)?.parse().ok()?;
            (200..400)
                .contains(&status)
                .then(|| f.get(2)?.trim().parse().ok())?
        })
        .collect();
    if times.is_empty() {
        bail!(
            "the per-request log {} has no successful request",
            log.display()
        );
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    Ok(Parsed {
        requests: succeeded,
        errors,
        requests_per_s: rps,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    })
}

/// The certificate of the service's custom domain name, for every TLS endpoint.
pub(super) struct Certs {
    cert: PathBuf,
    key: PathBuf,
    /// Certificate and key in one file (HAProxy's `crt`).
    combined: PathBuf,
}

impl Certs {
    pub(super) fn make(work: &Path) -> anyhow::Result<Certs> {
        let certs = Certs {
            cert: work.join("bench.pem"),
            key: work.join("bench.key"),
            combined: work.join("bench-combined.pem"),
        };
        shell::output(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .args(["-nodes", "-days", "2", "-subj", &format!("/CN={DOMAIN}")])
                .args(["-addext", &format!("subjectAltName=DNS:{DOMAIN}")])
                .arg("-keyout")
                .arg(&certs.key)
                .arg("-out")
                .arg(&certs.cert),
        )
        .context("making the benchmark's certificate with openssl")?;
        let combined = fs::read_to_string(&certs.cert)? + &fs::read_to_string(&certs.key)?;
        fs::write(&certs.combined, combined)?;
        Ok(certs)
    }
}

/// Runs nginx in `ns` with `http` as its http block, 1 worker; waits for `probe`.
fn run_nginx(
    ns: &Netns,
    cgroup: Option<&Cgroup>,
    work: &Path,
    name: &str,
    http: &str,
    probe: SocketAddrV4,
) -> anyhow::Result<Proc> {
    let conf = nginx_conf(work, name, http, None);
    start_nginx(ns, cgroup, work, name, &conf, probe).map(|(proc, _)| proc)
}

/// nginx's whole configuration for instance `name`: 1 worker, its pid file and error
/// log under `work`, `http` as the http block (access log off) and, when given,
/// `stream` as the stream block (its module loaded).
pub(super) fn nginx_conf(work: &Path, name: &str, http: &str, stream: Option<&str>) -> String {
    let (module, stream) = match stream {
        Some(block) => (
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n",
            format!("stream {{\n{block}}}\n"),
        ),
        None => ("", String::new()),
    };
    format!(
        "{module}daemon off;\n\
         master_process on;\n\
         worker_processes 1;\n\
         worker_rlimit_nofile 16000;\n\
         pid {pid};\n\
         error_log {log} warn;\n\
         events {{ worker_connections 4000; }}\n\
         http {{\n    access_log off;\n{http}}}\n{stream}",
        pid = nginx_pid_path(work, name).display(),
        log = work.join(format!("{name}-error.log")).display(),
    )
}

/// Where nginx instance `name` reads its configuration (rewrite it, then SIGHUP the
/// master to reload).
pub(super) fn nginx_conf_path(work: &Path, name: &str) -> PathBuf {
    work.join(format!("{name}.conf"))
}

/// Where nginx instance `name` writes its master's pid.
pub(super) fn nginx_pid_path(work: &Path, name: &str) -> PathBuf {
    work.join(format!("{name}.pid"))
}

/// Writes `conf` to [`nginx_conf_path`], has `nginx -t` check it, runs nginx in `ns`
/// and waits until `probe` accepts connections. Returns nginx and the time from
/// starting it to `probe` accepting (polled every 50 ms).
pub(super) fn start_nginx(
    ns: &Netns,
    cgroup: Option<&Cgroup>,
    work: &Path,
    name: &str,
    conf: &str,
    probe: SocketAddrV4,
) -> anyhow::Result<(Proc, Duration)> {
    let path = nginx_conf_path(work, name);
    fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
    let path_s = path.to_string_lossy().into_owned();
    let errors = work
        .join(format!("{name}-error.log"))
        .to_string_lossy()
        .into_owned();
    let prefix = work.to_string_lossy().into_owned();
    let args = ["-c", &path_s, "-e", &errors, "-p", &prefix];
    ns.exec("nginx", &[&["-t", "-q"], &args[..]].concat())
        .with_context(|| format!("nginx refused the configuration {path_s}"))?;
    let mut cmd = match cgroup {
        Some(cgroup) => cgroup.command_in(ns, "nginx"),
        None => ns.command("nginx"),
    };
    cmd.args(args);
    let spawned = Instant::now();
    let mut proc = Proc::spawn(name, cmd, &work.join(format!("{name}.log")))?;
    let up = net::wait_tcp(ns, probe, Duration::from_secs(10));
    let up_after = spawned.elapsed();
    proc.check_running()?;
    up?;
    Ok((proc, up_after))
}

/// The backend: nginx in the server namespace (and in `cgroup`, when given), 1 worker,
/// a fixed answer on HTTP/1.1, h2c and TLS ports. Keep-alive without a request limit:
/// it is the fixture, not a peer.
pub(super) fn backend(
    net: &BenchNet,
    cgroup: Option<&Cgroup>,
    work: &Path,
    certs: &Certs,
) -> anyhow::Result<Proc> {
    let http = format!(
        "    keepalive_requests 10000000;\n\
         \x20   server {{\n\
         \x20       listen {SERVER_ADDR}:{BACKEND_H1};\n\
         \x20       listen {SERVER_ADDR}:{BACKEND_H2C} http2;\n\
         \x20       listen {SERVER_ADDR}:{BACKEND_TLS} ssl http2;\n\
         \x20       ssl_certificate {cert};\n\
         \x20       ssl_certificate_key {key};\n\
         \x20       location / {{ default_type text/plain; return 200 \"{body}\"; }}\n\
         \x20   }}\n",
        cert = certs.cert.display(),
        key = certs.key.display(),
        body = BODY.escape_default(),
    );
    run_nginx(
        &net.server,
        cgroup,
        work,
        "backend",
        &http,
        SocketAddrV4::new(SERVER_ADDR, BACKEND_H1),
    )
}

/// nginx as the HTTP peer: the packages' defaults plus an upstream with keep-alive, and
/// no limit on requests per client connection: its default (1000) ends HTTP/2
/// connections with GOAWAY, and h2load does not reconnect (nginx then measures a few
/// thousand requests/s and none at all with one connection).
fn nginx(net: &BenchNet, work: &Path, certs: &Certs) -> anyhow::Result<Proc> {
    let http = format!(
        "    keepalive_requests 10000000;\n\
         \x20   upstream backend {{ server {SERVER_ADDR}:{BACKEND_H1}; keepalive 32; }}\n\
         \x20   server {{\n\
         \x20       listen {NGINX_ADDR}:{PEER_H1};\n\
         \x20       listen {NGINX_ADDR}:{PEER_H2C} http2;\n\
         \x20       listen {NGINX_ADDR}:{PEER_TLS} ssl http2;\n\
         \x20       ssl_certificate {cert};\n\
         \x20       ssl_certificate_key {key};\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://backend;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n\
         \x20       }}\n\
         \x20   }}\n",
        cert = certs.cert.display(),
        key = certs.key.display(),
    );
    run_nginx(
        &net.proxy,
        None,
        work,
        "nginx",
        &http,
        SocketAddrV4::new(NGINX_ADDR, PEER_H1),
    )
}

/// HAProxy as the HTTP peer: `mode http`, 1 thread, keep-alive both sides (its default).
fn haproxy(net: &BenchNet, work: &Path, certs: &Certs) -> anyhow::Result<Proc> {
    let cfg = format!(
        "global\n\
         \x20   nbthread 1\n\
         \x20   maxconn 4000\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         frontend web\n\
         \x20   bind {HAPROXY_ADDR}:{PEER_H1}\n\
         \x20   bind {HAPROXY_ADDR}:{PEER_H2C} proto h2\n\
         \x20   bind {HAPROXY_ADDR}:{PEER_TLS} ssl crt {crt} alpn h2,http/1.1\n\
         \x20   default_backend backend\n\
         backend backend\n\
         \x20   server s1 {SERVER_ADDR}:{BACKEND_H1}\n",
        crt = certs.combined.display(),
    );
    let path = work.join("haproxy-l7.cfg");
    fs::write(&path, cfg)?;
    let path_s = path.to_string_lossy().into_owned();
    net.proxy
        .exec("haproxy", &["-c", "-q", "-f", &path_s])
        .context("haproxy refused the benchmark's configuration")?;
    let mut cmd = net.proxy.command("haproxy");
    cmd.args(["-db", "-f", &path_s]);
    let mut proc = Proc::spawn("haproxy", cmd, &work.join("haproxy.log"))?;
    let up = net::wait_tcp(
        &net.client,
        SocketAddrV4::new(HAPROXY_ADDR, PEER_H1),
        Duration::from_secs(10),
    );
    proc.check_running()?;
    up?;
    Ok(proc)
}

/// The desired state: the client's and the server's VPCs, a network (auth NONE)
/// associating the client's VPC with service `bench-http` (see [`http_service`]).
fn lattice_config(net: &BenchNet, certs: &Certs) -> String {
    lattice::preamble(net, &["bench-http"]) + &http_service("bench-http", "authType: NONE", certs)
}

/// The `services:` entry of service `name` (account 111111111111, `auth` its auth lines,
/// each indented by 4 after the first) with HTTP (80) and HTTPS (443) listeners
/// forwarding to the backend over HTTP/1.1, then the `targetGroups:` section with the
/// backend, health checks off.
pub(super) fn http_service(name: &str, auth: &str, certs: &Certs) -> String {
    let forward = "defaultAction:\n          forward:\n            targetGroups:\n              \
                   - { targetGroupIdentifier: bench-backend, weight: 100 }";
    format!(
        r#"  - name: {name}
    account: "111111111111"
    {auth}
    customDomainName: {DOMAIN}
    certificate:
      certFile: {cert}
      keyFile: {key}
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        {forward}
      - name: https
        protocol: HTTPS
        port: 443
        {forward}
targetGroups:
  - name: bench-backend
    type: IP
    config:
      vpcIdentifier: vpc-server
      protocol: HTTP
      protocolVersion: HTTP1
      port: {BACKEND_H1}
      healthCheck:
        enabled: false
    targets:
      - {{ id: {SERVER_ADDR}, port: {BACKEND_H1} }}
"#,
        cert = certs.cert.display(),
        key = certs.key.display(),
    )
}

/// The variants (name, role), in the order of the tables.
const VARIANTS: [(&str, &str); 5] = [
    ("direct", "baseline"),
    ("nginx", "peer"),
    ("haproxy", "peer"),
    (LATTICE, "lattice"),
    (LATTICE_TCP, "lattice"),
];

/// The variant of lattice as it is deployed: the load tool and the backend run in
/// cgroups the agent accelerates (`--sockmap-cgroup`), the agent in a cgroup of its
/// own, so both hops (client to agent in the client namespace, agent to backend in the
/// server namespace) go socket to socket through sk_msg.
const LATTICE: &str = "lattice";
/// The same agent with `--no-sockmap`: every hop through TCP, as the peers' hops go.
const LATTICE_TCP: &str = "lattice-tcp";

/// The benchmark's cgroups: the load tools', the backend's and the agent's.
struct BenchCgroups {
    client: Cgroup,
    server: Cgroup,
    agent: Cgroup,
}

/// Everything starting the agent needs.
struct LatticeSite<'a> {
    bin: &'a Path,
    net: &'a BenchNet,
    cgroups: &'a BenchCgroups,
    bpffs_root: &'a Path,
    work: &'a Path,
    certs: &'a Certs,
}

/// Starts the agent in its cgroup, with socket acceleration for the client and server
/// cgroups or without any; waits until the service answers.
fn start_lattice(site: &LatticeSite<'_>, accelerated: bool) -> anyhow::Result<(Proc, Ipv4Addr)> {
    let client = site.cgroups.client.relative_path();
    let server = site.cgroups.server.relative_path();
    // One runtime thread, as nginx and HAProxy run one worker here: like for like.
    let mut run = vec!["--proxy-threads", "1"];
    if accelerated {
        run.extend(["--sockmap-cgroup", &client, "--sockmap-cgroup", &server]);
    } else {
        run.push("--no-sockmap");
    }
    let started = lattice::start_agent(
        site.bin,
        site.bpffs_root,
        site.work,
        "lattice-bench-l7.yaml",
        &lattice_config(site.net, site.certs),
        AgentArgs {
            run: &run,
            cgroup: Some(&site.cgroups.agent),
            ..AgentArgs::default()
        },
    )?;
    let mut agent = started.agent;
    let vip = lattice::wait_service(
        site.net,
        &mut agent,
        &started.shown,
        "bench-http",
        &[80, 443],
    )?;
    Ok((agent, vip))
}

/// What the acceleration counters (`lattice-agent maps`) moved by during one round of
/// the accelerated variant.
struct Acceleration {
    connections: u64,
    redirected_bytes: u64,
    normal_bytes: u64,
}

impl std::fmt::Display for Acceleration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections accelerated, {} bytes socket to socket, {} bytes through TCP",
            self.connections, self.redirected_bytes, self.normal_bytes
        )
    }
}

/// The counters' movement between `before` and `after`; an error when no byte went
/// socket to socket, so that a variant called accelerated never silently was not.
fn acceleration(
    before: anyhow::Result<Option<serde_json::Value>>,
    after: anyhow::Result<serde_json::Value>,
) -> anyhow::Result<Acceleration> {
    let before = before?.context("no acceleration counters before the round")?;
    let after = after?;
    let delta = |key: &str| {
        after[key]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before[key].as_u64().unwrap_or(0))
    };
    let a = Acceleration {
        connections: delta("connectionsAccelerated"),
        redirected_bytes: delta("redirectedBytes"),
        normal_bytes: delta("normalBytes"),
    };
    if a.redirected_bytes == 0 {
        bail!("socket acceleration did not engage: {a}");
    }
    Ok(a)
}

pub(super) fn ratio(
    variants: &[Variant],
    key: &str,
    variant: &str,
    reference: &str,
) -> Option<f64> {
    let a = variants.iter().find(|v| v.name == variant)?.value(key)?;
    let b = variants.iter().find(|v| v.name == reference)?.value(key)?;
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// Every metric's ratio of each variant to each of `references`, for `protos`.
pub(super) fn ratios(
    variants: &[Variant],
    protos: &[Proto],
    references: &[&'static str],
) -> Vec<Ratio> {
    let mut out = Vec::new();
    for &proto in protos {
        for m in METRICS {
            let key = metric_key(proto, m);
            for v in variants {
                for &reference in references {
                    if v.name == reference {
                        continue;
                    }
                    if let Some(r) = ratio(variants, &key, v.name, reference) {
                        out.push(Ratio {
                            metric: key.clone(),
                            variant: v.name,
                            reference,
                            ratio: r,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The issue's targets, per protocol.
fn targets(variants: &[Variant]) -> Vec<report::TargetResult> {
    let find = |name: &str| variants.iter().find(|v| v.name == name);
    let why_not = || match find("lattice").and_then(|l| l.not_available.as_ref()) {
        Some(_) => "lattice not available (the reason is above)".to_owned(),
        None => "not measured (see the errors above)".to_owned(),
    };
    let spread = |name: &str, key: &str, d: usize| {
        let s = find(name)?.summary.get(key)?;
        Some(format!(
            "{name} {:.d$} ({:.d$}-{:.d$})",
            s.median, s.min, s.max
        ))
    };
    // The same ratio without acceleration, shown beside the judged one.
    let tcp_beside = |key: &str, peer: &str| match ratio(variants, key, LATTICE_TCP, peer) {
        Some(r) => format!("; {LATTICE_TCP} (every hop through TCP) {r:.2}x"),
        None => String::new(),
    };
    let mut out = Vec::new();
    // Target names must be 'static: leak the few strings made per run.
    let name = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    for proto in PROTOS {
        let p = proto.key();
        for peer in ["nginx", "haproxy"] {
            let key = format!("{p}.requests_per_s_per_busy_core");
            let value = ratio(variants, &key, "lattice", peer);
            out.push(report::TargetResult {
                target: name(format!(
                    "{p}: lattice requests/s per busy core >= 1.2x {peer}'s"
                )),
                value,
                limit: 1.2,
                met: value.map(|v| v >= 1.2),
                detail: match (value, spread("lattice", &key, 0), spread(peer, &key, 0)) {
                    (Some(v), Some(a), Some(b)) => {
                        format!("{v:.2}x: {a} vs {b}{}", tcp_beside(&key, peer))
                    }
                    _ => why_not(),
                },
            });
        }
        for peer in ["nginx", "haproxy"] {
            let key = format!("{p}.p99_us");
            let value = ratio(variants, &key, "lattice", peer);
            out.push(report::TargetResult {
                target: name(format!(
                    "{p}: lattice p99 <= {peer}'s ({LOAD_CONNECTIONS} connections)"
                )),
                value,
                limit: 1.0,
                met: value.map(|v| v <= 1.0),
                detail: match (value, spread("lattice", &key, 0), spread(peer, &key, 0)) {
                    (Some(v), Some(a), Some(b)) => {
                        format!("{v:.2}x: {a} us vs {b} us{}", tcp_beside(&key, peer))
                    }
                    _ => why_not(),
                },
            });
        }
        let key = format!("{p}.single_p50_us");
        let added_to = |key: &str| {
            find("lattice")
                .and_then(|l| l.value(key))
                .zip(find("direct").and_then(|d| d.value(key)))
                .map(|(l, d)| l - d)
        };
        let added = added_to(&key);
        let pinned_key = format!("{p}.pinned_p50_us");
        let pinned = match (
            added_to(&pinned_key),
            spread("lattice", &pinned_key, 1),
            spread("direct", &pinned_key, 1),
        ) {
            (Some(a), Some(l), Some(d)) => {
                format!("; all on one vCPU: +{a:.1} us: {l} us vs {d} us")
            }
            _ => String::new(),
        };
        out.push(report::TargetResult {
            target: name(format!(
                "{p}: lattice adds < 100 us to p50 (1 connection, vs direct)"
            )),
            value: added,
            limit: 100.0,
            met: added.map(|a| a < 100.0),
            detail: match (added, spread("lattice", &key, 1), spread("direct", &key, 1)) {
                (Some(a), Some(l), Some(d)) => format!("+{a:.1} us: {l} us vs {d} us{pinned}"),
                _ => why_not(),
            },
        });
    }
    out
}

/// Per protocol of `protos`: a table with a column per variant, a row per metric, and a
/// row of ratios per reference of `references` under the metrics that have them.
pub(super) fn render_tables(
    out: &mut String,
    variants: &[Variant],
    protos: &[Proto],
    references: &[&str],
) {
    const LABEL: usize = 46;
    // Wide enough for every variant's name, and a space before it.
    let col = variants
        .iter()
        .map(|v| v.name.len() + 1)
        .fold(12, usize::max);
    for &proto in protos {
        let _ = write!(
            out,
            "\n{:LABEL$}",
            format!("{} ({})", proto.key(), proto.tool())
        );
        for v in variants {
            let _ = write!(out, "{:>col$}", v.name);
        }
        out.push('\n');
        for m in METRICS {
            let key = metric_key(proto, m);
            let values: Vec<Option<f64>> = variants.iter().map(|v| v.value(&key)).collect();
            if values.iter().all(Option::is_none) {
                continue;
            }
            let _ = write!(out, "{:LABEL$}", m.label);
            for v in &values {
                let _ = write!(out, "{:>col$}", report::cell(*v, m.decimals));
            }
            out.push('\n');
            if !m.ratios {
                continue;
            }
            for &reference in references {
                let ratios: Vec<Option<f64>> = variants
                    .iter()
                    .map(|v| ratio(variants, &key, v.name, reference))
                    .collect();
                if ratios.iter().all(Option::is_none) {
                    continue;
                }
                let _ = write!(out, "{:LABEL$}", format!("      x {reference}"));
                for (v, r) in variants.iter().zip(&ratios) {
                    let text = if v.name == reference {
                        "-".to_owned()
                    } else {
                        r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}x"))
                    };
                    let _ = write!(out, "{text:>col$}");
                }
                out.push('\n');
            }
        }
    }
}

/// A line per variant that was not available and per measurement that failed.
pub(super) fn render_problems(out: &mut String, variants: &[Variant]) {
    out.push('\n');
    for v in variants {
        if let Some(why) = &v.not_available {
            let _ = writeln!(out, "{}: not available: {why}", v.name);
        }
        for e in &v.errors {
            let _ = writeln!(out, "{}: measurement failed: {e}", v.name);
        }
    }
}

impl Report {
    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "medians of {} rounds; load: {LOAD_CONNECTIONS} connections, 1 client thread, \
             {LOAD_SECONDS} s; ratios are column / reference; lower is better for latency \
             and CPU",
            self.settings.rounds
        );
        let _ = writeln!(
            out,
            "every proxy reaches the backend (nginx, 1 worker) over HTTP/1.1 keep-alive; \
             system CPU includes the load tool and the backend"
        );
        render_tables(&mut out, &self.variants, &PROTOS, &REFERENCES);
        render_problems(&mut out, &self.variants);
        report::render_targets(&mut out, &self.targets);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceleration_is_the_counters_movement_and_must_hand_bytes_across() {
        let counters = |redirected: u64, normal: u64, connections: u64| {
            serde_json::json!({
                "redirectedBytes": redirected,
                "normalBytes": normal,
                "connectionsAccelerated": connections,
            })
        };
        let a = acceleration(Ok(Some(counters(100, 10, 2))), Ok(counters(1100, 15, 6)))
            .expect("bytes went across");
        assert_eq!(
            (a.redirected_bytes, a.normal_bytes, a.connections),
            (1000, 5, 4)
        );
        let none = acceleration(Ok(Some(counters(100, 10, 2))), Ok(counters(100, 900, 2)));
        let why = format!("{:#}", none.err().expect("nothing went across"));
        assert!(why.contains("did not engage"), "{why}");
        assert!(acceleration(Ok(None), Ok(counters(1, 0, 1))).is_err());
        assert!(acceleration(Ok(Some(counters(0, 0, 0))), Err(anyhow::anyhow!("gone"))).is_err());
    }

    #[test]
    fn parses_wrk_latency_summary() {
        let text = "\
Running 1s test @ http://127.0.0.1:8080/
  1 threads and 4 connections
  Latency Distribution
     50%   50.00us
     75%   57.00us
     90%   66.00us
     99%    1.32ms
  56633 requests in 1.00s, 8.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  56544.51
";
        let p = parse_wrk(text).unwrap();
        assert_eq!(p.requests, 56633);
        assert_eq!(p.errors, 7);
        assert_eq!(p.p50_us, 50.0);
        assert_eq!(p.p99_us, 1320.0);
        assert_eq!(p.requests_per_s, 56544.51);
    }
}
