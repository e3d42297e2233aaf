//! Probes into a real network namespace. Needs root: without it these tests fail
//! (they never skip). The namespace is made by `lattice_tests::Topology`, which names
//! it uniquely and deletes it when dropped, also on panic; servers and sockets are
//! declared after it so they close first.

use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::time::{Duration, Instant};

use lattice_tests::{HttpServer, Netns, Topology};
use tokio::sync::watch;

use super::*;

/// The target's address inside the namespace (on its loopback).
const TARGET_IP: &str = "10.77.0.5";

/// A namespace with loopback up and [`TARGET_IP`]/32 on it.
fn namespace(topology: &mut Topology) -> Netns {
    let netns = topology
        .add_netns("health")
        .expect("creating a network namespace (these tests need root)");
    netns
        .add_addr("lo", &format!("{TARGET_IP}/32"))
        .expect("adding the target address");
    netns
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(addr) => panic!("{addr} is not IPv4"),
    }
}

#[tokio::test]
async fn netns_connector_reaches_what_the_host_cannot() {
    let mut topology = Topology::new().expect("these tests need root");
    let netns = namespace(&mut topology);
    // Bound from a thread that entered the namespace: the listener lives there.
    let listener = netns
        .run(|| TcpListener::bind(format!("{TARGET_IP}:0")))
        .expect("entering the namespace")
        .expect("binding inside the namespace");
    let addr = listener.local_addr().expect("an address");

    let connector = NetnsConnector::new(netns.name());
    for _ in 0..3 {
        // The kernel completes the handshake from the listen backlog: no accept needed.
        let stream = connector
            .connect(addr, Duration::from_secs(2))
            .await
            .expect("connecting from inside the namespace");
        assert_eq!(stream.peer_addr().expect("connected"), addr);
    }

    let started = Instant::now();
    let from_host = HostConnector.connect(addr, Duration::from_secs(1)).await;
    assert!(
        from_host.is_err(),
        "the host's namespace must not reach {addr}: {from_host:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the timeout"
    );

    // The namespace's port is free in the host: the same address is a different place.
    let check = tcp_check(Duration::from_secs(5), Duration::from_secs(2), 2, 2);
    SocketProber::new(Arc::new(connector))
        .probe(v4(addr), &check)
        .await
        .expect("a TCP check from inside the namespace passes");
    drop(listener);
}

#[tokio::test]
async fn http_check_inside_the_namespace_reads_the_status() {
    let mut topology = Topology::new().expect("these tests need root");
    let netns = namespace(&mut topology);
    let server = HttpServer::start(
        &netns,
        format!("{TARGET_IP}:0").parse().expect("an address"),
        "hc",
    )
    .expect("starting the HTTP server in the namespace");
    let addr = v4(server.addr());
    let prober = SocketProber::new(Arc::new(NetnsConnector::new(netns.name())));

    prober
        .probe(addr, &http_check("/healthz", 200, Duration::from_secs(2)))
        .await
        .expect("the test server answers 200");
    let mismatch = prober
        .probe(addr, &http_check("/healthz", 204, Duration::from_secs(2)))
        .await
        .expect_err("200 does not match 204");
    assert!(
        matches!(mismatch, ProbeError::Status { status: 200 }),
        "{mismatch:?}"
    );

    let from_host = SocketProber::new(Arc::new(HostConnector))
        .probe(addr, &http_check("/healthz", 200, Duration::from_secs(1)))
        .await;
    assert!(from_host.is_err(), "{from_host:?}");
}

#[tokio::test]
async fn checker_follows_a_target_in_the_namespace() {
    let mut topology = Topology::new().expect("these tests need root");
    let netns = namespace(&mut topology);
    let server = HttpServer::start(
        &netns,
        format!("{TARGET_IP}:0").parse().expect("an address"),
        "hc",
    )
    .expect("starting the HTTP server in the namespace");
    let target = target(TARGET_IP, server.addr().port());

    let mut check = http_check("/healthz", 200, Duration::from_millis(500));
    check.interval = Duration::from_millis(100);
    let mut probers = Probers::new();
    let spec = GroupSpec {
        key: GroupKey::new("tg-netns"),
        name: "netns".to_owned(),
        targets: vec![target.clone()],
        check: active(check),
        prober: probers.get(&ProbeNamespace::Netns(netns.name().to_owned())),
    };
    let checker = HealthChecker::start(CheckerOptions::default());
    let mut snapshots = checker.subscribe();
    checker.set_groups(vec![spec]).await.expect("running");

    let key = GroupKey::new("tg-netns");
    wait_for(&mut snapshots, &key, &target, (TargetState::Healthy, None)).await;
    drop(server);
    wait_for(
        &mut snapshots,
        &key,
        &target,
        (TargetState::Unhealthy, Some(ReasonCode::FailedHealthChecks)),
    )
    .await;
    checker.shutdown().await.expect("clean shutdown");
}

/// Waits up to 10 s (real time) until `target` of group `key` is in `expected`.
async fn wait_for(
    snapshots: &mut watch::Receiver<HealthSnapshot>,
    key: &GroupKey,
    target: &Target,
    expected: (TargetState, Option<ReasonCode>),
) {
    let state = |snapshot: &HealthSnapshot| {
        snapshot
            .group(key)
            .and_then(|g| g.target(target))
            .map(|t| (t.state, t.reason))
    };
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while state(&snapshots.borrow_and_update()) != Some(expected) {
            snapshots.changed().await.expect("the checker runs");
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "not {expected:?} within 10 s: {:?}",
        state(&snapshots.borrow())
    );
}
