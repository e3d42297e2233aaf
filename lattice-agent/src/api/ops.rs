//! The control API's operations as pure functions over the desired-state document (as
//! JSON): find, list (paginated), create, update (JSON merge patch), delete, register
//! and deregister targets, put/get/delete auth policies. The result is a new document;
//! the agent then validates it whole and applies it like any other change, so these
//! functions only check what the document's validation cannot see (that a resource
//! exists, that a name is free, that a request is well formed).

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::{error::ApiError, PolicyResource};

/// The resource kinds of the API, each with its place in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ServiceNetwork,
    Service,
    Listener,
    Rule,
    TargetGroup,
    VpcAssociation,
    ServiceAssociation,
    AccessLogSubscription,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::ServiceNetwork,
        Kind::Service,
        Kind::Listener,
        Kind::Rule,
        Kind::TargetGroup,
        Kind::VpcAssociation,
        Kind::ServiceAssociation,
        Kind::AccessLogSubscription,
    ];

    /// Lattice's name of the resource type.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::ServiceNetwork => "SERVICE_NETWORK",
            Kind::Service => "SERVICE",
            Kind::Listener => "LISTENER",
            Kind::Rule => "RULE",
            Kind::TargetGroup => "TARGET_GROUP",
            Kind::VpcAssociation => "SERVICE_NETWORK_VPC_ASSOCIATION",
            Kind::ServiceAssociation => "SERVICE_NETWORK_SERVICE_ASSOCIATION",
            Kind::AccessLogSubscription => "ACCESS_LOG_SUBSCRIPTION",
        }
    }

    /// The path segment of the collection in the API (and the CLI's kind names).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::ServiceNetwork => "servicenetworks",
            Kind::Service => "services",
            Kind::Listener => "listeners",
            Kind::Rule => "rules",
            Kind::TargetGroup => "targetgroups",
            Kind::VpcAssociation => "servicenetworkvpcassociations",
            Kind::ServiceAssociation => "servicenetworkserviceassociations",
            Kind::AccessLogSubscription => "accesslogsubscriptions",
        }
    }

    /// How many names identify one resource: its parents' and its own.
    pub fn depth(self) -> usize {
        match self {
            Kind::Listener | Kind::VpcAssociation | Kind::ServiceAssociation => 2,
            Kind::Rule => 3,
            _ => 1,
        }
    }

    /// Lattice's quota on how many a parent (or the account) may hold.
    fn quota(self) -> usize {
        match self {
            Kind::ServiceNetwork => 10,
            Kind::Service | Kind::TargetGroup => 500,
            Kind::Listener => 2,
            Kind::Rule => 10,
            Kind::VpcAssociation => 500,
            Kind::ServiceAssociation => 500,
            Kind::AccessLogSubscription => 1000,
        }
    }
}

/// A page of a list: `maxResults` (1-100, default 100) from `nextToken`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub max_results: Option<usize>,
    pub next_token: Option<String>,
}

impl Page {
    /// The items of this page and the token of the next one, if any.
    pub fn take<T: Clone>(&self, items: &[T]) -> Result<(Vec<T>, Option<String>), ApiError> {
        let max = self.max_results.unwrap_or(100);
        if !(1..=100).contains(&max) {
            return Err(ApiError::field(
                "maxResults",
                format!("{max} is not between 1 and 100"),
            ));
        }
        let start = match &self.next_token {
            None => 0,
            Some(token) => token
                .strip_prefix("n")
                .and_then(|n| usize::from_str_radix(n, 16).ok())
                .filter(|n| *n <= items.len())
                .ok_or_else(|| {
                    ApiError::field(
                        "nextToken",
                        format!("{token:?} is not a token of this list"),
                    )
                })?,
        };
        let end = (start + max).min(items.len());
        let next = (end < items.len()).then(|| format!("n{end:x}"));
        Ok((items[start..end].to_vec(), next))
    }
}

fn not_found(kind: Kind, id: &[String]) -> ApiError {
    ApiError::NotFound {
        resource_type: kind.type_name(),
        resource_id: id.join("/"),
    }
}

