//! What can go wrong in the kernel side of the agent.

use std::{io, path::PathBuf};

/// An error of the dataplane module, with what was being done and to what.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("reading /proc/mounts: {0}")]
    ReadMounts(#[source] io::Error),
    #[error("{path} is not on a bpf filesystem (it is on {fstype} mounted at {mount_point}); pick a bpffs root under /sys/fs/bpf")]
    NotBpffs {
        path: PathBuf,
        fstype: String,
        mount_point: PathBuf,
    },
    #[error("mounting bpffs at {path}: {source}")]
    MountBpffs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("{op} {path}: {source}")]
    Fs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing the embedded eBPF object: {0}")]
    ParseObject(#[source] aya_obj::ParseError),
    #[error(
        "pinned map {path} does not match map {name} of this agent: its {field} is {pinned}, \
         this agent's is {compiled}. It was made by another version of lattice (or, for \
         the conntrack table, with another --max-flows); run `lattice-agent cleanup` to \
         remove the pinned state (established flows are lost), or run the agent the way \
         it ran before"
    )]
    IncompatiblePin {
        path: PathBuf,
        name: String,
        field: &'static str,
        pinned: u32,
        compiled: u32,
    },
    #[error("reading pinned map {path}: {source}")]
    ReadPin {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("loading the eBPF object: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the eBPF object has no {kind} named {name}")]
    Missing { kind: &'static str, name: String },
    #[error("{op} program {name}: {source}")]
    Program {
        op: &'static str,
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("pinning {what} at {path}: {source}")]
    Pin {
        what: String,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("{op} map {name}: {source}")]
    Map {
        op: &'static str,
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("VPC {vpc}: namespace {netns} has no address inside {cidr}; give it one (the source address its VPC traffic uses)")]
    NoVpcAddress {
        vpc: String,
        netns: String,
        cidr: ipnet::Ipv4Net,
    },
    #[error("{op} link {path}: {source}")]
    Link {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("the kernel tables are full: {what}")]
    Full { what: String },
}
