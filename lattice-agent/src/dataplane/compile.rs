//! The resolved desired state compiled into what the kernel maps must hold: a pure
//! function of the config, the resolved model and the target health, so that what the
//! kernel does can be tested by tables without a kernel.
//!
//! Keys are derived, not allocated: a VPC, service or target group key is a hash of its
//! resolved id, so the same resource has the same key across restarts and agents, and
//! conntrack entries written by one agent stay meaningful to the next.

use std::{net::Ipv4Addr, path::PathBuf};

use ipnet::Ipv4Net;
use lattice_common::services::{
    ListenerKey, MAX_ACCESS, MAX_BACKENDS, MAX_LISTENERS, PROTO_TCP, SLOTS,
};
use sha2::{Digest as _, Sha256};

use crate::{
    config::{Action, Attachment, Config, ListenerProtocol, TargetGroupRef, TargetId},
    resolve::Resolved,
};

/// Host-wide data path settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSettings {
    /// The VIP pool (the resolved model's).
    pub vip_pool: Ipv4Net,
    /// The agent's own address on every VPC link (the resolved model's).
    pub agent_addr: Ipv4Addr,
    /// Where the SNAT addresses of VPCs come from (targets see these as sources).
    pub snat_pool: Ipv4Net,
}

/// Everything the kernel tables must hold for one desired state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub vpcs: Vec<VpcPlan>,
    pub listeners: Vec<ListenerPlan>,
    pub access: Vec<AccessPlan>,
    /// The addresses lattice's hops connect to (address, port, kind bits of
    /// `lattice_common::sockmap::endpoint`): what socket acceleration records.
    pub sock_endpoints: std::collections::BTreeSet<(Ipv4Addr, u16, u32)>,
}

/// A VPC: its key, SNAT address, and the namespaces it attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcPlan {
    pub key: u32,
    pub name: String,
    pub cidr: Ipv4Net,
    pub snat_addr: Ipv4Addr,
    pub netns: Vec<String>,
    /// cgroups of host processes, relative to the cgroup2 mount.
    pub cgroups: Vec<PathBuf>,
}

/// A TCP listener in the kernel: its address and the weighted target groups behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPlan {
    pub key: ListenerKey,
    /// `service/listener`, for logs and `maps`.
    pub label: String,
    pub service: u32,
    pub groups: Vec<GroupPlan>,
}

/// A target group as a forward action uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    pub group: TargetGroupRef,
    pub key: u32,
    pub name: String,
    pub weight: u16,
    pub vpc: u32,
    pub targets: Vec<BackendId>,
}

/// A target as the kernel knows it: which group, which address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId {
    pub target_group: u32,
    pub addr: Ipv4Addr,
    pub port: u16,
}

/// One access trie entry: sources of `vpc` inside `cidr` may (or, for the VPC-wide
/// entry, may not) open flows to `service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessPlan {
    pub vpc: u32,
    pub service: u32,
    /// `None`: the VPC-wide entry (any address).
    pub cidr: Option<Ipv4Net>,
    pub allowed: bool,
}

/// A stable non-zero key for a resource id.
pub fn key_of(id: &str) -> u32 {
    let digest = Sha256::digest(id.as_bytes());
    let key = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    key.max(1)
}

/// The SNAT address of a VPC: a host address of the pool picked by the VPC's key. Two
/// VPCs may share one (the kernel then gives their flows distinct ports).
pub fn snat_addr_of(pool: Ipv4Net, vpc_key: u32) -> Ipv4Addr {
    let hosts = (1u64 << (32 - u32::from(pool.prefix_len())))
        .saturating_sub(2)
        .max(1);
    let offset = 1 + (u64::from(vpc_key) % hosts) as u32;
    Ipv4Addr::from(u32::from(pool.network()) + offset)
}

