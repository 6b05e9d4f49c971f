//! Made-up species and their calls.
//!
//! Each species has a vocal signature from one of five families (FM sweeps up, down or
//! hooked; harmonic stacks with vibrato; trills; pulse trains; multi-note songs). Species
//! come in confusable pairs that share a frequency band but differ in shape, so telling
//! them apart takes the time–frequency pattern, not just the band. Every rendered call
//! varies a little (pitch, tempo, element count), like individuals of a real species.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use super::dsp::normalise_rms;

/// Shape of an FM sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepShape {
    /// Rising.
    Up,
    /// Falling.
    Down,
    /// Rising then falling back (a hook).
    Hooked,
}

/// One note of a song: a short sweep from `f_start` to `f_end`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Note {
    /// Start frequency, Hz.
    pub f_start: f32,
    /// End frequency, Hz.
    pub f_end: f32,
    /// Duration, s.
    pub dur: f32,
}

/// A species' vocal signature.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Signature {
    /// Repeated FM sweeps.
    Sweep {
        /// Low edge, Hz.
        f_lo: f32,
        /// High edge, Hz.
        f_hi: f32,
        /// Direction.
        shape: SweepShape,
        /// Duration of one sweep, s.
        dur: f32,
        /// Sweeps per call.
        count: u32,
        /// Silence between sweeps, s.
        gap: f32,
    },
    /// A harmonic stack with vibrato.
    Harmonic {
        /// Fundamental, Hz.
        f0: f32,
        /// Relative amplitudes of harmonics 1, 2, ….
        harmonics: Vec<f32>,
        /// Vibrato rate, Hz.
        vibrato_hz: f32,
        /// Vibrato depth, fraction of f0.
        vibrato_depth: f32,
        /// Duration, s.
        dur: f32,
    },
    /// A trill: short down-slurred elements repeated fast.
    Trill {
        /// Element start frequency, Hz.
        f: f32,
        /// Downward span of each element, Hz.
        span: f32,
        /// Elements per second.
        rate: f32,
        /// Elements per call.
        count: u32,
    },
    /// Broadband clicks/pulses at a rate (e.g. rattles).
    PulseTrain {
        /// Centre frequency, Hz.
        f_centre: f32,
        /// Pulse duration, s.
        pulse_dur: f32,
        /// Pulses per second.
        rate: f32,
        /// Pulses per call.
        count: u32,
    },
    /// A fixed sequence of notes.
    Song {
        /// The notes.
        notes: Vec<Note>,
        /// Gap between notes, s.
        gap: f32,
    },
}

/// A synthetic species.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Species {
    /// Code, e.g. `syn03`.
    pub code: String,
    /// Made-up scientific name.
    pub scientific: String,
    /// Made-up common name, naming the family.
    pub common: String,
    /// Its signature.
    pub signature: Signature,
}

const GENERA: [&str; 8] = [
    "Fictornis",
    "Synthetica",
    "Virtualis",
    "Procedura",
    "Algorhyncha",
    "Stochastes",
    "Digitavis",
    "Simulornis",
];

/// Draws `n` species, in confusable pairs sharing a band.
pub fn draw_species(rng: &mut ChaCha8Rng, n: usize) -> Vec<Species> {
    let pairings: [(u8, u8); 5] = [(0, 1), (3, 4), (2, 5), (6, 3), (4, 5)];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let centre = rng.random_range(1_500.0f32..7_500.0);
        let (a, b) = pairings[rng.random_range(0..pairings.len())];
        for kind in [a, b] {
            if out.len() == n {
                break;
            }
            let index = out.len();
            let signature = draw_signature(rng, kind, centre);
            let family = match &signature {
                Signature::Sweep {
                    shape: SweepShape::Up,
                    ..
                } => "Rising Whistler",
                Signature::Sweep {
                    shape: SweepShape::Down,
                    ..
                } => "Falling Whistler",
                Signature::Sweep {
                    shape: SweepShape::Hooked,
                    ..
                } => "Hooked Whistler",
                Signature::Harmonic { .. } => "Warbler",
                Signature::Trill { .. } => "Triller",
                Signature::PulseTrain { .. } => "Rattler",
                Signature::Song { .. } => "Songster",
            };
            out.push(Species {
                code: format!("syn{index:02}"),
                scientific: format!("{} sp{index:02}", GENERA[index % GENERA.len()]),
                common: format!("{family} {}", (b'A' + (index % 26) as u8) as char),
                signature,
            });
        }
    }
    out
}

