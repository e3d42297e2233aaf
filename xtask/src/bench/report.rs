//! What one run of `bench l4` found: the values per variant, their ratios against the
//! direct baseline and against each peer, the targets, printed as a table and
//! written as JSON.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use serde::Serialize;

use super::{
    lattice::Conntrack,
    load::{ConcurrentRate, ConnectRate, Latency, Throughput},
    procs::Memory,
};

/// One column of the table: a way from the client to the server.
#[derive(Debug, Serialize)]
pub struct Variant {
    pub name: &'static str,
    /// `baseline`, `peer` or `lattice`.
    pub role: &'static str,
    /// Where the client connects.
    pub destination: Option<String>,
    /// Why this variant could not be measured at all (lattice before its data path).
    pub not_available: Option<String>,
    /// Per metric (see [`METRICS`]): median, min and max over the rounds.
    pub summary: BTreeMap<&'static str, Summary>,
    /// Every round's measurements, in the order they ran.
    pub rounds: Vec<Round>,
    pub conntrack: Option<Conntrack>,
    /// Measurements that failed.
    pub errors: Vec<String>,
}

impl Variant {
    pub fn new(name: &'static str, role: &'static str) -> Variant {
        Variant {
            name,
            role,
            destination: None,
            not_available: None,
            summary: BTreeMap::new(),
            rounds: Vec::new(),
            conntrack: None,
            errors: Vec::new(),
        }
    }

    /// Fills [`Variant::summary`] from the rounds.
    pub fn summarise(&mut self) {
        self.summary = METRICS
            .iter()
            .filter_map(|m| {
                let mut values: Vec<f64> = self.rounds.iter().filter_map(|r| (m.get)(r)).collect();
                if values.is_empty() {
                    return None;
                }
                values.sort_by(f64::total_cmp);
                let n = values.len();
                let median = if n % 2 == 1 {
                    values[n / 2]
                } else {
                    (values[n / 2 - 1] + values[n / 2]) / 2.0
                };
                Some((
                    m.key,
                    Summary {
                        median,
                        min: values[0],
                        max: values[n - 1],
                        rounds: n,
                    },
                ))
            })
            .collect();
    }

    fn value(&self, metric: &Metric) -> Option<f64> {
        self.summary.get(metric.key).map(|s| s.median)
    }
}

/// One round of a variant: each measurement once.
#[derive(Debug, Default, Serialize)]
pub struct Round {
    /// 1-based round number.
    pub round: usize,
    pub throughput: Option<Throughput>,
    pub latency_pinned: Option<Latency>,
    pub latency_unpinned: Option<Latency>,
    /// Several ping-pong connections at once (when the benchmark measures it).
    pub concurrent: Option<ConcurrentRate>,
    pub connect: Option<ConnectRate>,
    /// The forwarding process (proxy with its workers, or the agent) after the round.
    pub memory: Option<Memory>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpus: usize,
    /// Busy cores of the whole machine during 0.5 s before each round, with nothing of
    /// the benchmark running: anything else running makes the numbers noisy.
    pub background_busy_cores: Vec<f64>,
}

