//! The topology helpers against the real kernel: namespaces joined by veths carry echo
//! and HTTP traffic, cgroups hold processes, and everything is gone after a drop, a panic
//! or a sweep. Needs root; run with `cargo test -p lattice-tests`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use lattice_tests::client::{self, HttpRequest};
use lattice_tests::cmd;
use lattice_tests::names::Tag;
use lattice_tests::server::SERVER_HEADER;
use lattice_tests::{cgroup, EchoServer, HttpServer, Netns, Topology};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Two namespaces `a` (10.99.0.1) and `b` (10.99.0.2) joined by a veth pair.
fn two_namespaces() -> Result<(Topology, Netns, Netns)> {
    let mut topo = Topology::new()?;
    let a = topo.add_netns("a")?;
    let b = topo.add_netns("b")?;
    topo.add_veth_between(&a, "eth0", &b, "eth0")?;
    a.add_addr("eth0", "10.99.0.1/24")?;
    b.add_addr("eth0", "10.99.0.2/24")?;
    Ok((topo, a, b))
}

/// Deterministic bytes that are not a short repeating pattern, so a reordered or
/// duplicated chunk is caught.
fn payload(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn netns_names() -> Result<HashSet<String>> {
    Ok(cmd::ip(&["netns", "list"])?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Interface names of the host, from `ip -o link show` (`3: name@peer: <...>`).
fn host_link_names() -> Result<HashSet<String>> {
    Ok(cmd::ip(&["-o", "link", "show"])?
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect())
}

/// The cgroup v2 path of process `pid`, from the `0::` line of `/proc/<pid>/cgroup`.
fn cgroup_of(pid: u32) -> Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
        .context("no cgroup v2 line")
}

/// The network namespace inode of process `pid`.
fn netns_inode_of(pid: u32) -> Result<u64> {
    Ok(std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino())
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    let until = Instant::now() + TIMEOUT;
    while !check() {
        ensure!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A child process killed and reaped when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts the objects of a dropped topology are gone from the host.
fn assert_gone(netns: &[String], links: &[String], cgroups: &[PathBuf]) -> Result<()> {
    let (listed_netns, listed_links) = (netns_names()?, host_link_names()?);
    for name in netns {
        ensure!(
            !listed_netns.contains(name),
            "namespace {name} still listed"
        );
        ensure!(
            !Path::new("/run/netns").join(name).exists(),
            "/run/netns/{name} still exists"
        );
    }
    for name in links {
        ensure!(
            !listed_links.contains(name),
            "host interface {name} still exists"
        );
    }
    for path in cgroups {
        ensure!(!path.exists(), "cgroup {} still exists", path.display());
    }
    Ok(())
}

#[test]
fn echo_is_byte_exact_across_a_veth_pair() -> Result<()> {
    let (_topo, a, b) = two_namespaces()?;
    let server = EchoServer::start(&a, "10.99.0.1:0".parse()?)?;
    assert_eq!(server.addr().ip().to_string(), "10.99.0.1");
    assert_ne!(server.addr().port(), 0);

    client::echo_roundtrip(&b, server.addr(), b"hello lattice", TIMEOUT)?;
    client::echo_roundtrip(&b, server.addr(), &payload(1 << 20), TIMEOUT)?;

    // Several exchanges on one connection.
    let stream = client::connect(&b, server.addr(), TIMEOUT)?;
    for len in [1, 1000, 70_000] {
        client::echo_exchange(&stream, &payload(len), TIMEOUT)?;
    }
    Ok(())
}

#[test]
fn echo_client_fails_loudly_without_a_server() -> Result<()> {
    let (_topo, _a, b) = two_namespaces()?;
    let err = client::echo_roundtrip(&b, "10.99.0.1:9".parse()?, b"x", TIMEOUT).unwrap_err();
    let text = err.to_string();
    ensure!(
        text.contains("10.99.0.1:9") && text.contains(b.name()),
        "{text}"
    );
    Ok(())
}

#[test]
fn http_backend_names_itself_the_path_and_the_caller() -> Result<()> {
    let (_topo, a, b) = two_namespaces()?;
    let server = HttpServer::start(&a, "10.99.0.1:8080".parse()?, "backend-a")?;

    let request = HttpRequest::get("/hello?x=1").header("X-Test", "yes");
    let response = client::http_request(&b, server.addr(), &request, TIMEOUT)?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header(SERVER_HEADER), Some("backend-a"));
    let text = response.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("backend-a GET /hello?x=1"));
    assert!(
        lines
            .next()
            .is_some_and(|from| from.starts_with("from 10.99.0.2:")),
        "{text}"
    );
    assert!(text.lines().any(|line| line == "x-test: yes"), "{text}");

    let post = HttpRequest::new("POST", "/upload").body(payload(100_000));
    let response = client::http_request(&b, server.addr(), &post, TIMEOUT)?;
    assert!(response.text().starts_with("backend-a POST /upload\n"));

    // curl, as later tests use it, run inside the client namespace.
    let url = format!("http://{}/via-curl", server.addr());
    let body = b.exec("curl", &["-sS", "--max-time", "5", &url])?;
    assert!(
        body.starts_with("backend-a GET /via-curl\nfrom 10.99.0.2:"),
        "{body}"
    );
    // curl waits a second for `100 Continue` before sending a body it announced with
    // `expect` (done by itself for large bodies); the server answers at once.
    let started = Instant::now();
    let body = b.exec(
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            "-H",
            "expect: 100-continue",
            "--data-binary",
            "payload",
            &url,
        ],
    )?;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(body.starts_with("backend-a POST /via-curl\n"), "{body}");
    Ok(())
}

#[test]
fn http_backend_keeps_connections_alive_until_asked_to_close() -> Result<()> {
    let (_topo, a, b) = two_namespaces()?;
    let server = HttpServer::start(&a, "10.99.0.1:80".parse()?, "keeper")?;
    let mut stream = client::connect(&b, server.addr(), TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\nGET /two HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
    let mut all = String::new();
    stream.read_to_string(&mut all)?;
    assert_eq!(all.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{all}");
    let (one, two) = (all.find("keeper GET /one\n"), all.find("keeper GET /two\n"));
    assert!(one.is_some() && two.is_some() && one < two, "{all}");
    Ok(())
}

#[test]
fn dropping_a_server_with_an_idle_connection_is_quick() -> Result<()> {
    let (_topo, a, b) = two_namespaces()?;
    let server = EchoServer::start(&a, "10.99.0.1:0".parse()?)?;
    let idle = client::connect(&b, server.addr(), TIMEOUT)?;
    // Accepted and served once, so the drop has a connection thread to stop.
    client::echo_exchange(&idle, b"ping", TIMEOUT)?;
    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The server closed its side.
    idle.set_read_timeout(Some(TIMEOUT))?;
    assert_eq!((&idle).read(&mut [0; 8])?, 0);
    Ok(())
}

#[test]
fn run_executes_inside_the_namespace() -> Result<()> {
    let mut topo = Topology::new()?;
    let ns = topo.add_netns("run")?;
    let host = topo.add_veth_to_host(&ns, "inner0")?;
    let inside: Vec<String> = ns.run(|| {
        nix::net::if_::if_nameindex().map(|all| {
            all.iter()
                .map(|i| i.name().to_string_lossy().into_owned())
                .collect()
        })
    })??;
    assert!(
        inside.contains(&"lo".to_owned()) && inside.contains(&"inner0".to_owned()),
        "{inside:?}"
    );
    assert!(!inside.contains(&host.name().to_owned()), "{inside:?}");
    assert!(host_link_names()?.contains(host.name()));
    assert!(!host_link_names()?.contains("inner0"));
    assert!(host.name().len() <= 15 && host.name().starts_with(topo.tag().as_str()));
    assert!(host.ifindex()? > 0);
    // Loopback is up in a new namespace.
    assert!(ns.ip(&["link", "show", "lo"])?.contains("UP"));
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    assert_eq!(
        ns.exec("cat", &["/proc/sys/net/ipv4/ip_forward"])?.trim(),
        "1"
    );

    // A panic inside reaches the caller.
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        ns.run(|| panic!("inside the namespace"))
    }));
    assert!(panicked.is_err());
    Ok(())
}

