//! `cargo xtask bench auth`: what lattice's auth costs, measured two ways in one run.
//!
//! 1. **Policy decision time**: lattice-policy's criterion bench (`cargo bench -p
//!    lattice-policy --bench decision`): one evaluation of a 20-statement policy with
//!    conditions whose deciding statement is the last one (`decision_20_statements`), and
//!    the same with the request's context built per request, as the agent does
//!    (`decision_20_statements_with_context`). The time shown is criterion's median time
//!    per evaluation (`median.point_estimate` of
//!    `target/criterion/<bench id>/new/estimates.json`) with its 95% confidence interval.
//! 2. **Requests/s with SigV4 verification on, as a ratio to auth off**: the release
//!    agent on the namespaces of `bench l4` (see [`super::net`]) serving service
//!    `bench-auth`, whose listeners and backend are those of `bench l7` (HTTP on 80 and
//!    HTTPS on 443, forwarding over HTTP/1.1 keep-alive to nginx in the server namespace),
//!    in three variants that differ only in auth and in what the client sends:
//!
//! | variant | network and service | requests |
//! | --- | --- | --- |
//! | auth-off | `authType: NONE` | `GET /` |
//! | auth-off-signed | `authType: NONE` | the signed `GET /` of auth-on: the signature travels to the target, and the agent does not read it |
//! | auth-on | `authType: AWS_IAM`, the policies of [`network_policy`] and [`service_policy`] (a few statements, each with conditions) | `GET /` signed with SigV4 by botocore as role `bench` (access key `LKIABENCH00000000001`) |
//!
//! The target compares auth-on with auth-off-signed: the same requests, with
//! verification and the policies on and off, so the ratio is what auth costs. A signed
//! request is longer (its signature headers go to the agent and on to the target): that
//! is the client's doing, and auth-off-signed against auth-off shows what it costs; the
//! ratio of auth-on to plain auth-off is printed beside the target.
//!
//! A VPC can be associated with one service network only, so the variants are
//! configurations of the same agent, started in turn with the same state directory (same
//! VIP, listener and backend). [`ROUNDS`] rounds interleave them, each round starting
//! with the variant the previous one ended with; the table shows medians. Before a
//! variant is measured, requests check it: with auth NONE an unsigned request (and for
//! auth-off-signed the signed one) must answer 2xx; auth-on must refuse an unsigned
//! request with 403 and answer 2xx to the signed one. A signature stays valid
//! 5 minutes and lattice does not refuse replays within that time, so each round signs
//! once (botocore signs the `Host` wrk sends: the VIP) and wrk sends the same headers
//! with every request.
//!
//! The load is `bench l7`'s `http1`: wrk, HTTP/1.1 keep-alive, 16 connections, 1 thread,
//! for [`RATIO_LOAD_SECONDS`] (requests/s, p50/p99, CPU per request: the machine's and
//! the agent's), then for 3 s one
//! connection with one request at a time (the latency a request pays), unpinned and with
//! wrk, the agent and the backend on one vCPU. Responses other
//! than 2xx/3xx count as errors, and a load with more than 1% errors is a failed
//! measurement, never a speed.
//!
//! Targets: decision p50 under 2 µs; auth-on requests/s at least 0.85x auth-off-signed's
//! (the ratio of the medians). A benchmark, not a test: it never fails because a number is
//! low. It prints absolute values, ratios and a line per target (met / NOT MET / not
//! measured), writes the same as JSON to `target/bench/auth-<UTC timestamp>.json`, and
//! fails only when it cannot measure: the decision bench, an auth-off variant or the
//! signer. The auth-on variant's own failures (a 403 to a signed request, say) are
//! results: its target then reads "not measured" with the reason above it.
//!
//! The whole run takes about seven minutes, plus the release builds.

