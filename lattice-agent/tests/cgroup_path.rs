//! Host processes in a VPC cgroup: connect() to a VIP is rewritten in the kernel to a
//! target on the host (socket-level load balancing), and getpeername() shows the VIP.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use common::Agent;
use lattice_tests::{EchoServer, Topology};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Set for the child process this test runs inside the cgroup: where to connect.
const CLIENT_ENV: &str = "LATTICE_TEST_CGROUP_CLIENT";
/// What the child process sends (default: 20 bytes for an echo server).
const SEND_ENV: &str = "LATTICE_TEST_CGROUP_SEND";
/// Set instead of [`CLIENT_ENV`]: `<first>,<second>`, two connects of one socket (the
/// first expected to fail); the child prints each one's errno.
const REUSE_ENV: &str = "LATTICE_TEST_CGROUP_REUSE";

/// Not a test of its own: the body of the child process that runs inside the VPC
/// cgroup (a test binary re-run with a filter; without the variable it does nothing).
#[test]
fn cgroup_client_process() {
    if let Ok(pair) = std::env::var(REUSE_ENV) {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        let connect = |addr: &str| {
            let addr: SocketAddr = addr.parse().unwrap();
            socket
                .connect_timeout(&addr.into(), TIMEOUT)
                .err()
                .and_then(|e| e.raw_os_error())
                .unwrap_or(0)
        };
        let (first, second) = pair.split_once(',').unwrap();
        println!("FIRST={}", connect(first));
        // A connect() after a failed one first only reports ECONNABORTED and makes the
        // socket unconnected (inet_stream_connect); the next one is a connect again.
        let mut errno = connect(second);
        if errno == libc::ECONNABORTED {
            errno = connect(second);
        }
        println!("SECOND={errno}");
        return;
    }
    let Ok(vip) = std::env::var(CLIENT_ENV) else {
        return;
    };
    let vip: SocketAddr = vip.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&vip, TIMEOUT).expect("connect to the VIP");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    println!("PEER={}", s.peer_addr().unwrap());
    let send = std::env::var(SEND_ENV).unwrap_or_else(|_| "ping from the cgroup".into());
    s.write_all(send.as_bytes()).unwrap();
    let mut buf = [0u8; 20];
    s.read_exact(&mut buf).unwrap();
    println!("ECHO={}", String::from_utf8_lossy(&buf));
}

#[test]
fn a_host_process_in_a_vpc_cgroup_reaches_a_host_target_and_sees_the_vip() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let cgroup = topo.add_cgroup("web").unwrap();
    let targets_cgroup = topo.add_cgroup("targets").unwrap();
    // The test's stand-in for the host: a namespace of its own, so that a connect() the
    // kernel did not rewrite fails there instead of leaving the machine.
    let host = topo.add_netns("host").unwrap();
    host.add_addr("lo", "127.1.0.10/32").unwrap();
    let echo = EchoServer::start(&host, "127.1.0.10:7300".parse().unwrap()).unwrap();
    let target = echo.addr();
    // A service whose target lives in a namespace: not reachable from host sockets.
    let orders = topo.add_netns("orders").unwrap();
    orders.add_addr("lo", "10.92.0.30/32").unwrap();
    let yaml = format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - name: vpc-host-web
    account: "111111111111"
    cidr: 10.95.0.0/16
    attachments: [{{ cgroup: {cgroup} }}]
  - name: vpc-host
    account: "111111111111"
    cidr: 127.1.0.0/16
    attachments: [{{ cgroup: {targets} }}]
  - name: vpc-orders
    account: "111111111111"
    cidr: 10.92.0.0/16
    attachments: [{{ netns: {orders} }}]
serviceNetworks:
  - name: host-net
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-host-web }}]
    serviceAssociations: [echo, in-netns, dead]
