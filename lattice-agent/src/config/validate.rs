//! The pass from the raw document to the validated [`Config`]. It never stops at the
//! first problem: every resource and field is checked, every problem is recorded with
//! its resource and field, and the config is built only when the list is empty.
//!
//! References are looked up by the names as written (first declaration wins), so a
//! resource with, say, a badly formed name still resolves for the others and produces
//! one error, not a cascade.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::Ipv4Addr,
    num::NonZeroU16,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::Ipv4Net;

use super::{
    error::{ConfigErrors, FieldError, ResourceKind, ResourceName},
    model::*,
    names::{self, NameRule},
    policy, raw,
    raw::Scalar,
    Config,
};

/// Lattice quota: listeners per service.
pub const MAX_LISTENERS_PER_SERVICE: usize = 2;
/// Lattice quota: rules per listener.
pub const MAX_RULES_PER_LISTENER: usize = 10;
/// Lattice API: target groups per forward action.
pub const MAX_TARGET_GROUPS_PER_FORWARD: usize = 10;
/// Lattice API: header matches per rule.
pub const MAX_HEADER_MATCHES: usize = 5;
/// Lattice quota: service associations per service network.
pub const MAX_SERVICE_ASSOCIATIONS: usize = 500;
/// Lattice API: rule priority.
pub(crate) const PRIORITY: RangeInclusive<i64> = 1..=2000;
/// Lattice API: forward weight.
pub(crate) const WEIGHT: RangeInclusive<i64> = 0..=999;
/// Lattice API: weight of a lone target group when none is given.
pub(crate) const DEFAULT_WEIGHT: u16 = 100;
/// EC2: allowed VPC CIDR block sizes.
pub(crate) const VPC_PREFIX: RangeInclusive<u8> = 16..=28;

/// Collects the errors of one document.
struct Errors<'f> {
    file: &'f Path,
    list: Vec<FieldError>,
}

impl<'f> Errors<'f> {
    fn scope(&mut self, kind: ResourceKind, name: ResourceName) -> Scope<'_, 'f> {
        Scope {
            errors: self,
            kind,
            name,
        }
    }
}

/// Errors of one resource.
struct Scope<'e, 'f> {
    errors: &'e mut Errors<'f>,
    kind: ResourceKind,
    name: ResourceName,
}

impl Scope<'_, '_> {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(field.into(), message.into(), false);
    }

    /// An error of a field past one of Lattice's quotas.
    fn quota_err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(field.into(), message.into(), true);
    }

    fn push(&mut self, field: String, message: String, quota: bool) {
        self.errors.list.push(FieldError {
            file: self.errors.file.to_owned(),
            kind: self.kind,
            name: self.name.clone(),
            field,
            message,
            quota,
        });
    }

    /// Records `result`'s error, if any; true when it passed.
    fn check(&mut self, field: &str, result: Result<(), String>) -> bool {
        match result {
            Ok(()) => true,
            Err(message) => {
                self.err(field, message);
                false
            }
        }
    }

    fn required<'v, T>(&mut self, value: &'v Option<T>, field: &str) -> Option<&'v T> {
        if value.is_none() {
            self.err(field, "is required");
        }
        value.as_ref()
    }

    fn in_range(&mut self, value: i64, range: RangeInclusive<i64>, field: &str) -> Option<i64> {
        if range.contains(&value) {
            Some(value)
        } else {
            self.err(
                field,
                format!("{value} is out of range {}-{}", range.start(), range.end()),
            );
            None
        }
    }

    fn port(&mut self, value: i64, field: &str) -> Option<Port> {
        let port = self.in_range(value, 1..=65535, field)?;
        let port = u16::try_from(port).ok().and_then(NonZeroU16::new)?;
        Some(Port::new(port))
    }

    fn name(&mut self, rule: &NameRule, value: &Option<Scalar>, field: &str) -> Option<Name> {
        let name = self.required(value, field)?.as_str();
        self.check(field, names::check_name(rule, name))
            .then(|| Name::new_unchecked(name))
    }

    /// A file path resolved against the document's folder.
    fn file(&mut self, base_dir: &Path, value: &Option<String>, field: &str) -> Option<PathBuf> {
        let path = self.required(value, field)?;
        self.check(field, names::check_file_path(path))
            .then(|| base_dir.join(path))
    }

    fn cidr(&mut self, text: &str, field: &str) -> Option<Ipv4Net> {
        let Ok(net) = text.parse::<Ipv4Net>() else {
            self.err(
                field,
                format!("{text:?} is not an IPv4 CIDR (e.g. 10.91.0.0/16)"),
            );
            return None;
        };
        if net.addr() != net.network() {
            self.err(
                field,
                format!("{net} has host bits set; the network is {}", net.trunc()),
            );
            return None;
        }
        Some(net)
    }
}

fn label(name: Option<&Scalar>, index: usize) -> ResourceName {
    match name {
        Some(name) if !name.as_str().is_empty() => ResourceName::Named(name.0.clone()),
        _ => ResourceName::Unnamed(index),
    }
}

fn name_of(value: &Option<Scalar>) -> Option<&str> {
    value.as_ref().map(Scalar::as_str)
}

/// First declaration of each name.
fn first_index<'d, T>(
    items: &'d [T],
    name: impl Fn(&'d T) -> Option<&'d str>,
) -> HashMap<&'d str, usize> {
    let mut index = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(name) = name(item) {
            index.entry(name).or_insert(i);
        }
    }
    index
}

