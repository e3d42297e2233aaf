//! The servers in the server namespace and the three measurements the client runs
//! against one destination address: bulk throughput (iperf3), small-message
//! request/response latency and rate (sockperf ping-pong), and connection setup rate (a
//! bounded loop of this module's own client against its own responder).

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use lattice_tests::{Cgroup, Netns};
use serde::Serialize;

use super::{
    net::{self, BenchNet, CLIENT_ADDR, CONNECT_PORT, IPERF3_PORT, SERVER_ADDR, SOCKPERF_PORT},
    procs::{run_bounded, Cpu, CpuMeter, Pinned, Proc},
};

/// How long each measurement runs.
pub const IPERF3_SECONDS: u32 = 3;
pub const SOCKPERF_SECONDS: u32 = 2;
pub const CONNECT_SECONDS: f64 = 2.0;
/// Ping-pong connections at once for the concurrent request/response rate (the
/// report's label says 8).
pub const CONCURRENT_CONNECTIONS: usize = 8;
/// Message size of the request/response measurement (bytes, both ways).
pub const MESSAGE_BYTES: u32 = 64;
/// Client threads of the connection-rate loop, each with one connection at a time.
pub const CONNECT_CONCURRENCY: usize = 4;
/// Upper bound of connections per thread (the loop also stops at the time limit).
pub const CONNECT_MAX_PER_THREAD: usize = 20_000;
/// Responder threads accepting on the same socket.
const RESPONDER_THREADS: usize = 2;

/// The servers every variant reaches: iperf3 and sockperf processes, and the
/// connection-rate responder (threads of this process whose socket lives in the server
/// namespace). Stopped on drop.
pub struct Servers {
    pub iperf3: Proc,
    pub sockperf: Proc,
    _responder: Responder,
}

impl Servers {
    pub fn start(net: &BenchNet, work: &Path) -> anyhow::Result<Servers> {
        let mut iperf3 = net.server.command("iperf3");
        iperf3.args(["-s", "-B", &SERVER_ADDR.to_string(), "-p"]);
        iperf3.arg(IPERF3_PORT.to_string());
        let iperf3 = Proc::spawn("iperf3 server", iperf3, &work.join("iperf3-server.log"))?;

        let mut sockperf = net.server.command("sockperf");
        sockperf.args(["sr", "--tcp", "-i", &SERVER_ADDR.to_string(), "-p"]);
        sockperf.arg(SOCKPERF_PORT.to_string());
        let sockperf = Proc::spawn(
            "sockperf server",
            sockperf,
            &work.join("sockperf-server.log"),
        )?;

        let responder =
            Responder::start(&net.server, SocketAddrV4::new(SERVER_ADDR, CONNECT_PORT))?;
        let mut servers = Servers {
            iperf3,
            sockperf,
            _responder: responder,
        };
        for (_, port) in net::PORTS {
            net::wait_tcp(
                &net.server,
                SocketAddrV4::new(SERVER_ADDR, port),
                Duration::from_secs(10),
            )?;
        }
        servers.iperf3.check_running()?;
        servers.sockperf.check_running()?;
        Ok(servers)
    }
}

/// Accepts a connection, reads one byte, writes it back and closes: the server side of
/// one connection-rate round. The server closes first, so TIME_WAIT lands on the
/// server side and the client (and a proxy's upstream side) can reuse ports at once.
struct Responder {
    ns: Netns,
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Responder {
    fn start(ns: &Netns, addr: SocketAddrV4) -> anyhow::Result<Responder> {
        let listener = ns
            .run(|| TcpListener::bind(addr))?
            .with_context(|| format!("binding the responder to {addr} in {}", ns.name()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..RESPONDER_THREADS {
            let listener = listener.try_clone()?;
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut byte = [0u8; 1];
                    if stream.read_exact(&mut byte).is_ok() {
                        let _ = stream.write_all(&byte);
                    }
                }
            }));
        }
        Ok(Responder {
            ns: ns.clone(),
            addr,
            stop,
            threads,
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake each thread blocked in accept.
        for _ in &self.threads {
            let addr = SocketAddr::V4(self.addr);
            let _ = self
                .ns
                .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(1)));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Where a measurement's client program runs: a namespace, optionally inside a cgroup
/// (lattice's cgroup hooks act on the sockets of a cgroup's processes), bound to an
/// address of the namespace or not.
#[derive(Clone, Copy)]
pub struct ClientSide<'a> {
    pub netns: &'a Netns,
    pub cgroup: Option<&'a Cgroup>,
    pub bind: Option<Ipv4Addr>,
}

impl<'a> ClientSide<'a> {
    /// The l4/l7 benchmarks' client: the client namespace, bound to the VPC address.
    pub fn vpc(netns: &'a Netns) -> ClientSide<'a> {
        ClientSide {
            netns,
            cgroup: None,
            bind: Some(CLIENT_ADDR),
        }
    }

    /// A load tool's side: the namespace `netns`, in `cgroup` when given, with the
    /// address the tool picks.
    pub fn tool(netns: &'a Netns, cgroup: Option<&'a Cgroup>) -> ClientSide<'a> {
        ClientSide {
            netns,
            cgroup,
            bind: None,
        }
    }