#[test]
fn drop_removes_namespaces_links_and_cgroups() -> Result<()> {
    let mut topo = Topology::new()?;
    let a = topo.add_netns("a")?;
    let b = topo.add_netns("b")?;
    topo.add_veth_between(&a, "eth0", &b, "eth0")?;
    let host = topo.add_veth_to_host(&a, "up0")?;
    let cgroup = topo.add_cgroup("cg")?;
    let netns = vec![a.name().to_owned(), b.name().to_owned()];
    let links = vec![host.name().to_owned()];
    let cgroups = vec![cgroup.path().to_owned()];
    assert!(
        netns_names()?.contains(a.name())
            && host_link_names()?.contains(host.name())
            && cgroup.path().is_dir()
    );

    drop(topo);
    assert_gone(&netns, &links, &cgroups)?;
    // Handles outlive the topology but fail clearly.
    let err = a.run(|| ()).unwrap_err().to_string();
    assert!(err.contains(a.name()), "{err}");
    Ok(())
}

#[test]
fn a_panicking_test_still_cleans_up() -> Result<()> {
    let mut created = (Vec::new(), Vec::new(), Vec::new());
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut topo = Topology::new().unwrap();
        let ns = topo.add_netns("doomed").unwrap();
        let host = topo.add_veth_to_host(&ns, "eth0").unwrap();
        let cgroup = topo.add_cgroup("doomed").unwrap();
        created = (
            vec![ns.name().to_owned()],
            vec![host.name().to_owned()],
            vec![cgroup.path().to_owned()],
        );
        panic!("a test failing with its topology alive");
    }));
    assert!(outcome.is_err());
    assert!(!created.0.is_empty());
    assert_gone(&created.0, &created.1, &created.2)
}

