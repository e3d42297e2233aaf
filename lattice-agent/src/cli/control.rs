//! The `lattice` commands that talk to a running agent over its control API: apply,
//! get, describe, delete, targets, stats, logs. Tables for people, `-o json` for
//! scripts; exit codes scripts can trust (0 done, 1 refused or failed, 2 usage, 3 the
//! agent cannot be reached).

use std::{
    io::{BufRead as _, Read as _, Seek as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::api::{
    client::{Answer, ClientError, Endpoint},
    ops::Kind,
    DEFAULT_SOCKET,
};

/// Exit code when the agent cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Where the agent is.
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// The agent's control socket.
    #[arg(long, global = true, env = "LATTICE_API_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Talk TCP to this address (host:port) instead of the socket; needs --token-file.
    #[arg(
        long,
        global = true,
        env = "LATTICE_API_ENDPOINT",
        requires = "token_file"
    )]
    endpoint: Option<String>,
    /// The bearer token for --endpoint.
    #[arg(long, global = true, env = "LATTICE_API_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

impl EndpointArgs {
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        Ok(match (&self.endpoint, &self.token_file) {
            (Some(addr), Some(file)) => Endpoint::Tcp {
                addr: addr.clone(),
                token: std::fs::read_to_string(file)
                    .with_context(|| format!("--token-file {}", file.display()))?
                    .trim()
                    .to_owned(),
            },
            _ => Endpoint::Socket(self.socket.clone()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}

/// The kinds `get`, `describe` and `delete` take, with short names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    #[value(alias = "servicenetwork", alias = "sn")]
    Servicenetworks,
    #[value(alias = "service", alias = "svc")]
    Services,
    #[value(alias = "listener")]
    Listeners,
    #[value(alias = "rule")]
    Rules,
    #[value(alias = "targetgroup", alias = "tg")]
    Targetgroups,
    #[value(alias = "vpcassociation")]
    Vpcassociations,
    #[value(alias = "serviceassociation")]
    Serviceassociations,
    #[value(alias = "accesslogsubscription", alias = "als")]
    Accesslogsubscriptions,
}

impl KindArg {
    fn kind(self) -> Kind {
        match self {
            KindArg::Servicenetworks => Kind::ServiceNetwork,
            KindArg::Services => Kind::Service,
            KindArg::Listeners => Kind::Listener,
            KindArg::Rules => Kind::Rule,
            KindArg::Targetgroups => Kind::TargetGroup,
            KindArg::Vpcassociations => Kind::VpcAssociation,
            KindArg::Serviceassociations => Kind::ServiceAssociation,
            KindArg::Accesslogsubscriptions => Kind::AccessLogSubscription,
        }
    }
}

/// A failed call, with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallFailed {
    pub message: String,
    pub exit: u8,
}

fn call(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    call_with(endpoint, method, path, body, &[])
}

fn call_with(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, String)],
) -> anyhow::Result<Value> {
    let answer = endpoint.call(method, path, body, headers).map_err(|e| {
        let exit = match e {
            ClientError::Connect { .. } => EXIT_UNREACHABLE,
            _ => 1,
        };
        CallFailed {
            message: e.to_string(),
            exit,
        }
    })?;
    match answer {
        Answer {
            status: 200, body, ..
        } => Ok(body),
        Answer {
            status,
            error_type,
            body,
        } => {
            let mut message = format!(
                "{} ({status}): {}",
                error_type.as_deref().unwrap_or("error"),
                body["message"].as_str().unwrap_or("")
            );
            for field in body["fieldList"].as_array().into_iter().flatten() {
                message.push_str(&format!(
                    "\n  {}: {}",
                    field["name"].as_str().unwrap_or(""),
                    field["message"].as_str().unwrap_or("")
                ));
            }
            Err(CallFailed { message, exit: 1 }.into())
        }
    }
}

