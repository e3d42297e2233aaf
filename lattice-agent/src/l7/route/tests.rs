//! Tables of requests routed through small listeners, each listener parsed and validated
//! from YAML by the config module (so the defaults under test are the config's, as a
//! user gets them); and the weighted choice over whole ranges of rolls.

use std::path::Path;

use http::{HeaderMap, Method, Request};

use super::*;
use crate::config::{self, Config, FixedResponseStatus, TargetGroupRef, WeightedTargetGroup};

/// The rules and default action of one HTTP listener, in the config's YAML.
struct Rules {
    /// A block list of rules at column 0; empty for none.
    rules: &'static str,
    /// A flow mapping.
    default: &'static str,
}

const NOT_FOUND: &str = "{ fixedResponse: { statusCode: 404 } }";

/// Declared out of priority order on purpose.
const PRIORITIES: Rules = Rules {
    default: NOT_FOUND,
    rules: r#"
- { name: broad, priority: 20, match: { httpMatch: { pathMatch: { match: { prefix: / } } } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: blue }] } } }
- { name: never, priority: 1, match: { httpMatch: { method: DELETE } },
    action: { fixedResponse: { statusCode: 500 } } }
- { name: narrow, priority: 10, match: { httpMatch: { pathMatch: { match: { prefix: /api/ } } } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: green }] } } }
- { name: debug, priority: 5, match: { httpMatch: { headerMatches: [{ name: x-debug, match: { exact: "1" } }] } },
    action: { fixedResponse: { statusCode: 500 } } }
"#,
};

const PATHS: Rules = Rules {
    default: NOT_FOUND,
    rules: r#"
- { name: exact-cs, priority: 1, match: { httpMatch: { pathMatch: { match: { exact: /Exact }, caseSensitive: true } } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: blue }] } } }
- { name: exact-ci, priority: 2, match: { httpMatch: { pathMatch: { match: { exact: /exact/ci } } } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: green }] } } }
- { name: prefix-cs, priority: 3, match: { httpMatch: { pathMatch: { match: { prefix: /Api/ }, caseSensitive: true } } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: canary }] } } }
- { name: prefix-ci, priority: 4, match: { httpMatch: { pathMatch: { match: { prefix: /docs }, caseSensitive: false } } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: blue, weight: 3 }, { targetGroupIdentifier: green, weight: 1 }] } } }
- { name: slash, priority: 5, match: { httpMatch: { pathMatch: { match: { exact: /slash/ } } } },
    action: { fixedResponse: { statusCode: 500 } } }
- { name: query-pattern, priority: 6, match: { httpMatch: { pathMatch: { match: { exact: "/search?q=1" } } } },
    action: { fixedResponse: { statusCode: 500 } } }
- { name: search, priority: 7, match: { httpMatch: { pathMatch: { match: { exact: /search } } } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: canary }] } } }
"#,
};

const HEADERS: Rules = Rules {
    default: NOT_FOUND,
    rules: r#"
- { name: exact-cs, priority: 1, match: { httpMatch: { headerMatches: [{ name: x-env, match: { exact: Prod }, caseSensitive: true }] } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: blue }] } } }
- { name: exact-ci, priority: 2, match: { httpMatch: { headerMatches: [{ name: x-tier, match: { exact: gold } }] } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: green }] } } }
- { name: prefix-cs, priority: 3, match: { httpMatch: { headerMatches: [{ name: user-agent, match: { prefix: Mozilla/ }, caseSensitive: true }] } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: canary }] } } }
- { name: prefix-ci, priority: 4, match: { httpMatch: { headerMatches: [{ name: x-version, match: { prefix: v2 } }] } },
    action: { fixedResponse: { statusCode: 500 } } }
- { name: contains-cs, priority: 5, match: { httpMatch: { headerMatches: [{ name: x-flags, match: { contains: Beta }, caseSensitive: true }] } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: blue }] } } }
- { name: contains-ci, priority: 6, match: { httpMatch: { headerMatches: [{ name: x-trace, match: { contains: debug } }] } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: green }] } } }
- { name: name-case, priority: 7, match: { httpMatch: { headerMatches: [{ name: X-Canary, match: { exact: "yes" } }] } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: canary }] } } }
"#,
};

const METHODS: Rules = Rules {
    default: NOT_FOUND,
    rules: r#"
- { name: get, priority: 1, match: { httpMatch: { method: GET } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: blue }] } } }
- { name: post, priority: 2, match: { httpMatch: { method: POST } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: green }] } } }
"#,
};

