//! The parsed policy: statements in document order, each with its patterns and
//! conditions already compiled. Built only by [`crate::parse`], so a `Policy` is always
//! one IAM would accept.

use std::{fmt, sync::Arc};

use crate::{
    condition::Condition,
    matching::{ArnPattern, Pattern},
    principal::Principals,
};

/// A parsed, checked auth policy, cheap to clone (the statements are shared) and to
/// evaluate (see [`crate::evaluate`]).
#[derive(Debug, Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    statements: Box<[Statement]>,
    named: Box<[(String, Box<str>)]>,
}

impl Policy {
    pub(crate) fn new(statements: Vec<Statement>, named: Vec<(String, Box<str>)>) -> Self {
        Self {
            inner: Arc::new(Inner {
                statements: statements.into(),
                named: named.into(),
            }),
        }
    }

    pub(crate) fn statements(&self) -> &[Statement] {
        &self.inner.statements
    }

    /// Every condition key its statements read, lowercased, each once: a caller that
    /// builds request contexts can leave out the keys no policy reads (a request's
    /// headers, say).
    pub fn condition_keys(&self) -> impl Iterator<Item = &str> + '_ {
        let mut seen: Vec<&str> = Vec::new();
        self.inner
            .statements
            .iter()
            .flat_map(|s| s.conditions.iter().map(|c| c.key()))
            .filter(move |key| {
                let new = !seen.contains(key);
                if new {
                    seen.push(key);
                }
                new
            })
    }

    /// Every account id, account root ARN and role/user ARN named in a `Principal` or
    /// `NotPrincipal`, with its JSON path (`Statement[0].Principal.AWS[1]`), in document
    /// order; `*` is not a name and is left out. The agent checks these against the
    /// accounts and principals its configuration declares.
    pub fn named_principals(&self) -> impl Iterator<Item = (String, &str)> + '_ {
        self.inner
            .named
            .iter()
            .map(|(path, id)| (path.clone(), &**id))
    }
}

/// Which statement decided: its position in `Statement` (0 for a single statement
/// object) and its `Sid`, if it has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatementId {
    pub index: usize,
    pub sid: Option<Arc<str>>,
}

impl fmt::Display for StatementId {
    /// `Sid "ReadOnly"` when the statement has a Sid, `Statement[3]` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sid {
            Some(sid) => write!(f, "Sid {sid:?}"),
            None => write!(f, "Statement[{}]", self.index),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Allow,
    Deny,
}

/// `Action` (or `NotAction` when `negated`): case-insensitive wildcard patterns.
#[derive(Debug, Clone)]
pub(crate) struct Actions {
    pub negated: bool,
    pub patterns: Box<[Pattern]>,
}

/// One entry of `Resource`/`NotResource`.
#[derive(Debug, Clone)]
pub(crate) enum ResourcePattern {
    /// An ARN, matched segment by segment (`*` does not cross the colons before the
    /// resource part).
    Arn(ArnPattern),
    /// `*`, or Lattice's `*/<path>` shorthand for "any service, this path": matched
    /// as one wildcard pattern over the whole resource string.
    Text(Pattern),
}

impl ResourcePattern {
    pub(crate) fn matches(&self, resource: &str) -> bool {
        match self {
            Self::Arn(pattern) => pattern.matches(resource),
            Self::Text(pattern) => pattern.matches(resource),
        }
    }
}

/// `Resource` (or `NotResource` when `negated`).
#[derive(Debug, Clone)]
pub(crate) struct Resources {
    pub negated: bool,
    pub patterns: Box<[ResourcePattern]>,
}

#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub id: StatementId,
    pub effect: Effect,
    pub principals: Principals,
    pub actions: Actions,
    pub resources: Resources,
    pub conditions: Box<[Condition]>,
}
