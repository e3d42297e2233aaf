//! Packet fixtures for the tc program, run through BPF_PROG_TEST_RUN: for each input
//! packet, the verdict and every byte of the output packet that matters (addresses,
//! ports, MACs, flags, both checksums). Nothing is sent; the maps are programmed the way
//! the agent does it, under the test's own bpffs root.

use std::net::Ipv4Addr;

use lattice_agent::dataplane::conntrack::Conntrack;
use lattice_agent::{
    config,
    dataplane::{
        self,
        compile::{self, GroupPlan, PathSettings},
        Attachment, Dataplane, Programmer,
    },
    resolve,
};
use lattice_common::{
    conntrack::{self, FlowKey, Nat, NatV1},
    vpcs::Iface,
};
use lattice_tests::Topology;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const VIP: Ipv4Addr = Ipv4Addr::new(169, 254, 171, 2);
const AGENT: Ipv4Addr = Ipv4Addr::new(169, 254, 171, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 91, 0, 5);
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(10, 91, 1, 5);
const TARGET: Ipv4Addr = Ipv4Addr::new(10, 92, 0, 30);
const CLIENT_SNAT: Ipv4Addr = Ipv4Addr::new(169, 254, 172, 11);

const CLIENT_MACS: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
const TARGET_MACS: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2]);

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;

fn ne(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

/// One's complement sum of big-endian 16-bit words.
fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn tcp_checksum(ip: &[u8], tcp: &[u8]) -> u16 {
    let pseudo = sum16(&ip[12..20]) + 6 + tcp.len() as u32;
    fold(pseudo + sum16(tcp))
}

/// An Ethernet/IPv4/TCP packet with correct checksums.
fn tcp_packet(
    macs: ([u8; 6], [u8; 6]),
    (saddr, sport): (Ipv4Addr, u16),
    (daddr, dport): (Ipv4Addr, u16),
    flags: u8,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&macs.1); // to the host end
    p.extend_from_slice(&macs.0);
    p.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 20 + payload.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ];
    ip.extend_from_slice(&saddr.octets());
    ip.extend_from_slice(&daddr.octets());
    let c = fold(sum16(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    let c = tcp_checksum(&ip, &tcp);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    p.extend_from_slice(&tcp);
    p
}

/// The fields of an output packet, with its checksums checked.
#[derive(Debug, PartialEq)]
struct Out {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    ack: u32,
}

fn decode(p: &[u8]) -> Out {
    let ip = &p[14..34];
    let tcp = &p[34..];
    assert_eq!(fold(sum16(ip)), 0, "IP header checksum of {p:02x?}");
    assert_eq!(tcp_checksum(ip, tcp), 0, "TCP checksum of {p:02x?}");
    Out {
        dst_mac: p[0..6].try_into().unwrap(),
        src_mac: p[6..12].try_into().unwrap(),
        saddr: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        daddr: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        flags: tcp[13],
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
    }
}

/// Where the fixtures run: three interfaces of a test namespace standing for the
/// client VPC's, the target VPC's and an unassociated VPC's links.
struct Fixture {
    root: std::path::PathBuf,
    dp: Dataplane,
    programmer: Programmer,
    snapshot: compile::Snapshot,
    attachments: Vec<Attachment>,
    client_if: u32,
    target_if: u32,
    other_if: u32,
    unowned_if: u32,
}

fn setup(topo: &mut Topology, ns: &lattice_tests::Netns) -> Fixture {
    for (a, b) in [("c0", "c1"), ("t0", "t1"), ("o0", "o1")] {
        ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b])
            .unwrap();
    }
    let index = |name: &str| {
        ns.run(|| nix::net::if_::if_nametoindex(name))
            .unwrap()
            .unwrap()
    };
    let (client_if, target_if, other_if, unowned_if) =
        (index("c0"), index("t0"), index("o0"), index("c1"));
    let root = topo.bpffs_root("fx").unwrap();
    let mut dp = Dataplane::load(&root).expect("load the object");
    let settings = PathSettings {
        vip_pool: "169.254.171.0/24".parse().unwrap(),
        agent_addr: AGENT,
        snat_pool: "169.254.172.0/22".parse().unwrap(),
    };
    dp.write_config(&settings).unwrap();
    // The maps are programmed from a real document, compiled as the agent does it.
    let yaml = format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16 }}
  - {{ name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16 }}
  - {{ name: vpc-other, account: "111111111111", cidr: 10.93.0.0/16 }}