fn draw_signature(rng: &mut ChaCha8Rng, kind: u8, centre: f32) -> Signature {
    let width = rng.random_range(0.25f32..0.6) * centre;
    let (lo, hi) = (centre - width / 2.0, centre + width / 2.0);
    match kind {
        0 | 1 | 6 => Signature::Sweep {
            f_lo: lo,
            f_hi: hi,
            shape: [SweepShape::Up, SweepShape::Down, SweepShape::Hooked][kind.min(2) as usize % 3],
            dur: rng.random_range(0.12f32..0.45),
            count: rng.random_range(1..4),
            gap: rng.random_range(0.05f32..0.2),
        },
        2 => Signature::Harmonic {
            f0: (centre / 2.0).max(900.0),
            harmonics: (0..rng.random_range(2..5))
                .map(|h| 0.7f32.powi(h))
                .collect(),
            vibrato_hz: rng.random_range(4.0f32..12.0),
            vibrato_depth: rng.random_range(0.02f32..0.08),
            dur: rng.random_range(0.4f32..1.0),
        },
        3 => Signature::Trill {
            f: hi,
            span: width,
            rate: rng.random_range(8.0f32..25.0),
            count: rng.random_range(6..16),
        },
        4 => Signature::PulseTrain {
            f_centre: centre,
            pulse_dur: rng.random_range(0.004f32..0.015),
            rate: rng.random_range(15.0f32..50.0),
            count: rng.random_range(8..25),
        },
        _ => {
            let n_notes = rng.random_range(3..6);
            let notes = (0..n_notes)
                .map(|_| Note {
                    f_start: rng.random_range(lo..hi),
                    f_end: rng.random_range(lo..hi),
                    dur: rng.random_range(0.06f32..0.18),
                })
                .collect();
            Signature::Song {
                notes,
                gap: rng.random_range(0.03f32..0.12),
            }
        }
    }
}

/// Phase-continuous oscillator writing a frequency trajectory with a smooth envelope.
struct Voice<'a> {
    out: &'a mut Vec<f32>,
    rate: f32,
    phase: f32,
}

impl Voice<'_> {
    /// Appends `dur` seconds whose frequency follows `freq(t ∈ [0,1))`, with harmonic
    /// amplitudes `harmonics` and 5-ms (or shorter) raised-cosine ramps.
    fn tone(&mut self, dur: f32, harmonics: &[f32], freq: impl Fn(f32) -> f32) {
        let n = (dur * self.rate).max(1.0) as usize;
        let ramp = ((0.005 * self.rate) as usize).min(n / 2).max(1);
        for i in 0..n {
            let f = freq(i as f32 / n as f32).clamp(50.0, 15_500.0);
            self.phase = (self.phase + 2.0 * std::f32::consts::PI * f / self.rate)
                % (2.0 * std::f32::consts::PI * 64.0);
            let edge = i.min(n - 1 - i);
            let env = if edge < ramp {
                0.5 - 0.5 * (std::f32::consts::PI * edge as f32 / ramp as f32).cos()
            } else {
                1.0
            };
            let mut v = 0.0;
            for (h, a) in harmonics.iter().enumerate() {
                let k = (h + 1) as f32;
                if f * k < 15_500.0 {
                    v += a * (k * self.phase).sin();
                }
            }
            self.out.push(env * v);
        }
    }

    fn silence(&mut self, dur: f32) {
        let n = (dur * self.rate) as usize;
        self.out.extend(std::iter::repeat_n(0.0, n));
    }
}

