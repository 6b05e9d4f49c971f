//! The training loop, written out step by step (burn's custom-loop style) so that the
//! adversarial inner step has an obvious place to go.
//!
//! A run directory holds everything needed to evaluate and export the model:
//!
//! ```text
//! config.json        the TrainConfig (data, front end, model, loss, schedule, seed)
//! frontend.json      the front-end config (warble.frontend/1)
//! labels.csv         the label table
//! model.json         the model config
//! metrics.jsonl      one line per epoch: train loss, validation loss and metrics, lr, time
//! curves.svg         training and validation loss per epoch
//! valid-metrics.svg  validation cmAP, AUROC and top-1 per epoch
//! best.bpk           weights with the lowest validation loss (burnpack)
//! last.bpk           weights after the last finished epoch
//! state.json         last finished epoch and best validation loss (for --resume)
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::module::ParamId;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};
use warble_core::FrontEndConfig;
use warble_core::labels::LabelTable;

use crate::attack::{AttackConfig, Distance, Norm, Objective, attack};
use crate::data::augment::AugmentConfig;
use crate::data::batcher::TrainLoader;
use crate::data::loader::{self, Crop, FeatureSet};
use crate::data::manifest::Manifest;
use crate::loss::LossKind;
use crate::metrics::{Metrics, evaluate};
use crate::model::Classifier;
use crate::model::convnext::ConvNextConfig;
use crate::model::protopnet::ProtoPNetConfig;
use crate::plot;
use crate::schedule::cosine_with_warmup;

/// Everything that defines a training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset folder with `labels.csv`, `train.csv` and `valid.csv`.
    pub data: PathBuf,
    /// Front end.
    pub frontend: FrontEndConfig,
    /// Model window, s.
    pub window_s: f64,
    /// Model.
    pub model: ConvNextConfig,
    /// Loss.
    pub loss: LossKind,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// AdamW epsilon (burn's default 1e-5 differs from PyTorch's 1e-8).
    pub adam_eps: f32,
    /// Fraction of the steps spent warming up linearly.
    pub warmup: f64,
    /// Gradient-norm clipping (per parameter tensor in burn), `None` to disable.
    pub grad_clip: Option<f32>,
    /// Augmentations.
    pub augment: AugmentConfig,
    /// Seed for initialisation, crops, augmentation and shuffling.
    pub seed: u64,
    /// Cache decoded audio under the run directory.
    pub cache_audio: bool,
    /// Leave out bad manifest rows (each reported through [`TrainEvent::Skipped`])
    /// instead of stopping at the first.
    #[serde(default)]
    pub skip_bad: bool,
    /// Adversarial training (off unless set).
    #[serde(default)]
    pub adversarial: AdversarialConfig,
    /// Train an AudioProtoPNet on the ConvNeXt of `model` instead of the ConvNeXt itself.
    #[serde(default)]
    pub protopnet: Option<ProtoTraining>,
}

impl TrainConfig {
    /// The AudioProtoPNet configuration, for AudioProtoPNet runs.
    pub fn protopnet_config(&self) -> Option<ProtoPNetConfig> {
        self.protopnet.as_ref().map(|p| {
            ProtoPNetConfig::new(self.model.clone())
                .with_prototypes_per_class(p.prototypes_per_class)
        })
    }

    /// A freshly initialised model of this run's architecture.
    pub fn init_model(&self, device: &Device) -> Classifier {
        match self.protopnet_config() {
            Some(p) => Classifier::ProtoPNet(p.init(device)),
            None => Classifier::ConvNext(self.model.init(device)),
        }
    }
}

/// How an AudioProtoPNet is trained (the paper's recipe as defaults): prototypes and the
/// last layer learn at their own rates on a frozen, pretrained ConvNeXt backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtoTraining {
    /// Run directory of the pretrained ConvNeXt whose best weights become the backbone
    /// (same labels and front end); `None` starts from a random backbone, which then
    /// has to be trained.
    pub backbone_run: Option<PathBuf>,
    /// Train the backbone too (at the run's `lr`), instead of freezing it.
    pub train_backbone: bool,
    /// Prototypes per class (the paper: 5).
    pub prototypes_per_class: usize,
    /// Prototypes' peak learning rate (no weight decay; the paper: 0.05).
    pub prototype_lr: f64,
    /// Last layer's peak learning rate (the run's weight decay; the paper: 5e-4).
    pub last_layer_lr: f64,
    /// Weight of the orthogonality penalty (the paper: 1.0).
    pub orthogonality_weight: f64,
}

