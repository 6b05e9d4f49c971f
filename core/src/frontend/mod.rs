//! The log-mel front end: the one implementation that turns samples into model input.
//!
//! - [`ClipFrontEnd`]: a whole clip → `(n_mels, frames)`, exactly the reference definition
//!   (used by the trainer and for batch analysis).
//! - [`StreamingFrontEnd`]: samples pushed in chunks of any size → windows of a configured
//!   length and hop, each equal to clip mode on the same samples; every STFT frame is
//!   computed once and nothing is allocated per frame (used by the recorder).
//!
//! Both call the same per-frame analysis and the same per-window normalisation, so the
//! model sees the same numbers in training and in the field.

mod analyzer;
mod clip;
mod config;
mod filterbank;
mod normalise;
mod stream;

pub use clip::ClipFrontEnd;
pub use config::{FRONTEND_SCHEMA, FrontEndConfig, MelScale, Preset, WindowKind};
pub use filterbank::{MelFilterbank, band_centres_hz};
pub use stream::{StreamingFrontEnd, WindowInfo, WindowSpec};

/// What can go wrong when configuring or running the front end.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum FrontEndError {
    /// A configuration value is out of range.
    #[error("invalid front-end config: {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A preset name that does not exist.
    #[error("unknown front-end preset `{0}` (known: audioprotopnet, birdset)")]
    UnknownPreset(String),
    /// The clip is too short for reflect padding.
    #[error(
        "clip of {samples} samples is too short: the front end needs more than {min} (n_fft / 2)"
    )]
    ClipTooShort {
        /// Samples given.
        samples: usize,
        /// Minimum accepted, exclusive.
        min: usize,
    },
    /// The output buffer has the wrong length.
    #[error("output buffer holds {got} values, expected n_mels × frames = {expected}")]
    OutputLength {
        /// Length given.
        got: usize,
        /// Length needed.
        expected: usize,
    },
    /// A streaming window that cannot be produced from the frame grid.
    #[error("invalid window: {0}")]
    InvalidWindow(String),
}
