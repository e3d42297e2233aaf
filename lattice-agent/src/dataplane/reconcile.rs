//! Keeping the kernel in step with the desired state: attach the namespaces of every
//! VPC as they appear, forget those that disappear (or are replaced by a namespace of
//! the same name), and rewrite the service maps when the snapshot, the attachments or
//! the usable targets change. The agent calls [`Reconciler::sync`] at start and then on
//! every tick.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use tracing::{debug, info, warn};

use super::{
    attach::{Attachment, CgroupAttachment},
    compile::{BackendId, GroupPlan, PathSettings, Snapshot},
    ip::{addresses_in, link_exists, netns_exists, netns_inode},
    program::{Applied, Programmer},
    Dataplane, DataplaneError,
};

/// The kernel side of one agent: the loaded object, what it has written, where it is
/// attached.
pub struct Reconciler {
    dataplane: Dataplane,
    programmer: Programmer,
    settings: PathSettings,
    attachments: BTreeMap<(u32, String), Attachment>,
    cgroups: BTreeMap<(u32, PathBuf), CgroupAttachment>,
    /// Attachments whose last attempt failed, with the error (logged once per change).
    failing: BTreeMap<String, String>,
    applied: Option<(Snapshot, Vec<Vec<BackendId>>)>,
    /// Whether the sock_ops links a previous agent left on cgroups this one does not
    /// attach have been removed (once, after the first attach of the VPC cgroups).
    leftovers_swept: bool,
    /// When the addresses of VPCs' namespaces were last read again.
    addresses_read: Option<Instant>,
}

/// How often the addresses of the namespaces of VPCs with several are read again: a
/// target is placed on the namespace that holds its address, and one added to a
/// namespace after it was joined would otherwise be sent to another.
const ADDRESS_RECHECK: Duration = Duration::from_secs(5);

/// What a sync changed.
#[derive(Debug, Default)]
pub struct Synced {
    pub attached: Vec<Attachment>,
    pub cgroups_attached: Vec<CgroupAttachment>,
    pub forgotten: Vec<Attachment>,
    pub applied: Option<Applied>,
}

impl Reconciler {
    /// Takes over a loaded dataplane: writes the host-wide settings and adopts what a
    /// previous agent wrote to the maps.
    pub fn new(mut dataplane: Dataplane, settings: PathSettings) -> Result<Self, DataplaneError> {
        dataplane.write_config(&settings)?;
        let programmer = Programmer::adopt(&mut dataplane)?;
        Ok(Reconciler {
            dataplane,
            programmer,
            settings,
            attachments: BTreeMap::new(),
            cgroups: BTreeMap::new(),
            failing: BTreeMap::new(),
            applied: None,
            leftovers_swept: false,
            addresses_read: None,
        })
    }

    pub fn dataplane(&mut self) -> &mut Dataplane {
        &mut self.dataplane
    }

    pub fn programmer(&self) -> &Programmer {
        &self.programmer
    }

