//! Scenes: clean focal recordings (the train domain) and noisy soundscape segments (the
//! test domains), built from species calls.
//!
//! The shift mirrors BirdSet's: focal recordings are close, loud, single-species and
//! centred, like Xeno-canto; soundscapes are passive recordings with 0–4 overlapping
//! species at a distance (attenuated, high frequencies lost), reverberation, wind, rain,
//! insects and coloured noise, another microphone response and low SNR.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::dsp::{self, NoiseColour};
use super::species::Species;

/// The front end's sample rate; synthetic audio is generated at it directly.
pub const RATE: f32 = 32_000.0;

/// A generated clip: samples, the species present and where their calls are.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Mono samples at [`RATE`].
    pub samples: Vec<f32>,
    /// Indices of the labelled species (sorted, unique; empty = no call).
    pub labels: Vec<usize>,
    /// Calls as (species index, start s, end s), in time order.
    pub calls: Vec<(usize, f32, f32)>,
}

/// The test-domain variants, each a different kind of shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Nearby birds, light noise (SNR 10–25 dB), little reverberation.
    SoundscapeQuiet,
    /// Heavy wind, rain and insects (SNR −5–10 dB).
    SoundscapeNoisy,
    /// Distant birds in a reverberant forest (RT60 0.8–1.6 s, strong high-frequency loss).
    SoundscapeReverb,
    /// A mixture of all conditions, for model selection (BirdSet's POW role).
    SoundscapeValid,
}

impl Variant {
    /// The test variants (validation excluded).
    pub const TESTS: [Variant; 3] = [
        Variant::SoundscapeQuiet,
        Variant::SoundscapeNoisy,
        Variant::SoundscapeReverb,
    ];

    /// Kebab-case name used in file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Variant::SoundscapeQuiet => "soundscape-quiet",
            Variant::SoundscapeNoisy => "soundscape-noisy",
            Variant::SoundscapeReverb => "soundscape-reverb",
            Variant::SoundscapeValid => "soundscape-valid",
        }
    }
}

/// Conditions of one soundscape segment, drawn per variant.
struct Conditions {
    distance_db: (f32, f32),
    lowpass_hz: (f32, f32),
    rt60_s: (f32, f32),
    wet: (f32, f32),
    snr_db: (f32, f32),
    wind: f32,
    rain: f32,
    insects: f32,
}

fn conditions(variant: Variant, rng: &mut ChaCha8Rng) -> Conditions {
    match variant {
        Variant::SoundscapeQuiet => Conditions {
            distance_db: (-12.0, -3.0),
            lowpass_hz: (8_000.0, 14_000.0),
            rt60_s: (0.1, 0.4),
            wet: (0.05, 0.2),
            snr_db: (10.0, 25.0),
            wind: 0.3,
            rain: 0.0,
            insects: 0.2,
        },
        Variant::SoundscapeNoisy => Conditions {
            distance_db: (-15.0, -3.0),
            lowpass_hz: (6_000.0, 12_000.0),
            rt60_s: (0.2, 0.6),
            wet: (0.1, 0.3),
            snr_db: (-5.0, 10.0),
            wind: 0.8,
            rain: 0.5,
            insects: 0.6,
        },
        Variant::SoundscapeReverb => Conditions {
            distance_db: (-25.0, -10.0),
            lowpass_hz: (2_500.0, 6_000.0),
            rt60_s: (0.8, 1.6),
            wet: (0.4, 0.7),
            snr_db: (3.0, 15.0),
            wind: 0.4,
            rain: 0.1,
            insects: 0.3,
        },
        Variant::SoundscapeValid => {
            let pick = Variant::TESTS[rng.random_range(0..Variant::TESTS.len())];
            conditions(pick, rng)
        }
    }
}

fn uniform(rng: &mut ChaCha8Rng, (lo, hi): (f32, f32)) -> f32 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// Adds `call × gain` into `out` starting at sample `at` (clipped to the buffer).
fn mix_in(out: &mut [f32], call: &[f32], at: usize, gain: f32) {
    for (o, c) in out.iter_mut().skip(at).zip(call) {
        *o += gain * c;
    }
}

