//! gRPC through an HTTP listener: a tonic client in a client VPC namespace, a gRPC
//! target (HTTP/2, trailers) in another VPC's namespace, all four call kinds.

mod common;

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use common::Agent;
use http::{uri::PathAndQuery, HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{combinators::BoxBody, BodyExt as _, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lattice_agent::health::{ConnectError, Connector, NetnsConnector};
use lattice_tests::{Netns, Topology};
use tokio_stream::{wrappers::ReceiverStream, StreamExt as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const TIMEOUT: Duration = Duration::from_secs(20);
const TARGET: &str = "10.92.0.40:50051";

/// Raw bytes as gRPC messages: no code generation needed.
#[derive(Clone, Copy, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;
    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The tonic channel's connections, made inside the client's namespace.
#[derive(Clone)]
struct InNetns(Arc<NetnsConnector>);

impl tower_service::Service<Uri> for InNetns {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = Arc::clone(&self.0);
        Box::pin(async move {
            let addr: SocketAddr = uri.authority().unwrap().as_str().parse().unwrap();
            Ok(TokioIo::new(connector.connect(addr, TIMEOUT).await?))
        })
    }
}

fn frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// A gRPC target: `/echo.Echo/Unary` answers `echo:<msg>`, `Authority` the `:authority`
/// and `host` the call came with, `ServerStream` answers each
/// message three times, `ClientStream` answers once with all messages joined, `Bidi`
/// echoes each message as it arrives. Trailers carry grpc-status 0. Like gRPC's C core
/// (the servers of grpcio, C++, Ruby, PHP), it refuses a call without `te: trailers`,
/// which the gRPC protocol has clients send "to detect incompatible proxies".
async fn grpc_target(
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    if req.headers().get("te").map(HeaderValue::as_bytes) != Some(b"trailers") {
        return Ok(Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "13")
            .header("grpc-message", "Missing te header")
            .body(http_body_util::Empty::new().boxed())
            .unwrap());
    }
    let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
    // `Authority` answers with the `:authority` and the `host` header it was sent.
    let seen = format!(
        "{} host={:?}",
        req.uri().authority().map_or("-", |a| a.as_str()),
        req.headers().get("host"),
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Frame<Bytes>>(16);
    let mut body = req.into_body();
    tokio::spawn(async move {
        let mut pending = BytesMut::new();
        let mut joined = Vec::new();
        while let Some(Ok(f)) = body.frame().await {
            let Ok(data) = f.into_data() else { continue };
            pending.extend_from_slice(&data);
            while pending.len() >= 5 {
                let len = u32::from_be_bytes(pending[1..5].try_into().unwrap()) as usize;
                if pending.len() < 5 + len {
                    break;
                }
                let message = pending.split_to(5 + len).split_off(5);
                let replies: Vec<Vec<u8>> = match method.as_str() {
                    "Unary" => vec![[b"echo:", &message[..]].concat()],
                    "Authority" => vec![seen.clone().into_bytes()],
                    "ServerStream" => vec![message.to_vec(); 3],
                    "ClientStream" => {
                        joined.extend_from_slice(&message);
                        vec![]
                    }
                    _ => vec![message.to_vec()],
                };
                for r in replies {
                    let _ = tx.send(Frame::data(frame(&r))).await;
                }
            }
        }
        if method == "ClientStream" {
            let _ = tx.send(Frame::data(frame(&joined))).await;
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let _ = tx.send(Frame::trailers(trailers)).await;
    });
    let body = StreamBody::new(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(body.boxed())
        .unwrap())
}

fn start_target(ns: &Netns, rt: &tokio::runtime::Runtime) {
    let listener = ns
        .run(|| std::net::TcpListener::bind(TARGET))
        .unwrap()
        .expect("bind the gRPC target");
    listener.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(stream),
                        hyper::service::service_fn(grpc_target),
                    )
                    .await;
            });
        }
    });
}

#[test]
fn grpc_unary_and_streaming_through_the_vip() {
    let mut topo = Topology::new().expect("topology (needs root)");
    let web = topo.add_netns("web").unwrap();
    let orders = topo.add_netns("orders").unwrap();
    web.add_addr("lo", "10.91.0.5/32").unwrap();
    orders.add_addr("lo", "10.92.0.40/32").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    start_target(&orders, &rt);
    let yaml = format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{{ netns: {web} }}] }}
  - {{ name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{{ netns: {orders} }}] }}
