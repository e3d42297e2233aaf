//! The L7 side of the agent: HTTP, HTTPS (and gRPC over them) and TLS passthrough
//! listeners.
//!
//! The proxy grows here as a pipeline of named phases, each a module with its own
//! error type, so that a request's fate can be read (and tested) one phase at a time:
//!
//! accept -> TLS/SNI -> listener -> rule -> authn/authz -> target pick -> forward -> log
//!
//! | module | phase | concern |
//! | --- | --- | --- |
//! | [`sites`] | listener | where HTTP, HTTPS and TLS passthrough listeners are served: a socket in each client VPC namespace |
//! | [`tls`] | TLS/SNI | HTTPS termination: each service's certificate by SNI, ALPN |
//! | [`passthrough`] | TLS/SNI, forward | TLS passthrough: the ClientHello's SNI, and splicing to a TCP target |
//! | [`client_hello`] | TLS/SNI | reading a ClientHello's layout and server name without terminating TLS |
//! | [`listen`] | accept | the namespace routing and sockets of the sites |
//! | [`authz`] | authn/authz | the caller (signature, certificate, anonymous), then the network's and the service's auth policies |
//! | [`path`] | rule | the request path in its normal form, which every phase and the target see |
//! | [`route`] | rule, target pick | which rule of a listener takes a request, and which target group of a forward gets it |
//! | [`proxy`] | the pipeline | serving connections, picking targets, forwarding, answering errors |
//! | [`answer`] | forward | the body of the pipeline's answer: the target's, or the proxy's own text |
//! | [`serve`] | accept | starting and stopping sites as namespaces and the config come and go |
//! | [`switch`] | accept | which proxy generation (config) new connections and requests get |
//! | [`balance`] | target pick | round robin or least outstanding requests within a group |
//! | [`upstream`] | forward | the clients of target groups, which connect from the target's namespace |
//! | [`pool`] | forward | HTTP/1.1 connections to targets, kept between requests |
//! | [`mux`] | forward | HTTP/2 connections to targets, one per target, requests multiplexed on it |
//! | [`received`] | forward | the request body on its way to the target, its bytes counted |
//! | [`log`] | log | one access log record per request, with Lattice's fields and the auth decision |
pub mod answer;
pub mod authz;
pub mod balance;
pub mod client_hello;
pub mod listen;
pub mod log;
pub mod mux;
pub mod passthrough;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod received;
pub mod route;
pub mod serve;
pub mod sites;
pub mod switch;
pub mod tls;
pub mod upstream;
