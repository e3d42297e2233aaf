//! The `lattice-agent` binary as a user runs it: validate, show, run, cleanup.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use lattice_tests::{Pki, Topology};

const AGENT: &str = env!("CARGO_BIN_EXE_lattice-agent");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The contract as the project's steering keeps it, beside the repository (CI has it).
fn shared_contract() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/config-contract.yaml");
    p.exists().then_some(p)
}

/// `lattice-agent run` on `config`, with its state and pins where the test says.
fn agent_run(config: &Path, state_dir: &Path, bpffs_root: &Path) -> Command {
    let mut command = Command::new(AGENT);
    command
        .args(["run", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--bpffs-root")
        .arg(bpffs_root);
    command
}

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(AGENT)
        .args(args)
        .output()
        .expect("run lattice-agent")
}

#[test]
fn validate_accepts_the_contract() {
    let copy = data("config-contract.yaml");
    let out = agent(&["validate", copy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(shared) = shared_contract() {
        let out = agent(&["validate", shared.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(&shared).unwrap(),
            std::fs::read_to_string(&copy).unwrap(),
            "tests/data/config-contract.yaml must be a copy of shared/config-contract.yaml"
        );
    }
}

#[test]
fn validate_refuses_a_bad_document_naming_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(data("config-contract.yaml"))
        .unwrap()
        .replace("priority: 20", "priority: 0")
        .replace("weight: 90", "weight: 1000");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, text).unwrap();
    let out = agent(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(stderr.contains("priority"), "{stderr}");
    assert!(stderr.contains("weight"), "{stderr}");
}

#[test]
fn validate_names_a_missing_file() {
    let out = agent(&["validate", "/nonexistent/lattice.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/lattice.yaml"), "{stderr}");
}

#[test]
fn show_prints_ids_arns_dns_names_and_vips() {
    let contract = data("config-contract.yaml");
    let out = agent(&["show", "--json", contract.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let orders = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "orders")
        .expect("service orders");
    let id = orders["id"].as_str().unwrap();
    assert!(id.starts_with("svc-") && id.len() == 21, "{id}");
    assert_eq!(
        orders["arn"].as_str().unwrap(),
        format!("arn:lattice:vpc-lattice:local:222222222222:service/{id}")
    );
    assert!(orders["vip"].as_str().unwrap().starts_with("169.254.171."));
    assert!(orders["dnsName"]
        .as_str()
        .unwrap()
        .starts_with(&format!("orders-{}", &id[4..])));

    let table = agent(&["show", contract.to_str().unwrap()]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains(id), "{text}");
    assert!(text.contains("orders.shop.internal"), "{text}");
}

/// `run` loads and pins under the test's own bpffs root, logs ready, keeps the VIPs it
/// allocated in the state directory, and stops cleanly on SIGTERM; `cleanup` removes
/// the pins.
#[test]
fn run_pins_logs_ready_and_stops_on_sigterm() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let root = topo.bpffs_root("agent").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The contract's key and certificate files, relative to the document.
    let config = dir.path().join("lattice.yaml");
    std::fs::copy(data("config-contract.yaml"), &config).unwrap();
    let secret = dir.path().join("secrets/web.key");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, "test material\n").unwrap();
    // The agent loads the HTTPS certificate and the account's client CA at start: real
    // ones.
    let pki = Pki::new(&dir.path().join("certs"));
    pki.ca("ca-111111111111", "/CN=account 111111111111 CA");
    pki.issue(
        "ca-111111111111",
        "orders",
        "/CN=orders",
        &["DNS:orders.shop.internal"],
    );
    let state = dir.path().join("state");

    let mut child = agent_run(&config, &state, &root)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("lattice-agent ready") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("no ready line: {}", reader.join().unwrap());
    }
    assert!(root.join("LT_IFSTATS_V1").exists());
    assert!(root.join("progs/lt_tc_ingress").exists());
    assert!(state.is_dir(), "state directory created");

    let shown = agent(&[
        "show",
        "--json",
        "--state-dir",
        state.to_str().unwrap(),
        config.to_str().unwrap(),
    ]);
    assert!(shown.status.success());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(status.success(), "exit {status}: {log}");
    assert!(log.contains("SIGTERM"), "{log}");
    // The pins outlive the agent (a restarted agent adopts them) ...
    assert!(root.join("LT_IFSTATS_V1").exists());
    // ... until cleanup.
    let out = agent(&["cleanup", "--bpffs-root", root.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!root.exists());
}

#[test]
fn run_refuses_a_bad_document_before_touching_the_kernel() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let root = topo.bpffs_root("agent").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lattice.yaml");
    std::fs::write(&config, "services:\n  - name: x\n").unwrap();
    let out = agent_run(&config, &dir.path().join("state"), &root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lattice.yaml"));
    assert!(!root.exists(), "nothing pinned for a refused document");
}

#[test]
fn run_refuses_a_host_netns_it_cannot_open_before_touching_the_kernel() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let root = topo.bpffs_root("agent").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lattice.yaml");
    std::fs::copy(data("config-contract.yaml"), &config).unwrap();
    let out = agent_run(&config, &dir.path().join("state"), &root)
        .args(["--host-netns", "/nonexistent/netns"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--host-netns /nonexistent/netns"),
        "{stderr}"
    );
    assert!(!root.exists(), "nothing pinned for a refused flag");
}

#[test]
fn run_names_missing_key_and_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lattice.yaml");
    std::fs::copy(data("config-contract.yaml"), &config).unwrap();
    let out = agent_run(
        &config,
        &dir.path().join("state"),
        &dir.path().join("never-used"),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("certFile") || stderr.contains("secretFile"),
        "{stderr}"
    );
}
