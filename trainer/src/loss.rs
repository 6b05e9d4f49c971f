//! Training losses for multi-label targets, written for soft targets (mixing and label
//! smoothing give values between 0 and 1).
//!
//! - Asymmetric Loss (Ridnik et al., 2021), the paper's loss: focusing γ− = 4 on
//!   negatives, γ+ = 1 on positives, negative probabilities shifted down by `clip` = 0.05,
//!   `eps` = 1e-8, **mean** over batch × classes.
//! - Binary cross-entropy on logits, numerically stable.

use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

/// Asymmetric Loss settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AslConfig {
    /// Focusing parameter for negatives.
    pub gamma_neg: f32,
    /// Focusing parameter for positives.
    pub gamma_pos: f32,
    /// Probability margin subtracted from negatives.
    pub clip: f32,
    /// Floor inside the logarithms.
    pub eps: f32,
}

impl Default for AslConfig {
    fn default() -> Self {
        Self {
            gamma_neg: 4.0,
            gamma_pos: 1.0,
            clip: 0.05,
            eps: 1e-8,
        }
    }
}

/// Which loss trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossKind {
    /// Asymmetric Loss.
    Asl(AslConfig),
    /// Binary cross-entropy.
    Bce,
}

impl LossKind {
    /// The loss of `logits` against `targets`, a scalar tensor.
    ///
    /// # Shapes
    /// `logits`, `targets`: `[batch, classes]` → `[1]`
    pub fn loss(&self, logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
        match self {
            LossKind::Asl(cfg) => asymmetric_loss(logits, targets, cfg),
            LossKind::Bce => bce_with_logits(logits, targets),
        }
    }
}

/// Asymmetric Loss, mean over batch × classes.
///
/// # Shapes
/// `[batch, classes]` × 2 → `[1]`
pub fn asymmetric_loss(logits: Tensor<2>, targets: Tensor<2>, cfg: &AslConfig) -> Tensor<1> {
    let p = sigmoid(logits);
    let anti = targets.clone().neg().add_scalar(1.0);
    // Negatives: probability shifted down by `clip` (1 − p + clip, capped at 1).
    let p_neg = p.clone().neg().add_scalar(1.0 + cfg.clip).clamp_max(1.0);
    let log_pos = p.clone().clamp_min(cfg.eps).log() * targets.clone();
    let log_neg = p_neg.clone().clamp_min(cfg.eps).log() * anti.clone();
    // Focusing weight (1 − pt)^γ with pt and γ chosen per element by the target.
    let pt = p * targets.clone() + p_neg * anti.clone();
    let gamma = targets.mul_scalar(cfg.gamma_pos) + anti.mul_scalar(cfg.gamma_neg);
    let weight = pt.neg().add_scalar(1.0).clamp_min(0.0).powf(gamma);
    ((log_pos + log_neg) * weight).neg().mean()
}

/// Binary cross-entropy on logits: `max(z, 0) − z·y + log(1 + e^−|z|)`, mean.
///
/// # Shapes
/// `[batch, classes]` × 2 → `[1]`
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let softplus = logits.clone().abs().neg().exp().add_scalar(1.0).log();
    (logits.clone().clamp_min(0.0) - logits * targets + softplus).mean()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: &[f32], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
    }

    fn scalar(x: Tensor<1>) -> f32 {
        x.into_scalar::<f32>()
    }

    /// The ASL formula written out for one element, in f64.
    fn asl_by_hand(z: f64, y: f64) -> f64 {
        let p = 1.0 / (1.0 + (-z).exp());
        let p_neg = (1.0 - p + 0.05).min(1.0);
        let los = y * p.max(1e-8).ln() + (1.0 - y) * p_neg.max(1e-8).ln();
        let pt = p * y + p_neg * (1.0 - y);
        let gamma = 1.0 * y + 4.0 * (1.0 - y);
        -los * (1.0 - pt).powf(gamma)
    }

    #[test]
    fn asl_matches_the_formula() {
        let device = Device::flex();
        let z = [2.0f32, -1.0, 0.3, -4.0];
        let y = [1.0f32, 0.0, 0.7, 0.0];
        let got = scalar(asymmetric_loss(
            t(&z, &device),
            t(&y, &device),
            &AslConfig::default(),
        ));
        let expect = z
            .iter()
            .zip(&y)
            .map(|(&z, &y)| asl_by_hand(z.into(), y.into()))
            .sum::<f64>()
            / 4.0;
        assert!((f64::from(got) - expect).abs() < 1e-6, "{got} vs {expect}");
    }

    #[test]
    fn asl_ignores_easy_negatives() {
        // A negative with p below the clip margin costs nothing.
        let device = Device::flex();
        let loss = scalar(asymmetric_loss(
            t(&[-5.0], &device),
            t(&[0.0], &device),
            &AslConfig::default(),
        ));
        assert_eq!(loss, 0.0);
    }

    #[test]
    fn bce_matches_the_formula_and_is_stable() {
        let device = Device::flex();
        let z = [3.0f32, -2.0, 80.0, -80.0];
        let y = [1.0f32, 0.25, 0.0, 0.0];
        let got = scalar(bce_with_logits(t(&z, &device), t(&y, &device)));
        let expect: f64 = z
            .iter()
            .zip(&y)
            .map(|(&z, &y)| {
                let (z, y) = (f64::from(z), f64::from(y));
                z.max(0.0) - z * y + (1.0 + (-z.abs()).exp()).ln()
            })
            .sum::<f64>()
            / 4.0;
        assert!(
            got.is_finite() && (f64::from(got) - expect).abs() < 1e-4,
            "{got} vs {expect}"
        );
    }
}
