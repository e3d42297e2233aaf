//! The weighted choice of a target group among those of a forward action.

use crate::config::{TargetGroupRef, WeightedTargetGroup};

/// Picks one of `groups` with probability weight / sum of weights (Lattice: "a target
/// group with a weight of 20 receives twice as many requests as" one with 10).
///
/// `roll` is a uniform random number from the caller, so that this stays a pure function
/// and tests can enumerate rolls. The groups are laid end to end, each as wide as its
/// weight, and `roll % total` lands in one of them: rolls `0..w0` take the first group,
/// `w0..w0+w1` the second, and so on, so any `total` consecutive rolls give each group
/// exactly its weight. The modulo bias is below total / 2^32 (under 2.4e-6 for
/// Lattice's largest forward, 10 groups of weight 999).
///
/// A group of weight 0 is never chosen (it holds a place for a canary that gets no
/// traffic yet). `None` when no group has weight: validation refuses such a forward,
/// Lattice documents no behaviour for it, and the caller decides what to answer.
pub fn pick_target_group(groups: &[WeightedTargetGroup], roll: u32) -> Option<TargetGroupRef> {
    // u64: u16 weights cannot overflow it, however many groups a hand-built action has.
    let total: u64 = groups.iter().map(|g| u64::from(g.weight)).sum();
    if total == 0 {
        return None;
    }
    let point = u64::from(roll) % total;
    // Each group with the end of its span; the first span ending past `point` holds it
    // (a weight-0 group's span is empty, so it never does).
    groups
        .iter()
        .scan(0, |end, group| {
            *end += u64::from(group.weight);
            Some((*end, group.target_group))
        })
        .find(|&(end, _)| point < end)
        .map(|(_, target_group)| target_group)
}
