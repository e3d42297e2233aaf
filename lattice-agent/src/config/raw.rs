//! The document exactly as written: serde structs mirroring config-contract.yaml.
//!
//! Unknown fields are refused by the parser (so a typo names the field and its line).
//! Everything else is deliberately loose here: required fields are `Option`, numbers are
//! `i64`, enum values are strings. The validation pass turns them into domain types and,
//! unlike a parser, reports every problem with its resource and field at once.

use std::{collections::BTreeMap, fmt};

use serde::{de, Deserialize, Deserializer};

/// A string that the document may also write as a bare number or boolean: account ids
/// (`id: 111111111111` without quotes), status-code matchers (`httpCode: 200`), header
/// values (`exact: true`). Stored as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub String);

impl Scalar {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Document {
    #[serde(default)]
    pub accounts: Vec<Account>,
    #[serde(default)]
    pub vpcs: Vec<Vpc>,
    #[serde(default)]
    pub service_networks: Vec<ServiceNetwork>,
    #[serde(default)]
    pub resource_shares: Vec<ResourceShare>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub target_groups: Vec<TargetGroup>,
    #[serde(default)]
    pub access_log_subscriptions: Vec<AccessLogSubscription>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Account {
    pub id: Option<Scalar>,
    /// PEM CA certificates that issue this account's mTLS client certificates.
    pub mtls_ca_file: Option<String>,
    #[serde(default)]
    pub principals: Vec<Principal>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Principal {
    pub name: Option<Scalar>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub mtls_subjects: Vec<String>,
    #[serde(default)]
    pub access_keys: Vec<AccessKey>,
    /// The principal's tags (`aws:PrincipalTag/<key>` in policies).
    #[serde(default)]
    pub tags: BTreeMap<String, Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AccessKey {
    pub access_key_id: Option<Scalar>,
    pub secret_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Vpc {
    pub name: Option<Scalar>,
    pub account: Option<Scalar>,
    pub cidr: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// `{ netns: NAME }` or `{ cgroup: PATH }`; exactly one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Attachment {
    pub netns: Option<String>,
    pub cgroup: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ServiceNetwork {
    pub name: Option<Scalar>,
    pub account: Option<Scalar>,
    pub auth_type: Option<String>,
    pub auth_policy: Option<serde_json::Value>,
    #[serde(default)]
    pub vpc_associations: Vec<VpcAssociation>,
    #[serde(default)]
    pub service_associations: Vec<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VpcAssociation {
    pub vpc: Option<Scalar>,
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ResourceShare {
    pub name: Option<Scalar>,
    pub owner: Option<Scalar>,
    #[serde(default)]
    pub resources: Vec<Scalar>,
    #[serde(default)]
    pub principals: Vec<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Service {
    pub name: Option<Scalar>,
    pub account: Option<Scalar>,
    pub custom_domain_name: Option<String>,
    pub certificate: Option<Certificate>,
    pub auth_type: Option<String>,
    pub auth_policy: Option<serde_json::Value>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Certificate {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Listener {
    pub name: Option<Scalar>,
    pub protocol: Option<String>,
    pub port: Option<i64>,
    pub default_action: Option<Action>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Rule {
    pub name: Option<Scalar>,
    pub priority: Option<i64>,
    #[serde(rename = "match")]
    pub matcher: Option<RuleMatch>,
    pub action: Option<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RuleMatch {
    pub http_match: Option<HttpMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HttpMatch {
    pub method: Option<String>,
    pub path_match: Option<PathMatch>,
    #[serde(default)]
    pub header_matches: Vec<HeaderMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PathMatch {
    #[serde(rename = "match")]
    pub matcher: Option<PathMatchType>,
    pub case_sensitive: Option<bool>,
}

/// Exactly one of `exact`, `prefix`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PathMatchType {
    pub exact: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HeaderMatch {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<HeaderMatchType>,
    pub case_sensitive: Option<bool>,
}

/// Exactly one of `exact`, `prefix`, `contains`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HeaderMatchType {
    pub exact: Option<Scalar>,
    pub prefix: Option<Scalar>,
    pub contains: Option<Scalar>,
}

/// Exactly one of `forward`, `fixedResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Action {
    pub forward: Option<Forward>,
    pub fixed_response: Option<FixedResponse>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Forward {
    #[serde(default)]
    pub target_groups: Vec<WeightedTargetGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct WeightedTargetGroup {
    pub target_group_identifier: Option<Scalar>,
    pub weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FixedResponse {
    pub status_code: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TargetGroup {
    pub name: Option<Scalar>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub config: Option<TargetGroupConfig>,
    #[serde(default)]
    pub targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TargetGroupConfig {
    pub vpc_identifier: Option<Scalar>,
    pub protocol: Option<String>,
    pub protocol_version: Option<String>,
    pub port: Option<i64>,
    pub health_check: Option<HealthCheck>,
    /// lattice's extension (VPC Lattice has none): how the proxy picks among healthy
    /// targets, `ROUND_ROBIN` (default) or `LEAST_OUTSTANDING_REQUESTS`.
    pub load_balancing_algorithm_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HealthCheck {
    pub enabled: Option<bool>,
    pub protocol: Option<String>,
    pub protocol_version: Option<String>,
    pub port: Option<i64>,
    pub path: Option<String>,
    pub health_check_interval_seconds: Option<i64>,
    pub health_check_timeout_seconds: Option<i64>,
    pub healthy_threshold_count: Option<i64>,
    pub unhealthy_threshold_count: Option<i64>,
    pub matcher: Option<Matcher>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Matcher {
    pub http_code: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Target {
    pub id: Option<Scalar>,
    pub port: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AccessLogSubscription {
    pub resource: Option<Scalar>,
    pub destination: Option<String>,
}
