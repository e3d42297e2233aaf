//! DNS end to end, with the real `dig` inside client namespaces: a reachable service's
//! default and custom names resolve to its VIP (over UDP and TCP, any case), AAAA is
//! NODATA, an unassociated network's service is NXDOMAIN, other names go to the
//! agent's upstream (a tiny resolver of this test on the host's loopback, so nothing
//! depends on the internet) and lattice's names never do; a renamed service resolves
//! under its new name once the agent runs the changed document; a namespace deleted
//! under the agent is let go; `cleanup` removes the DNS rules.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use common::{eventually, Agent, AGENT};
use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{rdata::A, RData, Record, RecordType},
};
use lattice_tests::{client, EchoServer, Netns, Topology};

const TIMEOUT: Duration = Duration::from_secs(20);
/// What the test's upstream answers for `upstream.example.`.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn config(web: &str, other: &str, orders_ns: &str, orders: &str) -> String {
    format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{{ netns: {web} }}] }}
  - {{ name: vpc-other, account: "111111111111", cidr: 10.93.0.0/16, attachments: [{{ netns: {other} }}] }}
  - {{ name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{{ netns: {orders_ns} }}] }}
serviceNetworks:
  - name: shop
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-web }}]
    serviceAssociations: [{orders}]
  - name: back
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-other }}]
    serviceAssociations: [billing]
services:
  - name: {orders}
    account: "111111111111"
    customDomainName: {orders}.shop.internal
    authType: NONE
    listeners:
      - name: tcp
        protocol: TCP
        port: 9000
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: orders-tg }}] }} }}
  - name: billing
    account: "111111111111"
    customDomainName: billing.corp.internal
    authType: NONE
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        defaultAction: {{ fixedResponse: {{ statusCode: 404 }} }}
targetGroups:
  - name: orders-tg
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 7000 }}
    targets: [{{ id: 10.92.0.10 }}]
"#
    )
}

/// What `dig` printed, parsed.
#[derive(Debug)]
struct Dig {
    status: String,
    flags: Vec<String>,
    /// (name, ttl, type, data) of the answer section.
    answers: Vec<(String, u32, String, String)>,
    authority: Vec<String>,
    text: String,
}

impl Dig {
    fn addresses(&self) -> Vec<Ipv4Addr> {
        self.answers
            .iter()
            .filter(|a| a.2 == "A")
            .filter_map(|a| a.3.parse().ok())
            .collect()
    }
}

/// `dig @server name type [+tcp]` inside `ns`.
fn dig(ns: &Netns, server: Ipv4Addr, name: &str, qtype: &str, tcp: bool) -> Dig {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "dig"])
        .arg(format!("@{server}"))
        .args([name, qtype, "+time=2", "+tries=2", "+nocmd", "+nostats"]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd
        .output()
        .expect("run dig (Debian package bind9-dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut dig = Dig {
        status: String::new(),
        flags: Vec::new(),
        answers: Vec::new(),
        authority: Vec::new(),
        text: text.clone(),
    };
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            dig.status = rest.split(',').next().unwrap_or("").to_owned();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            dig.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        }
        if line.starts_with(";; ") && line.ends_with("SECTION:") {
            section = if line.contains("ANSWER") {
                "answer"
            } else if line.contains("AUTHORITY") {
                "authority"
            } else {
                "other"
            };
            continue;
        }
        if line.is_empty() {
            section = "";
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match section {
            "answer" if fields.len() >= 5 => dig.answers.push((
                fields[0].to_owned(),
                fields[1].parse().unwrap_or(0),
                fields[3].to_owned(),
                fields[4..].join(" "),
            )),
            "authority" if fields.len() >= 4 => dig.authority.push(fields[3].to_owned()),
            _ => {}
        }
    }
    dig
}

