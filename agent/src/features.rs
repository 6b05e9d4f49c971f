//! Stream a recording through the front end and summarise each window.
//!
//! This is what the recorder will feed its model: the same chunked decoding, the same
//! streaming front end, the same windows. The summary (loudest band, how much of the window
//! stands out from its background) lets a technician check a recording and the front end
//! without a model.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use warble_core::audio::AudioStream;
use warble_core::frontend::{WindowInfo, WindowSpec, band_centres_hz};
use warble_core::{FrontEndConfig, SampleRate, StreamingFrontEnd};

/// A cell stands out when it is this far above its band's median over the window, in dB:
/// calls are short and loud against a background that is steady per band.
const EVENT_MARGIN_DB: f64 = 10.0;

/// What one window looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSummary {
    /// Window number.
    pub index: u64,
    /// Start time in seconds from the start of the recording.
    pub start_s: f64,
    /// End time in seconds (of real audio; the last window may be padded).
    pub end_s: f64,
    /// Centre frequency of the band with the strongest transient (max above median), Hz.
    pub event_band_hz: f64,
    /// How far that transient rises above its band's median, dB.
    pub event_db: f64,
    /// Fraction of frames in which some band is `EVENT_MARGIN_DB` above its median.
    pub active_fraction: f64,
}

/// Totals for one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    /// Windows emitted.
    pub windows: u64,
    /// Seconds of audio read.
    pub audio_seconds: f64,
    /// Source sample rate and channels.
    pub source: (SampleRate, usize),
    /// Wall time spent decoding, resampling and computing features.
    pub elapsed: Duration,
}

impl FileReport {
    /// Audio seconds processed per wall-clock second.
    pub fn real_time_factor(&self) -> f64 {
        self.audio_seconds / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Summarises one window of features `(n_mels, frames)`.
pub fn summarise(
    cfg: &FrontEndConfig,
    centres_hz: &[f64],
    info: WindowInfo,
    features: &[f32],
) -> WindowSummary {
    let frames = features.len() / cfg.n_mels;
    let rate = f64::from(cfg.sample_rate_hz);
    let margin = (EVENT_MARGIN_DB / cfg.std) as f32;
    let mut active = vec![false; frames];
    let mut sorted = vec![0.0f32; frames];
    let (mut event_band, mut event_excess) = (0, f32::NEG_INFINITY);
    for (m, row) in features.chunks_exact(frames).enumerate() {
        sorted.copy_from_slice(row);
        sorted.sort_by(f32::total_cmp);
        let median = sorted[frames / 2];
        let excess = sorted[frames - 1] - median;
        if excess > event_excess {
            (event_band, event_excess) = (m, excess);
        }
        for (flag, &v) in active.iter_mut().zip(row) {
            *flag |= v >= median + margin;
        }
    }
    let start_s = info.start_sample as f64 / rate;
    WindowSummary {
        index: info.index,
        start_s,
        end_s: start_s + info.valid_samples as f64 / rate,
        event_band_hz: centres_hz[event_band],
        event_db: f64::from(event_excess) * cfg.std,
        active_fraction: active.iter().filter(|&&a| a).count() as f64 / frames as f64,
    }
}

/// Streams `path` through the front end, calling `on_window` for each window and
/// `on_progress` with the seconds read so far.
///
/// # Errors
/// Unreadable or corrupt audio (the error names the file), or an invalid window.
pub fn run_file(
    path: &Path,
    cfg: &FrontEndConfig,
    spec: WindowSpec,
    mut on_window: impl FnMut(&WindowSummary),
    mut on_progress: impl FnMut(f64),
) -> anyhow::Result<FileReport> {
    let started = Instant::now();
    let rate = SampleRate::new(cfg.sample_rate_hz).context("front end has a zero sample rate")?;
    let mut stream = AudioStream::open(path, rate)?;
    let source = (stream.reader().sample_rate(), stream.reader().channels());
    let mut frontend =
        StreamingFrontEnd::new(cfg.clone(), spec).context("building the streaming front end")?;
    let centres = band_centres_hz(cfg);
    let (mut samples, mut total, mut windows) = (Vec::new(), 0u64, 0u64);
    let mut emit = |info: WindowInfo, features: &[f32]| {
        windows += 1;
        on_window(&summarise(cfg, &centres, info, features));
    };
    loop {
        samples.clear();
        let n = stream.read_chunk(&mut samples)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        frontend.push(&samples, &mut emit);
        on_progress(total as f64 / f64::from(cfg.sample_rate_hz));
    }
    frontend.finish(&mut emit);
    Ok(FileReport {
        windows,
        audio_seconds: total as f64 / f64::from(cfg.sample_rate_hz),
        source,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_burst_is_found_in_its_band_and_time() {
        let cfg = FrontEndConfig::birdset();
        let centres = band_centres_hz(&cfg);
        // 5 s of faint noise with a loud 4 kHz tone in the second half.
        let mut state = 1u32;
        let pcm: Vec<f32> = (0..160_000)
            .map(|i| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                let tone = if i >= 80_000 {
                    (2.0 * std::f32::consts::PI * 4000.0 * i as f32 / 32_000.0).sin()
                } else {
                    0.0
                };
                0.001 * noise + 0.5 * tone
            })
            .collect();
        let mut fe = StreamingFrontEnd::new(
            cfg.clone(),
            WindowSpec {
                length_samples: 160_000,
                hop_samples: 160_000,
            },
        )
        .unwrap();
        let mut summaries = Vec::new();
        fe.push(&pcm, |info, f| {
            summaries.push(summarise(&cfg, &centres, info, f))
        });
        assert_eq!(summaries.len(), 1);
        let s = &summaries[0];
        // Bands are ~250 Hz apart near 4 kHz; the tone may peak in either neighbour.
        assert!((s.event_band_hz - 4000.0).abs() < 300.0, "{s:?}");
        assert!(s.event_db > 40.0, "{s:?}");
        assert!((0.45..0.56).contains(&s.active_fraction), "{s:?}");
        assert_eq!((s.start_s, s.end_s), (0.0, 5.0));
    }
}