const COMBINED: Rules = Rules {
    default: NOT_FOUND,
    rules: r#"
- { name: two-headers, priority: 5, match: { httpMatch: { headerMatches: [{ name: x-a, match: { exact: "1" } }, { name: x-b, match: { exact: "2" } }] } },
    action: { forward: { targetGroups: [{ targetGroupIdentifier: canary }] } } }
- name: create-order
  priority: 10
  match:
    httpMatch:
      method: POST
      pathMatch: { match: { prefix: /orders } }
      headerMatches: [{ name: content-type, match: { exact: application/json } }]
  action: { forward: { targetGroups: [{ targetGroupIdentifier: blue }] } }
- { name: orders, priority: 20, match: { httpMatch: { pathMatch: { match: { prefix: /orders } } } },
    action: { fixedResponse: { statusCode: 500 } } }
"#,
};

const DEFAULT_FORWARD: Rules = Rules {
    default: "{ forward: { targetGroups: [{ targetGroupIdentifier: blue, weight: 90 }, { targetGroupIdentifier: green, weight: 10 }, { targetGroupIdentifier: canary, weight: 0 }] } }",
    rules: r#"
- { name: gone, priority: 1, match: { httpMatch: { pathMatch: { match: { exact: /missing } } } },
    action: { fixedResponse: { statusCode: 404 } } }
"#,
};

const NO_RULES: Rules = Rules {
    default: "{ fixedResponse: { statusCode: 500 } }",
    rules: "",
};

/// One request through one listener. `request` is a method and a request target
/// (path, maybe a query); `expect` is `<rule name or default> -> <action>`, as
/// [`render`] writes a decision.
struct Case {
    what: &'static str,
    listener: &'static Rules,
    request: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: &'static str,
}