/// The key of an item of `kind`: its name, or what names it (the VPC of a VPC
/// association, the service of a service association, the id of a subscription).
pub fn key_of(kind: Kind, item: &Value) -> String {
    match kind {
        Kind::VpcAssociation => item["vpc"].as_str().unwrap_or_default().to_owned(),
        Kind::ServiceAssociation => item.as_str().unwrap_or_default().to_owned(),
        Kind::AccessLogSubscription => subscription_id(item),
        _ => match &item["name"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

/// A subscription's id: stable while its resource and destination are (Lattice's
/// `als-` form).
pub fn subscription_id(item: &Value) -> String {
    use sha2::Digest as _;
    let text = format!(
        "{}\n{}",
        item["resource"].as_str().unwrap_or_default(),
        item["destination"].as_str().unwrap_or_default()
    );
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!("als-{}", hex::encode(&digest[..8]))
}

/// The array holding `kind`'s items under `parents` (names, outermost first).
fn collection<'a>(
    doc: &'a mut Value,
    kind: Kind,
    parents: &[String],
) -> Result<&'a mut Vec<Value>, ApiError> {
    fn child<'a>(
        list: &'a mut [Value],
        kind: Kind,
        name: &str,
        path: &[String],
    ) -> Result<&'a mut Value, ApiError> {
        list.iter_mut()
            .find(|i| key_of(kind, i) == name)
            .ok_or_else(|| not_found(kind, path))
    }
    fn array<'a>(object: &'a mut Value, field: &str) -> Result<&'a mut Vec<Value>, ApiError> {
        let object = object
            .as_object_mut()
            .ok_or_else(|| ApiError::validation("the document is not an object"))?;
        let slot = object
            .entry(field)
            .or_insert_with(|| Value::Array(Vec::new()));
        slot.as_array_mut()
            .ok_or_else(|| ApiError::validation(format!("{field} is not a list")))
    }
    if doc.is_null() {
        *doc = json!({});
    }
    match (kind, parents) {
        (Kind::ServiceNetwork, []) => array(doc, "serviceNetworks"),
        (Kind::Service, []) => array(doc, "services"),
        (Kind::TargetGroup, []) => array(doc, "targetGroups"),
        (Kind::AccessLogSubscription, []) => array(doc, "accessLogSubscriptions"),
        (Kind::Listener, [service]) => {
            let services = array(doc, "services")?;
            let service = child(services, Kind::Service, service, parents)?;
            array(service, "listeners")
        }
        (Kind::Rule, [service, listener]) => {
            let services = array(doc, "services")?;
            let s = child(services, Kind::Service, service, &parents[..1])?;
            let listeners = array(s, "listeners")?;
            let l = child(listeners, Kind::Listener, listener, parents)?;
            array(l, "rules")
        }
        (Kind::VpcAssociation | Kind::ServiceAssociation, [network]) => {
            let networks = array(doc, "serviceNetworks")?;
            let n = child(networks, Kind::ServiceNetwork, network, parents)?;
            let field = if kind == Kind::VpcAssociation {
                "vpcAssociations"
            } else {
                "serviceAssociations"
            };
            array(n, field)
        }
        _ => Err(ApiError::validation(format!(
            "{} are named by {} name(s), not {}",
            kind.plural(),
            kind.depth(),
            parents.len() + 1
        ))),
    }
}

/// Splits an id (parents' names, then the resource's key) into its parts.
fn split(kind: Kind, id: &[String]) -> Result<(&[String], &str), ApiError> {
    match id.split_last() {
        Some((key, parents)) if id.len() == kind.depth() => Ok((parents, key)),
        _ => Err(ApiError::validation(format!(
            "{} are named by {} name(s)",
            kind.plural(),
            kind.depth()
        ))),
    }
}

/// One resource.
pub fn get(doc: &Value, kind: Kind, id: &[String]) -> Result<Value, ApiError> {
    let (parents, key) = split(kind, id)?;
    let mut doc = doc.clone();
    collection(&mut doc, kind, parents)?
        .iter()
        .find(|i| key_of(kind, i) == key)
        .cloned()
        .ok_or_else(|| not_found(kind, id))
}

