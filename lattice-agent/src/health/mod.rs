//! Active health checks of target groups, with Lattice's states, settings and defaults:
//! a new target must pass one check before it gets traffic, failing targets stop
//! getting new flows, deregistered targets drain, and a group whose targets all fail
//! sends traffic to all of them (fail open).
//!
//! | file | what |
//! | --- | --- |
//! | `state.rs` | Lattice's target states and reason codes; the per-target state machine |
//! | `select.rs` | which targets may receive new flows (fail open) |
//! | `plan.rs` | what to check per group, from the config, and from which namespace |
//! | `connect.rs` | TCP connections from the host's or a vpc's network namespace |
//! | `http1.rs` | the HTTP/1.1 check exchange and status line parsing |
//! | `probe.rs` | one check of one target, behind the [`Prober`] trait |
//! | `checker.rs` | [`HealthChecker`]: schedules checks, applies results, publishes snapshots |
//! | `snapshot.rs` | [`HealthSnapshot`]: what the checker publishes |
//!
//! ```no_run
//! # async fn run(config: &lattice_agent::config::Config) -> Result<(), lattice_agent::health::CheckerError> {
//! use lattice_agent::health::{plan, CheckerOptions, HealthChecker, Probers};
//!
//! let checker = HealthChecker::start(CheckerOptions::default());
//! let mut probers = Probers::new();
//! checker.set_groups(plan(config, &mut probers)).await?; // again on every config change
//! let mut snapshots = checker.subscribe();
//! while snapshots.changed().await.is_ok() {
//!     let snapshot = snapshots.borrow_and_update().clone();
//!     for group in config.target_groups() {
//!         let key = lattice_agent::health::GroupKey::of(group);
//!         let selection = snapshot.select(&key, &group.targets);
//!         // program selection.targets as the group's backends for new flows
//!     }
//! }
//! # Ok(()) }
//! ```

mod checker;
mod connect;
mod http1;
mod plan;
mod probe;
mod select;
mod snapshot;
mod state;

#[cfg(test)]
mod tests;

pub use checker::{CheckerError, CheckerOptions, HealthChecker, DEFAULT_DEREGISTRATION_DELAY};
pub use connect::{
    ConnectError, ConnectFuture, Connector, HostConnector, NetnsConnector, NETNS_RUN_DIR,
};
pub use http1::{Http1Error, Malformed};
pub use plan::{
    check_for, groups_in_use, monitoring_for, namespace_of, plan, probe_addr, ActiveCheck, Check,
    GroupSpec, Probe, ProbeNamespace, Probers,
};
pub use probe::{ProbeError, ProbeFuture, Prober, SocketProber};
pub use select::{may_receive_new_flows, select, select_for_new_flows, Selection};
pub use snapshot::{GroupHealth, GroupKey, HealthSnapshot, TargetStatus, TargetSummary};
pub use state::{Monitoring, ProbeOutcome, ReasonCode, TargetHealth, TargetState, Thresholds};
