//! Pictures for people: spectrograms as PNG.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// Viridis, sampled at 9 points and interpolated linearly (perceptually ordered, readable
/// in grey and by colour-blind readers).
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

fn colour(t: f32) -> [u8; 3] {
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (x as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let mut rgb = [0u8; 3];
    for (c, out) in rgb.iter_mut().enumerate() {
        *out = (VIRIDIS[i][c] * (1.0 - f) + VIRIDIS[i + 1][c] * f).round() as u8;
    }
    rgb
}

/// Errors writing a picture.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file could not be created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// PNG encoding failed.
    #[error("{}: {reason}", path.display())]
    Png {
        /// The file.
        path: std::path::PathBuf,
        /// The encoder's message.
        reason: String,
    },
}

/// Writes features `(n_mels, frames)` as a PNG, low frequencies at the bottom, each cell
/// `scale` × `scale` pixels, colours spanning the values' range.
///
/// # Errors
/// The file cannot be written.
pub fn spectrogram_png(
    path: &Path,
    features: &[f32],
    n_mels: usize,
    scale: usize,
) -> Result<(), PlotError> {
    let frames = features.len() / n_mels.max(1);
    let (lo, hi) = features
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = (hi - lo).max(1e-6);
    let (width, height) = (frames * scale, n_mels * scale);
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let mel = n_mels - 1 - y / scale;
        for x in 0..width {
            pixels.extend(colour((features[mel * frames + x / scale] - lo) / span));
        }
    }
    let file = File::create(path).map_err(|source| PlotError::Io {
        path: path.to_owned(),
        source,
    })?;
    let png_err = |e: png::EncodingError| PlotError::Png {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&pixels).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_of_the_right_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.png");
        let features: Vec<f32> = (0..4 * 10).map(|i| i as f32).collect();
        spectrogram_png(&path, &features, 4, 2).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (20, 8));
        assert_eq!(colour(0.0), [68, 1, 84]);
        assert_eq!(colour(1.0), [253, 231, 37]);
    }
}
