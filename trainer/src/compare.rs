//! Whether one training recipe beats another, with the uncertainty a reviewer asks for:
//! each run's per-segment scores on a test set (written by `eval` as
//! `RUN/scores/<set>.csv`), paired by seed, and a paired bootstrap that resamples seeds
//! and, within each, the test segments — the same segments for both recipes, so the
//! difference is not buried under the test set's own sampling noise twice.
//!
//! The statistic is the relative change of the metric, `(treatment − baseline) /
//! baseline`, per seed on the full set (the point estimates), their mean, and a 95 %
//! percentile interval of that mean over the resamples.

use std::fmt::Write as _;
use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::metrics::{Metrics, evaluate};

/// One run's scores on one test set: `n` segments × the set's classes, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentScores {
    /// Class codes of the columns (the set's own classes).
    pub codes: Vec<String>,
    /// Multi-hot targets, `(n, classes)`.
    pub targets: Vec<f32>,
    /// Scores, `(n, classes)`.
    pub scores: Vec<f32>,
}

impl SegmentScores {
    /// Segments.
    pub fn len(&self) -> usize {
        self.targets.len() / self.codes.len().max(1)
    }

    /// No segment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The CSV `eval` writes: `segment,targets,<code>…`, targets as `;`-joined codes.
    pub fn to_csv(&self) -> String {
        let mut text = format!("segment,targets,{}\n", self.codes.join(","));
        let k = self.codes.len();
        for i in 0..self.len() {
            let truth: Vec<&str> = (0..k)
                .filter(|&c| self.targets[i * k + c] > 0.5)
                .map(|c| self.codes[c].as_str())
                .collect();
            let _ = write!(text, "{i},{}", truth.join(";"));
            for c in 0..k {
                let _ = write!(text, ",{}", self.scores[i * k + c]);
            }
            text.push('\n');
        }
        text
    }

    /// Reads what [`Self::to_csv`] wrote.
    ///
    /// # Errors
    /// An unreadable file, a malformed row (with its line), a target code that is not a
    /// column.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let codes: Vec<String> = header.split(',').skip(2).map(str::to_owned).collect();
        anyhow::ensure!(
            header.starts_with("segment,targets,") && !codes.is_empty(),
            "{}: not a scores file (header `segment,targets,<code>…`)",
            path.display()
        );
        let k = codes.len();
        let (mut targets, mut scores) = (Vec::new(), Vec::new());
        for (i, line) in lines.enumerate() {
            let at = || format!("{}:{}", path.display(), i + 2);
            let fields: Vec<&str> = line.split(',').collect();
            anyhow::ensure!(
                fields.len() == k + 2,
                "{}: {} fields, expected {}",
                at(),
                fields.len(),
                k + 2
            );
            let mut row = vec![0.0f32; k];
            for code in fields[1].split(';').filter(|c| !c.is_empty()) {
                let c = codes
                    .iter()
                    .position(|x| x == code)
                    .ok_or_else(|| anyhow::anyhow!("{}: target `{code}` is not a column", at()))?;
                row[c] = 1.0;
            }
            targets.extend(row);
            for v in &fields[2..] {
                scores.push(
                    v.parse::<f32>()
                        .map_err(|_| anyhow::anyhow!("{}: `{v}` is not a score", at()))?,
                );
            }
        }
        Ok(Self {
            codes,
            targets,
            scores,
        })
    }
}

/// The metric compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Class-wise mean average precision.
    Cmap,
    /// Macro AUROC.
    Auroc,
    /// Top-1 accuracy.
    Top1,
}

impl Metric {
    fn of(self, m: &Metrics) -> f64 {
        match self {
            Self::Cmap => m.cmap,
            Self::Auroc => m.auroc,
            Self::Top1 => m.top1,
        }
    }
}

/// A paired comparison of two recipes over seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The metric.
    pub metric: Metric,
    /// Per seed: baseline, treatment, relative change.
    pub per_seed: Vec<(f64, f64, f64)>,
    /// Mean relative change over seeds.
    pub mean: f64,
    /// 95 % percentile interval of the mean relative change.
    pub ci95: (f64, f64),
    /// Seeds whose change has the sign of the mean.
    pub same_sign: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
}

/// The metric of `s` on the segments `rows` (a resample: rows may repeat).
fn metric_on(s: &SegmentScores, rows: &[usize], metric: Metric) -> f64 {
    let k = s.codes.len();
    let mut scores = Vec::with_capacity(rows.len() * k);
    let mut targets = Vec::with_capacity(rows.len() * k);
    for &r in rows {
        scores.extend_from_slice(&s.scores[r * k..(r + 1) * k]);
        targets.extend_from_slice(&s.targets[r * k..(r + 1) * k]);
    }
    metric.of(&evaluate(&scores, &targets, k))
}

