//! The IAM shape of auth policies. Not an evaluator: it refuses documents the evaluator
//! could not read (missing Effect, a Principal of the wrong form, an unknown condition
//! operator, ...) and names the JSON path of each problem.
//!
//! Grammar (IAM's, narrowed to what Lattice auth policies use):
//! `{ Version?, Id?, Statement: stmt | [stmt, ...] }`, where a statement has `Sid?`,
//! `Effect: Allow|Deny`, one of `Principal`/`NotPrincipal` (`"*"` or `{ "AWS": p | [p] }`),
//! one of `Action`/`NotAction` (`vpc-lattice-svcs:*` patterns), one of
//! `Resource`/`NotResource`, and `Condition?: { operator: { key: value | [values] } }`.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::names;

/// Lattice's auth policy size quota (not adjustable).
pub(crate) const MAX_POLICY_BYTES: usize = 10 * 1024;

/// The partition of principal ARNs.
const PARTITION: &str = "lattice";

/// Principals the document declares, per account: `(type, name)`.
#[derive(Debug, Default)]
pub(crate) struct Directory<'a> {
    pub accounts: HashMap<&'a str, HashSet<(&'a str, &'a str)>>,
}

/// Problems found: `(field path, message)`; the path starts with `prefix`.
pub(crate) fn check(
    policy: &Value,
    prefix: &str,
    directory: &Directory<'_>,
    out: &mut Vec<(String, String)>,
) {
    let mut c = Checker {
        directory,
        out,
        sids: HashSet::new(),
    };
    c.policy(policy, prefix);
}

struct Checker<'d, 'o> {
    directory: &'d Directory<'d>,
    out: &'o mut Vec<(String, String)>,
    sids: HashSet<String>,
}

const STATEMENT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

