//! A running agent for end-to-end tests: writes the test's document, starts the real
//! `lattice-agent run` under the test's own bpffs root and state directory, waits until
//! it is ready, and kills it on drop.
#![allow(dead_code)] // Each test binary uses a different part.

use std::{
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

pub const AGENT: &str = env!("CARGO_BIN_EXE_lattice-agent");

/// An agent process with its files.
pub struct Agent {
    child: Option<Child>,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs_root: PathBuf,
    pub log: Arc<Mutex<String>>,
    /// More `run` arguments (flags a test needs).
    pub extra_args: Vec<String>,
    /// The cgroup the agent process runs in (its own cgroup), when not the test's.
    pub cgroup: Option<lattice_tests::Cgroup>,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Writes `yaml` and starts the agent on it; waits for `lattice-agent ready`.
    pub fn start(yaml: &str, bpffs_root: &Path) -> Agent {
        Agent::start_in(tempfile::tempdir().expect("temp dir"), yaml, bpffs_root)
    }

    /// Like [`Agent::start`], with the document written into `dir`, where the test has
    /// put the files the document names by relative paths (keys, certificates).
    pub fn start_in(dir: tempfile::TempDir, yaml: &str, bpffs_root: &Path) -> Agent {
        Agent::start_with(dir, yaml, bpffs_root, &[])
    }

    /// Like [`Agent::start_in`], with more `run` arguments.
    pub fn start_with(
        dir: tempfile::TempDir,
        yaml: &str,
        bpffs_root: &Path,
        extra_args: &[&str],
    ) -> Agent {
        Agent::start_in_cgroup(dir, yaml, bpffs_root, extra_args, None)
    }

    /// Like [`Agent::start_with`], with the agent process inside `cgroup` from its first
    /// instruction (so the cgroup is the agent's own).
    pub fn start_in_cgroup(
        dir: tempfile::TempDir,
        yaml: &str,
        bpffs_root: &Path,
        extra_args: &[&str],
        cgroup: Option<lattice_tests::Cgroup>,
    ) -> Agent {
        let config = dir.path().join("lattice.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let mut agent = Agent {
            child: None,
            config,
            state_dir: dir.path().join("state"),
            bpffs_root: bpffs_root.to_path_buf(),
            log: Arc::new(Mutex::new(String::new())),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            cgroup,
            _dir: dir,
        };
        agent.spawn();
        agent
    }

    /// Starts (again) on the current config file.
    pub fn spawn(&mut self) {
        let mut command = match &self.cgroup {
            Some(cgroup) => cgroup.command(AGENT),
            None => Command::new(AGENT),
        };
        let mut child = command
            // A small conntrack table: tests open few flows, and the default (1 M flows)
            // takes about 240 MiB of kernel memory per agent.
            .args([
                "run",
                "--sync-interval",
                "200ms",
                "--max-flows",
                "65536",
                "--config",
            ])
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--bpffs-root")
            .arg(&self.bpffs_root)
            .arg("--api-socket")
            .arg(self.api_socket())
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lattice-agent");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("lattice-agent ready") {
                    let _ = tx.send(());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            panic!("agent not ready:\n{}", self.log.lock().unwrap());
        }
        self.child = Some(child);
    }

    /// SIGKILL, as a crash: nothing of the agent's runs after this.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The agent's control API socket, next to its state directory.
    pub fn api_socket(&self) -> PathBuf {
        self.state_dir.with_file_name("api.sock")
    }

    /// Replaces the document (for the next `spawn`).
    pub fn rewrite_config(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).expect("write config");
    }

    /// Replaces the document while the agent runs (write and rename, as editors do)
    /// and waits until the agent says it applied it (`Ok`) or refused it (`Err` with
    /// its log since the change).
    pub fn apply(&self, yaml: &str) -> Result<(), String> {
        let count = |what: &str| self.log().matches(what).count();
        let (applied, refused) = (count("config applied"), count("config refused"));
        let failed = count("failed part way");
        let from = self.log().len();
        let temp = self.config.with_extension("next");
        std::fs::write(&temp, yaml).expect("write config");
        std::fs::rename(&temp, &self.config).expect("replace config");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if count("config applied") > applied {
                return Ok(());
            }
            if count("config refused") > refused {
                return Err(self.log()[from..].to_owned());
            }
            assert!(
                count("failed part way") == failed,
                "applying failed part way:\n{}",
                &self.log()[from..]
            );
            assert!(
                Instant::now() < deadline,
                "the agent neither applied nor refused the document:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `lattice-agent show --json` of the running document and state.
    pub fn show(&self) -> serde_json::Value {
        let out = Command::new(AGENT)
            .args(["show", "--json", "--state-dir"])
            .arg(&self.state_dir)
            .arg(&self.config)
            .output()
            .expect("run show");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("show --json")
    }

    /// The VIP of a service.
    pub fn vip(&self, service: &str) -> Ipv4Addr {
        let shown = self.show();
        let vip = shown["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == service)
            .unwrap_or_else(|| panic!("no service {service}"))["vip"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        vip
    }

    pub fn vip_addr(&self, service: &str, port: u16) -> SocketAddr {
        SocketAddr::from((self.vip(service), port))
    }

    /// `lattice-agent maps --json` of this agent's pins and document.
    pub fn maps(&self) -> serde_json::Value {
        let out = Command::new(AGENT)
            .args(["maps", "--json", "--bpffs-root"])
            .arg(&self.bpffs_root)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run maps");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("maps --json")
    }

    /// `lattice-agent targets --json` of this agent (Null until it has recorded health).
    pub fn targets(&self) -> serde_json::Value {
        let out = Command::new(AGENT)
            .args(["targets", "--json", "--state-dir"])
            .arg(&self.state_dir)
            .output()
            .expect("run targets");
        if !out.status.success() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The recorded status of target `id` (`HEALTHY`, ...), empty when unknown.
    pub fn target_status(&self, id: &str) -> String {
        self.targets()
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["id"] == id)
            .and_then(|t| t["status"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The start of most test documents, up to its `services:`: account 111111111111,
/// vpc-web (10.91.0.0/16, namespace `web`) and vpc-orders (10.92.0.0/16, namespace
/// `orders`), and the network `shop` (authType NONE) associating vpc-web with
/// `services`.
pub fn shop_preamble(web: &str, orders: &str, services: &[&str]) -> String {
    format!(
        r#"accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{{ netns: {web} }}] }}
  - {{ name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{{ netns: {orders} }}] }}
serviceNetworks:
  - name: shop
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-web }}]
    serviceAssociations: [{}]
"#,
        services.join(", ")
    )
}

/// Polls `f` until it is true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// curl inside the namespace `ns` (quiet, errors shown, at most 10 s) with `args`.
pub fn curl(ns: &lattice_tests::Netns, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "curl",
            "-sS",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("run curl")
}
