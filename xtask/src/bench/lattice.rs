//! The lattice variant: the release agent on the benchmark's namespaces, a service
//! `bench` whose TCP listeners forward the three benchmark ports to the server, and the
//! client reaching it at the service's VIP. Every step that can fail says why, and the
//! benchmark prints the lattice column as "not available: <why>" instead of failing.

use std::{
    fmt::Write as _,
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use lattice_tests::Cgroup;
use serde::Serialize;

use super::{
    net::{
        self, BenchNet, CLIENT_CIDR, CONNECT_PORT, IPERF3_PORT, PORTS, SERVER_ADDR, SERVER_CIDR,
        SOCKPERF_PORT,
    },
    procs::{log_tail, Proc},
};
use crate::shell;

/// How long the agent may take to log `lattice-agent ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often its log is read for that line: the resolution of [`Started::ready_after`].
const READY_POLL: Duration = Duration::from_millis(20);
/// How long the first connection through the VIP may take to work after `ready`.
pub const PATH_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the release agent (its build script builds the eBPF object first).
pub fn build(root: &Path) -> anyhow::Result<PathBuf> {
    shell::cargo(
        root,
        &["build", "--release", "-p", "lattice-agent", "--bins"],
    )
    .context("cargo build --release -p lattice-agent failed")?;
    let bin = root.join("target/release/lattice-agent");
    if !bin.is_file() {
        bail!("{} is missing after the build", bin.display());
    }
    Ok(bin)
}

/// A running agent whose data path answered through the VIP.
pub struct Lattice {
    pub agent: Proc,
    /// Service `bench`: the iperf3 and sockperf listeners.
    pub vip: Ipv4Addr,
    /// Service `bench-connect`: the connection-rate listener.
    pub connect_vip: Ipv4Addr,
    bpffs_root: PathBuf,
}

/// The services and their listeners: Lattice allows two listeners per service, so the
/// connection-rate port has a service of its own.
const SERVICES: [(&str, &[(&str, u16)]); 2] = [
    (
        "bench",
        &[("iperf3", IPERF3_PORT), ("sockperf", SOCKPERF_PORT)],
    ),
    ("bench-connect", &[("connect", CONNECT_PORT)]),
];

/// The desired state: two VPCs (the client's and the server's namespaces), a network
/// associating the client's VPC with the services, one TCP listener and target group per
/// benchmark port.
fn config(net: &BenchNet) -> String {
    let service_names: Vec<&str> = SERVICES.iter().map(|(name, _)| *name).collect();
    let mut doc = preamble(net, &service_names);
    for (service, listeners) in SERVICES {
        let _ = write!(
            doc,
            "  - name: {service}\n    account: \"111111111111\"\n    authType: NONE\n    listeners:\n"
        );
        for (name, port) in listeners {
            let _ = write!(
                doc,
                "      - name: {name}\n        protocol: TCP\n        port: {port}\n        \
                 defaultAction:\n          forward:\n            targetGroups:\n              \
                 - {{ targetGroupIdentifier: bench-{name}, weight: 100 }}\n"
            );
        }
    }
    doc.push_str("targetGroups:\n");
    for (name, port) in PORTS {
        let _ = write!(
            doc,
            "  - name: bench-{name}\n    type: IP\n    config:\n      vpcIdentifier: vpc-server\n      \
             protocol: TCP\n      port: {port}\n    targets:\n      - {{ id: {SERVER_ADDR}, port: {port} }}\n"
        );
    }
    doc
}

/// The part of every benchmark document that is the same: the account, the client's and
/// the server's VPCs, a network (auth NONE) associating the client's VPC with
/// `services`, and the `services:` key the caller's services follow.
pub fn preamble(net: &BenchNet, services: &[&str]) -> String {
    preamble_with_auth(net, services, "", "authType: NONE")
}

/// [`preamble`] with the account's `principals` (YAML lines indented by 4, ending with a
/// newline; may be empty) and the network's auth lines (`authType: ...` and maybe
/// `authPolicy: ...`, each indented by 4 after the first).
pub fn preamble_with_auth(
    net: &BenchNet,
    services: &[&str],
    principals: &str,
    network_auth: &str,
) -> String {
    format!(
        r#"accounts:
  - id: "111111111111"
{principals}vpcs:
  - name: vpc-client
    account: "111111111111"
    cidr: {CLIENT_CIDR}
    attachments:
      - netns: {client}
  - name: vpc-server
    account: "111111111111"
    cidr: {SERVER_CIDR}
    attachments:
      - netns: {server}
serviceNetworks:
  - name: bench-net
    account: "111111111111"
    {network_auth}
    vpcAssociations:
      - vpc: vpc-client
    serviceAssociations: [{services}]
services:
"#,
        client = net.client.name(),
        server = net.server.name(),
        services = services.join(", "),
    )
}

impl Lattice {
    /// Writes the config, starts `lattice-agent run`, waits for `lattice-agent ready`,
    /// reads the VIP from `show --json` and waits until a connection round through
    /// VIP:port works.
    pub fn start(
        bin: &Path,
        net: &BenchNet,
        bpffs_root: &Path,
        work: &Path,
    ) -> anyhow::Result<Lattice> {
        let (agent, shown) = launch(bin, bpffs_root, work, "lattice-bench.yaml", &config(net))?;
        let mut lattice = Lattice {
            agent,
            vip: vip_of(&shown, "bench")?,
            connect_vip: vip_of(&shown, "bench-connect")?,
            bpffs_root: bpffs_root.to_owned(),
        };
        for probe in [
            SocketAddrV4::new(lattice.vip, SOCKPERF_PORT),
            SocketAddrV4::new(lattice.connect_vip, CONNECT_PORT),
        ] {
            net::wait_tcp(&net.client, probe, PATH_TIMEOUT)
                .with_context(|| format!("the agent is ready but its data path is not: {probe}"))?;
        }
        lattice.agent.check_running()?;
        Ok(lattice)
    }

    /// The pinned conntrack map as bpftool shows it.
    pub fn conntrack(&self) -> anyhow::Result<Conntrack> {
        let pin = self.bpffs_root.join(lattice_common::conntrack::CT_MAP);
        let json = shell::output(
            Command::new("bpftool")
                .args(["-j", "map", "show", "pinned"])
                .arg(&pin),
        )?;
        let map: serde_json::Value = serde_json::from_str(&json)?;
        let max_entries = map["max_entries"]
            .as_u64()
            .context("bpftool shows no max_entries")?;
        Ok(Conntrack {
            map: lattice_common::conntrack::CT_MAP.to_owned(),
            map_type: map["type"].as_str().unwrap_or("?").to_owned(),
            max_entries,
            // One flow takes two entries, one per direction (lattice-common's contract).
            flows: max_entries / 2,
            kernel_bytes: map["bytes_memlock"].as_u64(),
        })
    }
}

/// Writes `config` as `file_name` under `work`, validates it, starts `lattice-agent run`
/// on it, waits for `lattice-agent ready` and returns the agent with `show --json`.
pub fn launch(
    bin: &Path,
    bpffs_root: &Path,
    work: &Path,
    file_name: &str,
    config: &str,
) -> anyhow::Result<(Proc, serde_json::Value)> {
    launch_with(bin, bpffs_root, work, file_name, config, &[])
}

/// [`launch`] with more `run` arguments.
pub fn launch_with(
    bin: &Path,
    bpffs_root: &Path,
    work: &Path,
    file_name: &str,
    config: &str,
    extra_args: &[&str],
) -> anyhow::Result<(Proc, serde_json::Value)> {
    let args = AgentArgs {
        run: extra_args,
        ..AgentArgs::default()
    };
    let started = start_agent(bin, bpffs_root, work, file_name, config, args)?;
    Ok((started.agent, started.shown))
}

/// The arguments a benchmark adds to the agent's command lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct AgentArgs<'a> {
    /// For `run` only.
    pub run: &'a [&'a str],
    /// The settings `run` and `show` must share to resolve the document alike
    /// (`--vip-pool`, `--region`).
    pub settings: &'a [&'a str],
    /// The cgroup `run` starts in (`None`: the benchmark's own). Socket acceleration
    /// attaches sock_ops to the agent's own cgroup, and never to the root cgroup.
    pub cgroup: Option<&'a Cgroup>,
}