/// Reports a duplicate when `i` is not the first resource with this name.
fn duplicate(s: &mut Scope<'_, '_>, index: &HashMap<&str, usize>, name: Option<&str>, i: usize) {
    if let Some(name) = name {
        if let Some(&first) = index.get(name) {
            if first != i {
                let list = s.kind.list_key();
                let kind = s.kind;
                s.err(
                    "name",
                    format!("duplicate {kind} name {name:?} (first declared as {list}[{first}]); names are unique per kind"),
                );
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shared {
    Network(usize),
    Service(usize),
    TargetGroup(usize),
    Vpc(usize),
}

/// What the raw document says, indexed for lookups.
struct Index<'d> {
    doc: &'d raw::Document,
    base_dir: &'d Path,
    accounts: HashMap<&'d str, usize>,
    vpcs: HashMap<&'d str, usize>,
    networks: HashMap<&'d str, usize>,
    services: HashMap<&'d str, usize>,
    target_groups: HashMap<&'d str, usize>,
    /// Cidr of each vpc, when it parses.
    vpc_cidr: Vec<Option<Ipv4Net>>,
    /// Vpc of each target group, when it resolves.
    tg_vpc: Vec<Option<usize>>,
    /// Protocol of each target group, when valid.
    tg_protocol: Vec<Option<TargetGroupProtocol>>,
    /// `(owner, resource, principals)` of every share.
    shares: Vec<(&'d str, Shared, Vec<&'d str>)>,
    directory: policy::Directory<'d>,
}

impl<'d> Index<'d> {
    fn new(doc: &'d raw::Document, base_dir: &'d Path) -> Self {
        let mut directory = policy::Directory::default();
        for account in &doc.accounts {
            let Some(id) = name_of(&account.id) else {
                continue;
            };
            let entry = directory.accounts.entry(id).or_default();
            for principal in &account.principals {
                if let (Some(name), Some(kind)) =
                    (name_of(&principal.name), principal.kind.as_deref())
                {
                    entry.insert((kind, name));
                }
            }
        }
        Self {
            doc,
            base_dir,
            accounts: first_index(&doc.accounts, |a| name_of(&a.id)),
            vpcs: first_index(&doc.vpcs, |v| name_of(&v.name)),
            networks: first_index(&doc.service_networks, |n| name_of(&n.name)),
            services: first_index(&doc.services, |s| name_of(&s.name)),
            target_groups: first_index(&doc.target_groups, |t| name_of(&t.name)),
            vpc_cidr: vec![None; doc.vpcs.len()],
            tg_vpc: vec![None; doc.target_groups.len()],
            tg_protocol: vec![None; doc.target_groups.len()],
            shares: Vec::new(),
            directory,
        }
    }

    fn vpc_account(&self, vpc: usize) -> Option<&'d str> {
        name_of(&self.doc.vpcs[vpc].account)
    }

    fn tg_account(&self, tg: usize) -> Option<&'d str> {
        self.tg_vpc[tg].and_then(|vpc| self.vpc_account(vpc))
    }

    fn shared(&self, resource: Shared, owner: &str, with: &str) -> bool {
        self.shares
            .iter()
            .any(|(o, r, principals)| *o == owner && *r == resource && principals.contains(&with))
    }

    /// Checks a reference to an account (`field` holds its id): shape and declared.
    fn account(
        &self,
        s: &mut Scope<'_, '_>,
        value: &Option<Scalar>,
        field: &str,
    ) -> Option<AccountId> {
        let id = s.required(value, field)?.as_str();
        if !s.check(field, names::check_account_id(id)) {
            return None;
        }
        if !self.accounts.contains_key(id) {
            s.err(field, format!("account {id} is not declared in accounts"));
            return None;
        }
        Some(AccountId::new_unchecked(id))
    }

    fn auth(
        &self,
        s: &mut Scope<'_, '_>,
        auth_type: &Option<String>,
        auth_policy: &Option<serde_json::Value>,
    ) -> Option<Auth> {
        let auth_type = match auth_type.as_deref() {
            None | Some("NONE") => AuthType::None,
            Some("AWS_IAM") => AuthType::AwsIam,
            Some(other) => {
                s.err(
                    "authType",
                    format!("{other:?} is not an auth type (NONE or AWS_IAM)"),
                );
                return None;
            }
        };
        match (auth_type, auth_policy) {
            (AuthType::None, None) => Some(Auth::None),
            (AuthType::None, Some(_)) => {
                s.err(
                    "authPolicy",
                    "is set but authType is NONE, so it would not be enforced; set authType: AWS_IAM or remove the policy",
                );
                None
            }
            (AuthType::AwsIam, None) => {
                s.err(
                    "authPolicy",
                    "is required when authType is AWS_IAM (without one every request is denied)",
                );
                None
            }
            (AuthType::AwsIam, Some(document)) => {
                let mut problems = Vec::new();
                let parsed = policy::check(document, "authPolicy", &self.directory, &mut problems);
                for (field, message) in problems {
                    s.err(field, message);
                }
                parsed.map(|parsed| Auth::AwsIam(AuthPolicy::new(document.clone(), parsed)))
            }
        }
    }
}

/// Validates `doc`; `source` names the file in errors, `base_dir` (absolute) anchors
/// relative file paths.
pub(crate) fn validate(
    doc: &raw::Document,
    source: &Path,
    base_dir: &Path,
) -> Result<Config, ConfigErrors> {
    let mut errors = Errors {
        file: source,
        list: Vec::new(),
    };
    let mut ix = Index::new(doc, base_dir);
    let accounts = accounts(&ix, &mut errors);
    let vpcs = vpcs(&mut ix, &mut errors);
    let resource_shares = resource_shares(&mut ix, &mut errors);
    let target_groups = target_groups(&mut ix, &mut errors);
    let services = services(&ix, &mut errors);
    let service_networks = service_networks(&ix, &mut errors);
    let access_log_subscriptions = access_log_subscriptions(&ix, &mut errors);

    let built = (|| {
        Some(Config {
            source: source.to_owned(),
            base_dir: base_dir.to_owned(),
            accounts: accounts.into_iter().collect::<Option<_>>()?,
            vpcs: vpcs.into_iter().collect::<Option<_>>()?,
            service_networks: service_networks.into_iter().collect::<Option<_>>()?,
            resource_shares: resource_shares.into_iter().collect::<Option<_>>()?,
            services: services.into_iter().collect::<Option<_>>()?,
            target_groups: target_groups.into_iter().collect::<Option<_>>()?,
            access_log_subscriptions: access_log_subscriptions
                .into_iter()
                .collect::<Option<_>>()?,
        })
    })();
    match built {
        Some(config) if errors.list.is_empty() => Ok(config),
        _ => {
            debug_assert!(
                !errors.list.is_empty(),
                "a resource failed without an error"
            );
            Err(ConfigErrors::new(errors.list))
        }
    }
}

fn accounts(ix: &Index<'_>, errors: &mut Errors<'_>) -> Vec<Option<Account>> {
    // Identities must map to exactly one principal across the whole document.
    let mut subjects: HashMap<&str, String> = HashMap::new();
    let mut keys: HashMap<&str, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, account) in ix.doc.accounts.iter().enumerate() {
        let mut s = errors.scope(ResourceKind::Account, label(account.id.as_ref(), i));
        let id = s.required(&account.id, "id").and_then(|id| {
            let id = id.as_str();
            if !s.check("id", names::check_account_id(id)) {
                return None;
            }
            match ix.accounts.get(id) {
                Some(&first) if first != i => {
                    s.err(
                        "id",
                        format!("duplicate account id {id} (first declared as accounts[{first}])"),
                    );
                    None
                }
                _ => Some(AccountId::new_unchecked(id)),
            }
        });
        let account_label = name_of(&account.id).unwrap_or("?");
        let mut principal_names: HashMap<&str, usize> = HashMap::new();
        let mut principals = Vec::new();
        for (p, principal) in account.principals.iter().enumerate() {
            let f = format!("principals[{p}]");
            let name = s.required(&principal.name, &format!("{f}.name")).and_then(|name| {
                let name = name.as_str();
                if !s.check(&format!("{f}.name"), names::check_principal_name(name)) {
                    return None;
                }
                if let Some(first) = principal_names.insert(name, p) {
                    s.err(
                        format!("{f}.name"),
                        format!("duplicate principal name {name:?} (first declared as principals[{first}])"),
                    );
                    return None;
                }
                Some(Name::new_unchecked(name))
            });
            let kind = match s
                .required(&principal.kind, &format!("{f}.type"))
                .map(String::as_str)
            {
                Some("role") => Some(PrincipalType::Role),
                Some("user") => Some(PrincipalType::User),
                Some(other) => {
                    s.err(
                        format!("{f}.type"),
                        format!("{other:?} is not a principal type (role or user)"),
                    );
                    None
                }
                None => None,
            };
            let who = format!(
                "{} {:?} of account {account_label}",
                principal.kind.as_deref().unwrap_or("principal"),
                name_of(&principal.name).unwrap_or("?")
            );
            let mut ok = true;
            for (m, subject) in principal.mtls_subjects.iter().enumerate() {
                let field = format!("{f}.mtlsSubjects[{m}]");
                if !s.check(&field, names::check_uri(subject)) {
                    ok = false;
                } else if let Some(other) = subjects.get(subject.as_str()) {
                    s.err(
                        field,
                        format!(
                            "{subject:?} already identifies {other}; a subject names one principal"
                        ),
                    );
                    ok = false;
                } else {
                    subjects.insert(subject, who.clone());
                }
            }
            let mut access_keys = Vec::new();
            for (k, key) in principal.access_keys.iter().enumerate() {
                let field = format!("{f}.accessKeys[{k}]");
                let key_id = s
                    .required(&key.access_key_id, &format!("{field}.accessKeyId"))
                    .and_then(|key_id| {
                        let key_id = key_id.as_str();
                        if !s.check(&format!("{field}.accessKeyId"), names::check_access_key_id(key_id)) {
                            return None;
                        }
                        if let Some(other) = keys.get(key_id) {
                            s.err(
                                format!("{field}.accessKeyId"),
                                format!("access key {key_id} already belongs to {other}; access key ids are unique"),
                            );
                            return None;
                        }
                        keys.insert(key_id, who.clone());
                        Some(key_id.to_owned())
                    });
                let secret_file = s.file(
                    ix.base_dir,
                    &key.secret_file,
                    &format!("{field}.secretFile"),
                );
                match (key_id, secret_file) {
                    (Some(access_key_id), Some(secret_file)) => access_keys.push(AccessKey {
                        access_key_id,
                        secret_file,
                    }),
                    _ => ok = false,
                }
            }
            let mut tags = BTreeMap::new();
            for (key, value) in &principal.tags {
                let field = format!("{f}.tags.{key}");
                match names::check_tag(key, value.as_str()) {
                    Ok(()) => {
                        tags.insert(key.clone(), value.as_str().to_owned());
                    }
                    Err(message) => {
                        s.err(field, message);
                        ok = false;
                    }
                }
            }
            principals.push(match (name, kind, ok) {
                (Some(name), Some(kind), true) => Some(Principal {
                    name,
                    kind,
                    mtls_subjects: principal.mtls_subjects.clone(),
                    access_keys,
                    tags,
                }),
                _ => None,
            });
        }
        // Outer None: a bad value (reported); inner None: no CA.
        let mtls_ca_file = match &account.mtls_ca_file {
            Some(_) => s
                .file(ix.base_dir, &account.mtls_ca_file, "mtlsCaFile")
                .map(Some),
            None => Some(None),
        };
        out.push((|| {
            Some(Account {
                id: id?,
                mtls_ca_file: mtls_ca_file?,
                principals: principals.into_iter().collect::<Option<_>>()?,
            })
        })());
    }
    out
}

