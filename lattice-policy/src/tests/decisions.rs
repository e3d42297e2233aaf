//! The decision table: policy, caller, action, resource, request context -> decision and
//! deciding statement. The first policies are the examples of Lattice's auth policy
//! guide, as printed there (partition `aws` -> `lattice`); the rest pin IAM's evaluation
//! rules one at a time.

use serde_json::Value;

use crate::{evaluate, parse, Caller, Context, Decision, Request};

// ---------------------------------------------------------------------------------------
// Lattice's documentation ("Control access to VPC Lattice services using auth policies").

/// Example 1: Restrict access to services by a specific AWS organization.
const DOC_ORG: &str = r#"{ "Version":"2012-10-17", "Statement": [ { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*", "Condition": { "StringEquals": { "aws:PrincipalOrgID": [ "o-123456example" ] } } } ] }"#;

/// Example 2: Restrict access to a service by a specific IAM role.
const DOC_ROLE: &str = r#"{ "Version":"2012-10-17", "Statement":[ { "Effect": "Allow", "Principal": { "AWS": [ "arn:lattice:iam::123456789012:role/rates-client" ] }, "Action": "vpc-lattice-svcs:Invoke", "Resource": [ "arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0123456789abcdef0/*" ], "Condition": { "StringEquals": { "vpc-lattice-svcs:RequestMethod": "GET" } } } ] }"#;

/// Example 3: Restrict access to services by authenticated principals in a specific VPC.
const DOC_VPC: &str = r#"{ "Version":"2012-10-17", "Statement": [ { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*", "Condition": { "StringNotEquals": { "aws:PrincipalType": "Anonymous" }, "StringEquals": { "vpc-lattice-svcs:SourceVpc": "vpc-1a2b3c4d" } } } ] }"#;

/// "Resource tags" (the guide prints a trailing comma after "Gamma", which JSON refuses;
/// it is left out here).
const DOC_RESOURCE_TAG: &str = r#"{ "Version": "2012-10-17", "Statement": [ { "Sid": "AllowGammaAccess", "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0124446789abcdef0/*", "Condition": { "StringEquals": { "aws:ResourceTag/Environment": "Gamma" } } } ] }"#;

/// "Principal tags" (same trailing comma left out).
const DOC_PRINCIPAL_TAG: &str = r#"{ "Version": "2012-10-17", "Statement": [ { "Sid": "AllowPaymentsTeam", "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0123456789abcdef0/*", "Condition": { "StringEquals": { "aws:PrincipalTag/Team": "Payments" } } } ] }"#;