/// The resources of `kind` under `parents`.
pub fn list(doc: &Value, kind: Kind, parents: &[String]) -> Result<Vec<Value>, ApiError> {
    if parents.len() + 1 != kind.depth() {
        return Err(ApiError::validation(format!(
            "{} are listed under {} parent name(s)",
            kind.plural(),
            kind.depth() - 1
        )));
    }
    let mut doc = doc.clone();
    Ok(collection(&mut doc, kind, parents)?.clone())
}

/// Adds `item` under `parents`; its key must be new there.
pub fn create(
    doc: &mut Value,
    kind: Kind,
    parents: &[String],
    item: Value,
) -> Result<String, ApiError> {
    if parents.len() + 1 != kind.depth() {
        return Err(ApiError::validation(format!(
            "{} are created under {} parent name(s)",
            kind.plural(),
            kind.depth() - 1
        )));
    }
    let key = key_of(kind, &item);
    if key.is_empty() || key == "null" {
        let field = match kind {
            Kind::VpcAssociation => "vpc",
            Kind::ServiceAssociation => "service",
            Kind::AccessLogSubscription => "resource",
            _ => "name",
        };
        return Err(ApiError::field(field, "is required"));
    }
    let items = collection(doc, kind, parents)?;
    if items.iter().any(|i| key_of(kind, i) == key) {
        let mut id = parents.to_vec();
        id.push(key.clone());
        return Err(ApiError::Conflict {
            message: format!("{} {key:?} exists already", kind.type_name()),
            resource_type: kind.type_name(),
            resource_id: id.join("/"),
        });
    }
    if items.len() >= kind.quota() {
        return Err(ApiError::QuotaExceeded {
            message: format!(
                "at most {} {} here (Lattice's quota)",
                kind.quota(),
                kind.plural()
            ),
            resource_type: kind.type_name(),
        });
    }
    items.push(item);
    Ok(key)
}

/// Applies a JSON merge patch (RFC 7386) to one resource; its key cannot change.
pub fn update(
    doc: &mut Value,
    kind: Kind,
    id: &[String],
    patch: &Value,
) -> Result<Value, ApiError> {
    let (parents, key) = split(kind, id)?;
    if kind == Kind::ServiceAssociation {
        return Err(ApiError::validation(
            "a service association has nothing to update",
        ));
    }
    let items = collection(doc, kind, parents)?;
    let at = items
        .iter()
        .position(|i| key_of(kind, i) == key)
        .ok_or_else(|| not_found(kind, id))?;
    let mut next = items[at].clone();
    merge_patch(&mut next, patch);
    let next_key = key_of(kind, &next);
    if next_key != key {
        // Lattice's UpdateAccessLogSubscription moves a subscription to another
        // destination; its id here is made from both, so it follows.
        let new_destination =
            kind == Kind::AccessLogSubscription && next["resource"] == items[at]["resource"];
        if !new_destination {
            return Err(ApiError::field(
                key_field(kind),
                "cannot change: create a new resource and delete this one",
            ));
        }
        if items.iter().any(|i| key_of(kind, i) == next_key) {
            return Err(ApiError::Conflict {
                message: format!(
                    "the resource has a subscription to that destination already ({next_key})"
                ),
                resource_type: kind.type_name(),
                resource_id: next_key,
            });
        }
    }
    items[at] = next.clone();
    Ok(next)
}

/// The field a resource of `kind` is known by in the document.
fn key_field(kind: Kind) -> &'static str {
    match kind {
        Kind::VpcAssociation => "vpc",
        Kind::AccessLogSubscription => "resource",
        Kind::ServiceAssociation => "service",
        _ => "name",
    }
}

/// Removes one resource.
pub fn delete(doc: &mut Value, kind: Kind, id: &[String]) -> Result<Value, ApiError> {
    let (parents, key) = split(kind, id)?;
    let items = collection(doc, kind, parents)?;
    let at = items
        .iter()
        .position(|i| key_of(kind, i) == key)
        .ok_or_else(|| not_found(kind, id))?;
    Ok(items.remove(at))
}