serviceNetworks:
  - name: shop
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{{ vpc: vpc-web, allowedCidrs: [10.91.0.0/24] }}]
    serviceAssociations: [db-svc]
services:
  - name: db-svc
    account: "111111111111"
    authType: NONE
    listeners:
      - name: pg
        protocol: TCP
        port: 5432
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: db-tg, weight: 100 }}] }} }}
      - name: pg-pool
        protocol: TCP
        port: 6432
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: db-tg, weight: 100 }}] }} }}
targetGroups:
  - name: db-tg
    type: IP
    config: {{ vpcIdentifier: vpc-orders, protocol: TCP, port: 5432 }}
    targets: [{{ id: {TARGET} }}]
"#
    );
    let config = config::parse_str(&yaml, std::path::Path::new("fixture.yaml")).expect("valid");
    let resolved = resolve::resolve(
        &config,
        &resolve::Settings::default(),
        &mut resolve::VipAllocations::default(),
    )
    .expect("resolves");
    assert_eq!(resolved.services[0].vip, VIP);
    assert_eq!(resolved.agent_address, AGENT);
    let snapshot = compile::compile(&config, &resolved, &settings);
    let key = |name: &str| snapshot.vpcs.iter().find(|v| v.name == name).unwrap().key;
    let (client_vpc, target_vpc, other_vpc) = (key("vpc-web"), key("vpc-orders"), key("vpc-other"));
    for (ifindex, vpc, macs, snat) in [
        (client_if, client_vpc, CLIENT_MACS, CLIENT_SNAT),
        (
            target_if,
            target_vpc,
            TARGET_MACS,
            Ipv4Addr::new(169, 254, 172, 22),
        ),
        (
            other_if,
            other_vpc,
            CLIENT_MACS,
            Ipv4Addr::new(169, 254, 172, 33),
        ),
    ] {
        let iface = Iface {
            vpc,
            snat_addr: ne(snat),
            host_mac: macs.0,
            peer_mac: macs.1,
        };
        dp.set_interface(ifindex, iface).unwrap();
    }
    let attachments = vec![Attachment {
        vpc: target_vpc,
        netns: ns.name().into(),
        // The programmer does not read it.
        netns_inode: 0,
        host_link: "t0".into(),
        ifindex: target_if,
        vpc_addr: TARGET,
        addresses: vec![TARGET],
    }];
    let mut programmer = Programmer::adopt(&mut dp).unwrap();
    programmer
        .apply(&mut dp, &snapshot, &attachments, &|g: &GroupPlan| {
            g.targets.clone()
        })
        .expect("program the maps");
    Fixture {
        root,
        dp,
        programmer,
        snapshot,
        attachments,
        client_if,
        target_if,
        other_if,
        unowned_if,
    }
}

