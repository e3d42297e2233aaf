//! The kernel path without the agent: flows and new connections survive a SIGKILL,
//! a restarted agent adopts the pinned state (conntrack untouched) and then applies a
//! changed config, under which a deregistered target drains; namespaces that appear
//! after the agent started are picked up without a restart.

mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use common::{eventually, Agent};
use lattice_tests::{client, EchoServer, HttpServer, Netns, Topology};

const TIMEOUT: Duration = Duration::from_secs(20);

fn config(client_ns: &str, orders_ns: &str, targets: &[&str]) -> String {
    let targets: String = targets
        .iter()
        .map(|t| format!("      - {{ id: {t} }}\n"))
        .collect();
    let preamble = common::shop_preamble(client_ns, orders_ns, &["orders"]);
    format!(
        r#"
{preamble}services:
  - name: orders
    account: "111111111111"
    authType: NONE
    listeners:
      - name: tcp
        protocol: TCP
        port: 9000
        defaultAction:
          forward:
            targetGroups: [{{ targetGroupIdentifier: orders-tg, weight: 100 }}]
targetGroups:
  - name: orders-tg
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 7000 }}
    targets:
{targets}"#
    )
}

struct Lab {
    topo: Topology,
    web: Netns,
    orders: Netns,
}

fn lab() -> Lab {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    for a in ["10.92.0.10", "10.92.0.11", "10.92.0.12"] {
        orders.add_addr("lo", &format!("{a}/32")).unwrap();
    }
    Lab { topo, web, orders }
}

/// A keep-alive HTTP/1.1 GET on an open connection; returns the answering server.
fn get_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /who HTTP/1.1\r\nhost: orders\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut server = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("response head");
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("x-lattice-test-server: ") {
            server = v.to_owned();
        }
        if let Some(v) = line.strip_prefix("content-length: ") {
            len = v.parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).expect("response body");
    server
}

fn open(ns: &Netns, addr: SocketAddr) -> TcpStream {
    let s = client::connect(ns, addr, TIMEOUT).expect("connect through the VIP");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

#[test]
fn kill_9_keeps_flows_and_new_connections_and_a_new_agent_adopts() {
    let mut lab = lab();
    let _echo = EchoServer::start(&lab.orders, "10.92.0.10:7000".parse().unwrap()).unwrap();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let mut agent = Agent::start(
        &config(lab.web.name(), lab.orders.name(), &["10.92.0.10"]),
        &root,
    );
    let vip = agent.vip_addr("orders", 9000);
    let before = agent.maps();

    // A transfer in flight while the agent dies.
    let web = lab.web.clone();
    let transfer = std::thread::spawn(move || {
        let s = client::connect(&web, vip, TIMEOUT).unwrap();
        let chunk: Vec<u8> = (0..256 * 1024).map(|i| (i % 253) as u8).collect();
        for _ in 0..32 {
            client::echo_exchange(&s, &chunk, TIMEOUT).expect("the transfer survives");
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    agent.kill();
    transfer
        .join()
        .expect("8 MiB echoed across the agent's death");
    // No agent: new connections still work (pinned programs, links, maps).
    client::echo_roundtrip(&lab.web, vip, b"no agent running", TIMEOUT).expect("new connection");

    // A new agent adopts: same listener slot and bank layout, conntrack kept.
    let flows_before = agent.maps()["flows"].as_u64().unwrap();
    agent.spawn();
    let after = agent.maps();
    assert_eq!(
        before["listeners"][0]["index"],
        after["listeners"][0]["index"]
    );
    assert!(
        after["flows"].as_u64().unwrap() >= flows_before,
        "{after:#}"
    );
    client::echo_roundtrip(&lab.web, vip, b"adopted", TIMEOUT).expect("after restart");
    let log = agent.log();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_deregistered_target_drains_and_new_flows_go_elsewhere() {
    let mut lab = lab();
    let _a = HttpServer::start(&lab.orders, "10.92.0.10:7000".parse().unwrap(), "a").unwrap();
    let _b = HttpServer::start(&lab.orders, "10.92.0.12:7000".parse().unwrap(), "b").unwrap();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let mut agent = Agent::start(
        &config(lab.web.name(), lab.orders.name(), &["10.92.0.10"]),
        &root,
    );
    let vip = agent.vip_addr("orders", 9000);
    let mut open_flow = open(&lab.web, vip);
    assert_eq!(get_on(&mut open_flow), "a");

    // Deregister 10.92.0.10, register 10.92.0.12; the new agent applies it.
    agent.kill();
    agent.rewrite_config(&config(lab.web.name(), lab.orders.name(), &["10.92.0.12"]));
    agent.spawn();

    for _ in 0..5 {
        assert_eq!(
            get_on(&mut open_flow),
            "a",
            "the open flow keeps its target"
        );
        assert_eq!(
            get_on(&mut open(&lab.web, vip)),
            "b",
            "new flows avoid the deregistered one"
        );
    }
}

#[test]
fn a_namespace_created_after_the_agent_started_is_attached() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let orders = topo.add_netns("orders").unwrap();
    orders.add_addr("lo", "10.92.0.10/32").unwrap();
    let _echo = EchoServer::start(&orders, "10.92.0.10:7000".parse().unwrap()).unwrap();
    let late_name = topo.tag().name("late");
    let root = topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&config(&late_name, orders.name(), &["10.92.0.10"]), &root);
    let vip = agent.vip_addr("orders", 9000);

    let late = topo.add_netns("late").unwrap();
    assert_eq!(late.name(), late_name);
    late.add_addr("lo", "10.91.0.5/32").unwrap();
    assert!(
        eventually(TIMEOUT, || client::echo_roundtrip(
            &late,
            vip,
            b"hello",
            Duration::from_secs(2)
        )
        .is_ok()),
        "the late namespace reaches the service:\n{}",
        agent.log()
    );
}

#[test]
fn cleanup_removes_the_links_the_pins_and_the_path() {
    let mut lab = lab();
    let _echo = EchoServer::start(&lab.orders, "10.92.0.10:7000".parse().unwrap()).unwrap();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let mut agent = Agent::start(
        &config(lab.web.name(), lab.orders.name(), &["10.92.0.10"]),
        &root,
    );
    let vip = agent.vip_addr("orders", 9000);
    client::echo_roundtrip(&lab.web, vip, b"before", TIMEOUT).unwrap();
    agent.kill();
    let out = std::process::Command::new(common::AGENT)
        .args(["cleanup", "--bpffs-root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!root.exists(), "pins removed");
    assert!(
        lab.web.ip(&["link", "show", "dev", "lattice0"]).is_err(),
        "the VPC veth is gone"
    );
    assert!(client::echo_roundtrip(&lab.web, vip, b"after", Duration::from_secs(2)).is_err());
}

#[test]
fn an_agent_sized_differently_refuses_the_pinned_conntrack() {
    let mut lab = lab();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let mut agent = Agent::start(
        &config(lab.web.name(), lab.orders.name(), &["10.92.0.10"]),
        &root,
    );
    agent.kill();
    let out = std::process::Command::new(common::AGENT)
        .args(["run", "--max-flows", "2048", "--config"])
        .arg(&agent.config)
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .arg("--bpffs-root")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("LT_CT_V2") && stderr.contains("max entries"),
        "{stderr}"
    );
    assert!(stderr.contains("--max-flows"), "{stderr}");
}