    pub fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        self.attachments.values()
    }

    /// Keys of the VPCs that have a cgroup attached (each once).
    pub fn cgroup_vpcs(&self) -> impl Iterator<Item = u32> + '_ {
        let mut last = None;
        // Keys are (vpc, path): a VPC's cgroups are next to each other.
        self.cgroups
            .keys()
            .map(|(vpc, _)| *vpc)
            .filter(move |vpc| last.replace(*vpc) != Some(*vpc))
    }

    /// Brings the kernel in line with `snapshot`, only `usable` targets taking new flows.
    /// Namespaces that do not exist yet, or have no VPC address yet, are retried on the
    /// next sync; the rest of the state is applied regardless.
    pub fn sync(
        &mut self,
        snapshot: &Snapshot,
        usable: &dyn Fn(&GroupPlan) -> Vec<BackendId>,
    ) -> Result<Synced, DataplaneError> {
        let mut synced = Synced::default();

        // Namespaces that went away took their veth with them.
        let gone: Vec<(u32, String)> = self
            .attachments
            .iter()
            .filter(|(_, a)| !link_exists(&a.host_link))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(a) = self.attachments.remove(&key) {
                self.dataplane.forget_interface(a.ifindex, &a.host_link)?;
                info!(netns = %a.netns, host_link = %a.host_link, "VPC namespace gone; forgot its link");
                synced.forgotten.push(a);
            }
        }
        // Namespaces deleted (`ip netns del`) or made again under the same name, whose
        // veth lives on: the old namespace is kept alive by the sockets in it (the L7
        // sites', DNS's), so its veth is not deleted with it. It is detached here, so
        // the sites and DNS close their sockets and the namespace can go; a new one of
        // that name is joined on the next sync, once those sockets are closed.
        let replaced: Vec<((u32, String), Option<u64>)> = self
            .attachments
            .iter()
            .map(|(k, a)| (k, a, netns_inode(&a.netns)))
            .filter(|(_, a, now)| *now != Some(a.netns_inode))
            .map(|(k, _, now)| (k.clone(), now))
            .collect();
        for (key, now) in &replaced {
            if let Some(a) = self.attachments.remove(key) {
                self.dataplane.forget_interface(a.ifindex, &a.host_link)?;
                let _ = super::ip::ip(&["link", "del", "dev", &a.host_link]);
                match now {
                    None => {
                        info!(netns = %a.netns, host_link = %a.host_link, "VPC namespace gone (deleted); detached")
                    }
                    Some(_) => {
                        info!(netns = %a.netns, host_link = %a.host_link, "VPC namespace replaced by another of its name; detached")
                    }
                }
                synced.forgotten.push(a);
            }
        }
        // Namespaces no longer in the config are detached (their veth deleted).
        let wanted: Vec<(u32, String)> = snapshot
            .vpcs
            .iter()
            .flat_map(|v| v.netns.iter().map(move |ns| (v.key, ns.clone())))
            .collect();
        let unwanted: Vec<(u32, String)> = self
            .attachments
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for key in unwanted {
            if let Some(a) = self.attachments.remove(&key) {
                self.dataplane.forget_interface(a.ifindex, &a.host_link)?;
                let _ = super::ip::ip(&["link", "del", "dev", &a.host_link]);
                info!(netns = %a.netns, "VPC attachment removed from the config; detached");
                synced.forgotten.push(a);
            }
        }
        for vpc in &snapshot.vpcs {
            for netns in &vpc.netns {
                let key = (vpc.key, netns.clone());
                if self.attachments.contains_key(&key)
                    || replaced.iter().any(|(k, _)| *k == key)
                    || !netns_exists(netns)
                {
                    continue;
                }
                match self.dataplane.attach_netns(vpc, netns, &self.settings) {
                    Ok(a) => {
                        self.failing.remove(netns);
                        self.attachments.insert(key, a.clone());
                        synced.attached.push(a);
                    }
                    Err(e) => self.failed(netns, &vpc.name, &e),
                }
            }
        }
        self.sync_cgroups(snapshot, &mut synced)?;
        if !self.leftovers_swept {
            // Once, after the first attach: what a previous agent attached to cgroups
            // this one does not.
            let keep = self.cgroups.values().map(|c| c.id).collect();
            self.dataplane.sweep_cgroups(&keep)?;
            if self.dataplane.sockmap_enabled() {
                self.dataplane.sweep_sock_ops(&keep)?;
            }
            self.leftovers_swept = true;
        }

        let readdressed = self.read_addresses_again(Instant::now());

        let usable_now: Vec<Vec<BackendId>> = snapshot
            .listeners
            .iter()
            .flat_map(|l| l.groups.iter().map(usable))
            .collect();
        let unchanged = !readdressed
            && synced.attached.is_empty()
            && synced.cgroups_attached.is_empty()
            && synced.forgotten.is_empty()
            && self
                .applied
                .as_ref()
                .is_some_and(|(s, u)| s == snapshot && *u == usable_now);
        if !unchanged {
            self.dataplane
                .set_sock_endpoints(&snapshot.sock_endpoints)?;
            let attachments: Vec<Attachment> = self.attachments.values().cloned().collect();
            let applied =
                self.programmer
                    .apply(&mut self.dataplane, snapshot, &attachments, usable)?;
            self.applied = Some((snapshot.clone(), usable_now));
            synced.applied = Some(applied);
        }
        Ok(synced)
    }

    /// Reads the addresses of the namespaces of VPCs with several namespaces again, at
    /// most every [`ADDRESS_RECHECK`] (a VPC of one namespace places every target on
    /// it); whether any changed.
    fn read_addresses_again(&mut self, now: Instant) -> bool {
        if self
            .addresses_read
            .is_some_and(|at| now.saturating_duration_since(at) < ADDRESS_RECHECK)
        {
            return false;
        }
        self.addresses_read = Some(now);
        let mut namespaces: BTreeMap<u32, usize> = BTreeMap::new();
        for (vpc, _) in self.attachments.keys() {
            *namespaces.entry(*vpc).or_default() += 1;
        }
        let mut changed = false;
        for ((vpc, _), a) in self.attachments.iter_mut() {
            if namespaces.get(vpc).copied().unwrap_or(0) < 2 {
                continue;
            }
            match addresses_in(&a.netns) {
                Ok(addresses) if addresses != a.addresses => {
                    info!(netns = %a.netns, ?addresses, "VPC namespace addresses changed; placing targets again");
                    a.addresses = addresses;
                    changed = true;
                }
                Ok(_) => {}
                // Gone or being replaced: the next sync's checks above deal with it.
                Err(e) => {
                    debug!(netns = %a.netns, error = %e, "reading the namespace's addresses failed")
                }
            }
        }
        changed
    }

    /// Attaches the cgroups of the snapshot's VPCs that exist and are not attached yet;
    /// forgets those removed from the disk or the config.
    fn sync_cgroups(
        &mut self,
        snapshot: &Snapshot,
        synced: &mut Synced,
    ) -> Result<(), DataplaneError> {
        let wanted: Vec<(u32, PathBuf)> = snapshot
            .vpcs
            .iter()
            .flat_map(|v| v.cgroups.iter().map(move |c| (v.key, c.clone())))
            .collect();
        let stale: Vec<(u32, PathBuf)> = self
            .cgroups
            .iter()
            // Gone, or made again at the same path (a new cgroup: another id).
            .filter(|(k, a)| {
                !wanted.contains(k)
                    || std::fs::metadata(&a.path).map(|m| m.ino()).ok() != Some(a.id)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(a) = self.cgroups.remove(&key) {
                self.dataplane.forget_cgroup(a.id)?;
                info!(cgroup = %a.path.display(), "VPC cgroup gone or removed from the config; detached");
            }
        }
        for vpc in &snapshot.vpcs {
            for cgroup in &vpc.cgroups {
                let key = (vpc.key, cgroup.clone());
                if self.cgroups.contains_key(&key) {
                    continue;
                }
                let label = cgroup.display().to_string();
                match self.dataplane.attach_cgroup(vpc, cgroup) {
                    Ok(a) => {
                        self.failing.remove(&label);
                        info!(vpc = %vpc.name, cgroup = %a.path.display(), "attached VPC cgroup");
                        self.cgroups.insert(key, a.clone());
                        synced.cgroups_attached.push(a);
                    }
                    Err(e) => self.failed(&label, &vpc.name, &e),
                }
            }
        }
        Ok(())
    }

    /// Logs an attachment that cannot be made yet, once per distinct error.
    fn failed(&mut self, what: &str, vpc: &str, error: &DataplaneError) {
        // Every variant's message already ends with its cause.
        let message = error.to_string();
        if self.failing.get(what) != Some(&message) {
            warn!(vpc, attachment = what, error = %message, "cannot attach yet; retrying");
            self.failing.insert(what.to_owned(), message);
        }
    }
}
