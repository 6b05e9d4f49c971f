//! The paper's experiment in one command: {ConvNeXt, AudioProtoPNet} × {standard,
//! output-space AT, embedding-space AT} × seeds on the synthetic shift benchmark, each
//! cell trained, evaluated clean on every shifted test set, attacked over an ε grid and,
//! for AudioProtoPNet, probed for prototype stability; then a report shaped like the
//! paper's tables.
//!
//! Layout of the output folder (every step resumes: a finished cell has `result.json`,
//! an interrupted training continues from its last epoch):
//!
//! ```text
//! plan.json                  the plan (sizes, recipes, attacks), for the record
//! data/                      the benchmark (written once)
//! runs/<arch>-<mode>-s<seed>/  each cell's run directory, with result.json
//! report.md                  tables: clean per test set, relative change, robustness,
//!                            prototype stability
//! robust/                    robust.csv/json and cmAP-vs-ε charts of every cell
//! prototypes-<mode>.png      one clip with its top prototypes, clean vs attacked
//! ```
//!
//! An AudioProtoPNet cell uses the ConvNeXt of the same mode and seed as its frozen
//! backbone and is itself trained with that mode's adversarial examples, so "AT" means
//! the whole model saw them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use warble_core::{FrontEndConfig, Preset};

use crate::attack::{AttackConfig, Norm};
use crate::data::augment::AugmentConfig;
use crate::eval::{EvalReport, Weights, evaluate_run, robustness_run, test_sets};
use crate::loss::{AslConfig, LossKind};
use crate::model::Classifier;
use crate::model::convnext::{ConvNextConfig, ConvNextSize};
use crate::robust::{AttackKind, AttackObjective, RobustPoint, RobustnessConfig, write_report};
use crate::stability::{Stability, picture, stability};
use crate::synth::{Benchmark, Split, SynthPreset};
use crate::train::{
    AdversarialConfig, AdversarialMode, ProtoTraining, TrainConfig, fit, load_model,
};

/// Sizes of the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExperimentPreset {
    /// For the test suite: tiny benchmark, tiny models, seconds per cell.
    Tiny,
    /// For a 2-core CPU: minutes per cell.
    Quick,
    /// The paper's sizes, for a GPU host.
    Full,
}

/// Everything the experiment does, written to `plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Preset name.
    pub preset: ExperimentPreset,
    /// Benchmark size.
    pub benchmark: String,
    /// Benchmark seed (the same data for every cell).
    pub benchmark_seed: u64,
    /// Training seeds.
    pub seeds: Vec<u64>,
    /// The ConvNeXt recipe (data path and seed filled per cell).
    pub convnext: TrainConfig,
    /// AudioProtoPNet epochs.
    pub protopnet_epochs: usize,
    /// Adversarial training (its mode set per cell).
    pub adversarial: AdversarialConfig,
    /// Robustness evaluation.
    pub robustness: RobustnessConfig,
    /// Examples per test set for robustness and stability.
    pub attack_limit: usize,
    /// Radii of the targeted prototype attacks.
    pub stability_eps: Vec<f64>,
    /// PGD steps of the targeted prototype attacks.
    pub stability_steps: usize,
}

