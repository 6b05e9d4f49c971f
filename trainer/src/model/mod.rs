//! The models of the paper, in burn.

pub mod convnext;
pub mod protopnet;

use burn::prelude::*;

use convnext::ConvNext;
use protopnet::AudioProtoPNet;

/// A trained classifier of either family, as a run directory holds it.
#[derive(Module, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one model per run, moved rarely; the Module derive wants the model inline"
)]
pub enum Classifier {
    /// ConvNeXt.
    ConvNext(ConvNext),
    /// AudioProtoPNet on a ConvNeXt backbone.
    ProtoPNet(AudioProtoPNet),
}

impl Classifier {
    /// Logits.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Classifier::ConvNext(m) => m.forward(x),
            Classifier::ProtoPNet(m) => m.forward(x),
        }
    }

    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Classifier::ConvNext(_) => "convnext",
            Classifier::ProtoPNet(_) => "audioprotopnet",
        }
    }
}
