//! Metrics end to end: the agent's Prometheus page parses with Prometheus' own
//! `promtool check metrics`, and its counters match the requests and the TCP traffic
//! the test sent (HTTP through the agent, TCP through the kernel); request bodies count
//! as sent, with a length or streamed, in the metrics and in the access log.

mod common;

use std::{
    io::Write as _,
    net::TcpListener,
    process::{Command, Stdio},
    time::Duration,
};

use common::{eventually, Agent};
use lattice_tests::{client, EchoServer, HttpServer, Topology};

const TIMEOUT: Duration = Duration::from_secs(10);

fn config(web: &str, orders: &str, access_log: &std::path::Path) -> String {
    let preamble = common::shop_preamble(web, orders, &["api"]);
    let access_log = access_log.display();
    format!(
        r#"
{preamble}services:
  - name: api
    account: "111111111111"
    authType: NONE
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: app }}] }} }}
        rules:
          - {{ name: gone, priority: 1, match: {{ httpMatch: {{ pathMatch: {{ match: {{ exact: /gone }} }} }} }}, action: {{ fixedResponse: {{ statusCode: 404 }} }} }}
      - name: db
        protocol: TCP
        port: 5432
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: db-tg }}] }} }}
targetGroups:
  - name: app
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ healthCheckIntervalSeconds: 5 }} }}
    targets: [{{ id: 10.92.0.10 }}]
  - name: db-tg
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 5432 }}
    targets: [{{ id: 10.92.0.30 }}]
accessLogSubscriptions:
  - {{ resource: api, destination: "file:{access_log}" }}
"#
    )
}