const CONDITION_OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
];

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Checker<'_, '_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.out.push((path.to_owned(), message.into()));
    }

    fn policy(&mut self, policy: &Value, path: &str) {
        let Some(object) = policy.as_object() else {
            self.err(
                path,
                format!(
                    "must be a policy object with Version and Statement, not {}",
                    kind_of(policy)
                ),
            );
            return;
        };
        let size = serde_json::to_vec(policy).map_or(0, |bytes| bytes.len());
        if size > MAX_POLICY_BYTES {
            self.err(
                path,
                format!(
                    "the policy is {size} bytes; Lattice's limit for an auth policy is {MAX_POLICY_BYTES} bytes"
                ),
            );
        }
        for key in object.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                self.err(
                    &format!("{path}.{key}"),
                    "unknown policy element (expected Version, Id, Statement)",
                );
            }
        }
        match object.get("Version") {
            None => {}
            Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
            Some(other) => self.err(
                &format!("{path}.Version"),
                format!("{other} is not a policy version (2012-10-17 or 2008-10-17)"),
            ),
        }
        if let Some(id) = object.get("Id") {
            if !id.is_string() {
                self.err(
                    &format!("{path}.Id"),
                    format!("must be a string, not {}", kind_of(id)),
                );
            }
        }
        let statements_path = format!("{path}.Statement");
        match object.get("Statement") {
            None => self.err(&statements_path, "is required"),
            Some(Value::Object(_)) => {
                let statement = &object["Statement"];
                self.statement(statement, &statements_path);
            }
            Some(Value::Array(list)) if list.is_empty() => {
                self.err(&statements_path, "must hold at least one statement")
            }
            Some(Value::Array(list)) => {
                for (i, statement) in list.iter().enumerate() {
                    self.statement(statement, &format!("{statements_path}[{i}]"));
                }
            }
            Some(other) => self.err(
                &statements_path,
                format!(
                    "must be a statement object or a list of them, not {}",
                    kind_of(other)
                ),
            ),
        }
    }

    fn statement(&mut self, statement: &Value, path: &str) {
        let Some(object) = statement.as_object() else {
            self.err(
                path,
                format!("a statement must be an object, not {}", kind_of(statement)),
            );
            return;
        };
        for key in object.keys() {
            if !STATEMENT_KEYS.contains(&key.as_str()) {
                self.err(
                    &format!("{path}.{key}"),
                    format!(
                        "unknown statement element (expected one of {})",
                        STATEMENT_KEYS.join(", ")
                    ),
                );
            }
        }
        if let Some(sid) = object.get("Sid") {
            match sid.as_str() {
                Some(s) if s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                    if !self.sids.insert(s.to_owned()) {
                        self.err(
                            &format!("{path}.Sid"),
                            format!("duplicate Sid {s:?}; statement ids must be unique"),
                        );
                    }
                }
                _ => self.err(
                    &format!("{path}.Sid"),
                    format!("{sid} is not a statement id (letters and digits)"),
                ),
            }
        }
        match object.get("Effect") {
            None => self.err(&format!("{path}.Effect"), "is required (Allow or Deny)"),
            Some(Value::String(e)) if e == "Allow" || e == "Deny" => {}
            Some(other) => self.err(
                &format!("{path}.Effect"),
                format!("{other} is not an effect (Allow or Deny)"),
            ),
        }
        if let Some((key, value)) = self.exactly_one(object, path, "Principal", "NotPrincipal") {
            self.principal(value, &format!("{path}.{key}"));
        }
        if let Some((key, value)) = self.exactly_one(object, path, "Action", "NotAction") {
            self.strings(value, &format!("{path}.{key}"), Self::action);
        }
        if let Some((key, value)) = self.exactly_one(object, path, "Resource", "NotResource") {
            self.strings(value, &format!("{path}.{key}"), Self::resource);
        }
        if let Some(condition) = object.get("Condition") {
            self.condition(condition, &format!("{path}.Condition"));
        }
    }

    fn exactly_one<'v>(
        &mut self,
        object: &'v serde_json::Map<String, Value>,
        path: &str,
        key: &'static str,
        not_key: &'static str,
    ) -> Option<(&'static str, &'v Value)> {
        match (object.get(key), object.get(not_key)) {
            (Some(value), None) => Some((key, value)),
            (None, Some(value)) => Some((not_key, value)),
            (None, None) => {
                self.err(
                    &format!("{path}.{key}"),
                    format!("is required (or {not_key})"),
                );
                None
            }
            (Some(_), Some(_)) => {
                self.err(
                    &format!("{path}.{not_key}"),
                    format!("a statement has {key} or {not_key}, not both"),
                );
                None
            }
        }
    }

    /// A string or a non-empty list of strings, each checked by `each`.
    fn strings(&mut self, value: &Value, path: &str, each: fn(&mut Self, &str, &str)) {
        match value {
            Value::String(s) => each(self, s, path),
            Value::Array(list) if list.is_empty() => self.err(path, "must not be an empty list"),
            Value::Array(list) => {
                for (i, item) in list.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    match item.as_str() {
                        Some(s) => each(self, s, &item_path),
                        None => self.err(
                            &item_path,
                            format!("must be a string, not {}", kind_of(item)),
                        ),
                    }
                }
            }
            other => self.err(
                path,
                format!(
                    "must be a string or a list of strings, not {}",
                    kind_of(other)
                ),
            ),
        }
    }

    fn action(&mut self, action: &str, path: &str) {
        if action == "*" {
            return;
        }
        let ok = action
            .strip_prefix("vpc-lattice-svcs:")
            .is_some_and(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
            });
        if !ok {
            self.err(
                path,
                format!(
                    "{action:?} is not an auth policy action (vpc-lattice-svcs:Invoke, vpc-lattice-svcs:*, or *)"
                ),
            );
        }
    }

    fn resource(&mut self, resource: &str, path: &str) {
        if resource == "*" || resource.starts_with(&format!("arn:{PARTITION}:vpc-lattice:")) {
            return;
        }
        self.err(
            path,
            format!(
                "{resource:?} is not a resource (* or an arn:{PARTITION}:vpc-lattice: ARN, wildcards allowed)"
            ),
        );
    }

    fn principal(&mut self, principal: &Value, path: &str) {
        match principal {
            Value::String(s) if s == "*" => {}
            Value::Object(map) => {
                if map.is_empty() {
                    self.err(path, "must name principals ({\"AWS\": [...]}) or be \"*\"");
                }
                for (key, value) in map {
                    let key_path = format!("{path}.{key}");
                    if key == "AWS" {
                        self.strings(value, &key_path, Self::principal_id);
                    } else {
                        self.err(
                            &key_path,
                            "unsupported principal type (auth policies name principals under \"AWS\")",
                        );
                    }
                }
            }
            other => self.err(
                path,
                format!(
                    "must be \"*\" or an object like {{\"AWS\": [ARN, ...]}}, not {}",
                    match other {
                        Value::String(s) => format!("{s:?}"),
                        other => kind_of(other).to_owned(),
                    }
                ),
            ),
        }
    }

    /// `*`, an account id, `arn:lattice:iam::<account>:root`, or
    /// `arn:lattice:iam::<account>:role/<name>` / `user/<name>`.
    fn principal_id(&mut self, id: &str, path: &str) {
        if id == "*" || names::check_account_id(id).is_ok() {
            return;
        }
        let shape = "a principal is *, an account id, or arn:lattice:iam::<account>:root | role/<name> | user/<name>";
        let Some(rest) = id.strip_prefix("arn:") else {
            self.err(path, format!("{id:?} is not a principal: {shape}"));
            return;
        };
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            self.err(path, format!("{id:?} is not a principal ARN: {shape}"));
            return;
        };
        if partition != PARTITION || service != "iam" || !region.is_empty() {
            self.err(
                path,
                format!(
                    "{id:?} is not a principal ARN: expected arn:{PARTITION}:iam::<account>:..."
                ),
            );
            return;
        }
        if let Err(reason) = names::check_account_id(account) {
            self.err(path, format!("{id:?}: {reason}"));
            return;
        }
        if resource == "root" {
            return;
        }
        let Some((kind, name)) = resource.split_once('/') else {
            self.err(path, format!("{id:?} is not a principal ARN: {shape}"));
            return;
        };
        if kind != "role" && kind != "user" {
            self.err(path, format!("{id:?} is not a principal ARN: {shape}"));
            return;
        }
        if let Err(reason) = names::check_principal_name(name) {
            self.err(path, format!("{id:?}: {reason}"));
            return;
        }
        if let Some(known) = self.directory.accounts.get(account) {
            if !known.contains(&(kind, name)) {
                self.err(
                    path,
                    format!(
                        "{id:?}: account {account} has no {kind} named {name:?} in its principals"
                    ),
                );
            }
        }
    }

    fn condition(&mut self, condition: &Value, path: &str) {
        let Some(operators) = condition.as_object() else {
            self.err(
                path,
                format!(
                    "must be an object of operator -> {{key: value}}, not {}",
                    kind_of(condition)
                ),
            );
            return;
        };
        for (operator, block) in operators {
            let op_path = format!("{path}.{operator}");
            if !is_condition_operator(operator) {
                self.err(
                    &op_path,
                    format!("{operator:?} is not a condition operator (e.g. StringEquals, StringLike, IpAddress, Bool)"),
                );
                continue;
            }
            let Some(keys) = block.as_object() else {
                self.err(
                    &op_path,
                    format!("must be an object of key -> value, not {}", kind_of(block)),
                );
                continue;
            };
            if keys.is_empty() {
                self.err(&op_path, "must hold at least one condition key");
            }
            for (key, value) in keys {
                let key_path = format!("{op_path}.{key}");
                let key_ok = key
                    .split_once(':')
                    .is_some_and(|(prefix, name)| !prefix.is_empty() && !name.is_empty());
                if !key_ok {
                    self.err(
                        &key_path,
                        format!("{key:?} is not a condition key (prefix:name, e.g. aws:SourceIp)"),
                    );
                }
                let scalar =
                    |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
                match value {
                    v if scalar(v) => {}
                    Value::Array(list) if !list.is_empty() && list.iter().all(scalar) => {}
                    other => self.err(
                        &key_path,
                        format!(
                            "must be a string, number, boolean or a non-empty list of them, not {}",
                            kind_of(other)
                        ),
                    ),
                }
            }
        }
    }
}

