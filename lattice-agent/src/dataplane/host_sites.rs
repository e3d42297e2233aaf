//! The L7 sites of host processes as connect4 reads them (`LT_HOSTSITES_V1`): the
//! agent's proxy sockets, per (VPC, VIP, port), that a VPC process's connect() to an
//! HTTP, HTTPS or TLS passthrough listener is rewritten to.

use std::collections::BTreeMap;

use aya::maps::HashMap as BpfHashMap;
use lattice_common::cgroups::{HostSite, HostSiteKey, HOSTSITES_MAP};

use super::{
    loader::{map_err, open},
    Dataplane, DataplaneError,
};

impl Dataplane {
    /// Makes the map hold exactly `sites`: new and changed entries are written before
    /// stale ones go, so a site that stays is never missing.
    pub fn set_host_sites(
        &mut self,
        sites: &BTreeMap<HostSiteKey, HostSite>,
    ) -> Result<(), DataplaneError> {
        let mut map: BpfHashMap<_, HostSiteKey, HostSite> = open(&mut self.ebpf, HOSTSITES_MAP)?;
        for (key, site) in sites {
            if map.get(key, 0).ok().as_ref() != Some(site) {
                map.insert(key, site, 0)
                    .map_err(map_err("writing", HOSTSITES_MAP))?;
            }
        }
        let stale: Vec<HostSiteKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|key| !sites.contains_key(key))
            .collect();
        for key in stale {
            match map.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("deleting from", HOSTSITES_MAP)(e)),
            }
        }
        Ok(())
    }
}
