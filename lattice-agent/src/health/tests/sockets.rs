//! Real probes over loopback in the agent's own namespace, with tiny tokio servers.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A server on 127.0.0.1 that answers every connection with `response` (after reading
/// the request head), or says nothing when `response` is `None`.
async fn server(response: Option<&'static str>) -> (SocketAddrV4, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let SocketAddr::V4(addr) = listener.local_addr().expect("an address") else {
        unreachable!("bound to an IPv4 address")
    };
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match response {
                    Some(response) => {
                        let _ = conn.write_all(response.as_bytes()).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
    (addr, task)
}

/// An address nothing listens on: a port that was just free.
async fn closed_port() -> SocketAddrV4 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let SocketAddr::V4(addr) = listener.local_addr().expect("an address") else {
        unreachable!("bound to an IPv4 address")
    };
    addr
}

fn host_prober() -> SocketProber {
    SocketProber::new(Arc::new(HostConnector))
}

#[tokio::test]
async fn tcp_connect_check() {
    let (addr, server) = server(Some("")).await;
    let check = tcp_check(Duration::from_secs(5), Duration::from_secs(2), 2, 2);
    host_prober()
        .probe(addr, &check)
        .await
        .expect("a listening port passes");

    let refused = host_prober()
        .probe(closed_port().await, &check)
        .await
        .expect_err("a closed port fails");
    assert!(
        matches!(&refused, ProbeError::Connect(ConnectError::Connect { source, .. }) if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
    assert_eq!(refused.reason(), ReasonCode::FailedHealthChecks);
    server.abort();
}

#[tokio::test]
async fn http_check_status_and_matcher() {
    let (ok, ok_server) = server(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
    let (err, err_server) = server(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
    ))
    .await;
    let check = http_check("/healthz", 200, Duration::from_secs(2));
    host_prober()
        .probe(ok, &check)
        .await
        .expect("200 matches 200");
    let mismatch = host_prober()
        .probe(err, &check)
        .await
        .expect_err("500 does not match 200");
    assert!(
        matches!(mismatch, ProbeError::Status { status: 500 }),
        "{mismatch:?}"
    );
    assert_eq!(mismatch.reason(), ReasonCode::ResponseCodeMismatch);
    let refused = host_prober()
        .probe(closed_port().await, &check)
        .await
        .expect_err("nothing listens");
    assert_eq!(refused.reason(), ReasonCode::FailedHealthChecks);
    ok_server.abort();
    err_server.abort();
}

#[tokio::test]
async fn http_check_times_out_on_a_silent_target() {
    let (silent, silent_server) = server(None).await;
    let timeout = Duration::from_millis(300);
    let check = http_check("/", 200, timeout);
    let started = Instant::now();
    let error = host_prober()
        .probe(silent, &check)
        .await
        .expect_err("no answer");
    let took = started.elapsed();
    assert!(matches!(error, ProbeError::Timeout { .. }), "{error:?}");
    assert_eq!(error.reason(), ReasonCode::Timeout);
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "the whole check is bounded by its timeout: took {took:?}"
    );
    silent_server.abort();
}

#[tokio::test]
async fn netns_connector_reports_a_missing_namespace() {
    // No root needed: the namespace file does not exist, so nothing is entered.
    let connector = NetnsConnector::new(format!("lattice-health-missing-{}", std::process::id()));
    let error = connector
        .connect(
            "10.0.0.1:80".parse().expect("an address"),
            Duration::from_secs(1),
        )
        .await
        .expect_err("no such namespace");
    assert!(
        matches!(&error, ConnectError::OpenNetns { netns, .. } if netns == connector.netns()),
        "{error:?}"
    );
    assert_eq!(ProbeError::from(error).reason(), ReasonCode::InternalError);
}