fn vpcs(ix: &mut Index<'_>, errors: &mut Errors<'_>) -> Vec<Option<Vpc>> {
    let mut attached: HashMap<Attachment, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, vpc) in ix.doc.vpcs.iter().enumerate() {
        let mut s = errors.scope(ResourceKind::Vpc, label(vpc.name.as_ref(), i));
        let name = s.name(&names::VPC, &vpc.name, "name");
        duplicate(&mut s, &ix.vpcs, name_of(&vpc.name), i);
        let account = ix.account(&mut s, &vpc.account, "account");
        let cidr = s.required(&vpc.cidr, "cidr").and_then(|text| {
            let net = s.cidr(text, "cidr")?;
            ix.vpc_cidr[i] = Some(net);
            if !VPC_PREFIX.contains(&net.prefix_len()) {
                s.err(
                    "cidr",
                    format!(
                        "{net}: the prefix must be between /{} and /{} (as for EC2 VPCs)",
                        VPC_PREFIX.start(),
                        VPC_PREFIX.end()
                    ),
                );
                return None;
            }
            Some(net)
        });
        let vpc_label = name_of(&vpc.name).unwrap_or("?");
        let mut attachments = Vec::new();
        for (a, attachment) in vpc.attachments.iter().enumerate() {
            let field = format!("attachments[{a}]");
            let parsed = match (&attachment.netns, &attachment.cgroup) {
                (Some(netns), None) => s
                    .check(&format!("{field}.netns"), names::check_netns(netns))
                    .then(|| Attachment::Netns(netns.clone())),
                (None, Some(cgroup)) => s
                    .check(&format!("{field}.cgroup"), names::check_cgroup(cgroup))
                    .then(|| Attachment::Cgroup(PathBuf::from(cgroup))),
                _ => {
                    s.err(
                        field.clone(),
                        "an attachment is either { netns: NAME } or { cgroup: PATH }",
                    );
                    None
                }
            };
            match parsed {
                Some(parsed) => {
                    if let Some(other) = attached.get(&parsed) {
                        s.err(field, format!("already attached to vpc {other:?}; a namespace or cgroup belongs to one vpc"));
                        attachments.push(None);
                    } else {
                        attached.insert(parsed.clone(), vpc_label.to_owned());
                        attachments.push(Some(parsed));
                    }
                }
                None => attachments.push(None),
            }
        }
        out.push((|| {
            Some(Vpc {
                name: name?,
                account: account?,
                cidr: cidr?,
                attachments: attachments.into_iter().collect::<Option<_>>()?,
            })
        })());
    }
    out
}

fn resource_shares(ix: &mut Index<'_>, errors: &mut Errors<'_>) -> Vec<Option<ResourceShare>> {
    let doc = ix.doc;
    let names_index = first_index(&doc.resource_shares, |r| name_of(&r.name));
    let mut out = Vec::new();
    for (i, share) in doc.resource_shares.iter().enumerate() {
        let mut s = errors.scope(ResourceKind::ResourceShare, label(share.name.as_ref(), i));
        let name = s.name(&names::RESOURCE_SHARE, &share.name, "name");
        duplicate(&mut s, &names_index, name_of(&share.name), i);
        let owner = ix.account(&mut s, &share.owner, "owner");
        let owner_str = name_of(&share.owner);

        if share.resources.is_empty() {
            s.err(
                "resources",
                "must list at least one service network or service",
            );
        }
        let mut resources = Vec::new();
        let mut seen = HashSet::new();
        for (r, resource) in share.resources.iter().enumerate() {
            let field = format!("resources[{r}]");
            let wanted = resource.as_str();
            // Every resource with this name, with its kind and owner.
            let mut candidates: Vec<(&str, Shared, Option<&str>)> = Vec::new();
            if let Some(&n) = ix.networks.get(wanted) {
                candidates.push((
                    "service network",
                    Shared::Network(n),
                    name_of(&doc.service_networks[n].account),
                ));
            }
            if let Some(&n) = ix.services.get(wanted) {
                candidates.push((
                    "service",
                    Shared::Service(n),
                    name_of(&doc.services[n].account),
                ));
            }
            if let Some(&n) = ix.target_groups.get(wanted) {
                let vpc = doc.target_groups[n]
                    .config
                    .as_ref()
                    .and_then(|c| name_of(&c.vpc_identifier))
                    .and_then(|v| ix.vpcs.get(v).copied());
                candidates.push((
                    "target group",
                    Shared::TargetGroup(n),
                    vpc.and_then(|v| ix.vpc_account(v)),
                ));
            }
            if let Some(&n) = ix.vpcs.get(wanted) {
                candidates.push(("vpc", Shared::Vpc(n), ix.vpc_account(n)));
            }
            let owned: Vec<_> = candidates
                .iter()
                .filter(|(_, _, account)| owner_str.is_none() || *account == owner_str)
                .collect();
            let chosen = match owned.as_slice() {
                [(_, key, _)] => Some(*key),
                [] if candidates.is_empty() => {
                    s.err(
                        field,
                        format!(
                            "no service network, service, target group or vpc is named {wanted:?}"
                        ),
                    );
                    None
                }
                [] => {
                    let (kind, _, account) = candidates[0];
                    s.err(
                        field,
                        format!(
                            "{kind} {wanted:?} belongs to account {}, not to the share's owner {}",
                            account.unwrap_or("?"),
                            owner_str.unwrap_or("?")
                        ),
                    );
                    None
                }
                several => {
                    let kinds: Vec<&str> = several.iter().map(|(kind, _, _)| *kind).collect();
                    s.err(
                        field,
                        format!(
                            "{wanted:?} is ambiguous: it names a {}; rename one",
                            kinds.join(" and a ")
                        ),
                    );
                    None
                }
            };
            if let Some(key) = chosen {
                if !seen.insert(key) {
                    s.err(
                        format!("resources[{r}]"),
                        format!("{wanted:?} is listed twice"),
                    );
                    resources.push(None);
                    continue;
                }
            }
            resources.push(chosen);
        }

        if share.principals.is_empty() {
            s.err("principals", "must list at least one account to share with");
        }
        let mut principals = Vec::new();
        let mut principal_ids = Vec::new();
        for (p, principal) in share.principals.iter().enumerate() {
            let field = format!("principals[{p}]");
            let id = principal.as_str();
            let parsed = (|| {
                if !s.check(&field, names::check_account_id(id)) {
                    return None;
                }
                if !ix.accounts.contains_key(id) {
                    s.err(
                        field.clone(),
                        format!("account {id} is not declared in accounts"),
                    );
                    return None;
                }
                if Some(id) == owner_str {
                    s.err(
                        field.clone(),
                        format!("account {id} is the share's owner; share with other accounts"),
                    );
                    return None;
                }
                if principal_ids.contains(&id) {
                    s.err(field.clone(), format!("account {id} is listed twice"));
                    return None;
                }
                principal_ids.push(id);
                Some(AccountId::new_unchecked(id))
            })();
            principals.push(parsed);
        }
        if let Some(owner) = owner_str {
            for key in resources.iter().flatten() {
                ix.shares.push((owner, *key, principal_ids.clone()));
            }
        }
        out.push((|| {
            let resources = resources
                .into_iter()
                .map(|key| {
                    key.map(|key| match key {
                        Shared::Network(n) => SharedResource::ServiceNetwork(ServiceNetworkRef(n)),
                        Shared::Service(n) => SharedResource::Service(ServiceRef(n)),
                        Shared::TargetGroup(n) => SharedResource::TargetGroup(TargetGroupRef(n)),
                        Shared::Vpc(n) => SharedResource::Vpc(VpcRef(n)),
                    })
                })
                .collect::<Option<_>>()?;
            Some(ResourceShare {
                name: name?,
                owner: owner?,
                resources,
                principals: principals.into_iter().collect::<Option<_>>()?,
            })
        })());
    }
    out
}

