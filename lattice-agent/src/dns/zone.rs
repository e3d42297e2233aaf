//! The records of every VPC: a pure function of the config and the resolved model, and
//! the pure decision of how a query is answered in a namespace.
//!
//! Lattice owns two kinds of names: everything under the default names' domain
//! (`vpc-lattice-svcs.<region>.<suffix>`) and the `customDomainName` of every service of
//! the config. A VPC has A records for the default and custom names of the services of
//! the service network it is associated with (every listener protocol counts: the name
//! says where the service is, the association and `allowedCidrs` decide who connects).
//! Any other name lattice owns is NXDOMAIN there, and is never forwarded; names lattice
//! does not own are forwarded to the host's resolver.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use hickory_proto::rr::{DNSClass, RecordType};
use sha2::{Digest as _, Sha256};

use crate::{
    config::{Attachment, Config},
    resolve::{dns::SERVICE_DOMAIN_LABEL, Resolved, Settings},
};

/// The TTL of lattice's records, and the negative-caching time of its NXDOMAIN and
/// NODATA answers (the SOA's minimum): a changed config is seen within this long.
pub const TTL: u32 = 10;

/// The domain of default DNS names: `vpc-lattice-svcs.<region>.<suffix>`.
pub fn lattice_domain(region: &str, dns_suffix: &str) -> String {
    format!("{SERVICE_DOMAIN_LABEL}.{region}.{dns_suffix}")
}

/// A name lattice answers for in one VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    /// The service the name is of.
    pub service: String,
    pub vip: Ipv4Addr,
}

/// The names one VPC can resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpcZone {
    pub vpc: String,
    /// Lowercase names without the trailing dot: default and custom names of the
    /// services the VPC reaches.
    pub names: BTreeMap<String, ServiceRecord>,
    /// Names strictly between the lattice domain and a default name of `names` (the
    /// partition labels): they exist without records of their own (NODATA, not
    /// NXDOMAIN, as RFC 8020 wants for empty non-terminals).
    pub interior: BTreeSet<String>,
}

/// Every VPC's records, what lattice owns, and which namespace is which VPC. Built by
/// [`Zones::build`]; the DNS server reads the current one for each query, so swapping
/// it ([`super::ZoneSwitch::set`]) changes the answers at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zones {
    /// The default names' domain, lowercase, no trailing dot.
    domain: String,
    /// Namespace name -> index into `vpcs`.
    netns: BTreeMap<String, usize>,
    vpcs: Vec<VpcZone>,
    /// Every customDomainName of the config, lowercase.
    custom: BTreeSet<String>,
    /// A digest of the records: the SOA serial (the same config gives the same serial,
    /// also after a restart).
    serial: u32,
}

/// How lattice answers one query in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The VPC reaches the name: its VIP (A and ANY queries).
    Address { vip: Ipv4Addr, apex: String },
    /// An SOA query for the apex of a zone lattice answers (the lattice domain, or a
    /// reachable custom name).
    Soa { apex: String },
    /// The name exists here but has no record of this type (AAAA: VIPs are IPv4 only).
    NoData { apex: String },
    /// Lattice owns the name and this VPC cannot reach it (or nothing has it).
    NxDomain { apex: String },
    /// Lattice owns the name, but the query's class is not IN.
    Refused,
    /// Not lattice's: the host's resolver answers.
    Forward,
}

