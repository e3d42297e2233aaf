//! Socket acceleration (sock_ops + sk_msg) end to end, with the real kernel programs.
//!
//! - A matrix over message sizes (1 B to 16 MiB), directions (upload, download, both
//!   ways), write sizes (one write, 1-byte writes, 64 KiB writes, blocking and
//!   non-blocking readers), half-close, resets and TLS inside the stream, between a host
//!   client and a host target behind a TCP listener (both in VPC cgroups), once with
//!   acceleration and once with `--no-sockmap`: byte-exact both times, and the counters
//!   show every connection of the first run went socket to socket and none of the
//!   second.
//! - 200 concurrent connections client -> agent (HTTP listener) -> local target, with
//!   the client and the target in a `--sockmap-cgroup` and the agent in a cgroup of its
//!   own: every response exact, and the SOCKHASH empty again afterwards.
//! - An accelerated connection that outlives the agent (SIGKILL) and its restart.
//!
//! Clients, targets and the agent are processes inside test cgroups (sockets belong to
//! the cgroup of the process that made them): targets and clients are this test binary
//! run again in helper mode ([`sockmap_helper_process`]).

mod common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::SocketAddr,
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{eventually, Agent};
use lattice_tests::{Cgroup, Netns, Pki, Topology};
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// Set for the helper processes: their role and arguments.
const HELPER_ENV: &str = "LATTICE_TEST_SOCKMAP_HELPER";
/// Every case (and each helper's wait) is bounded by this.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The first byte a matrix target sends on every connection. The client reads it before
/// it writes, so that both ends are recorded before either writes: acceleration is then
/// certain for every direction, and the counters can be checked exactly.
const GREETING: u8 = b'G';
/// How many connections the concurrency test opens at once.
const CONCURRENT: usize = 200;

const OP_UPLOAD: u32 = 1;
const OP_DOWNLOAD: u32 = 2;
const OP_ECHO: u32 = 3;
const OP_RESET: u32 = 4;
const OP_TLS: u32 = 5;
/// UPLOAD to a target that reads nothing for [`SLOW_READER_PAUSE`]: the writer must be
/// held back (as TCP's flow control does), not let queue everything at the reader.
const OP_SLOW_UPLOAD: u32 = 6;
const SLOW_READER_PAUSE: Duration = Duration::from_secs(2);
/// More than the receiver's limit of unread redirected bytes (the larger of 4 MiB and
/// `net.ipv4.tcp_rmem`'s maximum; 32 MiB here).
const SLOW_UPLOAD_BYTES: u64 = 96 * MIB;
/// DOWNLOAD read by a blocking socket (a plain `read()` loop) instead of tokio's.
const FLAG_BLOCKING_READER: u32 = 1;

const MIB: u64 = 1024 * 1024;
const SIZES: [u64; 5] = [1, 1000, 65_536, 1_000_003, 16 * MIB];

/// One connection of the matrix: what the client asks the target for.
#[derive(Clone, Copy, Debug)]
struct Case {
    op: u32,
    flags: u32,
    size: u64,
    /// Bytes per write (the writer's side); `u64::MAX`: one write.
    chunk: u64,
}

impl Case {
    fn header(&self) -> [u8; 24] {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&self.op.to_le_bytes());
        h[4..8].copy_from_slice(&self.flags.to_le_bytes());
        h[8..16].copy_from_slice(&self.size.to_le_bytes());
        h[16..24].copy_from_slice(&self.chunk.to_le_bytes());
        h
    }

    fn parse(h: &[u8; 24]) -> Case {
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
        Case {
            op: u32_at(0),
            flags: u32_at(4),
            size: u64_at(8),
            chunk: u64_at(16),
        }
    }

    /// Payload bytes the case moves (both directions), without greeting and header.
    fn payload(&self) -> u64 {
        match self.op {
            OP_ECHO | OP_TLS => 2 * self.size,
            OP_UPLOAD | OP_DOWNLOAD | OP_SLOW_UPLOAD => self.size + 16,
            _ => self.size + 2,
        }
    }
}

