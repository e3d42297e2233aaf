//! `cargo xtask bench control`: what it costs to run and change a large configuration,
//! and what access logging costs, measured in one run on the namespaces of `bench l4`
//! (see [`super::net`]).
//!
//! 1. **Apply at scale, side by side with nginx.** A document of [`SERVICES`] services,
//!    each with one listener forwarding to its own target group of [`TARGETS_PER_GROUP`]
//!    IP targets in the server namespace's CIDR (they need not answer: health checks are
//!    off). Every [`HTTP_EVERY`]th service has an HTTP listener (port 80), so the L7
//!    proxy and its sites hold part of the config; the others have a TCP listener (port
//!    7000, the kernel path). A service network holds at most [`SERVICES_PER_NETWORK`]
//!    services (Lattice's quota, lattice-agent's `MAX_SERVICE_ASSOCIATIONS`) and a VPC
//!    can be associated with one network only, so the services are split over as many
//!    networks as needed, each associated with its own client VPC: the client namespace
//!    and one more namespace per further network (all services are associated). VIPs
//!    come from `--vip-pool` [`VIP_POOL`] (the default /24 holds ~253).
//!
//!    The release agent is started on it (`lattice-agent validate` first) and the time
//!    from starting the process to its `lattice-agent ready` line is recorded. Then
//!    [`CHANGES`] small changes go through its control API, each timed end to end (the
//!    API answers once the change is validated, compiled and in force): in turn,
//!    RegisterTargets of an 11th target on a group, DeregisterTargets of it again, and
//!    UpdateListener setting the weight of a service's forward (half of these on HTTP
//!    services). The call is made as the `lattice` CLI makes it: one HTTP/1.1 request per
//!    connection on the agent's Unix socket.
//!
//!    The peer is nginx (Debian's nginx-full, 1 worker, in the proxy namespace) with the
//!    same fleet: per TCP service an upstream of its 10 targets and a stream server on a
//!    port of its own, per HTTP service an upstream and a virtual server (`server_name`)
//!    on port 80, plus `location = /probe { return 200 "gen N"; }`. nginx makes the same
//!    changes (an 11th `server` in the upstream, removed again, the first server's
//!    weight): the configuration rendered with the next N is written, the master gets
//!    SIGHUP, and the clock stops when `GET /probe` (polled every millisecond from
//!    nginx's namespace) answers `gen N`, that is when new workers serve the new
//!    configuration. The clock starts at the write (rendering the text is the
//!    operator's tooling, not nginx).
//!
//!    Both run for the whole part; [`APPLY_ROUNDS`] rounds interleave them (each round
//!    makes the next changes on one side, then on the other, the first side alternating),
//!    with [`PAUSE`] between changes. Shown: p50 and p99 (nearest rank: with 30 changes
//!    the p99 is the slowest), fastest and mean, and the p50 per kind of change (only
//!    changes of TCP listeners and groups change the kernel tables); the time to ready
//!    (the agent's log is read every 20 ms, nginx's port tried every 50 ms); the process
//!    CPU of each over [`IDLE_WINDOW`] doing nothing after the changes (the agent's sync
//!    thread keeps following namespaces and kernel tables); VmRSS and VmHWM from
//!    `/proc/<pid>/status` after the changes (nginx: master + worker, summed, once the
//!    old workers have gone; shared pages count in each). The agent's pins are removed
//!    (`lattice-agent cleanup`) before part 2.
//!
//! 2. **Access logging on vs off.** The machinery of `bench auth`: the release agent
//!    serving service `bench-log` (`bench l7`'s listeners and backend: nginx in the
//!    server namespace over HTTP/1.1 keep-alive) in two variants that differ only in an
//!    `accessLogSubscriptions` entry `{ resource: bench-log, destination:
//!    "file:<work>/access.jsonl" }`, started in turn for [`LOG_ROUNDS`] rounds (each
//!    starting with the variant the previous one ended with). The load is `bench l7`'s
//!    `http1`: wrk, HTTP/1.1 keep-alive, 16 connections, 1 thread, for
//!    [`RATIO_LOAD_SECONDS`], then 1 connection for 3 s. After each logging-on round the log must hold lines (JSON objects);
//!    the lines, the requests sent and the agent's count of dropped records
//!    (`accessLogRecordsDropped` of `GET /stats`: records the writer could not keep up
//!    with are dropped, never waited for) are reported, so a ratio bought by dropping
//!    records shows.
//!
//! Targets (the issue's): apply p50 and p99 under 200 ms; the agent's RSS at that size
//! under 128 MiB (absolute; the ratios to nginx beside them); requests/s with logging on
//! at least 0.95x logging off. A benchmark, not a test: it never fails because a number
//! is low. It prints a table with ratios and a line per target (met / NOT MET / not
//! measured), writes the same as JSON to `target/bench/control-<UTC timestamp>.json`,
//! and fails only when it cannot measure: nginx's reloads or the logging-off variant.
//!
//! The whole run takes about six minutes, plus the release build.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};
use lattice_tests::{client::http_get, Netns, Topology};
use nix::{sys::signal, unistd::Pid};
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    begin_round, fail_unless_measured, idle_check,
    l7::{self, Certs, Dest, Proto, Ratio, Variant, BODY, LOAD_CONNECTIONS, LOAD_SECONDS},
    lattice::{self, AgentArgs},
    load::ClientSide,
    net::{BenchNet, CLIENT_CIDR, NGINX_ADDR, SERVER_CIDR},
    procs::{self, log_tail, CpuMeter, Memory, Proc},
    publish, report, round_order, sockmap, WorkDir,
};
use crate::step;

/// The fleet of part 1.
const SERVICES: usize = 1000;
const TARGETS_PER_GROUP: usize = 10;
/// Services 0, 50, 100, ... have an HTTP listener: 20 of 1000.
const HTTP_EVERY: usize = 50;
/// Lattice's quota of services per service network (lattice-agent's
/// `MAX_SERVICE_ASSOCIATIONS`).
const SERVICES_PER_NETWORK: usize = 500;
/// Room for 4094 VIPs, clear of the default `--snat-pool` 169.254.172.0/22.
const VIP_POOL: &str = "169.254.176.0/20";
/// `run` and `show` resolve the documents with the same pool.
const SETTINGS_ARGS: [&str; 2] = ["--vip-pool", VIP_POOL];
/// TCP listeners and their targets' port; HTTP targets' port.
const TCP_PORT: u16 = 7000;
const HTTP_TARGET_PORT: u16 = 8080;
/// nginx: the HTTP port (virtual servers and /probe) and the first stream port (TCP
/// service i listens on `NGINX_TCP_BASE + i`).
const NGINX_HTTP_PORT: u16 = 80;
const NGINX_TCP_BASE: u16 = 20000;
const NGINX_NAME: &str = "nginx-control";

/// Changes per side, in [`APPLY_ROUNDS`] rounds.
const CHANGES: usize = 30;
const APPLY_ROUNDS: usize = 3;
/// Between two changes, so each starts from a quiet machine (nginx's old workers exit).
const PAUSE: Duration = Duration::from_millis(100);
/// How long one API call or one nginx reload may take before it counts as failed.
const APPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the control API may take to answer after `lattice-agent ready`.
const API_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long nginx may take to write its pid once its port answers.
const PID_FILE_TIMEOUT: Duration = Duration::from_secs(5);
/// Process CPU of each side doing nothing after the changes.
const IDLE_WINDOW: Duration = Duration::from_secs(3);

