//! `cargo xtask demo`: the demo topology, the agent on it, and a report of what works.
//!
//! It builds namespaces shaped like config-contract.yaml (vpc-web, vpc-orders with the
//! target servers at the contract's addresses, vpc-other), writes the embedded demo
//! config with its key and certificate files, and then shows, step by step, what the
//! agent does with it today: validation (and a broken document refused with precise
//! errors), the resolved model, the agent loading and pinning its kernel programs, the
//! pinned objects as bpftool sees them, virtual IPs that stay the same across a restart,
//! and a clean stop. Everything it makes is named with a unique tag and removed at the
//! end, also on failure (a later run sweeps what an interrupted one left).

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{bail, Context as _};
use lattice_tests::{client, Cgroup, EchoServer, HttpServer, Netns, Pki, Topology};

use crate::{shell, step};

/// The demo config, with `{web_ns}`, `{orders_ns}`, `{other_ns}` and `{web_cgroup}`.
const DEMO_CONFIG: &str = include_str!("../demo/lattice-demo.yaml");
/// How long the agent may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One line of the final report.
struct Outcome {
    what: &'static str,
    result: Result<String, String>,
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    step("building lattice-agent (its build script builds the eBPF object first)");
    shell::cargo(root, &["build", "--quiet", "-p", "lattice-agent", "--bins"])?;
    let agent = root.join("target/debug/lattice-agent");

    step("building the demo topology (network namespaces shaped like config-contract.yaml)");
    let mut topo = Topology::new()?;
    let web = topo.add_netns("web")?;
    let orders = topo.add_netns("orders")?;
    let other = topo.add_netns("other")?;
    let web_cgroup = topo.add_cgroup("web")?;
    // The agent runs in a cgroup of its own (as under systemd), and the workloads that
    // run inside the VPC namespaces in another one, named with --sockmap-cgroup: socket
    // acceleration records the sockets of both.
    let agent_cgroup = topo.add_cgroup("agent")?;
    let workloads = topo.add_cgroup("workloads")?;
    // Each VPC namespace's own address inside its CIDR: the source of its VIP traffic.
    web.add_addr("lo", "10.91.0.5/32")?;
    other.add_addr("lo", "10.93.0.5/32")?;
    let _servers = start_targets(&orders)?;
    let work = DemoDir::new(topo.tag().as_str())?;
    let bpffs_root = topo.bpffs_root("bpf")?;
    println!(
        "    vpc-web: netns {} (client 10.91.0.5), cgroup {}",
        web.name(),
        web_cgroup.relative_path()
    );
    println!(
        "    vpc-orders: netns {} with targets 10.92.0.10-11:8080, 10.92.0.20:8080 (HTTP), 10.92.0.30:5432 (TCP)",
        orders.name()
    );
    println!(
        "    vpc-other: netns {} (associated with nothing)",
        other.name()
    );

    let config = work.write_config(&web, &orders, &other, &web_cgroup.relative_path())?;
    let state_dir = work.path.join("state");
    let mut report = Vec::new();

    step("lattice-agent validate (the demo document)");
    report.push(Outcome {
        what: "desired state validates",
        result: run_shown(Command::new(&agent).arg("validate").arg(&config)),
    });

    step("lattice-agent validate (a broken copy: every error at once, nothing applied)");
    let broken = work.write_broken(&config)?;
    let refused = Command::new(&agent).arg("validate").arg(&broken).output()?;
    print!("{}", indent(&String::from_utf8_lossy(&refused.stderr)));
    report.push(Outcome {
        what: "a bad document is refused with precise errors",
        result: if refused.status.success() {
            Err("the broken document validated".into())
        } else {
            Ok(format!(
                "{} errors named",
                String::from_utf8_lossy(&refused.stderr)
                    .lines()
                    .filter(|l| l.contains("broken.yaml:"))
                    .count()
            ))
        },
    });

    step("lattice-agent show (ids, ARNs, DNS names, virtual IPs)");
    report.push(Outcome {
        what: "resolved model (ids, ARNs, DNS names, VIPs)",
        result: run_shown(Command::new(&agent).arg("show").arg(&config))
            .map(|_| "shown above".to_owned()),
    });