#[test]
fn tc_ingress_packet_fixtures() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let ns = topo.add_netns("fx").unwrap();
    let mut fx = setup(&mut topo, &ns);
    let (client_if, target_if, other_if, unowned_if) =
        (fx.client_if, fx.target_if, fx.other_if, fx.unowned_if);
    let run = |fx: &mut Fixture, packet: &[u8], ifindex: u32| {
        ns.run(|| fx.dp.run_tc_ingress(packet, ifindex))
            .unwrap()
            .expect("BPF_PROG_TEST_RUN")
    };

    // 1. A SYN to the VIP from an allowed source: translated to the target (full NAT),
    //    framed for the target VPC's link, redirected.
    let syn = tcp_packet(CLIENT_MACS, (CLIENT, 40000), (VIP, 5432), SYN, 1000, b"");
    let (verdict, out) = run(&mut fx, &syn, client_if);
    assert_eq!(verdict, TC_ACT_REDIRECT, "SYN to the VIP");
    let out = decode(&out);
    assert_eq!(
        (out.saddr, out.sport, out.daddr, out.dport),
        (CLIENT_SNAT, 40000, TARGET, 5432),
        "SYN translated"
    );
    assert_eq!(
        (out.src_mac, out.dst_mac),
        TARGET_MACS,
        "framed for the target's link"
    );

    // 2. Data of the same flow takes the same translation, payload intact.
    let data = tcp_packet(
        CLIENT_MACS,
        (CLIENT, 40000),
        (VIP, 5432),
        PSH | ACK,
        1001,
        b"hello",
    );
    let (verdict, raw) = run(&mut fx, &data, client_if);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&raw[54..], b"hello");
    let out = decode(&raw);
    assert_eq!((out.daddr, out.dport), (TARGET, 5432));

    // 3. The target's reply comes back as the VIP, to the client, on the client's link.
    let reply = tcp_packet(
        TARGET_MACS,
        (TARGET, 5432),
        (CLIENT_SNAT, 40000),
        SYN | ACK,
        7,
        b"",
    );
    let (verdict, out) = run(&mut fx, &reply, target_if);
    assert_eq!(verdict, TC_ACT_REDIRECT, "reply");
    let out = decode(&out);
    assert_eq!(
        (out.saddr, out.sport, out.daddr, out.dport),
        (VIP, 5432, CLIENT, 40000),
        "reply reverse-translated"
    );
    assert_eq!((out.src_mac, out.dst_mac), CLIENT_MACS);

    // 4-6. Refused SYNs are answered with a RST+ACK to the sender, acknowledging the SYN.
    let refused = [
        ("outside allowedCidrs", client_if, OUTSIDER, 5432),
        ("unassociated VPC", other_if, CLIENT, 5432),
        ("no listener on that port", client_if, CLIENT, 1234),
    ];
    for (what, ifindex, source, port) in refused {
        let syn = tcp_packet(CLIENT_MACS, (source, 40001), (VIP, port), SYN, 5000, b"");
        let (verdict, raw) = run(&mut fx, &syn, ifindex);
        assert_eq!(verdict, TC_ACT_REDIRECT, "{what}: the RST is sent back");
        assert_eq!(raw.len(), 54, "{what}: a bare RST");
        let out = decode(&raw);
        assert_eq!(
            out,
            Out {
                dst_mac: CLIENT_MACS.0,
                src_mac: CLIENT_MACS.1,
                saddr: VIP,
                daddr: source,
                sport: port,
                dport: 40001,
                flags: RST | ACK,
                ack: 5001,
            },
            "{what}"
        );
    }

    // 7-11. Everything else.
    let non_syn = tcp_packet(CLIENT_MACS, (CLIENT, 40002), (VIP, 5432), ACK, 1, b"");
    assert_eq!(
        run(&mut fx, &non_syn, other_if).0,
        TC_ACT_SHOT,
        "refused non-SYN: dropped"
    );
    let elsewhere = tcp_packet(
        CLIENT_MACS,
        (CLIENT, 40003),
        (Ipv4Addr::new(10, 1, 2, 3), 80),
        SYN,
        1,
        b"",
    );
    assert_eq!(
        run(&mut fx, &elsewhere, client_if).0,
        TC_ACT_SHOT,
        "no path into the host's networks"
    );
    let to_agent = tcp_packet(CLIENT_MACS, (CLIENT, 40004), (AGENT, 53), SYN, 1, b"");
    assert_eq!(
        run(&mut fx, &to_agent, client_if).0,
        TC_ACT_OK,
        "the agent's address is reachable"
    );
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MACS.1);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    assert_eq!(run(&mut fx, &arp, client_if).0, TC_ACT_OK, "ARP passes");
    let (verdict, out) = run(&mut fx, &syn, unowned_if);
    assert_eq!(
        (verdict, out),
        (TC_ACT_OK, syn.clone()),
        "not lattice's interface: untouched"
    );

    // 12. The client's ports of flow 1, now to the service's other listener (same
    //     target): another SNAT port, and flow 1's replies still come from its own
    //     listener's port.
    let other_listener = tcp_packet(CLIENT_MACS, (CLIENT, 40000), (VIP, 6432), SYN, 2000, b"");
    let (verdict, out) = run(&mut fx, &other_listener, client_if);
    assert_eq!(verdict, TC_ACT_REDIRECT, "SYN to the other listener");
    let out = decode(&out);
    assert_eq!(
        (out.saddr, out.daddr, out.dport),
        (CLIENT_SNAT, TARGET, 5432)
    );
    assert_ne!(out.sport, 40000, "not flow 1's tuple at the target");
    let (_, out) = run(&mut fx, &reply, target_if);
    let out = decode(&out);
    assert_eq!(
        (out.saddr, out.sport, out.daddr, out.dport),
        (VIP, 5432, CLIENT, 40000),
        "flow 1's replies unchanged"
    );

    // 13. The target leaves the slot tables (it failed its checks): a new connection on
    //     flow 1's ports is picked again, and refused, not sent to it.
    let Fixture {
        dp,
        programmer,
        snapshot,
        attachments,
        ..
    } = &mut fx;
    programmer
        .apply(dp, snapshot, attachments, &|_: &GroupPlan| Vec::new())
        .expect("program the maps");
    let (verdict, raw) = run(&mut fx, &syn, client_if);
    assert_eq!(verdict, TC_ACT_REDIRECT, "the RST is sent back");
    let out = decode(&raw);
    assert_eq!(
        (out.flags, out.daddr, out.dport),
        (RST | ACK, CLIENT, 40000),
        "a new connection to a listener without usable targets is refused"
    );
}

