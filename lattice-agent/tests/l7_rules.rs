//! Listener rules through the real proxy: a table of requests, each with the target (or
//! fixed response) Lattice's rules give it; and a 90/10 weighted forward.

mod common;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use common::Agent;
use lattice_tests::{client, server::SERVER_HEADER, HttpServer, Netns, Topology};

const TIMEOUT: Duration = Duration::from_secs(20);
const TARGETS: [(&str, &str); 6] = [
    ("alpha", "10.92.0.11"),
    ("bravo", "10.92.0.12"),
    ("charlie", "10.92.0.13"),
    ("delta", "10.92.0.14"),
    ("echo", "10.92.0.15"),
    ("foxtrot", "10.92.0.16"),
];

/// Rules declared out of priority order on purpose.
const RULES: &str = r#"
          - name: low
            priority: 100
            match: { httpMatch: { pathMatch: { match: { prefix: /p } } } }
            action: { forward: { targetGroups: [{ targetGroupIdentifier: charlie }] } }
          - name: combo
            priority: 5
            match:
              httpMatch:
                method: GET
                pathMatch: { match: { prefix: /combo } }
                headerMatches: [{ name: x-user, match: { exact: alice } }]
            action: { forward: { targetGroups: [{ targetGroupIdentifier: bravo }] } }
          - name: exact
            priority: 10
            match: { httpMatch: { pathMatch: { match: { exact: /exact } } } }
            action: { forward: { targetGroups: [{ targetGroupIdentifier: alpha }] } }
          - name: err
            priority: 11
            match: { httpMatch: { pathMatch: { match: { exact: /err }, caseSensitive: false } } }
            action: { fixedResponse: { statusCode: 500 } }
          - name: case-cs
            priority: 12
            match: { httpMatch: { pathMatch: { match: { prefix: /CS/ }, caseSensitive: true } } }
            action: { forward: { targetGroups: [{ targetGroupIdentifier: charlie }] } }
          - name: method
            priority: 20
            match: { httpMatch: { method: POST, pathMatch: { match: { prefix: /api } } } }
            action: { forward: { targetGroups: [{ targetGroupIdentifier: delta }] } }
          - name: hexact
            priority: 30
            match: { httpMatch: { headerMatches: [{ name: x-env, match: { exact: prod } }] } }
            action: { forward: { targetGroups: [{ targetGroupIdentifier: echo }] } }
          - name: hprefix
            priority: 31
            match: { httpMatch: { headerMatches: [{ name: x-ver, match: { prefix: V2 }, caseSensitive: true }] } }
            action: { forward: { targetGroups: [{ targetGroupIdentifier: foxtrot }] } }
          - name: hcontains
            priority: 32
            match: { httpMatch: { headerMatches: [{ name: x-tag, match: { contains: canary } }] } }
            action: { forward: { targetGroups: [{ targetGroupIdentifier: alpha }] } }
          - name: high
            priority: 50
            match: { httpMatch: { pathMatch: { match: { prefix: /p/x } } } }
            action: { forward: { targetGroups: [{ targetGroupIdentifier: delta }] } }
"#;

fn document(
    web: &Netns,
    orders: &Netns,
    listener_rules: &str,
    default_action: &str,
    groups: &[(&str, &str)],
) -> String {
    let groups: String = groups
        .iter()
        .map(|(name, ip)| {
            format!(
                "  - {{ name: {name}, type: IP, config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}, targets: [{{ id: {ip} }}] }}\n"
            )
        })
        .collect();
    format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{{ netns: {web} }}] }}
  - {{ name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{{ netns: {orders} }}] }}
serviceNetworks:
  - {{ name: shop, account: "111111111111", authType: NONE, vpcAssociations: [{{ vpc: vpc-web }}], serviceAssociations: [api] }}
services:
  - name: api
    account: "111111111111"
    authType: NONE
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        defaultAction: {default_action}
        rules:{listener_rules}
targetGroups:
{groups}"#,
        web = web.name(),
        orders = orders.name(),
    )
}

struct Lab {
    topo: Topology,
    web: Netns,
    orders: Netns,
    _servers: Vec<HttpServer>,
}

fn lab() -> Lab {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    let servers = TARGETS
        .iter()
        .map(|(name, ip)| {
            orders.add_addr("lo", &format!("{ip}/32")).unwrap();
            HttpServer::start(&orders, format!("{ip}:8080").parse().unwrap(), name).unwrap()
        })
        .collect();
    Lab {
        topo,
        web,
        orders,
        _servers: servers,
    }
}

/// One row: what it shows, method, path, headers, and what the request should get.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Expect,
);