    step("lattice-agent run (loads and pins the kernel programs, then serves)");
    let in_cgroups = AgentCgroups {
        own: &agent_cgroup,
        workloads: &workloads,
    };
    let mut running = start_agent(&agent, &config, &state_dir, &bpffs_root, &in_cgroups)?;
    report.push(Outcome {
        what: "agent started, programs and maps pinned",
        result: Ok(format!("pinned under {}", bpffs_root.display())),
    });
    let vips_first = vips(&agent, &config, &state_dir)?;

    step("bpftool: the pinned map (typed by BTF) and program");
    let map = bpffs_root.join(lattice_common::ifstats::MAP_NAME);
    let prog = bpffs_root
        .join(lattice_common::pins::PROGS_DIR)
        .join(lattice_common::pins::programs::TC_INGRESS);
    let bpftool = run_shown(
        Command::new("bpftool")
            .args(["map", "show", "pinned"])
            .arg(&map),
    )
    .and_then(|_| {
        run_shown(
            Command::new("bpftool")
                .args(["prog", "show", "pinned"])
                .arg(&prog),
        )
    });
    report.push(Outcome {
        what: "bpftool sees the pinned map and program",
        result: bpftool.map(|_| "shown above".to_owned()),
    });

    step("TCP through a VIP, in the kernel: vpc-web -> orders-db (1 MiB echo, byte-exact)");
    let db_vip = vip_of(&agent, &config, &state_dir, "orders-db")?;
    let db = SocketAddr::from((db_vip, 5432));
    let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    report.push(Outcome {
        what: "vpc-web reaches orders-db through its VIP (kernel NAT, no userspace hop)",
        result: client::echo_roundtrip(&web, db, &payload, Duration::from_secs(10))
            .map(|()| format!("1 MiB echoed byte-exact via {db}"))
            .map_err(|e| format!("{e:#}")),
    });

    step("vpc-other is not associated with the service network: refused in the kernel");
    let started = std::time::Instant::now();
    report.push(Outcome {
        what: "an unassociated VPC is refused at once (RST), and counted",
        result: match client::connect(&other, db, Duration::from_secs(5)) {
            Ok(_) => Err("vpc-other connected".into()),
            Err(e) => Ok(format!(
                "refused in {:?}: {}",
                started.elapsed(),
                lattice_tests::error_chain(&e)
            )),
        },
    });

    step("lattice-agent maps: the kernel tables, decoded by resource name");
    report.push(Outcome {
        what: "kernel tables",
        result: run_shown(
            Command::new(&agent)
                .args(["maps", "--bpffs-root"])
                .arg(&bpffs_root)
                .arg("--config")
                .arg(&config)
                .arg("--state-dir")
                .arg(&state_dir),
        )
        .map(|_| "shown above".to_owned()),
    });

    step("DNS: the agent answers inside each VPC namespace (dig @agentAddress)");
    report.extend(dns_step(&agent, &config, &state_dir, &web, &other));

