//! Live reconfiguration: the running agent follows its config file.
//!
//! A changed document (the file rewritten, or `SIGHUP`) is prepared whole, off to the
//! side, exactly as at start: parsed and validated, its files checked, resolved (VIPs),
//! its keys and certificates loaded, a proxy generation built and the kernel snapshot
//! compiled. Anything wrong refuses the document with every error, and nothing
//! running has changed. A prepared document is first made durable in the state
//! directory (atomic replace, fsync), then switched in: health checks, the kernel
//! tables (versioned, swapped last), the proxy generation (one atomic store: requests
//! in flight finish on the config they started with, new ones get the new one), the
//! L7 sites, DNS. A restarted agent whose file is broken comes back with the last
//! document it applied.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use lattice_common::cgroups::{HostSite, HostSiteKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::{runtime::Handle, sync::watch};
use tracing::{error, info, warn};

use crate::{
    accesslog::AccessLogs,
    api::{
        ops::{self, Kind},
        ApiError, Call,
    },
    auth::Authenticator,
    config::{self, Config, TargetId},
    dataplane::{
        compile::{self, BackendId, GroupPlan, PathSettings, Snapshot},
        Reconciler,
    },
    dns::{DnsServer, Zones},
    health::{self, GroupKey, HealthChecker, HealthSnapshot, Probers},
    l7::{
        proxy::Proxy,
        serve::{Attached, SiteServer},
        switch::ProxySwitch,
    },
    metrics::ProxyMetrics,
    resolve::{self, Resolved, Settings, VipAllocations},
    state::StateDir,
};

/// The last document the agent applied, in its state directory.
pub const APPLIED_FILE: &str = "applied-config.json";
/// Where `run` records target health for `lattice-agent targets`.
pub const TARGETS_FILE: &str = "targets.json";

/// A desired-state document: its text and where it came from (relative paths in it
/// are relative to that file's folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub source: PathBuf,
    pub text: String,
    /// The config file's text when this document was applied: the same text for a
    /// document read from the file; for one made by the control API, what the file
    /// held then. A restarted agent whose file still holds that text comes back with
    /// the API's document; a file changed since wins.
    #[serde(default)]
    pub file_text: Option<String>,
}

impl Document {
    pub fn read(path: &Path) -> anyhow::Result<Document> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Document {
            source: path.to_path_buf(),
            file_text: Some(text.clone()),
            text,
        })
    }

    /// A document sent to the control API (`lattice apply`), from `source`.
    pub fn from_api(source: PathBuf, text: String) -> Document {
        Document {
            source,
            text,
            file_text: None,
        }
    }

    /// The document as JSON, for the control API's operations.
    pub fn value(&self) -> Result<Value, ApiError> {
        let value: Value = serde_norway::from_str(&self.text)
            .map_err(|e| ApiError::validation(format!("{}: {e}", self.source.display())))?;
        Ok(if value.is_null() { json!({}) } else { value })
    }

    /// The document the agent last applied with this state directory, if any.
    pub fn last_applied(state_dir: &StateDir) -> anyhow::Result<Option<Document>> {
        Ok(Applied::read(state_dir)?.map(|a| a.document))
    }
}

/// The applied document as the state directory keeps it, with its generation: the
/// generations a client's `If-Match` names go on counting across restarts, so a
/// generation read before one never matches another document after it.
#[derive(Debug, Serialize, Deserialize)]
struct Applied {
    #[serde(flatten)]
    document: Document,
    /// 0 in files of agents that did not record it.
    #[serde(default)]
    generation: u64,
}

/// Makes a generation durable: its VIP allocations, then its document.
fn record(
    state_dir: &StateDir,
    vips: &mut VipAllocations,
    document: &Document,
    generation: u64,
) -> anyhow::Result<()> {
    vips.save(state_dir).context("saving the VIP allocations")?;
    Applied::write(state_dir, document, generation)
}

impl Applied {
    fn read(state_dir: &StateDir) -> anyhow::Result<Option<Applied>> {
        Ok(state_dir.read_json(APPLIED_FILE)?)
    }

    fn write(state_dir: &StateDir, document: &Document, generation: u64) -> anyhow::Result<()> {
        let applied = Applied {
            document: document.clone(),
            generation,
        };
        state_dir
            .write_json(APPLIED_FILE, &applied)
            .context("recording the applied config")
    }
}