services:
  - name: dead
    account: "111111111111"
    authType: NONE
    listeners:
      - name: tcp
        protocol: TCP
        port: 7779
        defaultAction:
          forward:
            targetGroups: [{{ targetGroupIdentifier: dead-tg, weight: 100 }}]
  - name: echo
    account: "111111111111"
    authType: NONE
    listeners:
      - name: tcp
        protocol: TCP
        port: 7777
        defaultAction:
          forward:
            targetGroups: [{{ targetGroupIdentifier: echo-tg, weight: 100 }}]
  - name: in-netns
    account: "111111111111"
    authType: NONE
    listeners:
      - name: tcp
        protocol: TCP
        port: 7778
        defaultAction:
          forward:
            targetGroups: [{{ targetGroupIdentifier: netns-tg, weight: 100 }}]
targetGroups:
  - name: netns-tg
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 7300 }}
    targets: [{{ id: 10.92.0.30 }}]
  - name: echo-tg
    type: IP
    config: {{ vpcIdentifier: vpc-host, protocol: TCP, port: {port} }}
    targets: [{{ id: 127.1.0.10 }}]
  - name: dead-tg
    type: IP
    config: {{ vpcIdentifier: vpc-host, protocol: TCP, port: 7399, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 127.1.0.10 }}]
"#,
        cgroup = cgroup.relative_path().trim_start_matches('/'),
        targets = targets_cgroup.relative_path().trim_start_matches('/'),
        orders = orders.name(),
        port = target.port(),
    );
    let root = topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let vip = agent.vip_addr("echo", 7777);

    let exe = std::env::current_exe().unwrap();
    let out = run_client(cgroup.command_in(&host, &exe), &vip.to_string(), None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log()
    );
    assert!(
        stdout.contains(&format!("PEER={vip}")),
        "getpeername shows the VIP: {stdout}"
    );
    assert!(stdout.contains("ECHO=ping from the cgroup"), "{stdout}");

    // A target inside a namespace can't be reached by a host socket: connect() is
    // refused at once (EPERM) rather than sent along the host's default route.
    let netns_vip = agent.vip_addr("in-netns", 7778);
    let refused = run_client(cgroup.command_in(&host, &exe), &netns_vip.to_string(), None);
    let text = String::from_utf8_lossy(&refused.stdout).into_owned()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("PermissionDenied"), "{text}");

    // A socket connect4 rewrote once (to a target that refused it) is no pass to the
    // agent's proxy address: the second connect() is refused like any process's own
    // (EPERM), not let through to whatever listens there.
    let dead_vip = agent.vip_addr("dead", 7779);
    let [a, b, c, d] = lattice_common::cgroups::HOST_PROXY_ADDR;
    let out = cgroup
        .command_in(&host, &exe)
        .args(["--exact", "cgroup_client_process", "--nocapture"])
        .env(REUSE_ENV, format!("{dead_vip},{a}.{b}.{c}.{d}:9"))
        .output()
        .expect("run the client process");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |want: String| text.lines().any(|l| l == want);
    assert!(
        line(format!("FIRST={}", libc::ECONNREFUSED)),
        "the rewritten connect reached the dead target: {text}"
    );
    assert!(
        line(format!("SECOND={}", libc::EPERM)),
        "the same socket to the proxy address: {text}"
    );

    let maps = agent.maps();
    let echo = maps["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["service"] == "echo")
        .unwrap();
    assert_eq!(echo["traffic"]["connections"], 1, "{maps:#}");
    assert!(
        maps["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "target-not-reachable-from-host" && r["vpc"] == "vpc-host-web"),
        "{maps:#}"
    );
    assert!(!agent.log().contains("WARN"), "{}", agent.log());

    // The same client outside the cgroup is not rewritten: the VIP is unreachable.
    let plain = run_client(host.command(&exe), &vip.to_string(), None);
    assert!(
        !plain.status.success(),
        "outside the cgroup nothing rewrites connect()"
    );
}

/// Runs [`cgroup_client_process`] as `runner` (a command for this test binary, in or
/// out of a cgroup and namespace), connecting to `target` and sending `send` (or the
/// echo server's 20 bytes).
fn run_client(
    mut runner: std::process::Command,
    target: &str,
    send: Option<&str>,
) -> std::process::Output {
    runner
        .args([
            "--exact",
            "cgroup_client_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CLIENT_ENV, target);
    if let Some(send) = send {
        runner.env(SEND_ENV, send);
    }
    runner.output().expect("run the client process")
}

/// curl run by a process of `cgroup` inside `netns` (quiet, errors shown, at most 10 s).
fn curl_in(
    cgroup: &lattice_tests::Cgroup,
    netns: &lattice_tests::Netns,
    url: &str,
) -> std::process::Output {
    cgroup
        .command_in(netns, "curl")
        .args(["-sS", "--max-time", "10", url])
        .output()
        .expect("run curl in the cgroup")
}

#[test]
fn a_host_process_in_a_vpc_cgroup_reaches_an_http_listener_through_the_agent() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_cgroup("web").unwrap();
    let other = topo.add_cgroup("other").unwrap();
    // The test's stand-in for the host's namespace (`--host-netns`): the clients run
    // there, and so does the agent's proxy socket for them.
    let host = topo.add_netns("host").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    orders.add_addr("lo", "10.92.0.10/32").unwrap();
    let _target =
        lattice_tests::HttpServer::start(&orders, "10.92.0.10:8080".parse().unwrap(), "orders")
            .unwrap();
    let yaml = format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - name: vpc-host-web
    account: "111111111111"
    cidr: 10.95.0.0/16
    attachments: [{{ cgroup: {web} }}]
  - name: vpc-host-other
    account: "111111111111"
    cidr: 10.96.0.0/16
    attachments: [{{ cgroup: {other} }}]
  - name: vpc-orders
    account: "111111111111"
    cidr: 10.92.0.0/16
    attachments: [{{ netns: {orders} }}]
serviceNetworks:
  - name: host-net
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-host-web }}]
    serviceAssociations: [api]
