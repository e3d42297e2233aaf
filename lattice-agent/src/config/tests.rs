//! Tables of invalid documents, each one mutation of a small valid base document and
//! each with its own precise error; and the contract document, in YAML and JSON.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;

/// A small valid document that exercises every kind of resource.
const BASE: &str = r#"
accounts:
  - id: "111111111111"
    mtlsCaFile: certs/ca.pem
    principals:
      - name: web
        type: role
        mtlsSubjects: [spiffe://lattice/account/111111111111/role/web]
        accessKeys:
          - { accessKeyId: LKIAWEB0000000000001, secretFile: secrets/web.key }
  - id: "222222222222"
vpcs:
  - name: vpc-web
    account: "111111111111"
    cidr: 10.91.0.0/16
    attachments: [{ netns: lt-web }, { cgroup: lattice/web }]
  - name: vpc-app
    account: "111111111111"
    cidr: 10.92.0.0/16
    attachments: [{ netns: lt-app }]
  - name: vpc-b
    account: "222222222222"
    cidr: 10.93.0.0/16
    attachments: [{ netns: lt-b }]
serviceNetworks:
  - name: net
    account: "111111111111"
    authType: NONE
    vpcAssociations: [{ vpc: vpc-web, allowedCidrs: [10.91.0.0/24] }]
    serviceAssociations: [api, sql]
services:
  - name: api
    account: "111111111111"
    customDomainName: api.example.internal
    certificate: { certFile: certs/api.pem, keyFile: certs/api.key }
    authType: AWS_IAM
    authPolicy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal: { AWS: ["arn:lattice:iam::111111111111:role/web"] }
          Action: vpc-lattice-svcs:Invoke
          Resource: "*"
          Condition:
            StringEquals: { "vpc-lattice-svcs:RequestMethod": [GET, POST] }
    listeners:
      - name: https
        protocol: HTTPS
        port: 443
        defaultAction: { fixedResponse: { statusCode: 404 } }
        rules:
          - name: v1-get
            priority: 10
            match:
              httpMatch:
                method: GET
                pathMatch: { match: { prefix: /v1/ } }
                headerMatches: [{ name: x-env, match: { exact: prod } }]
            action: { forward: { targetGroups: [{ targetGroupIdentifier: api-v1, weight: 100 }] } }
  - name: sql
    account: "111111111111"
    authType: NONE
    listeners:
      - name: pg
        protocol: TCP
        port: 5432
        defaultAction: { forward: { targetGroups: [{ targetGroupIdentifier: sql, weight: 100 }] } }
targetGroups:
  - name: api-v1
    type: IP
    config:
      vpcIdentifier: vpc-app
      protocol: HTTP
      protocolVersion: HTTP1
      port: 8080
      healthCheck: { enabled: true, path: /healthz }
    targets: [{ id: 10.92.0.10 }]
  - name: sql
    type: IP
    config: { vpcIdentifier: vpc-app, protocol: TCP, port: 5432 }
    targets: [{ id: 10.92.0.20 }]
accessLogSubscriptions:
  - { resource: net, destination: stdout }
"#;

const CONTRACT_IN_REPO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/config-contract.yaml"
);
const CONTRACT_SHARED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/config-contract.yaml"
);

fn base() -> Value {
    serde_norway::from_str(BASE).expect("BASE is YAML")
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while !rest.is_empty() {
            let (index, after) = rest.split_once(']').expect("closing bracket");
            out.push(Seg::Index(index.parse().expect("index")));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

/// The value at `path` (`a.b[0].c`), creating missing object keys.
fn at<'v>(v: &'v mut Value, path: &str) -> &'v mut Value {
    let mut cur = v;
    for seg in segments(path) {
        cur = match seg {
            Seg::Key(key) => {
                if cur.is_null() {
                    *cur = json!({});
                }
                cur.as_object_mut()
                    .unwrap_or_else(|| panic!("{path}: {key} of a non-object"))
                    .entry(key)
                    .or_insert(Value::Null)
            }
            Seg::Index(i) => cur
                .get_mut(i)
                .unwrap_or_else(|| panic!("{path}: no element {i}")),
        };
    }
    cur
}

fn set(v: &mut Value, path: &str, new: Value) {
    *at(v, path) = new;
}

fn push(v: &mut Value, path: &str, item: Value) {
    let list = at(v, path);
    if list.is_null() {
        *list = json!([]);
    }
    list.as_array_mut().expect("a list").push(item);
}

fn remove(v: &mut Value, path: &str) {
    let (parent, key) = path.rsplit_once('.').expect("a parent");
    at(v, parent)
        .as_object_mut()
        .expect("an object")
        .remove(key);
}

fn parse_value(v: &Value) -> Result<Config, ConfigError> {
    let yaml = serde_norway::to_string(v).expect("to YAML");
    parse_str(&yaml, Path::new("base.yaml"))
}

fn valid_policy() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*"}]})
}

fn http_tg(name: &str) -> Value {
    json!({"name": name, "type": "IP", "config": {"vpcIdentifier": "vpc-app", "protocol": "HTTP", "port": 8080}})
}

fn tcp_tg(name: &str, vpc: &str) -> Value {
    json!({"name": name, "type": "IP", "config": {"vpcIdentifier": vpc, "protocol": "TCP", "port": 5432}})
}

fn fixed_404() -> Value {
    json!({"fixedResponse": {"statusCode": 404}})
}

fn get_rule(name: &str, priority: i64) -> Value {
    json!({"name": name, "priority": priority, "match": {"httpMatch": {"method": "POST"}}, "action": fixed_404()})
}

const RULE0: &str = "services[0].listeners[0].rules[0]";
const HC: &str = "targetGroups[0].config.healthCheck";

struct Case {
    what: &'static str,
    mutate: fn(&mut Value),
    kind: ResourceKind,
    /// The resource's name, or `#N` for an unnamed one.
    resource: &'static str,
    field: &'static str,
    message: &'static str,
}