/// What every generation shares: the agent's flags and long-lived parts.
pub struct Fixed {
    pub settings: Settings,
    pub path_settings: PathSettings,
    /// The mesh-wide client CA (`--mtls-ca`).
    pub mesh_ca: Option<PathBuf>,
    /// When access log files rotate.
    pub log_rotation: crate::accesslog::Rotation,
    pub runtime: Handle,
    pub health: watch::Receiver<HealthSnapshot>,
    /// The namespace of the host's processes, for their L7 sites (`--host-netns`).
    pub host_netns: Option<PathBuf>,
    /// Client connections the L7 sites hold at once (`--max-connections`).
    pub max_connections: usize,
}

/// Everything made from one document, before anything running sees it.
pub struct Generation {
    pub document: Document,
    pub config: Config,
    pub resolved: Resolved,
    pub snapshot: Snapshot,
    pub proxy: Arc<Proxy>,
    pub zones: Zones,
    /// The VIP allocations with this document's services; saved when it is applied.
    pub vips: VipAllocations,
}

impl Generation {
    /// Prepares `document` with the allocations in force; `previous` (the running
    /// proxy generation) lends it what carries over (pools, counters, log writers).
    /// An error names everything wrong and nothing has changed.
    pub fn prepare(
        document: Document,
        fixed: &Fixed,
        vips: &VipAllocations,
        previous: Option<&Proxy>,
    ) -> anyhow::Result<Generation> {
        Generation::build(document, fixed, vips, previous, true)
    }

    /// Checks `document` as [`Generation::prepare`] would, for a dry run: the same
    /// errors, but no access log file or folder is made (their paths are checked).
    pub fn check(
        document: Document,
        fixed: &Fixed,
        vips: &VipAllocations,
        previous: Option<&Proxy>,
    ) -> anyhow::Result<()> {
        Generation::build(document, fixed, vips, previous, false).map(drop)
    }

    fn build(
        document: Document,
        fixed: &Fixed,
        vips: &VipAllocations,
        previous: Option<&Proxy>,
        open_logs: bool,
    ) -> anyhow::Result<Generation> {
        let config = config::parse_str(&document.text, &document.source)?;
        config.check_files()?;
        let mut vips = vips.clone();
        let resolved = resolve::resolve(&config, &fixed.settings, &mut vips)?;
        let auth = Arc::new(
            Authenticator::load(&config, &resolved.region, fixed.mesh_ca.as_deref())
                .context("loading access keys and client CAs")?,
        );
        let tls = crate::l7::tls::acceptors(&config, &resolved, auth.mtls())
            .context("loading service certificates")?;
        let logs = if open_logs {
            AccessLogs::start(&config, previous.map(|p| &**p.logs()), fixed.log_rotation)
                .context("opening the access log destinations")?
        } else {
            AccessLogs::default()
        };
        let metrics = ProxyMetrics::next(&config, previous.map(|p| (&**p.metrics(), p.config())));
        let proxy = Proxy::new(
            config.clone(),
            resolved.clone(),
            fixed.health.clone(),
            tls,
            auth,
            Arc::new(logs),
            metrics,
            previous,
        )?;
        let snapshot = compile::compile(&config, &resolved, &fixed.path_settings);
        snapshot.check_capacity()?;
        let zones = Zones::build(&config, &resolved, &fixed.settings);
        Ok(Generation {
            document,
            config,
            resolved,
            snapshot,
            proxy: Arc::new(proxy),
            zones,
            vips,
        })
    }
}

/// The running agent's parts that follow the config, owned by the sync thread.
pub struct Running {
    pub fixed: Fixed,
    pub state_dir: StateDir,
    /// The config file the agent follows.
    pub path: PathBuf,
    pub reconciler: Reconciler,
    pub sites: SiteServer,
    pub dns: DnsServer,
    pub switch: Arc<ProxySwitch>,
    pub checker: HealthChecker,
    pub probers: Probers,
    /// The applied document (and as JSON, for the control API), and its config, resolved
    /// model and kernel snapshot.
    pub document: Document,
    document_value: Value,
    pub config: Config,
    pub resolved: Resolved,
    pub snapshot: Snapshot,
    pub vips: VipAllocations,
    /// How many documents have been applied since the start (the first is 1).
    pub generation: u64,
    /// The last text read from the file, applied or refused: not tried again until
    /// it changes (or SIGHUP).
    last_text: String,
    /// Target health as last recorded for `targets`.
    written: Option<Vec<TargetRow>>,
    /// The host sites as last written to the kernel.
    host_sites_written: Option<BTreeMap<HostSiteKey, HostSite>>,
}

