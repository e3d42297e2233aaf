//! The resolved model: what a validated [`Config`] becomes once every resource has its
//! id, ARN, DNS name and (for services) virtual IP. Ids and names are pure functions of
//! the config and the [`Settings`]; virtual IPs come from [`VipAllocations`], persisted
//! in the state directory.
//!
//! | file | what |
//! | --- | --- |
//! | `ids.rs` | stable `svc-`/`sn-`/`tg-`/`listener-`/`rule-`/`vpc-` ids |
//! | `arn.rs` | ARNs with the `lattice` partition |
//! | `dns.rs` | default DNS names |
//! | `vip.rs` | virtual IP allocation and persistence |

pub mod arn;
pub mod dns;
pub mod ids;
mod vip;

#[cfg(test)]
mod tests;

use std::{collections::HashMap, net::Ipv4Addr, path::PathBuf};

use ipnet::Ipv4Net;
use serde::Serialize;

pub use vip::{VipAllocation, VipAllocations, VIPS_FILE, VIPS_FILE_VERSION};

use crate::{
    config::{
        Action, AuthType, Config, ListenerProtocol, ProtocolVersion, TargetGroupProtocol,
        TargetType,
    },
    state::StateError,
};

/// Agent settings that shape resolved names and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The region in ARNs and DNS names (a DNS label). Default `local`.
    pub region: String,
    /// Link-local pool of service virtual IPs. Default 169.254.171.0/24 (Lattice's).
    pub vip_pool: Ipv4Net,
    /// Last labels of default DNS names (Lattice: `on.aws`). Default `on.lattice`.
    pub dns_suffix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            region: "local".to_owned(),
            vip_pool: Ipv4Net::new(Ipv4Addr::new(169, 254, 171, 0), 24).expect("a /24 is valid"),
            dns_suffix: "on.lattice".to_owned(),
        }
    }
}

