//! The `Condition` element: operators, their values (read once, at parse time), and
//! their evaluation against a request context.
//!
//! IAM's rules, as its condition-operator and multivalued-key references give them:
//! - operators in a block, and keys under an operator, must all hold (AND);
//! - the values listed for one key match when any of them does (OR); for a negated
//!   operator (`StringNotEquals`, `NotIpAddress`, `ArnNotLike`, ...) the key holds when
//!   none of them does (NOR);
//! - a key missing from the request does not match, so a positive operator is false and
//!   a negated one true; `...IfExists` makes a missing key true whatever the operator;
//!   `ForAllValues` over a missing (empty) set is true, `ForAnyValue` false;
//! - `Null` tests presence only: `true` means the key is missing, `false` present.
//!
//! A request value that cannot be read for the operator (`aws:SourceIp` that is not an
//! address, `aws:CurrentTime` that is not a date) matches no policy value: negated
//! operators then hold, as they do for any non-matching value.

use std::{borrow::Cow, net::IpAddr};

use ipnet::IpNet;
use serde_json::Value;

use crate::{
    context::{lowercase, Context, ContextKey},
    date::{self, Instant},
    error::{index, join, Problems},
    matching::{ArnPattern, Case, Pattern},
    parse::kind_of,
    value,
};

/// One key under one operator, e.g. `"StringEquals": {"aws:SourceVpc": [...]}`.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    /// Lowercased: condition key names are case-insensitive.
    key: ContextKey,
    test: Test,
    qualifier: Qualifier,
    if_exists: bool,
    negated: bool,
}

impl Condition {
    /// The key it reads, lowercased.
    pub(crate) fn key(&self) -> &str {
        self.key.as_str()
    }
}

/// How the values of a multivalued request key combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    /// No set operator: the key holds when any request value matches (negated: none).
    Single,
    /// Every request value must match; true for no value.
    ForAllValues,
    /// Some request value must match; false for no value.
    ForAnyValue,
}

/// The comparison of ordered operators: request value `op` policy value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Self::Eq => request == policy,
            Self::Lt => request < policy,
            Self::Le => request <= policy,
            Self::Gt => request > policy,
            Self::Ge => request >= policy,
        }
    }
}

/// The operator family, before its values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    Numeric(Cmp),
    Date(Cmp),
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

/// A parsed operator name such as `ForAnyValue:StringNotLikeIfExists`.
#[derive(Debug, Clone, Copy)]
struct Operator {
    kind: Kind,
    negated: bool,
    qualifier: Qualifier,
    if_exists: bool,
}

impl Operator {
    fn parse(name: &str) -> Option<Self> {
        let (qualifier, rest) = if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (Qualifier::ForAllValues, rest)
        } else if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (Qualifier::ForAnyValue, rest)
        } else {
            (Qualifier::Single, name)
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (rest, false),
        };
        let (kind, negated) = match base {
            "StringEquals" => (Kind::StringEquals, false),
            "StringNotEquals" => (Kind::StringEquals, true),
            "StringEqualsIgnoreCase" => (Kind::StringEqualsIgnoreCase, false),
            "StringNotEqualsIgnoreCase" => (Kind::StringEqualsIgnoreCase, true),
            "StringLike" => (Kind::StringLike, false),
            "StringNotLike" => (Kind::StringLike, true),
            "NumericEquals" => (Kind::Numeric(Cmp::Eq), false),
            "NumericNotEquals" => (Kind::Numeric(Cmp::Eq), true),
            "NumericLessThan" => (Kind::Numeric(Cmp::Lt), false),
            "NumericLessThanEquals" => (Kind::Numeric(Cmp::Le), false),
            "NumericGreaterThan" => (Kind::Numeric(Cmp::Gt), false),
            "NumericGreaterThanEquals" => (Kind::Numeric(Cmp::Ge), false),
            "DateEquals" => (Kind::Date(Cmp::Eq), false),
            "DateNotEquals" => (Kind::Date(Cmp::Eq), true),
            "DateLessThan" => (Kind::Date(Cmp::Lt), false),
            "DateLessThanEquals" => (Kind::Date(Cmp::Le), false),
            "DateGreaterThan" => (Kind::Date(Cmp::Gt), false),
            "DateGreaterThanEquals" => (Kind::Date(Cmp::Ge), false),
            "Bool" => (Kind::Bool, false),
            "BinaryEquals" => (Kind::Binary, false),
            "IpAddress" => (Kind::Ip, false),
            "NotIpAddress" => (Kind::Ip, true),
            "ArnEquals" | "ArnLike" => (Kind::Arn, false),
            "ArnNotEquals" | "ArnNotLike" => (Kind::Arn, true),
            // `IfExists` may end any operator but Null, whose whole point is existence.
            // A set qualifier is accepted on Null and changes nothing: presence of a
            // key is the same question for one value or many.
            "Null" if !if_exists => (Kind::Null, false),
            _ => return None,
        };
        Some(Self {
            kind,
            negated,
            qualifier,
            if_exists,
        })
    }
}