/// A document that needs more entries in a kernel table than the table holds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the document needs {needed} {what} in the kernel, which holds {capacity}")]
pub struct CapacityError {
    pub what: &'static str,
    pub needed: usize,
    pub capacity: usize,
}

impl Snapshot {
    /// Whether the kernel's tables hold this snapshot, checked before anything is
    /// applied: once they are being written, a table found full stops the apply half
    /// way.
    pub fn check_capacity(&self) -> Result<(), CapacityError> {
        let backends: std::collections::BTreeSet<&BackendId> = self
            .listeners
            .iter()
            .flat_map(|l| &l.groups)
            .flat_map(|g| &g.targets)
            .collect();
        for (what, needed, capacity) in [
            (
                "listeners (TCP listeners and steered HTTP/HTTPS/TLS ones)",
                self.listeners.len(),
                MAX_LISTENERS,
            ),
            ("targets of TCP listeners", backends.len(), MAX_BACKENDS),
            ("access entries", self.access.len(), MAX_ACCESS),
        ] {
            let capacity = capacity as usize;
            if needed > capacity {
                return Err(CapacityError {
                    what,
                    needed,
                    capacity,
                });
            }
        }
        Ok(())
    }
}

/// Compiles the desired state. Only TCP listeners live in the kernel; the others are
/// served by the agent's proxy.
pub fn compile(config: &Config, resolved: &Resolved, settings: &PathSettings) -> Snapshot {
    let vpc_key = |i: usize| key_of(&resolved.vpcs[i].id);
    let vpcs = config
        .vpcs()
        .iter()
        .enumerate()
        .map(|(i, vpc)| VpcPlan {
            key: vpc_key(i),
            name: vpc.name.to_string(),
            cidr: vpc.cidr,
            snat_addr: snat_addr_of(settings.snat_pool, vpc_key(i)),
            netns: vpc
                .attachments
                .iter()
                .filter_map(|a| match a {
                    Attachment::Netns(ns) => Some(ns.clone()),
                    Attachment::Cgroup(_) => None,
                })
                .collect(),
            cgroups: vpc
                .attachments
                .iter()
                .filter_map(|a| match a {
                    Attachment::Cgroup(path) => Some(path.clone()),
                    Attachment::Netns(_) => None,
                })
                .collect(),
        })
        .collect();

    let mut listeners = Vec::new();
    let mut access = Vec::new();
    for (s, service) in config.services().iter().enumerate() {
        let rs = &resolved.services[s];
        let service_key = key_of(&rs.id);
        for listener in &service.listeners {
            // HTTP, HTTPS and TLS passthrough listeners are served by the agent from
            // inside the client namespaces;
            // the kernel knows them (with no targets) only to refuse, with the right
            // reason, the sources the namespace routing does not send to the agent.
            let groups: &[crate::config::WeightedTargetGroup] =
                match (&listener.protocol, &listener.default_action) {
                    (ListenerProtocol::Tcp, Action::Forward(groups)) => groups,
                    (
                        ListenerProtocol::Http
                        | ListenerProtocol::Https
                        | ListenerProtocol::TlsPassthrough,
                        _,
                    ) => &[],
                    _ => continue,
                };
            let groups = groups
                .iter()
                .map(|wtg| {
                    let tg = config.target_group(wtg.target_group);
                    let rtg = &resolved.target_groups[wtg.target_group.index()];
                    let key = key_of(&rtg.id);
                    GroupPlan {
                        group: wtg.target_group,
                        key,
                        name: tg.name.to_string(),
                        weight: wtg.weight,
                        vpc: vpc_key(tg.vpc.index()),
                        targets: tg
                            .targets
                            .iter()
                            .filter_map(|t| match t.id {
                                TargetId::Ip(addr) => Some(BackendId {
                                    target_group: key,
                                    addr,
                                    port: t.port.get(),
                                }),
                                TargetId::Instance(_) => None,
                            })
                            .collect(),
                    }
                })
                .collect();
            listeners.push(ListenerPlan {
                key: ListenerKey {
                    vip: ip_net_order(rs.vip),
                    port: listener.port.get().to_be(),
                    proto: PROTO_TCP,
                    _pad: 0,
                },
                label: format!("{}/{}", service.name, listener.name),
                service: service_key,
                groups,
            });
        }
        access.extend(access_of(config, resolved, s, service_key));
    }
    Snapshot {
        vpcs,
        listeners,
        access,
        sock_endpoints: super::sockmap::endpoints(config, resolved),
    }
}