/// The matrix: every size in every direction, the write and reader variants, resets and
/// TLS.
fn matrix() -> Vec<Case> {
    let case = |op, flags, size, chunk| Case {
        op,
        flags,
        size,
        chunk,
    };
    let mut cases = Vec::new();
    for size in SIZES {
        cases.push(case(OP_UPLOAD, 0, size, u64::MAX));
        cases.push(case(OP_DOWNLOAD, 0, size, u64::MAX));
        cases.push(case(OP_ECHO, 0, size, 65_536));
    }
    // Many small writes, 64 KiB writes, and a blocking reader.
    cases.push(case(OP_UPLOAD, 0, 1000, 1));
    cases.push(case(OP_DOWNLOAD, 0, 1000, 1));
    cases.push(case(OP_DOWNLOAD, 0, 16 * MIB, 65_536));
    cases.push(case(OP_DOWNLOAD, FLAG_BLOCKING_READER, 1_000_003, 4096));
    cases.push(case(OP_DOWNLOAD, FLAG_BLOCKING_READER, 16 * MIB, u64::MAX));
    // The target resets the connection after its data was read.
    cases.push(case(OP_RESET, 0, 1, u64::MAX));
    cases.push(case(OP_RESET, 0, 1_000_003, u64::MAX));
    // A reader that falls behind.
    cases.push(case(OP_SLOW_UPLOAD, 0, SLOW_UPLOAD_BYTES, u64::MAX));
    // TLS inside the stream (rustls on both ends; no kernel TLS).
    cases.push(case(OP_TLS, 0, 1000, 16_384));
    cases.push(case(OP_TLS, 0, 1_000_003, 16_384));
    cases
}