/// Rounds of the two logging variants (their ratio is the target: as many as `bench
/// auth`).
const LOG_ROUNDS: usize = 7;
/// How long each round's load under 16 connections runs (as in `bench auth`).
const RATIO_LOAD_SECONDS: u32 = super::auth::RATIO_LOAD_SECONDS;
const LOG_SERVICE: &str = "bench-log";
/// The agent's default `--access-log-keep`: rotated files `<log>.1` .. `<log>.5`.
const LOG_KEEP: usize = 5;
/// How long the log writer may take to write the last records after the load.
const LOG_SETTLE_TIMEOUT: Duration = Duration::from_secs(3);
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of an error the report keeps.
const ERROR_LINES: usize = 12;

/// The targets.
const APPLY_LIMIT_MS: f64 = 200.0;
const RSS_LIMIT_MIB: f64 = 128.0;
const LOG_RATIO_LIMIT: f64 = 0.95;

const LATTICE_METHOD: &str = "one control API call (HTTP/1.1 on the agent's Unix socket), \
     timed from connecting to the whole answer; the agent answers once the new document \
     is validated, compiled and in force";
const NGINX_METHOD: &str = "write the configuration rendered with the next generation N, \
     SIGHUP to the master, poll GET /probe every 1 ms until it answers \"gen N\"";

/// Service `i` (Lattice reserves the prefixes `svc-` and `tg-` for ids).
fn service_name(i: usize) -> String {
    format!("fleet-{i:04}")
}

/// Service `i`'s target group.
fn group_name(i: usize) -> String {
    format!("fleet-{i:04}-targets")
}

fn is_http(i: usize) -> bool {
    i.is_multiple_of(HTTP_EVERY)
}

fn listener_name(i: usize) -> &'static str {
    if is_http(i) {
        "http"
    } else {
        "tcp"
    }
}

/// Target `j` of group `i` (j = [`TARGETS_PER_GROUP`] is the one changes add): 16
/// addresses per group in 10.82.1.0 - 10.82.63.255, inside the server VPC's CIDR.
fn target_addr(group: usize, j: usize) -> Ipv4Addr {
    let third = u8::try_from(1 + group / 16).expect("fewer than 4000 groups");
    let fourth = u8::try_from((group % 16) * 16 + 1 + j).expect("at most 15 targets per group");
    Ipv4Addr::new(10, 82, third, fourth)
}

/// One change both sides make, in the same order.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum Change {
    /// RegisterTargets of an 11th target (nginx: an 11th `server` in the upstream).
    Register { group: usize },
    /// DeregisterTargets of it again.
    Deregister { group: usize },
    /// UpdateListener: the weight of the service's forward (nginx: the first server's
    /// weight, a tenth of it).
    Weight { service: usize, weight: u16 },
}

/// [`CHANGES`] changes: register, deregister, weight, on groups spread over the fleet;
/// every other weight change is on an HTTP service.
fn changes() -> Vec<Change> {
    (0..CHANGES)
        .map(|k| {
            let t = k / 3;
            let group = (t * 337 + 11) % SERVICES;
            match k % 3 {
                0 => Change::Register { group },
                1 => Change::Deregister { group },
                _ => Change::Weight {
                    service: if t.is_multiple_of(2) {
                        (t * HTTP_EVERY) % SERVICES
                    } else {
                        group
                    },
                    weight: if t % 4 < 2 { 60 } else { 80 },
                },
            }
        })
        .collect()
}

impl Change {
    /// What kind of change it is, for the times per kind: only changes of TCP
    /// listeners and groups change the kernel tables.
    fn kind(self) -> &'static str {
        match self {
            Change::Register { .. } => "register",
            Change::Deregister { .. } => "deregister",
            Change::Weight { service, .. } if is_http(service) => "weight on an HTTP listener",
            Change::Weight { .. } => "weight on a TCP listener",
        }
    }

    fn describe(self) -> String {
        match self {
            Change::Register { group } => format!(
                "register {} in {}",
                target_addr(group, TARGETS_PER_GROUP),
                group_name(group)
            ),
            Change::Deregister { group } => format!(
                "deregister {} from {}",
                target_addr(group, TARGETS_PER_GROUP),
                group_name(group)
            ),
            Change::Weight { service, weight } => format!(
                "weight {weight} on {}/{}",
                service_name(service),
                listener_name(service)
            ),
        }
    }

    /// The control API call that makes the change: method, path, body.
    fn api_request(self) -> (&'static str, String, Value) {
        let extra = |group| {
            let id = target_addr(group, TARGETS_PER_GROUP).to_string();
            json!({ "targets": [{ "id": id }] })
        };
        match self {
            Change::Register { group } => (
                "POST",
                format!("/targetgroups/{}/registertargets", group_name(group)),
                extra(group),
            ),
            Change::Deregister { group } => (
                "POST",
                format!("/targetgroups/{}/deregistertargets", group_name(group)),
                extra(group),
            ),
            Change::Weight { service, weight } => (
                "PATCH",
                format!(
                    "/services/{}/listeners/{}",
                    service_name(service),
                    listener_name(service)
                ),
                json!({ "defaultAction": { "forward": { "targetGroups": [
                    { "targetGroupIdentifier": group_name(service), "weight": weight }
                ] } } }),
            ),
        }
    }
}

/// A client VPC of the scale document; service network `net-<n>` associates VPC n.
struct ClientVpc {
    name: String,
    netns: String,
    cidr: String,
}

/// One client VPC per service network: the client namespace, then a namespace of this
/// topology for each further network (10.84.0.0/16, 10.85.0.0/16, ...).
fn client_vpcs(topo: &mut Topology, net: &BenchNet) -> anyhow::Result<Vec<ClientVpc>> {
    let networks = SERVICES.div_ceil(SERVICES_PER_NETWORK);
    let mut vpcs = vec![ClientVpc {
        name: "vpc-client-1".to_owned(),
        netns: net.client.name().to_owned(),
        cidr: CLIENT_CIDR.to_owned(),
    }];
    for n in 2..=networks {
        let ns = topo.add_netns(&format!("client{n}"))?;
        let second = 82 + n;
        ns.add_addr("lo", &format!("10.{second}.0.10/32"))?;
        vpcs.push(ClientVpc {
            name: format!("vpc-client-{n}"),
            netns: ns.name().to_owned(),
            cidr: format!("10.{second}.0.0/16"),
        });
    }
    Ok(vpcs)
}