/// "Resource format for auth policies": the guide's `Resource` values (its HTTP examples
/// print a 10-digit account, kept as printed), each in an otherwise open statement.
const DOC_RES_HTTP_PATH: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "arn:lattice:vpc-lattice:us-west-2:1234567890:service/svc-0123456789abcdef0/rates" } }"#;
const DOC_RES_ANY_RATES: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*/rates" } }"#;
const DOC_RES_ANY_ANY: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*/*" } }"#;
const DOC_RES_GRPC_METHOD: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "arn:lattice:vpc-lattice:us-west-2:1234567890:service/svc-0123456789abcdef0/api.parking/GetRates" } }"#;
const DOC_RES_GRPC_SERVICE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "arn:lattice:vpc-lattice:us-west-2:1234567890:service/svc-0123456789abcdef0/api.parking/*" } }"#;
const DOC_RES_SERVICE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "arn:lattice:vpc-lattice:us-west-2:1234567890:service/svc-0123456789abcdef0/*" } }"#;

/// The console's "Allow only authenticated access" template, as `get-auth-policy` prints it.
const TEMPLATE_AUTHENTICATED: &str = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"vpc-lattice-svcs:Invoke","Resource":"*","Condition":{"StringNotEqualsIgnoreCase":{"aws:PrincipalType":"anonymous"}}}]}"#;
/// The console's "Allow authenticated and unauthenticated access" template.
const TEMPLATE_OPEN: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"vpc-lattice-svcs:Invoke","Resource":"*"}]}"#;

// ---------------------------------------------------------------------------------------
// IAM's rules, one policy per rule.

/// NotPrincipal with Deny, after IAM's NotPrincipal example: everyone but Bob is denied.
const NOT_PRINCIPAL_DENY: &str = r#"{ "Statement": [
  { "Effect": "Deny", "NotPrincipal": {"AWS": ["arn:lattice:iam::444455556666:user/Bob", "arn:lattice:iam::444455556666:root"]}, "Action": "vpc-lattice-svcs:Invoke", "Resource": "*" },
  { "Sid": "AllowAll", "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*" } ] }"#;
/// NotPrincipal naming only the account: its users are not excepted.
const NOT_PRINCIPAL_ACCOUNT_ONLY: &str = r#"{ "Statement": [
  { "Effect": "Deny", "NotPrincipal": {"AWS": "444455556666"}, "Action": "*", "Resource": "*" },
  { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*" } ] }"#;
/// NotPrincipal "*" excepts everyone: the deny never applies.
const NOT_PRINCIPAL_STAR: &str = r#"{ "Statement": [
  { "Effect": "Deny", "NotPrincipal": "*", "Action": "*", "Resource": "*" },
  { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*" } ] }"#;
/// NotPrincipal with Allow (IAM warns against it): it admits anonymous callers.
const NOT_PRINCIPAL_ALLOW: &str = r#"{ "Statement": { "Effect": "Allow", "NotPrincipal": {"AWS": "arn:lattice:iam::444455556666:user/Bob"}, "Action": "*", "Resource": "*" } }"#;
const PRINCIPAL_ACCOUNT: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": {"AWS": "444455556666"}, "Action": "*", "Resource": "*" } }"#;
const PRINCIPAL_ROOT: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": {"AWS": ["arn:lattice:iam::444455556666:root"]}, "Action": "*", "Resource": "*" } }"#;
const PRINCIPAL_AWS_STAR: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "*", "Resource": "*" } }"#;
const PRINCIPAL_ROLE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": {"AWS": "arn:lattice:iam::111111111111:role/web"}, "Action": "*", "Resource": "*" } }"#;

/// Explicit deny wins, though the allow comes first.
const DENY_WINS: &str = r#"{ "Statement": [
  { "Sid": "Everyone", "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*" },
  { "Sid": "NoPost", "Effect": "Deny", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*", "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "POST"}} } ] }"#;
/// Only a deny: nothing is ever allowed.
const DENY_ONLY: &str = r#"{ "Statement": { "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}} } }"#;
/// The first allow that applies decides.
const TWO_ALLOWS: &str = r#"{ "Statement": [
  { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "GET"}} },
  { "Sid": "Second", "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"vpc-lattice-svcs:SourceVpc": "vpc-1"}} } ] }"#;

const IF_EXISTS: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEqualsIfExists": {"vpc-lattice-svcs:RequestHeader/x-env": "prod"}} } }"#;
const NO_IF_EXISTS: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestHeader/x-env": "prod"}} } }"#;
const NOT_EQUALS: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringNotEquals": {"vpc-lattice-svcs:RequestHeader/x-env": "prod"}} } }"#;
/// IAM: with Deny and a negated ...IfExists operator, a missing key still denies.
const DENY_NOT_EQUALS_IF_EXISTS: &str = r#"{ "Statement": [
  { "Sid": "OnlyProd", "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringNotEqualsIfExists": {"vpc-lattice-svcs:RequestHeader/x-env": "prod"}} },
  { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*" } ] }"#;

const FOR_ALL: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"ForAllValues:StringEquals": {"vpc-lattice-svcs:RequestQueryString/tag": ["a", "b"]}} } }"#;
const FOR_ANY: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"ForAnyValue:StringEquals": {"vpc-lattice-svcs:RequestQueryString/tag": ["a", "b"]}} } }"#;
const FOR_ALL_NOT: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"ForAllValues:StringNotEquals": {"vpc-lattice-svcs:RequestQueryString/tag": ["a", "b"]}} } }"#;
const FOR_ANY_NOT: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"ForAnyValue:StringNotEquals": {"vpc-lattice-svcs:RequestQueryString/tag": ["a", "b"]}} } }"#;
const FOR_ANY_IF_EXISTS: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"ForAnyValue:StringLikeIfExists": {"vpc-lattice-svcs:RequestQueryString/tag": "a*"}} } }"#;
/// No set operator on a key with several values: any value may match.
const SINGLE_ON_MULTI: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestQueryString/tag": "a"}} } }"#;

const KEYS_AND: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "GET", "vpc-lattice-svcs:SourceVpc": "vpc-1"}} } }"#;
const OPERATORS_AND: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "GET"}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}} } }"#;
const VALUES_OR: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": ["GET", "HEAD"]}} } }"#;
const NEGATED_VALUES_NOR: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringNotEquals": {"vpc-lattice-svcs:RequestMethod": ["GET", "HEAD"]}} } }"#;

const IGNORE_CASE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEqualsIgnoreCase": {"vpc-lattice-svcs:RequestMethod": "get"}} } }"#;
const LIKE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringLike": {"vpc-lattice-svcs:RequestPath": ["/v1/*", "/v?/rates"]}} } }"#;
const NOT_LIKE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringNotLike": {"vpc-lattice-svcs:RequestPath": "/admin*"}} } }"#;
const KEY_CASE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"VPC-LATTICE-SVCS:requestmethod": "GET", "vpc-lattice-svcs:RequestHeader/Content-Type": "application/json"}} } }"#;

const PORT_EQUALS: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"NumericEquals": {"vpc-lattice-svcs:Port": 443}} } }"#;
const PORT_BELOW: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"vpc-lattice-svcs:Port": "1024"}} } }"#;
const PORT_RANGE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"NumericGreaterThanEquals": {"vpc-lattice-svcs:Port": 8000}, "NumericLessThanEquals": {"vpc-lattice-svcs:Port": 8080.0}} } }"#;
const PORT_NOT: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"NumericNotEquals": {"vpc-lattice-svcs:Port": 443}} } }"#;

const DATE_WINDOW: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}, "DateLessThan": {"aws:CurrentTime": "2027-01-01"}} } }"#;
const DATE_EQUALS_OFFSET: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"DateEquals": {"aws:CurrentTime": "2026-11-25T01:40:07+02:00"}} } }"#;
const DATE_EPOCH: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"DateLessThanEquals": {"aws:CurrentTime": 1795563607}} } }"#;

const SECURE_ONLY: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": true}} } }"#;

const IP_RANGE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]}} } }"#;
const DENY_OUTSIDE: &str = r#"{ "Statement": [
  { "Sid": "Outside", "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}} },
  { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*" } ] }"#;

const ARN_LIKE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"ArnLike": {"vpc-lattice-svcs:ServiceNetworkArn": "arn:lattice:vpc-lattice:*:123456789012:servicenetwork/sn-*"}} } }"#;
const ARN_EQUALS: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"ArnEquals": {"vpc-lattice-svcs:ServiceArn": "arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0123456789abcdef0"}} } }"#;
const ARN_NOT_LIKE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"ArnNotLike": {"vpc-lattice-svcs:ServiceNetworkArn": "arn:lattice:vpc-lattice:*:999999999999:*"}} } }"#;
/// IAM's ARN-versus-string example: the same pattern under StringLike and ArnLike.
const STRING_LIKE_ARN: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringLike": {"aws:SourceArn": "arn:aws:someservice:*:111122223333:finance/*"}} } }"#;
const ARN_LIKE_ARN: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:someservice:*:111122223333:finance/*"}} } }"#;

const NULL_TRUE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"Null": {"aws:PrincipalTag/Team": "true"}} } }"#;
const NULL_FALSE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"Null": {"aws:PrincipalTag/Team": false}} } }"#;
const BINARY: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"BinaryEquals": {"vpc-lattice-svcs:RequestHeader/x-token": "aGk="}} } }"#;

const RES_PATH: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": ["arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0123456789abcdef0/v1/*", "arn:lattice:vpc-lattice:*:123456789012:service/svc-0123456789abcdef0/*/admin", "arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0123456789abcdef0/v?/health"] } }"#;
const RES_OTHER_ACCOUNT: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "arn:lattice:vpc-lattice:us-west-2:999999999999:service/*" } }"#;
const NOT_RESOURCE_DENY: &str = r#"{ "Statement": [
  { "Sid": "PublicOnly", "Effect": "Deny", "Principal": "*", "Action": "*", "NotResource": "arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0123456789abcdef0/public/*" },
  { "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*" } ] }"#;
