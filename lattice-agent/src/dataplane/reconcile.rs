//! Keeping the kernel in step with the desired state: attach the namespaces of every
//! VPC as they appear, forget those that disappear, and rewrite the service maps when
//! the snapshot, the attachments or the usable targets change. The agent calls
//! [`Reconciler::sync`] at start and then on every tick.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::{
    attach::Attachment,
    compile::{BackendId, GroupPlan, PathSettings, Snapshot},
    ip::{link_exists, netns_exists},
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
    /// Namespaces whose last attach failed, with the error (logged once per change).
    failing: BTreeMap<(u32, String), String>,
    applied: Option<(Snapshot, Vec<Vec<BackendId>>)>,
}

/// What a sync changed.
#[derive(Debug, Default)]
pub struct Synced {
    pub attached: Vec<Attachment>,
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
            failing: BTreeMap::new(),
            applied: None,
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
                if self.attachments.contains_key(&key) || !netns_exists(netns) {
                    continue;
                }
                match self.dataplane.attach_netns(vpc, netns, &self.settings) {
                    Ok(a) => {
                        self.failing.remove(&key);
                        self.attachments.insert(key, a.clone());
                        synced.attached.push(a);
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if self.failing.get(&key) != Some(&message) {
                            warn!(vpc = %vpc.name, netns, error = %message, "cannot attach VPC namespace yet; retrying");
                            self.failing.insert(key, message);
                        }
                    }
                }
            }
        }

        let usable_now: Vec<Vec<BackendId>> = snapshot
            .listeners
            .iter()
            .flat_map(|l| l.groups.iter().map(usable))
            .collect();
        let unchanged = synced.attached.is_empty()
            && synced.forgotten.is_empty()
            && self
                .applied
                .as_ref()
                .is_some_and(|(s, u)| s == snapshot && *u == usable_now);
        if !unchanged {
            let attachments: Vec<Attachment> = self.attachments.values().cloned().collect();
            let applied =
                self.programmer
                    .apply(&mut self.dataplane, snapshot, &attachments, usable)?;
            self.applied = Some((snapshot.clone(), usable_now));
            synced.applied = Some(applied);
        }
        Ok(synced)
    }
}
