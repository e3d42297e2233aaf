//! The control API and the `lattice` CLI against a running agent with real traffic:
//! apply with a diff and a dry run, Lattice's operations and error shapes over the
//! socket (curl --unix-socket), registered targets that survive kill -9, the socket
//! refusing a caller that is not root, and TCP refusing a caller without the token.

mod common;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use common::{eventually, Agent};
use lattice_tests::{client, HttpServer, Topology};
use serde_json::{json, Value};

const LATTICE: &str = env!("CARGO_BIN_EXE_lattice");
const TIMEOUT: Duration = Duration::from_secs(20);

fn config(web: &str, orders: &str, dir: &Path, group: &str) -> String {
    let preamble = common::shop_preamble(web, orders, &["orders", "billing"]);
    format!(
        r#"
{preamble}services:
  - name: orders
    account: "111111111111"
    authType: NONE
    listeners:
      - {{ name: http, protocol: HTTP, port: 80, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: {group} }}] }} }} }}
  - name: billing
    account: "111111111111"
    authType: NONE
    listeners:
      - {{ name: http, protocol: HTTP, port: 80, defaultAction: {{ fixedResponse: {{ statusCode: 404 }} }} }}
targetGroups:
  - name: app-a
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.10 }}]
  - name: app-b
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.11 }}]
accessLogSubscriptions:
  - {{ resource: orders, destination: "file:{dir}/access.jsonl" }}
"#,
        dir = dir.display()
    )
}

/// `lattice --socket <agent's> args...`.
fn lattice(agent: &Agent, args: &[&str]) -> Output {
    Command::new(LATTICE)
        .arg("--socket")
        .arg(agent.api_socket())
        .args(args)
        .output()
        .expect("run lattice")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw API call with curl over the socket: (status, x-amzn-errortype, JSON body).
fn api(agent: &Agent, method: &str, path: &str, body: Option<Value>) -> (u16, String, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-X",
        method,
        "-D",
        "-",
        "--unix-socket",
    ])
    .arg(agent.api_socket())
    .arg(format!("http://lattice{path}"));
    // From a file: a large document does not fit in an argument.
    let _body_file = body.map(|b| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b.to_string()).unwrap();
        cmd.args(["-H", "content-type: application/json", "--data-binary"])
            .arg(format!("@{}", file.path().display()));
        file
    });
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let error_type = head
        .lines()
        .find_map(|l| l.strip_prefix("x-amzn-errortype: "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, error_type, body)
}

/// The status code `curl` (the command given, flags added) gets for `url`, with an
/// extra header; "000" when it could not connect.
fn status_code(mut curl: Command, url: &str, header: Option<&str>) -> String {
    curl.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ]);
    if let Some(h) = header {
        curl.args(["-H", h]);
    }
    let out = curl.arg(url).output().expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn server(web: &lattice_tests::Netns, addr: SocketAddr, path: &str) -> (u16, Option<String>) {
    let r = client::http_get(web, addr, path, TIMEOUT).expect("HTTP through the VIP");
    (
        r.status,
        r.header("x-lattice-test-server").map(str::to_owned),
    )
}