fn target_groups(ix: &mut Index<'_>, errors: &mut Errors<'_>) -> Vec<Option<TargetGroup>> {
    let doc = ix.doc;
    let mut out = Vec::new();
    for (i, tg) in doc.target_groups.iter().enumerate() {
        let mut s = errors.scope(ResourceKind::TargetGroup, label(tg.name.as_ref(), i));
        let name = s.name(&names::TARGET_GROUP, &tg.name, "name");
        duplicate(&mut s, &ix.target_groups, name_of(&tg.name), i);
        let kind = match s.required(&tg.kind, "type").map(String::as_str) {
            Some("IP") => Some(TargetType::Ip),
            Some("INSTANCE") => Some(TargetType::Instance),
            Some(other @ ("ALB" | "LAMBDA")) => {
                s.err(
                    "type",
                    format!("{other} target groups are not supported by lattice (targets are IP addresses or instances in a vpc)"),
                );
                None
            }
            Some(other) => {
                s.err(
                    "type",
                    format!("{other:?} is not a target group type (IP, INSTANCE, ALB, LAMBDA)"),
                );
                None
            }
            None => None,
        };
        let Some(config) = s.required(&tg.config, "config") else {
            out.push(None);
            continue;
        };

        let vpc = s
            .required(&config.vpc_identifier, "config.vpcIdentifier")
            .and_then(|vpc| match ix.vpcs.get(vpc.as_str()) {
                Some(&v) => Some(v),
                None => {
                    s.err(
                        "config.vpcIdentifier",
                        format!("no vpc is named {:?}", vpc.as_str()),
                    );
                    None
                }
            });
        ix.tg_vpc[i] = vpc;
        let account = vpc
            .and_then(|v| ix.vpc_account(v))
            .filter(|a| names::check_account_id(a).is_ok() && ix.accounts.contains_key(a))
            .map(AccountId::new_unchecked);

        let protocol = match s
            .required(&config.protocol, "config.protocol")
            .map(String::as_str)
        {
            Some("HTTP") => Some(TargetGroupProtocol::Http),
            Some("HTTPS") => Some(TargetGroupProtocol::Https),
            Some("TCP") => Some(TargetGroupProtocol::Tcp),
            Some(other) => {
                s.err(
                    "config.protocol",
                    format!("{other:?} is not a target group protocol (HTTP, HTTPS, TCP)"),
                );
                None
            }
            None => None,
        };
        ix.tg_protocol[i] = protocol;

        let version_field = "config.protocolVersion";
        let protocol_version: Option<Option<ProtocolVersion>> =
            match (protocol, config.protocol_version.as_deref()) {
                (Some(TargetGroupProtocol::Tcp), Some(_)) => {
                    s.err(version_field, "TCP target groups have no protocolVersion");
                    None
                }
                (Some(TargetGroupProtocol::Tcp), None) => Some(None),
                (_, None) => Some(Some(ProtocolVersion::Http1)),
                (_, Some("HTTP1")) => Some(Some(ProtocolVersion::Http1)),
                (_, Some("HTTP2")) => Some(Some(ProtocolVersion::Http2)),
                (_, Some("GRPC")) => Some(Some(ProtocolVersion::Grpc)),
                (_, Some(other)) => {
                    s.err(
                        version_field,
                        format!("{other:?} is not a protocol version (HTTP1, HTTP2, GRPC)"),
                    );
                    None
                }
            };

        let port = match (config.port, protocol) {
            (Some(port), _) => s.port(port, "config.port"),
            (None, Some(TargetGroupProtocol::Http)) => NonZeroU16::new(80).map(Port::new),
            (None, Some(TargetGroupProtocol::Https)) => NonZeroU16::new(443).map(Port::new),
            (None, Some(TargetGroupProtocol::Tcp)) => {
                s.err("config.port", "is required for TCP target groups");
                None
            }
            (None, None) => None,
        };

        let health_check = match (protocol, protocol_version) {
            (Some(protocol), Some(version)) => {
                health_check(&mut s, config.health_check.as_ref(), protocol, version)
            }
            _ => None,
        };

        let load_balancing = match config.load_balancing_algorithm_type.as_deref() {
            None | Some("ROUND_ROBIN") => Some(LoadBalancing::RoundRobin),
            Some("LEAST_OUTSTANDING_REQUESTS") if protocol == Some(TargetGroupProtocol::Tcp) => {
                s.err(
                    "config.loadBalancingAlgorithmType",
                    "LEAST_OUTSTANDING_REQUESTS counts requests: it applies to HTTP and HTTPS target groups",
                );
                None
            }
            Some("LEAST_OUTSTANDING_REQUESTS") => Some(LoadBalancing::LeastOutstandingRequests),
            Some(other) => {
                s.err(
                    "config.loadBalancingAlgorithmType",
                    format!("{other:?} is not ROUND_ROBIN or LEAST_OUTSTANDING_REQUESTS"),
                );
                None
            }
        };

        let cidr = vpc.and_then(|v| ix.vpc_cidr[v]);
        let vpc_name = vpc.and_then(|v| name_of(&doc.vpcs[v].name)).unwrap_or("?");
        let mut seen = HashSet::new();
        let mut targets = Vec::new();
        for (t, target) in tg.targets.iter().enumerate() {
            let field = format!("targets[{t}]");
            let id =
                s.required(&target.id, &format!("{field}.id"))
                    .and_then(|id| {
                        let id = id.as_str();
                        match kind? {
                            TargetType::Ip => {
                                let Ok(ip) = id.parse::<Ipv4Addr>() else {
                                    s.err(
                                        format!("{field}.id"),
                                        format!("{id:?} is not an IPv4 address (IP targets)"),
                                    );
                                    return None;
                                };
                                if let Some(cidr) = cidr {
                                    if !cidr.contains(&ip) {
                                        s.err(
                                    format!("{field}.id"),
                                    format!("{ip} is outside the CIDR {cidr} of vpc {vpc_name:?}"),
                                );
                                        return None;
                                    }
                                }
                                Some(TargetId::Ip(ip))
                            }
                            TargetType::Instance => s
                                .check(&format!("{field}.id"), names::check_instance_id(id))
                                .then(|| TargetId::Instance(id.to_owned())),
                        }
                    });
            let target_port = match target.port {
                Some(p) => s.port(p, &format!("{field}.port")),
                None => port,
            };
            targets.push((|| {
                let target = Target {
                    id: id?,
                    port: target_port?,
                };
                if !seen.insert(target.clone()) {
                    s.err(
                        field,
                        format!("target {}:{} is listed twice", target.id, target.port),
                    );
                    return None;
                }
                Some(target)
            })());
        }

        out.push((|| {
            Some(TargetGroup {
                name: name?,
                account: account?,
                kind: kind?,
                vpc: VpcRef(vpc?),
                protocol: protocol?,
                protocol_version: protocol_version?,
                port: port?,
                health_check: health_check?,
                load_balancing: load_balancing?,
                targets: targets.into_iter().collect::<Option<_>>()?,
            })
        })());
    }
    out
}

