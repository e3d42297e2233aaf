//! Live reconfiguration with real traffic: 30 applies of a changed document while wrk,
//! HTTP requests of the project's client (on one keep-alive connection and on new
//! connections) and a long TCP transfer run. No request fails, the transfer is byte-exact, each apply's effect is
//! visible right after it; a refused document changes nothing, and an agent killed
//! with a broken document on disk comes back with the last one it applied.

mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{eventually, Agent};
use lattice_tests::{client, EchoServer, HttpServer, Netns, Topology};

const TIMEOUT: Duration = Duration::from_secs(20);
/// How long the background traffic may run at most, whatever happens.
const TRAFFIC_LIMIT: Duration = Duration::from_secs(120);
const APPLIES: usize = 30;

/// Generation `n` of the document: the HTTP listener forwards to `app-a` on even
/// generations and `app-b` on odd ones, and a fixed-response rule answers
/// `/generation/<n>` with 404 (other paths are forwarded); the TCP listener's group
/// gains and loses a second target, so the kernel tables change on every apply.
fn config(web: &str, orders: &str, n: usize) -> String {
    let group = if n.is_multiple_of(2) {
        "app-a"
    } else {
        "app-b"
    };
    let second_echo = if n.is_multiple_of(2) {
        ""
    } else {
        ", { id: 10.92.0.21 }"
    };
    let preamble = common::shop_preamble(web, orders, &["orders", "bulk"]);
    format!(
        r#"
{preamble}services:
  - name: orders
    account: "111111111111"
    authType: NONE
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: {group} }}] }} }}
        rules:
          - name: generation
            priority: 1
            match: {{ httpMatch: {{ pathMatch: {{ match: {{ exact: /generation/{n} }} }} }} }}
            action: {{ fixedResponse: {{ statusCode: 404 }} }}
  - name: bulk
    account: "111111111111"
    authType: NONE
    listeners:
      - {{ name: tcp, protocol: TCP, port: 9000, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: echo }}] }} }} }}
targetGroups:
  - name: app-a
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.10 }}]
  - name: app-b
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.11 }}]
  - name: echo
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 7000, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.20 }}{second_echo}]
"#
    )
}

/// The server a generation's default action reaches.
fn server_of(n: usize) -> &'static str {
    if n.is_multiple_of(2) {
        "a"
    } else {
        "b"
    }
}

/// A keep-alive HTTP/1.1 GET on an open connection: (status, answering server).
fn get_on(stream: &mut TcpStream, path: &str) -> std::io::Result<(u16, String)> {
    write!(stream, "GET {path} HTTP/1.1\r\nhost: orders\r\n\r\n")?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut status = 0;
    let mut server = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(rest) = line.strip_prefix("http/1.1 ") {
            status = rest[..3].parse().unwrap_or(0);
        }
        if let Some(v) = line.strip_prefix("x-lattice-test-server: ") {
            server = v.to_owned();
        }
        if let Some(v) = line.strip_prefix("content-length: ") {
            len = v.parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok((status, server))
}

/// Background HTTP traffic: one loop on a keep-alive connection, one on new
/// connections; every failure is recorded.
struct HttpLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HttpLoad {
    fn start(web: &Netns, vip: SocketAddr) -> HttpLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let keep_alive = {
            let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
            let web = web.clone();
            std::thread::spawn(move || {
                let mut stream = client::connect(&web, vip, TIMEOUT).expect("connect");
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < TRAFFIC_LIMIT {
                    sent.fetch_add(1, Ordering::Relaxed);
                    match get_on(&mut stream, "/") {
                        Ok((200, server)) if server == "a" || server == "b" => {}
                        other => failures
                            .lock()
                            .unwrap()
                            .push(format!("keep-alive: {other:?}")),
                    }
                }
            })
        };
        let fresh = {
            let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
            let web = web.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && started.elapsed() < TRAFFIC_LIMIT {
                    sent.fetch_add(1, Ordering::Relaxed);
                    match client::http_get(&web, vip, "/", TIMEOUT) {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("new connection: status {}", r.status)),
                        Err(e) => failures
                            .lock()
                            .unwrap()
                            .push(format!("new connection: {e}")),
                    }
                }
            })
        };
        HttpLoad {
            stop,
            sent,
            failures,
            threads: vec![keep_alive, fresh],
        }
    }

    /// Stops the loops; returns how many requests were sent and the failures.
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

/// wrk inside a namespace, running until [`Wrk::finish`] (SIGINT: wrk stops and prints
/// its summary) or at most [`TRAFFIC_LIMIT`].
struct Wrk(std::process::Child);

impl Wrk {
    fn start(ns: &Netns, url: &str) -> Wrk {
        let child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "wrk",
                "-t1",
                "-c8",
                "--timeout",
                "10s",
            ])
            .arg(format!("-d{}s", TRAFFIC_LIMIT.as_secs()))
            .arg(url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run wrk (Debian package wrk; cargo xtask setup installs it)");
        Wrk(child)
    }

    /// Stops wrk; returns (requests, failures: non-2xx/3xx responses plus socket
    /// errors) and its summary.
    fn finish(self) -> (u64, u64, String) {
        let pid = self.0.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status();
        let out = self.0.wait_with_output().expect("wrk's summary");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let requests = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
        let numbers_after = |label: &str| -> u64 {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix(label))
                .flat_map(|rest| {
                    rest.split(|c: char| !c.is_ascii_digit())
                        .filter_map(|n| n.parse::<u64>().ok())
                        .collect::<Vec<_>>()
                })
                .sum()
        };
        let failures = numbers_after("Non-2xx or 3xx responses:") + numbers_after("Socket errors:");
        (requests, failures, text)
    }
}

