//! The body of the pipeline's answer to a request: the target's response body (counted
//! as it goes), or a short text of the proxy's own (errors, fixed responses, refusals).
//!
//! One concrete type rather than a boxed body per layer: the answer is boxed once, when
//! it leaves the proxy, whether or not an access log wraps it first.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::{balance::Tracked, pool::Leased};

/// A response body as the pipeline made it.
pub enum Answer {
    /// The target's body, keeping its request counted and its connection leased until
    /// it ends.
    Target(Tracked<Leased<Incoming>>),
    /// The proxy's own text.
    Own(Full<Bytes>),
}

impl Body for Answer {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Answer::Target(body) => Pin::new(body).poll_frame(cx),
            Answer::Own(text) => Pin::new(text)
                .poll_frame(cx)
                .map_err(|never: Infallible| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Answer::Target(body) => body.is_end_stream(),
            Answer::Own(text) => text.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Answer::Target(body) => body.size_hint(),
            Answer::Own(text) => text.size_hint(),
        }
    }
}

/// A short plain-text response of the proxy's own.
pub fn plain(status: u16, text: impl Into<Bytes>) -> Response<Answer> {
    let mut response = Response::new(Answer::Own(Full::new(text.into())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
