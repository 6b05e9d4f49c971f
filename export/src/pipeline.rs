//! From a trained run directory to a signed bundle: ONNX, parity on validation clips and
//! random inputs, calibrated thresholds, self-test vectors, manifest, signature.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use rand::{RngExt, SeedableRng};
use warble_core::bundle::{
    BUNDLE_SCHEMA, BundleBuilder, BundleError, BundleManifest, InputSpec, KeyError,
    OutputActivation, SecretKey, SelfTest, TensorF32, Thresholds,
};
use warble_core::{LabelTable, SampleRate};
use warble_infer::EngineChoice;
use warble_trainer::data::loader::{self, Crop, FeatureSet};
use warble_trainer::data::manifest::Manifest;
use warble_trainer::metrics::{evaluate, threshold_for_precision};
use warble_trainer::model::Classifier;
use warble_trainer::train::{TrainConfig, load_model};

use crate::onnx::{self, Architecture, OnnxError};
use crate::parity::{self, ParityError, ParityReport, REQUIRED_TOLERANCE};

/// Feedback for long steps (the CLI draws progress bars).
pub trait Progress: Sync {
    /// A step with `total` units begins.
    fn start(&self, step: &str, total: u64);
    /// One unit done.
    fn tick(&self);
    /// The step is done.
    fn finish(&self);
}

/// No feedback.
#[derive(Debug, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &str, _: u64) {}
    fn tick(&self) {}
    fn finish(&self) {}
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The run directory cannot be read.
    #[error("run {run}: {reason}")]
    Run {
        /// The run directory.
        run: PathBuf,
        /// What failed.
        reason: String,
    },
    /// An input file of an import cannot be read or does not fit.
    #[error("{path}: {reason}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// ONNX writing failed.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// An engine could not run the export.
    #[error(transparent)]
    Parity(#[from] ParityError),
    /// The exported graph disagrees with burn.
    #[error(
        "parity check failed: max |logit difference| {worst:e} > {REQUIRED_TOLERANCE:e} \
         ({report:?}); the bundle was not written"
    )]
    ParityFailed {
        /// Worst difference.
        worst: f32,
        /// Per engine.
        report: ParityReport,
    },
    /// The signing key cannot be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The bundle breaks a rule.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Writing the output failed.
    #[error("{path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
}

/// What `bundle` does.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Trained run directory.
    pub run: PathBuf,
    /// Use `last.bpk` instead of `best.bpk`.
    pub last: bool,
    /// Output `.warble` file.
    pub out: PathBuf,
    /// Secret key file.
    pub key: PathBuf,
    /// Model id (default: the run directory's name).
    pub model_id: Option<String>,
    /// Semantic version.
    pub version: String,
    /// Threshold for classes without a calibrated one.
    pub default_threshold: f32,
    /// Per-class thresholds are the lowest reaching this precision on validation data.
    pub target_precision: f64,
    /// At most this many validation clips (for parity and calibration).
    pub max_valid: usize,
    /// Random input batches added to the parity check.
    pub random_batches: usize,
    /// Engines the parity check runs.
    pub engines: Vec<EngineChoice>,
    /// ONNX Runtime library.
    pub ort_library: Option<PathBuf>,
}

/// What `bundle` produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BundleReport {
    /// The written bundle.
    pub path: PathBuf,
    /// Its size, bytes.
    pub bytes: usize,
    /// Model id and version.
    pub model: String,
    /// Architecture.
    pub architecture: String,
    /// Validation clips used.
    pub valid_clips: usize,
    /// Parity figures.
    pub parity: ParityReport,
    /// Classes that got a calibrated threshold.
    pub calibrated: usize,
    /// The manifest written.
    pub manifest: BundleManifest,
}

fn run_err(run: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Run {
        run: run.to_path_buf(),
        reason: format!("{e:#}"),
    }
}

/// Writes a finished bundle, creating its directory.
fn write_output(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let fail = |p: &Path, e: std::io::Error| ExportError::Write {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| fail(path, e))
}

/// Batches of the feature set as `[b, 1, n_mels, frames]`.
fn batches_of(set: &FeatureSet, batch: usize) -> Vec<(Vec<f32>, [usize; 4])> {
    let (m, f) = set.shape;
    (0..set.n)
        .step_by(batch.max(1))
        .map(|start| {
            let end = (start + batch).min(set.n);
            (
                set.x[start * m * f..end * m * f].to_vec(),
                [end - start, 1, m, f],
            )
        })
        .collect()
}

