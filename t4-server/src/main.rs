//! The `t4` command.

fn main() -> std::process::ExitCode {
    t4_server::cli::main()
}
