//! One STFT frame → one column of mel dB values (before the per-clip floor).
//!
//! Both modes of the front end call this and nothing else for the spectral part, which is
//! what makes streaming windows equal clip-mode features. All buffers are owned here and
//! sized once, so analysing a frame never allocates.

use std::fmt;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use super::FrontEndConfig;
use super::filterbank::MelFilterbank;

/// Per-frame analysis state: window, FFT plan, scratch buffers and the filterbank.
pub(crate) struct FrameAnalyzer {
    n_fft: usize,
    hop: usize,
    amin: f32,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f32>,
    filterbank: MelFilterbank,
}

impl fmt::Debug for FrameAnalyzer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAnalyzer")
            .field("n_fft", &self.n_fft)
            .field("hop", &self.hop)
            .field("n_mels", &self.filterbank.n_mels())
            .finish_non_exhaustive()
    }
}

impl FrameAnalyzer {
    /// Builds the analyzer for a validated config.
    pub(crate) fn new(cfg: &FrontEndConfig) -> Self {
        let n_fft = cfg.n_fft;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        let window = (0..n_fft)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * n as f64 / n_fft as f64;
                0.5 - 0.5 * phase.cos()
            })
            .collect();
        Self {
            n_fft,
            hop: cfg.hop_length,
            amin: cfg.amin as f32,
            window,
            frame: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            power: vec![0.0; cfg.n_freqs()],
            fft,
            filterbank: MelFilterbank::new(cfg),
        }
    }

    /// Number of mel bands written per frame.
    pub(crate) fn n_mels(&self) -> usize {
        self.filterbank.n_mels()
    }

    /// Frame `index` of `samples` as a clip: centred at `index · hop`, reflect-padded where
    /// it reaches past either end. `samples` must be longer than `n_fft / 2`.
    pub(crate) fn clip_frame(&mut self, samples: &[f32], index: usize, out: &mut [f32]) {
        let half = self.n_fft / 2;
        let len = samples.len();
        let start = index * self.hop;
        if start >= half && start + half <= len {
            for (d, &s) in self
                .frame
                .iter_mut()
                .zip(&samples[start - half..start + half])
            {
                *d = f64::from(s);
            }
        } else {
            let last = len as isize - 1;
            for (t, dst) in self.frame.iter_mut().enumerate() {
                let mut pos = start as isize + t as isize - half as isize;
                if pos < 0 {
                    pos = -pos;
                }
                if pos > last {
                    pos = 2 * last - pos;
                }
                *dst = f64::from(samples[pos as usize]);
            }
        }
        self.analyse_loaded_frame(out);
    }

    /// Analyses `n_fft` contiguous samples (a frame that needs no padding).
    pub(crate) fn interior_frame(&mut self, frame: &[f32], out: &mut [f32]) {
        for (d, &s) in self.frame.iter_mut().zip(frame) {
            *d = f64::from(s);
        }
        self.analyse_loaded_frame(out);
    }

    /// Window → real FFT → power → mel → dB, from `self.frame` into `out`.
    fn analyse_loaded_frame(&mut self, out: &mut [f32]) {
        for (x, w) in self.frame.iter_mut().zip(&self.window) {
            *x = bounded(*x) * w;
        }
        // The buffers were made by this plan, so their lengths always match and the FFT
        // cannot fail; there is nothing useful to do with the error in a hot loop.
        let _ =
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch);
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.norm_sqr() as f32;
        }
        self.filterbank.apply(&self.power, out);
        for v in out.iter_mut() {
            *v = 10.0 * v.max(self.amin).log10();
        }
    }
}

/// The largest sample magnitude analysed: 120 dB above full scale. Beyond it (a damaged
/// float file, a broken driver) the power of a frame would overflow `f32` and every
/// later number of the window would be infinite or NaN; no recording comes near it.
pub(crate) const MAX_SAMPLE: f64 = 1e6;

/// A sample as analysed: NaN as silence, magnitudes clamped to [`MAX_SAMPLE`], so the
/// features of any input are finite.
fn bounded(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-MAX_SAMPLE, MAX_SAMPLE)
    }
}
