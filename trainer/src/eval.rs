//! Evaluation of a trained run on every set of a benchmark folder, as BirdSet reports it:
//! one table row per test set plus the mean over the soundscape test sets.

use std::path::Path;

use serde::Serialize;
use warble_core::labels::LabelTable;

use crate::compare::SegmentScores;
use crate::data::loader::FeatureSet;
use crate::data::loader::{self, Crop};
use crate::data::manifest::Manifest;
use crate::metrics::{Metrics, evaluate, pr_curve, restrict_to_present};
use crate::plot;
use crate::robust::{RobustPoint, RobustnessConfig, robustness};
use crate::shift::{SetResult, soundscape_mean_cmap};
use crate::synth::Split;
use crate::train::{TrainConfig, load_model, score};

/// Which of a run's weights are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// The epoch with the lowest validation loss (`best.bpk`).
    Best,
    /// The last epoch (`last.bpk`): selection by validation loss can pick an epoch
    /// before adversarial training began.
    Last,
}

impl Weights {
    /// The suffix of the files evaluation writes (`metrics.json`, `scores/` for the best
    /// weights; `metrics-last.json`, `scores-last/` for the last).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Best => "",
            Self::Last => "-last",
        }
    }
}

/// Results of a run on a benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Per set, in `Split::all()` order (without the training set).
    pub sets: Vec<SetResult>,
    /// Mean cmAP over the soundscape test sets.
    pub soundscape_mean_cmap: f64,
}

/// The features of every test set of `data` that exists (not the training set), in
/// `Split::all()` order, each cut to its first `limit` examples if given.
///
/// # Errors
/// Unreadable labels, manifests or audio.
pub fn test_sets(
    run: &Path,
    cfg: &TrainConfig,
    data: &Path,
    limit: Option<usize>,
    on_row: &(dyn Fn() + Sync),
) -> anyhow::Result<Vec<(Split, FeatureSet)>> {
    let labels = LabelTable::read(run.join("labels.csv"))?;
    let mut sets = Vec::new();
    for split in Split::all().into_iter().skip(1) {
        let path = data.join(format!("{}.csv", split.name()));
        if !path.is_file() {
            continue;
        }
        let (mut manifest, _) = Manifest::read(&path, &labels, false)?;
        if let Some(limit) = limit {
            manifest.rows.truncate(limit);
        }
        let crop = if split == Split::FocalTest {
            Crop::EventCentred
        } else {
            Crop::Fixed
        };
        let set = loader::features(
            &manifest,
            &labels,
            &cfg.frontend,
            cfg.window_s,
            crop,
            cfg.seed,
            on_row,
        )?;
        sets.push((split, set));
    }
    Ok(sets)
}

/// Robustness of a run's best weights on the test sets of `data` named in `only` (all
/// when empty), each cut to `limit` examples; `model_name` labels the points.
/// `on_batch` ticks per attacked batch; `on_set` says how many ticks a set will take.
///
/// # Errors
/// Unreadable run or data, an invalid attack setting.
pub fn robustness_run(
    run: &Path,
    data: &Path,
    model_name: &str,
    cfg: &RobustnessConfig,
    (only, limit): (&[String], Option<usize>),
    on_set: &dyn Fn(&str, u64),
    on_batch: &dyn Fn(),
) -> anyhow::Result<Vec<RobustPoint>> {
    let device = burn::prelude::Device::flex();
    let (train_cfg, model) = load_model(run, false, &device)?;
    device.seed(train_cfg.seed);
    let mut points = Vec::new();
    for (split, set) in test_sets(run, &train_cfg, data, limit, &|| {})? {
        if !only.is_empty() && !only.iter().any(|s| s == split.name()) {
            continue;
        }
        let batches = set.n.div_ceil(cfg.batch_size.max(1));
        let radii = cfg.eps.iter().filter(|&&e| e > 0.0).count();
        on_set(split.name(), (batches * radii * cfg.attacks.len()) as u64);
        points.extend(robustness(
            &model,
            &set,
            (model_name, split.name()),
            &train_cfg.loss,
            cfg,
            &device,
            on_batch,
        )?);
    }
    Ok(points)
}

/// Evaluates the `weights` of `run` on the sets in `data` that exist, draws a
/// micro-averaged precision–recall curve per set (`pr-<set>.svg` in the run directory,
/// `pr-last-<set>.svg` for the last weights) and writes each set's per-segment scores
/// (`scores/<set>.csv`, `scores-last/` for the last weights).
///
/// # Errors
/// Unreadable run files, manifests or audio.
pub fn evaluate_run(
    run: &Path,
    data: &Path,
    weights: Weights,
    on_row: &(dyn Fn() + Sync),
) -> anyhow::Result<EvalReport> {
    let device = burn::prelude::Device::flex();
    let (cfg, model) = load_model(run, weights == Weights::Last, &device)?;
    let labels = LabelTable::read(run.join("labels.csv"))?;
    let scores_dir = run.join(format!("scores{}", weights.suffix()));
    std::fs::create_dir_all(&scores_dir)?;
    let mut sets = Vec::new();
    for (split, set) in test_sets(run, &cfg, data, None, on_row)? {
        let (scores, _) = score(&model, &set, &cfg.loss, cfg.batch_size, &device)?;
        // Scored within the set's own label space (BirdSet's logit restriction).
        let (scores, targets, present) = restrict_to_present(&scores, &set.y, set.classes);
        let metrics: Metrics = evaluate(&scores, &targets, present.len());
        // Per segment, for paired comparisons between runs (`warble-train compare`).
        let segments = SegmentScores {
            codes: present
                .iter()
                .map(|&c| {
                    labels
                        .get(c)
                        .map_or_else(|| format!("class{c}"), |l| l.code.as_str().to_owned())
                })
                .collect(),
            targets: targets.clone(),
            scores: scores.clone(),
        };
        let path = scores_dir.join(format!("{}.csv", split.name()));
        std::fs::write(&path, segments.to_csv())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        let truth: Vec<bool> = targets.iter().map(|&t| t > 0.5).collect();
        plot::line_chart_svg(
            &run.join(format!("pr{}-{}.svg", weights.suffix(), split.name())),
            &format!(
                "{}: micro-averaged precision-recall (mAP {:.3})",
                split.name(),
                metrics.micro_map
            ),
            "recall",
            "precision",
            &[("all classes", pr_curve(&scores, &truth))],
        )?;
        sets.push(SetResult {
            set: split.name().to_owned(),
            examples: set.n,
            metrics,
        });
    }
    let soundscape_mean_cmap = soundscape_mean_cmap(&sets);
    Ok(EvalReport {
        sets,
        soundscape_mean_cmap,
    })
}
