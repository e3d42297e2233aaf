//! The agent's embedded object in the real kernel: it loads, pins under the test's own
//! bpffs root, attaches to a veth the test created, counts real traffic in its per-CPU
//! map, adopts its own pins on a second load, and refuses pins of another layout.

use std::{path::Path, time::Duration};

use lattice_agent::dataplane::{Dataplane, DataplaneError};
use lattice_common::ifstats;
use lattice_tests::{client, EchoServer, Topology};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes the client sends: enough for many packets, few enough to be quick.
const PAYLOAD: usize = 256 * 1024;

fn if_index(ns: &lattice_tests::Netns, ifname: &str) -> u32 {
    ns.run(|| nix::net::if_::if_nametoindex(ifname))
        .expect("enter namespace")
        .expect("interface exists")
}

fn counters_of(dp: &Dataplane, ifindex: u32) -> ifstats::IfaceCounters {
    dp.interface_counters()
        .expect("read LT_IFSTATS_V1")
        .into_iter()
        .find(|(i, _)| *i == ifindex)
        .map(|(_, c)| c)
        .unwrap_or_default()
}

#[test]
fn tc_ingress_counts_real_traffic_on_a_test_veth() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let server_ns = topo.add_netns("srv").unwrap();
    let client_ns = topo.add_netns("cli").unwrap();
    topo.add_veth_between(&server_ns, "eth0", &client_ns, "eth0")
        .unwrap();
    server_ns.add_addr("eth0", "10.97.0.1/24").unwrap();
    client_ns.add_addr("eth0", "10.97.0.2/24").unwrap();
    let root = topo.bpffs_root("bpf").unwrap();

    let mut dp = Dataplane::load(&root).expect("load the embedded object");
    assert!(root.join(ifstats::MAP_NAME).exists(), "map pinned by name");
    assert!(
        root.join("progs").join("lt_tc_ingress").exists(),
        "program pinned"
    );
    let ifindex = if_index(&server_ns, "eth0");
    let attachment = server_ns
        .run(|| dp.attach_tc_ingress("eth0"))
        .unwrap()
        .expect("attach tc ingress inside the test namespace");

    let before = counters_of(&dp, ifindex);
    let echo = EchoServer::start(&server_ns, "10.97.0.1:7100".parse().unwrap()).unwrap();
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| (i * 7 % 251) as u8).collect();
    client::echo_roundtrip(&client_ns, echo.addr(), &payload, TIMEOUT).expect("echo");
    let after = counters_of(&dp, ifindex);

    assert!(
        after.packets > before.packets + 10,
        "the per-CPU packet counter moved: {before:?} -> {after:?}"
    );
    assert!(
        after.bytes >= before.bytes + PAYLOAD as u64,
        "every byte sent to the server passed tc ingress: {before:?} -> {after:?}"
    );

    // Detached, the counter stays still. The first connection's last packets (its
    // close) may still be passing the program while it is detached: the counter is
    // read once it has held still for a moment.
    dp.detach(attachment).expect("detach");
    let mut detached = counters_of(&dp, ifindex);
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        let now = counters_of(&dp, ifindex);
        if now == detached {
            break;
        }
        detached = now;
    }
    client::echo_roundtrip(&client_ns, echo.addr(), b"after detach", TIMEOUT).expect("echo");
    assert_eq!(counters_of(&dp, ifindex), detached);
}

#[test]
fn a_second_load_adopts_the_pinned_maps() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let ns = topo.add_netns("a").unwrap();
    let peer = topo.add_netns("b").unwrap();
    topo.add_veth_between(&ns, "eth0", &peer, "eth0").unwrap();
    ns.add_addr("eth0", "10.97.1.1/24").unwrap();
    peer.add_addr("eth0", "10.97.1.2/24").unwrap();
    let root = topo.bpffs_root("bpf").unwrap();

    let mut first = Dataplane::load(&root).unwrap();
    let ifindex = if_index(&ns, "eth0");
    let attachment = ns.run(|| first.attach_tc_ingress("eth0")).unwrap().unwrap();
    let echo = EchoServer::start(&ns, "10.97.1.1:7100".parse().unwrap()).unwrap();
    client::echo_roundtrip(&peer, echo.addr(), b"counted", TIMEOUT).unwrap();
    first.detach(attachment).unwrap();
    let counted = counters_of(&first, ifindex);
    assert!(counted.packets > 0);
    drop(first);

    // The pins outlive the agent; a new one sees the same counters.
    let second = Dataplane::load(&root).expect("adopt pinned maps");
    assert_eq!(counters_of(&second, ifindex), counted);
}

#[test]
fn a_pinned_map_of_another_layout_is_refused() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let root = topo.bpffs_root("bpf").unwrap();
    // Pin a map under LT_IFSTATS_V1's name whose value size differs, as an agent of
    // another layout version would have left it.
    std::fs::create_dir_all(&root).unwrap();
    let status = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(root.join(ifstats::MAP_NAME))
        .args([
            "type",
            "percpu_hash",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "16",
            "name",
            "lt_old",
        ])
        .status()
        .expect("run bpftool");
    assert!(status.success(), "bpftool map create");

    let error = match Dataplane::load(&root) {
        Ok(_) => panic!("an incompatible pinned map must be refused"),
        Err(e) => e,
    };
    assert!(
        matches!(
            error,
            DataplaneError::IncompatiblePin {
                field: "value size",
                pinned: 8,
                compiled: 16,
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(ifstats::MAP_NAME), "{message}");
    assert!(message.contains("lattice-agent cleanup"), "{message}");
    // Nothing was replaced: the old pin is still the one there.
    assert!(Path::new(&root.join(ifstats::MAP_NAME)).exists());
}

#[test]
fn the_object_carries_btf_for_the_common_types() {
    let dir = std::env::temp_dir().join(format!("lattice-btf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let object = dir.join("lattice.bpf.o");
    std::fs::write(&object, lattice_agent::dataplane::embedded_object()).unwrap();
    let out = std::process::Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(&object)
        .output()
        .expect("run bpftool (cargo xtask setup installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let btf = String::from_utf8_lossy(&out.stdout);
    for ty in [
        "IfaceCounters",
        "DataplaneConfig",
        "Iface",
        "ListenerKey",
        "Listener",
        "Backend",
        "AccessData",
        "FlowKey",
        "Nat",
        "Traffic",
        "RefusalKey",
        "SockVip",
    ] {
        assert!(
            btf.contains(&format!("STRUCT '{ty}'")),
            "bpftool btf dump shows lattice-common's {ty}"
        );
    }
}