const fn case(
    what: &'static str,
    listener: &'static Rules,
    request: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: &'static str,
) -> Case {
    Case {
        what,
        listener,
        request,
        headers,
        expect,
    }
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Priorities.
    case("the lower priority number wins though declared later", &PRIORITIES, "GET /api/x", &[], "narrow -> forward green:100"),
    case("a rule of higher number takes what lower ones leave", &PRIORITIES, "GET /other", &[], "broad -> forward blue:100"),
    case("the lowest priority that holds wins over two that also hold", &PRIORITIES, "GET /api/x", &[("x-debug", "1")], "debug -> fixed 500"),
    case("the lowest-numbered rule holds, whatever the path", &PRIORITIES, "DELETE /api/x", &[("x-debug", "1")], "never -> fixed 500"),
    // Paths.
    case("path exact, case-sensitive, same case", &PATHS, "GET /Exact", &[], "exact-cs -> forward blue:100"),
    case("path exact, case-sensitive, other case", &PATHS, "GET /exact", &[], "default -> fixed 404"),
    case("path exact does not take a longer path", &PATHS, "GET /Exact/more", &[], "default -> fixed 404"),
    case("path exact, case-insensitive by default, other case", &PATHS, "GET /EXACT/CI", &[], "exact-ci -> forward green:100"),
    case("path exact, case-insensitive, same case", &PATHS, "GET /exact/ci", &[], "exact-ci -> forward green:100"),
    case("path is compared as sent: no percent-decoding", &PATHS, "GET /exact%2Fci", &[], "default -> fixed 404"),
    case("path prefix, case-sensitive, same case", &PATHS, "GET /Api/v1/items", &[], "prefix-cs -> forward canary:100"),
    case("path prefix, case-sensitive, other case", &PATHS, "GET /api/v1/items", &[], "default -> fixed 404"),
    case("path prefix takes the prefix itself", &PATHS, "GET /Api/", &[], "prefix-cs -> forward canary:100"),
    case("path prefix with trailing slash does not take the path without it", &PATHS, "GET /Api", &[], "default -> fixed 404"),
    case("path prefix, caseSensitive false, other case", &PATHS, "GET /DOCS/intro", &[], "prefix-ci -> forward blue:3 green:1"),
    case("path prefix is a string prefix, not a segment prefix", &PATHS, "GET /docsets", &[], "prefix-ci -> forward blue:3 green:1"),
    case("path shorter than the prefix", &PATHS, "GET /doc", &[], "default -> fixed 404"),
    case("exact with trailing slash does not take the path without it", &PATHS, "GET /slash", &[], "default -> fixed 404"),
    case("exact with trailing slash takes it", &PATHS, "GET /slash/", &[], "slash -> fixed 500"),
    case("the query is not part of the path", &PATHS, "GET /search?q=1", &[], "search -> forward canary:100"),
    case("path exact, case-insensitive, with a query", &PATHS, "GET /Search?Q=1", &[], "search -> forward canary:100"),
    case("the root matches no rule here", &PATHS, "GET /", &[], "default -> fixed 404"),
    // Headers.
    case("header exact, case-sensitive, same case", &HEADERS, "GET /", &[("x-env", "Prod")], "exact-cs -> forward blue:100"),
    case("header exact, case-sensitive, other case", &HEADERS, "GET /", &[("x-env", "prod")], "default -> fixed 404"),
    case("header exact is not a prefix", &HEADERS, "GET /", &[("x-env", "Prod-eu")], "default -> fixed 404"),
    case("header names compare without case", &HEADERS, "GET /", &[("X-ENV", "Prod")], "exact-cs -> forward blue:100"),
    case("header exact, case-insensitive by default", &HEADERS, "GET /", &[("x-tier", "GOLD")], "exact-ci -> forward green:100"),
    case("header exact, case-insensitive, longer value", &HEADERS, "GET /", &[("x-tier", "golden")], "default -> fixed 404"),
    case("header prefix, case-sensitive, same case", &HEADERS, "GET /", &[("user-agent", "Mozilla/5.0 (X11)")], "prefix-cs -> forward canary:100"),
    case("header prefix, case-sensitive, other case", &HEADERS, "GET /", &[("user-agent", "mozilla/5.0")], "default -> fixed 404"),
    case("header prefix, case-insensitive", &HEADERS, "GET /", &[("x-version", "V2.1")], "prefix-ci -> fixed 500"),
    case("header prefix is anchored at the start", &HEADERS, "GET /", &[("x-version", "1-v2")], "default -> fixed 404"),
    case("header contains, case-sensitive, same case", &HEADERS, "GET /", &[("x-flags", "alpha,Beta,gamma")], "contains-cs -> forward blue:100"),
    case("header contains, case-sensitive, other case", &HEADERS, "GET /", &[("x-flags", "alpha,beta")], "default -> fixed 404"),
    case("header contains, case-insensitive", &HEADERS, "GET /", &[("x-trace", "id=7;DEBUG=on")], "contains-ci -> forward green:100"),
    case("header contains, empty value", &HEADERS, "GET /", &[("x-trace", "")], "default -> fixed 404"),
    case("header name written with capitals in the rule", &HEADERS, "GET /", &[("x-canary", "yes")], "name-case -> forward canary:100"),
    case("header missing", &HEADERS, "GET /", &[], "default -> fixed 404"),
    case("header missing, another header present", &HEADERS, "GET /", &[("x-other", "Prod")], "default -> fixed 404"),
    case("header sent twice: the second value holds", &HEADERS, "GET /", &[("x-env", "dev"), ("x-env", "Prod")], "exact-cs -> forward blue:100"),
    case("header sent twice: neither value holds", &HEADERS, "GET /", &[("x-env", "dev"), ("x-env", "test")], "default -> fixed 404"),
    case("a comma list on one line is one value for exact", &HEADERS, "GET /", &[("x-env", "dev, Prod")], "default -> fixed 404"),
    case("several headers, two rules hold: the lower priority wins", &HEADERS, "GET /", &[("x-trace", "debug"), ("x-tier", "gold")], "exact-ci -> forward green:100"),
    // Methods.
    case("method GET", &METHODS, "GET /", &[], "get -> forward blue:100"),
    case("method POST", &METHODS, "POST /", &[], "post -> forward green:100"),
    case("method HEAD is not GET", &METHODS, "HEAD /", &[], "default -> fixed 404"),
    case("method PUT matches no rule", &METHODS, "PUT /", &[], "default -> fixed 404"),
    case("method compares with case: get is not GET", &METHODS, "get /", &[], "default -> fixed 404"),
    // Combinations: every condition of a rule must hold.
    case("method, path and header all hold", &COMBINED, "POST /orders/1", &[("content-type", "application/json")], "create-order -> forward blue:100"),
    case("method fails: the next rule takes it", &COMBINED, "GET /orders/1", &[("content-type", "application/json")], "orders -> fixed 500"),
    case("header value fails: the next rule takes it", &COMBINED, "POST /orders/1", &[("content-type", "text/plain")], "orders -> fixed 500"),
    case("header missing: the next rule takes it", &COMBINED, "POST /orders/1", &[], "orders -> fixed 500"),
    case("path fails: no rule holds", &COMBINED, "POST /carts", &[("content-type", "application/json")], "default -> fixed 404"),
    case("two header conditions, both hold", &COMBINED, "GET /anything", &[("x-a", "1"), ("x-b", "2")], "two-headers -> forward canary:100"),
    case("two header conditions, one holds", &COMBINED, "GET /anything", &[("x-a", "1")], "default -> fixed 404"),
    // Default actions.
    case("a rule's fixed 404", &DEFAULT_FORWARD, "GET /missing", &[], "gone -> fixed 404"),
    case("default forward keeps its weights, 0 included", &DEFAULT_FORWARD, "GET /anything", &[], "default -> forward blue:90 green:10 canary:0"),
    case("a listener without rules: default fixed 500", &NO_RULES, "GET /", &[], "default -> fixed 500"),
];