use std::{
    fmt::{self, Write as _},
    fs,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{anyhow, bail, Context as _};
use lattice_tests::{
    client::{http_request, HttpRequest},
    sigv4::{self, Signing},
    Netns, Topology,
};
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    begin_round, fail_unless_measured, idle_check,
    l7::{self, Certs, Dest, Proto, Ratio, Variant, BODY, LOAD_CONNECTIONS, LOAD_SECONDS},
    lattice,
    load::ClientSide,
    net::BenchNet,
    procs::{self, log_tail, run_bounded},
    publish, report, round_order, target_dir, WorkDir,
};
use crate::step;

/// Rounds of the three variants (their ratio is the target: more rounds than `bench
/// l7`'s three, for a steadier median; rounds of the same variant differ by 5-10% on a
/// 2-core VM).
const ROUNDS: usize = 7;
/// How long each round's load under 16 connections runs: longer than `bench l7`'s 3 s,
/// since the target is a ratio of two variants and a few seconds of this VM's
/// throughput swing by 10% and more.
pub(super) const RATIO_LOAD_SECONDS: u32 = 8;
/// The service both variants serve.
const SERVICE: &str = "bench-auth";
/// The access key of role `bench`, the signed requests' principal.
const ACCESS_KEY_ID: &str = "LKIABENCH00000000001";
const PRINCIPAL: &str = "arn:lattice:iam::111111111111:role/bench";
/// A second role, named by the service's policy (as real policies name several).
const OPS: &str = "arn:lattice:iam::111111111111:role/ops";
/// lattice-policy's criterion bench ids: the first is the target's.
const DECISION_BENCHES: [&str; 2] = [
    "decision_20_statements",
    "decision_20_statements_with_context",
];
/// Criterion takes about 20 s for the two (3 s warm-up and 5 s of samples each).
const DECISION_TIMEOUT: Duration = Duration::from_secs(300);
/// The targets.
const DECISION_LIMIT_US: f64 = 2.0;
const RATIO_LIMIT: f64 = 0.85;
/// The check requests before each measurement.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    Off,
    /// Auth NONE, and the requests of `On`.
    OffSigned,
    On,
}

impl Auth {
    fn name(self) -> &'static str {
        match self {
            Auth::Off => "auth-off",
            Auth::OffSigned => "auth-off-signed",
            Auth::On => "auth-on",
        }
    }

    /// Whether the variant's requests are signed.
    fn signed(self) -> bool {
        self != Auth::Off
    }
}

/// The network's policy in the auth-on variant: callers from the account's VPCs only,
/// authenticated ones only.
fn network_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlyFromOurVpcs",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "vpc-lattice-svcs:Invoke",
                "Resource": "*",
                "Condition": {
                    "StringNotEquals": {"vpc-lattice-svcs:SourceVpcOwnerAccount": "111111111111"}
                }
            },
            {
                "Sid": "AuthenticatedCallers",
                "Effect": "Allow",
                "Principal": {"AWS": ["111111111111"]},
                "Action": "vpc-lattice-svcs:Invoke",
                "Resource": "*",
                "Condition": {
                    "StringNotEqualsIgnoreCase": {"aws:PrincipalType": "Anonymous"}
                }
            }
        ]
    })
}

