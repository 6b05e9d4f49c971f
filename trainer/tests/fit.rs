//! Training on the tiny synthetic benchmark: the model learns (clearly above chance on
//! held-out focal calls and on soundscapes), the run directory has what export needs, and
//! a run resumes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;

use burn::prelude::Device;

use warble_core::{FrontEndConfig, Preset};
use warble_trainer::attack::{AttackConfig, Norm};
use warble_trainer::data::augment::AugmentConfig;
use warble_trainer::eval::evaluate_run;
use warble_trainer::loss::{AslConfig, LossKind};
use warble_trainer::model::convnext::{ConvNextConfig, ConvNextSize};
use warble_trainer::synth::{Benchmark, SynthPreset};
use warble_trainer::train::{AdversarialConfig, AdversarialMode, TrainConfig, TrainEvent, fit};

fn config(data: &Path, epochs: usize) -> TrainConfig {
    // A light front end (64 mel bands) and the smallest ConvNeXt keep this test fast.
    let frontend = FrontEndConfig {
        n_mels: 64,
        preset: Preset::Custom,
        ..FrontEndConfig::birdset()
    };
    TrainConfig {
        data: data.to_owned(),
        frontend,
        window_s: 2.0,
        model: ConvNextConfig::preset(ConvNextSize::Test, 10),
        loss: LossKind::Asl(AslConfig::default()),
        epochs,
        batch_size: 16,
        lr: 3e-3,
        weight_decay: 1e-4,
        adam_eps: 1e-8,
        warmup: 0.05,
        grad_clip: Some(0.5),
        augment: AugmentConfig::default(),
        seed: 3,
        cache_audio: true,
        skip_bad: false,
        adversarial: Default::default(),
    }
}

#[test]
fn convnext_learns_the_tiny_benchmark_and_resumes() {
    let data = tempfile::tempdir().unwrap();
    Benchmark::new(SynthPreset::Tiny, 1)
        .write(data.path(), &|| {})
        .unwrap();
    let run = tempfile::tempdir().unwrap();
    let mut steps = 0;
    let records = fit(
        &config(data.path(), 8),
        run.path(),
        false,
        &Device::flex(),
        &mut |e| {
            if let TrainEvent::Step { .. } = e {
                steps += 1;
            }
        },
    )
    .unwrap();
    assert_eq!(records.len(), 8);
    assert_eq!(steps, 8 * 239usize.div_ceil(16));
    for r in &records {
        println!(
            "epoch {} train {:.4} valid {:.4} cmAP {:.3}",
            r.epoch, r.train_loss, r.valid_loss, r.valid.cmap
        );
    }
    assert!(
        records.last().unwrap().train_loss < records[0].train_loss,
        "training loss falls"
    );
    for file in [
        "config.json",
        "frontend.json",
        "model.json",
        "labels.csv",
        "best.bpk",
        "last.bpk",
        "metrics.jsonl",
        "curves.svg",
        "valid-metrics.svg",
    ] {
        assert!(
            run.path().join(file).is_file(),
            "{file} in the run directory"
        );
    }

    let report = evaluate_run(run.path(), data.path(), &|| {}).unwrap();
    for s in &report.sets {
        println!(
            "{:<26} cmAP {:.3} AUROC {:.3} top-1 {:.3}",
            s.set, s.metrics.cmap, s.metrics.auroc, s.metrics.top1
        );
    }
    assert!(run.path().join("pr-test-focal.svg").is_file());
    assert!(run.path().join("pr-test-soundscape-noisy.svg").is_file());
    let focal = report
        .sets
        .iter()
        .find(|s| s.set == "test-focal")
        .unwrap()
        .metrics;
    // Chance: cmAP ≈ class prevalence (0.1 on focal, ~0.15 on soundscapes), AUROC 0.5.
    assert!(focal.cmap > 0.5 && focal.auroc > 0.8, "focal {focal:?}");
    assert!(
        report.soundscape_mean_cmap > 0.25,
        "soundscapes {}",
        report.soundscape_mean_cmap
    );

    // Resume for two more epochs: the log continues where it stopped.
    let more = fit(
        &config(data.path(), 10),
        run.path(),
        true,
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(more.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![8, 9]);
    let lines = std::fs::read_to_string(run.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 10);
}

#[test]
fn bad_manifest_rows_stop_training_or_are_skipped_and_reported() {
    let data = tempfile::tempdir().unwrap();
    Benchmark::new(SynthPreset::Tiny, 2)
        .write(data.path(), &|| {})
        .unwrap();
    let train = data.path().join("train.csv");
    let mut text = std::fs::read_to_string(&train).unwrap();
    text.push_str("audio/train/missing.wav,0,1,syn00\naudio/train/train-00000.wav,2,1,syn00\n");
    std::fs::write(&train, text).unwrap();
    let rows = std::fs::read_to_string(&train).unwrap().lines().count() as u64;

    let run = tempfile::tempdir().unwrap();
    let err = fit(
        &config(data.path(), 1),
        run.path(),
        false,
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(&format!("train.csv:{}: missing file", rows - 1)),
        "{message}"
    );

    let mut cfg = config(data.path(), 1);
    cfg.skip_bad = true;
    let mut skipped = Vec::new();
    fit(&cfg, run.path(), false, &Device::flex(), &mut |e| {
        if let TrainEvent::Skipped(p) = e {
            skipped.extend(p.into_iter().map(|p| (p.line, p.problem.to_string())));
        }
    })
    .unwrap();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0].0, rows - 1);
    assert!(skipped[1].1.contains("bad time span"), "{skipped:?}");
}

#[test]
fn adversarial_training_sees_harder_examples_after_its_warm_up() {
    let data = tempfile::tempdir().unwrap();
    Benchmark::new(SynthPreset::Tiny, 1)
        .write(data.path(), &|| {})
        .unwrap();
    let run = tempfile::tempdir().unwrap();
    for mode in [AdversarialMode::Output, AdversarialMode::Embedding] {
        let mut cfg = config(data.path(), 2);
        cfg.adversarial = AdversarialConfig {
            mode,
            attack: AttackConfig::pgd(Norm::Linf, 0.2, 2),
            ratio: 0.5,
            start_epoch: 1,
            ..AdversarialConfig::default()
        };
        let records = fit(&cfg, run.path(), false, &Device::flex(), &mut |_| {}).unwrap();
        assert_eq!(records[0].train_adversarial_loss, None, "epoch 0 warms up");
        let (clean, adv) = (
            records[1].train_clean_loss.unwrap(),
            records[1].train_adversarial_loss.unwrap(),
        );
        println!("{mode:?}: clean {clean:.4} adversarial {adv:.4}");
        assert!(adv > clean, "{mode:?}: adversarial {adv} vs clean {clean}");
        let mixed = records[1].train_loss;
        assert!(
            (mixed - 0.5 * (clean + adv)).abs() < 1e-3 * mixed.max(1.0),
            "{mixed} is the 50/50 mix of {clean} and {adv}"
        );
        // The recipe, attack included, is kept with the run.
        let saved: TrainConfig =
            serde_json::from_str(&std::fs::read_to_string(run.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(saved.adversarial, cfg.adversarial);
    }
    // A ratio outside [0, 1] is refused before any work.
    let mut cfg = config(data.path(), 1);
    cfg.adversarial.ratio = 1.5;
    let err = fit(&cfg, run.path(), false, &Device::flex(), &mut |_| {}).unwrap_err();
    assert!(format!("{err}").contains("ratio"), "{err}");
}