#[test]
fn lattice_cli_and_api_change_a_running_agent() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    for a in ["10.92.0.10", "10.92.0.11", "10.92.0.12"] {
        orders.add_addr("lo", &format!("{a}/32")).unwrap();
    }
    let _a = HttpServer::start(&orders, "10.92.0.10:8080".parse().unwrap(), "a").unwrap();
    let _b = HttpServer::start(&orders, "10.92.0.11:8080".parse().unwrap(), "b").unwrap();
    let _c = HttpServer::start(&orders, "10.92.0.12:8080".parse().unwrap(), "c").unwrap();
    let files = tempfile::tempdir().unwrap();
    let (w, o) = (web.name().to_owned(), orders.name().to_owned());
    let token_file = files.path().join("token");
    std::fs::write(&token_file, "0123456789abcdef-token\n").unwrap();
    let tcp_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp = format!("127.0.0.1:{tcp_port}");

    let root = topo.bpffs_root("agent").unwrap();
    let mut agent = Agent::start_with(
        tempfile::tempdir().unwrap(),
        &config(&w, &o, files.path(), "app-a"),
        &root,
        &[
            "--api-addr",
            &tcp,
            "--api-token-file",
            token_file.to_str().unwrap(),
            "--access-log-max-bytes",
            "4096",
            "--access-log-keep",
            "2",
        ],
    );
    let http = agent.vip_addr("orders", 80);
    assert!(
        eventually(TIMEOUT, || client::http_get(&web, http, "/", TIMEOUT)
            .is_ok_and(|r| r.status == 200)),
        "{}",
        agent.log()
    );

    // get: tables for people, JSON for scripts.
    let table = stdout(&lattice(&agent, &["get", "services"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("orders") && table.contains("billing"),
        "{table}"
    );
    let services: Value =
        serde_json::from_str(&stdout(&lattice(&agent, &["get", "svc", "-o", "json"]))).unwrap();
    let orders_vip = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "orders")
        .unwrap()["vip"]
        .clone();
    assert_eq!(orders_vip, json!(http.ip().to_string()));

    // apply: a dry run shows the diff and changes nothing; the apply switches at once.
    let next = files.path().join("next.yaml");
    std::fs::write(&next, config(&w, &o, files.path(), "app-b")).unwrap();
    let next = next.to_str().unwrap();
    let dry = stdout(&lattice(&agent, &["apply", "-f", next, "--dry-run"]));
    assert!(dry.contains("~ listeners orders/http"), "{dry}");
    assert_eq!(
        server(&web, http, "/").1.as_deref(),
        Some("a"),
        "the dry run changed nothing"
    );
    let applied = stdout(&lattice(&agent, &["apply", "-f", next]));
    assert!(applied.contains("applied"), "{applied}");
    assert_eq!(server(&web, http, "/").1.as_deref(), Some("b"));
    let again = stdout(&lattice(&agent, &["apply", "-f", next]));
    assert!(again.contains("no changes"), "{again}");

    // Lattice's operations over the socket.
    let rule = json!({
        "name": "admin", "priority": 5,
        "match": { "httpMatch": { "pathMatch": { "match": { "prefix": "/admin" } } } },
        "action": { "fixedResponse": { "statusCode": 404 } },
    });
    let (status, _, body) = api(
        &agent,
        "POST",
        "/services/orders/listeners/http/rules",
        Some(rule.clone()),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server(&web, http, "/admin/x"),
        (404, None),
        "the new rule answers"
    );
    let (status, kind, body) = api(
        &agent,
        "POST",
        "/services/orders/listeners/http/rules",
        Some(rule),
    );
    assert_eq!(
        (status, kind.as_str()),
        (409, "ConflictException"),
        "{body}"
    );
    assert_eq!(body["resourceType"], "RULE");
    let (status, kind, body) = api(
        &agent,
        "PATCH",
        "/services/orders/listeners/http/rules/admin",
        Some(json!({ "priority": 0 })),
    );
    assert_eq!(
        (status, kind.as_str()),
        (400, "ValidationException"),
        "{body}"
    );
    let fields = body["fieldList"].to_string();
    assert!(fields.contains("priority"), "{body}");
    assert_eq!(
        server(&web, http, "/admin/x").0,
        404,
        "the refused change changed nothing"
    );
    let (status, kind, body) = api(&agent, "GET", "/services/nothing", None);
    assert_eq!(
        (status, kind.as_str()),
        (404, "ResourceNotFoundException"),
        "{body}"
    );
    let (status, _, page) = api(&agent, "GET", "/services?maxResults=1", None);
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let token = page["nextToken"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, _, second) = api(
        &agent,
        "GET",
        &format!("/services?maxResults=1&nextToken={token}"),
        None,
    );
    assert_ne!(second["items"][0]["name"], page["items"][0]["name"]);
    assert_eq!(second["nextToken"], Value::Null);
    // Lattice's identifiers name a resource as its name does: the id, and the ARN
    // URL-encoded as SDKs send it.
    let (status, _, by_name) = api(&agent, "GET", "/services/orders", None);
    assert_eq!(status, 200, "{by_name}");
    let arn = by_name["arn"].as_str().expect("an ARN");
    for identifier in [
        by_name["id"].as_str().expect("an id").to_owned(),
        arn.replace(':', "%3A").replace('/', "%2F"),
    ] {
        let (status, _, found) = api(&agent, "GET", &format!("/services/{identifier}"), None);
        assert_eq!(
            (status, &found["name"]),
            (200, &by_name["name"]),
            "{identifier}"
        );
    }
    // A listener shows its id and ARN, and is found by them under the service's id.
    let (status, _, listener) = api(&agent, "GET", "/services/orders/listeners/http", None);
    assert_eq!(status, 200, "{listener}");
    let service_id = by_name["id"].as_str().expect("an id");
    for identifier in [&listener["id"], &listener["arn"]] {
        let identifier = identifier.as_str().expect("an id and an ARN");
        assert!(identifier.contains("listener-"), "{listener}");
        let path = format!(
            "/services/{service_id}/listeners/{}",
            identifier.replace(':', "%3A").replace('/', "%2F")
        );
        let (status, _, found) = api(&agent, "GET", &path, None);
        assert_eq!((status, &found["name"]), (200, &listener["name"]), "{path}");
    }
    // A token that is none, with a character that is not ASCII right after a `%` (its
    // decoding once panicked the handler, which then answered nothing).
    let (status, kind, body) = api(&agent, "GET", "/services?nextToken=%a\u{e9}", None);
    assert_eq!(
        (status, kind.as_str()),
        (400, "ValidationException"),
        "{body}"
    );
    let deleted = stdout(&lattice(
        &agent,
        &["delete", "rules", "orders", "http", "admin"],
    ));
    assert!(deleted.contains("deleted"), "{deleted}");
    assert_eq!(server(&web, http, "/admin/x").1.as_deref(), Some("b"));
    // Auth policies: refused where they would not be enforced, in force with AWS_IAM.
    let allow_all = json!({ "Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*" }] });
    let (status, kind, body) = api(
        &agent,
        "PUT",
        "/authpolicy/orders",
        Some(json!({ "policy": allow_all })),
    );
    assert_eq!(
        (status, kind.as_str()),
        (400, "ValidationException"),
        "{body}"
    );
    assert!(
        body["fieldList"].to_string().contains("authPolicy"),
        "{body}"
    );
    let iam = json!({ "authType": "AWS_IAM", "authPolicy": allow_all });
    let (status, _, body) = api(&agent, "PATCH", "/services/orders", Some(iam));
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = api(&agent, "GET", "/authpolicy/orders", None);
    assert_eq!(body["state"], "Active", "{body}");
    assert_eq!(server(&web, http, "/").0, 200, "the policy admits everyone");

    // Targets: registered through the API, with their health, and kept across kill -9.
    let (status, _, body) = api(
        &agent,
        "POST",
        "/targetgroups/app-b/registertargets",
        Some(json!({ "targets": [{ "id": "10.92.0.12" }] })),
    );
    assert_eq!(status, 200, "{body}");
    let listed = stdout(&lattice(&agent, &["targets", "app-b"]));
    assert!(
        listed.contains("10.92.0.11") && listed.contains("10.92.0.12"),
        "{listed}"
    );
    let seen: std::collections::BTreeSet<String> =
        (0..20).filter_map(|_| server(&web, http, "/").1).collect();
    assert_eq!(
        seen,
        ["b".to_owned(), "c".to_owned()].into(),
        "round robin over both"
    );
    agent.kill();
    agent.spawn();
    assert!(
        agent.log().contains("the control API's last change"),
        "{}",
        agent.log()
    );
    let listed = stdout(&lattice(&agent, &["targets", "app-b", "-o", "json"]));
    assert!(
        listed.contains("10.92.0.12"),
        "the registered target survives the restart: {listed}"
    );

    // stats and logs.
    server(&web, http, "/logged");
    let stats: Value =
        serde_json::from_str(&stdout(&lattice(&agent, &["stats", "-o", "json"]))).unwrap();
    let orders_stats = stats["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "orders")
        .unwrap()
        .clone();
    assert!(orders_stats["requests"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        eventually(TIMEOUT, || stdout(&lattice(&agent, &["logs"]))
            .contains("/logged")),
        "the access log through `lattice logs`"
    );

    // The access log rotates past --access-log-max-bytes; no record is cut.
    for _ in 0..20 {
        server(&web, http, "/rotating");
    }
    let log = files.path().join("access.jsonl");
    let rotated = files.path().join("access.jsonl.1");
    // A rotation renames the file, then starts the next one: both exist once it is done.
    assert!(
        eventually(TIMEOUT, || rotated.exists() && log.exists()),
        "no rotated log file next to {}",
        log.display()
    );
    assert!(!files.path().join("access.jsonl.3").exists(), "keep: 2");
    for file in [&log, &rotated] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.len() <= 4096,
            "{} is {} bytes",
            file.display(),
            text.len()
        );
        for line in text.lines() {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("{}: {e}: {line}", file.display()));
        }
    }

    // Who may call: the socket is root's (mode 0600), and a caller that gets past the
    // file's mode is still refused by its credentials; TCP needs the token.
    use std::os::unix::fs::PermissionsExt as _;
    let socket = agent.api_socket();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let as_nobody = || {
        let mut curl = Command::new("setpriv");
        curl.args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl"]);
        curl.arg("--unix-socket").arg(&socket);
        status_code(curl, "http://lattice/services", None)
    };
    assert_eq!(as_nobody(), "000", "no connection for uid 65534");
    let dir = socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(as_nobody(), "403", "refused by its credentials");
    let curl_tcp = |auth: Option<&str>| {
        status_code(
            Command::new("curl"),
            &format!("http://{tcp}/services"),
            auth,
        )
    };
    assert_eq!(curl_tcp(None), "401");
    assert_eq!(
        curl_tcp(Some("authorization: Bearer wrong-token-0000")),
        "401"
    );
    assert_eq!(
        curl_tcp(Some("authorization: Bearer 0123456789abcdef-token")),
        "200"
    );
    let out = Command::new(LATTICE)
        .args(["--endpoint", &tcp, "--token-file"])
        .arg(&token_file)
        .args(["get", "targetgroups"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("app-b"));

    // Usage errors are exit code 2; completion scripts print.
    assert_eq!(lattice(&agent, &["get", "nonsense"]).status.code(), Some(2));
    assert!(stdout(&lattice(&agent, &["completion", "bash"])).contains("complete"));

    // A client polling the API more often than the sync interval (200 ms here) does not
    // keep an edit of the file from applying.
    let polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = {
        let polling = std::sync::Arc::clone(&polling);
        let socket = agent.api_socket();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut calls = 0;
            while polling.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(40)
            {
                let _ = Command::new("curl")
                    .args(["-sS", "-o", "/dev/null", "--max-time", "5", "--unix-socket"])
                    .arg(&socket)
                    .arg("http://lattice/stats")
                    .output();
                calls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            calls
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let applied = agent.apply(&config(&w, &o, files.path(), "app-b"));
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    let calls = poller.join().unwrap();
    applied.unwrap_or_else(|log| panic!("the edit was refused:\n{log}"));
    assert!(calls > 5, "the API was polled {calls} times");
}

/// A document with `services` services of two TCP listeners each, besides `orders`:
/// the first 400 in network `shop` (vpc-web's), the others in `shop-2` (vpc-orders'),
/// as a network has at most 500.
fn many_tcp_listeners(web: &str, orders: &str, services: usize) -> String {
    let names: Vec<String> = (0..services).map(|i| format!("bulk-{i}")).collect();
    let (first, second) = names.split_at(services.min(400));
    let mut listed: Vec<&str> = first.iter().map(String::as_str).collect();
    listed.push("orders");
    let second = if second.is_empty() {
        String::new()
    } else {
        format!(
            r#"  - name: shop-2
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-orders }}]
    serviceAssociations: [{}]
"#,
            second.join(", ")
        )
    };
    let mut doc = format!(
        r#"
{preamble}{second}services:
  - name: orders
    account: "111111111111"
    authType: NONE
    listeners:
      - {{ name: http, protocol: HTTP, port: 80, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: app-a }}] }} }} }}