/// The service's policy in the auth-on variant: blocked source ranges, writes for `ops`
/// only, reads for `bench`. The benchmark's `GET /` is decided by the last statement.
fn service_policy() -> Value {
    let writes = json!(["POST", "PUT", "PATCH", "DELETE"]);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BlockedRanges",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "vpc-lattice-svcs:*",
                "Resource": "*",
                "Condition": {
                    "IpAddress": {"aws:SourceIp": ["198.51.100.0/24", "203.0.113.0/24"]}
                }
            },
            {
                "Sid": "NoWritesFromBench",
                "Effect": "Deny",
                "Principal": {"AWS": [PRINCIPAL]},
                "Action": "vpc-lattice-svcs:Invoke",
                "Resource": "*",
                "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": writes}}
            },
            {
                "Sid": "OpsWrites",
                "Effect": "Allow",
                "Principal": {"AWS": [OPS]},
                "Action": "vpc-lattice-svcs:Invoke",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"vpc-lattice-svcs:RequestMethod": writes},
                    "Bool": {"aws:SecureTransport": "true"}
                }
            },
            {
                "Sid": "BenchReads",
                "Effect": "Allow",
                "Principal": {"AWS": [PRINCIPAL]},
                "Action": "vpc-lattice-svcs:Invoke",
                "Resource": "arn:lattice:vpc-lattice:*:111111111111:service/*",
                "Condition": {
                    "StringEquals": {
                        "vpc-lattice-svcs:RequestMethod": ["GET", "HEAD"],
                        "vpc-lattice-svcs:SourceVpcOwnerAccount": "111111111111"
                    },
                    "StringLike": {"vpc-lattice-svcs:RequestPath": "/*"}
                }
            }
        ]
    })
}

/// criterion's estimate of one decision bench.
#[derive(Debug, Serialize)]
pub struct DecisionTime {
    /// criterion's bench id.
    pub bench: &'static str,
    /// Median time per evaluation, nanoseconds.
    pub median_ns: f64,
    /// Its 95% confidence interval.
    pub median_ci95_ns: [f64; 2],
    pub mean_ns: f64,
    pub estimates: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Decision {
    pub command: String,
    pub benches: Vec<DecisionTime>,
    /// Why it was not measured.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub rounds: usize,
    pub load_tool: &'static str,
    pub load_seconds: u32,
    pub load_connections: u32,
    pub load_threads: u32,
    pub backend: String,
    pub access_key_id: &'static str,
    pub principal: &'static str,
    pub signing: &'static str,
    /// What the signature's headers (all the signed request has but `Host`) add to a
    /// request, in bytes as sent.
    pub signature_header_bytes: Option<usize>,
    pub network_policy: Value,
    pub service_policy: Value,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub timestamp: String,
    pub machine: report::Machine,
    pub settings: Settings,
    pub decision: Decision,
    pub variants: Vec<Variant>,
    pub ratios: Vec<Ratio>,
    pub targets: Vec<report::TargetResult>,
    pub duration_s: f64,
}

/// The signer failed: the benchmark cannot measure auth-on at all.
#[derive(Debug)]
struct SignerFailed(String);

impl fmt::Display for SignerFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the SigV4 signer (botocore, from `cargo xtask setup`) failed: {}",
            self.0
        )
    }
}

impl std::error::Error for SignerFailed {}

/// What every variant's rounds share.
struct Site<'a> {
    bin: &'a Path,
    net: &'a BenchNet,
    bpffs_root: &'a Path,
    work: &'a Path,
    certs: &'a Certs,
    secret: &'a Path,
    /// The backend's processes (pinned with the agent for the pinned load).
    backend: &'a [u32],
}

