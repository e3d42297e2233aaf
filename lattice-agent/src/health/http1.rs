//! The HTTP/1.1 health check exchange: one `GET` with `Connection: close`, and the
//! status of the response. Headers and body are not read: the status decides, and the
//! connection is closed right after (as Lattice does after each check).

use std::fmt;
use std::io;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
    Take,
};

/// Most bytes read before the final status line (interim 1xx heads included).
pub const MAX_HEAD_BYTES: u64 = 16 * 1024;

/// What the check sends as `User-Agent`.
pub const USER_AGENT: &str = concat!("lattice-health-checker/", env!("CARGO_PKG_VERSION"));

/// The exchange failed before a status was read.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    #[error("sending the request: {0}")]
    Send(#[source] io::Error),
    #[error("reading the response: {0}")]
    Receive(#[source] io::Error),
    #[error("malformed response: {0}")]
    Malformed(#[from] Malformed),
}

/// Why a response could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the connection closed before a status line")]
    Closed,
    #[error("no final status line within {MAX_HEAD_BYTES} bytes")]
    TooLong,
    #[error("bad status line {0}")]
    StatusLine(Excerpt),
}

/// The start of a received line, escaped, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt(String);

impl Excerpt {
    fn of(line: &[u8]) -> Self {
        const SHOWN: usize = 64;
        let shown = &line[..line.len().min(SHOWN)];
        Self(format!("{:?}", String::from_utf8_lossy(shown)))
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The request, as sent: `host` is the `Host` header (the target's `ip:port`).
pub fn request(host: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
}

/// Sends the check's request on `stream` and returns the final response status,
/// skipping interim 1xx responses (other than 101, which is final).
pub async fn status<S>(stream: S, host: &str, path: &str) -> Result<u16, Http1Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(stream);
    let writer = reader.get_mut();
    writer
        .write_all(request(host, path).as_bytes())
        .await
        .map_err(Http1Error::Send)?;
    writer.flush().await.map_err(Http1Error::Send)?;

    let mut head = (&mut reader).take(MAX_HEAD_BYTES);
    let mut line = Vec::new();
    loop {
        let status = parse_status_line(read_line(&mut head, &mut line).await?)?;
        if !(100..200).contains(&status) || status == 101 {
            return Ok(status);
        }
        // An interim response: skip its headers, the final one follows.
        while !read_line(&mut head, &mut line).await?.is_empty() {}
    }
}

/// Reads one line into `buf` and returns it without its line ending.
async fn read_line<'b, R>(
    reader: &mut Take<R>,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], Http1Error>
where
    R: AsyncBufRead + Unpin,
{
    buf.clear();
    reader
        .read_until(b'\n', buf)
        .await
        .map_err(Http1Error::Receive)?;
    let Some(line) = buf.strip_suffix(b"\n") else {
        return Err(if reader.limit() == 0 {
            Malformed::TooLong
        } else {
            Malformed::Closed
        }
        .into());
    };
    Ok(line.strip_suffix(b"\r").unwrap_or(line))
}

/// The status of `HTTP/1.x SSS reason`: a three-digit code 100-599 after an HTTP/1
/// version and one space.
pub fn parse_status_line(line: &[u8]) -> Result<u16, Malformed> {
    let bad = || Malformed::StatusLine(Excerpt::of(line));
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.split_first())
        .filter(|(minor, _)| minor.is_ascii_digit())
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.strip_prefix(b" "))
        .ok_or_else(bad)?;
    let (code, after) = rest.split_at_checked(3).ok_or_else(bad)?;
    if !code.iter().all(u8::is_ascii_digit) || !(after.is_empty() || after.starts_with(b" ")) {
        return Err(bad());
    }
    let status = code
        .iter()
        .fold(0u16, |n, digit| n * 10 + u16::from(digit - b'0'));
    if (100..=599).contains(&status) {
        Ok(status)
    } else {
        Err(bad())
    }
}