/// A run loaded, exported to ONNX and proven equal to burn.
#[derive(Debug)]
pub struct Exported {
    /// The run's training configuration.
    pub cfg: TrainConfig,
    /// Its labels.
    pub labels: LabelTable,
    /// The model.
    pub arch: Architecture,
    /// Validation features used for parity (and calibration).
    pub valid: FeatureSet,
    /// The ONNX bytes.
    pub onnx: Vec<u8>,
    /// Parity batches (validation, then random).
    pub batches: Vec<(Vec<f32>, [usize; 4])>,
    /// Parity figures (within [`REQUIRED_TOLERANCE`]).
    pub parity: ParityReport,
}

/// Loads a run, writes its ONNX graph and checks parity with burn in `engines` on up to
/// `max_valid` validation clips plus `random_batches` random batches.
///
/// # Errors
/// [`ExportError::ParityFailed`] when any logit differs by more than 1e-4; unreadable run
/// files; engine failures.
pub fn export_run(
    run: &Path,
    last: bool,
    max_valid: usize,
    random_batches: usize,
    engines: &[EngineChoice],
    ort_library: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Exported, ExportError> {
    let device = Device::flex();
    let (cfg, model): (TrainConfig, _) =
        load_model(run, last, &device).map_err(|e| run_err(run, e))?;
    let labels = LabelTable::read(run.join("labels.csv")).map_err(|e| run_err(run, e))?;
    let arch = match (model, cfg.protopnet_config()) {
        (Classifier::ConvNext(model), _) => Architecture::ConvNext {
            model,
            config: cfg.model.clone(),
        },
        (Classifier::ProtoPNet(model), Some(config)) => Architecture::ProtoPNet { model, config },
        (Classifier::ProtoPNet(_), None) => {
            return Err(run_err(
                run,
                anyhow::anyhow!("an AudioProtoPNet run without its config"),
            ));
        }
    };

    // Validation clips, as the trainer validates (fixed crops).
    let valid_path = cfg.data.join("valid.csv");
    let (mut manifest, _) =
        Manifest::read(&valid_path, &labels, false).map_err(|e| run_err(run, e))?;
    manifest.rows.truncate(max_valid);
    progress.start("validation features", manifest.rows.len() as u64);
    let tick = || progress.tick();
    let set = loader::features(
        &manifest,
        &labels,
        &cfg.frontend,
        cfg.window_s,
        Crop::Fixed,
        cfg.seed,
        &tick,
    )
    .map_err(|e| run_err(run, e))?;
    progress.finish();
    let (n_mels, frames) = set.shape;

    let onnx_bytes = onnx::write(&arch, n_mels, frames)?;

    // Parity on validation batches and random standardised inputs.
    let mut batches = batches_of(&set, 8);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    for _ in 0..random_batches {
        let data = (0..4 * n_mels * frames)
            .map(|_| rng.random_range(-4.0f32..4.0))
            .collect();
        batches.push((data, [4, 1, n_mels, frames]));
    }
    progress.start(
        "parity (burn vs ONNX)",
        (batches.len() * engines.len()) as u64,
    );
    let parity = parity::check(
        &arch,
        &onnx_bytes,
        &batches,
        engines,
        ort_library,
        &device,
        || progress.tick(),
    )?;
    progress.finish();
    let worst = parity.max_abs_diff();
    if worst.is_nan() || worst > REQUIRED_TOLERANCE {
        return Err(ExportError::ParityFailed {
            worst,
            report: parity,
        });
    }
    Ok(Exported {
        cfg,
        labels,
        arch,
        valid: set,
        onnx: onnx_bytes,
        batches,
        parity,
    })
}

/// Exports a trained run as a signed bundle; refuses when parity does not hold.
///
/// # Errors
/// [`ExportError`] naming the step and file that failed.
pub fn bundle_run(
    opts: &BundleOptions,
    progress: &dyn Progress,
) -> Result<BundleReport, ExportError> {
    let run = &opts.run;
    let key = SecretKey::read(&opts.key)?;
    let device = Device::flex();
    let Exported {
        cfg,
        labels,
        arch,
        valid: set,
        onnx: onnx_bytes,
        batches,
        parity,
    } = export_run(
        run,
        opts.last,
        opts.max_valid,
        opts.random_batches,
        &opts.engines,
        opts.ort_library.as_deref(),
        progress,
    )?;
    let (n_mels, frames) = set.shape;
    let valid_path = cfg.data.join("valid.csv");

    // Calibrated thresholds from burn's validation scores.
    let mut scores = Vec::with_capacity(set.n * set.classes);
    for (data, shape) in batches_of(&set, 16) {
        let logits = parity::burn_logits(&arch, &data, shape, &device)?;
        scores.extend(logits.iter().map(|&z| 1.0 / (1.0 + (-z).exp())));
    }
    let valid_metrics = evaluate(&scores, &set.y, set.classes);
    let mut per_class = BTreeMap::new();
    for (c, label) in labels.iter().enumerate() {
        let s: Vec<f32> = (0..set.n).map(|i| scores[i * set.classes + c]).collect();
        let t: Vec<bool> = (0..set.n)
            .map(|i| set.y[i * set.classes + c] > 0.5)
            .collect();
        if let Some(th) = threshold_for_precision(&s, &t, opts.target_precision) {
            per_class.insert(label.code.to_string(), th);
        }
    }
    let calibrated = per_class.len();

    // Self-test: the first two validation clips (or random input) and burn's logits.
    let (st_data, st_shape) = batches
        .first()
        .map(|(d, s)| {
            let b = s[0].min(2);
            (d[..b * n_mels * frames].to_vec(), [b, 1, n_mels, frames])
        })
        .unwrap_or_default();
    let expected = parity::burn_logits(&arch, &st_data, st_shape, &device)?;
    let selftest = SelfTest {
        input: TensorF32 {
            shape: st_shape.to_vec(),
            data: st_data,
        },
        expected: TensorF32 {
            shape: vec![st_shape[0], arch.num_classes()],
            data: expected,
        },
    };

    let rate = SampleRate::new(cfg.frontend.sample_rate_hz)
        .ok_or_else(|| run_err(run, "front end sample rate is zero"))?;
    let window_samples = (cfg.window_s * f64::from(rate.hz())).round() as usize;
    let model_id = opts.model_id.clone().unwrap_or_else(|| {
        run.file_name()
            .map(|n| n.to_string_lossy().replace([' ', '/', '\\'], "-"))
            .unwrap_or_else(|| "warble-model".into())
    });
    let run_metrics = std::fs::read(run.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let manifest = BundleManifest {
        schema: BUNDLE_SCHEMA.into(),
        model_id,
        version: opts.version.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        input: InputSpec::Logmel {
            frontend: cfg.frontend.clone(),
            window_samples,
        },
        input_shape: vec![-1, 1, n_mels as i64, frames as i64],
        output_shape: vec![-1, arch.num_classes() as i64],
        output_activation: OutputActivation::Sigmoid,
        num_classes: arch.num_classes(),
        thresholds: Thresholds {
            default: opts.default_threshold,
            per_class,
            method: format!(
                "per class: lowest threshold with precision >= {} on {} validation clips \
                 ({}); others: default",
                opts.target_precision,
                set.n,
                valid_path.display()
            ),
        },
        recipe: serde_json::json!({
            "architecture": arch.name(),
            "train_config": cfg,
            "weights": if opts.last { "last" } else { "best" },
            "onnx_opset": onnx::OPSET,
        }),
        metrics: serde_json::json!({
            "validation": valid_metrics,
            "evaluation": run_metrics,
            "parity": parity,
        }),
        selftest_tolerance: REQUIRED_TOLERANCE,
        files: BTreeMap::new(),
    };
    let bytes = BundleBuilder::new(manifest.clone(), onnx_bytes, labels, selftest).build(&key)?;
    write_output(&opts.out, &bytes)?;
    Ok(BundleReport {
        path: opts.out.clone(),
        bytes: bytes.len(),
        model: format!("{} {}", manifest.model_id, manifest.version),
        architecture: arch.name().into(),
        valid_clips: set.n,
        parity,
        calibrated,
        manifest,
    })
}

/// What `import` does: wrap an external ONNX classifier that takes raw audio.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The ONNX model (input `[batch, samples]`, output `[batch, classes]`).
    pub onnx: PathBuf,
    /// Label table, one row per output.
    pub labels: PathBuf,
    /// Sample rate the model expects, Hz.
    pub sample_rate_hz: u32,
    /// Window length, s.
    pub window_s: f64,
    /// Whether outputs are logits (sigmoid applied by the agent) or probabilities.
    pub activation: OutputActivation,
    /// Decision threshold for every class.
    pub threshold: f32,
    /// Self-test tolerance (the expected output comes from one engine, checked in another).
    pub tolerance: f32,
    /// Output bundle.
    pub out: PathBuf,
    /// Secret key file.
    pub key: PathBuf,
    /// Model id.
    pub model_id: String,
    /// Semantic version.
    pub version: String,
    /// ONNX Runtime library.
    pub ort_library: Option<PathBuf>,
}

/// What `import` produced.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// Bundle written.
    pub path: PathBuf,
    /// Size, bytes.
    pub bytes: usize,
    /// Classes.
    pub classes: usize,
    /// Largest difference between ONNX Runtime and tract on the self-test input, when
    /// both could run the model.
    pub engine_diff: Option<f32>,
}

