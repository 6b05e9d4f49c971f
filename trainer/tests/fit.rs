//! Training on the tiny synthetic benchmark: the model learns (clearly above chance on
//! held-out focal calls and on soundscapes), the run directory has what export needs, and
//! a run resumes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;

use burn::prelude::Device;

use warble_core::{FrontEndConfig, Preset};
use warble_trainer::attack::{AttackConfig, Norm};
use warble_trainer::compare::SegmentScores;
use warble_trainer::data::augment::AugmentConfig;
use warble_trainer::eval::robustness_run;
use warble_trainer::eval::{Weights, evaluate_run};
use warble_trainer::experiment::{self, ExperimentEvent, ExperimentPreset, Plan};
use warble_trainer::loss::{AslConfig, LossKind};
use warble_trainer::model::Classifier;
use warble_trainer::model::convnext::{ConvNextConfig, ConvNextSize};
use warble_trainer::robust::{AttackKind, RobustnessConfig, write_report};
use warble_trainer::synth::{Benchmark, SynthPreset};
use warble_trainer::train::{
    AdversarialConfig, AdversarialMode, ProtoTraining, TrainConfig, TrainEvent, fit, load_model,
};

/// burn's random generator is one per device and process: tests that train run one at a
/// time so that each sees exactly its own seeded draws (and stays reproducible).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tiny synthetic benchmark of `seed`, written to a temporary folder.
fn tiny_benchmark(seed: u64) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    Benchmark::new(SynthPreset::Tiny, seed)
        .write(data.path(), &|| {})
        .unwrap();
    data
}

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
        protopnet: None,
    }
}