/// The document of part 1 (flow style: one line per resource).
fn scale_config(vpcs: &[ClientVpc], server_netns: &str) -> String {
    let account = "account: \"111111111111\"";
    let mut doc = String::from("accounts:\n  - id: \"111111111111\"\nvpcs:\n");
    for vpc in vpcs {
        let _ = writeln!(
            doc,
            "  - {{ name: {}, {account}, cidr: {}, attachments: [{{ netns: {} }}] }}",
            vpc.name, vpc.cidr, vpc.netns
        );
    }
    let _ = writeln!(
        doc,
        "  - {{ name: vpc-server, {account}, cidr: {SERVER_CIDR}, \
         attachments: [{{ netns: {server_netns} }}] }}"
    );
    doc.push_str("serviceNetworks:\n");
    for (n, vpc) in vpcs.iter().enumerate() {
        let first = n * SERVICES_PER_NETWORK;
        let services: Vec<String> = (first..SERVICES.min(first + SERVICES_PER_NETWORK))
            .map(service_name)
            .collect();
        let _ = writeln!(
            doc,
            "  - name: net-{}\n    {account}\n    authType: NONE\n    \
             vpcAssociations: [{{ vpc: {} }}]\n    serviceAssociations: [{}]",
            n + 1,
            vpc.name,
            services.join(", ")
        );
    }
    doc.push_str("services:\n");
    for i in 0..SERVICES {
        let (protocol, port) = if is_http(i) {
            ("HTTP", 80)
        } else {
            ("TCP", TCP_PORT)
        };
        let _ = writeln!(
            doc,
            "  - {{ name: {}, {account}, authType: NONE, listeners: [{{ name: {}, \
             protocol: {protocol}, port: {port}, defaultAction: {{ forward: {{ targetGroups: \
             [{{ targetGroupIdentifier: {}, weight: 100 }}] }} }} }}] }}",
            service_name(i),
            listener_name(i),
            group_name(i)
        );
    }
    doc.push_str("targetGroups:\n");
    for i in 0..SERVICES {
        let protocol = if is_http(i) {
            format!("protocol: HTTP, protocolVersion: HTTP1, port: {HTTP_TARGET_PORT}")
        } else {
            format!("protocol: TCP, port: {TCP_PORT}")
        };
        let targets: Vec<String> = (0..TARGETS_PER_GROUP)
            .map(|j| format!("{{ id: {} }}", target_addr(i, j)))
            .collect();
        let _ = writeln!(
            doc,
            "  - {{ name: {}, type: IP, config: {{ vpcIdentifier: vpc-server, {protocol}, \
             healthCheck: {{ enabled: false }} }}, targets: [{}] }}",
            group_name(i),
            targets.join(", ")
        );
    }
    doc
}

/// What the changes made so far changed, for rendering nginx's configuration.
#[derive(Debug, Default)]
struct Edits {
    /// Groups that have their 11th target.
    extra_target: BTreeSet<usize>,
    /// Forward weights set, per service.
    weights: BTreeMap<usize, u16>,
}

impl Edits {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Register { group } => {
                self.extra_target.insert(group);
            }
            Change::Deregister { group } => {
                self.extra_target.remove(&group);
            }
            Change::Weight { service, weight } => {
                self.weights.insert(service, weight);
            }
        }
    }
}

/// nginx's configuration of the fleet with `edits`, /probe answering `gen <generation>`.
fn nginx_fleet_conf(work: &Path, edits: &Edits, generation: u64) -> String {
    let mut http = format!(
        "    server {{ listen {NGINX_ADDR}:{NGINX_HTTP_PORT} default_server; \
         location = /probe {{ default_type text/plain; return 200 \"gen {generation}\"; }} }}\n"
    );
    let mut stream = String::new();
    for i in 0..SERVICES {
        let port = if is_http(i) {
            HTTP_TARGET_PORT
        } else {
            TCP_PORT
        };
        let targets = TARGETS_PER_GROUP + usize::from(edits.extra_target.contains(&i));
        let mut upstream = format!("    upstream u-{i:04} {{");
        for j in 0..targets {
            let weight = match (j, edits.weights.get(&i)) {
                (0, Some(w)) => format!(" weight={}", (w / 10).max(1)),
                _ => String::new(),
            };
            let _ = write!(upstream, " server {}:{port}{weight};", target_addr(i, j));
        }
        upstream.push_str(" }\n");
        if is_http(i) {
            http.push_str(&upstream);
            let _ = writeln!(
                http,
                "    server {{ listen {NGINX_ADDR}:{NGINX_HTTP_PORT}; server_name {}.bench; \
                 location / {{ proxy_pass http://u-{i:04}; }} }}",
                service_name(i)
            );
        } else {
            stream.push_str(&upstream);
            let listen = NGINX_TCP_BASE + u16::try_from(i).expect("fewer than 45000 services");
            let _ = writeln!(
                stream,
                "    server {{ listen {NGINX_ADDR}:{listen}; proxy_pass u-{i:04}; }}"
            );
        }
    }
    l7::nginx_conf(work, NGINX_NAME, &http, Some(&stream))
}

fn probe_addr() -> SocketAddrV4 {
    SocketAddrV4::new(NGINX_ADDR, NGINX_HTTP_PORT)
}

/// nginx serving the fleet, and the generation of its configuration.
struct NginxFleet<'a> {
    nginx: Proc,
    /// nginx's namespace, where /probe is polled from (its own loopback address).
    ns: &'a Netns,
    work: &'a Path,
    master: Pid,
    edits: Edits,
    generation: u64,
}

