//! The proxy's counters: per service and per target group, updated with relaxed atomic
//! adds on the request path (no lock), read when Prometheus scrapes.
//!
//! Each resource's per-request counters are split into [`SHARDS`] shards ([`crate::shard`]):
//! a request makes about a dozen adds, each a cache-line transfer when another core
//! wrote the line last. Reading sums the shards.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use crate::{
    config::Config,
    shard::{self, SHARDS},
};

/// Upper bounds (seconds) of the request time histogram's buckets.
pub const REQUEST_TIME_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One shard of a resource's per-request counters, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    requests: AtomicU64,
    /// 2xx, 3xx, 4xx, 5xx.
    classes: [AtomicU64; 4],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Request time per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; REQUEST_TIME_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// The counters of one service or one target group.
#[derive(Debug, Default)]
pub struct Counters {
    shards: [Shard; SHARDS],
    /// Client connections (services only); once per connection, not sharded.
    pub active_connections: AtomicI64,
    pub total_connections: AtomicU64,
}

/// A resource's counters as read at one moment (the shards summed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub http_2xx: u64,
    pub http_3xx: u64,
    pub http_4xx: u64,
    pub http_5xx: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Request time in Prometheus' cumulative form: counts per bucket (the last is
    /// +Inf, the total count).
    pub request_time_buckets: Vec<u64>,
    /// The sum of request times, seconds.
    pub request_time_sum: f64,
    pub active_connections: i64,
    pub total_connections: u64,
}

impl Counters {
    fn shard(&self) -> &Shard {
        &self.shards[shard::index()]
    }

