//! The streaming interface that live capture feeds gives exactly the detections of batch
//! analysis, whatever the chunk sizes (a sound card delivers a few hundred samples at a
//! time).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use warble_agent::analyze::{AnalyzeConfig, Analyzer};
use warble_agent::detect::SpeciesEvent;

fn analyzer() -> Analyzer {
    // Overlapping windows (hop 1.5 s) exercise frame sharing in the front end too.
    common::demo_analyzer(AnalyzeConfig {
        hop_samples: Some(48_000),
        batch: 5,
        ..AnalyzeConfig::default()
    })
}

#[test]
fn any_chunking_gives_the_batch_detections() {
    let mut a = analyzer();
    let demo = common::repo_file("demo/soundscape.flac");
    let reference = a.analyze_file(&demo, |_| {}).unwrap().events;
    assert!(reference.len() >= 10, "{reference:?}");
    let pcm = warble_core::audio::decode_file(&demo, a.sample_rate())
        .unwrap()
        .samples;
    for chunk in [1usize, 441, 1024, 48_000, 700_001] {
        let mut got: Vec<SpeciesEvent> = Vec::new();
        let mut sink = |e: &SpeciesEvent| got.push(e.clone());
        let mut stream = a.stream();
        for part in pcm.chunks(chunk) {
            stream.push(part, &mut sink).unwrap();
        }
        let summary = stream.finish(&mut sink).unwrap();
        assert_eq!(summary.audio_seconds, 60.0);
        assert_eq!(got, reference, "chunks of {chunk}");
    }
}