/// RFC 7386: objects merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let object = target.as_object_mut().expect("an object");
    for (k, v) in patch {
        if v.is_null() {
            object.remove(k);
        } else {
            merge_patch(object.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// A target as the group serves it: its id, and its port or else the group's (`{id:
/// 10.0.0.1}` and `{id: 10.0.0.1, port: 8080}` are one target of a group on 8080).
fn target_key(t: &Value, group_port: Option<u64>) -> (String, Option<u64>) {
    (
        t["id"].as_str().unwrap_or_default().to_owned(),
        t["port"].as_u64().or(group_port),
    )
}

/// The port a group's targets get when they name none: its `config.port`, else its
/// protocol's (as the validator fills it in).
fn group_port(group: &Value) -> Option<u64> {
    let config = &group["config"];
    config["port"]
        .as_u64()
        .or(match config["protocol"].as_str() {
            Some("HTTP") => Some(80),
            Some("HTTPS") => Some(443),
            _ => None,
        })
}

/// A group's targets, and the port of those that name none.
fn targets_of<'a>(
    doc: &'a mut Value,
    group: &str,
) -> Result<(&'a mut Vec<Value>, Option<u64>), ApiError> {
    let id = [group.to_owned()];
    let groups = collection(doc, Kind::TargetGroup, &[])?;
    let g = groups
        .iter_mut()
        .find(|g| key_of(Kind::TargetGroup, g) == group)
        .ok_or_else(|| not_found(Kind::TargetGroup, &id))?;
    let port = group_port(g);
    let object = g
        .as_object_mut()
        .ok_or_else(|| ApiError::validation("the target group is not an object"))?;
    let targets = object
        .entry("targets")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| ApiError::validation("targets is not a list"))?;
    Ok((targets, port))
}

fn check_targets(targets: &[Value]) -> Result<(), ApiError> {
    if targets.is_empty() || targets.len() > 100 {
        return Err(ApiError::field("targets", "must list 1 to 100 targets"));
    }
    for (i, t) in targets.iter().enumerate() {
        if t["id"].as_str().is_none_or(str::is_empty) {
            return Err(ApiError::field(format!("targets[{i}].id"), "is required"));
        }
    }
    Ok(())
}

/// RegisterTargets: adds the targets a group does not have yet (same id and port).
pub fn register_targets(
    doc: &mut Value,
    group: &str,
    targets: &[Value],
) -> Result<Vec<Value>, ApiError> {
    check_targets(targets)?;
    let (existing, port) = targets_of(doc, group)?;
    for t in targets {
        if !existing
            .iter()
            .any(|e| target_key(e, port) == target_key(t, port))
        {
            existing.push(t.clone());
        }
    }
    Ok(targets.to_vec())
}

/// DeregisterTargets: removes the targets; those the group does not have are
/// reported as unsuccessful, as Lattice does.
pub fn deregister_targets(
    doc: &mut Value,
    group: &str,
    targets: &[Value],
) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    check_targets(targets)?;
    let (existing, port) = targets_of(doc, group)?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for t in targets {
        match existing
            .iter()
            .position(|e| target_key(e, port) == target_key(t, port))
        {
            Some(at) => done.push(existing.remove(at)),
            None => failed.push(json!({
                "id": t["id"],
                "port": t["port"],
                "failureCode": "TargetNotFound",
                "failureMessage": "the target group has no such target",
            })),
        }
    }
    Ok((done, failed))
}

/// Where an auth policy lives: the service or service network the call's id or ARN
/// named, or the one of that name (a name both have is refused as ambiguous).
fn policy_holder<'a>(
    doc: &'a mut Value,
    resource: &PolicyResource,
) -> Result<&'a mut Map<String, Value>, ApiError> {
    let name = resource.name.as_str();
    let holds = |kind: Kind, field: &str| {
        resource.kind.is_none_or(|k| k == kind)
            && doc[field]
                .as_array()
                .is_some_and(|items| items.iter().any(|i| key_of(kind, i) == name))
    };
    let kind = match (
        holds(Kind::Service, "services"),
        holds(Kind::ServiceNetwork, "serviceNetworks"),
    ) {
        (true, false) => Kind::Service,
        (false, true) => Kind::ServiceNetwork,
        (true, true) => {
            return Err(ApiError::field(
                "resourceIdentifier",
                format!(
                    "{name:?} names both a service and a service network: give the id or ARN of the one you mean"
                ),
            ))
        }
        (false, false) => {
            return Err(ApiError::NotFound {
                resource_type: "SERVICE_OR_SERVICE_NETWORK",
                resource_id: name.to_owned(),
            })
        }
    };
    collection(doc, kind, &[])?
        .iter_mut()
        .find(|i| key_of(kind, i) == name)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::validation("the resource is not an object"))
}