impl Default for ProtoTraining {
    fn default() -> Self {
        Self {
            backbone_run: None,
            train_backbone: false,
            prototypes_per_class: 5,
            prototype_lr: 0.05,
            last_layer_lr: 5e-4,
            orthogonality_weight: 1.0,
        }
    }
}

/// Which adversarial examples training sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AdversarialMode {
    /// Standard training.
    None,
    /// Output space: examples that maximise the training loss against the true labels.
    Output,
    /// Embedding space: examples that maximise the dissimilarity of the embedding from
    /// the clean one (labels are not used to make them).
    Embedding,
}

/// Adversarial training settings. The paper does not publish its attack
/// hyper-parameters; these defaults are ours (docs/adversarial.md).
///
/// Each step, the attack runs on the current weights without autodiff (eval mode; our
/// models have no dropout or batch statistics, so train and eval mode compute the same
/// function) and the loss is `(1 − ratio) · L(x) + ratio · L(x_adv)` against the true
/// labels in both modes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdversarialConfig {
    /// Output space, embedding space, or none.
    pub mode: AdversarialMode,
    /// The attack that makes the examples.
    pub attack: AttackConfig,
    /// Dissimilarity for embedding-space examples.
    pub distance: Distance,
    /// Weight of the adversarial loss, in [0, 1].
    pub ratio: f64,
    /// First epoch (0-based) that sees adversarial examples; the ones before warm up on
    /// clean data.
    pub start_epoch: usize,
}

impl Default for AdversarialConfig {
    fn default() -> Self {
        Self {
            mode: AdversarialMode::None,
            attack: AttackConfig::pgd(Norm::Linf, 0.1, 3),
            distance: Distance::Cosine,
            ratio: 0.5,
            start_epoch: 1,
        }
    }
}

impl AdversarialConfig {
    /// Checks the ranges that serde cannot.
    ///
    /// # Errors
    /// A ratio outside [0, 1], a negative or non-finite ε or step.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.ratio) {
            bail!("adversarial ratio {} must lie in [0, 1]", self.ratio);
        }
        let a = &self.attack;
        if !(a.eps.is_finite() && a.eps >= 0.0 && a.step.is_finite() && a.step >= 0.0) {
            bail!(
                "attack eps {} and step {} must be finite and non-negative",
                a.eps,
                a.step
            );
        }
        Ok(())
    }

    /// Whether epoch `epoch` trains on adversarial examples.
    pub fn active(&self, epoch: usize) -> bool {
        self.mode != AdversarialMode::None && epoch >= self.start_epoch && self.ratio > 0.0
    }
}

/// One epoch's record in `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub valid_loss: f64,
    /// Validation metrics.
    pub valid: Metrics,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the epoch, s.
    pub seconds: f64,
    /// Whether this epoch gave the best validation loss so far.
    pub best: bool,
    /// Mean loss on the clean inputs, for adversarially trained epochs that use them.
    #[serde(default)]
    pub train_clean_loss: Option<f64>,
    /// Mean loss on the adversarial examples, for adversarially trained epochs.
    #[serde(default)]
    pub train_adversarial_loss: Option<f64>,
}

/// Resume state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    last_epoch: usize,
    best_valid_loss: f64,
}

/// Progress events for a user interface.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// A training step finished.
    Step {
        /// Epoch.
        epoch: usize,
        /// Step within the epoch.
        step: usize,
        /// Steps per epoch.
        steps: usize,
        /// The batch loss.
        loss: f64,
    },
    /// An epoch finished.
    Epoch(EpochRecord),
    /// Manifest rows left out with `skip_bad`, each with file, line and reason.
    Skipped(Vec<crate::data::manifest::ManifestError>),
}

