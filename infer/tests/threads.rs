//! `runtime.threads` reaches ONNX Runtime: a session built for N intra-op threads starts
//! N − 1 pool threads (the caller's thread is the Nth). The only test in this binary, so
//! nothing else starts threads meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use warble_infer::{Backend, EngineChoice, EngineConfig, load_bundle};

fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn onnx_runtime_runs_on_the_configured_threads() {
    let bundle = warble_tests::demo::bundle();
    let config = |threads| EngineConfig {
        choice: EngineChoice::Ort,
        ort_library: None,
        threads,
    };
    // The library loaded and its global state set up first (it may keep threads of its
    // own): the count that matters is per session.
    let (one, _) = load_bundle(&bundle, &config(1)).unwrap();
    assert_eq!(one.backend(), Backend::Ort);
    let before = threads_now();
    let (four, _) = load_bundle(&bundle, &config(4)).unwrap();
    assert_eq!(threads_now(), before + 3, "a pool of 3 beside the caller");
    drop(four);
    let before = threads_now();
    let (_again, _) = load_bundle(&bundle, &config(1)).unwrap();
    assert_eq!(threads_now(), before, "one thread: no pool");
}
