//! The Warble trainer.
//!
//! - [`synth`]: the synthetic distribution-shift benchmark (focal → soundscape).
//! - [`data`]: manifests, audio windows and features for training and evaluation.
//! - [`metrics`]: BirdSet's metrics (cmAP, AUROC, top-1).
//! - [`shift`]: measures the benchmark's shift with that baseline.
//! - [`plot`]: spectrogram pictures (PNG).
//! - [`baseline`]: a logistic-regression baseline on pooled log-mel features, used to
//!   show that the benchmark's shift is real.
//!
//! The ConvNeXt / AudioProtoPNet models (burn) and adversarial training build on these.
#![deny(missing_docs)]

pub mod baseline;
pub mod data;
pub mod metrics;
pub mod plot;
pub mod shift;
pub mod synth;
