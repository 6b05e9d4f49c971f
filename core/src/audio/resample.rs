//! Streaming sinc resampling (rubato), aligned and flushed.
//!
//! rubato processes fixed-size chunks and delays its output by the filter's half-length.
//! This wrapper accepts chunks of any size, trims that delay so output sample `n` sits at
//! time `n / rate_out`, and on [`StreamResampler::finish`] flushes the tail, so a file of
//! `n` samples becomes `ceil(n · ratio)` samples, as a whole-file resampler would give.

use std::fmt;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Indexing, Resampler, SincInterpolationParameters, WindowFunction};

use super::{AudioErrorKind, SampleRate};

/// Input frames per rubato call: small enough for live latency, large enough for speed.
const CHUNK: usize = 1024;

/// Resamples a mono stream from one rate to another; a copy when the rates are equal.
pub struct StreamResampler {
    inner: Option<Inner>,
    from: SampleRate,
    to: SampleRate,
}

struct Inner {
    resampler: Async<f32>,
    input: Vec<f32>,
    filled: usize,
    output: Vec<f32>,
    delay_left: usize,
    total_in: u64,
    total_out: u64,
}

impl fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// A resampler from `from` to `to` (256-tap Blackman-Harris sinc, cubic interpolation).
    ///
    /// # Errors
    /// [`AudioErrorKind::Resample`] if rubato rejects the ratio.
    pub fn new(from: SampleRate, to: SampleRate) -> Result<Self, AudioErrorKind> {
        if from == to {
            return Ok(Self {
                inner: None,
                from,
                to,
            });
        }
        let ratio = f64::from(to.hz()) / f64::from(from.hz());
        let params = SincInterpolationParameters::new(256, WindowFunction::BlackmanHarris2);
        let resampler = Async::<f32>::new_sinc(ratio, 1.0, &params, CHUNK, 1, FixedAsync::Input)
            .map_err(|e| AudioErrorKind::Resample(e.to_string()))?;
        let inner = Inner {
            input: vec![0.0; CHUNK],
            output: vec![0.0; resampler.output_frames_max()],
            delay_left: resampler.output_delay(),
            filled: 0,
            resampler,
            total_in: 0,
            total_out: 0,
        };
        Ok(Self {
            inner: Some(inner),
            from,
            to,
        })
    }

    /// Input rate.
    pub fn from_rate(&self) -> SampleRate {
        self.from
    }

    /// Output rate.
    pub fn to_rate(&self) -> SampleRate {
        self.to
    }

    /// Appends the resampled form of `input` to `out` (output lags input by less than one
    /// chunk until [`Self::finish`]). Allocates only if `out` must grow.
    ///
    /// # Errors
    /// [`AudioErrorKind::Resample`] if rubato fails (it does not for valid buffers).
    pub fn process(&mut self, mut input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioErrorKind> {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        inner.total_in += input.len() as u64;
        while !input.is_empty() {
            let n = (CHUNK - inner.filled).min(input.len());
            inner.input[inner.filled..inner.filled + n].copy_from_slice(&input[..n]);
            inner.filled += n;
            input = &input[n..];
            if inner.filled == CHUNK {
                inner.run(None, out)?;
                inner.filled = 0;
            }
        }
        Ok(())
    }

    /// Flushes the tail: after this, `ceil(total_in · ratio)` samples have been output in
    /// all. The resampler is then ready for a new stream.
    ///
    /// # Errors
    /// As [`Self::process`].
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), AudioErrorKind> {
        let ratio = f64::from(self.to.hz()) / f64::from(self.from.hz());
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        let expected = (inner.total_in as f64 * ratio).ceil() as u64;
        let mut partial = Some(inner.filled);
        while inner.total_out < expected {
            inner.run(partial, out)?;
            partial = Some(0);
        }
        out.truncate(out.len() - (inner.total_out - expected) as usize);
        inner.resampler.reset();
        inner.filled = 0;
        inner.delay_left = inner.resampler.output_delay();
        inner.total_in = 0;
        inner.total_out = 0;
        Ok(())
    }
}

