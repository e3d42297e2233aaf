//! DNS service discovery: the agent answers DNS inside every attached VPC namespace, at
//! its own address (the first host of the VIP pool, `169.254.171.1` by default), UDP
//! and TCP port 53.
//!
//! - The default name and the `customDomainName` of each service the VPC reaches (its
//!   service network's services, whatever their listeners) resolve to the service's
//!   VIP: an A record with a [`TTL`] of 10 s. VIPs are IPv4 only: AAAA (and any other
//!   type) of such a name is NODATA (NOERROR, no answer, lattice's SOA).
//! - Names lattice owns that the VPC cannot reach (anything else under
//!   `vpc-lattice-svcs.<region>.<suffix>`, the custom names of other networks'
//!   services) are NXDOMAIN, and are never forwarded.
//! - Other names go to the host's resolvers (`/etc/resolv.conf` of the agent's own
//!   namespace, or `--dns-upstream`), from the host's namespace; with none answering,
//!   SERVFAIL.
//!
//! VPCs made of cgroups only have no namespace of their own: host processes use the
//! host's resolver, which knows nothing of lattice's names.
//!
//! | file | what |
//! | --- | --- |
//! | `zone.rs` | the pure part: config -> per-VPC records, and query -> answer |
//! | `server.rs` | hickory's request handler: answers from the zones, or forwards |
//! | `forward.rs` | the upstream resolvers: resolv.conf, UDP and TCP exchanges |
//! | `serve.rs` | sockets and routing inside namespaces, started and stopped with them |

pub mod forward;
pub mod serve;
pub mod server;
pub mod zone;

#[cfg(test)]
mod tests;

pub use forward::Forwarder;
pub use serve::{DnsServer, ZoneSwitch};
pub use zone::{Answer, Zones, TTL};
