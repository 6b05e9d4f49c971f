//! Errors from reading audio: always the file, then what is wrong with it.

use std::fmt;
use std::path::{Path, PathBuf};

/// An audio file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("audio file {}: {kind}", path.display())]
pub struct AudioError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong (shown in this error's message, so not repeated as its source).
    pub kind: AudioErrorKind,
}

impl AudioError {
    pub(crate) fn new(path: &Path, kind: AudioErrorKind) -> Self {
        Self {
            path: path.to_owned(),
            kind,
        }
    }
}

/// Why an audio file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioErrorKind {
    /// The file could not be opened or read.
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    /// The file has zero bytes, or decodes to zero samples.
    #[error("empty: it contains no audio samples")]
    Empty,
    /// Not a container/codec that Warble reads (WAV, FLAC, OGG/Vorbis, MP3).
    #[error("unsupported format ({0}); Warble reads WAV, FLAC, OGG/Vorbis and MP3")]
    Unsupported(String),
    /// The container has no audio track.
    #[error("no audio track")]
    NoAudioTrack,
    /// The stream header lacks the sample rate or channel count.
    #[error("stream does not declare its {0}")]
    MissingParameter(&'static str),
    /// Malformed data.
    #[error("corrupt data{}: {reason}", after(at))]
    Corrupt {
        /// Position of the failure (`None`: in the header, before any audio).
        at: Option<Position>,
        /// The decoder's description.
        reason: String,
    },
    /// Decoding skipped damaged frames: fewer frames came out than the stream declares.
    #[error(
        "damaged: {missing} of {declared} declared frames ({seconds:.3} s) could not be decoded",
        missing = declared - decoded,
        seconds = (declared - decoded) as f64 / f64::from(*rate_hz)
    )]
    Incomplete {
        /// Frames the container declares.
        declared: u64,
        /// Frames decoded.
        decoded: u64,
        /// The stream's sample rate.
        rate_hz: u32,
    },
    /// The file ends in the middle of the stream.
    #[error("truncated: the file ends unexpectedly {}", match .0 { Some(p) => format!("after {p}"), None => "in its header".to_owned() })]
    Truncated(Option<Position>),
    /// A declared sample rate outside [`super::MIN_FILE_RATE_HZ`]..=[`super::MAX_FILE_RATE_HZ`]
    /// (a header claiming 1 Hz would make a 40-kB file hours of audio and a resampler of
    /// hundreds of megabytes).
    #[error(
        "sample rate {0} Hz is outside what Warble reads ({min}–{max} Hz)",
        min = super::MIN_FILE_RATE_HZ,
        max = super::MAX_FILE_RATE_HZ
    )]
    UnsupportedRate(u32),
    /// More channels than [`super::MAX_CHANNELS`].
    #[error("{0} channels, more than Warble mixes down ({max})", max = super::MAX_CHANNELS)]
    TooManyChannels(usize),
    /// The resampler could not be built or failed.
    #[error("resampling failed: {0}")]
    Resample(String),
}

fn after(at: &Option<Position>) -> String {
    at.map(|p| format!(" after {p}")).unwrap_or_default()
}

/// A position in a stream, shown in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Frames decoded before the failure.
    pub frames: u64,
    /// The stream's sample rate.
    pub rate_hz: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.frames as f64 / f64::from(self.rate_hz.max(1));
        write!(f, "{seconds:.3} s ({} frames)", self.frames)
    }
}
