//! Training batches: shuffled per epoch, augmented, computed in parallel, deterministic.
//!
//! Every random choice for an example (its crop, its augmentations, the clips mixed into
//! it) comes from an RNG seeded by (seed, epoch, position in the epoch), so a batch is the
//! same whatever the number of threads, and a resumed run sees the same data as an
//! uninterrupted one.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use warble_core::labels::LabelTable;
use warble_core::{ClipFrontEnd, FrontEndConfig, SampleRate};

use super::augment::{self, AugmentConfig, AugmentSource};
use super::cache::AudioCache;
use super::loader::{Crop, FeatureSet, LoadError, read_window, window_start};
use super::manifest::{Manifest, ManifestRow};
use crate::synth::dsp::{self, NoiseColour};

/// One batch: the same layout as a [`FeatureSet`] (`n` examples).
pub type Batch = FeatureSet;

/// Produces training batches from a manifest.
#[derive(Debug)]
pub struct TrainLoader {
    rows: Vec<ManifestRow>,
    targets: Vec<Vec<f32>>,
    background_rows: Vec<usize>,
    cfg: FrontEndConfig,
    rate: SampleRate,
    window_len: usize,
    crop: Crop,
    augment: AugmentConfig,
    seed: u64,
    cache: Option<AudioCache>,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl TrainLoader {
    /// A loader over `manifest`. Rows without labels serve as background recordings for
    /// the background and no-call augmentations; without any, synthetic background (wind
    /// over coloured noise) is used. With `cache_dir`, decoded audio is cached there.
    ///
    /// # Errors
    /// The cache folder cannot be created.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        manifest: Manifest,
        labels: &LabelTable,
        cfg: FrontEndConfig,
        window_s: f64,
        crop: Crop,
        augment: AugmentConfig,
        seed: u64,
        cache_dir: Option<&Path>,
    ) -> Result<Self, LoadError> {
        let rate = SampleRate::new(cfg.sample_rate_hz).unwrap_or(SampleRate::HZ_32000);
        let cache = cache_dir
            .map(|dir| AudioCache::new(dir, rate))
            .transpose()
            .map_err(|source| LoadError::Cache { row: 0, source })?;
        let targets = manifest
            .rows
            .iter()
            .map(|row| Manifest::multi_hot(row, labels))
            .collect();
        let background_rows = (0..manifest.rows.len())
            .filter(|&i| manifest.rows[i].labels.is_empty())
            .collect();
        Ok(Self {
            rows: manifest.rows,
            targets,
            background_rows,
            window_len: (window_s * f64::from(rate.hz())).round() as usize,
            rate,
            cfg,
            crop,
            augment,
            seed,
            cache,
        })
    }

    /// Examples per epoch.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// `(n_mels, frames)` of one example.
    pub fn shape(&self) -> (usize, usize) {
        (self.cfg.n_mels, self.cfg.frames_for(self.window_len))
    }

    /// The order of rows in an epoch (a seeded shuffle).
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(self.seed, epoch)));
        order
    }

    /// Batch number `index` of `epoch` (the last one may be smaller). Examples are
    /// computed in parallel.
    ///
    /// # Errors
    /// The first example that cannot be loaded.
    pub fn batch(&self, epoch: u64, index: usize, batch_size: usize) -> Result<Batch, LoadError> {
        let order = self.epoch_order(epoch);
        let positions =
            (index * batch_size).min(order.len())..((index + 1) * batch_size).min(order.len());
        let examples: Vec<(Vec<f32>, Vec<f32>)> = positions
            .into_par_iter()
            .map_init(
                || ClipFrontEnd::new(self.cfg.clone()),
                |frontend, position| {
                    let row = order[position];
                    let frontend = frontend.as_mut().map_err(|e| LoadError::FrontEnd {
                        row,
                        source: e.clone(),
                    })?;
                    let mut rng =
                        ChaCha8Rng::seed_from_u64(mix(mix(self.seed, epoch), position as u64 + 1));
                    self.example(row, frontend, &mut rng)
                },
            )
            .collect::<Result<_, LoadError>>()?;
        let (n_mels, frames) = self.shape();
        let classes = self.targets.first().map_or(0, Vec::len);
        let mut batch = Batch {
            x: Vec::with_capacity(examples.len() * n_mels * frames),
            y: Vec::with_capacity(examples.len() * classes),
            n: examples.len(),
            shape: (n_mels, frames),
            classes,
        };
        for (x, y) in examples {
            batch.x.extend(x);
            batch.y.extend(y);
        }
        Ok(batch)
    }

    /// Number of batches per epoch.
    pub fn batches_per_epoch(&self, batch_size: usize) -> usize {
        self.rows.len().div_ceil(batch_size.max(1))
    }

    fn example(
        &self,
        row: usize,
        frontend: &mut ClipFrontEnd,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, Vec<f32>), LoadError> {
        let mut x = self.load(row, rng)?;
        let mut y = self.targets[row].clone();
        augment::waveform(
            &self.augment,
            &mut x,
            &mut y,
            &Source { loader: self, row },
            rng,
        )?;
        let mut features = frontend
            .compute_vec(&x)
            .map_err(|source| LoadError::FrontEnd { row, source })?;
        let range = (self.cfg.top_db / self.cfg.std) as f32;
        augment::spectrogram(&self.augment, &mut features, self.cfg.n_mels, range, rng);
        Ok((features, y))
    }

    /// The cropped window of a row.
    fn load(&self, row: usize, rng: &mut ChaCha8Rng) -> Result<Vec<f32>, LoadError> {
        let r = &self.rows[row];
        let window_s = self.window_len as f64 / f64::from(self.rate.hz());
        let start = window_start(r, self.crop, window_s, rng);
        match &self.cache {
            Some(cache) => {
                let first = (start * f64::from(self.rate.hz())).round() as usize;
                cache
                    .window(&r.path, first, self.window_len)
                    .map_err(|source| LoadError::Cache { row, source })
            }
            None => read_window(&r.path, start, self.window_len, self.rate)
                .map_err(|source| LoadError::Audio { row, source }),
        }
    }
}

/// Augmentation material drawn from the loader's own rows.
struct Source<'a> {
    loader: &'a TrainLoader,
    row: usize,
}

impl AugmentSource for Source<'_> {
    fn other_clip(&self, rng: &mut ChaCha8Rng) -> Result<(Vec<f32>, Vec<f32>), LoadError> {
        let n = self.loader.rows.len();
        let other = if n > 1 {
            (self.row + rng.random_range(1..n)) % n
        } else {
            self.row
        };
        Ok((
            self.loader.load(other, rng)?,
            self.loader.targets[other].clone(),
        ))
    }

    fn background(&self, rng: &mut ChaCha8Rng, len: usize) -> Result<Vec<f32>, LoadError> {
        let rows = &self.loader.background_rows;
        if rows.is_empty() {
            let rate = self.loader.rate.hz() as f32;
            let mut x = dsp::noise(rng, NoiseColour::Pink, len);
            let wind = dsp::wind(rng, len, rate);
            x.iter_mut()
                .zip(&wind)
                .for_each(|(a, b)| *a = 0.05 * (*a + b));
            return Ok(x);
        }
        let row = rows[rng.random_range(0..rows.len())];
        let mut x = self.loader.load(row, rng)?;
        x.resize(len, 0.0);
        Ok(x)
    }
}
