//! The documented examples validate; a corpus of broken files gives the expected messages
//! (snapshots in `tests/broken/*.expected`; run with `WARBLE_UPDATE_SNAPSHOTS=1` to
//! rewrite them after a deliberate change, then review the diff).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_validates() {
    let examples = files("examples");
    assert!(examples.len() >= 2, "{examples:?}");
    for file in examples {
        let cfg = warble_config::load(&file).unwrap_or_else(|p| panic!("{}:\n{p}", file.display()));
        assert!(!cfg.id.as_str().is_empty());
    }
    let forest = warble_config::load(Path::new("examples/forest-station.toml")).unwrap();
    assert_eq!(forest.confirm_count, 2);
    assert_eq!(forest.clips.as_ref().unwrap().quota_bytes, 2048 << 20);
    let mqtt = forest.mqtt.unwrap();
    assert_eq!(
        (mqtt.host.as_str(), mqtt.port, mqtt.tls),
        ("broker.example.org", 8883, true)
    );
    assert_eq!(mqtt.client_id, "warble-forest-edge-01");
    assert!(
        matches!(forest.schedule, warble_config::schedule::Schedule::Windows(ref w) if w.len() == 2)
    );
}

#[test]
fn broken_files_give_the_expected_messages() {
    let update = std::env::var_os("WARBLE_UPDATE_SNAPSHOTS").is_some();
    let mut mismatches = Vec::new();
    for file in files("tests/broken") {
        let problems = warble_config::load(&file).expect_err("a broken file must not validate");
        let text = format!("{problems}\n");
        let expected = file.with_extension("expected");
        if update {
            std::fs::write(&expected, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run with WARBLE_UPDATE_SNAPSHOTS=1",
                expected.display()
            )
        });
        if want != text {
            mismatches.push(format!(
                "{}:\n--- expected\n{want}--- got\n{text}",
                file.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_cli_reports_every_file_and_exits_by_the_documented_codes() {
    let bin = env!("CARGO_BIN_EXE_warble-config");
    let ok = Command::new(bin)
        .args(["validate", "examples/demo.toml"])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = Command::new(bin)
        .args([
            "validate",
            "examples/demo.toml",
            "tests/broken/typos.toml",
            "tests/broken/ranges.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("tests/broken/typos.toml:9:1: model.treshold"),
        "{err}"
    );
    assert!(err.contains("tests/broken/ranges.toml"), "{err}");
    let usage = Command::new(bin).arg("validate").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let schema = Command::new(bin).arg("schema").output().unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert!(schema["properties"]["mqtt"].is_object(), "{schema}");
}
