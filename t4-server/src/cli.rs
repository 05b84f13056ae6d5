//! The `t4` command line. (Being written.)

/// Runs the `t4` command.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