impl Running {
    /// Puts the first generation in force (the kernel programs are loaded, the
    /// health checker started) and serves it.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        fixed: Fixed,
        state_dir: StateDir,
        path: PathBuf,
        reconciler: Reconciler,
        checker: HealthChecker,
        dns: DnsServer,
        first: Generation,
    ) -> anyhow::Result<Running> {
        // Counted on from the last generation applied before the restart.
        let generation = Applied::read(&state_dir)?.map_or(0, |a| a.generation);
        let switch = ProxySwitch::new(Arc::clone(&first.proxy), fixed.max_connections);
        let sites = SiteServer::new(
            Arc::clone(&switch),
            Vec::new(),
            fixed.runtime.clone(),
            fixed.host_netns.clone(),
        );
        let mut running = Running {
            last_text: first.document.file_text.clone().unwrap_or_default(),
            document: first.document.clone(),
            document_value: Value::Null,
            fixed,
            state_dir,
            path,
            reconciler,
            sites,
            dns,
            switch,
            checker,
            probers: Probers::new(),
            config: first.config.clone(),
            resolved: first.resolved.clone(),
            snapshot: first.snapshot.clone(),
            vips: first.vips.clone(),
            generation,
            written: None,
            host_sites_written: None,
        };
        running.apply(first, None)?;
        Ok(running)
    }

    /// Switches `next` in: durable first, then kernel, health, proxy, sites, DNS.
    /// `value`: the document as JSON when the caller has it already.
    fn apply(&mut self, mut next: Generation, value: Option<Value>) -> anyhow::Result<()> {
        let value = match value {
            Some(v) => v,
            None => next.document.value().map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        let generation = self.generation + 1;
        record(&self.state_dir, &mut next.vips, &next.document, generation)?;
        // The kernel before the health checker: a failure here leaves the checker
        // following the running generation (targets it would drop keep their state).
        // The health known now selects the same targets the checker's first look
        // would: new targets are INITIAL either way.
        let health = self.fixed.health.borrow().clone();
        self.reconciler
            .sync(&next.snapshot, &usable_targets(&next.config, &health))
            .context("programming the kernel")?;
        self.reconciler
            .dataplane()
            .set_flow_logging(crate::flowlog::wanted(&next.config))
            .context("turning TCP flow reports on or off")?;
        let groups = health::plan(&next.config, &mut self.probers);
        self.fixed
            .runtime
            .block_on(self.checker.set_groups(groups))
            .context("updating the health checks")?;
        self.switch.switch(Arc::clone(&next.proxy));
        self.sites.set_sites(next.proxy.sites().cloned().collect());
        self.dns.zones().set(next.zones);
        self.sync_sites();
        self.document_value = value;
        self.document = next.document;
        self.config = next.config;
        self.resolved = next.resolved;
        self.snapshot = next.snapshot;
        self.vips = next.vips;
        self.generation = generation;
        Ok(())
    }

    /// Puts the running generation back in the state directory after an apply that got
    /// past it and then failed (the health checker is set last, so it still follows the
    /// running generation); the kernel tables follow the running snapshot again at the
    /// next tick.
    fn restore_running(&mut self) -> anyhow::Result<()> {
        record(
            &self.state_dir,
            &mut self.vips,
            &self.document,
            self.generation,
        )
    }

    /// Reads the config file and applies it when it changed since the last attempt
    /// (or whenever `force`). A refused document is logged with every error and
    /// changes nothing.
    pub fn follow_file(&mut self, force: bool) {
        let document = match Document::read(&self.path) {
            Ok(d) => d,
            Err(e) => {
                if force {
                    warn!(
                        error = format!("{e:#}"),
                        "config not reloaded; the running one stays"
                    );
                }
                return;
            }
        };
        if !force && document.text == self.last_text {
            return;
        }
        self.last_text = document.text.clone();
        let current = self.switch.current();
        let prepared = Generation::prepare(document, &self.fixed, &self.vips, Some(&current));
        drop(current);
        let next = match prepared {
            Ok(next) => next,
            Err(e) => {
                error!(
                    config = %self.path.display(),
                    error = format!("{e:#}"),
                    generation = self.generation,
                    "config refused; the running one stays"
                );
                return;
            }
        };
        let services = next.resolved.services.len();
        match self.apply(next, None) {
            Ok(()) => info!(
                config = %self.path.display(),
                generation = self.generation,
                services,
                l7_sites = self.sites.served(),
                "config applied"
            ),
            Err(e) => {
                // Durable already: the next tick tries the whole switch again.
                self.last_text.clear();
                error!(
                    error = format!("{e:#}"),
                    "applying the config failed part way; retrying"
                )
            }
        }
    }

    /// Executes one control API call. Reads answer from the applied document; a change
    /// makes a new document that is prepared and applied like an edit of the file,
    /// and is refused (with every error) the same way.
    pub fn call(&mut self, call: Call) -> Result<Value, ApiError> {
        // Lattice's identifiers (ids, ARNs) name resources as well as the names do.
        let call = crate::api::identifier::to_names(&self.resolved, call);
        // Reads look at the applied document; a change works on a copy of it.
        let current = &self.document_value;
        match call {
            Call::GetDocument => Ok(json!({
                "generation": self.generation,
                "source": self.document.source,
                "document": current.clone(),
            })),
            Call::PutDocument {
                document,
                dry_run,
                if_generation,
            } => {
                if let Some(expected) = if_generation.filter(|g| *g != self.generation) {
                    return Err(ApiError::Conflict {
                        message: format!(
                            "the agent runs generation {}, not {expected}: read the document again",
                            self.generation
                        ),
                        resource_type: "DOCUMENT",
                        resource_id: self.generation.to_string(),
                    });
                }
                let next = document.value()?;
                let diff = ops::diff(current, &next);
                let document = Document {
                    file_text: Some(self.last_text.clone()),
                    ..document
                };
                if dry_run {
                    let current = self.switch.current();
                    Generation::check(document, &self.fixed, &self.vips, Some(&current))
                        .map_err(|e| ApiError::refused(&e))?;
                    return Ok(
                        json!({ "dryRun": true, "diff": diff, "generation": self.generation }),
                    );
                }
                self.change(document, Some(next))?;
                Ok(json!({ "diff": diff, "generation": self.generation }))
            }
            Call::List {
                kind,
                parents,
                page,
            } => {
                let items = ops::list(current, kind, &parents)?;
                let (items, next) = page.take(&items)?;
                let items: Vec<Value> = items
                    .into_iter()
                    .map(|i| self.describe(kind, &parents, i))
                    .collect();
                Ok(json!({ "items": items, "nextToken": next }))
            }
            Call::Get { kind, id } => {
                let item = ops::get(current, kind, &id)?;
                Ok(self.describe(kind, parents_of(&id), item))
            }
            Call::Create {
                kind,
                parents,
                item,
            } => {
                let mut next = current.clone();
                let key = ops::create(&mut next, kind, &parents, item)?;
                self.change_value(next)?;
                let id = [parents, vec![key]].concat();
                let item = ops::get(&self.document_value, kind, &id)?;
                Ok(self.describe(kind, parents_of(&id), item))
            }
            Call::Update { kind, id, patch } => {
                let mut next = current.clone();
                let item = ops::update(&mut next, kind, &id, &patch)?;
                self.change_value(next)?;
                Ok(self.describe(kind, parents_of(&id), item))
            }
            Call::Delete { kind, id } => {
                let mut next = current.clone();
                let item = ops::delete(&mut next, kind, &id)?;
                // Described before the change: a deleted resource's ids are the old ones.
                let described = self.describe(kind, parents_of(&id), item);
                self.change_value(next)?;
                Ok(described)
            }
            Call::RegisterTargets { group, targets } => {
                let mut next = current.clone();
                let done = ops::register_targets(&mut next, &group, &targets)?;
                self.change_value(next)?;
                Ok(json!({ "successful": done, "unsuccessful": [] }))
            }
            Call::DeregisterTargets { group, targets } => {
                let mut next = current.clone();
                let (done, failed) = ops::deregister_targets(&mut next, &group, &targets)?;
                self.change_value(next)?;
                Ok(json!({ "successful": done, "unsuccessful": failed }))
            }
            Call::ListTargets { group, page } => {
                if self.config.target_group_by_name(&group).is_none() {
                    return Err(ApiError::NotFound {
                        resource_type: Kind::TargetGroup.type_name(),
                        resource_id: group,
                    });
                }
                let health = self.fixed.health.borrow().clone();
                let rows: Vec<TargetRow> = target_rows(&self.config, &health)
                    .into_iter()
                    .filter(|r| r.target_group == group)
                    .collect();
                let (rows, next) = page.take(&rows)?;
                Ok(json!({ "items": rows, "nextToken": next }))
            }
            Call::PutAuthPolicy { resource, policy } => {
                let mut next = current.clone();
                ops::put_auth_policy(&mut next, &resource, policy)?;
                self.change_value(next)?;
                ops::get_auth_policy(&self.document_value, &resource)
            }
            Call::GetAuthPolicy { resource } => ops::get_auth_policy(current, &resource),
            Call::DeleteAuthPolicy { resource } => {
                let mut next = current.clone();
                ops::delete_auth_policy(&mut next, &resource)?;
                self.change_value(next)?;
                Ok(json!({}))
            }
            Call::Stats => Ok(self.stats()),
        }
    }

    /// Applies `next` (the current document changed by a call) as a new generation.
    fn change_value(&mut self, next: Value) -> Result<(), ApiError> {
        let text =
            serde_json::to_string_pretty(&next).map_err(|e| ApiError::Internal(e.to_string()))?;
        let document = Document {
            source: self.document.source.clone(),
            text,
            file_text: Some(self.last_text.clone()),
        };
        self.change(document, Some(next))
    }

    /// `value`: the document as JSON when the caller has it already.
    fn change(&mut self, document: Document, value: Option<Value>) -> Result<(), ApiError> {
        let current = self.switch.current();
        let next = Generation::prepare(document, &self.fixed, &self.vips, Some(&current))
            .map_err(|e| ApiError::refused(&e))?;
        drop(current);
        let services = next.resolved.services.len();
        if let Err(e) = self.apply(next, value) {
            // The caller is told it failed, so it must not come back later (at a
            // restart, or under the next call): the running generation is put back
            // where the apply got to before failing.
            let restored = self.restore_running();
            error!(
                error = format!("{e:#}"),
                restored = ?restored.as_ref().map_err(|e| format!("{e:#}")),
                "applying an API change failed part way; the running config stays"
            );
            return Err(ApiError::Internal(format!("{e:#}")));
        }
        info!(
            generation = self.generation,
            services,
            l7_sites = self.sites.served(),
            "config applied (control API)"
        );
        Ok(())
    }

    /// A resource as the API shows it: the document's item, with the ids, ARNs and
    /// DNS name the agent gave it. `parents`: the names of the services (and listener)
    /// a listener or rule is under.
    fn describe(&self, kind: Kind, parents: &[String], mut item: Value) -> Value {
        let key = ops::key_of(kind, &item);
        let listener = |service: &str, name: &str| {
            let service = self.config.service_by_name(service)?;
            self.resolved.services[service.index()]
                .listeners
                .iter()
                .find(|l| l.name == name)
        };
        let extra = match kind {
            Kind::Service => self.config.service_by_name(&key).map(|r| {
                let s = &self.resolved.services[r.index()];
                json!({ "id": s.id, "arn": s.arn, "status": "ACTIVE",
                    "dnsEntry": { "domainName": s.dns_name }, "vip": s.vip })
            }),
            Kind::ServiceNetwork => self.config.service_network_by_name(&key).map(|r| {
                let n = &self.resolved.service_networks[r.index()];
                json!({ "id": n.id, "arn": n.arn })
            }),
            Kind::TargetGroup => self.config.target_group_by_name(&key).map(|r| {
                let g = &self.resolved.target_groups[r.index()];
                json!({ "id": g.id, "arn": g.arn, "status": "ACTIVE" })
            }),
            Kind::Listener => parents
                .first()
                .and_then(|service| listener(service, &key))
                .map(|l| json!({ "id": l.id, "arn": l.arn })),
            Kind::Rule => match parents {
                [service, name] => listener(service, name)
                    .and_then(|l| l.rules.iter().find(|r| r.name == key))
                    .map(|r| json!({ "id": r.id, "arn": r.arn })),
                _ => None,
            },
            Kind::AccessLogSubscription => Some(json!({ "id": key })),
            Kind::VpcAssociation | Kind::ServiceAssociation => None,
        };
        if let (Some(Value::Object(extra)), Some(object)) = (extra, item.as_object_mut()) {
            object.extend(extra);
        }
        item
    }

    /// The proxy's live counters per service and target group (`lattice stats`).
    fn stats(&self) -> Value {
        let proxy = self.switch.current();
        let metrics = proxy.metrics();
        let row = |name: &str, c: &crate::metrics::counters::Counters| {
            let c = c.totals();
            json!({
                "name": name,
                "requests": c.requests,
                "http2xx": c.http_2xx,
                "http3xx": c.http_3xx,
                "http4xx": c.http_4xx,
                "http5xx": c.http_5xx,
                "bytesIn": c.bytes_in,
                "bytesOut": c.bytes_out,
                "activeConnections": c.active_connections,
                "totalConnections": c.total_connections,
            })
        };
        let services: Vec<Value> = proxy
            .resolved()
            .services
            .iter()
            .zip(&metrics.services)
            .map(|(s, c)| row(&s.name, c))
            .collect();
        let groups: Vec<Value> = proxy
            .resolved()
            .target_groups
            .iter()
            .zip(&metrics.target_groups)
            .map(|(g, c)| row(&g.name, c))
            .collect();
        json!({
            "generation": self.generation,
            "services": services,
            "targetGroups": groups,
            "accessLogRecordsDropped": proxy.logs().dropped(),
        })
    }

    /// One tick: the kernel follows namespaces and target health, the sites and DNS
    /// follow the attached namespaces, and target health is recorded for `targets`.
    pub fn tick(&mut self) {
        let health = self.fixed.health.borrow().clone();
        // The kernel first, the record second: whoever reads a target's state from
        // `targets` finds the tables already following it.
        let usable = usable_targets(&self.config, &health);
        match self.reconciler.sync(&self.snapshot, &usable) {
            Ok(s) if s.applied.is_some() => info!(applied = ?s.applied, "kernel tables updated"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "syncing the kernel failed; retrying"),
        }
        let rows = target_rows(&self.config, &health);
        if self.written.as_ref() != Some(&rows) {
            match self.state_dir.write_json(TARGETS_FILE, &rows) {
                Ok(()) => self.written = Some(rows),
                Err(e) => warn!(error = %e, "recording target health failed"),
            }
        }
        drop(usable);
        self.sync_sites();
    }

    /// Serves the L7 sites and DNS of what is attached now, and tells connect4 where
    /// the host sites are.
    fn sync_sites(&mut self) {
        let attached = self.attached();
        self.sites.sync(&attached);
        self.dns.sync(&attached.netns);
        let host_sites = self.sites.host_sites();
        if self.host_sites_written.as_ref() != Some(&host_sites) {
            match self.reconciler.dataplane().set_host_sites(&host_sites) {
                Ok(()) => self.host_sites_written = Some(host_sites),
                Err(e) => {
                    warn!(error = %e, "writing the host sites to the kernel failed; retrying")
                }
            }
        }
    }

    /// The namespaces attached right now, with their VPC addresses, and the VPCs with
    /// a cgroup attached.
    pub fn attached(&self) -> Attached {
        Attached {
            netns: self
                .reconciler
                .attachments()
                .map(|a| (a.netns.clone(), a.vpc_addr))
                .collect(),
            cgroup_vpcs: self.reconciler.cgroup_vpcs().collect(),
        }
    }
}