    fn count_response(&self, status: u16, elapsed: Duration) {
        let shard = self.shard();
        shard.requests.fetch_add(1, Relaxed);
        if let 200..=599 = status {
            shard.classes[usize::from(status / 100 - 2)].fetch_add(1, Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let bucket = REQUEST_TIME_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(REQUEST_TIME_BUCKETS.len());
        shard.buckets[bucket].fetch_add(1, Relaxed);
        shard
            .sum_nanos
            .fetch_add(elapsed.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    fn count_bytes_in(&self, n: u64) {
        self.shard().bytes_in.fetch_add(n, Relaxed);
    }

    fn count_bytes_out(&self, n: u64) {
        self.shard().bytes_out.fetch_add(n, Relaxed);
    }

    /// Every counter, the shards summed.
    pub fn totals(&self) -> Totals {
        let sum = |read: fn(&Shard) -> &AtomicU64| -> u64 {
            self.shards.iter().map(|s| read(s).load(Relaxed)).sum()
        };
        let mut cumulative = 0;
        let request_time_buckets = (0..=REQUEST_TIME_BUCKETS.len())
            .map(|b| {
                cumulative += self
                    .shards
                    .iter()
                    .map(|s| s.buckets[b].load(Relaxed))
                    .sum::<u64>();
                cumulative
            })
            .collect();
        Totals {
            requests: sum(|s| &s.requests),
            http_2xx: sum(|s| &s.classes[0]),
            http_3xx: sum(|s| &s.classes[1]),
            http_4xx: sum(|s| &s.classes[2]),
            http_5xx: sum(|s| &s.classes[3]),
            bytes_in: sum(|s| &s.bytes_in),
            bytes_out: sum(|s| &s.bytes_out),
            request_time_buckets,
            request_time_sum: sum(|s| &s.sum_nanos) as f64 / 1e9,
            active_connections: self.active_connections.load(Relaxed),
            total_connections: self.total_connections.load(Relaxed),
        }
    }
}

/// Every counter of the proxy, indexed like the config's services and target groups.
/// Each resource's counters are shared by name across config generations, so a
/// reconfiguration neither resets them nor loses what requests of the previous
/// generation count after the switch.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    pub services: Vec<Arc<Counters>>,
    pub target_groups: Vec<Arc<Counters>>,
}

impl ProxyMetrics {
    pub fn new(services: usize, target_groups: usize) -> Arc<ProxyMetrics> {
        Arc::new(ProxyMetrics {
            services: (0..services).map(|_| Arc::default()).collect(),
            target_groups: (0..target_groups).map(|_| Arc::default()).collect(),
        })
    }

    /// The counters of `config`'s services and target groups: those of the same name in
    /// `previous` (the running generation's counters and config) carry on, new ones
    /// start at 0.
    pub fn next(config: &Config, previous: Option<(&ProxyMetrics, &Config)>) -> Arc<ProxyMetrics> {
        fn carry<'a>(
            names: impl Iterator<Item = &'a str>,
            old: &HashMap<&str, &Arc<Counters>>,
        ) -> Vec<Arc<Counters>> {
            names
                .map(|name| old.get(name).map(|c| Arc::clone(c)).unwrap_or_default())
                .collect()
        }
        let mut old_services = HashMap::new();
        let mut old_groups = HashMap::new();
        if let Some((metrics, config)) = previous {
            let names = config.services().iter().map(|s| s.name.as_str());
            old_services.extend(names.zip(&metrics.services));
            let names = config.target_groups().iter().map(|g| g.name.as_str());
            old_groups.extend(names.zip(&metrics.target_groups));
        }
        Arc::new(ProxyMetrics {
            services: carry(
                config.services().iter().map(|s| s.name.as_str()),
                &old_services,
            ),
            target_groups: carry(
                config.target_groups().iter().map(|g| g.name.as_str()),
                &old_groups,
            ),
        })
    }

    /// One answered request: to `service`, forwarded to `group` if it was.
    pub fn response(&self, service: usize, group: Option<usize>, status: u16, elapsed: Duration) {
        if let Some(c) = self.services.get(service) {
            c.count_response(status, elapsed);
        }
        if let Some(c) = group.and_then(|g| self.target_groups.get(g)) {
            c.count_response(status, elapsed);
        }
    }

    /// Request body bytes forwarded to a target ([`crate::l7::received`]).
    pub fn bytes_in(&self, service: usize, group: Option<usize>, n: u64) {
        if let Some(c) = self.services.get(service) {
            c.count_bytes_in(n);
        }
        if let Some(c) = group.and_then(|g| self.target_groups.get(g)) {
            c.count_bytes_in(n);
        }
    }

    /// Response body bytes sent to a client.
    pub fn bytes_out(&self, service: usize, group: Option<usize>, n: u64) {
        if let Some(c) = self.services.get(service) {
            c.count_bytes_out(n);
        }
        if let Some(c) = group.and_then(|g| self.target_groups.get(g)) {
            c.count_bytes_out(n);
        }
    }

    /// A client connection to `service` opened; it counts as active until the guard
    /// is dropped.
    pub fn connection(self: &Arc<Self>, service: usize) -> ConnectionGuard {
        if let Some(c) = self.services.get(service) {
            c.active_connections.fetch_add(1, Relaxed);
            c.total_connections.fetch_add(1, Relaxed);
        }
        ConnectionGuard {
            metrics: Arc::clone(self),
            service,
        }
    }
}

/// Keeps a connection counted as active.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<ProxyMetrics>,
    service: usize,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(c) = self.metrics.services.get(self.service) {
            c.active_connections.fetch_sub(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(services: &[&str]) -> Config {
        let listed: Vec<String> = services
            .iter()
            .map(|s| {
                format!(
                    "  - {{ name: {s}, account: \"111111111111\", authType: NONE, listeners: [] }}"
                )
            })
            .collect();
        let yaml = format!(
            "accounts: [{{ id: \"111111111111\" }}]\nservices:\n{}\n",
            listed.join("\n")
        );
        crate::config::parse_str(&yaml, std::path::Path::new("t.yaml")).unwrap()
    }

    #[test]
    fn counters_carry_over_by_name_across_generations() {
        let before = config(&["alpha", "bravo"]);
        let m = ProxyMetrics::next(&before, None);
        m.response(1, None, 200, Duration::from_millis(1));
        let _open = m.connection(1);
        // `bravo` moves to the front, `alpha` goes, `charlie` is new.
        let after = config(&["bravo", "charlie"]);
        let n = ProxyMetrics::next(&after, Some((&m, &before)));
        assert_eq!(n.services.len(), 2);
        assert!(
            Arc::ptr_eq(&n.services[0], &m.services[1]),
            "bravo carries on"
        );
        assert_eq!(n.services[0].totals().requests, 1);
        assert_eq!(n.services[0].active_connections.load(Relaxed), 1);
        assert_eq!(n.services[1].totals().requests, 0, "charlie starts at 0");
        // A request of the old generation after the switch still counts for `bravo`.
        m.response(1, None, 200, Duration::from_millis(1));
        assert_eq!(n.services[0].totals().requests, 2);
    }

    #[test]
    fn responses_connections_and_histograms_add_up() {
        let m = ProxyMetrics::new(2, 1);
        m.response(1, Some(0), 200, Duration::from_micros(300));
        m.response(1, Some(0), 503, Duration::from_millis(30));
        m.response(1, None, 403, Duration::from_secs(9));
        m.bytes_out(1, Some(0), 100);
        m.bytes_in(1, Some(0), 10);
        let s = m.services[1].totals();
        assert_eq!(s.requests, 3);
        assert_eq!((s.http_2xx, s.http_4xx, s.http_5xx), (1, 1, 1));
        assert_eq!(m.target_groups[0].totals().requests, 2);
        assert_eq!((s.bytes_in, s.bytes_out), (10, 100));
        assert_eq!(m.target_groups[0].totals().bytes_in, 10);
        let (buckets, sum) = (&s.request_time_buckets, s.request_time_sum);
        assert_eq!(buckets[0], 1, "300 us is in the first bucket");
        assert_eq!(buckets[5], 1, "nothing more up to 25 ms");
        assert_eq!(buckets[6], 2, "30 ms is in the 50 ms bucket");
        assert_eq!(*buckets.last().unwrap(), 3, "+Inf counts everything");
        assert!((sum - 9.0303).abs() < 1e-6, "{sum}");
        {
            let _a = m.connection(0);
            let _b = m.connection(0);
            assert_eq!(m.services[0].active_connections.load(Relaxed), 2);
        }
        assert_eq!(m.services[0].active_connections.load(Relaxed), 0);
        assert_eq!(m.services[0].total_connections.load(Relaxed), 2);
    }

    #[test]
    fn counts_of_many_threads_add_up_across_shards() {
        let m = ProxyMetrics::new(1, 1);
        std::thread::scope(|scope| {
            for _ in 0..(2 * SHARDS + 1) {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        m.response(0, Some(0), 200, Duration::from_millis(1));
                        m.bytes_in(0, Some(0), 1);
                        m.bytes_out(0, Some(0), 2);
                    }
                });
            }
        });
        let threads = (2 * SHARDS + 1) as u64;
        for c in [&m.services[0], &m.target_groups[0]] {
            let t = c.totals();
            assert_eq!(
                (t.requests, t.http_2xx, t.bytes_in, t.bytes_out),
                (
                    threads * 1000,
                    threads * 1000,
                    threads * 1000,
                    threads * 2000
                )
            );
            assert_eq!(t.request_time_buckets.last(), Some(&(threads * 1000)));
        }
    }
}
