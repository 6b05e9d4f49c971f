//! `warble-export import`: an external ONNX classifier with raw-audio input (made here with
//! the reference `onnx` Python package, as a user's BirdNET/Perch conversion would be) is
//! wrapped in a signed `waveform` bundle that verifies and self-tests in both engines; bad
//! imports are refused with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;

use warble_core::bundle::{Bundle, InputSpec, Limits, PublicKey, TrustedKeys};
use warble_infer::{EngineChoice, EngineConfig, load_bundle};

/// A toy "loudness" classifier at 16 kHz, 1-s windows: mean log energy of 10-ms frames;
/// class 0 (`loud`) rises with it, class 1 (`quiet`) falls.
const MAKE_MODEL: &str = r#"
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
n = 16000
nodes = [
    helper.make_node("Reshape", ["audio", "frames_shape"], ["frames"]),
    helper.make_node("Mul", ["frames", "frames"], ["sq"]),
    helper.make_node("ReduceMean", ["sq"], ["energy"], axes=[2], keepdims=0),
    helper.make_node("Add", ["energy", "floor"], ["energy_f"]),
    helper.make_node("Log", ["energy_f"], ["log_energy"]),
    helper.make_node("MatMul", ["log_energy", "w"], ["z"]),
    helper.make_node("Add", ["z", "b"], ["logits"]),
]
w = np.stack([np.full(100, 0.01), np.full(100, -0.01)], axis=1).astype(np.float32)
init = [
    numpy_helper.from_array(np.array([0, 100, 160], dtype=np.int64), "frames_shape"),
    numpy_helper.from_array(np.array(1e-8, dtype=np.float32), "floor"),
    numpy_helper.from_array(w, "w"),
    numpy_helper.from_array(np.array([8.0, -8.0], dtype=np.float32), "b"),
]
graph = helper.make_graph(nodes, "loudness",
    [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", n])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])], init)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model, full_check=True)
onnx.save(model, sys.argv[1])
"#;

fn python_path() -> String {
    let cache = std::env::var("WARBLE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/warble"));
    std::fs::read_to_string(cache.join("python-path"))
        .expect("Python onnx is not installed: run scripts/install-deps")
        .trim()
        .to_owned()
}

fn export(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warble-export"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = dir.join("loudness.onnx");
    let status = Command::new("python3")
        .env("PYTHONPATH", python_path())
        .args(["-c", MAKE_MODEL])
        .arg(&model)
        .status()
        .unwrap();
    assert!(status.success(), "making the toy ONNX model");
    let labels = dir.join("labels.csv");
    std::fs::write(
        &labels,
        "index,code,scientific,common\n0,loud,Sonus magnus,Loud sound\n1,quiet,Silentium,Quiet\n",
    )
    .unwrap();
    let prefix = dir.join("importer");
    let (ok, _, err) = export(&["keygen", prefix.to_str().unwrap()]);
    assert!(ok, "{err}");
    (model, labels, prefix)
}

#[test]
fn an_external_waveform_model_becomes_a_verified_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (model, labels, prefix) = setup(dir.path());
    let bundle = dir.path().join("loudness.warble");
    let (ok, stdout, stderr) = export(&[
        "import",
        "--onnx",
        model.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--input",
        "waveform",
        "--sample-rate",
        "16000",
        "--window",
        "1",
        "--out",
        bundle.to_str().unwrap(),
        "--key",
        prefix.with_extension("key").to_str().unwrap(),
        "--model-id",
        "loudness",
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("ONNX Runtime vs tract"), "{stdout}");

    let keys: TrustedKeys = [PublicKey::read(prefix.with_extension("pub")).unwrap()]
        .into_iter()
        .collect();
    let b = Bundle::open(&bundle, &keys, &Limits::default()).unwrap();
    assert_eq!(
        b.manifest().input,
        InputSpec::Waveform {
            sample_rate_hz: 16_000,
            window_samples: 16_000
        }
    );
    assert_eq!(b.manifest().input_shape, [-1, 16_000]);
    for choice in [EngineChoice::Ort, EngineChoice::Tract] {
        let cfg = EngineConfig {
            choice,
            ort_library: None,
            threads: 1,
        };
        let (_, diff) = load_bundle(&b, &cfg).unwrap();
        assert!(diff <= 1e-3, "{choice:?}: {diff}");
    }

    // Without ONNX Runtime the self-test runs on tract, and the fallback is said.
    let (ok, stdout, stderr) = export(&[
        "verify",
        bundle.to_str().unwrap(),
        "--trusted",
        prefix.with_extension("pub").to_str().unwrap(),
        "--onnxruntime",
        dir.path().join("no-libonnxruntime.so").to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stderr.contains("falling back to tract"), "{stderr}");
}

#[test]
fn imports_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (model, labels, prefix) = setup(dir.path());
    let key = prefix.with_extension("key");
    let out = dir.path().join("x.warble");
    let base = |window: &str, labels: &Path| {
        export(&[
            "import",
            "--onnx",
            model.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--sample-rate",
            "16000",
            "--window",
            window,
            "--out",
            out.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--model-id",
            "x",
        ])
    };
    // A window the model cannot take: the engine's reshape fails.
    let (ok, _, err) = base("2", &labels);
    assert!(!ok);
    assert!(
        err.contains("inference failed") || err.contains("cannot load"),
        "{err}"
    );
    // More labels than outputs.
    let three = dir.path().join("three.csv");
    std::fs::write(
        &three,
        "index,code,scientific,common\n0,a,A a,A\n1,b,B b,B\n2,c,C c,C\n",
    )
    .unwrap();
    let (ok, _, err) = base("1", &three);
    assert!(!ok);
    assert!(err.contains("one column per label"), "{err}");
    assert!(!out.exists(), "nothing is written for a refused import");
}
