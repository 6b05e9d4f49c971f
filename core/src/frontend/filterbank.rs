//! Sparse triangular mel filterbank (HTK scale, no area normalisation), as torchaudio's
//! `melscale_fbanks(norm=None, mel_scale="htk")`.
//!
//! Each filter is non-zero on a short run of FFT bins only, so it is stored as that run:
//! applying 256 filters to 1025 bins costs about 2 × 1025 multiply-adds instead of 262,400.

use super::FrontEndConfig;

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// Centre frequency in Hz of each mel band (the peaks of the triangles), for labelling
/// spectrogram axes and summaries.
pub fn band_centres_hz(cfg: &FrontEndConfig) -> Vec<f64> {
    let (m_min, m_max) = (hz_to_mel(cfg.f_min_hz), hz_to_mel(cfg.f_max_hz));
    (1..=cfg.n_mels)
        .map(|i| mel_to_hz(m_min + (m_max - m_min) * i as f64 / (cfg.n_mels + 1) as f64))
        .collect()
}

/// One filter: weights for the bins `first_bin .. first_bin + len`.
#[derive(Debug, Clone, Copy)]
struct Band {
    first_bin: usize,
    offset: usize,
    len: usize,
}

/// The filterbank, built once per front end.
#[derive(Debug, Clone)]
pub struct MelFilterbank {
    bands: Vec<Band>,
    weights: Vec<f32>,
    n_freqs: usize,
}

impl MelFilterbank {
    /// Builds the filterbank for a (validated) config. Weights are computed in `f64`,
    /// exactly as the reference, then stored as `f32`.
    pub fn new(cfg: &FrontEndConfig) -> Self {
        let n_freqs = cfg.n_freqs();
        let n_mels = cfg.n_mels;
        let nyquist = f64::from(cfg.sample_rate_hz / 2);
        let freq = |k: usize| nyquist * k as f64 / (n_freqs - 1) as f64;
        let (m_min, m_max) = (hz_to_mel(cfg.f_min_hz), hz_to_mel(cfg.f_max_hz));
        let f_pts: Vec<f64> = (0..n_mels + 2)
            .map(|i| mel_to_hz(m_min + (m_max - m_min) * i as f64 / (n_mels + 1) as f64))
            .collect();
        let mut bands = Vec::with_capacity(n_mels);
        let mut weights = Vec::new();
        for m in 0..n_mels {
            let (lo, centre, hi) = (f_pts[m], f_pts[m + 1], f_pts[m + 2]);
            let weight = |k: usize| {
                let f = freq(k);
                let down = (f - lo) / (centre - lo);
                let up = (hi - f) / (hi - centre);
                down.min(up).max(0.0)
            };
            let nonzero: Vec<usize> = (0..n_freqs).filter(|&k| weight(k) > 0.0).collect();
            let (first_bin, len) = match (nonzero.first(), nonzero.last()) {
                (Some(&a), Some(&b)) => (a, b - a + 1),
                _ => (0, 0),
            };
            let offset = weights.len();
            weights.extend((first_bin..first_bin + len).map(|k| weight(k) as f32));
            bands.push(Band {
                first_bin,
                offset,
                len,
            });
        }
        Self {
            bands,
            weights,
            n_freqs,
        }
    }

    /// Number of mel bands.
    pub fn n_mels(&self) -> usize {
        self.bands.len()
    }

    /// Stored weights (a measure of the sparse cost per frame).
    pub fn n_weights(&self) -> usize {
        self.weights.len()
    }

    /// Applies the filterbank to one power spectrum (`n_freqs` values) into `mel`.
    pub fn apply(&self, power: &[f32], mel: &mut [f32]) {
        debug_assert_eq!(power.len(), self.n_freqs);
        for (band, out) in self.bands.iter().zip(mel.iter_mut()) {
            let w = &self.weights[band.offset..band.offset + band.len];
            let p = &power[band.first_bin..band.first_bin + band.len];
            // Accumulate in f64: low bands sum few bins, high bands many, and the sum feeds a
            // logarithm whose error budget is 1e-5 in standardised units.
            *out = w
                .iter()
                .zip(p)
                .map(|(&w, &p)| f64::from(w) * f64::from(p))
                .sum::<f64>() as f32;
        }
    }

    /// The dense matrix (n_freqs × n_mels, row-major), for tests against the reference.
    pub fn dense(&self) -> Vec<f32> {
        let n_mels = self.n_mels();
        let mut dense = vec![0.0; self.n_freqs * n_mels];
        for (m, band) in self.bands.iter().enumerate() {
            for i in 0..band.len {
                dense[(band.first_bin + i) * n_mels + m] = self.weights[band.offset + i];
            }
        }
        dense
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_sparse_triangles_within_range() {
        let cfg = FrontEndConfig::birdset();
        let fb = MelFilterbank::new(&cfg);
        assert_eq!(fb.n_mels(), 128);
        assert!(
            fb.n_weights() < 2 * cfg.n_freqs(),
            "{} weights",
            fb.n_weights()
        );
        assert!(fb.weights.iter().all(|&w| (0.0..=1.0).contains(&w)));
        // Every band peaks close to 1 except where bins are coarser than the band.
        let high = fb.bands.last().unwrap();
        let peak = fb.weights[high.offset..high.offset + high.len]
            .iter()
            .cloned()
            .fold(0.0f32, f32::max);
        assert!(peak > 0.9, "peak {peak}");
    }

    #[test]
    fn band_centres_rise_from_f_min_to_f_max() {
        let cfg = FrontEndConfig::birdset();
        let c = band_centres_hz(&cfg);
        assert_eq!(c.len(), 128);
        assert!(c.windows(2).all(|w| w[0] < w[1]));
        assert!(
            c[0] > 0.0 && c[0] < 100.0 && c[127] < 16_000.0 && c[127] > 15_000.0,
            "{c:?}"
        );
    }

    #[test]
    fn apply_equals_dense_product() {
        let cfg = FrontEndConfig::birdset();
        let fb = MelFilterbank::new(&cfg);
        let power: Vec<f32> = (0..cfg.n_freqs())
            .map(|k| ((k * 37) % 101) as f32)
            .collect();
        let mut mel = vec![0.0; cfg.n_mels];
        fb.apply(&power, &mut mel);
        let dense = fb.dense();
        for m in 0..cfg.n_mels {
            let expect: f32 = (0..cfg.n_freqs())
                .map(|k| power[k] * dense[k * cfg.n_mels + m])
                .sum();
            assert!(
                (mel[m] - expect).abs() <= 1e-3 * expect.abs().max(1.0),
                "band {m}"
            );
        }
    }
}