/// Lattice's health-check rules and defaults.
fn health_check(
    s: &mut Scope<'_, '_>,
    raw: Option<&raw::HealthCheck>,
    protocol: TargetGroupProtocol,
    version: Option<ProtocolVersion>,
) -> Option<HealthCheck> {
    let empty = raw::HealthCheck {
        enabled: None,
        protocol: None,
        protocol_version: None,
        port: None,
        path: None,
        health_check_interval_seconds: None,
        health_check_timeout_seconds: None,
        healthy_threshold_count: None,
        unhealthy_threshold_count: None,
        matcher: None,
    };
    let hc = raw.unwrap_or(&empty);
    let f = |name: &str| format!("config.healthCheck.{name}");
    // On by default only for HTTP1 groups (Lattice: off for HTTP2, GRPC and TCP).
    let enabled = hc
        .enabled
        .unwrap_or(version == Some(ProtocolVersion::Http1));
    let tcp = protocol == TargetGroupProtocol::Tcp;

    let hc_protocol = match hc.protocol.as_deref() {
        Some("HTTP") => Some(HealthCheckProtocol::Http),
        Some("HTTPS") => Some(HealthCheckProtocol::Https),
        Some(other) => {
            s.err(
                f("protocol"),
                format!("{other:?} is not a health check protocol (HTTP or HTTPS)"),
            );
            None
        }
        // A TCP group's check without a protocol is a TCP connect check; naming HTTP
        // or HTTPS (as Lattice requires) checks over that protocol instead.
        None if tcp => Some(HealthCheckProtocol::Tcp),
        None => Some(HealthCheckProtocol::Http),
    };
    let hc_version = match hc.protocol_version.as_deref() {
        Some("HTTP1") => Some(HealthCheckProtocolVersion::Http1),
        Some("HTTP2") => Some(HealthCheckProtocolVersion::Http2),
        Some("GRPC") => {
            s.err(
                f("protocolVersion"),
                "health checks don't support GRPC; use HTTP1 or HTTP2",
            );
            None
        }
        Some(other) => {
            s.err(
                f("protocolVersion"),
                format!("{other:?} is not a health check protocol version (HTTP1 or HTTP2)"),
            );
            None
        }
        None => match version {
            Some(ProtocolVersion::Http1) => Some(HealthCheckProtocolVersion::Http1),
            Some(ProtocolVersion::Http2) => Some(HealthCheckProtocolVersion::Http2),
            Some(ProtocolVersion::Grpc) | None if enabled && !(tcp && hc.protocol.is_none()) => {
                let what = if tcp { "TCP" } else { "GRPC" };
                s.err(
                    f("protocolVersion"),
                    format!("is required when health checks are enabled on a {what} target group (HTTP1 or HTTP2)"),
                );
                None
            }
            Some(ProtocolVersion::Grpc) | None => Some(HealthCheckProtocolVersion::Http1),
        },
    };
    let port = match hc.port {
        Some(port) => s.port(port, &f("port")).map(Some),
        None => Some(None),
    };
    let path = match hc.path.as_deref() {
        None | Some("") => Some("/".to_owned()),
        Some(path) => s
            .check(&f("path"), names::check_health_check_path(path))
            .then(|| path.to_owned()),
    };
    let mut seconds = |value: Option<i64>, range, default: u64, name: &str| match value {
        None => Some(Duration::from_secs(default)),
        Some(v) => s
            .in_range(v, range, &f(name))
            .and_then(|v| u64::try_from(v).ok())
            .map(Duration::from_secs),
    };
    let interval = seconds(
        hc.health_check_interval_seconds,
        5..=300,
        30,
        "healthCheckIntervalSeconds",
    );
    let timeout = seconds(
        hc.health_check_timeout_seconds,
        1..=120,
        5,
        "healthCheckTimeoutSeconds",
    );
    let mut count = |value: Option<i64>, default: u8, name: &str| match value {
        None => Some(default),
        Some(v) => s
            .in_range(v, 2..=10, &f(name))
            .and_then(|v| u8::try_from(v).ok()),
    };
    let healthy_threshold = count(hc.healthy_threshold_count, 5, "healthyThresholdCount");
    let unhealthy_threshold = count(hc.unhealthy_threshold_count, 2, "unhealthyThresholdCount");
    let matcher = match &hc.matcher {
        None => Some(StatusMatcher(vec![200..=200])),
        Some(m) => s
            .required(&m.http_code, &f("matcher.httpCode"))
            .and_then(|code| match parse_status_matcher(code.as_str()) {
                Ok(ranges) => Some(StatusMatcher(ranges)),
                Err(message) => {
                    s.err(f("matcher.httpCode"), message);
                    None
                }
            }),
    };
    Some(HealthCheck {
        enabled,
        protocol: hc_protocol?,
        protocol_version: hc_version?,
        port: port?,
        path: path?,
        interval: interval?,
        timeout: timeout?,
        healthy_threshold: healthy_threshold?,
        unhealthy_threshold: unhealthy_threshold?,
        matcher: matcher?,
    })
}

/// `200`, `200,202`, `200-299`: Lattice's matcher pattern `[0-9-,]+` (3-2000 characters),
/// with each code an HTTP status (100-599) and each range ascending.
pub(crate) fn parse_status_matcher(text: &str) -> Result<Vec<RangeInclusive<u16>>, String> {
    let shape = "codes like 200, 200,202 or 200-299";
    if !(3..=2000).contains(&text.len())
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
    {
        return Err(format!("{text:?} is not a status matcher ({shape})"));
    }
    let code = |part: &str| -> Result<u16, String> {
        match part.parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) => Ok(code),
            _ => Err(format!(
                "{text:?}: {part:?} is not an HTTP status code (100-599)"
            )),
        }
    };
    text.split(',')
        .map(|item| match item.split_once('-') {
            None => code(item).map(|c| c..=c),
            Some((lo, hi)) => {
                let (lo, hi) = (code(lo)?, code(hi)?);
                if lo > hi {
                    return Err(format!("{text:?}: the range {item} is empty"));
                }
                Ok(lo..=hi)
            }
        })
        .collect()
}

/// The service an action belongs to, for protocol, ownership and sharing checks.
struct ActionContext<'a> {
    service_index: usize,
    service_name: &'a str,
    service_account: Option<&'a str>,
    protocol: Option<ListenerProtocol>,
}

