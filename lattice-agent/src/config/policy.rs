//! Auth policies in the config: the grammar (IAM's, refusing what IAM would refuse) is
//! `lattice_policy::parse`; this module adds what only the config knows: Lattice's size
//! quota, and that every role or user a policy names exists in its account when the
//! document declares that account.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// Lattice's auth policy size quota (not adjustable).
pub(crate) const MAX_POLICY_BYTES: usize = 10 * 1024;

/// Principals the document declares, per account: `(type, name)`.
#[derive(Debug, Default)]
pub(crate) struct Directory<'a> {
    pub accounts: HashMap<&'a str, HashSet<(&'a str, &'a str)>>,
}

/// Parses `policy`, held at field `prefix` of its resource. Problems are pushed to `out`
/// as `(field path, message)`, each path starting with `prefix`; the parsed policy comes
/// back only when there are none.
pub(crate) fn check(
    policy: &Value,
    prefix: &str,
    directory: &Directory<'_>,
    out: &mut Vec<(String, String)>,
) -> Option<lattice_policy::Policy> {
    let before = out.len();
    let size = serde_json::to_vec(policy).map_or(0, |bytes| bytes.len());
    if size > MAX_POLICY_BYTES {
        out.push((
            prefix.to_owned(),
            format!(
                "the policy is {size} bytes; Lattice's limit for an auth policy is {MAX_POLICY_BYTES} bytes"
            ),
        ));
    }
    let field = |path: &str| {
        if path.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{path}")
        }
    };
    match lattice_policy::parse(policy) {
        Err(errors) => {
            out.extend(errors.into_iter().map(|e| (field(&e.path), e.message)));
            None
        }
        Ok(parsed) => {
            for (path, id) in parsed.named_principals() {
                if let Some(message) = undeclared(id, directory) {
                    out.push((field(&path), message));
                }
            }
            (out.len() == before).then_some(parsed)
        }
    }
}

/// Why a principal the policy names is not in the document: a role or user of a
/// declared account that the account does not list. Accounts the document does not
/// declare (other owners' callers) and account-wide principals are not checked.
fn undeclared(id: &str, directory: &Directory<'_>) -> Option<String> {
    // The parser accepted `id`, so an ARN here is `arn:lattice:iam::<account>:<resource>`.
    let mut parts = id.strip_prefix("arn:")?.splitn(5, ':').skip(3);
    let (account, resource) = (parts.next()?, parts.next()?);
    let (kind, name) = resource.split_once('/')?;
    let known = directory.accounts.get(account)?;
    (!known.contains(&(kind, name))).then(|| {
        format!("{id:?}: account {account} has no {kind} named {name:?} in its principals")
    })
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
        let parsed = check(&policy, "authPolicy", &directory, &mut out);
        assert_eq!(parsed.is_some(), out.is_empty(), "{out:?}");
        out
    }

    #[test]
    fn valid_policies() {
        assert!(problems(json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:lattice:iam::111111111111:role/web", "222222222222", "arn:lattice:iam::333333333333:root", "arn:lattice:iam::444444444444:user/any"]},
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
                "authPolicy.Statement[0].Action",
                "authPolicy.Statement[0].Resource",
                "authPolicy.Statement[0].Condition.StringEqual",
            ],
            "{p:?}"
        );
        // Undeclared principals are looked for once the grammar holds.
        let p = problems(json!({
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": ["arn:lattice:iam::111111111111:role/web", "arn:lattice:iam::111111111111:role/db"]},
                           "Action": "*", "Resource": "*"}]
        }));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "authPolicy.Statement[0].Principal.AWS[1]");
        assert!(p[0].1.contains("has no role named \"db\""), "{p:?}");
        let p = problems(json!("allow"));
        assert_eq!(p[0].0, "authPolicy", "{p:?}");
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
