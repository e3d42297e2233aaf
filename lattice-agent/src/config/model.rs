//! The validated desired state. Values here have passed every rule: names have Lattice's
//! shape, references point at resources that exist (as typed indices into the
//! [`Config`](super::Config)'s lists), numbers are in range, files are absolute paths.
//! Nothing downstream parses strings again.

use std::{
    collections::BTreeMap, fmt, net::Ipv4Addr, num::NonZeroU16, ops::RangeInclusive, path::PathBuf,
    time::Duration,
};

use ipnet::Ipv4Net;
use serde::Serialize;

/// A resource name that passed its kind's rule (see `names.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub(crate) fn new_unchecked(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A 12-digit account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    pub(crate) fn new_unchecked(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP port, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Port(NonZeroU16);

impl Port {
    pub(crate) fn new(port: NonZeroU16) -> Self {
        Self(port)
    }

    pub fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! typed_ref {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) usize);

        impl $name {
            /// Position in the corresponding list of the [`Config`](super::Config).
            pub fn index(self) -> usize {
                self.0
            }
        }
    };
}

typed_ref!(
    /// A vpc of the config, by position in [`Config::vpcs`](super::Config::vpcs).
    VpcRef
);
typed_ref!(
    /// A service network, by position in [`Config::service_networks`](super::Config::service_networks).
    ServiceNetworkRef
);
typed_ref!(
    /// A service, by position in [`Config::services`](super::Config::services).
    ServiceRef
);
typed_ref!(
    /// A target group, by position in [`Config::target_groups`](super::Config::target_groups).
    TargetGroupRef
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// The CA certificates (PEM) that issue the account's mTLS client certificates;
    /// absolute, existence checked by [`Config::check_files`](super::Config::check_files).
    pub mtls_ca_file: Option<PathBuf>,
    pub principals: Vec<Principal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalType {
    Role,
    User,
}

impl PrincipalType {
    /// The word used in ARNs and in the document: `role` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::User => "user",
        }
    }
}

/// An identity of an account (`arn:lattice:iam::<account>:role/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: Name,
    pub kind: PrincipalType,
    /// URI SANs of client certificates that identify this principal.
    pub mtls_subjects: Vec<String>,
    pub access_keys: Vec<AccessKey>,
    /// Tag key -> value, as IAM principal tags (`aws:PrincipalTag/<key>`).
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    /// Absolute (resolved against the document's folder); existence checked by
    /// [`Config::check_files`](super::Config::check_files).
    pub secret_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub name: Name,
    pub account: AccountId,
    pub cidr: Ipv4Net,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attachment {
    /// An existing network namespace (a name under /run/netns).
    Netns(String),
    /// A cgroup, as a path relative to the cgroup2 mount.
    Cgroup(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthType {
    None,
    AwsIam,
}

/// An auth policy: the document as written (what `show` prints and what serializes) and
/// its parsed form, checked once at validation, that requests are evaluated against.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    document: serde_json::Value,
    policy: lattice_policy::Policy,
    reads: crate::auth::context::RequestReads,
}

impl AuthPolicy {
    /// `policy` must be `document` parsed.
    pub(crate) fn new(document: serde_json::Value, policy: lattice_policy::Policy) -> Self {
        let reads = crate::auth::context::RequestReads::of(&policy);
        Self {
            document,
            policy,
            reads,
        }
    }

    /// The request headers and query parameters its conditions read.
    pub fn reads(&self) -> &crate::auth::context::RequestReads {
        &self.reads
    }

    pub fn document(&self) -> &serde_json::Value {
        &self.document
    }

    /// The parsed policy, for `lattice_policy::evaluate`.
    pub fn parsed(&self) -> &lattice_policy::Policy {
        &self.policy
    }
}

/// Two auth policies are equal when their documents are: the parsed form is a function
/// of the document.
impl PartialEq for AuthPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.document == other.document
    }
}

impl Eq for AuthPolicy {}

/// Serializes as the document.
impl Serialize for AuthPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.document.serialize(serializer)
    }
}

/// `NONE` allows everyone; `AWS_IAM` denies unless the policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    AwsIam(AuthPolicy),
}

impl Auth {
    pub fn auth_type(&self) -> AuthType {
        match self {
            Self::None => AuthType::None,
            Self::AwsIam(_) => AuthType::AwsIam,
        }
    }

