//! Auth end to end: callers proven by SigV4 signatures (made by botocore, AWS's Python
//! signer) and by mTLS client certificates, anonymous callers, the network's and the
//! service's auth policies evaluated as Lattice does, the identity headers the target
//! receives, and the cross-account example of config-contract.yaml.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{eventually, Agent, AGENT};
use lattice_tests::{
    sigv4::{self, Signing},
    HttpServer, Netns, Pki, Topology,
};

const WEB_KEY: &str = "LKIAWEB0000000000001";
const BATCH_KEY: &str = "LKIABATCH00000000001";
const WEB_ARN: &str = "arn:lattice:iam::111111111111:role/web";
const BATCH_ARN: &str = "arn:lattice:iam::111111111111:role/batch";
const WEB_SAN: &str = "spiffe://lattice/account/111111111111/role/web";
const BATCH_SAN: &str = "spiffe://lattice/account/111111111111/role/batch";

/// One curl exchange: status, body, stderr.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
}

/// curl inside `ns`, with `name` resolved to `vip`; the last line of stdout is the
/// status code.
fn curl(ns: &Netns, name: &str, port: u16, vip: std::net::Ipv4Addr, args: &[&str]) -> Reply {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "curl",
            "-sS",
            "--max-time",
            "10",
        ])
        .arg("--resolve")
        .arg(format!("{name}:{port}:{vip}"))
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Reply {
        status: status.trim().parse().unwrap_or(0),
        body: format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// curl arguments for the headers botocore made.
fn header_args(headers: &BTreeMap<String, String>) -> Vec<String> {
    headers
        .iter()
        .flat_map(|(k, v)| ["-H".to_owned(), format!("{k}: {v}")])
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

struct Lab {
    topo: Topology,
    web: Netns,
    orders: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let mut topo = Topology::new().expect("topology (needs root)");
        let web = topo.add_netns("web").unwrap();
        let orders = topo.add_netns("orders").unwrap();
        web.add_addr("lo", "10.91.0.5/32").unwrap();
        orders.add_addr("lo", "10.92.0.10/32").unwrap();
        Lab {
            topo,
            web,
            orders,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn config(lab: &Lab) -> String {
    format!(
        r#"
accounts:
  - id: "111111111111"
    mtlsCaFile: {dir}/ca-111.pem
    principals:
      - name: web
        type: role
        tags: {{ team: storefront }}
        mtlsSubjects: [{WEB_SAN}]
        accessKeys: [{{ accessKeyId: {WEB_KEY}, secretFile: {dir}/web.key }}]
      - name: batch
        type: role
        mtlsSubjects: [{BATCH_SAN}]
        accessKeys: [{{ accessKeyId: {BATCH_KEY}, secretFile: {dir}/batch.key }}]
  - id: "222222222222"
    mtlsCaFile: {dir}/ca-222.pem
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{{ netns: {web} }}] }}
  - {{ name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{{ netns: {orders} }}] }}
serviceNetworks:
  - name: shop
    account: "111111111111"
    authType: AWS_IAM
    authPolicy:
      Version: "2012-10-17"
      Statement:
        - Sid: OwnVpcs
          Effect: Allow
          Principal: "*"
          Action: "vpc-lattice-svcs:Invoke"
          Resource: "*"
          Condition: {{ StringEquals: {{ "vpc-lattice-svcs:SourceVpcOwnerAccount": "111111111111" }} }}
    vpcAssociations: [{{ vpc: vpc-web }}]
    serviceAssociations: [secure, open]
services:
  - name: secure
    account: "111111111111"
    customDomainName: secure.shop.internal
    certificate: {{ certFile: {dir}/secure.pem, keyFile: {dir}/secure.key }}
    authType: AWS_IAM
    authPolicy:
      Version: "2012-10-17"
      Statement:
        - Sid: WebCalls
          Effect: Allow
          Principal: {{ AWS: ["{WEB_ARN}"] }}
          Action: "vpc-lattice-svcs:Invoke"
          Resource: "*"
        - Sid: NoAdmin
          Effect: Deny
          Principal: "*"
          Action: "vpc-lattice-svcs:Invoke"
          Resource: "arn:lattice:vpc-lattice:*:*:service/*/admin/*"
    listeners:
      - {{ name: http, protocol: HTTP, port: 80, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: app }}] }} }} }}
      - {{ name: https, protocol: HTTPS, port: 443, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: app }}] }} }} }}
  - name: open
    account: "111111111111"
    customDomainName: open.shop.internal
    authType: NONE
    listeners:
      - {{ name: http, protocol: HTTP, port: 80, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: open-app }}] }} }} }}
