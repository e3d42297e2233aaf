//! From an HTTP request to a [`Call`]: Lattice's REST paths (`/services/{name}`,
//! `/services/{s}/listeners/{l}/rules`, `/targetgroups/{name}/registertargets`, ...),
//! plus the document as a whole (`/document`) and live counters (`/stats`). Resources
//! are named by their names in the document; request bodies are the document's
//! resource shapes (what `lattice describe` prints), and the association and
//! subscription calls also take Lattice's `...Identifier` fields.

use http::Method;
use serde_json::{json, Value};

use super::{
    error::ApiError,
    ops::{Kind, Page},
    Call, PolicyResource,
};
use crate::{live::Document, percent};

/// The query parameters of a request, percent-decoded.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_query(k), decode_query(v))
        })
        .collect()
}

/// A query string's key or value: form-encoded, so `+` is a space (a `+` itself comes
/// as `%2B`).
fn decode_query(text: &str) -> String {
    percent::decode_text(&text.replace('+', " "))
}

/// A path segment: `+` is itself there.
fn decode_segment(text: &str) -> String {
    percent::decode_text(text)
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn page(query: &[(String, String)]) -> Result<Page, ApiError> {
    let max_results = match param(query, "maxResults") {
        None => None,
        Some(n) => Some(
            n.parse()
                .map_err(|_| ApiError::field("maxResults", format!("{n:?} is not a number")))?,
        ),
    };
    Ok(Page {
        max_results,
        next_token: param(query, "nextToken").map(str::to_owned),
    })
}

fn kind_of(segment: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.plural() == segment)
}

fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("the request body is not JSON: {e}")))
}

fn string_field(body: &Value, names: &[&str]) -> Result<String, ApiError> {
    names
        .iter()
        .find_map(|n| body[*n].as_str())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::field(names[0], "is required"))
}

/// The call a request makes. `if_match`: the `If-Match` header (a generation).
pub fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
    if_match: Option<&str>,
    body: &[u8],
) -> Result<Call, ApiError> {
    let query = query_pairs(query);
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let unknown = || {
        ApiError::validation(format!(
            "no operation {method} {path} (see `lattice --help`)"
        ))
    };
    let call = match (method.clone(), segs.as_slice()) {
        (Method::GET, ["document"]) => Call::GetDocument,
        (Method::PUT, ["document"]) => {
            let body = body_json(body)?;
            let text = string_field(&body, &["text"])?;
            let source = string_field(&body, &["source"])?;
            let if_generation = match if_match {
                None => None,
                Some(g) => Some(g.trim_matches('"').parse().map_err(|_| {
                    ApiError::field("If-Match", format!("{g:?} is not a generation"))
                })?),
            };
            Call::PutDocument {
                document: Document::from_api(source.into(), text),
                dry_run: param(&query, "dryRun") == Some("true"),
                if_generation,
            }
        }
        (Method::GET, ["stats"]) => Call::Stats,
        (_, ["authpolicy", resource]) => {
            let resource = PolicyResource::named(*resource);
            match *method {
                Method::GET => Call::GetAuthPolicy { resource },
                Method::DELETE => Call::DeleteAuthPolicy { resource },
                Method::PUT => {
                    let body = body_json(body)?;
                    let policy = match &body["policy"] {
                        // Lattice sends the policy as a JSON string.
                        Value::String(text) => serde_json::from_str(text)
                            .map_err(|e| ApiError::field("policy", format!("is not JSON: {e}")))?,
                        Value::Null => return Err(ApiError::field("policy", "is required")),
                        other => other.clone(),
                    };
                    Call::PutAuthPolicy { resource, policy }
                }
                _ => return Err(unknown()),
            }
        }
        (Method::POST, ["targetgroups", group, action]) => {
            let group = group.to_string();
            let body = body_json(body)?;
            let targets = || body["targets"].as_array().cloned().unwrap_or_default();
            match *action {
                "registertargets" => Call::RegisterTargets {
                    group,
                    targets: targets(),
                },
                "deregistertargets" => Call::DeregisterTargets {
                    group,
                    targets: targets(),
                },
                "listtargets" => Call::ListTargets {
                    group,
                    page: page(&query)?,
                },
                _ => return Err(unknown()),
            }
        }
        (method, segs) => return resource_call(&method, segs, &query, body).ok_or_else(unknown)?,
    };
    Ok(call)
}

