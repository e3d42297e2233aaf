//! From a JSON document to a [`Policy`], refusing what IAM would refuse and naming the
//! JSON path of every problem (parsing goes on after each one).
//!
//! Grammar (IAM's, narrowed to what auth policies use):
//! `{ Version?, Id?, Statement: stmt | [stmt, ...] }`, where a statement has `Sid?`,
//! `Effect: Allow|Deny`, one of `Principal`/`NotPrincipal` (see `principal.rs`), one of
//! `Action`/`NotAction` (`*` or `vpc-lattice-svcs:<name>` patterns), one of
//! `Resource`/`NotResource` (`*`, `*/<path>`, or `arn:lattice:vpc-lattice:` ARN patterns),
//! and `Condition?` (see `condition.rs`).

use std::{collections::HashSet, sync::Arc};

use serde_json::{Map, Value};

use crate::{
    condition,
    error::{index, join, PolicyError, Problems},
    matching::{ArnPattern, Case, Pattern},
    policy::{Actions, Effect, Policy, ResourcePattern, Resources, Statement, StatementId},
    principal::{self, PARTITION},
};

/// The versions of IAM's policy language.
const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

/// The service prefix of auth policy actions.
const ACTION_PREFIX: &str = "vpc-lattice-svcs:";

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

/// Parses and checks an auth policy document. On failure, returns every problem found,
/// each with the JSON path of the offending element relative to the document root.
///
/// ```
/// let doc = serde_json::json!({
///     "Version": "2012-10-17",
///     "Statement": [{"Effect": "Allow", "Principal": "*",
///                    "Action": "vpc-lattice-svcs:Invoke", "Resource": "*",
///                    "Condition": {"IpAddress": {"aws:SourceIp": "nope"}}}]
/// });
/// let errors = lattice_policy::parse(&doc).unwrap_err();
/// assert_eq!(errors[0].path, "Statement[0].Condition.IpAddress.aws:SourceIp");
/// ```
pub fn parse(doc: &Value) -> Result<Policy, Vec<PolicyError>> {
    let mut parser = Parser::default();
    let statements = parser.document(doc);
    if parser.problems.is_empty() {
        Ok(Policy::new(statements, parser.named))
    } else {
        Err(parser.problems.into_vec())
    }
}

/// What JSON kind a value is, for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A string or a non-empty list of strings, each with its path (`path` itself for a
/// single string, `path[i]` for list items). Problems are recorded and the bad items
/// left out.
pub(crate) fn strings<'v>(
    value: &'v Value,
    path: &str,
    problems: &mut Problems,
) -> Vec<(String, &'v str)> {
    match value {
        Value::String(s) => vec![(path.to_owned(), s.as_str())],
        Value::Array(list) if list.is_empty() => {
            problems.push(path, "must not be an empty list");
            Vec::new()
        }
        Value::Array(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let item_path = index(path, i);
                match item.as_str() {
                    Some(s) => Some((item_path, s)),
                    None => {
                        problems.push(
                            &item_path,
                            format!("must be a string, not {}", kind_of(item)),
                        );
                        None
                    }
                }
            })
            .collect(),
        other => {
            problems.push(
                path,
                format!(
                    "must be a string or a list of strings, not {}",
                    kind_of(other)
                ),
            );
            Vec::new()
        }
    }
}

#[derive(Default)]
struct Parser {
    problems: Problems,
    sids: HashSet<String>,
    named: Vec<(String, Box<str>)>,
}

