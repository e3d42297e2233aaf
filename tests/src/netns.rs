//! Network namespaces: creating and deleting them with `ip netns`, configuring them with
//! `ip -n`, and running code or programs inside one.
//!
//! Code runs in a namespace on a fresh thread that entered it with `setns(CLONE_NEWNET)`:
//! the test process stays where it is and needs no child process, and sockets created on
//! that thread stay in the namespace after the thread is gone, so a listener or client
//! socket made by [`Netns::run`] can be used from any thread afterwards.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use nix::sched::{setns, CloneFlags};

use crate::cmd::{self, CmdError};

/// Where `ip netns` keeps its named namespaces (bind-mounted nsfs files).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Serialises `ip netns add` in this process: the first one on a machine turns
/// [`NETNS_RUN_DIR`] into a shared bind mount of itself, and concurrent first calls can stack
/// several such mounts.
static ADD_LOCK: Mutex<()> = Mutex::new(());

/// A network namespace created by a [`crate::Topology`], by name. Cloning is cheap; the
/// topology deletes the namespace when dropped, after which every method here fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

/// Creating, configuring, entering or deleting a network namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// An `ip` command for this namespace failed.
    #[error("{action} in network namespace {netns} failed (needs root and iproute2)")]
    Ip {
        action: String,
        netns: String,
        #[source]
        source: CmdError,
    },
    /// The namespace file could not be opened: the namespace does not exist (any more).
    #[error("opening network namespace {netns} at {} failed (was its Topology dropped?)", path.display())]
    Open {
        netns: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `setns` refused to enter the namespace.
    #[error("entering network namespace {netns} with setns(CLONE_NEWNET) failed (needs root)")]
    Enter {
        netns: String,
        #[source]
        source: nix::Error,
    },
    /// No thread could be started to enter the namespace.
    #[error("starting a thread to enter network namespace {netns} failed")]
    Thread {
        netns: String,
        #[source]
        source: io::Error,
    },
    /// A sysctl inside the namespace could not be written.
    #[error("setting sysctl {key} = {value} in network namespace {netns} failed")]
    Sysctl {
        netns: String,
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },
    /// The list of named namespaces could not be read.
    #[error("listing network namespaces in {NETNS_RUN_DIR} failed")]
    List {
        #[source]
        source: io::Error,
    },
}

impl Netns {
    /// Creates the namespace `name` with `ip netns add`. Loopback is still down.
    pub(crate) fn add(name: String) -> Result<Netns, NetnsError> {
        let _serialised = ADD_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cmd::ip(&["netns", "add", &name]).map_err(|source| NetnsError::Ip {
            action: "creating the namespace".to_owned(),
            netns: name.clone(),
            source,
        })?;
        Ok(Netns { name })
    }

