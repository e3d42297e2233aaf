//! Default DNS names in Lattice's shape:
//! `<service-name>-<17 hex of the id>.<7 hex>.vpc-lattice-svcs.<region>.<suffix>`, where
//! Lattice's suffix is `on.aws` and lattice's default is `on.lattice`.

use super::ids::digest_hex;

/// The label between the service's own label and the region.
pub const SERVICE_DOMAIN_LABEL: &str = "vpc-lattice-svcs";

/// The 7-hex "partition id" label of an account's service names (Lattice derives it
/// per account; lattice hashes the account id).
pub fn partition_label(account: &str) -> String {
    digest_hex(&["dns-partition", account], 7)
}

/// The domain every default name of `region` lies in: `vpc-lattice-svcs.<region>.<suffix>`.
pub fn service_domain(region: &str, suffix: &str) -> String {
    format!("{SERVICE_DOMAIN_LABEL}.{region}.{suffix}")
}

/// The default DNS name of service `name` with id `service_id` (`svc-...`).
pub fn default_dns_name(
    name: &str,
    service_id: &str,
    account: &str,
    region: &str,
    suffix: &str,
) -> String {
    let hex = service_id.strip_prefix("svc-").unwrap_or(service_id);
    format!(
        "{name}-{hex}.{}.{}",
        partition_label(account),
        service_domain(region, suffix)
    )
}

/// Whether `label` is a DNS label of lowercase letters, digits and inner hyphens.
pub(crate) fn is_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Whether `name` is a dot-separated list of such labels.
pub(crate) fn is_domain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_label)
}
