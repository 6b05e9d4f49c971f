//! The exported graphs: valid ONNX (checked by the reference `onnx.checker`), and the same
//! logits as burn in ONNX Runtime and in tract, for both architectures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Command;

use burn::prelude::*;
use rand::{RngExt, SeedableRng};
use warble_export::onnx::{self, Architecture};
use warble_export::parity::{self, REQUIRED_TOLERANCE};
use warble_infer::EngineChoice;
use warble_trainer::model::convnext::{ConvNextConfig, ConvNextSize};
use warble_trainer::model::protopnet::ProtoPNetConfig;

const N_MELS: usize = 64;
/// Layer scale 1 (not the 1e-6 initialisation) so that every block's branch matters and a
/// mistake in it shows in the logits.
const LAYER_SCALE: f64 = 1.0;
const FRAMES: usize = 101;

fn batches(seed: u64) -> Vec<(Vec<f32>, [usize; 4])> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    [1usize, 3]
        .iter()
        .map(|&b| {
            let n = b * N_MELS * FRAMES;
            let data = (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect();
            (data, [b, 1, N_MELS, FRAMES])
        })
        .collect()
}

/// Runs the reference ONNX checker (full check with shape inference) on the bytes.
fn onnx_checker(bytes: &[u8]) {
    let cache = std::env::var("WARBLE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/warble"));
    let pythonpath = std::fs::read_to_string(cache.join("python-path"))
        .expect("Python onnx is not installed: run scripts/install-deps");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("python3")
        .env("PYTHONPATH", pythonpath.trim())
        .args([
            "-c",
            "import onnx, sys; m = onnx.load(sys.argv[1]); \
             onnx.checker.check_model(m, full_check=True); \
             print(onnx.helper.printable_graph(m.graph).count('\\n'))",
        ])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "onnx.checker rejected the model:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check(arch: &Architecture, device: &Device) {
    let bytes = onnx::write(arch, N_MELS, FRAMES).unwrap();
    onnx_checker(&bytes);
    let report = parity::check(
        arch,
        &bytes,
        &batches(7),
        &[EngineChoice::Ort, EngineChoice::Tract],
        None,
        device,
        || {},
    )
    .unwrap();
    println!("{}: {report:?}", arch.name());
    assert_eq!(report.engines.len(), 2);
    assert_eq!(report.engines[0].engine, "onnxruntime");
    assert_eq!(report.engines[1].engine, "tract");
    assert!(
        report.max_abs_diff() <= REQUIRED_TOLERANCE,
        "parity {report:?}"
    );
}

#[test]
fn convnext_matches_burn_in_both_engines() {
    let device = Device::flex();
    device.seed(11);
    let config = ConvNextConfig::preset(ConvNextSize::Test, 5).with_layer_scale_init(LAYER_SCALE);
    let model = config.init(&device);
    check(&Architecture::ConvNext { model, config }, &device);
}

#[test]
fn audioprotopnet_matches_burn_in_both_engines() {
    let device = Device::flex();
    device.seed(12);
    let config = ProtoPNetConfig::new(
        ConvNextConfig::preset(ConvNextSize::Test, 4).with_layer_scale_init(LAYER_SCALE),
    );
    let model = config.init(&device);
    check(&Architecture::ProtoPNet { model, config }, &device);
}

#[test]
fn a_wrong_weight_is_caught_by_the_parity_check() {
    // The check must be able to fail: export one model, compare it with another.
    let device = Device::flex();
    device.seed(13);
    let config = ConvNextConfig::preset(ConvNextSize::Test, 5).with_layer_scale_init(LAYER_SCALE);
    let exported = Architecture::ConvNext {
        model: config.init(&device),
        config: config.clone(),
    };
    let other = Architecture::ConvNext {
        model: config.init(&device),
        config,
    };
    let bytes = onnx::write(&exported, N_MELS, FRAMES).unwrap();
    let report = parity::check(
        &other,
        &bytes,
        &batches(8),
        &[EngineChoice::Tract],
        None,
        &device,
        || {},
    )
    .unwrap();
    assert!(report.max_abs_diff() > REQUIRED_TOLERANCE, "{report:?}");
}
