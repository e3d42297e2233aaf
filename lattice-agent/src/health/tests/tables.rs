//! Tables for the pure parts: the state machine, selection, status lines, the plan
//! from a config, and the reason code of each probe failure.

use std::io;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::config;

use ReasonCode as R;
use TargetState as S;

/// One input to the state machine.
#[derive(Debug, Clone, Copy)]
enum Step {
    Pass,
    Fail(ReasonCode),
    Drain,
    Monitor(Monitoring),
}

use Step::{Drain, Fail, Monitor, Pass};

struct MachineCase {
    name: &'static str,
    /// (healthy, unhealthy) thresholds.
    thresholds: (u8, u8),
    start: Monitoring,
    /// Each step with the state and reason expected after it.
    steps: &'static [(Step, TargetState, Option<ReasonCode>)],
}

const MACHINE: &[MachineCase] = &[
    MachineCase {
        name: "a new target becomes healthy on its first pass",
        thresholds: (5, 2),
        start: Monitoring::Probed,
        steps: &[(Pass, S::Healthy, None)],
    },
    MachineCase {
        name: "a new target fails below the threshold: still initial",
        thresholds: (5, 3),
        start: Monitoring::Probed,
        steps: &[
            (Fail(R::Timeout), S::Initial, Some(R::InitialHealthChecking)),
            (Fail(R::Timeout), S::Initial, Some(R::InitialHealthChecking)),
            (Fail(R::Timeout), S::Unhealthy, Some(R::Timeout)),
        ],
    },
    MachineCase {
        name: "an initial target with failures still needs just one pass",
        thresholds: (5, 3),
        start: Monitoring::Probed,
        steps: &[
            (Fail(R::Timeout), S::Initial, Some(R::InitialHealthChecking)),
            (Pass, S::Healthy, None),
        ],
    },
    MachineCase {
        name: "healthy to unhealthy after consecutive failures only",
        thresholds: (5, 2),
        start: Monitoring::Probed,
        steps: &[
            (Pass, S::Healthy, None),
            (Fail(R::FailedHealthChecks), S::Healthy, None),
            (Pass, S::Healthy, None),
            (Fail(R::FailedHealthChecks), S::Healthy, None),
            (
                Fail(R::ResponseCodeMismatch),
                S::Unhealthy,
                Some(R::ResponseCodeMismatch),
            ),
        ],
    },
    MachineCase {
        name: "unhealthy reports the latest failure",
        thresholds: (5, 2),
        start: Monitoring::Probed,
        steps: &[
            (Fail(R::Timeout), S::Initial, Some(R::InitialHealthChecking)),
            (Fail(R::Timeout), S::Unhealthy, Some(R::Timeout)),
            (
                Fail(R::FailedHealthChecks),
                S::Unhealthy,
                Some(R::FailedHealthChecks),
            ),
        ],
    },
    MachineCase {
        name: "unhealthy to healthy after consecutive passes only",
        thresholds: (3, 2),
        start: Monitoring::Probed,
        steps: &[
            (Fail(R::Timeout), S::Initial, Some(R::InitialHealthChecking)),
            (Fail(R::Timeout), S::Unhealthy, Some(R::Timeout)),
            (Pass, S::Unhealthy, Some(R::Timeout)),
            (Pass, S::Unhealthy, Some(R::Timeout)),
            (Fail(R::Timeout), S::Unhealthy, Some(R::Timeout)),
            (Pass, S::Unhealthy, Some(R::Timeout)),
            (Pass, S::Unhealthy, Some(R::Timeout)),
            (Pass, S::Healthy, None),
        ],
    },
    MachineCase {
        name: "failure count starts over after recovering",
        thresholds: (2, 2),
        start: Monitoring::Probed,
        steps: &[
            (Pass, S::Healthy, None),
            (Fail(R::Timeout), S::Healthy, None),
            (Fail(R::Timeout), S::Unhealthy, Some(R::Timeout)),
            (Pass, S::Unhealthy, Some(R::Timeout)),
            (Pass, S::Healthy, None),
            (Fail(R::Timeout), S::Healthy, None),
        ],
    },
    MachineCase {
        name: "checks disabled: unavailable, probe results ignored",
        thresholds: (5, 2),
        start: Monitoring::Disabled,
        steps: &[
            (
                Fail(R::Timeout),
                S::Unavailable,
                Some(R::HealthCheckDisabled),
            ),
            (Pass, S::Unavailable, Some(R::HealthCheckDisabled)),
        ],
    },
    MachineCase {
        name: "unsupported check: unavailable",
        thresholds: (5, 2),
        start: Monitoring::Unsupported,
        steps: &[(Pass, S::Unavailable, Some(R::HealthCheckUnsupported))],
    },
    MachineCase {
        name: "group not in use: unused",
        thresholds: (5, 2),
        start: Monitoring::NotInUse,
        steps: &[(Fail(R::Timeout), S::Unused, Some(R::NotInUse))],
    },
    MachineCase {
        name: "enabling checks starts over as initial",
        thresholds: (5, 2),
        start: Monitoring::Disabled,
        steps: &[
            (
                Monitor(Monitoring::Probed),
                S::Initial,
                Some(R::RegistrationInProgress),
            ),
            (Pass, S::Healthy, None),
        ],
    },
    MachineCase {
        name: "staying probed keeps state and counters",
        thresholds: (5, 2),
        start: Monitoring::Probed,
        steps: &[
            (Pass, S::Healthy, None),
            (Fail(R::Timeout), S::Healthy, None),
            (Monitor(Monitoring::Probed), S::Healthy, None),
            (Fail(R::Timeout), S::Unhealthy, Some(R::Timeout)),
        ],
    },
    MachineCase {
        name: "disabling checks makes an unhealthy target unavailable",
        thresholds: (5, 2),
        start: Monitoring::Probed,
        steps: &[
            (Fail(R::Timeout), S::Initial, Some(R::InitialHealthChecking)),
            (Fail(R::Timeout), S::Unhealthy, Some(R::Timeout)),
            (
                Monitor(Monitoring::Disabled),
                S::Unavailable,
                Some(R::HealthCheckDisabled),
            ),
        ],
    },
    MachineCase {
        name: "draining ignores probes and monitoring",
        thresholds: (5, 2),
        start: Monitoring::Probed,
        steps: &[
            (Pass, S::Healthy, None),
            (Drain, S::Draining, Some(R::DeregistrationInProgress)),
            (
                Fail(R::Timeout),
                S::Draining,
                Some(R::DeregistrationInProgress),
            ),
            (Pass, S::Draining, Some(R::DeregistrationInProgress)),
            (
                Monitor(Monitoring::Probed),
                S::Draining,
                Some(R::DeregistrationInProgress),
            ),
            (Drain, S::Draining, Some(R::DeregistrationInProgress)),
        ],
    },
    MachineCase {
        name: "unavailable targets drain too",
        thresholds: (5, 2),
        start: Monitoring::Disabled,
        steps: &[(Drain, S::Draining, Some(R::DeregistrationInProgress))],
    },
];