/// The pinned conntrack map, as bpftool would show it.
fn conntrack(root: &std::path::Path) -> aya::maps::HashMap<aya::maps::MapData, FlowKey, Nat> {
    let data = aya::maps::MapData::from_pin(root.join(conntrack::CT_MAP)).expect("pinned");
    aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(data)).expect("typed")
}

fn flow_key(vpc: u32, (saddr, sport): (Ipv4Addr, u16), (daddr, dport): (Ipv4Addr, u16)) -> FlowKey {
    FlowKey {
        vpc,
        saddr: ne(saddr),
        daddr: ne(daddr),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: 6,
        _pad: [0; 3],
    }
}

/// Moves a flow's entries `secs` into the past, as if that long went by.
fn age(root: &std::path::Path, keys: &[FlowKey], secs: u64) {
    let mut ct = conntrack(root);
    for key in keys {
        let mut nat = ct.get(key, 0).expect("the entry to age");
        nat.last_seen -= secs * 1_000_000_000;
        ct.insert(key, nat, 0).unwrap();
    }
}

#[test]
fn conntrack_flows_expire_and_give_their_ports_up() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let ns = topo.add_netns("ct").unwrap();
    let mut fx = setup(&mut topo, &ns);
    let (client_if, target_if) = (fx.client_if, fx.target_if);
    let root = fx.root.clone();
    let vpc_of = |name: &str| {
        fx.snapshot
            .vpcs
            .iter()
            .find(|v| v.name == name)
            .unwrap()
            .key
    };
    let (client_vpc, target_vpc) = (vpc_of("vpc-web"), vpc_of("vpc-orders"));
    let run = |fx: &mut Fixture, packet: &[u8], ifindex: u32| {
        ns.run(|| fx.dp.run_tc_ingress(packet, ifindex))
            .unwrap()
            .expect("BPF_PROG_TEST_RUN")
    };
    let mut sweeper = Conntrack::open(&root).expect("open the conntrack map");
    let ct = conntrack(&root);
    const S: u64 = 1_000_000_000;
    // A client's packet to the listener, and the target's to a client's SNAT port.
    let to_vip = |client: Ipv4Addr, port: u16, flags: u8| {
        tcp_packet(CLIENT_MACS, (client, port), (VIP, 5432), flags, 1, b"")
    };
    let to_snat = |port: u16, flags: u8| {
        tcp_packet(
            TARGET_MACS,
            (TARGET, 5432),
            (CLIENT_SNAT, port),
            flags,
            7,
            b"",
        )
    };

    // 1. A flow opens: two entries, the forward one seen, the reply one not yet.
    let forward = flow_key(client_vpc, (CLIENT, 41000), (VIP, 5432));
    let reply = flow_key(target_vpc, (TARGET, 5432), (CLIENT_SNAT, 41000));
    assert_eq!(
        run(&mut fx, &to_vip(CLIENT, 41000, SYN), client_if).0,
        TC_ACT_REDIRECT
    );
    let (f, r) = (ct.get(&forward, 0).unwrap(), ct.get(&reply, 0).unwrap());
    assert_eq!((f.flags, r.flags), (Nat::SEEN, Nat::REPLY));
    assert_eq!(
        (f.partner(), r.partner()),
        (reply, forward),
        "each names the other"
    );
    let opened = f.last_seen;
    assert!(opened > 0 && r.last_seen == opened);

    // 2. An unanswered SYN is over after 60 s, not before.
    assert_eq!(sweeper.sweep(opened + 59 * S).unwrap().deleted, 0);
    assert_eq!(sweeper.sweep(opened + 61 * S).unwrap().deleted, 2);
    assert!(ct.get(&forward, 0).is_err() && ct.get(&reply, 0).is_err());

    // 3. Answered, it lasts while idle; closed both ways, it is over 10 s later.
    let packets = [
        (client_if, to_vip(CLIENT, 41000, SYN)),
        (target_if, to_snat(41000, SYN | ACK)),
        (client_if, to_vip(CLIENT, 41000, ACK)),
    ];
    for (ifindex, packet) in &packets {
        assert_eq!(run(&mut fx, packet, *ifindex).0, TC_ACT_REDIRECT);
    }
    let now = dataplane::conntrack::kernel_now_ns();
    assert_eq!(
        sweeper.sweep(now + 3600 * S).unwrap().deleted,
        0,
        "idle an hour"
    );
    assert_eq!(ct.get(&reply, 0).unwrap().flags, Nat::REPLY | Nat::SEEN);
    let closing = [
        (client_if, to_vip(CLIENT, 41000, FIN | ACK)),
        (target_if, to_snat(41000, FIN | ACK)),
    ];
    for (ifindex, packet) in &closing {
        assert_eq!(run(&mut fx, packet, *ifindex).0, TC_ACT_REDIRECT);
    }
    assert_eq!(ct.get(&forward, 0).unwrap().flags, Nat::SEEN | Nat::FIN);
    assert_eq!(sweeper.sweep(now + 9 * S).unwrap().deleted, 0, "closing");
    assert_eq!(sweeper.sweep(now + 11 * S).unwrap().deleted, 2, "closed");

    // 4. Another client on the same ports meets a live flow's SNAT port: it takes
    //    another. Once the first flow is reset and 10 s old, it takes the port over,
    //    and the old flow's forward entry goes.
    let neighbour = Ipv4Addr::new(10, 91, 0, 6);
    assert_eq!(
        run(&mut fx, &to_vip(CLIENT, 41001, SYN), client_if).0,
        TC_ACT_REDIRECT
    );
    let answer = to_snat(41001, SYN | ACK);
    assert_eq!(run(&mut fx, &answer, target_if).0, TC_ACT_REDIRECT);
    let second = to_vip(neighbour, 41001, SYN);
    let (verdict, out) = run(&mut fx, &second, client_if);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let hashed_port = decode(&out).sport;
    assert_ne!(hashed_port, 41001, "a live flow keeps its port");
    let hashed_reply = flow_key(target_vpc, (TARGET, 5432), (CLIENT_SNAT, hashed_port));
    assert!(ct.get(&hashed_reply, 0).is_ok());
    assert_eq!(
        run(&mut fx, &to_vip(CLIENT, 41001, RST), client_if).0,
        TC_ACT_REDIRECT
    );
    let first_forward = flow_key(client_vpc, (CLIENT, 41001), (VIP, 5432));
    let first_reply = flow_key(target_vpc, (TARGET, 5432), (CLIENT_SNAT, 41001));
    age(&root, &[first_forward, first_reply], 11);
    // The neighbour's SYN again (a new connection on its ports): picked afresh.
    let (verdict, out) = run(&mut fx, &second, client_if);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(decode(&out).sport, 41001, "the port of a flow that is over");
    assert!(
        ct.get(&first_forward, 0).is_err(),
        "the old flow's forward entry is gone"
    );
    assert!(
        ct.get(&hashed_reply, 0).is_err(),
        "the neighbour's previous flow went whole: no reply entry is left to pair with \
         the new one"
    );
    let out = decode(&run(&mut fx, &answer, target_if).1);
    assert_eq!(
        (out.daddr, out.dport),
        (neighbour, 41001),
        "replies reach the new client"
    );
}