/// One target's health, as `targets` prints it (Lattice's ListTargets fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRow {
    pub target_group: String,
    pub id: String,
    pub port: u16,
    pub status: String,
    pub reason_code: Option<String>,
}

fn target_rows(config: &Config, health: &HealthSnapshot) -> Vec<TargetRow> {
    let mut rows = Vec::new();
    for group in config.target_groups() {
        let key = GroupKey::of(group);
        let Some(g) = health.groups.get(&key) else {
            continue;
        };
        for t in g.summaries() {
            let value = serde_json::to_value(&t).unwrap_or_default();
            rows.push(TargetRow {
                target_group: group.name.to_string(),
                id: t.id,
                port: t.port,
                status: value["status"].as_str().unwrap_or("?").to_owned(),
                reason_code: value["reasonCode"].as_str().map(str::to_owned),
            });
        }
    }
    rows
}

/// The targets of a forward that may take new flows now: health decides (failing
/// open when none qualifies, as Lattice does).
pub fn usable_targets<'a>(
    config: &'a Config,
    health: &'a HealthSnapshot,
) -> impl Fn(&GroupPlan) -> Vec<BackendId> + 'a {
    move |g: &GroupPlan| {
        let group = config.target_group(g.group);
        health
            .select(&GroupKey::of(group), &group.targets)
            .targets
            .into_iter()
            .filter_map(|t| match t.id {
                TargetId::Ip(addr) => Some(BackendId {
                    target_group: g.key,
                    addr,
                    port: t.port.get(),
                }),
                TargetId::Instance(_) => None,
            })
            .collect()
    }
}

/// The parents' names in a resource's path (all but its own key).
fn parents_of(id: &[String]) -> &[String] {
    id.split_last().map_or(&[], |(_, parents)| parents)
}
