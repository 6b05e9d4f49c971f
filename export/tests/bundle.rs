//! `tiny` run → signed bundle → verified → self-test passes in ONNX Runtime and tract; the
//! CLI's keygen and verify work on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::process::Command;

use burn::prelude::Device;
use warble_core::bundle::{Bundle, Limits, PublicKey, SecretKey, TrustedKeys};
use warble_core::{FrontEndConfig, Preset};
use warble_export::parity::REQUIRED_TOLERANCE;
use warble_export::pipeline::{BundleOptions, Quiet, bundle_run};
use warble_infer::{EngineChoice, EngineConfig, load_bundle};
use warble_trainer::data::augment::AugmentConfig;
use warble_trainer::loss::{AslConfig, LossKind};
use warble_trainer::model::convnext::{ConvNextConfig, ConvNextSize};
use warble_trainer::synth::{Benchmark, SynthPreset};
use warble_trainer::train::{TrainConfig, fit};

fn tiny_run(data: &Path, run: &Path) {
    Benchmark::new(SynthPreset::Tiny, 2)
        .write(data, &|| {})
        .unwrap();
    let cfg = TrainConfig {
        data: data.to_owned(),
        frontend: FrontEndConfig {
            n_mels: 64,
            preset: Preset::Custom,
            ..FrontEndConfig::birdset()
        },
        window_s: 2.0,
        model: ConvNextConfig::preset(ConvNextSize::Test, 10),
        loss: LossKind::Asl(AslConfig::default()),
        epochs: 1,
        batch_size: 16,
        lr: 3e-3,
        weight_decay: 1e-4,
        adam_eps: 1e-8,
        warmup: 0.05,
        grad_clip: Some(0.5),
        augment: AugmentConfig::default(),
        seed: 5,
        cache_audio: false,
        skip_bad: false,
        adversarial: Default::default(),
        protopnet: None,
    };
    fit(&cfg, run, false, &Device::flex(), &mut |_| {}).unwrap();
}

#[test]
fn a_tiny_run_exports_to_a_bundle_that_verifies_and_self_tests_in_both_engines() {
    let data = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    tiny_run(data.path(), run.path());
    let out = tempfile::tempdir().unwrap();

    // Keys through the CLI: the secret key is private to its owner.
    let exe = env!("CARGO_BIN_EXE_warble-export");
    let prefix = out.path().join("keys/ops");
    let status = Command::new(exe)
        .args(["keygen", prefix.to_str().unwrap(), "--comment", "test"])
        .status()
        .unwrap();
    assert!(status.success());
    let secret = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret key mode {mode:o}");
    let again = Command::new(exe)
        .args(["keygen", prefix.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success(), "keygen must not overwrite a key");

    let bundle_path = out.path().join("tiny-0.1.0.warble");
    let report = bundle_run(
        &BundleOptions {
            run: run.path().to_owned(),
            last: false,
            out: bundle_path.clone(),
            key: secret.clone(),
            model_id: Some("tiny".into()),
            version: "0.1.0".into(),
            default_threshold: 0.5,
            target_precision: 0.9,
            max_valid: 64,
            random_batches: 2,
            engines: vec![EngineChoice::Ort, EngineChoice::Tract],
            ort_library: None,
        },
        &Quiet,
    )
    .unwrap();
    println!("{:?}", report.parity);
    assert_eq!(report.parity.engines.len(), 2);
    assert!(report.parity.max_abs_diff() <= REQUIRED_TOLERANCE);
    assert!(report.valid_clips > 0);

    // The secret key is nowhere in the bundle.
    let bytes = std::fs::read(&bundle_path).unwrap();
    let secret_hex = std::fs::read_to_string(&secret).unwrap();
    let secret_hex = secret_hex.split_whitespace().nth(1).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(secret_hex));

    let keys: TrustedKeys = [PublicKey::read(&public).unwrap()].into_iter().collect();
    let bundle = Bundle::open(&bundle_path, &keys, &Limits::default()).unwrap();
    assert_eq!(bundle.manifest().model_id, "tiny");
    assert_eq!(bundle.labels().len(), 10);
    assert_eq!(bundle.manifest().recipe["architecture"], "convnext");
    for choice in [EngineChoice::Ort, EngineChoice::Tract] {
        let cfg = EngineConfig {
            choice,
            ort_library: None,
            threads: 1,
        };
        let (engine, diff) = load_bundle(&bundle, &cfg).unwrap();
        println!("{}: self-test max diff {diff:e}", engine.backend());
        assert!(diff <= REQUIRED_TOLERANCE);
    }

    // The CLI verifies it, and refuses it under another key.
    let ok = Command::new(exe)
        .args([
            "verify",
            bundle_path.to_str().unwrap(),
            "--trusted",
            public.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.starts_with("OK tiny 0.1.0"), "{stdout}");
    let stranger = out.path().join("stranger.pub");
    std::fs::write(
        &stranger,
        SecretKey::from_seed([5; 32], "x").public().to_text(),
    )
    .unwrap();
    let bad = Command::new(exe)
        .args([
            "verify",
            bundle_path.to_str().unwrap(),
            "--trusted",
            stranger.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("not among the trusted keys"), "{stderr}");
    let inspect = Command::new(exe)
        .args([
            "inspect",
            bundle_path.to_str().unwrap(),
            "--trusted",
            public.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success() && text.contains("thresholds"),
        "{text}"
    );
}