    /// A command running `program` on this side.
    pub fn command(&self, program: &str) -> std::process::Command {
        match self.cgroup {
            Some(cgroup) => cgroup.command_in(self.netns, program),
            None => self.netns.command(program),
        }
    }
}

/// Bulk TCP throughput, one stream, client to server.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub gbit_per_s: f64,
    pub retransmits: u64,
    pub cpu: Cpu,
    /// Throughput divided by the system's busy cores.
    pub gbit_per_s_per_busy_core: f64,
}

/// `iperf3 -c DST -t N -J` from the client side (bound to its address, if any).
pub fn iperf3(
    client: &ClientSide<'_>,
    dst: Ipv4Addr,
    cost_pids: &[u32],
    work: &Path,
    label: &str,
) -> anyhow::Result<Throughput> {
    let mut cmd = client.command("iperf3");
    cmd.args(["-c", &dst.to_string(), "-p", &IPERF3_PORT.to_string()]);
    if let Some(bind) = client.bind {
        cmd.args(["-B", &bind.to_string()]);
    }
    cmd.args(["-t", &IPERF3_SECONDS.to_string(), "-J"])
        .args(["--connect-timeout", "3000"]);
    let meter = CpuMeter::start(cost_pids)?;
    let ran = run_bounded(
        cmd,
        Duration::from_secs(u64::from(IPERF3_SECONDS) + 20),
        work,
        &format!("iperf3-{label}"),
    )?;
    let cpu = meter.finish()?;
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).with_context(|| {
        format!(
            "iperf3 to {dst} ({}) printed no JSON: {}",
            ran.status,
            ran.stderr.trim()
        )
    })?;
    if let Some(error) = json["error"].as_str() {
        bail!("iperf3 to {dst} failed: {error}");
    }
    let bps = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 JSON has no end.sum_received.bits_per_second")?;
    let gbit_per_s = bps / 1e9;
    Ok(Throughput {
        gbit_per_s,
        retransmits: json["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        gbit_per_s_per_busy_core: gbit_per_s / cpu.system_busy_cores.max(1e-9),
        cpu,
    })
}

/// Round trips of small messages, one outstanding at a time.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// The CPU the client, the server and the forwarding process ran on; none if
    /// unpinned.
    pub pinned_cpu: Option<usize>,
    pub message_bytes: u32,
    pub p50_us: f64,
    pub p99_us: f64,
    pub avg_us: f64,
    pub max_us: f64,
    pub observations: u64,
    /// Request/response round trips per second (ReceivedMessages / valid duration).
    pub round_trips_per_s: f64,
    pub cpu: Cpu,
}

/// `sockperf ping-pong --tcp --full-rtt` from the client side. With `pin`, the client
/// runs on that CPU and `pin_pids` (the server and the forwarding processes) are moved
/// there for the measurement.
pub fn sockperf(
    client: &ClientSide<'_>,
    dst: Ipv4Addr,
    pin: Option<(usize, &[u32])>,
    cost_pids: &[u32],
    work: &Path,
    label: &str,
) -> anyhow::Result<Latency> {
    let _pinned = match pin {
        Some((cpu, pids)) => Some(Pinned::new(pids, cpu)?),
        None => None,
    };
    let cmd = sockperf_command(client, dst, pin.map(|(cpu, _)| cpu));
    let meter = CpuMeter::start(cost_pids)?;
    let ran = run_bounded(
        cmd,
        Duration::from_secs(u64::from(SOCKPERF_SECONDS) + 20),
        work,
        &format!("sockperf-{label}"),
    )?;
    let cpu = meter.finish()?;
    let text = ran.all_output();
    let parsed = parse_sockperf(&text).with_context(|| {
        format!(
            "sockperf to {dst} ({}): unexpected output:\n{}",
            ran.status,
            text.lines().rev().take(12).collect::<Vec<_>>().join("\n")
        )
    })?;
    Ok(Latency {
        pinned_cpu: pin.map(|(cpu, _)| cpu),
        message_bytes: MESSAGE_BYTES,
        cpu,
        ..parsed
    })
}

