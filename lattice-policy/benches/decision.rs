//! The cost of one decision against a 20-statement policy with conditions, where the
//! deciding statement is the last one: every deny and every earlier allow is tried and
//! rejected first, the worst order for the evaluator. Target: under 2 µs p50.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use lattice_policy::{evaluate, parse, Caller, Context, Decision, Policy, Request};
use serde_json::{json, Value};

const SERVICE: &str = "arn:lattice:vpc-lattice:local:111111111111:service/svc-0123456789abcdef0";
const RESOURCE: &str =
    "arn:lattice:vpc-lattice:local:111111111111:service/svc-0123456789abcdef0/api/orders/42";
const CALLER: Caller<'static> = Caller::Principal {
    arn: "arn:lattice:iam::222222222222:role/web",
    account: "222222222222",
};

/// Ten denies whose conditions fail, nine allows whose conditions fail on their last
/// key, and the deciding allow last.
fn policy() -> Policy {
    let mut statements: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "Sid": format!("Block{i}"),
                "Effect": "Deny",
                "Principal": "*",
                "Action": "vpc-lattice-svcs:*",
                "Resource": "*",
                "Condition": {
                    "IpAddress": {"aws:SourceIp": [format!("198.51.100.{i}/32"), "203.0.113.0/24"]},
                    "StringEquals": {"vpc-lattice-svcs:SourceVpc": format!("vpc-blocked{i}")}
                }
            })
        })
        .collect();
    statements.extend((0..9).map(|i| {
        json!({
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:lattice:iam::222222222222:role/web", "333333333333"]},
            "Action": "vpc-lattice-svcs:Invoke",
            "Resource": format!("{SERVICE}/*"),
            "Condition": {
                "StringEquals": {"vpc-lattice-svcs:RequestMethod": ["GET", "HEAD"]},
                "StringLike": {"vpc-lattice-svcs:RequestPath": format!("/v{i}/*")}
            }
        })
    }));
    statements.push(json!({
        "Sid": "Late",
        "Effect": "Allow",
        "Principal": {"AWS": "222222222222"},
        "Action": "vpc-lattice-svcs:Invoke",
        "Resource": format!("{SERVICE}/api/*"),
        "Condition": {
            "StringEquals": {"vpc-lattice-svcs:SourceVpc": "vpc-0a1b2c3d"},
            "StringEqualsIgnoreCase": {"vpc-lattice-svcs:RequestMethod": "get"},
            "IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
            "Bool": {"aws:SecureTransport": "true"},
            "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
            "StringNotEqualsIgnoreCase": {"aws:PrincipalType": "anonymous"}
        }
    }));
    parse(&json!({"Version": "2012-10-17", "Statement": statements})).expect("a valid policy")
}

/// What the agent fills for one HTTPS request.
fn request_context() -> Context {
    let mut context = Context::with_capacity(16, 512);
    for (key, value) in [
        ("vpc-lattice-svcs:Port", "443"),
        ("vpc-lattice-svcs:RequestMethod", "GET"),
        ("vpc-lattice-svcs:RequestPath", "/api/orders/42"),
        (
            "vpc-lattice-svcs:RequestHeader/content-type",
            "application/json",
        ),
        ("vpc-lattice-svcs:RequestHeader/user-agent", "curl/8.5.0"),
        ("vpc-lattice-svcs:ServiceArn", SERVICE),
        (
            "vpc-lattice-svcs:ServiceNetworkArn",
            "arn:lattice:vpc-lattice:local:111111111111:servicenetwork/sn-0123456789abcdef0",
        ),
        ("vpc-lattice-svcs:SourceVpc", "vpc-0a1b2c3d"),
        ("vpc-lattice-svcs:SourceVpcOwnerAccount", "222222222222"),
        ("aws:PrincipalType", "AssumedRole"),
        ("aws:PrincipalAccount", "222222222222"),
        ("aws:SourceIp", "10.91.0.7"),
        ("aws:CurrentTime", "2026-11-24T23:40:07Z"),
        ("aws:SecureTransport", "true"),
    ] {
        context.insert(key, value);
    }
    context
}

fn decision_20_statements(c: &mut Criterion) {
    let policy = policy();
    let context = request_context();
    let request = Request {
        caller: CALLER,
        action: "vpc-lattice-svcs:Invoke",
        resource: RESOURCE,
        context: &context,
    };
    match evaluate(&policy, &request) {
        Decision::Allow { statement } if statement.index == 19 => {}
        other => panic!("the bench must be decided by the last statement, got {other:?}"),
    }
    c.bench_function("decision_20_statements", |b| {
        b.iter(|| evaluate(black_box(&policy), black_box(&request)))
    });
    // The same with the context built per request, as the agent does.
    c.bench_function("decision_20_statements_with_context", |b| {
        b.iter(|| {
            let context = request_context();
            let request = Request {
                context: &context,
                ..request
            };
            evaluate(black_box(&policy), black_box(&request))
        })
    });
}

criterion_group!(benches, decision_20_statements);
criterion_main!(benches);