/// Deterministic bytes for a case (xorshift), different per size.
fn pattern(size: u64, seed: u64) -> Vec<u8> {
    let mut x = seed ^ size.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Count and FNV-1a of a byte stream, as both ends compute it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Digest {
    count: u64,
    hash: u64,
}

impl Digest {
    fn new() -> Digest {
        Digest {
            count: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.count += bytes.len() as u64;
    }

    fn of(bytes: &[u8]) -> Digest {
        let mut d = Digest::new();
        d.update(bytes);
        d
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.count.to_le_bytes());
        b[8..].copy_from_slice(&self.hash.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8; 16]) -> Digest {
        Digest {
            count: u64::from_le_bytes(b[..8].try_into().unwrap()),
            hash: u64::from_le_bytes(b[8..].try_into().unwrap()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helper processes (this binary run again with HELPER_ENV set).
// ---------------------------------------------------------------------------------------

/// Not a test of its own: the body of the helper processes. Without the variable it
/// does nothing.
#[test]
fn sockmap_helper_process() {
    let Ok(role) = std::env::var(HELPER_ENV) else {
        return;
    };
    let args: Vec<String> = role.split_whitespace().map(str::to_owned).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let addr: SocketAddr = args[1].parse().unwrap();
        match args[0].as_str() {
            "serve-tcp" => serve_tcp(addr, tls_server(Path::new(&args[2]))).await,
            "drive-tcp" => drive_tcp(addr, tls_client(Path::new(&args[2]))).await,
            "hold-echo" => hold_echo(addr).await,
            "serve-http" => serve_http(addr).await,
            "drive-http" => drive_http(addr, args[2].parse().unwrap()).await,
            other => panic!("unknown helper role {other}"),
        }
    });
}

fn tls_server(dir: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("target.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("target.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

fn tls_client(dir: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn ready() {
    println!("READY");
    std::io::stdout().flush().unwrap();
}

/// The matrix target: greets, reads a case header, plays its side of the case.
async fn serve_tcp(addr: SocketAddr, tls: Arc<rustls::ServerConfig>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    ready();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let tls = Arc::clone(&tls);
        tokio::spawn(async move {
            if let Err(e) = serve_case(stream, tls).await {
                eprintln!("target: {e}");
            }
        });
    }
}

async fn serve_case(mut s: TcpStream, tls: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    s.write_all(&[GREETING]).await?;
    let mut h = [0u8; 24];
    s.read_exact(&mut h).await?;
    let case = Case::parse(&h);
    match case.op {
        OP_UPLOAD => {
            let got = digest_to_eof(&mut s).await?;
            s.write_all(&got.to_bytes()).await?;
            s.shutdown().await?;
        }
        OP_DOWNLOAD => {
            let data = pattern(case.size, 2);
            write_chunks(&mut s, &data, case.chunk).await?;
            // Half-close, then read the client's receipt (it writes from CLOSE_WAIT).
            s.shutdown().await?;
            let mut receipt = [0u8; 16];
            s.read_exact(&mut receipt).await?;
            if Digest::from_bytes(&receipt) != Digest::of(&data) {
                return Err(std::io::Error::other("the client's receipt differs"));
            }
            let rest = digest_to_eof(&mut s).await?;
            if rest.count != 0 {
                return Err(std::io::Error::other("bytes after the receipt"));
            }
        }
        OP_ECHO => {
            let (mut r, mut w) = s.split();
            tokio::io::copy(&mut r, &mut w).await?;
            w.shutdown().await?;
        }
        OP_SLOW_UPLOAD => {
            tokio::time::sleep(SLOW_READER_PAUSE).await;
            let got = digest_to_eof(&mut s).await?;
            s.write_all(&got.to_bytes()).await?;
            s.shutdown().await?;
        }
        OP_RESET => {
            s.write_all(&pattern(case.size, 4)).await?;
            let mut ok = [0u8; 2];
            s.read_exact(&mut ok).await?;
            // SO_LINGER 0: close() sends a RST.
            s.set_zero_linger()?;
            drop(s);
        }
        OP_TLS => {
            let t = tokio_rustls::TlsAcceptor::from(tls).accept(s).await?;
            let (mut r, mut w) = tokio::io::split(t);
            tokio::io::copy(&mut r, &mut w).await?;
            w.shutdown().await?;
        }
        other => return Err(std::io::Error::other(format!("unknown op {other}"))),
    }
    Ok(())
}

async fn digest_to_eof(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Digest> {
    let mut d = Digest::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(d);
        }
        d.update(&buf[..n]);
    }
}

async fn read_to_eof(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

async fn write_chunks(
    w: &mut (impl AsyncWrite + Unpin),
    data: &[u8],
    chunk: u64,
) -> std::io::Result<()> {
    let chunk = usize::try_from(chunk).unwrap_or(usize::MAX).max(1);
    for part in data.chunks(chunk.min(data.len().max(1))) {
        w.write_all(part).await?;
    }
    w.flush().await
}

/// The matrix client: every case in turn; prints one RESULT line (JSON).
async fn drive_tcp(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) {
    let mut failures = Vec::new();
    let mut payload = 0u64;
    let cases = matrix();
    for case in &cases {
        match tokio::time::timeout(CASE_TIMEOUT, run_case(addr, *case, Arc::clone(&tls))).await {
            Ok(Ok(())) => payload += case.payload(),
            Ok(Err(e)) => failures.push(format!("{case:?}: {e}")),
            Err(_) => failures.push(format!("{case:?}: timed out")),
        }
    }
    println!(
        "RESULT {}",
        serde_json::json!({"cases": cases.len(), "payload": payload, "failures": failures})
    );
}

async fn run_case(
    addr: SocketAddr,
    case: Case,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    let e = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let mut s = TcpStream::connect(addr).await.map_err(e("connect"))?;
    let mut g = [0u8; 1];
    s.read_exact(&mut g).await.map_err(e("greeting"))?;
    if g[0] != GREETING {
        return Err(format!("greeting was {:#04x}", g[0]));
    }
    s.write_all(&case.header()).await.map_err(e("header"))?;
    match case.op {
        OP_UPLOAD => {
            let data = pattern(case.size, 1);
            write_chunks(&mut s, &data, case.chunk)
                .await
                .map_err(e("upload"))?;
            s.shutdown().await.map_err(e("half-close"))?;
            let mut got = [0u8; 16];
            s.read_exact(&mut got).await.map_err(e("digest"))?;
            if Digest::from_bytes(&got) != Digest::of(&data) {
                return Err(format!(
                    "the target got {:?}, sent {:?}",
                    Digest::from_bytes(&got),
                    Digest::of(&data)
                ));
            }
            let rest = read_to_eof(&mut s).await.map_err(e("eof"))?;
            if !rest.is_empty() {
                return Err(format!("{} bytes after the digest", rest.len()));
            }
        }
        OP_DOWNLOAD => {
            let want = pattern(case.size, 2);
            let got = if case.flags & FLAG_BLOCKING_READER != 0 {
                // A plain blocking read() loop on a std socket (one thread).
                let std = s.into_std().map_err(e("into_std"))?;
                std.set_nonblocking(false).map_err(e("blocking"))?;
                let (got, std) = tokio::task::spawn_blocking(move || {
                    let mut std = std;
                    let mut got = Vec::new();
                    std::io::Read::read_to_end(&mut std, &mut got).map(|_| (got, std))
                })
                .await
                .unwrap()
                .map_err(e("blocking read"))?;
                std.set_nonblocking(true).map_err(e("non-blocking"))?;
                s = TcpStream::from_std(std).map_err(e("from_std"))?;
                got
            } else {
                read_to_eof(&mut s).await.map_err(e("download"))?
            };
            if got != want {
                return Err(mismatch(&want, &got));
            }
            // From CLOSE_WAIT: the receipt, then our FIN.
            s.write_all(&Digest::of(&got).to_bytes())
                .await
                .map_err(e("receipt"))?;
            s.shutdown().await.map_err(e("half-close"))?;
            let rest = read_to_eof(&mut s).await.map_err(e("eof"))?;
            if !rest.is_empty() {
                return Err(format!("{} bytes after the data", rest.len()));
            }
        }
        OP_ECHO => {
            let data = pattern(case.size, 3);
            let (mut r, mut w) = s.split();
            echoed(&mut r, &mut w, &data, case.chunk, "echo").await?;
        }
        OP_SLOW_UPLOAD => {
            let data = pattern(case.size, 6);
            // Without reading, the target takes only so much: writes stop being
            // accepted (WouldBlock) before all of it is written.
            let mut accepted = 0;
            while accepted < data.len() {
                let end = (accepted + MIB as usize).min(data.len());
                match s.try_write(&data[accepted..end]) {
                    Ok(n) => accepted += n,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(err) => return Err(format!("slow upload: {err}")),
                }
            }
            if accepted == data.len() {
                return Err("a reader that reads nothing took everything".into());
            }
            s.write_all(&data[accepted..])
                .await
                .map_err(e("slow upload"))?;
            s.shutdown().await.map_err(e("half-close"))?;
            let mut got = [0u8; 16];
            s.read_exact(&mut got).await.map_err(e("digest"))?;
            if Digest::from_bytes(&got) != Digest::of(&data) {
                return Err(format!(
                    "the target got {:?}, sent {:?}",
                    Digest::from_bytes(&got),
                    Digest::of(&data)
                ));
            }
        }
        OP_RESET => {
            let want = pattern(case.size, 4);
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).await.map_err(e("data"))?;
            if got != want {
                return Err(mismatch(&want, &got));
            }
            s.write_all(b"ok").await.map_err(e("ok"))?;
            let mut one = [0u8; 1];
            match s.read(&mut one).await {
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => return Err(format!("after the reset, read gave {other:?}")),
            }
            match s.write_all(b"late").await {
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                    ) => {}
                other => return Err(format!("after the reset, write gave {other:?}")),
            }
        }
        OP_TLS => {
            let name = rustls::pki_types::ServerName::try_from("target.test").unwrap();
            let t = tokio_rustls::TlsConnector::from(tls)
                .connect(name, s)
                .await
                .map_err(e("TLS handshake"))?;
            let data = pattern(case.size, 5);
            let (mut r, mut w) = tokio::io::split(t);
            echoed(&mut r, &mut w, &data, case.chunk, "TLS").await?;
        }
        other => return Err(format!("unknown op {other}")),
    }
    Ok(())
}

/// Sends `data` in `chunk`s and half-closes while reading to the end at the same time
/// (so neither side's buffers can deadlock): what comes back must be `data`.
async fn echoed(
    r: &mut (impl AsyncRead + Unpin),
    w: &mut (impl AsyncWrite + Unpin),
    data: &[u8],
    chunk: u64,
    what: &str,
) -> Result<(), String> {
    let (sent, got) = tokio::join!(
        async {
            write_chunks(w, data, chunk).await?;
            w.shutdown().await
        },
        read_to_eof(r)
    );
    sent.map_err(|e| format!("{what} send: {e}"))?;
    let got = got.map_err(|e| format!("{what} receive: {e}"))?;
    if got != data {
        return Err(mismatch(data, &got));
    }
    Ok(())
}

fn mismatch(want: &[u8], got: &[u8]) -> String {
    let at = want.iter().zip(got).position(|(a, b)| a != b);
    format!(
        "got {} bytes, want {}; first difference at {at:?}",
        got.len(),
        want.len()
    )
}

/// One long connection (ECHO) driven by the test through stdin: each line `N` sends N
/// bytes and checks the echo, then prints `DONE N`; end of input closes it.
async fn hold_echo(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut g = [0u8; 1];
    s.read_exact(&mut g).await.unwrap();
    let case = Case {
        op: OP_ECHO,
        flags: 0,
        size: 0,
        chunk: 0,
    };
    s.write_all(&case.header()).await.unwrap();
    ready();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin());
    let mut round = 0u64;
    loop {
        let mut line = String::new();
        if tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line)
            .await
            .unwrap()
            == 0
        {
            break;
        }
        let n: u64 = line.trim().parse().unwrap();
        round += 1;
        let data = pattern(n, 10 + round);
        let mut got = vec![0u8; data.len()];
        let (r, w) = s.split();
        let (sent, read) = tokio::join!(
            async move {
                let mut w = w;
                w.write_all(&data).await.map(|()| data)
            },
            async move {
                let mut r = r;
                r.read_exact(&mut got).await.map(|_| got)
            }
        );
        let (data, got) = (sent.unwrap(), read.unwrap());
        assert!(got == data, "{}", mismatch(&data, &got));
        println!("DONE {n}");
        std::io::stdout().flush().unwrap();
    }
    s.shutdown().await.unwrap();
    assert!(read_to_eof(&mut s).await.unwrap().is_empty());
    println!("CLOSED");
}

/// An HTTP/1.1 target that answers every request with its body, then closes.
async fn serve_http(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).await.unwrap();
    ready();
    loop {
        let (mut s, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let Ok((_, body)) = read_http(&mut s).await else {
                return;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
            let _ = s.shutdown().await;
            let _ = read_to_eof(&mut s).await;
        });
    }
}