impl Species {
    /// Renders one call at `rate` Hz with individual variation, normalised to rms 1
    /// over its duration.
    pub fn render_call(&self, rng: &mut ChaCha8Rng, rate: f32) -> Vec<f32> {
        let jitter = |rng: &mut ChaCha8Rng, sd: f32| {
            Normal::new(1.0f32, sd)
                .map_or(1.0, |d| d.sample(rng).clamp(1.0 - 3.0 * sd, 1.0 + 3.0 * sd))
        };
        let pitch = jitter(rng, 0.03);
        let tempo = jitter(rng, 0.07);
        let mut count_var =
            |count: u32| -> u32 { (count as i64 + rng.random_range(-1i64..=1)).max(1) as u32 };
        let mut out = Vec::new();
        let mut voice = Voice {
            out: &mut out,
            rate,
            phase: 0.0,
        };
        match &self.signature {
            Signature::Sweep {
                f_lo,
                f_hi,
                shape,
                dur,
                count,
                gap,
            } => {
                let (lo, hi) = (f_lo * pitch, f_hi * pitch);
                for k in 0..count_var(*count) {
                    if k > 0 {
                        voice.silence(gap * tempo);
                    }
                    voice.tone(dur * tempo, &[1.0], |t| match shape {
                        SweepShape::Up => lo + (hi - lo) * t,
                        SweepShape::Down => hi - (hi - lo) * t,
                        SweepShape::Hooked => lo + (hi - lo) * (std::f32::consts::PI * t).sin(),
                    });
                }
            }
            Signature::Harmonic {
                f0,
                harmonics,
                vibrato_hz,
                vibrato_depth,
                dur,
            } => {
                let (f0, d, vib) = (f0 * pitch, dur * tempo, *vibrato_hz);
                voice.tone(d, harmonics, |t| {
                    f0 * (1.0 + vibrato_depth * (2.0 * std::f32::consts::PI * vib * t * d).sin())
                });
            }
            Signature::Trill {
                f,
                span,
                rate: el_rate,
                count,
            } => {
                let period = 1.0 / (el_rate / tempo);
                let (f, span) = (f * pitch, span * pitch);
                for _ in 0..count_var(*count) {
                    voice.tone(period * 0.6, &[1.0, 0.3], |t| f - span * t);
                    voice.silence(period * 0.4);
                }
            }
            Signature::PulseTrain {
                f_centre,
                pulse_dur,
                rate: p_rate,
                count,
            } => {
                let period = 1.0 / (p_rate / tempo);
                let f = f_centre * pitch;
                for _ in 0..count_var(*count) {
                    // A very short tone with many harmonics of a low fundamental is a
                    // broadband click centred near `f`.
                    voice.tone(*pulse_dur, &[0.5, 1.0, 0.8, 0.5, 0.3], |_| f / 2.0);
                    voice.silence((period - pulse_dur).max(0.001));
                }
            }
            Signature::Song { notes, gap } => {
                for (k, note) in notes.iter().enumerate() {
                    if k > 0 {
                        voice.silence(gap * tempo);
                    }
                    let (a, b) = (note.f_start * pitch, note.f_end * pitch);
                    voice.tone(note.dur * tempo, &[1.0, 0.2], |t| a + (b - a) * t);
                }
            }
        }
        normalise_rms(&mut out, 1.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn species_come_in_pairs_and_calls_vary() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let species = draw_species(&mut rng, 10);
        assert_eq!(species.len(), 10);
        let codes: std::collections::HashSet<_> = species.iter().map(|s| &s.code).collect();
        assert_eq!(codes.len(), 10);
        for s in &species {
            let a = s.render_call(&mut rng, 32_000.0);
            let b = s.render_call(&mut rng, 32_000.0);
            assert!(
                !a.is_empty() && a.iter().all(|v| v.is_finite()),
                "{}",
                s.code
            );
            assert!(a.len() < 32_000 * 3, "{}: {} samples", s.code, a.len());
            assert_ne!(a, b, "{}: individual variation", s.code);
        }
    }

    #[test]
    fn drawing_is_deterministic() {
        let a = draw_species(&mut ChaCha8Rng::seed_from_u64(9), 25);
        let b = draw_species(&mut ChaCha8Rng::seed_from_u64(9), 25);
        assert_eq!(a, b);
    }
}
