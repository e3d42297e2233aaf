//! The scheduler: probes every checked target on its group's interval, feeds the
//! results to the targets' state machines, and publishes a [`HealthSnapshot`] whenever
//! a state changes.
//!
//! One supervisor task owns all state. Each probed target has its own task that waits
//! for its tick, runs one check (bounded by the check's timeout) and reports back over
//! a bounded channel; nothing else is shared. Replacing the groups (config change)
//! keeps the state of targets that remain; deregistered targets drain for the
//! deregistration delay, then disappear.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::plan::{self, ActiveCheck, Check, GroupSpec};
use super::probe::{ProbeError, Prober};
use super::snapshot::{GroupHealth, GroupKey, HealthSnapshot, TargetStatus};
use super::state::{Monitoring, ProbeOutcome, ReasonCode, TargetHealth, TargetState};
use crate::config::Target;

/// Lattice's default draining time: 5 minutes.
pub const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);

/// Probe results waiting for the supervisor; probe tasks wait when it is full.
const REPORT_QUEUE: usize = 256;

/// Config changes waiting for the supervisor.
const COMMAND_QUEUE: usize = 4;

/// Settings of the checker itself (the checks' settings come with each group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckerOptions {
    /// How long deregistered targets stay DRAINING (their existing flows go on).
    pub deregistration_delay: Duration,
}

impl Default for CheckerOptions {
    fn default() -> Self {
        Self {
            deregistration_delay: DEFAULT_DEREGISTRATION_DELAY,
        }
    }
}

/// The checker is no longer running.
#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    #[error("the health checker has stopped")]
    Stopped,
    #[error("the health checker failed: {0}")]
    Failed(#[source] tokio::task::JoinError),
}

/// A running health checker. Dropping it stops the checks too, without waiting.
#[derive(Debug)]
pub struct HealthChecker {
    commands: mpsc::Sender<Command>,
    snapshots: watch::Receiver<HealthSnapshot>,
    supervisor: JoinHandle<()>,
}

#[derive(Debug)]
enum Command {
    SetGroups {
        groups: Vec<GroupSpec>,
        applied: oneshot::Sender<()>,
    },
}

impl HealthChecker {
    /// Starts a checker with no groups. Must be called inside a tokio runtime.
    pub fn start(options: CheckerOptions) -> Self {
        let (commands, command_queue) = mpsc::channel(COMMAND_QUEUE);
        let (reports, report_queue) = mpsc::channel(REPORT_QUEUE);
        let (publisher, snapshots) = watch::channel(HealthSnapshot::default());
        let supervisor = Supervisor {
            options,
            groups: BTreeMap::new(),
            probes: Probes {
                tasks: JoinSet::new(),
                reports,
                next_id: 0,
                jitter: RandomState::new(),
            },
            publisher,
        };
        Self {
            commands,
            snapshots,
            supervisor: tokio::spawn(supervisor.run(command_queue, report_queue)),
        }
    }

    /// Snapshots from now on: the current one at once, then one per change (a receiver
    /// only ever sees the latest).
    pub fn subscribe(&self) -> watch::Receiver<HealthSnapshot> {
        self.snapshots.clone()
    }

    /// Replaces the groups to check. Targets that stay keep their state; new ones start
    /// INITIAL; gone ones drain. Returns once the new snapshot is published.
    pub async fn set_groups(&self, groups: Vec<GroupSpec>) -> Result<(), CheckerError> {
        let (applied, done) = oneshot::channel();
        self.commands
            .send(Command::SetGroups { groups, applied })
            .await
            .map_err(|_| CheckerError::Stopped)?;
        done.await.map_err(|_| CheckerError::Stopped)
    }

    /// Stops every check and waits until they have stopped. Subscribers keep the last
    /// snapshot and see the channel close.
    pub async fn shutdown(self) -> Result<(), CheckerError> {
        drop(self.commands);
        self.supervisor.await.map_err(CheckerError::Failed)
    }
}