pub fn put_auth_policy(
    doc: &mut Value,
    resource: &PolicyResource,
    policy: Value,
) -> Result<(), ApiError> {
    if !policy.is_object() {
        return Err(ApiError::field("policy", "must be a JSON policy document"));
    }
    policy_holder(doc, resource)?.insert("authPolicy".into(), policy);
    Ok(())
}

pub fn get_auth_policy(doc: &Value, resource: &PolicyResource) -> Result<Value, ApiError> {
    let mut doc = doc.clone();
    let holder = policy_holder(&mut doc, resource)?;
    Ok(json!({
        "policy": holder.get("authPolicy").cloned().unwrap_or(Value::Null),
        "state": if holder.get("authType").and_then(Value::as_str) == Some("AWS_IAM") {
            "Active"
        } else {
            "Inactive"
        },
    }))
}

pub fn delete_auth_policy(doc: &mut Value, resource: &PolicyResource) -> Result<(), ApiError> {
    policy_holder(doc, resource)?.remove("authPolicy");
    Ok(())
}

/// What changed between two documents, resource by resource: `+ kind id`, `- kind id`,
/// `~ kind id` lines, for `lattice apply`'s diff.
pub fn diff(before: &Value, after: &Value) -> Vec<String> {
    // One copy of each (collection() may add empty lists to what it walks).
    let (mut before, mut after) = (before.clone(), after.clone());
    let mut lines = Vec::new();
    for kind in Kind::ALL {
        let ids = |doc: &mut Value| -> Vec<(String, Value)> {
            let mut out = Vec::new();
            for parents in parent_ids(doc, kind) {
                if let Ok(items) = collection(doc, kind, &parents) {
                    for item in items.iter() {
                        let mut id = parents.clone();
                        id.push(key_of(kind, item));
                        out.push((id.join("/"), item.clone()));
                    }
                }
            }
            out
        };
        let (old, new) = (ids(&mut before), ids(&mut after));
        let old_by_id: HashMap<&str, &Value> =
            old.iter().map(|(id, item)| (id.as_str(), item)).collect();
        let new_ids: HashSet<&str> = new.iter().map(|(id, _)| id.as_str()).collect();
        for (id, item) in &new {
            let changed = match old_by_id.get(id.as_str()) {
                None => {
                    lines.push(format!("+ {} {id}", kind.plural()));
                    continue;
                }
                // A change inside a child resource is the child's line, not this one's.
                Some(was) if nests(kind) => shallow(kind, was) != shallow(kind, item),
                Some(was) => *was != item,
            };
            if changed {
                lines.push(format!("~ {} {id}", kind.plural()));
            }
        }
        for (id, _) in &old {
            if !new_ids.contains(id.as_str()) {
                lines.push(format!("- {} {id}", kind.plural()));
            }
        }
    }
    lines
}

/// Kinds whose items hold other kinds' items (a change there is the child's).
fn nests(kind: Kind) -> bool {
    matches!(kind, Kind::Service | Kind::Listener | Kind::ServiceNetwork)
}

/// An item without the children that are resources of their own.
fn shallow(kind: Kind, item: &Value) -> Value {
    let mut item = item.clone();
    if let Some(object) = item.as_object_mut() {
        let children: &[&str] = match kind {
            Kind::Service => &["listeners"],
            Kind::Listener => &["rules"],
            Kind::ServiceNetwork => &["vpcAssociations", "serviceAssociations"],
            _ => &[],
        };
        for c in children {
            object.remove(*c);
        }
    }
    item
}