pub fn auth(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    step("bench auth: building the release agent (cargo build --release -p lattice-agent)");
    let agent_bin = lattice::build(root).map_err(|e| format!("{e:#}"));
    if let Err(e) = &agent_bin {
        println!("    lattice: not available: {e}");
    }
    step("bench auth: building lattice-policy's criterion bench (cargo bench --no-run)");
    let decision_exe = decision_bench(root);

    step("bench auth: namespaces (client, server), certificate, backend, access key");
    let mut topo = Topology::new()?;
    let net = BenchNet::build(&mut topo)?;
    let bpffs_root = topo.bpffs_root("bench")?;
    let work = WorkDir::new(topo.tag().as_str())?;
    let certs = Certs::make(&work.path)?;
    let mut backend =
        l7::backend(&net, None, &work.path, &certs).context("starting the backend")?;
    let secret = write_secret(&work.path)?;
    println!(
        "    client {}, server {} (backend nginx at {}:{}), role bench with access key {ACCESS_KEY_ID}",
        net.client.name(),
        net.server.name(),
        super::net::SERVER_ADDR,
        l7::BACKEND_H1,
    );

    let mut background = Vec::new();
    step("bench auth: policy decision time (lattice-policy's criterion bench, about 20 s)");
    background.push(idle_check()?);
    let decision = measure_decisions(decision_exe, root, &work.path);
    for d in &decision.benches {
        println!(
            "    {:38} median {:.3} us (95% CI {:.3}-{:.3})",
            d.bench,
            d.median_ns / 1e3,
            d.median_ci95_ns[0] / 1e3,
            d.median_ci95_ns[1] / 1e3
        );
    }
    if let Some(e) = &decision.error {
        println!("    decision time: not measured: {e}");
    }

    let mut variants = vec![
        Variant::new(Auth::Off.name(), "baseline"),
        Variant::new(Auth::OffSigned.name(), "baseline"),
        Variant::new(Auth::On.name(), "lattice"),
    ];
    for v in &mut variants {
        v.not_available = agent_bin.as_ref().err().cloned();
    }
    let mut signer_failed = None;
    let mut signature_bytes = None;
    for round in 1..=ROUNDS {
        let order = round_order(round, [Auth::Off, Auth::OffSigned, Auth::On]);
        begin_round(
            "bench auth: round",
            round,
            ROUNDS,
            &order.map(Auth::name),
            &mut background,
            &mut backend,
        )?;
        let Ok(bin) = &agent_bin else { continue };
        let backend_pids = procs::tree(backend.pid());
        let site = Site {
            bin,
            net: &net,
            bpffs_root: &bpffs_root,
            work: &work.path,
            certs: &certs,
            secret: &secret,
            backend: &backend_pids,
        };
        for auth in order {
            let v = l7::variant_mut(&mut variants, auth.name());
            if v.not_available.is_some() {
                continue;
            }
            let measured = measure(&site, v, round, auth);
            if let Ok(Some(bytes)) = measured {
                signature_bytes = Some(bytes);
            }
            if let Err(e) = measured {
                println!("    {:8} {e:#}", auth.name());
                if e.downcast_ref::<SignerFailed>().is_some() {
                    signer_failed = Some(format!("{e:#}"));
                }
                // A variant that fails before its first measurement is not measured
                // again; a later failure is that round's.
                if v.rounds.is_empty() {
                    v.not_available = Some(format!("{e:#}"));
                } else {
                    v.errors.push(format!("round {round}: {e:#}"));
                }
            }
        }
    }
    println!("    backend: {}", backend.stop());
    for v in &mut variants {
        v.summarise();
    }

    let (file_stamp, stamp) = report::timestamps();
    let references = [Auth::OffSigned.name(), Auth::Off.name()];
    let report = Report {
        benchmark: "auth",
        timestamp: stamp,
        machine: report::Machine::here(background),
        settings: Settings {
            rounds: ROUNDS,
            load_tool: "wrk (HTTP/1.1 keep-alive)",
            load_seconds: RATIO_LOAD_SECONDS,
            load_connections: LOAD_CONNECTIONS,
            load_threads: 1,
            backend: format!(
                "nginx, 1 worker, GET / -> 200 with a {}-byte body, reached over HTTP/1.1 keep-alive",
                BODY.len()
            ),
            access_key_id: ACCESS_KEY_ID,
            principal: PRINCIPAL,
            signing: "botocore SigV4Auth (service vpc-lattice-svcs, region local), \
                      once per variant and round; wrk sends the same headers with every request",
            signature_header_bytes: signature_bytes,
            network_policy: network_policy(),
            service_policy: service_policy(),
        },
        ratios: l7::ratios(&variants, &[Proto::Http1], &references),
        targets: targets(&decision, &variants),
        decision,
        variants,
        duration_s: started.elapsed().as_secs_f64(),
    };
    publish(root, "auth", &file_stamp, &report.render(), |path| {
        report::write_json(path, &report)
    })?;

    drop(work);
    drop(topo);
    let mut failed = Vec::new();
    if report.decision.error.is_some() {
        failed.push("the policy decision time".to_owned());
    }
    let baseline = report.variants.iter().filter(|v| v.role == "baseline");
    failed.extend(
        baseline
            .filter(|v| v.not_available.is_some() || !v.errors.is_empty() || v.rounds.is_empty())
            .map(|v| v.name.to_owned()),
    );
    if signer_failed.is_some() {
        failed.push("the SigV4 signer".to_owned());
    }
    fail_unless_measured(failed.into_iter())
}