#[test]
fn state_machine() {
    let start = Instant::now();
    for case in MACHINE {
        let thresholds = Thresholds {
            healthy: case.thresholds.0,
            unhealthy: case.thresholds.1,
        };
        let mut health = TargetHealth::new(case.start, start);
        for (i, (step, state, reason)) in case.steps.iter().enumerate() {
            let now = start + Duration::from_secs(i as u64 + 1);
            let before = (health.state(), health.reason(), health.since());
            let changed = match *step {
                Pass => health.on_probe(ProbeOutcome::Pass, thresholds, now),
                Fail(reason) => health.on_probe(ProbeOutcome::Fail(reason), thresholds, now),
                Drain => health.drain(now),
                Monitor(monitoring) => health.set_monitoring(monitoring, now),
            };
            let at = format!("{}: step {i} ({step:?})", case.name);
            assert_eq!((health.state(), health.reason()), (*state, *reason), "{at}");
            assert_eq!(
                changed,
                (before.0, before.1) != (*state, *reason),
                "{at}: reported change"
            );
            let expected_since = if before.0 == *state { before.2 } else { now };
            assert_eq!(health.since(), expected_since, "{at}: since");
        }
    }
}

#[test]
fn new_targets_start_with_their_monitoring() {
    let now = Instant::now();
    for (monitoring, state, reason) in [
        (Monitoring::Probed, S::Initial, R::RegistrationInProgress),
        (Monitoring::Disabled, S::Unavailable, R::HealthCheckDisabled),
        (
            Monitoring::Unsupported,
            S::Unavailable,
            R::HealthCheckUnsupported,
        ),
        (Monitoring::NotInUse, S::Unused, R::NotInUse),
    ] {
        let health = TargetHealth::new(monitoring, now);
        assert_eq!(
            (health.state(), health.reason()),
            (state, Some(reason)),
            "{monitoring:?}"
        );
        assert_eq!(health.since(), now);
    }
}