impl Zones {
    /// The records of every VPC with a network namespace, from `config` and its
    /// resolved model (same order of services).
    pub fn build(config: &Config, resolved: &Resolved, settings: &Settings) -> Zones {
        let domain = lattice_domain(&resolved.region, &settings.dns_suffix);
        let custom: BTreeSet<String> = resolved
            .services
            .iter()
            .filter_map(|s| s.custom_domain_name.as_deref().map(normalize))
            .collect();
        let mut netns = BTreeMap::new();
        let mut vpcs = Vec::new();
        for (v, vpc) in config.vpcs().iter().enumerate() {
            let mut zone = VpcZone {
                vpc: vpc.name.to_string(),
                ..VpcZone::default()
            };
            // A vpc is associated with at most one network; every association counts.
            for network in config.service_networks() {
                if !network.vpc_associations.iter().any(|a| a.vpc.index() == v) {
                    continue;
                }
                for service in &network.service_associations {
                    let resolved_service = &resolved.services[service.index()];
                    let record = ServiceRecord {
                        service: resolved_service.name.clone(),
                        vip: resolved_service.vip,
                    };
                    let default_name = normalize(&resolved_service.dns_name);
                    for interior in between(&default_name, &domain) {
                        zone.interior.insert(interior);
                    }
                    zone.names
                        .entry(default_name)
                        .or_insert_with(|| record.clone());
                    if let Some(custom) = &resolved_service.custom_domain_name {
                        // Unique per network (validated): the first one wins otherwise.
                        zone.names.entry(normalize(custom)).or_insert(record);
                    }
                }
            }
            for attachment in &vpc.attachments {
                if let Attachment::Netns(name) = attachment {
                    netns.insert(name.clone(), vpcs.len());
                }
            }
            vpcs.push(zone);
        }
        let serial = serial_of(&domain, &vpcs, &netns);
        Zones {
            domain,
            netns,
            vpcs,
            custom,
            serial,
        }
    }

    /// The default names' domain (lowercase, no trailing dot).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The SOA serial of these records.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The zone of the VPC namespace `netns` belongs to, if the config names it.
    pub fn vpc_of(&self, netns: &str) -> Option<&VpcZone> {
        self.netns.get(netns).map(|&i| &self.vpcs[i])
    }

    /// How a query for `name` (any case, with or without the trailing dot) of type
    /// `qtype` and class `qclass` is answered in namespace `netns`.
    pub fn answer(&self, netns: &str, name: &str, qtype: RecordType, qclass: DNSClass) -> Answer {
        let name = normalize(name);
        let in_domain = is_within(&name, &self.domain);
        let zone = self.vpc_of(netns);
        let record = zone.and_then(|z| z.names.get(&name));
        let owned = in_domain || self.custom.contains(&name) || record.is_some();
        if !owned {
            return Answer::Forward;
        }
        if qclass != DNSClass::IN && qclass != DNSClass::ANY {
            return Answer::Refused;
        }
        let apex = if in_domain {
            self.domain.clone()
        } else {
            name.clone()
        };
        if let Some(record) = record {
            return match qtype {
                RecordType::A | RecordType::ANY => Answer::Address {
                    vip: record.vip,
                    apex,
                },
                RecordType::SOA if name == apex => Answer::Soa { apex },
                _ => Answer::NoData { apex },
            };
        }
        let exists = name == self.domain || zone.is_some_and(|z| z.interior.contains(&name));
        match (exists, qtype) {
            (true, RecordType::SOA | RecordType::ANY) if name == self.domain => {
                Answer::Soa { apex }
            }
            (true, _) => Answer::NoData { apex },
            (false, _) => Answer::NxDomain { apex },
        }
    }
}

/// Lowercase, without one trailing dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether `name` is `domain` or below it (both normalized).
fn is_within(name: &str, domain: &str) -> bool {
    name == domain
        || name
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

/// The names strictly between `name` and its ancestor `domain`: for
/// `a.b.c.d` under `d`, `b.c.d` and `c.d`.
fn between(name: &str, domain: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !is_within(name, domain) {
        return out;
    }
    let mut rest = name;
    while let Some((_, parent)) = rest.split_once('.') {
        if parent == domain || parent.len() <= domain.len() {
            break;
        }
        out.push(parent.to_owned());
        rest = parent;
    }
    out
}

fn serial_of(domain: &str, vpcs: &[VpcZone], netns: &BTreeMap<String, usize>) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(domain.as_bytes());
    for (name, vpc) in netns {
        hasher.update(format!("\0ns {name} {vpc}").as_bytes());
    }
    for vpc in vpcs {
        hasher.update(format!("\0vpc {}", vpc.vpc).as_bytes());
        for (name, record) in &vpc.names {
            hasher.update(format!("\0{name} {}", record.vip).as_bytes());
        }
    }
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}
