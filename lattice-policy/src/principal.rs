//! `Principal` and `NotPrincipal`: who a statement is about.
//!
//! Grammar: `"*"`, or `{"AWS": p | [p, ...]}` where `p` is `*`, a 12-digit account id,
//! `arn:lattice:iam::<account>:root`, or `arn:lattice:iam::<account>:role/<name>` /
//! `user/<name>`. IAM allows no other wildcard: a `*` inside a name or ARN is refused.
//!
//! Matching, per IAM's Principal and NotPrincipal references:
//! - `"*"` and `{"AWS": "*"}` are the same and cover every caller, anonymous included;
//!   nothing else covers an anonymous caller.
//! - In `Principal`, an account (id or root ARN) covers every principal of the account.
//! - In `NotPrincipal`, an account covers only the account itself, not its roles and
//!   users: IAM checks the account and the principal as separate identities, which is
//!   why its example `NotPrincipal: [user/Bob, :root]` with `Deny` still denies Alice of
//!   Bob's account. A listed role or user ARN is excepted.

use serde_json::Value;

use crate::{
    error::{join, Problems},
    evaluate::Caller,
    parse::{kind_of, strings},
};

/// The partition of every ARN lattice writes and accepts.
pub(crate) const PARTITION: &str = "lattice";

#[derive(Debug, Clone)]
enum Entry {
    /// `*`.
    Any,
    /// An account id, from `123456789012` or `arn:lattice:iam::123456789012:root`.
    Account(Box<str>),
    /// A role or user ARN, compared whole.
    Arn(Box<str>),
}

/// The principals of one statement.
#[derive(Debug, Clone)]
pub(crate) struct Principals {
    /// `NotPrincipal`.
    negated: bool,
    entries: Box<[Entry]>,
}

impl Principals {
    /// Whether the statement is about `caller`.
    pub(crate) fn cover(&self, caller: &Caller<'_>) -> bool {
        if self.negated {
            !self.entries.iter().any(|e| excepted(e, caller))
        } else {
            self.entries.iter().any(|e| granted(e, caller))
        }
    }
}

fn granted(entry: &Entry, caller: &Caller<'_>) -> bool {
    match (entry, caller) {
        (Entry::Any, _) => true,
        (_, Caller::Anonymous) => false,
        (Entry::Account(id), Caller::Principal { account, .. }) => **id == **account,
        (Entry::Arn(listed), Caller::Principal { arn, .. }) => **listed == **arn,
    }
}

fn excepted(entry: &Entry, caller: &Caller<'_>) -> bool {
    match (entry, caller) {
        (Entry::Any, _) => true,
        (_, Caller::Anonymous) => false,
        (Entry::Account(id), Caller::Principal { arn, .. }) => is_root_of(arn, id),
        (Entry::Arn(listed), Caller::Principal { arn, .. }) => **listed == **arn,
    }
}

/// Whether `arn` is `arn:lattice:iam::<account>:root`.
fn is_root_of(arn: &str, account: &str) -> bool {
    arn.strip_prefix("arn:")
        .and_then(|rest| rest.strip_prefix(PARTITION))
        .and_then(|rest| rest.strip_prefix(":iam::"))
        .and_then(|rest| rest.strip_prefix(account))
        .is_some_and(|rest| rest == ":root")
}

/// Reads `Principal` (`negated` false) or `NotPrincipal` at `path`. Every named
/// principal (not `*`) is added to `named` with its path.
pub(crate) fn parse(
    value: &Value,
    path: &str,
    negated: bool,
    problems: &mut Problems,
    named: &mut Vec<(String, Box<str>)>,
) -> Option<Principals> {
    let mut entries = Vec::new();
    let before = named.len();
    match value {
        Value::String(s) if s == "*" => entries.push(Entry::Any),
        Value::Object(map) => {
            if map.is_empty() {
                problems.push(path, "must name principals ({\"AWS\": [...]}) or be \"*\"");
            }
            for (key, ids) in map {
                let key_path = join(path, key);
                if key != "AWS" {
                    problems.push(
                        &key_path,
                        "unsupported principal type (auth policies name principals under \"AWS\")",
                    );
                    continue;
                }
                for (id_path, id) in strings(ids, &key_path, problems) {
                    match principal_id(id) {
                        Ok(entry) => {
                            if !matches!(entry, Entry::Any) {
                                named.push((id_path, id.into()));
                            }
                            entries.push(entry);
                        }
                        Err(message) => problems.push(&id_path, message),
                    }
                }
            }
        }
        other => problems.push(
            path,
            format!(
                "must be \"*\" or an object like {{\"AWS\": [ARN, ...]}}, not {}",
                match other {
                    Value::String(s) => format!("{s:?}"),
                    other => kind_of(other).to_owned(),
                }
            ),
        ),
    }
    if entries.is_empty() {
        named.truncate(before);
        return None;
    }
    Some(Principals {
        negated,
        entries: entries.into(),
    })
}

