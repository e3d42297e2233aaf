//! A TCP echo server: every byte received is sent back, until the client closes.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use super::{Acceptor, Conn, ServerError};
use crate::netns::Netns;

/// Echoes every connection byte for byte until the client closes its side; stops and
/// joins its threads when dropped.
#[derive(Debug)]
pub struct EchoServer {
    acceptor: Acceptor,
}

impl EchoServer {
    /// Binds `addr` inside `netns` (port 0 picks a free port) and starts serving.
    pub fn start(netns: &Netns, addr: SocketAddr) -> Result<EchoServer, ServerError> {
        let what = format!("echo server on {addr}");
        Ok(EchoServer {
            acceptor: Acceptor::start(what, netns, addr, echo)?,
        })
    }

    /// The bound address, with the real port when 0 was asked for.
    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }
}

fn echo(mut conn: Conn) -> io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n])?;
    }
}
