//! Resource identifiers as Lattice's API takes them. Its operations name a resource by
//! its id or its ARN (`serviceIdentifier`, `targetGroupIdentifier`, `resourceIdentifier`,
//! ...: "the ID or ARN"); lattice's API also takes the names of the document, which is
//! what the operations ([`super::ops`]) work on. [`to_names`] turns every id and ARN in
//! a call's path into the name it stands for, under the generation in force; anything
//! it does not recognise is left as a name (and is not found, if it is none).
//!
//! | path segment for | id or ARN of |
//! | --- | --- |
//! | a service network, a service, a target group | that resource (`sn-...`, `svc-...`, `tg-...`) |
//! | a listener, a rule | that resource, under the service (and listener) before it |
//! | a VPC association | the VPC (`vpc-...`) |
//! | a service association | the service |
//! | an auth policy's resource | a service or a service network |
//!
//! The bodies of the creates that name other resources take them too: a VPC
//! association's VPC, a service association's service, a subscription's resource.

use serde_json::Value;

use super::{ops::Kind, Call, PolicyResource};
use crate::resolve::Resolved;

/// What one path segment stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    ServiceNetwork,
    Service,
    Listener,
    Rule,
    TargetGroup,
    Vpc,
    /// An access log subscription's `als-` id, which is already its key.
    Subscription,
}

/// The segments that name a resource of `kind`, outermost first (its parents, then it).
fn segments(kind: Kind) -> &'static [Segment] {
    use Segment as S;
    match kind {
        Kind::ServiceNetwork => &[S::ServiceNetwork],
        Kind::Service => &[S::Service],
        Kind::Listener => &[S::Service, S::Listener],
        Kind::Rule => &[S::Service, S::Listener, S::Rule],
        Kind::TargetGroup => &[S::TargetGroup],
        Kind::VpcAssociation => &[S::ServiceNetwork, S::Vpc],
        Kind::ServiceAssociation => &[S::ServiceNetwork, S::Service],
        Kind::AccessLogSubscription => &[S::Subscription],
    }
}

/// `call` with the ids and ARNs of its path replaced by names.
pub fn to_names(resolved: &Resolved, mut call: Call) -> Call {
    match &mut call {
        Call::List { kind, parents, .. } => rename(resolved, segments(*kind), parents),
        Call::Create {
            kind,
            parents,
            item,
        } => {
            rename(resolved, segments(*kind), parents);
            let (field, kinds): (Option<&mut Value>, &[Segment]) = match kind {
                Kind::VpcAssociation => (item.get_mut("vpc"), &[Segment::Vpc]),
                Kind::ServiceAssociation => (Some(item), &[Segment::Service]),
                Kind::AccessLogSubscription => (
                    item.get_mut("resource"),
                    &[Segment::Service, Segment::ServiceNetwork],
                ),
                _ => (None, &[]),
            };
            if let Some(Value::String(text)) = field {
                for kind in kinds {
                    rename(
                        resolved,
                        std::slice::from_ref(kind),
                        std::slice::from_mut(text),
                    );
                }
            }
        }
        Call::Get { kind, id } | Call::Update { kind, id, .. } | Call::Delete { kind, id } => {
            rename(resolved, segments(*kind), id);
        }
        Call::RegisterTargets { group, .. }
        | Call::DeregisterTargets { group, .. }
        | Call::ListTargets { group, .. } => {
            rename(
                resolved,
                &[Segment::TargetGroup],
                std::slice::from_mut(group),
            );
        }
        Call::PutAuthPolicy { resource, .. }
        | Call::GetAuthPolicy { resource }
        | Call::DeleteAuthPolicy { resource } => policy_resource(resolved, resource),
        Call::GetDocument | Call::PutDocument { .. } | Call::Stats => {}
    }
    call
}

/// Names an auth policy's resource given by id or ARN, and keeps which kind it is: a
/// service and a service network may have one name, and the id said which.
fn policy_resource(resolved: &Resolved, resource: &mut PolicyResource) {
    let given = resource.name.as_str();
    let matches = |id: &str, arn: &str| given == id || given == arn;
    let found = if let Some(s) = resolved.services.iter().find(|s| matches(&s.id, &s.arn)) {
        Some((s.name.clone(), Kind::Service))
    } else {
        resolved
            .service_networks
            .iter()
            .find(|n| matches(&n.id, &n.arn))
            .map(|n| (n.name.clone(), Kind::ServiceNetwork))
    };
    if let Some((name, kind)) = found {
        resource.name = name;
        resource.kind = Some(kind);
    }
}

