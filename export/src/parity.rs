//! Numerical parity between burn and the exported ONNX graph, in both engines.

use burn::prelude::*;
use warble_infer::{Backend, Engine, EngineChoice, EngineConfig, InferError};

use crate::onnx::Architecture;

/// Largest absolute logit difference allowed between burn and an engine.
pub const REQUIRED_TOLERANCE: f32 = 1e-4;

/// How one engine compares with burn.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EngineParity {
    /// The engine.
    pub engine: String,
    /// Largest absolute logit difference over every input.
    pub max_abs_diff: f32,
    /// Mean absolute logit difference.
    pub mean_abs_diff: f32,
}

/// Parity over a set of inputs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParityReport {
    /// Inputs compared.
    pub inputs: usize,
    /// One entry per engine.
    pub engines: Vec<EngineParity>,
}

impl ParityReport {
    /// The worst difference over all engines.
    pub fn max_abs_diff(&self) -> f32 {
        self.engines
            .iter()
            .map(|e| e.max_abs_diff)
            .fold(0.0, f32::max)
    }
}

/// Why parity could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParityError {
    /// An engine could not load or run the model.
    #[error(transparent)]
    Engine(#[from] InferError),
    /// burn's output could not be read.
    #[error("burn output: {0}")]
    Burn(String),
    /// Output shapes differ.
    #[error("{engine}: output shape {actual:?}, burn {expected:?}")]
    Shape {
        /// The engine.
        engine: String,
        /// Engine shape.
        actual: Vec<usize>,
        /// burn shape.
        expected: Vec<usize>,
    },
}

/// burn's logits for one batch `[b, 1, n_mels, frames]`, flattened.
///
/// # Errors
/// [`ParityError::Burn`].
pub fn burn_logits(
    arch: &Architecture,
    data: &[f32],
    shape: [usize; 4],
    device: &Device,
) -> Result<Vec<f32>, ParityError> {
    let x = Tensor::<1>::from_floats(data, device).reshape(shape);
    arch.forward(x)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| ParityError::Burn(format!("{e:?}")))
}

/// Runs `onnx` in each engine on every batch and compares with burn.
///
/// # Errors
/// [`ParityError`] if an engine cannot run the model (a tolerance breach is reported in
/// the result, not as an error; the caller decides).
pub fn check(
    arch: &Architecture,
    onnx: &[u8],
    batches: &[(Vec<f32>, [usize; 4])],
    engines: &[EngineChoice],
    ort_library: Option<&std::path::Path>,
    device: &Device,
    mut on_batch: impl FnMut(),
) -> Result<ParityReport, ParityError> {
    let expected: Vec<Vec<f32>> = batches
        .iter()
        .map(|(data, shape)| burn_logits(arch, data, *shape, device))
        .collect::<Result<_, _>>()?;
    let mut report = ParityReport {
        inputs: batches.iter().map(|(_, s)| s[0]).sum(),
        engines: Vec::new(),
    };
    for &choice in engines {
        let config = EngineConfig {
            choice,
            ort_library: ort_library.map(std::path::Path::to_path_buf),
            threads: 0,
        };
        let mut engine = Engine::load(onnx, &config)?;
        let name = match engine.backend() {
            Backend::Ort => "onnxruntime",
            Backend::Tract => "tract",
        };
        let (mut max, mut sum, mut n) = (0.0f32, 0.0f64, 0usize);
        for ((data, shape), want) in batches.iter().zip(&expected) {
            let out = engine.run(data, shape)?;
            let want_shape = vec![shape[0], arch.num_classes()];
            if out.shape != want_shape {
                return Err(ParityError::Shape {
                    engine: name.into(),
                    actual: out.shape,
                    expected: want_shape,
                });
            }
            for (a, b) in out.data.iter().zip(want) {
                let d = (a - b).abs();
                max = if d.is_nan() {
                    f32::INFINITY
                } else {
                    max.max(d)
                };
                sum += f64::from(d);
                n += 1;
            }
            on_batch();
        }
        report.engines.push(EngineParity {
            engine: name.into(),
            max_abs_diff: max,
            mean_abs_diff: (sum / n.max(1) as f64) as f32,
        });
    }
    Ok(report)
}
