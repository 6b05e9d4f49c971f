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
    /// Render a fleet: per station a folder with all it needs (station.toml, keys,
    /// credentials, TLS files, the initial model bundle, the unit's drop-in, install.sh
    /// and install.txt), and the broker's files; each station file validated first.
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
    /// Create a broker password (`<user>.credentials`) for every station and role of a
    /// fleet that has none yet, in its `fleet.secrets` folder.
    Secrets {
        /// fleet.toml.
        fleet: PathBuf,
        /// Station inventory (CSV or TOML).
        #[arg(long)]
        stations: PathBuf,
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
        Command::Secrets { fleet, stations } => {
            let result = warble_config::fleet::read_inventory(&stations)
                .and_then(|inventory| warble_config::fleet::create_secrets(&fleet, &inventory));
            match result {
                Ok(created) if created.is_empty() => {
                    println!("every broker user has its credentials already");
                    ExitCode::SUCCESS
                }
                Ok(created) => {
                    println!("new credentials for: {}", created.join(", "));
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    eprintln!("{problems}");
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
