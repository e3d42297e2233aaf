//! Just enough HTTP/1.1 message framing for the test server and client: a start line,
//! headers, and a body delimited by `content-length`, chunked encoding or end of stream.
//! Meant for test peers (lattice's proxy and the helpers here), not for hostile input:
//! there are no size limits.

use std::io::{self, BufRead};

/// The start line and headers of a request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// `GET /path HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub(crate) start_line: String,
    /// Header names and values in arrival order, names as sent.
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether header `name` lists `token` (comma-separated, any case), as
    /// `connection: close` or `transfer-encoding: chunked`.
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// The first value of header `name` (any case) in `headers`.
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Reads a start line and headers up to the empty line. `None` when the stream ends
/// before the first byte (the peer closed an idle keep-alive connection).
pub(crate) fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let start_line = first.trim_end_matches(['\r', '\n']).to_owned();
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Ok(Some(Head {
                start_line,
                headers,
            }));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("header line without ':'"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// Reads the body `head` announces: `content-length` bytes, or chunked, or (if
/// `until_eof` — responses without length) everything up to the end of the stream, or
/// else nothing.
pub(crate) fn read_body(r: &mut impl BufRead, head: &Head, until_eof: bool) -> io::Result<Vec<u8>> {
    if head.has_token("transfer-encoding", "chunked") {
        return read_chunked(r);
    }
    let mut body = Vec::new();
    if let Some(length) = head.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid("content-length is not a number"))?;
        body.resize(length, 0);
        r.read_exact(&mut body)?;
    } else if until_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailers up to the empty line.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if !read_line(r)?.is_empty() {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

/// One line without its CRLF; the end of the stream here is an error.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stream ended inside an HTTP message",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_length_body() {
        let mut input: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: keep-alive, Close\r\n\r\nabcNEXT";
        let head = read_head(&mut input).unwrap().unwrap();
        assert_eq!(head.start_line, "POST /a HTTP/1.1");
        assert_eq!(head.header("host"), Some("x"));
        assert!(head.has_token("connection", "close"));
        assert_eq!(read_body(&mut input, &head, false).unwrap(), b"abc");
        assert_eq!(input, b"NEXT");
    }

    #[test]
    fn chunked_body() {
        let mut input: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n";
        let head = read_head(&mut input).unwrap().unwrap();
        assert_eq!(read_body(&mut input, &head, true).unwrap(), b"abcde");
        assert!(input.is_empty());
    }

    #[test]
    fn body_until_eof_only_when_asked() {
        let head = Head {
            start_line: "HTTP/1.0 200 OK".to_owned(),
            headers: Vec::new(),
        };
        assert_eq!(read_body(&mut &b"rest"[..], &head, true).unwrap(), b"rest");
        assert_eq!(read_body(&mut &b"rest"[..], &head, false).unwrap(), b"");
    }

    #[test]
    fn closed_idle_connection_is_no_head() {
        assert_eq!(read_head(&mut &b""[..]).unwrap(), None);
    }
}