/// Reads one HTTP/1.1 message (head and a content-length body).
async fn read_http(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok((head, body))
}

/// `n` HTTP clients at once: all connect, wait for each other, then each POSTs a body
/// of its own size and checks the echo. Prints one RESULT line (JSON).
async fn drive_http(addr: SocketAddr, n: usize) {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let size = 1 + (i as u64 * 7919) % (256 * 1024);
                let body = pattern(size, 100 + i as u64);
                let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                barrier.wait().await;
                let head = format!(
                    "POST /echo HTTP/1.1\r\nhost: echo\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n"
                );
                s.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
                s.write_all(&body).await.map_err(|e| e.to_string())?;
                let (head, got) = read_http(&mut s).await.map_err(|e| e.to_string())?;
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(format!("status: {}", head.lines().next().unwrap_or("")));
                }
                if got != body {
                    return Err(mismatch(&body, &got));
                }
                Ok::<u64, String>(size)
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut bytes = 0;
    for t in tasks {
        match tokio::time::timeout(CASE_TIMEOUT, t).await {
            Ok(Ok(Ok(size))) => bytes += size,
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push("timed out".into()),
        }
    }
    println!(
        "RESULT {}",
        serde_json::json!({"cases": n, "payload": bytes, "failures": failures})
    );
}

