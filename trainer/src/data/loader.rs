//! Loads the audio of a manifest row as one model window, and turns rows into features.
//!
//! Crops follow BirdSet's practice: training on focal recordings uses a random window
//! around the annotated event (the row's span), evaluation on focal recordings centres
//! the window on the event, and soundscape segments are read as they are. Windows that
//! reach past the recording are zero-padded.

use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use warble_core::audio::AudioStream;
use warble_core::labels::LabelTable;
use warble_core::{AudioError, ClipFrontEnd, FrontEndConfig, FrontEndError, SampleRate};

use super::manifest::{Manifest, ManifestRow};

/// How a window is placed on a row's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crop {
    /// A window containing the event, its position drawn at random (training).
    EventRandom,
    /// A window centred on the event (evaluation on focal recordings).
    EventCentred,
    /// The window starting at the row's start (soundscape segments).
    Fixed,
}

/// Loading failed for a row.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The audio could not be read.
    #[error("row {row}: {source}")]
    Audio {
        /// Row index in the manifest.
        row: usize,
        /// The audio error (names the file).
        source: AudioError,
    },
    /// The audio cache failed.
    #[error("row {row}: {source}")]
    Cache {
        /// Row index in the manifest.
        row: usize,
        /// The cache error.
        source: super::cache::CacheError,
    },
    /// The front end refused the window.
    #[error("row {row}: {source}")]
    FrontEnd {
        /// Row index in the manifest.
        row: usize,
        /// The front-end error.
        source: FrontEndError,
    },
}

/// Reads `[start_s, start_s + len)` of a file at `rate`, zero-padded, decoding in chunks
/// and stopping at the end of the window (the file is never held whole).
///
/// # Errors
/// The file's [`AudioError`].
pub fn read_window(
    path: &Path,
    start_s: f64,
    len: usize,
    rate: SampleRate,
) -> Result<Vec<f32>, AudioError> {
    let first = (start_s * f64::from(rate.hz())).round() as usize;
    let mut stream = AudioStream::open(path, rate)?;
    let (mut out, mut chunk, mut seen) = (Vec::with_capacity(len), Vec::new(), 0usize);
    while out.len() < len {
        chunk.clear();
        if stream.read_chunk(&mut chunk)? == 0 {
            break;
        }
        let from = first.saturating_sub(seen).min(chunk.len());
        let take = (len - out.len()).min(chunk.len() - from);
        out.extend_from_slice(&chunk[from..from + take]);
        seen += chunk.len();
    }
    out.resize(len, 0.0);
    Ok(out)
}

/// Where a window of `window_s` starts for a row under a crop policy.
pub fn window_start(row: &ManifestRow, crop: Crop, window_s: f64, rng: &mut ChaCha8Rng) -> f64 {
    let (start, end) = (row.start_s, row.end_s);
    match crop {
        Crop::Fixed => start,
        Crop::EventCentred => ((start + end) / 2.0 - window_s / 2.0).max(0.0),
        Crop::EventRandom => {
            // Any window that contains the event's centre with a margin of a quarter
            // window on either side.
            let centre = (start + end) / 2.0;
            let lo = (centre - 0.75 * window_s).max(0.0);
            let hi = (centre - 0.25 * window_s).max(lo);
            if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            }
        }
    }
}

/// Features and multi-hot targets for a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    /// `(n, n_mels, frames)` row-major.
    pub x: Vec<f32>,
    /// `(n, classes)` multi-hot.
    pub y: Vec<f32>,
    /// Number of examples.
    pub n: usize,
    /// `(n_mels, frames)` of one example.
    pub shape: (usize, usize),
    /// Number of classes.
    pub classes: usize,
}

/// Computes the features of every row in parallel (rayon). Each row's random crop is
/// drawn from `(seed, row index)`, so the result does not depend on thread scheduling.
/// `on_row` is called after each row (from worker threads).
///
/// # Errors
/// The first row that cannot be loaded.
pub fn features(
    manifest: &Manifest,
    labels: &LabelTable,
    cfg: &FrontEndConfig,
    window_s: f64,
    crop: Crop,
    seed: u64,
    on_row: &(dyn Fn() + Sync),
) -> Result<FeatureSet, LoadError> {
    let rate = SampleRate::new(cfg.sample_rate_hz).unwrap_or(SampleRate::HZ_32000);
    let len = (window_s * f64::from(rate.hz())).round() as usize;
    let shape = (cfg.n_mels, cfg.frames_for(len));
    let classes = labels.len();
    let per_row: Vec<(Vec<f32>, Vec<f32>)> = manifest
        .rows
        .par_iter()
        .enumerate()
        .map_init(
            || ClipFrontEnd::new(cfg.clone()),
            |frontend, (row_index, row)| {
                let frontend = frontend.as_mut().map_err(|e| LoadError::FrontEnd {
                    row: row_index,
                    source: e.clone(),
                })?;
                let mut rng =
                    ChaCha8Rng::seed_from_u64(seed ^ (row_index as u64).wrapping_mul(0x9e37_79b9));
                let start = window_start(row, crop, window_s, &mut rng);
                let samples = read_window(&row.path, start, len, rate).map_err(|source| {
                    LoadError::Audio {
                        row: row_index,
                        source,
                    }
                })?;
                let x = frontend
                    .compute_vec(&samples)
                    .map_err(|source| LoadError::FrontEnd {
                        row: row_index,
                        source,
                    })?;
                on_row();
                Ok((x, Manifest::multi_hot(row, labels)))
            },
        )
        .collect::<Result<_, LoadError>>()?;
    let n = per_row.len();
    let (mut x, mut y) = (
        Vec::with_capacity(n * shape.0 * shape.1),
        Vec::with_capacity(n * classes),
    );
    for (xi, yi) in per_row {
        x.extend(xi);
        y.extend(yi);
    }
    Ok(FeatureSet {
        x,
        y,
        n,
        shape,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn row(start_s: f64, end_s: f64) -> ManifestRow {
        ManifestRow {
            path: PathBuf::from("x.wav"),
            start_s,
            end_s,
            labels: vec![],
        }
    }

    #[test]
    fn random_crops_contain_the_event_centre() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let r = row(3.0, 4.0);
            let s = window_start(&r, Crop::EventRandom, 2.0, &mut rng);
            assert!(
                s <= 3.5 - 0.5 + 1e-9 && s + 2.0 >= 3.5 + 0.5 - 1e-9,
                "start {s}"
            );
        }
        // Near the start of a file the window is clamped to 0.
        assert_eq!(
            window_start(&row(0.1, 0.3), Crop::EventRandom, 2.0, &mut rng),
            0.0
        );
        assert_eq!(
            window_start(&row(3.0, 4.0), Crop::EventCentred, 2.0, &mut rng),
            2.5
        );
        assert_eq!(
            window_start(&row(3.0, 4.0), Crop::Fixed, 2.0, &mut rng),
            3.0
        );
    }
}