/// Every parent id under which `kind`'s items can be found in `doc`.
fn parent_ids(doc: &Value, kind: Kind) -> Vec<Vec<String>> {
    let names = |v: &Value, k: Kind| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|i| key_of(k, i)).collect())
            .unwrap_or_default()
    };
    match kind.depth() {
        1 => vec![Vec::new()],
        _ => match kind {
            Kind::Listener => names(&doc["services"], Kind::Service)
                .into_iter()
                .map(|s| vec![s])
                .collect(),
            Kind::Rule => {
                let mut out = Vec::new();
                for s in doc["services"].as_array().into_iter().flatten() {
                    for l in names(&s["listeners"], Kind::Listener) {
                        out.push(vec![key_of(Kind::Service, s), l]);
                    }
                }
                out
            }
            _ => names(&doc["serviceNetworks"], Kind::ServiceNetwork)
                .into_iter()
                .map(|n| vec![n])
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "serviceNetworks": [{"name": "shop", "vpcAssociations": [{"vpc": "vpc-web"}], "serviceAssociations": ["orders"]}],
            "services": [{"name": "orders", "listeners": [{"name": "http", "rules": [{"name": "api", "priority": 10}]}]}],
            "targetGroups": [{"name": "app", "targets": [{"id": "10.0.0.1"}]}],
            "accessLogSubscriptions": [{"resource": "shop", "destination": "stdout"}],
        })
    }

    fn id(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn get_finds_every_kind_and_names_what_is_missing() {
        let d = doc();
        let rows: [(Kind, &[&str], Option<&str>); 9] = [
            (Kind::ServiceNetwork, &["shop"], Some("shop")),
            (Kind::Service, &["orders"], Some("orders")),
            (Kind::Listener, &["orders", "http"], Some("http")),
            (Kind::Rule, &["orders", "http", "api"], Some("api")),
            (Kind::TargetGroup, &["app"], Some("app")),
            (Kind::VpcAssociation, &["shop", "vpc-web"], Some("vpc-web")),
            (
                Kind::ServiceAssociation,
                &["shop", "orders"],
                Some("orders"),
            ),
            (Kind::Rule, &["orders", "http", "nope"], None),
            (Kind::Rule, &["orders", "nope", "api"], None),
        ];
        for (kind, parts, found) in rows {
            let got = get(&d, kind, &id(parts));
            match found {
                Some(key) => assert_eq!(key_of(kind, &got.unwrap()), key, "{kind:?} {parts:?}"),
                None => assert_eq!(got.unwrap_err().status(), 404, "{kind:?} {parts:?}"),
            }
        }
        assert_eq!(
            get(&d, Kind::Rule, &id(&["orders"])).unwrap_err().status(),
            400
        );
        let als = list(&d, Kind::AccessLogSubscription, &[]).unwrap();
        let als_id = key_of(Kind::AccessLogSubscription, &als[0]);
        assert!(als_id.starts_with("als-") && als_id.len() == 20, "{als_id}");
        assert_eq!(
            get(&d, Kind::AccessLogSubscription, &[als_id]).unwrap(),
            als[0]
        );
    }

    #[test]
    fn create_update_delete() {
        let mut d = doc();
        let rule = json!({"name": "admin", "priority": 20});
        create(&mut d, Kind::Rule, &id(&["orders", "http"]), rule).unwrap();
        let again = create(
            &mut d,
            Kind::Rule,
            &id(&["orders", "http"]),
            json!({"name": "admin"}),
        );
        assert_eq!(again.unwrap_err().status(), 409);
        let missing = create(
            &mut d,
            Kind::Rule,
            &id(&["orders", "h2"]),
            json!({"name": "x"}),
        );
        assert_eq!(missing.unwrap_err().status(), 404);
        let nameless = create(&mut d, Kind::Service, &[], json!({"authType": "NONE"}));
        assert_eq!(nameless.unwrap_err().status(), 400);

        let patched = update(
            &mut d,
            Kind::Rule,
            &id(&["orders", "http", "admin"]),
            &json!({"priority": 30, "match": null}),
        )
        .unwrap();
        assert_eq!(patched, json!({"name": "admin", "priority": 30}));
        let renamed = update(
            &mut d,
            Kind::Rule,
            &id(&["orders", "http", "admin"]),
            &json!({"name": "other"}),
        );
        assert_eq!(renamed.unwrap_err().status(), 400);

        delete(&mut d, Kind::Rule, &id(&["orders", "http", "admin"])).unwrap();
        assert_eq!(
            list(&d, Kind::Rule, &id(&["orders", "http"]))
                .unwrap()
                .len(),
            1
        );
        delete(&mut d, Kind::ServiceAssociation, &id(&["shop", "orders"])).unwrap();
        assert_eq!(d["serviceNetworks"][0]["serviceAssociations"], json!([]));
        let gone = delete(&mut d, Kind::Service, &id(&["nothing"]));
        assert_eq!(gone.unwrap_err().status(), 404);
    }

    #[test]
    fn a_subscription_moves_to_another_destination_and_keys_are_named_by_their_field() {
        let mut d = doc();
        let old = subscription_id(&json!({"resource": "shop", "destination": "stdout"}));
        let moved = update(
            &mut d,
            Kind::AccessLogSubscription,
            &id(&[&old]),
            &json!({"destination": "file:/var/log/lattice/shop.jsonl"}),
        )
        .unwrap();
        assert_eq!(moved["destination"], "file:/var/log/lattice/shop.jsonl");
        let new = subscription_id(&moved);
        assert_ne!(new, old, "the id follows the destination");
        assert!(get(&d, Kind::AccessLogSubscription, &id(&[&new])).is_ok());
        // Its resource stays; a VPC association's VPC too: each named as it is.
        for (kind, key, patch, field) in [
            (
                Kind::AccessLogSubscription,
                new.as_str(),
                json!({"resource": "orders"}),
                "resource",
            ),
            (
                Kind::VpcAssociation,
                "vpc-web",
                json!({"vpc": "vpc-app"}),
                "vpc",
            ),
        ] {
            let parents: &[&str] = if kind == Kind::VpcAssociation {
                &["shop"]
            } else {
                &[]
            };
            let ids = id(&[parents, &[key]].concat());
            let refused = update(&mut d, kind, &ids, &patch).unwrap_err();
            assert_eq!(refused.status(), 400);
            assert!(
                matches!(&refused, ApiError::Validation { fields, .. } if fields[0].name == field),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn quotas_are_402() {
        let mut d =
            json!({"services": [{"name": "s1", "listeners": [{"name": "a"}, {"name": "b"}]}]});
        let third = create(&mut d, Kind::Listener, &id(&["s1"]), json!({"name": "c"}));
        assert_eq!(third.unwrap_err().status(), 402);
    }

    #[test]
    fn targets_register_once_and_deregister_reports_unknown_ones() {
        let mut d = doc();
        let new = [
            json!({"id": "10.0.0.2", "port": 81}),
            json!({"id": "10.0.0.1"}),
        ];
        register_targets(&mut d, "app", &new).unwrap();
        assert_eq!(d["targetGroups"][0]["targets"].as_array().unwrap().len(), 2);
        let (done, failed) = deregister_targets(
            &mut d,
            "app",
            &[json!({"id": "10.0.0.1"}), json!({"id": "10.9.9.9"})],
        )
        .unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(failed[0]["failureCode"], "TargetNotFound");
        assert_eq!(
            register_targets(&mut d, "nope", &new).unwrap_err().status(),
            404
        );
        assert_eq!(
            register_targets(&mut d, "app", &[]).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn a_target_without_a_port_is_the_one_on_its_groups_port() {
        let mut d = doc();
        d["targetGroups"][0]["config"] = json!({"protocol": "HTTP", "port": 8080});
        // Listed without a port in the document (as the contract's orders-v2 is):
        // registering it with the group's port is a no-op, as Lattice's is.
        register_targets(&mut d, "app", &[json!({"id": "10.0.0.1", "port": 8080})]).unwrap();
        assert_eq!(d["targetGroups"][0]["targets"].as_array().unwrap().len(), 1);
        let (done, failed) =
            deregister_targets(&mut d, "app", &[json!({"id": "10.0.0.1", "port": 8080})]).unwrap();
        assert_eq!((done.len(), failed.len()), (1, 0), "{failed:?}");
        // A group without a port of its own: its protocol's (HTTP: 80).
        d["targetGroups"][0]["config"] = json!({"protocol": "HTTP"});
        register_targets(&mut d, "app", &[json!({"id": "10.0.0.3", "port": 80})]).unwrap();
        let (done, _) = deregister_targets(&mut d, "app", &[json!({"id": "10.0.0.3"})]).unwrap();
        assert_eq!(done.len(), 1);
        let (_, failed) =
            deregister_targets(&mut d, "app", &[json!({"id": "10.0.0.1", "port": 81})]).unwrap();
        assert_eq!(failed.len(), 1, "another port is another target");
    }

    #[test]
    fn auth_policies_on_services_and_networks() {
        let mut d = doc();
        let named = PolicyResource::named;
        let policy = json!({"Version": "2012-10-17", "Statement": []});
        put_auth_policy(&mut d, &named("orders"), policy.clone()).unwrap();
        assert_eq!(
            get_auth_policy(&d, &named("orders")).unwrap()["policy"],
            policy
        );
        put_auth_policy(&mut d, &named("shop"), policy.clone()).unwrap();
        delete_auth_policy(&mut d, &named("orders")).unwrap();
        assert_eq!(
            get_auth_policy(&d, &named("orders")).unwrap()["policy"],
            Value::Null
        );
        assert_eq!(
            put_auth_policy(&mut d, &named("nope"), policy)
                .unwrap_err()
                .status(),
            404
        );
    }

    #[test]
    fn a_policy_call_by_id_reaches_its_kind_when_a_service_and_a_network_share_a_name() {
        let mut d = doc();
        d["services"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "shop"}));
        let network = PolicyResource {
            name: "shop".into(),
            kind: Some(Kind::ServiceNetwork),
        };
        let service = PolicyResource {
            name: "shop".into(),
            kind: Some(Kind::Service),
        };
        let policy = json!({"Version": "2012-10-17", "Statement": []});
        put_auth_policy(&mut d, &network, policy.clone()).unwrap();
        assert_eq!(d["serviceNetworks"][0]["authPolicy"], policy);
        assert_eq!(
            d["services"][1].get("authPolicy"),
            None,
            "not the service's"
        );
        put_auth_policy(&mut d, &service, json!({"Version": "2012-10-17"})).unwrap();
        delete_auth_policy(&mut d, &network).unwrap();
        assert_eq!(d["serviceNetworks"][0].get("authPolicy"), None);
        assert!(d["services"][1].get("authPolicy").is_some());
        // By the name alone, either could be meant: refused, naming the way out.
        let ambiguous = get_auth_policy(&d, &PolicyResource::named("shop")).unwrap_err();
        assert_eq!(ambiguous.status(), 400);
        assert!(ambiguous.to_string().contains("id or ARN"), "{ambiguous}");
    }

    #[test]
    fn pages_cover_the_list_once() {
        let items: Vec<u32> = (0..250).collect();
        let mut seen = Vec::new();
        let mut page = Page {
            max_results: Some(100),
            next_token: None,
        };
        loop {
            let (chunk, next) = page.take(&items).unwrap();
            seen.extend(chunk);
            match next {
                Some(token) => page.next_token = Some(token),
                None => break,
            }
        }
        assert_eq!(seen, items);
        let bad = Page {
            max_results: Some(0),
            next_token: None,
        };
        assert_eq!(bad.take(&items).unwrap_err().status(), 400);
        let forged = Page {
            max_results: None,
            next_token: Some("zz".into()),
        };
        assert_eq!(forged.take(&items).unwrap_err().status(), 400);
    }

    #[test]
    fn diff_names_each_changed_resource() {
        let before = doc();
        let mut after = doc();
        update(
            &mut after,
            Kind::Rule,
            &id(&["orders", "http", "api"]),
            &json!({"priority": 11}),
        )
        .unwrap();
        create(&mut after, Kind::TargetGroup, &[], json!({"name": "app2"})).unwrap();
        delete(&mut after, Kind::VpcAssociation, &id(&["shop", "vpc-web"])).unwrap();
        assert_eq!(
            diff(&before, &after),
            [
                "~ rules orders/http/api",
                "+ targetgroups app2",
                "- servicenetworkvpcassociations shop/vpc-web",
            ]
        );
        assert!(diff(&before, &before).is_empty());
    }
}
