//! Refused policies: each names the JSON path of its problem, and a document with several
//! problems is refused with all of them.

use serde_json::{json, Value};

use crate::parse;

/// A valid statement to break one element of.
fn statement() -> Value {
    json!({"Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*"})
}

/// A policy of one statement, with `key` set to `value` (or removed, for null).
fn with(key: &str, value: Value) -> Value {
    let mut s = statement();
    if let Some(object) = s.as_object_mut() {
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.to_owned(), value);
        }
    }
    json!({"Version": "2012-10-17", "Statement": [s]})
}

/// A policy whose one statement has this `NotPrincipal` instead of its `Principal`.
fn not_principal(value: Value) -> Value {
    let mut doc = with("Principal", Value::Null);
    doc["Statement"][0]["NotPrincipal"] = value;
    doc
}

/// A policy whose one statement has this `Condition`.
fn condition(block: Value) -> Value {
    with("Condition", block)
}

struct Case {
    what: &'static str,
    doc: Value,
    path: &'static str,
    message: &'static str,
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let c = |what, doc, path, message| Case { what, doc, path, message };
    vec![
        // The document.
        c("not an object", json!(["Statement"]), "", "must be a policy object with Version and Statement, not a list"),
        c("unknown element", json!({"Statement": [statement()], "Statements": []}), "Statements", "unknown policy element"),
        c("wrong Version", json!({"Version": "2020-01-01", "Statement": [statement()]}), "Version", "\"2020-01-01\" is not a policy version (2012-10-17 or 2008-10-17)"),
        c("Version not a string", json!({"Version": 2012, "Statement": [statement()]}), "Version", "2012 is not a policy version"),
        c("Id not a string", json!({"Id": 7, "Statement": [statement()]}), "Id", "must be a string, not a number"),
        c("no Statement", json!({"Version": "2012-10-17"}), "Statement", "is required"),
        c("empty Statement list", json!({"Statement": []}), "Statement", "must hold at least one statement"),
        c("Statement a string", json!({"Statement": "allow all"}), "Statement", "must be a statement object or a list of them, not a string"),
        c("statement not an object", json!({"Statement": [statement(), "x"]}), "Statement[1]", "a statement must be an object, not a string"),
        // Statement elements.
        c("unknown statement element", with("Principals", json!("*")), "Statement[0].Principals", "unknown statement element"),
        c("no Effect", with("Effect", Value::Null), "Statement[0].Effect", "is required (Allow or Deny)"),
        c("Effect Permit", with("Effect", json!("Permit")), "Statement[0].Effect", "\"Permit\" is not an effect (Allow or Deny)"),
        c("Effect in lower case", with("Effect", json!("allow")), "Statement[0].Effect", "is not an effect"),
        c("Sid with a space", with("Sid", json!("read only")), "Statement[0].Sid", "is not a statement id (letters and digits)"),
        c("duplicate Sid", json!({"Statement": [{"Sid": "A", "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}, {"Sid": "A", "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*"}]}), "Statement[1].Sid", "duplicate Sid \"A\""),
        // Principal.
        c("no Principal", with("Principal", Value::Null), "Statement[0].Principal", "is required (or NotPrincipal)"),
        c("Principal and NotPrincipal", with("NotPrincipal", json!("*")), "Statement[0].NotPrincipal", "a statement has Principal or NotPrincipal, not both"),
        c("Principal a bare ARN", with("Principal", json!("arn:lattice:iam::111111111111:role/web")), "Statement[0].Principal", "must be \"*\" or an object like {\"AWS\": [ARN, ...]}"),
        c("Principal a number", with("Principal", json!(1)), "Statement[0].Principal", "not a number"),
        c("Principal empty object", with("Principal", json!({})), "Statement[0].Principal", "must name principals"),
        c("Principal Service", with("Principal", json!({"Service": "lambda.amazonaws.com"})), "Statement[0].Principal.Service", "unsupported principal type"),
        c("AWS empty list", with("Principal", json!({"AWS": []})), "Statement[0].Principal.AWS", "must not be an empty list"),
        c("AWS item not a string", with("Principal", json!({"AWS": ["111111111111", 2]})), "Statement[0].Principal.AWS[1]", "must be a string, not a number"),
        c("principal of another partition", with("Principal", json!({"AWS": ["arn:aws:iam::111111111111:role/web"]})), "Statement[0].Principal.AWS[0]", "expected arn:lattice:iam::<account>"),
        c("principal with a wildcard", with("Principal", json!({"AWS": "arn:lattice:iam::111111111111:role/*"})), "Statement[0].Principal.AWS", "is not a valid principal name"),
        c("principal of a short account", with("Principal", json!({"AWS": ["arn:lattice:iam::11111111111:root"]})), "Statement[0].Principal.AWS[0]", "is not an account id (12 digits)"),
        c("principal group", with("Principal", json!({"AWS": ["arn:lattice:iam::111111111111:group/admins"]})), "Statement[0].Principal.AWS[0]", "is not a principal ARN"),
        c("principal a name", with("Principal", json!({"AWS": ["web"]})), "Statement[0].Principal.AWS[0]", "\"web\" is not a principal"),
        c("NotPrincipal bad account", not_principal(json!({"AWS": "12345"})), "Statement[0].NotPrincipal.AWS", "is not a principal"),
        // Action.
        c("no Action", with("Action", Value::Null), "Statement[0].Action", "is required (or NotAction)"),
        c("Action of another service", with("Action", json!("s3:GetObject")), "Statement[0].Action", "\"s3:GetObject\" is not an auth policy action"),
        c("Action without a name", with("Action", json!(["vpc-lattice-svcs:Invoke", "vpc-lattice-svcs:"])), "Statement[0].Action[1]", "is not an auth policy action"),
        c("Action with a dash", with("Action", json!("vpc-lattice-svcs:Invoke-All")), "Statement[0].Action", "is not an auth policy action"),
        c("Action an object", with("Action", json!({"a": 1})), "Statement[0].Action", "must be a string or a list of strings, not an object"),
        c("Action and NotAction", with("NotAction", json!("*")), "Statement[0].NotAction", "a statement has Action or NotAction, not both"),
        // Resource.
        c("no Resource", with("Resource", Value::Null), "Statement[0].Resource", "is required (or NotResource)"),
        c("Resource of another partition", with("Resource", json!("arn:aws:vpc-lattice:us-west-2:123456789012:service/svc-0123456789abcdef0/*")), "Statement[0].Resource", "is not a resource (*, */<path>, or an arn:lattice:vpc-lattice: ARN"),
        c("Resource ARN with too few parts", with("Resource", json!(["*", "arn:lattice:vpc-lattice:us-west-2:service/svc-1"])), "Statement[0].Resource[1]", "is not a resource ARN"),
        c("Resource a path", with("Resource", json!("/rates")), "Statement[0].Resource", "is not a resource"),
        // Condition.
        c("Condition a list", condition(json!([{"StringEquals": {}}])), "Statement[0].Condition", "must be an object of operator -> {key: value}, not a list"),
        c("unknown operator", condition(json!({"StringEqual": {"aws:SourceIp": "1"}})), "Statement[0].Condition.StringEqual", "\"StringEqual\" is not a condition operator"),
        c("NullIfExists", condition(json!({"NullIfExists": {"aws:SourceIp": "true"}})), "Statement[0].Condition.NullIfExists", "is not a condition operator"),
        c("unknown set qualifier", condition(json!({"ForSomeValues:StringEquals": {"a:b": "c"}})), "Statement[0].Condition.ForSomeValues:StringEquals", "is not a condition operator"),
        c("operator block a string", condition(json!({"StringEquals": "GET"})), "Statement[0].Condition.StringEquals", "must be an object of key -> value, not a string"),
        c("empty operator block", condition(json!({"StringEquals": {}})), "Statement[0].Condition.StringEquals", "must hold at least one condition key"),
        c("key without prefix", condition(json!({"StringEquals": {"SourceIp": "1"}})), "Statement[0].Condition.StringEquals.SourceIp", "\"SourceIp\" is not a condition key (prefix:name"),
        c("value an object", condition(json!({"StringEquals": {"a:b": {"c": 1}}})), "Statement[0].Condition.StringEquals.a:b", "must be a string, number, boolean or a non-empty list of them, not an object"),
        c("value an empty list", condition(json!({"StringEquals": {"a:b": []}})), "Statement[0].Condition.StringEquals.a:b", "non-empty list"),
        c("value null", condition(json!({"StringEquals": {"a:b": null}})), "Statement[0].Condition.StringEquals.a:b", "not null"),
        c("IpAddress nope", condition(json!({"IpAddress": {"aws:SourceIp": "nope"}})), "Statement[0].Condition.IpAddress.aws:SourceIp", "\"nope\" is not an IP address or CIDR block for IpAddress"),
        c("NotIpAddress bad prefix in a list", condition(json!({"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "10.0.0.0/33"]}})), "Statement[0].Condition.NotIpAddress.aws:SourceIp[1]", "is not an IP address or CIDR block for NotIpAddress"),
        c("IpAddress a number", condition(json!({"IpAddress": {"aws:SourceIp": 10}})), "Statement[0].Condition.IpAddress.aws:SourceIp", "10 is not an IP address"),
        c("Numeric word", condition(json!({"NumericLessThan": {"vpc-lattice-svcs:Port": "ten"}})), "Statement[0].Condition.NumericLessThan.vpc-lattice-svcs:Port", "\"ten\" is not a number for NumericLessThan"),
        c("Numeric boolean", condition(json!({"ForAnyValue:NumericEqualsIfExists": {"vpc-lattice-svcs:Port": [443, true]}})), "Statement[0].Condition.ForAnyValue:NumericEqualsIfExists.vpc-lattice-svcs:Port[1]", "true is not a number"),
        c("Date word", condition(json!({"DateGreaterThan": {"aws:CurrentTime": "yesterday"}})), "Statement[0].Condition.DateGreaterThan.aws:CurrentTime", "\"yesterday\" is not a date for DateGreaterThan"),
        c("Date impossible day", condition(json!({"DateLessThan": {"aws:CurrentTime": "2026-02-30T00:00:00Z"}})), "Statement[0].Condition.DateLessThan.aws:CurrentTime", "is not a date"),
        c("Date fractional epoch", condition(json!({"DateEquals": {"aws:CurrentTime": 1.5}})), "Statement[0].Condition.DateEquals.aws:CurrentTime", "1.5 is not a date"),
        c("Bool yes", condition(json!({"Bool": {"aws:SecureTransport": "yes"}})), "Statement[0].Condition.Bool.aws:SecureTransport", "\"yes\" is not a boolean for Bool (true or false)"),
        c("Null maybe", condition(json!({"Null": {"aws:PrincipalTag/Team": "maybe"}})), "Statement[0].Condition.Null.aws:PrincipalTag/Team", "is not a boolean for Null"),
        c("ArnLike not an ARN", condition(json!({"ArnLike": {"vpc-lattice-svcs:ServiceArn": "svc-0123456789abcdef0"}})), "Statement[0].Condition.ArnLike.vpc-lattice-svcs:ServiceArn", "is not an ARN for ArnLike"),
        c("ArnEquals too few parts", condition(json!({"ArnEquals": {"vpc-lattice-svcs:ServiceArn": "arn:lattice:vpc-lattice:local"}})), "Statement[0].Condition.ArnEquals.vpc-lattice-svcs:ServiceArn", "is not an ARN"),
        c("BinaryEquals not base64", condition(json!({"BinaryEquals": {"vpc-lattice-svcs:RequestHeader/x": "***"}})), "Statement[0].Condition.BinaryEquals.vpc-lattice-svcs:RequestHeader/x", "is not base64"),
        c("single statement object path", json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*"}}), "Statement.Resource", "is required (or NotResource)"),
    ]
}

#[test]
fn refused_policies_name_their_path() {
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        match parse(&case.doc) {
            Ok(_) => failures.push(format!("{}: accepted", case.what)),
            Err(errors) => {
                let [error] = &errors[..] else {
                    failures.push(format!("{}: expected one error, got {errors:?}", case.what));
                    continue;
                };
                if error.path != case.path || !error.message.contains(case.message) {
                    failures.push(format!(
                        "{}: expected {} ...{}..., got {} {:?}",
                        case.what, case.path, case.message, error.path, error.message
                    ));
                }
            }
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
fn every_problem_is_reported() {
    let doc = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Permit", "Principal": {"AWS": ["arn:aws:iam::111111111111:role/web", "*"]},
             "Action": "s3:GetObject", "Resource": "*"},
            {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": ["nope", "10.0.0.0/8", "also-nope"]},
                           "StringEqual": {"a:b": "c"}}}
        ]
    });
    let errors = parse(&doc).expect_err("refused");
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Statement[0].Effect",
            "Statement[0].Principal.AWS[0]",
            "Statement[0].Action",
            "Statement[1].Condition.IpAddress.aws:SourceIp[0]",
            "Statement[1].Condition.IpAddress.aws:SourceIp[2]",
            "Statement[1].Condition.StringEqual",
        ],
        "{errors:?}"
    );
    assert_eq!(
        errors[0].to_string(),
        "Statement[0].Effect: \"Permit\" is not an effect (Allow or Deny)"
    );
}

#[test]
fn accepted_shapes() {
    for doc in [
        json!({"Statement": {"Effect": "Deny", "NotPrincipal": "*", "NotAction": "*", "NotResource": "arn:lattice:vpc-lattice:local:111111111111:service/*"}}),
        json!({"Version": "2008-10-17", "Id": "x", "Statement": [{"Sid": "", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["vpc-lattice-svcs:*"], "Resource": ["*/*"]}]}),
        json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["111111111111", "arn:lattice:iam::222222222222:root", "arn:lattice:iam::333333333333:user/a+b=c,d.e@f_g-h"]}, "Action": "*", "Resource": "*",
            "Condition": {"ForAllValues:StringLikeIfExists": {"aws:PrincipalTag/x": ["y*", 1, true]},
                          "ForAnyValue:NumericGreaterThan": {"vpc-lattice-svcs:Port": ["1", 2.5]},
                          "DateGreaterThanEquals": {"aws:CurrentTime": ["2026", "2026-11", "2026-11-24T23:40Z", 1795563607]},
                          "Bool": {"aws:SecureTransport": ["True", false]},
                          "NotIpAddressIfExists": {"aws:SourceIp": ["2001:DB8:1234:5678::/64", "203.0.113.0/24"]},
                          "ArnNotLikeIfExists": {"vpc-lattice-svcs:ServiceNetworkArn": "arn:*:*:*:*:*"},
                          "ForAllValues:Null": {"a:b": "true"}}}]}),
    ] {
        if let Err(errors) = parse(&doc) {
            panic!("{doc}\nrefused: {errors:?}");
        }
    }
}