fn services(ix: &Index<'_>, errors: &mut Errors<'_>) -> Vec<Option<Service>> {
    let doc = ix.doc;
    // A target group can only be used by a single service (Lattice).
    let mut tg_user: HashMap<usize, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, svc) in doc.services.iter().enumerate() {
        let mut s = errors.scope(ResourceKind::Service, label(svc.name.as_ref(), i));
        let name = s.name(&names::SERVICE, &svc.name, "name");
        duplicate(&mut s, &ix.services, name_of(&svc.name), i);
        let account = ix.account(&mut s, &svc.account, "account");
        let custom_domain_name = match &svc.custom_domain_name {
            None => Some(None),
            Some(domain) => s
                .check("customDomainName", names::check_domain_name(domain))
                .then(|| Some(domain.to_ascii_lowercase())),
        };
        let certificate = match &svc.certificate {
            None => Some(None),
            Some(cert) => {
                let cert_file = s.file(ix.base_dir, &cert.cert_file, "certificate.certFile");
                let key_file = s.file(ix.base_dir, &cert.key_file, "certificate.keyFile");
                cert_file.zip(key_file).map(|(cert_file, key_file)| {
                    Some(Certificate {
                        cert_file,
                        key_file,
                    })
                })
            }
        };
        let auth = ix.auth(&mut s, &svc.auth_type, &svc.auth_policy);
        let is_iam = svc.auth_type.as_deref() == Some("AWS_IAM");

        if svc.listeners.len() > MAX_LISTENERS_PER_SERVICE {
            s.quota_err(
                "listeners",
                format!(
                    "a service can have at most {MAX_LISTENERS_PER_SERVICE} listeners (Lattice's quota); this one has {}",
                    svc.listeners.len()
                ),
            );
        }
        let mut listener_names: HashMap<&str, usize> = HashMap::new();
        let mut listener_ports: HashMap<u16, usize> = HashMap::new();
        let mut listeners = Vec::new();
        for (l, listener) in svc.listeners.iter().enumerate() {
            let f = format!("listeners[{l}]");
            let lname = s.name(&names::LISTENER, &listener.name, &format!("{f}.name"));
            if let Some(n) = name_of(&listener.name) {
                if let Some(first) = listener_names.insert(n, l) {
                    s.err(
                        format!("{f}.name"),
                        format!(
                            "duplicate listener name {n:?} (first declared as listeners[{first}])"
                        ),
                    );
                }
            }
            let lname_str = name_of(&listener.name).unwrap_or("?");
            let protocol = match s
                .required(&listener.protocol, &format!("{f}.protocol"))
                .map(String::as_str)
            {
                Some("HTTP") => Some(ListenerProtocol::Http),
                Some("HTTPS") => Some(ListenerProtocol::Https),
                Some("TLS_PASSTHROUGH") => Some(ListenerProtocol::TlsPassthrough),
                Some("TCP") => Some(ListenerProtocol::Tcp),
                Some(other) => {
                    s.err(
                        format!("{f}.protocol"),
                        format!("{other:?} is not a listener protocol (HTTP, HTTPS, TLS_PASSTHROUGH, TCP)"),
                    );
                    None
                }
                None => None,
            };
            let port = match (listener.port, protocol) {
                (Some(port), _) => s.port(port, &format!("{f}.port")),
                (None, Some(ListenerProtocol::Http)) => NonZeroU16::new(80).map(Port::new),
                (None, Some(ListenerProtocol::Https)) => NonZeroU16::new(443).map(Port::new),
                (None, Some(p)) => {
                    s.err(
                        format!("{f}.port"),
                        format!("is required for {} listeners", p.as_str()),
                    );
                    None
                }
                (None, None) => None,
            };
            if let Some(port) = port {
                if let Some(first) = listener_ports.insert(port.get(), l) {
                    s.err(
                        format!("{f}.port"),
                        format!("port {port} is already used by listeners[{first}]; listener ports are unique per service"),
                    );
                }
            }
            match protocol {
                Some(ListenerProtocol::Https) if svc.certificate.is_none() => s.err(
                    "certificate",
                    format!("is required: listener {lname_str:?} ({f}) is HTTPS"),
                ),
                Some(ListenerProtocol::TlsPassthrough) if svc.custom_domain_name.is_none() => s.err(
                    "customDomainName",
                    format!("is required: listener {lname_str:?} ({f}) is TLS_PASSTHROUGH and routes by SNI on it"),
                ),
                _ => {}
            }
            if is_iam {
                if let Some(p @ (ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough)) =
                    protocol
                {
                    s.err(
                        "authType",
                        format!(
                            "AWS_IAM is not supported on {} listeners (listener {lname_str:?}, {f}): they carry no request to authorize; use NONE",
                            p.as_str()
                        ),
                    );
                }
            }
            let ctx = ActionContext {
                service_index: i,
                service_name: name_of(&svc.name).unwrap_or("?"),
                service_account: name_of(&svc.account),
                protocol,
            };
            let default_action = s
                .required(&listener.default_action, &format!("{f}.defaultAction"))
                .and_then(|a| {
                    action(
                        &mut s,
                        ix,
                        &mut tg_user,
                        a,
                        &format!("{f}.defaultAction"),
                        &ctx,
                    )
                });

            let is_http = protocol.is_some_and(ListenerProtocol::is_http);
            let mut rules = Vec::new();
            if !listener.rules.is_empty() && protocol.is_some() && !is_http {
                s.err(
                    format!("{f}.rules"),
                    format!(
                        "rules are only allowed on HTTP and HTTPS listeners; a {} listener has only its default action",
                        protocol.map_or("?", ListenerProtocol::as_str)
                    ),
                );
                rules.push(None);
            } else if is_http {
                if listener.rules.len() > MAX_RULES_PER_LISTENER {
                    s.quota_err(
                        format!("{f}.rules"),
                        format!(
                            "a listener can have at most {MAX_RULES_PER_LISTENER} rules (Lattice's quota); this one has {}",
                            listener.rules.len()
                        ),
                    );
                    rules.push(None);
                }
                let mut rule_names: HashMap<&str, usize> = HashMap::new();
                let mut priorities: HashMap<i64, usize> = HashMap::new();
                for (r, rule) in listener.rules.iter().enumerate() {
                    rules.push(self::rule(
                        &mut s,
                        ix,
                        &mut tg_user,
                        rule,
                        &format!("{f}.rules[{r}]"),
                        &ctx,
                        (r, &mut rule_names, &mut priorities),
                    ));
                }
            }
            listeners.push((|| {
                let mut rules: Vec<Rule> = rules.into_iter().collect::<Option<_>>()?;
                rules.sort_by_key(|rule| rule.priority);
                Some(Listener {
                    name: lname?,
                    protocol: protocol?,
                    port: port?,
                    default_action: default_action?,
                    rules,
                })
            })());
        }
        out.push((|| {
            Some(Service {
                name: name?,
                account: account?,
                custom_domain_name: custom_domain_name?,
                certificate: certificate?,
                auth: auth?,
                listeners: listeners.into_iter().collect::<Option<_>>()?,
            })
        })());
    }
    out
}

fn rule<'d>(
    s: &mut Scope<'_, '_>,
    ix: &Index<'d>,
    tg_user: &mut HashMap<usize, usize>,
    rule: &'d raw::Rule,
    f: &str,
    ctx: &ActionContext<'_>,
    (r, rule_names, priorities): (
        usize,
        &mut HashMap<&'d str, usize>,
        &mut HashMap<i64, usize>,
    ),
) -> Option<Rule> {
    let name = s.name(&names::RULE, &rule.name, &format!("{f}.name"));
    if let Some(n) = name_of(&rule.name) {
        if let Some(first) = rule_names.insert(n, r) {
            s.err(
                format!("{f}.name"),
                format!("duplicate rule name {n:?} (first declared as rules[{first}])"),
            );
        }
    }
    let priority = s
        .required(&rule.priority, &format!("{f}.priority"))
        .and_then(|&p| s.in_range(p, PRIORITY, &format!("{f}.priority")))
        .and_then(|p| {
            if let Some(first) = priorities.insert(p, r) {
                s.err(
                    format!("{f}.priority"),
                    format!("priority {p} is already used by rules[{first}]; priorities are unique per listener"),
                );
                return None;
            }
            u16::try_from(p).ok()
        });
    let http_match = s
        .required(&rule.matcher, &format!("{f}.match"))
        .and_then(|m| s.required(&m.http_match, &format!("{f}.match.httpMatch")))
        .and_then(|m| http_match(s, m, &format!("{f}.match.httpMatch")));
    let action = s
        .required(&rule.action, &format!("{f}.action"))
        .and_then(|a| action(s, ix, tg_user, a, &format!("{f}.action"), ctx));
    Some(Rule {
        name: name?,
        priority: priority?,
        http_match: http_match?,
        action: action?,
    })
}

