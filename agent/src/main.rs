//! `warble-agent`: command-line entry point. Wiring only; the work lives in the library.
#![allow(clippy::print_stdout)] // a CLI prints its results

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use warble_agent::features::{self, WindowSummary};
use warble_agent::output::Format;
use warble_agent::resources::peak_rss_bytes;
use warble_core::frontend::WindowSpec;
use warble_infer::{EngineChoice, EngineConfig};

mod analyze_cmd;
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
    Analyze {
        /// Audio files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Model bundle (.warble).
        #[arg(long)]
        bundle: PathBuf,
        /// Trusted public key(s) that may sign the bundle.
        #[arg(long = "trusted", required = true)]
        trusted: Vec<PathBuf>,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
        format: FormatArg,
        /// Seconds between window starts (default: the bundle's window, no overlap).
        #[arg(long)]
        hop: Option<f64>,
        /// Replace every class's threshold (global sensitivity).
        #[arg(long)]
        min_confidence: Option<f32>,
        /// One detection per window instead of merging consecutive windows of a species.
        #[arg(long)]
        no_merge: bool,
        /// Inference engine.
        #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
        engine: EngineArg,
        /// ONNX Runtime library (default: ORT_DYLIB_PATH or the installed one).
        #[arg(long)]
        onnxruntime: Option<PathBuf>,
        /// Inference threads (0: the engine decides).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Windows per inference call.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Station id used in event ids.
        #[arg(long, default_value = "local")]
        station: String,
        /// Wall-clock time of each file's first sample (RFC 3339); default: the file's
        /// modification time.
        #[arg(long)]
        recorded_at: Option<String>,
        /// Ground truth CSV (`start_s,end_s,code`) to score the detections against
        /// (prints precision and recall).
        #[arg(long)]
        truth: Option<PathBuf>,
    },
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
enum FormatArg {
    Jsonl,
    Csv,
    Raven,
    Birdnet,
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Auto,
    Ort,
    Tract,
}

#[derive(Clone, Copy, ValueEnum)]
enum PresetArg {
    Birdset,
    Audioprotopnet,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("warble-agent: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Analyze {
            paths,
            bundle,
            trusted,
            out,
            format,
            hop,
            min_confidence,
            no_merge,
            engine,
            onnxruntime,
            threads,
            batch,
            station,
            recorded_at,
            truth,
        } => {
            let args = analyze_cmd::Args {
                paths,
                bundle,
                trusted,
                out,
                format: match format {
                    FormatArg::Jsonl => Format::Jsonl,
                    FormatArg::Csv => Format::Csv,
                    FormatArg::Raven => Format::Raven,
                    FormatArg::Birdnet => Format::Birdnet,
                },
                hop,
                min_confidence,
                merge: !no_merge,
                engine: EngineConfig {
                    choice: match engine {
                        EngineArg::Auto => EngineChoice::Auto,
                        EngineArg::Ort => EngineChoice::Ort,
                        EngineArg::Tract => EngineChoice::Tract,
                    },
                    ort_library: onnxruntime,
                    threads,
                },
                batch,
                station,
                recorded_at,
                truth,
            };
            analyze_cmd::run(args)
        }
        Command::Features {
            file,
            preset,
            window,
            hop,
            quiet,
        } => features_command(file, preset, window, hop, quiet),
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
