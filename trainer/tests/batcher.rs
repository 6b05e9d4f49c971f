//! Training batches on the tiny synthetic benchmark: shapes, determinism across thread
//! counts and caching, shuffling per epoch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;

use warble_core::FrontEndConfig;
use warble_core::labels::LabelTable;
use warble_trainer::data::augment::AugmentConfig;
use warble_trainer::data::batcher::TrainLoader;
use warble_trainer::data::loader::Crop;
use warble_trainer::data::manifest::Manifest;
use warble_trainer::synth::{Benchmark, SynthPreset};

fn loader(dir: &Path, cache: Option<&Path>) -> TrainLoader {
    let labels = LabelTable::read(dir.join("labels.csv")).unwrap();
    let (manifest, _) = Manifest::read(&dir.join("train.csv"), &labels, false).unwrap();
    TrainLoader::new(
        manifest,
        &labels,
        FrontEndConfig::birdset(),
        2.0,
        Crop::EventRandom,
        AugmentConfig::default(),
        11,
        cache,
    )
    .unwrap()
}

#[test]
fn batches_are_deterministic_shuffled_and_shaped() {
    let data = tempfile::tempdir().unwrap();
    Benchmark::new(SynthPreset::Tiny, 1)
        .write(data.path(), &|| {})
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let plain = loader(data.path(), None);
    let cached = loader(data.path(), Some(cache.path()));

    let a = plain.batch(0, 1, 8).unwrap();
    assert_eq!(a.n, 8);
    assert_eq!(a.shape, (128, 201));
    assert_eq!(a.x.len(), 8 * 128 * 201);
    assert_eq!((a.classes, a.y.len()), (10, 80));
    assert!(a.x.iter().all(|v| v.is_finite()));

    // Same batch from a cached loader and from a single-threaded pool.
    assert_eq!(cached.batch(0, 1, 8).unwrap(), a);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(one_thread.install(|| plain.batch(0, 1, 8)).unwrap(), a);

    // Epochs reshuffle; the order is a permutation.
    let (e0, e1) = (plain.epoch_order(0), plain.epoch_order(1));
    assert_ne!(e0, e1);
    let mut sorted = e1.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..plain.len()).collect::<Vec<_>>());
    assert_ne!(plain.batch(1, 1, 8).unwrap(), a);

    // Mixing unites labels: across a few batches some examples carry two or more species,
    // and no-call examples carry none.
    let counts: Vec<usize> = (0..4)
        .flat_map(|b| {
            let batch = plain.batch(2, b, 16).unwrap();
            batch
                .y
                .chunks(10)
                .map(|y| y.iter().filter(|&&v| v > 0.5).count())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(counts.iter().any(|&c| c >= 2), "{counts:?}");
    let last = plain.batches_per_epoch(16) - 1;
    assert!(plain.batch(0, last, 16).unwrap().n <= 16);
}
