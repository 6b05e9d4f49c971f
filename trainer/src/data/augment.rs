//! Training augmentations, as in the paper's recipe (DESIGN.md §3), each with its own
//! probability and all drawn from one seeded RNG per example:
//!
//! | augmentation | where | default |
//! |---|---|---|
//! | mixing with 1–2 other clips, label union | waveform | p 0.8, SNR 3–30 dB |
//! | background noise (a recording without calls) | waveform | p 0.5, SNR 3–30 dB |
//! | coloured noise (white, pink or brown) | waveform | p 0.2, SNR 3–30 dB |
//! | gain | waveform | p 0.2, −18…+6 dB |
//! | no-call clip: background only, all-zero label | waveform | p 0.075 |
//! | frequency masking (SpecAugment) | log-mel | p 0.5, ≤ 1/8 of the bands |
//! | time masking | log-mel | p 0.3, ≤ 1/10 of the frames |
//!
//! Masks set features to 0, the standardised mean. SNRs are taken against the clip's own
//! rms, so a mixed-in clip or noise is never louder than 3 dB below it.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::loader::LoadError;
use crate::synth::dsp::{self, NoiseColour};

/// Probabilities and ranges of every augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Probability of mixing in other clips.
    pub mix_p: f64,
    /// How many other clips (inclusive range).
    pub mix_count: (usize, usize),
    /// SNR of the mixed-in clips, dB.
    pub mix_snr_db: (f32, f32),
    /// Probability of adding background noise.
    pub background_p: f64,
    /// SNR of the background, dB.
    pub background_snr_db: (f32, f32),
    /// Probability of adding coloured noise.
    pub coloured_p: f64,
    /// SNR of the coloured noise, dB.
    pub coloured_snr_db: (f32, f32),
    /// Probability of a gain change.
    pub gain_p: f64,
    /// Gain range, dB.
    pub gain_db: (f32, f32),
    /// Probability of replacing the clip with background only.
    pub no_call_p: f64,
    /// Probability of a frequency mask.
    pub freq_mask_p: f64,
    /// Widest frequency mask, as a fraction of the bands.
    pub freq_mask_max: f32,
    /// Probability of a time mask.
    pub time_mask_p: f64,
    /// Widest time mask, as a fraction of the frames.
    pub time_mask_max: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            mix_p: 0.8,
            mix_count: (1, 2),
            mix_snr_db: (3.0, 30.0),
            background_p: 0.5,
            background_snr_db: (3.0, 30.0),
            coloured_p: 0.2,
            coloured_snr_db: (3.0, 30.0),
            gain_p: 0.2,
            gain_db: (-18.0, 6.0),
            no_call_p: 0.075,
            freq_mask_p: 0.5,
            freq_mask_max: 0.125,
            time_mask_p: 0.3,
            time_mask_max: 0.1,
        }
    }
}

impl AugmentConfig {
    /// Every augmentation off (evaluation, or ablations).
    pub fn none() -> Self {
        Self {
            mix_p: 0.0,
            background_p: 0.0,
            coloured_p: 0.0,
            gain_p: 0.0,
            no_call_p: 0.0,
            freq_mask_p: 0.0,
            time_mask_p: 0.0,
            ..Self::default()
        }
    }
}

/// Where augmentation material comes from.
pub trait AugmentSource {
    /// Another training clip (samples of the same length, multi-hot labels).
    ///
    /// # Errors
    /// The clip could not be loaded.
    fn other_clip(&self, rng: &mut ChaCha8Rng) -> Result<(Vec<f32>, Vec<f32>), LoadError>;
    /// A background recording without calls, `len` samples.
    ///
    /// # Errors
    /// The recording could not be loaded.
    fn background(&self, rng: &mut ChaCha8Rng, len: usize) -> Result<Vec<f32>, LoadError>;
}

fn range(rng: &mut ChaCha8Rng, (lo, hi): (f32, f32)) -> f32 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// Adds `noise` to `x` at `snr_db` below `x`'s rms (at a typical level if `x` is silent).
fn add_at_snr(x: &mut [f32], noise: &[f32], snr_db: f32) {
    let reference = dsp::rms(x).max(1e-3);
    let level = dsp::rms(noise);
    if level <= 0.0 {
        return;
    }
    let g = reference / dsp::db_to_gain(snr_db) / level;
    x.iter_mut().zip(noise).for_each(|(a, b)| *a += g * b);
}