#[test]
fn draining_ends_after_the_delay() {
    let start = Instant::now();
    let delay = Duration::from_secs(300);
    let mut health = TargetHealth::new(Monitoring::Probed, start);
    assert!(!health.drained(start + delay * 2, delay), "not draining");
    assert_eq!(health.drain_deadline(delay), None);
    let drained_at = start + Duration::from_secs(10);
    health.drain(drained_at);
    assert_eq!(health.drain_deadline(delay), Some(drained_at + delay));
    assert!(!health.drained(drained_at + delay - Duration::from_millis(1), delay));
    assert!(health.drained(drained_at + delay, delay));
    let mut immediate = TargetHealth::new(Monitoring::Disabled, start);
    immediate.drain(start);
    assert!(
        immediate.drained(start, Duration::ZERO),
        "a zero delay ends at once"
    );
}

struct SelectionCase {
    name: &'static str,
    states: &'static [TargetState],
    /// Indices into `states` of the chosen targets.
    chosen: &'static [usize],
    fail_open: bool,
}

const SELECTION: &[SelectionCase] = &[
    SelectionCase {
        name: "healthy ones only",
        states: &[S::Healthy, S::Unhealthy, S::Healthy, S::Initial],
        chosen: &[0, 2],
        fail_open: false,
    },
    SelectionCase {
        name: "unchecked ones count as able",
        states: &[S::Unavailable, S::Unhealthy, S::Unused],
        chosen: &[0, 2],
        fail_open: false,
    },
    SelectionCase {
        name: "draining ones never get new flows",
        states: &[S::Draining, S::Healthy],
        chosen: &[1],
        fail_open: false,
    },
    SelectionCase {
        name: "all unhealthy: fail open to all of them",
        states: &[S::Unhealthy, S::Unhealthy],
        chosen: &[0, 1],
        fail_open: true,
    },
    SelectionCase {
        name: "all new: fail open",
        states: &[S::Initial, S::Initial],
        chosen: &[0, 1],
        fail_open: true,
    },
    SelectionCase {
        name: "fail open leaves draining ones out",
        states: &[S::Unhealthy, S::Draining, S::Initial],
        chosen: &[0, 2],
        fail_open: true,
    },
    SelectionCase {
        name: "only draining ones: none",
        states: &[S::Draining, S::Draining],
        chosen: &[],
        fail_open: false,
    },
    SelectionCase {
        name: "no targets: none",
        states: &[],
        chosen: &[],
        fail_open: false,
    },
];

#[test]
fn selection() {
    for case in SELECTION {
        let targets: Vec<Target> = (0..case.states.len())
            .map(|i| target(&format!("10.0.0.{}", i + 1), 80))
            .collect();
        let selection = select_for_new_flows(targets.iter().zip(case.states.iter().copied()));
        let expected: Vec<&Target> = case.chosen.iter().map(|&i| &targets[i]).collect();
        assert_eq!(selection.targets, expected, "{}", case.name);
        assert_eq!(selection.fail_open, case.fail_open, "{}", case.name);
    }
}

