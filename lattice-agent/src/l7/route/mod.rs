//! The rule phase: which rule of a listener takes a request, and what it does with it.
//!
//! A pure function over typed inputs ([`route`]), so the proxy calls it per request and
//! the tables in `tests.rs` pin Lattice's semantics without a socket. The choice among
//! weighted target groups ([`pick_target_group`]) takes its randomness as an argument
//! for the same reason.
//!
//! Lattice's rules, as its documentation states them ("Listener rules for your VPC
//! Lattice service" in the User Guide, and the API reference), and where we assume:
//!
//! | what | semantics | source |
//! | --- | --- | --- |
//! | order | rules by priority, lowest value first; the default action last | User Guide, "Rule priority" |
//! | a rule | all of its conditions must hold; in that order, the first rule that holds wins | User Guide ("When the conditions for a rule are met, then its actions are performed") |
//! | no rule holds | the listener's default action | User Guide, "Default rules" |
//! | method | exact and case-sensitive | User Guide, "Method match" |
//! | path | exact or prefix; case-insensitive unless `caseSensitive` (default false) | User Guide console steps ("The comparison is not case sensitive"); CDK and Pulumi references ("Default is false") |
//! | path vs query | the query takes no part | assumed: Lattice matches "path patterns in the request URLs"; a pattern holding `?` never matches |
//! | trailing slash | an ordinary character; prefix is a string prefix | assumed: nothing documented (see `path.rs`) |
//! | header name | case-insensitive | User Guide, "Header match" |
//! | header value | exact, prefix or contains; case-insensitive unless `caseSensitive` (default false) | User Guide, "Header match"; CDK reference |
//! | header sent twice | any value may meet the condition; a missing header meets none | assumed: nothing documented (see `header.rs`) |
//! | forward | weights 0-999 in proportion; weight 0 gets nothing | User Guide, "Forward actions" |
//! | every weight 0 | no group ([`pick_target_group`] is `None`); validation refuses such a forward | assumed: nothing documented |
//!
//! | file | concern |
//! | --- | --- |
//! | `mod.rs` | [`RequestHead`], [`Decision`], [`route`] |
//! | `rule.rs` | a rule's conditions together, and the method |
//! | `path.rs` | the path condition |
//! | `header.rs` | the header conditions |
//! | `text.rs` | comparing text with or without case |
//! | `weight.rs` | [`pick_target_group`] |
//!
//! Routing is total: every request gets a decision, so this phase has no error type.

mod header;
mod path;
mod rule;
mod text;
mod weight;

#[cfg(test)]
mod tests;

use http::{HeaderMap, Method};

use crate::config::{Action, Listener, Name};

pub use weight::pick_target_group;

/// What routing reads of a request: borrowed from it, so routing copies nothing.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// The URI path without the query, as sent (percent-escapes kept).
    pub path: &'a str,
    /// Names are case-insensitive: [`HeaderMap`] keeps them lowercase.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestHead<'a> {
    pub fn new(method: &'a Method, path: &'a str, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            path,
            headers,
        }
    }
}

impl<'a, B> From<&'a http::Request<B>> for RequestHead<'a> {
    fn from(request: &'a http::Request<B>) -> Self {
        Self::new(request.method(), request.uri().path(), request.headers())
    }
}

impl<'a> From<&'a http::request::Parts> for RequestHead<'a> {
    fn from(parts: &'a http::request::Parts) -> Self {
        Self::new(&parts.method, parts.uri.path(), &parts.headers)
    }
}

/// The outcome of routing: who decided, and the action to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub matched: Matched<'a>,
    /// A forward (pick a group with [`pick_target_group`]) or a fixed response.
    pub action: &'a Action,
}

/// Which part of the listener decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched<'a> {
    /// A rule whose conditions all held, and held for no rule of lower priority.
    Rule { name: &'a Name, priority: u16 },
    /// No rule held: the listener's default action.
    Default,
}

/// Routes `request` through `listener`'s rules: the first rule by priority whose
/// conditions all hold decides; if none does, the default action.
///
/// Relies on [`Listener::rules`] being sorted by priority, which the config guarantees
/// (priorities are unique per listener, so there are no ties). TCP and TLS_PASSTHROUGH
/// listeners have no rules and always get their default action.
pub fn route<'a>(listener: &'a Listener, request: &RequestHead<'_>) -> Decision<'a> {
    debug_assert!(
        listener.rules.is_sorted_by_key(|r| r.priority),
        "listener {} has rules out of priority order",
        listener.name
    );
    match listener
        .rules
        .iter()
        .find(|r| rule::holds(&r.http_match, request))
    {
        Some(r) => Decision {
            matched: Matched::Rule {
                name: &r.name,
                priority: r.priority,
            },
            action: &r.action,
        },
        None => Decision {
            matched: Matched::Default,
            action: &listener.default_action,
        },
    }
}
