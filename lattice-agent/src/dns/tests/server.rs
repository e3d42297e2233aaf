//! The request handler with whole DNS messages: encoded queries in, the encoded
//! responses it sends out decoded again.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{rdata::A, DNSClass, RData, Record, RecordType},
    serialize::binary::{BinDecodable as _, BinDecoder, BinEncoder},
    xfer::Protocol,
};
use hickory_server::{
    authority::{MessageRequest, MessageResponse},
    server::{Request, RequestHandler as _, ResponseHandler, ResponseInfo},
};

use super::{fqdn, service, zones, FakeUpstream, UPSTREAM_ANSWER};
use crate::dns::{server::Handler, Forwarder, ZoneSwitch, TTL};

/// Keeps the response the handler sends, encoded as it would go on the wire.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Recorder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> io::Result<ResponseInfo> {
        let mut buf = Vec::new();
        let info = {
            let mut encoder = BinEncoder::new(&mut buf);
            response
                .destructive_emit(&mut encoder)
                .map_err(io::Error::other)?
        };
        *self.0.lock().unwrap() = Some(buf);
        Ok(info)
    }
}

struct Setup {
    switch: ZoneSwitch,
    handler: Handler,
    resolved: crate::resolve::Resolved,
}

fn setup(netns: &str, upstreams: Vec<SocketAddr>) -> Setup {
    let (zones, resolved) = zones("orders");
    let switch = ZoneSwitch::new(zones);
    let handler = Handler::new(
        netns.to_owned(),
        switch.subscribe(),
        Arc::new(Forwarder::with_timeout(
            upstreams,
            Duration::from_millis(300),
        )),
    );
    Setup {
        switch,
        handler,
        resolved,
    }
}

/// A query message as a client sends it.
fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::new();
    m.set_id(4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(fqdn(name), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

async fn ask(handler: &Handler, message: &Message, protocol: Protocol) -> Message {
    let bytes = message.to_vec().unwrap();
    let request = MessageRequest::read(&mut BinDecoder::new(&bytes)).unwrap();
    let request = Request::new(request, "10.91.0.5:40000".parse().unwrap(), protocol);
    let recorder = Recorder::default();
    handler.handle_request(&request, recorder.clone()).await;
    let sent = recorder
        .0
        .lock()
        .unwrap()
        .take()
        .expect("a response was sent");
    Message::from_vec(&sent).unwrap()
}

#[tokio::test]
async fn a_reachable_name_is_its_vip_with_a_short_ttl() {
    let s = setup("web-a", vec![]);
    let orders = service(&s.resolved, "orders");
    // The client's spelling comes back as the owner name.
    let asked = orders.dns_name.to_ascii_uppercase();
    let r = ask(
        &s.handler,
        &query(&asked, RecordType::A, false),
        Protocol::Udp,
    )
    .await;
    assert_eq!(r.id(), 4242);
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.authoritative() && r.recursion_available() && r.recursion_desired());
    assert_eq!(r.answers().len(), 1, "{r}");
    let a = &r.answers()[0];
    assert_eq!(a.name().to_ascii(), format!("{asked}."));
    assert_eq!(a.ttl(), TTL);
    assert_eq!(a.dns_class(), DNSClass::IN);
    assert_eq!(a.data(), &RData::A(A(orders.vip)));
    assert!(r.extensions().is_none(), "no EDNS asked, none answered");

    let r = ask(
        &s.handler,
        &query("orders.shop.internal", RecordType::A, true),
        Protocol::Tcp,
    )
    .await;
    assert_eq!(r.answers()[0].data(), &RData::A(A(orders.vip)));
    assert!(r.extensions().is_some(), "EDNS asked, EDNS answered");
}

#[tokio::test]
async fn aaaa_is_nodata_and_unreachable_names_are_nxdomain_with_the_soa() {
    let s = setup("web-a", vec![]);
    let orders = service(&s.resolved, "orders");
    let r = ask(
        &s.handler,
        &query(&orders.dns_name, RecordType::AAAA, true),
        Protocol::Udp,
    )
    .await;
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.answers().is_empty());
    let soa = &r.name_servers()[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name().to_ascii(), "vpc-lattice-svcs.local.on.lattice.");
    let RData::SOA(data) = soa.data() else {
        panic!("{soa}")
    };
    assert_eq!(data.minimum(), TTL, "negative answers are cached {TTL} s");
    assert_eq!(soa.ttl(), TTL);

    for name in [
        service(&s.resolved, "billing").dns_name.as_str(),
        "billing.corp.internal",
    ] {
        let r = ask(
            &s.handler,
            &query(name, RecordType::A, false),
            Protocol::Udp,
        )
        .await;
        assert_eq!(r.response_code(), ResponseCode::NXDomain, "{name}");
        assert!(r.authoritative());
        assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);
    }
}