fn is_condition_operator(operator: &str) -> bool {
    let base = operator
        .strip_prefix("ForAllValues:")
        .or_else(|| operator.strip_prefix("ForAnyValue:"))
        .unwrap_or(operator);
    let base = match base.strip_suffix("IfExists") {
        Some(stripped) if stripped != "Null" => stripped,
        _ => base,
    };
    CONDITION_OPERATORS.contains(&base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(policy: Value) -> Vec<(String, String)> {
        let mut directory = Directory::default();
        directory
            .accounts
            .insert("111111111111", HashSet::from([("role", "web")]));
        let mut out = Vec::new();
        check(&policy, "authPolicy", &directory, &mut out);
        out
    }

    #[test]
    fn valid_policies() {
        assert!(problems(json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:lattice:iam::111111111111:role/web", "222222222222", "arn:lattice:iam::333333333333:root"]},
                "Action": "vpc-lattice-svcs:Invoke",
                "Resource": "*",
                "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": ["GET", "POST"]},
                              "ForAnyValue:StringLikeIfExists": {"aws:PrincipalTag/x": "y*"},
                              "Bool": {"aws:SecureTransport": true}}
            }]
        }))
        .is_empty());
        assert!(problems(json!({
            "Statement": {"Effect": "Deny", "NotPrincipal": "*", "NotAction": "*", "NotResource": "arn:lattice:vpc-lattice:local:1:service/*"}
        }))
        .is_empty());
    }

    #[test]
    fn paths_name_the_problem() {
        let p = problems(json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Permit", "Principal": {"AWS": "arn:lattice:iam::111111111111:role/db"},
                           "Action": "s3:GetObject", "Condition": {"StringEqual": {"a:b": "c"}}}]
        }));
        let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "authPolicy.Statement[0].Effect",
                "authPolicy.Statement[0].Principal.AWS",
                "authPolicy.Statement[0].Action",
                "authPolicy.Statement[0].Resource",
                "authPolicy.Statement[0].Condition.StringEqual",
            ],
            "{p:?}"
        );
        assert!(p[1].1.contains("has no role named \"db\""));
    }

    #[test]
    fn size_quota() {
        let big = "x".repeat(MAX_POLICY_BYTES);
        let p = problems(json!({"Version": "2012-10-17", "Id": big,
            "Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}}));
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("limit for an auth policy"));
    }
}