#[test]
fn an_older_conntrack_layouts_flows_are_carried_over() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let ns = topo.add_netns("ctv1").unwrap();
    let mut fx = setup(&mut topo, &ns);
    let root = fx.root.clone();
    let client_vpc = fx
        .snapshot
        .vpcs
        .iter()
        .find(|v| v.name == "vpc-web")
        .unwrap()
        .key;
    let target_vpc = fx
        .snapshot
        .vpcs
        .iter()
        .find(|v| v.name == "vpc-orders")
        .unwrap()
        .key;

    // The map an agent before expiry left pinned, holding one open flow.
    let old_pin = root.join(conntrack::CT_MAP_V1);
    let status = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&old_pin)
        .args([
            "type", "lru_hash", "key", "20", "value", "28", "entries", "1024",
        ])
        .args(["name", "LT_CT_V1"])
        .status()
        .expect("bpftool");
    assert!(status.success(), "bpftool map create");
    let data = aya::maps::MapData::from_pin(&old_pin).unwrap();
    let mut old: aya::maps::HashMap<_, FlowKey, NatV1> =
        aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(data)).unwrap();
    let forward = flow_key(client_vpc, (CLIENT, 42000), (VIP, 5432));
    let reply = flow_key(target_vpc, (TARGET, 5432), (CLIENT_SNAT, 42000));
    let forward_nat = NatV1 {
        saddr: ne(CLIENT_SNAT),
        daddr: ne(TARGET),
        sport: 42000u16.to_be(),
        dport: 5432u16.to_be(),
        ifindex: fx.target_if,
        listener: 0,
        backend: 1,
        flags: 0,
    };
    let reply_nat = NatV1 {
        saddr: ne(VIP),
        daddr: ne(CLIENT),
        sport: 5432u16.to_be(),
        dport: 42000u16.to_be(),
        ifindex: fx.client_if,
        flags: Nat::REPLY,
        ..forward_nat
    };
    old.insert(forward, forward_nat, 0).unwrap();
    old.insert(reply, reply_nat, 0).unwrap();
    // A flow on a link that is gone cannot be carried.
    let stale = flow_key(client_vpc, (CLIENT, 42001), (VIP, 5432));
    old.insert(
        stale,
        NatV1 {
            ifindex: 999_999,
            ..forward_nat
        },
        0,
    )
    .unwrap();
    // A flow that carries nothing after the upgrade (most of an old map: it never
    // deleted a flow).
    let quiet = flow_key(client_vpc, (CLIENT, 42002), (VIP, 5432));
    let quiet_nat = NatV1 {
        sport: 42002u16.to_be(),
        ..forward_nat
    };
    old.insert(quiet, quiet_nat, 0).unwrap();
    drop(old);

    let mut sweeper = Conntrack::open(&root).unwrap();
    let now = dataplane::conntrack::kernel_now_ns();
    assert_eq!(sweeper.carry_over_v1(now).unwrap(), Some(3));
    assert_eq!(
        sweeper.carry_over_v1(now).unwrap(),
        Some(0),
        "carried again (once the programs are replaced), nothing is overwritten"
    );
    sweeper.retire_v1().unwrap();
    assert!(!old_pin.exists(), "the old pin is removed");
    assert_eq!(sweeper.carry_over_v1(now).unwrap(), None);
    assert_eq!(sweeper.carry_over_v1(now).unwrap(), None, "only once");
    let ct = conntrack(&root);
    let carried = ct.get(&reply, 0).unwrap();
    let backdated = now - (conntrack::IDLE_TIMEOUT_NS - conntrack::CARRIED_GRACE_NS);
    assert_eq!(
        (carried.vpc, carried.flags, carried.last_seen),
        (client_vpc, Nat::REPLY | Nat::SEEN, backdated)
    );
    assert_eq!(
        carried.partner(),
        forward,
        "the carried entries name each other"
    );

    // The carried flow goes on: its data and its replies are translated as before.
    let data = tcp_packet(CLIENT_MACS, (CLIENT, 42000), (VIP, 5432), ACK, 5, b"x");
    let (verdict, out) = ns
        .run(|| fx.dp.run_tc_ingress(&data, fx.client_if))
        .unwrap()
        .unwrap();
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let out = decode(&out);
    assert_eq!(
        (out.saddr, out.sport, out.daddr),
        (CLIENT_SNAT, 42000, TARGET)
    );
    let answer = tcp_packet(
        TARGET_MACS,
        (TARGET, 5432),
        (CLIENT_SNAT, 42000),
        ACK,
        9,
        b"y",
    );
    let (_, out) = ns
        .run(|| fx.dp.run_tc_ingress(&answer, fx.target_if))
        .unwrap()
        .unwrap();
    let out = decode(&out);
    assert_eq!(
        (out.saddr, out.sport, out.daddr, out.dport),
        (VIP, 5432, CLIENT, 42000)
    );
    // Its packets refreshed it: to the sweep it is an established flow, which ten
    // minutes idle do not end. The carried flow that saw no packet is over by then.
    let after_grace = now + conntrack::CARRIED_GRACE_NS + 1_000_000_000;
    assert_eq!(sweeper.sweep(after_grace).unwrap().deleted, 1);
    assert!(ct.get(&quiet, 0).is_err(), "the quiet flow is over");
    assert!(ct.get(&forward, 0).is_ok() && ct.get(&reply, 0).is_ok());
}
