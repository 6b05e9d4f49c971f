//! Small signal-processing pieces for the synthetic scenes: noise colours, filters,
//! a room/forest reverb and level helpers. All deterministic given the RNG.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Root mean square of `x` (0 for an empty slice).
pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / x.len() as f64).sqrt() as f32
}

/// Amplitude factor for a level in dB.
pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Noise colours, by spectral slope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseColour {
    /// Flat spectrum.
    White,
    /// −3 dB/octave (Paul Kellet's filter).
    Pink,
    /// −6 dB/octave (leaky integrator).
    Brown,
}

/// `n` samples of unit-rms noise of a colour.
pub fn noise(rng: &mut ChaCha8Rng, colour: NoiseColour, n: usize) -> Vec<f32> {
    let mut white = || -> f32 { StandardNormal.sample(rng) };
    let mut out: Vec<f32> = match colour {
        NoiseColour::White => (0..n).map(|_| white()).collect(),
        NoiseColour::Pink => {
            let mut b = [0.0f32; 7];
            (0..n)
                .map(|_| {
                    let w = white();
                    b[0] = 0.99886 * b[0] + w * 0.0555179;
                    b[1] = 0.99332 * b[1] + w * 0.0750759;
                    b[2] = 0.96900 * b[2] + w * 0.153_852;
                    b[3] = 0.86650 * b[3] + w * 0.3104856;
                    b[4] = 0.55000 * b[4] + w * 0.5329522;
                    b[5] = -0.7616 * b[5] - w * 0.0168980;
                    let y = b[..6].iter().sum::<f32>() + b[6] + w * 0.5362;
                    b[6] = w * 0.115926;
                    y
                })
                .collect()
        }
        NoiseColour::Brown => {
            let mut y = 0.0f32;
            (0..n)
                .map(|_| {
                    y = 0.995 * y + 0.1 * white();
                    y
                })
                .collect()
        }
    };
    normalise_rms(&mut out, 1.0);
    out
}

/// Scales `x` to the given rms (no-op for silence).
pub fn normalise_rms(x: &mut [f32], target: f32) {
    let r = rms(x);
    if r > 0.0 {
        let g = target / r;
        x.iter_mut().for_each(|v| *v *= g);
    }
}

/// First-order low-pass at `cutoff_hz` (distance: air absorbs high frequencies).
pub fn lowpass(x: &mut [f32], cutoff_hz: f32, rate: f32) {
    let a = (-2.0 * std::f32::consts::PI * cutoff_hz / rate).exp();
    let mut y = 0.0;
    for v in x.iter_mut() {
        y = (1.0 - a) * *v + a * y;
        *v = y;
    }
}

/// First-order high-pass at `cutoff_hz` (small microphones roll off the bass).
pub fn highpass(x: &mut [f32], cutoff_hz: f32, rate: f32) {
    let a = (-2.0 * std::f32::consts::PI * cutoff_hz / rate).exp();
    let (mut prev_x, mut y) = (0.0, 0.0);
    for v in x.iter_mut() {
        y = a * (y + *v - prev_x);
        prev_x = *v;
        *v = y;
    }
}

/// A peaking resonance (RBJ biquad): the coloured response of a cheap capsule or housing.
pub fn peaking_eq(x: &mut [f32], centre_hz: f32, q: f32, gain_db: f32, rate: f32) {
    let a = 10f32.powf(gain_db / 40.0);
    let w0 = 2.0 * std::f32::consts::PI * centre_hz / rate;
    let alpha = w0.sin() / (2.0 * q);
    let (b0, b1, b2) = (1.0 + alpha * a, -2.0 * w0.cos(), 1.0 - alpha * a);
    let (a0, a1, a2) = (1.0 + alpha / a, -2.0 * w0.cos(), 1.0 - alpha / a);
    let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
    for v in x.iter_mut() {
        let y = (b0 * *v + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2) / a0;
        (x2, x1, y2, y1) = (x1, *v, y1, y);
        *v = y;
    }
}

/// Schroeder reverb (4 parallel combs, 2 series all-passes) with decay time `rt60_s`,
/// mixed in at `wet` (0..1). Cheap (O(n)) and deterministic.
pub fn reverb(x: &mut [f32], rt60_s: f32, wet: f32, rate: f32) {
    if rt60_s <= 0.0 || wet <= 0.0 {
        return;
    }
    let comb_ms = [29.7f32, 37.1, 41.1, 43.7];
    let mut wet_sig = vec![0.0f32; x.len()];
    for ms in comb_ms {
        let delay = ((ms / 1000.0) * rate) as usize;
        let g = 10f32.powf(-3.0 * (ms / 1000.0) / rt60_s);
        let mut buf = vec![0.0f32; delay];
        let mut i = 0;
        for (n, &v) in x.iter().enumerate() {
            let y = buf[i];
            buf[i] = v + g * y;
            wet_sig[n] += y / comb_ms.len() as f32;
            i = (i + 1) % delay;
        }
    }
    for ms in [5.0f32, 1.7] {
        let delay = ((ms / 1000.0) * rate) as usize;
        let g = 0.7;
        let mut buf = vec![0.0f32; delay];
        let mut i = 0;
        for v in wet_sig.iter_mut() {
            let delayed = buf[i];
            let y = -g * *v + delayed;
            buf[i] = *v + g * y;
            *v = y;
            i = (i + 1) % delay;
        }
    }
    for (v, w) in x.iter_mut().zip(&wet_sig) {
        *v = (1.0 - wet) * *v + wet * 2.0 * w;
    }
}