fn http_match(s: &mut Scope<'_, '_>, m: &raw::HttpMatch, f: &str) -> Option<HttpMatch> {
    if m.method.is_none() && m.path_match.is_none() && m.header_matches.is_empty() {
        s.err(
            f,
            "must match on at least one of method, pathMatch, headerMatches",
        );
        return None;
    }
    let method = match m.method.as_deref() {
        None => Some(None),
        Some(method) => {
            let parsed = match method {
                "CONNECT" => Some(Method::Connect),
                "DELETE" => Some(Method::Delete),
                "GET" => Some(Method::Get),
                "HEAD" => Some(Method::Head),
                "OPTIONS" => Some(Method::Options),
                "PATCH" => Some(Method::Patch),
                "POST" => Some(Method::Post),
                "PUT" => Some(Method::Put),
                "TRACE" => Some(Method::Trace),
                other => {
                    s.err(
                        format!("{f}.method"),
                        format!("{other:?} is not an HTTP method (CONNECT, DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE)"),
                    );
                    None
                }
            };
            parsed.map(Some)
        }
    };
    let path_match = match &m.path_match {
        None => Some(None),
        Some(pm) => {
            let pf = format!("{f}.pathMatch.match");
            s.required(&pm.matcher, &pf)
                .and_then(|t| match (&t.exact, &t.prefix) {
                    (Some(path), None) => s
                        .check(&format!("{pf}.exact"), names::check_match_path(path))
                        .then(|| PathMatchType::Exact(path.clone())),
                    (None, Some(path)) => s
                        .check(&format!("{pf}.prefix"), names::check_match_path(path))
                        .then(|| PathMatchType::Prefix(path.clone())),
                    _ => {
                        s.err(pf.clone(), "needs exactly one of exact, prefix");
                        None
                    }
                })
                .map(|matcher| {
                    Some(PathMatch {
                        matcher,
                        case_sensitive: pm.case_sensitive.unwrap_or(false),
                    })
                })
        }
    };
    if m.header_matches.len() > MAX_HEADER_MATCHES {
        s.err(
            format!("{f}.headerMatches"),
            format!(
                "a rule can have at most {MAX_HEADER_MATCHES} header matches; this one has {}",
                m.header_matches.len()
            ),
        );
    }
    let mut header_matches = Vec::new();
    for (h, hm) in m.header_matches.iter().enumerate() {
        let hf = format!("{f}.headerMatches[{h}]");
        let name = s.required(&hm.name, &format!("{hf}.name")).and_then(|n| {
            s.check(&format!("{hf}.name"), names::check_header_name(n))
                .then(|| n.to_ascii_lowercase())
        });
        let mf = format!("{hf}.match");
        let matcher = s.required(&hm.matcher, &mf).and_then(|t| {
            let (key, value, make): (&str, &Scalar, fn(String) -> HeaderMatchType) =
                match (&t.exact, &t.prefix, &t.contains) {
                    (Some(v), None, None) => ("exact", v, HeaderMatchType::Exact),
                    (None, Some(v), None) => ("prefix", v, HeaderMatchType::Prefix),
                    (None, None, Some(v)) => ("contains", v, HeaderMatchType::Contains),
                    _ => {
                        s.err(mf.clone(), "needs exactly one of exact, prefix, contains");
                        return None;
                    }
                };
            s.check(
                &format!("{mf}.{key}"),
                names::check_header_value(value.as_str()),
            )
            .then(|| make(value.0.clone()))
        });
        header_matches.push(name.zip(matcher).map(|(name, matcher)| HeaderMatch {
            name,
            matcher,
            case_sensitive: hm.case_sensitive.unwrap_or(false),
        }));
    }
    if m.header_matches.len() > MAX_HEADER_MATCHES {
        return None;
    }
    Some(HttpMatch {
        method: method?,
        path_match: path_match?,
        header_matches: header_matches.into_iter().collect::<Option<_>>()?,
    })
}

fn action(
    s: &mut Scope<'_, '_>,
    ix: &Index<'_>,
    tg_user: &mut HashMap<usize, usize>,
    a: &raw::Action,
    f: &str,
    ctx: &ActionContext<'_>,
) -> Option<Action> {
    let l4 = matches!(
        ctx.protocol,
        Some(ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough)
    );
    match (&a.forward, &a.fixed_response) {
        (Some(_), Some(_)) => {
            s.err(
                f,
                "has both forward and fixedResponse; an action is one of them",
            );
            None
        }
        (None, None) => {
            s.err(f, "needs forward or fixedResponse");
            None
        }
        (None, Some(fixed)) => {
            let ff = format!("{f}.fixedResponse");
            if l4 {
                s.err(
                    ff,
                    format!(
                        "a {} listener can only forward (to TCP target groups)",
                        ctx.protocol.map_or("?", ListenerProtocol::as_str)
                    ),
                );
                return None;
            }
            let code = *s.required(&fixed.status_code, &format!("{ff}.statusCode"))?;
            match code {
                404 => Some(Action::FixedResponse(FixedResponseStatus::NotFound)),
                500 => Some(Action::FixedResponse(
                    FixedResponseStatus::InternalServerError,
                )),
                other => {
                    s.err(
                        format!("{ff}.statusCode"),
                        format!("{other} is not supported: a fixed response is 404 or 500"),
                    );
                    None
                }
            }
        }
        (Some(forward), None) => {
            forward_action(s, ix, tg_user, forward, &format!("{f}.forward"), ctx)
        }
    }
}

fn forward_action(
    s: &mut Scope<'_, '_>,
    ix: &Index<'_>,
    tg_user: &mut HashMap<usize, usize>,
    forward: &raw::Forward,
    f: &str,
    ctx: &ActionContext<'_>,
) -> Option<Action> {
    let doc = ix.doc;
    let tf = format!("{f}.targetGroups");
    let count = forward.target_groups.len();
    if count == 0 {
        s.err(tf, "must name at least 1 target group");
        return None;
    }
    if count > MAX_TARGET_GROUPS_PER_FORWARD {
        s.err(
            tf.clone(),
            format!("a forward action can name at most {MAX_TARGET_GROUPS_PER_FORWARD} target groups; this one names {count}"),
        );
    }
    let mut seen = HashSet::new();
    let mut groups = Vec::new();
    for (w, weighted) in forward.target_groups.iter().enumerate() {
        let wf = format!("{tf}[{w}]");
        let idf = format!("{wf}.targetGroupIdentifier");
        let tg = s.required(&weighted.target_group_identifier, &idf).and_then(|id| {
            let id = id.as_str();
            let Some(&t) = ix.target_groups.get(id) else {
                s.err(idf.clone(), format!("no target group is named {id:?}"));
                return None;
            };
            if !seen.insert(t) {
                s.err(idf.clone(), format!("target group {id:?} is listed twice"));
                return None;
            }
            let mut ok = true;
            match (ctx.protocol, ix.tg_protocol[t]) {
                (Some(lp @ (ListenerProtocol::Http | ListenerProtocol::Https)), Some(TargetGroupProtocol::Tcp)) => {
                    s.err(
                        idf.clone(),
                        format!("target group {id:?} is TCP; an {} listener forwards to HTTP or HTTPS target groups", lp.as_str()),
                    );
                    ok = false;
                }
                (
                    Some(lp @ (ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough)),
                    Some(tp @ (TargetGroupProtocol::Http | TargetGroupProtocol::Https)),
                ) => {
                    s.err(
                        idf.clone(),
                        format!(
                            "target group {id:?} is {}; a {} listener forwards only to TCP target groups",
                            if tp == TargetGroupProtocol::Http { "HTTP" } else { "HTTPS" },
                            lp.as_str()
                        ),
                    );
                    ok = false;
                }
                _ => {}
            }
            match tg_user.get(&t) {
                Some(&other) if other != ctx.service_index => {
                    s.err(
                        idf.clone(),
                        format!(
                            "target group {id:?} is already used by service {:?}; a target group can only be used by a single service",
                            name_of(&doc.services[other].name).unwrap_or("?")
                        ),
                    );
                    ok = false;
                }
                Some(_) => {}
                None => {
                    tg_user.insert(t, ctx.service_index);
                }
            }
            if let (Some(tg_account), Some(svc_account)) = (ix.tg_account(t), ctx.service_account) {
                let vpc = ix.tg_vpc[t];
                let shared = ix.shared(Shared::TargetGroup(t), tg_account, svc_account)
                    || vpc.is_some_and(|v| ix.shared(Shared::Vpc(v), tg_account, svc_account));
                if tg_account != svc_account && !shared {
                    let vpc_name = vpc.and_then(|v| name_of(&doc.vpcs[v].name)).unwrap_or("?");
                    s.err(
                        idf.clone(),
                        format!(
                            "target group {id:?} belongs to account {tg_account} (through vpc {vpc_name:?}); service {:?} of account {svc_account} may use it only if a resourceShare of account {tg_account} shares target group {id:?} (or vpc {vpc_name:?}) with {svc_account}",
                            ctx.service_name
                        ),
                    );
                    ok = false;
                }
            }
            ok.then_some(TargetGroupRef(t))
        });
        let weight = match weighted.weight {
            Some(weight) => s
                .in_range(weight, WEIGHT, &format!("{wf}.weight"))
                .and_then(|w| u16::try_from(w).ok()),
            None if count > 1 => {
                s.err(
                    format!("{wf}.weight"),
                    "is required when a forward action names several target groups",
                );
                None
            }
            None => Some(DEFAULT_WEIGHT),
        };
        groups.push(
            tg.zip(weight)
                .map(|(target_group, weight)| WeightedTargetGroup {
                    target_group,
                    weight,
                }),
        );
    }
    if forward.target_groups.iter().all(|w| w.weight == Some(0)) {
        s.err(tf, "every weight is 0, so nothing would receive traffic; give at least one target group a weight above 0");
        return None;
    }
    if count > MAX_TARGET_GROUPS_PER_FORWARD {
        return None;
    }
    Some(Action::Forward(groups.into_iter().collect::<Option<_>>()?))
}

