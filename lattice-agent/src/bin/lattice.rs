//! The operator's CLI.
fn main() -> std::process::ExitCode {
    lattice_agent::cli::lattice_main()
}
