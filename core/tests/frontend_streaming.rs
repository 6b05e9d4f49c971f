//! Streaming mode equals clip mode on the same samples, for random signals, window
//! lengths, hops and chunkings (property tests), bit for bit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use proptest::prelude::*;
use warble_core::frontend::{Preset, WindowInfo, WindowSpec};
use warble_core::{ClipFrontEnd, FrontEndConfig, StreamingFrontEnd};

/// A small custom front end so that hundreds of cases run in seconds.
fn small_config() -> FrontEndConfig {
    FrontEndConfig {
        preset: Preset::Custom,
        sample_rate_hz: 8_000,
        n_fft: 256,
        hop_length: 64,
        n_mels: 24,
        f_max_hz: 4_000.0,
        ..FrontEndConfig::birdset()
    }
}

fn signal(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed | 1;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let chirp = (i as f32 * (0.05 + i as f32 * 1e-6)).sin();
            0.4 * chirp * ((i / 700) % 2) as f32 + 0.1 * noise
        })
        .collect()
}

/// Pushes `pcm` in the given chunk sizes (cycled), then finishes the stream.
fn stream(
    cfg: &FrontEndConfig,
    spec: WindowSpec,
    pcm: &[f32],
    chunks: &[usize],
) -> Vec<(WindowInfo, Vec<f32>)> {
    let mut fe = StreamingFrontEnd::new(cfg.clone(), spec).unwrap();
    let mut windows = Vec::new();
    let mut rest = pcm;
    for &size in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(size.min(rest.len()));
        fe.push(now, |info, f| windows.push((info, f.to_vec())));
        rest = later;
    }
    fe.finish(|info, f| windows.push((info, f.to_vec())));
    windows
}

/// Clip mode on exactly the samples of a window (zero-padded past the end of the stream).
fn clip_of(cfg: &FrontEndConfig, pcm: &[f32], info: &WindowInfo, len: usize) -> Vec<f32> {
    let start = info.start_sample as usize;
    let mut samples = vec![0.0; len];
    let end = (start + len).min(pcm.len());
    samples[..end - start].copy_from_slice(&pcm[start..end]);
    ClipFrontEnd::new(cfg.clone())
        .unwrap()
        .compute_vec(&samples)
        .unwrap()
}

fn check(cfg: &FrontEndConfig, spec: WindowSpec, pcm: &[f32], chunks: &[usize]) {
    let windows = stream(cfg, spec, pcm, chunks);
    // Every window start that fits, plus one zero-padded window if samples remain uncovered.
    let full = if pcm.len() >= spec.length_samples {
        (pcm.len() - spec.length_samples) / spec.hop_samples + 1
    } else {
        0
    };
    let last_covered = if full == 0 {
        0
    } else {
        (full - 1) * spec.hop_samples + spec.length_samples
    };
    let next_start = full * spec.hop_samples;
    let tail =
        usize::from(pcm.len() > last_covered.max(next_start) || (full == 0 && !pcm.is_empty()));
    assert_eq!(
        windows.len(),
        full + tail,
        "window count for {} samples, {spec:?}",
        pcm.len()
    );
    for (i, (info, got)) in windows.iter().enumerate() {
        assert_eq!(info.index, i as u64);
        assert_eq!(info.start_sample, (i * spec.hop_samples) as u64);
        let expected = clip_of(cfg, pcm, info, spec.length_samples);
        assert_eq!(
            got, &expected,
            "window {i} ({info:?}) differs from clip mode"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    #[test]
    fn streaming_equals_clip_mode_for_any_chunking(
        seed in any::<u64>(),
        len in 200usize..6_000,
        window_frames in 3usize..40,
        hop_frames in 1usize..50,
        chunks in proptest::collection::vec(1usize..3_000, 1..8),
    ) {
        let cfg = small_config();
        let spec = WindowSpec {
            length_samples: window_frames * cfg.hop_length + 17,
            hop_samples: hop_frames * cfg.hop_length,
        };
        check(&cfg, spec, &signal(seed, len), &chunks);
    }
}

#[test]
fn presets_stream_overlapping_windows_exactly() {
    for cfg in [FrontEndConfig::birdset(), FrontEndConfig::audioprotopnet()] {
        let hop = 32_000 / cfg.hop_length * cfg.hop_length;
        let spec = WindowSpec {
            length_samples: 96_000,
            hop_samples: hop,
        };
        check(&cfg, spec, &signal(7, 250_000), &[1_000, 4_096, 333]);
    }
}

#[test]
fn window_that_does_not_fit_the_frame_grid_is_refused() {
    let cfg = FrontEndConfig::audioprotopnet();
    let err = StreamingFrontEnd::new(
        cfg,
        WindowSpec {
            length_samples: 160_000,
            hop_samples: 80_000,
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("multiple of the frame hop"),
        "{err}"
    );
    let cfg = FrontEndConfig::birdset();
    let err = StreamingFrontEnd::new(
        cfg,
        WindowSpec {
            length_samples: 100,
            hop_samples: 320,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("must exceed"), "{err}");
}

#[test]
fn short_clips_are_refused_with_their_length() {
    let mut fe = ClipFrontEnd::new(FrontEndConfig::birdset()).unwrap();
    let err = fe.compute_vec(&[0.0; 512]).unwrap_err();
    assert!(
        err.to_string().contains("512 samples is too short"),
        "{err}"
    );
    let mut out = vec![0.0; 3];
    let err = fe.compute(&[0.0; 32_000], &mut out).unwrap_err();
    assert!(
        err.to_string().contains("expected n_mels × frames"),
        "{err}"
    );
}

#[test]
fn silence_is_finite() {
    // All-zero input hits the amin floor everywhere: features must stay finite.
    let mut fe = ClipFrontEnd::new(FrontEndConfig::birdset()).unwrap();
    let out = fe.compute_vec(&[0.0; 32_000]).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}

/// Damaged samples (NaN, infinities, 1e37: a broken driver, a damaged float file) give
/// finite features, the same in stream and clip mode: NaN is read as silence and
/// magnitudes are clamped 120 dB above full scale (found by the `frontend_stream` fuzz
/// target: 1e37 overflowed the frame power to infinity and the window to NaN).
#[test]
fn damaged_samples_give_finite_features_in_both_modes() {
    let cfg = small_config();
    let spec = WindowSpec {
        length_samples: 8 * cfg.hop_length,
        hop_samples: 2 * cfg.hop_length,
    };
    let mut pcm = signal(3, 4_000);
    for (i, bad) in [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e37,
        -3e38,
        1.4e6,
    ]
    .into_iter()
    .enumerate()
    {
        pcm[300 + i * 500] = bad;
    }
    let windows = stream(&cfg, spec, &pcm, &[37, 1_000]);
    assert!(windows.len() > 10);
    for (info, features) in &windows {
        assert!(
            features.iter().all(|x| x.is_finite()),
            "window at {}",
            info.start_sample
        );
    }
    check(&cfg, spec, &pcm, &[37, 1_000]);
}