/// The policy's values for one key, read for their operator.
#[derive(Debug, Clone)]
enum Test {
    Equals(Box<[Box<str>]>),
    /// Lowercased.
    EqualsIgnoreCase(Box<[Box<str>]>),
    Like(Box<[Pattern]>),
    Numeric(Cmp, Box<[f64]>),
    Date(Cmp, Box<[Instant]>),
    Bool(Box<[bool]>),
    Binary(Box<[Box<[u8]>]>),
    Ip(Box<[IpNet]>),
    Arn(Box<[ArnPattern]>),
    /// `true`: the key must be missing; `false`: present.
    Null(Box<[bool]>),
}

impl Test {
    /// A rough rank of the cost of one test: string comparisons are cheap, request
    /// values read as numbers, addresses or dates cost a parse per evaluation.
    fn cost(&self) -> u8 {
        match self {
            Self::Null(_) => 0,
            Self::Equals(_) | Self::Bool(_) | Self::Binary(_) => 1,
            Self::EqualsIgnoreCase(_) => 2,
            Self::Like(_) | Self::Arn(_) => 3,
            Self::Numeric(..) => 4,
            Self::Ip(_) => 5,
            Self::Date(..) => 6,
        }
    }

    /// Whether one request value matches any of the policy's values.
    fn matches(&self, request: &str) -> bool {
        match self {
            Self::Equals(values) => values.iter().any(|v| **v == *request),
            Self::EqualsIgnoreCase(values) => values.iter().any(|v| {
                // ASCII first: the policy value is lowercased already, so an ASCII
                // request compares bytewise without case tables.
                if request.is_ascii() {
                    request.eq_ignore_ascii_case(v)
                } else {
                    request.chars().flat_map(char::to_lowercase).eq(v.chars())
                }
            }),
            Self::Like(patterns) => patterns.iter().any(|p| p.matches(request)),
            Self::Numeric(cmp, values) => {
                value::number(request).is_some_and(|n| values.iter().any(|&v| cmp.holds(n, v)))
            }
            Self::Date(cmp, values) => {
                date::parse(request).is_some_and(|t| values.iter().any(|&v| cmp.holds(t, v)))
            }
            Self::Bool(values) => value::boolean(request).is_some_and(|b| values.contains(&b)),
            Self::Binary(values) => values.iter().any(|v| **v == *request.as_bytes()),
            Self::Ip(nets) => request
                .parse::<IpAddr>()
                .is_ok_and(|ip| nets.iter().any(|net| net.contains(&ip))),
            Self::Arn(patterns) => patterns.iter().any(|p| p.matches(request)),
            // Presence is decided in `Condition::holds`, before values are looked at.
            Self::Null(_) => false,
        }
    }
}

