//! Adversarial attacks on the standardised log-mel input, for both model families.
//!
//! One projected-gradient loop serves every attack; what differs is the objective it
//! climbs and the norm that bounds the perturbation δ:
//!
//! - **output space** ([`Objective::Loss`]): the training loss (ASL or BCE) against the
//!   true labels;
//! - **embedding space** ([`Objective::Embedding`]): the dissimilarity of the model's
//!   representation from the clean one, 1 − cos or the L2 distance, with the clean
//!   representation held fixed (ConvNeXt: the pooled embedding; AudioProtoPNet: every
//!   position of the feature map that prototypes are compared with);
//! - **prototype** ([`Objective::Prototype`], AudioProtoPNet): a signed sum of prototype
//!   activations, to raise a chosen prototype or suppress the true class's prototypes.
//!
//! FGSM is the one-step case (`steps = 1`, `step = eps`, no random start). The L∞ step
//! moves by `step · sign(∇)`; the L2 step by `step · ∇ / ‖∇‖₂` per example; after each
//! step δ is projected back onto the ε-ball and, with `clamp`, x + δ onto the valid
//! feature range. ε is in standardised feature units (one unit ≈ one standard deviation
//! of the training features; the AudioProtoPNet preset's unit is 13.2 dB). For L2 the
//! ball is over the whole example, so an L2 ε comparable to an L∞ ε is
//! `eps_linf · √(n_mels · frames)`.
//!
//! Attacks run on whatever model they are given; in training the loop passes the
//! model without autodiff (`model.valid()`), so attacking records no parameter
//! gradients and drop-path-like randomness (none in our models) would be off.
//! Gradients are per example: every objective is a sum or mean of per-example terms and
//! the models have no batch coupling (LayerNorm only), so one backward pass attacks the
//! whole batch.

use burn::prelude::*;
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};

use crate::loss::LossKind;
use crate::model::Classifier;
use crate::model::convnext::ConvNext;
use crate::model::protopnet::AudioProtoPNet;

/// The norm that bounds a perturbation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// Largest absolute change of any feature.
    Linf,
    /// Euclidean length of the whole example's perturbation.
    L2,
}

/// How an attack searches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackConfig {
    /// The bounding norm.
    pub norm: Norm,
    /// Radius of the ball δ stays in (standardised feature units).
    pub eps: f64,
    /// Step size α.
    pub step: f64,
    /// Gradient steps.
    pub steps: usize,
    /// Start from a uniformly random point of the ball instead of x.
    pub random_start: bool,
    /// Keep x + δ within `[lo, hi]` (e.g. the front end's output range).
    #[serde(default)]
    pub clamp: Option<(f32, f32)>,
}

impl AttackConfig {
    /// FGSM: one L∞ step of size ε from x.
    pub fn fgsm(eps: f64) -> Self {
        Self {
            norm: Norm::Linf,
            eps,
            step: eps,
            steps: 1,
            random_start: false,
            clamp: None,
        }
    }

    /// PGD with a random start and Madry et al.'s step size 2.5 · ε / steps; with one
    /// step, 1.25 · ε (Wong et al. 2020's FGSM with a random start, "fast AT").
    pub fn pgd(norm: Norm, eps: f64, steps: usize) -> Self {
        Self {
            norm,
            eps,
            step: if steps == 1 {
                1.25 * eps
            } else {
                2.5 * eps / steps.max(1) as f64
            },
            steps,
            random_start: true,
            clamp: None,
        }
    }

    /// The same attack with another radius, the step size scaled along (for ε grids).
    pub fn with_eps(self, eps: f64) -> Self {
        let step = if self.eps > 0.0 {
            self.step * eps / self.eps
        } else {
            eps
        };
        Self { eps, step, ..self }
    }
}

/// How dissimilarity of representations is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    /// 1 − cosine similarity, averaged over positions.
    Cosine,
    /// Euclidean distance, averaged over positions.
    L2,
}