/// Keeps the peak below full scale, as a recorder's gain staging would.
fn limit_peak(x: &mut [f32]) {
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak > 0.95 {
        let g = 0.95 / peak;
        x.iter_mut().for_each(|v| *v *= g);
    }
}

/// A focal recording of `species[primary]`: 1–3 calls near the centre of a clip of
/// `seconds`, high SNR (25–40 dB against pink noise), close microphone. With probability
/// 0.05 another species calls faintly in the background; like many Xeno-canto
/// recordings it is not labelled (weak label noise).
pub fn focal(species: &[Species], primary: usize, seconds: f32, rng: &mut ChaCha8Rng) -> Clip {
    let n = (seconds * RATE) as usize;
    let mut samples = vec![0.0f32; n];
    let mut calls = Vec::new();
    let centre = seconds / 2.0;
    for _ in 0..rng.random_range(1..=3) {
        let call = species[primary].render_call(rng, RATE);
        let len_s = call.len() as f32 / RATE;
        let start = (centre + rng.random_range(-0.25f32..0.25) * seconds - len_s / 2.0)
            .clamp(0.0, (seconds - len_s).max(0.0));
        let gain = dsp::db_to_gain(rng.random_range(-14.0f32..-8.0));
        mix_in(&mut samples, &call, (start * RATE) as usize, gain);
        calls.push((primary, start, (start + len_s).min(seconds)));
    }
    if species.len() > 1 && rng.random_bool(0.05) {
        let other = (primary + rng.random_range(1..species.len())) % species.len();
        let call = species[other].render_call(rng, RATE);
        let start = rng.random_range(0.0f32..seconds * 0.8);
        let mut faint = call;
        dsp::lowpass(&mut faint, 6_000.0, RATE);
        mix_in(
            &mut samples,
            &faint,
            (start * RATE) as usize,
            dsp::db_to_gain(-32.0),
        );
    }
    let signal_rms = dsp::rms(&samples).max(1e-6);
    let snr = rng.random_range(25.0f32..40.0);
    let bg = dsp::noise(rng, NoiseColour::Pink, n);
    let g = signal_rms / dsp::db_to_gain(snr);
    samples.iter_mut().zip(&bg).for_each(|(s, b)| *s += g * b);
    limit_peak(&mut samples);
    calls.sort_by(|a, b| a.1.total_cmp(&b.1));
    Clip {
        samples,
        labels: vec![primary],
        calls,
    }
}

/// How many species call in a soundscape segment: 0 (20 %), 1 (35 %), 2 (25 %), 3 (12 %),
/// 4 (8 %).
fn species_count(rng: &mut ChaCha8Rng) -> usize {
    let u: f32 = rng.random_range(0.0..1.0);
    [0.20f32, 0.55, 0.80, 0.92]
        .iter()
        .position(|&c| u < c)
        .unwrap_or(4)
}