impl Condition {
    /// Whether this key's test holds for the request context.
    pub(crate) fn holds(&self, context: &Context) -> bool {
        let mut values = context.values_of(&self.key).peekable();
        let present = values.peek().is_some();
        if let Test::Null(expected_missing) = &self.test {
            return expected_missing.contains(&!present);
        }
        if !present {
            return self.if_exists
                || match self.qualifier {
                    Qualifier::ForAllValues => true,
                    Qualifier::ForAnyValue => false,
                    Qualifier::Single => self.negated,
                };
        }
        match self.qualifier {
            Qualifier::Single => values.any(|v| self.test.matches(v)) != self.negated,
            Qualifier::ForAllValues => values.all(|v| self.test.matches(v) != self.negated),
            Qualifier::ForAnyValue => values.any(|v| self.test.matches(v) != self.negated),
        }
    }
}

/// Reads a `Condition` element at `path`; problems go to `problems`. The conditions come
/// back cheapest first: they are ANDed, so the order is free, and a statement whose
/// conditions fail then stops before the costly ones.
pub(crate) fn parse(condition: &Value, path: &str, problems: &mut Problems) -> Vec<Condition> {
    let mut out = Vec::new();
    let Some(operators) = condition.as_object() else {
        problems.push(
            path,
            format!(
                "must be an object of operator -> {{key: value}}, not {}",
                kind_of(condition)
            ),
        );
        return out;
    };
    for (name, block) in operators {
        let op_path = join(path, name);
        let Some(operator) = Operator::parse(name) else {
            problems.push(
                &op_path,
                format!("{name:?} is not a condition operator (e.g. StringEquals, StringLike, IpAddress, Bool)"),
            );
            continue;
        };
        let Some(keys) = block.as_object() else {
            problems.push(
                &op_path,
                format!("must be an object of key -> value, not {}", kind_of(block)),
            );
            continue;
        };
        if keys.is_empty() {
            problems.push(&op_path, "must hold at least one condition key");
        }
        for (key, values) in keys {
            let key_path = join(&op_path, key);
            let key_ok = key
                .split_once(':')
                .is_some_and(|(prefix, name)| !prefix.is_empty() && !name.is_empty());
            if !key_ok {
                problems.push(
                    &key_path,
                    format!("{key:?} is not a condition key (prefix:name, e.g. aws:SourceIp)"),
                );
            }
            let Some(scalars) = scalars(values) else {
                problems.push(
                    &key_path,
                    format!(
                        "must be a string, number, boolean or a non-empty list of them, not {}",
                        kind_of(values)
                    ),
                );
                continue;
            };
            let is_list = values.is_array();
            let item_path = |i: usize| {
                if is_list {
                    index(&key_path, i)
                } else {
                    key_path.clone()
                }
            };
            if let Some(test) = read_values(name, operator.kind, &scalars, &item_path, problems) {
                out.push(Condition {
                    key: ContextKey::new(key),
                    test,
                    qualifier: operator.qualifier,
                    if_exists: operator.if_exists,
                    negated: operator.negated,
                });
            }
        }
    }
    out.sort_by_key(|c| c.test.cost());
    out
}

/// A scalar, or a non-empty list of scalars.
fn scalars(value: &Value) -> Option<Vec<&Value>> {
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    match value {
        v if scalar(v) => Some(vec![v]),
        Value::Array(list) if !list.is_empty() && list.iter().all(scalar) => {
            Some(list.iter().collect())
        }
        _ => None,
    }
}