/// A document with three target groups and one service whose HTTP listener has `rules`.
fn document(rules: &Rules) -> Config {
    let rules_yaml = if rules.rules.trim().is_empty() {
        " []".to_owned()
    } else {
        let mut indented = String::from("\n");
        for line in rules.rules.lines().filter(|l| !l.trim().is_empty()) {
            indented.push_str("          ");
            indented.push_str(line);
            indented.push('\n');
        }
        indented
    };
    let text = format!(
        r#"
accounts: [{{ id: "111111111111" }}]
vpcs:
  - {{ name: vpc-a, account: "111111111111", cidr: 10.1.0.0/16, attachments: [{{ netns: lt-a }}] }}
targetGroups:
  - {{ name: blue, type: IP, config: {{ vpcIdentifier: vpc-a, protocol: HTTP, port: 8080 }} }}
  - {{ name: green, type: IP, config: {{ vpcIdentifier: vpc-a, protocol: HTTP, port: 8080 }} }}
  - {{ name: canary, type: IP, config: {{ vpcIdentifier: vpc-a, protocol: HTTP, port: 8080 }} }}
services:
  - name: svc
    account: "111111111111"
    authType: NONE
    listeners:
      - name: http
        protocol: HTTP
        port: 80
        defaultAction: {default}
        rules:{rules_yaml}"#,
        default = rules.default,
    );
    config::parse_str(&text, Path::new("route-test.yaml"))
        .unwrap_or_else(|e| panic!("test document does not validate: {e}\n{text}"))
}

fn only_listener(config: &Config) -> &Listener {
    &config.services()[0].listeners[0]
}

/// A request from `GET /path?query` and header lines (appended, so a name may repeat).
fn http_request(line: &str, headers: &[(&str, &str)]) -> Request<()> {
    let (method, target) = line.split_once(' ').expect("METHOD TARGET");
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("request")
}

/// `<rule name or default> -> fixed <code>` or `... -> forward <group>:<weight> ...`.
fn render(config: &Config, decision: Decision<'_>) -> String {
    let who = match decision.matched {
        Matched::Rule { name, .. } => name.as_str(),
        Matched::Default => "default",
    };
    let what = match decision.action {
        Action::FixedResponse(status) => format!("fixed {}", status.code()),
        Action::Forward(groups) => {
            let groups: Vec<String> = groups
                .iter()
                .map(|g| format!("{}:{}", config.target_group(g.target_group).name, g.weight))
                .collect();
            format!("forward {}", groups.join(" "))
        }
    };
    format!("{who} -> {what}")
}