/// Owns the groups, their targets' state machines and the probe tasks.
struct Supervisor {
    options: CheckerOptions,
    groups: BTreeMap<GroupKey, GroupRecord>,
    probes: Probes,
    publisher: watch::Sender<HealthSnapshot>,
}

struct GroupRecord {
    name: String,
    /// `false` once the group left the config: its targets are all draining.
    registered: bool,
    check: Check,
    prober: Option<Arc<dyn Prober>>,
    /// Registered targets in config order, then draining ones.
    targets: Vec<TargetRecord>,
}

struct TargetRecord {
    target: Target,
    health: TargetHealth,
    probe: Option<ProbeTask>,
}

/// A running probe task; its id tells its reports apart from a replaced task's.
struct ProbeTask {
    id: u64,
    abort: AbortHandle,
}

/// One check's result, from probe task `task` of group `group`.
struct Report {
    group: GroupKey,
    task: u64,
    result: Result<(), ProbeError>,
}

impl Supervisor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut reports: mpsc::Receiver<Report>,
    ) {
        loop {
            let next_expiry = self.next_expiry();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::SetGroups { groups, applied }) => {
                        self.set_groups(groups, Instant::now());
                        self.publish();
                        let _ = applied.send(());
                    }
                    None => break,
                },
                // Never `None`: `self.probes` holds a sender.
                Some(report) = reports.recv() => {
                    if self.on_report(report, Instant::now()) {
                        self.publish();
                    }
                }
                () = tokio::time::sleep_until(next_expiry.unwrap_or_else(Instant::now)),
                    if next_expiry.is_some() =>
                {
                    if self.expire(Instant::now()) {
                        self.publish();
                    }
                }
                // Reaps aborted tasks; a panicked one (a bug in a prober) is replaced.
                Some(joined) = self.probes.tasks.join_next_with_id(), if !self.probes.tasks.is_empty() => {
                    if let Err(error) = joined {
                        if error.is_panic() && self.on_panic(error.id(), Instant::now()) {
                            self.publish();
                        }
                    }
                }
            }
        }
        self.probes.tasks.shutdown().await;
    }

    /// Applies a new set of groups (see [`HealthChecker::set_groups`]).
    fn set_groups(&mut self, specs: Vec<GroupSpec>, now: Instant) {
        let mut seen = HashSet::new();
        for spec in specs {
            if seen.insert(spec.key.clone()) {
                self.set_group(spec, now);
            } else {
                tracing::warn!(target_group = %spec.key, "listed twice; the first one is checked");
            }
        }
        for (key, group) in &mut self.groups {
            if seen.contains(key) || !group.registered {
                continue;
            }
            group.registered = false;
            group.prober = None;
            for record in &mut group.targets {
                self.probes.stop(record);
                record.health.drain(now);
            }
        }
        self.expire(now);
    }

    /// One group of the new set: targets that stay keep their state (their probes
    /// restart only if the check changed), new ones start over, gone ones drain after
    /// the registered ones. A group whose prober changed moved to another VPC: its
    /// addresses name other hosts there (VPCs may share CIDRs), so every target
    /// starts over and the old ones drain.
    fn set_group(&mut self, spec: GroupSpec, now: Instant) {
        let previous = self.groups.remove(&spec.key);
        let moved = previous.as_ref().is_some_and(|group| {
            !group
                .prober
                .as_ref()
                .is_some_and(|prober| Arc::ptr_eq(prober, &spec.prober))
        });
        let restart = moved
            || previous
                .as_ref()
                .is_none_or(|group| group.check != spec.check);
        let mut old = previous.map(|group| group.targets).unwrap_or_default();
        let mut targets: Vec<TargetRecord> = Vec::with_capacity(spec.targets.len());
        for target in &spec.targets {
            if targets.iter().any(|record| &record.target == target) {
                continue;
            }
            let kept = if moved {
                None
            } else {
                take_registered(&mut old, target)
            };
            targets.push(self.register(kept, target, &spec, restart, now));
        }
        for mut gone in old {
            self.probes.stop(&mut gone);
            gone.health.drain(now);
            targets.push(gone);
        }
        let group = GroupRecord {
            name: spec.name,
            registered: true,
            check: spec.check,
            prober: Some(spec.prober),
            targets,
        };
        self.groups.insert(spec.key, group);
    }

    /// The record of registered `target` of `spec`: `kept` (from before the change)
    /// follows the group's monitoring, or a new one starts; probing runs if it should.
    fn register(
        &mut self,
        kept: Option<TargetRecord>,
        target: &Target,
        spec: &GroupSpec,
        restart: bool,
        now: Instant,
    ) -> TargetRecord {
        let monitoring = plan::monitoring_for(&spec.check, target);
        let mut record = match kept {
            Some(mut record) => {
                record.health.set_monitoring(monitoring, now);
                if restart || monitoring != Monitoring::Probed {
                    self.probes.stop(&mut record);
                }
                record
            }
            None => TargetRecord {
                target: target.clone(),
                health: TargetHealth::new(monitoring, now),
                probe: None,
            },
        };
        if let (Monitoring::Probed, Check::Active(check), None) =
            (monitoring, &spec.check, &record.probe)
        {
            record.probe = self.probes.start(&spec.key, target, check, &spec.prober);
        }
        record
    }

    /// Applies one probe result. Returns whether a state or reason changed.
    fn on_report(&mut self, report: Report, now: Instant) -> bool {
        let Some(group) = self.groups.get_mut(&report.group) else {
            return false;
        };
        let Check::Active(check) = &group.check else {
            return false;
        };
        let Some(record) = group
            .targets
            .iter_mut()
            .find(|r| r.probe.as_ref().is_some_and(|p| p.id == report.task))
        else {
            // From a task replaced since; its result no longer counts.
            return false;
        };
        let before = (record.health.state(), record.health.reason());
        let changed =
            record
                .health
                .on_probe(ProbeError::outcome(&report.result), check.thresholds, now);
        if let Err(error) = &report.result {
            tracing::debug!(target_group = %group.name, target = %record.target.id, port = %record.target.port, %error, "health check failed");
        }
        if changed {
            let error = report.result.as_ref().err().map(tracing::field::display);
            tracing::info!(
                target_group = %group.name,
                target = %record.target.id,
                port = %record.target.port,
                from = %before.0,
                to = %record.health.state(),
                reason = ?record.health.reason().map(|r| r.as_str()),
                error,
                "target health changed"
            );
        }
        changed
    }

    /// A probe task panicked: counts as a failed check (InternalError, the check could
    /// not be made) and starts a new task, so the target is not left unwatched in its
    /// last state. Returns whether a state or reason changed.
    fn on_panic(&mut self, task: tokio::task::Id, now: Instant) -> bool {
        for (key, group) in &mut self.groups {
            let (Check::Active(check), Some(prober)) = (&group.check, &group.prober) else {
                continue;
            };
            let Some(record) = group
                .targets
                .iter_mut()
                .find(|r| r.probe.as_ref().is_some_and(|p| p.abort.id() == task))
            else {
                continue;
            };
            tracing::error!(target_group = %group.name, target = %record.target.id, port = %record.target.port, "a health check panicked; counted as failed");
            record.probe = self.probes.start(key, &record.target, check, prober);
            let outcome = ProbeOutcome::Fail(ReasonCode::InternalError);
            return record.health.on_probe(outcome, check.thresholds, now);
        }
        false
    }

    /// Forgets targets whose deregistration delay ended, and removed groups left with
    /// no targets. Returns whether anything was forgotten.
    fn expire(&mut self, now: Instant) -> bool {
        let delay = self.options.deregistration_delay;
        let mut changed = false;
        self.groups.retain(|_, group| {
            let before = group.targets.len();
            group.targets.retain(|r| !r.health.drained(now, delay));
            changed |= group.targets.len() != before;
            let keep = group.registered || !group.targets.is_empty();
            changed |= !keep;
            keep
        });
        changed
    }

    /// When the next draining target's delay ends.
    fn next_expiry(&self) -> Option<Instant> {
        let delay = self.options.deregistration_delay;
        self.groups
            .values()
            .flat_map(|group| &group.targets)
            .filter_map(|r| r.health.drain_deadline(delay))
            .min()
    }

    /// Publishes the current state if it differs from the last snapshot.
    fn publish(&self) {
        let snapshot = HealthSnapshot {
            groups: self
                .groups
                .iter()
                .map(|(key, group)| {
                    let targets = group
                        .targets
                        .iter()
                        .map(|r| TargetStatus {
                            target: r.target.clone(),
                            state: r.health.state(),
                            reason: r.health.reason(),
                            since: r.health.since(),
                        })
                        .collect();
                    let health = GroupHealth {
                        name: group.name.clone(),
                        targets,
                    };
                    (key.clone(), health)
                })
                .collect(),
            version: 0,
        };
        self.publisher.send_if_modified(|current| {
            let modified = current.groups != snapshot.groups;
            if modified {
                *current = HealthSnapshot {
                    version: current.version + 1,
                    ..snapshot
                };
            }
            modified
        });
    }
}

