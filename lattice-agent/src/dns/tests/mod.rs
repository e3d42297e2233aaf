//! Tests of the DNS module, by tier:
//!
//! | file | what | needs |
//! | --- | --- | --- |
//! | `zone.rs` | config -> records, query -> answer, as tables | nothing |
//! | `forward.rs` | resolv.conf, forwarding to a fake resolver on loopback | loopback |
//! | `server.rs` | the request handler, whole DNS messages in and out | loopback |
//!
//! The namespaces, routes and sockets of `serve.rs` are tested end to end
//! (`tests/dns_path.rs`, root).

mod forward;
mod server;
mod zone;

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{rdata::A, Name, RData, Record, RecordType},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, UdpSocket},
};

use crate::resolve::{self, Resolved, Settings};

/// Two networks: shop (vpc-web: orders with a TCP listener and a mixed-case custom
/// name, api with an HTTP listener) and back (vpc-other, account 222: billing); a
/// VPC associated with nothing, and one of host processes only. `{orders}` is the
/// orders service's name, so a test can rename it.
pub(super) const CONFIG: &str = r#"
accounts: [{ id: "111111111111" }, { id: "222222222222" }]
vpcs:
  - { name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{ netns: web-a }, { netns: web-b }] }
  - { name: vpc-other, account: "222222222222", cidr: 10.93.0.0/16, attachments: [{ netns: other }] }
  - { name: vpc-lonely, account: "111111111111", cidr: 10.94.0.0/16, attachments: [{ netns: lonely }] }
  - { name: vpc-hosts, account: "111111111111", cidr: 10.95.0.0/16, attachments: [{ cgroup: lattice/hosts }] }
  - { name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{ netns: orders }] }
serviceNetworks:
  - name: shop
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{ vpc: vpc-web, allowedCidrs: [10.91.0.0/24] }]
    serviceAssociations: [{orders}, api]
  - name: back
    account: "222222222222"
    authType: NONE
    vpcAssociations: [{ vpc: vpc-other }]
    serviceAssociations: [billing]
services:
  - name: {orders}
    account: "111111111111"
    customDomainName: Orders.Shop.Internal
    authType: NONE
    listeners:
      - { name: tcp, protocol: TCP, port: 9000, defaultAction: { forward: { targetGroups: [{ targetGroupIdentifier: orders-tcp }] } } }
  - name: api
    account: "111111111111"
    authType: NONE
    listeners:
      - { name: http, protocol: HTTP, port: 80, defaultAction: { fixedResponse: { statusCode: 404 } } }
  - name: billing
    account: "222222222222"
    customDomainName: billing.corp.internal
    authType: NONE
    listeners:
      - { name: http, protocol: HTTP, port: 80, defaultAction: { fixedResponse: { statusCode: 404 } } }
targetGroups:
  - { name: orders-tcp, type: IP, config: { vpcIdentifier: vpc-orders, protocol: TCP, port: 9000 }, targets: [{ id: 10.92.0.1 }] }
"#;

/// The config with the orders service called `orders`, resolved.
pub(super) fn fixture(orders: &str) -> (crate::config::Config, Resolved) {
    let yaml = CONFIG.replace("{orders}", orders);
    resolve::resolved_for_test(&yaml)
}

/// The zones of [`fixture`].
pub(super) fn zones(orders: &str) -> (crate::dns::Zones, Resolved) {
    let (config, resolved) = fixture(orders);
    (
        crate::dns::Zones::build(&config, &resolved, &Settings::default()),
        resolved,
    )
}

pub(super) fn service<'a>(resolved: &'a Resolved, name: &str) -> &'a resolve::ResolvedService {
    resolved
        .services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

/// What the fake upstream answers for `upstream.example.`.
pub(super) const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// A resolver on loopback (UDP and TCP on one port): `upstream.example.` has an A
/// record, `servfail.example.` fails, every other name is NXDOMAIN. It records the
/// names it was asked.
pub(super) struct FakeUpstream {
    pub addr: SocketAddr,
    pub asked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let udp_task = {
            let asked = Arc::clone(&asked);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                    let answer = fake_answer(&buf[..n], &asked);
                    let _ = udp.send_to(&answer, from).await;
                }
            })
        };
        let tcp_task = {
            let asked = Arc::clone(&asked);
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = tcp.accept().await {
                    let asked = Arc::clone(&asked);
                    tokio::spawn(async move {
                        let mut len = [0u8; 2];
                        if stream.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        let answer = fake_answer(&buf, &asked);
                        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&answer);
                        let _ = stream.write_all(&framed).await;
                    });
                }
            })
        };
        FakeUpstream {
            addr,
            asked,
            tasks: vec![udp_task, tcp_task],
        }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn fake_answer(query: &[u8], asked: &Mutex<Vec<String>>) -> Vec<u8> {
    let query = Message::from_vec(query).expect("the forwarder sends valid queries");
    let question = query.query().expect("one question").clone();
    let name = question.name().to_ascii().to_ascii_lowercase();
    asked.lock().unwrap().push(name.clone());
    let mut answer = Message::new();
    answer
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .add_query(question.clone());
    match name.as_str() {
        "upstream.example." if question.query_type() == RecordType::A => {
            answer.add_answer(Record::from_rdata(
                question.name().clone(),
                300,
                RData::A(A(UPSTREAM_ANSWER)),
            ));
        }
        "upstream.example." => {}
        "servfail.example." => {
            answer.set_response_code(ResponseCode::ServFail);
        }
        _ => {
            answer.set_response_code(ResponseCode::NXDomain);
        }
    }
    answer.to_vec().unwrap()
}

/// `text` as a fully qualified name.
pub(super) fn fqdn(text: &str) -> Name {
    let mut name = Name::from_ascii(text).unwrap();
    name.set_fqdn(true);
    name
}
