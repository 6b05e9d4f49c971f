//! The synthetic distribution-shift benchmark: BirdSet's kind of shift (clean focal
//! training recordings → noisy passive soundscapes), generated offline and
//! deterministically from a seed.
//!
//! Every clip is a pure function of (seed, split, index), so the benchmark can be written
//! to disk in parallel ([`Benchmark::write`]) or streamed without files
//! ([`Benchmark::clip`]), with identical results.

pub mod dsp;
pub mod gallery;
pub mod scene;
pub mod species;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use warble_core::labels::{LabelTable, LabelsError, SpeciesCode};

pub use scene::{Clip, RATE, Variant};
pub use species::Species;

use crate::data::manifest::{Manifest, ManifestRow};

/// Sizes of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SynthPreset {
    /// For the test suite: seconds to generate.
    Tiny,
    /// A few minutes of training on 2 CPU cores.
    Quick,
    /// For a GPU host.
    Full,
}

impl SynthPreset {
    /// Parses `tiny`, `quick` or `full`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::Tiny),
            "quick" => Some(Self::Quick),
            "full" => Some(Self::Full),
            _ => None,
        }
    }

    /// The preset's sizes.
    pub fn spec(self) -> SynthSpec {
        match self {
            SynthPreset::Tiny => SynthSpec {
                n_species: 10,
                focal_seconds: 4.0,
                segment_seconds: 2.0,
                train_per_species: 12,
                focal_test_per_species: 4,
                segments_per_variant: 40,
                valid_segments: 40,
            },
            SynthPreset::Quick => SynthSpec {
                n_species: 25,
                focal_seconds: 6.0,
                segment_seconds: 3.0,
                train_per_species: 60,
                focal_test_per_species: 8,
                segments_per_variant: 300,
                valid_segments: 300,
            },
            SynthPreset::Full => SynthSpec {
                n_species: 100,
                focal_seconds: 10.0,
                segment_seconds: 5.0,
                train_per_species: 200,
                focal_test_per_species: 20,
                segments_per_variant: 1_000,
                valid_segments: 1_000,
            },
        }
    }
}

/// How big each part of the benchmark is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SynthSpec {
    /// Number of species.
    pub n_species: usize,
    /// Length of a focal recording, s (training crops are taken from it).
    pub focal_seconds: f32,
    /// Length of a soundscape segment, s (the model window of the CPU presets).
    pub segment_seconds: f32,
    /// Focal recordings per species for training.
    pub train_per_species: usize,
    /// Held-out focal recordings per species (in-domain test).
    pub focal_test_per_species: usize,
    /// Segments per test variant.
    pub segments_per_variant: usize,
    /// Validation segments.
    pub valid_segments: usize,
}

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Focal training recordings.
    Train,
    /// Held-out focal recordings (the in-domain test).
    FocalTest,
    /// A soundscape set: a test variant or the validation set.
    Soundscape(Variant),
}

impl Split {
    /// File-name stem of the split's manifest and audio folder.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::FocalTest => "test-focal",
            Split::Soundscape(Variant::SoundscapeValid) => "valid",
            Split::Soundscape(v) => match v {
                Variant::SoundscapeQuiet => "test-soundscape-quiet",
                Variant::SoundscapeNoisy => "test-soundscape-noisy",
                Variant::SoundscapeReverb => "test-soundscape-reverb",
                Variant::SoundscapeValid => "valid",
            },
        }
    }

    fn id(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::FocalTest => 2,
            Split::Soundscape(Variant::SoundscapeQuiet) => 3,
            Split::Soundscape(Variant::SoundscapeNoisy) => 4,
            Split::Soundscape(Variant::SoundscapeReverb) => 5,
            Split::Soundscape(Variant::SoundscapeValid) => 6,
        }
    }

    /// Every split, training first.
    pub fn all() -> [Split; 6] {
        [
            Split::Train,
            Split::FocalTest,
            Split::Soundscape(Variant::SoundscapeValid),
            Split::Soundscape(Variant::SoundscapeQuiet),
            Split::Soundscape(Variant::SoundscapeNoisy),
            Split::Soundscape(Variant::SoundscapeReverb),
        ]
    }
}

/// SplitMix64: decorrelates the per-clip seeds derived from (seed, split, index).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Errors writing the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A WAV file could not be written.
    #[error("{path}: {reason}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },
    /// The label table could not be written.
    #[error(transparent)]
    Labels(#[from] LabelsError),
}

/// What [`Benchmark::write`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteReport {
    /// (manifest file, rows) per split.
    pub manifests: Vec<(PathBuf, usize)>,
    /// Audio files written.
    pub files: usize,
    /// Seconds of audio written.
    pub seconds: f64,
}

/// A benchmark instance: preset, seed and the drawn species.
#[derive(Debug, Clone, Serialize)]
pub struct Benchmark {
    /// The preset.
    pub preset: SynthPreset,
    /// The seed everything derives from.
    pub seed: u64,
    /// Sizes.
    pub spec: SynthSpec,
    /// The species, in label order.
    pub species: Vec<Species>,
}

