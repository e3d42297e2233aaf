//! Blocking TCP and HTTP clients that connect from inside a namespace, with one deadline
//! for the whole exchange so a broken data path fails the test instead of hanging it.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::http1;
use crate::netns::{Netns, NetnsError};

/// Size of the reads that check an echo.
const READ_CHUNK: usize = 64 * 1024;

/// A client exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The connection could not be established in time.
    #[error("connecting to {addr} from network namespace {netns} failed")]
    Connect {
        addr: SocketAddr,
        netns: String,
        #[source]
        source: io::Error,
    },
    /// Sending failed (closed, reset, or the deadline passed).
    #[error("sending {what} failed")]
    Send {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The echo stopped short (closed, reset, or the deadline passed).
    #[error("echo: got {received} of {expected} bytes back")]
    EchoShort {
        received: usize,
        expected: usize,
        #[source]
        source: io::Error,
    },
    /// The echo came back different.
    #[error("echo: byte {offset} came back as {got:#04x}, sent {sent:#04x}")]
    EchoMismatch { offset: usize, sent: u8, got: u8 },
    /// The HTTP response could not be read or parsed.
    #[error("reading the HTTP response failed")]
    Response {
        #[source]
        source: io::Error,
    },
    /// The response's status line is not `HTTP/1.x <code> ...`.
    #[error("malformed HTTP status line {line:?}")]
    StatusLine { line: String },
}

/// Connects to `addr` from inside `netns`, waiting at most `timeout`. The socket stays
/// in the namespace; use it from any thread.
pub fn connect(
    netns: &Netns,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ClientError> {
    netns
        .run(|| TcpStream::connect_timeout(&addr, timeout))?
        .map_err(|source| ClientError::Connect {
            addr,
            netns: netns.name().to_owned(),
            source,
        })
}

/// Sends `payload` on `stream` and checks the same bytes come back, all within
/// `timeout`. Sending and receiving run concurrently, so payloads larger than the socket
/// buffers cannot deadlock. The connection stays open for further exchanges.
pub fn echo_exchange(
    stream: &TcpStream,
    payload: &[u8],
    timeout: Duration,
) -> Result<(), ClientError> {
    let until = Instant::now() + timeout;
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| Deadline::new(stream, until).write_all(payload));
        let read = read_echo(Deadline::new(stream, until), payload);
        if read.is_err() {
            // Unblock the writer; the connection is broken anyway.
            let _ = stream.shutdown(Shutdown::Both);
        }
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        read?;
        written.map_err(|source| ClientError::Send {
            what: "the echo payload",
            source,
        })
    })
}

/// Connects from `netns` to the echo server at `addr`, checks `payload` comes back
/// byte for byte, and closes; all within `timeout`.
pub fn echo_roundtrip(
    netns: &Netns,
    addr: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<(), ClientError> {
    let until = Instant::now() + timeout;
    let stream = connect(netns, addr, timeout)?;
    echo_exchange(
        &stream,
        payload,
        until.saturating_duration_since(Instant::now()),
    )
}

fn read_echo(mut reader: Deadline<'_>, payload: &[u8]) -> Result<(), ClientError> {
    let mut buf = vec![0; READ_CHUNK];
    let mut received = 0;
    while received < payload.len() {
        let want = buf.len().min(payload.len() - received);
        let short = |source| ClientError::EchoShort {
            received,
            expected: payload.len(),
            source,
        };
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(short(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(short(e)),
        };
        let expected = &payload[received..received + n];
        if let Some(i) = (0..n).find(|&i| buf[i] != expected[i]) {
            return Err(ClientError::EchoMismatch {
                offset: received + i,
                sent: expected[i],
                got: buf[i],
            });
        }
        received += n;
    }
    Ok(())
}

/// An HTTP request for [`http_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Extra headers; a `host` here replaces the default (the server address).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A request without headers or body.
    pub fn new(method: &str, path: &str) -> HttpRequest {
        HttpRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> HttpRequest {
        HttpRequest::new("GET", path)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body (sent with `content-length`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpRequest {
        self.body = body.into();
        self
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names and values in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, with chunked encoding removed.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` from inside `netns` to `addr` on a new connection (with
/// `connection: close`) and reads the whole response, all within `timeout`.
pub fn http_request(
    netns: &Netns,
    addr: SocketAddr,
    request: &HttpRequest,
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    let until = Instant::now() + timeout;
    let stream = connect(netns, addr, timeout)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.path);
    if http1::header(&request.headers, "host").is_none() {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !request.body.is_empty() {
        head.push_str(&format!("content-length: {}\r\n", request.body.len()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut writer = Deadline::new(&stream, until);
    writer
        .write_all(head.as_bytes())
        .and_then(|()| writer.write_all(&request.body))
        .map_err(|source| ClientError::Send {
            what: "the HTTP request",
            source,
        })?;

    let mut reader = BufReader::new(Deadline::new(&stream, until));
    let response_error = |source| ClientError::Response { source };
    let head = http1::read_head(&mut reader)
        .map_err(response_error)?
        .ok_or_else(|| {
            response_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ))
        })?;
    let status = head
        .start_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| head.start_line.starts_with("HTTP/1."))
        .ok_or_else(|| ClientError::StatusLine {
            line: head.start_line.clone(),
        })?;
    let body = http1::read_body(&mut reader, &head, true).map_err(response_error)?;
    Ok(HttpResponse {
        status,
        headers: head.headers,
        body,
    })
}

/// `GET path` from inside `netns` to `addr`; see [`http_request`].
pub fn http_get(
    netns: &Netns,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    http_request(netns, addr, &HttpRequest::get(path), timeout)
}

/// Reads and writes on a shared stream that fail with `TimedOut` once `until` passes.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
}

impl<'a> Deadline<'a> {
    fn new(stream: &'a TcpStream, until: Instant) -> Deadline<'a> {
        Deadline { stream, until }
    }

    /// Time left, or a `TimedOut` error when there is none.
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left)
        }
    }
}

/// Socket timeouts surface as `WouldBlock`; say what they mean.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
    } else {
        e
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        let mut stream = self.stream;
        stream.read(buf).map_err(timed_out)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        let mut stream = self.stream;
        stream.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