/// Compares `treatment[i]` with `baseline[i]` (the same seed and test set) by a paired
/// bootstrap of `resamples` draws from `seed`.
///
/// # Errors
/// No pairs, unequal numbers of runs, or a pair scored on different segments or classes
/// (the pairing would be meaningless).
pub fn paired_bootstrap(
    baseline: &[SegmentScores],
    treatment: &[SegmentScores],
    metric: Metric,
    resamples: usize,
    seed: u64,
) -> anyhow::Result<Comparison> {
    anyhow::ensure!(
        !baseline.is_empty() && baseline.len() == treatment.len(),
        "pair each treatment run with the baseline run of its seed: {} baseline run(s), {} treatment run(s)",
        baseline.len(),
        treatment.len()
    );
    anyhow::ensure!(resamples >= 100, "at least 100 resamples (got {resamples})");
    for (i, (a, b)) in baseline.iter().zip(treatment).enumerate() {
        anyhow::ensure!(
            a.codes == b.codes && a.targets == b.targets,
            "pair {}: the two runs were scored on different segments or classes",
            i + 1
        );
        anyhow::ensure!(!a.is_empty(), "pair {}: no segments", i + 1);
    }
    let relative = |a: f64, b: f64| (b - a) / a;
    let per_seed: Vec<(f64, f64, f64)> = baseline
        .iter()
        .zip(treatment)
        .map(|(a, b)| {
            let all: Vec<usize> = (0..a.len()).collect();
            let (ma, mb) = (metric_on(a, &all, metric), metric_on(b, &all, metric));
            (ma, mb, relative(ma, mb))
        })
        .collect();
    let mean = per_seed.iter().map(|p| p.2).sum::<f64>() / per_seed.len() as f64;
    let seeds = baseline.len();
    let mut draws: Vec<f64> = (0..resamples)
        .into_par_iter()
        .map(|r| {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed ^ (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut sum = 0.0;
            for _ in 0..seeds {
                let s = rng.random_range(0..seeds);
                let n = baseline[s].len();
                let rows: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
                sum += relative(
                    metric_on(&baseline[s], &rows, metric),
                    metric_on(&treatment[s], &rows, metric),
                );
            }
            sum / seeds as f64
        })
        .collect();
    draws.retain(|d| d.is_finite());
    anyhow::ensure!(
        !draws.is_empty(),
        "the metric is undefined on every resample"
    );
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((draws.len() - 1) as f64 * q).round() as usize];
    let same_sign = per_seed
        .iter()
        .filter(|p| p.2.signum() == mean.signum() && p.2 != 0.0)
        .count();
    Ok(Comparison {
        metric,
        per_seed,
        mean,
        ci95: (at(0.025), at(0.975)),
        same_sign,
        resamples: draws.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` segments of 3 classes, one positive each (class i % 3); the positive scores
    /// `hit` and the others `miss`, with a little per-segment spread.
    fn scores(n: usize, hit: f32, miss: f32, wrong_every: usize) -> SegmentScores {
        let mut targets = vec![0.0; n * 3];
        let mut s = vec![0.0; n * 3];
        for i in 0..n {
            targets[i * 3 + i % 3] = 1.0;
            for c in 0..3 {
                let spread = (i * 7 + c * 3) % 10;
                s[i * 3 + c] = if c == i % 3 { hit } else { miss } + spread as f32 * 0.01;
            }
            if wrong_every > 0 && i % wrong_every == 0 {
                // A confident miss: the positive ranks below every negative.
                s[i * 3 + i % 3] = 0.0;
            }
        }
        SegmentScores {
            codes: vec!["a".into(), "b".into(), "c".into()],
            targets,
            scores: s,
        }
    }

    #[test]
    fn a_recipe_against_itself_changes_nothing() {
        let a = vec![scores(60, 0.6, 0.4, 4), scores(60, 0.6, 0.4, 5)];
        let c = paired_bootstrap(&a, &a, Metric::Cmap, 200, 1).unwrap();
        assert_eq!(c.mean, 0.0);
        assert_eq!(
            c.ci95,
            (0.0, 0.0),
            "paired: identical scores give no spread"
        );
        assert_eq!(c.same_sign, 0);
    }

    #[test]
    fn a_better_recipe_is_shown_better_and_a_worse_one_worse() {
        let base = vec![scores(90, 0.6, 0.4, 3), scores(90, 0.6, 0.4, 4)];
        let better = vec![scores(90, 0.6, 0.4, 9), scores(90, 0.6, 0.4, 12)];
        let c = paired_bootstrap(&base, &better, Metric::Cmap, 300, 7).unwrap();
        assert!(
            c.ci95.0 > 0.0 && c.mean > c.ci95.0 && c.mean < c.ci95.1,
            "{c:?}"
        );
        assert_eq!(c.same_sign, 2);
        let (a, b, rel) = c.per_seed[0];
        assert!((rel - (b - a) / a).abs() < 1e-12 && b > a, "{c:?}");
        let worse = paired_bootstrap(&better, &base, Metric::Cmap, 300, 7).unwrap();
        assert!(worse.ci95.1 < 0.0, "{worse:?}");
        // The same draws from the same seed.
        assert_eq!(
            c,
            paired_bootstrap(&base, &better, Metric::Cmap, 300, 7).unwrap()
        );
    }

    #[test]
    fn unpaired_runs_are_refused() {
        let a = vec![scores(30, 0.6, 0.4, 3)];
        let other_segments = vec![scores(31, 0.6, 0.4, 3)];
        let err = paired_bootstrap(&a, &other_segments, Metric::Cmap, 100, 1).unwrap_err();
        assert!(err.to_string().contains("different segments"), "{err}");
        let err = paired_bootstrap(&a, &[], Metric::Cmap, 100, 1).unwrap_err();
        assert!(
            err.to_string().contains("1 baseline run(s), 0 treatment"),
            "{err}"
        );
    }

    #[test]
    fn scores_files_round_trip_and_bad_rows_are_named() {
        let s = scores(5, 0.7, 0.2, 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soundscape-test.csv");
        std::fs::write(&path, s.to_csv()).unwrap();
        assert_eq!(SegmentScores::read(&path).unwrap(), s);
        std::fs::write(&path, "segment,targets,a,b\n0,z,0.1,0.2\n").unwrap();
        let err = SegmentScores::read(&path).unwrap_err().to_string();
        assert!(err.ends_with(":2: target `z` is not a column"), "{err}");
    }
}
