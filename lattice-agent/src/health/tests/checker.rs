//! The scheduler with a scripted prober on a paused clock: intervals, timeouts and
//! thresholds drive the transitions; config changes keep state; draining ends.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::*;

/// How a scripted target answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Pass,
    Refuse,
    Status(u16),
    /// Never answers: the check's timeout decides.
    Hang,
    /// A bug in the prober.
    Panic,
}

/// A prober whose answers the test sets per address, recording every check.
#[derive(Debug, Default)]
struct ScriptedProber {
    answers: Mutex<HashMap<SocketAddrV4, Answer>>,
    calls: Mutex<Vec<(Instant, SocketAddrV4)>>,
}

impl ScriptedProber {
    fn set(&self, target: &Target, answer: Answer) {
        let addr =
            plan::probe_addr(target, &tcp_check(SECOND, SECOND, 2, 2)).expect("an IP target");
        self.answers.lock().expect("lock").insert(addr, answer);
    }

    fn calls(&self) -> Vec<(Instant, SocketAddrV4)> {
        self.calls.lock().expect("lock").clone()
    }
}

impl Prober for ScriptedProber {
    fn probe<'a>(&'a self, addr: SocketAddrV4, _check: &'a ActiveCheck) -> ProbeFuture<'a> {
        self.calls
            .lock()
            .expect("lock")
            .push((Instant::now(), addr));
        let answer = self
            .answers
            .lock()
            .expect("lock")
            .get(&addr)
            .copied()
            .unwrap_or(Answer::Pass);
        Box::pin(async move {
            match answer {
                Answer::Pass => Ok(()),
                Answer::Refuse => Err(ProbeError::Connect(ConnectError::Connect {
                    addr: addr.into(),
                    source: io::ErrorKind::ConnectionRefused.into(),
                })),
                Answer::Status(status) => Err(ProbeError::Status { status }),
                Answer::Hang => std::future::pending().await,
                Answer::Panic => panic!("scripted prober panic for {addr}"),
            }
        })
    }
}

const SECOND: Duration = Duration::from_secs(1);
const INTERVAL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(2);

fn key(name: &str) -> GroupKey {
    GroupKey::new(format!("tg-{name}"))
}

fn group(name: &str, targets: &[&Target], check: Check, prober: &Arc<ScriptedProber>) -> GroupSpec {
    GroupSpec {
        key: key(name),
        name: name.to_owned(),
        targets: targets.iter().map(|t| (*t).clone()).collect(),
        check,
        prober: Arc::clone(prober) as Arc<dyn Prober>,
    }
}

/// Interval 5 s, timeout 2 s, healthy threshold 3, unhealthy threshold 2.
fn checked() -> Check {
    active(tcp_check(INTERVAL, TIMEOUT, 3, 2))
}

fn state_of(
    snapshot: &HealthSnapshot,
    group: &str,
    target: &Target,
) -> Option<(TargetState, Option<ReasonCode>)> {
    let status = snapshot.group(&key(group))?.target(target)?;
    Some((status.state, status.reason))
}

/// Waits (on the paused clock) until `done` holds for a published snapshot, at most
/// `within`; returns how long it took.
async fn eventually(
    snapshots: &mut watch::Receiver<HealthSnapshot>,
    within: Duration,
    what: &str,
    done: impl Fn(&HealthSnapshot) -> bool,
) -> Duration {
    let started = Instant::now();
    let deadline = started + within;
    loop {
        if done(&snapshots.borrow_and_update()) {
            return started.elapsed();
        }
        match tokio::time::timeout_at(deadline, snapshots.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("{what}: the checker stopped"),
            Err(_) => panic!(
                "{what}: not within {within:?}; last snapshot: {:#?}",
                *snapshots.borrow()
            ),
        }
    }
}

fn is(
    group: &'static str,
    target: &Target,
    state: TargetState,
) -> impl Fn(&HealthSnapshot) -> bool {
    let target = target.clone();
    move |snapshot| state_of(snapshot, group, &target).map(|(s, _)| s) == Some(state)
}