services:
  - name: api
    account: "111111111111"
    authType: NONE
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        defaultAction:
          forward:
            targetGroups: [{{ targetGroupIdentifier: api-tg }}]
targetGroups:
  - name: api-tg
    type: IP
    config:
      vpcIdentifier: vpc-orders
      protocol: HTTP
      port: 8080
    targets: [{{ id: 10.92.0.10 }}]
"#,
        web = web.relative_path().trim_start_matches('/'),
        other = other.relative_path().trim_start_matches('/'),
        orders = orders.name(),
    );
    let root = topo.bpffs_root("agent").unwrap();
    let host_netns = format!("/run/netns/{}", host.name());
    let agent = Agent::start_with(
        tempfile::tempdir().unwrap(),
        &yaml,
        &root,
        &["--host-netns", &host_netns],
    );
    let shown = agent.show();
    let vip = agent.vip("api");
    let url = format!("http://{vip}/hello");

    // The target answers once its first health check passed.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let out = loop {
        let out = curl_in(&web, &host, &url);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.starts_with("orders GET /hello"),
        "{body}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log()
    );
    let vpc_arn = shown["vpcs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "vpc-host-web")
        .unwrap()["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    for line in [
        format!("x-amzn-lattice-network: SourceVpcArn={vpc_arn}"),
        "x-forwarded-for-port: 80".to_owned(),
        "x-forwarded-for-proto: http".to_owned(),
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in:\n{body}"
        );
    }

    // getpeername() shows the VIP, not the agent's socket (the client process sends a
    // bare HTTP request and prints what it is connected to).
    let peer = run_client(
        web.command_in(&host, std::env::current_exe().unwrap()),
        &format!("{vip}:80"),
        Some("GET /peer HTTP/1.1\r\nhost: api\r\n\r\n"),
    );
    let peer_out = String::from_utf8_lossy(&peer.stdout);
    assert!(
        peer.status.success() && peer_out.contains(&format!("PEER={vip}:80")),
        "{peer_out}\n{}",
        String::from_utf8_lossy(&peer.stderr)
    );
    assert!(peer_out.contains("ECHO=HTTP/1.1 200 OK"), "{peer_out}");

    // A VPC that is not associated is refused at connect() (EPERM), as for TCP.
    let refused = curl_in(&other, &host, &url);
    assert!(!refused.status.success(), "{refused:?}");
    // A VPC process may not connect to the proxy address itself: it would speak for
    // any VPC.
    let [a, b, c, d] = lattice_common::cgroups::HOST_PROXY_ADDR;
    let direct = curl_in(&web, &host, &format!("http://{a}.{b}.{c}.{d}:1/"));
    assert!(!direct.status.success(), "{direct:?}");
    let maps = agent.maps();
    let sites = maps["hostSites"].as_array().unwrap();
    assert!(
        sites
            .iter()
            .any(|h| h["vpc"] == "vpc-host-web" && h["port"] == 80 && h["proxyPort"] != 0),
        "{maps:#}"
    );
    let refusals = maps["refusals"].as_array().unwrap();
    for (vpc, reason) in [
        ("vpc-host-other", "not-associated"),
        ("vpc-host-web", "direct-to-proxy"),
    ] {
        assert!(
            refusals
                .iter()
                .any(|r| r["reason"] == reason && r["vpc"] == vpc),
            "{vpc}: {reason} in {maps:#}"
        );
    }
    assert!(!agent.log().contains("WARN"), "{}", agent.log());
}