use ResourceKind::{
    AccessLogSubscription as L, Account as A, ResourceShare as RS, Service as S,
    ServiceNetwork as N, TargetGroup as TG, Vpc as V,
};

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // accounts and principals
        Case { what: "account id not 12 digits", mutate: |d| push(d, "accounts", json!({"id": "1234"})),
            kind: A, resource: "1234", field: "id", message: "\"1234\" is not an account id (12 digits)" },
        Case { what: "duplicate account id", mutate: |d| push(d, "accounts", json!({"id": "222222222222"})),
            kind: A, resource: "222222222222", field: "id", message: "duplicate account id 222222222222" },
        Case { what: "principal name with a space", mutate: |d| push(d, "accounts[0].principals", json!({"name": "bad name", "type": "role"})),
            kind: A, resource: "111111111111", field: "principals[1].name", message: "is not a valid principal name" },
        Case { what: "principal type", mutate: |d| push(d, "accounts[0].principals", json!({"name": "ops", "type": "group"})),
            kind: A, resource: "111111111111", field: "principals[1].type", message: "\"group\" is not a principal type (role or user)" },
        Case { what: "access key id reused", mutate: |d| push(d, "accounts[0].principals", json!({"name": "ops", "type": "role", "accessKeys": [{"accessKeyId": "LKIAWEB0000000000001", "secretFile": "x"}]})),
            kind: A, resource: "111111111111", field: "principals[1].accessKeys[0].accessKeyId", message: "already belongs to role \"web\"" },
        Case { what: "mTLS subject not a URI", mutate: |d| set(d, "accounts[0].principals[0].mtlsSubjects[0]", json!("not a uri")),
            kind: A, resource: "111111111111", field: "principals[0].mtlsSubjects[0]", message: "is not a URI" },
        Case { what: "principal tag key with a reserved prefix", mutate: |d| set(d, "accounts[0].principals[0].tags", json!({"aws:team": "a"})),
            kind: A, resource: "111111111111", field: "principals[0].tags.aws:team", message: "the prefix aws: is reserved" },
        Case { what: "principal tag value with a forbidden character", mutate: |d| set(d, "accounts[0].principals[0].tags", json!({"team": "a;b"})),
            kind: A, resource: "111111111111", field: "principals[0].tags.team", message: "must be 0-256 letters" },
        // vpcs
        Case { what: "vpc name with capitals", mutate: |d| set(d, "vpcs[2].name", json!("Vpc-B")),
            kind: V, resource: "Vpc-B", field: "name", message: "the valid characters are a-z, 0-9 and hyphens (-)" },
        Case { what: "vpc account not declared", mutate: |d| set(d, "vpcs[2].account", json!("333333333333")),
            kind: V, resource: "vpc-b", field: "account", message: "account 333333333333 is not declared in accounts" },
        Case { what: "cidr not a CIDR", mutate: |d| set(d, "vpcs[2].cidr", json!("10.93.0.0/33")),
            kind: V, resource: "vpc-b", field: "cidr", message: "is not an IPv4 CIDR" },
        Case { what: "cidr with host bits", mutate: |d| set(d, "vpcs[2].cidr", json!("10.93.0.1/16")),
            kind: V, resource: "vpc-b", field: "cidr", message: "10.93.0.1/16 has host bits set; the network is 10.93.0.0/16" },
        Case { what: "cidr too large", mutate: |d| set(d, "vpcs[2].cidr", json!("10.0.0.0/8")),
            kind: V, resource: "vpc-b", field: "cidr", message: "the prefix must be between /16 and /28" },
        Case { what: "attachment with netns and cgroup", mutate: |d| set(d, "vpcs[2].attachments[0]", json!({"netns": "x", "cgroup": "y"})),
            kind: V, resource: "vpc-b", field: "attachments[0]", message: "either { netns: NAME } or { cgroup: PATH }" },
        Case { what: "namespace in two vpcs", mutate: |d| set(d, "vpcs[2].attachments[0].netns", json!("lt-web")),
            kind: V, resource: "vpc-b", field: "attachments[0]", message: "already attached to vpc \"vpc-web\"" },
        Case { what: "absolute cgroup", mutate: |d| set(d, "vpcs[0].attachments[1].cgroup", json!("/lattice/web")),
            kind: V, resource: "vpc-web", field: "attachments[1].cgroup", message: "must be relative to the cgroup2 mount" },
        Case { what: "duplicate vpc name", mutate: |d| push(d, "vpcs", json!({"name": "vpc-b", "account": "222222222222", "cidr": "10.94.0.0/16"})),
            kind: V, resource: "vpc-b", field: "name", message: "duplicate vpc name \"vpc-b\" (first declared as vpcs[2])" },
        // services
        Case { what: "service name of 41 characters", mutate: |d| push(d, "services", json!({"name": "a".repeat(41), "account": "111111111111"})),
            kind: S, resource: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", field: "name", message: "must be 3-40 characters long (is 41)" },
        Case { what: "service name with the id prefix", mutate: |d| push(d, "services", json!({"name": "svc-extra", "account": "111111111111"})),
            kind: S, resource: "svc-extra", field: "name", message: "can't begin with \"svc-\"" },
        Case { what: "service name with two hyphens", mutate: |d| push(d, "services", json!({"name": "ex--tra", "account": "111111111111"})),
            kind: S, resource: "ex--tra", field: "name", message: "a hyphen can't follow another hyphen" },
        Case { what: "duplicate service name", mutate: |d| push(d, "services", json!({"name": "sql", "account": "111111111111"})),
            kind: S, resource: "sql", field: "name", message: "duplicate service name \"sql\" (first declared as services[1])" },
        Case { what: "service account not declared", mutate: |d| push(d, "services", json!({"name": "extra", "account": "333333333333"})),
            kind: S, resource: "extra", field: "account", message: "account 333333333333 is not declared" },
        Case { what: "custom domain name", mutate: |d| set(d, "services[0].customDomainName", json!("bad_domain.internal")),
            kind: S, resource: "api", field: "customDomainName", message: "is not a valid domain name" },
        Case { what: "certificate without key", mutate: |d| remove(d, "services[0].certificate.keyFile"),
            kind: S, resource: "api", field: "certificate.keyFile", message: "is required" },
        Case { what: "three listeners", mutate: |d| {
                push(d, "services[0].listeners", json!({"name": "h1", "protocol": "HTTP", "port": 8081, "defaultAction": fixed_404()}));
                push(d, "services[0].listeners", json!({"name": "h2", "protocol": "HTTP", "port": 8082, "defaultAction": fixed_404()}));
            },
            kind: S, resource: "api", field: "listeners", message: "a service can have at most 2 listeners (Lattice's quota); this one has 3" },
        Case { what: "two listeners on one port", mutate: |d| push(d, "services[0].listeners", json!({"name": "other", "protocol": "HTTP", "port": 443, "defaultAction": fixed_404()})),
            kind: S, resource: "api", field: "listeners[1].port", message: "port 443 is already used by listeners[0]" },
        Case { what: "duplicate listener name", mutate: |d| push(d, "services[0].listeners", json!({"name": "https", "protocol": "HTTP", "port": 80, "defaultAction": fixed_404()})),
            kind: S, resource: "api", field: "listeners[1].name", message: "duplicate listener name \"https\"" },
        Case { what: "listener name with the id prefix", mutate: |d| set(d, "services[0].listeners[0].name", json!("listener-1")),
            kind: S, resource: "api", field: "listeners[0].name", message: "can't begin with \"listener-\"" },
        Case { what: "listener port 0", mutate: |d| set(d, "services[0].listeners[0].port", json!(0)),
            kind: S, resource: "api", field: "listeners[0].port", message: "0 is out of range 1-65535" },
        Case { what: "listener port 70000", mutate: |d| set(d, "services[0].listeners[0].port", json!(70000)),
            kind: S, resource: "api", field: "listeners[0].port", message: "70000 is out of range 1-65535" },
        Case { what: "listener protocol", mutate: |d| set(d, "services[0].listeners[0].protocol", json!("UDP")),
            kind: S, resource: "api", field: "listeners[0].protocol", message: "\"UDP\" is not a listener protocol (HTTP, HTTPS, TLS_PASSTHROUGH, TCP)" },
        Case { what: "HTTPS without certificate", mutate: |d| remove(d, "services[0].certificate"),
            kind: S, resource: "api", field: "certificate", message: "is required: listener \"https\" (listeners[0]) is HTTPS" },
        Case { what: "TLS passthrough without custom domain", mutate: |d| push(d, "services[1].listeners", json!({"name": "tls", "protocol": "TLS_PASSTHROUGH", "port": 443, "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": "sql"}]}}})),
            kind: S, resource: "sql", field: "customDomainName", message: "is required: listener \"tls\" (listeners[1]) is TLS_PASSTHROUGH" },
        Case { what: "AWS_IAM on a TCP listener", mutate: |d| { set(d, "services[1].authType", json!("AWS_IAM")); set(d, "services[1].authPolicy", valid_policy()); },
            kind: S, resource: "sql", field: "authType", message: "AWS_IAM is not supported on TCP listeners" },
        Case { what: "AWS_IAM without a policy", mutate: |d| remove(d, "services[0].authPolicy"),
            kind: S, resource: "api", field: "authPolicy", message: "is required when authType is AWS_IAM" },
        Case { what: "policy with authType NONE", mutate: |d| set(d, "services[1].authPolicy", valid_policy()),
            kind: S, resource: "sql", field: "authPolicy", message: "is set but authType is NONE" },
        // rules
        Case { what: "priority 0", mutate: |d| set(d, &format!("{RULE0}.priority"), json!(0)),
            kind: S, resource: "api", field: "listeners[0].rules[0].priority", message: "0 is out of range 1-2000" },
        Case { what: "priority 2001", mutate: |d| set(d, &format!("{RULE0}.priority"), json!(2001)),
            kind: S, resource: "api", field: "listeners[0].rules[0].priority", message: "2001 is out of range 1-2000" },
        Case { what: "duplicate priority", mutate: |d| push(d, "services[0].listeners[0].rules", get_rule("v2-post", 10)),
            kind: S, resource: "api", field: "listeners[0].rules[1].priority", message: "priority 10 is already used by rules[0]" },
        Case { what: "duplicate rule name", mutate: |d| push(d, "services[0].listeners[0].rules", get_rule("v1-get", 20)),
            kind: S, resource: "api", field: "listeners[0].rules[1].name", message: "duplicate rule name \"v1-get\"" },
        Case { what: "rule name with capitals", mutate: |d| set(d, &format!("{RULE0}.name"), json!("V1-get")),
            kind: S, resource: "api", field: "listeners[0].rules[0].name", message: "is not a valid rule name" },
        Case { what: "eleven rules", mutate: |d| for i in 0..10 { push(d, "services[0].listeners[0].rules", get_rule(&format!("r{i:02}"), 100 + i)); },
            kind: S, resource: "api", field: "listeners[0].rules", message: "a listener can have at most 10 rules (Lattice's quota); this one has 11" },
        Case { what: "rules on a TCP listener", mutate: |d| push(d, "services[1].listeners[0].rules", get_rule("r01", 1)),
            kind: S, resource: "sql", field: "listeners[0].rules", message: "rules are only allowed on HTTP and HTTPS listeners" },
        Case { what: "rule without conditions", mutate: |d| set(d, &format!("{RULE0}.match.httpMatch"), json!({})),
            kind: S, resource: "api", field: "listeners[0].rules[0].match.httpMatch", message: "must match on at least one of method, pathMatch, headerMatches" },
        Case { what: "method", mutate: |d| set(d, &format!("{RULE0}.match.httpMatch.method"), json!("FETCH")),
            kind: S, resource: "api", field: "listeners[0].rules[0].match.httpMatch.method", message: "\"FETCH\" is not an HTTP method" },
        Case { what: "path without slash", mutate: |d| set(d, &format!("{RULE0}.match.httpMatch.pathMatch.match.prefix"), json!("v1/")),
            kind: S, resource: "api", field: "listeners[0].rules[0].match.httpMatch.pathMatch.match.prefix", message: "must begin with /" },
        Case { what: "path of 201 characters", mutate: |d| set(d, &format!("{RULE0}.match.httpMatch.pathMatch.match.prefix"), json!(format!("/{}", "a".repeat(200)))),
            kind: S, resource: "api", field: "listeners[0].rules[0].match.httpMatch.pathMatch.match.prefix", message: "must be 1-200 characters long (is 201)" },
        Case { what: "path exact and prefix", mutate: |d| set(d, &format!("{RULE0}.match.httpMatch.pathMatch.match.exact"), json!("/v1")),
            kind: S, resource: "api", field: "listeners[0].rules[0].match.httpMatch.pathMatch.match", message: "needs exactly one of exact, prefix" },
        Case { what: "header name", mutate: |d| set(d, &format!("{RULE0}.match.httpMatch.headerMatches[0].name"), json!("x env")),
            kind: S, resource: "api", field: "listeners[0].rules[0].match.httpMatch.headerMatches[0].name", message: "is not an HTTP header name" },
        Case { what: "header match with two kinds", mutate: |d| set(d, &format!("{RULE0}.match.httpMatch.headerMatches[0].match.contains"), json!("pro")),
            kind: S, resource: "api", field: "listeners[0].rules[0].match.httpMatch.headerMatches[0].match", message: "needs exactly one of exact, prefix, contains" },
        Case { what: "six header matches", mutate: |d| for i in 0..5 { push(d, &format!("{RULE0}.match.httpMatch.headerMatches"), json!({"name": format!("x-h{i}"), "match": {"exact": "1"}})); },
            kind: S, resource: "api", field: "listeners[0].rules[0].match.httpMatch.headerMatches", message: "at most 5 header matches" },
        // actions
        Case { what: "fixed response 403", mutate: |d| set(d, "services[0].listeners[0].defaultAction.fixedResponse.statusCode", json!(403)),
            kind: S, resource: "api", field: "listeners[0].defaultAction.fixedResponse.statusCode", message: "403 is not supported: a fixed response is 404 or 500" },
        Case { what: "fixed response on a TCP listener", mutate: |d| set(d, "services[1].listeners[0].defaultAction", fixed_404()),
            kind: S, resource: "sql", field: "listeners[0].defaultAction.fixedResponse", message: "a TCP listener can only forward" },
        Case { what: "action with forward and fixed response", mutate: |d| set(d, &format!("{RULE0}.action.fixedResponse"), json!({"statusCode": 404})),
            kind: S, resource: "api", field: "listeners[0].rules[0].action", message: "has both forward and fixedResponse" },
        Case { what: "weight 1000", mutate: |d| set(d, &format!("{RULE0}.action.forward.targetGroups[0].weight"), json!(1000)),
            kind: S, resource: "api", field: "listeners[0].rules[0].action.forward.targetGroups[0].weight", message: "1000 is out of range 0-999" },
        Case { what: "weight -1", mutate: |d| set(d, &format!("{RULE0}.action.forward.targetGroups[0].weight"), json!(-1)),
            kind: S, resource: "api", field: "listeners[0].rules[0].action.forward.targetGroups[0].weight", message: "-1 is out of range 0-999" },
        Case { what: "every weight 0", mutate: |d| set(d, &format!("{RULE0}.action.forward.targetGroups[0].weight"), json!(0)),
            kind: S, resource: "api", field: "listeners[0].rules[0].action.forward.targetGroups", message: "every weight is 0" },
        Case { what: "weight missing among several", mutate: |d| {
                push(d, "targetGroups", http_tg("api-v2"));
                push(d, &format!("{RULE0}.action.forward.targetGroups"), json!({"targetGroupIdentifier": "api-v2"}));
            },
            kind: S, resource: "api", field: "listeners[0].rules[0].action.forward.targetGroups[1].weight", message: "is required when a forward action names several target groups" },
        Case { what: "eleven target groups in a forward", mutate: |d| for i in 0..10 {
                push(d, "targetGroups", http_tg(&format!("extra-{i}")));
                push(d, &format!("{RULE0}.action.forward.targetGroups"), json!({"targetGroupIdentifier": format!("extra-{i}"), "weight": 1}));
            },
            kind: S, resource: "api", field: "listeners[0].rules[0].action.forward.targetGroups", message: "at most 10 target groups; this one names 11" },
        Case { what: "unknown target group", mutate: |d| set(d, &format!("{RULE0}.action.forward.targetGroups[0].targetGroupIdentifier"), json!("nope")),
            kind: S, resource: "api", field: "listeners[0].rules[0].action.forward.targetGroups[0].targetGroupIdentifier", message: "no target group is named \"nope\"" },
        Case { what: "TCP listener to an HTTP target group", mutate: |d| set(d, "targetGroups[1].config.protocol", json!("HTTP")),
            kind: S, resource: "sql", field: "listeners[0].defaultAction.forward.targetGroups[0].targetGroupIdentifier", message: "target group \"sql\" is HTTP; a TCP listener forwards only to TCP target groups" },
        Case { what: "HTTPS listener to a TCP target group", mutate: |d| {
                push(d, "targetGroups", tcp_tg("raw", "vpc-app"));
                set(d, &format!("{RULE0}.action.forward.targetGroups[0].targetGroupIdentifier"), json!("raw"));
            },
            kind: S, resource: "api", field: "listeners[0].rules[0].action.forward.targetGroups[0].targetGroupIdentifier", message: "target group \"raw\" is TCP; an HTTPS listener forwards to HTTP or HTTPS target groups" },
        Case { what: "target group used by two services", mutate: |d| push(d, "services", json!({"name": "other", "account": "111111111111",
                "listeners": [{"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": "api-v1"}]}}}]})),
            kind: S, resource: "other", field: "listeners[0].defaultAction.forward.targetGroups[0].targetGroupIdentifier", message: "target group \"api-v1\" is already used by service \"api\"; a target group can only be used by a single service" },
        Case { what: "target group of another account without a share", mutate: |d| {
                push(d, "targetGroups", tcp_tg("db-b", "vpc-b"));
                set(d, "services[1].listeners[0].defaultAction.forward.targetGroups[0].targetGroupIdentifier", json!("db-b"));
            },
            kind: S, resource: "sql", field: "listeners[0].defaultAction.forward.targetGroups[0].targetGroupIdentifier", message: "belongs to account 222222222222 (through vpc \"vpc-b\"); service \"sql\" of account 111111111111 may use it only if a resourceShare of account 222222222222 shares target group \"db-b\"" },
        // target groups and health checks
        Case { what: "target group name with the id prefix", mutate: |d| push(d, "targetGroups", http_tg("tg-extra")),
            kind: TG, resource: "tg-extra", field: "name", message: "can't begin with \"tg-\"" },
        Case { what: "target group name of 129 characters", mutate: |d| push(d, "targetGroups", http_tg(&"t".repeat(129))),
            kind: TG, resource: "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt", field: "name", message: "must be 3-128 characters long (is 129)" },
        Case { what: "target group type LAMBDA", mutate: |d| set(d, "targetGroups[0].type", json!("LAMBDA")),
            kind: TG, resource: "api-v1", field: "type", message: "LAMBDA target groups are not supported" },
        Case { what: "target group type", mutate: |d| set(d, "targetGroups[0].type", json!("FOO")),
            kind: TG, resource: "api-v1", field: "type", message: "\"FOO\" is not a target group type" },
        Case { what: "unknown vpc", mutate: |d| set(d, "targetGroups[0].config.vpcIdentifier", json!("vpc-nope")),
            kind: TG, resource: "api-v1", field: "config.vpcIdentifier", message: "no vpc is named \"vpc-nope\"" },
        Case { what: "target group port 0", mutate: |d| set(d, "targetGroups[0].config.port", json!(0)),
            kind: TG, resource: "api-v1", field: "config.port", message: "0 is out of range 1-65535" },
        Case { what: "TCP target group without port", mutate: |d| remove(d, "targetGroups[1].config.port"),
            kind: TG, resource: "sql", field: "config.port", message: "is required for TCP target groups" },
        Case { what: "protocol version on TCP", mutate: |d| set(d, "targetGroups[1].config.protocolVersion", json!("HTTP1")),
            kind: TG, resource: "sql", field: "config.protocolVersion", message: "TCP target groups have no protocolVersion" },
        Case { what: "health check interval 4", mutate: |d| set(d, &format!("{HC}.healthCheckIntervalSeconds"), json!(4)),
            kind: TG, resource: "api-v1", field: "config.healthCheck.healthCheckIntervalSeconds", message: "4 is out of range 5-300" },
        Case { what: "health check interval 301", mutate: |d| set(d, &format!("{HC}.healthCheckIntervalSeconds"), json!(301)),
            kind: TG, resource: "api-v1", field: "config.healthCheck.healthCheckIntervalSeconds", message: "301 is out of range 5-300" },
        Case { what: "health check timeout 0", mutate: |d| set(d, &format!("{HC}.healthCheckTimeoutSeconds"), json!(0)),
            kind: TG, resource: "api-v1", field: "config.healthCheck.healthCheckTimeoutSeconds", message: "0 is out of range 1-120" },
        Case { what: "health check timeout 121", mutate: |d| set(d, &format!("{HC}.healthCheckTimeoutSeconds"), json!(121)),
            kind: TG, resource: "api-v1", field: "config.healthCheck.healthCheckTimeoutSeconds", message: "121 is out of range 1-120" },
        Case { what: "healthy threshold 1", mutate: |d| set(d, &format!("{HC}.healthyThresholdCount"), json!(1)),
            kind: TG, resource: "api-v1", field: "config.healthCheck.healthyThresholdCount", message: "1 is out of range 2-10" },
        Case { what: "unhealthy threshold 11", mutate: |d| set(d, &format!("{HC}.unhealthyThresholdCount"), json!(11)),
            kind: TG, resource: "api-v1", field: "config.healthCheck.unhealthyThresholdCount", message: "11 is out of range 2-10" },
        Case { what: "matcher syntax", mutate: |d| set(d, &format!("{HC}.matcher.httpCode"), json!("200-abc")),
            kind: TG, resource: "api-v1", field: "config.healthCheck.matcher.httpCode", message: "\"200-abc\" is not a status matcher" },
        Case { what: "matcher code 99", mutate: |d| set(d, &format!("{HC}.matcher.httpCode"), json!("099,200")),
            kind: TG, resource: "api-v1", field: "config.healthCheck.matcher.httpCode", message: "\"099\" is not an HTTP status code (100-599)" },
        Case { what: "matcher range backwards", mutate: |d| set(d, &format!("{HC}.matcher.httpCode"), json!("299-200")),
            kind: TG, resource: "api-v1", field: "config.healthCheck.matcher.httpCode", message: "the range 299-200 is empty" },
        Case { what: "health check path", mutate: |d| set(d, &format!("{HC}.path"), json!("healthz")),
            kind: TG, resource: "api-v1", field: "config.healthCheck.path", message: "must begin with /" },
        Case { what: "health check over GRPC", mutate: |d| set(d, &format!("{HC}.protocolVersion"), json!("GRPC")),
            kind: TG, resource: "api-v1", field: "config.healthCheck.protocolVersion", message: "health checks don't support GRPC" },
        Case { what: "TCP health check over HTTP without a version", mutate: |d| set(d, "targetGroups[1].config.healthCheck", json!({"enabled": true, "protocol": "HTTP"})),
            kind: TG, resource: "sql", field: "config.healthCheck.protocolVersion", message: "is required when health checks are enabled on a TCP target group" },
        Case { what: "unknown load balancing algorithm", mutate: |d| set(d, "targetGroups[0].config.loadBalancingAlgorithmType", json!("RANDOM")),
            kind: TG, resource: "api-v1", field: "config.loadBalancingAlgorithmType", message: "\"RANDOM\" is not ROUND_ROBIN or LEAST_OUTSTANDING_REQUESTS" },
        Case { what: "least outstanding requests on a TCP group", mutate: |d| set(d, "targetGroups[1].config.loadBalancingAlgorithmType", json!("LEAST_OUTSTANDING_REQUESTS")),
            kind: TG, resource: "sql", field: "config.loadBalancingAlgorithmType", message: "applies to HTTP and HTTPS target groups" },
        Case { what: "target port 70000", mutate: |d| set(d, "targetGroups[0].targets[0].port", json!(70000)),
            kind: TG, resource: "api-v1", field: "targets[0].port", message: "70000 is out of range 1-65535" },
        Case { what: "target outside the vpc", mutate: |d| set(d, "targetGroups[0].targets[0].id", json!("10.1.2.3")),
            kind: TG, resource: "api-v1", field: "targets[0].id", message: "10.1.2.3 is outside the CIDR 10.92.0.0/16 of vpc \"vpc-app\"" },
        Case { what: "target id not an address", mutate: |d| set(d, "targetGroups[0].targets[0].id", json!("web-1")),
            kind: TG, resource: "api-v1", field: "targets[0].id", message: "\"web-1\" is not an IPv4 address" },
        Case { what: "target listed twice", mutate: |d| push(d, "targetGroups[0].targets", json!({"id": "10.92.0.10", "port": 8080})),
            kind: TG, resource: "api-v1", field: "targets[1]", message: "target 10.92.0.10:8080 is listed twice" },
        // service networks
        Case { what: "service network name", mutate: |d| push(d, "serviceNetworks", json!({"name": "Net", "account": "111111111111"})),
            kind: N, resource: "Net", field: "name", message: "is not a valid service network name" },
        Case { what: "network auth type", mutate: |d| set(d, "serviceNetworks[0].authType", json!("IAM")),
            kind: N, resource: "net", field: "authType", message: "\"IAM\" is not an auth type (NONE or AWS_IAM)" },
        Case { what: "unknown service in a network", mutate: |d| push(d, "serviceNetworks[0].serviceAssociations", json!("nope")),
            kind: N, resource: "net", field: "serviceAssociations[2]", message: "no service is named \"nope\"" },
        Case { what: "unknown vpc in a network", mutate: |d| set(d, "serviceNetworks[0].vpcAssociations[0].vpc", json!("nope")),
            kind: N, resource: "net", field: "vpcAssociations[0].vpc", message: "no vpc is named \"nope\"" },
        Case { what: "allowed cidr outside the vpc", mutate: |d| set(d, "serviceNetworks[0].vpcAssociations[0].allowedCidrs[0]", json!("10.92.0.0/24")),
            kind: N, resource: "net", field: "vpcAssociations[0].allowedCidrs[0]", message: "10.92.0.0/24 is not inside the CIDR 10.91.0.0/16 of vpc \"vpc-web\"" },
        Case { what: "vpc in two networks", mutate: |d| push(d, "serviceNetworks", json!({"name": "net2", "account": "111111111111", "vpcAssociations": [{"vpc": "vpc-web"}]})),
            kind: N, resource: "net2", field: "vpcAssociations[0].vpc", message: "a vpc can be associated with only one service network" },
        Case { what: "service of another account without a share", mutate: |d| {
                push(d, "services", json!({"name": "ext", "account": "222222222222"}));
                push(d, "serviceNetworks[0].serviceAssociations", json!("ext"));
            },
            kind: N, resource: "net", field: "serviceAssociations[2]", message: "service \"ext\" belongs to account 222222222222; it may join service network \"net\" of account 111111111111 only if a resourceShare" },
        Case { what: "vpc of another account without a share", mutate: |d| push(d, "serviceNetworks[0].vpcAssociations", json!({"vpc": "vpc-b"})),
            kind: N, resource: "net", field: "vpcAssociations[1].vpc", message: "vpc \"vpc-b\" belongs to account 222222222222; it may join service network \"net\" of account 111111111111 only if a resourceShare" },
        Case { what: "custom domain used twice in a network", mutate: |d| set(d, "services[1].customDomainName", json!("api.example.internal")),
            kind: N, resource: "net", field: "serviceAssociations[1]", message: "custom domain names are unique per service network" },
        // resource shares
        Case { what: "share of an unknown resource", mutate: |d| push(d, "resourceShares", json!({"name": "sh1", "owner": "111111111111", "resources": ["nope"], "principals": ["222222222222"]})),
            kind: RS, resource: "sh1", field: "resources[0]", message: "no service network, service, target group or vpc is named \"nope\"" },
        Case { what: "share of another account's resource", mutate: |d| push(d, "resourceShares", json!({"name": "sh1", "owner": "222222222222", "resources": ["net"], "principals": ["111111111111"]})),
            kind: RS, resource: "sh1", field: "resources[0]", message: "service network \"net\" belongs to account 111111111111, not to the share's owner 222222222222" },
        Case { what: "share with an undeclared account", mutate: |d| push(d, "resourceShares", json!({"name": "sh1", "owner": "111111111111", "resources": ["net"], "principals": ["333333333333"]})),
            kind: RS, resource: "sh1", field: "principals[0]", message: "account 333333333333 is not declared in accounts" },
        Case { what: "share with its owner", mutate: |d| push(d, "resourceShares", json!({"name": "sh1", "owner": "111111111111", "resources": ["net"], "principals": ["111111111111"]})),
            kind: RS, resource: "sh1", field: "principals[0]", message: "is the share's owner" },
        // auth policies
        Case { what: "policy effect", mutate: |d| set(d, "services[0].authPolicy.Statement[0].Effect", json!("Permit")),
            kind: S, resource: "api", field: "authPolicy.Statement[0].Effect", message: "\"Permit\" is not an effect (Allow or Deny)" },
        Case { what: "policy without action", mutate: |d| remove(d, "services[0].authPolicy.Statement[0].Action"),
            kind: S, resource: "api", field: "authPolicy.Statement[0].Action", message: "is required (or NotAction)" },
        Case { what: "policy action of another service", mutate: |d| set(d, "services[0].authPolicy.Statement[0].Action", json!("s3:GetObject")),
            kind: S, resource: "api", field: "authPolicy.Statement[0].Action", message: "is not an auth policy action" },
        Case { what: "policy version", mutate: |d| set(d, "services[0].authPolicy.Version", json!("2020-01-01")),
            kind: S, resource: "api", field: "authPolicy.Version", message: "is not a policy version (2012-10-17 or 2008-10-17)" },
        Case { what: "policy statement not a list or object", mutate: |d| set(d, "services[0].authPolicy.Statement", json!("allow all")),
            kind: S, resource: "api", field: "authPolicy.Statement", message: "must be a statement object or a list of them" },
        Case { what: "policy principal not in its account", mutate: |d| set(d, "services[0].authPolicy.Statement[0].Principal.AWS[0]", json!("arn:lattice:iam::111111111111:role/nobody")),
            kind: S, resource: "api", field: "authPolicy.Statement[0].Principal.AWS[0]", message: "account 111111111111 has no role named \"nobody\"" },
        Case { what: "policy principal of another partition", mutate: |d| set(d, "services[0].authPolicy.Statement[0].Principal.AWS[0]", json!("arn:aws:iam::111111111111:role/web")),
            kind: S, resource: "api", field: "authPolicy.Statement[0].Principal.AWS[0]", message: "expected arn:lattice:iam::<account>" },
        Case { what: "policy condition operator", mutate: |d| set(d, "services[0].authPolicy.Statement[0].Condition", json!({"StringEqual": {"aws:SourceIp": "1"}})),
            kind: S, resource: "api", field: "authPolicy.Statement[0].Condition.StringEqual", message: "\"StringEqual\" is not a condition operator" },
        // access logs
        Case { what: "log of an unknown resource", mutate: |d| set(d, "accessLogSubscriptions[0].resource", json!("nope")),
            kind: L, resource: "#0", field: "resource", message: "no service network or service is named \"nope\"" },
        Case { what: "log destination", mutate: |d| set(d, "accessLogSubscriptions[0].destination", json!("s3:bucket")),
            kind: L, resource: "#0", field: "destination", message: "\"s3:bucket\" is not a destination (file:PATH or stdout)" },
    ]
}

