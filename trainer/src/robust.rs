//! Robustness evaluation: BirdSet's metrics on a test set under each attack, over a grid
//! of ε, with a table (JSON, CSV) and a metric-versus-ε chart per set.
//!
//! ε is given per feature (standardised units) for every attack, so one grid serves them
//! all: an L2 attack gets the radius ε · √(n_mels · frames), the L2 length of an L∞
//! perturbation of ε on every feature. Output-space attacks maximise the run's own
//! training loss against the true labels; the embedding attack maximises 1 − cos of the
//! representation (see [`crate::attack`]).

use std::fs;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

use crate::attack::{AttackConfig, AttackError, Distance, Norm, Objective, attack};
use crate::data::loader::FeatureSet;
use crate::loss::LossKind;
use crate::metrics::{Metrics, evaluate, restrict_to_present};
use crate::model::Classifier;
use crate::plot;

/// The attacks of a robustness evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// One L∞ step of size ε.
    Fgsm,
    /// PGD under L∞ (random start, step 2.5·ε/steps).
    PgdLinf,
    /// PGD under L2 (radius ε·√features).
    PgdL2,
    /// Embedding-space PGD under L∞, maximising 1 − cos of the representation.
    Embedding,
}

impl AttackKind {
    /// Every attack.
    pub const ALL: [AttackKind; 4] = [
        AttackKind::Fgsm,
        AttackKind::PgdLinf,
        AttackKind::PgdL2,
        AttackKind::Embedding,
    ];

    /// Name in tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Fgsm => "fgsm",
            AttackKind::PgdLinf => "pgd-linf",
            AttackKind::PgdL2 => "pgd-l2",
            AttackKind::Embedding => "embedding",
        }
    }

    /// The attack at per-feature radius `eps` on inputs of `features` values.
    pub fn config(self, eps: f64, steps: usize, features: usize) -> AttackConfig {
        match self {
            AttackKind::Fgsm => AttackConfig::fgsm(eps),
            AttackKind::PgdLinf | AttackKind::Embedding => {
                AttackConfig::pgd(Norm::Linf, eps, steps)
            }
            AttackKind::PgdL2 => AttackConfig::pgd(Norm::L2, eps * (features as f64).sqrt(), steps),
        }
    }

    fn objective(self, loss: LossKind, targets: Tensor<2>) -> Objective {
        match self {
            AttackKind::Embedding => Objective::Embedding(Distance::Cosine),
            _ => Objective::Loss { loss, targets },
        }
    }
}

/// What the output-space attacks (FGSM, PGD) climb.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AttackObjective {
    /// The run's training loss. With ASL, easy negatives (p < 0.05) give no gradient at
    /// all, so the attack mostly suppresses present species and seldom creates a false
    /// alarm.
    #[default]
    Training,
    /// Binary cross-entropy: every class pushes (∂/∂z = p for a negative), so the attack
    /// raises absent species as well — the stronger evaluation.
    Bce,
}

/// What to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessConfig {
    /// Attacks.
    pub attacks: Vec<AttackKind>,
    /// Per-feature radii (0 is the clean model).
    pub eps: Vec<f64>,
    /// PGD steps.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// What the output-space attacks climb (absent in older reports: the training loss).
    #[serde(default)]
    pub objective: AttackObjective,
}

/// Metrics under one attack at one radius.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustPoint {
    /// Which model (a run name), for comparisons.
    pub model: String,
    /// Test set.
    pub set: String,
    /// Attack.
    pub attack: AttackKind,
    /// Per-feature radius.
    pub eps: f64,
    /// The radius in the attack's own norm.
    pub radius: f64,
    /// Metrics on the attacked set, scored within the set's label space.
    pub metrics: Metrics,
}

fn probabilities(logits: Tensor<2>) -> Result<Vec<f32>, AttackError> {
    sigmoid(logits)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| AttackError::Invalid(format!("reading scores: {e:?}")))
}

