//! The Prometheus text exposition (format 0.0.4) of lattice's metrics: a pure function
//! of the config, the proxy's counters, target health and the kernel's counters.
//!
//! Names are Lattice's CloudWatch metrics (namespace `AWS/VpcLattice`) in Prometheus'
//! style, with Lattice's dimensions as labels:
//!
//! | metric | Lattice | labels | source |
//! | --- | --- | --- | --- |
//! | `lattice_total_request_count_total` | TotalRequestCount | service or target_group | proxy |
//! | `lattice_http_code_count_total{code_class="2xx"}` ... | HTTPCode_2XX_Count, 4XX, 5XX | service or target_group | proxy |
//! | `lattice_request_time_seconds` (histogram) | RequestTime | service or target_group | proxy |
//! | `lattice_active_connections` | ActiveConnectionCount | service | proxy (HTTP, HTTPS, TLS listeners) |
//! | `lattice_total_connection_count_total` | TotalConnectionCount | service, path | proxy (`path="l7"`) and kernel (`path="kernel"`, TCP listeners) |
//! | `lattice_processed_bytes_total{direction}` | ProcessedBytes | service or target_group, path | proxy (request and response body bytes forwarded, streamed or not) and kernel (IP bytes) |
//! | `lattice_healthy_hosts`, `lattice_unhealthy_hosts` | HealthyHostCount, UnHealthyHostCount | target_group | health checks |
//! | `lattice_kernel_target_*` | (per target) | target_group, target | kernel per-CPU counters, summed |
//! | `lattice_kernel_refused_packets_total` | (refusals) | vpc, reason | kernel |
//! | `lattice_kernel_conntrack_entries`, `lattice_kernel_conntrack_swept_entries_total` | (flows, two entries each) | - | the agent's conntrack sweeps |
//! | `lattice_access_log_records_dropped_total` | (access logs) | - | access log queues |
//!
//! Every series also carries the ARN of its resource (`service_arn`,
//! `target_group_arn`) so that names reused across accounts stay apart.

use std::fmt::Write as _;

use super::counters::{ProxyMetrics, Totals, REQUEST_TIME_BUCKETS};
use crate::{
    config::Config,
    dataplane::{compile::key_of, conntrack::SweepStats, Inspection},
    health::{GroupKey, HealthSnapshot, TargetState},
    resolve::Resolved,
};

