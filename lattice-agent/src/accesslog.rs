//! Access log destinations: the `accessLogSubscriptions` of the config, each a file
//! (JSON lines, appended) or the agent's stdout.
//!
//! Logging must never slow traffic down or stop it: a request's record is appended to
//! a bounded buffer per destination (one short lock of the thread's own part, no
//! allocation, no hand-off), and a writer thread takes the whole buffer at a time. When a buffer is full (the disk
//! cannot keep up), the record is dropped and counted ([`AccessLogs::dropped`]); the
//! agent reports drops in its log. Files are opened when the agent starts, so a
//! destination that cannot be written stops the start with an error that names the
//! subscription.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    time::Duration,
};

use tracing::{debug, warn};

use crate::{
    config::{Config, LogDestination, LoggedResource},
    shard::{self, SHARDS},
};

/// Bytes of records a destination holds before new ones are dropped: about 16,000
/// records, a few seconds of a busy agent's traffic.
pub const BUFFER_BYTES: usize = 16 * 1024 * 1024;

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
    queues: Vec<Arc<Queue>>,
    /// Where each queue writes (a destination has one queue and one writer).
    destinations: Vec<LogDestination>,
    /// Per service / per service network (config order): the queues that log it.
    by_service: Vec<Vec<usize>>,
    by_network: Vec<Vec<usize>>,
    dropped: Arc<AtomicU64>,
}

