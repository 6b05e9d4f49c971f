//! `warble-train`: command-line entry point. Wiring only; the work lives in the library.
#![allow(clippy::print_stdout)] // a CLI prints its results

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use warble_core::{FrontEndConfig, Preset};
use warble_trainer::attack::{AttackConfig, Distance, Norm};
use warble_trainer::data::augment::AugmentConfig;
use warble_trainer::experiment::{self, ExperimentEvent, ExperimentPreset, Plan};
use warble_trainer::loss::{AslConfig, LossKind};
use warble_trainer::model::convnext::{ConvNextConfig, ConvNextSize};
use warble_trainer::robust::{self, AttackKind, AttackObjective, RobustnessConfig};
use warble_trainer::synth::{Benchmark, Split, SynthPreset, gallery};
use warble_trainer::train::{
    self, AdversarialConfig, AdversarialMode, ProtoTraining, TrainConfig, TrainEvent,
};
use warble_trainer::{compare, eval, shift};

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
enum DeviceArg {
    /// Pure-Rust CPU backend (always available).
    Flex,
    /// NVIDIA GPU (build with `--features cuda`).
    Cuda,
    /// Any GPU through wgpu (build with `--features wgpu`).
    Wgpu,
}

fn device(arg: DeviceArg) -> anyhow::Result<burn::prelude::Device> {
    use burn::prelude::Device;
    match arg {
        DeviceArg::Flex => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DeviceArg::Cuda => Ok(Device::cuda(0)),
        #[cfg(feature = "wgpu")]
        DeviceArg::Wgpu => Ok(Device::wgpu(Default::default())),
        #[allow(unreachable_patterns)]
        _ => anyhow::bail!(
            "this build has no such backend: rebuild with --features cuda or --features wgpu"
        ),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum FrontEndArg {
    Birdset,
    Audioprotopnet,
}

/// Adversarial training flags (defaults are ours: the paper does not publish its own).
#[derive(clap::Args)]
struct AdversarialArgs {
    /// Adversarial training: none, output (examples maximising the loss) or embedding
    /// (examples maximising the embedding's dissimilarity).
    #[arg(long, value_enum, default_value_t = AdversarialMode::None)]
    adversarial: AdversarialMode,
    /// Norm bounding the perturbation.
    #[arg(long, value_enum, default_value_t = Norm::Linf)]
    attack_norm: Norm,
    /// Radius ε in standardised feature units (for L2: of the whole example).
    #[arg(long, default_value_t = 0.1)]
    eps: f64,
    /// PGD steps (random start, step size 2.5·ε/steps; 1.25·ε for one step, "fast AT").
    #[arg(long, default_value_t = 3)]
    attack_steps: usize,
    /// Dissimilarity for embedding-space examples.
    #[arg(long, value_enum, default_value_t = Distance::Cosine)]
    distance: Distance,
    /// Weight of the adversarial loss in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    adv_ratio: f64,
    /// First epoch (0-based) with adversarial examples.
    #[arg(long, default_value_t = 1)]
    adv_start_epoch: usize,
}

impl AdversarialArgs {
    fn config(&self) -> AdversarialConfig {
        AdversarialConfig {
            mode: self.adversarial,
            attack: AttackConfig::pgd(self.attack_norm, self.eps, self.attack_steps),
            distance: self.distance,
            ratio: self.adv_ratio,
            start_epoch: self.adv_start_epoch,
        }
    }
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
    /// Train a ConvNeXt on a dataset folder (labels.csv, train.csv, valid.csv).
    Fit {
        /// A training config to run as it is (JSON, the format of a run's config.json:
        /// `fit --config runs/a/config.json --out runs/b` repeats run a's recipe). With it,
        /// only --data, --out, --resume, --device, --cache-audio and --skip-bad apply.
        #[arg(long, conflicts_with_all = [
            "model", "frontend", "mels", "window", "epochs", "batch_size", "lr", "loss",
            "no_augment", "seed", "protopnet", "backbone", "train_backbone", "prototypes",
            "adversarial", "attack_norm", "eps", "attack_steps", "distance", "adv_ratio",
            "adv_start_epoch",
        ])]
        config: Option<PathBuf>,
        /// Dataset folder (overrides the config's).
        #[arg(long, required_unless_present = "config")]
        data: Option<PathBuf>,
        /// Run directory to write (config, labels, checkpoints, metrics.jsonl).
        #[arg(long)]
        out: PathBuf,
        /// Model size.
        #[arg(long, default_value = "atto")]
        model: String,
        /// Front-end preset.
        #[arg(long, value_enum, default_value_t = FrontEndArg::Birdset)]
        frontend: FrontEndArg,
        /// Use this many mel bands instead of the preset's (a custom, lighter front end).
        #[arg(long)]
        mels: Option<usize>,
        /// Window length in seconds (default: the benchmark's segment length).
        #[arg(long)]
        window: Option<f64>,
        /// Epochs.
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 5e-4)]
        lr: f64,
        /// Loss: asl or bce.
        #[arg(long, default_value = "asl")]
        loss: String,
        /// Turn all augmentations off.
        #[arg(long)]
        no_augment: bool,
        /// Cache decoded audio in the run directory.
        #[arg(long)]
        cache_audio: bool,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Continue the run in --out from its last finished epoch.
        #[arg(long)]
        resume: bool,
        /// Compute device.
        #[arg(long, value_enum, default_value_t = DeviceArg::Flex)]
        device: DeviceArg,
        /// Leave out bad manifest rows (each reported) instead of stopping at the first.
        #[arg(long)]
        skip_bad: bool,
        #[command(flatten)]
        adversarial: AdversarialArgs,
        /// Train an AudioProtoPNet (prototypes lr 0.05, last layer lr 5e-4, orthogonality
        /// weight 1) instead of a ConvNeXt.
        #[arg(long)]
        protopnet: bool,
        /// AudioProtoPNet: the pretrained ConvNeXt run whose best weights are the backbone;
        /// the model size, front end and window are taken from it.
        #[arg(long, requires = "protopnet")]
        backbone: Option<PathBuf>,
        /// AudioProtoPNet: train the backbone too (at --lr) instead of freezing it.
        #[arg(long, requires = "protopnet")]
        train_backbone: bool,
        /// AudioProtoPNet: prototypes per class.
        #[arg(long, default_value_t = 5, requires = "protopnet")]
        prototypes: usize,
    },
    /// Evaluate a run's best weights on every set of a dataset folder (writes
    /// metrics.json and, per set, its per-segment scores in scores/<set>.csv).
    Eval {
        /// Run directory (from `fit`).
        #[arg(long)]
        run: PathBuf,
        /// Dataset folder.
        #[arg(long)]
        data: PathBuf,
        /// Which weights: `best` (lowest validation loss) or `last` (the last epoch; writes
        /// metrics-last.json and scores-last/).
        #[arg(long, value_enum, default_value_t = eval::Weights::Best)]
        weights: eval::Weights,
    },
    /// Compare two recipes on one test set: runs paired by seed (the i-th --treatment
    /// with the i-th --baseline, each evaluated with `eval`), the relative change of the
    /// metric per seed, its mean and a 95 % interval from a paired bootstrap over seeds
    /// and segments.
    Compare {
        /// Baseline runs, comma-separated, one per seed.
        #[arg(long, value_delimiter = ',', required = true)]
        baseline: Vec<PathBuf>,
        /// Treatment runs, comma-separated, in the same seed order.
        #[arg(long, value_delimiter = ',', required = true)]
        treatment: Vec<PathBuf>,
        /// Test set (e.g. test-soundscape-a).
        #[arg(long)]
        set: String,
        /// Which weights' scores: those `eval` wrote for `best` or for `last`.
        #[arg(long, value_enum, default_value_t = eval::Weights::Best)]
        weights: eval::Weights,
        /// Metric compared.
        #[arg(long, value_enum, default_value_t = compare::Metric::Cmap)]
        metric: compare::Metric,
        /// Bootstrap resamples.
        #[arg(long, default_value_t = 2000)]
        resamples: usize,
        /// Seed of the resampling.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the comparison as JSON here too.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Evaluate a run's robustness: metrics under attacks over a grid of ε (writes
    /// robust.json, robust.csv and a cmAP-versus-ε chart per test set).
    Robust {
        /// Run directory (from `fit`).
        #[arg(long)]
        run: PathBuf,
        /// Dataset folder.
        #[arg(long)]
        data: PathBuf,
        /// Attacks, comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = AttackKind::ALL)]
        attacks: Vec<AttackKind>,
        /// Radii ε per feature (standardised units), comma-separated; 0 is the clean model.
        #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.05, 0.1, 0.2, 0.5])]
        eps: Vec<f64>,
        /// PGD steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// What FGSM and PGD climb: `bce` (every class pushes: the stronger evaluation) or
        /// `training` (the run's loss; ASL gives easy negatives no gradient).
        #[arg(long, value_enum, default_value_t = AttackObjective::Bce)]
        objective: AttackObjective,
        /// Test sets to attack, comma-separated (default: every test set present).
        #[arg(long, value_delimiter = ',')]
        sets: Vec<String>,
        /// At most this many examples per set (attacks cost steps + 1 passes each).
        #[arg(long)]
        limit: Option<usize>,
        /// Batch size.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Output folder (default: RUN/robust).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The paper's experiment: {ConvNeXt, AudioProtoPNet} × {standard, AT-output,
    /// AT-embedding} × seeds on the synthetic benchmark, with report.md (resumable).
    Experiment {
        /// Sizes: tiny (seconds), quick (2-core CPU), full (GPU host).
        #[arg(long, value_enum, default_value_t = ExperimentPreset::Quick)]
        preset: ExperimentPreset,
        /// Training seeds, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1u64, 2, 3])]
        seeds: Vec<u64>,
        /// Output folder (run it again to resume, or with more seeds to add them).
        #[arg(long)]
        out: PathBuf,
        /// Training device (evaluation and attacks run on the CPU).
        #[arg(long, value_enum, default_value_t = DeviceArg::Flex)]
        device: DeviceArg,
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

fn segment_seconds(data: &std::path::Path) -> anyhow::Result<f64> {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("synth.json"))
            .context("reading synth.json (or pass --window)")?,
    )?;
    meta["spec"]["segment_seconds"]
        .as_f64()
        .context("synth.json has no spec.segment_seconds")
}

fn frontend_config(arg: FrontEndArg, mels: Option<usize>) -> anyhow::Result<FrontEndConfig> {
    let mut cfg = FrontEndConfig::from_preset(match arg {
        FrontEndArg::Birdset => Preset::BirdSet,
        FrontEndArg::Audioprotopnet => Preset::AudioProtoPNet,
    })?;
    if let Some(n) = mels {
        cfg.n_mels = n;
        cfg.preset = Preset::Custom;
        cfg.validate()?;
    }
    Ok(cfg)
}

fn print_sets(sets: &[shift::SetResult]) {
    println!(
        "{:<26} {:>8} {:>7} {:>7} {:>7}",
        "set", "examples", "cmAP", "AUROC", "top-1"
    );
    for s in sets {
        println!(
            "{:<26} {:>8} {:>7.3} {:>7.3} {:>7.3}",
            s.set, s.examples, s.metrics.cmap, s.metrics.auroc, s.metrics.top1
        );
    }
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
        Command::Fit {
            config,
            data,
            out,
            model,
            frontend,
            mels,
            window,
            epochs,
            batch_size,
            lr,
            loss,
            no_augment,
            cache_audio,
            seed,
            resume,
            device: device_arg,
            skip_bad,
            adversarial,
            protopnet,
            backbone,
            train_backbone,
            prototypes,
        } => {
            let device = device(device_arg)?;
            let cfg = if let Some(path) = &config {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let mut cfg: TrainConfig = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a training config", path.display()))?;
                if let Some(d) = data {
                    cfg.data = d;
                }
                cfg.cache_audio |= cache_audio;
                cfg.skip_bad |= skip_bad;
                cfg
            } else {
                let data = data.context("--data is required without --config")?;
                let labels = warble_core::labels::LabelTable::read(data.join("labels.csv"))?;
                let size = ConvNextSize::from_name(&model).with_context(|| {
                    format!("unknown model size `{model}` (test, micro, atto, femto, pico, nano, tiny, base)")
                })?;
                let loss = match loss.as_str() {
                    "asl" => LossKind::Asl(AslConfig::default()),
                    "bce" => LossKind::Bce,
                    other => anyhow::bail!("unknown loss `{other}` (asl, bce)"),
                };
                let cfg = TrainConfig {
                    window_s: match window {
                        Some(w) => w,
                        None => segment_seconds(&data)?,
                    },
                    data,
                    frontend: frontend_config(frontend, mels)?,
                    model: ConvNextConfig::preset(size, labels.len()),
                    loss,
                    epochs,
                    batch_size,
                    lr,
                    weight_decay: 1e-4,
                    adam_eps: 1e-8,
                    warmup: 0.05,
                    grad_clip: Some(0.5),
                    augment: if no_augment {
                        AugmentConfig::none()
                    } else {
                        AugmentConfig::default()
                    },
                    seed,
                    cache_audio,
                    skip_bad,
                    adversarial: adversarial.config(),
                    protopnet: protopnet.then(|| ProtoTraining {
                        backbone_run: backbone.clone(),
                        train_backbone,
                        prototypes_per_class: prototypes,
                        ..ProtoTraining::default()
                    }),
                };
                // An AudioProtoPNet sees what its backbone saw.
                match &backbone {
                    Some(run) => {
                        let (b, _) = train::load_model(run, false, &burn::prelude::Device::flex())
                            .with_context(|| {
                                format!("reading the backbone run {}", run.display())
                            })?;
                        TrainConfig {
                            model: b.model,
                            frontend: b.frontend,
                            window_s: b.window_s,
                            ..cfg
                        }
                    }
                    None => cfg,
                }
            };
            let progress = bar(0, "steps")?;
            let records = train::fit(&cfg, &out, resume, &device, &mut |event| {
                match event {
                TrainEvent::Step { epoch, step, steps, loss } => {
                    progress.set_length(steps as u64);
                    progress.set_position(step as u64 + 1);
                    progress.set_message(format!("epoch {} loss {loss:.4}", epoch + 1));
                }
                TrainEvent::Skipped(problems) => progress.suspend(|| {
                    eprintln!("skipped {} bad manifest rows:", problems.len());
                    for p in &problems {
                        eprintln!("  {p}");
                    }
                }),
                TrainEvent::Epoch(r) => progress.suspend(|| {
                    println!(
                        "epoch {:>3}: train loss {:.4}  valid loss {:.4}  valid cmAP {:.3}  AUROC {:.3}  top-1 {:.3}  {:.0} s{}",
                        r.epoch + 1,
                        r.train_loss,
                        r.valid_loss,
                        r.valid.cmap,
                        r.valid.auroc,
                        r.valid.top1,
                        r.seconds,
                        if r.best { "  (best)" } else { "" }
                    )
                }),
            }
            })?;
            progress.finish_and_clear();
            println!(
                "{} epochs trained; run directory {}",
                records.len(),
                out.display()
            );
            Ok(())
        }
        Command::Eval { run, data, weights } => {
            let progress = ProgressBar::new_spinner();
            let report = eval::evaluate_run(&run, &data, weights, &|| progress.inc(1))?;
            progress.finish_and_clear();
            print_sets(&report.sets);
            println!(
                "mean cmAP over soundscape test sets: {:.3}",
                report.soundscape_mean_cmap
            );
            let path = run.join(format!("metrics{}.json", weights.suffix()));
            std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("written {}", path.display());
            Ok(())
        }
        Command::Compare {
            baseline,
            treatment,
            set,
            weights,
            metric,
            resamples,
            seed,
            out,
        } => {
            let read = |runs: &[PathBuf]| -> anyhow::Result<Vec<compare::SegmentScores>> {
                runs.iter()
                    .map(|run| {
                        let path = run
                            .join(format!("scores{}", weights.suffix()))
                            .join(format!("{set}.csv"));
                        anyhow::ensure!(
                            path.is_file(),
                            "{}: no scores for `{set}` (run `warble-train eval --run {} --weights {}` first)",
                            path.display(),
                            run.display(),
                            if weights == eval::Weights::Last { "last" } else { "best" }
                        );
                        compare::SegmentScores::read(&path)
                    })
                    .collect()
            };
            let c = compare::paired_bootstrap(
                &read(&baseline)?,
                &read(&treatment)?,
                metric,
                resamples,
                seed,
            )?;
            println!("{set}, {metric:?}: treatment against baseline, paired by seed");
            for (i, (a, b, rel)) in c.per_seed.iter().enumerate() {
                println!(
                    "  seed pair {}: {a:.4} → {b:.4}  ({:+.1} %)",
                    i + 1,
                    100.0 * rel
                );
            }
            println!(
                "mean relative change {:+.2} %, 95 % interval [{:+.2} %, {:+.2} %] ({} paired bootstrap resamples); the mean's sign in {} of {} seeds",
                100.0 * c.mean,
                100.0 * c.ci95.0,
                100.0 * c.ci95.1,
                c.resamples,
                c.same_sign,
                c.per_seed.len()
            );
            if let Some(path) = out {
                std::fs::write(&path, serde_json::to_string_pretty(&c)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("written {}", path.display());
            }
            Ok(())
        }
        Command::Robust {
            run,
            data,
            attacks,
            eps,
            steps,
            objective,
            sets,
            limit,
            batch_size,
            out,
        } => {
            if let Some(bad) = eps.iter().find(|e| !(e.is_finite() && **e >= 0.0)) {
                anyhow::bail!("--eps {bad}: radii must be finite and non-negative");
            }
            let cfg = RobustnessConfig {
                attacks,
                eps,
                steps,
                batch_size,
                objective,
            };
            let progress = bar(0, "batches")?;
            let points = eval::robustness_run(
                &run,
                &data,
                "",
                &cfg,
                (&sets, limit),
                &|set, n| {
                    progress.set_length(n);
                    progress.set_position(0);
                    progress.set_message(set.to_owned());
                },
                &|| progress.inc(1),
            )?;
            progress.finish_and_clear();
            if points.is_empty() {
                anyhow::bail!("no test set of {} matched", data.display());
            }
            println!(
                "{:<26} {:<10} {:>6} {:>7} {:>7} {:>7}",
                "set", "attack", "eps", "cmAP", "AUROC", "top-1"
            );
            for p in &points {
                println!(
                    "{:<26} {:<10} {:>6} {:>7.3} {:>7.3} {:>7.3}",
                    p.set,
                    p.attack.name(),
                    p.eps,
                    p.metrics.cmap,
                    p.metrics.auroc,
                    p.metrics.top1
                );
            }
            let out = out.unwrap_or_else(|| run.join("robust"));
            robust::write_report(&out, &points)?;
            println!(
                "written {}/robust.{{json,csv}} and robust-<set>.svg",
                out.display()
            );
            Ok(())
        }
        Command::Experiment {
            preset,
            seeds,
            out,
            device: device_arg,
        } => {
            let train_device = device(device_arg)?;
            if seeds.is_empty() {
                anyhow::bail!("--seeds needs at least one seed");
            }
            let plan = Plan::new(preset, seeds);
            let cells = bar(0, "cells")?;
            let work = bar(0, "steps")?;
            let started = std::time::Instant::now();
            experiment::run(&plan, &out, &train_device, &|event| match event {
                ExperimentEvent::Cell {
                    index,
                    total,
                    name,
                    cached,
                } => {
                    cells.set_length(total as u64);
                    cells.set_position(index as u64 + 1);
                    cells.set_message(if cached {
                        format!("{name} (done earlier)")
                    } else {
                        name
                    });
                }
                ExperimentEvent::Phase(what, n) => {
                    work.set_length(n);
                    work.set_position(0);
                    work.set_message(what);
                }
                ExperimentEvent::Tick => work.inc(1),
            })?;
            work.finish_and_clear();
            cells.finish_and_clear();
            println!(
                "experiment finished in {:.0} s; report: {}",
                started.elapsed().as_secs_f64(),
                out.join("report.md").display()
            );
            Ok(())
        }
        Command::Baseline {
            data,
            frontend,
            window,
            seed,
            json,
        } => {
            let cfg = frontend_config(frontend, None)?;
            let window = match window {
                Some(w) => w,
                None => segment_seconds(&data)?,
            };
            let progress = ProgressBar::new_spinner();
            let report = shift::study(&data, &cfg, window, seed, &|| progress.inc(1))?;
            progress.finish_and_clear();
            println!(
                "baseline: logistic regression on pooled log-mel, {} training windows",
                report.train_examples
            );
            print_sets(&report.sets);
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
    }
}