impl Machine {
    /// This machine's kernel and CPUs, with the background load seen before each round.
    pub fn here(background_busy_cores: Vec<f64>) -> Machine {
        Machine {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            cpus: super::procs::cpus(),
            background_busy_cores,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub rounds: usize,
    pub iperf3_seconds: u32,
    pub iperf3_streams: u32,
    pub sockperf_seconds: u32,
    pub message_bytes: u32,
    pub latency_pinned_cpu: usize,
    pub connect_seconds: f64,
    pub connect_concurrency: usize,
    pub connect_max: usize,
    pub peer_workers: u32,
}

#[derive(Debug, Serialize)]
pub struct Ratio {
    pub metric: &'static str,
    pub variant: &'static str,
    pub reference: &'static str,
    /// variant's value / reference's value.
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct TargetResult {
    pub target: &'static str,
    /// The measured ratio or value the target is about.
    pub value: Option<f64>,
    pub limit: f64,
    /// None: not measured.
    pub met: Option<bool>,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub timestamp: String,
    pub machine: Machine,
    pub settings: Settings,
    pub variants: Vec<Variant>,
    pub ratios: Vec<Ratio>,
    pub targets: Vec<TargetResult>,
    pub duration_s: f64,
}

/// A row of the table.
struct Metric {
    key: &'static str,
    label: &'static str,
    decimals: usize,
    /// Whether the table shows its ratios (the JSON has them all).
    table_ratios: bool,
    get: fn(&Round) -> Option<f64>,
}

const METRICS: &[Metric] = &[
    Metric {
        key: "throughput_gbit_per_s",
        label: "bulk throughput, Gbit/s (iperf3, 1 stream)",
        decimals: 2,
        table_ratios: true,
        get: |r| Some(r.throughput.as_ref()?.gbit_per_s),
    },
    Metric {
        key: "throughput_system_busy_cores",
        label: "  system CPU busy during it, cores",
        decimals: 2,
        table_ratios: true,
        get: |r| Some(r.throughput.as_ref()?.cpu.system_busy_cores),
    },
    Metric {
        key: "throughput_softirq_cores",
        label: "  of which softirq, cores",
        decimals: 2,
        table_ratios: false,
        get: |r| Some(r.throughput.as_ref()?.cpu.softirq_cores),
    },
    Metric {
        key: "throughput_process_cores",
        label: "  proxy/agent process CPU, cores",
        decimals: 2,
        table_ratios: false,
        get: |r| r.throughput.as_ref()?.cpu.process_cores,
    },
    Metric {
        key: "throughput_gbit_per_s_per_busy_core",
        label: "  Gbit/s per busy core (system-wide)",
        decimals: 2,
        table_ratios: true,
        get: |r| Some(r.throughput.as_ref()?.gbit_per_s_per_busy_core),
    },
    Metric {
        key: "pinned_p50_us",
        label: "64 B round trip p50, us (pinned, 1 vCPU)",
        decimals: 1,
        table_ratios: true,
        get: |r| Some(r.latency_pinned.as_ref()?.p50_us),
    },
    Metric {
        key: "pinned_p99_us",
        label: "64 B round trip p99, us (pinned)",
        decimals: 1,
        table_ratios: true,
        get: |r| Some(r.latency_pinned.as_ref()?.p99_us),
    },
    Metric {
        key: "pinned_round_trips_per_s",
        label: "request/response rate, /s (pinned)",
        decimals: 0,
        table_ratios: true,
        get: |r| Some(r.latency_pinned.as_ref()?.round_trips_per_s),
    },
    Metric {
        key: "unpinned_p50_us",
        label: "64 B round trip p50, us (unpinned)",
        decimals: 1,
        table_ratios: true,
        get: |r| Some(r.latency_unpinned.as_ref()?.p50_us),
    },
    Metric {
        key: "unpinned_p99_us",
        label: "64 B round trip p99, us (unpinned)",
        decimals: 1,
        table_ratios: true,
        get: |r| Some(r.latency_unpinned.as_ref()?.p99_us),
    },
    Metric {
        key: "unpinned_round_trips_per_s",
        label: "request/response rate, /s (unpinned)",
        decimals: 0,
        table_ratios: true,
        get: |r| Some(r.latency_unpinned.as_ref()?.round_trips_per_s),
    },
    Metric {
        key: "concurrent_round_trips_per_s",
        label: "request/response rate, /s (8 connections)",
        decimals: 0,
        table_ratios: true,
        get: |r| Some(r.concurrent.as_ref()?.round_trips_per_s),
    },
    Metric {
        key: "concurrent_p50_us",
        label: "  64 B round trip p50 of a connection, us",
        decimals: 1,
        table_ratios: false,
        get: |r| Some(r.concurrent.as_ref()?.p50_us),
    },
    Metric {
        key: "concurrent_round_trips_per_busy_core",
        label: "  round trips/s per busy core",
        decimals: 0,
        table_ratios: true,
        get: |r| Some(r.concurrent.as_ref()?.round_trips_per_s_per_busy_core),
    },
    Metric {
        key: "connections_per_s",
        label: "connection setup rate, /s (4 clients)",
        decimals: 0,
        table_ratios: true,
        get: |r| Some(r.connect.as_ref()?.per_s),
    },
    Metric {
        key: "connection_p50_us",
        label: "  connection round p50, us",
        decimals: 1,
        table_ratios: false,
        get: |r| Some(r.connect.as_ref()?.p50_us),
    },
    Metric {
        key: "connections_system_busy_cores",
        label: "  system CPU busy during it, cores",
        decimals: 2,
        table_ratios: false,
        get: |r| Some(r.connect.as_ref()?.cpu.system_busy_cores),
    },
    Metric {
        key: "connections_process_cores",
        label: "  proxy/agent process CPU, cores",
        decimals: 2,
        table_ratios: false,
        get: |r| r.connect.as_ref()?.cpu.process_cores,
    },
    Metric {
        key: "connections_per_s_per_busy_core",
        label: "  connections/s per busy core",
        decimals: 0,
        table_ratios: true,
        get: |r| Some(r.connect.as_ref()?.per_s_per_busy_core),
    },
    Metric {
        key: "process_peak_rss_mib",
        label: "proxy/agent peak RSS, MiB",
        decimals: 1,
        table_ratios: true,
        get: |r| Some(r.memory.as_ref()?.peak_rss_kib as f64 / 1024.0),
    },
];

/// The references ratios are taken against: the baselines and each peer.
const REFERENCES: [&str; 4] = ["direct", "routed", "haproxy", "nginx"];

fn find<'a>(variants: &'a [Variant], name: &str) -> Option<&'a Variant> {
    variants.iter().find(|v| v.name == name)
}

fn ratio(variants: &[Variant], metric: &Metric, variant: &str, reference: &str) -> Option<f64> {
    let a = find(variants, variant)?.value(metric)?;
    let b = find(variants, reference)?.value(metric)?;
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// The ratio of `variant`'s median of metric `key` to `reference`'s.
pub fn ratio_of(variants: &[Variant], key: &str, variant: &str, reference: &str) -> Option<f64> {
    ratio(variants, metric(key), variant, reference)
}

pub fn ratios(variants: &[Variant]) -> Vec<Ratio> {
    ratios_against(variants, &REFERENCES)
}

/// Every metric's ratio of each variant to each of `references`.
pub fn ratios_against(variants: &[Variant], references: &[&'static str]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for metric in METRICS {
        for v in variants {
            for &reference in references {
                if v.name == reference {
                    continue;
                }
                if let Some(r) = ratio(variants, metric, v.name, reference) {
                    out.push(Ratio {
                        metric: metric.key,
                        variant: v.name,
                        reference,
                        ratio: r,
                    });
                }
            }
        }
    }
    out
}

fn metric(key: &str) -> &'static Metric {
    METRICS
        .iter()
        .find(|m| m.key == key)
        .expect("metric exists")
}

/// The targets for lattice.
pub fn targets(variants: &[Variant]) -> Vec<TargetResult> {
    let lattice = find(variants, "lattice");
    let why_not = || match lattice.and_then(|l| l.not_available.as_ref()) {
        Some(_) => "lattice not available (the reason is above)".to_owned(),
        None => "not measured (see the errors above)".to_owned(),
    };
    // The ratio of medians, and the values behind it with their spread over the rounds.
    let ratio_target = |target, key, reference, limit: f64, at_least: bool| {
        let m = metric(key);
        let value = ratio(variants, m, "lattice", reference);
        let spread = |name| {
            let s = find(variants, name)?.summary.get(key)?;
            Some(format!(
                "{name} {:.d$} ({:.d$}-{:.d$})",
                s.median,
                s.min,
                s.max,
                d = m.decimals
            ))
        };
        TargetResult {
            target,
            value,
            limit,
            met: value.map(|v| if at_least { v >= limit } else { v <= limit }),
            detail: match (value, spread("lattice"), spread(reference)) {
                (Some(v), Some(a), Some(b)) => format!("{v:.2}x: {a} vs {b}"),
                _ => why_not(),
            },
        }
    };
    let mut out = vec![
        ratio_target(
            "lattice throughput >= 0.9x direct",
            "throughput_gbit_per_s",
            "direct",
            0.9,
            true,
        ),
        ratio_target(
            "lattice p50 latency <= 1.1x direct (pinned)",
            "pinned_p50_us",
            "direct",
            1.1,
            false,
        ),
        ratio_target(
            "lattice p50 latency <= 1.1x direct (unpinned)",
            "unpinned_p50_us",
            "direct",
            1.1,
            false,
        ),
        ratio_target(
            "lattice throughput per CPU >= 2x HAProxy's (system-wide busy cores)",
            "throughput_gbit_per_s_per_busy_core",
            "haproxy",
            2.0,
            true,
        ),
    ];
    let flows = lattice.and_then(|l| l.conntrack.as_ref());
    out.push(TargetResult {
        target: "conntrack sized for 1 M flows",
        value: flows.map(|c| c.flows as f64),
        limit: 1_000_000.0,
        met: flows.map(|c| c.flows >= 1_000_000),
        detail: match flows {
            Some(c) => format!(
                "{} {} with {} entries = {} flows (2 entries per flow), {} of kernel memory",
                c.map,
                c.map_type,
                c.max_entries,
                c.flows,
                c.kernel_bytes
                    .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                    .unwrap_or_else(|| "unknown".into())
            ),
            None => why_not(),
        },
    });
    let memory = lattice.and_then(|l| {
        l.rounds
            .iter()
            .filter_map(|r| r.memory.clone())
            .max_by_key(|m| m.peak_rss_kib)
    });
    out.push(TargetResult {
        target: "agent memory (peak RSS) under 64 MiB",
        value: memory.as_ref().map(|m| m.peak_rss_kib as f64 / 1024.0),
        limit: 64.0,
        met: memory.as_ref().map(|m| m.peak_rss_kib < 64 * 1024),
        detail: match memory {
            Some(m) => format!(
                "peak {:.1} MiB, {:.1} MiB at the end of a round (VmHWM/VmRSS; the conntrack map is kernel memory)",
                m.peak_rss_kib as f64 / 1024.0,
                m.rss_kib as f64 / 1024.0
            ),
            None => why_not(),
        },
    });
    out
}

/// A table cell: the value with `decimals`, or `n/a`.
pub fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

impl Report {
    /// The table: per metric, the values, then one line of ratios per reference.
    pub fn render(&self) -> String {
        self.render_against(&REFERENCES)
    }