/// What an attack maximises.
#[derive(Debug, Clone)]
pub enum Objective {
    /// The loss against these targets (`[batch, classes]`).
    Loss {
        /// The loss.
        loss: LossKind,
        /// True (possibly soft) labels.
        targets: Tensor<2>,
    },
    /// Dissimilarity from the clean input's representation.
    Embedding(Distance),
    /// Σ weights · prototype activations per example (`[batch, prototypes]`): +1 raises a
    /// prototype, −1 suppresses it.
    Prototype(Tensor<2>),
}

/// A model attacks can differentiate through.
pub trait Attackable {
    /// Logits.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, classes]`
    fn logits(&self, x: Tensor<4>) -> Tensor<2>;

    /// The representation embedding-space attacks move: one vector per position.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, positions, channels]`
    fn representation(&self, x: Tensor<4>) -> Tensor<3>;

    /// Prototype activations, for models that have prototypes.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, prototypes]`
    fn prototype_activations(&self, _x: Tensor<4>) -> Option<Tensor<2>> {
        None
    }
}

impl Attackable for ConvNext {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn representation(&self, x: Tensor<4>) -> Tensor<3> {
        self.embedding(x).unsqueeze_dim(1)
    }
}

impl Attackable for AudioProtoPNet {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn representation(&self, x: Tensor<4>) -> Tensor<3> {
        let f = self.feature_map(x);
        let [b, c, h, w] = f.dims();
        f.reshape([b, c, h * w]).swap_dims(1, 2)
    }

    fn prototype_activations(&self, x: Tensor<4>) -> Option<Tensor<2>> {
        Some(self.forward_detail(x).activations)
    }
}

impl Attackable for Classifier {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }

    fn representation(&self, x: Tensor<4>) -> Tensor<3> {
        match self {
            Classifier::ConvNext(m) => m.representation(x),
            Classifier::ProtoPNet(m) => m.representation(x),
        }
    }

    fn prototype_activations(&self, x: Tensor<4>) -> Option<Tensor<2>> {
        match self {
            Classifier::ConvNext(_) => None,
            Classifier::ProtoPNet(m) => m.prototype_activations(x),
        }
    }
}

/// Why an attack could not run.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// ε, step or clamp range out of range.
    #[error("invalid attack: {0}")]
    Invalid(String),
    /// A prototype objective on a model without prototypes.
    #[error("this model has no prototypes to attack")]
    NoPrototypes,
}

/// The adversarial input and the objective along the way.
#[derive(Debug, Clone)]
pub struct AttackResult {
    /// x + δ, without autodiff.
    pub adversarial: Tensor<4>,
    /// The objective at the start and after every step (`steps + 1` values).
    pub trace: Vec<f64>,
}

/// Per-example L2 norm, broadcastable against the example.
///
/// # Shapes
/// `[batch, 1, m, f]` → `[batch, 1, 1, 1]`
fn example_norm(x: Tensor<4>) -> Tensor<4> {
    x.powi_scalar(2).sum_dims(&[1, 2, 3]).sqrt()
}

/// δ projected onto the ε-ball of `norm`.
fn project(delta: Tensor<4>, norm: Norm, eps: f64) -> Tensor<4> {
    match norm {
        Norm::Linf => delta.clamp(-eps, eps),
        Norm::L2 => {
            let scale = (example_norm(delta.clone()).clamp_min(1e-12).recip() * eps).clamp_max(1.0);
            delta * scale
        }
    }
}

/// A random point of the ε-ball: uniform per feature for L∞; for L2 a random direction
/// at a radius drawn uniformly from [0, ε] (a start uniform in volume would lie on the
/// surface in these dimensions, leaving no room to search).
fn random_start(like: &Tensor<4>, norm: Norm, eps: f64) -> Tensor<4> {
    match norm {
        Norm::Linf => like.random_like(Distribution::Uniform(-eps, eps)),
        Norm::L2 => {
            let dir = like.random_like(Distribution::Normal(0.0, 1.0));
            let [b, ..] = like.dims();
            let radius = Tensor::<4>::random(
                [b, 1, 1, 1],
                Distribution::Uniform(0.0, eps),
                &like.device(),
            );
            dir.clone() / example_norm(dir).clamp_min(1e-12) * radius
        }
    }
}

