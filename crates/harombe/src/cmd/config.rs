//! `harombe config validate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate a configuration file: exit 0 when valid, 1 with the problem
    /// (key and line) when not.
    Validate {
        /// The file to check (default: --config).
        file: Option<PathBuf>,
    },
}

pub fn run(cmd: &ConfigCommand, global: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Validate { file } = cmd;
    let Some(path) = file.as_deref().or(global) else {
        println!("no configuration file given: the built-in defaults apply (and are valid)");
        return Ok(ExitCode::SUCCESS);
    };
    match crate::config::load(path) {
        Ok(_) => {
            println!("{}: valid", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e:#}");
            Ok(ExitCode::from(1))
        }
    }
}
