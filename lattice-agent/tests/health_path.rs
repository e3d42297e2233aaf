//! Health checks drive the kernel tables: a target that stops answering leaves the
//! listener's slot table within interval x unhealthy threshold + timeout, and new flows
//! all go to the healthy one; `lattice-agent targets` shows the states.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, Agent};
use lattice_tests::{client, server::SERVER_HEADER, HttpServer, Topology};

const INTERVAL: u64 = 5;
const UNHEALTHY_THRESHOLD: u64 = 2;
const CHECK_TIMEOUT: u64 = 1;

#[test]
fn a_stopped_target_leaves_within_interval_times_threshold_plus_timeout() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    orders.add_addr("lo", "10.92.0.10/32").unwrap();
    orders.add_addr("lo", "10.92.0.11/32").unwrap();
    let a = HttpServer::start(&orders, "10.92.0.10:7000".parse().unwrap(), "a").unwrap();
    let _b = HttpServer::start(&orders, "10.92.0.11:7000".parse().unwrap(), "b").unwrap();
    let yaml = format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{{ netns: {web} }}] }}
  - {{ name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{{ netns: {orders} }}] }}
serviceNetworks:
  - {{ name: shop, account: "111111111111", authType: NONE, vpcAssociations: [{{ vpc: vpc-web }}], serviceAssociations: [orders] }}
services:
  - name: orders
    account: "111111111111"
    authType: NONE
    listeners:
      - name: tcp
        protocol: TCP
        port: 9000
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: orders-tg, weight: 100 }}] }} }}
targetGroups:
  - name: orders-tg
    type: IP
    config:
      vpcIdentifier: vpc-orders
      protocol: TCP
      port: 7000
      healthCheck:
        enabled: true
        healthCheckIntervalSeconds: {INTERVAL}
        healthCheckTimeoutSeconds: {CHECK_TIMEOUT}
        healthyThresholdCount: 2
        unhealthyThresholdCount: {UNHEALTHY_THRESHOLD}
    targets: [{{ id: 10.92.0.10 }}, {{ id: 10.92.0.11 }}]
"#,
        web = web.name(),
        orders = orders.name(),
    );
    let root = topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let vip = agent.vip_addr("orders", 9000);

    assert!(
        eventually(Duration::from_secs(3 * INTERVAL), || {
            agent.target_status("10.92.0.10") == "HEALTHY"
                && agent.target_status("10.92.0.11") == "HEALTHY"
        }),
        "both targets pass their first check: {:#}\n{}",
        agent.targets(),
        agent.log()
    );
    let who = |n: usize| -> Vec<String> {
        (0..n)
            .filter_map(|_| client::http_get(&web, vip, "/", Duration::from_secs(2)).ok())
            .filter_map(|r| r.header(SERVER_HEADER).map(str::to_owned))
            .collect()
    };
    let both = who(40);
    assert!(
        both.iter().any(|s| s == "a") && both.iter().any(|s| s == "b"),
        "{both:?}"
    );

    drop(a);
    let stopped = Instant::now();
    let bound = Duration::from_secs(INTERVAL * UNHEALTHY_THRESHOLD + CHECK_TIMEOUT);
    assert!(
        eventually(bound + Duration::from_secs(3), || agent
            .target_status("10.92.0.10")
            == "UNHEALTHY"),
        "{:#}",
        agent.targets()
    );
    let took = stopped.elapsed();
    assert!(
        took <= bound + Duration::from_secs(2),
        "removed after {took:?}, bound {bound:?} (+ the agent's sync and this poll)"
    );
    // Give the sync loop one tick to write the slot table, then every new flow is b's.
    std::thread::sleep(Duration::from_millis(500));
    let after = who(40);
    assert_eq!(
        after.len(),
        40,
        "no new flow reaches the stopped target: {after:?}"
    );
    assert!(after.iter().all(|s| s == "b"), "{after:?}");
}