/// One round of one variant: the agent on the variant's config, the check requests, the
/// loads, the agent stopped; for signed variants, the bytes of the signature's headers.
fn measure(
    site: &Site<'_>,
    v: &mut Variant,
    round: usize,
    auth: Auth,
) -> anyhow::Result<Option<usize>> {
    let name = auth.name();
    let (mut agent, shown) = lattice::launch(
        site.bin,
        site.bpffs_root,
        site.work,
        &format!("lattice-bench-{name}.yaml"),
        &config(site.net, site.certs, site.secret, auth),
    )?;
    let vip = lattice::wait_service(site.net, &mut agent, &shown, SERVICE, &[80])?;
    let headers = if auth.signed() {
        sign(vip, site.secret)?
    } else {
        Vec::new()
    };
    check_answers(&site.net.client, vip, auth, &headers)?;
    println!(
        "    {name:8} agent ready; {SERVICE} at {vip}; {}",
        match auth {
            Auth::Off => "GET / answers 2xx",
            Auth::OffSigned => "unsigned and signed GET / answer 2xx",
            Auth::On => "unsigned GET / refused (403), signed GET / answers 2xx",
        }
    );
    let headers: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    // Each goes as `Name: value\r\n`; wrk sends a `Host` either way.
    let signature_bytes = headers
        .iter()
        .filter(|h| !h.to_ascii_lowercase().starts_with("host:"))
        .map(|h| h.len() + 2)
        .sum::<usize>();
    v.destination.get_or_insert_with(|| match auth {
        Auth::Off => format!("{vip}:80 (HTTP/1.1)"),
        Auth::OffSigned | Auth::On => format!("{vip}:80 (HTTP/1.1, SigV4-signed as role/bench)"),
    });
    let dest = Dest {
        addr: vip,
        h1: 80,
        h2c: 80,
        tls: 443,
        headers: &headers,
    };
    l7::run_round(
        ClientSide::tool(&site.net.client, None),
        site.work,
        v,
        round,
        dest,
        Some(&agent),
        site.backend,
        &[Proto::Http1],
        RATIO_LOAD_SECONDS,
    );
    let running = agent.check_running();
    println!("    {name:8} agent {}", agent.stop());
    running.map(|()| auth.signed().then_some(signature_bytes))
}

/// The variant's document: the benchmark's account with roles `bench` (the access key)
/// and `ops`, the network and service `bench-auth` with auth NONE or AWS_IAM.
fn config(net: &BenchNet, certs: &Certs, secret: &Path, auth: Auth) -> String {
    let principals = format!(
        "    principals:\n      - name: bench\n        type: role\n        accessKeys:\n          \
         - {{ accessKeyId: {ACCESS_KEY_ID}, secretFile: {} }}\n      - name: ops\n        type: role\n",
        secret.display()
    );
    // JSON is YAML: the policies go in as flow mappings.
    let aws_iam = |policy: Value| format!("authType: AWS_IAM\n    authPolicy: {policy}");
    let (network, service) = match auth {
        Auth::Off | Auth::OffSigned => ("authType: NONE".to_owned(), "authType: NONE".to_owned()),
        Auth::On => (aws_iam(network_policy()), aws_iam(service_policy())),
    };
    lattice::preamble_with_auth(net, &[SERVICE], &principals, &network)
        + &l7::http_service(SERVICE, &service, certs)
}