/// An agent that logged `lattice-agent ready`.
pub struct Started {
    pub agent: Proc,
    /// `show --json` of its document.
    pub shown: serde_json::Value,
    /// From starting the process to finding `lattice-agent ready` in its log (polled
    /// every [`READY_POLL`]).
    pub ready_after: Duration,
}

/// [`launch`] with `args`, also telling how long the agent took to be ready.
pub fn start_agent(
    bin: &Path,
    bpffs_root: &Path,
    work: &Path,
    file_name: &str,
    config: &str,
    args: AgentArgs<'_>,
) -> anyhow::Result<Started> {
    let config_path = work.join(file_name);
    fs::write(&config_path, config)?;
    let state_dir = work.join("agent-state");
    fs::create_dir_all(&state_dir)?;
    shell::output(Command::new(bin).arg("validate").arg(&config_path))
        .context("lattice-agent validate refused the benchmark's config")?;

    let mut cmd = match args.cgroup {
        Some(cgroup) => cgroup.command(bin),
        None => Command::new(bin),
    };
    cmd.arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--bpffs-root")
        .arg(bpffs_root)
        .arg("--api-socket")
        .arg(api_socket(work))
        .args(args.run)
        .args(args.settings);
    let spawned = Instant::now();
    let mut agent = Proc::spawn("lattice-agent", cmd, &work.join("agent.log"))?
        .with_grace(Duration::from_secs(10));
    wait_ready(&mut agent)?;
    let ready_after = spawned.elapsed();

    let json = shell::output(
        Command::new(bin)
            .args(["show", "--json", "--state-dir"])
            .arg(&state_dir)
            .args(args.settings)
            .arg(&config_path),
    )?;
    let shown = serde_json::from_str(&json).context("parsing lattice-agent show --json")?;
    Ok(Started {
        agent,
        shown,
        ready_after,
    })
}