/// Why a config could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("region {region:?} is not a DNS label (lowercase letters, digits, inner hyphens)")]
    InvalidRegion { region: String },
    #[error("DNS suffix {suffix:?} is not a DNS name (lowercase labels separated by dots)")]
    InvalidDnsSuffix { suffix: String },
    #[error("virtual IP pool {pool} is too small: it needs a network, a broadcast, the agent's address and at least one service address (a /30 or larger)")]
    PoolTooSmall { pool: Ipv4Net },
    #[error("vpc {vpc:?}: cidr {cidr} overlaps the virtual IP pool {pool}")]
    VpcOverlapsPool {
        vpc: String,
        cidr: Ipv4Net,
        pool: Ipv4Net,
    },
    #[error("service {service:?} (account {account}): no free virtual IP in pool {pool}: all {capacity} service addresses are allocated")]
    PoolExhausted {
        service: String,
        account: String,
        pool: Ipv4Net,
        capacity: u32,
    },
    #[error("service {service:?}: customDomainName {name} is inside {domain}, where lattice names services itself; choose a name of your own domain")]
    CustomNameInServiceDomain {
        service: String,
        name: String,
        domain: String,
    },
    #[error("service {service:?}: default DNS name {name} is longer than 253 characters; shorten the region or DNS suffix")]
    DnsNameTooLong { service: String, name: String },
    #[error("id {id} is derived for both {first} and {second}; rename one")]
    IdCollision {
        id: String,
        first: String,
        second: String,
    },
    #[error("{}: version {found} of the virtual IP file is not supported (this agent reads version {supported})", path.display())]
    VipFileVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{}: service {service_id} or address {vip} is allocated twice; the file is corrupt", path.display())]
    VipFileCorrupt {
        path: PathBuf,
        service_id: String,
        vip: Ipv4Addr,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Everything `show` prints and the data plane needs to name things. Lists are in the
/// config's order: `services[i]` is `config.services()[i]`, and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    pub region: String,
    pub vip_pool: Ipv4Net,
    /// The pool address reserved for the agent (DNS).
    pub agent_address: Ipv4Addr,
    pub accounts: Vec<ResolvedAccount>,
    pub vpcs: Vec<ResolvedVpc>,
    pub service_networks: Vec<ResolvedServiceNetwork>,
    pub services: Vec<ResolvedService>,
    pub target_groups: Vec<ResolvedTargetGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedAccount {
    pub id: String,
    /// ARNs of the account's principals.
    pub principals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedVpc {
    pub name: String,
    pub id: String,
    pub arn: String,
    pub account: String,
    pub cidr: Ipv4Net,
    /// The service network it is associated with, if any.
    pub service_network: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedServiceNetwork {
    pub name: String,
    pub id: String,
    pub arn: String,
    pub account: String,
    pub auth_type: AuthType,
    pub vpcs: Vec<String>,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedService {
    pub name: String,
    pub account: String,
    pub id: String,
    pub arn: String,
    pub dns_name: String,
    pub custom_domain_name: Option<String>,
    pub vip: Ipv4Addr,
    pub auth_type: AuthType,
    pub service_networks: Vec<String>,
    pub listeners: Vec<ResolvedListener>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedListener {
    pub name: String,
    pub id: String,
    pub arn: String,
    pub protocol: ListenerProtocol,
    pub port: u16,
    /// The default action, as `forward tg-a:90,tg-b:10` or `fixed-response 404`.
    pub default_action: String,
    /// By priority, lowest first.
    pub rules: Vec<ResolvedRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedRule {
    pub name: String,
    pub id: String,
    pub arn: String,
    pub priority: u16,
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedTargetGroup {
    pub name: String,
    pub id: String,
    pub arn: String,
    pub account: String,
    pub vpc: String,
    #[serde(rename = "type")]
    pub kind: TargetType,
    pub protocol: TargetGroupProtocol,
    pub protocol_version: Option<ProtocolVersion>,
    pub port: u16,
    pub targets: usize,
}

fn describe_action(config: &Config, action: &Action) -> String {
    match action {
        Action::FixedResponse(status) => format!("fixed-response {}", status.code()),
        Action::Forward(groups) => {
            let parts: Vec<String> = groups
                .iter()
                .map(|g| format!("{}:{}", config.target_group(g.target_group).name, g.weight))
                .collect();
            format!("forward {}", parts.join(","))
        }
    }
}

/// The agent's own address on every lattice link: the first host of the VIP pool.
/// Refuses a pool too small to hold it and one VIP.
pub fn agent_address(settings: &Settings) -> Result<Ipv4Addr, ResolveError> {
    Ok(vip::pool_bounds(settings.vip_pool.trunc())?.agent)
}

/// Resolves `config`: ids, ARNs, DNS names, and virtual IPs taken from (and recorded
/// in) `vips`. Save `vips` afterwards to keep the addresses and release the ones of
/// services that are gone.
pub fn resolve(
    config: &Config,
    settings: &Settings,
    vips: &mut VipAllocations,
) -> Result<Resolved, ResolveError> {
    if !dns::is_label(&settings.region) {
        return Err(ResolveError::InvalidRegion {
            region: settings.region.clone(),
        });
    }
    if !dns::is_domain(&settings.dns_suffix) {
        return Err(ResolveError::InvalidDnsSuffix {
            suffix: settings.dns_suffix.clone(),
        });
    }
    let pool = settings.vip_pool.trunc();
    let bounds = vip::pool_bounds(pool)?;
    let region = settings.region.as_str();

    let mut ids: HashMap<String, String> = HashMap::new();
    let mut claim = |id: &str, what: String| -> Result<(), ResolveError> {
        match ids.get(id) {
            Some(first) => Err(ResolveError::IdCollision {
                id: id.to_owned(),
                first: first.clone(),
                second: what,
            }),
            None => {
                ids.insert(id.to_owned(), what);
                Ok(())
            }
        }
    };

    let mut vpcs = Vec::new();
    for (i, vpc) in config.vpcs().iter().enumerate() {
        if vpc.cidr.contains(&pool) || pool.contains(&vpc.cidr) {
            return Err(ResolveError::VpcOverlapsPool {
                vpc: vpc.name.to_string(),
                cidr: vpc.cidr,
                pool,
            });
        }
        let account = vpc.account.as_str();
        let id = ids::vpc_id(account, vpc.name.as_str());
        claim(&id, format!("vpc {:?}", vpc.name.as_str()))?;
        let service_network = config
            .service_networks()
            .iter()
            .find(|n| n.vpc_associations.iter().any(|a| a.vpc.index() == i))
            .map(|n| n.name.to_string());
        vpcs.push(ResolvedVpc {
            name: vpc.name.to_string(),
            arn: arn::vpc(region, account, &id),
            id,
            account: account.to_owned(),
            cidr: vpc.cidr,
            service_network,
        });
    }

    let mut service_networks = Vec::new();
    for net in config.service_networks() {
        let account = net.account.as_str();
        let id = ids::service_network_id(account, net.name.as_str());
        claim(&id, format!("service network {:?}", net.name.as_str()))?;
        service_networks.push(ResolvedServiceNetwork {
            name: net.name.to_string(),
            arn: arn::service_network(region, account, &id),
            id,
            account: account.to_owned(),
            auth_type: net.auth.auth_type(),
            vpcs: net
                .vpc_associations
                .iter()
                .map(|a| config.vpc(a.vpc).name.to_string())
                .collect(),
            services: net
                .service_associations
                .iter()
                .map(|s| config.service(*s).name.to_string())
                .collect(),
        });
    }

    let mut target_groups = Vec::new();
    for tg in config.target_groups() {
        let account = tg.account.as_str();
        let id = ids::target_group_id(account, tg.name.as_str());
        claim(&id, format!("target group {:?}", tg.name.as_str()))?;
        target_groups.push(ResolvedTargetGroup {
            name: tg.name.to_string(),
            arn: arn::target_group(region, account, &id),
            id,
            account: account.to_owned(),
            vpc: config.vpc(tg.vpc).name.to_string(),
            kind: tg.kind,
            protocol: tg.protocol,
            protocol_version: tg.protocol_version,
            port: tg.port.get(),
            targets: tg.targets.len(),
        });
    }

    // Names under it are lattice's own: a custom name there could take another
    // service's default name in DNS.
    let service_domain = dns::service_domain(region, &settings.dns_suffix);
    vips.begin();
    let mut services = Vec::new();
    for (i, svc) in config.services().iter().enumerate() {
        let account = svc.account.as_str();
        let name = svc.name.as_str();
        if let Some(custom) = &svc.custom_domain_name {
            let lower = custom.to_ascii_lowercase();
            let inside = lower
                .strip_suffix(&service_domain)
                .is_some_and(|head| head.is_empty() || head.ends_with('.'));
            if inside {
                return Err(ResolveError::CustomNameInServiceDomain {
                    service: name.to_owned(),
                    name: custom.clone(),
                    domain: service_domain,
                });
            }
        }
        let id = ids::service_id(account, name);
        claim(&id, format!("service {name:?}"))?;
        let dns_name = dns::default_dns_name(name, &id, account, region, &settings.dns_suffix);
        if dns_name.len() > 253 {
            return Err(ResolveError::DnsNameTooLong {
                service: name.to_owned(),
                name: dns_name,
            });
        }
        let vip = vips.assign(&bounds, pool, &id, name, account)?;
        let mut listeners = Vec::new();
        for listener in &svc.listeners {
            let listener_id = ids::listener_id(account, &id, listener.name.as_str());
            claim(
                &listener_id,
                format!("listener {:?} of service {name:?}", listener.name.as_str()),
            )?;
            let mut rules = Vec::new();
            for rule in &listener.rules {
                let rule_id = ids::rule_id(account, &listener_id, rule.name.as_str());
                claim(
                    &rule_id,
                    format!(
                        "rule {:?} of listener {:?} of service {name:?}",
                        rule.name.as_str(),
                        listener.name.as_str()
                    ),
                )?;
                rules.push(ResolvedRule {
                    name: rule.name.to_string(),
                    arn: arn::rule(region, account, &id, &listener_id, &rule_id),
                    id: rule_id,
                    priority: rule.priority,
                    action: describe_action(config, &rule.action),
                });
            }
            listeners.push(ResolvedListener {
                name: listener.name.to_string(),
                arn: arn::listener(region, account, &id, &listener_id),
                id: listener_id,
                protocol: listener.protocol,
                port: listener.port.get(),
                default_action: describe_action(config, &listener.default_action),
                rules,
            });
        }
        services.push(ResolvedService {
            name: name.to_owned(),
            account: account.to_owned(),
            arn: arn::service(region, account, &id),
            id,
            dns_name,
            custom_domain_name: svc.custom_domain_name.clone(),
            vip,
            auth_type: svc.auth.auth_type(),
            service_networks: config
                .networks_of_service(crate::config::ServiceRef(i))
                .map(|n| config.service_network(n).name.to_string())
                .collect(),
            listeners,
        });
    }

    let accounts = config
        .accounts()
        .iter()
        .map(|a| ResolvedAccount {
            id: a.id.to_string(),
            principals: a
                .principals
                .iter()
                .map(|p| arn::principal(a.id.as_str(), p.kind.as_str(), p.name.as_str()))
                .collect(),
        })
        .collect();

    Ok(Resolved {
        region: settings.region.clone(),
        vip_pool: pool,
        agent_address: bounds.agent,
        accounts,
        vpcs,
        service_networks,
        services,
        target_groups,
    })
}

/// A test's YAML document, parsed and resolved with the default settings and fresh VIPs.
#[cfg(test)]
pub fn resolved_for_test(yaml: &str) -> (Config, Resolved) {
    let config = crate::config::parse_str(yaml, std::path::Path::new("test.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let resolved = resolve(
        &config,
        &Settings::default(),
        &mut VipAllocations::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (config, resolved)
}