    /// Deletes the namespace and makes a new one of the same name, as a container
    /// runtime does for a restarted container: the new one is empty (loopback up, no
    /// addresses), and sockets still open in the old one keep it alive, unnamed.
    pub fn recreate(&self) -> Result<(), NetnsError> {
        let _serialised = ADD_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (args, action) in [
            (["netns", "del", &self.name], "deleting the namespace"),
            (["netns", "add", &self.name], "creating the namespace again"),
        ] {
            cmd::ip(&args).map_err(|source| NetnsError::Ip {
                action: action.to_owned(),
                netns: self.name.clone(),
                source,
            })?;
        }
        self.set_up("lo")
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file `setns` opens: `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Runs `f` on a new thread inside this namespace and returns its result.
    ///
    /// Sockets `f` creates belong to the namespace for their whole life. A panic in `f` is
    /// resumed on the calling thread, so assertions inside work as usual.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = self.path();
        let file = File::open(&path).map_err(|source| NetnsError::Open {
            netns: self.name.clone(),
            path,
            source,
        })?;
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name("netns-run".to_owned())
                .spawn_scoped(scope, move || {
                    setns(&file, CloneFlags::CLONE_NEWNET).map(|()| f())
                })
                .map_err(|source| NetnsError::Thread {
                    netns: self.name.clone(),
                    source,
                })?;
            match thread.join() {
                Ok(entered) => entered.map_err(|source| NetnsError::Enter {
                    netns: self.name.clone(),
                    source,
                }),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// `ip netns exec <name> <program>`: a command to run a program inside the namespace
    /// (add arguments, then spawn or run it). `ip netns exec` also mounts a fresh `/sys`
    /// for the child, so it sees the namespace's interfaces there.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `program args...` inside the namespace to completion and returns its standard
    /// output; a non-zero exit is an error with the program's standard error.
    pub fn exec<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Result<String, CmdError> {
        cmd::run(self.command(program).args(args))
    }

    /// Runs `ip -n <name> ARGS...`, for configuration without a typed helper here.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        cmd::ip(&full).map_err(|source| self.ip_error(format!("ip {}", args.join(" ")), source))
    }

    /// Sets interface `ifname` of this namespace up.
    pub fn set_up(&self, ifname: &str) -> Result<(), NetnsError> {
        self.ip(&["link", "set", ifname, "up"])
            .map(drop)
            .map_err(|e| e.with_action(format!("setting {ifname} up")))
    }

    /// Adds the IPv4 address `cidr` (e.g. `10.1.0.1/24`) to interface `ifname`.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<(), NetnsError> {
        self.ip(&["addr", "add", cidr, "dev", ifname])
            .map(drop)
            .map_err(|e| e.with_action(format!("adding address {cidr} to {ifname}")))
    }

    /// Adds a route to `dst` (a CIDR or `default`) through gateway `via`.
    pub fn add_route_via(&self, dst: &str, via: Ipv4Addr) -> Result<(), NetnsError> {
        let via = via.to_string();
        self.ip(&["route", "add", dst, "via", &via])
            .map(drop)
            .map_err(|e| e.with_action(format!("adding route {dst} via {via}")))
    }

    /// Adds a route to `dst` (a CIDR or `default`) straight out of interface `ifname`.
    pub fn add_route_dev(&self, dst: &str, ifname: &str) -> Result<(), NetnsError> {
        self.ip(&["route", "add", dst, "dev", ifname])
            .map(drop)
            .map_err(|e| e.with_action(format!("adding route {dst} dev {ifname}")))
    }

    /// Writes a `net.*` sysctl inside the namespace, e.g. `net.ipv4.ip_forward` = `1`
    /// (`/proc/sys/net` shows the namespace of the thread that opens it).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        self.run(|| std::fs::write(&path, value))?
            .map_err(|source| NetnsError::Sysctl {
                netns: self.name.clone(),
                key: key.to_owned(),
                value: value.to_owned(),
                source,
            })
    }

    fn ip_error(&self, action: String, source: CmdError) -> NetnsError {
        NetnsError::Ip {
            action,
            netns: self.name.clone(),
            source,
        }
    }
}

impl NetnsError {
    /// Replaces the generic `ip ...` action of an [`NetnsError::Ip`] by what it was for.
    fn with_action(self, action: String) -> NetnsError {
        match self {
            NetnsError::Ip { netns, source, .. } => NetnsError::Ip {
                action,
                netns,
                source,
            },
            other => other,
        }
    }
}

/// Deletes the namespace `name`; one that is already gone counts as deleted.
///
/// The kernel destroys the namespace, and the interfaces in it, once nothing uses it any
/// more: a socket or a process still inside keeps it alive but unnamed.
pub(crate) fn delete(name: &str) -> Result<(), NetnsError> {
    match cmd::ip(&["netns", "delete", name]) {
        Err(_) if !Path::new(NETNS_RUN_DIR).join(name).exists() => Ok(()),
        result => result.map(drop).map_err(|source| NetnsError::Ip {
            action: "deleting the namespace".to_owned(),
            netns: name.to_owned(),
            source,
        }),
    }
}

/// The names of all named network namespaces on the machine.
pub(crate) fn list() -> Result<Vec<String>, NetnsError> {
    let entries = match std::fs::read_dir(NETNS_RUN_DIR) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        entries => entries.map_err(|source| NetnsError::List { source })?,
    };
    entries
        .map(|entry| {
            entry
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .map_err(|source| NetnsError::List { source })
        })
        .collect()
}
