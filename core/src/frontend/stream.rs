//! Streaming mode: push samples in chunks of any size, get model windows.
//!
//! A window of `length` samples starting at sample `s` has `F = 1 + length / hop` frames.
//! Its interior frames (those whose `n_fft` samples lie inside the window) are the same
//! numbers as the continuous stream's frames at those positions, so they are computed once,
//! as soon as their samples arrive, and kept while consecutive windows overlap. Its edge
//! frames (within `n_fft / 2` of either end) are what clip mode computes with reflect
//! padding at the window's own edges, so they are recomputed for each window. The
//! per-window top-dB floor and standardisation are then applied exactly as in clip mode.
//!
//! All buffers are sized when the front end is built: pushing samples never allocates.

use super::analyzer::FrameAnalyzer;
use super::normalise::finalise;
use super::{FrontEndConfig, FrontEndError};

/// Length and hop of the windows handed to the model, in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Samples per window (e.g. 160,000 for 5 s at 32 kHz).
    pub length_samples: usize,
    /// Samples between window starts; a multiple of the front end's hop length, so that
    /// windows sit on the frame grid and can share frames.
    pub hop_samples: usize,
}

/// Where an emitted window lies in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowInfo {
    /// Window number since the stream started (0, 1, 2, …).
    pub index: u64,
    /// Stream sample offset of the window's first sample.
    pub start_sample: u64,
    /// Samples of real audio in the window; less than the length only for the final,
    /// zero-padded window emitted by [`StreamingFrontEnd::finish`].
    pub valid_samples: usize,
}

/// Samples pushed at once when padding the final window, from a constant buffer.
const ZEROS: [f32; 512] = [0.0; 512];

/// The streaming front end. See the module docs for how it stays equal to clip mode.
#[derive(Debug)]
pub struct StreamingFrontEnd {
    cfg: FrontEndConfig,
    spec: WindowSpec,
    analyzer: FrameAnalyzer,
    /// Samples of the current window, `[start, start + filled)`; capacity `length`.
    samples: Vec<f32>,
    filled: usize,
    /// Leading samples of `samples` that an earlier window already covered.
    covered: usize,
    /// Incoming samples to drop before the next window starts (hop longer than length).
    skip: usize,
    /// Mel dB per window-relative frame, frame-major (`frames × n_mels`).
    frames_db: Vec<f32>,
    /// Next interior frame (window-relative) still to compute.
    next_frame: usize,
    /// Interior frames are `first_interior ..= last_interior` (empty if first > last).
    first_interior: usize,
    last_interior: usize,
    frames: usize,
    /// The finished window, `(n_mels, frames)`.
    features: Vec<f32>,
    window_index: u64,
    window_start: u64,
    /// Real samples in the current window (the rest is padding from `finish`).
    real_samples: usize,
}

