//! The kernel TCP data path end to end: real namespaces, the real agent and programs,
//! real TCP clients and servers.

mod common;

use std::{collections::HashMap, net::SocketAddr, process::Command, time::Duration};

use common::{eventually, Agent};
use lattice_tests::{client, EchoServer, HttpServer, Netns, Topology};

const TIMEOUT: Duration = Duration::from_secs(20);

/// vpc-web (associated, allowedCidrs 10.91.0.0/24), vpc-web2 (same CIDR, associated),
/// vpc-other (not associated), vpc-orders (the targets).
struct Lab {
    topo: Topology,
    web: Netns,
    web2: Netns,
    other: Netns,
    orders: Netns,
}

impl Lab {
    fn new() -> Lab {
        let mut topo = Topology::new().expect("topology (needs root)");
        let web = topo.add_netns("web").unwrap();
        let web2 = topo.add_netns("web2").unwrap();
        let other = topo.add_netns("other").unwrap();
        let orders = topo.add_netns("orders").unwrap();
        for (ns, addrs) in [
            (&web, &["10.91.0.5", "10.91.1.5"][..]),
            (&web2, &["10.91.0.5"][..]),
            (&other, &["10.93.0.5"][..]),
            (&orders, &["10.92.0.10", "10.92.0.11", "10.92.0.30"][..]),
        ] {
            for a in addrs {
                ns.add_addr("lo", &format!("{a}/32")).unwrap();
            }
        }
        Lab {
            topo,
            web,
            web2,
            other,
            orders,
        }
    }

    fn config(&self, weights: (u16, u16), targets_a: &[&str]) -> String {
        let targets_a: String = targets_a
            .iter()
            .map(|t| format!("      - {{ id: {t}, port: 7000 }}\n"))
            .collect();
        format!(
            r#"
accounts:
  - id: "111111111111"
  - id: "222222222222"
vpcs:
  - name: vpc-web
    account: "111111111111"
    cidr: 10.91.0.0/16
    attachments: [{{ netns: {web} }}]
  - name: vpc-web2
    account: "111111111111"
    cidr: 10.91.0.0/16
    attachments: [{{ netns: {web2} }}]
  - name: vpc-other
    account: "111111111111"
    cidr: 10.93.0.0/16
    attachments: [{{ netns: {other} }}]
  - name: vpc-orders
    account: "111111111111"
    cidr: 10.92.0.0/16
    attachments: [{{ netns: {orders} }}]
serviceNetworks:
  - name: shop
    account: "111111111111"
    authType: NONE
    vpcAssociations:
      - {{ vpc: vpc-web, allowedCidrs: [10.91.0.0/24] }}
  - name: shop2
    account: "111111111111"
    authType: NONE
    vpcAssociations:
      - {{ vpc: vpc-web2 }}
    serviceAssociations: [dbs, api]
services:
  - name: dbs
    account: "111111111111"
    authType: NONE
    listeners:
      - name: pg
        protocol: TCP
        port: 5432
        defaultAction:
          forward:
            targetGroups: [{{ targetGroupIdentifier: db-tg, weight: 100 }}]
  - name: api
    account: "111111111111"
    authType: NONE
    listeners:
      - name: tcp
        protocol: TCP
        port: 8080
        defaultAction:
          forward:
            targetGroups:
              - {{ targetGroupIdentifier: api-a, weight: {wa} }}
              - {{ targetGroupIdentifier: api-b, weight: {wb} }}
targetGroups:
  - name: db-tg
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 5432 }}
    targets:
      - {{ id: 10.92.0.30 }}
  - name: api-a
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 7000 }}
    targets:
{targets_a}  - name: api-b
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 7001 }}
    targets:
      - {{ id: 10.92.0.11, port: 7001 }}
