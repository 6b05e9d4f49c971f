//! The Warble trainer (to be built): ConvNeXt and AudioProtoPNet in burn, trained on
//! log-mel features from [`warble_core::frontend`], with output- and embedding-space
//! adversarial training and robustness evaluation.
//!
//! This crate holds no code yet; see the trainer, data and adversarial-training issues.
//! It exists so the workspace layout and its one-way dependencies
//! (`core ← trainer ← export`) are fixed from the start.
#![deny(missing_docs)]
