//! Front-end throughput, clip and streaming mode, both presets.
//!
//! Throughput is reported in samples/s; divide by 32,000 for the real-time factor
//! (`docs/BENCHMARKS.md` records both). Run: `cargo bench -p warble-core --bench frontend`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warble_core::frontend::WindowSpec;
use warble_core::{ClipFrontEnd, FrontEndConfig, StreamingFrontEnd};

/// Deterministic test audio: a few tones and a little pseudo-random noise.
fn audio(seconds: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..seconds * 32_000)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let t = i as f32 / 32_000.0;
            0.3 * (2.0 * std::f32::consts::PI * 3000.0 * t).sin() + 0.05 * noise
        })
        .collect()
}

fn presets() -> [(&'static str, FrontEndConfig); 2] {
    [
        ("birdset", FrontEndConfig::birdset()),
        ("audioprotopnet", FrontEndConfig::audioprotopnet()),
    ]
}

fn clip(c: &mut Criterion) {
    let pcm = audio(5);
    let mut group = c.benchmark_group("frontend/clip_5s");
    group.throughput(Throughput::Elements(pcm.len() as u64));
    for (name, cfg) in presets() {
        let mut fe = ClipFrontEnd::new(cfg).unwrap();
        let mut out = vec![0.0; fe.output_len(pcm.len())];
        group.bench_function(name, |b| {
            b.iter(|| fe.compute(black_box(&pcm), &mut out).unwrap())
        });
    }
    group.finish();
}

fn streaming(c: &mut Criterion) {
    let pcm = audio(60);
    for (label, hop_seconds) in [("hop_5s", 5usize), ("hop_2.5s", 0)] {
        let mut group = c.benchmark_group(format!("frontend/stream_60s_{label}"));
        group.throughput(Throughput::Elements(pcm.len() as u64));
        for (name, cfg) in presets() {
            // 2.5 s rounded down onto the frame grid (the hop must be a multiple of it).
            let hop = if hop_seconds > 0 {
                hop_seconds * 32_000
            } else {
                80_000 / cfg.hop_length * cfg.hop_length
            };
            let spec = WindowSpec {
                length_samples: 160_000,
                hop_samples: hop,
            };
            let mut fe = StreamingFrontEnd::new(cfg, spec).unwrap();
            group.bench_function(name, |b| {
                b.iter(|| {
                    let mut sum = 0.0f32;
                    for chunk in pcm.chunks(1024) {
                        fe.push(black_box(chunk), |_, features| sum += features[0]);
                    }
                    fe.reset();
                    sum
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = clip, streaming
}
criterion_main!(benches);