/// What a request should get: a target's name, or a fixed status.
#[derive(Debug, PartialEq)]
enum Expect {
    Target(&'static str),
    Status(u16),
}
use Expect::{Status, Target};

#[test]
fn thirty_rule_cases_through_the_proxy() {
    let mut lab = lab();
    let yaml = document(
        &lab.web,
        &lab.orders,
        RULES,
        "{ fixedResponse: { statusCode: 404 } }",
        &TARGETS,
    );
    let root = lab.topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let vip = SocketAddr::from((agent.vip("api"), 80));

    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("all conditions hold", "GET", "/combo", &[("x-user", "alice")], Target("bravo")),
        ("header values compare without case by default", "GET", "/combo", &[("x-user", "ALICE")], Target("bravo")),
        ("a missing header fails the rule", "GET", "/combo", &[], Status(404)),
        ("a different method fails the rule", "POST", "/combo", &[("x-user", "alice")], Status(404)),
        ("exact path", "GET", "/exact", &[], Target("alpha")),
        ("exact path: a trailing slash is another path", "GET", "/exact/", &[], Status(404)),
        ("paths compare without case by default", "GET", "/EXACT", &[], Target("alpha")),
        ("the query string takes no part", "GET", "/exact?x=1", &[], Target("alpha")),
        ("fixed response 500", "GET", "/err", &[], Status(500)),
        ("caseSensitive: false", "GET", "/ERR", &[], Status(500)),
        ("case-sensitive prefix", "GET", "/CS/a", &[], Target("charlie")),
        ("case-sensitive prefix: other case", "GET", "/cs/a", &[], Status(404)),
        ("prefix is a string prefix", "GET", "/CS", &[], Status(404)),
        ("method and prefix", "POST", "/api/orders", &[], Target("delta")),
        ("method mismatch", "GET", "/api/orders", &[], Status(404)),
        ("another method", "PUT", "/api/orders", &[], Status(404)),
        ("header exact", "GET", "/any", &[("x-env", "prod")], Target("echo")),
        ("header exact, other case", "GET", "/any", &[("X-Env", "PROD")], Target("echo")),
        ("header exact is not a prefix", "GET", "/any", &[("x-env", "production")], Status(404)),
        ("case-sensitive header prefix", "GET", "/any", &[("x-ver", "V2.1")], Target("foxtrot")),
        ("case-sensitive header prefix, other case", "GET", "/any", &[("x-ver", "v2.1")], Status(404)),
        ("header contains", "GET", "/any", &[("x-tag", "a-canary-b")], Target("alpha")),
        ("header contains, other case", "GET", "/any", &[("x-tag", "CANARY")], Target("alpha")),
        ("header contains: absent", "GET", "/any", &[("x-tag", "stable")], Status(404)),
        ("the lower priority number wins", "GET", "/p/x/1", &[], Target("delta")),
        ("the other rule still applies", "GET", "/p/y", &[], Target("charlie")),
        ("prefix equal to the path", "GET", "/p", &[], Target("charlie")),
        ("prefix without a slash boundary", "GET", "/px", &[], Target("charlie")),
        ("no rule: the default action", "GET", "/other", &[], Status(404)),
        ("two rules match: priority 30 before 32", "GET", "/any", &[("x-env", "prod"), ("x-tag", "canary")], Target("echo")),
        ("priority 20 before 30", "POST", "/api", &[("x-env", "prod")], Target("delta")),
        ("priority 5 before 30", "GET", "/combo", &[("x-user", "alice"), ("x-env", "prod")], Target("bravo")),
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (what, method, path, headers, expected) in cases {
        let mut req = client::HttpRequest::new(method, path);
        for (name, value) in *headers {
            req = req.header(name, value);
        }
        let resp = client::http_request(&lab.web, vip, &req, TIMEOUT)
            .unwrap_or_else(|e| panic!("{what}: {e:#}\n{}", agent.log()));
        let got = match resp.header(SERVER_HEADER) {
            Some(name) => TARGETS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, _)| Target(n))
                .unwrap_or(Status(0)),
            None => Status(resp.status),
        };
        if got != *expected {
            failures.push(format!(
                "{what}: {method} {path} {headers:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_weighted_forward_splits_90_10_over_1000_requests() {
    let mut lab = lab();
    let yaml = document(
        &lab.web,
        &lab.orders,
        " []",
        "{ forward: { targetGroups: [{ targetGroupIdentifier: alpha, weight: 90 }, { targetGroupIdentifier: bravo, weight: 10 }] } }",
        &TARGETS[..2],
    );
    let root = lab.topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let vip = SocketAddr::from((agent.vip("api"), 80));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..1000 {
        let resp = client::http_get(&lab.web, vip, "/", TIMEOUT)
            .unwrap_or_else(|e| panic!("GET: {e:#}\n{}", agent.log()));
        *counts
            .entry(resp.header(SERVER_HEADER).unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let alpha = counts.get("alpha").copied().unwrap_or(0);
    assert!((860..=940).contains(&alpha), "90/10 over 1000: {counts:?}");
    assert_eq!(
        alpha + counts.get("bravo").copied().unwrap_or(0),
        1000,
        "{counts:?}"
    );
}

#[test]
fn a_stopped_target_gets_no_requests_once_marked_and_returns_after_the_healthy_threshold() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    for (_, ip) in &TARGETS[..2] {
        orders.add_addr("lo", &format!("{ip}/32")).unwrap();
    }
    let (alpha_addr, bravo_addr): (SocketAddr, SocketAddr) = (
        "10.92.0.11:8080".parse().unwrap(),
        "10.92.0.12:8080".parse().unwrap(),
    );
    let mut alpha = Some(HttpServer::start(&orders, alpha_addr, "alpha").unwrap());
    let _bravo = HttpServer::start(&orders, bravo_addr, "bravo").unwrap();
    let yaml = document(&web, &orders, " []", "{ forward: { targetGroups: [{ targetGroupIdentifier: pool }] } }", &[])
        + "  - name: pool\n    type: IP\n    config:\n      vpcIdentifier: vpc-orders\n      protocol: HTTP\n      port: 8080\n      healthCheck: { enabled: true, path: /healthz, healthCheckIntervalSeconds: 5, healthCheckTimeoutSeconds: 1, healthyThresholdCount: 2, unhealthyThresholdCount: 2 }\n    targets: [{ id: 10.92.0.11 }, { id: 10.92.0.12 }]\n";
    let root = topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let vip = SocketAddr::from((agent.vip("api"), 80));
    let healthy = |id: &str| agent.target_status(id) == "HEALTHY";
    assert!(
        common::eventually(Duration::from_secs(15), || healthy("10.92.0.11")
            && healthy("10.92.0.12")),
        "both pass their first check"
    );
    let get = || client::http_get(&web, vip, "/", Duration::from_secs(5));

    // Stop alpha under load: once the check marks it, no request fails.
    alpha.take();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while agent.target_status("10.92.0.11") != "UNHEALTHY" {
        assert!(
            std::time::Instant::now() < deadline,
            "alpha never marked unhealthy"
        );
        let _ = get(); // load; failures before the mark are expected
    }
    std::thread::sleep(Duration::from_millis(300)); // the proxy reads health per request
    let mut failed = 0;
    for _ in 0..200 {
        match get() {
            Ok(r) if r.status == 200 => assert_eq!(r.header(SERVER_HEADER), Some("bravo")),
            _ => failed += 1,
        }
    }
    assert_eq!(
        failed, 0,
        "no failed request after the health check marked the target"
    );

    // Start it again: it gets traffic after the healthy threshold (2 checks).
    let _alpha = HttpServer::start(&orders, alpha_addr, "alpha").unwrap();
    assert!(
        common::eventually(Duration::from_secs(20), || healthy("10.92.0.11")),
        "alpha healthy again"
    );
    let back = (0..40)
        .filter_map(|_| get().ok())
        .filter(|r| r.header(SERVER_HEADER) == Some("alpha"))
        .count();
    assert!(back > 0, "alpha gets traffic again");
}

#[test]
fn least_outstanding_requests_avoids_a_target_that_does_not_answer() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    orders.add_addr("lo", "10.92.0.11/32").unwrap();
    orders.add_addr("lo", "10.92.0.12/32").unwrap();
    // 10.92.0.11 accepts and never answers; 10.92.0.12 answers.
    let hanging = orders
        .run(|| std::net::TcpListener::bind("10.92.0.11:8080"))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = hanging.incoming().take(16).collect();
        std::thread::sleep(Duration::from_secs(60));
        drop(held);
    });
    let _fast = HttpServer::start(&orders, "10.92.0.12:8080".parse().unwrap(), "fast").unwrap();
    let yaml = document(&web, &orders, " []", "{ forward: { targetGroups: [{ targetGroupIdentifier: pool }] } }", &[])
        + "  - name: pool\n    type: IP\n    config: { vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, loadBalancingAlgorithmType: LEAST_OUTSTANDING_REQUESTS, healthCheck: { enabled: false } }\n    targets: [{ id: 10.92.0.11 }, { id: 10.92.0.12 }]\n";
    let root = topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let vip = SocketAddr::from((agent.vip("api"), 80));

    // Two requests in flight: taking turns on a tie, one of them waits on the silent
    // target (and keeps waiting while the rest of the test runs).
    for _ in 0..2 {
        let web = web.clone();
        std::thread::spawn(move || {
            let _ = client::http_get(&web, vip, "/slow", Duration::from_secs(30));
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    // From now on every request goes to the target with nothing outstanding.
    for i in 0..20 {
        let resp = client::http_get(&web, vip, "/", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("request {i} went to the silent target: {e:#}"));
        assert_eq!(resp.header(SERVER_HEADER), Some("fast"));
    }
}