targetGroups:
  - name: open-app
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.10 }}]
  - name: app
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080, healthCheck: {{ enabled: false }} }}
    targets: [{{ id: 10.92.0.10 }}]
accessLogSubscriptions:
  - {{ resource: secure, destination: "file:{dir}/access.jsonl" }}
"#,
        dir = lab.dir.path().display(),
        web = lab.web.name(),
        orders = lab.orders.name(),
    )
}

fn signing<'a>(key_id: &'a str, secret_file: &'a Path) -> Signing<'a> {
    Signing::new(key_id, secret_file)
}

/// The line `name: value` of the target's description of a request, if any.
fn seen_header<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[test]
fn signed_certified_and_anonymous_callers_meet_the_policies() {
    let mut lab = Lab::new();
    let _app = HttpServer::start(&lab.orders, "10.92.0.10:8080".parse().unwrap(), "app").unwrap();
    std::fs::write(lab.path("web.key"), "web-secret-0123456789\n").unwrap();
    std::fs::write(lab.path("batch.key"), "batch-secret-0123456789\n").unwrap();
    std::fs::write(lab.path("wrong.key"), "not-the-web-secret\n").unwrap();
    let pki = Pki::new(lab.dir.path());
    pki.ca("ca-111", "/OU=accounts/CN=account 111111111111 CA");
    pki.ca("ca-222", "/CN=account 222222222222 CA");
    pki.issue(
        "ca-111",
        "secure",
        "/CN=secure",
        &["DNS:secure.shop.internal"],
    );
    pki.issue(
        "ca-111",
        "web-client",
        "/CN=web",
        &[&format!("URI:{WEB_SAN}")],
    );
    pki.issue(
        "ca-111",
        "batch-client",
        "/CN=batch",
        &[&format!("URI:{BATCH_SAN}")],
    );
    // Account 222's CA claiming account 111's principal: proves nothing.
    pki.issue(
        "ca-222",
        "forged-client",
        "/CN=web",
        &[&format!("URI:{WEB_SAN}")],
    );

    let root = lab.topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&config(&lab), &root);
    let secure = agent.vip("secure");
    let open = agent.vip("open");
    let web_key = lab.path("web.key");
    let signed_get = |url: &str, s: &Signing<'_>, extra: &[&str]| {
        let headers = sigv4::sign("GET", url, s);
        let mut args = header_args(&headers);
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(url.to_owned());
        curl(&lab.web, "secure.shop.internal", 80, secure, &strs(&args))
    };

    // Signed by web: admitted, and the target learns who called.
    let r = signed_get(
        "http://secure.shop.internal/orders?id=7",
        &signing(WEB_KEY, &web_key),
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", agent.log());
    assert_eq!(
        seen_header(&r.body, "x-amzn-lattice-identity"),
        Some(format!("Principal={WEB_ARN}").as_str()),
        "{}",
        r.body
    );
    assert_eq!(
        seen_header(&r.body, "x-amzn-lattice-identity-tags"),
        Some(format!("principal={WEB_ARN};team=storefront").as_str()),
        "{}",
        r.body
    );

    // The same signed request replayed at another service's address (service `open`,
    // whose network checks callers too): the signature was made for `secure`'s name,
    // so it does not make web the caller there.
    let url = "http://secure.shop.internal/orders?id=7";
    let mut args = header_args(&sigv4::sign("GET", url, &signing(WEB_KEY, &web_key)));
    args.push(url.to_owned());
    let replayed = curl(&lab.web, "secure.shop.internal", 80, open, &strs(&args));
    assert_eq!(replayed.status, 403, "{replayed:?}");
    assert!(
        replayed.body.contains("signed for host"),
        "{}",
        replayed.body
    );

    // A body whose hash is signed (botocore's default over HTTP), and one signed with
    // UNSIGNED-PAYLOAD.
    for unsigned_payload in [false, true] {
        let url = "http://secure.shop.internal/orders";
        let body = r#"{"item":"book","qty":1}"#;
        let headers = sigv4::sign(
            "POST",
            url,
            &Signing {
                body: Some(body),
                unsigned_payload,
                ..signing(WEB_KEY, &web_key)
            },
        );
        let mut args = header_args(&headers);
        args.extend(["--data-binary".into(), body.into(), url.into()]);
        let r = curl(&lab.web, "secure.shop.internal", 80, secure, &strs(&args));
        assert_eq!(r.status, 200, "unsigned payload {unsigned_payload}: {r:?}");
    }
    // A body that is not the one signed.
    {
        let url = "http://secure.shop.internal/orders";
        let headers = sigv4::sign(
            "POST",
            url,
            &Signing {
                body: Some("qty=1"),
                ..signing(WEB_KEY, &web_key)
            },
        );
        let mut args = header_args(&headers);
        args.extend(["--data-binary".into(), "qty=9".into(), url.into()]);
        let r = curl(&lab.web, "secure.shop.internal", 80, secure, &strs(&args));
        assert_eq!(r.status, 403, "{r:?}");
    }

    // A wrong secret, a signed header changed on the way, a timestamp 16 minutes old.
    let url = "http://secure.shop.internal/orders";
    let wrong_key = lab.path("wrong.key");
    let r = signed_get(url, &signing(WEB_KEY, &wrong_key), &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("InvalidSignatureException"), "{}", r.body);
    let headers = sigv4::sign(
        "GET",
        url,
        &Signing {
            headers: &[("x-team", "a")],
            ..signing(WEB_KEY, &web_key)
        },
    );
    let mut args = header_args(&headers);
    args.retain(|a| a != "x-team: a");
    args.extend(["-H".into(), "x-team: b".into(), url.into()]);
    let r = curl(&lab.web, "secure.shop.internal", 80, secure, &strs(&args));
    assert_eq!(r.status, 403, "{r:?}");
    let r = signed_get(
        url,
        &Signing {
            age_secs: 16 * 60,
            ..signing(WEB_KEY, &web_key)
        },
        &[],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("Signature expired"), "{}", r.body);

    // A valid signature of a principal the policy does not name, and an explicit deny.
    let batch_key = lab.path("batch.key");
    let r = signed_get(url, &signing(BATCH_KEY, &batch_key), &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.body
            .contains(&format!("User: {BATCH_ARN} is not authorized"))
            && r.body.contains("no service-based policy allows"),
        "{}",
        r.body
    );
    let r = signed_get(
        "http://secure.shop.internal/admin/users",
        &signing(WEB_KEY, &web_key),
        &[],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.body.contains("explicit deny in a service-based policy"),
        "{}",
        r.body
    );
    // The same path written otherwise is the same path: the policies see it in its
    // normal form, as the target would read it, and the signature (over the path as
    // sent) still holds.
    for path in [
        "/%61dmin/users",
        "//admin/users",
        "/orders/%2e%2e/admin/users",
    ] {
        let r = signed_get(
            &format!("http://secure.shop.internal{path}"),
            &signing(WEB_KEY, &web_key),
            &["--path-as-is"],
        );
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(r.body.contains("explicit deny"), "{path}: {}", r.body);
    }
    // A path that was only written otherwise reaches the target in its normal form.
    let r = signed_get(
        "http://secure.shop.internal/%6frders/./7",
        &signing(WEB_KEY, &web_key),
        &["--path-as-is"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("GET /orders/7"), "{}", r.body);

    // Anonymous callers: refused by the AWS_IAM service, admitted by the NONE one (the
    // network's policy admits anyone from its own account's VPCs).
    let r = curl(
        &lab.web,
        "secure.shop.internal",
        80,
        secure,
        &["http://secure.shop.internal/orders"],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.body.contains("User: anonymous is not authorized"),
        "{}",
        r.body
    );
    let r = curl(
        &lab.web,
        "open.shop.internal",
        80,
        open,
        &["http://open.shop.internal/orders"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        seen_header(&r.body, "x-amzn-lattice-identity"),
        None,
        "{}",
        r.body
    );

    // mTLS on the HTTPS listener.
    let ca = lab.path("ca-111.pem");
    let https = |client: Option<&str>| {
        let mut args: Vec<String> = vec!["--cacert".into(), ca.display().to_string()];
        if let Some(stem) = client {
            args.extend([
                "--cert".into(),
                lab.path(&format!("{stem}.pem")).display().to_string(),
                "--key".into(),
                lab.path(&format!("{stem}.key")).display().to_string(),
            ]);
        }
        args.push("https://secure.shop.internal/orders".into());
        curl(&lab.web, "secure.shop.internal", 443, secure, &strs(&args))
    };
    let r = https(Some("web-client"));
    assert_eq!(r.status, 200, "{r:?}\n{}", agent.log());
    let identity = seen_header(&r.body, "x-amzn-lattice-identity").unwrap_or_default();
    assert_eq!(
        identity,
        format!(
            "Principal={WEB_ARN};X509Issuer/OU=accounts;X509SAN/URI={WEB_SAN};X509Subject/CN=web"
        ),
        "{}",
        r.body
    );
    assert_eq!(seen_header(&r.body, "x-forwarded-for-proto"), Some("https"));
    for refused in [Some("batch-client"), Some("forged-client"), None] {
        let r = https(refused);
        assert_eq!(r.status, 403, "{refused:?}: {r:?}");
    }

    // Every request to `secure` has an access log record with the decision and the
    // statements that made it.
    let log_file = lab.path("access.jsonl");
    let records = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log_file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    // 1 + 2 + 1 + 3 + 2 + 1 + 1 + 3 requests to `secure`.
    assert!(
        eventually(Duration::from_secs(10), || records().len() >= 14),
        "{:#?}",
        records()
    );
    let records = records();
    let allowed = records
        .iter()
        .find(|r| r["authDecision"] == "Allow" && r["requestPath"] == "/orders?id=7")
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(allowed["callerPrincipal"], WEB_ARN);
    assert_eq!(allowed["authStatements"]["network"], "Sid \"OwnVpcs\"");
    assert_eq!(allowed["authStatements"]["service"], "Sid \"WebCalls\"");
    assert_eq!(allowed["responseCode"], 200);
    assert_eq!(allowed["targetIpPort"], "10.92.0.10:8080");
    assert!(
        allowed["targetGroupArn"]
            .as_str()
            .is_some_and(|arn| arn.contains(":targetgroup/tg-")),
        "{allowed:#}"
    );
    assert!(
        allowed["destinationVpcId"]
            .as_str()
            .is_some_and(|id| id.starts_with("vpc-")),
        "{allowed:#}"
    );
    assert_eq!(
        allowed["sourceIpPort"].as_str().unwrap().split(':').next(),
        Some("10.91.0.5")
    );
    let denied = records
        .iter()
        .find(|r| r["requestPath"] == "/admin/users")
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(denied["authDecision"], "Deny");
    assert_eq!(denied["authStatements"]["service"], "Sid \"NoAdmin\"");
    assert_eq!(denied["responseCode"], 403);
    assert!(denied["targetGroupArn"].is_null() && denied["destinationVpcId"].is_null());
    assert!(denied["authDeniedReason"]
        .as_str()
        .unwrap()
        .contains("explicit deny"));
    let certified = records
        .iter()
        .find(|r| r["callerX509SANURI"] == WEB_SAN)
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(certified["tlsVersion"], "TLSv1.3");
    assert_eq!(certified["serverNameIndication"], "secure.shop.internal");
    assert_eq!(certified["callerX509SubjectCN"], "web");

    // A certificate proves a principal under the config in force, not the one of the
    // handshake: web's mtlsSubjects change while its keep-alive connection stays open,
    // and its next request there is anonymous (the service's policy refuses it).
    let mut open_connection = TlsClient::start(&lab, secure);
    let first = open_connection.get("/orders");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.contains(&format!("Principal={WEB_ARN}")), "{first}");
    let rotated = config(&lab).replace(
        &format!("mtlsSubjects: [{WEB_SAN}]"),
        "mtlsSubjects: [spiffe://lattice/account/111111111111/role/web-next]",
    );
    agent
        .apply(&rotated)
        .unwrap_or_else(|log| panic!("refused:\n{log}"));
    let second = open_connection.get("/orders");
    assert!(second.starts_with("HTTP/1.1 403"), "{second}");
}

/// `openssl s_client` in the web namespace, holding one TLS connection to `secure`'s
/// HTTPS listener with web's client certificate: requests written to it go on that
/// connection, whatever the agent's config does meanwhile.
struct TlsClient {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Read and not yet returned.
    pending: Vec<u8>,
}

impl TlsClient {
    fn start(lab: &Lab, vip: std::net::Ipv4Addr) -> TlsClient {
        let path = |stem: &str| lab.path(stem).display().to_string();
        let mut child = lab
            .web
            .command("openssl")
            .args(["s_client", "-quiet", "-alpn", "http/1.1", "-connect"])
            .arg(format!("{vip}:443"))
            .args(["-servername", "secure.shop.internal", "-cert"])
            .arg(path("web-client.pem"))
            .arg("-key")
            .arg(path("web-client.key"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start openssl s_client");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, chunks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        TlsClient {
            child,
            stdin,
            chunks,
            pending: Vec::new(),
        }
    }

    /// Sends `GET path` and returns the whole response (head and `content-length` bytes
    /// of body) as text.
    fn get(&mut self, path: &str) -> String {
        use std::io::Write as _;
        write!(
            self.stdin,
            "GET {path} HTTP/1.1\r\nhost: secure.shop.internal\r\n\r\n"
        )
        .unwrap();
        self.stdin.flush().unwrap();
        loop {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length: usize = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let whole = head_end + 4 + length;
                if self.pending.len() >= whole {
                    let response = self.pending.drain(..whole).collect::<Vec<u8>>();
                    return String::from_utf8_lossy(&response).into_owned();
                }
            }
            let chunk = self
                .chunks
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("the response ({e}); so far: {text}"));
            self.pending.extend_from_slice(&chunk);
        }
    }
}