/// Role `bench`'s secret access key, readable by its owner only.
fn write_secret(work: &Path) -> anyhow::Result<PathBuf> {
    let path = work.join("access-key-bench.secret");
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(b"lattice/bench/0123456789abcdefghijklmnopqr\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The headers of `GET http://<vip>/` signed by botocore: `Host` (the VIP, as botocore
/// signed it; wrk would otherwise send `<vip>:80`), `X-Amz-Date`, `Authorization`.
fn sign(vip: Ipv4Addr, secret: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let url = format!("http://{vip}/");
    let signing = Signing::new(ACCESS_KEY_ID, secret);
    // lattice-tests' signer panics, as tests want; here it is a failure to measure.
    let signed =
        std::panic::catch_unwind(|| sigv4::sign("GET", &url, &signing)).map_err(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "it panicked".to_owned());
            SignerFailed(text)
        })?;
    let mut headers = Vec::new();
    if !signed.keys().any(|k| k.eq_ignore_ascii_case("host")) {
        headers.push(("Host".to_owned(), vip.to_string()));
    }
    headers.extend(signed);
    Ok(headers)
}

/// Fails unless the variant answers as it must: auth-off 2xx to `GET /`; auth-on 403 to
/// an unsigned `GET /` and 2xx to the signed one.
fn check_answers(
    client: &Netns,
    vip: Ipv4Addr,
    auth: Auth,
    signed: &[(String, String)],
) -> anyhow::Result<()> {
    let get = |headers: &[(String, String)]| -> anyhow::Result<(u16, String)> {
        let mut request = HttpRequest::get("/").header("host", &vip.to_string());
        for (name, value) in headers {
            if !name.eq_ignore_ascii_case("host") {
                request = request.header(name, value);
            }
        }
        let response = http_request(client, SocketAddr::from((vip, 80)), &request, CHECK_TIMEOUT)
            .map_err(|e| {
            anyhow!(
                "GET / from the client namespace: {}",
                lattice_tests::error_chain(&e)
            )
        })?;
        let mut body = response.text();
        body.truncate(300);
        Ok((response.status, body.trim().to_owned()))
    };
    let ok = |status: u16| (200..300).contains(&status);
    let (status, body) = get(&[])?;
    match auth {
        Auth::Off | Auth::OffSigned if !ok(status) => {
            bail!("GET / (auth NONE) got {status}, not 2xx: {body}")
        }
        Auth::On if status != 403 => bail!(
            "an unsigned GET / got {status}, not 403: auth is not enforced, so requests/s \
             would not measure it: {body}"
        ),
        _ => {}
    }
    if auth.signed() {
        let (status, body) = get(signed)?;
        if !ok(status) {
            bail!("GET / signed by botocore as role/bench got {status}, not 2xx: {body}");
        }
    }
    Ok(())
}

/// Builds lattice-policy's bench `decision` and returns its executable.
fn decision_bench(root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "bench",
        "-p",
        "lattice-policy",
        "--bench",
        "decision",
        "--no-run",
    ])
    .arg("--message-format=json-render-diagnostics")
    .current_dir(root)
    .stderr(Stdio::inherit());
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "decision")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo bench --no-run named no executable for lattice-policy's bench `decision`")
}

