//! The DNS request handler of one VPC namespace: lattice's names from the current
//! [`Zones`], everything else through the [`Forwarder`].

use std::{net::Ipv4Addr, sync::Arc};

use hickory_proto::{
    op::{Edns, Header, MessageType, OpCode, ResponseCode},
    rr::{
        rdata::{A, SOA},
        DNSClass, Name, RData, Record,
    },
};
use hickory_server::{
    authority::MessageResponseBuilder,
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
};
use tokio::sync::watch;
use tracing::debug;

use super::{
    forward::{upstream_payload, upstream_query, Forwarder},
    zone::{Answer, Zones, TTL},
};

/// Answers the queries asked inside one VPC namespace.
pub struct Handler {
    netns: String,
    zones: watch::Receiver<Arc<Zones>>,
    forwarder: Arc<Forwarder>,
}

impl Handler {
    pub fn new(
        netns: String,
        zones: watch::Receiver<Arc<Zones>>,
        forwarder: Arc<Forwarder>,
    ) -> Handler {
        Handler {
            netns,
            zones,
            forwarder,
        }
    }
}

/// The EDNS of a response to a request that had EDNS (none otherwise), as hickory's
/// own catalog answers: version 0, the client's payload size (at least 512).
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns().map(|req| {
        let mut edns = Edns::new();
        edns.set_max_payload(req.max_payload().max(512))
            .set_version(0)
            .set_dnssec_ok(req.flags().dnssec_ok);
        edns
    })
}

fn name_of(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// The SOA lattice puts in the authority section of its negative answers (and answers
/// at an apex): every time is [`TTL`], so NXDOMAIN and NODATA are cached no longer
/// than a record.
fn soa(apex: &str, zones: &Zones) -> Option<Record> {
    let owner = name_of(apex)?;
    let mname = name_of(&format!("dns.{}", zones.domain()))?;
    let rname = name_of(&format!("hostmaster.{}", zones.domain()))?;
    let ttl = TTL as i32;
    Some(Record::from_rdata(
        owner,
        TTL,
        RData::SOA(SOA::new(mname, rname, zones.serial(), ttl, ttl, ttl, TTL)),
    ))
}

async fn send<R: ResponseHandler>(
    request: &Request,
    mut response_handle: R,
    header: Header,
    answers: &[Record],
    authority: &[Record],
    additionals: &[Record],
) -> ResponseInfo {
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(edns) = response_edns(request) {
        builder.edns(edns);
    }
    let response = builder.build(header, answers, authority, &[], additionals);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            debug!(error = %e, "sending a DNS response failed");
            let mut header = header;
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        }
    }
}

async fn error<R: ResponseHandler>(
    request: &Request,
    response_handle: R,
    code: ResponseCode,
) -> ResponseInfo {
    let mut header = Header::response_from_request(request.header());
    header.set_response_code(code);
    // Lattice's records are answered by the agent itself; others are recursed.
    header.set_recursion_available(true);
    send(request, response_handle, header, &[], &[], &[]).await
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            return error(request, response_handle, ResponseCode::NotImp).await;
        }
        if request.edns().is_some_and(|e| e.version() > 0) {
            // BADVERS needs the high bits in the OPT record, which `send` adds.
            return error(request, response_handle, ResponseCode::BADVERS).await;
        }
        let [query] = request.queries() else {
            return error(request, response_handle, ResponseCode::FormErr).await;
        };
        let question = query.original();
        let zones = Arc::clone(&self.zones.borrow());
        let answer = zones.answer(
            &self.netns,
            &question.name().to_ascii(),
            question.query_type(),
            question.query_class(),
        );
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let (code, answers, authority) = match &answer {
            Answer::Forward => return self.forward(request, response_handle).await,
            Answer::Refused => return error(request, response_handle, ResponseCode::Refused).await,
            Answer::Address { vip, .. } => (
                ResponseCode::NoError,
                vec![a_record(question.name().clone(), *vip)],
                vec![],
            ),
            Answer::Soa { apex } => (
                ResponseCode::NoError,
                soa(apex, &zones).into_iter().collect(),
                vec![],
            ),
            Answer::NoData { apex } => (
                ResponseCode::NoError,
                vec![],
                soa(apex, &zones).into_iter().collect(),
            ),
            Answer::NxDomain { apex } => (
                ResponseCode::NXDomain,
                vec![],
                soa(apex, &zones).into_iter().collect(),
            ),
        };
        header.set_authoritative(true).set_response_code(code);
        send(request, response_handle, header, &answers, &authority, &[]).await
    }
}

fn a_record(name: Name, vip: Ipv4Addr) -> Record {
    let mut record = Record::from_rdata(name, TTL, RData::A(A(vip)));
    record.set_dns_class(DNSClass::IN);
    record
}

impl Handler {
    /// Asks the host's resolvers and relays their answer (SERVFAIL when none answers).
    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let [query] = request.queries() else {
            return error(request, response_handle, ResponseCode::FormErr).await;
        };
        let tcp = request.protocol().is_stream();
        let upstream = upstream_query(
            query.original().clone(),
            request.recursion_desired(),
            request.checking_disabled(),
            request.edns().is_some_and(|e| e.flags().dnssec_ok),
            upstream_payload(request.edns().map(|e| e.max_payload()), tcp),
        );
        match self.forwarder.forward(&upstream, tcp).await {
            Ok(mut answer) => {
                let mut header = Header::response_from_request(request.header());
                header
                    .set_response_code(answer.response_code())
                    .set_authoritative(answer.authoritative())
                    .set_truncated(answer.truncated())
                    .set_recursion_available(answer.recursion_available())
                    .set_authentic_data(answer.authentic_data());
                let answers = answer.take_answers();
                let authority = answer.take_name_servers();
                let additionals = answer.take_additionals();
                send(
                    request,
                    response_handle,
                    header,
                    &answers,
                    &authority,
                    &additionals,
                )
                .await
            }
            Err(e) => {
                debug!(netns = %self.netns, error = %e, "forwarding a DNS query failed");
                error(request, response_handle, ResponseCode::ServFail).await
            }
        }
    }
}