impl Benchmark {
    /// Draws the species of a benchmark.
    pub fn new(preset: SynthPreset, seed: u64) -> Self {
        let spec = preset.spec();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed));
        let species = species::draw_species(&mut rng, spec.n_species);
        Self {
            preset,
            seed,
            spec,
            species,
        }
    }

    /// The label table (`syn00`, `syn01`, …).
    ///
    /// # Errors
    /// Only if a species code were invalid (they are generated valid).
    pub fn labels(&self) -> Result<LabelTable, LabelsError> {
        let rows = self
            .species
            .iter()
            .map(|s| {
                let code = SpeciesCode::new(s.code.clone()).map_err(|reason| LabelsError::Row {
                    path: None,
                    line: 0,
                    reason,
                })?;
                Ok((code, s.scientific.clone(), s.common.clone()))
            })
            .collect::<Result<Vec<_>, LabelsError>>()?;
        LabelTable::new(rows)
    }

    /// Number of clips in a split.
    pub fn len(&self, split: Split) -> usize {
        let s = &self.spec;
        match split {
            Split::Train => s.n_species * s.train_per_species,
            Split::FocalTest => s.n_species * s.focal_test_per_species,
            Split::Soundscape(Variant::SoundscapeValid) => s.valid_segments,
            Split::Soundscape(_) => s.segments_per_variant,
        }
    }

    /// Generates clip `index` of `split` (a pure function of seed, split and index).
    pub fn clip(&self, split: Split, index: usize) -> Clip {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(self.seed ^ split.id()) ^ index as u64));
        match split {
            Split::Train | Split::FocalTest => {
                let primary = index % self.species.len();
                scene::focal(&self.species, primary, self.spec.focal_seconds, &mut rng)
            }
            Split::Soundscape(v) => {
                scene::soundscape(&self.species, v, self.spec.segment_seconds, &mut rng)
            }
        }
    }

    fn codes(&self, labels: &[usize]) -> Vec<String> {
        labels
            .iter()
            .map(|&i| self.species[i].code.clone())
            .collect()
    }

    /// Manifest rows for a clip stored at `path`: one row per call for focal recordings
    /// (the loader crops an event-centred window around it), one row per segment for
    /// soundscapes.
    fn rows(&self, split: Split, path: &Path, clip: &Clip) -> Vec<ManifestRow> {
        match split {
            Split::Train | Split::FocalTest => clip
                .calls
                .iter()
                .map(|&(s, start, end)| ManifestRow {
                    path: path.to_owned(),
                    start_s: f64::from(start),
                    end_s: f64::from(end),
                    labels: self.codes(&[s]),
                })
                .collect(),
            Split::Soundscape(_) => vec![ManifestRow {
                path: path.to_owned(),
                start_s: 0.0,
                end_s: f64::from(self.spec.segment_seconds),
                labels: self.codes(&clip.labels),
            }],
        }
    }

    /// Writes audio (16-bit WAV), one manifest per split, `labels.csv` and `synth.json`
    /// under `out`. Calls `on_clip` after each clip (from worker threads).
    ///
    /// # Errors
    /// The first file that could not be written.
    pub fn write(
        &self,
        out: &Path,
        on_clip: &(dyn Fn() + Sync),
    ) -> Result<WriteReport, SynthError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| SynthError::Io { path, source }
        };
        fs::create_dir_all(out).map_err(io_err(out))?;
        self.labels()?.write(out.join("labels.csv"))?;
        let meta = serde_json::to_string_pretty(self).map_err(|e| SynthError::Io {
            path: out.join("synth.json"),
            source: io::Error::other(e),
        })?;
        fs::write(out.join("synth.json"), meta).map_err(io_err(&out.join("synth.json")))?;
        let mut report = WriteReport {
            manifests: Vec::new(),
            files: 0,
            seconds: 0.0,
        };
        for split in Split::all() {
            let dir = out.join("audio").join(split.name());
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let rows: Vec<Vec<ManifestRow>> = (0..self.len(split))
                .into_par_iter()
                .map(|index| {
                    let clip = self.clip(split, index);
                    let name = format!("{}-{index:05}.wav", split.name());
                    write_wav(&dir.join(&name), &clip.samples)?;
                    on_clip();
                    let relative = Path::new("audio").join(split.name()).join(name);
                    Ok(self.rows(split, &relative, &clip))
                })
                .collect::<Result<_, SynthError>>()?;
            let manifest = Manifest {
                rows: rows.into_iter().flatten().collect(),
            };
            let path = out.join(format!("{}.csv", split.name()));
            manifest.write(&path).map_err(|e| SynthError::Io {
                path: path.clone(),
                source: io::Error::other(e),
            })?;
            report.files += self.len(split);
            report.seconds += self.len(split) as f64
                * f64::from(match split {
                    Split::Train | Split::FocalTest => self.spec.focal_seconds,
                    Split::Soundscape(_) => self.spec.segment_seconds,
                });
            report.manifests.push((path, manifest.rows.len()));
        }
        Ok(report)
    }
}

/// Writes mono 16-bit PCM at [`RATE`].
fn write_wav(path: &Path, samples: &[f32]) -> Result<(), SynthError> {
    let wav_err = |e: hound::Error| SynthError::Wav {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(wav_err)?;
    for &s in samples {
        writer
            .write_sample((s.clamp(-1.0, 1.0) * 32_767.0).round() as i16)
            .map_err(wav_err)?;
    }
    writer.finalize().map_err(wav_err)
}
