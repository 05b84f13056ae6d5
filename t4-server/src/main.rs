//! The `t4` command.

/// jemalloc instead of the system allocator: a write allocates many small short-lived
/// buffers (the request, fjall's memtable entries, the journal's), and on glibc's malloc
/// that was a fifth of the CPU of a write-heavy run (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    t4_server::cli::main()
}