const NOT_ACTION: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "NotAction": "vpc-lattice-svcs:Connect", "Resource": "*" } }"#;
const ACTION_CASE: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": ["VPC-LATTICE-SVCS:invoke"], "Resource": "*" } }"#;
const ACTION_WILDCARD: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:In*", "Resource": "*" } }"#;
const ACTION_CONNECT: &str = r#"{ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Connect", "Resource": "*" } }"#;

/// Every policy of the table, for the "they all parse" check.
const ALL: &[&str] = &[
    DOC_ORG,
    DOC_ROLE,
    DOC_VPC,
    DOC_RESOURCE_TAG,
    DOC_PRINCIPAL_TAG,
    DOC_RES_HTTP_PATH,
    DOC_RES_ANY_RATES,
    DOC_RES_ANY_ANY,
    DOC_RES_GRPC_METHOD,
    DOC_RES_GRPC_SERVICE,
    DOC_RES_SERVICE,
    TEMPLATE_AUTHENTICATED,
    TEMPLATE_OPEN,
    NOT_PRINCIPAL_DENY,
    NOT_PRINCIPAL_ACCOUNT_ONLY,
    NOT_PRINCIPAL_STAR,
    NOT_PRINCIPAL_ALLOW,
    PRINCIPAL_ACCOUNT,
    PRINCIPAL_ROOT,
    PRINCIPAL_AWS_STAR,
    PRINCIPAL_ROLE,
    DENY_WINS,
    DENY_ONLY,
    TWO_ALLOWS,
    IF_EXISTS,
    NO_IF_EXISTS,
    NOT_EQUALS,
    DENY_NOT_EQUALS_IF_EXISTS,
    FOR_ALL,
    FOR_ANY,
    FOR_ALL_NOT,
    FOR_ANY_NOT,
    FOR_ANY_IF_EXISTS,
    SINGLE_ON_MULTI,
    KEYS_AND,
    OPERATORS_AND,
    VALUES_OR,
    NEGATED_VALUES_NOR,
    IGNORE_CASE,
    LIKE,
    NOT_LIKE,
    KEY_CASE,
    PORT_EQUALS,
    PORT_BELOW,
    PORT_RANGE,
    PORT_NOT,
    DATE_WINDOW,
    DATE_EQUALS_OFFSET,
    DATE_EPOCH,
    SECURE_ONLY,
    IP_RANGE,
    DENY_OUTSIDE,
    ARN_LIKE,
    ARN_EQUALS,
    ARN_NOT_LIKE,
    STRING_LIKE_ARN,
    ARN_LIKE_ARN,
    NULL_TRUE,
    NULL_FALSE,
    BINARY,
    RES_PATH,
    RES_OTHER_ACCOUNT,
    NOT_RESOURCE_DENY,
    NOT_ACTION,
    ACTION_CASE,
    ACTION_WILDCARD,
    ACTION_CONNECT,
];

// ---------------------------------------------------------------------------------------
// Callers, actions, resources.

const ANON: Caller<'static> = Caller::Anonymous;
const RATES: Caller<'static> = Caller::Principal {
    arn: "arn:lattice:iam::123456789012:role/rates-client",
    account: "123456789012",
};
const OTHER_ROLE: Caller<'static> = Caller::Principal {
    arn: "arn:lattice:iam::123456789012:role/batch",
    account: "123456789012",
};
const BOB: Caller<'static> = Caller::Principal {
    arn: "arn:lattice:iam::444455556666:user/Bob",
    account: "444455556666",
};
const ALICE: Caller<'static> = Caller::Principal {
    arn: "arn:lattice:iam::444455556666:user/Alice",
    account: "444455556666",
};
const WEB: Caller<'static> = Caller::Principal {
    arn: "arn:lattice:iam::111111111111:role/web",
    account: "111111111111",
};

const INVOKE: &str = "vpc-lattice-svcs:Invoke";
const CONNECT: &str = "vpc-lattice-svcs:Connect";

/// A path of the guide's service `svc-0123456789abcdef0` in account 123456789012.
macro_rules! svc {
    ($path:literal) => {
        concat!(
            "arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0123456789abcdef0",
            $path
        )
    };
}
/// The same service under the guide's 10-digit account (its resource-format table).
macro_rules! svc10 {
    ($path:literal) => {
        concat!(
            "arn:lattice:vpc-lattice:us-west-2:1234567890:service/svc-0123456789abcdef0",
            $path
        )
    };
}
const GAMMA_SVC: &str =
    "arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0124446789abcdef0/items";

