//! Spectrogram pictures of a benchmark: one focal call per species and one soundscape
//! segment per variant, for the documentation and for eyeballing a new seed.

use std::path::{Path, PathBuf};

use warble_core::{ClipFrontEnd, FrontEndConfig};

use super::{Benchmark, RATE, Split, Variant};
use crate::plot::{PlotError, spectrogram_png};

/// One picture and what it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// The PNG.
    pub path: PathBuf,
    /// What it shows (species names or variant and species present).
    pub caption: String,
}

/// Writes the pictures into `out` (birdset front end, one window of the segment length).
///
/// # Errors
/// A picture could not be written.
pub fn write_gallery(bench: &Benchmark, out: &Path) -> Result<Vec<Picture>, PlotError> {
    std::fs::create_dir_all(out).map_err(|source| PlotError::Io {
        path: out.to_owned(),
        source,
    })?;
    let cfg = FrontEndConfig::birdset();
    let n_mels = cfg.n_mels;
    let mut frontend = ClipFrontEnd::new(cfg)?;
    let window = (bench.spec.segment_seconds * RATE) as usize;
    let mut render =
        |samples: &[f32], name: String, caption: String| -> Result<Picture, PlotError> {
            let mut padded = samples.to_vec();
            padded.resize(window, 0.0);
            let features = frontend.compute_vec(&padded)?;
            let path = out.join(name);
            spectrogram_png(&path, &features, n_mels, 2)?;
            Ok(Picture { path, caption })
        };
    let mut pictures = Vec::new();
    for (i, species) in bench.species.iter().enumerate() {
        let clip = bench.clip(Split::Train, i);
        let first = clip.calls.first().map_or(0.0, |c| (c.1 + c.2) / 2.0);
        let start = ((first - bench.spec.segment_seconds / 2.0).max(0.0) * RATE) as usize;
        let end = (start + window).min(clip.samples.len());
        pictures.push(render(
            &clip.samples[start..end],
            format!("species-{}.png", species.code),
            format!(
                "{} — {} ({})",
                species.code, species.common, species.scientific
            ),
        )?);
    }
    for variant in [
        Variant::SoundscapeQuiet,
        Variant::SoundscapeNoisy,
        Variant::SoundscapeReverb,
        Variant::SoundscapeValid,
    ] {
        let split = Split::Soundscape(variant);
        let index = (0..bench.len(split).min(200))
            .find(|&i| bench.clip(split, i).labels.len() >= 2)
            .unwrap_or(0);
        let clip = bench.clip(split, index);
        let present: Vec<&str> = clip
            .labels
            .iter()
            .map(|&s| bench.species[s].code.as_str())
            .collect();
        pictures.push(render(
            &clip.samples,
            format!("{}.png", variant.name()),
            format!("{} segment {index}: {}", variant.name(), present.join(", ")),
        )?);
    }
    Ok(pictures)
}