    step("HTTPS to orders.shop.internal (account 222's service, shared into account 111's network): TLS by SNI, then auth");
    let orders_vip = vip_of(&agent, &config, &state_dir, "orders")?;
    let url = "https://orders.shop.internal/api/orders";
    // curl in vpc-web: in its namespace, or (`from_host`) as a host process in its
    // cgroup, which connect4 sends to the agent's socket for vpc-web's host processes.
    let https_from =
        |from_host: bool, what: &str, extra: &[String], method: &str| -> Result<String, String> {
            let mut curl = if from_host {
                web_cgroup.command("curl")
            } else {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", web.name(), "curl"]);
                c
            };
            let out = curl
                .args(["-sS", "--max-time", "10"])
                .args([
                    "-o",
                    "/dev/stdout",
                    "-w",
                    "\nHTTP %{http_code} over HTTP/%{http_version}\n",
                ])
                .arg("--cacert")
                .arg(work.path.join("certs/ca-111111111111.pem"))
                .args([
                    "--resolve",
                    &format!("orders.shop.internal:443:{orders_vip}"),
                ])
                .args(["-X", method])
                .args(extra)
                .arg(url)
                .output()
                .map_err(|e| format!("curl: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            println!("    {what}:");
            let shown: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.starts_with("HTTP ")
                        || l.starts_with("x-amzn-lattice-identity")
                        || l.contains("Exception")
                        || l.starts_with("orders-v")
                })
                .collect();
            print!("{}", indent(&shown.join("\n")));
            println!();
            Ok(text)
        };
    let https = |what: &str, extra: &[String], method: &str| https_from(false, what, extra, method);
    let expect = |text: Result<String, String>, status: &str, needle: &str| match text {
        Ok(text) if text.contains(&format!("HTTP {status}")) && text.contains(needle) => {
            Ok(text.lines().last().unwrap_or("").to_owned())
        }
        Ok(text) => Err(text),
        Err(e) => Err(e),
    };
    report.push(Outcome {
        what: "anonymous caller: 403 AccessDeniedException (the service's policy names role/web)",
        result: expect(
            https("anonymous", &[], "GET"),
            "403",
            "User: anonymous is not authorized",
        ),
    });
    let secret = work.path.join("secrets/web.key");
    let signed = |method: &str| -> Vec<String> {
        let headers = lattice_tests::sigv4::sign(
            method,
            url,
            &lattice_tests::sigv4::Signing::new("LKIAWEB0000000000001", &secret),
        );
        headers
            .iter()
            .flat_map(|(k, v)| ["-H".to_owned(), format!("{k}: {v}")])
            .collect()
    };
    report.push(Outcome {
        what: "role/web, request signed by botocore (SigV4): both policies allow; the target sees x-amzn-lattice-identity",
        result: expect(
            https("role/web, SigV4 (botocore)", &signed("GET"), "GET"),
            "200",
            "x-amzn-lattice-identity: Principal=arn:lattice:iam::111111111111:role/web",
        ),
    });
    report.push(Outcome {
        what: "role/web signed, but DELETE: the service's policy allows only GET and POST (403)",
        result: expect(
            https("role/web, SigV4, DELETE", &signed("DELETE"), "DELETE"),
            "403",
            "no service-based policy allows",
        ),
    });
    let client_cert = [
        "--cert".to_owned(),
        work.path.join("certs/web-client.pem").display().to_string(),
        "--key".to_owned(),
        work.path.join("certs/web-client.key").display().to_string(),
    ];
    report.push(Outcome {
        what: "role/web by mTLS client certificate (URI SAN of account 111's CA): admitted",
        result: expect(
            https("role/web, mTLS", &client_cert, "GET"),
            "200",
            "X509SAN/URI=spiffe://lattice/account/111111111111/role/web",
        ),
    });

    step("a host process in vpc-web's cgroup -> orders over HTTPS: connect4 hands it to the agent");
    report.push(Outcome {
        what: "host process in vpc-web's cgroup, signed as role/web: admitted through the agent's host socket",
        result: host_site_ready(&agent, &bpffs_root, &config, &state_dir, "vpc-web", 443)
            .and_then(|()| {
                expect(
                    https_from(true, "host process, SigV4", &signed("GET"), "GET"),
                    "200",
                    "x-amzn-lattice-identity: Principal=arn:lattice:iam::111111111111:role/web",
                )
            }),
    });

    step("socket acceleration: curl in a workload cgroup -> the agent's HTTPS listener, socket to socket");
    report.push(sockmap_step(
        &agent,
        &bpffs_root,
        &workloads,
        &web,
        &work.path,
        orders_vip,
    ));

    step("the shop network's access log: one JSON line per request, with the auth decision");
    let log_file = work.path.join("logs/shop-access.jsonl");
    // The records are written when each response ends; give the writer a moment.
    std::thread::sleep(Duration::from_millis(300));
    report.push(Outcome {
        what: "access log records carry Lattice's fields, the caller and the deciding statements",
        result: access_log_summary(&log_file),
    });

    step("kill -9 the agent during a transfer: the kernel path carries on without it");
    let transfer = {
        let web = web.clone();
        std::thread::spawn(move || -> Result<(), String> {
            let s =
                client::connect(&web, db, Duration::from_secs(5)).map_err(|e| format!("{e:#}"))?;
            let chunk: Vec<u8> = (0..256 * 1024).map(|i| (i % 253) as u8).collect();
            for _ in 0..16 {
                client::echo_exchange(&s, &chunk, Duration::from_secs(10))
                    .map_err(|e| format!("{e:#}"))?;
            }
            Ok(())
        })
    };
    running.kill9();
    let survived = transfer
        .join()
        .unwrap_or_else(|_| Err("transfer thread panicked".into()));
    let new_conn = client::echo_roundtrip(&web, db, b"no agent", Duration::from_secs(5));
    report.push(Outcome {
        what: "a transfer survives kill -9 of the agent, new connections still work",
        result: match (survived, new_conn) {
            (Ok(()), Ok(())) => {
                Ok("4 MiB echoed across the kill; a new connection made with no agent".into())
            }
            (a, b) => Err(format!("transfer: {a:?}, new connection: {b:?}")),
        },
    });