/// The sockperf ping-pong client command, on CPU `pin` if given.
fn sockperf_command(client: &ClientSide<'_>, dst: Ipv4Addr, pin: Option<usize>) -> Command {
    let mut cmd = match pin {
        Some(cpu) => {
            let mut c = client.command("taskset");
            c.args(["-c", &cpu.to_string(), "sockperf"]);
            c
        }
        None => client.command("sockperf"),
    };
    cmd.args(["ping-pong", "--tcp", "--full-rtt"]).args([
        "-i",
        &dst.to_string(),
        "-p",
        &SOCKPERF_PORT.to_string(),
    ]);
    if let Some(bind) = client.bind {
        cmd.args(["--client_ip", &bind.to_string()]);
    }
    cmd.args(["-m", &MESSAGE_BYTES.to_string()])
        .args(["-t", &SOCKPERF_SECONDS.to_string()]);
    cmd
}

/// Request/response round trips of several connections at once (sockperf ping-pong
/// clients side by side, unpinned): the rate the CPUs sustain, where one connection's
/// rate is bound by each round trip's wake-ups.
#[derive(Clone, Debug, Serialize)]
pub struct ConcurrentRate {
    pub connections: usize,
    pub message_bytes: u32,
    /// The clients' round trips per second, summed.
    pub round_trips_per_s: f64,
    /// The median of the clients' p50 round trips.
    pub p50_us: f64,
    pub cpu: Cpu,
    pub round_trips_per_s_per_busy_core: f64,
}

/// `connections` sockperf ping-pong clients at once against `dst`.
pub fn sockperf_concurrent(
    client: &ClientSide<'_>,
    dst: Ipv4Addr,
    connections: usize,
    cost_pids: &[u32],
    work: &Path,
    label: &str,
) -> anyhow::Result<ConcurrentRate> {
    let meter = CpuMeter::start(cost_pids)?;
    let runs: Vec<_> = (0..connections)
        .map(|i| {
            let cmd = sockperf_command(client, dst, None);
            let (work, label) = (work.to_owned(), format!("sockperf-{label}-c{i}"));
            std::thread::spawn(move || {
                run_bounded(
                    cmd,
                    Duration::from_secs(u64::from(SOCKPERF_SECONDS) + 20),
                    &work,
                    &label,
                )
            })
        })
        .collect();
    let mut parsed = Vec::new();
    for run in runs {
        let ran = run
            .join()
            .map_err(|_| anyhow::anyhow!("a sockperf thread panicked"))??;
        let text = ran.all_output();
        parsed.push(parse_sockperf(&text).with_context(|| {
            format!(
                "sockperf to {dst} ({}): unexpected output:\n{}",
                ran.status,
                text.lines().rev().take(12).collect::<Vec<_>>().join("\n")
            )
        })?);
    }
    let cpu = meter.finish()?;
    let round_trips_per_s: f64 = parsed.iter().map(|l| l.round_trips_per_s).sum();
    let mut p50s: Vec<f64> = parsed.iter().map(|l| l.p50_us).collect();
    p50s.sort_by(f64::total_cmp);
    Ok(ConcurrentRate {
        connections,
        message_bytes: MESSAGE_BYTES,
        round_trips_per_s,
        p50_us: p50s.get(p50s.len() / 2).copied().unwrap_or(f64::NAN),
        round_trips_per_s_per_busy_core: round_trips_per_s / cpu.system_busy_cores.max(1e-9),
        cpu,
    })
}

/// The numbers of sockperf's summary (times in usec, round trips with --full-rtt).
fn parse_sockperf(text: &str) -> anyhow::Result<Latency> {
    // sockperf: [Valid Duration] RunTime=1.550 sec; SentMessages=20013; ReceivedMessages=20013
    let valid = text
        .lines()
        .find(|l| l.contains("[Valid Duration]"))
        .context("no [Valid Duration] line")?;
    let runtime = number_after(valid, "RunTime=").context("no RunTime")?;
    let received = number_after(valid, "ReceivedMessages=").context("no ReceivedMessages")?;
    let percentile = |p: &str| {
        text.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))
            .and_then(|l| number_after(l, "="))
            .with_context(|| format!("no percentile {p}"))
    };
    let max = text
        .lines()
        .find(|l| l.contains("<MAX> observation"))
        .and_then(|l| number_after(l, "="))
        .context("no <MAX> observation")?;
    Ok(Latency {
        pinned_cpu: None,
        message_bytes: MESSAGE_BYTES,
        p50_us: percentile("50.000")?,
        p99_us: percentile("99.000")?,
        avg_us: number_after(text, "avg-rtt=").context("no avg-rtt")?,
        max_us: max,
        observations: received as u64,
        round_trips_per_s: received / runtime.max(1e-9),
        cpu: Cpu {
            seconds: 0.0,
            system_busy_cores: 0.0,
            softirq_cores: 0.0,
            process_cores: None,
        },
    })
}

