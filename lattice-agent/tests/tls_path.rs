//! HTTPS and TLS passthrough listeners end to end, with real clients (curl) in a VPC
//! namespace: the agent terminates HTTPS with the service's certificate chosen by SNI
//! and serves what ALPN agreed; it routes TLS passthrough by SNI without decrypting, so
//! the client sees the target's own certificate; it reaches HTTPS target groups over
//! TLS without checking their certificate. Certificates are made at test time with the
//! `openssl` CLI.

mod common;

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig, ServerConnection, StreamOwned,
};

use common::{curl, eventually, Agent, AGENT};
use lattice_tests::{HttpServer, Netns, Pki, Topology};

const API_DOMAIN: &str = "api.example.test";
const SECURE_DOMAIN: &str = "secure.example.test";

struct Lab {
    topo: Topology,
    web: Netns,
    orders: Netns,
}

fn lab() -> Lab {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    for a in ["10.92.0.10", "10.92.0.40", "10.92.0.50"] {
        orders.add_addr("lo", &format!("{a}/32")).unwrap();
    }
    Lab { topo, web, orders }
}

fn config(lab: &Lab, certs: &Path) -> String {
    let preamble = common::shop_preamble(lab.web.name(), lab.orders.name(), &["api", "secure"]);
    format!(
        r#"
{preamble}services:
  - name: api
    account: "111111111111"
    authType: NONE
    customDomainName: {API_DOMAIN}
    certificate: {{ certFile: {certs}/api.pem, keyFile: {certs}/api.key }}
    listeners:
      - name: https
        protocol: HTTPS
        port: 443
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: blue }}] }} }}
        rules:
          - name: to-tls
            priority: 10
            match: {{ httpMatch: {{ pathMatch: {{ match: {{ prefix: /tls-target }} }} }} }}
            action: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: tls-blue, weight: 1 }}, {{ targetGroupIdentifier: tls-plain, weight: 0 }}] }} }}
  - name: secure
    account: "111111111111"
    authType: NONE
    customDomainName: {SECURE_DOMAIN}
    listeners:
      - name: tls
        protocol: TLS_PASSTHROUGH
        port: 443
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: secure-tcp }}] }} }}
targetGroups:
  - name: blue
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.10 }}]
  - name: tls-blue
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTPS, port: 9443, healthCheck: {{ protocol: HTTPS, path: /health, healthCheckIntervalSeconds: 5, healthyThresholdCount: 2, unhealthyThresholdCount: 2 }} }}
    targets: [{{ id: 10.92.0.50 }}]
  # An HTTPS check of a target that speaks plain HTTP: the TLS handshake fails.
  - name: tls-plain
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTPS, port: 8080, healthCheck: {{ protocol: HTTPS, path: /health, healthCheckIntervalSeconds: 5, healthyThresholdCount: 2, unhealthyThresholdCount: 2 }} }}
    targets: [{{ id: 10.92.0.10 }}]
  - name: secure-tcp
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 8443 }}
    targets: [{{ id: 10.92.0.40 }}]
"#,
        certs = certs.display(),
    )
}

