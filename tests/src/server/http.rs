//! An HTTP/1.1 backend that answers every request with 200 and a body saying which server
//! answered, what it was asked and by whom, so a test can tell which target lattice chose
//! and which headers it added.
//!
//! Connections are kept alive (HTTP/1.1 without `connection: close`): lattice forwards
//! over pooled connections, which a close-after-each-response server would not exercise.
//! HTTP/1.0 requests and requests with `connection: close` get `connection: close` and the
//! connection is closed after the response.

use std::fmt::Write as _;
use std::io::{self, BufReader, Write};
use std::net::SocketAddr;

use super::{Acceptor, Conn, ServerError};
use crate::http1::{self, Head};
use crate::netns::Netns;

/// Response header naming the server that answered.
pub const SERVER_HEADER: &str = "x-lattice-test-server";

/// Answers every request with 200 and this body (text, one item per line):
///
/// ```text
/// <name> <method> <path>
/// from <client ip>:<client port>
/// <request header name, lowercase>: <value>
/// ...
/// ```
///
/// The response also carries [`SERVER_HEADER`]`: <name>`. Stops when dropped.
#[derive(Debug)]
pub struct HttpServer {
    name: String,
    acceptor: Acceptor,
}

impl HttpServer {
    /// Binds `addr` inside `netns` (port 0 picks a free port) and starts serving as `name`.
    pub fn start(netns: &Netns, addr: SocketAddr, name: &str) -> Result<HttpServer, ServerError> {
        let what = format!("http server {name} on {addr}");
        let server_name = name.to_owned();
        Ok(HttpServer {
            name: name.to_owned(),
            acceptor: Acceptor::start(what, netns, addr, move |conn| serve(&server_name, conn))?,
        })
    }

    /// The bound address, with the real port when 0 was asked for.
    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    /// The name this server puts in its answers.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn serve(name: &str, conn: Conn) -> io::Result<()> {
    let peer = conn.peer();
    let mut reader = BufReader::new(conn);
    while let Some(head) = http1::read_head(&mut reader)? {
        let mut parts = head.start_line.split_whitespace();
        let (method, path, version) = match (parts.next(), parts.next(), parts.next()) {
            (Some(method), Some(path), Some(version)) => (method, path, version),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad request line {:?}", head.start_line),
                ))
            }
        };
        if head.has_token("expect", "100-continue") {
            // curl waits a second for this before sending a larger body.
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        http1::read_body(&mut reader, &head, false)?;
        let close = version != "HTTP/1.1" || head.has_token("connection", "close");
        let body = describe(name, method, path, peer, &head);
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{SERVER_HEADER}: {name}\r\n",
            body.len()
        );
        if close {
            response.push_str("connection: close\r\n");
        }
        response.push_str("\r\n");
        response.push_str(&body);
        reader.get_mut().write_all(response.as_bytes())?;
        if close {
            break;
        }
    }
    Ok(())
}

fn describe(name: &str, method: &str, path: &str, peer: SocketAddr, head: &Head) -> String {
    let mut body = format!("{name} {method} {path}\nfrom {peer}\n");
    for (header, value) in &head.headers {
        // Writing to a String cannot fail.
        let _ = writeln!(body, "{}: {value}", header.to_ascii_lowercase());
    }
    body
}
