//! Deciding one request against one policy, with IAM's evaluation logic within a single
//! policy: an explicit deny wins over any allow; without an allow the answer is an
//! implicit deny. (Combining the service network's policy with the service's, both of
//! which must allow, is the caller's business.)
//!
//! A statement applies when its principal, action, resource and every condition match.
//! Deny statements are tried first, then allow statements, each in document order, so
//! the first deny or (with no deny) the first allow is the deciding statement. Nothing
//! here allocates; the only cost beyond comparisons is an atomic increment when the
//! deciding statement's Sid is cloned into the decision ([`evaluate_ref`] borrows it).

use crate::{
    context::Context,
    policy::{Effect, Policy, Statement, StatementId},
};

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// An unauthenticated (unsigned, no client certificate) caller. Only a statement
    /// whose principal is `"*"` (or `{"AWS": "*"}`) covers it.
    Anonymous,
    /// An authenticated principal: its ARN (`arn:lattice:iam::<account>:role/<name>` or
    /// `user/<name>`) and its 12-digit account.
    Principal { arn: &'a str, account: &'a str },
}

/// One request to decide.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub caller: Caller<'a>,
    /// `vpc-lattice-svcs:Invoke`.
    pub action: &'a str,
    /// The invoked resource: `<service ARN>/<request path>`, e.g.
    /// `arn:lattice:vpc-lattice:local:111111111111:service/svc-0123456789abcdef0/v1/rates`.
    pub resource: &'a str,
    /// The condition keys of the request.
    pub context: &'a Context,
}

/// The outcome, with the statement that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An allow statement applies and no deny statement does.
    Allow { statement: StatementId },
    /// A deny statement applies (whatever allows too).
    Deny { statement: StatementId },
    /// No statement applies: denied by default.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may go on.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }
}

/// A [`Decision`] that borrows the deciding statement from the policy: for a caller
/// that decides request after request on several threads, where cloning a Sid is an
/// atomic write to memory every thread shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionRef<'p> {
    Allow(&'p StatementId),
    Deny(&'p StatementId),
    ImplicitDeny,
}

impl DecisionRef<'_> {
    pub fn to_decision(self) -> Decision {
        match self {
            Self::Allow(statement) => Decision::Allow {
                statement: statement.clone(),
            },
            Self::Deny(statement) => Decision::Deny {
                statement: statement.clone(),
            },
            Self::ImplicitDeny => Decision::ImplicitDeny,
        }
    }
}

/// Decides `request` against `policy`.
pub fn evaluate(policy: &Policy, request: &Request<'_>) -> Decision {
    evaluate_ref(policy, request).to_decision()
}

/// Decides `request` against `policy`, borrowing the deciding statement.
pub fn evaluate_ref<'p>(policy: &'p Policy, request: &Request<'_>) -> DecisionRef<'p> {
    let statements = policy.statements();
    let first = |effect| {
        statements
            .iter()
            .find(|s| s.effect == effect && applies(s, request))
            .map(|s| &s.id)
    };
    if let Some(statement) = first(Effect::Deny) {
        return DecisionRef::Deny(statement);
    }
    match first(Effect::Allow) {
        Some(statement) => DecisionRef::Allow(statement),
        None => DecisionRef::ImplicitDeny,
    }
}

/// Whether `statement` applies to `request`; the cheap tests go first.
fn applies(statement: &Statement, request: &Request<'_>) -> bool {
    let actions = &statement.actions;
    let resources = &statement.resources;
    statement.principals.cover(&request.caller)
        && actions.patterns.iter().any(|p| p.matches(request.action)) != actions.negated
        && resources
            .patterns
            .iter()
            .any(|p| p.matches(request.resource))
            != resources.negated
        && statement
            .conditions
            .iter()
            .all(|c| c.holds(request.context))
}