/// The API path of `kind` under `names` (parents, then maybe the resource's own).
fn path_of(kind: Kind, names: &[String]) -> anyhow::Result<(String, bool)> {
    let depth = kind.depth();
    if names.len() + 1 < depth || names.len() > depth {
        bail!(
            "{} are named by {} name(s): {}",
            kind.plural(),
            depth,
            match kind {
                Kind::Listener => "SERVICE LISTENER",
                Kind::Rule => "SERVICE LISTENER RULE",
                Kind::VpcAssociation => "SERVICE_NETWORK VPC",
                Kind::ServiceAssociation => "SERVICE_NETWORK SERVICE",
                _ => "NAME",
            }
        );
    }
    let one = names.len() == depth;
    let enc: Vec<String> = names.iter().map(|n| encode(n)).collect();
    let path = match kind {
        Kind::Listener => format!("/services/{}/listeners{}", enc[0], tail(&enc[1..])),
        Kind::Rule => format!(
            "/services/{}/listeners/{}/rules{}",
            enc[0],
            enc[1],
            tail(&enc[2..])
        ),
        Kind::VpcAssociation | Kind::ServiceAssociation if !one => {
            format!("/{}?serviceNetworkIdentifier={}", kind.plural(), enc[0])
        }
        _ => format!("/{}{}", kind.plural(), tail(&enc)),
    };
    Ok((path, one))
}

fn tail(names: &[String]) -> String {
    names.iter().map(|n| format!("/{n}")).collect()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every item of a list, following nextToken.
fn list_all(endpoint: &Endpoint, path: &str) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    // Bounded: 1,000 pages of 100.
    for _ in 0..1000 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let page = match &token {
            Some(t) => format!("{path}{sep}maxResults=100&nextToken={}", encode(t)),
            None => format!("{path}{sep}maxResults=100"),
        };
        let body = call(endpoint, "GET", &page, None)?;
        items.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(items),
        }
    }
    bail!("the list did not end after 1,000 pages")
}

/// `lattice apply -f FILE [--dry-run]`: shows what changes, then applies it as one
/// change (unless the agent's document changed meanwhile).
pub fn apply(
    endpoint: &EndpointArgs,
    file: &Path,
    dry_run: bool,
    output: Output,
) -> anyhow::Result<()> {
    let endpoint = endpoint.endpoint()?;
    let text = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    // Relative paths in the document are relative to its folder, wherever the agent is.
    let source = if file == Path::new("-") {
        std::env::current_dir()?.join("stdin.yaml")
    } else {
        std::path::absolute(file)?
    };
    let body = json!({ "source": source, "text": text });
    let checked = call(&endpoint, "PUT", "/document?dryRun=true", Some(&body))?;
    let generation = checked["generation"].as_u64().unwrap_or_default();
    let diff = checked["diff"].as_array().cloned().unwrap_or_default();
    if dry_run || diff.is_empty() {
        print_apply(
            &checked,
            output,
            if diff.is_empty() {
                "no changes"
            } else {
                "valid (dry run, nothing applied)"
            },
        );
        return Ok(());
    }
    let applied = call_with(
        &endpoint,
        "PUT",
        "/document",
        Some(&body),
        &[("if-match", generation.to_string())],
    )?;
    print_apply(&applied, output, "applied");
    Ok(())
}

fn print_apply(answer: &Value, output: Output, what: &str) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        ),
        Output::Table => {
            for line in answer["diff"].as_array().into_iter().flatten() {
                println!("{}", line.as_str().unwrap_or_default());
            }
            println!("{what} (generation {})", answer["generation"]);
        }
    }
}

/// `lattice get KIND [NAMES...]`: a list (or one resource) as a table or JSON.
pub fn get(
    endpoint: &EndpointArgs,
    kind: KindArg,
    names: &[String],
    output: Output,
) -> anyhow::Result<()> {
    let endpoint = endpoint.endpoint()?;
    let kind = kind.kind();
    let (path, one) = path_of(kind, names)?;
    let items = if one {
        vec![call(&endpoint, "GET", &path, None)?]
    } else {
        list_all(&endpoint, &path)?
    };
    match output {
        Output::Json if one => println!("{}", serde_json::to_string_pretty(&items[0])?),
        Output::Json => println!("{}", serde_json::to_string_pretty(&items)?),
        Output::Table => print_table(kind, &items),
    }
    Ok(())
}