/// Input and target tensors from row-major features `(n, n_mels, frames)` and targets
/// `(n, classes)`, taking ownership so no copy is made.
fn tensors(
    x: Vec<f32>,
    y: Vec<f32>,
    n: usize,
    (m, f): (usize, usize),
    device: &Device,
) -> (Tensor<4>, Tensor<2>) {
    let classes = y.len() / n.max(1);
    let x = Tensor::from_data(TensorData::new(x, [n, 1, m, f]), device);
    let y = Tensor::from_data(TensorData::new(y, [n, classes]), device);
    (x, y)
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    fs::write(path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Scores (sigmoid probabilities) and the mean loss of a model over a feature set, in
/// batches, without gradients.
pub fn score(
    model: &Classifier,
    set: &FeatureSet,
    loss: &LossKind,
    batch_size: usize,
    device: &Device,
) -> anyhow::Result<(Vec<f32>, f64)> {
    let (mut scores, mut loss_sum) = (Vec::with_capacity(set.n * set.classes), 0.0);
    for start in (0..set.n).step_by(batch_size.max(1)) {
        let end = (start + batch_size).min(set.n);
        let (m, f) = set.shape;
        let (x, y) = tensors(
            set.x[start * m * f..end * m * f].to_vec(),
            set.y[start * set.classes..end * set.classes].to_vec(),
            end - start,
            set.shape,
            device,
        );
        let logits = model.forward(x);
        let l: f32 = loss.loss(logits.clone(), y).into_scalar::<f32>();
        loss_sum += f64::from(l) * (end - start) as f64;
        let p: Vec<f32> = sigmoid(logits)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        scores.extend(p);
    }
    Ok((scores, loss_sum / set.n.max(1) as f64))
}

/// Loads a run's model (best weights unless `last`) onto `device`.
///
/// # Errors
/// Missing or unreadable files in the run directory.
pub fn load_model(
    run: &Path,
    last: bool,
    device: &Device,
) -> anyhow::Result<(TrainConfig, Classifier)> {
    let cfg: TrainConfig = serde_json::from_str(
        &fs::read_to_string(run.join("config.json"))
            .with_context(|| format!("reading {}/config.json", run.display()))?,
    )
    .with_context(|| format!("parsing {}/config.json", run.display()))?;
    let file = run.join(if last { "last.bpk" } else { "best.bpk" });
    let record = ModuleRecord::load(&file)
        .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", file.display()))?;
    let model = cfg.init_model(device).load_record(record);
    Ok((cfg, model))
}

/// The starting model of a new run: for AudioProtoPNet, on the pretrained backbone
/// (frozen unless `train_backbone`).
fn initial_model(
    cfg: &TrainConfig,
    labels: &LabelTable,
    device: &Device,
) -> anyhow::Result<Classifier> {
    let model = cfg.init_model(device);
    let (Classifier::ProtoPNet(proto), Some(p)) = (&model, &cfg.protopnet) else {
        return Ok(model);
    };
    let Some(backbone_run) = &p.backbone_run else {
        if !p.train_backbone {
            bail!("an AudioProtoPNet without a pretrained backbone run must train its backbone");
        }
        return Ok(model);
    };
    let (bcfg, backbone) = load_model(backbone_run, false, device)
        .with_context(|| format!("loading the backbone run {}", backbone_run.display()))?;
    let Classifier::ConvNext(backbone) = backbone else {
        bail!(
            "the backbone run {} is not a ConvNeXt",
            backbone_run.display()
        );
    };
    let backbone_labels = LabelTable::read(backbone_run.join("labels.csv"))?;
    if backbone_labels != *labels || bcfg.frontend != cfg.frontend || bcfg.model != cfg.model {
        bail!(
            "the backbone run {} differs from this run in its labels, front end or ConvNeXt \
             configuration; train AudioProtoPNet on the backbone's own setting",
            backbone_run.display()
        );
    }
    let backbone = if p.train_backbone {
        backbone
    } else {
        backbone.freeze()
    };
    Ok(Classifier::ProtoPNet(proto.clone().with_backbone(backbone)))
}

/// Trains a model into `run` on `device` (e.g. `Device::flex()`, or `Device::cuda(0)` with
/// the `cuda` feature); with `resume`, continues a run from its last epoch.
///
/// # Errors
/// Bad data (with file and line), an unwritable run directory, or a run that cannot be
/// resumed.
pub fn fit(
    cfg: &TrainConfig,
    run: &Path,
    resume: bool,
    device: &Device,
    on_event: &mut dyn FnMut(TrainEvent),
) -> anyhow::Result<Vec<EpochRecord>> {
    cfg.frontend.validate()?;
    cfg.adversarial.validate()?;
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        bail!("batch size and epochs must be positive");
    }
    fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    let labels = LabelTable::read(cfg.data.join("labels.csv"))?;
    if labels.len() != cfg.model.num_classes {
        bail!(
            "labels.csv has {} classes but the model has {}",
            labels.len(),
            cfg.model.num_classes
        );
    }
    let (train_manifest, skipped_train) =
        Manifest::read(&cfg.data.join("train.csv"), &labels, cfg.skip_bad)?;
    let (valid_manifest, skipped_valid) =
        Manifest::read(&cfg.data.join("valid.csv"), &labels, cfg.skip_bad)?;
    let skipped: Vec<_> = skipped_train
        .problems
        .into_iter()
        .chain(skipped_valid.problems)
        .collect();
    if !skipped.is_empty() {
        on_event(TrainEvent::Skipped(skipped));
    }
    let cache = run.join("audio-cache");
    let loader = TrainLoader::new(
        train_manifest,
        &labels,
        cfg.frontend.clone(),
        cfg.window_s,
        Crop::EventRandom,
        cfg.augment,
        cfg.seed,
        cfg.cache_audio.then_some(cache.as_path()),
    )?;
    let valid = loader::features(
        &valid_manifest,
        &labels,
        &cfg.frontend,
        cfg.window_s,
        Crop::Fixed,
        cfg.seed,
        &|| {},
    )?;

    let device = device.clone();
    device.seed(cfg.seed);
    let train_device = device.clone().autodiff();
    let (mut model, first_epoch, mut best) = if resume && run.join("state.json").is_file() {
        let state: RunState = serde_json::from_str(&fs::read_to_string(run.join("state.json"))?)?;
        let (_, model) = load_model(run, true, &train_device)?;
        (model, state.last_epoch + 1, state.best_valid_loss)
    } else {
        write_json(&run.join("config.json"), cfg)?;
        write_json(&run.join("frontend.json"), &cfg.frontend)?;
        write_json(&run.join("model.json"), &cfg.model)?;
        labels.write(run.join("labels.csv"))?;
        let _ = fs::remove_file(run.join("metrics.jsonl"));
        (
            initial_model(cfg, &labels, &train_device)?,
            0,
            f64::INFINITY,
        )
    };
    let adamw = |weight_decay: f32| {
        AdamWConfig::new()
            .with_weight_decay(weight_decay)
            .with_epsilon(cfg.adam_eps)
            .with_grad_clipping(cfg.grad_clip.map(GradientClippingConfig::Norm))
            .init()
    };
    // One optimiser per parameter group, each with its own peak learning rate: the whole
    // model for ConvNeXt; prototypes, last layer and (if trained) backbone for
    // AudioProtoPNet.
    let mut groups: Vec<(Option<Vec<ParamId>>, f64, _)> = match (&model, &cfg.protopnet) {
        (Classifier::ProtoPNet(m), Some(p)) => vec![
            (Some(m.prototype_params()), p.prototype_lr, adamw(0.0)),
            (
                Some(m.last_layer_params()),
                p.last_layer_lr,
                adamw(cfg.weight_decay),
            ),
            (None, cfg.lr, adamw(cfg.weight_decay)),
        ],
        _ => vec![(None, cfg.lr, adamw(cfg.weight_decay))],
    };
    let orthogonality = cfg
        .protopnet
        .as_ref()
        .map_or(0.0, |p| p.orthogonality_weight);
    let steps = loader.batches_per_epoch(cfg.batch_size);
    let total_steps = steps * cfg.epochs;
    let mut records = Vec::new();
    for epoch in first_epoch..cfg.epochs {
        let started = Instant::now();
        let mut loss_sum = 0.0;
        let (mut adv_sum, mut clean_sum) = (0.0, 0.0);
        let adversarial = cfg.adversarial.active(epoch);
        let mut lr = 0.0;
        for step in 0..steps {
            let batch = loader.batch(epoch as u64, step, cfg.batch_size)?;
            let (x, y) = tensors(batch.x, batch.y, batch.n, batch.shape, &train_device);
            let loss = if adversarial {
                let adv = adversarial_examples(&model.valid(), &x, &y, cfg)?;
                let adv_loss = cfg.loss.loss(model.forward(adv.autodiff()), y.clone());
                adv_sum += f64::from(adv_loss.clone().into_scalar::<f32>());
                let r = cfg.adversarial.ratio;
                if r < 1.0 {
                    let clean_loss = cfg.loss.loss(model.forward(x), y);
                    clean_sum += f64::from(clean_loss.clone().into_scalar::<f32>());
                    clean_loss.mul_scalar(1.0 - r) + adv_loss.mul_scalar(r)
                } else {
                    adv_loss
                }
            } else {
                cfg.loss.loss(model.forward(x), y)
            };
            let loss = match &model {
                Classifier::ProtoPNet(m) if orthogonality > 0.0 => {
                    loss + m.orthogonality_loss().mul_scalar(orthogonality)
                }
                _ => loss,
            };
            let value: f32 = loss.clone().into_scalar::<f32>();
            let mut grads = loss.backward();
            let at = epoch * steps + step;
            lr = cosine_with_warmup(cfg.lr, at, total_steps, cfg.warmup);
            for (params, peak, optim) in &mut groups {
                // Named groups take their gradients out first; the last group gets the rest.
                let g = match params {
                    Some(ids) => GradientsParams::from_params(&mut grads, &model, ids),
                    None => GradientsParams::from_module(&mut grads, &model),
                };
                if !g.is_empty() {
                    let group_lr = cosine_with_warmup(*peak, at, total_steps, cfg.warmup);
                    model = optim.step(group_lr, model, g);
                }
            }
            loss_sum += f64::from(value);
            on_event(TrainEvent::Step {
                epoch,
                step,
                steps,
                loss: f64::from(value),
            });
        }
        let eval_model = model.valid();
        let (scores, valid_loss) = score(&eval_model, &valid, &cfg.loss, cfg.batch_size, &device)?;
        let is_best = valid_loss < best;
        let save = |name: &str| -> anyhow::Result<()> {
            let path = run.join(name);
            model
                .clone()
                .into_record()
                .save(&path)
                .map_err(|e| anyhow::anyhow!("saving {}: {e:?}", path.display()))
        };
        if is_best {
            best = valid_loss;
            save("best.bpk")?;
        }
        save("last.bpk")?;
        write_json(
            &run.join("state.json"),
            &RunState {
                last_epoch: epoch,
                best_valid_loss: best,
            },
        )?;
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / steps as f64,
            valid_loss,
            valid: evaluate(&scores, &valid.y, valid.classes),
            lr,
            seconds: started.elapsed().as_secs_f64(),
            best: is_best,
            train_clean_loss: (adversarial && cfg.adversarial.ratio < 1.0)
                .then(|| clean_sum / steps as f64),
            train_adversarial_loss: adversarial.then(|| adv_sum / steps as f64),
        };
        let mut line = serde_json::to_string(&record)?;
        line.push('\n');
        use std::io::Write;
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.join("metrics.jsonl"))?
            .write_all(line.as_bytes())?;
        on_event(TrainEvent::Epoch(record.clone()));
        records.push(record);
        write_curves(run)?;
    }
    Ok(records)
}