// ---------------------------------------------------------------------------------------
// The tests' side.
// ---------------------------------------------------------------------------------------

/// A helper process, killed when dropped.
struct Helper {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stdin: Option<ChildStdin>,
    name: String,
}

impl Helper {
    /// Starts this binary in helper mode `role` inside `cgroup` and `netns`; waits for
    /// its `READY` line when `wait_ready`.
    fn start(cgroup: &Cgroup, netns: &Netns, role: &str, wait_ready: bool) -> Helper {
        let exe = std::env::current_exe().unwrap();
        let mut child = cgroup
            .command_in(netns, &exe)
            .args([
                "--exact",
                "sockmap_helper_process",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(HELPER_ENV, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a helper process");
        let mut helper = Helper {
            stdout: BufReader::new(child.stdout.take().unwrap()),
            stdin: child.stdin.take(),
            child,
            name: role.to_owned(),
        };
        if wait_ready {
            helper.expect_line("READY", READY_TIMEOUT);
        }
        helper
    }

    /// Reads stdout lines until one starts with `prefix` (returns it) or `timeout`.
    fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        // Lines are read on this thread; a helper stuck past the deadline is killed,
        // which ends the read.
        let pid = self.child.id();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                }
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            })
        };
        let mut seen = String::new();
        let found = loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap_or(0);
            if n == 0 {
                break None;
            }
            // The first line follows libtest's `test sockmap_helper_process ... `.
            if let Some(at) = line.find(prefix) {
                break Some(line[at..].trim_end().to_owned());
            }
            seen.push_str(&line);
        };
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = watchdog.join();
        found.unwrap_or_else(|| {
            panic!(
                "helper {} ended (or timed out) before a {prefix} line:\n{seen}",
                self.name
            )
        })
    }

    /// Sends one line to the helper's stdin.
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes the helper's stdin (end of input).
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the helper to exit and returns its RESULT (JSON).
    fn result(mut self, timeout: Duration) -> Value {
        let line = self.expect_line("RESULT ", timeout);
        serde_json::from_str(line.trim_start_matches("RESULT ")).unwrap()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sockmap section of `maps --json`.
fn sockmap(agent: &Agent) -> Value {
    agent.maps()["sockmap"].clone()
}

fn counter(v: &Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {v:#}"))
}

fn check_result(result: &Value, what: &str) {
    let failures = result["failures"].as_array().unwrap();
    assert!(failures.is_empty(), "{what}: {failures:#?}");
}

/// The host-to-host setup: a VPC of client cgroups associated with a service whose TCP
/// listener forwards to a target in a VPC of host cgroups; both in one namespace (the
/// test's stand-in for the host).
struct HostLab {
    topo: Topology,
    web: Cgroup,
    targets: Cgroup,
    agent_cgroup: Cgroup,
    host: Netns,
    pki_dir: tempfile::TempDir,
}

const HOST_TARGET: &str = "127.1.0.10:7300";

fn host_lab() -> HostLab {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_cgroup("web").unwrap();
    let targets = topo.add_cgroup("targets").unwrap();
    let agent_cgroup = topo.add_cgroup("agent").unwrap();
    let host = topo.add_netns("host").unwrap();
    host.add_addr("lo", "127.1.0.10/32").unwrap();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    pki.ca("ca", "/CN=sockmap test CA");
    pki.issue("ca", "target", "/CN=target.test", &["DNS:target.test"]);
    HostLab {
        topo,
        web,
        targets,
        agent_cgroup,
        host,
        pki_dir,
    }
}

fn host_config(lab: &HostLab) -> String {
    format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.95.0.0/16, attachments: [{{ cgroup: {web} }}] }}
  - {{ name: vpc-host, account: "111111111111", cidr: 127.1.0.0/16, attachments: [{{ cgroup: {targets} }}] }}
serviceNetworks:
  - name: host-net
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-web }}]
    serviceAssociations: [echo]
