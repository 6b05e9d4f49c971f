//! Decoding real files of every supported format, and a corpus of bad files that must each
//! give their own error naming the file (never a panic).
//!
//! Fixtures (`fixtures/audio/`) were made with sox, flac, oggenc and lame: a 1-s stereo
//! file at 44.1 kHz with a 1 kHz tone on the left and 2.5 kHz on the right (−6 dB), and a
//! 0.5-s 24-bit mono sweep at 48 kHz.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};

use warble_core::audio::{AudioErrorKind, AudioReader, AudioStream, decode_file};
use warble_core::{AudioError, SampleRate};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

/// Amplitude of the component at `hz` (Goertzel-style projection).
fn tone_amplitude(x: &[f32], hz: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let (mut s, mut c) = (0.0, 0.0);
    for (n, &v) in x.iter().enumerate() {
        s += f64::from(v) * (w * n as f64).sin();
        c += f64::from(v) * (w * n as f64).cos();
    }
    2.0 * (s * s + c * c).sqrt() / x.len() as f64
}

#[test]
fn every_format_decodes_to_the_same_mono_mix_at_32k() {
    // −6 dB ≈ 0.501 per channel; the mono average holds each tone at half that.
    let expected = 0.501 / 2.0;
    for (name, length_slack) in [
        ("tones-stereo-44k1.wav", 0),
        ("tones-stereo-44k1.flac", 0),
        ("tones-stereo-44k1.ogg", 0),
        ("tones-stereo-44k1.mp3", 2_000),
    ] {
        let audio = decode_file(fixture(name), SampleRate::HZ_32000).unwrap();
        assert_eq!(audio.source_rate.hz(), 44_100, "{name}");
        assert_eq!(audio.source_channels, 2, "{name}");
        let n = audio.samples.len();
        assert!(n.abs_diff(32_000) <= length_slack, "{name}: {n} samples");
        let body = &audio.samples[2_000..n.min(30_000)];
        let a1 = tone_amplitude(body, 1000.0, 32_000.0);
        let a2 = tone_amplitude(body, 2500.0, 32_000.0);
        let off = tone_amplitude(body, 5000.0, 32_000.0);
        assert!((a1 - expected).abs() < 0.02, "{name}: 1 kHz amplitude {a1}");
        assert!(
            (a2 - expected).abs() < 0.02,
            "{name}: 2.5 kHz amplitude {a2}"
        );
        assert!(off < 0.005, "{name}: 5 kHz leakage {off}");
    }
}

#[test]
fn lossless_formats_decode_identically() {
    let wav = decode_file(fixture("tones-stereo-44k1.wav"), SampleRate::HZ_32000).unwrap();
    let flac = decode_file(fixture("tones-stereo-44k1.flac"), SampleRate::HZ_32000).unwrap();
    assert_eq!(wav.samples, flac.samples);
}

#[test]
fn high_bit_depth_mono_resamples_from_48k() {
    let audio = decode_file(fixture("sweep-mono-48k-24bit.wav"), SampleRate::HZ_32000).unwrap();
    assert_eq!((audio.source_rate.hz(), audio.source_channels), (48_000, 1));
    assert_eq!(audio.samples.len(), 16_000);
    let peak = audio.samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!((0.6..0.75).contains(&peak), "peak {peak} for a −3 dB sweep");
}

