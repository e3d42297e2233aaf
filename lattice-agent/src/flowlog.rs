//! Access log records of TCP flows. TCP listeners are the kernel's: no userspace hop
//! sees their connections, so tc ingress reports each flow it opens in a ring buffer
//! (`LT_FLOWLOG_V1`, only while some subscription wants TCP flows), and this reader
//! turns the reports into records for the subscriptions of the flow's service and
//! service network, with the resource-access fields: when, from where (VPC, address
//! and port), to what (service, network, listener's VIP and port), through which
//! address (the VPC's SNAT address and port the target sees) and to which target
//! (group, address and port).
//!
//! The reader never holds a flow up: the kernel drops reports when the ring is full,
//! and records go through the same bounded queues as HTTP's.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, RingBuf};
use lattice_common::flowlog::FlowEvent;
use serde_json::json;
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

use crate::{
    config::{Config, ListenerProtocol, LoggedResource},
    dataplane::compile::key_of,
    l7::{proxy::Proxy, switch::ProxySwitch},
    resolve::Resolved,
};

/// Whether any subscription covers a TCP listener: a service with one, or a network
/// holding such a service. Only then does the kernel report flows.
pub fn wanted(config: &Config) -> bool {
    let has_tcp = |s: &crate::config::Service| {
        s.listeners
            .iter()
            .any(|l| l.protocol == ListenerProtocol::Tcp)
    };
    config
        .access_log_subscriptions()
        .iter()
        .any(|sub| match sub.resource {
            LoggedResource::Service(s) => has_tcp(config.service(s)),
            LoggedResource::ServiceNetwork(n) => config
                .service_network(n)
                .service_associations
                .iter()
                .any(|s| has_tcp(config.service(*s))),
        })
}

/// The config's names of what a report carries as keys.
#[derive(Debug, Default)]
pub struct FlowNames {
    /// (VIP, port) -> (service index, listener name).
    listeners: HashMap<(Ipv4Addr, u16), (usize, String)>,
    /// VPC key -> VPC index.
    vpcs: HashMap<u32, usize>,
    /// Target group key -> group index.
    groups: HashMap<u32, usize>,
    /// (VPC index, service index) -> the network through which the VPC reaches it.
    networks: HashMap<(usize, usize), usize>,
}

impl FlowNames {
    pub fn of(config: &Config, resolved: &Resolved) -> FlowNames {
        let mut names = FlowNames::default();
        for (s, service) in config.services().iter().enumerate() {
            for l in &service.listeners {
                let key = (resolved.services[s].vip, l.port.get());
                names.listeners.insert(key, (s, l.name.to_string()));
            }
        }
        for (v, vpc) in resolved.vpcs.iter().enumerate() {
            names.vpcs.insert(key_of(&vpc.id), v);
        }
        for (g, group) in resolved.target_groups.iter().enumerate() {
            names.groups.insert(key_of(&group.id), g);
        }
        for (n, network) in config.service_networks().iter().enumerate() {
            for assoc in &network.vpc_associations {
                for service in &network.service_associations {
                    names
                        .networks
                        .insert((assoc.vpc.index(), service.index()), n);
                }
            }
        }
        names
    }
}

/// A report's access log record: the service and network whose subscriptions get it,
/// and the JSON line. `None` when the report names what the config no longer has (a
/// flow opened just before a change).
pub fn record(
    event: &FlowEvent,
    names: &FlowNames,
    resolved: &Resolved,
    opened: SystemTime,
) -> Option<(usize, usize, String)> {
    let addr = |a: u32, p: u16| SocketAddrV4::new(Ipv4Addr::from(u32::from_be(a)), u16::from_be(p));
    let vip = addr(event.vip, event.vport);
    let (service, listener) = names.listeners.get(&(*vip.ip(), vip.port()))?;
    let vpc = *names.vpcs.get(&event.vpc)?;
    let network = *names.networks.get(&(vpc, *service))?;
    let group = names.groups.get(&event.target_group).copied();
    let line = json!({
        "eventTimestamp": crate::clock::iso8601_ms(opened),
        "startTime": crate::clock::iso8601_ms(opened),
        "protocol": "TCP",
        "sourceVpcArn": resolved.vpcs[vpc].arn,
        "sourceVpcId": resolved.vpcs[vpc].id,
        "sourceIpPort": addr(event.saddr, event.sport).to_string(),
        "serviceNetworkArn": resolved.service_networks[network].arn,
        "serviceArn": resolved.services[*service].arn,
        "listenerName": listener,
        "destinationIpPort": vip.to_string(),
        "gatewayIpPort": addr(event.snat_addr, event.snat_port).to_string(),
        "targetGroupArn": group.map(|g| resolved.target_groups[g].arn.clone()),
        "targetIpPort": addr(event.target_addr, event.target_port).to_string(),
    });
    Some((*service, network, line.to_string()))
}