services:
  - name: echo
    account: "111111111111"
    authType: NONE
    listeners:
      - name: tcp
        protocol: TCP
        port: 7777
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: echo-tg }}] }} }}
targetGroups:
  - name: echo-tg
    type: IP
    config: {{ vpcIdentifier: vpc-host, protocol: TCP, port: 7300, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 127.1.0.10 }}]
"#,
        web = lab.web.relative_path().trim_start_matches('/'),
        targets = lab.targets.relative_path().trim_start_matches('/'),
    )
}

#[test]
fn the_matrix_is_byte_exact_with_and_without_acceleration() {
    let mut lab = host_lab();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let yaml = host_config(&lab);
    let pki = lab.pki_dir.path().display().to_string();

    for accelerated in [true, false] {
        let args: &[&str] = if accelerated { &[] } else { &["--no-sockmap"] };
        let agent = Agent::start_in_cgroup(
            tempfile::tempdir().unwrap(),
            &yaml,
            &root,
            args,
            Some(lab.agent_cgroup.clone()),
        );
        let vip = agent.vip_addr("echo", 7777);
        let before = sockmap(&agent);
        assert_eq!(before["enabled"], accelerated, "{before:#}");
        let target = Helper::start(
            &lab.targets,
            &lab.host,
            &format!("serve-tcp {HOST_TARGET} {pki}"),
            true,
        );
        let client = Helper::start(
            &lab.web,
            &lab.host,
            &format!("drive-tcp {vip} {pki}"),
            false,
        );
        let result = client.result(Duration::from_secs(300));
        drop(target);
        let mode = if accelerated { "accelerated" } else { "normal" };
        check_result(&result, mode);
        let cases = result["cases"].as_u64().unwrap();
        let payload = result["payload"].as_u64().unwrap();
        assert_eq!(cases as usize, matrix().len());

        // Every socket is gone from the SOCKHASH once its connection closed.
        assert!(
            eventually(Duration::from_secs(10), || counter(
                &sockmap(&agent),
                "openSockets"
            ) == 0),
            "{:#}",
            sockmap(&agent)
        );
        let after = sockmap(&agent);
        let delta = |name: &str| counter(&after, name) - counter(&before, name);
        eprintln!("{mode}: {cases} connections, {payload} payload bytes; sockmap {after:#}");
        if accelerated {
            // Every connection went socket to socket, in both directions. The only
            // bytes of the matrix that took the TCP path are the writes after a reset
            // (the peer socket is gone: they fail as over TCP) and the slow reader's
            // excess (its queue reached the limit: TCP's flow control held the writer
            // back).
            let resets = matrix().iter().filter(|c| c.op == OP_RESET).count() as u64;
            assert_eq!(delta("connectionsAccelerated"), cases, "{after:#}");
            assert_eq!(delta("socketsRecorded"), 2 * cases, "{after:#}");
            // (Normal bytes can undercount: after a write TCP could not take at once,
            // the kernel applies the last verdict to the next write without running
            // sk_msg.)
            assert!(
                delta("redirectedBytes") >= payload - SLOW_UPLOAD_BYTES,
                "{after:#}"
            );
            assert!(delta("throttledMessages") >= 1, "{after:#}");
            assert!(
                delta("normalBytes") <= resets * 4 + SLOW_UPLOAD_BYTES,
                "{after:#}"
            );
            assert_eq!(delta("insertErrors"), 0, "{after:#}");
        } else {
            for name in [
                "connectionsAccelerated",
                "socketsRecorded",
                "redirectedBytes",
                "normalMessages",
                "throttledMessages",
            ] {
                assert_eq!(delta(name), 0, "{name}: {after:#}");
            }
        }
        assert!(!agent.log().contains("WARN"), "{}", agent.log());
    }
}

