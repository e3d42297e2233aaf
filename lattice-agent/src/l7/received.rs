//! The request body on its way to the target, its bytes counted as they pass: the
//! metrics' bytes in (per service and target group) and the access log's
//! `bytesReceived` count what the caller sent, whether the body has a `content-length`
//! or streams without one (chunked HTTP/1.1, HTTP/2 and gRPC bodies).
//!
//! | body | counted |
//! | --- | --- |
//! | none (the head ends the stream) | 0, nothing wrapped |
//! | read in full by the auth phase (a signed payload) | its length, once, when forwarded |
//! | streaming to the target | each data frame as the target's connection takes it |
//!
//! A request that is not forwarded (refused, answered by a rule, no target) sent no
//! body anywhere: 0.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::Either;
use hyper::body::{Body, Frame, SizeHint};

use tokio::sync::oneshot;

use super::authz::ForwardBody;
use crate::metrics::ProxyMetrics;

/// The body of a forwarded request, as the target clients take it.
pub type TargetBody = Received<ForwardBody>;

/// A request body that counts the data it carries, and says when it has been sent.
pub struct Received<B> {
    inner: B,
    counting: Option<Counting>,
    /// Fired when the body has ended (or is dropped: sent, or given up).
    ended: Option<oneshot::Sender<()>>,
}

/// Where a streaming body's bytes are counted.
struct Counting {
    metrics: Arc<ProxyMetrics>,
    service: usize,
    group: usize,
    /// The request's running total, for its access log record.
    total: Option<Arc<AtomicU64>>,
}

/// A request's body bytes as its access log record reads them when the response ends.
#[derive(Debug, Default)]
pub enum ReceivedBytes {
    /// Known when the request was forwarded (or it never was: 0).
    #[default]
    None,
    Known(u64),
    /// Still being counted as the body streams.
    Counting(Arc<AtomicU64>),
}

impl ReceivedBytes {
    pub fn get(&self) -> u64 {
        match self {
            ReceivedBytes::None => 0,
            ReceivedBytes::Known(n) => *n,
            ReceivedBytes::Counting(total) => total.load(Relaxed),
        }
    }
}

/// A request body on its way to the target.
pub struct Forwarded {
    pub body: TargetBody,
    /// Its bytes, for the access log.
    pub received: ReceivedBytes,
    /// For a body that streams: resolves once it has all been sent to the target (or
    /// given up). `None`: there is nothing left to send.
    pub sent: Option<oneshot::Receiver<()>>,
}

/// Wraps a forwarded request's body to count it for `service` and `group`; `logged`:
/// its access log record wants the count too.
pub fn count(
    body: ForwardBody,
    metrics: &Arc<ProxyMetrics>,
    service: usize,
    group: usize,
    logged: bool,
) -> Forwarded {
    if body.is_end_stream() {
        return Forwarded {
            body: Received::uncounted(body),
            received: ReceivedBytes::None,
            sent: None,
        };
    }
    if let Either::Right(full) = &body {
        // Read in full before (a signed payload's hash was checked): its length is
        // exact, and counted once.
        let n = full.size_hint().exact().unwrap_or(0);
        metrics.bytes_in(service, Some(group), n);
        return Forwarded {
            body: Received::uncounted(body),
            received: ReceivedBytes::Known(n),
            sent: None,
        };
    }
    let total = logged.then(|| Arc::new(AtomicU64::new(0)));
    let received = total
        .clone()
        .map_or(ReceivedBytes::None, ReceivedBytes::Counting);
    let counting = Counting {
        metrics: Arc::clone(metrics),
        service,
        group,
        total,
    };
    let (ended, sent) = oneshot::channel();
    Forwarded {
        body: Received {
            inner: body,
            counting: Some(counting),
            ended: Some(ended),
        },
        received,
        sent: Some(sent),
    }
}

impl<B> Received<B> {
    /// A body whose bytes are counted elsewhere, or that has none.
    pub fn uncounted(inner: B) -> Self {
        Received {
            inner,
            counting: None,
            ended: None,
        }
    }
}

impl<B> Drop for Received<B> {
    fn drop(&mut self) {
        // hyper drops a body once it has sent its end, or when the exchange is over.
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(());
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Received<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &polled {
            if let Some(ended) = self.ended.take() {
                let _ = ended.send(());
            }
        }
        if let (Poll::Ready(Some(Ok(frame))), Some(counting)) = (&polled, &self.counting) {
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                counting
                    .metrics
                    .bytes_in(counting.service, Some(counting.group), n);
                if let Some(total) = &counting.total {
                    total.fetch_add(n, Relaxed);
                }
            }
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
    use http_body_util::BodyExt as _;

    /// A body of these chunks, one data frame each.
    struct Chunks(std::collections::VecDeque<&'static [u8]>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
            )
        }
    }

    fn frames(chunks: &[&'static [u8]]) -> Received<Chunks> {
        Received::uncounted(Chunks(chunks.iter().copied().collect()))
    }

    #[tokio::test]
    async fn a_streaming_body_is_counted_frame_by_frame_for_metrics_and_log() {
        let metrics = ProxyMetrics::new(2, 1);
        let total = Arc::new(AtomicU64::new(0));
        let mut body = frames(&[b"abc", b"", b"defgh"]);
        body.counting = Some(Counting {
            metrics: Arc::clone(&metrics),
            service: 1,
            group: 0,
            total: Some(Arc::clone(&total)),
        });
        let (ended, mut sent) = oneshot::channel();
        body.ended = Some(ended);
        assert!(sent.try_recv().is_err(), "not sent yet");
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(sent.try_recv(), Ok(()), "sent to its end");
        assert_eq!(&read[..], b"abcdefgh");
        assert_eq!(ReceivedBytes::Counting(total).get(), 8);
        assert_eq!(metrics.services[1].totals().bytes_in, 8);
        assert_eq!(metrics.target_groups[0].totals().bytes_in, 8);
    }

    #[tokio::test]
    async fn bodies_read_before_count_once_and_empty_ones_not_at_all() {
        let metrics = ProxyMetrics::new(1, 1);
        let full = Either::Right(http_body_util::Full::new(Bytes::from_static(b"signed")));
        let Forwarded {
            body,
            received,
            sent,
        } = count(full, &metrics, 0, 0, true);
        assert_eq!(received.get(), 6);
        assert!(sent.is_none(), "nothing left to send");
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read.len(), 6);
        assert_eq!(metrics.services[0].totals().bytes_in, 6, "counted once");
        let empty = Either::Right(http_body_util::Full::new(Bytes::new()));
        let forwarded = count(empty, &metrics, 0, 0, true);
        assert!(matches!(forwarded.received, ReceivedBytes::None));
        assert_eq!(metrics.services[0].totals().bytes_in, 6);
    }
}
