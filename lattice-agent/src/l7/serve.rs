//! Keeping the sites served: a site is started when its namespace is attached (for a
//! host site: when a cgroup of its VPC is) and stopped (its socket closed, so the
//! namespace can go) when it is not any more, or when a new config no longer has it.
//! The host sites being served are what connect4 reads ([`SiteServer::host_sites`]).
//!
//! The first time the agent sees a namespace it removes every site rule and route it
//! finds there before adding its own: they belong to an earlier agent, whose config
//! may have had sites this one does not (its sockets died with it, so nothing is lost).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    sync::Arc,
};

use lattice_common::cgroups::{HostSite, HostSiteKey};
use tokio::{runtime::Handle, task::JoinHandle};
use tracing::{info, warn};

use super::{
    listen::{listen_in_netns, listen_on_host, route_site, unroute_all, unroute_site, ListenError},
    sites::{Place, Site, SiteKey},
    switch::ProxySwitch,
};

/// A site being served: its routing as set up, and the task accepting on its socket.
struct Served {
    site: Site,
    task: JoinHandle<()>,
    /// A host site's socket port.
    host_port: Option<u16>,
}

/// What is attached right now, which decides the sites that are served.
#[derive(Debug, Default)]
pub struct Attached {
    /// Namespaces, with their VPC addresses.
    pub netns: BTreeMap<String, Ipv4Addr>,
    /// Keys of the VPCs with at least one cgroup attached.
    pub cgroup_vpcs: BTreeSet<u32>,
}

/// The sites of the current config and the tasks serving them.
pub struct SiteServer {
    switch: Arc<ProxySwitch>,
    sites: Vec<Site>,
    runtime: Handle,
    served: BTreeMap<SiteKey, Served>,
    failing: BTreeMap<SiteKey, String>,
    /// Namespaces whose earlier site rules this agent has removed.
    swept: BTreeSet<String>,
    /// The namespace of the host's processes (a namespace file); `None`: the agent's.
    host_netns: Option<PathBuf>,
}

impl SiteServer {
    pub fn new(
        switch: Arc<ProxySwitch>,
        sites: Vec<Site>,
        runtime: Handle,
        host_netns: Option<PathBuf>,
    ) -> Self {
        SiteServer {
            switch,
            sites,
            runtime,
            served: BTreeMap::new(),
            failing: BTreeMap::new(),
            swept: BTreeSet::new(),
            host_netns,
        }
    }

    /// How many sites are being served.
    pub fn served(&self) -> usize {
        self.served.len()
    }

    /// Takes the sites of a new config (already current in the switch): the next
    /// [`SiteServer::sync`] starts the new ones and stops those that are gone. A site
    /// whose sources changed is routed again; its socket stays open.
    pub fn set_sites(&mut self, sites: Vec<Site>) {
        self.sites = sites;
    }

    /// What connect4 must know of the host sites: where each one served accepts.
    pub fn host_sites(&self) -> BTreeMap<HostSiteKey, HostSite> {
        self.served
            .values()
            .filter_map(|served| {
                let key = HostSiteKey {
                    vpc: served.site.vpc_key,
                    vip: u32::from_ne_bytes(served.site.vip.octets()),
                    port: served.site.port.to_be(),
                    _pad: 0,
                };
                let entry = HostSite {
                    port: served.host_port?.to_be(),
                    _pad: 0,
                };
                Some((key, entry))
            })
            .collect()
    }

    /// Serves the sites of what is `attached`, stops the others. Failures are logged
    /// once and retried on the next call.
    pub fn sync(&mut self, attached: &Attached) {
        let wanted: BTreeMap<SiteKey, &Site> = self
            .sites
            .iter()
            .filter(|s| match &s.place {
                Place::Netns(netns) => attached.netns.contains_key(netns),
                Place::Host(_) => attached.cgroup_vpcs.contains(&s.vpc_key),
            })
            .map(|s| (s.key(), s))
            .collect();
        let gone: Vec<SiteKey> = self
            .served
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .cloned()
            .collect();
        self.swept
            .retain(|netns| attached.netns.contains_key(netns));
        for netns in attached.netns.keys() {
            if self.swept.insert(netns.clone()) {
                let removed = unroute_all(netns);
                if removed > 0 {
                    info!(%netns, rules = removed, "removed site rules of an earlier agent");
                }
            }
        }
        for key in gone {
            if let Some(served) = self.served.remove(&key) {
                served.task.abort();
                // A namespace that went away took its rules with it.
                if let Place::Netns(netns) = &key.0 {
                    if attached.netns.contains_key(netns) {
                        let vip_in_use = wanted
                            .keys()
                            .any(|(place, vip, _)| *place == key.0 && *vip == key.1);
                        unroute_site(&served.site, netns, vip_in_use);
                    }
                }
                info!(place = %key.0, vip = %key.1, port = key.2, "stopped serving L7 site");
            }
        }
        for (key, site) in wanted {
            if let Some(served) = self.served.get_mut(&key) {
                if let Place::Netns(netns) = &site.place {
                    if served.site.allowed != site.allowed {
                        unroute_site(&served.site, netns, true);
                        match route_site(site, netns, attached.netns[netns]) {
                            Ok(()) => served.site = site.clone(),
                            Err(e) => warn!(error = %e, "cannot route L7 site's new sources"),
                        }
                    }
                }
                continue;
            }
            match self.start(site, attached) {
                Ok((listener, host_port)) => {
                    let task = self
                        .runtime
                        .spawn(Arc::clone(&self.switch).serve(listener, key.clone()));
                    self.failing.remove(&key);
                    info!(place = %site.place, vip = %site.vip, port = site.port, host_port, "serving L7 site");
                    self.served.insert(
                        key,
                        Served {
                            site: site.clone(),
                            task,
                            host_port,
                        },
                    );
                }
                Err(e) => {
                    let message = e.to_string();
                    if self.failing.get(&key) != Some(&message) {
                        warn!(error = %message, "cannot serve L7 site yet; retrying");
                        self.failing.insert(key, message);
                    }
                }
            }
        }
    }
}

impl SiteServer {
    /// The socket of a site that is not served yet (and, for a host site, its port).
    fn start(
        &self,
        site: &Site,
        attached: &Attached,
    ) -> Result<(TcpListener, Option<u16>), ListenError> {
        match &site.place {
            Place::Netns(netns) => {
                route_site(site, netns, attached.netns[netns])?;
                Ok((listen_in_netns(site, netns)?, None))
            }
            Place::Host(_) => {
                let listener = listen_on_host(self.host_netns.as_deref())?;
                let port = listener
                    .local_addr()
                    .map_err(|source| ListenError::Listen {
                        netns: "(the host's)".to_owned(),
                        addr: std::net::SocketAddr::from((site.vip, site.port)),
                        source,
                    })?
                    .port();
                Ok((listener, Some(port)))
            }
        }
    }
}

impl Drop for SiteServer {
    fn drop(&mut self) {
        for served in self.served.values() {
            served.task.abort();
        }
    }
}