/// Wraps an external ONNX classifier with raw-waveform input in a signed bundle
/// (`input.kind = waveform`). The self-test output is computed with ONNX Runtime (or tract
/// when ONNX Runtime is unavailable) and cross-checked with the other engine when both run.
///
/// # Errors
/// Unreadable inputs, a model whose shapes disagree with the labels and window, or a
/// bundle rule broken.
pub fn import_onnx(opts: &ImportOptions) -> Result<ImportReport, ExportError> {
    use warble_infer::{Engine, EngineConfig};
    let input_err = |p: &Path, e: &dyn std::fmt::Display| ExportError::Input {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    let model = std::fs::read(&opts.onnx).map_err(|e| input_err(&opts.onnx, &e))?;
    let labels = LabelTable::read(&opts.labels).map_err(|e| input_err(&opts.labels, &e))?;
    let key = SecretKey::read(&opts.key)?;
    let window_samples = (opts.window_s * f64::from(opts.sample_rate_hz)).round() as usize;
    if window_samples == 0 {
        return Err(input_err(
            &opts.onnx,
            &"window must be longer than one sample",
        ));
    }
    // A reproducible, call-like test input: two windows of chirps in noise.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let rate = f64::from(opts.sample_rate_hz);
    let input: Vec<f32> = (0..2 * window_samples)
        .map(|i| {
            let t = (i % window_samples) as f64 / rate;
            let chirp = (2.0 * std::f64::consts::PI * (2000.0 + 1500.0 * t) * t).sin();
            (0.3 * chirp) as f32 + rng.random_range(-0.05f32..0.05)
        })
        .collect();
    let shape = [2, window_samples];
    let engine_config = |choice| EngineConfig {
        choice,
        ort_library: opts.ort_library.clone(),
        threads: 0,
    };
    let mut first =
        Engine::load(&model, &engine_config(EngineChoice::Auto)).map_err(ParityError::from)?;
    let expected = first.run(&input, &shape).map_err(ParityError::from)?;
    if expected.shape != [2, labels.len()] {
        return Err(input_err(
            &opts.onnx,
            &format!(
                "output shape {:?} for input [2, {window_samples}], expected [2, {}] \
                 (one column per label)",
                expected.shape,
                labels.len()
            ),
        ));
    }
    let other = match first.backend() {
        warble_infer::Backend::Ort => EngineChoice::Tract,
        warble_infer::Backend::Tract => EngineChoice::Ort,
    };
    let engine_diff = Engine::load(&model, &engine_config(other))
        .and_then(|mut e| e.run(&input, &shape))
        .ok()
        .map(|o| {
            o.data
                .iter()
                .zip(&expected.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max)
        });
    let manifest = BundleManifest {
        schema: BUNDLE_SCHEMA.into(),
        model_id: opts.model_id.clone(),
        version: opts.version.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        input: InputSpec::Waveform {
            sample_rate_hz: opts.sample_rate_hz,
            window_samples,
        },
        input_shape: vec![-1, window_samples as i64],
        output_shape: vec![-1, labels.len() as i64],
        output_activation: opts.activation,
        num_classes: labels.len(),
        thresholds: Thresholds {
            default: opts.threshold,
            per_class: BTreeMap::new(),
            method: "imported model: one threshold for every class".into(),
        },
        recipe: serde_json::json!({
            "architecture": "imported",
            "source": opts.onnx.file_name().map(|n| n.to_string_lossy().into_owned()),
        }),
        metrics: serde_json::Value::Null,
        selftest_tolerance: opts.tolerance,
        files: BTreeMap::new(),
    };
    let selftest = SelfTest {
        input: TensorF32 {
            shape: shape.to_vec(),
            data: input,
        },
        expected: TensorF32 {
            shape: expected.shape,
            data: expected.data,
        },
    };
    let classes = labels.len();
    let bytes = BundleBuilder::new(manifest, model, labels, selftest).build(&key)?;
    write_output(&opts.out, &bytes)?;
    Ok(ImportReport {
        path: opts.out.clone(),
        bytes: bytes.len(),
        classes,
        engine_diff,
    })
}