/// A soundscape segment of `seconds` under `variant`'s conditions.
pub fn soundscape(
    species: &[Species],
    variant: Variant,
    seconds: f32,
    rng: &mut ChaCha8Rng,
) -> Clip {
    let n = (seconds * RATE) as usize;
    let c = conditions(variant, rng);
    let mut birds = vec![0.0f32; n];
    let mut calls = Vec::new();
    let mut present: Vec<usize> = Vec::new();
    let k = species_count(rng).min(species.len());
    while present.len() < k {
        let s = rng.random_range(0..species.len());
        if !present.contains(&s) {
            present.push(s);
        }
    }
    for &s in &present {
        let distance = uniform(rng, c.distance_db);
        let cutoff = uniform(rng, c.lowpass_hz);
        for _ in 0..rng.random_range(1..=2) {
            let mut call = species[s].render_call(rng, RATE);
            dsp::lowpass(&mut call, cutoff, RATE);
            let len_s = call.len() as f32 / RATE;
            // Calls lie mostly inside the segment; at least half of each call is in it.
            let start = rng.random_range(-len_s / 2.0..(seconds - len_s / 2.0).max(0.0));
            let at = start.max(0.0);
            let skip = ((at - start) * RATE) as usize;
            mix_in(
                &mut birds,
                &call[skip.min(call.len())..],
                (at * RATE) as usize,
                dsp::db_to_gain(distance),
            );
            calls.push((s, at, (start + len_s).min(seconds)));
        }
    }
    dsp::reverb(
        &mut birds,
        uniform(rng, c.rt60_s),
        uniform(rng, c.wet),
        RATE,
    );
    // Background: coloured noise always, plus wind, rain and insects by chance.
    let colour =
        [NoiseColour::White, NoiseColour::Pink, NoiseColour::Brown][rng.random_range(0..3)];
    let mut background = dsp::noise(rng, colour, n);
    for (p, make) in [
        (
            c.wind,
            dsp::wind as fn(&mut ChaCha8Rng, usize, f32) -> Vec<f32>,
        ),
        (c.rain, dsp::rain),
        (c.insects, dsp::insects),
    ] {
        if rng.random_bool(f64::from(p)) {
            let layer = make(rng, n, RATE);
            let level = rng.random_range(0.5f32..2.0);
            background
                .iter_mut()
                .zip(&layer)
                .for_each(|(b, l)| *b += level * l);
        }
    }
    dsp::normalise_rms(&mut background, 1.0);
    // SNR is set against the birds' level when they call; an empty segment gets the
    // background at a typical level.
    let bird_rms = dsp::rms(&birds);
    let reference = if bird_rms > 0.0 { bird_rms } else { 0.02 };
    let g = reference / dsp::db_to_gain(uniform(rng, c.snr_db));
    let mut samples: Vec<f32> = birds
        .iter()
        .zip(&background)
        .map(|(b, n)| b + g * n)
        .collect();
    // A different microphone: bass roll-off and a housing resonance.
    dsp::highpass(&mut samples, rng.random_range(150.0f32..500.0), RATE);
    dsp::peaking_eq(
        &mut samples,
        rng.random_range(2_000.0f32..6_000.0),
        1.5,
        rng.random_range(-6.0f32..6.0),
        RATE,
    );
    limit_peak(&mut samples);
    present.sort_unstable();
    calls.sort_by(|a, b| a.1.total_cmp(&b.1));
    Clip {
        samples,
        labels: present,
        calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::species::draw_species;
    use rand::SeedableRng;

    #[test]
    fn focal_clips_are_single_species_and_centred() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let species = draw_species(&mut rng, 6);
        for i in 0..6 {
            let clip = focal(&species, i, 4.0, &mut rng);
            assert_eq!(clip.samples.len(), 128_000);
            assert_eq!(clip.labels, vec![i]);
            assert!(
                clip.calls
                    .iter()
                    .all(|&(s, a, b)| s == i && a < b && a >= 0.0 && b <= 4.0)
            );
            assert!(clip.samples.iter().all(|v| v.abs() <= 0.95 + 1e-6));
        }
    }

    #[test]
    fn soundscapes_have_zero_to_four_species_and_are_noisier() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let species = draw_species(&mut rng, 10);
        let mut counts = [0usize; 5];
        for _ in 0..60 {
            let clip = soundscape(&species, Variant::SoundscapeNoisy, 2.0, &mut rng);
            assert_eq!(clip.samples.len(), 64_000);
            assert!(clip.labels.windows(2).all(|w| w[0] < w[1]));
            counts[clip.labels.len()] += 1;
            assert!(
                clip.samples
                    .iter()
                    .all(|v| v.is_finite() && v.abs() <= 0.95 + 1e-6)
            );
        }
        assert!(
            counts[0] > 0 && counts[1] > 0 && counts[2] > 0,
            "{counts:?}"
        );
    }
}