/// Evaluates `model` on `set` under every attack and radius of `cfg`; `on_batch` ticks
/// once per attacked batch.
///
/// # Errors
/// An invalid attack setting.
pub fn robustness(
    model: &Classifier,
    set: &FeatureSet,
    (model_name, set_name): (&str, &str),
    loss: &LossKind,
    cfg: &RobustnessConfig,
    device: &Device,
    on_batch: &dyn Fn(),
) -> Result<Vec<RobustPoint>, AttackError> {
    let (m, f) = set.shape;
    let features = m * f;
    let radii: Vec<f64> = cfg.eps.iter().copied().filter(|&e| e > 0.0).collect();
    let runs = cfg.attacks.len() * radii.len();
    let mut clean = Vec::with_capacity(set.n * set.classes);
    let mut attacked: Vec<Vec<f32>> = vec![Vec::with_capacity(set.n * set.classes); runs];
    let batch = cfg.batch_size.max(1);
    for start in (0..set.n).step_by(batch) {
        let end = (start + batch).min(set.n);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                set.x[start * features..end * features].to_vec(),
                [end - start, 1, m, f],
            ),
            device,
        );
        let y = Tensor::<2>::from_data(
            TensorData::new(
                set.y[start * set.classes..end * set.classes].to_vec(),
                [end - start, set.classes],
            ),
            device,
        );
        clean.extend(probabilities(model.forward(x.clone()))?);
        for (a, kind) in cfg.attacks.iter().enumerate() {
            for (r, &eps) in radii.iter().enumerate() {
                let climbed = match cfg.objective {
                    AttackObjective::Training => *loss,
                    AttackObjective::Bce => LossKind::Bce,
                };
                let objective = kind.objective(climbed, y.clone());
                let adv = attack(
                    model,
                    &x,
                    &objective,
                    &kind.config(eps, cfg.steps, features),
                )?;
                attacked[a * radii.len() + r]
                    .extend(probabilities(model.forward(adv.adversarial))?);
                on_batch();
            }
        }
    }
    let metrics = |scores: &[f32]| {
        let (s, t, present) = restrict_to_present(scores, &set.y, set.classes);
        evaluate(&s, &t, present.len())
    };
    let clean_metrics = metrics(&clean);
    let mut points = Vec::new();
    for (a, &kind) in cfg.attacks.iter().enumerate() {
        let point = |eps: f64, metrics: Metrics| RobustPoint {
            model: model_name.to_owned(),
            set: set_name.to_owned(),
            attack: kind,
            eps,
            radius: kind.config(eps, cfg.steps, features).eps,
            metrics,
        };
        if cfg.eps.contains(&0.0) {
            points.push(point(0.0, clean_metrics));
        }
        for (r, &eps) in radii.iter().enumerate() {
            points.push(point(eps, metrics(&attacked[a * radii.len() + r])));
        }
    }
    Ok(points)
}

/// Writes `robust.json`, `robust.csv` and, per set, `robust-<set>.svg` (cmAP against ε,
/// one line per model and attack) into `dir`.
///
/// # Errors
/// The files cannot be written.
pub fn write_report(dir: &Path, points: &[RobustPoint]) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(
        dir.join("robust.json"),
        serde_json::to_string_pretty(points)?,
    )?;
    let mut csv = csv::Writer::from_path(dir.join("robust.csv"))?;
    csv.write_record([
        "model",
        "set",
        "attack",
        "eps",
        "radius",
        "cmap",
        "auroc",
        "top1",
        "micro_map",
    ])?;
    for p in points {
        csv.write_record([
            p.model.clone(),
            p.set.clone(),
            p.attack.name().to_owned(),
            p.eps.to_string(),
            p.radius.to_string(),
            format!("{:.6}", p.metrics.cmap),
            format!("{:.6}", p.metrics.auroc),
            format!("{:.6}", p.metrics.top1),
            format!("{:.6}", p.metrics.micro_map),
        ])?;
    }
    csv.flush()?;
    let mut sets: Vec<&str> = points.iter().map(|p| p.set.as_str()).collect();
    sets.dedup();
    for set in sets {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for p in points.iter().filter(|p| p.set == set) {
            let name = if p.model.is_empty() {
                p.attack.name().to_owned()
            } else {
                format!("{} {}", p.model, p.attack.name())
            };
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, pts)) => pts.push((p.eps, p.metrics.cmap)),
                None => series.push((name, vec![(p.eps, p.metrics.cmap)])),
            }
        }
        let series: Vec<plot::Series<'_>> = series
            .iter()
            .map(|(n, pts)| (n.as_str(), pts.clone()))
            .collect();
        plot::line_chart_svg(
            &dir.join(format!("robust-{set}.svg")),
            &format!("{set}: cmAP under attack"),
            "epsilon (standardised feature units, per feature)",
            "cmAP",
            &series,
        )?;
    }
    Ok(())
}