/// When a report's `bpf_ktime_get_ns()` was, on the wall clock.
fn wall_time(ts_ns: u64) -> SystemTime {
    let now_mono = crate::dataplane::conntrack::kernel_now_ns();
    SystemTime::now() - Duration::from_nanos(now_mono.saturating_sub(ts_ns))
}

/// Reads reports until the runtime stops, writing each one's record with the access
/// logs of the generation current when it is read.
pub async fn serve(ring: RingBuf<MapData>, switch: Arc<ProxySwitch>) {
    // `AsyncFd::new` is deprecated for types whose fd could be closed while registered;
    // the ring buffer owns its fd, and the AsyncFd owns the ring buffer until both go.
    #[allow(deprecated)]
    let ring = AsyncFd::new(ring);
    let mut ring = match ring {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e, "TCP flow logs off: cannot watch the kernel's ring buffer");
            return;
        }
    };
    // Names of the generation they were made for, remade when it changes.
    let mut names: Option<(Arc<Proxy>, FlowNames)> = None;
    loop {
        let mut ready = match ring.readable_mut().await {
            Ok(guard) => guard,
            Err(e) => {
                warn!(error = %e, "TCP flow logs: waiting on the ring buffer failed");
                return;
            }
        };
        let proxy = switch.current();
        if !names.as_ref().is_some_and(|(p, _)| Arc::ptr_eq(p, &proxy)) {
            let made = FlowNames::of(proxy.config(), proxy.resolved());
            names = Some((Arc::clone(&proxy), made));
        }
        let (_, flow_names) = names.as_ref().expect("made above");
        let ring = ready.get_inner_mut();
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<FlowEvent>() {
                continue;
            }
            let event: FlowEvent = read_event(&item);
            let opened = wall_time(event.ts_ns);
            match record(&event, flow_names, proxy.resolved(), opened) {
                Some((service, network, line)) => {
                    if proxy.logs().wants(service, network) {
                        proxy.logs().record(service, network, line.as_bytes());
                    }
                }
                None => debug!("a TCP flow report names what the config no longer has"),
            }
        }
        ready.clear_ready();
    }
}

/// A report from the ring's bytes (the kernel wrote a whole [`FlowEvent`]).
fn read_event(bytes: &[u8]) -> FlowEvent {
    let u32_at =
        |o: usize| u32::from_ne_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let u16_at = |o: usize| u16::from_ne_bytes([bytes[o], bytes[o + 1]]);
    FlowEvent {
        ts_ns: u64::from_ne_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ]),
        vpc: u32_at(8),
        target_group: u32_at(12),
        saddr: u32_at(16),
        vip: u32_at(20),
        snat_addr: u32_at(24),
        target_addr: u32_at(28),
        sport: u16_at(32),
        vport: u16_at(34),
        snat_port: u16_at(36),
        target_port: u16_at(38),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
accounts: [{ id: "111111111111" }]
vpcs:
  - { name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{ netns: web }] }
  - { name: vpc-db, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{ netns: db }] }
serviceNetworks:
  - { name: shop, account: "111111111111", authType: NONE, vpcAssociations: [{ vpc: vpc-web }], serviceAssociations: [pgsql, web] }
services:
  - name: pgsql
    account: "111111111111"
    authType: NONE
    listeners: [{ name: tcp, protocol: TCP, port: 5432, defaultAction: { forward: { targetGroups: [{ targetGroupIdentifier: pgsql }] } } }]
  - name: web
    account: "111111111111"
    authType: NONE
    listeners: [{ name: http, protocol: HTTP, port: 80, defaultAction: { fixedResponse: { statusCode: 404 } } }]