impl Plan {
    /// The preset's plan.
    pub fn new(preset: ExperimentPreset, seeds: Vec<u64>) -> Self {
        let z = match preset {
            ExperimentPreset::Tiny => Sizes {
                bench: SynthPreset::Tiny,
                model: ConvNextSize::Test,
                mels: Some(64),
                epochs: 3,
                batch: 16,
                lr: 3e-3,
                proto_epochs: 2,
                at_steps: 2,
                robust_steps: 2,
                attack_limit: 24,
                stability_steps: 3,
            },
            // Sized for a 2-core CPU: 32 mel bands (an epoch of the micro ConvNeXt takes
            // 34 s instead of 60 s with 64), one-step adversarial training (FGSM with a
            // random start, step 1.25·ε) and attacks on 48 clips per set keep a seed
            // near 30 min (docs/BENCHMARKS.md).
            ExperimentPreset::Quick => Sizes {
                bench: SynthPreset::Quick,
                model: ConvNextSize::Micro,
                mels: Some(32),
                epochs: 5,
                batch: 16,
                lr: 2e-3,
                proto_epochs: 3,
                at_steps: 1,
                // A strong evaluation attack: 10 steps climbing BCE.
                robust_steps: 10,
                attack_limit: 48,
                stability_steps: 5,
            },
            // The paper's sizes (BirdSet front end, ConvNeXt-Base, 10 epochs, batch 64).
            ExperimentPreset::Full => Sizes {
                bench: SynthPreset::Full,
                model: ConvNextSize::Base,
                mels: None,
                epochs: 10,
                batch: 64,
                lr: 5e-4,
                proto_epochs: 10,
                at_steps: 10,
                robust_steps: 10,
                attack_limit: 1000,
                stability_steps: 10,
            },
        };
        let spec = z.bench.spec();
        let frontend = match z.mels {
            Some(n_mels) => FrontEndConfig {
                n_mels,
                preset: Preset::Custom,
                ..FrontEndConfig::birdset()
            },
            None => FrontEndConfig::birdset(),
        };
        let convnext = TrainConfig {
            data: PathBuf::new(),
            frontend,
            window_s: f64::from(spec.segment_seconds),
            model: ConvNextConfig::preset(z.model, spec.n_species),
            loss: LossKind::Asl(AslConfig::default()),
            epochs: z.epochs,
            batch_size: z.batch,
            lr: z.lr,
            weight_decay: 1e-4,
            adam_eps: 1e-8,
            warmup: 0.05,
            grad_clip: Some(0.5),
            augment: AugmentConfig::default(),
            seed: 0,
            cache_audio: true,
            skip_bad: false,
            adversarial: AdversarialConfig::default(),
            protopnet: None,
        };
        Self {
            preset,
            benchmark: format!("{:?}", z.bench).to_lowercase(),
            benchmark_seed: 1,
            seeds,
            convnext,
            protopnet_epochs: z.proto_epochs,
            adversarial: AdversarialConfig {
                mode: AdversarialMode::None,
                attack: AttackConfig::pgd(Norm::Linf, 0.1, z.at_steps),
                ratio: 0.5,
                start_epoch: 1,
                ..AdversarialConfig::default()
            },
            robustness: RobustnessConfig {
                attacks: AttackKind::ALL.to_vec(),
                eps: vec![0.0, 0.05, 0.1, 0.2],
                steps: z.robust_steps,
                batch_size: 32,
                objective: AttackObjective::Bce,
            },
            attack_limit: z.attack_limit,
            stability_eps: vec![0.1, 0.3],
            stability_steps: z.stability_steps,
        }
    }

    fn synth(&self) -> SynthPreset {
        SynthPreset::from_name(&self.benchmark).unwrap_or(SynthPreset::Tiny)
    }
}

/// The sizes a preset chooses.
struct Sizes {
    bench: SynthPreset,
    model: ConvNextSize,
    /// Mel bands of a custom front end; `None` for the BirdSet preset.
    mels: Option<usize>,
    epochs: usize,
    batch: usize,
    lr: f64,
    proto_epochs: usize,
    at_steps: usize,
    robust_steps: usize,
    attack_limit: usize,
    stability_steps: usize,
}

/// Model family of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// ConvNeXt.
    ConvNext,
    /// AudioProtoPNet.
    AudioProtoPNet,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::ConvNext => "convnext",
            Arch::AudioProtoPNet => "audioprotopnet",
        }
    }
}

fn mode_name(mode: AdversarialMode) -> &'static str {
    match mode {
        AdversarialMode::None => "standard",
        AdversarialMode::Output => "at-output",
        AdversarialMode::Embedding => "at-embedding",
    }
}

const MODES: [AdversarialMode; 3] = [
    AdversarialMode::None,
    AdversarialMode::Output,
    AdversarialMode::Embedding,
];

