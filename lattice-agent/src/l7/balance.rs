//! Picking a target within a group: round robin, or least outstanding requests (a
//! lattice option; VPC Lattice itself only round-robins). Outstanding requests are
//! counted from the pick until the response body is finished or dropped, so a target
//! that is slow to answer, or streams long responses, gets fewer new requests.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::{config::LoadBalancing, metrics::ProxyMetrics};

/// Requests in flight per target of one group.
#[derive(Debug, Default)]
pub struct Outstanding {
    counts: Mutex<HashMap<SocketAddr, usize>>,
}

impl Outstanding {
    fn count(&self, target: &SocketAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(target).copied().unwrap_or(0)
    }

    /// Counts a request to `target` until the returned guard is dropped.
    pub fn start(self: &Arc<Self>, target: SocketAddr) -> InFlight {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(target).or_default() += 1;
        InFlight {
            outstanding: Arc::clone(self),
            target,
        }
    }
}

/// One request in flight; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight {
    outstanding: Arc<Outstanding>,
    target: SocketAddr,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = self
            .outstanding
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.target) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // A target with nothing in flight needs no entry: the map stays as large
                // as the targets busy now, not every address a group ever had.
                counts.remove(&self.target);
            }
        }
    }
}

/// Picks among `targets` (non-empty) and answers the index of: the next in turn, or,
/// for least outstanding requests, the one with the fewest in flight (ties broken in
/// turn, so equal targets still share the load).
pub fn pick(
    targets: &[SocketAddr],
    algorithm: LoadBalancing,
    turn: &AtomicUsize,
    outstanding: &Outstanding,
) -> usize {
    let start = turn.fetch_add(1, Ordering::Relaxed);
    match algorithm {
        LoadBalancing::RoundRobin => start % targets.len(),
        LoadBalancing::LeastOutstandingRequests => (0..targets.len())
            .map(|i| (start + i) % targets.len())
            .min_by_key(|&i| outstanding.count(&targets[i]))
            .expect("targets is not empty"),
    }
}

/// Where a forwarded response's body bytes are counted.
pub struct BytesOut {
    pub metrics: Arc<ProxyMetrics>,
    pub service: usize,
    pub group: usize,
}

/// A response body that keeps its request counted (for least outstanding requests)
/// until it is finished or dropped, and counts the bytes it carries.
pub struct Tracked<B> {
    inner: B,
    in_flight: Option<InFlight>,
    bytes_out: BytesOut,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: Option<InFlight>, bytes_out: BytesOut) -> Self {
        Tracked {
            inner,
            in_flight,
            bytes_out,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.in_flight = None,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let out = &self.bytes_out;
                    out.metrics
                        .bytes_out(out.service, Some(out.group), data.len() as u64);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect()
    }

    #[test]
    fn round_robin_takes_turns() {
        let (targets, turn, out) = (addrs(3), AtomicUsize::new(0), Outstanding::default());
        let picks: Vec<_> = (0..6)
            .map(|_| targets[pick(&targets, LoadBalancing::RoundRobin, &turn, &out)])
            .collect();
        assert_eq!(picks, [targets.clone(), targets.clone()].concat());
    }

    #[test]
    fn least_outstanding_avoids_busy_targets_and_shares_ties() {
        let (targets, turn) = (addrs(3), AtomicUsize::new(0));
        let out = Arc::new(Outstanding::default());
        let busy = out.start(targets[0]);
        let _busy_too = out.start(targets[0]);
        let _one = out.start(targets[1]);
        let lor = LoadBalancing::LeastOutstandingRequests;
        assert_eq!(targets[pick(&targets, lor, &turn, &out)], targets[2]);
        drop(busy);
        let _two = out.start(targets[2]);
        // Counts now 1, 1, 1: ties go in turn.
        let picks: Vec<_> = (0..3)
            .map(|_| targets[pick(&targets, lor, &turn, &out)])
            .collect();
        assert_eq!(
            picks.iter().collect::<std::collections::HashSet<_>>().len(),
            3
        );
    }

    #[test]
    fn a_dropped_guard_ends_the_count() {
        let out = Arc::new(Outstanding::default());
        let t = addrs(1)[0];
        let g = out.start(t);
        assert_eq!(out.count(&t), 1);
        drop(g);
        assert_eq!(out.count(&t), 0);
        // Nothing kept of a target with nothing in flight (targets come and go).
        let counted = out.counts.lock().unwrap().len();
        assert_eq!(counted, 0);
    }
}
