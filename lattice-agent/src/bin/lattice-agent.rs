//! The lattice agent daemon and its offline tools (validate, show, run, cleanup).
fn main() -> std::process::ExitCode {
    lattice_agent::cli::agent_main()
}
