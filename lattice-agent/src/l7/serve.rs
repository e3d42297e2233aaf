//! Keeping the sites served: a site is started when its namespace is attached and
//! stopped (its socket closed, so the namespace can go) when it is not any more.
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
    listen::{listen_in_netns, route_site, unroute_all},
    proxy::Proxy,
    sites::Site,
};

type SiteKey = (String, Ipv4Addr, u16);

/// The sites of one config and the tasks serving them.
pub struct SiteServer {
    proxy: Arc<Proxy>,
    sites: Vec<Site>,
    runtime: Handle,
    served: BTreeMap<SiteKey, JoinHandle<()>>,
    failing: BTreeMap<SiteKey, String>,
    /// Namespaces whose earlier site rules this agent has removed.
    swept: BTreeSet<String>,
}

impl SiteServer {
    pub fn new(proxy: Arc<Proxy>, sites: Vec<Site>, runtime: Handle) -> Self {
        SiteServer {
            proxy,
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

    /// Serves the sites of the `attached` namespaces (name -> the namespace's VPC
    /// address), stops the others. Failures are logged once and retried on the next
    /// call.
    pub fn sync(&mut self, attached: &BTreeMap<String, Ipv4Addr>) {
        let gone: Vec<SiteKey> = self
            .served
            .keys()
            .filter(|(netns, _, _)| !attached.contains_key(netns))
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
            if let Some(task) = self.served.remove(&key) {
                task.abort();
                info!(netns = %key.0, vip = %key.1, port = key.2, "stopped serving L7 site");
            }
        }
        for site in &self.sites {
            let key = site.key();
            let Some(src) = attached.get(&site.netns) else {
                continue;
            };
            if self.served.contains_key(&key) {
                continue;
            }
            let started = route_site(site, *src).and_then(|()| listen_in_netns(site));
            match started {
                Ok(listener) => {
                    let task = self
                        .runtime
                        .spawn(Arc::clone(&self.proxy).serve(listener, site.clone()));
                    self.failing.remove(&key);
                    self.served.insert(key, task);
                    info!(netns = %site.netns, vip = %site.vip, port = site.port, "serving L7 site");
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
        for task in self.served.values() {
            task.abort();
        }
    }
}
