//! `warble-train`: command-line entry point. Wiring only; the work lives in the library.
#![allow(clippy::print_stdout)] // a CLI prints its results

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use warble_core::{FrontEndConfig, Preset};
use warble_trainer::shift;
use warble_trainer::synth::{Benchmark, Split, SynthPreset, gallery};

#[derive(Parser)]
#[command(name = "warble-train", version, about = "Warble trainer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum PresetArg {
    Tiny,
    Quick,
    Full,
}

#[derive(Clone, Copy, ValueEnum)]
enum FrontEndArg {
    Birdset,
    Audioprotopnet,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the synthetic distribution-shift benchmark (audio, manifests, labels).
    Synth {
        /// Size preset.
        #[arg(long, value_enum, default_value_t = PresetArg::Tiny)]
        preset: PresetArg,
        /// Seed; the same seed gives byte-identical output.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write spectrogram pictures of a benchmark's species and soundscape variants.
    Gallery {
        /// Size preset.
        #[arg(long, value_enum, default_value_t = PresetArg::Tiny)]
        preset: PresetArg,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder for the PNG files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure a benchmark's shift with a pooled-log-mel logistic-regression baseline.
    Baseline {
        /// Benchmark folder (from `synth`).
        #[arg(long)]
        data: PathBuf,
        /// Front-end preset.
        #[arg(long, value_enum, default_value_t = FrontEndArg::Birdset)]
        frontend: FrontEndArg,
        /// Window length in seconds (default: the benchmark's segment length).
        #[arg(long)]
        window: Option<f64>,
        /// Seed for the training crops.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the report as JSON here too.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("warble-train: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn bar(len: u64, what: &str) -> anyhow::Result<ProgressBar> {
    let style = ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {what} ({{elapsed}}, eta {{eta}})"
    ))
    .context("progress bar template")?;
    Ok(ProgressBar::new(len).with_style(style))
}

fn synth_preset(preset: PresetArg) -> SynthPreset {
    match preset {
        PresetArg::Tiny => SynthPreset::Tiny,
        PresetArg::Quick => SynthPreset::Quick,
        PresetArg::Full => SynthPreset::Full,
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Gallery { preset, seed, out } => {
            let bench = Benchmark::new(synth_preset(preset), seed);
            for picture in gallery::write_gallery(&bench, &out)? {
                println!("{}  {}", picture.path.display(), picture.caption);
            }
            Ok(())
        }
        Command::Synth { preset, seed, out } => {
            let preset = synth_preset(preset);
            let bench = Benchmark::new(preset, seed);
            let total: usize = Split::all().iter().map(|&s| bench.len(s)).sum();
            let progress = bar(total as u64, "clips")?;
            let report = bench
                .write(&out, &|| progress.inc(1))
                .with_context(|| format!("writing the benchmark to {}", out.display()))?;
            progress.finish_and_clear();
            println!(
                "{:?} benchmark, seed {seed}: {} species, {} files, {:.0} s of audio in {}",
                preset,
                bench.species.len(),
                report.files,
                report.seconds,
                out.display()
            );
            for (path, rows) in report.manifests {
                println!("  {:<40} {rows:>6} rows", path.display());
            }
            Ok(())
        }
        Command::Baseline {
            data,
            frontend,
            window,
            seed,
            json,
        } => {
            let cfg = FrontEndConfig::from_preset(match frontend {
                FrontEndArg::Birdset => Preset::BirdSet,
                FrontEndArg::Audioprotopnet => Preset::AudioProtoPNet,
            })?;
            let window = match window {
                Some(w) => w,
                None => {
                    let meta: serde_json::Value = serde_json::from_str(
                        &std::fs::read_to_string(data.join("synth.json"))
                            .context("reading synth.json (or pass --window)")?,
                    )?;
                    meta["spec"]["segment_seconds"]
                        .as_f64()
                        .context("synth.json has no spec.segment_seconds")?
                }
            };
            let progress = ProgressBar::new_spinner();
            let report = shift::study(&data, &cfg, window, seed, &|| progress.inc(1))?;
            progress.finish_and_clear();
            println!(
                "baseline: logistic regression on pooled log-mel, {} training windows",
                report.train_examples
            );
            println!(
                "{:<26} {:>8} {:>7} {:>7} {:>7}",
                "set", "examples", "cmAP", "AUROC", "top-1"
            );
            for s in &report.sets {
                println!(
                    "{:<26} {:>8} {:>7.3} {:>7.3} {:>7.3}",
                    s.set, s.examples, s.metrics.cmap, s.metrics.auroc, s.metrics.top1
                );
            }
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
    }
}
