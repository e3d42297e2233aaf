//! HTTP listeners end to end: the agent serves them from inside the client's VPC
//! namespace, routes by rules, forwards to targets in another VPC's namespace with
//! Lattice's headers, answers errors as Lattice does; sources that may not reach the
//! service are refused in the kernel.

mod common;

use std::{process::Command, time::Duration};

use common::{curl, Agent};
use lattice_tests::{client, EchoServer, HttpServer, Netns, Topology};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Lab {
    topo: Topology,
    web: Netns,
    other: Netns,
    orders: Netns,
}

fn lab() -> Lab {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let other = topo.add_netns("other").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    web.add_addr("lo", "10.91.1.5/32").unwrap();
    other.add_addr("lo", "10.93.0.5/32").unwrap();
    for a in ["10.92.0.10", "10.92.0.11", "10.92.0.30"] {
        orders.add_addr("lo", &format!("{a}/32")).unwrap();
    }
    Lab {
        topo,
        web,
        other,
        orders,
    }
}

fn config(lab: &Lab) -> String {
    format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{{ netns: {web} }}] }}
  - {{ name: vpc-other, account: "111111111111", cidr: 10.93.0.0/16, attachments: [{{ netns: {other} }}] }}
  - {{ name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{{ netns: {orders} }}] }}
serviceNetworks:
  - name: shop
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-web, allowedCidrs: [10.91.0.0/24] }}]
    serviceAssociations: [api]
services:
  - name: api
    account: "111111111111"
    authType: NONE
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: blue }}] }} }}
        rules:
          - name: boom
            priority: 5
            match: {{ httpMatch: {{ pathMatch: {{ match: {{ exact: /boom }} }} }} }}
            action: {{ fixedResponse: {{ statusCode: 500 }} }}
          - name: green
            priority: 10
            match: {{ httpMatch: {{ pathMatch: {{ match: {{ prefix: /green }} }} }} }}
            action: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: green }}] }} }}
      - name: db
        protocol: TCP
        port: 5432
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: db-tg }}] }} }}
targetGroups:
  - name: blue
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.10 }}]
  - name: green
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.11 }}]
  - name: db-tg
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 5432 }}
    targets: [{{ id: 10.92.0.30 }}]
"#,
        web = lab.web.name(),
        other = lab.other.name(),
        orders = lab.orders.name(),
    )
}

