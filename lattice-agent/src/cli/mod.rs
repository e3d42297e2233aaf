//! The command lines: `lattice-agent` (the daemon and its offline tools) and `lattice`
//! (the operator's CLI). Each command is a function returning `anyhow::Result`, the edge
//! where typed errors get their context; `main` prints the chain and picks the exit code.

mod agent;
mod control;
mod maps;
mod show;

use std::{net::Ipv4Addr, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use ipnet::Ipv4Net;

use crate::resolve;

/// Exit code of a command that ran and found a problem (invalid config, failed load).
const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "lattice-agent",
    version = version(),
    about = "The lattice agent: an application network for Linux hosts, modeled on Amazon VPC Lattice."
)]
pub struct AgentCli {
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    #[command(flatten)]
    Offline(OfflineCommand),
    /// Runs the agent on a document until SIGTERM or SIGINT.
    Run(Box<agent::RunArgs>),
    /// Prints the health of every target (as the running agent records it).
    Targets {
        #[arg(long, env = "LATTICE_STATE_DIR", default_value = "/var/lib/lattice")]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Removes everything the agent pinned under its bpffs root (programs detach, maps
    /// and their flows are freed).
    Cleanup {
        #[arg(long, default_value = lattice_common::pins::DEFAULT_BPFFS_ROOT)]
        bpffs_root: PathBuf,
    },
}

/// Agent settings that shape the resolved model.
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// The region in ARNs and DNS names.
    #[arg(long, env = "LATTICE_REGION", default_value = "local")]
    region: String,
    /// The link-local pool virtual IPs come from.
    #[arg(long, env = "LATTICE_VIP_POOL", default_value = "169.254.171.0/24")]
    vip_pool: Ipv4Net,
}

impl SettingsArgs {
    fn to_settings(&self) -> anyhow::Result<resolve::Settings> {
        let link_local = Ipv4Net::new(Ipv4Addr::new(169, 254, 0, 0), 16).expect("valid");
        anyhow::ensure!(
            link_local.contains(&self.vip_pool),
            "--vip-pool {}: must be inside the link-local range 169.254.0.0/16",
            self.vip_pool
        );
        Ok(resolve::Settings {
            region: self.region.clone(),
            vip_pool: self.vip_pool,
            ..resolve::Settings::default()
        })
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "lattice",
    version = version(),
    about = "Operate lattice: change and inspect a running agent through its control API, check documents.",
    after_help = "Exit codes: 0 done, 1 refused or failed, 2 usage, 3 the agent cannot be reached."
)]
pub struct LatticeCli {
    #[command(flatten)]
    endpoint: control::EndpointArgs,
    #[command(subcommand)]
    command: LatticeCommand,
}

#[derive(Debug, Subcommand)]
enum LatticeCommand {
    #[command(flatten)]
    Offline(OfflineCommand),
    /// Makes a document the agent's desired state: shows what changes, then applies it
    /// as one change.
    Apply {
        /// The document (YAML or JSON); `-` reads standard input.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Only validate and show the changes.
        #[arg(long)]
        dry_run: bool,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: control::Output,
    },
    /// Lists resources of a kind (under their parents' names), or shows one.
    Get {
        kind: control::KindArg,
        /// Parents' names, then optionally the resource's (e.g. `rules orders http`).
        names: Vec<String>,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: control::Output,
    },
    /// Shows one resource whole, as JSON.
    Describe {
        kind: control::KindArg,
        names: Vec<String>,
    },
    /// Deletes one resource (the change is validated whole, like any other).
    Delete {
        kind: control::KindArg,
        names: Vec<String>,
    },
    /// The targets of a target group with their health (ListTargets).
    Targets {
        target_group: String,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: control::Output,
    },
    /// The proxy's live counters per service and target group.
    Stats {
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: control::Output,
        /// Print again every this many seconds.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<u64>,
        /// How many times --watch prints.
        #[arg(long, default_value_t = 10)]
        count: u32,
    },
    /// Prints the access log files of the subscriptions; -f follows them.
    Logs {
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the subscription of this service or service network.
        #[arg(long)]
        resource: Option<String>,
    },
    /// Prints a shell completion script (e.g. `lattice completion bash > /etc/bash_completion.d/lattice`).
    Completion { shell: clap_complete::Shell },
}

