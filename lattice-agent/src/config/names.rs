//! Shape rules for names and strings, as Lattice (and IAM, EC2, DNS, HTTP) define them.
//! Each check returns the reason a value is refused, phrased to follow the value.

/// Lattice's resource-name rule: a-z, 0-9 and hyphens; no hyphen first, last or twice in
/// a row; a length range; and a reserved prefix (the id prefix of the kind).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameRule {
    pub what: &'static str,
    pub min: usize,
    pub max: usize,
    pub reserved_prefix: Option<&'static str>,
}

/// CreateService: 3-40, `(?!svc-)(?![-])(?!.*[-]$)(?!.*[-]{2})[a-z0-9-]+`.
pub(crate) const SERVICE: NameRule = NameRule {
    what: "service name",
    min: 3,
    max: 40,
    reserved_prefix: Some("svc-"),
};
/// CreateServiceNetwork: 3-63, not `servicenetwork-`.
pub(crate) const SERVICE_NETWORK: NameRule = NameRule {
    what: "service network name",
    min: 3,
    max: 63,
    reserved_prefix: Some("servicenetwork-"),
};
/// CreateTargetGroup: 3-128, not `tg-`.
pub(crate) const TARGET_GROUP: NameRule = NameRule {
    what: "target group name",
    min: 3,
    max: 128,
    reserved_prefix: Some("tg-"),
};
/// CreateListener: 3-63, not `listener-`. lattice accepts 2 characters: the contract
/// document (config-contract.yaml) names a listener `pg`, and it must validate.
pub(crate) const LISTENER: NameRule = NameRule {
    what: "listener name",
    min: 2,
    max: 63,
    reserved_prefix: Some("listener-"),
};
/// CreateRule: 3-63, not `rule-`.
pub(crate) const RULE: NameRule = NameRule {
    what: "rule name",
    min: 3,
    max: 63,
    reserved_prefix: Some("rule-"),
};
/// Vpcs and resource shares have no Lattice name rule (EC2 and RAM names are free
/// tags); lattice applies Lattice's character set so names fit ids, ARNs and DNS.
pub(crate) const VPC: NameRule = NameRule {
    what: "vpc name",
    min: 3,
    max: 63,
    reserved_prefix: None,
};
pub(crate) const RESOURCE_SHARE: NameRule = NameRule {
    what: "resource share name",
    min: 3,
    max: 63,
    reserved_prefix: None,
};

pub(crate) fn check_name(rule: &NameRule, name: &str) -> Result<(), String> {
    let what = rule.what;
    let len = name.chars().count();
    if len < rule.min || len > rule.max {
        return Err(format!(
            "{name:?} is not a valid {what}: must be {}-{} characters long (is {len})",
            rule.min, rule.max
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{name:?} is not a valid {what}: the valid characters are a-z, 0-9 and hyphens (-), not {bad:?}"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "{name:?} is not a valid {what}: a hyphen can't be the first or last character"
        ));
    }
    if name.contains("--") {
        return Err(format!(
            "{name:?} is not a valid {what}: a hyphen can't follow another hyphen"
        ));
    }
    if let Some(prefix) = rule.reserved_prefix {
        if name.starts_with(prefix) {
            return Err(format!(
                "{name:?} is not a valid {what}: it can't begin with {prefix:?} (reserved for ids)"
            ));
        }
    }
    Ok(())
}

/// Account ids: exactly 12 digits.
pub(crate) fn check_account_id(id: &str) -> Result<(), String> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("{id:?} is not an account id (12 digits)"))
    }
}

/// IAM role and user names: 1-64 characters of `[A-Za-z0-9+=,.@_-]`.
pub(crate) fn check_principal_name(name: &str) -> Result<(), String> {
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

/// IAM access key ids: 16-128 word characters.
pub(crate) fn check_access_key_id(id: &str) -> Result<(), String> {
    let len = id.len();
    if !(16..=128).contains(&len) || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "{id:?} is not a valid access key id: 16-128 letters, digits or underscores"
        ));
    }
    Ok(())
}

/// A URI with a scheme, as a certificate's URI SAN (`spiffe://...`).
pub(crate) fn check_uri(uri: &str) -> Result<(), String> {
    let scheme_ok = uri.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    if !scheme_ok || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{uri:?} is not a URI (e.g. spiffe://lattice/account/111111111111/role/web)"
        ));
    }
    Ok(())
}

/// An IAM tag: key 1-128 and value 0-256 characters, of letters, digits, spaces and
/// `_ . : / = + - @`; keys starting with `aws:` are reserved.
pub(crate) fn check_tag(key: &str, value: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c);
    let key_len = key.chars().count();
    if !(1..=128).contains(&key_len) || !key.chars().all(allowed) {
        return Err(format!(
            "tag key {key:?} must be 1-128 letters, digits, spaces or _.:/=+-@"
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!("tag key {key:?}: the prefix aws: is reserved"));
    }
    if value.chars().count() > 256 || !value.chars().all(allowed) {
        return Err(format!(
            "tag value {value:?} must be 0-256 letters, digits, spaces or _.:/=+-@"
        ));
    }
    Ok(())
}