/// A resolver on the host's loopback, UDP and TCP on one port: `upstream.example.` has
/// an A record, every other name is NXDOMAIN. It records what it was asked.
struct Upstream {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let udp_thread = {
            let (asked, stop) = (Arc::clone(&asked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = udp.recv_from(&mut buf) {
                        let _ = udp.send_to(&answer(&buf[..n], &asked), from);
                    }
                }
            })
        };
        let tcp_thread = {
            let (asked, stop) = (Arc::clone(&asked), Arc::clone(&stop));
            std::thread::spawn(move || {
                use std::io::{Read as _, Write as _};
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut buf).is_err() {
                        continue;
                    }
                    let reply = answer(&buf, &asked);
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    let _ = s.write_all(&framed);
                }
            })
        };
        Upstream {
            addr,
            asked,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn answer(query: &[u8], asked: &Mutex<Vec<String>>) -> Vec<u8> {
    let query = Message::from_vec(query).expect("a valid query");
    let question = query.query().expect("a question").clone();
    let name = question.name().to_ascii().to_ascii_lowercase();
    asked.lock().unwrap().push(name.clone());
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .add_query(question.clone());
    if name == "upstream.example." && question.query_type() == RecordType::A {
        reply.add_answer(Record::from_rdata(
            question.name().clone(),
            300,
            RData::A(A(UPSTREAM_ANSWER)),
        ));
    } else if name != "upstream.example." {
        reply.set_response_code(ResponseCode::NXDomain);
    }
    reply.to_vec().unwrap()
}

/// A service's field from `show --json`.
fn shown(agent: &Agent, service: &str, field: &str) -> String {
    agent.show()["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .unwrap_or_else(|| panic!("no service {service}"))[field]
        .as_str()
        .unwrap()
        .to_owned()
}

fn dns_rules(ns: &Netns) -> usize {
    ns.ip(&["rule", "show"])
        .unwrap()
        .lines()
        .filter(|l| l.contains("lookup 4243"))
        .count()
}

#[test]
fn dig_resolves_reachable_names_refuses_others_forwards_the_rest_and_follows_a_rename() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let other = topo.add_netns("other").unwrap();
    let orders_ns = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    other.add_addr("lo", "10.93.0.5/32").unwrap();
    orders_ns.add_addr("lo", "10.92.0.10/32").unwrap();
    let _echo = EchoServer::start(&orders_ns, "10.92.0.10:7000".parse().unwrap()).unwrap();
    let upstream = Upstream::start();
    let root = topo.bpffs_root("agent").unwrap();
    let (w, o, n) = (web.name(), other.name(), orders_ns.name());
    // The agent's forwarder asks the test's resolver, not the host's.
    let upstream_arg = upstream.addr.to_string();
    let mut agent = Agent::start_with(
        tempfile::tempdir().unwrap(),
        &config(w, o, n, "orders"),
        &root,
        &["--dns-upstream", &upstream_arg],
    );

    let show = agent.show();
    let dns: Ipv4Addr = show["agentAddress"].as_str().unwrap().parse().unwrap();
    let orders_name = shown(&agent, "orders", "dnsName");
    let orders_vip: Ipv4Addr = shown(&agent, "orders", "vip").parse().unwrap();
    let billing_name = shown(&agent, "billing", "dnsName");
    let billing_vip: Ipv4Addr = shown(&agent, "billing", "vip").parse().unwrap();
    assert!(
        agent.log().contains("serving DNS"),
        "DNS is served once the agent is ready:\n{}",
        agent.log()
    );

    // The default name, over UDP: the VIP, authoritative, a 10 s TTL.
    let r = dig(&web, dns, &orders_name, "A", false);
    assert_eq!(r.status, "NOERROR", "{}", r.text);
    assert_eq!(r.addresses(), [orders_vip], "{}", r.text);
    assert_eq!(r.answers[0].1, 10, "TTL: {}", r.text);
    assert!(r.flags.iter().any(|f| f == "aa"), "{}", r.text);
    // ... and the name leads to the service.
    client::echo_roundtrip(
        &web,
        SocketAddr::from((r.addresses()[0], 9000)),
        b"found by name",
        TIMEOUT,
    )
    .expect("the resolved VIP reaches orders");

    // The custom name, in capitals with the trailing dot, over TCP too.
    for tcp in [false, true] {
        let r = dig(&web, dns, "ORDERS.Shop.Internal.", "A", tcp);
        assert_eq!(r.addresses(), [orders_vip], "tcp {tcp}: {}", r.text);
    }
    let r = dig(&web, dns, &orders_name, "A", true);
    assert_eq!(r.addresses(), [orders_vip], "{}", r.text);

    // AAAA: VIPs are IPv4 only, so NODATA (NOERROR, no answer, the SOA).
    let r = dig(&web, dns, &orders_name, "AAAA", false);
    assert_eq!(r.status, "NOERROR", "{}", r.text);
    assert!(r.answers.is_empty(), "{}", r.text);
    assert_eq!(r.authority, ["SOA"], "{}", r.text);

    // A service of a network vpc-web is not associated with: NXDOMAIN, both names.
    for name in [billing_name.as_str(), "billing.corp.internal"] {
        let r = dig(&web, dns, name, "A", false);
        assert_eq!(r.status, "NXDOMAIN", "{name}: {}", r.text);
    }
    // vpc-other sees it the other way round.
    let r = dig(&other, dns, &billing_name, "A", false);
    assert_eq!(r.addresses(), [billing_vip], "{}", r.text);
    let r = dig(&other, dns, "billing.corp.internal", "A", true);
    assert_eq!(r.addresses(), [billing_vip], "{}", r.text);
    for name in [orders_name.as_str(), "orders.shop.internal"] {
        let r = dig(&other, dns, name, "A", false);
        assert_eq!(r.status, "NXDOMAIN", "{name}: {}", r.text);
    }

    // Other names go to the upstream, over UDP and TCP; its NXDOMAIN comes back.
    for tcp in [false, true] {
        let r = dig(&web, dns, "upstream.example", "A", tcp);
        assert_eq!(r.addresses(), [UPSTREAM_ANSWER], "tcp {tcp}: {}", r.text);
        assert!(!r.flags.iter().any(|f| f == "aa"), "{}", r.text);
        let r = dig(&web, dns, "nothing.example", "A", tcp);
        assert_eq!(r.status, "NXDOMAIN", "{}", r.text);
    }
    let asked = upstream.asked();
    assert!(
        asked
            .iter()
            .all(|n| n == "upstream.example." || n == "nothing.example."),
        "lattice's names are never forwarded: {asked:?}"
    );
    assert_eq!(asked.len(), 4, "{asked:?}");

    // A renamed service (and custom name) right after the running agent applies the
    // changed document.
    agent
        .apply(&config(w, o, n, "orders-next"))
        .expect("the rename is applied");
    let next_name = shown(&agent, "orders-next", "dnsName");
    let next_vip: Ipv4Addr = shown(&agent, "orders-next", "vip").parse().unwrap();
    assert_ne!(next_name, orders_name);
    let r = dig(&web, dns, &next_name, "A", false);
    assert_eq!(r.addresses(), [next_vip], "{}", r.text);
    let r = dig(&web, dns, "orders-next.shop.internal", "A", false);
    assert_eq!(r.addresses(), [next_vip], "{}", r.text);
    for name in [orders_name.as_str(), "orders.shop.internal"] {
        let r = dig(&web, dns, name, "A", false);
        assert_eq!(r.status, "NXDOMAIN", "the old name {name}: {}", r.text);
    }
    let log = agent.log();
    assert!(!log.contains("ERROR"), "{log}");

    // A namespace deleted while the agent runs: the DNS sockets let go of it, so the
    // kernel frees it with its link, and the agent forgets the attachment.
    let deleted = Command::new("ip")
        .args(["netns", "delete", web.name()])
        .status()
        .unwrap();
    assert!(deleted.success());
    let forgotten = eventually(TIMEOUT, || {
        agent
            .log()
            .lines()
            .any(|l| l.contains("VPC namespace gone") && l.contains(web.name()))
    });
    assert!(forgotten, "{}", agent.log());

    // The rules stay after the agent (its sockets do not); `cleanup` removes them.
    agent.kill();
    assert_eq!(dns_rules(&other), 2, "udp and tcp");
    let out = Command::new(AGENT)
        .args(["cleanup", "--bpffs-root"])
        .arg(&root)
        .output()
        .expect("run cleanup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dns_rules(&other), 0);
}