    /// [`Report::render`] with ratios against `references`.
    pub fn render_against(&self, references: &[&str]) -> String {
        const LABEL: usize = 44;
        const COL: usize = 14;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "medians of {} rounds; ratios are column / reference (e.g. \"x {}\" 2.00x = \
             twice {}'s value); lower is better for latency, CPU and memory",
            self.settings.rounds,
            references.last().unwrap_or(&"haproxy"),
            references.last().unwrap_or(&"haproxy"),
        );
        let _ = write!(out, "{:LABEL$}", "");
        for v in &self.variants {
            let _ = write!(out, "{:>COL$}", v.name);
        }
        out.push('\n');
        for m in METRICS {
            let values: Vec<Option<f64>> = self.variants.iter().map(|v| v.value(m)).collect();
            if values.iter().all(Option::is_none) {
                continue;
            }
            let _ = write!(out, "{:LABEL$}", m.label);
            for v in &values {
                let _ = write!(out, "{:>COL$}", cell(*v, m.decimals));
            }
            out.push('\n');
            if !m.table_ratios {
                continue;
            }
            if self.settings.rounds > 1 {
                let _ = write!(out, "{:LABEL$}", "      min-max of the rounds");
                for v in &self.variants {
                    let text = v.summary.get(m.key).map_or_else(
                        || "n/a".to_owned(),
                        |s| format!("{:.d$}-{:.d$}", s.min, s.max, d = m.decimals),
                    );
                    let _ = write!(out, "{text:>COL$}");
                }
                out.push('\n');
            }
            for &reference in references {
                let ratios: Vec<Option<f64>> = self
                    .variants
                    .iter()
                    .map(|v| ratio(&self.variants, m, v.name, reference))
                    .collect();
                if ratios.iter().all(Option::is_none) {
                    continue;
                }
                let _ = write!(out, "{:LABEL$}", format!("      x {reference}"));
                for (v, r) in self.variants.iter().zip(&ratios) {
                    let text = if v.name == reference {
                        "-".to_owned()
                    } else {
                        r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}x"))
                    };
                    let _ = write!(out, "{text:>COL$}");
                }
                out.push('\n');
            }
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "unpinned latency depends on whether the scheduler keeps both ends on one vCPU \
             (each cross-vCPU hand-off costs ~45 us here): compare pinned with pinned"
        );
        for v in &self.variants {
            if let Some(why) = &v.not_available {
                let _ = writeln!(out, "{}: not available: {why}", v.name);
            }
            for e in &v.errors {
                let _ = writeln!(out, "{}: measurement failed: {e}", v.name);
            }
        }
        render_targets(&mut out, &self.targets);
        out
    }
}

/// `targets:` and a line per target: met, NOT MET or not measured, and its detail.
pub fn render_targets(out: &mut String, targets: &[TargetResult]) {
    let _ = writeln!(out, "targets:");
    for t in targets {
        let state = match t.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        let _ = writeln!(out, "  {state:<13} {}: {}", t.target, t.detail);
    }
}

/// Writes a report as pretty JSON to `path`, making its folder.
pub fn write_json(path: &Path, report: &impl Serialize) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")?;
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ` and `YYYY-MM-DDTHH:MM:SSZ` of now (UTC).
pub fn timestamps() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (
        format!("{y:04}{mo:02}{d:02}T{h:02}{m:02}{s:02}Z"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z"),
    )
}
