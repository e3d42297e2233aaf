//! The lattice agent: desired state in, kernel maps and an L7 proxy out.
//!
//! | module | concern |
//! | --- | --- |
//! | [`api`] | the control API: Lattice's operations over HTTP/JSON on a root-only socket |
//! | [`accesslog`] | access log destinations: bounded queues and writers that never hold traffic up |
//! | [`auth`] | who calls (SigV4 signatures, mTLS certificates) and the request context of auth policies |
//! | [`config`] | the desired-state document (config-contract.yaml): parse once, validate whole |
//! | [`resolve`] | the resolved model: ids, ARNs, DNS names, virtual IPs |
//! | [`state`] | the agent's state directory: durable, atomically replaced files |
//! | [`live`] | live reconfiguration: a changed document prepared whole, then switched in |
//! | [`dataplane`] | the kernel side: bpffs, loading and pinning the embedded object, counters |
//! | [`dns`] | DNS inside VPC namespaces: service names to VIPs, other names forwarded |
//! | [`flowlog`] | access log records of TCP flows, from the kernel's ring buffer |
//! | [`health`] | active health checks of target groups: target states, selection, probes |
//! | [`l7`] | the L7 proxy as named phases; from the listener to the forward, auth included |
//! | [`metrics`] | Prometheus metrics: the proxy's counters, target health and the kernel's counters |
//! | [`clock`] | wall-clock times as SigV4 and ISO 8601 write them |
//! | [`cli`] | the `lattice-agent` and `lattice` command lines |
#![forbid(unsafe_code)]

pub mod accesslog;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dataplane;
pub mod decimal;
pub mod dns;
pub mod flowlog;
pub mod health;
pub mod l7;
pub mod live;
pub mod metrics;
pub mod percent;
pub mod resolve;
pub mod shard;
pub mod state;