/// Writes one metric family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the text format requires.
fn esc(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `{k="v",...}` from pairs.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The whole page.
pub fn render(
    config: &Config,
    resolved: &Resolved,
    proxy: &ProxyMetrics,
    health: &HealthSnapshot,
    kernel: Option<&Inspection>,
    sweeps: &SweepStats,
    log_drops: u64,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // (labels, counters) of every service, then of every target group, read once.
    let services: Vec<(String, Totals)> = resolved
        .services
        .iter()
        .zip(&proxy.services)
        .map(|(s, c)| {
            let labels = labels(&[("service", &s.name), ("service_arn", &s.arn)]);
            (labels, c.totals())
        })
        .collect();
    let groups: Vec<(String, Totals)> = resolved
        .target_groups
        .iter()
        .zip(&proxy.target_groups)
        .map(|(g, c)| {
            let labels = labels(&[("target_group", &g.name), ("target_group_arn", &g.arn)]);
            (labels, c.totals())
        })
        .collect();
    let both = || services.iter().chain(&groups);

    family(
        &mut out,
        "lattice_total_request_count_total",
        "counter",
        "HTTP requests answered (Lattice TotalRequestCount).",
    );
    for (l, c) in both() {
        let _ = writeln!(out, "lattice_total_request_count_total{l} {}", c.requests);
    }

    family(
        &mut out,
        "lattice_http_code_count_total",
        "counter",
        "HTTP responses by status class (Lattice HTTPCode_2XX_Count, HTTPCode_4XX_Count, HTTPCode_5XX_Count).",
    );
    for (l, c) in both() {
        for (class, n) in [
            ("2xx", c.http_2xx),
            ("3xx", c.http_3xx),
            ("4xx", c.http_4xx),
            ("5xx", c.http_5xx),
        ] {
            let l = l.replace('}', &format!(",code_class=\"{class}\"}}"));
            let _ = writeln!(out, "lattice_http_code_count_total{l} {n}");
        }
    }

    family(
        &mut out,
        "lattice_request_time_seconds",
        "histogram",
        "Time from a request's arrival to its response head (Lattice RequestTime).",
    );
    for (l, c) in both() {
        let (buckets, sum) = (&c.request_time_buckets, c.request_time_sum);
        let bounds = REQUEST_TIME_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_owned()));
        for (bound, n) in bounds.zip(buckets) {
            let l = l.replace('}', &format!(",le=\"{bound}\"}}"));
            let _ = writeln!(out, "lattice_request_time_seconds_bucket{l} {n}");
        }
        let _ = writeln!(out, "lattice_request_time_seconds_sum{l} {sum}");
        let _ = writeln!(
            out,
            "lattice_request_time_seconds_count{l} {}",
            buckets.last().copied().unwrap_or(0)
        );
    }

    family(
        &mut out,
        "lattice_active_connections",
        "gauge",
        "Client connections open to the agent's listeners (Lattice ActiveConnectionCount).",
    );
    for (l, c) in &services {
        let _ = writeln!(
            out,
            "lattice_active_connections{l} {}",
            c.active_connections.max(0)
        );
    }

    // The kernel's listener counters per service (TCP listeners).
    let kernel_services: Vec<(String, u64, u64, u64)> = kernel
        .map(|k| {
            resolved
                .services
                .iter()
                .map(|s| {
                    let key = key_of(&s.id);
                    let (mut conns, mut bytes_in, mut bytes_out) = (0, 0, 0);
                    for row in k.listeners.iter().filter(|r| r.service == key) {
                        conns += row.traffic.connections;
                        bytes_in += row.traffic.bytes_in;
                        bytes_out += row.traffic.bytes_out;
                    }
                    (
                        labels(&[("service", &s.name), ("service_arn", &s.arn)]),
                        conns,
                        bytes_in,
                        bytes_out,
                    )
                })
                .collect()
        })
        .unwrap_or_default();

    family(
        &mut out,
        "lattice_total_connection_count_total",
        "counter",
        "Client connections accepted (Lattice TotalConnectionCount): by the agent (path=l7) or by the kernel's TCP listeners (path=kernel).",
    );
    for (l, c) in &services {
        let l = l.replace('}', ",path=\"l7\"}");
        let _ = writeln!(
            out,
            "lattice_total_connection_count_total{l} {}",
            c.total_connections
        );
    }
    for (l, conns, _, _) in &kernel_services {
        let l = l.replace('}', ",path=\"kernel\"}");
        let _ = writeln!(out, "lattice_total_connection_count_total{l} {conns}");
    }

    family(
        &mut out,
        "lattice_processed_bytes_total",
        "counter",
        "Bytes carried (Lattice ProcessedBytes), by direction: HTTP body bytes the agent forwarded (path=l7), IP bytes through the kernel's TCP listeners (path=kernel).",
    );
    for (l, c) in both() {
        for (direction, n) in [("in", c.bytes_in), ("out", c.bytes_out)] {
            let l = l.replace('}', &format!(",path=\"l7\",direction=\"{direction}\"}}"));
            let _ = writeln!(out, "lattice_processed_bytes_total{l} {n}");
        }
    }
    for (l, _, bytes_in, bytes_out) in &kernel_services {
        for (direction, n) in [("in", bytes_in), ("out", bytes_out)] {
            let l = l.replace(
                '}',
                &format!(",path=\"kernel\",direction=\"{direction}\"}}"),
            );
            let _ = writeln!(out, "lattice_processed_bytes_total{l} {n}");
        }
    }

    for (name, lattice, healthy) in [
        ("lattice_healthy_hosts", "HealthyHostCount", true),
        ("lattice_unhealthy_hosts", "UnHealthyHostCount", false),
    ] {
        family(
            &mut out,
            name,
            "gauge",
            &format!(
                "Targets of the group that are {} (Lattice {lattice}).",
                if healthy { "healthy" } else { "unhealthy" }
            ),
        );
        for (group, rg) in config.target_groups().iter().zip(&resolved.target_groups) {
            let states = health.group(&GroupKey::of(group));
            let n = states
                .map(|g| {
                    g.targets
                        .iter()
                        .filter(|t| {
                            if healthy {
                                t.state == TargetState::Healthy
                            } else {
                                t.state == TargetState::Unhealthy
                            }
                        })
                        .count()
                })
                .unwrap_or(0);
            let l = labels(&[("target_group", &rg.name), ("target_group_arn", &rg.arn)]);
            let _ = writeln!(out, "{name}{l} {n}");
        }
    }

    if let Some(k) = kernel {
        family(
            &mut out,
            "lattice_kernel_target_connections_total",
            "counter",
            "Connections the kernel sent to each target of TCP listeners (per-CPU counters, summed).",
        );
        let group_name = |key: u32| {
            resolved
                .target_groups
                .iter()
                .find(|g| key_of(&g.id) == key)
                .map(|g| g.name.clone())
                .unwrap_or_else(|| format!("#{key:08x}"))
        };
        let targets: Vec<_> = k
            .backends
            .iter()
            .map(|b| {
                (
                    labels(&[
                        ("target_group", &group_name(b.target_group)),
                        ("target", &format!("{}:{}", b.addr, b.port)),
                    ]),
                    b,
                )
            })
            .collect();
        for (l, b) in &targets {
            let _ = writeln!(
                out,
                "lattice_kernel_target_connections_total{l} {}",
                b.traffic.connections
            );
        }
        family(
            &mut out,
            "lattice_kernel_target_bytes_total",
            "counter",
            "IP bytes the kernel carried to (in) and from (out) each target of TCP listeners.",
        );
        for (l, b) in &targets {
            for (direction, n) in [("in", b.traffic.bytes_in), ("out", b.traffic.bytes_out)] {
                let l = l.replace('}', &format!(",direction=\"{direction}\"}}"));
                let _ = writeln!(out, "lattice_kernel_target_bytes_total{l} {n}");
            }
        }
        family(
            &mut out,
            "lattice_kernel_refused_packets_total",
            "counter",
            "Packets the kernel refused, by source VPC and reason.",
        );
        for r in &k.refusals {
            let vpc = resolved
                .vpcs
                .iter()
                .find(|v| key_of(&v.id) == r.vpc)
                .map(|v| v.name.clone())
                .unwrap_or_else(|| format!("#{:08x}", r.vpc));
            let l = labels(&[("vpc", &vpc), ("reason", r.reason)]);
            let _ = writeln!(out, "lattice_kernel_refused_packets_total{l} {}", r.packets);
        }
    }
    if sweeps.sweeps() > 0 {
        family(
            &mut out,
            "lattice_kernel_conntrack_entries",
            "gauge",
            "Entries of the kernel's conntrack map at the last sweep (two per TCP flow).",
        );
        let _ = writeln!(out, "lattice_kernel_conntrack_entries {}", sweeps.entries());
    }
    family(
        &mut out,
        "lattice_kernel_conntrack_swept_entries_total",
        "counter",
        "Conntrack entries of ended TCP flows the agent's sweeps deleted.",
    );
    let _ = writeln!(
        out,
        "lattice_kernel_conntrack_swept_entries_total {}",
        sweeps.deleted()
    );
    family(
        &mut out,
        "lattice_access_log_records_dropped_total",
        "counter",
        "Access log records dropped because a destination could not keep up.",
    );
    let _ = writeln!(out, "lattice_access_log_records_dropped_total {log_drops}");
    out
}
