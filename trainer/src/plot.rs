//! Pictures for people: spectrograms as PNG, line charts (training curves, PR curves) as
//! SVG.

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
    /// The front end could not compute the picture's features.
    #[error("features for the picture: {0}")]
    FrontEnd(#[from] warble_core::FrontEndError),
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
    write_rgb_png(path, &pixels, width, height)
}

fn write_rgb_png(path: &Path, pixels: &[u8], width: usize, height: usize) -> Result<(), PlotError> {
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
    writer.write_image_data(pixels).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

/// An activation map: values `(rows, cols)` row-major, lowest frequency first, and the
/// range its colours span.
pub type Overlay<'a> = (&'a [f32], usize, usize, (f32, f32));

/// One panel of [`panels_png`]: a spectrogram in grey, optionally with an activation map
/// over it in colour.
#[derive(Debug, Clone)]
pub struct Panel<'a> {
    /// Features `(n_mels, frames)`, row-major.
    pub features: &'a [f32],
    /// An activation map `(rows, cols)` stretched over the whole panel (nearest cell),
    /// drawn with opacity growing from the range's low end to its high end.
    pub map: Option<Overlay<'a>>,
}

/// Writes a grid of panels (rows of equally sized spectrograms, `n_mels` bands each, cells
/// `scale` pixels) separated by white lines: e.g. a clip clean and attacked, with
/// prototypes' activation maps over it.
///
/// # Errors
/// The file cannot be written.
pub fn panels_png(
    path: &Path,
    rows: &[Vec<Panel<'_>>],
    n_mels: usize,
    scale: usize,
) -> Result<(), PlotError> {
    const GAP: usize = 4;
    let frames = rows
        .iter()
        .flatten()
        .map(|p| p.features.len() / n_mels.max(1))
        .max()
        .unwrap_or(0);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let (pw, ph) = (frames * scale, n_mels * scale);
    let width = cols * pw + cols.saturating_sub(1) * GAP;
    let height = rows.len() * ph + rows.len().saturating_sub(1) * GAP;
    let mut pixels = vec![255u8; width * height * 3];
    for (r, row) in rows.iter().enumerate() {
        for (c, panel) in row.iter().enumerate() {
            let f = panel.features.len() / n_mels.max(1);
            let (lo, hi) = panel
                .features
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let span = (hi - lo).max(1e-6);
            for y in 0..ph {
                let mel = n_mels - 1 - y / scale;
                for x in 0..f * scale {
                    let t = (panel.features[mel * f + x / scale] - lo) / span;
                    let grey = 30.0 + 200.0 * t;
                    let mut rgb = [grey; 3];
                    if let Some((map, mh, mw, (low, high))) = panel.map {
                        // The map's first row is the lowest frequency band, like features.
                        let (my, mx) =
                            ((n_mels - 1 - y / scale) * mh / n_mels, x * mw / (f * scale));
                        let t = (map[my * mw + mx] - low) / (high - low).max(1e-6);
                        let a = t.clamp(0.0, 1.0) * 0.75;
                        let heat = colour(a / 0.75);
                        for k in 0..3 {
                            rgb[k] = rgb[k] * (1.0 - a) + f32::from(heat[k]) * a;
                        }
                    }
                    let (px, py) = (c * (pw + GAP) + x, r * (ph + GAP) + y);
                    let at = (py * width + px) * 3;
                    for k in 0..3 {
                        pixels[at + k] = rgb[k].round() as u8;
                    }
                }
            }
        }
    }
    write_rgb_png(path, &pixels, width, height)
}

/// One line of a chart: a name for the legend and its points.
pub type Series<'a> = (&'a str, Vec<(f64, f64)>);

/// Writes a line chart as SVG (no font files needed): axes with labels, one coloured line
/// per series, and a legend.
///
/// # Errors
/// The file cannot be written.
pub fn line_chart_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> Result<(), PlotError> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| PlotError::Png {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let points = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in points.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |a: f64, b: f64| if b > a { (b - a) * 0.05 } else { 0.5 };
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_chart_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        let series = [
            ("train", vec![(1.0, 0.5), (2.0, 0.3)]),
            ("valid", vec![(1.0, 0.6), (2.0, 0.4)]),
        ];
        line_chart_svg(&path, "loss", "epoch", "loss", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.starts_with("<svg")
                && svg.contains("train")
                && svg.contains("valid")
                && svg.contains("epoch")
        );
    }

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