#[test]
fn http_listeners_route_forward_add_headers_and_refuse() {
    let mut lab = lab();
    let _blue = HttpServer::start(&lab.orders, "10.92.0.10:8080".parse().unwrap(), "blue").unwrap();
    let green =
        HttpServer::start(&lab.orders, "10.92.0.11:8080".parse().unwrap(), "green").unwrap();
    let _db = EchoServer::start(&lab.orders, "10.92.0.30:5432".parse().unwrap()).unwrap();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let mut agent = Agent::start(&config(&lab), &root);
    let shown = agent.show();
    let vip = agent.vip("api");
    let http = std::net::SocketAddr::from((vip, 80));

    // The default action, with Lattice's headers; a spoofed caller header is removed.
    let req = client::HttpRequest::get("/orders?id=7")
        .header("x-amzn-lattice-identity", "Principal=evil");
    let resp = client::http_request(&lab.web, http, &req, TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "GET through the VIP: {e:?}\n{}\n{}",
            agent.log(),
            lab.web.ip(&["rule"]).unwrap_or_default()
        )
    });
    assert_eq!(resp.status, 200);
    let body = resp.text();
    assert!(body.starts_with("blue GET /orders?id=7"), "{body}");
    let vpc_arn = shown["vpcs"][0]["arn"].as_str().unwrap();
    let expected = [
        "x-forwarded-for: 10.91.0.5".to_owned(),
        "x-forwarded-for-port: 80".to_owned(),
        "x-forwarded-for-proto: http".to_owned(),
        format!("x-amzn-lattice-network: SourceVpcArn={vpc_arn}"),
        format!(
            "x-amzn-lattice-target: ServiceArn={};ServiceNetworkArn={};TargetGroupArn={}",
            shown["services"][0]["arn"].as_str().unwrap(),
            shown["serviceNetworks"][0]["arn"].as_str().unwrap(),
            shown["targetGroups"][0]["arn"].as_str().unwrap(),
        ),
    ];
    for line in &expected {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in:\n{body}"
        );
    }
    assert!(
        !body.contains("evil"),
        "caller identity headers cannot be spoofed:\n{body}"
    );
    // An absolute-form request target names the host (RFC 9112 3.2.2); TE is the hop's
    // own over HTTP/1.1, and Trailer goes on.
    let req = client::HttpRequest::get("http://orders.shop.internal/abs")
        .header("host", "other.example")
        .header("te", "trailers")
        .header("trailer", "x-checksum");
    let body = client::http_request(&lab.web, http, &req, TIMEOUT)
        .unwrap()
        .text();
    assert!(body.starts_with("blue GET /abs"), "{body}");
    assert!(
        body.lines().any(|l| l == "host: orders.shop.internal"),
        "{body}"
    );
    assert!(body.lines().any(|l| l == "trailer: x-checksum"), "{body}");
    assert!(!body.lines().any(|l| l.starts_with("te:")), "{body}");

    // Rules: a prefix rule forwards elsewhere, an exact rule answers a fixed response.
    let green_resp = client::http_get(&lab.web, http, "/green/x", TIMEOUT).unwrap();
    assert!(
        green_resp.text().starts_with("green GET /green/x"),
        "{}",
        green_resp.text()
    );
    let boom = client::http_get(&lab.web, http, "/boom", TIMEOUT).unwrap();
    assert_eq!(boom.status, 500);

    // HTTP/2 with prior knowledge, by a real client.
    let out = curl(
        &lab.web,
        &["--http2-prior-knowledge", &format!("http://{vip}/h2")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h2 = String::from_utf8_lossy(&out.stdout);
    assert!(h2.starts_with("blue GET /h2"), "{h2}");
    assert!(
        h2.lines().any(|l| l == format!("host: {vip}")),
        "the caller's authority: {h2}"
    );

    // h2load: 1000 requests over 10 h2c connections, 10 streams each, all answered.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.web.name(),
            "h2load",
            "-n",
            "1000",
            "-c",
            "10",
            "-m",
            "10",
        ])
        .arg(format!("http://{vip}/load"))
        .output()
        .expect("run h2load (cargo xtask setup installs nghttp2-client)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("requests: 1000 total, 1000 started, 1000 done, 1000 succeeded"),
        "{report}"
    );
    assert!(report.contains("status codes: 1000 2xx"), "{report}");

    // The VIP's TCP listener still goes through the kernel.
    client::echo_roundtrip(
        &lab.web,
        std::net::SocketAddr::from((vip, 5432)),
        b"tcp too",
        TIMEOUT,
    )
    .expect("the same VIP's TCP listener");

    // A target that refuses: 502, and the proxy keeps serving.
    drop(green);
    let broken = client::http_get(&lab.web, http, "/green/y", TIMEOUT).unwrap();
    assert_eq!(broken.status, 502, "{}", broken.text());
    assert_eq!(
        client::http_get(&lab.web, http, "/", TIMEOUT)
            .unwrap()
            .status,
        200
    );

    // A request head over the bound: 431, and the proxy keeps serving.
    let huge = "a".repeat(100 * 1024);
    let big = client::HttpRequest::get("/").header("x-big", &huge);
    let resp = client::http_request(&lab.web, http, &big, TIMEOUT).expect("answered");
    assert_eq!(resp.status, 431, "bounded request head");
    assert_eq!(
        client::http_get(&lab.web, http, "/", TIMEOUT)
            .unwrap()
            .status,
        200
    );

    // Not associated, or outside allowedCidrs: refused in the kernel, counted.
    assert!(client::http_get(&lab.other, http, "/", Duration::from_secs(3)).is_err());
    let out = curl(
        &lab.web,
        &["--interface", "10.91.1.5", &format!("http://{vip}/")],
    );
    assert!(!out.status.success(), "10.91.1.5 is outside 10.91.0.0/24");
    let maps = agent.maps();
    let refused = |vpc: &str, reason: &str| {
        maps["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["vpc"] == vpc && r["reason"] == reason)
    };
    assert!(refused("vpc-other", "not-associated"), "{maps:#}");
    assert!(refused("vpc-web", "outside-allowed-cidrs"), "{maps:#}");

    // cleanup takes the site rules out of the VPC namespace along with the link.
    assert!(lab.web.ip(&["rule"]).unwrap().contains("lookup 4242"));
    agent.kill();
    let out = Command::new(common::AGENT)
        .args(["cleanup", "--bpffs-root"])
        .arg(&agent.bpffs_root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = lab.web.ip(&["rule"]).unwrap();
    assert!(!rules.contains("4242"), "{rules}");
    assert!(lab
        .web
        .ip(&["route", "show", "table", "4242"])
        .unwrap_or_default()
        .is_empty());
}

#[test]
fn an_aws_iam_network_policy_decides_for_anonymous_callers() {
    let mut lab = lab();
    let _blue = HttpServer::start(&lab.orders, "10.92.0.10:8080".parse().unwrap(), "blue").unwrap();
    // AWS_IAM on the service network (its TCP listener keeps the service itself NONE):
    // anyone may GET, nothing else is allowed.
    let yaml = config(&lab).replace(
        "    authType: NONE\n    vpcAssociations",
        "    authType: AWS_IAM\n    authPolicy: { Version: \"2012-10-17\", Statement: [{ Effect: Allow, Principal: \"*\", Action: \"vpc-lattice-svcs:Invoke\", Resource: \"*\", Condition: { StringEquals: { \"vpc-lattice-svcs:RequestMethod\": GET } } }] }\n    vpcAssociations",
    );
    assert!(yaml.contains("AWS_IAM"));
    let root = lab.topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let http = std::net::SocketAddr::from((agent.vip("api"), 80));
    let resp = client::http_get(&lab.web, http, "/orders", TIMEOUT).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let post = client::HttpRequest::new("POST", "/orders").body("x");
    let resp = client::http_request(&lab.web, http, &post, TIMEOUT).unwrap();
    assert_eq!(resp.status, 403);
    let body = resp.text();
    assert!(
        body.starts_with("AccessDeniedException: User: anonymous is not authorized"),
        "{body}"
    );
    assert!(
        body.contains("/orders") && body.contains("no network-based policy allows"),
        "the invoked resource names the path, and the level that denied: {body}"
    );
    assert!(
        resp.header(lattice_tests::server::SERVER_HEADER).is_none(),
        "never reached the target"
    );
}

/// A restarted agent whose config no longer has a site removes the rule an earlier
/// agent left for it in the VPC namespace (that agent's socket died with it).
#[test]
fn a_restarted_agent_removes_site_rules_its_config_dropped() {
    let mut lab = lab();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let yaml = config(&lab);
    let mut agent = Agent::start(&yaml, &root);
    let vip = agent.vip("api");
    let site_rule = format!("to {vip} ipproto tcp dport 80 lookup 4242");
    assert!(lab.web.ip(&["rule"]).unwrap().contains(&site_rule));

    // The same document without the HTTP listener.
    let start = yaml.find("      - name: http\n").unwrap();
    let end = yaml.find("      - name: db\n").unwrap();
    let without_http = format!("{}{}", &yaml[..start], &yaml[end..]);
    agent.kill();
    agent.rewrite_config(&without_http);
    agent.spawn();
    assert!(
        common::eventually(Duration::from_secs(10), || !lab
            .web
            .ip(&["rule"])
            .unwrap()
            .contains(&site_rule)),
        "{}\n{}",
        lab.web.ip(&["rule"]).unwrap(),
        agent.log()
    );
    assert_eq!(agent.vip("api"), vip, "the VIP is kept");
}

/// A client namespace deleted and made again under its name (a restarted container) is
/// joined and served afresh. The old one's veth outlives it (the agent's sockets in it
/// keep it alive), so the agent must tell the two apart by identity, not by name.
#[test]
fn a_namespace_made_again_under_its_name_is_served_again() {
    let mut lab = lab();
    let _blue = HttpServer::start(&lab.orders, "10.92.0.10:8080".parse().unwrap(), "blue").unwrap();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&config(&lab), &root);
    let http = std::net::SocketAddr::from((agent.vip("api"), 80));
    let get = |web: &Netns| {
        client::http_request(web, http, &client::HttpRequest::get("/"), TIMEOUT)
            .map(|resp| resp.status)
    };
    assert_eq!(get(&lab.web).unwrap(), 200, "{}", agent.log());

    lab.web.recreate().unwrap();
    lab.web.add_addr("lo", "10.91.0.5/32").unwrap();
    // Bounded: the agent notices on its next ticks (a detach, then a join).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        match get(&lab.web) {
            Ok(status) => break status,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("GET from the new namespace: {e:?}\n{}", agent.log())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert_eq!(status, 200);
    // Seen replaced, or deleted if a tick fell between the delete and the add.
    let log = agent.log();
    let detached = log.lines().any(|l| {
        l.contains(lab.web.name())
            && (l.contains("VPC namespace replaced by another of its name; detached")
                || l.contains("VPC namespace gone (deleted); detached"))
    });
    assert!(detached, "{log}");
    // The new namespace was joined: lattice's end of the veth is in it.
    let link = lattice_agent::dataplane::NS_LINK;
    assert!(
        lab.web.ip(&["link", "show", link]).is_ok(),
        "no {link} in the new namespace"
    );
}