/// One cell's results (`result.json` in its run directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    /// Model family.
    pub arch: Arch,
    /// Training mode.
    pub mode: AdversarialMode,
    /// Training seed.
    pub seed: u64,
    /// Clean metrics per test set.
    pub clean: Vec<crate::shift::SetResult>,
    /// Mean cmAP over the soundscape test sets.
    pub soundscape_mean_cmap: f64,
    /// Robustness points (soundscape test sets, `attack_limit` examples each).
    pub robust: Vec<RobustPoint>,
    /// Prototype stability (AudioProtoPNet only).
    pub stability: Vec<Stability>,
    /// Wall time to train, s.
    pub train_seconds: f64,
    /// Wall time to evaluate, s.
    pub eval_seconds: f64,
    /// The epoch (0-based) whose weights were evaluated: the lowest validation loss. An
    /// adversarially trained cell selected before `adversarial.start_epoch` evaluates a
    /// model that never saw adversarial examples. (`None` in results written before it
    /// was recorded.)
    #[serde(default)]
    pub selected_epoch: Option<usize>,
    /// Mean soundscape cmAP of the last epoch's weights (`None` in results written
    /// before it was recorded).
    #[serde(default)]
    pub last_soundscape_mean_cmap: Option<f64>,
}

/// What the runner reports while it works.
#[derive(Debug, Clone)]
pub enum ExperimentEvent {
    /// A cell starts (index, total, name) or is already done (`cached`).
    Cell {
        /// 0-based index.
        index: usize,
        /// Number of cells.
        total: usize,
        /// Cell name.
        name: String,
        /// Finished in an earlier invocation.
        cached: bool,
    },
    /// A phase of the current cell starts, with its amount of work.
    Phase(String, u64),
    /// One unit of the current phase is done.
    Tick,
}

fn cell_name(arch: Arch, mode: AdversarialMode, seed: u64) -> String {
    format!("{}-{}-s{seed}", arch.name(), mode_name(mode))
}

/// Runs (or resumes) the experiment into `out` and writes its report. Training runs on
/// `device` (e.g. a GPU with the `cuda` feature); evaluation and attacks on the CPU.
///
/// # Errors
/// Unwritable output, training or evaluation failures.
pub fn run(
    plan: &Plan,
    out: &Path,
    device: &burn::prelude::Device,
    on_event: &(dyn Fn(ExperimentEvent) + Sync),
) -> anyhow::Result<Vec<CellResult>> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let plan_path = out.join("plan.json");
    // Everything but the seeds must match a folder's plan: seeds can be added later (or a
    // report written for some of them), as every cell is its own run.
    let recipe = |p: &Plan| {
        serde_json::to_string_pretty(&Plan {
            seeds: Vec::new(),
            ..p.clone()
        })
    };
    if plan_path.is_file() {
        let old: Plan = serde_json::from_str(&fs::read_to_string(&plan_path)?)
            .with_context(|| format!("reading {}", plan_path.display()))?;
        // Compared as text: the serialisation is deterministic, and floats read back
        // could differ in the last bit only if the text did.
        if recipe(&old)? != recipe(plan)? {
            anyhow::bail!(
                "{} holds another plan; use a new folder (or delete it) to change the plan",
                plan_path.display()
            );
        }
    }
    fs::write(&plan_path, serde_json::to_string_pretty(plan)?)?;
    let data = out.join("data");
    if !data.join("synth.json").is_file() {
        on_event(ExperimentEvent::Phase("benchmark".into(), 0));
        Benchmark::new(plan.synth(), plan.benchmark_seed)
            .write(&data, &|| on_event(ExperimentEvent::Tick))?;
    }
    let cells: Vec<(Arch, AdversarialMode, u64)> = plan
        .seeds
        .iter()
        .flat_map(|&s| {
            [Arch::ConvNext, Arch::AudioProtoPNet]
                .into_iter()
                .flat_map(move |a| MODES.map(|m| (a, m, s)))
        })
        .collect();
    let mut results = Vec::new();
    for (index, &(arch, mode, seed)) in cells.iter().enumerate() {
        let name = cell_name(arch, mode, seed);
        let dir = out.join("runs").join(&name);
        let result_path = dir.join("result.json");
        let cached = result_path.is_file();
        on_event(ExperimentEvent::Cell {
            index,
            total: cells.len(),
            name: name.clone(),
            cached,
        });
        let result = if cached {
            serde_json::from_str(&fs::read_to_string(&result_path)?)
                .with_context(|| format!("reading {}", result_path.display()))?
        } else {
            let r = run_cell(plan, out, &data, (arch, mode, seed), device, on_event)?;
            fs::write(&result_path, serde_json::to_string_pretty(&r)?)?;
            r
        };
        results.push(result);
    }
    write_experiment_report(plan, out, &results)?;
    Ok(results)
}

