//! Processes the benchmark starts, and what they cost.
//!
//! - [`Proc`]: a long-running server, peer or agent that is stopped on drop (SIGTERM, then
//!   SIGKILL for it and the children it had), also when the benchmark fails half-way.
//! - [`run_bounded`]: a client program run to completion, killed if it overruns.
//! - [`CpuMeter`]: system-wide busy CPU from `/proc/stat` (the kernel path's cost is
//!   softirq time, in no process) and the CPU of given processes from
//!   `/proc/<pid>/stat` (utime + stime), over one measurement.
//! - [`Memory`]: VmRSS / VmHWM of a process tree from `/proc/<pid>/status`.
//!
//! Processes are only ever signalled by the pid this module got when it started them (or
//! that pid's children, checked by start time so a reused pid is never hit).

use std::{
    collections::HashMap,
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde::Serialize;

/// A process started by the benchmark, stopped when dropped.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    /// How long it may take to exit after SIGTERM before it is killed.
    grace: Duration,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr going to `log`.
    ///
    /// It runs under `setpriv --pdeathsig TERM` (util-linux), so it is told to stop even
    /// when this process dies without running destructors (SIGKILL, a timeout's
    /// SIGTERM). The parent-death signal belongs to the spawning *thread*: call this
    /// from the main thread only.
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = with_parent_death_signal(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let shown = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {shown}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            grace: Duration::from_secs(3),
        })
    }

    /// Sets how long [`Proc::stop`] waits after SIGTERM.
    pub fn with_grace(mut self, grace: Duration) -> Proc {
        self.grace = grace;
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last lines of the process's output, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 8)
    }

    /// Fails (with the output's tail) if the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its output ends with:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// SIGTERM, wait up to the grace period, then SIGKILL the process and the children
    /// it had. Returns how it ended.
    pub fn stop(&mut self) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return format!("had exited: {status}");
        }
        let pid = self.pid();
        let children = descendants(pid);
        signal("TERM", pid);
        let deadline = Instant::now() + self.grace;
        let ended = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break None,
            }
        };
        let how = match ended {
            Some(status) => format!("stopped by SIGTERM: {status}"),
            None => {
                signal("KILL", pid);
                let _ = self.child.wait();
                format!("killed: no exit {:?} after SIGTERM", self.grace)
            }
        };
        // Children that outlived their parent (nginx workers do when the master is
        // killed): only those that are still the same processes.
        for (child, started) in children {
            if start_time(child) == Some(started) {
                signal("KILL", child);
            }
        }
        how
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `setpriv --pdeathsig TERM -- <cmd>`, with `cmd`'s environment and directory.
/// `ip netns exec` and setpriv exec (not fork) the next program, so the setting reaches
/// the server, the proxy or the agent itself, under the pid [`Proc`] knows.
fn with_parent_death_signal(cmd: &Command) -> Command {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(["--pdeathsig", "TERM", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The output of a program run with [`run_bounded`].
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// stdout and stderr together (some tools print results on either).
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion with its output in files under `work`; kills it (by pid) if
/// it has not finished within `timeout`.
pub fn run_bounded(
    mut cmd: Command,
    timeout: Duration,
    work: &Path,
    label: &str,
) -> anyhow::Result<Ran> {
    let out_path = work.join(format!("{label}.out"));
    let err_path = work.join(format!("{label}.err"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?);
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().with_context(|| format!("starting {shown}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => status.with_context(|| format!("waiting for {shown}"))?,
        Err(_) => {
            signal("KILL", pid);
            let _ = waiter.join();
            bail!("{shown} did not finish within {timeout:?} and was killed");
        }
    };
    let _ = waiter.join();
    Ok(Ran {
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

/// The last `n` lines of a file, indented.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("      {l}\n"))
        .collect()
}

/// Pins every thread of `pids` to `cpus` (a taskset list such as `1` or `0-1`).
pub fn set_affinity(pids: &[u32], cpus: &str) -> anyhow::Result<()> {
    for pid in pids {
        let out = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid.to_string()])
            .output()
            .context("running taskset (util-linux)")?;
        if !out.status.success() {
            bail!(
                "taskset -a -p -c {cpus} {pid} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Pins processes to one CPU while it lives; puts them back on every CPU when dropped.
pub struct Pinned {
    pids: Vec<u32>,
}

impl Pinned {
    pub fn new(pids: &[u32], cpu: usize) -> anyhow::Result<Pinned> {
        let pinned = Pinned {
            pids: pids.to_vec(),
        };
        set_affinity(pids, &cpu.to_string())?;
        Ok(pinned)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let all = format!("0-{}", cpus().saturating_sub(1));
        if let Err(e) = set_affinity(&self.pids, &all) {
            eprintln!("bench: restoring CPU affinity: {e:#}");
        }
    }
}

/// Online CPUs (the `cpuN` lines of /proc/stat).
pub fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| {
        fs::read_to_string("/proc/stat")
            .map(|s| {
                s.lines()
                    .filter(|l| {
                        l.strip_prefix("cpu")
                            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                    })
                    .count()
            })
            .unwrap_or(1)
            .max(1)
    })
}

/// Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`, 100 on Linux).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Ticks of all CPUs from the first line of /proc/stat.
#[derive(Clone, Copy, Debug, Default)]
struct SystemTimes {
    /// user + nice + system + irq + softirq
    busy: u64,
    softirq: u64,
    /// busy + idle + iowait + steal
    total: u64,
}

fn system_times() -> anyhow::Result<SystemTimes> {
    let text = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no `cpu` line")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let f = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is inside user already)
    let busy = f(0) + f(1) + f(2) + f(5) + f(6);
    Ok(SystemTimes {
        busy,
        softirq: f(6),
        total: busy + f(3) + f(4) + f(7),
    })
}

/// The fields of /proc/<pid>/stat after the command name: index 0 is field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of one process (all its threads), in ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Every descendant of `pid` now alive, with its start time.
pub fn descendants(pid: u32) -> Vec<(u32, u64)> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if let Some(t) = start_time(c) {
                found.push((c, t));
            }
            queue.push(c);
        }
    }
    found
}

/// `pid` and its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    std::iter::once(pid)
        .chain(descendants(pid).into_iter().map(|(p, _)| p))
        .collect()
}

/// CPU used during one measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Cpu {
    /// Wall-clock length of the measurement.
    pub seconds: f64,
    /// Busy time of all CPUs (user, system, irq, softirq) in cores: 1.0 = one CPU fully
    /// busy on average. Includes the load tools and servers, the same in every column.
    pub system_busy_cores: f64,
    /// The softirq part of it: where the kernel's packet path (and lattice's tc
    /// programs) run.
    pub softirq_cores: f64,
    /// utime + stime of the forwarding processes (the proxy, or the lattice agent) in
    /// cores; none for the direct baseline.
    pub process_cores: Option<f64>,
}

/// Samples CPU times at the start of a measurement; [`CpuMeter::finish`] gives the use.
pub struct CpuMeter {
    started: Instant,
    system: SystemTimes,
    pids: Vec<u32>,
    ticks: u64,
}

impl CpuMeter {
    /// `pids`: the processes whose own CPU is reported (with their children).
    pub fn start(pids: &[u32]) -> anyhow::Result<CpuMeter> {
        let pids: Vec<u32> = pids.iter().flat_map(|&p| tree(p)).collect();
        let ticks = pids.iter().filter_map(|&p| process_ticks(p)).sum();
        Ok(CpuMeter {
            started: Instant::now(),
            system: system_times()?,
            pids,
            ticks,
        })
    }

    pub fn finish(self) -> anyhow::Result<Cpu> {
        let seconds = self.started.elapsed().as_secs_f64();
        let now = system_times()?;
        let total = now.total.saturating_sub(self.system.total).max(1) as f64;
        let cores = cpus() as f64;
        let busy = now.busy.saturating_sub(self.system.busy) as f64 / total * cores;
        let softirq = now.softirq.saturating_sub(self.system.softirq) as f64 / total * cores;
        let process_cores = (!self.pids.is_empty()).then(|| {
            let ticks: u64 = self.pids.iter().filter_map(|&p| process_ticks(p)).sum();
            ticks.saturating_sub(self.ticks) as f64 / clk_tck() / seconds.max(1e-9)
        });
        Ok(Cpu {
            seconds,
            system_busy_cores: busy,
            softirq_cores: softirq,
            process_cores,
        })
    }
}

/// Resident memory of a process and its children.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    pub processes: usize,
    /// Sum of VmRSS.
    pub rss_kib: u64,
    /// Sum of VmHWM (each process's peak RSS).
    pub peak_rss_kib: u64,
}

impl Memory {
    pub fn of_tree(pid: u32) -> Option<Memory> {
        let pids = tree(pid);
        let rss: Vec<(u64, u64)> = pids
            .iter()
            .filter_map(|&p| Some((status_kib(p, "VmRSS")?, status_kib(p, "VmHWM")?)))
            .collect();
        (!rss.is_empty()).then(|| Memory {
            processes: rss.len(),
            rss_kib: rss.iter().map(|r| r.0).sum(),
            peak_rss_kib: rss.iter().map(|r| r.1).sum(),
        })
    }
}

/// A `Key:   1234 kB` line of /proc/<pid>/status.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Busy cores of the whole machine over `window`, to warn when something else runs.
pub fn background_load(window: Duration) -> anyhow::Result<f64> {
    let meter = CpuMeter::start(&[])?;
    std::thread::sleep(window);
    Ok(meter.finish()?.system_busy_cores)
}