"#,
        preamble = common::shop_preamble(web, orders, &listed)
    );
    // A target group is used by one service only.
    for name in &names {
        doc.push_str(&format!(
            r#"  - name: {name}
    account: "111111111111"
    authType: NONE
    listeners:
      - {{ name: tcp-a, protocol: TCP, port: 9000, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: {name}-tg }}] }} }} }}
      - {{ name: tcp-b, protocol: TCP, port: 9001, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: {name}-tg }}] }} }} }}
"#
        ));
    }
    doc.push_str(
        r#"targetGroups:
  - name: app-a
    type: IP
    config: { vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: { enabled: false } }
    targets: [{ id: 10.92.0.10 }]
"#,
    );
    for name in &names {
        doc.push_str(&format!(
            r#"  - name: {name}-tg
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 7000, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.20 }}]
"#
        ));
    }
    doc
}

#[test]
fn a_dry_run_or_a_document_past_the_kernels_tables_changes_nothing() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    orders.add_addr("lo", "10.92.0.10/32").unwrap();
    let _a = HttpServer::start(&orders, "10.92.0.10:8080".parse().unwrap(), "a").unwrap();
    let (w, o) = (web.name().to_owned(), orders.name().to_owned());
    let root = topo.bpffs_root("agent").unwrap();
    let first = many_tcp_listeners(&w, &o, 1);
    // Room for 514 services' addresses.
    let mut agent = Agent::start_with(
        tempfile::tempdir().unwrap(),
        &first,
        &root,
        &["--vip-pool", "169.254.160.0/22"],
    );
    // From the API: `show` would need the same --vip-pool.
    let (_, _, orders_service) = api(&agent, "GET", "/services/orders", None);
    let vip: std::net::Ipv4Addr = orders_service["vip"].as_str().unwrap().parse().unwrap();
    let http = SocketAddr::from((vip, 80));
    assert!(
        eventually(TIMEOUT, || client::http_get(&web, http, "/", TIMEOUT)
            .is_ok_and(|r| r.status == 200)),
        "{}",
        agent.log()
    );
    let (_, _, before) = api(&agent, "GET", "/document", None);

    // A dry run makes nothing: not the folder and file of a new access log destination.
    let logs = tempfile::tempdir().unwrap();
    let new_folder = logs.path().join("new");
    let logged = format!(
        "{first}accessLogSubscriptions:\n  - {{ resource: orders, destination: \"file:{}/access.jsonl\" }}\n",
        new_folder.display()
    );
    let (status, _, body) = api(
        &agent,
        "PUT",
        "/document?dryRun=true",
        Some(json!({"source": "test", "text": logged})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dryRun"], true);
    assert!(
        !new_folder.exists(),
        "a dry run made {}",
        new_folder.display()
    );

    // Within Lattice's rules, but more listeners than the kernel's table holds (1024):
    // refused before anything is applied, naming the table.
    let too_many = many_tcp_listeners(&w, &o, 513);
    let (status, _, body) = api(
        &agent,
        "PUT",
        "/document",
        Some(json!({"source": "test", "text": too_many})),
    );
    assert_eq!(status, 400, "{body}\n{}", agent.log());
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1027 listeners") && message.contains("holds 1024"),
        "{message}"
    );
    let (_, _, after) = api(&agent, "GET", "/document", None);
    assert_eq!(after["text"], before["text"], "the running document stays");
    assert!(
        eventually(TIMEOUT, || client::http_get(&web, http, "/", TIMEOUT)
            .is_ok_and(|r| r.status == 200)),
        "still serving:\n{}",
        agent.log()
    );
    // A restart comes back with the document in force, not the failed one, and counts
    // generations on: an If-Match read before it names no document after it.
    agent.kill();
    agent.spawn();
    let (_, _, restarted) = api(&agent, "GET", "/document", None);
    let (was, is) = (
        before["generation"].as_u64().unwrap(),
        restarted["generation"].as_u64().unwrap(),
    );
    assert!(is > was, "generation {was} before the restart, {is} after");
    let services = stdout(&lattice(&agent, &["get", "services"]));
    assert!(services.contains("bulk-0"), "{services}");
    assert!(!services.contains("bulk-1"), "{services}");
}
