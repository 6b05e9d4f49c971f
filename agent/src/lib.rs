//! The Warble recorder agent.
//!
//! Today it holds the feature path of the recorder: audio in chunks → streaming log-mel
//! front end (from `warble-core`) → per-window summaries, with throughput and memory
//! figures. Inference, detections, delivery and model updates arrive with their issues.
#![deny(missing_docs)]

pub mod features;
pub mod resources;