/// Applies the waveform augmentations to one clip and its labels, in the order no-call →
/// mixing → background → coloured noise → gain. Samples are clamped to [−1, 1] at the end.
///
/// # Errors
/// Material from `source` could not be loaded.
pub fn waveform(
    cfg: &AugmentConfig,
    x: &mut Vec<f32>,
    y: &mut [f32],
    source: &dyn AugmentSource,
    rng: &mut ChaCha8Rng,
) -> Result<(), LoadError> {
    let len = x.len();
    if rng.random_bool(cfg.no_call_p) {
        *x = source.background(rng, len)?;
        y.iter_mut().for_each(|v| *v = 0.0);
    } else if rng.random_bool(cfg.mix_p) {
        let (lo, hi) = cfg.mix_count;
        for _ in 0..rng.random_range(lo..=hi.max(lo)) {
            let (other, labels) = source.other_clip(rng)?;
            let snr = range(rng, cfg.mix_snr_db);
            add_at_snr(x, &other[..other.len().min(len)], snr);
            y.iter_mut().zip(&labels).for_each(|(a, b)| *a = a.max(*b));
        }
    }
    if rng.random_bool(cfg.background_p) {
        let bg = source.background(rng, len)?;
        let snr = range(rng, cfg.background_snr_db);
        add_at_snr(x, &bg, snr);
    }
    if rng.random_bool(cfg.coloured_p) {
        let colour =
            [NoiseColour::White, NoiseColour::Pink, NoiseColour::Brown][rng.random_range(0..3)];
        let noise = dsp::noise(rng, colour, len);
        let snr = range(rng, cfg.coloured_snr_db);
        add_at_snr(x, &noise, snr);
    }
    if rng.random_bool(cfg.gain_p) {
        let g = dsp::db_to_gain(range(rng, cfg.gain_db));
        x.iter_mut().for_each(|v| *v *= g);
    }
    x.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
    Ok(())
}

