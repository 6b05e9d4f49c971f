//! Warble export: trained model → ONNX with proven numerical parity → signed model bundle.
//!
//! - [`onnx`]: writes ConvNeXt and AudioProtoPNet as standard ONNX graphs.
//! - [`parity`]: runs the exported graph with ONNX Runtime and tract and compares it with
//!   burn; an export that disagrees is refused.
//! - [`pipeline`]: run directory → signed bundle (parity, calibrated thresholds, self-test).
//! - [`push`]: a bundle offered to stations over MQTT (retained, signed).
#![deny(missing_docs)]

pub mod onnx;
pub mod parity;
pub mod pipeline;
pub mod push;
pub mod rollout;