/// `lattice describe KIND NAMES...`: one resource, whole, as JSON.
pub fn describe(endpoint: &EndpointArgs, kind: KindArg, names: &[String]) -> anyhow::Result<()> {
    let endpoint = endpoint.endpoint()?;
    let kind = kind.kind();
    let (path, one) = path_of(kind, names)?;
    if !one {
        bail!(
            "describe names one resource: give its full name ({} name(s))",
            kind.depth()
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&call(&endpoint, "GET", &path, None)?)?
    );
    Ok(())
}

/// `lattice delete KIND NAMES...`.
pub fn delete(endpoint: &EndpointArgs, kind: KindArg, names: &[String]) -> anyhow::Result<()> {
    let endpoint = endpoint.endpoint()?;
    let kind = kind.kind();
    let (path, one) = path_of(kind, names)?;
    if !one {
        bail!(
            "delete names one resource: give its full name ({} name(s))",
            kind.depth()
        );
    }
    call(&endpoint, "DELETE", &path, None)?;
    println!("deleted {} {}", kind.plural(), names.join("/"));
    Ok(())
}

/// `lattice targets GROUP`: ListTargets, with health.
pub fn targets(endpoint: &EndpointArgs, group: &str, output: Output) -> anyhow::Result<()> {
    let endpoint = endpoint.endpoint()?;
    let path = format!("/targetgroups/{}/listtargets", encode(group));
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..1000 {
        let page = match &token {
            Some(t) => format!("{path}?nextToken={}", encode(t)),
            None => path.clone(),
        };
        let body = call(&endpoint, "POST", &page, None)?;
        rows.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => {
            println!("{:<18} {:<6} {:<12} REASON", "TARGET", "PORT", "STATUS");
            for r in &rows {
                println!(
                    "{:<18} {:<6} {:<12} {}",
                    text(&r["id"]),
                    text(&r["port"]),
                    text(&r["status"]),
                    text(&r["reasonCode"])
                );
            }
        }
    }
    Ok(())
}