impl AccessLogs {
    /// Opens every destination and starts its writer thread. Destinations that
    /// `previous` (the running generation's logs) already writes keep their queue and
    /// writer, so records of the two generations never interleave inside a line.
    pub fn start(
        config: &Config,
        previous: Option<&AccessLogs>,
        rotation: Rotation,
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
                        Some(Arc::clone(&p.queues[q]))
                    });
                    let tx = match running {
                        Some(tx) => tx,
                        None => open(index, &sub.destination, rotation)?,
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
    /// the service and of the network; never waits for a writer.
    pub fn record(&self, service: usize, network: usize, line: &[u8]) {
        let service_queues = self.by_service.get(service).into_iter().flatten();
        let network_queues = self.by_network.get(network).into_iter().flatten();
        for &queue in service_queues.chain(network_queues) {
            if !self.queues[queue].0.append(line) {
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

    /// Waits, at most `limit`, until every record queued so far is written: a stopping
    /// agent loses no record its clients got an answer for. Whether they all were.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.queues.iter().all(|q| q.0.drained()) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Records dropped because a destination's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// When a log file is rotated: past `max_bytes` (0: never) it is renamed `<file>.1`
/// (older ones shift to `.2` ... up to `.<keep>`, the oldest dropped) and a new file is
/// started. A file moved away by another tool (logrotate) is noticed and reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 100 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// One destination's records waiting for its writer, as lines, in [`SHARDS`] parts: a
/// worker thread appends to its own part ([`crate::shard`]), so two threads logging
/// the same service do not pass one lock and one buffer tail between their cores on
/// every request. Each thread's records stay in their order; records of different
/// threads are ordered per batch, as with any log written by several threads.
#[derive(Debug, Default)]
struct Buffer {
    parts: [Part; SHARDS],
    writer: Mutex<WriterState>,
    /// Signalled when a line arrives while the writer waits for one, and at close.
    filled: Condvar,
    /// The writer found every part empty and waits (or is about to): appenders wake it.
    idle: AtomicBool,
}

/// One thread's part of a buffer, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Part {
    lines: Mutex<Vec<u8>>,
}

#[derive(Debug, Default)]
struct WriterState {
    /// The writer holds a batch it has not finished writing.
    writing: bool,
    /// No generation holds the destination any more: the writer writes what is left
    /// and ends.
    closed: bool,
}

/// Bytes of records one part holds before new ones are dropped.
const PART_BYTES: usize = BUFFER_BYTES / SHARDS;

impl Buffer {
    /// Appends a line to this thread's part, unless the part is full; never waits for
    /// the writer.
    fn append(&self, line: &[u8]) -> bool {
        let part = &self.parts[shard::index()];
        let Ok(mut lines) = part.lines.lock() else {
            return false;
        };
        if lines.len() + line.len() + 1 > PART_BYTES {
            return false;
        }
        lines.extend_from_slice(line);
        lines.push(b'\n');
        drop(lines);
        // Under load the writer is gathering, not waiting, and takes the lines without
        // being told. The line is in its part before `idle` is read, and the writer
        // sets `idle` before it looks at the parts a last time (both SeqCst), so one
        // of the two sees the other: a line never waits for the next one.
        if self.idle.load(Ordering::SeqCst) {
            // Under the writer's lock: it cannot be between its last look and its wait.
            let _writer = self.writer.lock();
            self.filled.notify_one();
        }
        true
    }

    /// Waits for lines and swaps every part that has some with `batches` (empty);
    /// `false` once closed and drained.
    fn take(&self, batches: &mut [Vec<u8>; SHARDS]) -> bool {
        let Ok(mut writer) = self.writer.lock() else {
            return false;
        };
        loop {
            // Set before the parts are emptied, so `drained` never sees empty parts
            // and no batch in hand.
            writer.writing = true;
            if self.swap_parts(batches) {
                return true;
            }
            writer.writing = false;
            if writer.closed {
                // Nothing can append any more: the last look above saw everything.
                return false;
            }
            self.idle.store(true, Ordering::SeqCst);
            if !self.parts_empty() {
                self.idle.store(false, Ordering::SeqCst);
                continue;
            }
            writer = match self.filled.wait(writer) {
                Ok(writer) => writer,
                Err(_) => return false,
            };
            self.idle.store(false, Ordering::SeqCst);
        }
    }

    /// Swaps each part that has lines with its (empty) batch; whether any had lines.
    fn swap_parts(&self, batches: &mut [Vec<u8>; SHARDS]) -> bool {
        let mut any = false;
        for (part, batch) in self.parts.iter().zip(batches.iter_mut()) {
            if let Ok(mut lines) = part.lines.lock() {
                if !lines.is_empty() {
                    std::mem::swap(&mut *lines, batch);
                    any = true;
                }
            }
        }
        any
    }

    fn parts_empty(&self) -> bool {
        self.parts
            .iter()
            .all(|part| part.lines.lock().map_or(true, |lines| lines.is_empty()))
    }

    fn written(&self) {
        if let Ok(mut writer) = self.writer.lock() {
            writer.writing = false;
        }
    }

    /// Whether every line appended so far has been written. The parts are read before
    /// the writer's state: a part found empty because the writer took it was taken
    /// after `writing` was set.
    fn drained(&self) -> bool {
        self.parts_empty() && self.writer.lock().map_or(true, |w| !w.writing)
    }

    fn close(&self) {
        if let Ok(mut writer) = self.writer.lock() {
            writer.closed = true;
        }
        self.filled.notify_one();
    }
}

/// The generations' hold on a destination's buffer; when the last one lets go, the
/// writer writes what is left and ends.
#[derive(Debug)]
struct Queue(Arc<Buffer>);

impl Drop for Queue {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Opens the destination of subscription `index` and starts its writer: a thread of
/// its own, so writing (a slow disk included) never takes a runtime thread.
fn open(
    index: usize,
    destination: &LogDestination,
    rotation: Rotation,
) -> Result<Arc<Queue>, AccessLogError> {
    let (sink, path) = match destination {
        LogDestination::Stdout => (Sink::Stdout(std::io::stdout()), PathBuf::from("-")),
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
            let file = LogFile::open(path.clone(), rotation).map_err(err)?;
            (Sink::File(file), path.clone())
        }
    };
    let buffer = Arc::new(Buffer::default());
    let writer = Arc::clone(&buffer);
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_records(&writer, sink))
        .map_err(|source| AccessLogError {
            index,
            path,
            source,
        })?;
    Ok(Arc::new(Queue(buffer)))
}

enum Sink {
    Stdout(std::io::Stdout),
    File(LogFile),
}

/// An appended log file that rotates.
struct LogFile {
    path: PathBuf,
    file: std::fs::File,
    /// Its inode, to notice it was moved away.
    inode: u64,
    size: u64,
    rotation: Rotation,
}

impl LogFile {
    fn open(path: PathBuf, rotation: Rotation) -> std::io::Result<LogFile> {
        use std::os::unix::fs::MetadataExt as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let meta = file.metadata()?;
        Ok(LogFile {
            path,
            file,
            inode: meta.ino(),
            size: meta.len(),
            rotation,
        })
    }

    /// Appends whole lines, rotating first when they would pass the limit. A batch that
    /// would pass it is split at a line end, so every file stays within the limit
    /// unless one line alone is larger (that line then has a file of its own).
    fn write(&mut self, mut lines: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let moved = std::fs::metadata(&self.path).map_or(true, |m| m.ino() != self.inode);
        if moved {
            *self = LogFile::open(self.path.clone(), self.rotation)?;
        }
        while !lines.is_empty() {
            let mut take = self.fitting_prefix(lines);
            if take == 0 && self.size > 0 {
                self.rotate()?;
                *self = LogFile::open(self.path.clone(), self.rotation)?;
                take = self.fitting_prefix(lines);
            }
            if take == 0 {
                // One line larger than the limit: it has a file of its own.
                take = lines
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(lines.len(), |i| i + 1);
            }
            self.append(&lines[..take])?;
            lines = &lines[take..];
        }
        Ok(())
    }

    /// How many bytes of `lines`, ending at a line end, still fit in this file.
    fn fitting_prefix(&self, lines: &[u8]) -> usize {
        let max = self.rotation.max_bytes;
        if max == 0 || self.size + lines.len() as u64 <= max {
            return lines.len();
        }
        let room = max.saturating_sub(self.size) as usize;
        lines[..room.min(lines.len())]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&self) -> std::io::Result<()> {
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.rotation.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(numbered(self.rotation.keep));
        for n in (1..self.rotation.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))
    }
}

/// How long the writer lets records gather after writing a batch: under load it wakes
/// fifty times a second, not once per record. Each wake-up is a context switch that the
/// request path pays for on a busy machine, and a longer gather makes each write longer
/// (Envoy flushes its access log files once a second); a record reaches its file at
/// most this late.
const GATHER: Duration = Duration::from_millis(20);
/// A batch buffer larger than this after a burst is given back rather than kept.
const KEEP_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The writer threads' nice value: writing records is background work, which the
/// request path should not wait behind on a busy machine (the buffer absorbs half a
/// second and more of records at full load).
const WRITER_NICE: i32 = 10;

/// Writes the buffer's lines a batch at a time until it is closed and drained.
fn write_records(buffer: &Buffer, mut sink: Sink) {
    use std::io::Write as _;
    // On Linux a nice value is the calling thread's own.
    if let Err(e) = rustix::process::setpriority_process(None, WRITER_NICE) {
        debug!(error = %e, "the access log writer keeps the agent's priority");
    }
    let mut batches: [Vec<u8>; SHARDS] = Default::default();
    while buffer.take(&mut batches) {
        for batch in batches.iter_mut().filter(|b| !b.is_empty()) {
            let written = match &mut sink {
                Sink::Stdout(out) => out.write_all(batch).and_then(|()| out.flush()),
                Sink::File(file) => file.write(batch),
            };
            if let Err(e) = written {
                warn!(error = %e, "writing access log records failed; they are lost");
            }
            batch.clear();
            if batch.capacity() > KEEP_BATCH_BYTES {
                *batch = Vec::new();
            }
        }
        buffer.written();
        std::thread::sleep(GATHER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn files_rotate_past_the_limit_and_keep_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.jsonl");
        let rotation = Rotation {
            max_bytes: 10,
            keep: 2,
        };
        let mut file = LogFile::open(path.clone(), rotation).unwrap();
        for n in 0..5 {
            file.write(format!("line {n}\n").as_bytes()).unwrap();
        }
        // 7 bytes a line, 10 at most: each line after the first rotates.
        assert_eq!(read(&path), "line 4\n");
        assert_eq!(read(&dir.path().join("access.jsonl.1")), "line 3\n");
        assert_eq!(read(&dir.path().join("access.jsonl.2")), "line 2\n");
        assert!(!dir.path().join("access.jsonl.3").exists(), "keep: 2");
    }

    #[test]
    fn a_batch_past_the_limit_is_split_at_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.jsonl");
        let rotation = Rotation {
            max_bytes: 15,
            keep: 3,
        };
        let mut file = LogFile::open(path.clone(), rotation).unwrap();
        file.write(b"line 0\nline 1\nline 2\na line longer than the limit\nline 4\n")
            .unwrap();
        assert_eq!(read(&path), "line 4\n");
        assert_eq!(
            read(&dir.path().join("access.jsonl.1")),
            "a line longer than the limit\n"
        );
        assert_eq!(read(&dir.path().join("access.jsonl.2")), "line 2\n");
        assert_eq!(read(&dir.path().join("access.jsonl.3")), "line 0\nline 1\n");
    }

    #[test]
    fn lines_reach_the_file_in_order_and_a_full_buffer_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.jsonl");
        let queue = open(0, &LogDestination::File(path.clone()), Rotation::default()).unwrap();
        for n in 0..1000 {
            assert!(queue.0.append(format!("line {n}").as_bytes()));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !queue.0.drained() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let expected: String = (0..1000).map(|n| format!("line {n}\n")).collect();
        assert_eq!(read(&path), expected);

        // No writer takes from this one: this thread's part fills up.
        let buffer = Buffer::default();
        let half = "x".repeat(PART_BYTES / 2);
        assert!(buffer.append(half.as_bytes()));
        assert!(
            !buffer.append(half.as_bytes()),
            "a line past the bound is dropped"
        );
        assert!(buffer.append(b"short"));
    }

    #[test]
    fn lines_of_several_threads_all_arrive_each_threads_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.jsonl");
        let queue = open(0, &LogDestination::File(path.clone()), Rotation::default()).unwrap();
        let threads = 2 * SHARDS + 1;
        std::thread::scope(|scope| {
            for t in 0..threads {
                let buffer = &queue.0;
                scope.spawn(move || {
                    for n in 0..500 {
                        assert!(buffer.append(format!("{t} {n}").as_bytes()));
                        if n % 100 == 0 {
                            // Let the writer catch up and go idle now and then.
                            std::thread::sleep(Duration::from_millis(30));
                        }
                    }
                });
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !queue.0.drained() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let text = read(&path);
        let mut next = vec![0; threads];
        for line in text.lines() {
            let (t, n) = line.split_once(' ').unwrap();
            let (t, n): (usize, usize) = (t.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, next[t], "thread {t}'s lines in order");
            next[t] += 1;
        }
        assert_eq!(next, vec![500; threads], "every line arrived");
    }

    #[test]
    fn a_file_moved_away_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.jsonl");
        let mut file = LogFile::open(path.clone(), Rotation::default()).unwrap();
        file.write(b"before\n").unwrap();
        std::fs::rename(&path, dir.path().join("moved.jsonl")).unwrap();
        file.write(b"after\n").unwrap();
        assert_eq!(read(&dir.path().join("moved.jsonl")), "before\n");
        assert_eq!(read(&path), "after\n");
    }
}