#[test]
fn past_max_connections_a_connection_waits_for_one_to_close() {
    use std::io::{Read, Write};
    let mut lab = lab();
    let _blue = HttpServer::start(&lab.orders, "10.92.0.10:8080".parse().unwrap(), "blue").unwrap();
    let root = lab.topo.bpffs_root("agent").unwrap();
    let agent = Agent::start_with(
        tempfile::tempdir().unwrap(),
        &config(&lab),
        &root,
        &["--max-connections", "1"],
    );
    let site = std::net::SocketAddr::from((agent.vip("api"), 80));
    let connect = || {
        let s = lab
            .web
            .run(|| std::net::TcpStream::connect_timeout(&site, TIMEOUT))
            .unwrap()
            .expect("the kernel accepts the connection");
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        s
    };
    let request = b"GET /hello HTTP/1.1\r\nhost: api\r\n\r\n";
    // The first connection is served, and stays open (keep-alive).
    let mut first = connect();
    first.write_all(request).unwrap();
    let mut answer = [0u8; 512];
    let n = first
        .read(&mut answer)
        .expect("the first connection is answered");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    // The second waits in the accept queue: no answer while the first is open.
    let mut second = connect();
    second.write_all(request).unwrap();
    let waited = second.read(&mut answer);
    assert!(
        matches!(&waited, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "answered past the budget: {waited:?}"
    );
    // The first closes: the second is accepted and answered.
    drop(first);
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    let n = second
        .read(&mut answer)
        .expect("answered once the first closed");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
}
