//! The L7 side of the agent: HTTP, HTTPS and gRPC listeners.
//!
//! The proxy grows here as a pipeline of named phases, each a module with its own
//! error type, so that a request's fate can be read (and tested) one phase at a time:
//!
//! accept -> TLS/SNI -> listener -> rule -> authn/authz -> target pick -> forward -> log
//!
//! | module | phase | concern |
//! | --- | --- | --- |
//! | [`route`] | rule, target pick | which rule of a listener takes a request, and which target group of a forward gets it |
pub mod route;