/// Wind: brown noise with slow gusts, then low-passed.
pub fn wind(rng: &mut ChaCha8Rng, n: usize, rate: f32) -> Vec<f32> {
    let mut x = noise(rng, NoiseColour::Brown, n);
    let (gust_hz, phase) = (
        rng.random_range(0.05f32..0.4),
        rng.random_range(0.0f32..std::f32::consts::TAU),
    );
    for (i, v) in x.iter_mut().enumerate() {
        let t = i as f32 / rate;
        *v *= 0.3
            + (2.0 * std::f32::consts::PI * gust_hz * t + phase)
                .sin()
                .powi(2);
    }
    lowpass(&mut x, 800.0, rate);
    normalise_rms(&mut x, 1.0);
    x
}

/// Rain: broadband hiss plus random drop impacts (short decaying clicks).
pub fn rain(rng: &mut ChaCha8Rng, n: usize, rate: f32) -> Vec<f32> {
    let mut x = noise(rng, NoiseColour::Pink, n);
    x.iter_mut().for_each(|v| *v *= 0.3);
    let drops = (n as f32 / rate * rng.random_range(20.0f32..120.0)) as usize;
    for _ in 0..drops {
        let at = rng.random_range(0..n);
        let amp = rng.random_range(0.5f32..3.0);
        let decay = rng.random_range(0.0005f32..0.003) * rate;
        for k in 0..(decay * 5.0) as usize {
            if at + k >= n {
                break;
            }
            let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
            x[at + k] += sign * amp * (-(k as f32) / decay).exp();
        }
    }
    normalise_rms(&mut x, 1.0);
    x
}

/// Insect chorus: a dense, amplitude-pulsed high band (crickets, cicadas).
pub fn insects(rng: &mut ChaCha8Rng, n: usize, rate: f32) -> Vec<f32> {
    let mut x = vec![0.0f32; n];
    for _ in 0..rng.random_range(2..5) {
        let f = rng.random_range(4_500.0f32..9_000.0);
        let pulse = rng.random_range(15.0f32..60.0);
        let duty = rng.random_range(0.2f32..0.6);
        let phase = rng.random_range(0.0f32..1.0);
        for (i, v) in x.iter_mut().enumerate() {
            let t = i as f32 / rate;
            let gate = ((t * pulse + phase).fract() < duty) as u8 as f32;
            *v += gate * (2.0 * std::f32::consts::PI * f * t).sin();
        }
    }
    normalise_rms(&mut x, 1.0);
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn noise_is_unit_rms_and_coloured() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for colour in [NoiseColour::White, NoiseColour::Pink, NoiseColour::Brown] {
            let x = noise(&mut rng, colour, 32_000);
            assert!((rms(&x) - 1.0).abs() < 1e-3, "{colour:?}");
        }
        // Brown noise has far more low-frequency energy: its sample-to-sample differences
        // are small relative to its level.
        let b = noise(&mut rng, NoiseColour::Brown, 32_000);
        let w = noise(&mut rng, NoiseColour::White, 32_000);
        let diff = |x: &[f32]| rms(&x.windows(2).map(|p| p[1] - p[0]).collect::<Vec<_>>());
        assert!(diff(&b) < 0.3 * diff(&w));
    }

    #[test]
    fn lowpass_attenuates_high_frequencies() {
        let tone = |hz: f32| -> Vec<f32> {
            (0..32_000)
                .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / 32_000.0).sin())
                .collect()
        };
        let (mut lo, mut hi) = (tone(300.0), tone(8_000.0));
        lowpass(&mut lo, 2_000.0, 32_000.0);
        lowpass(&mut hi, 2_000.0, 32_000.0);
        assert!(
            rms(&lo) > 0.65 && rms(&hi) < 0.2,
            "{} {}",
            rms(&lo),
            rms(&hi)
        );
    }

    #[test]
    fn reverb_extends_an_impulse() {
        let mut x = vec![0.0f32; 32_000];
        x[0] = 1.0;
        reverb(&mut x, 1.0, 0.5, 32_000.0);
        let tail = rms(&x[8_000..16_000]);
        assert!(tail > 1e-4, "tail {tail}");
        let mut dry = vec![0.0f32; 32_000];
        dry[0] = 1.0;
        reverb(&mut dry, 1.0, 0.0, 32_000.0);
        assert_eq!(rms(&dry[1..]), 0.0);
    }
}
