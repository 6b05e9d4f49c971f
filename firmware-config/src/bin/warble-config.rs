//! `warble-config`: check station files at the desk, and print the JSON Schema.
//!
//! Exit status of `validate`: 0 every file is valid, 1 at least one file has problems
//! (each printed as `file:line:col: field: message`), 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Warble station configuration.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check station files; prints every problem of every file.
    Validate {
        /// Station files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the station file (for editors).
    Schema,
}

#[allow(clippy::print_stdout, reason = "the command's output")]
fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { files } => {
            let mut bad = 0usize;
            for file in &files {
                match warble_config::load(file) {
                    Ok(cfg) => println!("{}: ok (station {})", file.display(), cfg.id.as_str()),
                    Err(problems) => {
                        bad += 1;
                        eprintln!("{problems}");
                        eprintln!("{}: {} problem(s)", file.display(), problems.0.len());
                    }
                }
            }
            if bad > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Schema => match serde_json::to_string_pretty(&warble_config::schema()) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("warble-config: {e}");
                ExitCode::from(2)
            }
        },
    }
}
