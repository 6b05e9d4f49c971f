//! `warble-agent`: command-line entry point. Wiring only; the work lives in the library.
#![allow(clippy::print_stdout)] // a CLI prints its results

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use warble_agent::features::{self, WindowSummary};
use warble_agent::resources::peak_rss_bytes;
use warble_config::StationConfig;
use warble_config::logging::LogSettings;
use warble_core::frontend::WindowSpec;

mod analyze_cmd;
mod deliver_cmd;
mod run_cmd;
use warble_core::{FrontEndConfig, Preset};

#[derive(Parser)]
#[command(name = "warble-agent", version, about = "Warble recorder agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify recordings with a signed model bundle and write detections.
    ///
    /// The bundle is verified (signature by a trusted key, hashes, self-test) before any
    /// audio is read. Directories are searched recursively for audio files; a file that
    /// cannot be decoded is reported and the rest continue.
    Analyze(Box<analyze_cmd::AnalyzeArgs>),
    /// Send the detections waiting in the station's outbox to its MQTT broker (QoS 1;
    /// each leaves the outbox only when the broker acknowledged it). Exit status 0: all
    /// delivered; 1: some left for next time (broker unreachable); 2: error.
    Deliver(deliver_cmd::DeliverArgs),
    /// The recorder: live capture from the station's input device → detections (written
    /// and committed to the outbox) → MQTT delivery in the background, until SIGINT or
    /// SIGTERM (or --duration / --max-samples).
    Run(run_cmd::RunArgs),
    /// List the audio input devices (ids for `audio.device`).
    Devices,
    /// Stream a recording through the log-mel front end exactly as the recorder will, and
    /// print what each window looks like plus throughput and memory figures.
    Features {
        /// Audio file (WAV, FLAC, OGG/Vorbis, MP3; any rate, any channel count).
        file: PathBuf,
        /// Front-end preset.
        #[arg(long, value_enum, default_value_t = PresetArg::Birdset)]
        preset: PresetArg,
        /// Window length in seconds.
        #[arg(long, default_value_t = 5.0)]
        window: f64,
        /// Seconds between window starts (rounded down to the frame hop).
        #[arg(long, default_value_t = 5.0)]
        hop: f64,
        /// Print only the summary, not every window.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PresetArg {
    Birdset,
    Audioprotopnet,
}

impl Command {
    /// The station file the command reads, if any.
    fn station_file(&self) -> Option<&std::path::Path> {
        match self {
            Self::Analyze(a) => a.config.as_deref(),
            Self::Deliver(a) => Some(&a.config),
            Self::Run(a) => Some(&a.config),
            Self::Devices | Self::Features { .. } => None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The station file is read once, here: its [log] section sets up the logger before
    // anything is said, and the command gets the validated settings.
    let station = match cli
        .command
        .station_file()
        .map(warble_agent::settings::load_station)
        .transpose()
    {
        Ok(station) => station,
        Err(err) => {
            eprintln!("warble-agent: {err:#}");
            return ExitCode::from(2);
        }
    };
    let log = station.as_ref().map(LogSettings::of).unwrap_or_default();
    log.install();
    match run(cli, station) {
        Ok(code) => code,
        Err(err) => {
            // Said once; in JSON too when every other line is.
            if log.json {
                tracing::error!("{err:#}");
            } else {
                eprintln!("warble-agent: {err:#}");
            }
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli, station: Option<StationConfig>) -> anyhow::Result<ExitCode> {
    let required = |st: Option<StationConfig>| st.context("a station file is required");
    match cli.command {
        Command::Analyze(args) => analyze_cmd::run(*args, station).map(|()| ExitCode::SUCCESS),
        Command::Deliver(args) => deliver_cmd::run(args, required(station)?),
        Command::Run(args) => run_cmd::run(args, required(station)?),
        Command::Devices => {
            let list = warble_agent::capture::devices()?;
            if list.is_empty() {
                println!("no input devices");
            }
            for d in list {
                println!(
                    "{}\t{}\t{}",
                    d.id,
                    d.description,
                    d.default_config
                        .unwrap_or_else(|| "(no default configuration)".into())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Features {
            file,
            preset,
            window,
            hop,
            quiet,
        } => features_command(file, preset, window, hop, quiet).map(|()| ExitCode::SUCCESS),
    }
}

fn features_command(
    file: PathBuf,
    preset: PresetArg,
    window_s: f64,
    hop_s: f64,
    quiet: bool,
) -> anyhow::Result<()> {
    let cfg = FrontEndConfig::from_preset(match preset {
        PresetArg::Birdset => Preset::BirdSet,
        PresetArg::Audioprotopnet => Preset::AudioProtoPNet,
    })?;
    if !(window_s > 0.0 && hop_s > 0.0 && window_s.is_finite() && hop_s.is_finite()) {
        bail!("--window and --hop must be positive seconds (got {window_s}, {hop_s})");
    }
    let rate = f64::from(cfg.sample_rate_hz);
    let hop_samples = ((hop_s * rate) as usize / cfg.hop_length).max(1) * cfg.hop_length;
    let spec = WindowSpec {
        length_samples: (window_s * rate) as usize,
        hop_samples,
    };
    let (n_mels, frames) = (cfg.n_mels, cfg.frames_for(spec.length_samples));

    println!("warble-agent features: {}", file.display());
    println!(
        "front end {:?}: {n_mels} mel bands × {frames} frames per {window_s} s window, hop {:.3} s",
        cfg.preset,
        hop_samples as f64 / rate
    );
    println!("(no model yet: windows are summarised, not classified)");
    if !quiet {
        println!(
            "{:>6}  {:>17}  {:>16}  {:>8}  {:>7}",
            "window", "time", "strongest event", "rise", "active"
        );
    }
    let progress = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg}").context("progress bar template")?,
    );
    let print_window = |w: &WindowSummary| {
        if !quiet {
            progress.suspend(|| {
                println!(
                    "{:>6}  {:>6.1} – {:>6.1} s  {:>13.0} Hz  {:>5.0} dB  {:>6.0}%",
                    w.index,
                    w.start_s,
                    w.end_s,
                    w.event_band_hz,
                    w.event_db,
                    100.0 * w.active_fraction
                )
            });
        }
    };
    let report = features::run_file(&file, &cfg, spec, print_window, |seconds| {
        progress.set_message(format!("{seconds:.0} s of audio read"));
        progress.tick();
    })?;
    progress.finish_and_clear();
    println!(
        "{} windows from {:.1} s of audio ({}, {} channel(s)) in {:.3} s: {:.0}× real time",
        report.windows,
        report.audio_seconds,
        report.source.0,
        report.source.1,
        report.elapsed.as_secs_f64(),
        report.real_time_factor()
    );
    if let Some(rss) = peak_rss_bytes() {
        println!("peak RSS {:.1} MB", rss as f64 / 1e6);
    }
    Ok(())
}
