//! The host's resolvers: resolv.conf, and exchanges with a fake resolver on loopback.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Query, ResponseCode},
    rr::{RData, RecordType},
};

use super::{fqdn, FakeUpstream, UPSTREAM_ANSWER};
use crate::dns::forward::{
    parse_resolv_conf, upstream_payload, upstream_query, ForwardError, Forwarder,
    RESOLV_CONF_RECHECK, UPSTREAM_EDNS_PAYLOAD,
};

#[test]
fn resolv_conf_nameservers_in_order() {
    let text = "\
# written by a DHCP client
search example.internal
nameserver 10.255.255.53
nameserver   192.0.2.1  # a comment
options edns0 timeout:2
;nameserver 192.0.2.99
nameserver fe80::1%eth0
nameserver 2001:db8::53
nameserver not-an-address
nameserver
";
    let want: Vec<SocketAddr> = ["10.255.255.53:53", "192.0.2.1:53", "[2001:db8::53]:53"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(parse_resolv_conf(text), want);
    assert!(parse_resolv_conf("").is_empty());
}

#[test]
fn missing_resolv_conf_means_no_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let forwarder = Forwarder::from_resolv_conf(&dir.path().join("resolv.conf")).unwrap();
    assert!(forwarder.upstreams().is_empty());
}

#[test]
fn resolv_conf_is_followed_as_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    // As resolvconf and systemd-resolved write it: a new file renamed over the old one.
    let replace = |text: &str| {
        let next = dir.path().join("resolv.conf.new");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &path).unwrap();
    };
    let addrs = |list: &[&str]| -> Vec<SocketAddr> {
        list.iter()
            .map(|a| format!("{a}:53").parse().unwrap())
            .collect()
    };
    replace("nameserver 192.0.2.1\n");
    let forwarder = Forwarder::from_resolv_conf(&path).unwrap();
    assert_eq!(*forwarder.upstreams(), addrs(&["192.0.2.1"]));
    let start = Instant::now();

    replace("nameserver 192.0.2.2\nnameserver 192.0.2.3\n");
    // Looked at no more often than RESOLV_CONF_RECHECK.
    forwarder.refresh(start);
    assert_eq!(*forwarder.upstreams(), addrs(&["192.0.2.1"]));
    let mut at = start + RESOLV_CONF_RECHECK;
    forwarder.refresh(at);
    assert_eq!(*forwarder.upstreams(), addrs(&["192.0.2.2", "192.0.2.3"]));

    // Rewritten in place (same inode), to a list of another length.
    std::fs::write(&path, "nameserver 192.0.2.44\n").unwrap();
    at += RESOLV_CONF_RECHECK;
    forwarder.refresh(at);
    assert_eq!(*forwarder.upstreams(), addrs(&["192.0.2.44"]));

    // Gone: no upstream, until the file is back.
    std::fs::remove_file(&path).unwrap();
    at += RESOLV_CONF_RECHECK;
    forwarder.refresh(at);
    assert!(forwarder.upstreams().is_empty());
    replace("nameserver 2001:db8::53\n");
    at += RESOLV_CONF_RECHECK;
    forwarder.refresh(at);
    assert_eq!(
        *forwarder.upstreams(),
        vec!["[2001:db8::53]:53".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn fixed_upstreams_do_not_follow_resolv_conf() {
    let forwarder = Forwarder::new(vec!["192.0.2.9:5353".parse().unwrap()]);
    forwarder.refresh(Instant::now() + RESOLV_CONF_RECHECK * 10);
    assert_eq!(
        *forwarder.upstreams(),
        vec!["192.0.2.9:5353".parse::<SocketAddr>().unwrap()]
    );
}

fn query(name: &str, qtype: RecordType) -> hickory_proto::op::Message {
    upstream_query(
        Query::query(fqdn(name), qtype),
        true,
        false,
        false,
        Some(UPSTREAM_EDNS_PAYLOAD),
    )
}

#[tokio::test]
async fn answers_come_back_over_udp_and_tcp() {
    let upstream = FakeUpstream::start().await;
    let forwarder = Forwarder::new(vec![upstream.addr]);
    for tcp in [false, true] {
        let q = query("upstream.example", RecordType::A);
        let answer = forwarder.forward(&q, tcp).await.expect("answered");
        assert_eq!(answer.id(), q.id());
        assert_eq!(answer.response_code(), ResponseCode::NoError);
        assert_eq!(
            answer.answers()[0].data(),
            &RData::A(hickory_proto::rr::rdata::A(UPSTREAM_ANSWER)),
            "tcp: {tcp}"
        );
        let nx = forwarder
            .forward(&query("nothing.example", RecordType::A), tcp)
            .await
            .expect("answered");
        assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    }
}

#[tokio::test]
async fn no_upstream_fails_at_once() {
    let forwarder = Forwarder::new(vec![]);
    let started = Instant::now();
    let err = forwarder
        .forward(&query("upstream.example", RecordType::A), false)
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::NoUpstream), "{err}");
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn a_silent_upstream_times_out_and_the_next_one_answers() {
    // Bound, never read: queries to it go unanswered.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream = FakeUpstream::start().await;
    let timeout = Duration::from_millis(200);

    let alone = Forwarder::with_timeout(vec![silent.local_addr().unwrap()], timeout);
    let started = Instant::now();
    let err = alone
        .forward(&query("upstream.example", RecordType::A), false)
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "bounded");

    let both = Forwarder::with_timeout(vec![silent.local_addr().unwrap(), upstream.addr], timeout);
    let answer = both
        .forward(&query("upstream.example", RecordType::A), false)
        .await
        .expect("the second upstream answers");
    assert_eq!(answer.answers().len(), 1);
}

