//! Access log destinations: the `accessLogSubscriptions` of the config, each a file
//! (JSON lines, appended) or the agent's stdout.
//!
//! Logging must never slow traffic down or stop it: a request's record goes into a
//! bounded queue per destination with `try_send`, and a writer task drains it. When a
//! queue is full (the disk cannot keep up), the record is dropped and counted
//! ([`AccessLogs::dropped`]); the agent reports drops in its log. Files are opened when
//! the agent starts, so a destination that cannot be written stops the start with an
//! error that names the subscription.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use tokio::{
    io::{AsyncWrite, AsyncWriteExt as _},
    runtime::Handle,
    sync::mpsc,
};
use tracing::warn;

use crate::config::{Config, LogDestination, LoggedResource};

/// Records a destination's queue holds before new ones are dropped.
pub const QUEUE_RECORDS: usize = 16 * 1024;

/// A destination could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("accessLogSubscriptions[{index}].destination: opening {}: {source}", path.display())]
pub struct AccessLogError {
    pub index: usize,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The access logs of one config.
#[derive(Debug, Default)]
pub struct AccessLogs {
    queues: Vec<mpsc::Sender<String>>,
    /// Where each queue writes (a destination has one queue and one writer).
    destinations: Vec<LogDestination>,
    /// Per service / per service network (config order): the queues that log it.
    by_service: Vec<Vec<usize>>,
    by_network: Vec<Vec<usize>>,
    dropped: Arc<AtomicU64>,
}

impl AccessLogs {
    /// Opens every destination and starts its writer on `runtime`. Destinations that
    /// `previous` (the running generation's logs) already writes keep their queue and
    /// writer, so records of the two generations never interleave inside a line.
    pub fn start(
        config: &Config,
        runtime: &Handle,
        previous: Option<&AccessLogs>,
    ) -> Result<AccessLogs, AccessLogError> {
        let mut logs = AccessLogs {
            by_service: vec![Vec::new(); config.services().len()],
            by_network: vec![Vec::new(); config.service_networks().len()],
            dropped: previous.map(|p| Arc::clone(&p.dropped)).unwrap_or_default(),
            ..AccessLogs::default()
        };
        for (index, sub) in config.access_log_subscriptions().iter().enumerate() {
            let queue = match logs.destinations.iter().position(|d| *d == sub.destination) {
                Some(queue) => queue,
                None => {
                    let running = previous.and_then(|p| {
                        let q = p.destinations.iter().position(|d| *d == sub.destination)?;
                        Some(p.queues[q].clone())
                    });
                    let tx = match running {
                        Some(tx) => tx,
                        None => open(index, &sub.destination, runtime)?,
                    };
                    logs.queues.push(tx);
                    logs.destinations.push(sub.destination.clone());
                    logs.queues.len() - 1
                }
            };
            match sub.resource {
                LoggedResource::Service(s) => logs.by_service[s.index()].push(queue),
                LoggedResource::ServiceNetwork(n) => logs.by_network[n.index()].push(queue),
            }
        }
        Ok(logs)
    }

    /// Whether requests to `service` through `network` are logged anywhere.
    pub fn wants(&self, service: usize, network: usize) -> bool {
        !self.by_service.get(service).is_none_or(Vec::is_empty)
            || !self.by_network.get(network).is_none_or(Vec::is_empty)
    }

    /// Queues one record (a JSON object, without the newline) for every destination of
    /// the service and of the network; never waits.
    pub fn record(&self, service: usize, network: usize, line: String) {
        let service_queues = self.by_service.get(service).into_iter().flatten();
        let network_queues = self.by_network.get(network).into_iter().flatten();
        for &queue in service_queues.chain(network_queues) {
            if self.queues[queue].try_send(line.clone()).is_err() {
                let before = self.dropped.fetch_add(1, Ordering::Relaxed);
                // Said once, then at every power of two: never a log line per drop.
                if before.is_power_of_two() || before == 0 {
                    warn!(
                        dropped = before + 1,
                        "access log records dropped: a destination cannot keep up"
                    );
                }
            }
        }
    }

    /// Records dropped because a destination's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Opens the destination of subscription `index` and starts its writer.
fn open(
    index: usize,
    destination: &LogDestination,
    runtime: &Handle,
) -> Result<mpsc::Sender<String>, AccessLogError> {
    let writer: Box<dyn AsyncWrite + Send + Unpin> = match destination {
        LogDestination::Stdout => Box::new(tokio::io::stdout()),
        LogDestination::File(path) => {
            let err = |source| AccessLogError {
                index,
                path: path.clone(),
                source,
            };
            // The folder may not exist yet: the agent makes it.
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(err)?;
            Box::new(tokio::fs::File::from_std(file))
        }
    };
    let (tx, rx) = mpsc::channel(QUEUE_RECORDS);
    runtime.spawn(write_records(rx, writer));
    Ok(tx)
}

/// Writes records as lines, flushing whenever the queue runs empty.
async fn write_records(
    mut rx: mpsc::Receiver<String>,
    mut out: Box<dyn AsyncWrite + Send + Unpin>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(line) = rx.recv().await {
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        while buf.len() < 60 * 1024 {
            match rx.try_recv() {
                Ok(line) => {
                    buf.extend_from_slice(line.as_bytes());
                    buf.push(b'\n');
                }
                Err(_) => break,
            }
        }
        if let Err(e) = async {
            out.write_all(&buf).await?;
            out.flush().await
        }
        .await
        {
            warn!(error = %e, "writing access log records failed; they are lost");
        }
        buf.clear();
    }
}
