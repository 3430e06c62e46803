//! Passport's command line: one subcommand per job, flags also readable from the environment.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Passport: pods use AWS, Google Cloud and Azure with no static keys.
#[derive(Debug, Parser)]
#[command(name = "passport", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version of the binary and of the API it serves.
    Version,
    /// Write the CustomResourceDefinitions, generated from the API types.
    Crdgen {
        /// Directory to write one YAML file per CRD into.
        #[arg(long, env = "PASSPORT_CRD_DIR", default_value = "config/crd")]
        out_dir: PathBuf,
        /// Print all CRDs as one multi-document YAML stream instead
        /// (`passport crdgen --stdout | kubectl apply -f -`).
        #[arg(long, conflicts_with = "out_dir")]
        stdout: bool,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Version => {
            println!(
                "passport {} (API {}/{})",
                env!("CARGO_PKG_VERSION"),
                passport_crds::keys::GROUP,
                passport_crds::keys::VERSION
            );
            Ok(())
        }
        Command::Crdgen { out_dir, stdout } => crdgen(&out_dir, stdout),
    }
}

fn crdgen(out_dir: &Path, stdout: bool) -> anyhow::Result<()> {
    let files = passport_crds::crdgen::render().context("rendering the CRDs")?;
    if stdout {
        let mut out = std::io::stdout().lock();
        for (_, yaml) in files {
            writeln!(out, "---\n{}", yaml.trim_end())?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for (name, yaml) in files {
        let path = out_dir.join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crdgen_writes_one_file_per_crd() {
        let dir = std::env::temp_dir().join(format!("passport-crdgen-{}", std::process::id()));
        let cli = Cli::try_parse_from(["passport", "crdgen", "--out-dir", dir.to_str().unwrap()])
            .unwrap();
        run(cli).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "passport.dev_accesspolicies.yaml",
                "passport.dev_federatedtrusts.yaml"
            ]
        );
        let trust = std::fs::read_to_string(dir.join("passport.dev_federatedtrusts.yaml")).unwrap();
        assert!(trust.contains("kind: CustomResourceDefinition"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn subcommands_that_do_not_exist_are_refused() {
        assert!(Cli::try_parse_from(["passport", "frobnicate"]).is_err());
        assert!(Cli::try_parse_from(["passport", "crdgen", "--stdout", "--out-dir", "x"]).is_err());
    }
}