/// The CRUD calls: `/<plural>`, `/<plural>/<id...>`, and the nested listeners and rules.
fn resource_call(
    method: &Method,
    segs: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> Option<Result<Call, ApiError>> {
    // (kind, parents, id-or-none)
    let (kind, parents, key): (Kind, Vec<String>, Option<Vec<String>>) = match segs {
        ["services", s, "listeners", l, "rules"] => {
            (Kind::Rule, vec![s.to_string(), l.to_string()], None)
        }
        ["services", s, "listeners", l, "rules", r] => (
            Kind::Rule,
            vec![s.to_string(), l.to_string()],
            Some(vec![r.to_string()]),
        ),
        ["services", s, "listeners"] => (Kind::Listener, vec![s.to_string()], None),
        ["services", s, "listeners", l] => (
            Kind::Listener,
            vec![s.to_string()],
            Some(vec![l.to_string()]),
        ),
        [plural] => {
            let kind = kind_of(plural)?;
            let parents = match kind {
                Kind::VpcAssociation | Kind::ServiceAssociation => {
                    match param(query, "serviceNetworkIdentifier") {
                        Some(n) => vec![n.to_owned()],
                        None if *method == Method::POST => Vec::new(),
                        None => {
                            return Some(Err(ApiError::field(
                                "serviceNetworkIdentifier",
                                "is required to list associations",
                            )))
                        }
                    }
                }
                _ => Vec::new(),
            };
            (kind, parents, None)
        }
        [plural, rest @ ..] => {
            let kind = kind_of(plural)?;
            let id: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let parents = id[..id.len() - 1].to_vec();
            (kind, parents, Some(id[id.len() - 1..].to_vec()))
        }
        [] => return None,
    };
    let call = || -> Result<Call, ApiError> {
        let full_id = |key: &[String]| [parents.clone(), key.to_vec()].concat();
        Ok(match (method, key) {
            (&Method::GET, None) => Call::List {
                kind,
                parents: parents.clone(),
                page: page(query)?,
            },
            (&Method::POST, None) => {
                let (parents, item) = create_body(kind, parents.clone(), body_json(body)?)?;
                Call::Create {
                    kind,
                    parents,
                    item,
                }
            }
            (&Method::GET, Some(key)) => Call::Get {
                kind,
                id: full_id(&key),
            },
            (&Method::PATCH, Some(key)) => Call::Update {
                kind,
                id: full_id(&key),
                patch: body_json(body)?,
            },
            (&Method::DELETE, Some(key)) => Call::Delete {
                kind,
                id: full_id(&key),
            },
            _ => {
                return Err(ApiError::validation(format!(
                    "no operation {method} on {}",
                    segs.join("/")
                )))
            }
        })
    };
    Some(call())
}

/// A create request's parents and the item as the document writes it: associations
/// and subscriptions also take Lattice's identifier fields.
fn create_body(
    kind: Kind,
    parents: Vec<String>,
    body: Value,
) -> Result<(Vec<String>, Value), ApiError> {
    Ok(match kind {
        Kind::VpcAssociation => {
            let network = string_field(&body, &["serviceNetworkIdentifier"])?;
            let vpc = string_field(&body, &["vpcIdentifier", "vpc"])?;
            let mut item = json!({ "vpc": vpc });
            if let Some(cidrs) = body.get("allowedCidrs") {
                item["allowedCidrs"] = cidrs.clone();
            }
            (vec![network], item)
        }
        Kind::ServiceAssociation => {
            let network = string_field(&body, &["serviceNetworkIdentifier"])?;
            let service = string_field(&body, &["serviceIdentifier", "service"])?;
            (vec![network], Value::String(service))
        }
        Kind::AccessLogSubscription => {
            let resource = string_field(&body, &["resourceIdentifier", "resource"])?;
            let destination = string_field(&body, &["destinationArn", "destination"])?;
            (
                parents,
                json!({ "resource": resource, "destination": destination }),
            )
        }
        _ => (parents, body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: Method, path: &str, body: &str) -> Result<Call, ApiError> {
        let (path, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        route(&method, path, query, None, body.as_bytes())
    }

    fn id(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn lattice_paths_map_to_calls() {
        let rows: Vec<(Method, &str, &str, Call)> = vec![
            (
                Method::GET,
                "/services",
                "",
                Call::List {
                    kind: Kind::Service,
                    parents: vec![],
                    page: Page::default(),
                },
            ),
            (
                Method::GET,
                "/services/orders",
                "",
                Call::Get {
                    kind: Kind::Service,
                    id: id(&["orders"]),
                },
            ),
            (
                Method::DELETE,
                "/targetgroups/app",
                "",
                Call::Delete {
                    kind: Kind::TargetGroup,
                    id: id(&["app"]),
                },
            ),
            (
                Method::GET,
                "/services/orders/listeners/http/rules?maxResults=5&nextToken=n5",
                "",
                Call::List {
                    kind: Kind::Rule,
                    parents: id(&["orders", "http"]),
                    page: Page {
                        max_results: Some(5),
                        next_token: Some("n5".into()),
                    },
                },
            ),
            (
                Method::PATCH,
                "/services/orders/listeners/http/rules/api",
                r#"{"priority": 3}"#,
                Call::Update {
                    kind: Kind::Rule,
                    id: id(&["orders", "http", "api"]),
                    patch: json!({"priority": 3}),
                },
            ),
            (
                Method::POST,
                "/services/orders/listeners",
                r#"{"name": "h"}"#,
                Call::Create {
                    kind: Kind::Listener,
                    parents: id(&["orders"]),
                    item: json!({"name": "h"}),
                },
            ),
            (
                Method::POST,
                "/servicenetworkvpcassociations",
                r#"{"serviceNetworkIdentifier": "shop", "vpcIdentifier": "vpc-web"}"#,
                Call::Create {
                    kind: Kind::VpcAssociation,
                    parents: id(&["shop"]),
                    item: json!({"vpc": "vpc-web"}),
                },
            ),
            (
                Method::GET,
                "/servicenetworkserviceassociations?serviceNetworkIdentifier=shop",
                "",
                Call::List {
                    kind: Kind::ServiceAssociation,
                    parents: id(&["shop"]),
                    page: Page::default(),
                },
            ),
            (
                Method::DELETE,
                "/servicenetworkserviceassociations/shop/orders",
                "",
                Call::Delete {
                    kind: Kind::ServiceAssociation,
                    id: id(&["shop", "orders"]),
                },
            ),
            (
                Method::POST,
                "/targetgroups/app/registertargets",
                r#"{"targets": [{"id": "10.0.0.1"}]}"#,
                Call::RegisterTargets {
                    group: "app".into(),
                    targets: vec![json!({"id": "10.0.0.1"})],
                },
            ),
            (
                Method::POST,
                "/targetgroups/app/listtargets",
                "",
                Call::ListTargets {
                    group: "app".into(),
                    page: Page::default(),
                },
            ),
            (
                Method::PUT,
                "/authpolicy/orders",
                r#"{"policy": "{\"Version\": \"2012-10-17\"}"}"#,
                Call::PutAuthPolicy {
                    resource: PolicyResource::named("orders"),
                    policy: json!({"Version": "2012-10-17"}),
                },
            ),
            (Method::GET, "/stats", "", Call::Stats),
        ];
        for (method, path, body, expected) in rows {
            assert_eq!(
                call(method.clone(), path, body).unwrap(),
                expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn bad_requests_are_validation_errors() {
        for (method, path, body) in [
            (Method::GET, "/nothing", ""),
            (Method::POST, "/services", "not json"),
            (Method::GET, "/servicenetworkvpcassociations", ""),
            (Method::GET, "/services?maxResults=many", ""),
            (Method::PUT, "/authpolicy/orders", "{}"),
            (Method::PUT, "/document", r#"{"text": "{}"}"#),
        ] {
            let e = call(method.clone(), path, body).unwrap_err();
            assert_eq!(e.status(), 400, "{method} {path}: {e}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode_query("a%2Fb+c%2B"), "a/b c+");
        assert_eq!(decode_query("100%"), "100%");
        assert_eq!(decode_segment("orders+v2%2F"), "orders+v2/");
        // Once a panic: a two-byte slice that split the `é`.
        assert_eq!(decode_segment("%a\u{e9}"), "%a\u{e9}");
        assert_eq!(decode_query("%a\u{e9}"), "%a\u{e9}");
    }
}
