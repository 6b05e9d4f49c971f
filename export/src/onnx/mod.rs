//! Trained burn models → standard ONNX graphs (opset 17).
//!
//! burn's own exporter cannot lower ConvNeXt's permute, GELU and LayerNorm, so the graph is
//! written directly from the weights. Each architecture is one emitter function built
//! from the shared layer patterns in [`graph`]; a new architecture is a new emitter.
//!
//! Graph contract: input `logmel` `[batch, 1, n_mels, frames]` (batch dynamic), output
//! `logits` `[batch, classes]` first, then an architecture-specific second output:
//! ConvNeXt's pooled, normalised `embedding` `[batch, dim]`, or AudioProtoPNet's
//! `prototype_activations` `[batch, classes · K]`.

mod graph;

use burn::prelude::*;
use prost::Message;
use warble_trainer::model::convnext::{ConvNext, ConvNextConfig};
use warble_trainer::model::protopnet::{AudioProtoPNet, ProtoPNetConfig};

pub use graph::OPSET;
use graph::{Attr, Graph};

/// Name of the graph input.
pub const INPUT: &str = "logmel";
/// Name of the first graph output.
pub const LOGITS: &str = "logits";

/// Why a model cannot be written as ONNX.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// Weights could not be read out of burn.
    #[error("cannot read weights: {0}")]
    Weights(String),
    /// The model uses something the writer does not lower.
    #[error("unsupported in ONNX export: {0}")]
    Unsupported(String),
}

/// A trained model of a supported architecture, with its hyper-parameters.
#[derive(Debug)]
// One instance per export: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Architecture {
    /// ConvNeXt classifier.
    ConvNext {
        /// The model.
        model: ConvNext,
        /// Its configuration.
        config: ConvNextConfig,
    },
    /// AudioProtoPNet.
    ProtoPNet {
        /// The model.
        model: AudioProtoPNet,
        /// Its configuration.
        config: ProtoPNetConfig,
    },
}

impl Architecture {
    /// Short name for manifests and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ConvNext { .. } => "convnext",
            Self::ProtoPNet { .. } => "audioprotopnet",
        }
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        match self {
            Self::ConvNext { config, .. } => config.num_classes,
            Self::ProtoPNet { config, .. } => config.backbone.num_classes,
        }
    }

    /// burn's logits, the reference the exported graph must reproduce.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::ConvNext { model, .. } => model.forward(x),
            Self::ProtoPNet { model, .. } => model.forward(x),
        }
    }

    /// Name and width of the second output.
    fn aux_output(&self) -> (&'static str, usize) {
        match self {
            Self::ConvNext { config, .. } => ("embedding", *config.dims.last().unwrap_or(&0)),
            Self::ProtoPNet { config, .. } => (
                "prototype_activations",
                config.backbone.num_classes * config.prototypes_per_class,
            ),
        }
    }
}

/// ConvNeXt's feature map before the head (the stem, stages and downsampling layers).
fn convnext_features(
    g: &mut Graph,
    x: &str,
    model: &ConvNext,
    eps: f64,
) -> Result<String, OnnxError> {
    let x = g.conv(x, &model.stem)?;
    let mut x = g.layer_norm_channels_first(&x, &model.stem_norm, eps)?;
    for stage in &model.stages {
        if let Some(down) = &stage.downsample {
            let n = g.layer_norm_channels_first(&x, &down.norm, eps)?;
            x = g.conv(&n, &down.conv)?;
        }
        for block in &stage.blocks {
            let y = g.conv(&x, &block.dwconv)?;
            let y = g.transpose(&y, &[0, 2, 3, 1]);
            let y = g.layer_norm(&y, &block.norm, eps)?;
            let y = g.linear(&y, &block.pw1)?;
            let y = g.gelu(&y);
            let y = g.linear(&y, &block.pw2)?;
            let gamma = g.weight("layer_scale", block.gamma.val())?;
            let y = g.op("Mul", &[&y, &gamma], vec![]);
            let y = g.transpose(&y, &[0, 3, 1, 2]);
            x = g.op("Add", &[&x, &y], vec![]);
        }
    }
    Ok(x)
}