/// `lattice stats`: the proxy's live counters; `--watch` prints them every interval,
/// `--count` times.
pub fn stats(
    endpoint: &EndpointArgs,
    output: Output,
    watch: Option<u64>,
    count: u32,
) -> anyhow::Result<()> {
    let endpoint = endpoint.endpoint()?;
    let rounds = if watch.is_some() { count.max(1) } else { 1 };
    for round in 0..rounds {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(watch.unwrap_or(1)));
        }
        let stats = call(&endpoint, "GET", "/stats", None)?;
        match output {
            Output::Json => println!("{}", serde_json::to_string(&stats)?),
            Output::Table => {
                println!(
                    "{:<10} {:<28} {:>9} {:>7} {:>7} {:>7} {:>7} {:>6} {:>11} {:>11}",
                    "KIND",
                    "NAME",
                    "REQUESTS",
                    "2XX",
                    "3XX",
                    "4XX",
                    "5XX",
                    "CONNS",
                    "BYTES IN",
                    "BYTES OUT"
                );
                for (label, key) in [("service", "services"), ("group", "targetGroups")] {
                    for r in stats[key].as_array().into_iter().flatten() {
                        println!(
                            "{:<10} {:<28} {:>9} {:>7} {:>7} {:>7} {:>7} {:>6} {:>11} {:>11}",
                            label,
                            text(&r["name"]),
                            text(&r["requests"]),
                            text(&r["http2xx"]),
                            text(&r["http3xx"]),
                            text(&r["http4xx"]),
                            text(&r["http5xx"]),
                            text(&r["activeConnections"]),
                            text(&r["bytesIn"]),
                            text(&r["bytesOut"]),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// `lattice logs [-f] [--resource NAME]`: the access log files of the subscriptions,
/// from the agent's document; `-f` follows them (a file rotated or truncated is
/// reopened), until interrupted.
pub fn logs(endpoint: &EndpointArgs, resource: Option<&str>, follow: bool) -> anyhow::Result<()> {
    let endpoint = endpoint.endpoint()?;
    let document = call(&endpoint, "GET", "/document", None)?;
    let base = Path::new(document["source"].as_str().unwrap_or("/"))
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let files: Vec<PathBuf> = list_all(&endpoint, "/accesslogsubscriptions")?
        .iter()
        .filter(|s| resource.is_none_or(|r| s["resource"].as_str() == Some(r)))
        .filter_map(|s| {
            s["destination"]
                .as_str()?
                .strip_prefix("file:")
                .map(|p| base.join(p))
        })
        .collect();
    if files.is_empty() {
        bail!(
            "no access log subscription writes a file{}",
            resource.map(|r| format!(" for {r}")).unwrap_or_default()
        );
    }
    let mut tails: Vec<Tail> = files.into_iter().map(Tail::new).collect();
    loop {
        for t in &mut tails {
            t.print_new()?;
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A file being followed: where reading got to, and which file (inode) it was.
struct Tail {
    path: PathBuf,
    offset: u64,
    inode: Option<u64>,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            offset: 0,
            inode: None,
        }
    }

    fn print_new(&mut self) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Ok(());
        };
        if self.inode != Some(meta.ino()) || meta.len() < self.offset {
            self.inode = Some(meta.ino());
            self.offset = 0;
        }
        if meta.len() == self.offset {
            return Ok(());
        }
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(std::io::SeekFrom::Start(self.offset))?;
        let mut reader = std::io::BufReader::new(file);
        let mut line = String::new();
        // Whole lines only: a line being written is printed on the next round.
        while reader.read_line(&mut line)? > 0 && line.ends_with('\n') {
            print!("{line}");
            self.offset += line.len() as u64;
            line.clear();
        }
        Ok(())
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_table(kind: Kind, items: &[Value]) {
    let columns: &[(&str, &str)] = match kind {
        Kind::ServiceNetwork => &[("NAME", "name"), ("ID", "id"), ("AUTH", "authType")],
        Kind::Service => &[
            ("NAME", "name"),
            ("ID", "id"),
            ("VIP", "vip"),
            ("CUSTOM DOMAIN", "customDomainName"),
        ],
        Kind::Listener => &[("NAME", "name"), ("PROTOCOL", "protocol"), ("PORT", "port")],
        Kind::Rule => &[("NAME", "name"), ("PRIORITY", "priority")],
        Kind::TargetGroup => &[("NAME", "name"), ("ID", "id"), ("TYPE", "type")],
        Kind::VpcAssociation => &[("VPC", "vpc"), ("ALLOWED CIDRS", "allowedCidrs")],
        Kind::ServiceAssociation => &[("SERVICE", "")],
        Kind::AccessLogSubscription => &[
            ("ID", "id"),
            ("RESOURCE", "resource"),
            ("DESTINATION", "destination"),
        ],
    };
    let cell = |item: &Value, field: &str| {
        if field.is_empty() {
            text(item)
        } else {
            text(&item[field])
        }
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|(head, field)| {
            items
                .iter()
                .map(|i| cell(i, field).len())
                .max()
                .unwrap_or(0)
                .max(head.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(columns.iter().map(|(h, _)| h.to_string()).collect());
    for item in items {
        line(columns.iter().map(|(_, f)| cell(item, f)).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_kinds_and_names() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let rows: [(Kind, &[&str], &str, bool); 6] = [
            (Kind::Service, &[], "/services", false),
            (Kind::Service, &["orders"], "/services/orders", true),
            (
                Kind::Rule,
                &["orders", "http"],
                "/services/orders/listeners/http/rules",
                false,
            ),
            (
                Kind::Rule,
                &["orders", "http", "api"],
                "/services/orders/listeners/http/rules/api",
                true,
            ),
            (
                Kind::VpcAssociation,
                &["shop"],
                "/servicenetworkvpcassociations?serviceNetworkIdentifier=shop",
                false,
            ),
            (
                Kind::ServiceAssociation,
                &["shop", "a b"],
                "/servicenetworkserviceassociations/shop/a%20b",
                true,
            ),
        ];
        for (kind, names, path, one) in rows {
            assert_eq!(path_of(kind, &n(names)).unwrap(), (path.to_owned(), one));
        }
        assert!(path_of(Kind::Rule, &n(&["orders"])).is_err());
    }
}