/// Runs the criterion bench (bounded) and reads its estimates.
fn measure_decisions(exe: anyhow::Result<PathBuf>, root: &Path, work: &Path) -> Decision {
    let home = target_dir(root).join("criterion");
    let command = match &exe {
        Ok(exe) => format!(
            "CRITERION_HOME={} {} --bench --noplot",
            home.display(),
            exe.display()
        ),
        Err(_) => "cargo bench -p lattice-policy --bench decision".to_owned(),
    };
    let measured = exe.and_then(|exe| {
        let started = SystemTime::now();
        let mut cmd = Command::new(&exe);
        cmd.args(["--bench", "--noplot"])
            .env("CRITERION_HOME", &home)
            .current_dir(root.join("lattice-policy"));
        let ran = run_bounded(cmd, DECISION_TIMEOUT, work, "criterion-decision")?;
        if !ran.status.success() {
            bail!(
                "{} failed ({}); its output ends with:\n{}",
                exe.display(),
                ran.status,
                log_tail(&work.join("criterion-decision.err"), 8)
            );
        }
        DECISION_BENCHES
            .iter()
            .map(|id| read_estimates(&home, id, started))
            .collect::<anyhow::Result<Vec<_>>>()
    });
    match measured {
        Ok(benches) => Decision {
            command,
            benches,
            error: None,
        },
        Err(e) => Decision {
            command,
            benches: Vec::new(),
            error: Some(format!("{e:#}")),
        },
    }
}

/// criterion's `<home>/<id>/new/estimates.json`, written after `since`.
fn read_estimates(
    home: &Path,
    id: &'static str,
    since: SystemTime,
) -> anyhow::Result<DecisionTime> {
    let path = home.join(id).join("new/estimates.json");
    let modified = fs::metadata(&path)
        .and_then(|m| m.modified())
        .with_context(|| format!("criterion wrote no {}", path.display()))?;
    if modified < since {
        bail!(
            "{} is older than this run: criterion did not run `{id}`",
            path.display()
        );
    }
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let estimates: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let ns = |pointer: &str| {
        estimates
            .pointer(pointer)
            .and_then(Value::as_f64)
            .with_context(|| format!("{} has no {pointer}", path.display()))
    };
    Ok(DecisionTime {
        bench: id,
        median_ns: ns("/median/point_estimate")?,
        median_ci95_ns: [
            ns("/median/confidence_interval/lower_bound")?,
            ns("/median/confidence_interval/upper_bound")?,
        ],
        mean_ns: ns("/mean/point_estimate")?,
        estimates: path,
    })
}

/// The two targets.
fn targets(decision: &Decision, variants: &[Variant]) -> Vec<report::TargetResult> {
    let time = |id: &str| decision.benches.iter().find(|d| d.bench == id);
    let us = |d: &DecisionTime| d.median_ns / 1e3;
    let alone = time(DECISION_BENCHES[0]);
    let decision_target = report::TargetResult {
        target: "policy decision p50 < 2 us (20 statements with conditions, the last deciding; criterion's median)",
        value: alone.map(us),
        limit: DECISION_LIMIT_US,
        met: alone.map(|d| us(d) < DECISION_LIMIT_US),
        detail: match alone {
            Some(d) => format!(
                "{:.3} us (95% CI {:.3}-{:.3}){}",
                us(d),
                d.median_ci95_ns[0] / 1e3,
                d.median_ci95_ns[1] / 1e3,
                time(DECISION_BENCHES[1])
                    .map(|c| format!(
                        "; {:.3} us with the request context built per request",
                        us(c)
                    ))
                    .unwrap_or_default()
            ),
            None => format!(
                "not measured: {}",
                decision.error.as_deref().unwrap_or("see above")
            ),
        },
    };

    let key = format!("{}.requests_per_s", Proto::Http1.key());
    let (on, off, plain) = (Auth::On.name(), Auth::OffSigned.name(), Auth::Off.name());
    let value = l7::ratio(variants, &key, on, off);
    let spread = |name: &str| {
        let s = variants
            .iter()
            .find(|v| v.name == name)?
            .summary
            .get(&key)?;
        Some(format!(
            "{name} {:.0} ({:.0}-{:.0})",
            s.median, s.min, s.max
        ))
    };
    let why_not = || {
        let reasons: Vec<String> = variants
            .iter()
            .filter(|v| v.not_available.is_some() || !v.errors.is_empty())
            .map(|v| v.name.to_owned())
            .collect();
        format!(
            "not measured: see {} above",
            if reasons.is_empty() {
                "the rounds".to_owned()
            } else {
                reasons.join(" and ")
            }
        )
    };
    let ratio_target = report::TargetResult {
        target: "requests/s with SigV4 verification on >= 0.85x auth off \
                 (the same signed requests; HTTP/1.1, 16 connections)",
        value,
        limit: RATIO_LIMIT,
        met: value.map(|v| v >= RATIO_LIMIT),
        detail: match (value, spread(on), spread(off)) {
            (Some(v), Some(a), Some(b)) => {
                let unsigned = l7::ratio(variants, &key, on, plain)
                    .zip(spread(plain))
                    .map(|(r, p)| format!("; {r:.2}x against unsigned requests ({p})"))
                    .unwrap_or_default();
                format!("{v:.2}x: {a} vs {b} requests/s{unsigned}")
            }
            _ => why_not(),
        },
    };
    vec![decision_target, ratio_target]
}