#[test]
fn a_recreated_cgroup_is_attached_again_and_a_restart_forgets_dropped_ones() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let kept = topo.add_cgroup("kept").unwrap();
    let dropped = topo.add_cgroup("dropped").unwrap();
    let targets = topo.add_cgroup("targets").unwrap();
    let host = topo.add_netns("host").unwrap();
    host.add_addr("lo", "127.1.0.10/32").unwrap();
    let echo = EchoServer::start(&host, "127.1.0.10:7300".parse().unwrap()).unwrap();
    let config = |members: &[&lattice_tests::Cgroup]| {
        let members: Vec<String> = members
            .iter()
            .map(|c| {
                format!(
                    "{{ cgroup: {} }}",
                    c.relative_path().trim_start_matches('/')
                )
            })
            .collect();
        format!(
            r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-host-web, account: "111111111111", cidr: 10.95.0.0/16, attachments: [{members}] }}
  - {{ name: vpc-host, account: "111111111111", cidr: 127.1.0.0/16, attachments: [{{ cgroup: {targets} }}] }}
serviceNetworks:
  - name: host-net
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-host-web }}]
    serviceAssociations: [echo]
services:
  - name: echo
    account: "111111111111"
    authType: NONE
    listeners:
      - name: tcp
        protocol: TCP
        port: 7777
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: echo-tg, weight: 100 }}] }} }}
targetGroups:
  - name: echo-tg
    type: IP
    config: {{ vpcIdentifier: vpc-host, protocol: TCP, port: {port} }}
    targets: [{{ id: 127.1.0.10 }}]
"#,
            members = members.join(", "),
            targets = targets.relative_path().trim_start_matches('/'),
            port = echo.addr().port(),
        )
    };
    let root = topo.bpffs_root("agent").unwrap();
    let mut agent = Agent::start(&config(&[&kept, &dropped]), &root);
    let vip = agent.vip_addr("echo", 7777).to_string();
    let exe = std::env::current_exe().unwrap();
    let reaches = |cgroup: &lattice_tests::Cgroup| {
        run_client(cgroup.command_in(&host, &exe), &vip, None)
            .status
            .success()
    };
    assert!(reaches(&kept) && reaches(&dropped), "{}", agent.log());

    // The cgroup is removed and made again under its name (a service restarted by
    // systemd): a new cgroup, which the agent attaches on its next sync.
    std::fs::remove_dir(kept.path()).unwrap();
    std::fs::create_dir(kept.path()).unwrap();
    assert!(
        common::eventually(TIMEOUT, || reaches(&kept)),
        "the recreated cgroup was not attached again\n{}",
        agent.log()
    );

    // An agent restarted on a config without `dropped` leaves none of the previous
    // agent's programs on it: its processes are not rewritten any more.
    agent.kill();
    agent.rewrite_config(&config(&[&kept]));
    agent.spawn();
    assert!(reaches(&kept), "{}", agent.log());
    assert!(
        !reaches(&dropped),
        "a cgroup the config dropped still reaches the VIP\n{}",
        agent.log()
    );
}
