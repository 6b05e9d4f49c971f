//! Prototype stability of AudioProtoPNet under targeted embedding-space attacks: how much
//! an attacker can move what the model "sees" in a clip, prototype by prototype.
//!
//! Two targeted attacks (PGD on the prototype activations, see [`crate::attack`]):
//!
//! - **raise**: for each clip, one prototype of a class the clip does not contain (a class
//!   drawn per clip from the seed; its most active prototype on the clean clip) is driven
//!   up. Success: it becomes the clip's most activated prototype.
//! - **suppress**: every prototype of the clip's own classes is driven down. Success: the
//!   top-scoring class is no longer one of the clip's classes (clips without a call are
//!   left out).
//!
//! Measures, averaged over clips: the mean absolute change of every prototype's maximum
//! activation; the change of the attacked prototypes' activation; for the clean top-k
//! prototypes, the mean absolute rank change, the share still in the top k, the share whose
//! most similar position moved and the mean distance it moved (in cells of the upsampled
//! feature map); and the success rate.

use std::path::Path;

use burn::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::attack::{
    AttackConfig, AttackError, Objective, attack, raise_prototypes, suppress_true_class,
};
use crate::data::loader::FeatureSet;
use crate::model::protopnet::{AudioProtoPNet, ProtoOutput};
use crate::plot::{self, Panel};

/// The targeted attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Targeted {
    /// Raise an absent class's prototype.
    Raise,
    /// Suppress the present classes' prototypes.
    Suppress,
}

impl Targeted {
    /// Both attacks.
    pub const ALL: [Targeted; 2] = [Targeted::Raise, Targeted::Suppress];

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Targeted::Raise => "raise",
            Targeted::Suppress => "suppress",
        }
    }
}

/// Stability under one targeted attack at one radius.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    /// Which model (a run name), for comparisons.
    pub model: String,
    /// Test set.
    pub set: String,
    /// The attack.
    pub attack: Targeted,
    /// L∞ radius (standardised feature units).
    pub eps: f64,
    /// Clips measured.
    pub clips: usize,
    /// Mean |Δ max activation| over all prototypes.
    pub activation_change: f64,
    /// Mean Δ max activation of the attacked prototypes (raise: up; suppress: down).
    pub target_change: f64,
    /// Mean |rank change| of the clean top-k prototypes.
    pub top_k_rank_change: f64,
    /// Share of the clean top-k prototypes still in the top k.
    pub top_k_kept: f64,
    /// Share of the clean top-k prototypes whose most similar position moved.
    pub argmax_moved: f64,
    /// Mean distance the clean top-k prototypes' most similar position moved (map cells).
    pub argmax_shift: f64,
    /// Share of clips where the attack reached its goal.
    pub success_rate: f64,
}

/// Per clip: activations `[P]`, argmax positions `[P]`, logits `[C]`.
struct Detail {
    acts: Vec<f32>,
    pos: Vec<i64>,
    logits: Vec<f32>,
    shape: (usize, usize),
}

fn detail(out: ProtoOutput) -> Result<Detail, AttackError> {
    let read = |e: burn::tensor::DataError| AttackError::Invalid(format!("{e:?}"));
    let pos = AudioProtoPNet::argmax_positions(&out)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(read)?;
    Ok(Detail {
        acts: out
            .activations
            .into_data()
            .try_to_vec::<f32>()
            .map_err(read)?,
        logits: out.logits.into_data().try_to_vec::<f32>().map_err(read)?,
        pos,
        shape: out.map_shape,
    })
}

/// Prototype indices of one clip, most activated first.
fn ranking(acts: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..acts.len()).collect();
    order.sort_by(|&a, &b| acts[b].total_cmp(&acts[a]).then(a.cmp(&b)));
    order
}

fn argmax(v: &[f32]) -> usize {
    ranking(v).first().copied().unwrap_or(0)
}

/// The prototype each clip's raise attack targets: the most active clean prototype of a
/// class the clip lacks, the class drawn from `seed` and the clip's index; `None` when
/// the clip holds every class.
fn raise_target(labels: &[f32], acts: &[f32], k: usize, rng: &mut ChaCha8Rng) -> Option<usize> {
    let absent: Vec<usize> = (0..labels.len()).filter(|&c| labels[c] <= 0.5).collect();
    if absent.is_empty() {
        return None;
    }
    let class = absent[rng.random_range(0..absent.len())];
    (class * k..(class + 1) * k).max_by(|&a, &b| acts[a].total_cmp(&acts[b]))
}