#[test]
fn table() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let config = document(case.listener);
        let request = http_request(case.request, case.headers);
        let got = render(
            &config,
            route(only_listener(&config), &RequestHead::from(&request)),
        );
        if got != case.expect {
            failures.push(format!(
                "{}: {} {:?}\n    expected {}\n    got      {got}",
                case.what, case.request, case.headers, case.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn decision_names_the_rule_and_its_priority() {
    let config = document(&PRIORITIES);
    let listener = only_listener(&config);
    let request = http_request("GET /api/x", &[]);
    let decision = route(listener, &RequestHead::from(&request));
    let narrow = listener
        .rules
        .iter()
        .find(|r| r.name.as_str() == "narrow")
        .unwrap();
    assert_eq!(
        decision,
        Decision {
            matched: Matched::Rule {
                name: &narrow.name,
                priority: 10
            },
            action: &narrow.action,
        }
    );
    let config = document(&NO_RULES);
    let request = http_request("GET /", &[]);
    let decision = route(only_listener(&config), &RequestHead::from(&request));
    assert_eq!(decision.matched, Matched::Default);
    assert_eq!(
        decision.action,
        &Action::FixedResponse(FixedResponseStatus::InternalServerError)
    );
}

#[test]
fn request_head_takes_the_path_without_the_query() {
    let request = http_request("GET /a/b?c=d&e", &[("x-y", "z")]);
    let head = RequestHead::from(&request);
    assert_eq!(head.path, "/a/b");
    assert_eq!(head.method, Method::GET);
    assert_eq!(head.headers.get("X-Y").unwrap(), "z");

    let (parts, ()) = request.into_parts();
    assert_eq!(RequestHead::from(&parts).path, "/a/b");
}

#[test]
fn a_head_built_by_hand_routes_like_one_from_a_request() {
    let config = document(&HEADERS);
    let mut headers = HeaderMap::new();
    headers.append("x-tier", "Gold".parse().unwrap());
    let head = RequestHead::new(&Method::GET, "/", &headers);
    assert_eq!(
        render(&config, route(only_listener(&config), &head)),
        "exact-ci -> forward green:100"
    );
}

// === pick_target_group ===

fn groups(weights: &[u16]) -> Vec<WeightedTargetGroup> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| WeightedTargetGroup {
            target_group: TargetGroupRef(i),
            weight,
        })
        .collect()
}

/// How often each group is picked over `rolls`.
fn counts(weights: &[u16], rolls: impl Iterator<Item = u32>) -> Vec<u64> {
    let groups = groups(weights);
    let mut counts = vec![0; weights.len()];
    for roll in rolls {
        let picked = pick_target_group(&groups, roll).expect("some weight is above 0");
        counts[picked.index()] += 1;
    }
    counts
}

#[test]
fn any_total_consecutive_rolls_give_each_group_exactly_its_weight() {
    for weights in [
        &[1, 1][..],
        &[10, 20],
        &[90, 10],
        &[3, 0, 5, 1],
        &[999; 10],
        &[7],
    ] {
        let total: u32 = weights.iter().map(|&w| u32::from(w)).sum();
        for start in [0, 12_345, u32::MAX - total * 3 + 1] {
            let got = counts(weights, start..=start + (total * 3 - 1));
            let want: Vec<u64> = weights.iter().map(|&w| u64::from(w) * 3).collect();
            assert_eq!(got, want, "weights {weights:?} from roll {start}");
        }
    }
}

#[test]
fn proportions_hold_over_the_whole_range_of_rolls() {
    // Every 65,537th roll from 0 to u32::MAX: 65,536 rolls spread over the full range.
    let weights = [10, 20, 0, 70];
    let got = counts(&weights, (0..=u32::MAX).step_by(65_537));
    let n: u64 = got.iter().sum();
    for (count, weight) in got.iter().zip(weights) {
        let want = n * u64::from(weight) / 100;
        assert!(
            count.abs_diff(want) <= n / 1000,
            "weights {weights:?}: got {got:?} of {n}"
        );
    }
    assert_eq!(got[2], 0);
}

#[test]
fn rolls_map_to_groups_in_order() {
    let groups = groups(&[2, 0, 3]);
    let picks: Vec<usize> = (0..10)
        .map(|roll| pick_target_group(&groups, roll).unwrap().index())
        .collect();
    assert_eq!(picks, [0, 0, 2, 2, 2, 0, 0, 2, 2, 2]);
}

#[test]
fn weight_zero_is_never_picked() {
    let groups = groups(&[0, 5, 0]);
    for roll in (0..1000).chain([u32::MAX - 1, u32::MAX]) {
        assert_eq!(
            pick_target_group(&groups, roll),
            Some(TargetGroupRef(1)),
            "roll {roll}"
        );
    }
}

#[test]
fn no_group_when_every_weight_is_zero_or_there_are_none() {
    for roll in [0, 1, u32::MAX] {
        assert_eq!(pick_target_group(&groups(&[0, 0, 0]), roll), None);
        assert_eq!(pick_target_group(&groups(&[0]), roll), None);
        assert_eq!(pick_target_group(&[], roll), None);
    }
}

#[test]
fn a_forward_from_the_config_picks_by_its_weights() {
    let config = document(&DEFAULT_FORWARD);
    let request = http_request("GET /anything", &[]);
    let Action::Forward(groups) =
        route(only_listener(&config), &RequestHead::from(&request)).action
    else {
        panic!("the default action is a forward");
    };
    let mut picked = [0u32; 3];
    for roll in 0..1000 {
        let group = pick_target_group(groups, roll).unwrap();
        picked[group.index()] += 1;
    }
    let names: Vec<&str> = (0..3)
        .map(|i| config.target_groups()[i].name.as_str())
        .collect();
    assert_eq!(names, ["blue", "green", "canary"]);
    assert_eq!(picked, [900, 100, 0]);
}
