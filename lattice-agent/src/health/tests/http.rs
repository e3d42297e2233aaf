//! The HTTP/1.1 exchange against scripted peers over in-memory streams.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

/// Reads the request head from `server` (up to the blank line) and returns it.
async fn read_request(server: &mut DuplexStream) -> String {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        if server.read(&mut byte).await.expect("reading the request") == 0 {
            break;
        }
        request.push(byte[0]);
    }
    String::from_utf8(request).expect("an ASCII request")
}

/// Runs the exchange against a peer that answers `response` and closes.
async fn exchange(response: &'static [u8]) -> (Result<u16, Http1Error>, String) {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let peer = tokio::spawn(async move {
        let request = read_request(&mut server).await;
        server
            .write_all(response)
            .await
            .expect("writing the response");
        request
    });
    let status = http1::status(client, "10.0.0.1:8080", "/healthz?full=1").await;
    (status, peer.await.expect("the peer"))
}

#[tokio::test]
async fn sends_one_get_with_host_and_close() {
    let (status, request) = exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    assert_eq!(status.expect("a status"), 200);
    let lines: Vec<&str> = request.split("\r\n").collect();
    assert_eq!(lines[0], "GET /healthz?full=1 HTTP/1.1");
    assert!(lines.contains(&"Host: 10.0.0.1:8080"), "{request}");
    assert!(lines.contains(&"Connection: close"), "{request}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("User-Agent: lattice-health-checker/")),
        "{request}"
    );
}

#[tokio::test]
async fn responses() {
    let table: &[(&str, &[u8], Result<u16, Malformed>)] = &[
        ("plain 503", b"HTTP/1.0 503 Service Unavailable\r\n\r\n", Ok(503)),
        ("bare LF line ends", b"HTTP/1.1 204 No Content\n\n", Ok(204)),
        (
            "interim responses are skipped",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\n\r\n",
            Ok(201),
        ),
        ("101 is final", b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Ok(101)),
        ("closed at once", b"", Err(Malformed::Closed)),
        ("closed mid-line", b"HTTP/1.1 20", Err(Malformed::Closed)),
        ("closed after an interim head", b"HTTP/1.1 100 Continue\r\n", Err(Malformed::Closed)),
    ];
    for (name, response, expected) in table {
        let (status, _) = exchange(response).await;
        match (status, expected) {
            (Ok(status), Ok(expected)) => assert_eq!(status, *expected, "{name}"),
            (Err(Http1Error::Malformed(got)), Err(expected)) => {
                assert_eq!(&got, expected, "{name}")
            }
            (got, _) => panic!("{name}: got {got:?}, expected {expected:?}"),
        }
    }
    let (status, _) = exchange(b"SSH-2.0-OpenSSH_9.2p1\r\n").await;
    assert!(
        matches!(status, Err(Http1Error::Malformed(Malformed::StatusLine(_)))),
        "{status:?}"
    );
}

#[tokio::test]
async fn endless_head_is_too_long() {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let peer = tokio::spawn(async move {
        read_request(&mut server).await;
        let junk = vec![b'x'; 4096];
        // Until the client stops reading and drops its end.
        while server.write_all(&junk).await.is_ok() {}
    });
    let status = http1::status(client, "h", "/").await;
    assert!(
        matches!(status, Err(Http1Error::Malformed(Malformed::TooLong))),
        "{status:?}"
    );
    peer.await.expect("the peer");
}

#[tokio::test(start_paused = true)]
async fn silent_peer_runs_into_the_probe_timeout() {
    // The exchange itself has no timer; the prober bounds it. On a paused clock a
    // silent peer just leaves it pending until the deadline.
    let (client, mut server) = tokio::io::duplex(1024);
    let peer = tokio::spawn(async move {
        read_request(&mut server).await;
        std::future::pending::<()>().await;
    });
    let started = tokio::time::Instant::now();
    let result =
        tokio::time::timeout(Duration::from_secs(5), http1::status(client, "h", "/")).await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    peer.abort();
}
