//! BirdSet's metrics for multi-label classification.
//!
//! Scores and targets are `(n, classes)` row-major. Following BirdSet:
//! - **cmAP**: average precision per class, averaged over the classes that have at least
//!   one positive in the set (classes never present do not count);
//! - **AUROC**: ROC area per class, averaged over classes with both positives and
//!   negatives;
//! - **top-1**: over samples with at least one positive label, how often the
//!   highest-scoring class is one of them;
//! - **micro mAP**: average precision over all (sample, class) pairs at once.
//!
//! Average precision is computed as scikit-learn's `average_precision_score`: the sum over
//! distinct score thresholds of (recall step) × precision, so tied scores form one step.

use serde::{Deserialize, Serialize};

/// Average precision of one ranking; `None` without positives: the sum over the steps of
/// the precision–recall curve of (recall step) × precision.
pub fn average_precision(scores: &[f32], targets: &[bool]) -> Option<f64> {
    let curve = pr_curve(scores, targets);
    if curve.is_empty() {
        return None;
    }
    let mut last_recall = 0.0;
    Some(curve.iter().fold(0.0, |ap, &(recall, precision)| {
        let step = recall - last_recall;
        last_recall = recall;
        ap + step * precision
    }))
}

/// The ranking's distinct score thresholds from the highest down, each with the true and
/// false positives predicted at `score >= threshold` (tied scores form one step).
fn threshold_steps<'a>(
    scores: &'a [f32],
    targets: &'a [bool],
) -> impl Iterator<Item = (f32, usize, usize)> + 'a {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut i) = (0usize, 0usize, 0);
    std::iter::from_fn(move || {
        let threshold = scores[*order.get(i)?];
        while i < order.len() && scores[order[i]] == threshold {
            if targets[order[i]] {
                tp += 1
            } else {
                fp += 1
            }
            i += 1;
        }
        Some((threshold, tp, fp))
    })
}

/// Precision–recall curve of one ranking as `(recall, precision)` points, one per distinct
/// score threshold from the highest down (empty without positives).
pub fn pr_curve(scores: &[f32], targets: &[bool]) -> Vec<(f64, f64)> {
    let positives = targets.iter().filter(|&&t| t).count();
    if positives == 0 {
        return Vec::new();
    }
    threshold_steps(scores, targets)
        .map(|(_, tp, fp)| (tp as f64 / positives as f64, tp as f64 / (tp + fp) as f64))
        .collect()
}

/// The lowest decision threshold (predict positive when `score >= threshold`) at which
/// precision is at least `target_precision`: the most recall the precision target allows.
/// `None` when the class has no positives or no threshold reaches the target.
///
/// Used to calibrate per-class thresholds of a bundle on validation data; a class whose
/// target cannot be met keeps the bundle's default threshold.
pub fn threshold_for_precision(
    scores: &[f32],
    targets: &[bool],
    target_precision: f64,
) -> Option<f32> {
    threshold_steps(scores, targets)
        .filter(|&(_, tp, fp)| tp > 0 && tp as f64 / (tp + fp) as f64 >= target_precision)
        .last()
        .map(|(threshold, _, _)| threshold)
}

/// ROC area of one ranking (ties count one half); `None` unless both classes occur.
pub fn auroc(scores: &[f32], targets: &[bool]) -> Option<f64> {
    let pos = targets.iter().filter(|&&t| t).count();
    let neg = targets.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    // Mann–Whitney U from average ranks.
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_pos += avg_rank * order[i..j].iter().filter(|&&k| targets[k]).count() as f64;
        i = j;
    }
    let u = rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos * neg) as f64)
}

/// The metrics of one evaluation set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Class-wise mean average precision.
    pub cmap: f64,
    /// Macro AUROC.
    pub auroc: f64,
    /// Top-1 accuracy over samples with a positive.
    pub top1: f64,
    /// Micro-averaged average precision.
    pub micro_map: f64,
    /// Classes counted in cmAP.
    pub classes_present: usize,
    /// Samples counted in top-1.
    pub samples_with_positive: usize,
}

