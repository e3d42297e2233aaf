//! Access log records of TCP flows, end to end: the kernel reports each flow it opens
//! to a logged TCP listener through its ring buffer, and the agent writes the record
//! with the resource-access fields; a listener nobody subscribes to gets none.

mod common;

use std::time::Duration;

use common::{eventually, Agent};
use lattice_tests::{client, EchoServer, Topology};

const TIMEOUT: Duration = Duration::from_secs(20);

fn config(web: &str, db: &str, log: &std::path::Path) -> String {
    format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{{ netns: {web} }}] }}
  - {{ name: vpc-db, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{{ netns: {db} }}] }}
serviceNetworks:
  - {{ name: shop, account: "111111111111", authType: NONE, vpcAssociations: [{{ vpc: vpc-web }}], serviceAssociations: [pgsql, quiet] }}
services:
  - name: pgsql
    account: "111111111111"
    authType: NONE
    listeners: [{{ name: tcp, protocol: TCP, port: 5432, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: pgsql }}] }} }} }}]
  - name: quiet
    account: "111111111111"
    authType: NONE
    listeners: [{{ name: tcp, protocol: TCP, port: 6000, defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: quiet }}] }} }} }}]
targetGroups:
  - {{ name: pgsql, type: IP, config: {{ vpcIdentifier: vpc-db, protocol: TCP, port: 7000 }}, targets: [{{ id: 10.92.0.30 }}] }}
  - {{ name: quiet, type: IP, config: {{ vpcIdentifier: vpc-db, protocol: TCP, port: 7000 }}, targets: [{{ id: 10.92.0.30 }}] }}
accessLogSubscriptions:
  - {{ resource: pgsql, destination: "file:{log}" }}
"#,
        log = log.display()
    )
}

#[test]
fn each_tcp_flow_of_a_logged_listener_gets_a_record() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let db = topo.add_netns("db").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    db.add_addr("lo", "10.92.0.30/32").unwrap();
    let _echo = EchoServer::start(&db, "10.92.0.30:7000".parse().unwrap()).unwrap();
    let files = tempfile::tempdir().unwrap();
    let log = files.path().join("tcp.jsonl");
    let root = topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&config(web.name(), db.name(), &log), &root);
    let pg = agent.vip_addr("pgsql", 5432);
    let quiet = agent.vip_addr("quiet", 6000);
    let shown = agent.show();
    let service_arn = |name: &str| {
        shown["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["arn"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let mut ports = Vec::new();
    for round in 0..3 {
        let s = client::connect(&web, pg, TIMEOUT).expect("connect to pgsql");
        ports.push(s.local_addr().unwrap().port());
        client::echo_exchange(&s, format!("flow {round}").as_bytes(), TIMEOUT).unwrap();
    }
    client::echo_roundtrip(&web, quiet, b"not logged", TIMEOUT).unwrap();

    let records = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    assert!(
        eventually(TIMEOUT, || records().len() >= 3),
        "{:#?}\n{}",
        records(),
        agent.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let records = records();
    assert_eq!(
        records.len(),
        3,
        "one per flow, none for `quiet`: {records:#?}"
    );
    for (r, port) in records.iter().zip(&ports) {
        assert_eq!(r["protocol"], "TCP");
        assert_eq!(r["sourceIpPort"], format!("10.91.0.5:{port}"));
        assert_eq!(r["destinationIpPort"], pg.to_string());
        assert_eq!(r["targetIpPort"], "10.92.0.30:7000");
        assert_eq!(r["serviceArn"], service_arn("pgsql"));
        assert_eq!(r["listenerName"], "tcp");
        for field in [
            "startTime",
            "sourceVpcArn",
            "serviceNetworkArn",
            "targetGroupArn",
            "gatewayIpPort",
        ] {
            assert!(r[field].is_string(), "{field}: {r}");
        }
    }
}