/// Who may reach service `s`: for every network holding it, every associated VPC, from
/// its allowedCidrs (or from anywhere in it when the association names none).
fn access_of(config: &Config, resolved: &Resolved, s: usize, service: u32) -> Vec<AccessPlan> {
    let service_ref = config
        .service_by_name(config.services()[s].name.as_str())
        .expect("the service is in the config");
    let mut by_vpc: Vec<(u32, Option<Vec<Ipv4Net>>)> = Vec::new();
    for n in config.networks_of_service(service_ref) {
        for assoc in &config.service_network(n).vpc_associations {
            let vpc = key_of(&resolved.vpcs[assoc.vpc.index()].id);
            let cidrs = (!assoc.allowed_cidrs.is_empty()).then(|| assoc.allowed_cidrs.clone());
            match by_vpc.iter_mut().find(|(v, _)| *v == vpc) {
                // One association without a restriction opens the whole VPC.
                Some((_, existing)) => match (existing.as_mut(), cidrs) {
                    (Some(list), Some(more)) => list.extend(more),
                    _ => *existing = None,
                },
                None => by_vpc.push((vpc, cidrs)),
            }
        }
    }
    let mut plans = Vec::new();
    for (vpc, cidrs) in by_vpc {
        match cidrs {
            None => plans.push(AccessPlan {
                vpc,
                service,
                cidr: None,
                allowed: true,
            }),
            Some(mut cidrs) => {
                plans.push(AccessPlan {
                    vpc,
                    service,
                    cidr: None,
                    allowed: false,
                });
                cidrs.sort();
                cidrs.dedup();
                plans.extend(cidrs.into_iter().map(|cidr| AccessPlan {
                    vpc,
                    service,
                    cidr: Some(cidr),
                    allowed: true,
                }));
            }
        }
    }
    plans
}

/// Fills a listener's [`SLOTS`] slots: each group gets its weight's share of the slots
/// (largest remainder), split evenly among its targets that may take new flows; the
/// slots of one target are spread over the table. Groups with weight 0 or no usable
/// target get nothing; when nothing is usable the table is empty.
pub fn slot_table(groups: &[(u16, Vec<BackendId>)]) -> Vec<BackendId> {
    let usable: Vec<(u64, &Vec<BackendId>)> = groups
        .iter()
        .filter(|(w, targets)| *w > 0 && !targets.is_empty())
        .map(|(w, targets)| (u64::from(*w), targets))
        .collect();
    let total: u64 = usable.iter().map(|(w, _)| w).sum();
    if total == 0 {
        return Vec::new();
    }
    // Shares per target, by largest remainder so they add up to SLOTS exactly.
    let mut shares: Vec<(BackendId, u64, u64)> = Vec::new(); // (target, slots, remainder)
    for (weight, targets) in &usable {
        let n = targets.len() as u64;
        for target in targets.iter() {
            let exact = u64::from(SLOTS) * weight; // divided by total * n
            let denom = total * n;
            shares.push((*target, exact / denom, exact % denom * 1_000_000 / denom));
        }
    }
    let assigned: u64 = shares.iter().map(|s| s.1).sum();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    for &i in order.iter().take((u64::from(SLOTS) - assigned) as usize) {
        shares[i].1 += 1;
    }
    // Spread: slot k goes to the target whose share is most behind at k (a smooth
    // weighted round robin), so no target owns one long run of the hash space.
    let mut credit: Vec<i64> = vec![0; shares.len()];
    let mut table = Vec::with_capacity(SLOTS as usize);
    for _ in 0..SLOTS {
        for (c, s) in credit.iter_mut().zip(&shares) {
            *c += s.1 as i64;
        }
        let (best, _) = credit
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .expect("at least one share");
        credit[best] -= i64::from(SLOTS);
        table.push(shares[best].0);
    }
    table
}

