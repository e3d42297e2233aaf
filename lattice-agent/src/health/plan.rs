//! What to check, derived from the config: per target group, whether and how its
//! targets are checked and from which network namespace. The decisions are pure
//! functions ([`check_for`], [`namespace_of`], [`monitoring_for`]); [`plan`] puts them
//! together with the probers, which [`Probers`] keeps one per namespace.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use super::connect::{Connector, HostConnector, NetnsConnector};
use super::probe::{Prober, SocketProber};
use super::snapshot::GroupKey;
use super::state::{Monitoring, Thresholds};
use crate::config::{
    Action, Attachment, Config, HealthCheckProtocol, HealthCheckProtocolVersion, Port,
    StatusMatcher, Target, TargetGroup, TargetGroupRef, TargetId, Vpc,
};

/// One target group to check: the checker's input.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub key: GroupKey,
    /// For logs and the snapshot.
    pub name: String,
    /// Registered targets, in config order.
    pub targets: Vec<Target>,
    pub check: Check,
    /// Runs this group's checks (from the namespace of its vpc).
    pub prober: Arc<dyn Prober>,
}

/// How a group's targets are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No service forwards to the group: targets are UNUSED, nothing is probed.
    NotInUse,
    /// Health checks are disabled: targets are UNAVAILABLE and get traffic.
    Disabled,
    Active(Arc<ActiveCheck>),
}

/// The settings of an enabled check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    pub probe: Probe,
    /// `None`: each target's own port.
    pub port: Option<Port>,
    pub interval: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
}

/// What one check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Passes when a TCP connection is established.
    TcpConnect,
    /// `GET path` over HTTP/1.1 (over TLS when `tls`, the HTTPS protocol); passes
    /// when the status matches.
    Http1 {
        path: String,
        matcher: StatusMatcher,
        tls: bool,
    },
    /// `GET path` over HTTP/2 (prior knowledge, or over TLS with ALPN h2 when `tls`);
    /// passes when the status matches.
    Http2 {
        path: String,
        matcher: StatusMatcher,
        tls: bool,
    },
}

/// The network namespace a vpc's targets are reached from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeNamespace {
    /// The agent's own (vpcs made only of host cgroups).
    Host,
    /// A named namespace under /run/netns.
    Netns(String),
}

/// How `group`'s targets are checked. `in_use`: some service forwards to it.
///
/// TCP groups get a TCP connect check (this project's issue asks for it; Lattice itself
/// sends its HTTP or HTTPS check to TCP groups too). HTTP and HTTPS groups get the
/// configured check: HTTP or HTTPS, HTTP/1.1 or HTTP/2. Over HTTPS, as for traffic to
/// HTTPS targets, the target's certificate is not verified (Lattice does not).
pub fn check_for(group: &TargetGroup, in_use: bool) -> Check {
    let hc = &group.health_check;
    if !in_use {
        return Check::NotInUse;
    }
    if !hc.enabled {
        return Check::Disabled;
    }
    let tls = hc.protocol == HealthCheckProtocol::Https;
    let probe = match (hc.protocol, hc.protocol_version) {
        (HealthCheckProtocol::Tcp, _) => Probe::TcpConnect,
        (_, HealthCheckProtocolVersion::Http2) => Probe::Http2 {
            path: hc.path.clone(),
            matcher: hc.matcher.clone(),
            tls,
        },
        (_, HealthCheckProtocolVersion::Http1) => Probe::Http1 {
            path: hc.path.clone(),
            matcher: hc.matcher.clone(),
            tls,
        },
    };
    Check::Active(Arc::new(ActiveCheck {
        probe,
        port: hc.port,
        interval: hc.interval,
        timeout: hc.timeout,
        thresholds: Thresholds {
            healthy: hc.healthy_threshold,
            unhealthy: hc.unhealthy_threshold,
        },
    }))
}

/// The namespace `vpc`'s targets are checked from: its first network namespace, or the
/// host's when it is made only of cgroups (host processes).
pub fn namespace_of(vpc: &Vpc) -> ProbeNamespace {
    vpc.attachments
        .iter()
        .find_map(|attachment| match attachment {
            Attachment::Netns(name) => Some(ProbeNamespace::Netns(name.clone())),
            Attachment::Cgroup(_) => None,
        })
        .unwrap_or(ProbeNamespace::Host)
}