impl Inner {
    /// One rubato call on `self.input` (the first `partial` frames, if given).
    fn run(&mut self, partial: Option<usize>, out: &mut Vec<f32>) -> Result<(), AudioErrorKind> {
        let err = |e: &dyn std::fmt::Display| AudioErrorKind::Resample(e.to_string());
        let input = InterleavedSlice::new(&self.input, 1, CHUNK).map_err(|e| err(&e))?;
        let frames_out = self.output.len();
        let mut output =
            InterleavedSlice::new_mut(&mut self.output, 1, frames_out).map_err(|e| err(&e))?;
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            partial_len: partial,
            active_channels_mask: None,
        };
        let (_, produced) = self
            .resampler
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|e| err(&e))?;
        let skip = self.delay_left.min(produced);
        self.delay_left -= skip;
        out.extend_from_slice(&self.output[skip..produced]);
        self.total_out += (produced - skip) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(hz: u32) -> SampleRate {
        SampleRate::new(hz).unwrap()
    }

    fn sine(hz: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut r = StreamResampler::new(rate(32_000), rate(32_000)).unwrap();
        let mut out = Vec::new();
        r.process(&[1.0, 2.0, 3.0], &mut out).unwrap();
        r.finish(&mut out).unwrap();
        assert_eq!(out, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn length_and_phase_are_preserved() {
        // A 1 kHz tone at 48 kHz → 32 kHz must come out as the same tone at 32 kHz, with
        // the exact expected length and aligned in time to within one output sample
        // (rubato reports its filter delay in whole samples).
        let input = sine(1000.0, 48_000, 48_000 + 17);
        let mut r = StreamResampler::new(rate(48_000), rate(32_000)).unwrap();
        let mut out = Vec::new();
        for chunk in input.chunks(777) {
            r.process(chunk, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        assert_eq!(
            out.len(),
            ((48_000 + 17) as f64 * 2.0 / 3.0).ceil() as usize
        );
        // Project the steady part (away from the filter's edge transients) on sin and cos.
        let omega = 2.0 * std::f64::consts::PI * 1000.0 / 32_000.0;
        let (mut s, mut c) = (0.0f64, 0.0f64);
        let body = 400..out.len() - 400;
        for n in body.clone() {
            s += f64::from(out[n]) * (omega * n as f64).sin();
            c += f64::from(out[n]) * (omega * n as f64).cos();
        }
        let amplitude = 2.0 * (s * s + c * c).sqrt() / body.len() as f64;
        let lag_samples = -c.atan2(s) / omega;
        assert!((amplitude - 1.0).abs() < 0.01, "amplitude {amplitude}");
        assert!(lag_samples.abs() < 1.0, "lag {lag_samples} samples");
    }

    #[test]
    fn chunking_does_not_change_the_output() {
        let input = sine(3100.0, 44_100, 20_000);
        let run = |chunk: usize| {
            let mut r = StreamResampler::new(rate(44_100), rate(32_000)).unwrap();
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                r.process(c, &mut out).unwrap();
            }
            r.finish(&mut out).unwrap();
            out
        };
        assert_eq!(run(1), run(4096));
    }

    #[test]
    fn frequencies_above_the_new_nyquist_are_removed() {
        let input = sine(20_000.0, 48_000, 48_000);
        let mut r = StreamResampler::new(rate(48_000), rate(32_000)).unwrap();
        let mut out = Vec::new();
        r.process(&input, &mut out).unwrap();
        r.finish(&mut out).unwrap();
        let rms = (out[1000..out.len() - 1000]
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            / (out.len() - 2000) as f32)
            .sqrt();
        // A full-scale tone has rms 0.707: require ≥ 45 dB of alias suppression.
        assert!(rms < 4e-3, "alias rms {rms}");
    }
}