fn objective_value<M: Attackable>(
    model: &M,
    x: Tensor<4>,
    objective: &Objective,
    reference: Option<&Tensor<3>>,
) -> Result<Tensor<1>, AttackError> {
    Ok(match objective {
        Objective::Loss { loss, targets } => loss.loss(model.logits(x), targets.clone()),
        Objective::Embedding(distance) => {
            let r = model.representation(x);
            let Some(clean) = reference else {
                return Err(AttackError::Invalid("no clean representation".into()));
            };
            let clean = clean.clone();
            match distance {
                Distance::Cosine => {
                    let dot = (r.clone() * clean.clone()).sum_dim(2);
                    let norms = (r.powi_scalar(2).sum_dim(2) * clean.powi_scalar(2).sum_dim(2))
                        .sqrt()
                        .clamp_min(1e-12);
                    (dot / norms).neg().add_scalar(1.0).mean()
                }
                Distance::L2 => (r - clean).powi_scalar(2).sum_dim(2).sqrt().mean(),
            }
        }
        Objective::Prototype(weights) => {
            let acts = model
                .prototype_activations(x)
                .ok_or(AttackError::NoPrototypes)?;
            let [b, _] = acts.dims();
            (acts * weights.clone()).sum().div_scalar(b.max(1) as f64)
        }
    })
}

/// Runs an attack on `x` (`[batch, 1, n_mels, frames]`, without autodiff).
///
/// # Errors
/// A negative ε or step, an empty clamp range, or a prototype objective on a model
/// without prototypes.
pub fn attack<M: Attackable>(
    model: &M,
    x: &Tensor<4>,
    objective: &Objective,
    cfg: &AttackConfig,
) -> Result<AttackResult, AttackError> {
    let finite = |v: f64| v.is_finite() && v >= 0.0;
    if !(finite(cfg.eps) && finite(cfg.step)) {
        return Err(AttackError::Invalid(format!(
            "eps {} and step {} must be finite and non-negative",
            cfg.eps, cfg.step
        )));
    }
    if let Some((lo, hi)) = cfg.clamp
        && lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less)
    {
        return Err(AttackError::Invalid(format!(
            "clamp range [{lo}, {hi}] is empty"
        )));
    }
    let x = x.clone().without_autodiff();
    let reference = match objective {
        Objective::Embedding(_) => Some(model.representation(x.clone()).without_autodiff()),
        _ => None,
    };
    let bounded = |delta: Tensor<4>| -> Tensor<4> {
        let delta = project(delta, cfg.norm, cfg.eps);
        match cfg.clamp {
            Some((lo, hi)) => (x.clone() + delta).clamp(lo, hi) - x.clone(),
            None => delta,
        }
    };
    let mut delta = if cfg.random_start && cfg.eps > 0.0 {
        bounded(random_start(&x, cfg.norm, cfg.eps))
    } else {
        x.zeros_like()
    };
    let mut trace = Vec::with_capacity(cfg.steps + 1);
    for _ in 0..cfg.steps {
        let xa = (x.clone() + delta.clone()).autodiff().require_grad();
        let value = objective_value(model, xa.clone(), objective, reference.as_ref())?;
        let grads = value.backward();
        trace.push(f64::from(value.into_scalar::<f32>()));
        let Some(g) = xa.grad(&grads) else {
            return Err(AttackError::Invalid(
                "the input received no gradient".into(),
            ));
        };
        let g = g.without_autodiff();
        let move_by = match cfg.norm {
            Norm::Linf => g.sign() * cfg.step,
            Norm::L2 => g.clone() / example_norm(g).clamp_min(1e-12) * cfg.step,
        };
        delta = bounded(delta + move_by);
    }
    let adversarial = x.clone() + delta;
    let last = objective_value(model, adversarial.clone(), objective, reference.as_ref())?;
    trace.push(f64::from(last.into_scalar::<f32>()));
    Ok(AttackResult { adversarial, trace })
}

