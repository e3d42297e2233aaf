//! Running helper programs (`ip`, `curl`, ...) and turning failures into errors that say
//! which command failed and what it printed, so a broken test setup explains itself.

use std::ffi::OsStr;
use std::io;
use std::process::{Command, ExitStatus};

/// A helper program could not be started or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started (not installed, not in `PATH`, ...).
    #[error("could not start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// Runs `cmd` to completion and returns its standard output; any exit status but 0 is an
/// error carrying the command line and its standard error.
pub fn run(cmd: &mut Command) -> Result<String, CmdError> {
    let command = describe(cmd);
    let output = cmd.output().map_err(|source| CmdError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(CmdError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `ip ARGS...` (iproute2) in the caller's network namespace.
pub fn ip<S: AsRef<OsStr>>(args: &[S]) -> Result<String, CmdError> {
    run(Command::new("ip").args(args))
}

/// `program arg arg ...`, for error messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c echo oops >&2; exit 3"), "{msg}");
        assert!(msg.contains("oops"), "{msg}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(&mut Command::new("lattice-tests-no-such-program")).unwrap_err();
        assert!(matches!(err, CmdError::Spawn { .. }), "{err:?}");
    }
}
