//! What the checker publishes: every group's targets with their state, reason and the
//! time of their last change. The data plane reconciler and `lattice-agent targets`
//! read it; nothing here changes health.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use tokio::time::Instant;

use super::select::{self, Selection};
use super::state::{ReasonCode, TargetState};
use crate::config::{Target, TargetGroup};
use crate::resolve::ids;

/// A target group as the checker knows it: its `tg-` id (stable across config changes,
/// the same id the data plane uses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GroupKey(String);

impl GroupKey {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The key of a configured group: its resolved `tg-` id.
    pub fn of(group: &TargetGroup) -> Self {
        Self(ids::target_group_id(
            group.account.as_str(),
            group.name.as_str(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Health of every group the checker knows, including removed groups whose targets
/// are still draining.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub groups: BTreeMap<GroupKey, GroupHealth>,
    /// Counts the snapshots published (0: none yet): what was derived from one
    /// snapshot holds until the version changes.
    pub version: u64,
}

impl HealthSnapshot {
    pub fn group(&self, key: &GroupKey) -> Option<&GroupHealth> {
        self.groups.get(key)
    }

    /// The targets of group `key` that may receive new flows, among the targets the
    /// config registers (see [`select::select`]).
    pub fn select<'a>(&self, key: &GroupKey, registered: &'a [Target]) -> Selection<'a> {
        select::select(registered, self.group(key))
    }
}

/// One group's targets: registered ones in config order, then draining ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHealth {
    /// The group's name, for people.
    pub name: String,
    pub targets: Vec<TargetStatus>,
}

impl GroupHealth {
    pub fn target(&self, target: &Target) -> Option<&TargetStatus> {
        self.targets.iter().find(|status| &status.target == target)
    }

    /// The targets that may receive new flows, from this snapshot alone.
    pub fn select_for_new_flows(&self) -> Selection<'_> {
        select::select_for_new_flows(
            self.targets
                .iter()
                .map(|status| (&status.target, status.state)),
        )
    }

    /// Targets whose existing flows must go on although they get no new ones.
    pub fn draining(&self) -> impl Iterator<Item = &Target> {
        self.targets
            .iter()
            .filter(|status| status.state == TargetState::Draining)
            .map(|status| &status.target)
    }

    /// The rows Lattice's ListTargets would return.
    pub fn summaries(&self) -> Vec<TargetSummary> {
        self.targets
            .iter()
            .map(|status| TargetSummary {
                id: status.target.id.to_string(),
                port: status.target.port.get(),
                status: status.state,
                reason_code: status.reason,
            })
            .collect()
    }
}

/// One target's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    pub target: Target,
    pub state: TargetState,
    pub reason: Option<ReasonCode>,
    /// When `state` last changed (the agent's monotonic clock).
    pub since: Instant,
}

/// Lattice's TargetSummary: `{ id, port, status, reasonCode }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetSummary {
    pub id: String,
    pub port: u16,
    pub status: TargetState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<ReasonCode>,
}