/// Adversarial versions of a training batch, made on `model` (without autodiff).
fn adversarial_examples(
    model: &Classifier,
    x: &Tensor<4>,
    y: &Tensor<2>,
    cfg: &TrainConfig,
) -> anyhow::Result<Tensor<4>> {
    let adv = &cfg.adversarial;
    let objective = match adv.mode {
        AdversarialMode::Embedding => Objective::Embedding(adv.distance),
        AdversarialMode::Output | AdversarialMode::None => Objective::Loss {
            loss: cfg.loss,
            targets: y.clone().without_autodiff(),
        },
    };
    Ok(attack(
        model,
        &x.clone().without_autodiff(),
        &objective,
        &adv.attack,
    )?
    .adversarial)
}

/// A run's epochs as `metrics.jsonl` records them (a resumed run's included).
///
/// # Errors
/// The log is missing or a line is not an epoch record.
pub fn epoch_records(run: &Path) -> anyhow::Result<Vec<EpochRecord>> {
    let log = fs::read_to_string(run.join("metrics.jsonl"))?;
    Ok(log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// The epoch whose weights `best.bpk` holds (the last one marked best), if any.
///
/// # Errors
/// As [`epoch_records`].
pub fn selected_epoch(run: &Path) -> anyhow::Result<Option<usize>> {
    Ok(epoch_records(run)?
        .iter()
        .rev()
        .find(|r| r.best)
        .map(|r| r.epoch))
}

/// Draws `curves.svg` (training and validation loss) and `valid-metrics.svg` (validation
/// cmAP, AUROC, top-1) from the whole of `metrics.jsonl`, so a resumed run's pictures
/// cover every epoch.
fn write_curves(run: &Path) -> anyhow::Result<()> {
    let records = epoch_records(run)?;
    let line = |f: &dyn Fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        records
            .iter()
            .map(|r| ((r.epoch + 1) as f64, f(r)))
            .collect()
    };
    plot::line_chart_svg(
        &run.join("curves.svg"),
        "training curves",
        "epoch",
        "loss",
        &[
            ("train loss", line(&|r| r.train_loss)),
            ("validation loss", line(&|r| r.valid_loss)),
        ],
    )?;
    plot::line_chart_svg(
        &run.join("valid-metrics.svg"),
        "validation metrics",
        "epoch",
        "value",
        &[
            ("cmAP", line(&|r| r.valid.cmap)),
            ("AUROC", line(&|r| r.valid.auroc)),
            ("top-1", line(&|r| r.valid.top1)),
        ],
    )?;
    Ok(())
}
