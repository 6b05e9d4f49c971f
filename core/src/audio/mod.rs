//! Audio in: decode common formats to mono `f32` in bounded chunks, and resample.
//!
//! - [`AudioReader`]: WAV, FLAC, OGG/Vorbis, MP3 → mono (channels averaged) at the file's
//!   own rate, one packet at a time, so a 10-hour recording is never held whole.
//! - [`StreamResampler`]: high-quality sinc resampling for a stream of chunks (live input
//!   or a file being read), aligned so that output sample `n` is input time `n / rate_out`.
//! - [`AudioStream`]: both together: a file read in chunks at the target rate.
//! - [`decode_file`]: a whole (short) file at the target rate, for clips and tests.

mod decode;
mod error;
mod resample;

use std::fmt;
use std::path::Path;

pub use decode::AudioReader;
pub use error::{AudioError, AudioErrorKind};
pub use resample::StreamResampler;

/// A sample rate in Hz. Never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct SampleRate(u32);

/// The lowest sample rate a file may declare.
pub const MIN_FILE_RATE_HZ: u32 = 1_000;
/// The highest sample rate a file may declare (ultrasonic recorders reach 384–500 kHz).
pub const MAX_FILE_RATE_HZ: u32 = 768_000;
/// The most channels a file may have.
pub const MAX_CHANNELS: usize = 64;

impl SampleRate {
    /// 32 kHz, the rate of every Warble front-end preset.
    pub const HZ_32000: SampleRate = SampleRate(32_000);

    /// A sample rate, or `None` for zero.
    pub const fn new(hz: u32) -> Option<Self> {
        if hz == 0 { None } else { Some(Self(hz)) }
    }

    /// The rate in Hz.
    pub const fn hz(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SampleRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz", self.0)
    }
}

/// A file read in chunks and resampled to a target rate.
#[derive(Debug)]
pub struct AudioStream {
    reader: AudioReader,
    resampler: StreamResampler,
    chunk: Vec<f32>,
    finished: bool,
}

impl AudioStream {
    /// Opens `path` for reading at `target` rate.
    ///
    /// # Errors
    /// Any [`AudioError`] from opening the file.
    pub fn open(path: impl AsRef<Path>, target: SampleRate) -> Result<Self, AudioError> {
        let reader = AudioReader::open(path)?;
        let resampler = StreamResampler::new(reader.sample_rate(), target)
            .map_err(|kind| AudioError::new(reader.path(), kind))?;
        Ok(Self {
            reader,
            resampler,
            chunk: Vec::new(),
            finished: false,
        })
    }

    /// The underlying reader (source rate, channels, path).
    pub fn reader(&self) -> &AudioReader {
        &self.reader
    }

    /// Appends the next resampled samples to `out`; returns how many were appended. `Ok(0)`
    /// means the end of the file (once all resampler output has been flushed).
    ///
    /// # Errors
    /// An [`AudioError`] naming the file if decoding fails part-way.
    pub fn read_chunk(&mut self, out: &mut Vec<f32>) -> Result<usize, AudioError> {
        let before = out.len();
        while out.len() == before && !self.finished {
            self.chunk.clear();
            let n = self.reader.read_chunk(&mut self.chunk)?;
            let path = self.reader.path();
            if n == 0 {
                self.resampler
                    .finish(out)
                    .map_err(|kind| AudioError::new(path, kind))?;
                self.finished = true;
            } else {
                self.resampler
                    .process(&self.chunk, out)
                    .map_err(|kind| AudioError::new(path, kind))?;
            }
        }
        Ok(out.len() - before)
    }
}

/// A whole file decoded to mono at the target rate.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    /// Mono samples at [`Self::sample_rate`].
    pub samples: Vec<f32>,
    /// The rate of `samples`.
    pub sample_rate: SampleRate,
    /// The file's own rate.
    pub source_rate: SampleRate,
    /// The file's channel count (averaged into `samples`).
    pub source_channels: usize,
}

/// Decodes a whole file to mono at `target` rate. Use [`AudioStream`] for long recordings.
///
/// # Errors
/// An [`AudioError`] naming the file and the reason (missing, empty, unsupported,
/// corrupt, truncated).
pub fn decode_file(path: impl AsRef<Path>, target: SampleRate) -> Result<DecodedAudio, AudioError> {
    let mut stream = AudioStream::open(path, target)?;
    let mut samples = Vec::new();
    while stream.read_chunk(&mut samples)? > 0 {}
    Ok(DecodedAudio {
        samples,
        sample_rate: target,
        source_rate: stream.reader.sample_rate(),
        source_channels: stream.reader.channels(),
    })
}