#[test]
fn cgroup_holds_spawned_processes_until_dropped() -> Result<()> {
    let mut topo = Topology::new()?;
    let ns = topo.add_netns("cg")?;
    let cgroup = topo.add_cgroup("clients")?;
    assert!(cgroup.path().starts_with(cgroup::cgroup2_root()?));

    // In the cgroup from the start.
    let started = Reaped(cgroup.command("sleep").arg("30").spawn()?);
    let started_pid = started.0.id();
    eventually("the spawned child to be in the cgroup", || {
        cgroup_of(started_pid).is_ok_and(|path| path == cgroup.relative_path())
    })?;

    // Moved in after the start.
    let moved = Reaped(Command::new("sleep").arg("30").spawn()?);
    let moved_pid = moved.0.id();
    cgroup.add_process(moved_pid)?;
    assert_eq!(cgroup_of(moved_pid)?, cgroup.relative_path());

    // In the cgroup and the namespace.
    let inside = Reaped(cgroup.command_in(&ns, "sleep").arg("30").spawn()?);
    let inside_pid = inside.0.id();
    let ns_inode = std::fs::metadata(ns.path())?.ino();
    eventually("the child to enter the namespace", || {
        netns_inode_of(inside_pid).is_ok_and(|inode| inode == ns_inode)
    })?;
    assert_eq!(cgroup_of(inside_pid)?, cgroup.relative_path());

    let mut procs = cgroup.procs()?;
    procs.sort_unstable();
    let mut expected = vec![started_pid, moved_pid, inside_pid];
    expected.sort_unstable();
    assert_eq!(procs, expected);

    let path = cgroup.path().to_owned();
    drop(topo);
    assert!(!path.exists());
    // The processes were moved to the parent, not killed.
    for pid in [started_pid, moved_pid, inside_pid] {
        assert_eq!(cgroup_of(pid)?, "/");
    }
    Ok(())
}

#[test]
fn sweep_removes_leftovers_of_dead_processes_only() -> Result<()> {
    // A live topology of this process survives the sweep.
    let mut live = Topology::new()?;
    let live_ns = live.add_netns("live")?;

    // Leftovers of an owner that is alive while they are made (so concurrent sweeps of
    // other tests leave them alone) and dead afterwards.
    let mut owner = Reaped(Command::new("sleep").arg("30").spawn()?);
    let tag = Tag::for_owner(owner.0.id(), 0);
    let (ns, veth, peer, dir) = (
        tag.name("ns"),
        tag.name("v0"),
        tag.name("v1"),
        cgroup::cgroup2_root()?.join(tag.name("cg")),
    );
    cmd::ip(&["netns", "add", &ns])?;
    cmd::ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
    std::fs::create_dir(&dir)?;
    let straggler = Reaped(Command::new("sleep").arg("30").spawn()?);
    std::fs::write(dir.join("cgroup.procs"), straggler.0.id().to_string())?;
    owner.0.kill()?;
    owner.0.wait()?;

    // Another test's Topology::new may sweep them first: check the result, not the report.
    lattice_tests::sweep()?;
    assert_gone(&[ns], &[veth, peer], &[dir])?;
    assert_eq!(
        cgroup_of(straggler.0.id())?,
        "/",
        "the straggler is moved out, not killed"
    );

    assert!(
        netns_names()?.contains(live_ns.name()),
        "a live topology was swept"
    );
    Ok(())
}

#[test]
fn parallel_topologies_get_distinct_names() -> Result<()> {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| -> Result<(Topology, String, String)> {
                let mut topo = Topology::new()?;
                let ns = topo.add_netns("same")?;
                let host = topo.add_veth_to_host(&ns, "eth0")?;
                Ok((topo, ns.name().to_owned(), host.name().to_owned()))
            })
        })
        .collect();
    let mut names = HashSet::new();
    let mut topologies = Vec::new();
    for thread in threads {
        let (topo, ns, host) = thread.join().expect("no panic")?;
        assert!(names.insert(ns) && names.insert(host));
        topologies.push(topo);
    }
    Ok(())
}