impl<'a> NginxFleet<'a> {
    /// Starts nginx on generation 0; returns it with the time from starting it to its
    /// port accepting connections.
    fn start(ns: &'a Netns, work: &'a Path) -> anyhow::Result<(NginxFleet<'a>, Duration)> {
        let edits = Edits::default();
        let conf = nginx_fleet_conf(work, &edits, 0);
        let (nginx, up_after) = l7::start_nginx(ns, None, work, NGINX_NAME, &conf, probe_addr())?;
        let pid_file = l7::nginx_pid_path(work, NGINX_NAME);
        // nginx opens its ports before it writes its pid file: the file may be empty
        // for a moment after the port answers.
        let deadline = Instant::now() + PID_FILE_TIMEOUT;
        let master: i32 = loop {
            // Not there yet reads as empty.
            let text = fs::read_to_string(&pid_file).unwrap_or_default();
            match text.trim().parse() {
                Ok(pid) => break pid,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("{} holds no pid", pid_file.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let mut fleet = NginxFleet {
            nginx,
            ns,
            work,
            master: Pid::from_raw(master),
            edits,
            generation: 0,
        };
        fleet.wait_generation(Instant::now() + APPLY_TIMEOUT)?;
        Ok((fleet, up_after))
    }

    /// Makes `change` and reloads; returns the time from writing the configuration to
    /// /probe answering with its generation.
    fn apply(&mut self, change: Change) -> anyhow::Result<Duration> {
        self.edits.apply(change);
        self.generation += 1;
        let conf = nginx_fleet_conf(self.work, &self.edits, self.generation);
        let path = l7::nginx_conf_path(self.work, NGINX_NAME);
        let started = Instant::now();
        fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
        signal::kill(self.master, signal::Signal::SIGHUP)
            .with_context(|| format!("sending SIGHUP to nginx's master {}", self.master))?;
        self.wait_generation(started + APPLY_TIMEOUT)?;
        Ok(started.elapsed())
    }

    /// Polls GET /probe until it answers `gen <generation>`.
    fn wait_generation(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let want = format!("gen {}", self.generation);
        loop {
            let last = match http_get(self.ns, probe_addr().into(), "/probe", CHECK_TIMEOUT) {
                Ok(r) if r.status == 200 && r.text() == want => return Ok(()),
                Ok(r) => format!("{} {:?}", r.status, r.text()),
                Err(e) => lattice_tests::error_chain(&e),
            };
            self.nginx.check_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "nginx did not answer GET /probe with {want:?} in time (last: {last}); \
                     its error log ends with:\n{}",
                    log_tail(&self.work.join(format!("{NGINX_NAME}-error.log")), 8)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// nginx's memory once the workers of earlier generations have exited (master and
    /// one worker left, or after 3 s).
    fn settled_memory(&self) -> Option<Memory> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let memory = Memory::of_tree(self.nginx.pid());
            if memory.as_ref().is_none_or(|m| m.processes <= 2) || Instant::now() >= deadline {
                return memory;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An answer of the agent's control API.
struct ApiAnswer {
    status: u16,
    body: Value,
}

/// One call of the agent's control API, as the `lattice` CLI makes it: one HTTP/1.1
/// request per connection on the Unix socket. (Not lattice-agent's own client: xtask
/// must build before `cargo xtask setup` has installed the eBPF toolchain the agent's
/// build needs. Not curl: it would add a process start to every timed call.)
fn api_call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<ApiAnswer> {
    let body = body
        .map(serde_json::to_vec)
        .transpose()?
        .unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: lattice\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend(body);
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to the agent's API at {}", socket.display()))?;
    stream.set_read_timeout(Some(APPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(APPLY_TIMEOUT))?;
    stream.write_all(&request)?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{method} {path}: not an HTTP answer: {text:.200}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {path}: no status in {head:.200}"))?;
    let body = serde_json::from_str(body.trim()).unwrap_or_else(|_| Value::String(body.into()));
    Ok(ApiAnswer { status, body })
}

/// The agent on the fleet.
struct ScaleAgent {
    agent: Proc,
    socket: PathBuf,
}

impl ScaleAgent {
    /// Starts the agent on the document; returns it with the time to `lattice-agent
    /// ready` and then to its control API answering.
    fn start(
        site: &Site<'_>,
        bin: &Path,
        config: &str,
    ) -> anyhow::Result<(ScaleAgent, Duration, Duration)> {
        let started = lattice::start_agent(
            bin,
            site.bpffs_root,
            site.work,
            "lattice-bench-control.yaml",
            config,
            AgentArgs {
                settings: &SETTINGS_ARGS,
                ..AgentArgs::default()
            },
        )?;
        let mut agent = ScaleAgent {
            agent: started.agent,
            socket: lattice::api_socket(site.work),
        };
        let api_after = agent.wait_api()?;
        Ok((agent, started.ready_after, api_after))
    }

    /// Waits until `GET /stats` answers 200 (the agent logs `ready` before it binds
    /// the API socket).
    fn wait_api(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let last = match api_call(&self.socket, "GET", "/stats", None) {
                Ok(a) if a.status == 200 => return Ok(started.elapsed()),
                Ok(a) => format!("{} {}", a.status, a.body),
                Err(e) => format!("{e:#}"),
            };
            self.agent.check_running()?;
            if started.elapsed() >= API_READY_TIMEOUT {
                bail!(
                    "the control API did not answer GET /stats within {API_READY_TIMEOUT:?}: \
                     {last}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Makes `change` through the API; returns how long the call took.
    fn apply(&self, change: Change) -> anyhow::Result<Duration> {
        let (method, path, body) = change.api_request();
        let started = Instant::now();
        let answer = api_call(&self.socket, method, &path, Some(&body))?;
        let took = started.elapsed();
        if !(200..300).contains(&answer.status) {
            bail!(
                "{method} {path} answered {}: {}",
                answer.status,
                answer.body
            );
        }
        if let Some(failed) = answer.body["unsuccessful"]
            .as_array()
            .filter(|f| !f.is_empty())
        {
            bail!("{method} {path}: unsuccessful: {failed:?}");
        }
        Ok(took)
    }
}

/// One change on one side.
#[derive(Debug, Serialize)]
struct Applied {
    round: usize,
    change: Change,
    description: String,
    ms: f64,
}

/// The apply times of one side, milliseconds.
#[derive(Debug, Serialize)]
struct Spread {
    changes: usize,
    p50_ms: f64,
    /// Nearest rank: with 30 changes, the slowest.
    p99_ms: f64,
    min_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

impl Spread {
    fn of(applies: &[&Applied]) -> Option<Spread> {
        let mut ms: Vec<f64> = applies.iter().map(|a| a.ms).collect();
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Some(Spread {
            changes: ms.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            min_ms: ms[0],
            max_ms: ms[ms.len() - 1],
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        })
    }
}

/// One side of part 1: lattice or nginx.
#[derive(Debug, Serialize)]
struct ApplySide {
    name: &'static str,
    /// `lattice` or `peer`.
    role: &'static str,
    /// How a change is made and when its clock stops.
    method: &'static str,
    /// Why it was not measured at all.
    not_available: Option<String>,
    /// From starting the process to ready: lattice's `lattice-agent ready` line (read
    /// every 20 ms), nginx's port accepting connections (tried every 50 ms).
    ready_s: Option<f64>,
    /// Lattice: from `ready` to the control API answering.
    api_after_ready_s: Option<f64>,
    applies: Vec<Applied>,
    summary: Option<Spread>,
    /// The same per kind of change.
    by_kind: BTreeMap<&'static str, Spread>,
    /// Process CPU doing nothing after the changes, cores.
    idle_cores: Option<f64>,
    /// After the changes.
    memory: Option<Memory>,
    errors: Vec<String>,
}

impl ApplySide {
    fn new(name: &'static str, role: &'static str, method: &'static str) -> ApplySide {
        ApplySide {
            name,
            role,
            method,
            not_available: None,
            ready_s: None,
            api_after_ready_s: None,
            applies: Vec::new(),
            summary: None,
            by_kind: BTreeMap::new(),
            idle_cores: None,
            memory: None,
            errors: Vec::new(),
        }
    }

    fn record(&mut self, round: usize, change: Change, took: anyhow::Result<Duration>) {
        match took {
            Ok(took) => self.applies.push(Applied {
                round,
                change,
                description: change.describe(),
                ms: took.as_secs_f64() * 1e3,
            }),
            Err(e) => {
                let e = brief(&e);
                println!("    {:8} {} failed: {e}", self.name, change.describe());
                self.errors
                    .push(format!("round {round}: {}: {e}", change.describe()));
            }
        }
    }

    /// Fills [`ApplySide::summary`] and [`ApplySide::by_kind`] from the applies.
    fn summarise(&mut self) {
        let applies: Vec<&Applied> = self.applies.iter().collect();
        self.summary = Spread::of(&applies);
        let kinds: BTreeSet<&'static str> = self.applies.iter().map(|a| a.change.kind()).collect();
        self.by_kind = kinds
            .into_iter()
            .filter_map(|kind| {
                let of_kind: Vec<&Applied> = applies
                    .iter()
                    .copied()
                    .filter(|a| a.change.kind() == kind)
                    .collect();
                Some((kind, Spread::of(&of_kind)?))
            })
            .collect();
    }

    /// A line about the round's changes.
    fn print_round(&self, round: usize) {
        let ms: Vec<f64> = self
            .applies
            .iter()
            .filter(|a| a.round == round)
            .map(|a| a.ms)
            .collect();
        if ms.is_empty() {
            return;
        }
        let line: Vec<String> = ms.iter().map(|m| format!("{m:.1}")).collect();
        println!(
            "    {:8} {} changes, ms: {}",
            self.name,
            ms.len(),
            line.join(" ")
        );
    }

    fn mib(kib: u64) -> f64 {
        kib as f64 / 1024.0
    }
}

/// A row of the apply table.
struct ApplyMetric {
    key: &'static str,
    label: &'static str,
    decimals: usize,
    get: fn(&ApplySide) -> Option<f64>,
}

const APPLY_METRICS: &[ApplyMetric] = &[
    ApplyMetric {
        key: "ready_s",
        label: "start to ready, s",
        decimals: 2,
        get: |s| s.ready_s,
    },
    ApplyMetric {
        key: "apply_p50_ms",
        label: "apply a change: p50, ms",
        decimals: 1,
        get: |s| Some(s.summary.as_ref()?.p50_ms),
    },
    ApplyMetric {
        key: "apply_p99_ms",
        label: "  p99 (the slowest of 30), ms",
        decimals: 1,
        get: |s| Some(s.summary.as_ref()?.p99_ms),
    },
    ApplyMetric {
        key: "apply_min_ms",
        label: "  fastest, ms",
        decimals: 1,
        get: |s| Some(s.summary.as_ref()?.min_ms),
    },
    ApplyMetric {
        key: "apply_mean_ms",
        label: "  mean, ms",
        decimals: 1,
        get: |s| Some(s.summary.as_ref()?.mean_ms),
    },
    ApplyMetric {
        key: "idle_cores",
        label: "process CPU when idle after, cores",
        decimals: 3,
        get: |s| s.idle_cores,
    },
    ApplyMetric {
        key: "rss_mib",
        label: "RSS after the changes, MiB",
        decimals: 1,
        get: |s| Some(ApplySide::mib(s.memory.as_ref()?.rss_kib)),
    },
    ApplyMetric {
        key: "peak_rss_mib",
        label: "peak RSS (VmHWM), MiB",
        decimals: 1,
        get: |s| Some(ApplySide::mib(s.memory.as_ref()?.peak_rss_kib)),
    },
];

/// lattice's value of `key` / nginx's.
fn apply_ratio(sides: &[ApplySide], key: &str) -> Option<f64> {
    let metric = APPLY_METRICS.iter().find(|m| m.key == key)?;
    let value = |name: &str| (metric.get)(sides.iter().find(|s| s.name == name)?);
    let (a, b) = (value("lattice")?, value("nginx")?);
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// What the rounds of both parts share.
struct Site<'a> {
    net: &'a BenchNet,
    bpffs_root: &'a Path,
    work: &'a Path,
    /// The backend's processes (pinned with the agent for the pinned load).
    backend: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Logging {
    Off,
    On,
}

impl Logging {
    fn name(self) -> &'static str {
        match self {
            Logging::Off => "logging-off",
            Logging::On => "logging-on",
        }
    }
}

/// What one logging-on round wrote.
#[derive(Debug, Serialize)]
struct LogRound {
    round: usize,
    /// Requests the loads completed (and the one check request).
    requests: u64,
    /// Lines in the log file (and its rotated files).
    lines: u64,
    /// The agent's count of records dropped because the writer fell behind.
    dropped: Option<u64>,
    /// The log's first line (a record), cut at 400 characters.
    sample: String,
}

#[derive(Debug, Serialize)]
struct Settings {
    services: usize,
    http_services: usize,
    tcp_services: usize,
    targets_per_group: usize,
    service_networks: usize,
    services_per_network: usize,
    vip_pool: &'static str,
    changes: usize,
    apply_rounds: usize,
    pause_between_changes_ms: u128,
    lattice_change: &'static str,
    nginx_change: &'static str,
    nginx: String,
    logging_rounds: usize,
    load_tool: &'static str,
    load_seconds: u32,
    load_connections: u32,
    backend: String,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    timestamp: String,
    machine: report::Machine,
    settings: Settings,
    /// Part 1: lattice and nginx.
    apply: Vec<ApplySide>,
    /// Part 2: logging-off and logging-on.
    logging: Vec<Variant>,
    access_log: Vec<LogRound>,
    ratios: Vec<Ratio>,
    targets: Vec<report::TargetResult>,
    duration_s: f64,
}

pub fn control(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    step("bench control: building the release agent (cargo build --release -p lattice-agent)");
    let agent_bin = lattice::build(root).map_err(|e| format!("{e:#}"));
    if let Err(e) = &agent_bin {
        println!("    lattice: not available: {e}");
    }

    step("bench control: namespaces (client, server, proxy, more clients)");
    let mut topo = Topology::new()?;
    let net = BenchNet::build(&mut topo)?;
    let vpcs = client_vpcs(&mut topo, &net)?;
    let bpffs_root = topo.bpffs_root("bench")?;
    let work = WorkDir::new(topo.tag().as_str())?;
    let mut site = Site {
        net: &net,
        bpffs_root: &bpffs_root,
        work: &work.path,
        backend: Vec::new(),
    };
    let client_namespaces: Vec<&str> = vpcs.iter().map(|v| v.netns.as_str()).collect();
    println!(
        "    clients {}, server {}, proxy {} (nginx)",
        client_namespaces.join(", "),
        net.server.name(),
        net.proxy.name()
    );

    let mut background = Vec::new();
    let apply = measure_apply(
        &site,
        agent_bin.as_deref().map_err(String::as_str),
        &vpcs,
        &mut background,
    )?;
    if let Ok(bin) = &agent_bin {
        // The next part starts without the fleet's listeners in the kernel tables.
        sockmap::cleanup(bin, &bpffs_root);
    }

    step("bench control: access logging on vs off (certificate, backend)");
    let certs = Certs::make(&work.path)?;
    let mut backend =
        l7::backend(&net, None, &work.path, &certs).context("starting the backend")?;
    site.backend = procs::tree(backend.pid());
    let mut logging = vec![
        Variant::new(Logging::Off.name(), "baseline"),
        Variant::new(Logging::On.name(), "lattice"),
    ];
    for v in &mut logging {
        v.not_available = agent_bin.as_ref().err().cloned();
    }
    let mut access_log = Vec::new();
    for round in 1..=LOG_ROUNDS {
        let order = round_order(round, [Logging::Off, Logging::On]);
        begin_round(
            "bench control: logging round",
            round,
            LOG_ROUNDS,
            &order.map(Logging::name),
            &mut background,
            &mut backend,
        )?;
        let Ok(bin) = &agent_bin else { continue };
        for logging_mode in order {
            let v = l7::variant_mut(&mut logging, logging_mode.name());
            if v.not_available.is_some() {
                continue;
            }
            match measure_logging(&site, bin, &certs, v, round, logging_mode) {
                Ok(Some(logged)) => {
                    println!(
                        "    {:11} {} lines logged for {} requests, {} dropped",
                        logging_mode.name(),
                        logged.lines,
                        logged.requests,
                        logged
                            .dropped
                            .map_or_else(|| "? (GET /stats failed)".to_owned(), |d| d.to_string())
                    );
                    access_log.push(logged);
                }
                Ok(None) => {}
                Err(e) => {
                    println!("    {:11} {e:#}", logging_mode.name());
                    // A variant that fails before its first measurement is not measured
                    // again; a later failure is that round's.
                    if v.rounds.is_empty() {
                        v.not_available = Some(format!("{e:#}"));
                    } else {
                        v.errors.push(format!("round {round}: {e:#}"));
                    }
                }
            }
        }
    }
    println!("    backend: {}", backend.stop());
    if let Ok(bin) = &agent_bin {
        sockmap::cleanup(bin, &bpffs_root);
    }
    for v in &mut logging {
        v.summarise();
    }

    let (file_stamp, stamp) = report::timestamps();
    let mut ratios: Vec<Ratio> = APPLY_METRICS
        .iter()
        .filter_map(|m| {
            Some(Ratio {
                metric: m.key.to_owned(),
                variant: "lattice",
                reference: "nginx",
                ratio: apply_ratio(&apply, m.key)?,
            })
        })
        .collect();
    ratios.extend(l7::ratios(
        &logging,
        &[Proto::Http1],
        &[Logging::Off.name()],
    ));
    let report = Report {
        benchmark: "control",
        timestamp: stamp,
        machine: report::Machine::here(background),
        settings: settings(),
        targets: targets(&apply, &logging, &access_log),
        apply,
        logging,
        access_log,
        ratios,
        duration_s: started.elapsed().as_secs_f64(),
    };
    publish(root, "control", &file_stamp, &report.render(), |path| {
        report::write_json(path, &report)
    })?;

    drop(work);
    drop(topo);
    let mut failed = Vec::new();
    let nginx = report.apply.iter().filter(|s| s.role == "peer");
    failed.extend(
        nginx
            .filter(|s| s.not_available.is_some() || !s.errors.is_empty() || s.applies.is_empty())
            .map(|s| format!("{} (reloads)", s.name)),
    );
    let baseline = report.logging.iter().filter(|v| v.role == "baseline");
    failed.extend(
        baseline
            .filter(|v| v.not_available.is_some() || !v.errors.is_empty() || v.rounds.is_empty())
            .map(|v| v.name.to_owned()),
    );
    fail_unless_measured(failed.into_iter())
}

fn settings() -> Settings {
    let http_services = (0..SERVICES).filter(|&i| is_http(i)).count();
    Settings {
        services: SERVICES,
        http_services,
        tcp_services: SERVICES - http_services,
        targets_per_group: TARGETS_PER_GROUP,
        service_networks: SERVICES.div_ceil(SERVICES_PER_NETWORK),
        services_per_network: SERVICES_PER_NETWORK,
        vip_pool: VIP_POOL,
        changes: CHANGES,
        apply_rounds: APPLY_ROUNDS,
        pause_between_changes_ms: PAUSE.as_millis(),
        lattice_change: LATTICE_METHOD,
        nginx_change: NGINX_METHOD,
        nginx: "Debian nginx-full, 1 worker, in the proxy namespace: per TCP service an \
                upstream and a stream server on its own port, per HTTP service an upstream \
                and a virtual server on port 80, plus location = /probe"
            .to_owned(),
        logging_rounds: LOG_ROUNDS,
        load_tool: "wrk (HTTP/1.1 keep-alive)",
        load_seconds: RATIO_LOAD_SECONDS,
        load_connections: LOAD_CONNECTIONS,
        backend: format!(
            "nginx, 1 worker, GET / -> 200 with a {}-byte body, reached over HTTP/1.1 keep-alive",
            BODY.len()
        ),
    }
}

/// Part 1: nginx and the agent on the fleet, both running throughout, changed in
/// interleaved rounds; then each one's idle CPU and memory.
fn measure_apply(
    site: &Site<'_>,
    agent_bin: Result<&Path, &str>,
    vpcs: &[ClientVpc],
    background: &mut Vec<f64>,
) -> anyhow::Result<Vec<ApplySide>> {
    let mut lattice_side = ApplySide::new("lattice", "lattice", LATTICE_METHOD);
    let mut nginx_side = ApplySide::new("nginx", "peer", NGINX_METHOD);
    step(&format!(
        "bench control: nginx with {SERVICES} upstreams of {TARGETS_PER_GROUP} servers"
    ));
    let mut nginx = start_nginx_fleet(site, &mut nginx_side);
    step(&format!(
        "bench control: the agent on {SERVICES} services x {TARGETS_PER_GROUP} targets \
         ({} service networks, --vip-pool {VIP_POOL})",
        vpcs.len()
    ));
    let mut agent = match agent_bin {
        Ok(bin) => start_scale_agent(site, bin, vpcs, &mut lattice_side),
        Err(e) => {
            lattice_side.not_available = Some(e.to_owned());
            None
        }
    };

    let changes = changes();
    for (index, batch) in changes.chunks(CHANGES.div_ceil(APPLY_ROUNDS)).enumerate() {
        let round = index + 1;
        let lattice_first = round % 2 == 1;
        step(&format!(
            "bench control: apply round {round}/{APPLY_ROUNDS} ({} changes on {}, then on {})",
            batch.len(),
            if lattice_first { "lattice" } else { "nginx" },
            if lattice_first { "nginx" } else { "lattice" },
        ));
        background.push(idle_check()?);
        for lattice_turn in [lattice_first, !lattice_first] {
            if lattice_turn {
                apply_lattice(&mut agent, &mut lattice_side, round, batch);
            } else {
                apply_nginx(&mut nginx, &mut nginx_side, round, batch);
            }
        }
    }

    step("bench control: idle CPU and memory after the changes");
    if let Some(mut a) = agent {
        lattice_side.idle_cores = idle_cores(a.agent.pid());
        lattice_side.memory = Memory::of_tree(a.agent.pid());
        if let Err(e) = a.agent.check_running() {
            lattice_side.errors.push(format!("{e:#}"));
        }
        println!("    lattice: agent {}", a.agent.stop());
    }
    if let Some(mut n) = nginx {
        nginx_side.idle_cores = idle_cores(n.nginx.pid());
        nginx_side.memory = n.settled_memory();
        println!("    nginx: {}", n.nginx.stop());
    }
    for side in [&mut lattice_side, &mut nginx_side] {
        side.summarise();
        if let Some(m) = &side.memory {
            println!(
                "    {:8} RSS {:.1} MiB, peak {:.1} MiB ({} processes); idle CPU {}",
                side.name,
                ApplySide::mib(m.rss_kib),
                ApplySide::mib(m.peak_rss_kib),
                m.processes,
                report::cell(side.idle_cores, 3)
            );
        }
    }
    Ok(vec![lattice_side, nginx_side])
}

/// nginx on the fleet, or why not (in `side`).
fn start_nginx_fleet<'a>(site: &Site<'a>, side: &mut ApplySide) -> Option<NginxFleet<'a>> {
    match NginxFleet::start(&site.net.proxy, site.work) {
        Ok((fleet, up_after)) => {
            side.ready_s = Some(up_after.as_secs_f64());
            println!(
                "    nginx: accepting after {:.2} s; GET /probe answers \"gen 0\"",
                up_after.as_secs_f64()
            );
            Some(fleet)
        }
        Err(e) => {
            let e = brief(&e);
            println!("    nginx: did not start: {e}");
            side.not_available = Some(format!("starting nginx: {e}"));
            None
        }
    }
}

/// The agent on the fleet, or why not (in `side`).
fn start_scale_agent(
    site: &Site<'_>,
    bin: &Path,
    vpcs: &[ClientVpc],
    side: &mut ApplySide,
) -> Option<ScaleAgent> {
    let config = scale_config(vpcs, site.net.server.name());
    match ScaleAgent::start(site, bin, &config) {
        Ok((agent, ready, api_after)) => {
            side.ready_s = Some(ready.as_secs_f64());
            side.api_after_ready_s = Some(api_after.as_secs_f64());
            println!(
                "    lattice: agent ready after {:.2} s; control API answering {:.3} s later",
                ready.as_secs_f64(),
                api_after.as_secs_f64()
            );
            Some(agent)
        }
        Err(e) => {
            let e = brief(&e);
            println!("    lattice: not available: {e}");
            side.not_available = Some(e);
            None
        }
    }
}

/// The round's changes through the agent's API; an agent that exited is not asked again.
fn apply_lattice(
    agent: &mut Option<ScaleAgent>,
    side: &mut ApplySide,
    round: usize,
    batch: &[Change],
) {
    let Some(a) = agent else { return };
    for &change in batch {
        side.record(round, change, a.apply(change));
        if let Err(e) = a.agent.check_running() {
            println!("    lattice: {e:#}");
            side.errors.push(format!("round {round}: {e:#}"));
            *agent = None;
            return;
        }
        std::thread::sleep(PAUSE);
    }
    side.print_round(round);
}

/// The round's changes as nginx reloads; an nginx that exited is not asked again.
fn apply_nginx(
    nginx: &mut Option<NginxFleet<'_>>,
    side: &mut ApplySide,
    round: usize,
    batch: &[Change],
) {
    let Some(n) = nginx else { return };
    for &change in batch {
        side.record(round, change, n.apply(change));
        if let Err(e) = n.nginx.check_running() {
            println!("    nginx: {e:#}");
            side.errors.push(format!("round {round}: {e:#}"));
            *nginx = None;
            return;
        }
        std::thread::sleep(PAUSE);
    }
    side.print_round(round);
}

/// An error on at most [`ERROR_LINES`] lines: a refused document of 1,000 services
/// can list an error per resource.
fn brief(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= ERROR_LINES {
        return text;
    }
    format!(
        "{}\n      ... ({} more lines)",
        lines[..ERROR_LINES].join("\n"),
        lines.len() - ERROR_LINES
    )
}

/// The process CPU of `pid` and its children over [`IDLE_WINDOW`], in cores.
fn idle_cores(pid: u32) -> Option<f64> {
    let meter = CpuMeter::start(&[pid]).ok()?;
    std::thread::sleep(IDLE_WINDOW);
    meter.finish().ok()?.process_cores
}

/// The logging variant's document: `bench l7`'s service as `bench-log`, and with
/// logging on, its access log subscription to `log`.
fn logging_config(net: &BenchNet, certs: &Certs, log: Option<&Path>) -> String {
    let mut doc = lattice::preamble(net, &[LOG_SERVICE])
        + &l7::http_service(LOG_SERVICE, "authType: NONE", certs);
    if let Some(log) = log {
        let _ = write!(
            doc,
            "accessLogSubscriptions:\n  \
             - {{ resource: {LOG_SERVICE}, destination: \"file:{}\" }}\n",
            log.display()
        );
    }
    doc
}

/// One round of one logging variant: the agent on the variant's document, a check
/// request, the loads, (logging on) what reached the log, the agent stopped.
fn measure_logging(
    site: &Site<'_>,
    bin: &Path,
    certs: &Certs,
    v: &mut Variant,
    round: usize,
    logging: Logging,
) -> anyhow::Result<Option<LogRound>> {
    let name = logging.name();
    let log = site.work.join("access.jsonl");
    remove_logs(&log)?;
    let config = logging_config(
        site.net,
        certs,
        (logging == Logging::On).then_some(log.as_path()),
    );
    let started = lattice::start_agent(
        bin,
        site.bpffs_root,
        site.work,
        &format!("lattice-bench-{name}.yaml"),
        &config,
        AgentArgs {
            settings: &SETTINGS_ARGS,
            ..AgentArgs::default()
        },
    )?;
    let mut agent = started.agent;
    let vip = lattice::wait_service(site.net, &mut agent, &started.shown, LOG_SERVICE, &[80])?;
    check_answers(&site.net.client, vip)?;
    println!("    {name:11} agent ready; {LOG_SERVICE} at {vip}; GET / answers 2xx");
    v.destination.get_or_insert_with(|| match logging {
        Logging::Off => format!("{vip}:80 (HTTP/1.1)"),
        Logging::On => format!("{vip}:80 (HTTP/1.1), access log to {}", log.display()),
    });
    let dest = Dest {
        addr: vip,
        h1: 80,
        h2c: 80,
        tls: 443,
        headers: &[],
    };
    l7::run_round(
        ClientSide::tool(&site.net.client, None),
        site.work,
        v,
        round,
        dest,
        Some(&agent),
        &site.backend,
        &[Proto::Http1],
        RATIO_LOAD_SECONDS,
    );
    let logged = match logging {
        Logging::Off => None,
        Logging::On => {
            let requests = v
                .rounds
                .last()
                .map_or(0, |r| 1 + r.loads.values().map(|l| l.requests).sum::<u64>());
            Some(what_was_logged(site.work, &log, round, requests))
        }
    };
    let running = agent.check_running();
    println!("    {name:11} agent {}", agent.stop());
    running?;
    match logged {
        None => Ok(None),
        Some(Ok(logged)) => Ok(Some(logged)),
        Some(Err(e)) => {
            // Requests that were not logged do not measure logging.
            v.rounds.pop();
            Err(e)
        }
    }
}

/// Fails unless `GET /` through the service answers 2xx.
fn check_answers(client: &Netns, vip: Ipv4Addr) -> anyhow::Result<()> {
    let response =
        http_get(client, SocketAddr::from((vip, 80)), "/", CHECK_TIMEOUT).map_err(|e| {
            anyhow!(
                "GET / from the client namespace: {}",
                lattice_tests::error_chain(&e)
            )
        })?;
    if !(200..300).contains(&response.status) {
        let mut body = response.text();
        body.truncate(300);
        bail!("GET / got {}, not 2xx: {}", response.status, body.trim());
    }
    Ok(())
}

/// The log file and its rotated files.
fn log_files(log: &Path) -> Vec<PathBuf> {
    let rotated = (1..=LOG_KEEP).map(|n| {
        let mut name = log.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    });
    std::iter::once(log.to_owned()).chain(rotated).collect()
}

/// Removes the log of an earlier round.
fn remove_logs(log: &Path) -> anyhow::Result<()> {
    for file in log_files(log) {
        match fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", file.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

fn count_lines(log: &Path) -> u64 {
    log_files(log)
        .iter()
        .filter_map(|f| fs::read(f).ok())
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count() as u64)
        .sum()
}

/// The lines of the log once the writer has caught up (the count stopped moving for
/// 200 ms), the agent's dropped records, and a check that the lines are JSON records.
fn what_was_logged(
    work: &Path,
    log: &Path,
    round: usize,
    requests: u64,
) -> anyhow::Result<LogRound> {
    let deadline = Instant::now() + LOG_SETTLE_TIMEOUT;
    let mut lines = count_lines(log);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = count_lines(log);
        if now == lines || Instant::now() >= deadline {
            lines = now;
            break;
        }
        lines = now;
    }
    let dropped = api_call(&lattice::api_socket(work), "GET", "/stats", None)
        .ok()
        .filter(|a| a.status == 200)
        .and_then(|a| a.body["accessLogRecordsDropped"].as_u64());
    if lines == 0 {
        bail!(
            "the access log {} received no line: logging was not measured",
            log.display()
        );
    }
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let first = text.lines().next().unwrap_or_default();
    let record: Value = serde_json::from_str(first).with_context(|| {
        format!(
            "{}: the first line is not JSON: {first:.200}",
            log.display()
        )
    })?;
    if !record.is_object() {
        bail!(
            "{}: the first line is not a JSON object: {first:.200}",
            log.display()
        );
    }
    Ok(LogRound {
        round,
        requests,
        lines,
        dropped,
        sample: first.chars().take(400).collect(),
    })
}

/// The targets.
fn targets(
    apply: &[ApplySide],
    logging: &[Variant],
    access_log: &[LogRound],
) -> Vec<report::TargetResult> {
    let side = |name: &str| apply.iter().find(|s| s.name == name);
    let why_not = |name: &str| match side(name) {
        Some(ApplySide {
            not_available: Some(why),
            ..
        }) => format!("not measured: {why}"),
        _ => format!("not measured: see {name}'s errors above"),
    };
    let nginx = side("nginx").and_then(|s| s.summary.as_ref());
    let apply_target = |target: &'static str, key: &str, get: fn(&Spread) -> f64| {
        let value = side("lattice").and_then(|s| s.summary.as_ref()).map(get);
        report::TargetResult {
            target,
            value,
            limit: APPLY_LIMIT_MS,
            met: value.map(|v| v < APPLY_LIMIT_MS),
            detail: match value {
                Some(v) => format!(
                    "{v:.1} ms; nginx reload {}: {}",
                    nginx.map_or_else(
                        || "not measured".to_owned(),
                        |n| format!("{:.1} ms", get(n))
                    ),
                    apply_ratio(apply, key)
                        .map_or_else(|| "no ratio".to_owned(), |r| format!("{r:.2}x nginx"))
                ),
                None => why_not("lattice"),
            },
        }
    };
    let memory = side("lattice").and_then(|s| s.memory.as_ref());
    let nginx_rss = side("nginx")
        .and_then(|s| s.memory.as_ref())
        .map(|m| ApplySide::mib(m.rss_kib));
    let rss = memory.map(|m| ApplySide::mib(m.rss_kib));
    let memory_target = report::TargetResult {
        target:
            "agent memory (VmRSS after the changes) under 128 MiB at 1,000 services x 10 targets",
        value: rss,
        limit: RSS_LIMIT_MIB,
        met: rss.map(|r| r < RSS_LIMIT_MIB),
        detail: match memory {
            Some(m) => format!(
                "{:.1} MiB, peak {:.1} MiB; nginx (master + worker) {}: {}",
                ApplySide::mib(m.rss_kib),
                ApplySide::mib(m.peak_rss_kib),
                nginx_rss.map_or_else(|| "not measured".to_owned(), |n| format!("{n:.1} MiB")),
                apply_ratio(apply, "rss_mib")
                    .map_or_else(|| "no ratio".to_owned(), |r| format!("{r:.2}x nginx"))
            ),
            None => why_not("lattice"),
        },
    };

    let key = format!("{}.requests_per_s", Proto::Http1.key());
    let (on, off) = (Logging::On.name(), Logging::Off.name());
    let value = l7::ratio(logging, &key, on, off);
    let spread = |name: &str| {
        let s = logging.iter().find(|v| v.name == name)?.summary.get(&key)?;
        Some(format!(
            "{name} {:.0} ({:.0}-{:.0})",
            s.median, s.min, s.max
        ))
    };
    let lines: u64 = access_log.iter().map(|l| l.lines).sum();
    let requests: u64 = access_log.iter().map(|l| l.requests).sum();
    let dropped: u64 = access_log.iter().filter_map(|l| l.dropped).sum();
    let logging_target = report::TargetResult {
        target: "requests/s with access logging on >= 0.95x logging off (HTTP/1.1, 16 connections)",
        value,
        limit: LOG_RATIO_LIMIT,
        met: value.map(|v| v >= LOG_RATIO_LIMIT),
        detail: match (value, spread(on), spread(off)) {
            (Some(v), Some(a), Some(b)) => format!(
                "{v:.2}x: {a} vs {b} requests/s; {lines} lines logged for {requests} requests, \
                 {dropped} records dropped"
            ),
            _ => "not measured: see the logging variants above".to_owned(),
        },
    };
    vec![
        apply_target(
            "apply a change p50 < 200 ms (control API, 1,000 services x 10 targets)",
            "apply_p50_ms",
            |s| s.p50_ms,
        ),
        apply_target(
            "apply a change p99 < 200 ms (control API, 1,000 services x 10 targets)",
            "apply_p99_ms",
            |s| s.p99_ms,
        ),
        memory_target,
        logging_target,
    ]
}

impl Report {
    fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "apply at scale: {} services ({} TCP, {} HTTP) x {} targets in {} service networks; \
             {} changes per side in {} interleaved rounds; ratios are lattice / nginx; lower \
             is better",
            s.services,
            s.tcp_services,
            s.http_services,
            s.targets_per_group,
            s.service_networks,
            s.changes,
            s.apply_rounds
        );
        let _ = writeln!(out, "lattice: {LATTICE_METHOD}");
        let _ = writeln!(out, "nginx: {NGINX_METHOD}");
        render_apply(&mut out, &self.apply);

        let _ = writeln!(
            out,
            "\naccess logging: medians of {} rounds; wrk, {LOAD_CONNECTIONS} connections, 1 \
             thread, {RATIO_LOAD_SECONDS} s, then 1 connection ({LOAD_SECONDS} s); logging-on writes every request to a \
             JSON lines file; ratios are column / logging-off",
            s.logging_rounds
        );
        l7::render_tables(
            &mut out,
            &self.logging,
            &[Proto::Http1],
            &[Logging::Off.name()],
        );
        for l in &self.access_log {
            let _ = writeln!(
                out,
                "  logging-on round {}: {} lines logged for {} requests, {} records dropped",
                l.round,
                l.lines,
                l.requests,
                l.dropped.map_or_else(|| "?".to_owned(), |d| d.to_string())
            );
        }
        l7::render_problems(&mut out, &self.logging);
        report::render_targets(&mut out, &self.targets);
        out
    }
}

/// The apply table: a row per metric, a column per side and one of ratios; then what
/// could not be measured.
fn render_apply(out: &mut String, sides: &[ApplySide]) {
    const LABEL: usize = 40;
    const COL: usize = 12;
    let _ = write!(out, "{:LABEL$}", "");
    for side in sides {
        let _ = write!(out, "{:>COL$}", side.name);
    }
    let _ = writeln!(out, "{:>16}", "lattice/nginx");
    for m in APPLY_METRICS {
        let values: Vec<Option<f64>> = sides.iter().map(m.get).collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(out, "{:LABEL$}", m.label);
        for v in &values {
            let _ = write!(out, "{:>COL$}", report::cell(*v, m.decimals));
        }
        let ratio =
            apply_ratio(sides, m.key).map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}x"));
        let _ = writeln!(out, "{ratio:>16}");
    }
    for side in sides {
        let kinds: Vec<String> = side
            .by_kind
            .iter()
            .map(|(kind, s)| format!("{kind} {:.1} ({})", s.p50_ms, s.changes))
            .collect();
        if !kinds.is_empty() {
            let _ = writeln!(
                out,
                "{} p50 by kind of change, ms (changes): {}",
                side.name,
                kinds.join(", ")
            );
        }
    }
    for side in sides {
        if let Some(why) = &side.not_available {
            let _ = writeln!(out, "{}: not available: {why}", side.name);
        }
        for e in &side.errors {
            let _ = writeln!(out, "{}: measurement failed: {e}", side.name);
        }
    }
}