#[tokio::test(start_paused = true)]
async fn new_targets_get_traffic_after_one_pass_and_are_not_probed_in_lockstep() {
    let prober = Arc::new(ScriptedProber::default());
    let targets: Vec<Target> = (1..=8)
        .map(|i| target(&format!("10.0.0.{i}"), 80))
        .collect();
    let refs: Vec<&Target> = targets.iter().collect();
    let checker = HealthChecker::start(CheckerOptions::default());
    let mut snapshots = checker.subscribe();
    let started = Instant::now();
    checker
        .set_groups(vec![group("web", &refs, checked(), &prober)])
        .await
        .expect("running");

    let snapshot = snapshots.borrow_and_update().clone();
    for t in &targets {
        assert_eq!(
            state_of(&snapshot, "web", t),
            Some((
                TargetState::Initial,
                Some(ReasonCode::RegistrationInProgress)
            ))
        );
    }
    let selection = snapshot.select(&key("web"), &targets);
    assert!(selection.fail_open, "all new: traffic goes to all of them");

    eventually(
        &mut snapshots,
        INTERVAL,
        "all healthy within one interval",
        |s| {
            targets
                .iter()
                .all(|t| is("web", t, TargetState::Healthy)(s))
        },
    )
    .await;
    let snapshot = snapshots.borrow().clone();
    let selection = snapshot.select(&key("web"), &targets);
    assert!(!selection.fail_open);
    assert_eq!(selection.targets.len(), targets.len());

    let firsts: Vec<Instant> = prober.calls().iter().map(|(at, _)| *at).collect();
    assert_eq!(firsts.len(), targets.len(), "one check each so far");
    assert!(firsts.iter().all(|at| *at - started < INTERVAL));
    let mut distinct = firsts.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 1, "first checks are spread: {firsts:?}");

    // Then every interval, on each target's own grid.
    tokio::time::sleep(INTERVAL * 2).await;
    let calls = prober.calls();
    for t in &targets {
        let TargetId::Ip(ip) = t.id else {
            unreachable!()
        };
        let times: Vec<Instant> = calls
            .iter()
            .filter(|(_, addr)| *addr.ip() == ip)
            .map(|(at, _)| *at)
            .collect();
        assert!(times.len() >= 2, "{ip}: {times:?}");
        assert!(
            times.windows(2).all(|w| w[1] - w[0] == INTERVAL),
            "{ip}: {times:?}"
        );
    }
    checker.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn thresholds_interval_and_timeout_drive_transitions() {
    let prober = Arc::new(ScriptedProber::default());
    let a = target("10.0.0.1", 80);
    let b = target("10.0.0.2", 80);
    let checker = HealthChecker::start(CheckerOptions::default());
    let mut snapshots = checker.subscribe();
    checker
        .set_groups(vec![group("web", &[&a, &b], checked(), &prober)])
        .await
        .expect("running");
    eventually(
        &mut snapshots,
        INTERVAL,
        "a healthy",
        is("web", &a, TargetState::Healthy),
    )
    .await;

    // a stops answering: unhealthy (Timeout) after 2 failed checks, each bounded by the
    // timeout: within interval x unhealthy threshold + timeout, and not before the
    // second check.
    prober.set(&a, Answer::Hang);
    let took = eventually(
        &mut snapshots,
        INTERVAL * 4,
        "a unhealthy",
        is("web", &a, TargetState::Unhealthy),
    )
    .await;
    assert!(took <= INTERVAL * 2 + TIMEOUT, "took {took:?}");
    assert!(took > INTERVAL, "two failures are needed: took {took:?}");
    let snapshot = snapshots.borrow().clone();
    assert_eq!(
        state_of(&snapshot, "web", &a),
        Some((TargetState::Unhealthy, Some(ReasonCode::Timeout)))
    );
    assert_eq!(
        snapshot
            .select(&key("web"), &[a.clone(), b.clone()])
            .targets,
        vec![&b]
    );

    // a answers again: healthy after 3 consecutive passes, not 2.
    prober.set(&a, Answer::Pass);
    let took = eventually(
        &mut snapshots,
        INTERVAL * 5,
        "a healthy again",
        is("web", &a, TargetState::Healthy),
    )
    .await;
    assert!(took > INTERVAL * 2 && took <= INTERVAL * 3, "took {took:?}");

    // b answers with the wrong status, then refuses: the latest reason shows.
    prober.set(&b, Answer::Status(503));
    eventually(&mut snapshots, INTERVAL * 3, "b mismatch", |s| {
        state_of(s, "web", &b)
            == Some((
                TargetState::Unhealthy,
                Some(ReasonCode::ResponseCodeMismatch),
            ))
    })
    .await;
    prober.set(&b, Answer::Refuse);
    eventually(&mut snapshots, INTERVAL * 2, "b refused", |s| {
        state_of(s, "web", &b)
            == Some((TargetState::Unhealthy, Some(ReasonCode::FailedHealthChecks)))
    })
    .await;

    // Both failing: fail open.
    prober.set(&a, Answer::Refuse);
    eventually(
        &mut snapshots,
        INTERVAL * 3,
        "a unhealthy again",
        is("web", &a, TargetState::Unhealthy),
    )
    .await;
    let selection = snapshots
        .borrow()
        .select(&key("web"), &[a.clone(), b.clone()])
        .targets
        .len();
    assert_eq!(
        selection, 2,
        "every target unhealthy: all of them get traffic"
    );
    checker.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn unchecked_groups_are_not_probed() {
    let prober = Arc::new(ScriptedProber::default());
    let a = target("10.0.0.1", 80);
    let c = target("10.0.0.3", 80);
    let i = instance("i-0123456789abcdef0", 80);
    let checker = HealthChecker::start(CheckerOptions::default());
    let snapshots = checker.subscribe();
    checker
        .set_groups(vec![
            group("off", &[&a], Check::Disabled, &prober),
            group("unused", &[&c], Check::NotInUse, &prober),
            group("instances", &[&i], checked(), &prober),
        ])
        .await
        .expect("running");
    tokio::time::sleep(INTERVAL * 3).await;
    assert!(prober.calls().is_empty(), "{:?}", prober.calls());
    let snapshot = snapshots.borrow().clone();
    assert_eq!(
        state_of(&snapshot, "off", &a),
        Some((
            TargetState::Unavailable,
            Some(ReasonCode::HealthCheckDisabled)
        ))
    );
    assert_eq!(
        state_of(&snapshot, "unused", &c),
        Some((TargetState::Unused, Some(ReasonCode::NotInUse)))
    );
    assert_eq!(
        state_of(&snapshot, "instances", &i),
        Some((
            TargetState::Unavailable,
            Some(ReasonCode::HealthCheckUnsupported)
        ))
    );
    let selection = snapshot.select(&key("off"), std::slice::from_ref(&a));
    assert_eq!(selection.targets, vec![&a], "unchecked targets get traffic");
    assert!(!selection.fail_open);
    checker.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn config_changes_keep_state_and_drain_deregistered_targets() {
    let prober = Arc::new(ScriptedProber::default());
    let a = target("10.0.0.1", 80);
    let b = target("10.0.0.2", 80);
    let c = target("10.0.0.3", 80);
    let delay = Duration::from_secs(60);
    let checker = HealthChecker::start(CheckerOptions {
        deregistration_delay: delay,
    });
    let mut snapshots = checker.subscribe();
    checker
        .set_groups(vec![group("web", &[&a, &b], checked(), &prober)])
        .await
        .expect("running");
    eventually(&mut snapshots, INTERVAL, "a and b healthy", |s| {
        is("web", &a, TargetState::Healthy)(s) && is("web", &b, TargetState::Healthy)(s)
    })
    .await;
    let a_since = snapshots
        .borrow()
        .group(&key("web"))
        .and_then(|g| g.target(&a))
        .map(|t| t.since);

    // b deregistered, c registered, a stays (with a new interval: still healthy).
    let slower = active(tcp_check(INTERVAL * 2, TIMEOUT, 3, 2));
    let changed_at = Instant::now();
    checker
        .set_groups(vec![group("web", &[&a, &c], slower, &prober)])
        .await
        .expect("running");
    let snapshot = snapshots.borrow_and_update().clone();
    let web = snapshot.group(&key("web")).expect("the group");
    let order: Vec<&Target> = web.targets.iter().map(|t| &t.target).collect();
    assert_eq!(
        order,
        vec![&a, &c, &b],
        "registered in config order, then draining"
    );
    assert_eq!(
        web.target(&a).map(|t| (t.state, t.since)),
        Some((TargetState::Healthy, a_since.expect("a known")))
    );
    assert_eq!(
        state_of(&snapshot, "web", &c),
        Some((
            TargetState::Initial,
            Some(ReasonCode::RegistrationInProgress)
        ))
    );
    assert_eq!(
        state_of(&snapshot, "web", &b),
        Some((
            TargetState::Draining,
            Some(ReasonCode::DeregistrationInProgress)
        ))
    );
    assert_eq!(web.draining().collect::<Vec<_>>(), vec![&b]);
    let registered = [a.clone(), c.clone()];
    let selection = snapshot.select(&key("web"), &registered);
    assert_eq!(
        selection.targets,
        vec![&a],
        "c waits for its first check, b drains"
    );

    // b is no longer probed; it disappears when the delay ends.
    let b_ip = *match b.id {
        TargetId::Ip(ref ip) => ip,
        TargetId::Instance(_) => unreachable!(),
    };
    eventually(&mut snapshots, delay * 2, "b forgotten", |s| {
        state_of(s, "web", &b).is_none()
    })
    .await;
    assert_eq!(
        Instant::now() - changed_at,
        delay,
        "forgotten when the delay ends"
    );
    assert!(
        prober
            .calls()
            .iter()
            .all(|(at, addr)| *addr.ip() != b_ip || *at <= changed_at),
        "b is not checked while draining"
    );

    // b registered again: a new target, INITIAL until it passes.
    checker
        .set_groups(vec![group(
            "web",
            &[&a, &c, &b],
            active(tcp_check(INTERVAL * 2, TIMEOUT, 3, 2)),
            &prober,
        )])
        .await
        .expect("running");
    assert_eq!(
        state_of(&snapshots.borrow_and_update(), "web", &b),
        Some((
            TargetState::Initial,
            Some(ReasonCode::RegistrationInProgress)
        ))
    );

    // Disabling the checks: unavailable, no more probes.
    checker
        .set_groups(vec![group("web", &[&a, &c, &b], Check::Disabled, &prober)])
        .await
        .expect("running");
    let calls = prober.calls().len();
    assert!(snapshots
        .borrow_and_update()
        .group(&key("web"))
        .expect("the group")
        .targets
        .iter()
        .all(|t| (t.state, t.reason)
            == (
                TargetState::Unavailable,
                Some(ReasonCode::HealthCheckDisabled)
            )));
    tokio::time::sleep(INTERVAL * 4).await;
    assert_eq!(prober.calls().len(), calls, "no checks once disabled");

    // The group leaves the config: its targets drain, then the group is gone.
    checker.set_groups(Vec::new()).await.expect("running");
    assert!(snapshots
        .borrow_and_update()
        .group(&key("web"))
        .expect("still there while draining")
        .targets
        .iter()
        .all(|t| t.state == TargetState::Draining));
    eventually(&mut snapshots, delay * 2, "group forgotten", |s| {
        s.groups.is_empty()
    })
    .await;
    checker.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn zero_deregistration_delay_forgets_at_once() {
    let prober = Arc::new(ScriptedProber::default());
    let a = target("10.0.0.1", 80);
    let checker = HealthChecker::start(CheckerOptions {
        deregistration_delay: Duration::ZERO,
    });
    let snapshots = checker.subscribe();
    checker
        .set_groups(vec![group("web", &[&a], checked(), &prober)])
        .await
        .expect("running");
    checker.set_groups(Vec::new()).await.expect("running");
    assert!(snapshots.borrow().groups.is_empty());
    checker.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_check() {
    let prober = Arc::new(ScriptedProber::default());
    let targets: Vec<Target> = (1..=4)
        .map(|i| target(&format!("10.0.0.{i}"), 80))
        .collect();
    let refs: Vec<&Target> = targets.iter().collect();
    let checker = HealthChecker::start(CheckerOptions::default());
    let mut snapshots = checker.subscribe();
    checker
        .set_groups(vec![group("web", &refs, checked(), &prober)])
        .await
        .expect("running");
    tokio::time::sleep(INTERVAL * 2).await;
    checker.shutdown().await.expect("clean shutdown");
    let calls = prober.calls().len();
    assert!(calls > 0);
    tokio::time::sleep(INTERVAL * 4).await;
    assert_eq!(prober.calls().len(), calls, "no checks after shutdown");
    assert_eq!(
        Arc::strong_count(&prober),
        1,
        "the probe tasks let go of the prober"
    );
    snapshots.borrow_and_update();
    assert!(
        snapshots.changed().await.is_err(),
        "subscribers see the end"
    );
}

#[tokio::test(start_paused = true)]
async fn registering_a_draining_target_again_starts_over() {
    let prober = Arc::new(ScriptedProber::default());
    let a = target("10.0.0.1", 80);
    let b = target("10.0.0.2", 80);
    let checker = HealthChecker::start(CheckerOptions::default());
    let mut snapshots = checker.subscribe();
    checker
        .set_groups(vec![group("web", &[&a, &b], checked(), &prober)])
        .await
        .expect("running");
    eventually(
        &mut snapshots,
        INTERVAL,
        "b healthy",
        is("web", &b, TargetState::Healthy),
    )
    .await;
    checker
        .set_groups(vec![group("web", &[&a], checked(), &prober)])
        .await
        .expect("running");
    assert!(is("web", &b, TargetState::Draining)(
        &snapshots.borrow_and_update()
    ));
    checker
        .set_groups(vec![group("web", &[&a, &b], checked(), &prober)])
        .await
        .expect("running");
    let snapshot = snapshots.borrow_and_update().clone();
    let web = snapshot.group(&key("web")).expect("the group");
    assert_eq!(web.targets.len(), 2, "no draining copy left: {web:#?}");
    assert_eq!(
        state_of(&snapshot, "web", &b),
        Some((
            TargetState::Initial,
            Some(ReasonCode::RegistrationInProgress)
        ))
    );
    eventually(
        &mut snapshots,
        INTERVAL,
        "b healthy again",
        is("web", &b, TargetState::Healthy),
    )
    .await;
    checker.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_group_moved_to_another_vpc_checks_its_targets_anew() {
    let here = Arc::new(ScriptedProber::default());
    let there = Arc::new(ScriptedProber::default());
    let a = target("10.0.0.1", 80);
    let checker = HealthChecker::start(CheckerOptions::default());
    let mut snapshots = checker.subscribe();
    checker
        .set_groups(vec![group("web", &[&a], checked(), &here)])
        .await
        .expect("running");
    eventually(
        &mut snapshots,
        INTERVAL,
        "a healthy",
        is("web", &a, TargetState::Healthy),
    )
    .await;
    // The same address in another VPC (another prober) is another host: it gets
    // traffic after its own first pass, and the old one drains.
    there.set(&a, Answer::Refuse);
    checker
        .set_groups(vec![group("web", &[&a], checked(), &there)])
        .await
        .expect("running");
    let snapshot = snapshots.borrow_and_update().clone();
    let web = snapshot.group(&key("web")).expect("the group");
    let states: Vec<TargetState> = web.targets.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [TargetState::Initial, TargetState::Draining],
        "{web:#?}"
    );
    eventually(
        &mut snapshots,
        INTERVAL * 3,
        "a unhealthy there",
        is("web", &a, TargetState::Unhealthy),
    )
    .await;
    checker.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_check_counts_as_failed_and_checking_goes_on() {
    let prober = Arc::new(ScriptedProber::default());
    let a = target("10.0.0.1", 80);
    prober.set(&a, Answer::Panic);
    let checker = HealthChecker::start(CheckerOptions::default());
    let mut snapshots = checker.subscribe();
    checker
        .set_groups(vec![group("web", &[&a], checked(), &prober)])
        .await
        .expect("running");
    eventually(&mut snapshots, INTERVAL * 3, "a unhealthy", |s| {
        state_of(s, "web", &a) == Some((TargetState::Unhealthy, Some(ReasonCode::InternalError)))
    })
    .await;
    prober.set(&a, Answer::Pass);
    eventually(
        &mut snapshots,
        INTERVAL * 4,
        "a healthy",
        is("web", &a, TargetState::Healthy),
    )
    .await;
    checker.shutdown().await.expect("clean shutdown");
}