#[test]
fn selection_from_config_and_a_lagging_snapshot() {
    let now = Instant::now();
    let a = target("10.0.0.1", 80);
    let b = target("10.0.0.2", 80);
    let c = target("10.0.0.3", 80);
    let gone = target("10.0.0.9", 80);
    let status = |t: &Target, state| TargetStatus {
        target: t.clone(),
        state,
        reason: None,
        since: now,
    };
    let health = GroupHealth {
        name: "g".to_owned(),
        targets: vec![
            status(&a, S::Healthy),
            status(&b, S::Draining),
            status(&gone, S::Draining),
        ],
    };
    let registered = vec![a.clone(), b.clone(), c.clone()];
    // b was registered again (snapshot still says draining) and c is unknown: both are
    // new and wait for a check; a is healthy.
    let selection = select(&registered, Some(&health));
    assert_eq!(selection.targets, vec![&a]);
    assert!(!selection.fail_open);
    assert_eq!(health.draining().collect::<Vec<_>>(), vec![&b, &gone]);
    // A group the checker does not know yet: everything is new, so fail open.
    let unknown = select(&registered, None);
    assert_eq!(unknown.targets, vec![&a, &b, &c]);
    assert!(unknown.fail_open);
    // The snapshot alone.
    let alone = health.select_for_new_flows();
    assert_eq!(alone.targets, vec![&a]);
}

#[test]
fn summaries_have_lattice_shape() {
    let now = Instant::now();
    let health = GroupHealth {
        name: "g".to_owned(),
        targets: vec![
            TargetStatus {
                target: target("10.0.0.1", 8080),
                state: S::Unhealthy,
                reason: Some(R::ResponseCodeMismatch),
                since: now,
            },
            TargetStatus {
                target: target("10.0.0.2", 8080),
                state: S::Healthy,
                reason: None,
                since: now,
            },
        ],
    };
    let json = serde_json::to_value(health.summaries()).expect("serializable");
    assert_eq!(
        json,
        serde_json::json!([
            { "id": "10.0.0.1", "port": 8080, "status": "UNHEALTHY", "reasonCode": "ResponseCodeMismatch" },
            { "id": "10.0.0.2", "port": 8080, "status": "HEALTHY" },
        ])
    );
}

#[test]
fn status_lines() {
    let table: &[(&str, Option<u16>)] = &[
        ("HTTP/1.1 200 OK", Some(200)),
        ("HTTP/1.0 503 Service Unavailable", Some(503)),
        ("HTTP/1.1 204", Some(204)),
        ("HTTP/1.1 404 ", Some(404)),
        ("HTTP/1.1 100 Continue", Some(100)),
        ("HTTP/2 200", None),
        ("HTTP/1.1 2000 OK", None),
        ("HTTP/1.1 20 OK", None),
        ("HTTP/1.1 099 Low", None),
        ("HTTP/1.1 600 High", None),
        ("HTTP/1.1  200 OK", None),
        ("HTTP/1.x 200 OK", None),
        ("http/1.1 200 OK", None),
        ("SSH-2.0-OpenSSH_9.2", None),
        ("", None),
    ];
    for (line, expected) in table {
        let parsed = http1::parse_status_line(line.as_bytes());
        assert_eq!(
            parsed.as_ref().ok().copied(),
            *expected,
            "{line:?}: {parsed:?}"
        );
        if expected.is_none() {
            assert!(
                matches!(parsed, Err(Malformed::StatusLine(_))),
                "{line:?}: {parsed:?}"
            );
        }
    }
}

#[test]
fn probe_failures_map_to_reason_codes() {
    let addr = "10.0.0.1:80".parse().expect("an address");
    let io = |kind| io::Error::from(kind);
    let table: Vec<(ProbeError, ReasonCode)> = vec![
        (
            ProbeError::Connect(ConnectError::Timeout {
                addr,
                timeout: Duration::from_secs(5),
            }),
            R::Timeout,
        ),
        (
            ProbeError::Timeout {
                timeout: Duration::from_secs(5),
            },
            R::Timeout,
        ),
        (
            ProbeError::Connect(ConnectError::Connect {
                addr,
                source: io(io::ErrorKind::ConnectionRefused),
            }),
            R::FailedHealthChecks,
        ),
        (
            ProbeError::Connect(ConnectError::OpenNetns {
                netns: "vpc".to_owned(),
                path: "/run/netns/vpc".into(),
                source: io(io::ErrorKind::NotFound),
            }),
            R::InternalError,
        ),
        (
            ProbeError::Connect(ConnectError::Socket {
                netns: None,
                source: io(io::ErrorKind::OutOfMemory),
            }),
            R::InternalError,
        ),
        (
            ProbeError::Http(Http1Error::Receive(io(io::ErrorKind::ConnectionReset))),
            R::FailedHealthChecks,
        ),
        (
            ProbeError::Http(Http1Error::Malformed(Malformed::Closed)),
            R::FailedHealthChecks,
        ),
        (ProbeError::Status { status: 500 }, R::ResponseCodeMismatch),
    ];
    for (error, reason) in table {
        assert_eq!(error.reason(), reason, "{error}");
        assert_eq!(ProbeError::outcome(&Err(error)), ProbeOutcome::Fail(reason));
    }
    assert_eq!(ProbeError::outcome(&Ok(())), ProbeOutcome::Pass);
}