    step("restarting the agent on the same state directory (it adopts the pinned state)");
    running = start_agent(&agent, &config, &state_dir, &bpffs_root, &in_cgroups)?;
    let vips_second = vips(&agent, &config, &state_dir)?;
    report.push(Outcome {
        what: "virtual IPs stable across the restart",
        result: if vips_first == vips_second && !vips_first.is_empty() {
            Ok(vips_first.join(", "))
        } else {
            Err(format!("{vips_first:?} then {vips_second:?}"))
        },
    });
    report.push(Outcome {
        what: "the restarted agent adopted the flows and tables",
        result: client::echo_roundtrip(&web, db, b"adopted", Duration::from_secs(5))
            .map(|()| "orders-db still reachable".to_owned())
            .map_err(|e| format!("{e:#}")),
    });
    step("live reconfiguration: orders-db's listener moves to port 5433 while the agent runs; a broken document is refused");
    report.extend(live_step(&running, &config, &web, db_vip));

    step("the lattice CLI, over the agent's control API (a root-only Unix socket)");
    let lattice = |args: &[&str]| {
        let mut cmd = Command::new(root.join("target/debug/lattice"));
        cmd.arg("--socket").arg(api_socket(&state_dir)).args(args);
        cmd
    };
    for (what, args) in [
        ("lattice get services", &["get", "services"][..]),
        (
            "lattice get rules orders https",
            &["get", "rules", "orders", "https"][..],
        ),
        (
            "lattice targets orders-v1 (health)",
            &["targets", "orders-v1"][..],
        ),
        ("lattice stats (live counters)", &["stats"][..]),
    ] {
        report.push(Outcome {
            what,
            result: run_shown(&mut lattice(args)).map(|_| "shown above".to_owned()),
        });
    }

    std::thread::sleep(Duration::from_millis(1500));
    step("lattice-agent targets: target health");
    report.push(Outcome {
        what: "target health",
        result: run_shown(
            Command::new(&agent)
                .args(["targets", "--state-dir"])
                .arg(&state_dir),
        )
        .map(|_| "shown above".to_owned()),
    });
    let stopped = running
        .stop()
        .and_then(|status| match api_socket(&state_dir).exists() {
            false => Ok(format!("{status}, control socket removed")),
            true => Err("the control socket was left behind".to_owned()),
        });
    report.push(Outcome {
        what: "clean stop on SIGTERM",
        result: stopped,
    });
    let _ = shell::output(
        Command::new(&agent)
            .args(["cleanup", "--bpffs-root"])
            .arg(&bpffs_root),
    );

    step("report");
    let mut failed = 0;
    for outcome in &report {
        match &outcome.result {
            Ok(detail) => println!("    ok    {}: {}", outcome.what, first_line(detail)),
            Err(why) => {
                failed += 1;
                println!("    FAIL  {}: {}", outcome.what, why);
            }
        }
    }
    println!(
        "    next  cheaper access log records (the control API issue), cheaper SigV4 requests (the auth issue), the L7 proxy's efficiency (the L7 issue)"
    );
    println!("    removing the demo topology, pins and files");
    drop(topo);
    if failed > 0 {
        bail!("{failed} demo step(s) failed");
    }
    Ok(())
}

/// The targets of the demo's target groups, at the contract's addresses, inside the
/// orders namespace.
fn start_targets(orders: &Netns) -> anyhow::Result<(Vec<HttpServer>, EchoServer)> {
    // On lo: the targets' addresses are local to the namespace, whatever its links.
    for addr in ["10.92.0.10", "10.92.0.11", "10.92.0.20", "10.92.0.30"] {
        orders.add_addr("lo", &format!("{addr}/32"))?;
    }
    let http = [
        ("10.92.0.10:8080", "orders-v1-a"),
        ("10.92.0.11:8080", "orders-v1-b"),
        ("10.92.0.20:8080", "orders-v2"),
    ]
    .into_iter()
    .map(|(addr, name)| Ok(HttpServer::start(orders, addr.parse()?, name)?))
    .collect::<anyhow::Result<Vec<_>>>()?;
    let db = EchoServer::start(orders, "10.92.0.30:5432".parse()?)?;
    Ok((http, db))
}