#[test]
fn convnext_learns_the_tiny_benchmark_and_resumes() {
    let _serial = serial();
    let data = tiny_benchmark(1);
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

    let report = evaluate_run(run.path(), data.path(), Weights::Best, &|| {}).unwrap();
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
    // The per-segment scores give back the reported metric (what `compare` resamples).
    let segments = SegmentScores::read(&run.path().join("scores/test-focal.csv")).unwrap();
    assert_eq!(segments.len(), focal.samples_with_positive);
    let again = warble_trainer::metrics::evaluate(
        &segments.scores,
        &segments.targets,
        segments.codes.len(),
    );
    assert_eq!(again.cmap, focal.cmap);
    // The last epoch's weights are evaluated into their own files.
    evaluate_run(run.path(), data.path(), Weights::Last, &|| {}).unwrap();
    assert!(run.path().join("scores-last/test-focal.csv").is_file());
    assert!(run.path().join("pr-last-test-focal.svg").is_file());
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
    let _serial = serial();
    let data = tiny_benchmark(2);
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
    let _serial = serial();
    let data = tiny_benchmark(1);
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

/// Flattened values of every parameter of a module (to see what training changed).
fn weights(m: &impl burn::module::Module) -> Vec<f32> {
    use burn::module::{ModuleVisitor, Param};
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<burn::prelude::Tensor<D>>) {
            self.0.extend(
                p.val()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap(),
            );
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

#[test]
fn audioprotopnet_trains_its_prototypes_on_a_frozen_backbone() {
    let _serial = serial();
    let data = tiny_benchmark(1);
    let backbone_run = tempfile::tempdir().unwrap();
    fit(
        &config(data.path(), 8),
        backbone_run.path(),
        false,
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();

    let run = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path(), 6);
    cfg.protopnet = Some(ProtoTraining {
        backbone_run: Some(backbone_run.path().to_owned()),
        ..ProtoTraining::default()
    });
    let records = fit(&cfg, run.path(), false, &Device::flex(), &mut |_| {}).unwrap();
    for r in &records {
        println!(
            "epoch {} train {:.4} valid {:.4} cmAP {:.3}",
            r.epoch, r.train_loss, r.valid_loss, r.valid.cmap
        );
    }
    assert!(
        records[2].train_loss < records[0].train_loss,
        "training loss falls"
    );

    let device = Device::flex();
    let (_, backbone) = load_model(backbone_run.path(), false, &device).unwrap();
    let (_, trained) = load_model(run.path(), false, &device).unwrap();
    let (Classifier::ConvNext(backbone), Classifier::ProtoPNet(proto)) = (backbone, trained) else {
        panic!("expected a ConvNeXt backbone and an AudioProtoPNet");
    };
    assert_eq!(
        weights(proto.backbone()),
        weights(&backbone),
        "the backbone stays frozen"
    );
    let fresh = cfg.protopnet_config().unwrap().init(&device);
    assert_ne!(
        proto
            .unit_prototypes()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        fresh
            .unit_prototypes()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        "prototypes learned"
    );
    let report = evaluate_run(run.path(), data.path(), Weights::Best, &|| {}).unwrap();
    let focal = report
        .sets
        .iter()
        .find(|s| s.set == "test-focal")
        .unwrap()
        .metrics;
    println!("AudioProtoPNet focal {focal:?}");
    assert!(focal.auroc > 0.7 && focal.cmap > 0.3, "focal {focal:?}");

    // A backbone trained on other labels is refused with the reason.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(
        backbone_run.path().join("config.json"),
        other.path().join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        backbone_run.path().join("best.bpk"),
        other.path().join("best.bpk"),
    )
    .unwrap();
    let labels = std::fs::read_to_string(backbone_run.path().join("labels.csv")).unwrap();
    std::fs::write(
        other.path().join("labels.csv"),
        labels.replacen("syn00", "syn99", 1),
    )
    .unwrap();
    cfg.protopnet.as_mut().unwrap().backbone_run = Some(other.path().to_owned());
    let err = fit(&cfg, run.path(), false, &Device::flex(), &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("labels, front end"), "{err:#}");
}

#[test]
fn attacks_lower_a_trained_models_metrics_as_epsilon_grows() {
    let _serial = serial();
    let data = tiny_benchmark(1);
    let run = tempfile::tempdir().unwrap();
    fit(
        &config(data.path(), 6),
        run.path(),
        false,
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();
    let cfg = RobustnessConfig {
        attacks: AttackKind::ALL.to_vec(),
        eps: vec![0.0, 0.1, 1.0],
        steps: 4,
        batch_size: 32,
        objective: warble_trainer::robust::AttackObjective::Bce,
    };
    let ticks = std::sync::atomic::AtomicUsize::new(0);
    let points = robustness_run(
        run.path(),
        data.path(),
        "standard",
        &cfg,
        (&["test-focal".to_owned()], Some(48)),
        &|set, n| assert_eq!((set, n), ("test-focal", 2 * 2 * 4)),
        &|| {
            ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    )
    .unwrap();
    assert_eq!(ticks.into_inner(), 16);
    assert_eq!(points.len(), 4 * 3);
    for kind in AttackKind::ALL {
        let curve: Vec<_> = points.iter().filter(|p| p.attack == kind).collect();
        let cmap: Vec<f64> = curve.iter().map(|p| p.metrics.cmap).collect();
        println!("{:<10} cmAP {cmap:?}", kind.name());
        assert_eq!(curve[0].eps, 0.0);
        assert!(
            cmap[2] < cmap[0] - 0.05,
            "{} at eps 1 hurts: {cmap:?}",
            kind.name()
        );
        if kind != AttackKind::Fgsm {
            // Iterative attacks get stronger with the radius.
            assert!(cmap[2] <= cmap[1] + 1e-9, "{}: {cmap:?}", kind.name());
        }
    }
    // The clean point is the same for every attack.
    assert!(
        points
            .iter()
            .filter(|p| p.eps == 0.0)
            .all(|p| p.metrics == points[0].metrics)
    );
    let pgd2 = points
        .iter()
        .find(|p| p.attack == AttackKind::PgdL2 && p.eps == 0.1)
        .unwrap();
    let (m, f) = (64.0f64, pgd2.radius / 0.1);
    assert!(f > m, "L2 radius scales with √features: {}", pgd2.radius);

    let out = run.path().join("robust");
    write_report(&out, &points).unwrap();
    let csv = std::fs::read_to_string(out.join("robust.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + points.len());
    assert!(out.join("robust-test-focal.svg").is_file());
}

#[test]
fn the_tiny_experiment_fills_every_cell_of_its_report_and_resumes() {
    let _serial = serial();
    let out = tempfile::tempdir().unwrap();
    let plan = Plan::new(ExperimentPreset::Tiny, vec![1]);
    let cells = std::sync::Mutex::new(Vec::new());
    let on_event = |e: ExperimentEvent| {
        if let ExperimentEvent::Cell { name, cached, .. } = e {
            cells.lock().unwrap().push((name, cached));
        }
    };
    let results = experiment::run(&plan, out.path(), &Device::flex(), &on_event).unwrap();
    assert_eq!(results.len(), 6);
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    println!("{report}");
    for r in &results {
        assert_eq!(r.robust.len(), 3 * 4 * 4, "3 sets × 4 attacks × 4 radii");
        let protos = r.arch == experiment::Arch::AudioProtoPNet;
        assert_eq!(r.stability.len(), if protos { 3 * 2 * 2 } else { 0 });
        // The epoch whose weights were evaluated is recorded, one of the run's epochs.
        let epochs = if protos {
            plan.protopnet_epochs
        } else {
            plan.convnext.epochs
        };
        assert!(
            r.selected_epoch.is_some_and(|e| e < epochs),
            "{:?} of {epochs}",
            r.selected_epoch
        );
        // And the last epoch's figure beside the selected one's.
        assert!(
            r.last_soundscape_mean_cmap
                .is_some_and(|c| (0.0..=1.0).contains(&c)),
            "{:?}",
            r.last_soundscape_mean_cmap
        );
        for s in &r.stability {
            assert!(
                s.clips > 0 && (0.0..=1.0).contains(&s.success_rate),
                "{s:?}"
            );
        }
    }
    // Every table cell holds a number: no "–" placeholder, no NaN.
    assert!(!report.contains('–') && !report.contains("NaN"), "{report}");
    for table in [
        "Clean cmAP",
        "Relative change",
        "Robustness",
        "Prototype stability",
        "Selected epochs",
        "soundscape cmAP, last epoch",
    ] {
        assert!(report.contains(table), "{table}");
    }
    for mode in ["standard", "at-output", "at-embedding"] {
        assert!(out.path().join(format!("prototypes-{mode}.png")).is_file());
    }
    assert!(
        out.path()
            .join("robust/robust-test-soundscape-noisy.svg")
            .is_file()
    );

    // Running again does no work: every cell is read back.
    cells.lock().unwrap().clear();
    let again = experiment::run(&plan, out.path(), &Device::flex(), &on_event).unwrap();
    assert!(cells.lock().unwrap().iter().all(|(_, cached)| *cached));
    assert_eq!(
        again[0].soundscape_mean_cmap,
        results[0].soundscape_mean_cmap
    );
    // Another plan in the same folder is refused (other seeds are not another plan).
    let mut other = Plan::new(ExperimentPreset::Tiny, vec![1]);
    other.adversarial.ratio = 0.7;
    let err = experiment::run(&other, out.path(), &Device::flex(), &on_event).unwrap_err();
    assert!(format!("{err}").contains("another plan"), "{err}");
}

#[test]
fn fit_with_a_runs_config_repeats_the_run_exactly() {
    let _serial = serial();
    let data = tiny_benchmark(1);
    let first = tempfile::tempdir().unwrap();
    let records = fit(
        &config(data.path(), 2),
        first.path(),
        false,
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();
    let again = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_warble-train");
    let config = first.path().join("config.json");
    let out = std::process::Command::new(bin)
        .args([
            "fit",
            "--config",
            config.to_str().unwrap(),
            "--out",
            again.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(again.path().join("metrics.jsonl")).unwrap();
    let repeated: Vec<f64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let original: Vec<f64> = records.iter().map(|r| r.train_loss).collect();
    assert_eq!(repeated, original);
    // Recipe flags cannot be mixed with a config.
    let out = std::process::Command::new(bin)
        .args([
            "fit",
            "--config",
            config.to_str().unwrap(),
            "--out",
            "x",
            "--epochs",
            "3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
