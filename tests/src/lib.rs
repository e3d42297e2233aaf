//! Shared helpers of lattice's end-to-end tests: a [`Topology`] of network namespaces,
//! veth pairs and cgroups that removes itself on drop (also on panic), code and programs
//! run inside a namespace, tiny echo and HTTP backends, blocking clients, and a sweep of
//! what crashed runs left behind.
//!
//! Safety on a shared machine: every object created here is named with a unique
//! [`names::Tag`] (`ltt<pid>_<n>`), only such objects are ever changed or removed, the
//! host gets nothing but veth ends with such names, and the only cgroups touched are
//! test cgroups (their processes are moved to the parent on removal). Everything here
//! needs root and fails with an error saying so rather than skipping.
//!
//! ```no_run
//! use std::time::Duration;
//! use lattice_tests::{client, EchoServer, Topology};
//!
//! let mut topo = Topology::new()?;
//! let server_ns = topo.add_netns("server")?;
//! let client_ns = topo.add_netns("client")?;
//! topo.add_veth_between(&server_ns, "eth0", &client_ns, "eth0")?;
//! server_ns.add_addr("eth0", "10.0.0.1/24")?;
//! client_ns.add_addr("eth0", "10.0.0.2/24")?;
//! let echo = EchoServer::start(&server_ns, "10.0.0.1:7".parse()?)?;
//! client::echo_roundtrip(&client_ns, echo.addr(), b"hello", Duration::from_secs(5))?;
//! # Ok::<(), anyhow::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod bpffs;
pub mod cgroup;
pub mod client;
pub mod cmd;
mod http1;
pub mod link;
pub mod names;
pub mod netns;
pub mod pki;
pub mod server;
pub mod sigv4;
pub mod sweep;
pub mod topology;

pub use cgroup::Cgroup;
pub use link::HostLink;
pub use netns::Netns;
pub use pki::Pki;
pub use server::{EchoServer, HttpServer};
pub use sweep::sweep;
pub use topology::{Topology, TopologyError};

/// `error: cause: cause ...` on one line, for messages printed where an error cannot be
/// returned (drop, background threads).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
