//! The proxy's counters: per service and per target group, updated with relaxed atomic
//! adds on the request path (a few nanoseconds each, no lock), read when Prometheus
//! scrapes.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use crate::config::Config;

/// Upper bounds (seconds) of the request time histogram's buckets.
pub const REQUEST_TIME_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram of durations, in Prometheus' cumulative form when read.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; REQUEST_TIME_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = REQUEST_TIME_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(REQUEST_TIME_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(elapsed.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// Cumulative counts per bucket (the last is +Inf, the total count) and the sum in
    /// seconds.
    pub fn read(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Relaxed);
                total
            })
            .collect();
        (cumulative, self.sum_nanos.load(Relaxed) as f64 / 1e9)
    }
}

/// The counters of one service or one target group.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub http_2xx: AtomicU64,
    pub http_3xx: AtomicU64,
    pub http_4xx: AtomicU64,
    pub http_5xx: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub request_time: Histogram,
    /// Client connections (services only).
    pub active_connections: AtomicI64,
    pub total_connections: AtomicU64,
}

impl Counters {
    fn count_response(&self, status: u16, elapsed: Duration, bytes_in: u64) {
        self.requests.fetch_add(1, Relaxed);
        let class = match status {
            200..=299 => Some(&self.http_2xx),
            300..=399 => Some(&self.http_3xx),
            400..=499 => Some(&self.http_4xx),
            500..=599 => Some(&self.http_5xx),
            _ => None,
        };
        if let Some(class) = class {
            class.fetch_add(1, Relaxed);
        }
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.request_time.observe(elapsed);
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
    pub fn response(
        &self,
        service: usize,
        group: Option<usize>,
        status: u16,
        elapsed: Duration,
        bytes_in: u64,
    ) {
        if let Some(c) = self.services.get(service) {
            c.count_response(status, elapsed, bytes_in);
        }
        if let Some(c) = group.and_then(|g| self.target_groups.get(g)) {
            c.count_response(status, elapsed, bytes_in);
        }
    }

    /// Response body bytes sent to a client.
    pub fn bytes_out(&self, service: usize, group: Option<usize>, n: u64) {
        if let Some(c) = self.services.get(service) {
            c.bytes_out.fetch_add(n, Relaxed);
        }
        if let Some(c) = group.and_then(|g| self.target_groups.get(g)) {
            c.bytes_out.fetch_add(n, Relaxed);
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
        m.response(1, None, 200, Duration::from_millis(1), 0);
        let _open = m.connection(1);
        // `bravo` moves to the front, `alpha` goes, `charlie` is new.
        let after = config(&["bravo", "charlie"]);
        let n = ProxyMetrics::next(&after, Some((&m, &before)));
        assert_eq!(n.services.len(), 2);
        assert!(
            Arc::ptr_eq(&n.services[0], &m.services[1]),
            "bravo carries on"
        );
        assert_eq!(n.services[0].requests.load(Relaxed), 1);
        assert_eq!(n.services[0].active_connections.load(Relaxed), 1);
        assert_eq!(
            n.services[1].requests.load(Relaxed),
            0,
            "charlie starts at 0"
        );
        // A request of the old generation after the switch still counts for `bravo`.
        m.response(1, None, 200, Duration::from_millis(1), 0);
        assert_eq!(n.services[0].requests.load(Relaxed), 2);
    }

    #[test]
    fn responses_connections_and_histograms_add_up() {
        let m = ProxyMetrics::new(2, 1);
        m.response(1, Some(0), 200, Duration::from_micros(300), 10);
        m.response(1, Some(0), 503, Duration::from_millis(30), 0);
        m.response(1, None, 403, Duration::from_secs(9), 0);
        m.bytes_out(1, Some(0), 100);
        let s = &m.services[1];
        assert_eq!(s.requests.load(Relaxed), 3);
        assert_eq!(
            (
                s.http_2xx.load(Relaxed),
                s.http_4xx.load(Relaxed),
                s.http_5xx.load(Relaxed)
            ),
            (1, 1, 1)
        );
        assert_eq!(m.target_groups[0].requests.load(Relaxed), 2);
        assert_eq!(s.bytes_out.load(Relaxed), 100);
        let (buckets, sum) = s.request_time.read();
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
}
