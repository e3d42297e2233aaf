//! Tests of the health module, by tier:
//!
//! | file | what | needs |
//! | --- | --- | --- |
//! | `tables.rs` | state machine, selection, status lines, plan, reason codes | nothing |
//! | `http.rs` | the HTTP/1.1 exchange over in-memory streams | nothing |
//! | `checker.rs` | the scheduler with a scripted prober, on a paused clock | nothing |
//! | `sockets.rs` | real probes over loopback in the agent's namespace | nothing |
//! | `netns.rs` | probes into a real network namespace | root (fails without) |

mod checker;
mod http;
mod netns;
mod sockets;
mod tables;

use std::net::Ipv4Addr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{Port, StatusMatcher, Target, TargetId};

/// IP target `ip:port`.
fn target(ip: &str, port: u16) -> Target {
    Target {
        id: TargetId::Ip(ip.parse::<Ipv4Addr>().expect("an IPv4 address")),
        port: port_of(port),
    }
}

fn instance(id: &str, port: u16) -> Target {
    Target {
        id: TargetId::Instance(id.to_owned()),
        port: port_of(port),
    }
}

fn port_of(port: u16) -> Port {
    Port::new(NonZeroU16::new(port).expect("a non-zero port"))
}

/// A TCP connect check with these settings (no health check port).
fn tcp_check(interval: Duration, timeout: Duration, healthy: u8, unhealthy: u8) -> ActiveCheck {
    ActiveCheck {
        probe: Probe::TcpConnect,
        port: None,
        interval,
        timeout,
        thresholds: Thresholds { healthy, unhealthy },
    }
}

/// An HTTP/1.1 check of `path` passing on exactly `status`.
fn http_check(path: &str, status: u16, timeout: Duration) -> ActiveCheck {
    ActiveCheck {
        probe: Probe::Http1 {
            path: path.to_owned(),
            matcher: StatusMatcher(vec![status..=status]),
            tls: false,
        },
        port: None,
        interval: Duration::from_secs(5),
        timeout,
        thresholds: Thresholds {
            healthy: 2,
            unhealthy: 2,
        },
    }
}

fn active(check: ActiveCheck) -> Check {
    Check::Active(Arc::new(check))
}
