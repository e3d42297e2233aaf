//! Target health as Lattice reports it (ListTargets' `status` and `reasonCode`), and the
//! pure state machine that moves one target between those states.
//!
//! Lattice documents the six states but not its reason codes (`reasonCode` is a free
//! string in its API). The codes here are the ones Elastic Load Balancing documents for
//! the same situations, without its `Elb.`/`Target.` prefixes, plus
//! [`ReasonCode::HealthCheckUnsupported`] for checks this agent cannot run yet.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// A target's status, with Lattice's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetState {
    /// Registered, not yet passed a check: no new flows unless the group fails open.
    Initial,
    /// Passing its checks: gets new flows.
    Healthy,
    /// Failing its checks: no new flows unless the group fails open.
    Unhealthy,
    /// Health checks are off (or cannot run) for the group: gets new flows.
    Unavailable,
    /// Deregistered: no new flows, existing flows go on until the deregistration delay ends.
    Draining,
    /// The group is not used by any service: nothing is checked.
    Unused,
}

impl TargetState {
    /// Lattice's spelling: `INITIAL`, `HEALTHY`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "INITIAL",
            Self::Healthy => "HEALTHY",
            Self::Unhealthy => "UNHEALTHY",
            Self::Unavailable => "UNAVAILABLE",
            Self::Draining => "DRAINING",
            Self::Unused => "UNUSED",
        }
    }

    /// Whether the target is being health checked (its state comes from probes).
    fn is_probed(self) -> bool {
        matches!(self, Self::Initial | Self::Healthy | Self::Unhealthy)
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a target is in its state. `HEALTHY` targets have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ReasonCode {
    /// INITIAL: no check has finished yet.
    RegistrationInProgress,
    /// INITIAL: checks have failed, but fewer than the unhealthy threshold.
    InitialHealthChecking,
    /// UNHEALTHY: the HTTP status did not match the group's matcher.
    ResponseCodeMismatch,
    /// UNHEALTHY: no connection or no response within the check's timeout.
    Timeout,
    /// UNHEALTHY: the connection was refused or reset, or the response was malformed.
    FailedHealthChecks,
    /// UNHEALTHY: the check could not be made (no socket in the vpc's namespace).
    InternalError,
    /// DRAINING: deregistered, the deregistration delay has not ended.
    DeregistrationInProgress,
    /// UNAVAILABLE: the group's health check is disabled.
    HealthCheckDisabled,
    /// UNAVAILABLE: the check is one this agent cannot make yet (HTTPS, HTTP2, or an
    /// INSTANCE target, which has no address to probe).
    HealthCheckUnsupported,
    /// UNUSED: no service forwards to the group.
    NotInUse,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RegistrationInProgress => "RegistrationInProgress",
            Self::InitialHealthChecking => "InitialHealthChecking",
            Self::ResponseCodeMismatch => "ResponseCodeMismatch",
            Self::Timeout => "Timeout",
            Self::FailedHealthChecks => "FailedHealthChecks",
            Self::InternalError => "InternalError",
            Self::DeregistrationInProgress => "DeregistrationInProgress",
            Self::HealthCheckDisabled => "HealthCheckDisabled",
            Self::HealthCheckUnsupported => "HealthCheckUnsupported",
            Self::NotInUse => "NotInUse",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one check, as the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    Pass,
    /// Failed, with the reason an UNHEALTHY target reports.
    Fail(ReasonCode),
}

/// The group's consecutive-result counts (Lattice: 2-10 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Successes that turn UNHEALTHY into HEALTHY (HealthyThresholdCount).
    pub healthy: u8,
    /// Failures that turn HEALTHY or INITIAL into UNHEALTHY (UnhealthyThresholdCount).
    pub unhealthy: u8,
}

/// How a registered target's health is known, decided per group and target (see
/// `plan.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitoring {
    /// Checked by probes.
    Probed,
    /// The group's health check is disabled.
    Disabled,
    /// The check cannot be made by this agent yet.
    Unsupported,
    /// No service uses the group.
    NotInUse,
}

/// One target's health: a pure state machine driven by probe outcomes, monitoring
/// changes and deregistration. Every method takes `now` so tests need no clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    state: TargetState,
    reason: Option<ReasonCode>,
    /// Consecutive passes (counted while UNHEALTHY).
    passes: u8,
    /// Consecutive failures (counted while INITIAL or HEALTHY).
    failures: u8,
    /// When `state` last changed.
    since: Instant,
}