/// Applies frequency and time masks to standardised log-mel features `(n_mels, frames)`.
/// Masked cells take the clip's floor — its maximum less `range` (the front end's
/// `top_db / std`: what silence becomes after the per-clip floor) — as in the reference,
/// which masks the linear spectrogram before the mel and dB steps; not 0, which in
/// standardised units is the dataset's mean loudness.
pub fn spectrogram(
    cfg: &AugmentConfig,
    features: &mut [f32],
    n_mels: usize,
    range: f32,
    rng: &mut ChaCha8Rng,
) {
    let frames = features.len() / n_mels;
    let floor = features.iter().copied().fold(f32::NEG_INFINITY, f32::max) - range;
    if rng.random_bool(cfg.freq_mask_p) {
        let width = rng.random_range(1..=((cfg.freq_mask_max * n_mels as f32) as usize).max(1));
        let first = rng.random_range(0..=n_mels - width.min(n_mels));
        for m in first..(first + width).min(n_mels) {
            features[m * frames..(m + 1) * frames].fill(floor);
        }
    }
    if rng.random_bool(cfg.time_mask_p) {
        let width = rng.random_range(1..=((cfg.time_mask_max * frames as f32) as usize).max(1));
        let first = rng.random_range(0..=frames - width.min(frames));
        for row in features.chunks_exact_mut(frames) {
            row[first..(first + width).min(frames)].fill(floor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Other clips are a 1 kHz tone labelled class 1; the background is a constant.
    struct Fixed;

    impl AugmentSource for Fixed {
        fn other_clip(&self, _rng: &mut ChaCha8Rng) -> Result<(Vec<f32>, Vec<f32>), LoadError> {
            let x = (0..1000).map(|i| (i as f32 * 0.196).sin()).collect();
            Ok((x, vec![0.0, 1.0, 0.0]))
        }
        fn background(&self, _rng: &mut ChaCha8Rng, len: usize) -> Result<Vec<f32>, LoadError> {
            Ok(vec![0.25; len])
        }
    }

    fn clip() -> (Vec<f32>, Vec<f32>) {
        (
            (0..1000).map(|i| 0.5 * (i as f32 * 0.05).sin()).collect(),
            vec![1.0, 0.0, 0.0],
        )
    }

    fn only(f: impl FnOnce(&mut AugmentConfig)) -> AugmentConfig {
        let mut cfg = AugmentConfig::none();
        f(&mut cfg);
        cfg
    }

    #[test]
    fn nothing_enabled_is_the_identity() {
        let (mut x, mut y) = clip();
        let (x0, y0) = (x.clone(), y.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        waveform(&AugmentConfig::none(), &mut x, &mut y, &Fixed, &mut rng).unwrap();
        let mut f = vec![1.0; 64];
        spectrogram(&AugmentConfig::none(), &mut f, 8, 17.5, &mut rng);
        assert_eq!((x, y), (x0, y0));
        assert!(f.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn mixing_adds_audio_and_unites_labels_below_the_clip() {
        let cfg = only(|c| c.mix_p = 1.0);
        let (mut x, mut y) = clip();
        let x0 = x.clone();
        waveform(
            &cfg,
            &mut x,
            &mut y,
            &Fixed,
            &mut ChaCha8Rng::seed_from_u64(2),
        )
        .unwrap();
        assert_eq!(y, vec![1.0, 1.0, 0.0]);
        let added: Vec<f32> = x.iter().zip(&x0).map(|(a, b)| a - b).collect();
        // Up to two clips each ≥ 3 dB below: the sum stays below the clip's level.
        assert!(dsp::rms(&added) > 0.0 && dsp::rms(&added) < dsp::rms(&x0) * 1.5);
    }

    #[test]
    fn no_call_replaces_audio_and_clears_labels() {
        let cfg = only(|c| c.no_call_p = 1.0);
        let (mut x, mut y) = clip();
        waveform(
            &cfg,
            &mut x,
            &mut y,
            &Fixed,
            &mut ChaCha8Rng::seed_from_u64(3),
        )
        .unwrap();
        assert!(x.iter().all(|&v| v == 0.25));
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn noise_is_added_at_the_requested_snr() {
        for set in [
            (|c: &mut AugmentConfig| {
                c.coloured_p = 1.0;
                c.coloured_snr_db = (10.0, 10.0);
            }) as fn(&mut AugmentConfig),
            |c| {
                c.background_p = 1.0;
                c.background_snr_db = (10.0, 10.0);
            },
        ] {
            let cfg = only(set);
            let (mut x, mut y) = clip();
            let x0 = x.clone();
            waveform(
                &cfg,
                &mut x,
                &mut y,
                &Fixed,
                &mut ChaCha8Rng::seed_from_u64(4),
            )
            .unwrap();
            let noise: Vec<f32> = x.iter().zip(&x0).map(|(a, b)| a - b).collect();
            let snr = 20.0 * (dsp::rms(&x0) / dsp::rms(&noise)).log10();
            assert!((snr - 10.0).abs() < 0.1, "snr {snr}");
            assert_eq!(y, vec![1.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn gain_scales_within_range() {
        let cfg = only(|c| c.gain_p = 1.0);
        for seed in 0..20 {
            let (mut x, mut y) = clip();
            let r0 = dsp::rms(&x);
            waveform(
                &cfg,
                &mut x,
                &mut y,
                &Fixed,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
            .unwrap();
            let db = 20.0 * (dsp::rms(&x) / r0).log10();
            assert!((-18.01..=6.01).contains(&db), "{db} dB");
        }
    }

    #[test]
    fn masks_fill_whole_bands_and_frames_with_the_clips_floor() {
        let cfg = only(|c| {
            c.freq_mask_p = 1.0;
            c.time_mask_p = 1.0;
        });
        let (n_mels, frames) = (16, 50);
        // A clip whose loudest cell is 2.5; 80 dB of range at 4.569 dB per unit: its
        // floor is 2.5 − 17.51 = −15.01.
        let mut f = vec![1.0f32; n_mels * frames];
        f[3 * frames + 7] = 2.5;
        let range = (80.0 / 4.569) as f32;
        let floor = 2.5 - range;
        spectrogram(
            &cfg,
            &mut f,
            n_mels,
            range,
            &mut ChaCha8Rng::seed_from_u64(5),
        );
        assert!(f.iter().all(|&v| v == 1.0 || v == 2.5 || v == floor));
        let zero_rows = f
            .chunks_exact(frames)
            .filter(|r| r.iter().all(|&v| v == floor))
            .count();
        let zero_cols = (0..frames)
            .filter(|&t| (0..n_mels).all(|m| f[m * frames + t] == floor))
            .count();
        assert!(
            (1..=2).contains(&zero_rows),
            "{zero_rows} masked bands (max 1/8 of 16)"
        );
        assert!(
            (1..=5).contains(&zero_cols),
            "{zero_cols} masked frames (max 1/10 of 50)"
        );
    }

    #[test]
    fn same_seed_same_augmentation() {
        let cfg = AugmentConfig::default();
        let run = |seed| {
            let (mut x, mut y) = clip();
            waveform(
                &cfg,
                &mut x,
                &mut y,
                &Fixed,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
            .unwrap();
            (x, y)
        };
        assert_eq!(run(7), run(7));
    }
}
