//! Auth policies for service networks and services, in IAM's policy grammar: parsed and
//! checked once, when a configuration is applied, then evaluated per request.
//!
//! ```
//! use lattice_policy::{evaluate, parse, Caller, Context, Decision, Request};
//!
//! let policy = parse(&serde_json::json!({
//!     "Version": "2012-10-17",
//!     "Statement": [{
//!         "Sid": "ReadOnly",
//!         "Effect": "Allow",
//!         "Principal": {"AWS": ["arn:lattice:iam::111111111111:role/web"]},
//!         "Action": "vpc-lattice-svcs:Invoke",
//!         "Resource": "arn:lattice:vpc-lattice:local:111111111111:service/svc-0123456789abcdef0/*",
//!         "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "GET"}}
//!     }]
//! }))
//! .expect("a valid policy");
//!
//! let mut context = Context::new();
//! context.insert("vpc-lattice-svcs:RequestMethod", "GET");
//! let decision = evaluate(&policy, &Request {
//!     caller: Caller::Principal { arn: "arn:lattice:iam::111111111111:role/web", account: "111111111111" },
//!     action: "vpc-lattice-svcs:Invoke",
//!     resource: "arn:lattice:vpc-lattice:local:111111111111:service/svc-0123456789abcdef0/rates",
//!     context: &context,
//! });
//! assert!(decision.is_allowed());
//! if let Decision::Allow { statement } = decision {
//!     assert_eq!(statement.to_string(), "Sid \"ReadOnly\"");
//! }
//! ```
//!
//! | module | what |
//! | --- | --- |
//! | `parse.rs` | JSON -> [`Policy`]: the document and statement grammar, every problem with its path |
//! | `principal.rs` | `Principal`/`NotPrincipal`: grammar and matching |
//! | `condition.rs` | `Condition`: operators, values read once, IAM's evaluation rules |
//! | `matching.rs` | wildcard patterns and per-segment ARN patterns |
//! | `date.rs`, `value.rs` | readers of typed condition values (ISO 8601, numbers, IPs, base64) |
//! | `context.rs` | [`Context`]: the request's condition keys |
//! | `evaluate.rs` | [`evaluate`]: explicit deny wins, no allow means deny |
//! | `policy.rs` | [`Policy`], [`StatementId`] |
//! | `error.rs` | [`PolicyError`] |
//!
//! ARNs use the partition `lattice`: principals `arn:lattice:iam::<account>:role/<name>`,
//! `user/<name>` or `root`; resources `arn:lattice:vpc-lattice:<region>:<account>:service/<id>`.
#![forbid(unsafe_code)]

mod condition;
mod context;
mod date;
mod error;
mod evaluate;
mod matching;
mod parse;
mod policy;
mod principal;
mod value;

#[cfg(test)]
mod tests;

pub use context::{Context, ContextKey};
pub use error::PolicyError;
pub use evaluate::{evaluate, evaluate_ref, Caller, Decision, DecisionRef, Request};
pub use parse::parse;
pub use policy::{Policy, StatementId};
