//! Writes Passport's CRDs to `config/crd/` (or the directory given as the first argument).
//! The same as `passport crdgen`, without building the operator.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("config/crd"), PathBuf::from);
    let files = match passport_crds::crdgen::render() {
        Ok(files) => files,
        Err(error) => {
            eprintln!("crdgen: rendering the CRDs failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    for (name, yaml) in files {
        let path = dir.join(name);
        if let Err(error) = std::fs::write(&path, yaml) {
            eprintln!("crdgen: writing {} failed: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