fn service_networks(ix: &Index<'_>, errors: &mut Errors<'_>) -> Vec<Option<ServiceNetwork>> {
    let doc = ix.doc;
    // Lattice: a vpc is associated with at most one service network.
    let mut vpc_network: HashMap<usize, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, net) in doc.service_networks.iter().enumerate() {
        let mut s = errors.scope(ResourceKind::ServiceNetwork, label(net.name.as_ref(), i));
        let name = s.name(&names::SERVICE_NETWORK, &net.name, "name");
        duplicate(&mut s, &ix.networks, name_of(&net.name), i);
        let account = ix.account(&mut s, &net.account, "account");
        let auth = ix.auth(&mut s, &net.auth_type, &net.auth_policy);
        let net_name = name_of(&net.name).unwrap_or("?");
        let net_account = name_of(&net.account);

        let mut vpc_associations = Vec::new();
        let mut seen_vpcs = HashSet::new();
        for (a, assoc) in net.vpc_associations.iter().enumerate() {
            let f = format!("vpcAssociations[{a}]");
            let vpc = s.required(&assoc.vpc, &format!("{f}.vpc")).and_then(|vpc| {
                let vpc_name = vpc.as_str();
                let Some(&v) = ix.vpcs.get(vpc_name) else {
                    s.err(format!("{f}.vpc"), format!("no vpc is named {vpc_name:?}"));
                    return None;
                };
                if !seen_vpcs.insert(v) {
                    s.err(format!("{f}.vpc"), format!("vpc {vpc_name:?} is associated twice"));
                    return None;
                }
                match vpc_network.get(&v) {
                    Some(&other) if other != i => {
                        s.err(
                            format!("{f}.vpc"),
                            format!(
                                "vpc {vpc_name:?} is already associated with service network {:?}; a vpc can be associated with only one service network",
                                name_of(&doc.service_networks[other].name).unwrap_or("?")
                            ),
                        );
                        return None;
                    }
                    _ => {
                        vpc_network.insert(v, i);
                    }
                }
                if let (Some(vpc_account), Some(net_account)) = (ix.vpc_account(v), net_account) {
                    if vpc_account != net_account && !ix.shared(Shared::Network(i), net_account, vpc_account) {
                        s.err(
                            format!("{f}.vpc"),
                            format!(
                                "vpc {vpc_name:?} belongs to account {vpc_account}; it may join service network {net_name:?} of account {net_account} only if a resourceShare of account {net_account} shares service network {net_name:?} with {vpc_account}"
                            ),
                        );
                        return None;
                    }
                }
                Some(v)
            });
            let cidr = vpc.and_then(|v| ix.vpc_cidr[v]);
            let mut allowed = Vec::new();
            for (c, text) in assoc.allowed_cidrs.iter().enumerate() {
                let field = format!("{f}.allowedCidrs[{c}]");
                allowed.push(s.cidr(text, &field).and_then(|net| match cidr {
                    Some(cidr) if !cidr.contains(&net) => {
                        s.err(
                            field,
                            format!(
                                "{net} is not inside the CIDR {cidr} of vpc {:?}",
                                name_of(&assoc.vpc).unwrap_or("?")
                            ),
                        );
                        None
                    }
                    _ => Some(net),
                }));
            }
            vpc_associations.push((|| {
                Some(VpcAssociation {
                    vpc: VpcRef(vpc?),
                    allowed_cidrs: allowed.into_iter().collect::<Option<_>>()?,
                })
            })());
        }

        if net.service_associations.len() > MAX_SERVICE_ASSOCIATIONS {
            s.quota_err(
                "serviceAssociations",
                format!(
                    "a service network can have at most {MAX_SERVICE_ASSOCIATIONS} services (Lattice's quota); this one has {}",
                    net.service_associations.len()
                ),
            );
        }
        let mut seen_services = HashSet::new();
        // Lattice: custom domain names are unique per service network.
        let mut domains: HashMap<String, &str> = HashMap::new();
        let mut service_associations = Vec::new();
        for (a, svc_name) in net.service_associations.iter().enumerate() {
            let f = format!("serviceAssociations[{a}]");
            let svc_name = svc_name.as_str();
            let Some(&sv) = ix.services.get(svc_name) else {
                s.err(f, format!("no service is named {svc_name:?}"));
                service_associations.push(None);
                continue;
            };
            let svc = &doc.services[sv];
            let mut ok = seen_services.insert(sv);
            if !ok {
                s.err(
                    f.clone(),
                    format!("service {svc_name:?} is associated twice"),
                );
            }
            if let (Some(svc_account), Some(net_account)) = (name_of(&svc.account), net_account) {
                let shared = ix.shared(Shared::Network(i), net_account, svc_account)
                    || ix.shared(Shared::Service(sv), svc_account, net_account);
                if svc_account != net_account && !shared {
                    s.err(
                        f.clone(),
                        format!(
                            "service {svc_name:?} belongs to account {svc_account}; it may join service network {net_name:?} of account {net_account} only if a resourceShare of account {net_account} shares service network {net_name:?} with {svc_account} (or one of account {svc_account} shares service {svc_name:?} with {net_account})"
                        ),
                    );
                    ok = false;
                }
            }
            if let Some(domain) = &svc.custom_domain_name {
                let domain = domain.to_ascii_lowercase();
                if let Some(other) = domains.get(&domain) {
                    s.err(
                        f.clone(),
                        format!(
                            "service {svc_name:?} has customDomainName {domain}, which service {other:?} of this network already uses; custom domain names are unique per service network"
                        ),
                    );
                    ok = false;
                } else {
                    domains.insert(domain, svc_name);
                }
            }
            service_associations.push(ok.then_some(ServiceRef(sv)));
        }
        out.push((|| {
            Some(ServiceNetwork {
                name: name?,
                account: account?,
                auth: auth?,
                vpc_associations: vpc_associations.into_iter().collect::<Option<_>>()?,
                service_associations: service_associations.into_iter().collect::<Option<_>>()?,
            })
        })());
    }
    out
}

fn access_log_subscriptions(
    ix: &Index<'_>,
    errors: &mut Errors<'_>,
) -> Vec<Option<AccessLogSubscription>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, sub) in ix.doc.access_log_subscriptions.iter().enumerate() {
        let mut s = errors.scope(
            ResourceKind::AccessLogSubscription,
            ResourceName::Unnamed(i),
        );
        let resource = s.required(&sub.resource, "resource").and_then(|name| {
            let name = name.as_str();
            match (ix.networks.get(name), ix.services.get(name)) {
                (Some(&n), None) => Some(LoggedResource::ServiceNetwork(ServiceNetworkRef(n))),
                (None, Some(&n)) => Some(LoggedResource::Service(ServiceRef(n))),
                (Some(_), Some(_)) => {
                    s.err(
                        "resource",
                        format!("{name:?} is ambiguous: it names a service network and a service; rename one"),
                    );
                    None
                }
                (None, None) => {
                    s.err("resource", format!("no service network or service is named {name:?}"));
                    None
                }
            }
        });
        let destination = s
            .required(&sub.destination, "destination")
            .and_then(|dest| {
                if dest == "stdout" {
                    return Some(LogDestination::Stdout);
                }
                match dest.strip_prefix("file:") {
                    Some(path) => s
                        .check(
                            "destination",
                            names::check_file_path(path).map_err(|m| format!("file path {m}")),
                        )
                        .then(|| LogDestination::File(ix.base_dir.join(path))),
                    None => {
                        s.err(
                            "destination",
                            format!("{dest:?} is not a destination (file:PATH or stdout)"),
                        );
                        None
                    }
                }
            });
        out.push((|| {
            let sub = AccessLogSubscription {
                resource: resource?,
                destination: destination?,
            };
            if !seen.insert((sub.resource, sub.destination.clone())) {
                s.err(
                    "destination",
                    "the same resource already logs to this destination",
                );
                return None;
            }
            Some(sub)
        })());
    }
    out
}
