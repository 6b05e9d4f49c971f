//! The synthetic benchmark end to end: deterministic output, loadable manifests, and a
//! shift that a baseline can measure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;

use warble_core::FrontEndConfig;
use warble_trainer::shift;
use warble_trainer::synth::{Benchmark, Split, SynthPreset};

fn write(seed: u64, dir: &Path) {
    Benchmark::new(SynthPreset::Tiny, seed)
        .write(dir, &|| {})
        .unwrap();
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn the_same_seed_gives_byte_identical_output() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    write(1, a.path());
    write(1, b.path());
    write(2, c.path());
    for split in Split::all() {
        let manifest = format!("{}.csv", split.name());
        assert_eq!(
            read(a.path(), &manifest),
            read(b.path(), &manifest),
            "{manifest}"
        );
        let first_clip = format!("audio/{0}/{0}-00000.wav", split.name());
        assert_eq!(
            read(a.path(), &first_clip),
            read(b.path(), &first_clip),
            "{first_clip}"
        );
    }
    assert_eq!(read(a.path(), "labels.csv"), read(b.path(), "labels.csv"));
    assert_eq!(read(a.path(), "synth.json"), read(b.path(), "synth.json"));
    assert_ne!(
        read(a.path(), "valid.csv"),
        read(c.path(), "valid.csv"),
        "another seed differs"
    );
}

#[test]
fn streaming_a_clip_equals_the_written_file() {
    let dir = tempfile::tempdir().unwrap();
    write(3, dir.path());
    let bench = Benchmark::new(SynthPreset::Tiny, 3);
    let clip = bench.clip(Split::FocalTest, 5);
    let wav = warble_core::audio::decode_file(
        dir.path().join("audio/test-focal/test-focal-00005.wav"),
        warble_core::SampleRate::HZ_32000,
    )
    .unwrap();
    assert_eq!(wav.samples.len(), clip.samples.len());
    let max_err = wav
        .samples
        .iter()
        .zip(&clip.samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    // 16-bit quantisation (written ×32767, read ÷32768): under two steps.
    assert!(max_err <= 2.0 / 32_768.0, "quantisation only: {max_err}");
}

#[test]
fn the_baseline_sees_a_clear_shift_from_focal_to_soundscapes() {
    let dir = tempfile::tempdir().unwrap();
    write(1, dir.path());
    let report = shift::study(dir.path(), &FrontEndConfig::birdset(), 2.0, 1, &|| {}).unwrap();
    for s in &report.sets {
        println!(
            "{:<26} n={:>3} cmAP {:.3} AUROC {:.3} top-1 {:.3}",
            s.set, s.examples, s.metrics.cmap, s.metrics.auroc, s.metrics.top1
        );
    }
    let focal = report.focal().unwrap().metrics.cmap;
    let soundscape = report.soundscape_mean_cmap();
    // Chance cmAP on the soundscapes is about the per-class prevalence (~0.15).
    assert!(
        focal > 0.85,
        "the baseline learns the focal task: cmAP {focal}"
    );
    assert!(
        soundscape > 0.2,
        "soundscapes are not hopeless: cmAP {soundscape}"
    );
    assert!(
        focal - soundscape > 0.15,
        "a clear shift: focal {focal} vs soundscape {soundscape}"
    );
}