#[tokio::test]
async fn servfail_tries_the_next_upstream_and_is_passed_on_when_all_fail() {
    let first = FakeUpstream::start().await;
    let second = FakeUpstream::start().await;
    let forwarder = Forwarder::new(vec![first.addr, second.addr]);
    let answer = forwarder
        .forward(&query("servfail.example", RecordType::A), false)
        .await
        .expect("a SERVFAIL is an answer");
    assert_eq!(answer.response_code(), ResponseCode::ServFail);
    assert_eq!(first.asked(), ["servfail.example."]);
    assert_eq!(second.asked(), ["servfail.example."], "asked next");
}

#[tokio::test]
async fn a_refused_connection_is_an_error_not_a_hang() {
    // A port nothing listens on (bound then dropped).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let forwarder = Forwarder::new(vec![port]);
    let started = Instant::now();
    let err = forwarder
        .forward(&query("upstream.example", RecordType::A), true)
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::Io { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn queries_past_the_limit_in_flight_fail_at_once_and_later_ones_go_on() {
    use crate::dns::forward::MAX_FORWARDS_IN_FLIGHT;
    // A silent upstream holds every forwarded query until its timeout.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let forwarder = std::sync::Arc::new(Forwarder::with_timeout(
        vec![silent.local_addr().unwrap()],
        Duration::from_millis(500),
    ));
    let waiting: Vec<_> = (0..MAX_FORWARDS_IN_FLIGHT)
        .map(|_| {
            let forwarder = std::sync::Arc::clone(&forwarder);
            tokio::spawn(async move {
                forwarder
                    .forward(&query("upstream.example", RecordType::A), false)
                    .await
            })
        })
        .collect();
    // Let them all take their sockets.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let err = forwarder
        .forward(&query("upstream.example", RecordType::A), false)
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::Busy), "{err}");
    assert!(started.elapsed() < Duration::from_millis(100), "at once");
    for query in waiting {
        let err = query.await.unwrap().unwrap_err();
        assert!(matches!(err, ForwardError::Timeout { .. }), "{err}");
    }
    // Their permits are back.
    let err = forwarder
        .forward(&query("upstream.example", RecordType::A), false)
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::Timeout { .. }), "{err}");
}

#[test]
fn the_upstream_sizes_a_udp_answer_for_the_client() {
    for (client, tcp, asked) in [
        // No EDNS: 512 bytes, so the upstream truncates and the client retries on TCP.
        (None, false, None),
        (Some(4096), false, Some(UPSTREAM_EDNS_PAYLOAD)),
        (Some(1232), false, Some(1232)),
        (Some(800), false, Some(800)),
        // Below RFC 6891's floor: taken as 512.
        (Some(100), false, Some(512)),
        (None, true, Some(UPSTREAM_EDNS_PAYLOAD)),
        (Some(512), true, Some(UPSTREAM_EDNS_PAYLOAD)),
    ] {
        assert_eq!(upstream_payload(client, tcp), asked, "{client:?} tcp {tcp}");
    }
}