/// The number right after `key` in `text` (leading spaces skipped).
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = text[text.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Connections opened, used for one round trip and closed, per second.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectRate {
    pub concurrency: usize,
    pub connections: u64,
    pub failures: u64,
    pub per_s: f64,
    /// Of one whole round: connect, 1-byte request, 1-byte reply, server's close seen.
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu: Cpu,
    pub per_s_per_busy_core: f64,
}

/// [`CONNECT_CONCURRENCY`] threads in the client namespace, each doing rounds against
/// `dst`'s responder port until [`CONNECT_SECONDS`] or [`CONNECT_MAX_PER_THREAD`].
pub fn connect_rate(
    client: &Netns,
    dst: Ipv4Addr,
    cost_pids: &[u32],
) -> anyhow::Result<ConnectRate> {
    let addr = SocketAddr::V4(SocketAddrV4::new(dst, CONNECT_PORT));
    let meter = CpuMeter::start(cost_pids)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(CONNECT_SECONDS);
    let threads: Vec<_> = (0..CONNECT_CONCURRENCY)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || {
                client.run(move || {
                    let mut times = Vec::with_capacity(CONNECT_MAX_PER_THREAD);
                    let mut failures = 0u64;
                    let mut last_error = None;
                    while Instant::now() < deadline && times.len() < CONNECT_MAX_PER_THREAD {
                        let t0 = Instant::now();
                        match one_round(addr) {
                            Ok(()) => times.push(t0.elapsed().as_micros() as u32),
                            Err(e) => {
                                failures += 1;
                                last_error = Some(e.to_string());
                                if failures > 100 {
                                    break;
                                }
                            }
                        }
                    }
                    (times, failures, last_error)
                })
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut failures = 0;
    let mut last_error = None;
    for t in threads {
        let (mut t_times, t_failures, t_error) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a connection-rate thread panicked"))??;
        times.append(&mut t_times);
        failures += t_failures;
        last_error = last_error.or(t_error);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = meter.finish()?;
    if times.is_empty() {
        bail!(
            "no connection to {addr} completed: {}",
            last_error.unwrap_or_default()
        );
    }
    if failures > 100 {
        bail!(
            "more than 100 connections to {addr} failed, the last with: {}",
            last_error.unwrap_or_default()
        );
    }
    times.sort_unstable();
    let pct = |p: f64| f64::from(times[((times.len() - 1) as f64 * p).round() as usize]);
    let per_s = times.len() as f64 / elapsed;
    Ok(ConnectRate {
        concurrency: CONNECT_CONCURRENCY,
        connections: times.len() as u64,
        failures,
        per_s,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        per_s_per_busy_core: per_s / cpu.system_busy_cores.max(1e-9),
        cpu,
    })
}

/// One connection round; the server closes first, the client closes after seeing EOF
/// (a passive close: no TIME_WAIT on the client's ports).
fn one_round(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"x")?;
    let mut buf = [0u8; 8];
    let mut got = 0;
    loop {
        match stream.read(&mut buf)? {
            0 => break,
            n => got += n,
        }
    }
    if got != 1 {
        return Err(std::io::Error::other(format!(
            "expected a 1-byte reply, got {got} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sockperf_summary() {
        let text = "\
sockperf: [Valid Duration] RunTime=1.550 sec; SentMessages=20013; ReceivedMessages=20013
sockperf: \x1b[2;35m====> avg-rtt=77.419 (std-dev=30.945)\x1b[0m
sockperf: ---> <MAX> observation = 2668.449
sockperf: ---> percentile 99.000 =  130.112
sockperf: ---> percentile 50.000 =   75.041
";
        let l = parse_sockperf(text).unwrap();
        assert_eq!(l.p50_us, 75.041);
        assert_eq!(l.p99_us, 130.112);
        assert_eq!(l.avg_us, 77.419);
        assert_eq!(l.max_us, 2668.449);
        assert_eq!(l.observations, 20013);
        assert!((l.round_trips_per_s - 20013.0 / 1.55).abs() < 1e-6);
    }
}