/// An address as the kernel maps hold it: the packet's byte order, read as a native u32.
pub fn ip_net_order(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// The reverse of [`ip_net_order`].
pub fn ip_from_net_order(addr: u32) -> Ipv4Addr {
    Ipv4Addr::from(addr.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(group: u32, last: u8) -> BackendId {
        BackendId {
            target_group: group,
            addr: Ipv4Addr::new(10, 0, 0, last),
            port: 80,
        }
    }

    fn count(table: &[BackendId], t: BackendId) -> usize {
        table.iter().filter(|x| **x == t).count()
    }

    #[test]
    fn slot_tables_follow_weights() {
        let (a, b, c) = (target(1, 1), target(2, 2), target(2, 3));
        // (groups, expected slots per target a, b, c)
        type Groups<'a> = &'a [(u16, Vec<BackendId>)];
        let cases: &[(Groups<'_>, [usize; 3])] = &[
            (&[(100, vec![a])], [256, 0, 0]),
            (&[(3, vec![a]), (1, vec![b])], [192, 64, 0]),
            (&[(1, vec![a]), (1, vec![b, c])], [128, 64, 64]),
            (&[(0, vec![a]), (5, vec![b])], [0, 256, 0]),
            (&[(10, vec![a]), (90, vec![b])], [26, 230, 0]),
            (&[(1, vec![a]), (1, vec![])], [256, 0, 0]),
            (&[(999, vec![a]), (1, vec![b])], [256, 0, 0]),
        ];
        for (groups, expected) in cases {
            let table = slot_table(groups);
            assert_eq!(table.len(), SLOTS as usize, "{groups:?}");
            assert_eq!(
                [count(&table, a), count(&table, b), count(&table, c)],
                *expected,
                "{groups:?}"
            );
        }
    }

    #[test]
    fn empty_when_nothing_is_usable() {
        assert!(slot_table(&[]).is_empty());
        assert!(slot_table(&[(0, vec![target(1, 1)])]).is_empty());
        assert!(slot_table(&[(5, vec![])]).is_empty());
    }

    #[test]
    fn slots_of_a_target_are_spread() {
        let (a, b) = (target(1, 1), target(2, 2));
        let table = slot_table(&[(1, vec![a]), (1, vec![b])]);
        // Alternating, not two halves.
        assert!(table.windows(2).all(|w| w[0] != w[1]), "{table:?}");
    }

    #[test]
    fn keys_are_stable_and_non_zero() {
        assert_eq!(key_of("svc-0123"), key_of("svc-0123"));
        assert_ne!(key_of("svc-0123"), key_of("svc-0124"));
        assert_ne!(key_of(""), 0);
    }

    #[test]
    fn snat_addresses_are_hosts_of_the_pool() {
        let pool: Ipv4Net = "169.254.172.0/22".parse().unwrap();
        for key in [1, 2, 1022, 1023, u32::MAX] {
            let a = snat_addr_of(pool, key);
            assert!(pool.contains(&a));
            assert_ne!(a, pool.network());
            assert_ne!(a, pool.broadcast());
        }
    }

    #[test]
    fn addresses_in_network_order() {
        let a = Ipv4Addr::new(10, 92, 0, 10);
        assert_eq!(ip_net_order(a).to_ne_bytes(), [10, 92, 0, 10]);
        assert_eq!(ip_from_net_order(ip_net_order(a)), a);
    }
}