fn run_cell(
    plan: &Plan,
    out: &Path,
    data: &Path,
    (arch, mode, seed): (Arch, AdversarialMode, u64),
    train_device: &burn::prelude::Device,
    on_event: &(dyn Fn(ExperimentEvent) + Sync),
) -> anyhow::Result<CellResult> {
    let dir = out.join("runs").join(cell_name(arch, mode, seed));
    let mut cfg = TrainConfig {
        data: data.to_owned(),
        seed,
        adversarial: AdversarialConfig {
            mode,
            ..plan.adversarial
        },
        ..plan.convnext.clone()
    };
    if arch == Arch::AudioProtoPNet {
        cfg.epochs = plan.protopnet_epochs;
        cfg.protopnet = Some(ProtoTraining {
            backbone_run: Some(out.join("runs").join(cell_name(Arch::ConvNext, mode, seed))),
            ..ProtoTraining::default()
        });
    }
    let started = Instant::now();
    let resume = dir.join("state.json").is_file();
    on_event(ExperimentEvent::Phase(
        format!("training ({} epochs)", cfg.epochs),
        0,
    ));
    let device = burn::prelude::Device::flex();
    let mut total_set = false;
    fit(&cfg, &dir, resume, train_device, &mut |e| {
        if let crate::train::TrainEvent::Step { steps, .. } = e {
            if !total_set {
                on_event(ExperimentEvent::Phase(
                    format!("training ({} epochs)", cfg.epochs),
                    (steps * cfg.epochs) as u64,
                ));
                total_set = true;
            }
            on_event(ExperimentEvent::Tick);
        }
    })?;
    let train_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    on_event(ExperimentEvent::Phase("clean evaluation".into(), 0));
    let EvalReport {
        sets,
        soundscape_mean_cmap,
    } = evaluate_run(&dir, data, Weights::Best, &|| {
        on_event(ExperimentEvent::Tick)
    })?;
    let last_soundscape_mean_cmap = Some(
        evaluate_run(&dir, data, Weights::Last, &|| {
            on_event(ExperimentEvent::Tick)
        })?
        .soundscape_mean_cmap,
    );
    let soundscapes: Vec<String> = Split::all()
        .into_iter()
        .map(|s| s.name().to_owned())
        .filter(|s| s.starts_with("test-soundscape"))
        .collect();
    let robust = robustness_run(
        &dir,
        data,
        &format!("{}-{}", arch.name(), mode_name(mode)),
        &plan.robustness,
        (&soundscapes, Some(plan.attack_limit)),
        &|set, n| on_event(ExperimentEvent::Phase(format!("attacks on {set}"), n)),
        &|| on_event(ExperimentEvent::Tick),
    )?;
    let mut stab = Vec::new();
    if arch == Arch::AudioProtoPNet {
        let (train_cfg, model) = load_model(&dir, false, &device)?;
        let Classifier::ProtoPNet(model) = model else {
            anyhow::bail!("{} is not an AudioProtoPNet run", dir.display());
        };
        let attack = AttackConfig {
            random_start: false,
            ..AttackConfig::pgd(Norm::Linf, 0.1, plan.stability_steps)
        };
        for (split, set) in test_sets(&dir, &train_cfg, data, Some(plan.attack_limit), &|| {})? {
            if !soundscapes.iter().any(|s| s == split.name()) {
                continue;
            }
            let batches = set.n.div_ceil(plan.robustness.batch_size.max(1));
            on_event(ExperimentEvent::Phase(
                format!("prototype stability on {}", split.name()),
                (batches * 2 * plan.stability_eps.len()) as u64,
            ));
            stab.extend(stability(
                &model,
                &set,
                (
                    &format!("{}-{}", arch.name(), mode_name(mode)),
                    split.name(),
                ),
                &attack,
                &plan.stability_eps,
                5,
                (plan.robustness.batch_size, seed),
                &device,
                &|| on_event(ExperimentEvent::Tick),
            )?);
            if seed == plan.seeds[0] && soundscapes.first().is_some_and(|s| s == split.name()) {
                // One picture per mode: the first clip with a call.
                if let Some(i) = (0..set.n).find(|&i| {
                    set.y[i * set.classes..(i + 1) * set.classes]
                        .iter()
                        .any(|&v| v > 0.5)
                }) {
                    let (m, f) = set.shape;
                    let eps = plan.stability_eps.last().copied().unwrap_or(0.1);
                    picture(
                        &model,
                        &set.x[i * m * f..(i + 1) * m * f],
                        &set.y[i * set.classes..(i + 1) * set.classes],
                        set.shape,
                        &attack.with_eps(eps),
                        seed,
                        &out.join(format!("prototypes-{}.png", mode_name(mode))),
                    )?;
                }
            }
        }
    }
    Ok(CellResult {
        arch,
        mode,
        seed,
        clean: sets,
        soundscape_mean_cmap,
        robust,
        stability: stab,
        train_seconds,
        eval_seconds: started.elapsed().as_secs_f64(),
        selected_epoch: crate::train::selected_epoch(&dir)?,
        last_soundscape_mean_cmap,
    })
}