impl Parser {
    fn document(&mut self, doc: &Value) -> Vec<Statement> {
        let Some(object) = doc.as_object() else {
            self.problems.push(
                "",
                format!(
                    "must be a policy object with Version and Statement, not {}",
                    kind_of(doc)
                ),
            );
            return Vec::new();
        };
        for key in object.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                self.problems.push(
                    key,
                    "unknown policy element (expected Version, Id, Statement)",
                );
            }
        }
        match object.get("Version") {
            None => {}
            Some(Value::String(v)) if VERSIONS.contains(&v.as_str()) => {}
            Some(other) => self.problems.push(
                "Version",
                format!("{other} is not a policy version (2012-10-17 or 2008-10-17)"),
            ),
        }
        if let Some(id) = object.get("Id").filter(|id| !id.is_string()) {
            self.problems
                .push("Id", format!("must be a string, not {}", kind_of(id)));
        }
        match object.get("Statement") {
            None => {
                self.problems.push("Statement", "is required");
                Vec::new()
            }
            Some(statement @ Value::Object(_)) => self
                .statement(statement, "Statement", 0)
                .into_iter()
                .collect(),
            Some(Value::Array(list)) if list.is_empty() => {
                self.problems
                    .push("Statement", "must hold at least one statement");
                Vec::new()
            }
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .filter_map(|(i, s)| self.statement(s, &index("Statement", i), i))
                .collect(),
            Some(other) => {
                self.problems.push(
                    "Statement",
                    format!(
                        "must be a statement object or a list of them, not {}",
                        kind_of(other)
                    ),
                );
                Vec::new()
            }
        }
    }

    fn statement(&mut self, statement: &Value, path: &str, position: usize) -> Option<Statement> {
        let Some(object) = statement.as_object() else {
            self.problems.push(
                path,
                format!("a statement must be an object, not {}", kind_of(statement)),
            );
            return None;
        };
        for key in object.keys() {
            if !STATEMENT_KEYS.contains(&key.as_str()) {
                self.problems.push(
                    &join(path, key),
                    format!(
                        "unknown statement element (expected one of {})",
                        STATEMENT_KEYS.join(", ")
                    ),
                );
            }
        }
        let sid = object
            .get("Sid")
            .and_then(|sid| self.sid(sid, &join(path, "Sid")));
        let effect = match object.get("Effect") {
            Some(Value::String(e)) if e == "Allow" => Some(Effect::Allow),
            Some(Value::String(e)) if e == "Deny" => Some(Effect::Deny),
            None => {
                self.problems
                    .push(&join(path, "Effect"), "is required (Allow or Deny)");
                None
            }
            Some(other) => {
                self.problems.push(
                    &join(path, "Effect"),
                    format!("{other} is not an effect (Allow or Deny)"),
                );
                None
            }
        };
        let principals = self
            .exactly_one(object, path, "Principal", "NotPrincipal")
            .and_then(|(key, negated, value)| {
                principal::parse(
                    value,
                    &join(path, key),
                    negated,
                    &mut self.problems,
                    &mut self.named,
                )
            });
        let actions = self
            .exactly_one(object, path, "Action", "NotAction")
            .and_then(|(key, negated, value)| self.actions(value, &join(path, key), negated));
        let resources = self
            .exactly_one(object, path, "Resource", "NotResource")
            .and_then(|(key, negated, value)| self.resources(value, &join(path, key), negated));
        let conditions = object
            .get("Condition")
            .map(|c| condition::parse(c, &join(path, "Condition"), &mut self.problems))
            .unwrap_or_default();
        Some(Statement {
            id: StatementId {
                index: position,
                sid,
            },
            effect: effect?,
            principals: principals?,
            actions: actions?,
            resources: resources?,
            conditions: conditions.into(),
        })
    }

    /// Letters and digits, unique in the policy.
    fn sid(&mut self, sid: &Value, path: &str) -> Option<Arc<str>> {
        match sid.as_str() {
            Some(s) if s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                if !self.sids.insert(s.to_owned()) {
                    self.problems.push(
                        path,
                        format!("duplicate Sid {s:?}; statement ids must be unique"),
                    );
                }
                Some(s.into())
            }
            _ => {
                self.problems.push(
                    path,
                    format!("{sid} is not a statement id (letters and digits)"),
                );
                None
            }
        }
    }

    /// The value of `key` or of `not_key` (then `true`), which must not both be there.
    fn exactly_one<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        path: &str,
        key: &'static str,
        not_key: &'static str,
    ) -> Option<(&'static str, bool, &'v Value)> {
        match (object.get(key), object.get(not_key)) {
            (Some(value), None) => Some((key, false, value)),
            (None, Some(value)) => Some((not_key, true, value)),
            (None, None) => {
                self.problems
                    .push(&join(path, key), format!("is required (or {not_key})"));
                None
            }
            (Some(_), Some(_)) => {
                self.problems.push(
                    &join(path, not_key),
                    format!("a statement has {key} or {not_key}, not both"),
                );
                None
            }
        }
    }

    /// `*` or `vpc-lattice-svcs:<name>`, the name of letters, digits and wildcards.
    /// Action names are case-insensitive in IAM, the service prefix included.
    fn actions(&mut self, value: &Value, path: &str, negated: bool) -> Option<Actions> {
        let before = self.problem_count();
        let mut patterns = Vec::new();
        for (item_path, action) in strings(value, path, &mut self.problems) {
            let name = action
                .get(..ACTION_PREFIX.len())
                .filter(|prefix| prefix.eq_ignore_ascii_case(ACTION_PREFIX))
                .and_then(|_| action.get(ACTION_PREFIX.len()..));
            let ok = action == "*"
                || name.is_some_and(|name| {
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
                });
            if ok {
                patterns.push(Pattern::new(action, Case::InsensitiveAscii));
            } else {
                self.problems.push(
                    &item_path,
                    format!(
                        "{action:?} is not an auth policy action (vpc-lattice-svcs:Invoke, vpc-lattice-svcs:*, or *)"
                    ),
                );
            }
        }
        (self.problem_count() == before).then(|| Actions {
            negated,
            patterns: patterns.into(),
        })
    }

    /// `*`; `*/<path>` (Lattice's "any service, this path"); or an
    /// `arn:lattice:vpc-lattice:<region>:<account>:<resource>` pattern, the invoke
    /// resource being `<service ARN>/<request path>`.
    fn resources(&mut self, value: &Value, path: &str, negated: bool) -> Option<Resources> {
        let before = self.problem_count();
        let arn_prefix = format!("arn:{PARTITION}:vpc-lattice:");
        let mut patterns = Vec::new();
        for (item_path, resource) in strings(value, path, &mut self.problems) {
            if resource == "*" || resource.starts_with("*/") {
                patterns.push(ResourcePattern::Text(Pattern::new(
                    resource,
                    Case::Sensitive,
                )));
            } else if resource.starts_with(&arn_prefix) {
                match ArnPattern::new(resource) {
                    Some(arn) => patterns.push(ResourcePattern::Arn(arn)),
                    None => self.problems.push(
                        &item_path,
                        format!(
                            "{resource:?} is not a resource ARN: expected {arn_prefix}<region>:<account>:service/<service id>[/<path>] (wildcards allowed)"
                        ),
                    ),
                }
            } else {
                self.problems.push(
                    &item_path,
                    format!(
                        "{resource:?} is not a resource (*, */<path>, or an {arn_prefix} ARN, wildcards allowed)"
                    ),
                );
            }
        }
        (self.problem_count() == before).then(|| Resources {
            negated,
            patterns: patterns.into(),
        })
    }

    fn problem_count(&self) -> usize {
        self.problems.len()
    }
}
