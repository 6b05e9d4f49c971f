//! The Warble trainer.
//!
//! - [`synth`]: the synthetic distribution-shift benchmark (focal → soundscape).
//! - [`data`]: manifests, audio windows and features for training and evaluation.
//! - [`metrics`]: BirdSet's metrics (cmAP, AUROC, top-1); [`compare`]: two recipes
//!   compared by a paired bootstrap over seeds and test segments.
//! - [`shift`]: measures the benchmark's shift with that baseline.
//! - [`plot`]: spectrogram pictures (PNG).
//! - [`baseline`]: a logistic-regression baseline on pooled log-mel features, used to
//!   show that the benchmark's shift is real.
//!
//! - [`model`], [`loss`], [`schedule`], [`train`], [`eval`]: ConvNeXt in burn, the
//!   Asymmetric Loss, the cosine schedule, the training loop and run evaluation.
//!
//! AudioProtoPNet and adversarial training build on these.
#![deny(missing_docs)]

pub mod attack;
pub mod baseline;
pub mod compare;
pub mod data;
pub mod eval;
pub mod experiment;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod robust;
pub mod schedule;
pub mod shift;
pub mod stability;
pub mod synth;
pub mod train;
