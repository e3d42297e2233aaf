//! Keeping the sites served: a site is started when its namespace is attached and
//! stopped (its socket closed, so the namespace can go) when it is not any more, or
//! when a new config no longer has it.
//!
//! The first time the agent sees a namespace it removes every site rule and route it
//! finds there before adding its own: they belong to an earlier agent, whose config
//! may have had sites this one does not (its sockets died with it, so nothing is lost).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    sync::Arc,
};

use tokio::{runtime::Handle, task::JoinHandle};
use tracing::{info, warn};

use super::{
    listen::{listen_in_netns, route_site, unroute_all, unroute_site},
    sites::{Site, SiteKey},
    switch::ProxySwitch,
};

/// A site being served: its routing as set up, and the task accepting on its socket.
struct Served {
    site: Site,
    task: JoinHandle<()>,
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
}

impl SiteServer {
    pub fn new(switch: Arc<ProxySwitch>, sites: Vec<Site>, runtime: Handle) -> Self {
        SiteServer {
            switch,
            sites,
            runtime,
            served: BTreeMap::new(),
            failing: BTreeMap::new(),
            swept: BTreeSet::new(),
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

    /// Serves the sites of the `attached` namespaces (name -> the namespace's VPC
    /// address), stops the others. Failures are logged once and retried on the next
    /// call.
    pub fn sync(&mut self, attached: &BTreeMap<String, Ipv4Addr>) {
        let wanted: BTreeMap<SiteKey, &Site> = self
            .sites
            .iter()
            .filter(|s| attached.contains_key(&s.netns))
            .map(|s| (s.key(), s))
            .collect();
        let gone: Vec<SiteKey> = self
            .served
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .cloned()
            .collect();
        self.swept.retain(|netns| attached.contains_key(netns));
        for netns in attached.keys() {
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
                if attached.contains_key(&key.0) {
                    let vip_in_use = wanted
                        .keys()
                        .any(|(netns, vip, _)| *netns == key.0 && *vip == key.1);
                    unroute_site(&served.site, vip_in_use);
                }
                info!(netns = %key.0, vip = %key.1, port = key.2, "stopped serving L7 site");
            }
        }
        for (key, site) in wanted {
            let src = attached[&site.netns];
            if let Some(served) = self.served.get_mut(&key) {
                if served.site.allowed != site.allowed {
                    unroute_site(&served.site, true);
                    match route_site(site, src) {
                        Ok(()) => served.site = site.clone(),
                        Err(e) => warn!(error = %e, "cannot route L7 site's new sources"),
                    }
                }
                continue;
            }
            let started = route_site(site, src).and_then(|()| listen_in_netns(site));
            match started {
                Ok(listener) => {
                    let task = self
                        .runtime
                        .spawn(Arc::clone(&self.switch).serve(listener, key.clone()));
                    self.failing.remove(&key);
                    info!(netns = %site.netns, vip = %site.vip, port = site.port, "serving L7 site");
                    self.served.insert(
                        key,
                        Served {
                            site: site.clone(),
                            task,
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

impl Drop for SiteServer {
    fn drop(&mut self) {
        for served in self.served.values() {
            served.task.abort();
        }
    }
}