/// The control API socket of the agents [`launch`] starts with `work`: the
/// benchmark's own, never the host's default.
pub fn api_socket(work: &Path) -> PathBuf {
    work.join("api.sock")
}

/// The VIP of `service` in `show --json`.
pub fn vip_of(shown: &serde_json::Value, service: &str) -> anyhow::Result<Ipv4Addr> {
    shown["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == service))
        .and_then(|s| s["vip"].as_str())
        .and_then(|v| v.parse::<Ipv4Addr>().ok())
        .with_context(|| {
            format!("show --json has no .services[] | select(.name==\"{service}\") | .vip")
        })
}

/// The VIP of `service` in `show --json`, once its listeners on `ports` accept
/// connections from the client namespace and the agent still runs.
pub fn wait_service(
    net: &BenchNet,
    agent: &mut Proc,
    shown: &serde_json::Value,
    service: &str,
    ports: &[u16],
) -> anyhow::Result<Ipv4Addr> {
    let vip = vip_of(shown, service)?;
    for &port in ports {
        let probe = SocketAddrV4::new(vip, port);
        net::wait_tcp(&net.client, probe, PATH_TIMEOUT)
            .with_context(|| format!("the agent is ready but its listener is not: {probe}"))?;
    }
    agent.check_running()?;
    Ok(vip)
}

fn wait_ready(agent: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let log = fs::read_to_string(agent.log()).unwrap_or_default();
        if log.contains("lattice-agent ready") {
            return Ok(());
        }
        agent.check_running()?;
        if Instant::now() >= deadline {
            bail!(
                "lattice-agent did not log `lattice-agent ready` within {READY_TIMEOUT:?}; \
                 its log ends with:\n{}",
                log_tail(agent.log(), 8)
            );
        }
        std::thread::sleep(READY_POLL);
    }
}

/// The kernel's flow table.
#[derive(Clone, Debug, Serialize)]
pub struct Conntrack {
    pub map: String,
    pub map_type: String,
    pub max_entries: u64,
    pub flows: u64,
    /// Kernel memory of the map (bpftool's bytes_memlock): not the agent's.
    pub kernel_bytes: Option<u64>,
}