#[test]
fn base_document_is_valid() {
    let config = parse_value(&base()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.services().len(), 2);
}

#[test]
fn each_invalid_document_gives_its_own_error() {
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let mut doc = base();
        (case.mutate)(&mut doc);
        let errors = match parse_value(&doc) {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.what));
                continue;
            }
            Err(ConfigError::Invalid(errors)) => errors,
            Err(other) => {
                failures.push(format!("{}: not a validation error: {other}", case.what));
                continue;
            }
        };
        let [error] = errors.iter().collect::<Vec<_>>()[..] else {
            failures.push(format!("{}: expected one error, got:\n{errors}", case.what));
            continue;
        };
        let name = error.name.to_string();
        let expected_name = if case.resource.starts_with('#') {
            case.resource.to_owned()
        } else {
            format!("{:?}", case.resource)
        };
        let ok = error.file == Path::new("base.yaml")
            && error.kind == case.kind
            && name == expected_name
            && error.field == case.field
            && error.message.contains(case.message);
        if !ok {
            failures.push(format!(
                "{}: expected {} {} {}: ...{}..., got {error}",
                case.what, case.kind, expected_name, case.field, case.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let mut doc = base();
    set(&mut doc, &format!("{RULE0}.priority"), json!(0));
    set(
        &mut doc,
        "targetGroups[0].config.healthCheck.healthCheckIntervalSeconds",
        json!(301),
    );
    set(&mut doc, "vpcs[2].cidr", json!("10.93.0.1/16"));
    set(
        &mut doc,
        "accessLogSubscriptions[0].destination",
        json!("s3:bucket"),
    );
    let Err(ConfigError::Invalid(errors)) = parse_value(&doc) else {
        panic!("expected validation errors");
    };
    let lines: Vec<String> = errors.to_string().lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "base.yaml: vpc \"vpc-b\": cidr: 10.93.0.1/16 has host bits set; the network is 10.93.0.0/16",
            "base.yaml: target group \"api-v1\": config.healthCheck.healthCheckIntervalSeconds: 301 is out of range 5-300",
            "base.yaml: service \"api\": listeners[0].rules[0].priority: 0 is out of range 1-2000",
            "base.yaml: access log subscription #0: destination: \"s3:bucket\" is not a destination (file:PATH or stdout)",
        ]
    );
}

