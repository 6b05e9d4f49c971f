//! A microphone stand-in for benchmarks: decodes an audio file and writes it, looped, to a
//! FIFO as 32-bit float little-endian mono samples at real-time pace, so a file-backed ALSA
//! device (`type file`, `infile` = the FIFO) delivers audio to `warble-agent run` exactly
//! as fast as a sound card would.
//!
//! Usage: `paced_fifo AUDIO FIFO SAMPLE_RATE SECONDS [--once] [--speed K]`. Ends after
//! SECONDS of audio, or when the reader closes the FIFO. `--once` plays the file once, then
//! silence; `--speed K` writes K seconds of audio per second (the demo's `--fast`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use warble_core::SampleRate;
use warble_core::audio::AudioStream;

/// Samples are written in 25-ms chunks: one capture period of `warble-agent` (ALSA's file
/// plugin counts a short read from the FIFO as a whole period, so chunks must not be
/// smaller).
const CHUNK_MS: u64 = 25;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: paced_fifo AUDIO FIFO SAMPLE_RATE SECONDS [--once] [--speed K]";
    let [audio, fifo, rate, seconds, options @ ..] = args.as_slice() else {
        anyhow::bail!(usage);
    };
    let (mut once, mut speed) = (false, 1.0f64);
    let mut options = options.iter();
    while let Some(option) = options.next() {
        match option.as_str() {
            "--once" => once = true,
            "--speed" => {
                speed = options.next().context(usage)?.parse().context("--speed")?;
                anyhow::ensure!(speed > 0.0 && speed.is_finite(), "--speed must be positive");
            }
            other => anyhow::bail!("{other}: {usage}"),
        }
    }
    let hz: u32 = rate.parse().context("SAMPLE_RATE")?;
    let seconds: f64 = seconds.parse().context("SECONDS")?;
    let rate = SampleRate::new(hz).context("SAMPLE_RATE")?;
    let mut stream = AudioStream::open(audio, rate).with_context(|| format!("opening {audio}"))?;
    let mut pcm = Vec::new();
    while stream.read_chunk(&mut pcm).context("decoding")? > 0 {}
    anyhow::ensure!(!pcm.is_empty(), "{audio} holds no audio");
    let mut bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let total = (seconds * f64::from(hz)) as usize * 4;
    if once {
        bytes.resize(bytes.len().max(total), 0);
    }

    // Opening blocks until the reader (ALSA's file plugin) opens its end.
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .with_context(|| format!("opening {fifo}"))?;
    let chunk = (u64::from(hz) * CHUNK_MS / 1000) as usize * 4;
    let started = Instant::now();
    let (mut written, mut at) = (0usize, 0usize);
    while written < total {
        let n = chunk.min(total - written).min(bytes.len() - at);
        if out.write_all(&bytes[at..at + n]).is_err() {
            break; // the reader is gone
        }
        written += n;
        at = (at + n) % bytes.len();
        let due = Duration::from_secs_f64(written as f64 / 4.0 / f64::from(hz) / speed);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    eprintln!(
        "paced_fifo: {:.1} s of audio in {:.1} s",
        written as f64 / 4.0 / f64::from(hz),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
