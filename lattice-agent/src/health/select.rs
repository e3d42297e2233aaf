//! Which targets of a group may receive new flows: a pure function of the targets'
//! states, used by the kernel backend tables and the L7 pools alike.

use std::collections::HashMap;

use super::snapshot::GroupHealth;
use super::state::TargetState;
use crate::config::Target;

/// The targets that may receive new flows, in the order they were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection<'a> {
    pub targets: Vec<&'a Target>,
    /// No target qualified, so every registered one was chosen (Lattice fails open:
    /// when all targets are unhealthy, traffic goes to all of them).
    pub fail_open: bool,
}

/// Whether a target in `state` may receive new flows on its own merits.
///
/// HEALTHY ones may, and so may targets whose health is not checked (UNAVAILABLE:
/// checks disabled or unsupported; UNUSED: no information, and no service sends
/// traffic anyway). INITIAL targets have not passed a check yet, UNHEALTHY ones failed,
/// DRAINING ones are deregistered.
pub fn may_receive_new_flows(state: TargetState) -> bool {
    matches!(
        state,
        TargetState::Healthy | TargetState::Unavailable | TargetState::Unused
    )
}

/// Chooses the targets for new flows among `targets` and their states.
///
/// The qualifying ones (see [`may_receive_new_flows`]); if none qualifies, every
/// target that is not DRAINING (fail open); if all are draining, none. Draining
/// targets never get new flows: their existing flows go on until closed.
pub fn select_for_new_flows<'a, I>(targets: I) -> Selection<'a>
where
    I: IntoIterator<Item = (&'a Target, TargetState)>,
{
    let registered: Vec<(&Target, TargetState)> = targets
        .into_iter()
        .filter(|(_, state)| *state != TargetState::Draining)
        .collect();
    let healthy: Vec<&Target> = registered
        .iter()
        .filter(|(_, state)| may_receive_new_flows(*state))
        .map(|(target, _)| *target)
        .collect();
    if healthy.is_empty() && !registered.is_empty() {
        Selection {
            targets: registered.into_iter().map(|(target, _)| target).collect(),
            fail_open: true,
        }
    } else {
        Selection {
            targets: healthy,
            fail_open: false,
        }
    }
}

/// Chooses among the targets the config registers, with their health from the
/// checker's snapshot (`None` when the checker does not know the group yet).
///
/// The config is the truth about what is registered; the snapshot may lag it by a
/// moment after a config change. A registered target the snapshot does not know yet,
/// or knows only as DRAINING (it was just registered again), counts as INITIAL: it
/// must pass a check first.
pub fn select<'a>(registered: &'a [Target], health: Option<&GroupHealth>) -> Selection<'a> {
    let known: HashMap<&Target, TargetState> = health
        .map(|group| {
            group
                .targets
                .iter()
                .map(|status| (&status.target, status.state))
                .collect()
        })
        .unwrap_or_default();
    select_for_new_flows(registered.iter().map(|target| {
        let state = match known.get(target) {
            None | Some(TargetState::Draining) => TargetState::Initial,
            Some(state) => *state,
        };
        (target, state)
    }))
}