/// How one target of a group with `check` is monitored. INSTANCE targets have no
/// address this agent knows, so their checks are unsupported.
pub fn monitoring_for(check: &Check, target: &Target) -> Monitoring {
    match check {
        Check::NotInUse => Monitoring::NotInUse,
        Check::Disabled => Monitoring::Disabled,
        Check::Active(_) => match target.id {
            TargetId::Ip(_) => Monitoring::Probed,
            TargetId::Instance(_) => Monitoring::Unsupported,
        },
    }
}

/// Where `target` is checked: its address, on the health check port if one is set.
pub fn probe_addr(target: &Target, check: &ActiveCheck) -> Option<SocketAddrV4> {
    match target.id {
        TargetId::Ip(ip) => Some(SocketAddrV4::new(
            ip,
            check.port.unwrap_or(target.port).get(),
        )),
        TargetId::Instance(_) => None,
    }
}

/// The groups some listener forwards to (default action or rule; weight 0 included).
pub fn groups_in_use(config: &Config) -> HashSet<TargetGroupRef> {
    config
        .services()
        .iter()
        .flat_map(|service| &service.listeners)
        .flat_map(|listener| {
            std::iter::once(&listener.default_action)
                .chain(listener.rules.iter().map(|rule| &rule.action))
        })
        .flat_map(|action| match action {
            Action::Forward(groups) => groups.as_slice(),
            Action::FixedResponse(_) => &[],
        })
        .map(|weighted| weighted.target_group)
        .collect()
}

/// The groups of `config` to check, with probers from `probers` (which then forgets
/// the namespaces no group uses). Logs a warning per group whose check cannot be made.
pub fn plan(config: &Config, probers: &mut Probers) -> Vec<GroupSpec> {
    let in_use = groups_in_use(config);
    let mut namespaces = HashSet::new();
    let specs = config
        .target_groups()
        .iter()
        .enumerate()
        .map(|(index, group)| {
            let check = check_for(group, in_use.contains(&TargetGroupRef(index)));
            warn_unsupported(group, &check);
            let namespace = namespace_of(config.vpc(group.vpc));
            let prober = probers.get(&namespace);
            namespaces.insert(namespace);
            GroupSpec {
                key: GroupKey::of(group),
                name: group.name.to_string(),
                targets: group.targets.clone(),
                check,
                prober,
            }
        })
        .collect();
    probers.retain(&namespaces);
    specs
}

fn warn_unsupported(group: &TargetGroup, check: &Check) {
    match check {
        Check::Active(_) => {
            let instances = group
                .targets
                .iter()
                .filter(|t| matches!(t.id, TargetId::Instance(_)))
                .count();
            if instances > 0 {
                tracing::warn!(
                    target_group = %group.name,
                    instances,
                    "INSTANCE targets have no address to check; they are reported UNAVAILABLE (HealthCheckUnsupported) and receive traffic"
                );
            }
        }
        Check::NotInUse | Check::Disabled => {}
    }
}

/// One [`SocketProber`] per network namespace, kept across config changes so the
/// checker sees the same prober and keeps its probe schedule, and so each namespace
/// has one socket thread.
#[derive(Debug, Default)]
pub struct Probers {
    probers: HashMap<ProbeNamespace, Arc<dyn Prober>>,
}

impl Probers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The prober for `namespace`, made on first use.
    pub fn get(&mut self, namespace: &ProbeNamespace) -> Arc<dyn Prober> {
        let prober = self.probers.entry(namespace.clone()).or_insert_with(|| {
            let connector: Arc<dyn Connector> = match namespace {
                ProbeNamespace::Host => Arc::new(HostConnector),
                ProbeNamespace::Netns(name) => Arc::new(NetnsConnector::new(name.clone())),
            };
            Arc::new(SocketProber::new(connector))
        });
        Arc::clone(prober)
    }

    /// Forgets the probers of other namespaces (their threads stop once the checker
    /// lets go of them too).
    pub fn retain(&mut self, namespaces: &HashSet<ProbeNamespace>) {
        self.probers
            .retain(|namespace, _| namespaces.contains(namespace));
    }
}