/// Mean and sample standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn pm(v: &[f64], scale: f64, digits: usize) -> String {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return "–".into();
    }
    let (m, s) = mean_std(v);
    if v.len() > 1 {
        format!("{:.digits$} ± {:.digits$}", m * scale, s * scale)
    } else {
        format!("{:.digits$}", m * scale)
    }
}

fn table_row(md: &mut String, arch: Arch, m: u8, cells: &[String]) -> std::fmt::Result {
    writeln!(
        md,
        "| {} | {} | {} |",
        arch.name(),
        mode_name(MODES[m as usize]),
        cells.join(" | ")
    )
}

/// Writes `report.md` and the combined robustness charts.
///
/// # Errors
/// Unwritable files.
pub fn write_experiment_report(
    plan: &Plan,
    out: &Path,
    results: &[CellResult],
) -> anyhow::Result<()> {
    let sets: Vec<String> = results
        .first()
        .map(|r| {
            r.clean
                .iter()
                .map(|s| s.set.clone())
                .filter(|s| s != "valid")
                .collect()
        })
        .unwrap_or_default();
    let mut groups: BTreeMap<(Arch, u8), Vec<&CellResult>> = BTreeMap::new();
    for r in results {
        let m = MODES.iter().position(|&m| m == r.mode).unwrap_or(0) as u8;
        groups.entry((r.arch, m)).or_default().push(r);
    }
    let cmap = |r: &CellResult, set: &str| -> f64 {
        if set == "mean" {
            r.soundscape_mean_cmap
        } else {
            r.clean
                .iter()
                .find(|s| s.set == set)
                .map_or(f64::NAN, |s| s.metrics.cmap)
        }
    };
    let mut columns = sets.clone();
    columns.push("mean".into());
    let mut md = String::new();
    writeln!(
        md,
        "# Adversarial training on the synthetic shift benchmark ({:?} preset)\n",
        plan.preset
    )?;
    writeln!(
        md,
        "Benchmark `{}` (seed {}), training seeds {:?}; ConvNeXt `{:?}` dims {:?}, {} mel bands, {} s windows, \
         {} epochs (AudioProtoPNet {} epochs on the frozen ConvNeXt of the same mode and seed). \
         Adversarial training: PGD-L∞ ε = {}, {} steps, step {:.4}, random start, loss mix {} (clean/adversarial), \
         from epoch {} (0-based). Mean ± sample standard deviation over seeds.\n",
        plan.benchmark,
        plan.benchmark_seed,
        plan.seeds,
        plan.convnext.model.depths,
        plan.convnext.model.dims,
        plan.convnext.frontend.n_mels,
        plan.convnext.window_s,
        plan.convnext.epochs,
        plan.protopnet_epochs,
        plan.adversarial.attack.eps,
        plan.adversarial.attack.steps,
        plan.adversarial.attack.step,
        plan.adversarial.ratio,
        plan.adversarial.start_epoch,
    )?;
    writeln!(md, "## Clean cmAP per test set (×100)\n")?;
    writeln!(md, "| model | training | {} |", columns.join(" | "))?;
    writeln!(md, "|---|---|{}", "---|".repeat(columns.len()))?;
    for (&(arch, m), cells) in &groups {
        let row: Vec<String> = columns
            .iter()
            .map(|c| {
                pm(
                    &cells.iter().map(|r| cmap(r, c)).collect::<Vec<_>>(),
                    100.0,
                    1,
                )
            })
            .collect();
        table_row(&mut md, arch, m, &row)?;
    }
    writeln!(
        md,
        "\n## Relative change of clean cmAP against standard training (%, per seed, then mean ± std)\n"
    )?;
    writeln!(md, "| model | training | {} |", columns.join(" | "))?;
    writeln!(md, "|---|---|{}", "---|".repeat(columns.len()))?;
    for (&(arch, m), cells) in groups.iter().filter(|((_, m), _)| *m > 0) {
        let Some(base) = groups.get(&(arch, 0)) else {
            continue;
        };
        let row: Vec<String> = columns
            .iter()
            .map(|c| {
                let rel: Vec<f64> = cells
                    .iter()
                    .filter_map(|r| {
                        let b = base.iter().find(|b| b.seed == r.seed)?;
                        Some((cmap(r, c) - cmap(b, c)) / cmap(b, c))
                    })
                    .collect();
                pm(&rel, 100.0, 1)
            })
            .collect();
        table_row(&mut md, arch, m, &row)?;
    }
    writeln!(
        md,
        "\n## Clean AUROC and top-1 on the soundscape test sets (mean over sets, ×100)\n"
    )?;
    writeln!(
        md,
        "| model | training | AUROC | top-1 |\n|---|---|---|---|"
    )?;
    for (&(arch, m), cells) in &groups {
        let mean_of = |f: &dyn Fn(&crate::metrics::Metrics) -> f64| -> Vec<f64> {
            cells
                .iter()
                .map(|r| {
                    let v: Vec<f64> = r
                        .clean
                        .iter()
                        .filter(|s| s.set.starts_with("test-soundscape"))
                        .map(|s| f(&s.metrics))
                        .collect();
                    v.iter().sum::<f64>() / v.len().max(1) as f64
                })
                .collect()
        };
        writeln!(
            md,
            "| {} | {} | {} | {} |",
            arch.name(),
            mode_name(MODES[m as usize]),
            pm(&mean_of(&|x| x.auroc), 100.0, 1),
            pm(&mean_of(&|x| x.top1), 100.0, 1)
        )?;
    }
    let eps: Vec<f64> = plan.robustness.eps.clone();
    writeln!(
        md,
        "\n## Robustness: cmAP (×100) under attack, mean over the soundscape test sets ({} clips each)\n\n\
         FGSM, and PGD with {} steps (random start, step 2.5·ε/steps), climbing {}; the embedding \
         attack climbs 1 − cos of the representation.\n",
        plan.attack_limit,
        plan.robustness.steps,
        match plan.robustness.objective {
            AttackObjective::Bce => "binary cross-entropy (every class pushes)",
            AttackObjective::Training => "the training loss",
        }
    )?;
    let mut head = Vec::new();
    for a in &plan.robustness.attacks {
        for e in eps.iter().filter(|&&e| e > 0.0) {
            head.push(format!("{} ε={e}", a.name()));
        }
    }
    writeln!(md, "| model | training | clean | {} |", head.join(" | "))?;
    writeln!(md, "|---|---|---|{}", "---|".repeat(head.len()))?;
    for (&(arch, m), cells) in &groups {
        let at = |attack: AttackKind, e: f64| -> Vec<f64> {
            cells
                .iter()
                .map(|r| {
                    let v: Vec<f64> = r
                        .robust
                        .iter()
                        .filter(|p| p.attack == attack && p.eps == e)
                        .map(|p| p.metrics.cmap)
                        .collect();
                    v.iter().sum::<f64>() / v.len().max(1) as f64
                })
                .collect()
        };
        let mut row = vec![pm(&at(plan.robustness.attacks[0], 0.0), 100.0, 1)];
        for &a in &plan.robustness.attacks {
            for &e in eps.iter().filter(|&&e| e > 0.0) {
                row.push(pm(&at(a, e), 100.0, 1));
            }
        }
        writeln!(
            md,
            "| {} | {} | {} |",
            arch.name(),
            mode_name(MODES[m as usize]),
            row.join(" | ")
        )?;
    }
    // Which weights each cell's figures are of: selection by validation loss can pick an
    // epoch before adversarial training started.
    writeln!(
        md,
        "\n## Selected epochs (lowest validation loss; 0-based, adversarial training from epoch {})\n",
        plan.adversarial.start_epoch
    )?;
    writeln!(
        md,
        "| cell | selected epoch | of | soundscape cmAP, selected | soundscape cmAP, last epoch |"
    )?;
    writeln!(md, "|---|---|---|---|---|")?;
    for r in results {
        let of = match r.arch {
            Arch::ConvNext => plan.convnext.epochs,
            Arch::AudioProtoPNet => plan.protopnet_epochs,
        };
        let selected = match r.selected_epoch {
            None => "not recorded".to_owned(),
            Some(e) if r.mode != AdversarialMode::None && e < plan.adversarial.start_epoch => {
                format!("{e} (before adversarial training: a standard model)")
            }
            Some(e) => e.to_string(),
        };
        let last = r
            .last_soundscape_mean_cmap
            .map_or_else(|| "not recorded".to_owned(), |c| format!("{c:.3}"));
        writeln!(
            md,
            "| {} | {selected} | {of} | {:.3} | {last} |",
            cell_name(r.arch, r.mode, r.seed),
            r.soundscape_mean_cmap
        )?;
    }
    writeln!(
        md,
        "\n## Prototype stability of AudioProtoPNet under targeted attacks (PGD-L∞, {} steps; soundscape test sets)\n",
        plan.stability_steps
    )?;
    writeln!(
        md,
        "| training | attack | ε | success rate | top-5 kept | top-5 rank change | argmax moved | argmax shift (cells) | mean abs Δ activation | Δ attacked prototypes |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|")?;
    for (&(_, m), cells) in groups
        .iter()
        .filter(|((a, _), _)| *a == Arch::AudioProtoPNet)
    {
        for kind in crate::stability::Targeted::ALL {
            for &e in &plan.stability_eps {
                let per = |f: &dyn Fn(&Stability) -> f64| -> Vec<f64> {
                    cells
                        .iter()
                        .map(|r| {
                            let v: Vec<&Stability> = r
                                .stability
                                .iter()
                                .filter(|s| s.attack == kind && s.eps == e)
                                .collect();
                            let clips: usize = v.iter().map(|s| s.clips).sum();
                            v.iter().map(|s| f(s) * s.clips as f64).sum::<f64>()
                                / clips.max(1) as f64
                        })
                        .collect()
                };
                writeln!(
                    md,
                    "| {} | {} | {e} | {} | {} | {} | {} | {} | {} | {} |",
                    mode_name(MODES[m as usize]),
                    kind.name(),
                    pm(&per(&|s| s.success_rate), 1.0, 3),
                    pm(&per(&|s| s.top_k_kept), 1.0, 3),
                    pm(&per(&|s| s.top_k_rank_change), 1.0, 2),
                    pm(&per(&|s| s.argmax_moved), 1.0, 3),
                    pm(&per(&|s| s.argmax_shift), 1.0, 2),
                    pm(&per(&|s| s.activation_change), 1.0, 4),
                    pm(&per(&|s| s.target_change), 1.0, 4),
                )?;
            }
        }
    }
    writeln!(
        md,
        "\n## Time per cell (s)\n\n| cell | train | evaluate |\n|---|---|---|"
    )?;
    for r in results {
        writeln!(
            md,
            "| {} | {:.0} | {:.0} |",
            cell_name(r.arch, r.mode, r.seed),
            r.train_seconds,
            r.eval_seconds
        )?;
    }
    writeln!(
        md,
        "\nPictures: `robust/robust-<set>.svg` (cmAP against ε under PGD-L∞ for every cell of the first seed), \
         `prototypes-<training>.png` (one soundscape clip: spectrogram clean and under the raise attack, \
         then the clean top-3 prototypes and the attacked one, their similarity maps clean | attacked)."
    )?;
    fs::write(out.join("report.md"), md)?;
    let first = plan.seeds.first().copied().unwrap_or(0);
    let points: Vec<RobustPoint> = results
        .iter()
        .filter(|r| r.seed == first)
        .flat_map(|r| {
            r.robust
                .iter()
                .filter(|p| p.attack == AttackKind::PgdLinf)
                .cloned()
        })
        .collect();
    write_report(&out.join("robust"), &points)?;
    Ok(())
}