"#,
            web = self.web.name(),
            web2 = self.web2.name(),
            other = self.other.name(),
            orders = self.orders.name(),
            wa = weights.0,
            wb = weights.1,
        )
        // shop holds both services too (a service may be in several networks).
        .replace(
            "      - { vpc: vpc-web, allowedCidrs: [10.91.0.0/24] }\n",
            "      - { vpc: vpc-web, allowedCidrs: [10.91.0.0/24] }\n    serviceAssociations: [dbs, api]\n",
        )
    }

    fn start_agent(&mut self, yaml: &str) -> Agent {
        let root = self.topo.bpffs_root("agent").unwrap();
        Agent::start(yaml, &root)
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Which server answered a GET through the VIP (a new connection each time).
fn who_answers(ns: &Netns, addr: SocketAddr) -> String {
    let resp = client::http_get(ns, addr, "/who", TIMEOUT).expect("GET through the VIP");
    resp.header(lattice_tests::server::SERVER_HEADER)
        .expect("server header")
        .to_owned()
}

#[test]
fn tcp_through_a_vip_is_byte_exact_from_1_byte_to_16_mib() {
    let mut lab = Lab::new();
    let _db = EchoServer::start(&lab.orders, "10.92.0.30:5432".parse().unwrap()).unwrap();
    let agent = lab.start_agent(&lab.config((1, 1), &["10.92.0.10"]));
    let vip = agent.vip_addr("dbs", 5432);
    for len in [1, 1000, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024] {
        client::echo_roundtrip(&lab.web, vip, &payload(len), TIMEOUT)
            .unwrap_or_else(|e| panic!("{len} bytes through {vip}: {e:#}\n{}", agent.log()));
    }
    let maps = agent.maps();
    let db = maps["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["service"] == "dbs")
        .expect("db listener in the kernel");
    assert!(
        db["traffic"]["connections"].as_u64().unwrap() >= 5,
        "{maps:#}"
    );
    assert!(
        db["traffic"]["bytesIn"].as_u64().unwrap() > 17 * 1024 * 1024,
        "{maps:#}"
    );
}

#[test]
fn the_target_sees_the_lattice_snat_address_and_the_client_sees_the_vip() {
    let mut lab = Lab::new();
    let _a = HttpServer::start(&lab.orders, "10.92.0.10:7000".parse().unwrap(), "a").unwrap();
    let _b = HttpServer::start(&lab.orders, "10.92.0.11:7001".parse().unwrap(), "b").unwrap();
    let agent = lab.start_agent(&lab.config((1, 0), &["10.92.0.10"]));
    let vip = agent.vip_addr("api", 8080);
    let resp = client::http_get(&lab.web, vip, "/hello", TIMEOUT).expect("GET");
    let body = resp.text();
    assert!(body.starts_with("a GET /hello"), "{body}");
    let from = body.lines().nth(1).unwrap();
    assert!(from.starts_with("from 169.254.17"), "full NAT: {from}");
    // The client's socket is connected to the VIP (replies are reverse-translated).
    let peer = lab
        .web
        .run(|| {
            let s = std::net::TcpStream::connect_timeout(&vip, TIMEOUT).unwrap();
            s.peer_addr().unwrap()
        })
        .unwrap();
    assert_eq!(peer, vip);
}

#[test]
fn a_closed_flow_leaves_the_conntrack_table_and_an_idle_open_one_stays() {
    let mut lab = Lab::new();
    let _a = HttpServer::start(&lab.orders, "10.92.0.10:7000".parse().unwrap(), "a").unwrap();
    let _b = HttpServer::start(&lab.orders, "10.92.0.11:7001".parse().unwrap(), "b").unwrap();
    let _db = EchoServer::start(&lab.orders, "10.92.0.30:5432".parse().unwrap()).unwrap();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let agent = Agent::start_with(
        tempfile::tempdir().unwrap(),
        &lab.config((1, 0), &["10.92.0.10"]),
        &root,
        &["--conntrack-sweep-interval", "1s"],
    );
    let flows = || agent.maps()["flows"].as_u64().unwrap();
    // An idle connection that stays open, then a request on a connection that closes
    // (FIN both ways).
    let db = agent.vip_addr("dbs", 5432);
    let open = lab
        .web
        .run(|| std::net::TcpStream::connect_timeout(&db, TIMEOUT))
        .unwrap()
        .expect("connect to the database VIP");
    let resp = client::http_get(&lab.web, agent.vip_addr("api", 8080), "/", TIMEOUT).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(flows(), 2, "both flows, the closed one for another 10 s");
    assert!(
        eventually(Duration::from_secs(20), || flows() == 1),
        "the closed flow was not swept: {} flows\n{}",
        flows(),
        agent.log()
    );
    // The open one still carries bytes, both ways.
    let chunk = payload(4096);
    client::echo_exchange(&open, &chunk, TIMEOUT).expect("the idle flow still works");
}

#[test]
fn weights_3_to_1_split_400_connections() {
    let mut lab = Lab::new();
    let _a = HttpServer::start(&lab.orders, "10.92.0.10:7000".parse().unwrap(), "a").unwrap();
    let _b = HttpServer::start(&lab.orders, "10.92.0.11:7001".parse().unwrap(), "b").unwrap();
    let agent = lab.start_agent(&lab.config((3, 1), &["10.92.0.10"]));
    let vip = agent.vip_addr("api", 8080);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..400 {
        *counts.entry(who_answers(&lab.web, vip)).or_default() += 1;
    }
    let a = counts.get("a").copied().unwrap_or(0);
    let b = counts.get("b").copied().unwrap_or(0);
    assert_eq!(a + b, 400, "{counts:?}");
    assert!((260..=340).contains(&a), "a got {a} of 400: {counts:?}");
    assert!((60..=140).contains(&b), "b got {b} of 400: {counts:?}");
}

#[test]
fn every_packet_of_a_flow_reaches_the_same_target() {
    let mut lab = Lab::new();
    let _a = EchoServer::start(&lab.orders, "10.92.0.10:7000".parse().unwrap()).unwrap();
    let _b = EchoServer::start(&lab.orders, "10.92.0.11:7001".parse().unwrap()).unwrap();
    let agent = lab.start_agent(&lab.config((1, 1), &["10.92.0.10"]));
    let vip = agent.vip_addr("api", 8080);
    // Many exchanges on one connection: any packet sent elsewhere would break the echo.
    let stream = client::connect(&lab.web, vip, TIMEOUT).unwrap();
    for i in 0..200 {
        client::echo_exchange(&stream, &payload(1 + i * 97), TIMEOUT).expect("same flow");
    }
}

#[test]
fn unassociated_vpcs_and_sources_outside_allowed_cidrs_are_refused_and_counted() {
    let mut lab = Lab::new();
    let _db = EchoServer::start(&lab.orders, "10.92.0.30:5432".parse().unwrap()).unwrap();
    let agent = lab.start_agent(&lab.config((1, 1), &["10.92.0.10"]));
    let vip = agent.vip_addr("dbs", 5432);

    // Not associated: refused at once (a RST), not a time-out.
    let started = std::time::Instant::now();
    let err = client::connect(&lab.other, vip, TIMEOUT).expect_err("vpc-other must be refused");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused by RST, not timed out: {err:#}"
    );
    // Outside allowedCidrs: curl bound to the VPC's other address.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.web.name(),
            "curl",
            "-sS",
            "--max-time",
            "5",
        ])
        .args(["--interface", "10.91.1.5"])
        .arg(format!("telnet://{vip}"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "10.91.1.5 is outside 10.91.0.0/24");
    // The associated VPC still works in the same run.
    client::echo_roundtrip(&lab.web, vip, b"still fine", TIMEOUT).expect("vpc-web works");

    let maps = agent.maps();
    let refusals = maps["refusals"].as_array().unwrap();
    let count = |vpc: &str, reason: &str| {
        refusals
            .iter()
            .filter(|r| r["vpc"] == vpc && r["reason"] == reason)
            .map(|r| r["packets"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(count("vpc-other", "not-associated") >= 1, "{maps:#}");
    assert!(count("vpc-web", "outside-allowed-cidrs") >= 1, "{maps:#}");
}

#[test]
fn two_vpcs_with_the_same_cidr_reach_one_service_at_once() {
    let mut lab = Lab::new();
    let _db = EchoServer::start(&lab.orders, "10.92.0.30:5432".parse().unwrap()).unwrap();
    let agent = lab.start_agent(&lab.config((1, 1), &["10.92.0.10"]));
    let vip = agent.vip_addr("dbs", 5432);
    // Both clients are 10.91.0.5, with the same source port range: only the VPC tells
    // their flows apart.
    let (web, web2) = (lab.web.clone(), lab.web2.clone());
    let a = std::thread::spawn(move || {
        let s = client::connect(&web, vip, TIMEOUT).unwrap();
        for i in 0..50 {
            client::echo_exchange(&s, format!("web {i}").as_bytes(), TIMEOUT).unwrap();
        }
    });
    let b = std::thread::spawn(move || {
        let s = client::connect(&web2, vip, TIMEOUT).unwrap();
        for i in 0..50 {
            client::echo_exchange(&s, format!("web2 {i}").as_bytes(), TIMEOUT).unwrap();
        }
    });
    a.join().expect("vpc-web's flow");
    b.join().expect("vpc-web2's flow");
    assert!(eventually(TIMEOUT, || agent.maps()["flows"]
        .as_u64()
        .unwrap()
        >= 2));
}

#[test]
fn a_target_address_added_later_to_a_vpcs_second_namespace_is_reached() {
    // vpc-orders joins two namespaces; the target's address appears in the second one
    // after the agent started, so it must be placed there, not on the first.
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders_a = topo.add_netns("orders-a").unwrap();
    let orders_b = topo.add_netns("orders-b").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    orders_a.add_addr("lo", "10.92.0.10/32").unwrap();
    orders_b.add_addr("lo", "10.92.0.20/32").unwrap();
    let yaml = format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{{ netns: {web} }}] }}
  - {{ name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{{ netns: {a} }}, {{ netns: {b} }}] }}
serviceNetworks:
  - {{ name: shop, account: "111111111111", authType: NONE, vpcAssociations: [{{ vpc: vpc-web }}], serviceAssociations: [late] }}
services:
  - name: late
    account: "111111111111"
    authType: NONE
    listeners:
      - {{ name: tcp, protocol: TCP, port: 7000, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: late-tg }}] }} }} }}
targetGroups:
  - name: late-tg
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 7000 }}
    targets: [{{ id: 10.92.0.30 }}]
"#,
        web = web.name(),
        a = orders_a.name(),
        b = orders_b.name(),
    );
    let root = topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let vip = agent.vip_addr("late", 7000);
    orders_b.add_addr("lo", "10.92.0.30/32").unwrap();
    let _echo = EchoServer::start(&orders_b, "10.92.0.30:7000".parse().unwrap()).unwrap();
    assert!(
        eventually(TIMEOUT, || client::echo_roundtrip(
            &web,
            vip,
            b"placed",
            Duration::from_secs(2)
        )
        .is_ok()),
        "the target in the second namespace is not reached:\n{}",
        agent.log()
    );
}