/// The probe tasks and what they need.
struct Probes {
    tasks: JoinSet<()>,
    reports: mpsc::Sender<Report>,
    next_id: u64,
    /// Spreads first probes over the interval so targets are not probed in lockstep.
    jitter: RandomState,
}

impl Probes {
    /// Starts probing `target` of group `key`: the first check at a random point within
    /// one interval, then one per interval. `None` when the target has no address.
    fn start(
        &mut self,
        key: &GroupKey,
        target: &Target,
        check: &Arc<ActiveCheck>,
        prober: &Arc<dyn Prober>,
    ) -> Option<ProbeTask> {
        let addr = plan::probe_addr(target, check)?;
        let id = self.next_id;
        self.next_id += 1;
        let first = Instant::now() + self.first_delay(key, target, id, check.interval);
        let abort = self.tasks.spawn(probe_loop(
            key.clone(),
            id,
            addr,
            Arc::clone(check),
            Arc::clone(prober),
            first,
            self.reports.clone(),
        ));
        Some(ProbeTask { id, abort })
    }

    fn stop(&mut self, record: &mut TargetRecord) {
        if let Some(task) = record.probe.take() {
            task.abort.abort();
        }
    }

    fn first_delay(
        &self,
        key: &GroupKey,
        target: &Target,
        id: u64,
        interval: Duration,
    ) -> Duration {
        let span = u64::try_from(interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_nanos(self.jitter.hash_one((key, target, id)) % span)
    }
}

/// Takes `target`'s record out of `old` if the target was registered. A draining
/// record is dropped instead (it has no probe): a target registered again starts over.
fn take_registered(old: &mut Vec<TargetRecord>, target: &Target) -> Option<TargetRecord> {
    let index = old.iter().position(|record| &record.target == target)?;
    let record = old.remove(index);
    (record.health.state() != TargetState::Draining).then_some(record)
}

/// Checks one target every `check.interval` from `first` on, until aborted or the
/// supervisor is gone. Ticks stay on their grid whatever a check takes (Lattice: the
/// time a target takes to respond does not affect the interval); a tick that falls
/// while a check still runs is skipped.
async fn probe_loop(
    group: GroupKey,
    task: u64,
    addr: std::net::SocketAddrV4,
    check: Arc<ActiveCheck>,
    prober: Arc<dyn Prober>,
    first: Instant,
    reports: mpsc::Sender<Report>,
) {
    let mut ticks = tokio::time::interval_at(first, check.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let result = match tokio::time::timeout(check.timeout, prober.probe(addr, &check)).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Timeout {
                timeout: check.timeout,
            }),
        };
        let report = Report {
            group: group.clone(),
            task,
            result,
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}