#[test]
fn a_connection_with_one_recorded_end_goes_the_normal_way() {
    let mut lab = host_lab();
    // The target runs in a cgroup lattice does not attach: only the client's socket is
    // recorded, so nothing can be handed across.
    let plain = lab.topo.add_cgroup("plain").unwrap();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let pki = lab.pki_dir.path().display().to_string();
    let agent = Agent::start_in_cgroup(
        tempfile::tempdir().unwrap(),
        &host_config(&lab),
        &root,
        &[],
        Some(lab.agent_cgroup.clone()),
    );
    let vip = agent.vip_addr("echo", 7777);
    let before = sockmap(&agent);
    let _target = Helper::start(
        &plain,
        &lab.host,
        &format!("serve-tcp {HOST_TARGET} {pki}"),
        true,
    );
    let client = Helper::start(
        &lab.web,
        &lab.host,
        &format!("drive-tcp {vip} {pki}"),
        false,
    );
    check_result(&client.result(Duration::from_secs(300)), "one recorded end");
    let after = sockmap(&agent);
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    let cases = matrix().len() as u64;
    assert_eq!(delta("socketsRecorded"), cases, "{after:#}");
    assert_eq!(delta("connectionsAccelerated"), 0, "{after:#}");
    assert_eq!(delta("redirectedMessages"), 0, "{after:#}");
    assert!(delta("normalMessages") >= cases, "{after:#}");
    assert!(
        eventually(Duration::from_secs(10), || counter(
            &sockmap(&agent),
            "openSockets"
        ) == 0),
        "{:#}",
        sockmap(&agent)
    );
}

#[test]
fn accelerated_connections_outlive_an_agent_restart() {
    let mut lab = host_lab();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let pki = lab.pki_dir.path().display().to_string();
    let mut agent = Agent::start_in_cgroup(
        tempfile::tempdir().unwrap(),
        &host_config(&lab),
        &root,
        &[],
        Some(lab.agent_cgroup.clone()),
    );
    let vip = agent.vip_addr("echo", 7777);
    let _target = Helper::start(
        &lab.targets,
        &lab.host,
        &format!("serve-tcp {HOST_TARGET} {pki}"),
        true,
    );
    let mut held = Helper::start(&lab.web, &lab.host, &format!("hold-echo {vip}"), true);
    let round = |held: &mut Helper, n: u64| {
        held.send(&n.to_string());
        held.expect_line(&format!("DONE {n}"), CASE_TIMEOUT);
    };
    let redirected = |agent: &Agent| counter(&sockmap(agent), "redirectedBytes");

    round(&mut held, 1_000_000);
    let s = sockmap(&agent);
    assert_eq!(counter(&s, "openSockets"), 2, "{s:#}");
    assert_eq!(counter(&s, "openPairs"), 1, "{s:#}");
    let r0 = redirected(&agent);

    // bpftool shows the SOCKHASH with the two sockets.
    let map = root.join(lattice_common::sockmap::SOCKS_MAP);
    let shown = Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(&map)
        .output()
        .expect("bpftool");
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("bpftool -j");
    assert_eq!(shown["type"], "sockhash", "{shown:#}");
    let dumped = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(&map)
        .output()
        .expect("bpftool");
    let dumped: Value = serde_json::from_slice(&dumped.stdout).expect("bpftool -j");
    assert_eq!(dumped.as_array().map(Vec::len), Some(2), "{dumped:#}");

    // The agent dies: the connection goes on, still socket to socket.
    agent.kill();
    round(&mut held, 3_000_000);
    let r1 = redirected(&agent);
    assert!(r1 >= r0 + 2 * 3_000_000, "{r0} -> {r1}");

    // A new agent adopts the maps; the connection goes on, and new ones are
    // accelerated by the new programs.
    agent.spawn();
    round(&mut held, 2_000_000);
    let r2 = redirected(&agent);
    assert!(r2 >= r1 + 2 * 2_000_000, "{r1} -> {r2}");
    let before = counter(&sockmap(&agent), "connectionsAccelerated");
    let client = Helper::start(
        &lab.web,
        &lab.host,
        &format!("drive-tcp {vip} {pki}"),
        false,
    );
    check_result(
        &client.result(Duration::from_secs(300)),
        "after the restart",
    );
    let after = counter(&sockmap(&agent), "connectionsAccelerated");
    assert_eq!(after - before, matrix().len() as u64);

    // An agent with --no-sockmap: the open connection finishes as it is, accelerated;
    // new ones are not recorded at all.
    agent.kill();
    agent.extra_args = vec!["--no-sockmap".into()];
    agent.spawn();
    let r3 = redirected(&agent);
    round(&mut held, 1_000_000);
    assert!(redirected(&agent) >= r3 + 2 * 1_000_000);
    let before = sockmap(&agent);
    assert_eq!(before["enabled"], false, "{before:#}");
    let client = Helper::start(
        &lab.web,
        &lab.host,
        &format!("drive-tcp {vip} {pki}"),
        false,
    );
    check_result(&client.result(Duration::from_secs(300)), "--no-sockmap");
    let after = sockmap(&agent);
    for name in ["socketsRecorded", "connectionsAccelerated"] {
        assert_eq!(counter(&after, name), counter(&before, name), "{after:#}");
    }

    held.close_stdin();
    held.expect_line("CLOSED", CASE_TIMEOUT);
    drop(held);
    assert!(
        eventually(Duration::from_secs(10), || counter(
            &sockmap(&agent),
            "openSockets"
        ) == 0),
        "{:#}",
        sockmap(&agent)
    );
    assert!(!agent.log().contains("WARN"), "{}", agent.log());
}