#[derive(Default)]
struct Sums {
    clips: usize,
    activation: f64,
    target: f64,
    rank: f64,
    kept: f64,
    moved: f64,
    shift: f64,
    success: f64,
}

/// Measures `model`'s prototype stability on `set` under each targeted attack and radius;
/// the attack's `eps` and `step` are scaled to each radius. `on_batch` ticks per attacked
/// batch.
///
/// # Errors
/// An invalid attack setting.
#[allow(
    clippy::too_many_arguments,
    reason = "a study's parameters; bundling them would only rename them"
)]
pub fn stability(
    model: &AudioProtoPNet,
    set: &FeatureSet,
    (model_name, set_name): (&str, &str),
    attack_cfg: &AttackConfig,
    eps: &[f64],
    top_k: usize,
    (batch_size, seed): (usize, u64),
    device: &Device,
    on_batch: &dyn Fn(),
) -> Result<Vec<Stability>, AttackError> {
    let (m, f) = set.shape;
    let features = m * f;
    let k = model.prototypes_per_class();
    let classes = set.classes;
    let mut sums: Vec<Sums> = (0..Targeted::ALL.len() * eps.len())
        .map(|_| Sums::default())
        .collect();
    let batch = batch_size.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for start in (0..set.n).step_by(batch) {
        let end = (start + batch).min(set.n);
        let n = end - start;
        let labels = &set.y[start * classes..end * classes];
        let x = Tensor::<4>::from_data(
            TensorData::new(
                set.x[start * features..end * features].to_vec(),
                [n, 1, m, f],
            ),
            device,
        );
        let clean = detail(model.forward_detail(x.clone()))?;
        let p = clean.acts.len() / n.max(1);
        let targets: Vec<Option<usize>> = (0..n)
            .map(|i| {
                raise_target(
                    &labels[i * classes..(i + 1) * classes],
                    &clean.acts[i * p..(i + 1) * p],
                    k,
                    &mut rng,
                )
            })
            .collect();
        for (a, kind) in Targeted::ALL.into_iter().enumerate() {
            let weights = match kind {
                Targeted::Raise => raise_prototypes(
                    &targets
                        .iter()
                        .map(|t| t.unwrap_or(usize::MAX))
                        .collect::<Vec<_>>(),
                    p,
                    device,
                ),
                Targeted::Suppress => suppress_true_class(labels, classes, k, device),
            };
            for (e, &radius) in eps.iter().enumerate() {
                let cfg = attack_cfg.with_eps(radius);
                let adv = attack(model, &x, &Objective::Prototype(weights.clone()), &cfg)?;
                let attacked = detail(model.forward_detail(adv.adversarial))?;
                on_batch();
                let s = &mut sums[a * eps.len() + e];
                for i in 0..n {
                    let (ca, aa) = (
                        &clean.acts[i * p..(i + 1) * p],
                        &attacked.acts[i * p..(i + 1) * p],
                    );
                    let row = &labels[i * classes..(i + 1) * classes];
                    let attacked_protos: Vec<usize> = match kind {
                        Targeted::Raise => targets[i].into_iter().collect(),
                        Targeted::Suppress => (0..classes)
                            .filter(|&c| row[c] > 0.5)
                            .flat_map(|c| c * k..(c + 1) * k)
                            .collect(),
                    };
                    if attacked_protos.is_empty() {
                        continue;
                    }
                    s.clips += 1;
                    s.activation += ca
                        .iter()
                        .zip(aa)
                        .map(|(c, a)| f64::from((a - c).abs()))
                        .sum::<f64>()
                        / p as f64;
                    s.target += attacked_protos
                        .iter()
                        .map(|&j| f64::from(aa[j] - ca[j]))
                        .sum::<f64>()
                        / attacked_protos.len() as f64;
                    let (rc, ra) = (ranking(ca), ranking(aa));
                    let mut rank_of = vec![0usize; p];
                    for (r, &j) in ra.iter().enumerate() {
                        rank_of[j] = r;
                    }
                    let top = top_k.min(p).max(1);
                    let cols = clean.shape.1.max(1) as i64;
                    for (r, &j) in rc.iter().take(top).enumerate() {
                        s.rank += rank_of[j].abs_diff(r) as f64 / top as f64;
                        s.kept += f64::from(u8::from(rank_of[j] < top)) / top as f64;
                        let (pc, pa) = (clean.pos[i * p + j], attacked.pos[i * p + j]);
                        if pc != pa {
                            s.moved += 1.0 / top as f64;
                            let (dy, dx) = (
                                (pc / cols - pa / cols) as f64,
                                (pc % cols - pa % cols) as f64,
                            );
                            s.shift += dy.hypot(dx) / top as f64;
                        }
                    }
                    let success = match kind {
                        Targeted::Raise => targets[i].is_some_and(|t| ra.first() == Some(&t)),
                        Targeted::Suppress => {
                            row[argmax(&attacked.logits[i * classes..(i + 1) * classes])] <= 0.5
                        }
                    };
                    s.success += f64::from(u8::from(success));
                }
            }
        }
    }
    let mut results = Vec::new();
    for (a, kind) in Targeted::ALL.into_iter().enumerate() {
        for (e, &radius) in eps.iter().enumerate() {
            let s = &sums[a * eps.len() + e];
            let n = s.clips.max(1) as f64;
            results.push(Stability {
                model: model_name.to_owned(),
                set: set_name.to_owned(),
                attack: kind,
                eps: radius,
                clips: s.clips,
                activation_change: s.activation / n,
                target_change: s.target / n,
                top_k_rank_change: s.rank / n,
                top_k_kept: s.kept / n,
                argmax_moved: s.moved / n,
                argmax_shift: s.shift / n,
                success_rate: s.success / n,
            });
        }
    }
    Ok(results)
}

