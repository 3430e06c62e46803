//! The `passport` binary: parses the command line and hands over to the subcommand.

use std::process::ExitCode;

use clap::Parser as _;

mod cli;

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