/// Renames `path` (as many segments as it has, from the outermost of `kinds`) in place.
fn rename(resolved: &Resolved, kinds: &[Segment], path: &mut [String]) {
    // The service a listener or rule segment is under, and the listener a rule is.
    let mut service = None;
    let mut listener = None;
    for (kind, segment) in kinds.iter().zip(path.iter_mut()) {
        let matches = |id: &str, arn: &str| *segment == id || *segment == arn;
        let found = match kind {
            Segment::ServiceNetwork => resolved
                .service_networks
                .iter()
                .find(|n| matches(&n.id, &n.arn))
                .map(|n| n.name.clone()),
            Segment::Service => {
                let s = resolved
                    .services
                    .iter()
                    .position(|s| matches(&s.id, &s.arn) || s.name == *segment);
                service = s;
                s.map(|s| resolved.services[s].name.clone())
            }
            Segment::Listener => {
                let listeners = service.map_or(&[][..], |s| &resolved.services[s].listeners);
                let l = listeners
                    .iter()
                    .position(|l| matches(&l.id, &l.arn) || l.name == *segment);
                listener = l;
                l.map(|l| listeners[l].name.clone())
            }
            Segment::Rule => service
                .zip(listener)
                .and_then(|(s, l)| {
                    resolved.services[s].listeners[l]
                        .rules
                        .iter()
                        .find(|r| matches(&r.id, &r.arn))
                })
                .map(|r| r.name.clone()),
            Segment::TargetGroup => resolved
                .target_groups
                .iter()
                .find(|g| matches(&g.id, &g.arn))
                .map(|g| g.name.clone()),
            Segment::Vpc => resolved
                .vpcs
                .iter()
                .find(|v| matches(&v.id, &v.arn))
                .map(|v| v.name.clone()),
            Segment::Subscription => None,
        };
        if let Some(name) = found {
            *segment = name;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ops::Page;

    const DOC: &str = r#"
accounts: [{ id: "111111111111" }]
vpcs:
  - { name: vpc-web, account: "111111111111", cidr: 10.91.0.0/16, attachments: [{ netns: web }] }
  - { name: vpc-orders, account: "111111111111", cidr: 10.92.0.0/16, attachments: [{ netns: orders }] }
serviceNetworks:
  - { name: shop, account: "111111111111", authType: NONE, vpcAssociations: [{ vpc: vpc-web }], serviceAssociations: [orders] }
services:
  - name: orders
    account: "111111111111"
    authType: NONE
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        defaultAction: { fixedResponse: { statusCode: 404 } }
        rules:
          - { name: admin, priority: 10, match: { httpMatch: { pathMatch: { match: { prefix: /admin } } } }, action: { fixedResponse: { statusCode: 500 } } }
targetGroups:
  - { name: orders-v1, type: IP, config: { vpcIdentifier: vpc-orders, protocol: HTTP, port: 8080 }, targets: [{ id: 10.92.0.1 }] }
"#;

    fn get(kind: Kind, id: &[&str]) -> Call {
        Call::Get {
            kind,
            id: id.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn ids_and_arns_become_names_and_names_stay() {
        let (_, r) = crate::resolve::resolved_for_test(DOC);
        let service = &r.services[0];
        let listener = &service.listeners[0];
        let rule = &listener.rules[0];
        let network = &r.service_networks[0];
        let group = &r.target_groups[0];
        let vpc = r.vpcs.iter().find(|v| v.name == "vpc-web").unwrap();
        let rule_path = ["orders", "http", "admin"];
        for (kind, given, names) in [
            (Kind::Service, vec![service.id.as_str()], &["orders"][..]),
            (Kind::Service, vec![&service.arn], &["orders"]),
            (Kind::Service, vec!["orders"], &["orders"]),
            (Kind::ServiceNetwork, vec![&network.id], &["shop"]),
            (Kind::ServiceNetwork, vec![&network.arn], &["shop"]),
            (Kind::TargetGroup, vec![&group.id], &["orders-v1"]),
            (Kind::TargetGroup, vec![&group.arn], &["orders-v1"]),
            (
                Kind::Listener,
                vec![&service.id, &listener.id],
                &["orders", "http"],
            ),
            (
                Kind::Listener,
                vec!["orders", &listener.arn],
                &["orders", "http"],
            ),
            (
                Kind::Rule,
                vec![&service.arn, &listener.id, &rule.id],
                &rule_path,
            ),
            (Kind::Rule, vec!["orders", "http", &rule.arn], &rule_path),
            (
                Kind::VpcAssociation,
                vec![&network.id, &vpc.id],
                &["shop", "vpc-web"],
            ),
            (
                Kind::VpcAssociation,
                vec!["shop", &vpc.arn],
                &["shop", "vpc-web"],
            ),
            (
                Kind::ServiceAssociation,
                vec!["shop", &service.id],
                &["shop", "orders"],
            ),
            // Unknown identifiers stay, to be reported as not found.
            (
                Kind::Service,
                vec!["svc-0000000000000000"],
                &["svc-0000000000000000"],
            ),
            (
                Kind::Listener,
                vec!["nothing", &listener.id],
                &["nothing", &listener.id],
            ),
        ] {
            let expected = get(kind, names);
            assert_eq!(
                to_names(&r, get(kind, &given)),
                expected,
                "{kind:?} {given:?}"
            );
        }
    }

    #[test]
    fn creates_take_identifiers_for_the_resources_they_name() {
        let (_, r) = crate::resolve::resolved_for_test(DOC);
        let vpc = r.vpcs.iter().find(|v| v.name == "vpc-web").unwrap();
        for (kind, item, expected) in [
            (
                Kind::VpcAssociation,
                serde_json::json!({ "vpc": vpc.arn, "allowedCidrs": ["10.91.0.0/24"] }),
                serde_json::json!({ "vpc": "vpc-web", "allowedCidrs": ["10.91.0.0/24"] }),
            ),
            (
                Kind::ServiceAssociation,
                Value::String(r.services[0].id.clone()),
                Value::String("orders".into()),
            ),
            (
                Kind::AccessLogSubscription,
                serde_json::json!({ "resource": r.service_networks[0].id, "destination": "stdout" }),
                serde_json::json!({ "resource": "shop", "destination": "stdout" }),
            ),
        ] {
            let parents = match kind {
                Kind::AccessLogSubscription => vec![],
                _ => vec![r.service_networks[0].arn.clone()],
            };
            let call = to_names(
                &r,
                Call::Create {
                    kind,
                    parents,
                    item,
                },
            );
            let Call::Create { parents, item, .. } = call else {
                unreachable!()
            };
            assert_eq!(item, expected, "{kind:?}");
            assert!(parents.iter().all(|p| p == "shop"), "{kind:?}: {parents:?}");
        }
    }

    #[test]
    fn targets_lists_and_auth_policies_take_identifiers_too() {
        let (_, r) = crate::resolve::resolved_for_test(DOC);
        let group = r.target_groups[0].arn.clone();
        let call = to_names(
            &r,
            Call::ListTargets {
                group,
                page: Page::default(),
            },
        );
        assert!(matches!(call, Call::ListTargets { group, .. } if group == "orders-v1"));
        let listed = to_names(
            &r,
            Call::List {
                kind: Kind::Rule,
                parents: vec![
                    r.services[0].arn.clone(),
                    r.services[0].listeners[0].id.clone(),
                ],
                page: Page::default(),
            },
        );
        assert!(
            matches!(&listed, Call::List { parents, .. } if parents == &["orders", "http"]),
            "{listed:?}"
        );
        for (given, name, kind) in [
            (r.services[0].id.clone(), "orders", Some(Kind::Service)),
            (
                r.service_networks[0].arn.clone(),
                "shop",
                Some(Kind::ServiceNetwork),
            ),
            // A name says no kind: the document decides (or finds it ambiguous).
            ("shop".to_owned(), "shop", None),
            ("orders".to_owned(), "orders", None),
        ] {
            let resource = PolicyResource::named(given);
            let call = to_names(&r, Call::GetAuthPolicy { resource });
            assert_eq!(
                call,
                Call::GetAuthPolicy {
                    resource: PolicyResource {
                        name: name.to_owned(),
                        kind
                    }
                }
            );
        }
    }
}