/// ConvNeXt: features → global average pool → LayerNorm (`embedding`) → Linear (`logits`).
fn emit_convnext(
    g: &mut Graph,
    model: &ConvNext,
    config: &ConvNextConfig,
    aux: &str,
) -> Result<(), OnnxError> {
    let f = convnext_features(g, INPUT, model, config.norm_eps)?;
    let pooled = g.op(
        "ReduceMean",
        &[&f],
        vec![("axes", Attr::Ints(vec![2, 3])), ("keepdims", Attr::Int(0))],
    );
    let embedding = g.layer_norm(&pooled, &model.head_norm, config.norm_eps)?;
    let logits = g.linear(&embedding, &model.head)?;
    g.name_output(&logits, LOGITS);
    g.name_output(&embedding, aux);
    Ok(())
}

/// AudioProtoPNet: backbone features → bilinear ×2 (half-pixel) → cosine similarity with
/// unit prototypes ÷ scale → ReLU → max over positions (`prototype_activations`) →
/// class-restricted weighted sum + bias (`logits`).
fn emit_protopnet(
    g: &mut Graph,
    model: &AudioProtoPNet,
    config: &ProtoPNetConfig,
    aux: &str,
) -> Result<(), OnnxError> {
    let f = convnext_features(g, INPUT, model.backbone(), config.backbone.norm_eps)?;
    let scales = g.constant("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]);
    let up = g.op(
        "Resize",
        &[&f, "", &scales],
        vec![
            ("mode", Attr::Str("linear")),
            ("coordinate_transformation_mode", Attr::Str("half_pixel")),
        ],
    );
    let channels = *config.backbone.dims.last().unwrap_or(&0) as i64;
    let flat = g.reshape(&up, &[0, channels, -1]); // [b, c, n]
    let norm = g.op(
        "ReduceL2",
        &[&flat],
        vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))],
    );
    let floor = g.scalar("norm_floor", 1e-12);
    let norm = g.op("Max", &[&norm, &floor], vec![]);
    let unit = g.op("Div", &[&flat, &norm], vec![]);
    let protos = g.weight("prototypes", model.unit_prototypes())?;
    let sim = g.op("MatMul", &[&protos, &unit], vec![]); // [b, P, n]
    let scale = g.scalar("similarity_scale", model.similarity_scale() as f32);
    let sim = g.op("Div", &[&sim, &scale], vec![]);
    let sim = g.op("Relu", &[&sim], vec![]);
    let activations = g.op(
        "ReduceMax",
        &[&sim],
        vec![("axes", Attr::Ints(vec![2])), ("keepdims", Attr::Int(0))],
    );
    let classes = config.backbone.num_classes as i64;
    let k = model.prototypes_per_class() as i64;
    let grouped = g.reshape(&activations, &[0, classes, k]);
    let weights = g.weight("class_weights", model.class_weights())?;
    let weighted = g.op("Mul", &[&grouped, &weights], vec![]);
    let axis = g.ints("axis", &[2]);
    let summed = g.op(
        "ReduceSum",
        &[&weighted, &axis],
        vec![("keepdims", Attr::Int(0))],
    );
    let bias = g.weight("class_bias", model.class_bias())?;
    let logits = g.op("Add", &[&summed, &bias], vec![]);
    g.name_output(&logits, LOGITS);
    g.name_output(&activations, aux);
    Ok(())
}

/// Writes the model as ONNX bytes for inputs of `n_mels × frames`.
///
/// # Errors
/// [`OnnxError`] if weights cannot be read or a layer cannot be lowered.
pub fn write(arch: &Architecture, n_mels: usize, frames: usize) -> Result<Vec<u8>, OnnxError> {
    let mut g = Graph::default();
    let (aux, aux_width) = arch.aux_output();
    match arch {
        Architecture::ConvNext { model, config } => emit_convnext(&mut g, model, config, aux)?,
        Architecture::ProtoPNet { model, config } => emit_protopnet(&mut g, model, config, aux)?,
    }
    let doc = format!(
        "Warble {} ({} classes): standardised log-mel in, logits out.",
        arch.name(),
        arch.num_classes()
    );
    let model = g.into_model(
        (INPUT, &[None, Some(1), Some(n_mels), Some(frames)]),
        &[
            (LOGITS, &[None, Some(arch.num_classes())]),
            (aux, &[None, Some(aux_width)]),
        ],
        &doc,
    );
    Ok(model.encode_to_vec())
}
