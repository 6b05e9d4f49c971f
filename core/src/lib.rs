//! Warble's shared core: what the trainer and the recorder must agree on, bit for bit.
//!
//! Everything here is pure and synchronous (no async runtime, no ML framework, no
//! inference runtime), so that every other crate can depend on it without dragging in
//! anything heavy:
//!
//! - [`audio`]: decoding of WAV, FLAC, OGG/Vorbis and MP3 to mono `f32`, in bounded chunks,
//!   and sinc resampling for files and live streams.
//! - [`frontend`]: the one log-mel front end, in clip and streaming mode.
//! - [`labels`]: the label table (index, code, scientific and common name).
//! - [`event`]: the detection event published by recorders (`warble.detection/1`).
//! - [`bundle`]: model bundles (`warble.bundle/1`): manifest, ed25519 keys, signed tar
//!   writing and verification, self-test vectors.
//! - [`files`]: bounded reads of the files a configuration names.
//! - [`truth`]: ground truth for a recording and how detections score against it.
//! - [`wire`]: what stations, collectors and the broker's ACL agree on (station ids).
#![deny(missing_docs)]

pub mod audio;
pub mod backoff;
pub mod bundle;
pub mod event;
pub mod files;
pub mod frontend;
pub mod labels;
pub mod truth;
pub mod wire;

pub use audio::{AudioError, SampleRate};
pub use frontend::{ClipFrontEnd, FrontEndConfig, FrontEndError, Preset, StreamingFrontEnd};
pub use labels::{Label, LabelTable, LabelsError, SpeciesCode};