/// Groups covering each planning decision; `used-*` groups are forwarded to.
const PLAN_DOC: &str = r#"
accounts: [{ id: "111111111111" }]
vpcs:
  - { name: vpc-ns, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{ cgroup: lattice/a }, { netns: lt-first }, { netns: lt-second }] }
  - { name: vpc-host, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{ cgroup: lattice/b }] }
services:
  - name: svc
    account: "111111111111"
    authType: NONE
    listeners:
      - name: web
        protocol: HTTP
        port: 80
        defaultAction: { forward: { targetGroups: [{ targetGroupIdentifier: used-http1, weight: 1 }] } }
        rules:
          - name: by-path
            priority: 1
            match: { httpMatch: { pathMatch: { match: { prefix: /x } } } }
            action:
              forward:
                targetGroups:
                  - { targetGroupIdentifier: used-http2, weight: 1 }
                  - { targetGroupIdentifier: used-https-check, weight: 0 }
                  - { targetGroupIdentifier: used-disabled, weight: 1 }
                  - { targetGroupIdentifier: used-instances, weight: 1 }
      - name: pg
        protocol: TCP
        port: 5432
        defaultAction: { forward: { targetGroups: [{ targetGroupIdentifier: used-tcp, weight: 1 }] } }
targetGroups:
  - name: used-http1
    type: IP
    config:
      vpcIdentifier: vpc-ns
      protocol: HTTP
      port: 8080
      healthCheck: { path: /healthz, port: 9000, healthCheckIntervalSeconds: 10, healthCheckTimeoutSeconds: 3, healthyThresholdCount: 4, unhealthyThresholdCount: 3, matcher: { httpCode: "200-204" } }
    targets: [{ id: 10.91.0.10 }, { id: 10.91.0.11, port: 8081 }]
  - name: used-http2
    type: IP
    config: { vpcIdentifier: vpc-ns, protocol: HTTP, protocolVersion: HTTP2, port: 80, healthCheck: { enabled: true } }
    targets: [{ id: 10.91.0.12 }]
  - name: used-https-check
    type: IP
    config: { vpcIdentifier: vpc-ns, protocol: HTTPS, port: 443, healthCheck: { protocol: HTTPS } }
    targets: [{ id: 10.91.0.13 }]
  - name: used-disabled
    type: IP
    config: { vpcIdentifier: vpc-ns, protocol: HTTP, port: 80, healthCheck: { enabled: false } }
    targets: [{ id: 10.91.0.14 }]
  - name: used-instances
    type: INSTANCE
    config: { vpcIdentifier: vpc-host, protocol: HTTP, port: 80 }
    targets: [{ id: i-0123456789abcdef0 }]
  - name: used-tcp
    type: IP
    config: { vpcIdentifier: vpc-host, protocol: TCP, port: 5432, healthCheck: { enabled: true } }
    targets: [{ id: 10.92.0.20 }]
  - name: unused
    type: IP
    config: { vpcIdentifier: vpc-host, protocol: HTTP, port: 80 }
    targets: [{ id: 10.92.0.30 }]
"#;