/// Prototype weights that raise, for each example, one prototype: `+1` at
/// `targets[i]`, zero elsewhere.
pub fn raise_prototypes(targets: &[usize], prototypes: usize, device: &Device) -> Tensor<2> {
    let mut w = vec![0f32; targets.len() * prototypes];
    for (i, &p) in targets.iter().enumerate() {
        if p < prototypes {
            w[i * prototypes + p] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(w, [targets.len(), prototypes]), device)
}

/// Prototype weights that suppress every prototype of each example's present classes:
/// `−1` on class c's K prototypes where `labels[i, c] > 0.5`.
pub fn suppress_true_class(labels: &[f32], classes: usize, k: usize, device: &Device) -> Tensor<2> {
    let n = labels.len() / classes.max(1);
    let mut w = vec![0f32; n * classes * k];
    for i in 0..n {
        for c in 0..classes {
            if labels[i * classes + c] > 0.5 {
                w[i * classes * k + c * k..i * classes * k + (c + 1) * k].fill(-1.0);
            }
        }
    }
    Tensor::from_data(TensorData::new(w, [n, classes * k]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::AslConfig;
    use crate::model::convnext::{ConvNextConfig, ConvNextSize};
    use crate::model::protopnet::ProtoPNetConfig;

    const CLASSES: usize = 3;

    /// The device's random generator is shared by the tests running in parallel: seeding
    /// and drawing happen under this lock so every test sees the same model and input.
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn input(device: &Device) -> Tensor<4> {
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(7);
        Tensor::<4>::random([2, 1, 64, 101], Distribution::Normal(0.0, 1.0), device)
    }

    fn targets(device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(vec![1f32, 0., 0., 0., 1., 0.], [2, CLASSES]),
            device,
        )
    }

    fn convnext(device: &Device) -> ConvNext {
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(3);
        ConvNextConfig::preset(ConvNextSize::Test, CLASSES).init(device)
    }

    fn protopnet(device: &Device) -> AudioProtoPNet {
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(3);
        ProtoPNetConfig::new(ConvNextConfig::preset(ConvNextSize::Test, CLASSES)).init(device)
    }

    fn values(x: Tensor<4>) -> Vec<f32> {
        x.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Per example: (max |δ|, ‖δ‖₂).
    fn delta_norms(x: &Tensor<4>, adv: &Tensor<4>) -> Vec<(f32, f32)> {
        let (a, b) = (values(x.clone()), values(adv.clone()));
        let per = a.len() / 2;
        (0..2)
            .map(|i| {
                let d: Vec<f32> = (i * per..(i + 1) * per).map(|j| b[j] - a[j]).collect();
                let linf = d.iter().fold(0f32, |m, v| m.max(v.abs()));
                let l2 = d.iter().map(|v| v * v).sum::<f32>().sqrt();
                (linf, l2)
            })
            .collect()
    }

    fn asl(device: &Device) -> Objective {
        Objective::Loss {
            loss: LossKind::Asl(AslConfig::default()),
            targets: targets(device),
        }
    }

    /// Small steps without a random start: gradient ascent on a smooth objective rises
    /// at every step when the steps are small against its curvature (ε/20 let a loss
    /// near its top overshoot on one initialisation in a CI run; ε/100 does not).
    fn small_steps(norm: Norm, eps: f64) -> AttackConfig {
        AttackConfig {
            norm,
            eps,
            step: eps / 100.0,
            steps: 8,
            random_start: false,
            clamp: None,
        }
    }

    fn assert_climbs(trace: &[f64], what: &str) {
        assert_eq!(trace.len(), 9, "{what}: {trace:?}");
        for w in trace.windows(2) {
            assert!(
                w[1] >= w[0] - 1e-6 * w[0].abs().max(1e-3),
                "{what} fell: {trace:?}"
            );
        }
        assert!(trace[8] > trace[0], "{what} did not rise: {trace:?}");
    }

    /// Prototype objectives are piecewise linear (ReLU, max over positions), so a sign
    /// step can overshoot a kink: they must rise overall and never fall by more than 2 %
    /// of the total rise.
    fn assert_rises(trace: &[f64], what: &str) {
        let rise = trace[trace.len() - 1] - trace[0];
        assert!(rise > 0.0, "{what} did not rise: {trace:?}");
        for w in trace.windows(2) {
            assert!(w[1] >= w[0] - 0.02 * rise, "{what} fell: {trace:?}");
        }
    }

    #[test]
    fn output_space_pgd_raises_the_loss_at_every_step() {
        let device = Device::flex();
        let (m, x) = (convnext(&device), input(&device));
        for norm in [Norm::Linf, Norm::L2] {
            let eps = if norm == Norm::Linf { 0.5 } else { 40.0 };
            let r = attack(&m, &x, &asl(&device), &small_steps(norm, eps)).unwrap();
            assert_climbs(&r.trace, &format!("ASL under {norm:?}"));
        }
    }

    #[test]
    fn embedding_space_pgd_raises_the_dissimilarity_at_every_step() {
        let device = Device::flex();
        let x = input(&device);
        let cnn = convnext(&device);
        let proto = protopnet(&device);
        for distance in [Distance::Cosine, Distance::L2] {
            let cfg = small_steps(Norm::Linf, 0.5);
            let r = attack(&cnn, &x, &Objective::Embedding(distance), &cfg).unwrap();
            assert!(
                r.trace[0].abs() < 1e-4,
                "starts at the clean embedding: {:?}",
                r.trace
            );
            assert_climbs(&r.trace, &format!("ConvNeXt {distance:?}"));
            let r = attack(&proto, &x, &Objective::Embedding(distance), &cfg).unwrap();
            assert_climbs(&r.trace, &format!("AudioProtoPNet {distance:?}"));
        }
    }

    #[test]
    fn targeted_prototype_attack_raises_the_chosen_prototype() {
        let device = Device::flex();
        let (m, x) = (protopnet(&device), input(&device));
        let before: Vec<f32> = m
            .forward_detail(x.clone())
            .activations
            .into_data()
            .try_to_vec()
            .unwrap();
        // Per example, the most active prototype of a class it does not hold (example 0
        // holds class 0, example 1 class 1): a prototype below the ReLU has no gradient
        // to follow, and which ones are depends on the random initialisation.
        let pick = |i: usize, absent: std::ops::Range<usize>| {
            absent
                .max_by(|&a, &b| before[i * 15 + a].total_cmp(&before[i * 15 + b]))
                .unwrap()
        };
        let targets = [pick(0, 5..15), pick(1, 10..15)];
        assert!(
            targets
                .iter()
                .enumerate()
                .all(|(i, &t)| before[i * 15 + t] > 0.0)
        );
        let weights = raise_prototypes(&targets, 15, &device);
        let r = attack(
            &m,
            &x,
            &Objective::Prototype(weights),
            &small_steps(Norm::Linf, 0.5),
        )
        .unwrap();
        assert_rises(&r.trace, "prototype raise");
        let after: Vec<f32> = m
            .forward_detail(r.adversarial)
            .activations
            .into_data()
            .try_to_vec()
            .unwrap();
        for (i, &t) in targets.iter().enumerate() {
            let (b, a) = (before[i * 15 + t], after[i * 15 + t]);
            assert!(a > b, "example {i}, prototype {t}: {b} → {a}");
        }
        // Suppressing the true classes lowers their summed activation (as true class, each
        // example's most active one, so that there is something to suppress).
        let mut labels = [0f32; 2 * CLASSES];
        for i in 0..2 {
            let sum = |c: usize| {
                before[i * 15 + c * 5..i * 15 + c * 5 + 5]
                    .iter()
                    .sum::<f32>()
            };
            let top = (0..CLASSES)
                .max_by(|&a, &b| sum(a).total_cmp(&sum(b)))
                .unwrap();
            assert!(sum(top) > 0.0);
            labels[i * CLASSES + top] = 1.0;
        }
        let weights = suppress_true_class(&labels, CLASSES, 5, &device);
        let r = attack(
            &m,
            &x,
            &Objective::Prototype(weights),
            &small_steps(Norm::Linf, 0.5),
        )
        .unwrap();
        assert_rises(&r.trace, "prototype suppress");
        // And the ConvNeXt has no prototypes to attack.
        let cnn = convnext(&device);
        let w = raise_prototypes(&[0, 0], 15, &device);
        assert!(matches!(
            attack(
                &cnn,
                &x,
                &Objective::Prototype(w),
                &small_steps(Norm::Linf, 0.5)
            ),
            Err(AttackError::NoPrototypes)
        ));
    }

    /// A linear model, `logits = flatten(x) · w`: its input gradients are known in closed
    /// form.
    struct LinearModel {
        w: Tensor<2>,
    }

    impl Attackable for LinearModel {
        fn logits(&self, x: Tensor<4>) -> Tensor<2> {
            let [b, c, h, w] = x.dims();
            x.reshape([b, c * h * w]).matmul(self.w.clone())
        }

        fn representation(&self, x: Tensor<4>) -> Tensor<3> {
            self.logits(x).unsqueeze_dim(1)
        }
    }

    #[test]
    fn fgsm_on_a_linear_model_takes_the_hand_computed_step() {
        let device = Device::flex();
        // 2 examples × 1×2×3 features, one class; example 0 is labelled present, 1 absent.
        let w = [0.5f32, -1.0, 2.0, -0.25, 0.0, 3.0];
        let xs = [
            0.1f32, 0.2, -0.3, 0.4, -0.5, 0.6, 1.0, -1.0, 0.5, 0.0, 0.25, -0.75,
        ];
        let model = LinearModel {
            w: Tensor::from_data(TensorData::new(w.to_vec(), [6, 1]), &device),
        };
        let x = Tensor::<4>::from_data(TensorData::new(xs.to_vec(), [2, 1, 2, 3]), &device);
        let targets = Tensor::from_data(TensorData::new(vec![1f32, 0.0], [2, 1]), &device);
        let eps = 0.1;
        let r = attack(
            &model,
            &x,
            &Objective::Loss {
                loss: LossKind::Bce,
                targets,
            },
            &AttackConfig::fgsm(eps),
        )
        .unwrap();
        // BCE: ∂L/∂x = (σ(z) − y)·w / n. Present (y = 1): the step is −ε·sign(w), which
        // lowers the logit; absent (y = 0): +ε·sign(w). A zero weight has no gradient.
        let sign = |v: f32| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        };
        let mut expect = Vec::new();
        for (i, &v) in xs.iter().enumerate() {
            let direction = if i < 6 { -1.0 } else { 1.0 };
            expect.push(v + direction * eps as f32 * sign(w[i % 6]));
        }
        let got = values(r.adversarial);
        for (g, e) in got.iter().zip(&expect) {
            assert!((g - e).abs() < 1e-6, "{got:?} vs {expect:?}");
        }
        // And the loss the trace ends at is the hand-computed BCE at x + δ.
        let bce = |z: f64, y: f64| {
            -(y * (1.0 / (1.0 + (-z).exp())).ln() + (1.0 - y) * (1.0 / (1.0 + z.exp())).ln())
        };
        let z = |e: &[f32]| -> f64 { e.iter().zip(&w).map(|(a, b)| f64::from(a * b)).sum() };
        let want = (bce(z(&expect[..6]), 1.0) + bce(z(&expect[6..]), 0.0)) / 2.0;
        let last = *r.trace.last().unwrap();
        assert!((last - want).abs() < 1e-5, "{last} vs {want}");
    }

    /// `x + ε·sign(noise)` for a random sign pattern: a blind perturbation of the same
    /// L∞ size as an attack's.
    fn random_signs(x: &Tensor<4>, eps: f64) -> Tensor<4> {
        let device = x.device();
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(11);
        let noise = Tensor::<4>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
        x.clone() + noise.sign() * eps
    }

    #[test]
    fn pgd_does_better_than_random_noise_of_the_same_size() {
        let value = |t: Tensor<1>| f64::from(t.into_scalar::<f32>());
        let device = Device::flex();
        let (m, x) = (convnext(&device), input(&device));
        let eps = 0.1;
        let bce = Objective::Loss {
            loss: LossKind::Bce,
            targets: targets(&device),
        };
        let pgd = attack(&m, &x, &bce, &AttackConfig::pgd(Norm::Linf, eps, 10)).unwrap();
        let clean = value(objective_value(&m, x.clone(), &bce, None).unwrap());
        let attacked = *pgd.trace.last().unwrap();
        let blind = value(objective_value(&m, random_signs(&x, eps), &bce, None).unwrap());
        assert!(
            attacked - clean > 2.0 * (blind - clean).abs().max(1e-6),
            "PGD raised BCE by {} from {clean}, random signs moved it by {}",
            attacked - clean,
            blind - clean
        );
        // The embedding attack: its dissimilarity beats a random direction of equal size
        // (for which 1 − cos is not 0 either).
        let embedding = Objective::Embedding(Distance::Cosine);
        let r = attack(&m, &x, &embedding, &AttackConfig::pgd(Norm::Linf, eps, 10)).unwrap();
        let attacked = *r.trace.last().unwrap();
        let clean = m.representation(x.clone());
        let moved = random_signs(&x, eps);
        let blind = value(objective_value(&m, moved, &embedding, Some(&clean)).unwrap());
        assert!(
            attacked > 2.0 * blind.max(1e-9),
            "embedding PGD reached 1 − cos = {attacked}, random signs {blind}"
        );
    }

    #[test]
    fn perturbations_stay_in_the_ball() {
        let device = Device::flex();
        let (m, x) = (convnext(&device), input(&device));
        let eps = 0.3;
        for cfg in [
            AttackConfig::fgsm(eps),
            AttackConfig::pgd(Norm::Linf, eps, 5),
        ] {
            let r = attack(&m, &x, &asl(&device), &cfg).unwrap();
            for (linf, _) in delta_norms(&x, &r.adversarial) {
                assert!(linf <= eps as f32 + 1e-5, "{cfg:?}: {linf}");
                assert!(linf > 0.5 * eps as f32, "{cfg:?} barely moved: {linf}");
            }
        }
        let eps2 = 5.0;
        let r = attack(&m, &x, &asl(&device), &AttackConfig::pgd(Norm::L2, eps2, 5)).unwrap();
        for (_, l2) in delta_norms(&x, &r.adversarial) {
            assert!(l2 <= eps2 as f32 * (1.0 + 1e-4), "{l2}");
            assert!(l2 > 0.5 * eps2 as f32, "{l2}");
        }
        // Clamping keeps x + δ in range.
        let cfg = AttackConfig {
            clamp: Some((-1.0, 1.0)),
            ..AttackConfig::pgd(Norm::Linf, 0.5, 3)
        };
        let adv = values(
            attack(&m, &x.clone().clamp(-1.0, 1.0), &asl(&device), &cfg)
                .unwrap()
                .adversarial,
        );
        assert!(adv.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn zero_epsilon_is_the_identity() {
        let device = Device::flex();
        let (m, x) = (protopnet(&device), input(&device));
        let clean = values(x.clone());
        for cfg in [
            AttackConfig::fgsm(0.0),
            AttackConfig::pgd(Norm::Linf, 0.0, 4),
            AttackConfig::pgd(Norm::L2, 0.0, 4),
        ] {
            for objective in [asl(&device), Objective::Embedding(Distance::Cosine)] {
                let r = attack(&m, &x, &objective, &cfg).unwrap();
                assert_eq!(values(r.adversarial), clean, "{cfg:?}");
            }
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let device = Device::flex();
        let (m, x) = (convnext(&device), input(&device));
        for cfg in [
            AttackConfig::fgsm(-0.1),
            AttackConfig::fgsm(f64::NAN),
            AttackConfig {
                clamp: Some((1.0, -1.0)),
                ..AttackConfig::fgsm(0.1)
            },
        ] {
            assert!(matches!(
                attack(&m, &x, &asl(&device), &cfg),
                Err(AttackError::Invalid(_))
            ));
        }
    }
}
