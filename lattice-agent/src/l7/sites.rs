//! Where the HTTP, HTTPS and TLS passthrough listeners are served: one site per (VPC
//! namespace, VIP, port) of every VPC that may reach the listener's service, and one per
//! (VPC, VIP, port) for the host processes of VPCs made of cgroups. A pure function of
//! the config and the resolved model, like the kernel's compile step.
//!
//! The agent serves a namespace's site from inside the client's own namespace: a policy
//! rule there makes `VIP:port` (from the allowed sources only) local, and the agent's
//! socket bound in that namespace accepts it. Nothing changes in the host's routing,
//! VPCs with the same CIDR stay apart, the agent knows the VPC by the socket that
//! accepted, and the original destination is the socket's own address. Sources that the
//! rule does not match (other VPCs, addresses outside allowedCidrs) go on to the kernel
//! path, which refuses them with a RST and counts the reason.
//!
//! Host processes have no namespace of their own: the site is a socket on the loopback
//! address `HOST_PROXY_ADDR` of the host, and the cgroup connect4 program rewrites a
//! VPC process's connect() to the VIP into a connect() to that socket (or refuses it
//! with EPERM when the VPC may not reach the listener). The socket that accepts tells
//! the agent the VPC and the VIP:port again. As for TCP listeners reached from cgroups,
//! the association decides and allowedCidrs (which name VPC addresses) do not apply.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::{
    config::{Attachment, Config, ListenerProtocol},
    dataplane::compile::key_of,
    resolve::Resolved,
};

/// Where a site's socket is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    /// In this VPC namespace, at `VIP:port`.
    Netns(String),
    /// On the host's loopback, for the host processes of the VPC of this name.
    Host(String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Netns(netns) => write!(f, "netns {netns}"),
            Place::Host(vpc) => write!(f, "host processes of {vpc}"),
        }
    }
}

/// What tells sites apart: (place, VIP, port). A service keeps its VIP across config
/// changes, so a site keeps its key while its listener exists.
pub type SiteKey = (Place, Ipv4Addr, u16);

/// One listening socket the agent keeps for a VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub place: Place,
    /// The VPC's kernel key (as connect4 knows the caller's VPC).
    pub vpc_key: u32,
    /// Indexes into the config (and the resolved model, which has the same order).
    pub vpc: usize,
    pub network: usize,
    pub service: usize,
    pub listener: usize,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// Sources that may use the site; `None`: the whole VPC.
    pub allowed: Option<Vec<Ipv4Net>>,
    /// The access log fields that are the same for every request of the site (the
    /// caller's VPC, the network, the service), as JSON, made once.
    pub log_fields: String,
}

impl Site {
    /// The key that tells sites apart.
    pub fn key(&self) -> SiteKey {
        (self.place.clone(), self.vip, self.port)
    }

    /// The site's namespace, for a namespace's site.
    pub fn netns(&self) -> Option<&str> {
        match &self.place {
            Place::Netns(netns) => Some(netns),
            Place::Host(_) => None,
        }
    }
}

/// Every site the config asks for: HTTP, HTTPS and TLS passthrough listeners (TCP
/// listeners are the kernel's) of every service, in every namespace of every VPC
/// associated with a network that holds the service, and on the host for such a VPC
/// that has cgroups.
pub fn sites(config: &Config, resolved: &Resolved) -> Vec<Site> {
    let mut out: Vec<Site> = Vec::new();
    for (s, service) in config.services().iter().enumerate() {
        let service_ref = config
            .service_by_name(service.name.as_str())
            .expect("the service is in the config");
        for (l, listener) in service.listeners.iter().enumerate() {
            if listener.protocol == ListenerProtocol::Tcp {
                continue;
            }
            for network in config.networks_of_service(service_ref) {
                for assoc in &config.service_network(network).vpc_associations {
                    let vpc = config.vpc(assoc.vpc);
                    let allowed =
                        (!assoc.allowed_cidrs.is_empty()).then(|| assoc.allowed_cidrs.clone());
                    let site = |place: Place, allowed: Option<Vec<Ipv4Net>>| Site {
                        place,
                        vpc_key: key_of(&resolved.vpcs[assoc.vpc.index()].id),
                        vpc: assoc.vpc.index(),
                        network: network.index(),
                        service: s,
                        listener: l,
                        vip: resolved.services[s].vip,
                        port: listener.port.get(),
                        allowed,
                        log_fields: super::log::site_fields(
                            resolved,
                            assoc.vpc.index(),
                            network.index(),
                            s,
                        ),
                    };
                    for attachment in &vpc.attachments {
                        if let Attachment::Netns(netns) = attachment {
                            out.push(site(Place::Netns(netns.clone()), allowed.clone()));
                        }
                    }
                    let has_cgroups = vpc
                        .attachments
                        .iter()
                        .any(|a| matches!(a, Attachment::Cgroup(_)));
                    if has_cgroups {
                        out.push(site(Place::Host(vpc.name.to_string()), None));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_of_http_listeners_in_associated_namespaces() {
        let yaml = r#"
accounts: [{ id: "111111111111" }]
vpcs:
  - { name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{ netns: web-a }, { netns: web-b }] }
  - { name: vpc-other, account: "111111111111", cidr: 10.93.0.0/16, attachments: [{ netns: other }] }
  - { name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{ netns: orders }] }
  - { name: vpc-host, account: "111111111111", cidr: 10.94.0.0/16, attachments: [{ cgroup: lattice/a }, { cgroup: lattice/b }] }
serviceNetworks:
  - name: shop
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{ vpc: vpc-web, allowedCidrs: [10.91.0.0/24] }, { vpc: vpc-host, allowedCidrs: [10.94.0.0/24] }]
    serviceAssociations: [api]
services:
  - name: api
    account: "111111111111"
    authType: NONE
    listeners:
      - { name: http, protocol: HTTP, port: 80, defaultAction: { fixedResponse: { statusCode: 404 } } }
      - { name: tcp, protocol: TCP, port: 81, defaultAction: { forward: { targetGroups: [{ targetGroupIdentifier: api-tcp }] } } }
targetGroups:
  - { name: api-tcp, type: IP, config: { vpcIdentifier: vpc-orders, protocol: TCP, port: 81 }, targets: [{ id: 10.92.0.1 }] }
"#;
        let (config, resolved) = crate::resolve::resolved_for_test(yaml);
        let sites = sites(&config, &resolved);
        let netns: Vec<&str> = sites.iter().filter_map(Site::netns).collect();
        assert_eq!(
            netns,
            ["web-a", "web-b"],
            "only the associated VPC's namespaces"
        );
        assert!(sites.iter().all(|s| s.port == 80), "only the HTTP listener");
        assert_eq!(
            sites[0].allowed,
            Some(vec!["10.91.0.0/24".parse().unwrap()])
        );
        // A VPC of cgroups: one host site however many cgroups, where allowedCidrs
        // (VPC addresses) do not apply.
        let host: Vec<&Site> = sites
            .iter()
            .filter(|s| s.place == Place::Host("vpc-host".into()))
            .collect();
        assert_eq!(host.len(), 1, "{sites:#?}");
        assert_eq!(host[0].allowed, None);
        assert_eq!(host[0].vpc_key, key_of(&resolved.vpcs[host[0].vpc].id));
    }
}