/// A DNS host name: 3-255 characters (Lattice's customDomainName), dot-separated labels
/// of 1-63 letters, digits and inner hyphens, at least two labels, no wildcard.
pub(crate) fn check_domain_name(name: &str) -> Result<(), String> {
    let len = name.len();
    if !(3..=255).contains(&len) {
        return Err(format!(
            "{name:?} is not a valid domain name: must be 3-255 characters long (is {len})"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "{name:?} is not a valid domain name: needs at least two labels (e.g. orders.example.internal)"
        ));
    }
    for label in labels {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{name:?} is not a valid domain name: label {label:?} must be 1-63 letters, digits or inner hyphens"
            ));
        }
    }
    Ok(())
}

/// Characters Lattice allows in path matches and health-check paths.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "@:%_+.~#?&/=-".contains(c)
}

/// PathMatchType exact/prefix: 1-200 characters, `/[a-zA-Z0-9@:%_+.~#?&/=-]*`.
pub(crate) fn check_match_path(path: &str) -> Result<(), String> {
    let len = path.chars().count();
    if !(1..=200).contains(&len) {
        return Err(format!("{path:?} must be 1-200 characters long (is {len})"));
    }
    check_path_shape(path)
}

/// Health-check path: up to 2048 characters of the same shape.
pub(crate) fn check_health_check_path(path: &str) -> Result<(), String> {
    let len = path.chars().count();
    if len > 2048 {
        return Err(format!(
            "{path:?} must be at most 2048 characters long (is {len})"
        ));
    }
    check_path_shape(path)
}

fn check_path_shape(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must begin with /"));
    }
    if let Some(bad) = path.chars().find(|c| !is_path_char(*c)) {
        return Err(format!(
            "{path:?} contains {bad:?}; the valid characters are a-z, A-Z, 0-9 and @:%_+.~#?&/=-"
        ));
    }
    Ok(())
}

/// HeaderMatch name: 1-100 characters, an HTTP token (RFC 9110 `tchar`).
pub(crate) fn check_header_name(name: &str) -> Result<(), String> {
    let len = name.len();
    if !(1..=100).contains(&len) {
        return Err(format!("{name:?} must be 1-100 characters long (is {len})"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c)))
    {
        return Err(format!(
            "{name:?} is not an HTTP header name: {bad:?} is not allowed"
        ));
    }
    Ok(())
}

/// HeaderMatchType exact/prefix/contains: 1-200 visible characters.
pub(crate) fn check_header_value(value: &str) -> Result<(), String> {
    let len = value.chars().count();
    if !(1..=200).contains(&len) {
        return Err(format!(
            "{value:?} must be 1-200 characters long (is {len})"
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(format!("{value:?} contains a control character"));
    }
    Ok(())
}

/// A network namespace name (a file under /run/netns).
pub(crate) fn check_netns(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?} is not a network namespace name (1-255 characters, no '/', no spaces)"
        ));
    }
    Ok(())
}

/// A cgroup path relative to the cgroup2 mount, e.g. `lattice/web`.
pub(crate) fn check_cgroup(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} must be relative to the cgroup2 mount (e.g. lattice/web)"
        ));
    }
    let bad_component = path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..");
    if path.is_empty() || bad_component || path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{path:?} is not a cgroup path (non-empty components, no '.' or '..', no spaces)"
        ));
    }
    Ok(())
}

/// A relative or absolute file path named by the document.
pub(crate) fn check_file_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL character"));
    }
    Ok(())
}

/// EC2 instance ids: `i-` and 8 or 17 hex digits.
pub(crate) fn check_instance_id(id: &str) -> Result<(), String> {
    let ok = id.strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not an instance id (i- and 8 or 17 hex digits)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lattice_name_rule() {
        assert!(check_name(&SERVICE, "orders").is_ok());
        assert!(check_name(&SERVICE, "a1-b2").is_ok());
        assert!(check_name(&SERVICE, "ab").is_err());
        assert!(check_name(&SERVICE, &"a".repeat(41)).is_err());
        assert!(check_name(&SERVICE, &"a".repeat(40)).is_ok());
        assert!(check_name(&TARGET_GROUP, &"a".repeat(128)).is_ok());
        assert!(check_name(&SERVICE, "Orders").is_err());
        assert!(check_name(&SERVICE, "-orders").is_err());
        assert!(check_name(&SERVICE, "orders-").is_err());
        assert!(check_name(&SERVICE, "or--ders").is_err());
        assert!(check_name(&SERVICE, "svc-orders").is_err());
        assert!(check_name(&TARGET_GROUP, "svc-orders").is_ok());
        assert!(check_name(&LISTENER, "listener-1").is_err());
        assert!(check_name(&LISTENER, "pg").is_ok());
        assert!(check_name(&LISTENER, "p").is_err());
    }

    #[test]
    fn other_shapes() {
        assert!(check_account_id("111111111111").is_ok());
        assert!(check_account_id("11111111111").is_err());
        assert!(check_domain_name("orders.shop.internal").is_ok());
        assert!(check_domain_name("orders").is_err());
        assert!(check_domain_name("*.shop.internal").is_err());
        assert!(check_match_path("/api/").is_ok());
        assert!(check_match_path("api").is_err());
        assert!(check_match_path("/a b").is_err());
        assert!(check_header_name("x-canary").is_ok());
        assert!(check_header_name("x canary").is_err());
        assert!(check_uri("spiffe://lattice/a").is_ok());
        assert!(check_uri("not a uri").is_err());
        assert!(check_cgroup("lattice/web").is_ok());
        assert!(check_cgroup("/lattice/web").is_err());
        assert!(check_cgroup("lattice/../x").is_err());
        assert!(check_instance_id("i-0123456789abcdef0").is_ok());
        assert!(check_instance_id("i-xyz").is_err());
    }
}