targetGroups:
  - { name: pgsql, type: IP, config: { vpcIdentifier: vpc-db, protocol: TCP, port: 5432 }, targets: [{ id: 10.92.0.30 }] }
accessLogSubscriptions:
  - { resource: shop, destination: stdout }
"#;

    fn parsed() -> (Config, Resolved) {
        crate::resolve::resolved_for_test(YAML)
    }

    fn net(a: [u8; 4]) -> u32 {
        u32::from(Ipv4Addr::from(a)).to_be()
    }

    #[test]
    fn a_report_becomes_a_record_with_the_resource_access_fields() {
        let (config, resolved) = parsed();
        assert!(
            wanted(&config),
            "the network holds a service with a TCP listener"
        );
        let names = FlowNames::of(&config, &resolved);
        let event = FlowEvent {
            ts_ns: 1,
            vpc: key_of(&resolved.vpcs[0].id),
            target_group: key_of(&resolved.target_groups[0].id),
            saddr: net([10, 91, 0, 5]),
            vip: u32::from(resolved.services[0].vip).to_be(),
            snat_addr: net([169, 254, 172, 9]),
            target_addr: net([10, 92, 0, 30]),
            sport: 40000u16.to_be(),
            vport: 5432u16.to_be(),
            snat_port: 40000u16.to_be(),
            target_port: 5432u16.to_be(),
        };
        let (service, network, line) =
            record(&event, &names, &resolved, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!((service, network), (0, 0));
        let r: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(r["sourceIpPort"], "10.91.0.5:40000");
        assert_eq!(r["targetIpPort"], "10.92.0.30:5432");
        assert_eq!(r["gatewayIpPort"], "169.254.172.9:40000");
        assert_eq!(
            r["destinationIpPort"],
            format!("{}:5432", resolved.services[0].vip)
        );
        assert_eq!(r["serviceArn"], resolved.services[0].arn);
        assert_eq!(r["targetGroupArn"], resolved.target_groups[0].arn);
        assert_eq!(r["sourceVpcArn"], resolved.vpcs[0].arn);
        assert_eq!(r["listenerName"], "tcp");
        assert_eq!(r["startTime"], "1970-01-01T00:00:00.000Z");

        // From a VPC the network does not associate, or to a VIP the config does not
        // have: no record.
        let other_vpc = FlowEvent {
            vpc: key_of(&resolved.vpcs[1].id),
            ..event
        };
        assert!(record(&other_vpc, &names, &resolved, SystemTime::UNIX_EPOCH).is_none());
        let other_vip = FlowEvent {
            vip: net([169, 254, 171, 200]),
            ..event
        };
        assert!(record(&other_vip, &names, &resolved, SystemTime::UNIX_EPOCH).is_none());
    }

    #[test]
    fn reports_are_read_in_the_kernel_layout() {
        let event = FlowEvent {
            ts_ns: 0x0102_0304_0506_0708,
            vpc: 9,
            target_group: 10,
            saddr: 11,
            vip: 12,
            snat_addr: 13,
            target_addr: 14,
            sport: 15,
            vport: 16,
            snat_port: 17,
            target_port: 18,
        };
        let mut bytes = Vec::new();
        bytes.extend(event.ts_ns.to_ne_bytes());
        for v in [9u32, 10, 11, 12, 13, 14] {
            bytes.extend(v.to_ne_bytes());
        }
        for v in [15u16, 16, 17, 18] {
            bytes.extend(v.to_ne_bytes());
        }
        assert_eq!(bytes.len(), std::mem::size_of::<FlowEvent>());
        assert_eq!(read_event(&bytes), event);
    }

    #[test]
    fn flows_are_wanted_only_for_tcp_listeners() {
        let yaml = YAML.replace("resource: shop", "resource: web");
        let config = crate::config::parse_str(&yaml, std::path::Path::new("t.yaml")).unwrap();
        assert!(!wanted(&config), "web has only an HTTP listener");
    }
}