/// The demo's working directory: config, key and certificate files, agent state.
struct DemoDir {
    path: PathBuf,
}

impl DemoDir {
    fn new(tag: &str) -> anyhow::Result<DemoDir> {
        let path = std::env::temp_dir().join(format!("lattice-demo-{tag}"));
        fs::create_dir_all(path.join("secrets"))?;
        fs::create_dir_all(path.join("certs"))?;
        fs::create_dir_all(path.join("logs"))?;
        Ok(DemoDir { path })
    }

    fn write_config(
        &self,
        web: &Netns,
        orders: &Netns,
        other: &Netns,
        web_cgroup: &str,
    ) -> anyhow::Result<PathBuf> {
        fs::write(
            self.path.join("secrets/web.key"),
            "demo-secret-of-role-web-0123456789\n",
        )?;
        // Account 111's CA issues both the service's certificate and role/web's client
        // certificate (its URI SAN is the principal's mtlsSubject).
        let pki = Pki::new(&self.path.join("certs"));
        pki.ca("ca-111111111111", "/OU=demo/CN=account 111111111111 CA");
        pki.issue(
            "ca-111111111111",
            "orders",
            "/CN=orders.shop.internal",
            &["DNS:orders.shop.internal"],
        );
        pki.issue(
            "ca-111111111111",
            "web-client",
            "/CN=web",
            &["URI:spiffe://lattice/account/111111111111/role/web"],
        );
        let text = DEMO_CONFIG
            .replace("{web_ns}", web.name())
            .replace("{orders_ns}", orders.name())
            .replace("{other_ns}", other.name())
            .replace("{web_cgroup}", web_cgroup.trim_start_matches('/'));
        let path = self.path.join("lattice.yaml");
        fs::write(&path, text)?;
        println!("    desired state: {}", path.display());
        Ok(path)
    }

    /// A copy of the config with three mistakes a person makes.
    fn write_broken(&self, config: &Path) -> anyhow::Result<PathBuf> {
        let text = fs::read_to_string(config)?
            .replace("priority: 20", "priority: 0")
            .replace("weight: 90", "weight: 1000")
            .replace(
                "targetGroupIdentifier: orders-db,",
                "targetGroupIdentifier: orders-dbb,",
            );
        let path = self.path.join("broken.yaml");
        fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A running agent whose log lines are echoed, indented.
struct RunningAgent {
    child: Child,
    /// The agent's `config applied` and `config refused` log lines, as they come.
    applies: mpsc::Receiver<String>,
}

impl RunningAgent {
    /// SIGKILL, as a crash.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(&mut self) -> Result<String, String> {
        let pid = self.child.id().to_string();
        shell::status(Command::new("kill").args(["-TERM", &pid])).map_err(|e| e.to_string())?;
        for _ in 0..100 {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok("exit status 0".into()),
                Ok(Some(status)) => return Err(format!("exited with {status}")),
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("still running 10 s after SIGTERM".into())
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where the demo's agent runs, and the cgroup it accelerates besides its own and the
/// VPC cgroups.
struct AgentCgroups<'a> {
    own: &'a Cgroup,
    workloads: &'a Cgroup,
}

fn start_agent(
    agent: &Path,
    config: &Path,
    state_dir: &Path,
    bpffs_root: &Path,
    cgroups: &AgentCgroups<'_>,
) -> anyhow::Result<RunningAgent> {
    let mut child = cgroups
        .own
        .command(agent)
        .arg("run")
        .arg("--sockmap-cgroup")
        .arg(cgroups.workloads.relative_path().trim_start_matches('/'))
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--bpffs-root")
        .arg(bpffs_root)
        // The demo's own control socket, never the host's default.
        .arg("--api-socket")
        .arg(api_socket(state_dir))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let (ready_tx, ready_rx) = mpsc::channel();
    let (applies_tx, applies) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            println!("    agent| {line}");
            if line.contains("lattice-agent ready") {
                let _ = ready_tx.send(());
            }
            if line.contains("config applied") || line.contains("config refused") {
                let _ = applies_tx.send(line);
            }
        }
    });
    let running = RunningAgent { child, applies };
    match ready_rx.recv_timeout(READY_TIMEOUT) {
        Ok(()) => Ok(running),
        Err(_) => bail!("the agent did not log `lattice-agent ready` within {READY_TIMEOUT:?}"),
    }
}