impl Drop for TlsClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cross-account example of config-contract.yaml, as it is: account 222's service
/// `orders`, shared into account 111's network `shop`, called from 111's VPC by the
/// principal `role/web` with a botocore-signed request over HTTPS.
#[test]
fn the_contracts_cross_account_example_works_end_to_end() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    let other = topo.add_netns("other").unwrap();
    let cgroup = topo.add_cgroup("web").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    for a in ["10.92.0.10", "10.92.0.11"] {
        orders.add_addr("lo", &format!("{a}/32")).unwrap();
    }
    let _v1a = HttpServer::start(&orders, "10.92.0.10:8080".parse().unwrap(), "v1a").unwrap();
    let _v1b = HttpServer::start(&orders, "10.92.0.11:8080".parse().unwrap(), "v1b").unwrap();

    let contract = include_str!("data/config-contract.yaml")
        .replace("netns: lt-web", &format!("netns: {}", web.name()))
        .replace("netns: lt-orders", &format!("netns: {}", orders.name()))
        .replace("netns: lt-other", &format!("netns: {}", other.name()))
        .replace(
            "cgroup: lattice/web",
            &format!("cgroup: {}", cgroup.relative_path().trim_start_matches('/')),
        );
    let dir = tempfile::tempdir().unwrap();
    for sub in ["certs", "secrets", "logs"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::write(dir.path().join("secrets/web.key"), "contract-web-secret\n").unwrap();
    let pki = Pki::new(&dir.path().join("certs"));
    pki.ca("ca-111111111111", "/CN=account 111111111111 CA");
    pki.issue(
        "ca-111111111111",
        "orders",
        "/CN=orders",
        &["DNS:orders.shop.internal"],
    );
    // The contract's accounts name no mtlsCaFile: role/web's mtlsSubjects are proven by
    // the agent's mesh-wide CA. A certificate of another CA, same SAN, proves nothing.
    pki.ca("mesh-ca", "/OU=mesh/CN=lattice mesh CA");
    let web_san = format!("URI:{WEB_SAN}");
    pki.issue("mesh-ca", "web-client", "/CN=web", &[&web_san]);
    pki.ca("rogue-ca", "/CN=rogue CA");
    pki.issue("rogue-ca", "rogue-client", "/CN=web", &[&web_san]);
    let certs = dir.path().join("certs");
    let mesh_ca = certs.join("mesh-ca.pem").display().to_string();
    let secret = dir.path().join("secrets/web.key");
    let ca = certs.join("ca-111111111111.pem");

    let root = topo.bpffs_root("agent").unwrap();
    let agent = Agent::start_with(dir, &contract, &root, &["--mtls-ca", &mesh_ca]);
    let vip = agent.vip("orders");
    // The targets pass their first health check before they get traffic.
    assert!(
        eventually(Duration::from_secs(20), || agent
            .targets()
            .to_string()
            .contains("HEALTHY")),
        "{}",
        agent.targets()
    );

    let call = |method: &str, path: &str, sign: bool| {
        let url = format!("https://orders.shop.internal{path}");
        let mut args: Vec<String> = vec![
            "--cacert".into(),
            ca.display().to_string(),
            "-X".into(),
            method.into(),
        ];
        if sign {
            let headers = sigv4::sign(method, &url, &signing(WEB_KEY, &secret));
            args.extend(header_args(&headers));
        }
        args.push(url);
        curl(&web, "orders.shop.internal", 443, vip, &strs(&args))
    };
    // The network's policy admits account 111's VPCs; the service's admits role/web for
    // GET and POST; the rule `api` forwards /api/ to orders-v1.
    let r = call("GET", "/api/items", true);
    assert_eq!(r.status, 200, "{r:?}\n{}", agent.log());
    assert!(r.body.starts_with("v1"), "{}", r.body);
    assert_eq!(
        seen_header(&r.body, "x-amzn-lattice-identity"),
        Some(format!("Principal={WEB_ARN}").as_str())
    );
    assert_eq!(call("POST", "/api/items", true).status, 200);
    let r = call("DELETE", "/api/items", true);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("no service-based policy"), "{}", r.body);
    let r = call("GET", "/api/items", false);
    assert_eq!(r.status, 403, "anonymous: {r:?}");
    // Outside /api/ the default action answers 404, after auth.
    assert_eq!(call("GET", "/", true).status, 404);

    let certified = |stem: &str| {
        let args = [
            "--cacert".to_owned(),
            ca.display().to_string(),
            "--cert".to_owned(),
            certs.join(format!("{stem}.pem")).display().to_string(),
            "--key".to_owned(),
            certs.join(format!("{stem}.key")).display().to_string(),
            "https://orders.shop.internal/api/items".to_owned(),
        ];
        curl(&web, "orders.shop.internal", 443, vip, &strs(&args))
    };
    let r = certified("web-client");
    assert_eq!(r.status, 200, "mesh CA: {r:?}\n{}", agent.log());
    assert!(
        seen_header(&r.body, "x-amzn-lattice-identity")
            .is_some_and(|id| id.starts_with(&format!("Principal={WEB_ARN};X509Issuer/OU=mesh"))),
        "{}",
        r.body
    );
    assert_ne!(
        certified("rogue-client").status,
        200,
        "a rogue CA's certificate"
    );

    // Without the resource share, account 111's network cannot hold account 222's
    // services: validate refuses the document and names what is missing.
    let unshared = contract.replace("resourceShares:", "unusedShares:");
    let unshared = {
        let start = unshared.find("unusedShares:").unwrap();
        let end = unshared[start..].find("\nservices:").unwrap() + start;
        format!("{}{}", &unshared[..start], &unshared[end + 1..])
    };
    let doc = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(doc.path(), unshared).unwrap();
    let out = Command::new(AGENT)
        .arg("validate")
        .arg(doc.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "validate must fail without the share"
    );
    assert!(stderr.contains("resourceShare"), "{stderr}");
    assert!(stderr.contains("orders"), "{stderr}");
}