/// The text IAM compares for a scalar: strings as written, numbers and booleans in
/// their JSON spelling.
fn text_of(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// Reads every value for `kind`; `None` (with problems recorded) if any cannot be read.
fn read_values(
    operator: &str,
    kind: Kind,
    values: &[&Value],
    path_of: &dyn Fn(usize) -> String,
    problems: &mut Problems,
) -> Option<Test> {
    let mut failed = false;
    let mut read = |what: &str, example: &str, f: &dyn Fn(&Value) -> Option<()>| {
        for (i, v) in values.iter().enumerate() {
            if f(v).is_none() {
                failed = true;
                problems.push(
                    &path_of(i),
                    format!("{v} is not {what} for {operator} ({example})"),
                );
            }
        }
    };
    let test = match kind {
        Kind::StringEquals => Test::Equals(values.iter().map(|v| text_of(v).into()).collect()),
        Kind::StringEqualsIgnoreCase => Test::EqualsIgnoreCase(
            values
                .iter()
                .map(|v| lowercase(&text_of(v)).into())
                .collect(),
        ),
        Kind::StringLike => Test::Like(
            values
                .iter()
                .map(|v| Pattern::new(&text_of(v), Case::Sensitive))
                .collect(),
        ),
        Kind::Numeric(cmp) => {
            let number = |v: &Value| match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => value::number(s),
                _ => None,
            };
            read("a number", "e.g. 10 or \"2.5\"", &|v| number(v).map(drop));
            Test::Numeric(cmp, values.iter().filter_map(|v| number(v)).collect())
        }
        Kind::Date(cmp) => {
            let instant = |v: &Value| match v {
                Value::Number(n) => n.as_i64().map(Instant::from_epoch_seconds),
                Value::String(s) => date::parse(s),
                _ => None,
            };
            read(
                "a date",
                "ISO 8601 like 2026-01-31T12:00:00Z, or epoch seconds",
                &|v| instant(v).map(drop),
            );
            Test::Date(cmp, values.iter().filter_map(|v| instant(v)).collect())
        }
        Kind::Bool | Kind::Null => {
            let boolean = |v: &Value| match v {
                Value::Bool(b) => Some(*b),
                Value::String(s) => value::boolean(s),
                _ => None,
            };
            read("a boolean", "true or false", &|v| boolean(v).map(drop));
            let list = values.iter().filter_map(|v| boolean(v)).collect();
            if kind == Kind::Null {
                Test::Null(list)
            } else {
                Test::Bool(list)
            }
        }
        Kind::Binary => {
            let bytes = |v: &Value| v.as_str().and_then(value::base64);
            read("base64", "e.g. QmluYXJ5", &|v| bytes(v).map(drop));
            Test::Binary(
                values
                    .iter()
                    .filter_map(|v| bytes(v).map(Vec::into_boxed_slice))
                    .collect(),
            )
        }
        Kind::Ip => {
            let net = |v: &Value| v.as_str().and_then(value::ip_range);
            read(
                "an IP address or CIDR block",
                "e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32",
                &|v| net(v).map(drop),
            );
            Test::Ip(values.iter().filter_map(|v| net(v)).collect())
        }
        Kind::Arn => {
            let arn = |v: &Value| v.as_str().and_then(ArnPattern::new);
            read(
                "an ARN",
                "arn:partition:service:region:account:resource, wildcards allowed in each part",
                &|v| arn(v).map(drop),
            );
            Test::Arn(values.iter().filter_map(|v| arn(v)).collect())
        }
    };
    (!failed).then_some(test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names() {
        let ok = [
            "StringEquals",
            "ForAllValues:StringNotLikeIfExists",
            "ForAnyValue:IpAddress",
            "NumericGreaterThanEqualsIfExists",
            "DateLessThan",
            "ArnNotLike",
            "Null",
            "BinaryEquals",
        ];
        for name in ok {
            assert!(Operator::parse(name).is_some(), "{name}");
        }
        let refused = [
            "StringEqual",
            "NullIfExists",
            "stringequals",
            "ForSomeValues:StringEquals",
            "ForAllValues:",
            "IfExists",
            "StringEqualsIfExistsIfExists",
            "NotIpAddressIgnoreCase",
        ];
        for name in refused {
            assert!(Operator::parse(name).is_none(), "{name}");
        }
    }
}
