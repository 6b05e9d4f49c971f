//! Warble export (to be built): trained model → ONNX with proven numerical parity →
//! signed model bundle whose manifest type is [`warble_core::bundle::BundleManifest`].
//!
//! This crate holds no code yet; see the export issue.
#![deny(missing_docs)]
