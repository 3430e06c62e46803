//! The `passport` binary: parses the command line and hands over to the subcommand.

use std::process::ExitCode;

use clap::Parser as _;

mod cli;

/// mimalloc rather than glibc's malloc: the webhook's request path allocates and frees many small
/// objects (a parsed pod, its patch), and glibc's malloc took a third of its CPU under load
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(cli::Outcome::Done) => ExitCode::SUCCESS,
        Ok(cli::Outcome::Refused) => ExitCode::from(2),
        Err(error) => {
            eprintln!("passport: {error:#}");
            ExitCode::FAILURE
        }
    }
}