impl TargetHealth {
    /// A target just registered (or a group whose monitoring just started).
    pub fn new(monitoring: Monitoring, now: Instant) -> Self {
        let (state, reason) = match monitoring {
            Monitoring::Probed => (TargetState::Initial, ReasonCode::RegistrationInProgress),
            Monitoring::Disabled => (TargetState::Unavailable, ReasonCode::HealthCheckDisabled),
            Monitoring::Unsupported => {
                (TargetState::Unavailable, ReasonCode::HealthCheckUnsupported)
            }
            Monitoring::NotInUse => (TargetState::Unused, ReasonCode::NotInUse),
        };
        Self {
            state,
            reason: Some(reason),
            passes: 0,
            failures: 0,
            since: now,
        }
    }

    pub fn state(&self) -> TargetState {
        self.state
    }

    pub fn reason(&self) -> Option<ReasonCode> {
        self.reason
    }

    /// When the state last changed (a new reason alone does not count).
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Applies one check's outcome. Returns whether the state or reason changed.
    ///
    /// INITIAL becomes HEALTHY on its first pass (a target must pass one check before
    /// it gets traffic) and UNHEALTHY after `unhealthy` failures; HEALTHY becomes
    /// UNHEALTHY after `unhealthy` consecutive failures; UNHEALTHY becomes HEALTHY after
    /// `healthy` consecutive passes. Outcomes for targets that are not probed (checks
    /// off, draining, unused) are ignored: a probe may finish after its target left.
    pub fn on_probe(
        &mut self,
        outcome: ProbeOutcome,
        thresholds: Thresholds,
        now: Instant,
    ) -> bool {
        if !self.state.is_probed() {
            return false;
        }
        let before = (self.state, self.reason);
        match outcome {
            ProbeOutcome::Pass => {
                self.failures = 0;
                match self.state {
                    TargetState::Initial => self.enter(TargetState::Healthy, None, now),
                    TargetState::Unhealthy => {
                        self.passes = self.passes.saturating_add(1);
                        if self.passes >= thresholds.healthy.max(1) {
                            self.enter(TargetState::Healthy, None, now);
                        }
                    }
                    _ => {}
                }
            }
            ProbeOutcome::Fail(reason) => {
                self.passes = 0;
                match self.state {
                    TargetState::Initial | TargetState::Healthy => {
                        self.failures = self.failures.saturating_add(1);
                        if self.failures >= thresholds.unhealthy.max(1) {
                            self.enter(TargetState::Unhealthy, Some(reason), now);
                        } else if self.state == TargetState::Initial {
                            self.reason = Some(ReasonCode::InitialHealthChecking);
                        }
                    }
                    // Already out: report the latest failure.
                    _ => self.reason = Some(reason),
                }
            }
        }
        before != (self.state, self.reason)
    }

    /// Follows a change of the group's monitoring (config change). A target that starts
    /// being probed starts over as INITIAL: it must pass a check before it gets traffic.
    /// A target that stays probed keeps its state and counters. Draining targets stay
    /// draining. Returns whether the state or reason changed.
    pub fn set_monitoring(&mut self, monitoring: Monitoring, now: Instant) -> bool {
        if self.state == TargetState::Draining
            || (monitoring == Monitoring::Probed && self.state.is_probed())
        {
            return false;
        }
        let fresh = Self::new(monitoring, now);
        if (fresh.state, fresh.reason) == (self.state, self.reason) {
            return false;
        }
        *self = fresh;
        true
    }

    /// The target was deregistered: DRAINING from now on. Returns whether it changed.
    pub fn drain(&mut self, now: Instant) -> bool {
        if self.state == TargetState::Draining {
            return false;
        }
        self.passes = 0;
        self.failures = 0;
        self.enter(
            TargetState::Draining,
            Some(ReasonCode::DeregistrationInProgress),
            now,
        );
        true
    }

    /// Whether a draining target's deregistration delay has ended, so it can be forgotten.
    pub fn drained(&self, now: Instant, delay: Duration) -> bool {
        self.state == TargetState::Draining && now >= self.since + delay
    }

    /// When a draining target's delay ends.
    pub fn drain_deadline(&self, delay: Duration) -> Option<Instant> {
        (self.state == TargetState::Draining).then(|| self.since + delay)
    }

    fn enter(&mut self, state: TargetState, reason: Option<ReasonCode>, now: Instant) {
        if state != self.state {
            self.since = now;
            self.passes = 0;
            self.failures = 0;
        }
        self.state = state;
        self.reason = reason;
    }
}
