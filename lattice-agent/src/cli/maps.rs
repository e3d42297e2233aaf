//! `lattice-agent maps`: the kernel tables, decoded by resource name.

use std::{collections::HashMap, path::Path};

use serde_json::{json, Value};

use super::SettingsArgs;
use crate::{
    config,
    dataplane::{self, compile::key_of},
    resolve, state,
};

/// Names of the keys the kernel tables use, from the document that made them.
#[derive(Default)]
struct Names {
    vpcs: HashMap<u32, String>,
    services: HashMap<u32, String>,
    target_groups: HashMap<u32, String>,
}

impl Names {
    fn from_config(
        file: &Path,
        state_dir: Option<&Path>,
        settings: &SettingsArgs,
    ) -> anyhow::Result<Names> {
        let settings = settings.to_settings()?;
        let config = config::load_file(file)?;
        let mut vips = match state_dir {
            Some(dir) => resolve::VipAllocations::load(&state::StateDir::open(dir)?)?,
            None => resolve::VipAllocations::default(),
        };
        let resolved = resolve::resolve(&config, &settings, &mut vips)?;
        Ok(Names {
            vpcs: resolved
                .vpcs
                .iter()
                .map(|v| (key_of(&v.id), v.name.clone()))
                .collect(),
            services: resolved
                .services
                .iter()
                .map(|s| (key_of(&s.id), s.name.clone()))
                .collect(),
            target_groups: resolved
                .target_groups
                .iter()
                .map(|g| (key_of(&g.id), g.name.clone()))
                .collect(),
        })
    }

    fn name(map: &HashMap<u32, String>, key: u32) -> String {
        map.get(&key)
            .cloned()
            .unwrap_or_else(|| format!("#{key:08x}"))
    }
}

/// Prints the tables pinned under `bpffs_root`; with `config`, keys become names.
pub fn maps(
    bpffs_root: &Path,
    config: Option<&Path>,
    state_dir: Option<&Path>,
    settings: &SettingsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let names = match config {
        Some(file) => Names::from_config(file, state_dir, settings)?,
        None => Names::default(),
    };
    let t = dataplane::inspect(bpffs_root)?;
    let flows = dataplane::count_flows(bpffs_root)?;
    let vpc = |k: u32| Names::name(&names.vpcs, k);
    let service = |k: u32| Names::name(&names.services, k);
    let group = |k: u32| Names::name(&names.target_groups, k);
    let backend_label = |id: u32| {
        t.backends
            .iter()
            .find(|b| b.id == id)
            .map(|b| format!("{}:{}", b.addr, b.port))
            .unwrap_or_else(|| format!("#{id}"))
    };

    let value = json!({
        "interfaces": t.interfaces.iter().map(|i| json!({
            "ifindex": i.ifindex, "vpc": vpc(i.vpc), "snatAddr": i.snat_addr,
            "packets": i.packets, "bytes": i.bytes,
        })).collect::<Vec<_>>(),
        "listeners": t.listeners.iter().map(|l| json!({
            "service": service(l.service), "vip": l.vip, "port": l.port, "index": l.index,
            "bank": l.bank,
            "slots": l.slots.iter().map(|(id, n)| json!({"backend": backend_label(*id), "slots": n})).collect::<Vec<_>>(),
            "traffic": l.traffic,
        })).collect::<Vec<_>>(),
        "backends": t.backends.iter().map(|b| json!({
            "id": b.id, "targetGroup": group(b.target_group), "vpc": vpc(b.vpc),
            "target": format!("{}:{}", b.addr, b.port), "ifindex": b.ifindex, "traffic": b.traffic,
        })).collect::<Vec<_>>(),
        "access": t.access.iter().map(|a| json!({
            "vpc": vpc(a.vpc), "service": service(a.service),
            "cidr": a.cidr.clone().unwrap_or_else(|| "(any)".into()), "allowed": a.allowed,
        })).collect::<Vec<_>>(),
        "refusals": t.refusals.iter().map(|r| json!({
            "vpc": vpc(r.vpc), "reason": r.reason, "packets": r.packets,
        })).collect::<Vec<_>>(),
        "hostSites": t.host_sites.iter().map(|h| json!({
            "vpc": vpc(h.vpc),
            "vip": h.vip, "port": h.port, "proxyPort": h.proxy_port,
        })).collect::<Vec<_>>(),
        "flows": flows,
        "sockmap": t.sockmap,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&value));
    }
    Ok(())
}

/// Each table as `name:` and one line per row of `key=value` pairs.
fn render(value: &Value) -> String {
    let mut out = String::new();
    for (table, rows) in value.as_object().into_iter().flatten() {
        match rows {
            Value::Array(rows) => {
                out.push_str(&format!("{table} ({}):\n", rows.len()));
                for row in rows {
                    let fields: Vec<String> = row
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| format!("{k}={}", compact(v)))
                        .collect();
                    out.push_str(&format!("  {}\n", fields.join("  ")));
                }
            }
            Value::Object(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", compact(v)))
                    .collect();
                out.push_str(&format!("{table}:\n  {}\n", fields.join("  ")));
            }
            other => out.push_str(&format!("{table}: {}\n", compact(other))),
        }
    }
    out
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
