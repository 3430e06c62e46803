//! Writes Passport's CRDs to `config/crd/` (or the directory given as the first argument) and
//! the API reference generated from them to `docs/reference.md` (or the second argument).
//! The same CRDs as `passport crdgen`, without building the operator.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let dir = args
        .next()
        .map_or_else(|| PathBuf::from("config/crd"), PathBuf::from);
    let reference = args
        .next()
        .map_or_else(|| PathBuf::from("docs/reference.md"), PathBuf::from);
    let files = match passport_crds::crdgen::render() {
        Ok(files) => files,
        Err(error) => {
            eprintln!("crdgen: rendering the CRDs failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outputs = files
        .into_iter()
        .map(|(name, yaml)| (dir.join(name), yaml))
        .chain([(reference, passport_crds::reference::markdown())]);
    for (path, text) in outputs {
        if let Err(error) = std::fs::write(&path, text) {
            eprintln!("crdgen: writing {} failed: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