// Frequent contexts.
const NONE: &[(&str, &str)] = &[];
const GET: &[(&str, &str)] = &[("vpc-lattice-svcs:RequestMethod", "GET")];
const POST: &[(&str, &str)] = &[("vpc-lattice-svcs:RequestMethod", "POST")];
const NOW: &[(&str, &str)] = &[("aws:CurrentTime", "2026-11-24T23:40:07Z")];

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Allowed by the statement displayed so.
    Allow(&'static str),
    /// Denied by the statement displayed so.
    Deny(&'static str),
    /// No statement applies.
    Implicit,
}
use Expect::{Allow, Deny, Implicit};

const S0: &str = "Statement[0]";
const S1: &str = "Statement[1]";

struct Case {
    what: &'static str,
    policy: &'static str,
    caller: Caller<'static>,
    action: &'static str,
    resource: &'static str,
    context: &'static [(&'static str, &'static str)],
    expect: Expect,
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Lattice's example 1: an organization.
    Case { what: "doc 1: principal of the organization", policy: DOC_ORG, caller: RATES, action: INVOKE, resource: svc!("/rates"), context: &[("aws:PrincipalOrgID", "o-123456example")], expect: Allow(S0) },
    Case { what: "doc 1: principal of another organization", policy: DOC_ORG, caller: RATES, action: INVOKE, resource: svc!("/rates"), context: &[("aws:PrincipalOrgID", "o-other")], expect: Implicit },
    Case { what: "doc 1: anonymous caller has no organization", policy: DOC_ORG, caller: ANON, action: INVOKE, resource: svc!("/rates"), context: &[("aws:PrincipalType", "Anonymous")], expect: Implicit },
    // Lattice's example 2: one role, GET only, one service.
    Case { what: "doc 2: the role, GET", policy: DOC_ROLE, caller: RATES, action: INVOKE, resource: svc!("/rates"), context: GET, expect: Allow(S0) },
    Case { what: "doc 2: the role, GET on the service root", policy: DOC_ROLE, caller: RATES, action: INVOKE, resource: svc!("/"), context: GET, expect: Allow(S0) },
    Case { what: "doc 2: the role, POST", policy: DOC_ROLE, caller: RATES, action: INVOKE, resource: svc!("/rates"), context: POST, expect: Implicit },
    Case { what: "doc 2: StringEquals is case-sensitive (get)", policy: DOC_ROLE, caller: RATES, action: INVOKE, resource: svc!("/rates"), context: &[("vpc-lattice-svcs:RequestMethod", "get")], expect: Implicit },
    Case { what: "doc 2: another role of the same account", policy: DOC_ROLE, caller: OTHER_ROLE, action: INVOKE, resource: svc!("/rates"), context: GET, expect: Implicit },
    Case { what: "doc 2: anonymous", policy: DOC_ROLE, caller: ANON, action: INVOKE, resource: svc!("/rates"), context: GET, expect: Implicit },
    Case { what: "doc 2: another service", policy: DOC_ROLE, caller: RATES, action: INVOKE, resource: "arn:lattice:vpc-lattice:us-west-2:123456789012:service/svc-0fffffffffffffff0/rates", context: GET, expect: Implicit },
    Case { what: "doc 2: the service ARN without a path", policy: DOC_ROLE, caller: RATES, action: INVOKE, resource: svc!(""), context: GET, expect: Implicit },
    // Lattice's example 3: authenticated callers of one VPC.
    Case { what: "doc 3: authenticated, from the VPC", policy: DOC_VPC, caller: RATES, action: INVOKE, resource: svc!("/rates"), context: &[("aws:PrincipalType", "AssumedRole"), ("vpc-lattice-svcs:SourceVpc", "vpc-1a2b3c4d")], expect: Allow(S0) },
    Case { what: "doc 3: anonymous, from the VPC", policy: DOC_VPC, caller: ANON, action: INVOKE, resource: svc!("/rates"), context: &[("aws:PrincipalType", "Anonymous"), ("vpc-lattice-svcs:SourceVpc", "vpc-1a2b3c4d")], expect: Implicit },
    Case { what: "doc 3: authenticated, from another VPC", policy: DOC_VPC, caller: RATES, action: INVOKE, resource: svc!("/rates"), context: &[("aws:PrincipalType", "AssumedRole"), ("vpc-lattice-svcs:SourceVpc", "vpc-99999999")], expect: Implicit },
    Case { what: "doc 3: StringNotEquals on a missing key is true", policy: DOC_VPC, caller: RATES, action: INVOKE, resource: svc!("/rates"), context: &[("vpc-lattice-svcs:SourceVpc", "vpc-1a2b3c4d")], expect: Allow(S0) },
    Case { what: "doc 3: StringNotEquals is case-sensitive (anonymous)", policy: DOC_VPC, caller: ANON, action: INVOKE, resource: svc!("/rates"), context: &[("aws:PrincipalType", "anonymous"), ("vpc-lattice-svcs:SourceVpc", "vpc-1a2b3c4d")], expect: Allow(S0) },
    // Lattice's resource-tag and principal-tag examples.
    Case { what: "doc resource tag: tagged service", policy: DOC_RESOURCE_TAG, caller: ANON, action: INVOKE, resource: GAMMA_SVC, context: &[("aws:ResourceTag/Environment", "Gamma")], expect: Allow("Sid \"AllowGammaAccess\"") },
    Case { what: "doc resource tag: tag value case differs", policy: DOC_RESOURCE_TAG, caller: ANON, action: INVOKE, resource: GAMMA_SVC, context: &[("aws:ResourceTag/Environment", "gamma")], expect: Implicit },
    Case { what: "doc resource tag: another service", policy: DOC_RESOURCE_TAG, caller: ANON, action: INVOKE, resource: svc!("/items"), context: &[("aws:ResourceTag/Environment", "Gamma")], expect: Implicit },
    Case { what: "doc principal tag: Team=Payments", policy: DOC_PRINCIPAL_TAG, caller: WEB, action: INVOKE, resource: svc!("/pay"), context: &[("aws:PrincipalTag/Team", "Payments")], expect: Allow("Sid \"AllowPaymentsTeam\"") },
    Case { what: "doc principal tag: key names ignore case", policy: DOC_PRINCIPAL_TAG, caller: WEB, action: INVOKE, resource: svc!("/pay"), context: &[("AWS:PRINCIPALTAG/team", "Payments")], expect: Allow("Sid \"AllowPaymentsTeam\"") },
    Case { what: "doc principal tag: Team=payments", policy: DOC_PRINCIPAL_TAG, caller: WEB, action: INVOKE, resource: svc!("/pay"), context: &[("aws:PrincipalTag/Team", "payments")], expect: Implicit },
    Case { what: "doc principal tag: untagged caller", policy: DOC_PRINCIPAL_TAG, caller: WEB, action: INVOKE, resource: svc!("/pay"), context: NONE, expect: Implicit },
    // Lattice's resource formats.
    Case { what: "doc resource: one HTTP path", policy: DOC_RES_HTTP_PATH, caller: ANON, action: INVOKE, resource: svc10!("/rates"), context: NONE, expect: Allow(S0) },
    Case { what: "doc resource: one HTTP path, deeper path", policy: DOC_RES_HTTP_PATH, caller: ANON, action: INVOKE, resource: svc10!("/rates/today"), context: NONE, expect: Implicit },
    Case { what: "doc resource: */rates on any service", policy: DOC_RES_ANY_RATES, caller: ANON, action: INVOKE, resource: svc!("/rates"), context: NONE, expect: Allow(S0) },
    Case { what: "doc resource: */rates, other path", policy: DOC_RES_ANY_RATES, caller: ANON, action: INVOKE, resource: svc!("/prices"), context: NONE, expect: Implicit },
    Case { what: "doc resource: */* on any path", policy: DOC_RES_ANY_ANY, caller: ANON, action: INVOKE, resource: svc!("/a/b/c"), context: NONE, expect: Allow(S0) },
    Case { what: "doc resource: one gRPC method", policy: DOC_RES_GRPC_METHOD, caller: ANON, action: INVOKE, resource: svc10!("/api.parking/GetRates"), context: NONE, expect: Allow(S0) },
    Case { what: "doc resource: one gRPC method, another method", policy: DOC_RES_GRPC_METHOD, caller: ANON, action: INVOKE, resource: svc10!("/api.parking/SetRates"), context: NONE, expect: Implicit },
    Case { what: "doc resource: one gRPC service", policy: DOC_RES_GRPC_SERVICE, caller: ANON, action: INVOKE, resource: svc10!("/api.parking/SetRates"), context: NONE, expect: Allow(S0) },
    Case { what: "doc resource: one gRPC service, another service", policy: DOC_RES_GRPC_SERVICE, caller: ANON, action: INVOKE, resource: svc10!("/api.billing/Get"), context: NONE, expect: Implicit },
    Case { what: "doc resource: the whole service", policy: DOC_RES_SERVICE, caller: ANON, action: INVOKE, resource: svc10!("/anything/at/all"), context: NONE, expect: Allow(S0) },
    // The console's templates.
    Case { what: "template authenticated: signed caller", policy: TEMPLATE_AUTHENTICATED, caller: WEB, action: INVOKE, resource: svc!("/"), context: &[("aws:PrincipalType", "AssumedRole")], expect: Allow(S0) },
    Case { what: "template authenticated: anonymous (IgnoreCase)", policy: TEMPLATE_AUTHENTICATED, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:PrincipalType", "Anonymous")], expect: Implicit },
    Case { what: "template open: anonymous", policy: TEMPLATE_OPEN, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    // NotPrincipal.
    Case { what: "NotPrincipal+Deny: the excepted user", policy: NOT_PRINCIPAL_DENY, caller: BOB, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow("Sid \"AllowAll\"") },
    Case { what: "NotPrincipal+Deny: another user of the account", policy: NOT_PRINCIPAL_DENY, caller: ALICE, action: INVOKE, resource: svc!("/"), context: NONE, expect: Deny(S0) },
    Case { what: "NotPrincipal+Deny: another account", policy: NOT_PRINCIPAL_DENY, caller: WEB, action: INVOKE, resource: svc!("/"), context: NONE, expect: Deny(S0) },
    Case { what: "NotPrincipal+Deny: anonymous", policy: NOT_PRINCIPAL_DENY, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Deny(S0) },
    Case { what: "NotPrincipal+Deny: account only does not except its users", policy: NOT_PRINCIPAL_ACCOUNT_ONLY, caller: BOB, action: INVOKE, resource: svc!("/"), context: NONE, expect: Deny(S0) },
    Case { what: "NotPrincipal+Deny: account only excepts the account root", policy: NOT_PRINCIPAL_ACCOUNT_ONLY, caller: Caller::Principal { arn: "arn:lattice:iam::444455556666:root", account: "444455556666" }, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S1) },
    Case { what: "NotPrincipal * excepts everyone", policy: NOT_PRINCIPAL_STAR, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S1) },
    Case { what: "NotPrincipal+Allow: anonymous is admitted", policy: NOT_PRINCIPAL_ALLOW, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "NotPrincipal+Allow: the listed user is not", policy: NOT_PRINCIPAL_ALLOW, caller: BOB, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    // Principal forms; anonymous versus "*".
    Case { what: "account id covers its users", policy: PRINCIPAL_ACCOUNT, caller: BOB, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "account id: another account", policy: PRINCIPAL_ACCOUNT, caller: WEB, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "account id: anonymous", policy: PRINCIPAL_ACCOUNT, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "account root ARN covers its users", policy: PRINCIPAL_ROOT, caller: ALICE, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "{AWS: *} admits anonymous", policy: PRINCIPAL_AWS_STAR, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "\"*\" admits anonymous", policy: TEMPLATE_OPEN, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "\"*\" admits the authenticated", policy: TEMPLATE_OPEN, caller: BOB, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "role ARN: that role", policy: PRINCIPAL_ROLE, caller: WEB, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "role ARN: anonymous", policy: PRINCIPAL_ROLE, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "role ARN: a user of the same account", policy: PRINCIPAL_ROLE, caller: Caller::Principal { arn: "arn:lattice:iam::111111111111:user/web", account: "111111111111" }, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    // Deny and allow.
    Case { what: "allow without a matching deny", policy: DENY_WINS, caller: ANON, action: INVOKE, resource: svc!("/"), context: GET, expect: Allow("Sid \"Everyone\"") },
    Case { what: "explicit deny beats the earlier allow", policy: DENY_WINS, caller: ANON, action: INVOKE, resource: svc!("/"), context: POST, expect: Deny("Sid \"NoPost\"") },
    Case { what: "a deny alone never allows", policy: DENY_ONLY, caller: WEB, action: INVOKE, resource: svc!("/"), context: &[("aws:SecureTransport", "true")], expect: Implicit },
    Case { what: "a deny alone denies", policy: DENY_ONLY, caller: WEB, action: INVOKE, resource: svc!("/"), context: &[("aws:SecureTransport", "false")], expect: Deny(S0) },
    Case { what: "Bool on a missing key is false", policy: DENY_ONLY, caller: WEB, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "the first applying allow decides", policy: TWO_ALLOWS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "GET"), ("vpc-lattice-svcs:SourceVpc", "vpc-1")], expect: Allow(S0) },
    Case { what: "a later allow decides when the first does not apply", policy: TWO_ALLOWS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "PUT"), ("vpc-lattice-svcs:SourceVpc", "vpc-1")], expect: Allow("Sid \"Second\"") },
    // ...IfExists and missing keys.
    Case { what: "IfExists: missing key is true", policy: IF_EXISTS, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "IfExists: present and equal", policy: IF_EXISTS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestHeader/x-env", "prod")], expect: Allow(S0) },
    Case { what: "IfExists: present and different", policy: IF_EXISTS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestHeader/x-env", "dev")], expect: Implicit },
    Case { what: "without IfExists a missing key is false", policy: NO_IF_EXISTS, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "StringNotEquals: missing key is true", policy: NOT_EQUALS, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "StringNotEquals: equal value", policy: NOT_EQUALS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestHeader/x-env", "prod")], expect: Implicit },
    Case { what: "StringNotEquals: other value", policy: NOT_EQUALS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestHeader/x-env", "dev")], expect: Allow(S0) },
    Case { what: "Deny + StringNotEqualsIfExists: missing key still denies", policy: DENY_NOT_EQUALS_IF_EXISTS, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Deny("Sid \"OnlyProd\"") },
    Case { what: "Deny + StringNotEqualsIfExists: prod passes", policy: DENY_NOT_EQUALS_IF_EXISTS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestHeader/x-env", "prod")], expect: Allow(S1) },
    // Set qualifiers.
    Case { what: "ForAllValues: empty set is true", policy: FOR_ALL, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "ForAllValues: every value listed", policy: FOR_ALL, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestQueryString/tag", "b"), ("vpc-lattice-svcs:RequestQueryString/tag", "a")], expect: Allow(S0) },
    Case { what: "ForAllValues: one value not listed", policy: FOR_ALL, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestQueryString/tag", "a"), ("vpc-lattice-svcs:RequestQueryString/tag", "c")], expect: Implicit },
    Case { what: "ForAnyValue: empty set is false", policy: FOR_ANY, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "ForAnyValue: one value listed", policy: FOR_ANY, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestQueryString/tag", "c"), ("vpc-lattice-svcs:RequestQueryString/tag", "a")], expect: Allow(S0) },
    Case { what: "ForAnyValue: no value listed", policy: FOR_ANY, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestQueryString/tag", "c"), ("vpc-lattice-svcs:RequestQueryString/tag", "d")], expect: Implicit },
    Case { what: "ForAllValues:StringNotEquals: no value listed", policy: FOR_ALL_NOT, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestQueryString/tag", "c"), ("vpc-lattice-svcs:RequestQueryString/tag", "d")], expect: Allow(S0) },
    Case { what: "ForAllValues:StringNotEquals: one value listed", policy: FOR_ALL_NOT, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestQueryString/tag", "c"), ("vpc-lattice-svcs:RequestQueryString/tag", "a")], expect: Implicit },
    Case { what: "ForAnyValue:StringNotEquals: one value unlisted", policy: FOR_ANY_NOT, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestQueryString/tag", "a"), ("vpc-lattice-svcs:RequestQueryString/tag", "c")], expect: Allow(S0) },
    Case { what: "ForAnyValue:StringNotEquals: all values listed", policy: FOR_ANY_NOT, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestQueryString/tag", "a"), ("vpc-lattice-svcs:RequestQueryString/tag", "b")], expect: Implicit },
    Case { what: "ForAnyValue:StringNotEquals: empty set is false", policy: FOR_ANY_NOT, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "ForAnyValue + IfExists: empty set is true", policy: FOR_ANY_IF_EXISTS, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "no set operator, several values: any may match", policy: SINGLE_ON_MULTI, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestQueryString/tag", "z"), ("vpc-lattice-svcs:RequestQueryString/tag", "a")], expect: Allow(S0) },
    // AND of keys and operators, OR of values, NOR of negated values.
    Case { what: "two keys: both match", policy: KEYS_AND, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "GET"), ("vpc-lattice-svcs:SourceVpc", "vpc-1")], expect: Allow(S0) },
    Case { what: "two keys: one matches", policy: KEYS_AND, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "GET"), ("vpc-lattice-svcs:SourceVpc", "vpc-2")], expect: Implicit },
    Case { what: "two operators: both hold", policy: OPERATORS_AND, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "GET"), ("aws:SourceIp", "10.1.2.3")], expect: Allow(S0) },
    Case { what: "two operators: one fails", policy: OPERATORS_AND, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "GET"), ("aws:SourceIp", "172.16.0.1")], expect: Implicit },
    Case { what: "values OR: second value", policy: VALUES_OR, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "HEAD")], expect: Allow(S0) },
    Case { what: "values OR: no value", policy: VALUES_OR, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "PUT")], expect: Implicit },
    Case { what: "negated values NOR: one listed", policy: NEGATED_VALUES_NOR, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "HEAD")], expect: Implicit },
    Case { what: "negated values NOR: none listed", policy: NEGATED_VALUES_NOR, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "PUT")], expect: Allow(S0) },
    // String case rules and wildcards.
    Case { what: "StringEqualsIgnoreCase: GET ~ get", policy: IGNORE_CASE, caller: ANON, action: INVOKE, resource: svc!("/"), context: GET, expect: Allow(S0) },
    Case { what: "StringEqualsIgnoreCase: POST", policy: IGNORE_CASE, caller: ANON, action: INVOKE, resource: svc!("/"), context: POST, expect: Implicit },
    Case { what: "StringLike: * across slashes", policy: LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestPath", "/v1/rates/today")], expect: Allow(S0) },
    Case { what: "StringLike: ? is one character", policy: LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestPath", "/v2/rates")], expect: Allow(S0) },
    Case { what: "StringLike: ? is not two characters", policy: LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestPath", "/v10/rates")], expect: Implicit },
    Case { what: "StringLike: case-sensitive", policy: LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestPath", "/V1/rates")], expect: Implicit },
    Case { what: "StringNotLike: matching value", policy: NOT_LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestPath", "/admin/users")], expect: Implicit },
    Case { what: "StringNotLike: other value", policy: NOT_LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestPath", "/rates")], expect: Allow(S0) },
    Case { what: "StringNotLike: missing key is true", policy: NOT_LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "key names ignore case on both sides", policy: KEY_CASE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "GET"), ("vpc-lattice-svcs:requestheader/content-type", "application/json")], expect: Allow(S0) },
    Case { what: "key names ignore case, values do not", policy: KEY_CASE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestMethod", "GET"), ("vpc-lattice-svcs:RequestHeader/Content-Type", "Application/JSON")], expect: Implicit },
    // Numeric.
    Case { what: "NumericEquals: 443", policy: PORT_EQUALS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:Port", "443")], expect: Allow(S0) },
    Case { what: "NumericEquals: 80", policy: PORT_EQUALS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:Port", "80")], expect: Implicit },
    Case { what: "NumericEquals: unreadable request value", policy: PORT_EQUALS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:Port", "https")], expect: Implicit },
    Case { what: "NumericLessThan: 80 < 1024", policy: PORT_BELOW, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:Port", "80")], expect: Allow(S0) },
    Case { what: "NumericLessThan: 1024 is not < 1024", policy: PORT_BELOW, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:Port", "1024")], expect: Implicit },
    Case { what: "Numeric range: inside", policy: PORT_RANGE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:Port", "8080")], expect: Allow(S0) },
    Case { what: "Numeric range: outside", policy: PORT_RANGE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:Port", "8443")], expect: Implicit },
    Case { what: "NumericNotEquals: missing key is true", policy: PORT_NOT, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "NumericNotEquals: equal", policy: PORT_NOT, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:Port", "443.0")], expect: Implicit },
    // Dates.
    Case { what: "Date window: inside", policy: DATE_WINDOW, caller: ANON, action: INVOKE, resource: svc!("/"), context: NOW, expect: Allow(S0) },
    Case { what: "Date window: after", policy: DATE_WINDOW, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:CurrentTime", "2027-02-01T00:00:00Z")], expect: Implicit },
    Case { what: "Date window: missing key", policy: DATE_WINDOW, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "DateEquals across time zones", policy: DATE_EQUALS_OFFSET, caller: ANON, action: INVOKE, resource: svc!("/"), context: NOW, expect: Allow(S0) },
    Case { what: "DateLessThanEquals epoch seconds: equal", policy: DATE_EPOCH, caller: ANON, action: INVOKE, resource: svc!("/"), context: NOW, expect: Allow(S0) },
    Case { what: "DateLessThanEquals epoch seconds: one second later", policy: DATE_EPOCH, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:CurrentTime", "2026-11-24T23:40:08Z")], expect: Implicit },
    // Bool.
    Case { what: "Bool: true", policy: SECURE_ONLY, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SecureTransport", "true")], expect: Allow(S0) },
    Case { what: "Bool: false", policy: SECURE_ONLY, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SecureTransport", "false")], expect: Implicit },
    // IP addresses.
    Case { what: "IpAddress: inside a CIDR", policy: IP_RANGE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SourceIp", "10.200.3.4")], expect: Allow(S0) },
    Case { what: "IpAddress: the single address", policy: IP_RANGE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SourceIp", "192.0.2.7")], expect: Allow(S0) },
    Case { what: "IpAddress: next to the single address", policy: IP_RANGE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SourceIp", "192.0.2.8")], expect: Implicit },
    Case { what: "IpAddress: IPv6", policy: IP_RANGE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SourceIp", "2001:db8:1::5")], expect: Allow(S0) },
    Case { what: "IpAddress: missing key", policy: IP_RANGE, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "NotIpAddress in a deny: outside", policy: DENY_OUTSIDE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SourceIp", "192.168.1.1")], expect: Deny("Sid \"Outside\"") },
    Case { what: "NotIpAddress in a deny: inside", policy: DENY_OUTSIDE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SourceIp", "10.0.0.1")], expect: Allow(S1) },
    // ARNs.
    Case { what: "ArnLike: network of the account", policy: ARN_LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:ServiceNetworkArn", "arn:lattice:vpc-lattice:us-west-2:123456789012:servicenetwork/sn-0123456789abcdef0")], expect: Allow(S0) },
    Case { what: "ArnLike: network of another account", policy: ARN_LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:ServiceNetworkArn", "arn:lattice:vpc-lattice:us-west-2:999999999999:servicenetwork/sn-0123456789abcdef0")], expect: Implicit },
    Case { what: "ArnEquals: the service", policy: ARN_EQUALS, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:ServiceArn", svc!(""))], expect: Allow(S0) },
    Case { what: "ArnNotLike: missing key is true", policy: ARN_NOT_LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "ArnNotLike: matching network", policy: ARN_NOT_LIKE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:ServiceNetworkArn", "arn:lattice:vpc-lattice:us-west-2:999999999999:servicenetwork/sn-1")], expect: Implicit },
    Case { what: "StringLike lets * cross ARN colons", policy: STRING_LIKE_ARN, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SourceArn", "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt")], expect: Allow(S0) },
    Case { what: "ArnLike keeps * within a segment", policy: ARN_LIKE_ARN, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:SourceArn", "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt")], expect: Implicit },
    // Null and BinaryEquals.
    Case { what: "Null true: key missing", policy: NULL_TRUE, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "Null true: key present", policy: NULL_TRUE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:PrincipalTag/Team", "x")], expect: Implicit },
    Case { what: "Null false: key present", policy: NULL_FALSE, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("aws:PrincipalTag/Team", "x")], expect: Allow(S0) },
    Case { what: "Null false: key missing", policy: NULL_FALSE, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "BinaryEquals: bytes of the base64 value", policy: BINARY, caller: ANON, action: INVOKE, resource: svc!("/"), context: &[("vpc-lattice-svcs:RequestHeader/x-token", "hi")], expect: Allow(S0) },
    // Resource paths, NotResource, actions, NotAction.
    Case { what: "Resource path prefix", policy: RES_PATH, caller: ANON, action: INVOKE, resource: svc!("/v1/rates"), context: NONE, expect: Allow(S0) },
    Case { what: "Resource path prefix: other prefix", policy: RES_PATH, caller: ANON, action: INVOKE, resource: svc!("/v2/rates"), context: NONE, expect: Implicit },
    Case { what: "Resource wildcard mid-path, any region", policy: RES_PATH, caller: ANON, action: INVOKE, resource: "arn:lattice:vpc-lattice:eu-west-1:123456789012:service/svc-0123456789abcdef0/team/admin", context: NONE, expect: Allow(S0) },
    Case { what: "Resource ? in the path", policy: RES_PATH, caller: ANON, action: INVOKE, resource: svc!("/v3/health"), context: NONE, expect: Allow(S0) },
    Case { what: "Resource of another account", policy: RES_OTHER_ACCOUNT, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "NotResource deny: outside the public paths", policy: NOT_RESOURCE_DENY, caller: ANON, action: INVOKE, resource: svc!("/private/x"), context: NONE, expect: Deny("Sid \"PublicOnly\"") },
    Case { what: "NotResource deny: a public path", policy: NOT_RESOURCE_DENY, caller: ANON, action: INVOKE, resource: svc!("/public/x"), context: NONE, expect: Allow(S1) },
    Case { what: "NotAction: Invoke is not Connect", policy: NOT_ACTION, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "NotAction: Connect is excluded", policy: NOT_ACTION, caller: ANON, action: CONNECT, resource: svc!("/"), context: NONE, expect: Implicit },
    Case { what: "Action names ignore case", policy: ACTION_CASE, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "Action wildcard", policy: ACTION_WILDCARD, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Allow(S0) },
    Case { what: "Action of another name", policy: ACTION_CONNECT, caller: ANON, action: INVOKE, resource: svc!("/"), context: NONE, expect: Implicit },
];

#[test]
fn decision_table() {
    assert!(CASES.len() >= 80, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let doc: Value = serde_json::from_str(case.policy).expect("table policies are JSON");
        let policy = match parse(&doc) {
            Ok(policy) => policy,
            Err(errors) => {
                failures.push(format!("{}: policy refused: {errors:?}", case.what));
                continue;
            }
        };
        let mut context = Context::new();
        for (key, value) in case.context {
            context.insert(key, value);
        }
        let decision = evaluate(
            &policy,
            &Request {
                caller: case.caller,
                action: case.action,
                resource: case.resource,
                context: &context,
            },
        );
        let ok = match (&decision, case.expect) {
            (Decision::Allow { statement }, Allow(id)) => statement.to_string() == id,
            (Decision::Deny { statement }, Deny(id)) => statement.to_string() == id,
            (Decision::ImplicitDeny, Implicit) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {decision:?}",
                case.what, case.expect
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
fn every_table_policy_parses() {
    for text in ALL {
        let doc: Value = serde_json::from_str(text).expect("JSON");
        if let Err(errors) = parse(&doc) {
            panic!("{text}\nrefused: {errors:?}");
        }
    }
}

#[test]
fn named_principals_with_paths() {
    let doc: Value = serde_json::from_str(NOT_PRINCIPAL_DENY).expect("JSON");
    let policy = parse(&doc).expect("valid");
    let named: Vec<(String, &str)> = policy.named_principals().collect();
    assert_eq!(
        named,
        [
            (
                "Statement[0].NotPrincipal.AWS[0]".to_owned(),
                "arn:lattice:iam::444455556666:user/Bob"
            ),
            (
                "Statement[0].NotPrincipal.AWS[1]".to_owned(),
                "arn:lattice:iam::444455556666:root"
            ),
        ]
    );
    let doc: Value = serde_json::from_str(PRINCIPAL_ACCOUNT).expect("JSON");
    let policy = parse(&doc).expect("valid");
    let named: Vec<(String, &str)> = policy.named_principals().collect();
    assert_eq!(
        named,
        [("Statement.Principal.AWS".to_owned(), "444455556666")]
    );
    let doc: Value = serde_json::from_str(TEMPLATE_OPEN).expect("JSON");
    assert_eq!(parse(&doc).expect("valid").named_principals().count(), 0);
}

#[test]
fn decisions_are_shared_across_threads() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync>() {}
    assert_traits::<crate::Policy>();
    assert_traits::<Context>();
    assert_traits::<Decision>();
}
