//! `warble-config`: check station files at the desk, and print the JSON Schema.
//!
//! Exit status of `validate`: 0 every file is valid, 1 at least one file has problems
//! (each printed as `file:line:col: field: message`), 2 bad usage. `render`: 0 rendered,
//! 1 problems (nothing written), 2 bad usage.

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
    /// Render a fleet: per station, station.toml, its keys, a hardened systemd unit and
    /// an install manifest (install.txt), each station file validated first.
    Render {
        /// fleet.toml (defaults and groups).
        fleet: PathBuf,
        /// Station inventory: CSV (id,group,latitude,longitude,name) or TOML ([[station]]).
        #[arg(long)]
        stations: PathBuf,
        /// Output folder (one sub-folder per station).
        #[arg(long)]
        out: PathBuf,
    },
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
        Command::Render {
            fleet,
            stations,
            out,
        } => {
            let result = warble_config::fleet::read_inventory(&stations)
                .and_then(|inventory| warble_config::fleet::render(&fleet, &inventory, &out));
            match result {
                Ok(r) => {
                    println!(
                        "rendered {} station(s) into {}: {}",
                        r.stations.len(),
                        out.display(),
                        r.stations.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    eprintln!("{problems}");
                    eprintln!("nothing rendered: {} problem(s)", problems.0.len());
                    ExitCode::from(1)
                }
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
