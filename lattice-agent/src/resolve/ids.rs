//! Stable resource ids, shaped as Lattice's (`svc-` + 17 characters of `[0-9a-z]`).
//!
//! An id is the first 17 hex digits of SHA-256 over the kind, the owning account, the
//! parent's id and the name, so every agent computes the same id for the same resource
//! without coordination, and an id changes only when its resource is a different one
//! (renamed, or moved to another account).

use sha2::{Digest, Sha256};

/// Hex digits of an id after its prefix (Lattice: `[0-9a-z]{17}`).
pub const ID_HEX_LEN: usize = 17;

/// The first `len` hex digits of SHA-256 over `parts`, each part length-prefixed so no
/// two part lists hash alike.
pub(crate) fn digest_hex(parts: &[&str], len: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"lattice-id/v1");
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let mut hex = hex::encode(hasher.finalize());
    hex.truncate(len);
    hex
}

fn id(prefix: &str, kind: &str, account: &str, parent: &str, name: &str) -> String {
    format!(
        "{prefix}{}",
        digest_hex(&[kind, account, parent, name], ID_HEX_LEN)
    )
}

/// `svc-` + 17 hex.
pub fn service_id(account: &str, name: &str) -> String {
    id("svc-", "service", account, "", name)
}

/// `sn-` + 17 hex.
pub fn service_network_id(account: &str, name: &str) -> String {
    id("sn-", "servicenetwork", account, "", name)
}

/// `tg-` + 17 hex.
pub fn target_group_id(account: &str, name: &str) -> String {
    id("tg-", "targetgroup", account, "", name)
}

/// `vpc-` + 17 hex (EC2's long vpc id shape).
pub fn vpc_id(account: &str, name: &str) -> String {
    id("vpc-", "vpc", account, "", name)
}

/// `listener-` + 17 hex; the parent is the service id.
pub fn listener_id(account: &str, service_id: &str, name: &str) -> String {
    id("listener-", "listener", account, service_id, name)
}

/// `rule-` + 17 hex; the parent is the listener id.
pub fn rule_id(account: &str, listener_id: &str, name: &str) -> String {
    id("rule-", "rule", account, listener_id, name)
}

/// `sn-`, `svc-`, ... followed by exactly 17 lowercase hex digits.
pub fn has_id_shape(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == ID_HEX_LEN
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