/// The demo agent's control API socket, next to its state directory.
fn api_socket(state_dir: &Path) -> PathBuf {
    state_dir.with_file_name("api.sock")
}

/// Rewrites the document the agent follows (write and rename) and waits for the agent
/// to say it applied or refused it: `Ok(line)` when applied, `Err(line)` when refused.
fn apply_live(
    running: &RunningAgent,
    config: &Path,
    text: &str,
) -> anyhow::Result<Result<String, String>> {
    let next = config.with_extension("next");
    std::fs::write(&next, text)?;
    std::fs::rename(&next, config)?;
    let line = running
        .applies
        .recv_timeout(Duration::from_secs(15))
        .context("the agent neither applied nor refused the document within 15 s")?;
    Ok(if line.contains("config applied") {
        Ok(line)
    } else {
        Err(line)
    })
}

/// Live reconfiguration with real traffic: the TCP listener of orders-db moves from
/// 5432 to 5433 and back, and a broken document changes nothing.
fn live_step(running: &RunningAgent, config: &Path, web: &Netns, vip: Ipv4Addr) -> Vec<Outcome> {
    let echo = |port: u16| {
        client::echo_roundtrip(
            web,
            SocketAddr::from((vip, port)),
            b"live",
            Duration::from_secs(2),
        )
    };
    let run = || -> anyhow::Result<Vec<Outcome>> {
        let original = std::fs::read_to_string(config)?;
        let listener = "        protocol: TCP\n        port: 5432\n";
        anyhow::ensure!(
            original.contains(listener),
            "the demo document has no orders-db listener on 5432"
        );
        let moved = original.replacen(listener, "        protocol: TCP\n        port: 5433\n", 1);
        let mut out = Vec::new();
        let applied = apply_live(running, config, &moved)?;
        out.push(Outcome {
            what: "a changed document applied live (orders-db on 5433)",
            result: match applied {
                Ok(_) if echo(5433).is_ok() && echo(5432).is_err() => {
                    Ok("5433 answers, 5432 no longer does".to_owned())
                }
                Ok(_) => Err(format!(
                    "5433: {:?}, 5432: {:?}",
                    echo(5433).err(),
                    echo(5432).err()
                )),
                Err(line) => Err(line),
            },
        });
        let broken = moved.replacen("port: 5433", "port: 0", 1);
        out.push(Outcome {
            what: "a broken document refused, nothing changed",
            result: match apply_live(running, config, &broken)? {
                Err(line) if echo(5433).is_ok() => Ok(line),
                Err(_) => Err("refused, but 5433 stopped answering".to_owned()),
                Ok(line) => Err(format!("applied: {line}")),
            },
        });
        out.push(Outcome {
            what: "the original document applied again",
            result: match apply_live(running, config, &original)? {
                Ok(_) if echo(5432).is_ok() => Ok("orders-db on 5432 again".to_owned()),
                Ok(_) => Err("applied, but 5432 does not answer".to_owned()),
                Err(line) => Err(line),
            },
        });
        Ok(out)
    };
    run().unwrap_or_else(|e| {
        vec![Outcome {
            what: "live reconfiguration",
            result: Err(format!("{e:#}")),
        }]
    })
}

/// One service's VIP.
/// Whether connect4 knows where to send `vpc`'s host processes that connect to an L7
/// listener on `port` (`maps`' `hostSites`): checked before a host process connects to
/// a VIP, so that its connect() never leaves the machine unrewritten.
fn host_site_ready(
    agent: &Path,
    bpffs_root: &Path,
    config: &Path,
    state_dir: &Path,
    vpc: &str,
    port: u16,
) -> Result<(), String> {
    let json = shell::output(
        Command::new(agent)
            .args(["maps", "--json", "--bpffs-root"])
            .arg(bpffs_root)
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state_dir),
    )
    .map_err(|e| format!("{e:#}"))?;
    let maps: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    let ready = maps["hostSites"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|h| h["vpc"] == vpc && h["port"] == port && h["proxyPort"] != 0);
    if ready {
        Ok(())
    } else {
        Err(format!(
            "no host site for {vpc} port {port} in `maps`: {}",
            maps["hostSites"]
        ))
    }
}