/// One principal string, or why it is not one.
fn principal_id(id: &str) -> Result<Entry, String> {
    if id == "*" {
        return Ok(Entry::Any);
    }
    if check_account_id(id).is_ok() {
        return Ok(Entry::Account(id.into()));
    }
    let shape = "a principal is *, an account id, or arn:lattice:iam::<account>:root | role/<name> | user/<name>";
    let Some(rest) = id.strip_prefix("arn:") else {
        return Err(format!("{id:?} is not a principal: {shape}"));
    };
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    let [partition, service, region, account, resource] = parts[..] else {
        return Err(format!("{id:?} is not a principal ARN: {shape}"));
    };
    if partition != PARTITION || service != "iam" || !region.is_empty() {
        return Err(format!(
            "{id:?} is not a principal ARN: expected arn:{PARTITION}:iam::<account>:..."
        ));
    }
    check_account_id(account).map_err(|reason| format!("{id:?}: {reason}"))?;
    if resource == "root" {
        return Ok(Entry::Account(account.into()));
    }
    match resource.split_once('/') {
        Some(("role" | "user", name)) => {
            check_principal_name(name).map_err(|reason| format!("{id:?}: {reason}"))?;
            Ok(Entry::Arn(id.into()))
        }
        _ => Err(format!("{id:?} is not a principal ARN: {shape}")),
    }
}

/// Account ids: 12 digits.
fn check_account_id(id: &str) -> Result<(), String> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("{id:?} is not an account id (12 digits)"))
    }
}

/// IAM role and user names: 1-64 characters of `[A-Za-z0-9+=,.@_-]` (so no wildcard).
fn check_principal_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !(1..=64).contains(&len) {
        return Err(format!(
            "{name:?} is not a valid principal name: must be 1-64 characters long (is {len})"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c)))
    {
        return Err(format!(
            "{name:?} is not a valid principal name: the valid characters are letters, digits and +=,.@_-, not {bad:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_arns() {
        assert!(is_root_of(
            "arn:lattice:iam::111111111111:root",
            "111111111111"
        ));
        assert!(!is_root_of(
            "arn:lattice:iam::111111111111:role/web",
            "111111111111"
        ));
        assert!(!is_root_of(
            "arn:aws:iam::111111111111:root",
            "111111111111"
        ));
        assert!(!is_root_of(
            "arn:lattice:iam::1111111111112:root",
            "111111111111"
        ));
    }

    #[test]
    fn ids() {
        assert!(matches!(principal_id("*"), Ok(Entry::Any)));
        assert!(matches!(
            principal_id("111111111111"),
            Ok(Entry::Account(_))
        ));
        assert!(
            matches!(principal_id("arn:lattice:iam::111111111111:root"), Ok(Entry::Account(a)) if &*a == "111111111111")
        );
        assert!(matches!(
            principal_id("arn:lattice:iam::111111111111:user/a.b@c"),
            Ok(Entry::Arn(_))
        ));
        for bad in [
            "arn:lattice:iam::111111111111:role/*",
            "arn:lattice:iam::111111111111:role/",
            "arn:lattice:iam::111111111111:group/admins",
            "arn:lattice:iam::11111111111:role/web",
            "arn:lattice:iam:local:111111111111:role/web",
            "arn:lattice:sts::111111111111:role/web",
            "arn:aws:iam::111111111111:role/web",
            "arn:lattice:iam::111111111111",
            "web",
            "11111111111*",
        ] {
            assert!(principal_id(bad).is_err(), "{bad}");
        }
    }
}