#[test]
fn long_files_are_read_in_bounded_chunks() {
    let mut stream =
        AudioStream::open(fixture("tones-stereo-44k1.flac"), SampleRate::HZ_32000).unwrap();
    let (mut total, mut largest, mut chunks) = (0, 0, 0);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = stream.read_chunk(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        largest = largest.max(n);
        chunks += 1;
    }
    assert_eq!(total, 32_000);
    assert!(
        chunks > 5 && largest <= 8_192,
        "{chunks} chunks, largest {largest}"
    );
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

fn decode_err(path: &Path) -> AudioError {
    let err = match decode_file(path, SampleRate::HZ_32000) {
        Ok(audio) => panic!(
            "{} decoded to {} samples instead of failing",
            path.display(),
            audio.samples.len()
        ),
        Err(err) => err,
    };
    let message = err.to_string();
    println!("{message}");
    assert!(
        message.contains(&path.display().to_string()),
        "message must name the file: {message}"
    );
    err
}

/// A canonical 16-bit mono PCM WAV header declaring `data_bytes` of samples.
fn wav_header(data_bytes: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // mono
    h.extend_from_slice(&32_000u32.to_le_bytes());
    h.extend_from_slice(&64_000u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_bytes.to_le_bytes());
    h
}

#[test]
fn bad_files_each_give_their_specific_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let missing = d.join("missing.wav");
    assert!(matches!(decode_err(&missing).kind, AudioErrorKind::Io(_)));

    let empty = write(d, "empty.flac", b"");
    assert!(matches!(decode_err(&empty).kind, AudioErrorKind::Empty));

    let noise = write(
        d,
        "noise.wav",
        &(0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    assert!(
        matches!(decode_err(&noise).kind, AudioErrorKind::Unsupported(_)),
        "{}",
        decode_err(&noise)
    );

    let text = write(
        d,
        "notes.mp3",
        b"field notes: robin at 04:50, wren at 05:10\n"
            .repeat(50)
            .as_slice(),
    );
    assert!(
        matches!(decode_err(&text).kind, AudioErrorKind::Unsupported(_)),
        "{}",
        decode_err(&text)
    );

    let header_only = write(d, "header-only.wav", &wav_header(0));
    assert!(
        matches!(decode_err(&header_only).kind, AudioErrorKind::Empty),
        "{}",
        decode_err(&header_only)
    );

    // Header promises 1 s of samples, the file holds 0.5 s.
    let mut cut = wav_header(64_000);
    cut.extend((0..16_000).flat_map(|i: i32| ((i % 200 - 100) as i16 * 100).to_le_bytes()));
    let truncated_wav = write(d, "truncated.wav", &cut);
    let err = decode_err(&truncated_wav);
    assert!(matches!(err.kind, AudioErrorKind::Truncated(_)), "{err}");

    let flac = std::fs::read(fixture("tones-stereo-44k1.flac")).unwrap();
    let truncated_flac = write(d, "truncated.flac", &flac[..flac.len() / 2]);
    let err = decode_err(&truncated_flac);
    assert!(matches!(err.kind, AudioErrorKind::Truncated(_)), "{err}");

    let mut garbled = flac.clone();
    for b in &mut garbled[flac.len() / 3..flac.len() / 3 + 64] {
        *b ^= 0x5a;
    }
    let corrupt_flac = write(d, "corrupt.flac", &garbled);
    let err = decode_err(&corrupt_flac);
    assert!(
        matches!(err.kind, AudioErrorKind::Incomplete { declared: 44_100, decoded, .. } if decoded < 44_100),
        "{err}"
    );

    // A damaged header is malformed data, not a missing stretch.
    let mut bad_header = flac.clone();
    bad_header[8..24].fill(0xff);
    let err = decode_err(&write(d, "bad-header.flac", &bad_header));
    assert!(matches!(err.kind, AudioErrorKind::Corrupt { .. }), "{err}");

    let ogg = std::fs::read(fixture("tones-stereo-44k1.ogg")).unwrap();
    let truncated_ogg = write(d, "truncated.ogg", &ogg[..ogg.len() / 2]);
    let err = decode_err(&truncated_ogg);
    assert!(matches!(err.kind, AudioErrorKind::Truncated(_)), "{err}");
}

#[test]
fn reader_reports_the_source_format() {
    let reader = AudioReader::open(fixture("sweep-mono-48k-24bit.wav")).unwrap();
    assert_eq!(reader.sample_rate().hz(), 48_000);
    assert_eq!(reader.channels(), 1);
    assert_eq!(reader.total_frames(), Some(24_000));
}

/// A header may claim any rate: 1 Hz would make a 40-kB file hours of "audio" and a
/// resampler buffer of 131 MB; 10 MHz the same the other way. Both are refused at once.
#[test]
fn absurd_sample_rates_and_channel_counts_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let with = |rate: u32, channels: u16| {
        let data = vec![0u8; 40_000];
        let mut h = wav_header(data.len() as u32);
        h[22..24].copy_from_slice(&channels.to_le_bytes());
        h[24..28].copy_from_slice(&rate.to_le_bytes());
        h[28..32].copy_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        h[32..34].copy_from_slice(&(2 * channels).to_le_bytes());
        h.extend_from_slice(&data);
        write(dir.path(), &format!("r{rate}-c{channels}.wav"), &h)
    };
    for rate in [1, 999, 10_000_000] {
        let err = decode_err(&with(rate, 1));
        assert!(
            matches!(err.kind, AudioErrorKind::UnsupportedRate(r) if r == rate),
            "{err}"
        );
        assert!(err.to_string().contains("1000–768000 Hz"), "{err}");
    }
    // (symphonia's WAV reader refuses this one itself; other containers reach Warble's
    // own check.)
    let err = decode_err(&with(32_000, 65));
    assert!(err.to_string().contains("channel"), "{err}");
    // The limits themselves are fine.
    for rate in [1_000, 768_000] {
        decode_file(with(rate, 1), SampleRate::HZ_32000).unwrap();
    }
}

/// A float WAV can hold any bits: a NaN or an infinity is damage, named with its place,
/// not a sample that would turn every window it reaches into NaN scores (found by the
/// `audio_decode` fuzz target).
#[test]
fn float_files_with_non_finite_samples_are_refused_at_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let path = dir.path().join("damaged.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 32_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..64_000 {
            w.write_sample(if i == 40_000 { bad } else { 0.1 }).unwrap();
        }
        w.finalize().unwrap();
        let err = decode_err(&path);
        assert!(matches!(err.kind, AudioErrorKind::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("damaged.wav") && text.contains("not a number"),
            "{text}"
        );
        assert!(text.contains("1.25 s") || text.contains("40000"), "{text}");
    }
}