impl Report {
    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "policy decision time: lattice-policy's criterion bench, median per evaluation \
             (95% confidence interval), mean"
        );
        for d in &self.decision.benches {
            let _ = writeln!(
                out,
                "  {:38} {:>8.3} us ({:.3}-{:.3}), mean {:.3} us",
                d.bench,
                d.median_ns / 1e3,
                d.median_ci95_ns[0] / 1e3,
                d.median_ci95_ns[1] / 1e3,
                d.mean_ns / 1e3
            );
        }
        if let Some(e) = &self.decision.error {
            let _ = writeln!(out, "  not measured: {e}");
        }
        let _ = writeln!(
            out,
            "\nHTTP through the agent: medians of {} rounds; wrk, {LOAD_CONNECTIONS} \
             connections, 1 thread, {RATIO_LOAD_SECONDS} s, then 1 connection ({LOAD_SECONDS} s); ratios are column / \
             reference; lower is better for latency and CPU",
            self.settings.rounds
        );
        let _ = writeln!(
            out,
            "auth-on: network and service AWS_IAM ({} and {} policy statements with \
             conditions), every request SigV4-signed by botocore ({} bytes of signature \
             headers); auth-off-signed: NONE, the same signed requests; auth-off: NONE, \
             unsigned requests; system CPU includes wrk and the backend",
            statements(&self.settings.network_policy),
            statements(&self.settings.service_policy),
            self.settings
                .signature_header_bytes
                .map_or("?".to_owned(), |b| b.to_string()),
        );
        l7::render_tables(
            &mut out,
            &self.variants,
            &[Proto::Http1],
            &[Auth::OffSigned.name(), Auth::Off.name()],
        );
        let added = |key: &str, from: Auth, to: Auth| {
            let value = |name: &str| self.variants.iter().find(|v| v.name == name)?.value(key);
            Some(value(to.name())? - value(from.name())?)
        };
        let http1 = Proto::Http1.key();
        let cpu = format!("{http1}.process_cpu_us_per_request");
        let p50 = format!("{http1}.single_p50_us");
        let pinned = format!("{http1}.pinned_p50_us");
        for (what, from, to) in [
            (
                "auth (auth-on - auth-off-signed)",
                Auth::OffSigned,
                Auth::On,
            ),
            (
                "the signature's headers (auth-off-signed - auth-off)",
                Auth::Off,
                Auth::OffSigned,
            ),
        ] {
            if let (Some(cpu), Some(p50)) = (added(&cpu, from, to), added(&p50, from, to)) {
                let pinned = added(&pinned, from, to)
                    .map(|p| format!(" ({p:+.1} us with everything on one vCPU)"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "what {what} adds per request, medians: {cpu:+.1} us of agent CPU, \
                     {p50:+.1} us to p50 on 1 connection{pinned}"
                );
            }
        }
        l7::render_problems(&mut out, &self.variants);
        report::render_targets(&mut out, &self.targets);
        out
    }
}

fn statements(policy: &Value) -> usize {
    policy["Statement"].as_array().map_or(0, Vec::len)
}