#[test]
fn a_cross_account_association_passes_with_a_share() {
    let mut doc = base();
    push(
        &mut doc,
        "services",
        json!({"name": "ext", "account": "222222222222"}),
    );
    push(
        &mut doc,
        "serviceNetworks[0].serviceAssociations",
        json!("ext"),
    );
    push(
        &mut doc,
        "serviceNetworks[0].vpcAssociations",
        json!({"vpc": "vpc-b"}),
    );
    push(
        &mut doc,
        "resourceShares",
        json!({"name": "net-to-b", "owner": "111111111111", "resources": ["net"], "principals": ["222222222222"]}),
    );
    let config = parse_value(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.resource_shares()[0].resources,
        [SharedResource::ServiceNetwork(ServiceNetworkRef(0))]
    );

    // A service shared by its owner to the network's account works too.
    let mut doc = base();
    push(
        &mut doc,
        "services",
        json!({"name": "ext", "account": "222222222222"}),
    );
    push(
        &mut doc,
        "serviceNetworks[0].serviceAssociations",
        json!("ext"),
    );
    push(
        &mut doc,
        "resourceShares",
        json!({"name": "ext-to-a", "owner": "222222222222", "resources": ["ext"], "principals": ["111111111111"]}),
    );
    parse_value(&doc).unwrap_or_else(|e| panic!("{e}"));

    // A target group in a vpc of another account, shared with the service's account.
    let mut doc = base();
    push(&mut doc, "targetGroups", tcp_tg("db-b", "vpc-b"));
    set(
        &mut doc,
        "services[1].listeners[0].defaultAction.forward.targetGroups[0].targetGroupIdentifier",
        json!("db-b"),
    );
    push(
        &mut doc,
        "resourceShares",
        json!({"name": "db-b-to-a", "owner": "222222222222", "resources": ["db-b"], "principals": ["111111111111"]}),
    );
    parse_value(&doc).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn unknown_fields_are_parse_errors_with_a_location() {
    let text = BASE.replace("        protocol: TCP\n", "        protocl: TCP\n");
    let err = parse_str(&text, Path::new("base.yaml")).unwrap_err();
    let ConfigError::Parse {
        file, line, column, ..
    } = &err
    else {
        panic!("expected a parse error, got {err}");
    };
    assert_eq!(file, Path::new("base.yaml"));
    assert!(line.is_some() && column.is_some());
    let message = err.to_string();
    assert!(message.starts_with("base.yaml: "), "{message}");
    assert!(message.contains("unknown field `protocl`"), "{message}");
    assert!(message.contains("services[1].listeners[0]"), "{message}");
    assert!(message.contains("line "), "{message}");

    let err = parse_str(
        r#"{"accounts": [{"id": "111111111111", "principal": []}]}"#,
        Path::new("doc.json"),
    )
    .unwrap_err();
    let ConfigError::Parse {
        line: Some(1),
        column: Some(_),
        ..
    } = &err
    else {
        panic!("expected a JSON parse error with a line, got {err:?}");
    };
    assert!(
        err.to_string().contains("unknown field `principal`"),
        "{err}"
    );

    let err = parse_str("services: [{ name: x, listeners: 3 }]", Path::new("t.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
}

#[test]
fn unquoted_account_ids_and_header_values_are_accepted() {
    let text = BASE
        .replace("\"111111111111\"", "111111111111")
        .replace("{ exact: prod }", "{ exact: true }");
    let config = parse_str(&text, Path::new("base.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.accounts()[0].id.as_str(), "111111111111");
    let rule = &config.services()[0].listeners[0].rules[0];
    assert_eq!(
        rule.http_match.header_matches[0].matcher,
        HeaderMatchType::Exact("true".into())
    );
}

fn contract_text() -> String {
    std::fs::read_to_string(CONTRACT_IN_REPO).expect("tests/data/config-contract.yaml")
}

#[test]
fn the_contract_validates() {
    let config = load_file(Path::new(CONTRACT_IN_REPO)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.accounts().len(), 2);
    assert_eq!(config.vpcs().len(), 3);
    assert_eq!(config.service_networks().len(), 1);
    assert_eq!(config.services().len(), 2);
    assert_eq!(config.target_groups().len(), 3);
    assert_eq!(config.access_log_subscriptions().len(), 1);

    let data_dir = Path::new(CONTRACT_IN_REPO).parent().unwrap();
    let orders = config.service(config.service_by_name("orders").unwrap());
    assert_eq!(
        orders.certificate.as_ref().unwrap().cert_file,
        data_dir.join("certs/orders.pem")
    );
    assert_eq!(
        orders.custom_domain_name.as_deref(),
        Some("orders.shop.internal")
    );
    let rules = &orders.listeners[0].rules;
    assert_eq!(
        rules.iter().map(|r| r.priority).collect::<Vec<_>>(),
        [10, 20]
    );
    assert!(
        matches!(&rules[0].action, Action::Forward(groups) if groups.len() == 2 && groups[0].weight == 90)
    );

    let v1 = config.target_group(config.target_group_by_name("orders-v1").unwrap());
    assert!(v1.health_check.enabled);
    assert_eq!(v1.health_check.interval.as_secs(), 5);
    assert!(v1.health_check.matcher.matches(204) && !v1.health_check.matcher.matches(301));
    assert_eq!(v1.account.as_str(), "222222222222");

    // Defaults: target port from the group; HTTP2 groups have health checks off; the
    // rest of the settings take Lattice's defaults.
    let v2 = config.target_group(config.target_group_by_name("orders-v2").unwrap());
    assert_eq!(v2.targets[0].port.get(), 8080);
    assert!(!v2.health_check.enabled);
    assert_eq!(v2.health_check.interval.as_secs(), 30);
    assert_eq!(v2.health_check.timeout.as_secs(), 5);
    assert_eq!(
        (
            v2.health_check.healthy_threshold,
            v2.health_check.unhealthy_threshold
        ),
        (5, 2)
    );
    assert!(v2.health_check.matcher.matches(200) && !v2.health_check.matcher.matches(204));
    assert_eq!(v2.health_check.path, "/");
    let db = config.target_group(config.target_group_by_name("orders-db").unwrap());
    assert_eq!(db.protocol_version, None);
    assert!(!db.health_check.enabled);

    let sub = &config.access_log_subscriptions()[0];
    assert_eq!(
        sub.destination,
        LogDestination::File(data_dir.join("logs/shop-access.jsonl"))
    );
}

#[test]
fn the_shared_contract_is_the_in_repo_copy_and_validates() {
    let shared = Path::new(CONTRACT_SHARED);
    if !shared.exists() {
        return; // Outside the project's machines only the in-repo copy exists.
    }
    assert_eq!(
        std::fs::read(shared).unwrap(),
        std::fs::read(CONTRACT_IN_REPO).unwrap(),
        "tests/data/config-contract.yaml must be a byte-identical copy of shared/config-contract.yaml"
    );
    load_file(shared).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn json_of_the_same_shape_parses_identically() {
    let yaml = contract_text();
    let value: Value = serde_norway::from_str(&yaml).unwrap();
    let json = serde_json::to_string_pretty(&value).unwrap();
    let dir = PathBuf::from("/etc/lattice");
    let from_yaml = parse_str(&yaml, &dir.join("config.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let from_json = parse_str(&json, &dir.join("config.json")).unwrap_or_else(|e| panic!("{e}"));
    let from_stdin = parse_str(&json, Path::new("-")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_yaml.accounts(), from_json.accounts());
    assert_eq!(from_yaml.vpcs(), from_json.vpcs());
    assert_eq!(from_yaml.service_networks(), from_json.service_networks());
    assert_eq!(from_yaml.resource_shares(), from_json.resource_shares());
    assert_eq!(from_yaml.services(), from_json.services());
    assert_eq!(from_yaml.target_groups(), from_json.target_groups());
    assert_eq!(
        from_yaml.access_log_subscriptions(),
        from_json.access_log_subscriptions()
    );
    assert_eq!(from_stdin.services().len(), from_json.services().len());
    assert_eq!(Format::detect(Path::new("-"), &json), Format::Json);
    assert_eq!(Format::detect(Path::new("-"), &yaml), Format::Yaml);
}

#[test]
fn check_files_names_a_missing_account_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("base.yaml");
    std::fs::write(&path, BASE).unwrap();
    let err = load_file(&path).unwrap().check_files().unwrap_err();
    let ConfigError::Files(errors) = &err else {
        panic!("expected file errors, got {err}");
    };
    assert!(
        errors
            .iter()
            .any(|e| e.name.to_string() == "\"111111111111\""
                && e.field == "mtlsCaFile"
                && e.message.contains("cannot be read")),
        "{errors}"
    );
}

#[test]
fn check_files_names_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config-contract.yaml");
    std::fs::write(&path, contract_text()).unwrap();
    let config = load_file(&path).unwrap();
    let err = config.check_files().unwrap_err();
    let ConfigError::Files(errors) = &err else {
        panic!("expected file errors, got {err}");
    };
    let fields: Vec<(String, &str)> = errors
        .iter()
        .map(|e| (e.name.to_string(), e.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            (
                "\"111111111111\"".to_owned(),
                "principals[0].accessKeys[0].secretFile"
            ),
            ("\"orders\"".to_owned(), "certificate.certFile"),
            ("\"orders\"".to_owned(), "certificate.keyFile"),
        ]
    );
    assert!(
        errors.iter().all(|e| e.message.contains("cannot be read")),
        "{errors}"
    );
    for dir in ["secrets", "certs"] {
        std::fs::create_dir(tmp.path().join(dir)).unwrap();
    }
    for file in ["secrets/web.key", "certs/orders.pem", "certs/orders.key"] {
        std::fs::write(tmp.path().join(file), "x").unwrap();
    }
    // The log folder need not exist (the agent creates it) ...
    config.check_files().unwrap_or_else(|e| panic!("{e}"));
    // ... but must be creatable.
    std::fs::write(tmp.path().join("logs"), "a file, not a folder").unwrap();
    let err = config.check_files().unwrap_err();
    let [error] = err.field_errors() else {
        panic!("expected one error, got {err}");
    };
    assert_eq!(
        (error.kind, error.field.as_str()),
        (ResourceKind::AccessLogSubscription, "destination")
    );
    assert!(error.message.contains("is not a directory"), "{error}");
}

#[test]
fn read_errors_name_the_file() {
    let err = load_file(Path::new("/nonexistent/lattice.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("/nonexistent/lattice.yaml: cannot read"),
        "{err}"
    );
}

#[test]
fn an_empty_document_is_refused_but_an_empty_map_is_not() {
    for text in ["", "# only a comment\n", "---\n"] {
        let err = parse_str(text, Path::new("e.yaml")).unwrap_err();
        assert!(matches!(err, ConfigError::Empty { .. }), "{text:?}: {err}");
        assert!(
            err.to_string().starts_with("e.yaml: the document is empty"),
            "{err}"
        );
    }
    let config = parse_str("{}", Path::new("e.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.services().is_empty());
    assert!(matches!(
        parse_str("", Path::new("e.json")),
        Err(ConfigError::Parse { .. })
    ));
}

#[test]
fn errors_cross_threads_and_into_anyhow() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<ConfigError>();
    assert_send_sync::<crate::resolve::ResolveError>();
    assert_send_sync::<crate::state::StateError>();
}

#[test]
fn a_yaml_file_may_hold_json_or_flow_style_yaml() {
    let source = Path::new("/etc/lattice/config.yaml");
    let json = r#"{"accounts": [{"id": "111111111111"}]}"#;
    let flow = r#"{ accounts: [{ id: 111111111111 }] }"#;
    for text in [json, flow] {
        let config = parse_str(text, source).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(config.accounts().len(), 1, "{text}");
    }
    // A JSON-looking document with an error is reported by the YAML parser, with its
    // location.
    let err = parse_str(r#"{"accounts": [{"idd": "1"}]}"#, source).unwrap_err();
    assert!(err.to_string().contains("idd"), "{err}");
}