#[tokio::test]
async fn other_names_are_forwarded_and_lattice_names_never() {
    let upstream = FakeUpstream::start().await;
    let s = setup("web-a", vec![upstream.addr]);
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let r = ask(
            &s.handler,
            &query("upstream.example", RecordType::A, true),
            protocol,
        )
        .await;
        assert_eq!(r.id(), 4242, "the client's id, not the upstream's");
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(!r.authoritative() && r.recursion_available());
        assert_eq!(r.answers()[0].data(), &RData::A(A(UPSTREAM_ANSWER)));
        assert_eq!(r.answers()[0].ttl(), 300, "the upstream's TTL");
        let r = ask(
            &s.handler,
            &query("gone.example", RecordType::A, false),
            protocol,
        )
        .await;
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
    }
    let billing = service(&s.resolved, "billing").dns_name.clone();
    ask(
        &s.handler,
        &query(&billing, RecordType::A, false),
        Protocol::Udp,
    )
    .await;
    ask(
        &s.handler,
        &query("billing.corp.internal", RecordType::A, false),
        Protocol::Udp,
    )
    .await;
    assert_eq!(
        upstream.asked(),
        [
            "upstream.example.",
            "gone.example.",
            "upstream.example.",
            "gone.example."
        ],
        "lattice's names stay home"
    );
}

#[tokio::test]
async fn no_resolver_is_servfail_at_once() {
    let s = setup("web-a", vec![]);
    let started = Instant::now();
    let r = ask(
        &s.handler,
        &query("example.com", RecordType::A, false),
        Protocol::Udp,
    )
    .await;
    assert_eq!(r.response_code(), ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn a_silent_resolver_is_servfail_after_the_timeout() {
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let s = setup("web-a", vec![silent.local_addr().unwrap()]);
    let started = Instant::now();
    let r = ask(
        &s.handler,
        &query("example.com", RecordType::A, false),
        Protocol::Udp,
    )
    .await;
    assert_eq!(r.response_code(), ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn swapped_zones_answer_from_the_next_query() {
    let s = setup("web-a", vec![]);
    let old = service(&s.resolved, "orders").dns_name.clone();
    let (renamed, resolved) = zones("orders-next");
    let new = service(&resolved, "orders-next");
    s.switch.set(renamed);
    let r = ask(
        &s.handler,
        &query(&old, RecordType::A, false),
        Protocol::Udp,
    )
    .await;
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    let r = ask(
        &s.handler,
        &query(&new.dns_name, RecordType::A, false),
        Protocol::Udp,
    )
    .await;
    assert_eq!(r.answers()[0].data(), &RData::A(A(new.vip)));
    assert_eq!(s.switch.current().serial(), zones("orders-next").0.serial());
}

#[tokio::test]
async fn only_queries_are_served() {
    let s = setup("web-a", vec![]);
    let mut notify = query("orders.shop.internal", RecordType::SOA, false);
    notify.set_op_code(OpCode::Notify);
    let r = ask(&s.handler, &notify, Protocol::Udp).await;
    assert_eq!(r.response_code(), ResponseCode::NotImp);

    let mut ch = query("orders.shop.internal", RecordType::TXT, false);
    ch.queries_mut()[0].set_query_class(DNSClass::CH);
    let r = ask(&s.handler, &ch, Protocol::Udp).await;
    assert_eq!(r.response_code(), ResponseCode::Refused);

    let mut two = query("orders.shop.internal", RecordType::A, false);
    two.add_query(Query::query(fqdn("api.example"), RecordType::A));
    let r = ask(&s.handler, &two, Protocol::Udp).await;
    assert_eq!(r.response_code(), ResponseCode::FormErr);
}
