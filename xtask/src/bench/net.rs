//! The benchmark's namespaces: one client, one server, one proxy, built with
//! lattice-tests so every name is unique and everything goes when the topology drops.
//!
//! ```text
//!   client ns (vpc-client)                         server ns (vpc-server)
//!   lo 10.81.0.10/32                               lo 10.82.0.10/32: iperf3, sockperf,
//!   direct0 10.255.1.1/30 ------------------------ direct0 10.255.1.2/30   responder
//!   proxy0  10.255.2.1/30 --+                  +-- proxy0 10.255.3.2/30
//!                           |   proxy ns       |
//!                   client0 10.255.2.2/30      server0 10.255.3.1/30
//!                   lo 10.83.0.10 (haproxy), 10.83.0.11 (nginx)
//! ```
//!
//! Each variant has its own destination address, so the client runs the same commands
//! against each: 10.82.0.10 (direct, and routed through the proxy namespace as a plain
//! router), 10.83.0.10 (HAProxy), 10.83.0.11 (nginx), the services' VIPs (lattice). The
//! baselines' routes exist only while their variant runs, and never cover
//! 169.254.0.0/16: lattice's path (veth `lattice0` made by the agent in the client and
//! server namespaces, routes to the VIP pool) must not be short-cut.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use lattice_tests::{Netns, Topology};

pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 81, 0, 10);
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 82, 0, 10);
pub const HAPROXY_ADDR: Ipv4Addr = Ipv4Addr::new(10, 83, 0, 10);
pub const NGINX_ADDR: Ipv4Addr = Ipv4Addr::new(10, 83, 0, 11);
pub const CLIENT_CIDR: &str = "10.81.0.0/16";
pub const SERVER_CIDR: &str = "10.82.0.0/16";

/// Ports of the servers, the same on every destination (proxies and listeners forward
/// port N to the server's port N).
pub const IPERF3_PORT: u16 = 5201;
pub const SOCKPERF_PORT: u16 = 11111;
pub const CONNECT_PORT: u16 = 7000;
pub const PORTS: [(&str, u16); 3] = [
    ("iperf3", IPERF3_PORT),
    ("sockperf", SOCKPERF_PORT),
    ("connect", CONNECT_PORT),
];

pub struct BenchNet {
    pub client: Netns,
    pub server: Netns,
    pub proxy: Netns,
}

impl BenchNet {
    pub fn build(topo: &mut Topology) -> anyhow::Result<BenchNet> {
        let client = topo.add_netns("client")?;
        let server = topo.add_netns("server")?;
        let proxy = topo.add_netns("proxy")?;
        client.add_addr("lo", &format!("{CLIENT_ADDR}/32"))?;
        server.add_addr("lo", &format!("{SERVER_ADDR}/32"))?;
        proxy.add_addr("lo", &format!("{HAPROXY_ADDR}/32"))?;
        proxy.add_addr("lo", &format!("{NGINX_ADDR}/32"))?;

        topo.add_veth_between(&client, "direct0", &server, "direct0")?;
        client.add_addr("direct0", "10.255.1.1/30")?;
        server.add_addr("direct0", "10.255.1.2/30")?;

        topo.add_veth_between(&client, "proxy0", &proxy, "client0")?;
        client.add_addr("proxy0", "10.255.2.1/30")?;
        proxy.add_addr("client0", "10.255.2.2/30")?;
        topo.add_veth_between(&proxy, "server0", &server, "proxy0")?;
        proxy.add_addr("server0", "10.255.3.1/30")?;
        server.add_addr("proxy0", "10.255.3.2/30")?;

        // The peers' addresses from the client (keeping the VPC address as source); the
        // proxy reaches the server's address and answers the client's. The server
        // answers the proxy on the connected /30.
        route(&client, "10.83.0.0/24", "10.255.2.2", Some(CLIENT_ADDR))?;
        route(&proxy, CLIENT_CIDR, "10.255.2.1", None)?;
        route(&proxy, SERVER_CIDR, "10.255.3.2", None)?;

        // Connection-rate loops open tens of thousands of connections: the whole port
        // range on the sides that open them.
        for ns in [&client, &proxy] {
            ns.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
        }
        // The routed baseline forwards through the proxy namespace.
        proxy.sysctl("net.ipv4.ip_forward", "1")?;
        Ok(BenchNet {
            client,
            server,
            proxy,
        })
    }

    /// Routes client 10.81.0.10 <-> server 10.82.0.10 (host routes only) for a
    /// baseline: straight over `direct0`, or through the proxy namespace as a router.
    pub fn add_baseline_routes(&self, baseline: Baseline) -> anyhow::Result<()> {
        let (client_gw, server_gw) = baseline.gateways();
        route(
            &self.client,
            &format!("{SERVER_ADDR}/32"),
            client_gw,
            Some(CLIENT_ADDR),
        )?;
        route(
            &self.server,
            &format!("{CLIENT_ADDR}/32"),
            server_gw,
            Some(SERVER_ADDR),
        )
    }

    /// Removes them again, so later variants cannot take a baseline's path.
    pub fn remove_baseline_routes(&self) -> anyhow::Result<()> {
        self.client
            .ip(&["route", "del", &format!("{SERVER_ADDR}/32")])?;
        self.server
            .ip(&["route", "del", &format!("{CLIENT_ADDR}/32")])?;
        Ok(())
    }
}

/// The plain-kernel paths lattice is compared with.
#[derive(Clone, Copy, Debug)]
pub enum Baseline {
    /// One veth between the client and server namespaces: the issue's baseline.
    Direct,
    /// Two veths and IP forwarding in the proxy namespace: the same number of veth hops
    /// as lattice's path (client -> host -> server), without any program.
    Routed,
}

impl Baseline {
    /// The client's and the server's next hop.
    fn gateways(self) -> (&'static str, &'static str) {
        match self {
            Baseline::Direct => ("10.255.1.2", "10.255.1.1"),
            Baseline::Routed => ("10.255.2.2", "10.255.3.1"),
        }
    }
}

fn route(ns: &Netns, dst: &str, via: &str, src: Option<Ipv4Addr>) -> anyhow::Result<()> {
    let src = src.map(|s| s.to_string());
    let mut args = vec!["route", "add", dst, "via", via];
    if let Some(src) = &src {
        args.extend(["src", src]);
    }
    ns.ip(&args)
        .with_context(|| format!("adding route {dst} via {via} in {}", ns.name()))?;
    Ok(())
}

/// Waits until a TCP connection from `ns` to `addr` succeeds (a server or proxy is up).
pub fn wait_tcp(ns: &Netns, addr: SocketAddrV4, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = ns.run(|| {
            TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_millis(500))
        })?;
        match attempt {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                bail!(
                    "nothing accepted TCP connections on {addr} from {} within {timeout:?}: {e}",
                    ns.name()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