fn plan_config() -> config::Config {
    config::parse_str(PLAN_DOC, Path::new("plan.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn checks_per_group() {
    let config = plan_config();
    let group = |name: &str| {
        let r = config.target_group_by_name(name).expect("a group");
        config.target_group(r)
    };
    let in_use = groups_in_use(&config);
    let used = |name: &str| in_use.contains(&config.target_group_by_name(name).expect("a group"));
    for name in [
        "used-http1",
        "used-http2",
        "used-https-check",
        "used-disabled",
        "used-instances",
        "used-tcp",
    ] {
        assert!(used(name), "{name} is forwarded to");
    }
    assert!(!used("unused"));

    let http1 = ActiveCheck {
        probe: Probe::Http1 {
            path: "/healthz".to_owned(),
            matcher: StatusMatcher(vec![200..=204]),
            tls: false,
        },
        port: Some(port_of(9000)),
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(3),
        thresholds: Thresholds {
            healthy: 4,
            unhealthy: 3,
        },
    };
    let defaults = |probe| ActiveCheck {
        probe,
        port: None,
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        thresholds: Thresholds {
            healthy: 5,
            unhealthy: 2,
        },
    };
    let table: Vec<(&str, bool, Check)> = vec![
        ("used-http1", true, active(http1)),
        (
            "used-http2",
            true,
            active(defaults(Probe::Http2 {
                path: "/".to_owned(),
                matcher: StatusMatcher(vec![200..=200]),
                tls: false,
            })),
        ),
        (
            "used-https-check",
            true,
            active(defaults(Probe::Http1 {
                path: "/".to_owned(),
                matcher: StatusMatcher(vec![200..=200]),
                tls: true,
            })),
        ),
        ("used-disabled", true, Check::Disabled),
        (
            "used-instances",
            true,
            active(defaults(Probe::Http1 {
                path: "/".to_owned(),
                matcher: StatusMatcher(vec![200..=200]),
                tls: false,
            })),
        ),
        ("used-tcp", true, active(defaults(Probe::TcpConnect))),
        ("used-http1", false, Check::NotInUse),
        ("unused", false, Check::NotInUse),
    ];
    for (name, in_use, expected) in table {
        assert_eq!(
            check_for(group(name), in_use),
            expected,
            "{name} (in use: {in_use})"
        );
    }
}

#[test]
fn targets_per_check() {
    let ip = target("10.91.0.10", 8080);
    let id = instance("i-0123456789abcdef0", 80);
    let mut check = http_check("/", 200, Duration::from_secs(5));
    let table = [
        (Check::NotInUse, &ip, Monitoring::NotInUse),
        (Check::Disabled, &ip, Monitoring::Disabled),
        (active(check.clone()), &ip, Monitoring::Probed),
        (active(check.clone()), &id, Monitoring::Unsupported),
    ];
    for (check, target, expected) in table {
        assert_eq!(
            monitoring_for(&check, target),
            expected,
            "{check:?} {target:?}"
        );
    }
    assert_eq!(
        probe_addr(&ip, &check),
        Some(SocketAddrV4::new([10, 91, 0, 10].into(), 8080))
    );
    check.port = Some(port_of(9000));
    assert_eq!(
        probe_addr(&ip, &check),
        Some(SocketAddrV4::new([10, 91, 0, 10].into(), 9000)),
        "the health check port wins"
    );
    assert_eq!(probe_addr(&id, &check), None);
}

#[test]
fn plan_from_config() {
    let config = plan_config();
    let vpc = |name: &str| config.vpc(config.vpc_by_name(name).expect("a vpc"));
    assert_eq!(
        namespace_of(vpc("vpc-ns")),
        ProbeNamespace::Netns("lt-first".to_owned()),
        "the first netns attachment"
    );
    assert_eq!(namespace_of(vpc("vpc-host")), ProbeNamespace::Host);

    let mut probers = Probers::new();
    let specs = plan(&config, &mut probers);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "used-http1",
            "used-http2",
            "used-https-check",
            "used-disabled",
            "used-instances",
            "used-tcp",
            "unused"
        ]
    );
    for (spec, group) in specs.iter().zip(config.target_groups()) {
        assert_eq!(spec.key, GroupKey::of(group));
        assert!(spec.key.as_str().starts_with("tg-"), "{}", spec.key);
        assert_eq!(spec.targets, group.targets);
    }
    // One prober per namespace, kept across plans.
    assert!(Arc::ptr_eq(&specs[0].prober, &specs[1].prober), "same vpc");
    assert!(
        !Arc::ptr_eq(&specs[0].prober, &specs[4].prober),
        "other vpc"
    );
    let again = plan(&config, &mut probers);
    for (first, second) in specs.iter().zip(&again) {
        assert!(Arc::ptr_eq(&first.prober, &second.prober), "{}", first.name);
    }
}
