//! `validate` and `show`: the offline look at a desired-state document.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::SettingsArgs;
use crate::{config, resolve, state};

/// Parses and validates the document; prints a one-line summary when it is valid.
pub fn validate(file: &Path) -> anyhow::Result<()> {
    let config = config::load_file(file)?;
    println!(
        "{}: valid ({} accounts, {} vpcs, {} service networks, {} services, {} target groups)",
        file.display(),
        config.accounts().len(),
        config.vpcs().len(),
        config.service_networks().len(),
        config.services().len(),
        config.target_groups().len(),
    );
    Ok(())
}

/// Prints the resolved model as tables, or as JSON with `--json`. With `--state-dir`
/// the VIPs already allocated there are used (and nothing is written).
pub fn show(
    file: &Path,
    json: bool,
    state_dir: Option<&Path>,
    settings: &SettingsArgs,
) -> anyhow::Result<()> {
    let settings = settings.to_settings()?;
    let config = config::load_file(file)?;
    let mut vips = match state_dir {
        Some(dir) => {
            let dir = state::StateDir::open(dir)
                .with_context(|| format!("opening state directory {}", dir.display()))?;
            resolve::VipAllocations::load(&dir)?
        }
        None => resolve::VipAllocations::default(),
    };
    let resolved = resolve::resolve(&config, &settings, &mut vips)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&resolved)?);
    } else {
        print!("{}", tables(&resolved));
    }
    Ok(())
}

/// The resolved model as aligned tables, one per resource kind.
fn tables(r: &resolve::Resolved) -> String {
    let mut out = String::new();
    let mut t = Table::new(&[
        "SERVICE NETWORK",
        "ID",
        "ACCOUNT",
        "AUTH",
        "VPCS",
        "SERVICES",
    ]);
    for n in &r.service_networks {
        t.row(vec![
            n.name.clone(),
            n.id.clone(),
            n.account.clone(),
            label(&n.auth_type),
            n.vpcs.join(","),
            n.services.join(","),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');

    let mut t = Table::new(&["SERVICE", "ID", "VIP", "DNS NAME", "CUSTOM DOMAIN", "AUTH"]);
    for s in &r.services {
        t.row(vec![
            s.name.clone(),
            s.id.clone(),
            s.vip.to_string(),
            s.dns_name.clone(),
            s.custom_domain_name.clone().unwrap_or_else(|| "-".into()),
            label(&s.auth_type),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');

    let mut t = Table::new(&[
        "SERVICE", "LISTENER", "ID", "PROTOCOL", "PORT", "RULE", "PRIORITY", "ACTION",
    ]);
    for s in &r.services {
        for l in &s.listeners {
            t.row(vec![
                s.name.clone(),
                l.name.clone(),
                l.id.clone(),
                label(&l.protocol),
                l.port.to_string(),
                "(default)".into(),
                "-".into(),
                l.default_action.clone(),
            ]);
            for rule in &l.rules {
                t.row(vec![
                    String::new(),
                    String::new(),
                    rule.id.clone(),
                    String::new(),
                    String::new(),
                    rule.name.clone(),
                    rule.priority.to_string(),
                    rule.action.clone(),
                ]);
            }
        }
    }
    out.push_str(&t.render());
    out.push('\n');

    let mut t = Table::new(&[
        "TARGET GROUP",
        "ID",
        "VPC",
        "TYPE",
        "PROTOCOL",
        "PORT",
        "TARGETS",
    ]);
    for g in &r.target_groups {
        let protocol = match &g.protocol_version {
            Some(v) => format!("{}/{}", label(&g.protocol), label(v)),
            None => label(&g.protocol),
        };
        t.row(vec![
            g.name.clone(),
            g.id.clone(),
            g.vpc.clone(),
            label(&g.kind),
            protocol,
            g.port.to_string(),
            g.targets.to_string(),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');

    let mut t = Table::new(&["VPC", "ACCOUNT", "CIDR", "SERVICE NETWORK", "ARN"]);
    for v in &r.vpcs {
        t.row(vec![
            v.name.clone(),
            v.account.clone(),
            v.cidr.to_string(),
            v.service_network.clone().unwrap_or_else(|| "-".into()),
            v.arn.clone(),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');

    let mut t = Table::new(&["ARN"]);
    for n in &r.service_networks {
        t.row(vec![n.arn.clone()]);
    }
    for s in &r.services {
        t.row(vec![s.arn.clone()]);
    }
    for g in &r.target_groups {
        t.row(vec![g.arn.clone()]);
    }
    out.push_str(&t.render());
    out
}

/// An enum's spelling in the document (its serde name), e.g. `AWS_IAM`.
fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// A plain-text table with columns as wide as their widest cell.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide-cell".into(), "x".into()]);
        assert_eq!(t.render(), "A          LONGER\nwide-cell  x\n");
    }
}