impl StreamingFrontEnd {
    /// Builds a streaming front end emitting windows of `spec`.
    ///
    /// # Errors
    /// [`FrontEndError::InvalidConfig`] for a bad config; [`FrontEndError::InvalidWindow`]
    /// if the window is too short for reflect padding, or its hop is zero or not a
    /// multiple of the frame hop.
    pub fn new(cfg: FrontEndConfig, spec: WindowSpec) -> Result<Self, FrontEndError> {
        cfg.validate()?;
        let hop = cfg.hop_length;
        if spec.length_samples < cfg.min_samples() {
            return Err(FrontEndError::InvalidWindow(format!(
                "length {} samples must exceed n_fft / 2 = {}",
                spec.length_samples,
                cfg.n_fft / 2
            )));
        }
        if spec.hop_samples == 0 || !spec.hop_samples.is_multiple_of(hop) {
            return Err(FrontEndError::InvalidWindow(format!(
                "hop {} samples must be a positive multiple of the frame hop {hop}",
                spec.hop_samples
            )));
        }
        let half = cfg.n_fft / 2;
        let frames = cfg.frames_for(spec.length_samples);
        let first_interior = half.div_ceil(hop);
        let last_interior = (spec.length_samples - half) / hop;
        let analyzer = FrameAnalyzer::new(&cfg);
        let n_mels = analyzer.n_mels();
        Ok(Self {
            samples: vec![0.0; spec.length_samples],
            frames_db: vec![0.0; frames * n_mels],
            features: vec![0.0; frames * n_mels],
            analyzer,
            cfg,
            spec,
            filled: 0,
            covered: 0,
            skip: 0,
            next_frame: first_interior,
            first_interior,
            last_interior,
            frames,
            window_index: 0,
            window_start: 0,
            real_samples: 0,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &FrontEndConfig {
        &self.cfg
    }

    /// The window length and hop.
    pub fn window_spec(&self) -> WindowSpec {
        self.spec
    }

    /// Shape of each emitted window: `(n_mels, frames)`.
    pub fn window_shape(&self) -> (usize, usize) {
        (self.cfg.n_mels, self.frames)
    }

    /// STFT frames computed once and shared between windows (the rest are edge frames,
    /// recomputed per window). Reported by benchmarks.
    pub fn shared_frames_per_window(&self) -> usize {
        (self.last_interior + 1).saturating_sub(self.first_interior)
    }

    /// Pushes samples; calls `on_window` for each window completed by them, with the
    /// window's position and its features `(n_mels, frames)` row-major. Returns the number
    /// of windows emitted. Never allocates.
    pub fn push<F>(&mut self, mut pcm: &[f32], mut on_window: F) -> usize
    where
        F: FnMut(WindowInfo, &[f32]),
    {
        let mut emitted = 0;
        while !pcm.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(pcm.len());
                self.skip -= n;
                pcm = &pcm[n..];
                continue;
            }
            let n = (self.spec.length_samples - self.filled).min(pcm.len());
            self.samples[self.filled..self.filled + n].copy_from_slice(&pcm[..n]);
            self.filled += n;
            self.real_samples += n;
            pcm = &pcm[n..];
            self.compute_ready_frames();
            if self.filled == self.spec.length_samples {
                self.emit(&mut on_window);
                emitted += 1;
            }
        }
        emitted
    }

    /// Ends the stream: if samples arrived that no window has covered yet, pads them with
    /// zeros to a full window (as clip mode pads a short clip) and emits it. Returns whether
    /// a window was emitted. The front end is then ready for a new stream.
    pub fn finish<F>(&mut self, mut on_window: F) -> bool
    where
        F: FnMut(WindowInfo, &[f32]),
    {
        let pending = self.filled > self.covered;
        if pending {
            let real = self.real_samples;
            while self.filled < self.spec.length_samples {
                let n = (self.spec.length_samples - self.filled).min(ZEROS.len());
                self.samples[self.filled..self.filled + n].copy_from_slice(&ZEROS[..n]);
                self.filled += n;
                self.compute_ready_frames();
            }
            self.real_samples = real;
            self.emit(&mut on_window);
        }
        self.reset();
        pending
    }

    /// Forgets all buffered audio (e.g. after a capture gap), keeping the buffers.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.covered = 0;
        self.skip = 0;
        self.next_frame = self.first_interior;
        self.window_index = 0;
        self.window_start = 0;
        self.real_samples = 0;
    }

    /// Computes every interior frame whose samples have all arrived.
    fn compute_ready_frames(&mut self) {
        let (hop, half, n_mels) = (self.cfg.hop_length, self.cfg.n_fft / 2, self.cfg.n_mels);
        while self.next_frame <= self.last_interior && self.next_frame * hop + half <= self.filled {
            let centre = self.next_frame * hop;
            let out = &mut self.frames_db[self.next_frame * n_mels..(self.next_frame + 1) * n_mels];
            self.analyzer
                .interior_frame(&self.samples[centre - half..centre + half], out);
            self.next_frame += 1;
        }
    }

    /// Completes the full window: edge frames, normalisation, callback, then advances.
    fn emit<F>(&mut self, on_window: &mut F)
    where
        F: FnMut(WindowInfo, &[f32]),
    {
        let n_mels = self.cfg.n_mels;
        let edges = (0..self.first_interior.min(self.frames))
            .chain((self.last_interior + 1).max(self.first_interior)..self.frames);
        for j in edges {
            let out = &mut self.frames_db[j * n_mels..(j + 1) * n_mels];
            self.analyzer.clip_frame(&self.samples, j, out);
        }
        finalise(&self.frames_db, n_mels, &self.cfg, &mut self.features);
        let info = WindowInfo {
            index: self.window_index,
            start_sample: self.window_start,
            valid_samples: self.real_samples.min(self.spec.length_samples),
        };
        on_window(info, &self.features);
        self.advance();
    }

    /// Moves to the next window, keeping the samples and frames it shares with this one.
    fn advance(&mut self) {
        let (len, hop_samples) = (self.spec.length_samples, self.spec.hop_samples);
        let hop_frames = hop_samples / self.cfg.hop_length;
        let n_mels = self.cfg.n_mels;
        if hop_samples < len {
            self.samples.copy_within(hop_samples..len, 0);
            self.filled = len - hop_samples;
            self.covered = self.filled;
            self.real_samples = self.real_samples.saturating_sub(hop_samples);
            if hop_frames < self.frames {
                self.frames_db.copy_within(hop_frames * n_mels.., 0);
            }
            // Interior frames up to `last_interior` were all computed; those still inside
            // the new window moved down by `hop_frames`.
            self.next_frame = (self.last_interior + 1)
                .saturating_sub(hop_frames)
                .max(self.first_interior);
        } else {
            self.filled = 0;
            self.covered = 0;
            self.real_samples = 0;
            self.skip = hop_samples - len;
            self.next_frame = self.first_interior;
        }
        self.window_index += 1;
        self.window_start += hop_samples as u64;
    }
}
