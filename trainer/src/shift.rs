//! Measures a benchmark's distribution shift: fit the pooled-log-mel baseline on the
//! focal training recordings, then score held-out focal recordings (in-domain) and every
//! soundscape set (shifted). A real shift shows as clearly lower soundscape metrics.

use std::path::Path;

use serde::{Deserialize, Serialize};
use warble_core::FrontEndConfig;
use warble_core::labels::LabelTable;

use crate::baseline::{FitOptions, LogisticBaseline, pool};
use crate::data::loader::{self, Crop};
use crate::data::manifest::Manifest;
use crate::metrics::{Metrics, evaluate};
use crate::synth::Split;

/// Metrics of one evaluation set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetResult {
    /// Set name (`test-focal`, `valid`, `test-soundscape-…`).
    pub set: String,
    /// Examples in the set.
    pub examples: usize,
    /// Its metrics.
    pub metrics: Metrics,
}

/// The study's result.
#[derive(Debug, Clone, Serialize)]
pub struct ShiftReport {
    /// Training rows used.
    pub train_examples: usize,
    /// One entry per evaluation set, focal first.
    pub sets: Vec<SetResult>,
}

impl ShiftReport {
    /// The in-domain (focal) result.
    pub fn focal(&self) -> Option<&SetResult> {
        self.sets.iter().find(|s| s.set == Split::FocalTest.name())
    }

    /// Mean cmAP over the shifted test sets (validation excluded).
    pub fn soundscape_mean_cmap(&self) -> f64 {
        soundscape_mean_cmap(&self.sets)
    }
}

/// Mean cmAP over the soundscape test sets among `sets` (validation excluded), as the
/// paper's tables average over test datasets.
pub fn soundscape_mean_cmap(sets: &[SetResult]) -> f64 {
    let test: Vec<f64> = sets
        .iter()
        .filter(|s| s.set.starts_with("test-soundscape"))
        .map(|s| s.metrics.cmap)
        .collect();
    test.iter().sum::<f64>() / test.len().max(1) as f64
}

/// Runs the study on a benchmark folder written by `warble-train synth` (or any folder
/// with the same manifest names). `on_row` is called per example loaded.
///
/// # Errors
/// Unreadable labels, manifests or audio, with the file (and line) at fault.
pub fn study(
    dir: &Path,
    cfg: &FrontEndConfig,
    window_s: f64,
    seed: u64,
    on_row: &(dyn Fn() + Sync),
) -> anyhow::Result<ShiftReport> {
    let labels = LabelTable::read(dir.join("labels.csv"))?;
    let load = |split: Split, crop: Crop| -> anyhow::Result<loader::FeatureSet> {
        let path = dir.join(format!("{}.csv", split.name()));
        let (manifest, _) = Manifest::read(&path, &labels, false)?;
        Ok(loader::features(
            &manifest, &labels, cfg, window_s, crop, seed, on_row,
        )?)
    };
    let train = load(Split::Train, Crop::EventRandom)?;
    let dims = 2 * train.shape.0;
    let model = LogisticBaseline::fit(
        &pool(&train),
        &train.y,
        dims,
        train.classes,
        FitOptions::default(),
    );
    let mut sets = Vec::new();
    for split in Split::all().into_iter().skip(1) {
        let crop = if split == Split::FocalTest {
            Crop::EventCentred
        } else {
            Crop::Fixed
        };
        let set = load(split, crop)?;
        let scores = model.predict(&pool(&set));
        sets.push(SetResult {
            set: split.name().to_owned(),
            examples: set.n,
            metrics: evaluate(&scores, &set.y, set.classes),
        });
    }
    Ok(ShiftReport {
        train_examples: train.n,
        sets,
    })
}