    pub fn policy(&self) -> Option<&AuthPolicy> {
        match self {
            Self::None => None,
            Self::AwsIam(policy) => Some(policy),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub name: Name,
    pub account: AccountId,
    pub auth: Auth,
    pub vpc_associations: Vec<VpcAssociation>,
    pub service_associations: Vec<ServiceRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcAssociation {
    pub vpc: VpcRef,
    /// Source CIDRs allowed in (each inside the vpc's CIDR); empty means the whole vpc.
    pub allowed_cidrs: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceShare {
    pub name: Name,
    pub owner: AccountId,
    pub resources: Vec<SharedResource>,
    pub principals: Vec<AccountId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SharedResource {
    ServiceNetwork(ServiceNetworkRef),
    Service(ServiceRef),
    TargetGroup(TargetGroupRef),
    Vpc(VpcRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: Name,
    pub account: AccountId,
    /// Lowercase DNS name.
    pub custom_domain_name: Option<String>,
    pub certificate: Option<Certificate>,
    pub auth: Auth,
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Absolute paths; existence checked by [`Config::check_files`](super::Config::check_files).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListenerProtocol {
    Http,
    Https,
    TlsPassthrough,
    Tcp,
}

impl ListenerProtocol {
    /// Whether the listener terminates HTTP (and so may have rules).
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::TlsPassthrough => "TLS_PASSTHROUGH",
            Self::Tcp => "TCP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: Name,
    pub protocol: ListenerProtocol,
    pub port: Port,
    pub default_action: Action,
    /// Sorted by priority (lowest first); empty unless the listener is HTTP or HTTPS.
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: Name,
    /// 1-2000, unique within the listener; lower is evaluated first.
    pub priority: u16,
    pub http_match: HttpMatch,
    pub action: Action,
}

/// All present conditions must hold; at least one is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpMatch {
    pub method: Option<Method>,
    pub path_match: Option<PathMatch>,
    pub header_matches: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Connect,
    Delete,
    Get,
    Head,
    Options,
    Patch,
    Post,
    Put,
    Trace,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Delete => "DELETE",
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Options => "OPTIONS",
            Self::Patch => "PATCH",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Trace => "TRACE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatchType {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMatch {
    pub matcher: PathMatchType,
    /// Lattice's default: false.
    pub case_sensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatchType {
    Exact(String),
    Prefix(String),
    Contains(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lowercase (header names compare without case).
    pub name: String,
    pub matcher: HeaderMatchType,
    /// Lattice's default: false.
    pub case_sensitive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum FixedResponseStatus {
    #[serde(rename = "404")]
    NotFound,
    #[serde(rename = "500")]
    InternalServerError,
}

impl FixedResponseStatus {
    pub fn code(self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::InternalServerError => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// 1-10 distinct target groups; at least one weight is above 0.
    Forward(Vec<WeightedTargetGroup>),
    FixedResponse(FixedResponseStatus),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightedTargetGroup {
    pub target_group: TargetGroupRef,
    /// 0-999.
    pub weight: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetType {
    Ip,
    Instance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetGroupProtocol {
    Http,
    Https,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProtocolVersion {
    Http1,
    Http2,
    Grpc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub name: Name,
    /// The owner: the account of the group's vpc.
    pub account: AccountId,
    pub kind: TargetType,
    pub vpc: VpcRef,
    pub protocol: TargetGroupProtocol,
    /// `None` for TCP; HTTP1 by default for HTTP and HTTPS.
    pub protocol_version: Option<ProtocolVersion>,
    pub port: Port,
    pub health_check: HealthCheck,
    /// How the L7 proxy picks among a group's healthy targets.
    pub load_balancing: LoadBalancing,
    pub targets: Vec<Target>,
}

/// `config.loadBalancingAlgorithmType` (a lattice extension; VPC Lattice has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    LeastOutstandingRequests,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthCheckProtocol {
    Http,
    Https,
    /// A TCP connect within the timeout: TCP target groups whose check names no
    /// protocol.
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthCheckProtocolVersion {
    Http1,
    Http2,
}

/// Health check settings with Lattice's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Default: on for HTTP1 groups, off for HTTP2, GRPC and TCP groups.
    pub enabled: bool,
    pub protocol: HealthCheckProtocol,
    pub protocol_version: HealthCheckProtocolVersion,
    /// `None`: the port each target receives traffic on.
    pub port: Option<Port>,
    /// Default `/`.
    pub path: String,
    /// 5-300 s, default 30 s.
    pub interval: Duration,
    /// 1-120 s, default 5 s.
    pub timeout: Duration,
    /// 2-10, default 5.
    pub healthy_threshold: u8,
    /// 2-10, default 2.
    pub unhealthy_threshold: u8,
    pub matcher: StatusMatcher,
}

/// HTTP status codes that count as healthy: single codes and ranges (`200,202-204`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMatcher(pub(crate) Vec<RangeInclusive<u16>>);

impl StatusMatcher {
    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|range| range.contains(&status))
    }

    pub fn ranges(&self) -> &[RangeInclusive<u16>] {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetId {
    /// IP targets: inside the vpc's CIDR.
    Ip(Ipv4Addr),
    /// INSTANCE targets: `i-` and 8 or 17 hex digits.
    Instance(String),
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Instance(id) => f.write_str(id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub id: TargetId,
    /// The group's port unless the target names its own.
    pub port: Port,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoggedResource {
    ServiceNetwork(ServiceNetworkRef),
    Service(ServiceRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogDestination {
    /// `file:PATH`, resolved against the document's folder.
    File(PathBuf),
    Stdout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSubscription {
    pub resource: LoggedResource,
    pub destination: LogDestination,
}
