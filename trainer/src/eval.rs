//! Evaluation of a trained run on every set of a benchmark folder, as BirdSet reports it:
//! one table row per test set plus the mean over the soundscape test sets.

use std::path::Path;

use serde::Serialize;
use warble_core::labels::LabelTable;

use crate::data::loader::{self, Crop};
use crate::data::manifest::Manifest;
use crate::metrics::{Metrics, evaluate, pr_curve, restrict_to_present};
use crate::plot;
use crate::shift::{SetResult, soundscape_mean_cmap};
use crate::synth::Split;
use crate::train::{load_model, score};

/// Results of a run on a benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Per set, in `Split::all()` order (without the training set).
    pub sets: Vec<SetResult>,
    /// Mean cmAP over the soundscape test sets.
    pub soundscape_mean_cmap: f64,
}

/// Evaluates the best weights of `run` on the sets in `data` that exist, and draws a
/// micro-averaged precision–recall curve per set (`pr-<set>.svg` in the run directory).
///
/// # Errors
/// Unreadable run files, manifests or audio.
pub fn evaluate_run(
    run: &Path,
    data: &Path,
    on_row: &(dyn Fn() + Sync),
) -> anyhow::Result<EvalReport> {
    let device = burn::prelude::Device::flex();
    let (cfg, model) = load_model(run, false, &device)?;
    let labels = LabelTable::read(run.join("labels.csv"))?;
    let mut sets = Vec::new();
    for split in Split::all().into_iter().skip(1) {
        let path = data.join(format!("{}.csv", split.name()));
        if !path.is_file() {
            continue;
        }
        let (manifest, _) = Manifest::read(&path, &labels, false)?;
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
        let (scores, _) = score(&model, &set, &cfg.loss, cfg.batch_size, &device)?;
        // Scored within the set's own label space (BirdSet's logit restriction).
        let (scores, targets, present) = restrict_to_present(&scores, &set.y, set.classes);
        let metrics: Metrics = evaluate(&scores, &targets, present.len());
        let truth: Vec<bool> = targets.iter().map(|&t| t > 0.5).collect();
        plot::line_chart_svg(
            &run.join(format!("pr-{}.svg", split.name())),
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