/// The default DNS name of `service`, from `lattice-agent show` on the document (ids,
/// and so names, are derived from account and name: the agent will use the same).
fn dns_name(yaml: &str, dir: &Path, service: &str) -> String {
    let doc = dir.join("preview.yaml");
    std::fs::write(&doc, yaml).unwrap();
    let out = Command::new(AGENT)
        .args(["show", "--json", "--state-dir"])
        .arg(dir.join("preview-state"))
        .arg(&doc)
        .output()
        .expect("run show");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    shown["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .unwrap()["dnsName"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A test CA (`ca.pem`) and a certificate for `names` signed by it (`<stem>.pem`,
/// `<stem>.key`).
fn issue(dir: &Path, stem: &str, names: &[&str]) {
    let pki = Pki::new(dir);
    pki.ca("ca", "/CN=lattice test CA");
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
    pki.issue("ca", stem, &format!("/CN={stem}"), &sans);
}

/// `openssl s_server` in a namespace: a TLS target with its own certificate. Killed
/// (by its pid) on drop.
struct TlsTarget(Child);

impl TlsTarget {
    fn start(ns: &Netns, accept: &str, cert: &Path, key: &Path) -> TlsTarget {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "openssl",
                "s_server",
                "-quiet",
                "-www",
            ])
            .args(["-accept", accept, "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        TlsTarget(child)
    }
}

impl Drop for TlsTarget {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTPS target (rustls, blocking) in a namespace: answers every request with its
/// ALPN protocol and the request head it got. Stopped on drop.
struct HttpsTarget {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpsTarget {
    fn start(ns: &Netns, addr: SocketAddr, cert: &Path, key: &Path) -> HttpsTarget {
        let listener = ns.run(|| TcpListener::bind(addr)).unwrap().unwrap();
        listener.set_nonblocking(true).unwrap();
        let chain = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((sock, _)) => {
                            let _ = Self::answer(Arc::clone(&config), sock);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        HttpsTarget {
            stop,
            thread: Some(thread),
        }
    }

    fn answer(config: Arc<ServerConfig>, sock: TcpStream) -> io::Result<()> {
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(conn, sock);
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let alpn = tls
            .conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_else(|| "none".into());
        let body = format!(
            "tls-target alpn={alpn}\n{}",
            String::from_utf8_lossy(&head).replace("\r\n", "\n")
        );
        write!(
            tls,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
        tls.conn.send_close_notify();
        tls.flush()
    }
}

impl Drop for HttpsTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn https_terminates_by_sni_with_alpn_and_tls_passthrough_routes_by_sni() {
    let mut lab = lab();
    let certs_dir = tempfile::tempdir().unwrap();
    let certs: PathBuf = certs_dir.path().to_path_buf();
    let yaml = config(&lab, &certs);
    let api_dns = dns_name(&yaml, &certs, "api");
    issue(&certs, "api", &[&api_dns, API_DOMAIN]);
    // The target's certificate comes from a CA of its own, so a client that trusts
    // only it can only succeed if the bytes reached the target untouched.
    let target_dir = certs.join("target");
    std::fs::create_dir(&target_dir).unwrap();
    issue(&target_dir, "passthrough-target", &[SECURE_DOMAIN]);

    // Its certificate names nothing the agent could check: Lattice does not verify.
    let https_dir = certs.join("https-target");
    std::fs::create_dir(&https_dir).unwrap();
    issue(&https_dir, "https-target", &["unverified.invalid"]);
    let _https_target = HttpsTarget::start(
        &lab.orders,
        "10.92.0.50:9443".parse().unwrap(),
        &https_dir.join("https-target.pem"),
        &https_dir.join("https-target.key"),
    );
    let _blue = HttpServer::start(&lab.orders, "10.92.0.10:8080".parse().unwrap(), "blue").unwrap();
    let _target = TlsTarget::start(
        &lab.orders,
        "10.92.0.40:8443",
        &target_dir.join("passthrough-target.pem"),
        &target_dir.join("passthrough-target.key"),
    );
    let root = lab.topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let api_vip = agent.vip("api");
    let secure_vip = agent.vip("secure");
    // HTTPS health checks (TLS without verifying the target, as Lattice): the TLS
    // target passes its first check; the plain HTTP one fails its handshake.
    let status = |group: &str, id: &str| {
        agent
            .targets()
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["targetGroup"] == group && t["id"] == id)
            .map(|t| {
                (
                    t["status"].as_str().unwrap_or("").to_owned(),
                    t["reasonCode"].clone(),
                )
            })
    };
    assert!(
        common::eventually(Duration::from_secs(15), || {
            status("tls-blue", "10.92.0.50").is_some_and(|s| s.0 == "HEALTHY")
                && status("tls-plain", "10.92.0.10").is_some_and(|s| s.0 == "UNHEALTHY")
        }),
        "{:#}\n{}",
        agent.targets(),
        agent.log()
    );
    let ca = certs.join("ca.pem");
    let ca = ca.to_str().unwrap();

    // HTTPS by the default DNS name, over ALPN http/1.1 and h2.
    let resolve = format!("{api_dns}:443:{api_vip}");
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let out = curl(
            &lab.web,
            &[
                flag,
                "--cacert",
                ca,
                "--resolve",
                &resolve,
                "-w",
                "\nhttp_version=%{http_version}\n",
                &format!("https://{api_dns}/secure/{version}"),
            ],
        );
        let (body, err) = text(&out);
        assert!(out.status.success(), "curl {flag}: {err}\n{}", agent.log());
        assert!(
            body.starts_with(&format!("blue GET /secure/{version}")),
            "{body}"
        );
        assert!(
            body.lines().any(|l| l == format!("http_version={version}")),
            "ALPN {flag}: {body}"
        );
        assert!(
            body.lines().any(|l| l == "x-forwarded-for-proto: https"),
            "{body}"
        );
        assert!(
            body.lines().any(|l| l == "x-forwarded-for-port: 443"),
            "{body}"
        );
        assert!(
            body.lines().any(|l| l == format!("host: {api_dns}")),
            "the caller's authority: {body}"
        );
    }

    // The custom domain name gets the same certificate.
    let out = curl(
        &lab.web,
        &[
            "--cacert",
            ca,
            "--resolve",
            &format!("{API_DOMAIN}:443:{api_vip}"),
            &format!("https://{API_DOMAIN}/custom"),
        ],
    );
    let (body, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(body.starts_with("blue GET /custom"), "{body}");

    // A name the service does not have: the handshake is refused.
    let out = curl(
        &lab.web,
        &[
            "--cacert",
            ca,
            "--resolve",
            &format!("other.example.test:443:{api_vip}"),
            "https://other.example.test/",
        ],
    );
    let (_, err) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(35),
        "a TLS handshake failure: {err}"
    );

    // No SNI (the VIP by address): the service's certificate.
    let out = curl(
        &lab.web,
        &[
            "-k",
            "-w",
            "\n%{http_code}\n",
            &format!("https://{api_vip}/by-address"),
        ],
    );
    let (body, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(body.starts_with("blue GET /by-address"), "{body}");

    // An HTTPS target group: TLS to the target, ALPN http/1.1 (the group's HTTP1).
    let out = curl(
        &lab.web,
        &[
            "--http2",
            "--cacert",
            ca,
            "--resolve",
            &resolve,
            &format!("https://{api_dns}/tls-target/x"),
        ],
    );
    let (body, err) = text(&out);
    assert!(out.status.success(), "{err}\n{}", agent.log());
    assert!(
        body.starts_with("tls-target alpn=http/1.1\nGET /tls-target/x HTTP/1.1"),
        "{body}"
    );
    assert!(
        body.lines().any(|l| l == "x-forwarded-for-proto: https"),
        "{body}"
    );

    // TLS passthrough by SNI: the client verifies the target's certificate against the
    // target's own CA, so lattice did not terminate.
    let target_ca = target_dir.join("ca.pem");
    let target_ca = target_ca.to_str().unwrap();
    let secure_resolve = format!("{SECURE_DOMAIN}:443:{secure_vip}");
    let mut last = (String::new(), String::new());
    let through = eventually(Duration::from_secs(10), || {
        let out = curl(
            &lab.web,
            &[
                "-v",
                "--cacert",
                target_ca,
                "--resolve",
                &secure_resolve,
                &format!("https://{SECURE_DOMAIN}/"),
            ],
        );
        last = text(&out);
        out.status.success()
    });
    assert!(through, "passthrough: {}\n{}", last.1, agent.log());
    assert!(
        last.1.contains("subject: CN=passthrough-target"),
        "the target's certificate: {}",
        last.1
    );
    assert!(
        last.0.contains("s_server"),
        "the target answered: {}",
        last.0
    );

    // A passthrough SNI that is not the custom domain name: refused with an alert.
    let out = curl(
        &lab.web,
        &[
            "--cacert",
            target_ca,
            "--resolve",
            &format!("wrong.example.test:443:{secure_vip}"),
            "https://wrong.example.test/",
        ],
    );
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("unrecognized name"), "{err}");
    assert!(
        agent.log().contains("TLS passthrough connection refused"),
        "{}",
        agent.log()
    );
}
