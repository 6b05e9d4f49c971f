//! Clip mode: one whole clip → `(n_mels, frames)` features.

use super::analyzer::FrameAnalyzer;
use super::normalise::finalise;
use super::{FrontEndConfig, FrontEndError};

/// Computes features for whole clips.
///
/// Reuse one instance for many clips: its buffers grow to the largest clip seen and are
/// then reused, so clips of one length cause no allocation after the first.
#[derive(Debug)]
pub struct ClipFrontEnd {
    cfg: FrontEndConfig,
    analyzer: FrameAnalyzer,
    db: Vec<f32>,
}

impl ClipFrontEnd {
    /// Builds a clip front end.
    ///
    /// # Errors
    /// [`FrontEndError::InvalidConfig`] if the config does not validate.
    pub fn new(cfg: FrontEndConfig) -> Result<Self, FrontEndError> {
        cfg.validate()?;
        Ok(Self {
            analyzer: FrameAnalyzer::new(&cfg),
            cfg,
            db: Vec::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &FrontEndConfig {
        &self.cfg
    }

    /// Output length (n_mels × frames) for a clip of `n_samples`.
    pub fn output_len(&self, n_samples: usize) -> usize {
        self.cfg.n_mels * self.cfg.frames_for(n_samples)
    }

    /// Computes the features of `pcm` into `out`, laid out `(n_mels, frames)` row-major.
    ///
    /// # Errors
    /// [`FrontEndError::ClipTooShort`] if `pcm` has at most `n_fft / 2` samples;
    /// [`FrontEndError::OutputLength`] if `out` is not [`Self::output_len`] long.
    pub fn compute(&mut self, pcm: &[f32], out: &mut [f32]) -> Result<(), FrontEndError> {
        if pcm.len() < self.cfg.min_samples() {
            return Err(FrontEndError::ClipTooShort {
                samples: pcm.len(),
                min: self.cfg.n_fft / 2,
            });
        }
        let expected = self.output_len(pcm.len());
        if out.len() != expected {
            return Err(FrontEndError::OutputLength {
                got: out.len(),
                expected,
            });
        }
        let n_mels = self.analyzer.n_mels();
        self.db.resize(expected, 0.0);
        for (index, column) in self.db.chunks_exact_mut(n_mels).enumerate() {
            self.analyzer.clip_frame(pcm, index, column);
        }
        finalise(&self.db, n_mels, &self.cfg, out);
        Ok(())
    }

    /// Like [`Self::compute`], allocating the output.
    ///
    /// # Errors
    /// As [`Self::compute`].
    pub fn compute_vec(&mut self, pcm: &[f32]) -> Result<Vec<f32>, FrontEndError> {
        let mut out = vec![0.0; self.output_len(pcm.len())];
        self.compute(pcm, &mut out)?;
        Ok(out)
    }
}
