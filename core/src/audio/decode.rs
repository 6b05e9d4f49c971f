//! Packet-by-packet decoding with symphonia, mixed down to mono.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::error::Position;
use super::{AudioError, AudioErrorKind, SampleRate};

/// Reads one audio file as mono `f32` at its own sample rate, one packet at a time.
pub struct AudioReader {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    sample_rate: SampleRate,
    channels: usize,
    total_frames: Option<u64>,
    frames_read: u64,
    interleaved: Vec<f32>,
}

impl fmt::Debug for AudioReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioReader")
            .field("path", &self.path)
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .field("frames_read", &self.frames_read)
            .finish_non_exhaustive()
    }
}

impl AudioReader {
    /// Opens and probes `path`.
    ///
    /// # Errors
    /// [`AudioErrorKind::Io`] if the file cannot be opened, [`AudioErrorKind::Empty`] for a
    /// zero-byte file, [`AudioErrorKind::Unsupported`] if no reader recognises it,
    /// [`AudioErrorKind::NoAudioTrack`] or [`AudioErrorKind::MissingParameter`] for
    /// containers without a usable audio stream.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AudioError> {
        let path = path.as_ref();
        let fail = |kind| AudioError::new(path, kind);
        let file = File::open(path).map_err(|e| fail(AudioErrorKind::Io(e)))?;
        let len = file
            .metadata()
            .map_err(|e| fail(AudioErrorKind::Io(e)))?
            .len();
        if len == 0 {
            return Err(fail(AudioErrorKind::Empty));
        }
        Self::probe(path, Box::new(file))
    }

    /// Probes audio held in memory (a clip received over the network, a fuzzer's
    /// input); `name` is what errors call it, and its extension is a format hint.
    ///
    /// # Errors
    /// As [`AudioReader::open`], without the I/O errors.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self, AudioError> {
        let name = name.as_ref();
        if bytes.is_empty() {
            return Err(AudioError::new(name, AudioErrorKind::Empty));
        }
        Self::probe(name, Box::new(std::io::Cursor::new(bytes)))
    }

    fn probe(
        path: &Path,
        source: Box<dyn symphonia::core::io::MediaSource>,
    ) -> Result<Self, AudioError> {
        let fail = |kind| AudioError::new(path, kind);
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let mss = MediaSourceStream::new(source, Default::default());
        let format = guarded(None, || {
            symphonia::default::get_probe()
                .probe(
                    &hint,
                    mss,
                    FormatOptions::default(),
                    MetadataOptions::default(),
                )
                .map_err(|e| classify(e, None))
        })
        .map_err(fail)?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| fail(AudioErrorKind::NoAudioTrack))?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| fail(AudioErrorKind::NoAudioTrack))?;
        let sample_rate = params
            .sample_rate
            .and_then(SampleRate::new)
            .ok_or_else(|| fail(AudioErrorKind::MissingParameter("sample rate")))?;
        if !(super::MIN_FILE_RATE_HZ..=super::MAX_FILE_RATE_HZ).contains(&sample_rate.hz()) {
            return Err(fail(AudioErrorKind::UnsupportedRate(sample_rate.hz())));
        }
        let channels = params
            .channels
            .as_ref()
            .map(|c| c.count())
            .filter(|&c| c > 0)
            .ok_or_else(|| fail(AudioErrorKind::MissingParameter("channel count")))?;
        if channels > super::MAX_CHANNELS {
            return Err(fail(AudioErrorKind::TooManyChannels(channels)));
        }
        let decoder = guarded(None, || {
            symphonia::default::get_codecs()
                .make_audio_decoder(params, &AudioDecoderOptions::default())
                .map_err(|e| classify(e, None))
        })
        .map_err(fail)?;
        let (track_id, total_frames) = (track.id, track.num_frames);
        Ok(Self {
            path: path.to_owned(),
            format,
            decoder,
            track_id,
            sample_rate,
            channels,
            total_frames,
            frames_read: 0,
            interleaved: Vec::new(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's sample rate.
    pub fn sample_rate(&self) -> SampleRate {
        self.sample_rate
    }

    /// The file's channel count (averaged to mono on reading).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Frames per channel, if the container declares it.
    pub fn total_frames(&self) -> Option<u64> {
        self.total_frames
    }

    /// Frames decoded so far.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Decodes the next packet and appends its mono samples to `out`. Returns the number
    /// appended; `Ok(0)` only at the end of the stream.
    ///
    /// # Errors
    /// [`AudioErrorKind::Corrupt`] or [`AudioErrorKind::Truncated`] with the position of
    /// the failure; [`AudioErrorKind::Empty`] if the stream ends before any sample.
    pub fn read_chunk(&mut self, out: &mut Vec<f32>) -> Result<usize, AudioError> {
        loop {
            let at = Position {
                frames: self.frames_read,
                rate_hz: self.sample_rate.hz(),
            };
            let next = guarded(Some(at), || {
                self.format.next_packet().map_err(|e| classify(e, Some(at)))
            });
            let packet = match next {
                Ok(Some(packet)) => packet,
                Ok(None) if self.frames_read == 0 => {
                    return Err(AudioError::new(&self.path, AudioErrorKind::Empty));
                }
                Ok(None) => return self.check_complete(),
                Err(kind) => return Err(AudioError::new(&self.path, kind)),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let decoder = &mut self.decoder;
            let decoded = guarded(Some(at), || {
                decoder.decode(&packet).map_err(|e| classify(e, Some(at)))
            })
            .map_err(|kind| AudioError::new(&self.path, kind))?;
            let frames = decoded.frames();
            if frames == 0 {
                continue;
            }
            decoded.copy_to_vec_interleaved(&mut self.interleaved);
            let channels = decoded.num_planes().max(1);
            // Float files can hold any bits; a NaN or an infinity is damage, not sound (and
            // would turn every window it reaches into NaN scores).
            if let Some(i) = self.interleaved.iter().position(|x| !x.is_finite()) {
                let at = Position {
                    frames: self.frames_read + (i / channels) as u64,
                    rate_hz: self.sample_rate.hz(),
                };
                return Err(AudioError::new(
                    &self.path,
                    AudioErrorKind::Corrupt {
                        at: Some(at),
                        reason: "a sample is not a number (NaN or infinite)".into(),
                    },
                ));
            }
            let scale = 1.0 / channels as f32;
            out.extend(
                self.interleaved
                    .chunks_exact(channels)
                    .map(|frame| frame.iter().sum::<f32>() * scale),
            );
            self.frames_read += frames as u64;
            return Ok(frames);
        }
    }
}

impl AudioReader {
    /// At the end of the stream: a container that declares its length must deliver it.
    /// Decoders resynchronise past damaged frames, which would otherwise silently drop
    /// audio and shift every later timestamp.
    fn check_complete(&self) -> Result<usize, AudioError> {
        match self.total_frames {
            Some(declared) if declared > self.frames_read => Err(AudioError::new(
                &self.path,
                AudioErrorKind::Incomplete {
                    declared,
                    decoded: self.frames_read,
                    rate_hz: self.sample_rate.hz(),
                },
            )),
            _ => Ok(0),
        }
    }
}

/// Runs a call into symphonia, turning a panic in it into a corrupt-data error: its
/// readers trust some header fields in arithmetic (fuzzing found a WAV `fmt` chunk whose
/// sizes overflow a multiplication), and a damaged file must be an error naming it, not a
/// crash of the station.
fn guarded<T>(
    at: Option<Position>,
    call: impl FnOnce() -> Result<T, AudioErrorKind>,
) -> Result<T, AudioErrorKind> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|_| {
        Err(AudioErrorKind::Corrupt {
            at,
            reason: "the decoder failed on malformed data".into(),
        })
    })
}

/// Classifies a symphonia error; `at` is where in the stream it happened (`None`: while
/// opening, before any audio).
fn classify(e: SymphoniaError, at: Option<Position>) -> AudioErrorKind {
    match e {
        SymphoniaError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            AudioErrorKind::Truncated(at)
        }
        SymphoniaError::IoError(io) => AudioErrorKind::Io(io),
        SymphoniaError::Unsupported(what) => AudioErrorKind::Unsupported(what.to_owned()),
        other => AudioErrorKind::Corrupt {
            at,
            reason: other.to_string(),
        },
    }
}
