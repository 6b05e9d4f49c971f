//! Raw PCM from a pipe (standard input): interleaved 16-bit integer or 32-bit float
//! little-endian frames at a stated rate and channel count — what `arecord -t raw`, `sox
//! -t raw` or `ffmpeg -f s16le` write — mixed to mono and resampled to the model's rate.

use std::io::{self, Read};

use warble_core::SampleRate;
use warble_core::audio::StreamResampler;

/// Sample encoding of raw PCM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcmFormat {
    /// Signed 16-bit little-endian.
    S16Le,
    /// 32-bit float little-endian.
    F32Le,
}

impl PcmFormat {
    fn bytes(self) -> usize {
        match self {
            Self::S16Le => 2,
            Self::F32Le => 4,
        }
    }
}

/// Why raw PCM cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PcmError {
    /// Reading failed.
    #[error("reading raw PCM: {0}")]
    Io(#[from] io::Error),
    /// Resampling failed (an unusable rate).
    #[error("resampling raw PCM from {from} Hz: {reason}")]
    Resample {
        /// The input rate.
        from: u32,
        /// Why.
        reason: String,
    },
    /// No channels.
    #[error("raw PCM needs at least one channel")]
    NoChannels,
}

fn resample_error(from: u32) -> impl Fn(warble_core::audio::AudioErrorKind) -> PcmError {
    move |e| PcmError::Resample {
        from,
        reason: format!("{e:?}"),
    }
}

/// Reads raw PCM frames, yields mono samples at the model's rate.
#[derive(Debug)]
pub struct PcmReader<R> {
    input: R,
    format: PcmFormat,
    channels: usize,
    from: u32,
    resampler: StreamResampler,
    bytes: Vec<u8>,
    /// Bytes of an incomplete frame carried to the next read.
    carry: usize,
    mono: Vec<f32>,
    done: bool,
    /// Bytes at the end that did not make a whole frame.
    pub trailing_bytes: usize,
}

/// Frames read per chunk.
const FRAMES: usize = 4096;

impl<R: Read> PcmReader<R> {
    /// A reader of `channels`-channel `format` PCM at `rate`, resampled to `to`.
    ///
    /// # Errors
    /// [`PcmError`] for zero channels or a rate the resampler refuses.
    pub fn new(
        input: R,
        format: PcmFormat,
        channels: u16,
        rate: SampleRate,
        to: SampleRate,
    ) -> Result<Self, PcmError> {
        if channels == 0 {
            return Err(PcmError::NoChannels);
        }
        let resampler = StreamResampler::new(rate, to).map_err(resample_error(rate.hz()))?;
        Ok(Self {
            input,
            format,
            channels: usize::from(channels),
            from: rate.hz(),
            resampler,
            bytes: vec![0; FRAMES * usize::from(channels) * format.bytes()],
            carry: 0,
            mono: Vec::with_capacity(FRAMES),
            done: false,
            trailing_bytes: 0,
        })
    }

    /// Appends the next samples to `out`; returns how many (0: the input has ended).
    ///
    /// # Errors
    /// [`PcmError`] when reading or resampling fails.
    pub fn read_chunk(&mut self, out: &mut Vec<f32>) -> Result<usize, PcmError> {
        let before = out.len();
        while out.len() == before && !self.done {
            // Fill the buffer as far as the pipe gives (short reads are normal).
            let mut filled = self.carry;
            while filled < self.bytes.len() {
                match self.input.read(&mut self.bytes[filled..]) {
                    Ok(0) => {
                        self.done = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let frame = self.channels * self.format.bytes();
            let whole = filled / frame * frame;
            self.mono.clear();
            for f in self.bytes[..whole].chunks_exact(frame) {
                let sum: f32 = f
                    .chunks_exact(self.format.bytes())
                    .map(|b| match self.format {
                        PcmFormat::S16Le => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0,
                        PcmFormat::F32Le => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    })
                    .sum();
                self.mono.push(sum / self.channels as f32);
            }
            self.bytes.copy_within(whole..filled, 0);
            self.carry = filled - whole;
            self.resampler
                .process(&self.mono, out)
                .map_err(resample_error(self.from))?;
            if self.done {
                self.trailing_bytes = self.carry;
                self.resampler
                    .finish(out)
                    .map_err(resample_error(self.from))?;
            }
        }
        Ok(out.len() - before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most 3 bytes per call: frames split across reads.
    struct Trickle(std::io::Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.read(&mut buf[..n])
        }
    }

    fn read_all<R: Read>(mut r: PcmReader<R>) -> (Vec<f32>, usize) {
        let mut out = Vec::new();
        while r.read_chunk(&mut out).unwrap() > 0 {}
        (out, r.trailing_bytes)
    }

    #[test]
    fn stereo_s16_is_mixed_to_mono_across_short_reads() {
        let frames: Vec<[i16; 2]> = (0..10_000).map(|i| [i as i16, -(i as i16) / 2]).collect();
        let mut bytes: Vec<u8> = frames
            .iter()
            .flat_map(|f| f.iter().flat_map(|s| s.to_le_bytes()))
            .collect();
        bytes.push(7); // half a sample at the end
        let r = PcmReader::new(
            Trickle(std::io::Cursor::new(bytes)),
            PcmFormat::S16Le,
            2,
            SampleRate::HZ_32000,
            SampleRate::HZ_32000,
        )
        .unwrap();
        let (mono, trailing) = read_all(r);
        assert_eq!(mono.len(), 10_000);
        for (i, &m) in mono.iter().enumerate() {
            let want = (f32::from(i as i16) + f32::from(-(i as i16) / 2)) / 2.0 / 32768.0;
            assert_eq!(m, want, "{i}");
        }
        assert_eq!(trailing, 1);
    }

    #[test]
    fn f32_at_another_rate_is_resampled_to_the_models() {
        let rate = SampleRate::new(48_000).unwrap();
        let tone: Vec<u8> = (0..48_000)
            .flat_map(|i| ((i as f32 * 0.05).sin() * 0.5).to_le_bytes())
            .collect();
        let r = PcmReader::new(
            std::io::Cursor::new(tone),
            PcmFormat::F32Le,
            1,
            rate,
            SampleRate::HZ_32000,
        )
        .unwrap();
        let (mono, _) = read_all(r);
        assert_eq!(mono.len(), 32_000, "one second at the model's rate");
        let peak = mono[1000..31_000].iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((peak - 0.5).abs() < 0.01, "{peak}");
    }

    #[test]
    fn zero_channels_are_refused() {
        assert!(matches!(
            PcmReader::new(
                std::io::empty(),
                PcmFormat::S16Le,
                0,
                SampleRate::HZ_32000,
                SampleRate::HZ_32000
            ),
            Err(PcmError::NoChannels)
        ));
    }
}