/// A free TCP port on loopback (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the one sample named `name` whose labels contain every `pairs` item.
fn sample(page: &str, name: &str, pairs: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| pairs.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_parse_with_promtool_and_count_what_was_sent() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    orders.add_addr("lo", "10.92.0.10/32").unwrap();
    orders.add_addr("lo", "10.92.0.30/32").unwrap();
    let _app = HttpServer::start(&orders, "10.92.0.10:8080".parse().unwrap(), "app").unwrap();
    let _db = EchoServer::start(&orders, "10.92.0.30:5432".parse().unwrap()).unwrap();
    let root = topo.bpffs_root("agent").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let files = tempfile::tempdir().unwrap();
    let access_log = files.path().join("access.jsonl");
    let agent = Agent::start_with(
        tempfile::tempdir().unwrap(),
        &config(web.name(), orders.name(), &access_log),
        &root,
        &["--metrics-addr", &addr, "--conntrack-sweep-interval", "1s"],
    );
    assert!(
        eventually(TIMEOUT, || agent.target_status("10.92.0.10") == "HEALTHY"),
        "{}",
        agent.log()
    );
    let vip = agent.vip("api");

    // 20 requests that reach the target, 3 that a rule answers with 404.
    let http = std::net::SocketAddr::from((vip, 80));
    for _ in 0..20 {
        let r = client::http_get(&web, http, "/orders", TIMEOUT).unwrap();
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(
            client::http_get(&web, http, "/gone", TIMEOUT)
                .unwrap()
                .status,
            404
        );
    }
    // 64 KiB through the kernel's TCP listener.
    let payload = vec![7u8; 64 * 1024];
    // Byte-exact, or an error.
    client::echo_roundtrip(
        &web,
        std::net::SocketAddr::from((vip, 5432)),
        &payload,
        TIMEOUT,
    )
    .unwrap();

    let scrape = || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{addr}/metrics")])
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // The records of the last requests land when their responses end.
    assert!(eventually(TIMEOUT, || {
        sample(
            &scrape(),
            "lattice_total_request_count_total",
            &["service=\"api\""],
        ) == Some(23.0)
    }));
    let page = scrape();

    // promtool, Prometheus' own parser and linter.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus; cargo xtask setup installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}\n{page}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let api = "service=\"api\"";
    let app = "target_group=\"app\"";
    assert_eq!(
        sample(&page, "lattice_total_request_count_total", &[app]),
        Some(20.0)
    );
    assert_eq!(
        sample(
            &page,
            "lattice_http_code_count_total",
            &[api, "code_class=\"2xx\""]
        ),
        Some(20.0)
    );
    assert_eq!(
        sample(
            &page,
            "lattice_http_code_count_total",
            &[api, "code_class=\"4xx\""]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&page, "lattice_request_time_seconds_count", &[api]),
        Some(23.0)
    );
    assert_eq!(
        sample(
            &page,
            "lattice_total_connection_count_total",
            &[api, "path=\"l7\""]
        ),
        Some(23.0),
        "the test client opens one connection per request"
    );
    assert_eq!(
        sample(&page, "lattice_active_connections", &[api]),
        Some(0.0)
    );
    assert!(
        sample(
            &page,
            "lattice_processed_bytes_total",
            &[app, "path=\"l7\"", "direction=\"out\""]
        )
        .is_some_and(|b| b > 0.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "lattice_total_connection_count_total",
            &[api, "path=\"kernel\""]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &page,
            "lattice_processed_bytes_total",
            &[api, "path=\"kernel\"", "direction=\"in\""]
        )
        .is_some_and(|b| b >= payload.len() as f64),
        "{page}"
    );
    assert_eq!(sample(&page, "lattice_healthy_hosts", &[app]), Some(1.0));
    assert_eq!(sample(&page, "lattice_unhealthy_hosts", &[app]), Some(0.0));
    assert!(
        sample(
            &page,
            "lattice_kernel_target_connections_total",
            &["target_group=\"db-tg\"", "target=\"10.92.0.30:5432\""]
        ) == Some(1.0),
        "{page}"
    );
    // What the conntrack sweeps counted (every second here): the page does not walk
    // the map per scrape. The TCP flow above is one flow, two entries.
    let swept = |page: &str, name: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    let mut last = String::new();
    assert!(
        eventually(TIMEOUT, || {
            last = scrape();
            swept(&last, "lattice_kernel_conntrack_entries").is_some()
        }),
        "no sweep within {TIMEOUT:?}: {last}"
    );
    assert!(swept(&last, "lattice_kernel_conntrack_swept_entries_total").is_some());

    // Request bodies: 100 000 bytes with a content-length, then the same streamed
    // (chunked, no length). Both count as the target received them, in the metrics and
    // in each request's access log record.
    let l7_in = [app, "path=\"l7\"", "direction=\"in\""];
    let before = sample(&page, "lattice_processed_bytes_total", &l7_in).unwrap_or(0.0);
    let upload = files.path().join("upload.bin");
    std::fs::write(&upload, vec![b'u'; 100_000]).unwrap();
    let data = format!("@{}", upload.display());
    for (path, extra) in [
        ("/upload-with-length", None),
        ("/upload-chunked", Some("transfer-encoding: chunked")),
    ] {
        let url = format!("http://{vip}{path}");
        let mut args = vec![
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            &data,
        ];
        if let Some(header) = extra {
            args.extend(["-H", header]);
        }
        args.push(&url);
        let out = common::curl(&web, &args);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        eventually(TIMEOUT, || sample(
            &scrape(),
            "lattice_processed_bytes_total",
            &l7_in
        ) == Some(before + 200_000.0)),
        "{}",
        scrape()
    );
    let records = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&access_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let received = |path: &str| {
        records()
            .iter()
            .find(|r| r["requestPath"] == path)
            .map(|r| r["bytesReceived"].clone())
    };
    assert!(
        eventually(TIMEOUT, || received("/upload-chunked").is_some()),
        "{:#?}",
        records()
    );
    assert_eq!(received("/upload-with-length"), Some(100_000.into()));
    assert_eq!(received("/upload-chunked"), Some(100_000.into()));
    assert_eq!(received("/orders"), Some(0.into()), "a GET has no body");
}