serviceNetworks:
  - {{ name: shop, account: "111111111111", authType: NONE, vpcAssociations: [{{ vpc: vpc-web }}], serviceAssociations: [rpc] }}
services:
  - name: rpc
    account: "111111111111"
    authType: NONE
    listeners:
      - name: grpc
        protocol: HTTP
        port: 80
        defaultAction: {{ forward: {{ targetGroups: [{{ targetGroupIdentifier: echo-grpc }}] }} }}
targetGroups:
  - name: echo-grpc
    type: IP
    config:
      vpcIdentifier: vpc-orders
      protocol: HTTP
      protocolVersion: GRPC
      port: 50051
      healthCheck: {{ enabled: true, protocolVersion: HTTP2, path: /healthz, healthCheckIntervalSeconds: 5 }}
    targets: [{{ id: 10.92.0.40 }}]
"#,
        web = web.name(),
        orders = orders.name(),
    );
    let root = topo.bpffs_root("agent").unwrap();
    let agent = Agent::start(&yaml, &root);
    let vip = agent.vip("rpc");
    // The HTTP/2 health check passes against the gRPC target.
    let healthy = || agent.target_status("10.92.0.40") == "HEALTHY";
    assert!(
        common::eventually(Duration::from_secs(12), healthy),
        "HTTP/2 health check:\n{}",
        agent.log()
    );

    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{vip}:80"))
            .unwrap()
            .connect_with_connector(InNetns(Arc::new(NetnsConnector::new(web.name()))))
            .await
            .expect("h2c connection to the VIP");
        let mut grpc = tonic::client::Grpc::new(channel);
        let path = |m: &'static str| PathAndQuery::from_static(m);

        grpc.ready().await.unwrap();
        let unary = grpc
            .unary(
                tonic::Request::new(Bytes::from_static(b"ping")),
                path("/echo.Echo/Unary"),
                BytesCodec,
            )
            .await
            .expect("unary");
        assert_eq!(unary.into_inner(), Bytes::from_static(b"echo:ping"));
        // The target is asked for what the client asked for (RFC 9113 8.3.1), not for
        // its own address, and the name comes once.
        grpc.ready().await.unwrap();
        let seen = grpc
            .unary(
                tonic::Request::new(Bytes::from_static(b"?")),
                path("/echo.Echo/Authority"),
                BytesCodec,
            )
            .await
            .expect("authority")
            .into_inner();
        assert_eq!(
            String::from_utf8_lossy(&seen),
            format!("{vip}:80 host=None")
        );

        grpc.ready().await.unwrap();
        let mut stream = grpc
            .server_streaming(
                tonic::Request::new(Bytes::from_static(b"x")),
                path("/echo.Echo/ServerStream"),
                BytesCodec,
            )
            .await
            .expect("server streaming")
            .into_inner();
        let mut got = Vec::new();
        while let Some(m) = stream.message().await.expect("stream message") {
            got.push(m);
        }
        assert_eq!(got.len(), 3, "{got:?}");

        grpc.ready().await.unwrap();
        let parts = tokio_stream::iter(["a", "b", "c"].map(|s| Bytes::from_static(s.as_bytes())));
        let joined = grpc
            .client_streaming(
                tonic::Request::new(parts),
                path("/echo.Echo/ClientStream"),
                BytesCodec,
            )
            .await
            .expect("client streaming");
        assert_eq!(joined.into_inner(), Bytes::from_static(b"abc"));

        grpc.ready().await.unwrap();
        let messages: Vec<Bytes> = (0..50)
            .map(|i| Bytes::from(format!("message {i}")))
            .collect();
        let mut echoed = grpc
            .streaming(
                tonic::Request::new(tokio_stream::iter(messages.clone())),
                path("/echo.Echo/Bidi"),
                BytesCodec,
            )
            .await
            .expect("bidirectional streaming")
            .into_inner();
        let mut back = Vec::new();
        while let Some(m) = echoed.message().await.expect("bidi message") {
            back.push(m);
        }
        assert_eq!(
            back, messages,
            "every message echoed, in order, then grpc-status 0"
        );
    });
}
