//! Training-batch throughput on the tiny synthetic benchmark (birdset front end, 2-s
//! windows, default augmentations), with and without the decoded-audio cache.
//! Run: `cargo bench -p warble-trainer --bench batches`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warble_core::FrontEndConfig;
use warble_core::labels::LabelTable;
use warble_trainer::data::augment::AugmentConfig;
use warble_trainer::data::batcher::TrainLoader;
use warble_trainer::data::loader::Crop;
use warble_trainer::data::manifest::Manifest;
use warble_trainer::synth::{Benchmark, SynthPreset};

fn batches(c: &mut Criterion) {
    let data = tempfile::tempdir().unwrap();
    Benchmark::new(SynthPreset::Tiny, 1)
        .write(data.path(), &|| {})
        .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let labels = LabelTable::read(data.path().join("labels.csv")).unwrap();
    let make = |cache: Option<&std::path::Path>| {
        let (manifest, _) = Manifest::read(&data.path().join("train.csv"), &labels, false).unwrap();
        TrainLoader::new(
            manifest,
            &labels,
            FrontEndConfig::birdset(),
            2.0,
            Crop::EventRandom,
            AugmentConfig::default(),
            1,
            cache,
        )
        .unwrap()
    };
    let mut group = c.benchmark_group("batch64_2s_birdset");
    group.throughput(Throughput::Elements(64));
    for (name, loader) in [
        ("decode", make(None)),
        ("cached", make(Some(cache_dir.path()))),
    ] {
        let mut epoch = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                epoch += 1;
                loader.batch(epoch, 0, 64).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = batches
}
criterion_main!(benches);