fn column(values: &[f32], classes: usize, c: usize) -> Vec<f32> {
    values.iter().skip(c).step_by(classes).copied().collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Keeps only the columns of classes with at least one positive in `targets`: a test set
/// is scored within its own label space, as BirdSet restricts the logits to the test
/// dataset's classes before the sigmoid (a class that never occurs in the set cannot then
/// win top-1 or dilute AUROC). Returns the restricted scores, targets and class indices.
pub fn restrict_to_present(
    scores: &[f32],
    targets: &[f32],
    classes: usize,
) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
    let n = targets.len() / classes.max(1);
    let keep: Vec<usize> = (0..classes)
        .filter(|&c| (0..n).any(|i| targets[i * classes + c] > 0.5))
        .collect();
    let pick = |values: &[f32]| -> Vec<f32> {
        (0..n)
            .flat_map(|i| keep.iter().map(move |&c| values[i * classes + c]))
            .collect()
    };
    (pick(scores), pick(targets), keep)
}

/// All metrics for `scores` against multi-hot `targets`, both `(n, classes)`.
/// Metrics with nothing to average over are NaN (e.g. top-1 on a set without calls).
pub fn evaluate(scores: &[f32], targets: &[f32], classes: usize) -> Metrics {
    assert_eq!(
        scores.len(),
        targets.len(),
        "scores and targets differ in shape"
    );
    let positive: Vec<bool> = targets.iter().map(|&t| t > 0.5).collect();
    let per_class: Vec<(Option<f64>, Option<f64>)> = (0..classes)
        .map(|c| {
            let s = column(scores, classes, c);
            let t: Vec<bool> = positive.iter().skip(c).step_by(classes).copied().collect();
            (average_precision(&s, &t), auroc(&s, &t))
        })
        .collect();
    let n = scores.len() / classes.max(1);
    let mut hits = 0usize;
    let mut counted = 0usize;
    for i in 0..n {
        let row = &scores[i * classes..(i + 1) * classes];
        let truth = &positive[i * classes..(i + 1) * classes];
        if truth.iter().any(|&t| t) {
            counted += 1;
            let best = (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            hits += usize::from(truth[best]);
        }
    }
    Metrics {
        cmap: mean(per_class.iter().filter_map(|p| p.0)),
        auroc: mean(per_class.iter().filter_map(|p| p.1)),
        top1: if counted == 0 {
            f64::NAN
        } else {
            hits as f64 / counted as f64
        },
        micro_map: average_precision(scores, &positive).unwrap_or(f64::NAN),
        classes_present: per_class.iter().filter(|p| p.0.is_some()).count(),
        samples_with_positive: counted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restriction_keeps_the_sets_own_classes() {
        // Class 2 never occurs but scores highest: unrestricted top-1 is 0, restricted 1.
        let scores = [0.6, 0.1, 0.9, 0.2, 0.7, 0.95];
        let targets = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        assert_eq!(evaluate(&scores, &targets, 3).top1, 0.0);
        let (s, t, keep) = restrict_to_present(&scores, &targets, 3);
        assert_eq!(keep, [0, 1]);
        assert_eq!(s, [0.6, 0.1, 0.2, 0.7]);
        assert_eq!(t, [1.0, 0.0, 0.0, 1.0]);
        let m = evaluate(&s, &t, keep.len());
        assert_eq!(m.top1, 1.0);
        assert_eq!(m.cmap, 1.0);
    }

    #[test]
    fn threshold_for_precision_takes_the_most_recall_the_target_allows() {
        // Ranked: 0.9 P, 0.8 P, 0.7 N, 0.6 P, 0.5 N, 0.4 P.
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let targets = [true, true, false, true, false, true];
        // Precision at each cut: 1, 1, 2/3, 3/4, 3/5, 4/6.
        assert_eq!(threshold_for_precision(&scores, &targets, 1.0), Some(0.8));
        assert_eq!(threshold_for_precision(&scores, &targets, 0.75), Some(0.6));
        assert_eq!(threshold_for_precision(&scores, &targets, 0.6), Some(0.4));
        assert_eq!(threshold_for_precision(&scores, &[false; 6], 0.5), None);
        // The top score is a negative and the target is unreachable.
        assert_eq!(
            threshold_for_precision(&[0.9, 0.1], &[false, true], 0.9),
            None
        );
        // Tied scores are one threshold.
        assert_eq!(
            threshold_for_precision(&[0.5, 0.5, 0.2], &[true, false, true], 0.6),
            Some(0.2)
        );
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn average_precision_by_hand() {
        // Ranks: + − + −  → (1/1 + 2/3) / 2.
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.6], &[true, false, true, false]).unwrap();
        assert!(close(ap, (1.0 + 2.0 / 3.0) / 2.0), "{ap}");
        // Perfect ranking.
        assert!(close(
            average_precision(&[0.1, 0.9], &[false, true]).unwrap(),
            1.0
        ));
        // A tie between a positive and a negative is one step at precision 1/2.
        assert!(close(
            average_precision(&[0.5, 0.5], &[true, false]).unwrap(),
            0.5
        ));
        // No positive: undefined.
        assert_eq!(average_precision(&[0.3, 0.2], &[false, false]), None);
    }

    #[test]
    fn pr_curve_by_hand() {
        let pts = pr_curve(&[0.9, 0.8, 0.7, 0.6], &[true, false, true, false]);
        assert_eq!(
            pts,
            vec![(0.5, 1.0), (0.5, 0.5), (1.0, 2.0 / 3.0), (1.0, 0.5)]
        );
        assert!(pr_curve(&[0.1], &[false]).is_empty());
    }

    #[test]
    fn auroc_by_hand() {
        // Pos {0.9, 0.7} vs neg {0.8, 0.6}: 3 of 4 pairs ordered correctly.
        assert!(close(
            auroc(&[0.9, 0.8, 0.7, 0.6], &[true, false, true, false]).unwrap(),
            0.75
        ));
        assert!(close(auroc(&[0.5, 0.5], &[true, false]).unwrap(), 0.5));
        assert!(close(auroc(&[0.1, 0.9], &[false, true]).unwrap(), 1.0));
        assert_eq!(auroc(&[0.1, 0.9], &[true, true]), None);
    }

    #[test]
    fn evaluate_skips_absent_classes_and_unlabelled_samples() {
        // 3 samples × 3 classes; class 2 never present; sample 2 has no label.
        let scores = [0.9, 0.2, 0.1, 0.3, 0.8, 0.7, 0.6, 0.4, 0.5];
        let targets = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let m = evaluate(&scores, &targets, 3);
        assert_eq!(m.classes_present, 2);
        // Class 0: scores [0.9, 0.3, 0.6], positive first → AP 1. Class 1: [0.2, 0.8, 0.4],
        // positive first → AP 1.
        assert!(close(m.cmap, 1.0));
        // Class 2 has no positive, so AUROC averages classes 0 and 1 (both 1.0).
        assert!(close(m.auroc, 1.0));
        // Top-1 over samples 0 and 1: argmax 0 (correct) and 1 (correct).
        assert_eq!(m.samples_with_positive, 2);
        assert!(close(m.top1, 1.0));
        // Micro AP over all 9 pairs: the two positives rank 1st (0.9) and 2nd (0.8).
        assert!(close(m.micro_map, 1.0));
    }

    #[test]
    fn a_wrong_top_choice_costs_top1_and_ap() {
        let scores = [0.2, 0.9, 0.8, 0.1];
        let targets = [1.0, 0.0, 1.0, 0.0];
        let m = evaluate(&scores, &targets, 2);
        assert!(close(m.top1, 0.5));
        // Class 0: scores [0.2, 0.8], both positive → AP 1. Class 1: no positive.
        assert!(close(m.cmap, 1.0));
        // Micro: ranking 0.9(−) 0.8(+) 0.2(+) 0.1(−) → (1/2 + 2/3) / 2.
        assert!(close(m.micro_map, (0.5 + 2.0 / 3.0) / 2.0));
        // Empty sets give NaN rather than a made-up number.
        assert!(evaluate(&[0.5, 0.5], &[0.0, 0.0], 2).cmap.is_nan());
    }
}