/// Commands that only read a document: both command lines have them.
#[derive(Debug, Subcommand)]
enum OfflineCommand {
    /// Checks a desired-state document (YAML or JSON) and reports every error in it.
    Validate {
        /// The document; `-` reads standard input.
        file: PathBuf,
    },
    /// Prints the resolved model of a document: ids, ARNs, DNS names, virtual IPs.
    Show {
        /// The document; `-` reads standard input.
        file: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Take the virtual IPs already allocated in this state directory (read only).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Prints the kernel tables (listeners, backends, access, interfaces, refusals, flows),
    /// with resource names when given the document.
    Maps {
        #[arg(long, default_value = lattice_common::pins::DEFAULT_BPFFS_ROOT)]
        bpffs_root: PathBuf,
        /// The document the agent runs, to print names instead of keys.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The agent's state directory (its VIPs), with --config.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

impl OfflineCommand {
    fn run(self) -> anyhow::Result<()> {
        match self {
            OfflineCommand::Validate { file } => show::validate(&file),
            OfflineCommand::Show {
                file,
                json,
                state_dir,
                settings,
            } => show::show(&file, json, state_dir.as_deref(), &settings),
            OfflineCommand::Maps {
                bpffs_root,
                config,
                state_dir,
                json,
                settings,
            } => maps::maps(
                &bpffs_root,
                config.as_deref(),
                state_dir.as_deref(),
                &settings,
                json,
            ),
        }
    }
}

fn version() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (eBPF object built with ",
        env!("LATTICE_BPF_TOOLCHAIN"),
        ")"
    )
}

/// `main` of the `lattice-agent` binary.
pub fn agent_main() -> ExitCode {
    let cli = AgentCli::parse();
    init_logging();
    report(match cli.command {
        AgentCommand::Offline(command) => command.run(),
        AgentCommand::Run(args) => agent::run(*args),
        AgentCommand::Targets { state_dir, json } => agent::targets(&state_dir, json),
        AgentCommand::Cleanup { bpffs_root } => agent::cleanup(&bpffs_root),
    })
}

/// `main` of the `lattice` binary.
pub fn lattice_main() -> ExitCode {
    let cli = LatticeCli::parse();
    init_logging();
    let endpoint = &cli.endpoint;
    report(match cli.command {
        LatticeCommand::Offline(command) => command.run(),
        LatticeCommand::Apply {
            file,
            dry_run,
            output,
        } => control::apply(endpoint, &file, dry_run, output),
        LatticeCommand::Get {
            kind,
            names,
            output,
        } => control::get(endpoint, kind, &names, output),
        LatticeCommand::Describe { kind, names } => control::describe(endpoint, kind, &names),
        LatticeCommand::Delete { kind, names } => control::delete(endpoint, kind, &names),
        LatticeCommand::Targets {
            target_group,
            output,
        } => control::targets(endpoint, &target_group, output),
        LatticeCommand::Stats {
            output,
            watch,
            count,
        } => control::stats(endpoint, output, watch, count),
        LatticeCommand::Logs { follow, resource } => {
            control::logs(endpoint, resource.as_deref(), follow)
        }
        LatticeCommand::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut LatticeCli::command(),
                "lattice",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            let exit = error
                .downcast_ref::<control::CallFailed>()
                .map_or(EXIT_FAILURE, |f| f.exit);
            ExitCode::from(exit)
        }
    }
}

/// Logs go to stderr; `RUST_LOG` filters them (default `info`, with hickory's line per
/// DNS query left out: `RUST_LOG=info,hickory_server=info` shows them).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