fn vip_of(
    agent: &Path,
    config: &Path,
    state_dir: &Path,
    service: &str,
) -> anyhow::Result<Ipv4Addr> {
    let vip = vips(agent, config, state_dir)?
        .into_iter()
        .find_map(|v| v.strip_prefix(&format!("{service}=")).map(str::to_owned))
        .with_context(|| format!("no VIP for {service}"))?;
    Ok(vip.parse()?)
}

/// The services' virtual IPs as `show --state-dir` reports them (sorted `name=vip`).
fn vips(agent: &Path, config: &Path, state_dir: &Path) -> anyhow::Result<Vec<String>> {
    let json = shell::output(
        Command::new(agent)
            .args(["show", "--json", "--state-dir"])
            .arg(state_dir)
            .arg(config),
    )?;
    let value: serde_json::Value = serde_json::from_str(&json).context("parsing show --json")?;
    let mut vips: Vec<String> = value["services"]
        .as_array()
        .context("show --json has no services")?
        .iter()
        .map(|s| {
            format!(
                "{}={}",
                s["name"].as_str().unwrap_or("?"),
                s["vip"].as_str().unwrap_or("?")
            )
        })
        .collect();
    vips.sort();
    Ok(vips)
}

/// dig in vpc-web for orders' default and custom names (its VIP), and in vpc-other,
/// which is associated with nothing (NXDOMAIN).
fn dns_step(
    agent: &Path,
    config: &Path,
    state_dir: &Path,
    web: &Netns,
    other: &Netns,
) -> Vec<Outcome> {
    let shown = shell::output(
        Command::new(agent)
            .args(["show", "--json", "--state-dir"])
            .arg(state_dir)
            .arg(config),
    )
    .map_err(|e| format!("{e:#}"))
    .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).map_err(|e| e.to_string()));
    let shown = match shown {
        Ok(v) => v,
        Err(e) => {
            return vec![Outcome {
                what: "DNS names resolve inside VPC namespaces",
                result: Err(e),
            }]
        }
    };
    let server = shown["agentAddress"].as_str().unwrap_or("?").to_owned();
    let orders = shown["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "orders");
    let name = orders
        .and_then(|s| s["dnsName"].as_str())
        .unwrap_or("?")
        .to_owned();
    let vip = orders
        .and_then(|s| s["vip"].as_str())
        .unwrap_or("?")
        .to_owned();
    let dig = |ns: &Netns, qname: &str| -> Result<String, String> {
        println!("    ip netns exec {} dig @{server} {qname}", ns.name());
        let out = Command::new("ip")
            .args(["netns", "exec", ns.name(), "dig", &format!("@{server}")])
            .args([
                qname,
                "A",
                "+time=2",
                "+tries=2",
                "+noall",
                "+comments",
                "+answer",
            ])
            .output()
            .map_err(|e| format!("dig (cargo xtask setup installs bind9-dnsutils): {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let shown: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("status:") || (!l.starts_with(';') && !l.trim().is_empty()))
            .collect();
        print!("{}", indent(&shown.join("\n")));
        println!();
        Ok(text)
    };
    let resolves = |text: Result<String, String>| match text {
        Ok(t) if t.contains("status: NOERROR") && t.lines().any(|l| l.ends_with(&vip)) => {
            Ok(format!("{vip}, TTL 10 s"))
        }
        Ok(t) => Err(t),
        Err(e) => Err(e),
    };
    vec![
        Outcome {
            what: "vpc-web resolves orders' default DNS name to its VIP",
            result: resolves(dig(web, &name)),
        },
        Outcome {
            what: "vpc-web resolves orders' custom domain name orders.shop.internal",
            result: resolves(dig(web, "orders.shop.internal")),
        },
        Outcome {
            what: "vpc-other (associated with no network) gets NXDOMAIN for orders",
            result: match dig(other, "orders.shop.internal") {
                Ok(t) if t.contains("status: NXDOMAIN") => Ok("NXDOMAIN".into()),
                Ok(t) => Err(t),
                Err(e) => Err(e),
            },
        },
    ]
}

/// Runs a command, prints its output indented, and returns it (or why it failed).
/// Socket acceleration carrying real traffic: curl, run inside the workloads cgroup in
/// vpc-web's namespace, makes 20 mTLS requests over one connection to the orders
/// service's HTTPS listener (the agent, whose socket listens in that namespace). Both
/// sockets are in the SOCKHASH, so the TLS records go socket to socket through sk_msg:
/// the acceleration counters of `lattice-agent maps` show it, and bpftool the SOCKHASH.
fn sockmap_step(
    agent: &Path,
    bpffs_root: &Path,
    workloads: &Cgroup,
    web: &Netns,
    work: &Path,
    orders_vip: Ipv4Addr,
) -> Outcome {
    let what =
        "socket acceleration hands a client's TLS stream to the agent socket to socket (sk_msg)";
    let counters = || -> Result<serde_json::Value, String> {
        let json = shell::output(
            Command::new(agent)
                .args(["maps", "--json", "--bpffs-root"])
                .arg(bpffs_root),
        )
        .map_err(|e| format!("{e:#}"))?;
        serde_json::from_str::<serde_json::Value>(&json)
            .map(|v| v["sockmap"].clone())
            .map_err(|e| e.to_string())
    };
    let result = (|| -> Result<String, String> {
        let before = counters()?;
        let url = "https://orders.shop.internal/api/orders";
        let mut curl = workloads.command_in(web, "curl");
        curl.args(["-sS", "--max-time", "20"])
            .args(["-w", "%{http_code} "])
            .arg("--cacert")
            .arg(work.join("certs/ca-111111111111.pem"))
            .arg("--cert")
            .arg(work.join("certs/web-client.pem"))
            .arg("--key")
            .arg(work.join("certs/web-client.key"))
            .args([
                "--resolve",
                &format!("orders.shop.internal:443:{orders_vip}"),
            ]);
        for _ in 0..20 {
            curl.args(["-o", "/dev/null", url]);
        }
        let out = curl.output().map_err(|e| format!("curl: {e}"))?;
        let codes = String::from_utf8_lossy(&out.stdout).into_owned();
        println!(
            "    20 requests on one connection, status codes: {}",
            codes.trim()
        );
        let ok = codes.split_whitespace().filter(|c| *c == "200").count();
        if ok != 20 {
            return Err(format!(
                "{ok} of 20 requests answered 200: {codes} {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let after = counters()?;
        let delta = |k: &str| {
            after[k]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(before[k].as_u64().unwrap_or(0))
        };
        println!(
            "    sockmap counters: +{} sockets recorded, +{} connections accelerated, +{} bytes \
             redirected, +{} bytes the normal way (the agent's requests to the targets, which \
             run outside the accelerated cgroups)",
            delta("socketsRecorded"),
            delta("connectionsAccelerated"),
            delta("redirectedBytes"),
            delta("normalBytes")
        );
        let _ = run_shown(
            Command::new("bpftool")
                .args(["map", "show", "pinned"])
                .arg(bpffs_root.join(lattice_common::sockmap::SOCKS_MAP)),
        );
        if delta("connectionsAccelerated") == 0 || delta("redirectedBytes") == 0 {
            return Err(format!("nothing went through sk_msg redirect: {after}"));
        }
        Ok(format!(
            "20 requests (HTTP 200) over 1 connection; {} bytes of TLS records handed socket to socket",
            delta("redirectedBytes")
        ))
    })();
    Outcome { what, result }
}

fn run_shown(cmd: &mut Command) -> Result<String, String> {
    match cmd.output() {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            print!("{}", indent(&stdout));
            print!("{}", indent(&String::from_utf8_lossy(&out.stderr)));
            if out.status.success() {
                Ok(stdout)
            } else {
                Err(format!("{:?} failed: {}", cmd, out.status))
            }
        }
        Err(e) => Err(format!("{cmd:?}: {e}")),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Prints the access log's records, one line each, and checks that an allowed and a
/// denied request are there.
fn access_log_summary(path: &Path) -> Result<String, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut decisions = Vec::new();
    for line in text.lines() {
        let r: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
        let field = |k: &str| {
            r[k].as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| r[k].to_string())
        };
        println!(
            "    {} {} {} -> {}  caller={}  decision={}  statements={}",
            field("startTime"),
            field("requestMethod"),
            field("requestPath"),
            field("responseCode"),
            field("callerPrincipal"),
            field("authDecision"),
            r["authStatements"]
        );
        decisions.push(field("authDecision"));
    }
    if decisions.iter().any(|d| d == "Allow") && decisions.iter().any(|d| d == "Deny") {
        Ok(format!("{} records in {}", decisions.len(), path.display()))
    } else {
        Err(format!("expected allowed and denied requests in:\n{text}"))
    }
}
