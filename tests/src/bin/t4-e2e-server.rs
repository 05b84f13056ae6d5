//! The `t4` command, built inside this package so that its integration tests can find it
//! with `env!("CARGO_BIN_EXE_t4-e2e-server")`: cargo exposes only a package's own binaries to
//! its tests, and builds them before the tests run, so `cargo test -p t4-e2e` on a clean
//! checkout always tests the current code. It is byte-for-byte the same program as the `t4`
//! binary of `t4-server`: both `main`s are this one line.

fn main() -> std::process::ExitCode {
    t4_server::cli::main()
}