#[test]
fn thirty_applies_under_traffic_then_a_refused_one_then_kill_9() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    for a in ["10.92.0.10", "10.92.0.11", "10.92.0.20", "10.92.0.21"] {
        orders.add_addr("lo", &format!("{a}/32")).unwrap();
    }
    let _a = HttpServer::start(&orders, "10.92.0.10:8080".parse().unwrap(), "a").unwrap();
    let _b = HttpServer::start(&orders, "10.92.0.11:8080".parse().unwrap(), "b").unwrap();
    let _echo = EchoServer::start(&orders, "10.92.0.20:7000".parse().unwrap()).unwrap();
    let _echo2 = EchoServer::start(&orders, "10.92.0.21:7000".parse().unwrap()).unwrap();
    let (w, o) = (web.name().to_owned(), orders.name().to_owned());

    let root = topo.bpffs_root("agent").unwrap();
    let mut agent = Agent::start(&config(&w, &o, 0), &root);
    let http = agent.vip_addr("orders", 80);
    let tcp = agent.vip_addr("bulk", 9000);
    assert!(
        eventually(TIMEOUT, || client::http_get(&web, http, "/", TIMEOUT)
            .is_ok_and(|r| r.status == 200)),
        "the HTTP listener serves:\n{}",
        agent.log()
    );

    // A 32 MiB echo transfer on one connection, in 256 KiB exchanges, through all
    // the applies.
    let transfer = {
        let web = web.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let stream = client::connect(&web, tcp, TIMEOUT).expect("connect to bulk");
            let chunk: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
            let mut exchanged = 0usize;
            while exchanged < 128 && started.elapsed() < TRAFFIC_LIMIT {
                client::echo_exchange(&stream, &chunk, TIMEOUT)
                    .unwrap_or_else(|e| panic!("exchange {exchanged}: {e}"));
                exchanged += 1;
                // Spread over the applies.
                std::thread::sleep(Duration::from_millis(20));
            }
            exchanged
        })
    };
    let load = HttpLoad::start(&web, http);
    let wrk = Wrk::start(&web, &format!("http://{http}/"));
    let mut keep_alive = client::connect(&web, http, TIMEOUT).unwrap();
    keep_alive.set_read_timeout(Some(TIMEOUT)).unwrap();

    for n in 1..=APPLIES {
        agent
            .apply(&config(&w, &o, n))
            .unwrap_or_else(|log| panic!("apply {n} refused:\n{log}"));
        // Right after the apply: new connections and the open keep-alive one both see
        // the new default action and the new rule; the previous rule is gone.
        let r = client::http_get(&web, http, "/", TIMEOUT).unwrap();
        assert_eq!(
            r.header("x-lattice-test-server"),
            Some(server_of(n)),
            "apply {n}"
        );
        assert_eq!(
            get_on(&mut keep_alive, "/").unwrap(),
            (200, server_of(n).to_owned())
        );
        let path = format!("/generation/{n}");
        assert_eq!(get_on(&mut keep_alive, &path).unwrap().0, 404, "apply {n}");
        let previous = format!("/generation/{}", n - 1);
        let r = client::http_get(&web, http, &previous, TIMEOUT).unwrap();
        assert_ne!(
            r.header("x-lattice-test-server"),
            None,
            "{previous} is forwarded now"
        );
    }
    let (wrk_requests, wrk_failures, summary) = wrk.finish();
    assert_eq!(wrk_failures, 0, "wrk saw failures:\n{summary}");
    assert!(wrk_requests > 1000, "wrk ran too little:\n{summary}");
    let (sent, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:#?}",
        failures.len()
    );
    assert!(sent > 100, "only {sent} requests ran");
    let exchanged = transfer.join().expect("the transfer is byte-exact");
    assert!(exchanged > 0);
    assert!(
        agent.log().matches("config applied").count() >= APPLIES,
        "{}",
        agent.log()
    );

    // A refused document: every error is said, nothing changes.
    let broken = config(&w, &o, 99)
        .replace("priority: 1", "priority: 0")
        .replace(
            "targetGroupIdentifier: echo",
            "targetGroupIdentifier: nowhere",
        );
    let refused = agent
        .apply(&broken)
        .expect_err("the broken document is refused");
    assert!(refused.contains("priority"), "{refused}");
    assert!(refused.contains("nowhere"), "{refused}");
    let last = APPLIES;
    let r = client::http_get(&web, http, "/", TIMEOUT).unwrap();
    assert_eq!(r.header("x-lattice-test-server"), Some(server_of(last)));
    let r = client::http_get(&web, http, &format!("/generation/{last}"), TIMEOUT).unwrap();
    assert_eq!(r.status, 404, "the last applied rule");
    client::echo_roundtrip(&web, tcp, b"still there", TIMEOUT).expect("the TCP listener stays");

    // kill -9 with the broken document on disk: the agent comes back with the last
    // document it applied, and says why.
    agent.kill();
    agent.spawn();
    let log = agent.log();
    assert!(
        log.contains("starting with the last applied config"),
        "{log}"
    );
    let r = client::http_get(&web, http, "/", TIMEOUT).unwrap();
    assert_eq!(r.header("x-lattice-test-server"), Some(server_of(last)));
    let r = client::http_get(&web, http, &format!("/generation/{last}"), TIMEOUT).unwrap();
    assert_eq!(r.status, 404, "the last applied rule");
    client::echo_roundtrip(&web, tcp, b"after the restart", TIMEOUT).expect("TCP after restart");

    // Fixing the file is picked up as usual.
    agent.apply(&config(&w, &o, 0)).expect("the fixed document");
    let r = client::http_get(&web, http, "/", TIMEOUT).unwrap();
    assert_eq!(r.header("x-lattice-test-server"), Some(server_of(0)));
}
