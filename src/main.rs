//! The binary's edge: parse the command line, start logging, run, map errors to exit codes
//! (0 ok, 2 bad configuration, 1 runtime failure): a log record for `serve`, one plain line on
//! stderr for the other commands.

use std::process::ExitCode;

use clap::Parser;
use clicktrack::app::AppError;
use clicktrack::config::{Cli, Command};
use clicktrack::{commands, telemetry};

/// mimalloc instead of glibc's malloc: a request allocates and frees many small buffers on
/// whichever worker thread runs it, and glibc's arenas spent a tenth of the request path's
/// CPU in malloc, free and their consolidation (perf, SQLite at 50 connections).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` is set (then
/// mimalloc's own setting decides). mimalloc asks the kernel for huge pages on its arenas
/// (`madvise`), and a 2 MiB page is resident as soon as one byte of it is touched: with them
/// the process held 97-118 MiB at its peak in the redirect benchmark, without them 54-72 MiB,
/// at the same throughput and CPU per click (three alternated pairs, README "Benchmark").
/// Called first in `main`, before the runtime and the store allocate.
fn keep_huge_pages_off() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory of
        // ours. If it fails (an old kernel), the process runs with the system's setting.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

fn main() -> ExitCode {
    keep_huge_pages_off();
    // Clap exits with 2 on malformed flags, naming the flag.
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format);
    // A purge may wait: every thread the runtime and the store start inherits this one's
    // priority.
    if let Command::Purge(args) = &cli.command {
        clicktrack::pipeline::priority::lower_this_thread(args.nice, "the purge");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `serve` reports through its log like everything else it does; the other commands are
    // run by a person, who gets one plain line.
    let serve = matches!(cli.command, Command::Serve(_));
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e {
                AppError::Config(_) => 2,
                AppError::Journal(ref j) if j.is_misconfiguration() => 2,
                _ => 1,
            };
            // Each error's Display already carries its cause.
            if serve {
                tracing::error!(error = %e, "clicktrack failed");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(code)
        }
    }
}