#[test]
fn two_hundred_concurrent_connections_through_the_agent_lose_nothing() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let work = topo.add_cgroup("work").unwrap();
    let agent_cgroup = topo.add_cgroup("agent").unwrap();
    let client_ns = topo.add_netns("client").unwrap();
    let target_ns = topo.add_netns("target").unwrap();
    client_ns.add_addr("lo", "10.93.0.5/32").unwrap();
    target_ns.add_addr("lo", "10.94.0.7/32").unwrap();
    let yaml = format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-client, account: "111111111111", cidr: 10.93.0.0/16, attachments: [{{ netns: {client} }}] }}
  - {{ name: vpc-target, account: "111111111111", cidr: 10.94.0.0/16, attachments: [{{ netns: {target} }}] }}
serviceNetworks:
  - name: net
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-client }}]
    serviceAssociations: [echo]
services:
  - name: echo
    account: "111111111111"
    authType: NONE
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: echo-tg }}] }} }}
targetGroups:
  - name: echo-tg
    type: IP
    config: {{ vpcIdentifier: vpc-target, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.94.0.7 }}]
"#,
        client = client_ns.name(),
        target = target_ns.name(),
    );
    let root = topo.bpffs_root("agent").unwrap();
    let work_path = work.relative_path();
    let agent = Agent::start_in_cgroup(
        tempfile::tempdir().unwrap(),
        &yaml,
        &root,
        &["--sockmap-cgroup", work_path.trim_start_matches('/')],
        Some(agent_cgroup.clone()),
    );
    let vip = agent.vip_addr("echo", 80);
    let _target = Helper::start(&work, &target_ns, "serve-http 10.94.0.7:8080", true);
    assert!(
        eventually(Duration::from_secs(10), || agent
            .log()
            .contains("serving L7 site")),
        "{}",
        agent.log()
    );
    let before = sockmap(&agent);
    let client = Helper::start(
        &work,
        &client_ns,
        &format!("drive-http {vip} {CONCURRENT}"),
        false,
    );
    let result = client.result(Duration::from_secs(120));
    check_result(&result, "concurrent HTTP");
    let payload = result["payload"].as_u64().unwrap();

    assert!(
        eventually(Duration::from_secs(15), || counter(
            &sockmap(&agent),
            "openSockets"
        ) == 0),
        "the SOCKHASH is not empty after every connection closed: {:#}",
        sockmap(&agent)
    );
    let after = sockmap(&agent);
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    eprintln!("{CONCURRENT} connections, {payload} body bytes each way; sockmap {after:#}");
    // Two hops per request (client -> agent, agent -> target), four sockets.
    assert_eq!(delta("socketsRecorded"), 4 * CONCURRENT as u64, "{after:#}");
    assert_eq!(delta("insertErrors"), 0, "{after:#}");
    // Responses always go socket to socket (both ends are recorded before the first
    // byte of a response); a request's first write may race the peer's recording.
    assert!(
        delta("connectionsAccelerated") >= 2 * CONCURRENT as u64 * 9 / 10,
        "{after:#}"
    );
    assert!(delta("redirectedBytes") >= payload, "{after:#}");
    assert!(!agent.log().contains("WARN"), "{}", agent.log());
}