/// Draws one clip clean and under the raise attack: the spectrograms, then for the
/// clean top-3 prototypes and the attacked one, their similarity maps over the
/// spectrogram, clean (left) and attacked (right), each prototype on one colour scale.
///
/// # Errors
/// An invalid attack or an unwritable file.
pub fn picture(
    model: &AudioProtoPNet,
    clip: &[f32],
    labels: &[f32],
    (n_mels, frames): (usize, usize),
    attack_cfg: &AttackConfig,
    seed: u64,
    path: &Path,
) -> anyhow::Result<()> {
    let device = Device::flex();
    let x = Tensor::<4>::from_data(
        TensorData::new(clip.to_vec(), [1, 1, n_mels, frames]),
        &device,
    );
    let clean_out = model.forward_detail(x.clone());
    let clean_sim: Vec<f32> = clean_out
        .similarity
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let clean = detail(clean_out)?;
    let p = clean.acts.len();
    let k = model.prototypes_per_class();
    let target = raise_target(labels, &clean.acts, k, &mut ChaCha8Rng::seed_from_u64(seed))
        .ok_or_else(|| anyhow::anyhow!("the clip holds every class: nothing to raise"))?;
    let weights = raise_prototypes(&[target], p, &device);
    let adv = attack(model, &x, &Objective::Prototype(weights), attack_cfg)?.adversarial;
    let adv_clip: Vec<f32> = adv
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let adv_out = model.forward_detail(adv);
    let adv_sim: Vec<f32> = adv_out
        .similarity
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (h, w) = clean.shape;
    let cells = h * w;
    let mut shown: Vec<usize> = ranking(&clean.acts).into_iter().take(3).collect();
    if !shown.contains(&target) {
        shown.push(target);
    }
    let mut rows = vec![vec![
        Panel {
            features: clip,
            map: None,
        },
        Panel {
            features: &adv_clip,
            map: None,
        },
    ]];
    for &j in &shown {
        let (c, a) = (
            &clean_sim[j * cells..(j + 1) * cells],
            &adv_sim[j * cells..(j + 1) * cells],
        );
        let range = c
            .iter()
            .chain(a)
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        rows.push(vec![
            Panel {
                features: clip,
                map: Some((c, h, w, range)),
            },
            Panel {
                features: &adv_clip,
                map: Some((a, h, w, range)),
            },
        ]);
    }
    plot::panels_png(path, &rows, n_mels, 2)?;
    Ok(())
}
