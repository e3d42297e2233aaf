//! Forwarding to targets: pooled HTTP clients whose connections are made inside the
//! target VPC's namespace (or the host's, for VPCs of host cgroups).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpStream;

use crate::{
    config::{Attachment, Config, ProtocolVersion, TargetGroup},
    health::{ConnectError, Connector, HostConnector, NetnsConnector},
};

/// How long a connection to a target may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Why a connection to a target could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{uri} names no target address")]
    BadTarget { uri: String },
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Connects hyper's client from the right namespace.
#[derive(Clone, Debug)]
pub struct NamespaceConnector {
    connector: Arc<dyn Connector>,
}

impl tower_service::Service<Uri> for NamespaceConnector {
    type Response = TokioIo<TcpStream>;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = Arc::clone(&self.connector);
        Box::pin(async move {
            let addr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| UpstreamError::BadTarget {
                    uri: uri.to_string(),
                })?;
            let stream = connector.connect(addr, CONNECT_TIMEOUT).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// A pooled client for one target group.
pub type UpstreamClient = Client<NamespaceConnector, Incoming>;

/// The client of a target group: HTTP/1.1 or HTTP/2 (prior knowledge) as the group's
/// protocol version says, connecting from the group's VPC namespace.
pub fn client_for(config: &Config, group: &TargetGroup) -> UpstreamClient {
    let vpc = config.vpc(group.vpc);
    let connector: Arc<dyn Connector> = match vpc.attachments.iter().find_map(|a| match a {
        Attachment::Netns(ns) => Some(ns.clone()),
        Attachment::Cgroup(_) => None,
    }) {
        Some(ns) => Arc::new(NetnsConnector::new(ns)),
        None => Arc::new(HostConnector),
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(POOL_IDLE);
    if matches!(
        group.protocol_version,
        Some(ProtocolVersion::Http2 | ProtocolVersion::Grpc)
    ) {
        builder.http2_only(true);
    }
    builder.build(NamespaceConnector { connector })
}
