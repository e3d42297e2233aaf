//! Virtual IPs of services, allocated from a link-local pool and persisted in the state
//! directory so a service keeps its address across restarts.
//!
//! Rules: the pool's network and broadcast addresses are never handed out, and its
//! first usable address is reserved for the agent itself (DNS); a new service gets the
//! lowest free address, in document order; a service keeps its address while it exists
//! in the state; an address is released only when [`VipAllocations::save`] runs after a
//! [`resolve`](super::resolve) in which its service no longer appears, so a service
//! removed and another added in the same change never share an address.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::ResolveError;
use crate::state::StateDir;

/// File name of the allocations in the state directory.
pub const VIPS_FILE: &str = "vips.json";
/// Layout version of [`VIPS_FILE`].
pub const VIPS_FILE_VERSION: u32 = 1;

/// One service's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VipAllocation {
    pub service_id: String,
    pub vip: Ipv4Addr,
    /// For people reading the file: the service's name and account when allocated.
    pub service: String,
    pub account: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VipFile {
    version: u32,
    allocations: Vec<VipAllocation>,
}

/// The allocations, keyed by service id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VipAllocations {
    by_service: BTreeMap<String, VipAllocation>,
    /// Services of the last resolve; `None` before any (then `save` keeps everything).
    live: Option<BTreeSet<String>>,
}

/// The first and last address a pool hands out, and the reserved agent address.
pub(crate) struct PoolBounds {
    pub agent: Ipv4Addr,
    pub first: u32,
    pub last: u32,
}

/// Checks the pool is usable: after network, broadcast and the agent's address there
/// must be at least one address left (a /30 leaves exactly one).
pub(crate) fn pool_bounds(pool: Ipv4Net) -> Result<PoolBounds, ResolveError> {
    if pool.prefix_len() > 30 {
        return Err(ResolveError::PoolTooSmall { pool });
    }
    let network = u32::from(pool.network());
    let broadcast = u32::from(pool.broadcast());
    Ok(PoolBounds {
        agent: Ipv4Addr::from(network + 1),
        first: network + 2,
        last: broadcast - 1,
    })
}

impl VipAllocations {
    /// Reads the allocations from `dir`; none yet is an empty set.
    pub fn load(dir: &StateDir) -> Result<Self, ResolveError> {
        let Some(file) = dir.read_json::<VipFile>(VIPS_FILE)? else {
            return Ok(Self::default());
        };
        let path = dir.path().join(VIPS_FILE);
        if file.version != VIPS_FILE_VERSION {
            return Err(ResolveError::VipFileVersion {
                path,
                found: file.version,
                supported: VIPS_FILE_VERSION,
            });
        }
        let mut by_service = BTreeMap::new();
        let mut vips = BTreeSet::new();
        for allocation in file.allocations {
            if !vips.insert(allocation.vip) || by_service.contains_key(&allocation.service_id) {
                return Err(ResolveError::VipFileCorrupt {
                    path,
                    service_id: allocation.service_id,
                    vip: allocation.vip,
                });
            }
            by_service.insert(allocation.service_id.clone(), allocation);
        }
        Ok(Self {
            by_service,
            live: None,
        })
    }

    /// Releases the addresses of services absent from the last resolve, then writes the
    /// allocations to `dir` atomically.
    pub fn save(&mut self, dir: &StateDir) -> Result<(), ResolveError> {
        if let Some(live) = &self.live {
            self.by_service.retain(|id, _| live.contains(id));
        }
        let file = VipFile {
            version: VIPS_FILE_VERSION,
            allocations: self.by_service.values().cloned().collect(),
        };
        dir.write_json(VIPS_FILE, &file)?;
        Ok(())
    }

    /// The address of a service, if it has one.
    pub fn get(&self, service_id: &str) -> Option<Ipv4Addr> {
        self.by_service.get(service_id).map(|a| a.vip)
    }

    /// All allocations, including those of services a save will release.
    pub fn iter(&self) -> impl Iterator<Item = &VipAllocation> {
        self.by_service.values()
    }

    pub fn len(&self) -> usize {
        self.by_service.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }

    /// Starts a resolve: no service is live yet.
    pub(crate) fn begin(&mut self) {
        self.live = Some(BTreeSet::new());
    }

    /// The address of a service of the config being resolved: its existing one if it
    /// lies in the pool, else the lowest free address.
    pub(crate) fn assign(
        &mut self,
        bounds: &PoolBounds,
        pool: Ipv4Net,
        service_id: &str,
        service: &str,
        account: &str,
    ) -> Result<Ipv4Addr, ResolveError> {
        self.live
            .get_or_insert_with(BTreeSet::new)
            .insert(service_id.to_owned());
        if let Some(existing) = self.by_service.get(service_id) {
            let addr = u32::from(existing.vip);
            if (bounds.first..=bounds.last).contains(&addr) {
                return Ok(existing.vip);
            }
        }
        let used: BTreeSet<u32> = self
            .by_service
            .iter()
            .filter(|(id, _)| id.as_str() != service_id)
            .map(|(_, a)| u32::from(a.vip))
            .collect();
        let Some(free) = (bounds.first..=bounds.last).find(|a| !used.contains(a)) else {
            return Err(ResolveError::PoolExhausted {
                service: service.to_owned(),
                account: account.to_owned(),
                pool,
                capacity: bounds.last - bounds.first + 1,
            });
        };
        let vip = Ipv4Addr::from(free);
        self.by_service.insert(
            service_id.to_owned(),
            VipAllocation {
                service_id: service_id.to_owned(),
                vip,
                service: service.to_owned(),
                account: account.to_owned(),
            },
        );
        Ok(vip)
    }
}
