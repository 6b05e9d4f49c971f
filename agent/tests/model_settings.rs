//! The run's settings resolved once (station file low, flags high) and the one way a
//! model enters the agent (verified, then self-tested), in-process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use warble_agent::model::{LoadedModel, ModelError};
use warble_agent::output::Format;
use warble_agent::settings::{Overrides, Settings, SettingsError, load_station};
use warble_core::bundle::{PublicKey, SecretKey, TrustedKeys};
use warble_infer::{Backend, EngineChoice, EngineConfig};
use warble_tests::demo::repo_file;

fn demo_keys() -> TrustedKeys {
    [PublicKey::read(repo_file("models/demo/warble-demo.pub")).unwrap()]
        .into_iter()
        .collect()
}

fn tract() -> EngineConfig {
    EngineConfig {
        choice: EngineChoice::Tract,
        ort_library: None,
        threads: 1,
    }
}

/// A station file next to copies of the demo bundle and key, named relatively.
fn station_file(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    for f in ["warble-demo-0.1.0.warble", "warble-demo.pub"] {
        std::fs::copy(repo_file(&format!("models/demo/{f}")), dir.join(f)).unwrap();
    }
    let path = dir.join("station.toml");
    std::fs::write(
        &path,
        format!(
            "[station]\nid = \"fen-2\"\n\n[model]\nbundle = \"warble-demo-0.1.0.warble\"\n\
             trusted_keys = [\"warble-demo.pub\"]\nmin_confidence = 0.4\n\
             thresholds = {{ \"sp03\" = 0.7 }}\nexclude = [\"sp05\"]\n\n\
             [detection]\nhop_s = 0.5\nmerge_gap_s = 2.0\nconfirm_count = 2\nconfirm_within_s = 6.0\n\n\
             [output]\nformats = [\"csv\", \"jsonl\"]\n\n\
             [storage]\ndata_dir = \"{}\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_station_file_fills_every_setting_and_its_paths_are_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let st = load_station(&station_file(dir.path(), "")).unwrap();
    let s = Settings::resolve(Some(st), Overrides::default(), 1).unwrap();
    assert_eq!(s.bundle, dir.path().join("warble-demo-0.1.0.warble"));
    assert_eq!(s.trusted, vec![dir.path().join("warble-demo.pub")]);
    assert_eq!(s.format, Format::Csv, "the first of output.formats");
    assert_eq!(s.station_id, "fen-2");
    assert_eq!(
        s.data_dir.as_deref(),
        Some(dir.path().join("data").as_path())
    );
    assert_eq!(s.hop_s, Some(0.5));

    let model = LoadedModel::open(&s.bundle, &demo_keys(), &s.engine).unwrap();
    let cfg = s.analyze_config(&model);
    let (rate, grid) = model.rate_and_grid();
    // 0.5 s on the frame grid, durations in the model's samples.
    let hop = cfg.hop_samples.unwrap();
    assert_eq!(hop % grid, 0);
    assert!((hop as f64 / f64::from(rate) - 0.5).abs() <= grid as f64 / f64::from(rate));
    let d = &cfg.detector;
    assert_eq!(d.min_confidence, Some(0.4));
    assert_eq!(d.per_species.get("sp03"), Some(&0.7));
    assert!(d.exclude.contains("sp05"));
    assert_eq!(d.merge_gap_samples, 2 * u64::from(rate));
    assert_eq!(d.confirm_count, 2);
    assert_eq!(d.confirm_within_samples, 6 * u64::from(rate));
    assert_eq!(cfg.batch, 1);
}

#[test]
fn flags_win_over_the_station_file() {
    let dir = tempfile::tempdir().unwrap();
    let st = load_station(&station_file(
        dir.path(),
        "\n[runtime]\nengine = \"ort\"\nthreads = 3\n",
    ))
    .unwrap();
    let over = Overrides {
        format: Some(Format::Raven),
        hop_s: Some(3.0),
        min_confidence: Some(0.9),
        no_merge: true,
        engine: Some(EngineChoice::Tract),
        station: Some("bench".into()),
        data_dir: Some(dir.path().join("elsewhere")),
        ..Overrides::default()
    };
    let s = Settings::resolve(Some(st), over, 8).unwrap();
    assert_eq!(s.format, Format::Raven);
    assert_eq!(s.hop_s, Some(3.0));
    assert_eq!(s.engine.choice, EngineChoice::Tract);
    // runtime.threads reaches the engine (infer's tests show ONNX Runtime then starts
    // that many).
    assert_eq!(s.engine.threads, 3);
    assert_eq!(s.station_id, "bench");
    assert_eq!(s.data_dir, Some(dir.path().join("elsewhere")));
    let model = LoadedModel::open(&s.bundle, &demo_keys(), &s.engine).unwrap();
    let cfg = s.analyze_config(&model);
    assert_eq!(cfg.detector.min_confidence, Some(0.9));
    assert!(!cfg.detector.merge);
    // The flag replaces the global threshold; a per-species one still wins over both.
    assert_eq!(cfg.detector.per_species.get("sp03"), Some(&0.7));
    assert_eq!(cfg.batch, 8);
}

#[test]
fn values_no_run_can_use_are_refused() {
    let bundle = Some(repo_file("models/demo/warble-demo-0.1.0.warble"));
    let refused = |over: Overrides, batch: usize| match Settings::resolve(None, over, batch) {
        Err(SettingsError::Flag(why)) => why,
        other => panic!("accepted: {other:?}"),
    };
    assert!(refused(Overrides::default(), 1).contains("--bundle is required"));
    let with = |f: fn(&mut Overrides)| {
        let mut o = Overrides {
            bundle: bundle.clone(),
            ..Overrides::default()
        };
        f(&mut o);
        o
    };
    assert!(refused(with(|o| o.min_confidence = Some(1.5)), 1).contains("[0, 1]"));
    assert!(refused(with(|o| o.hop_s = Some(0.0)), 1).contains("positive"));
    assert!(refused(with(|o| o.hop_s = Some(f64::NAN)), 1).contains("positive"));
    assert!(refused(with(|_| ()), 0).contains("--batch 0"));
    // Without a station file: the defaults.
    let s = Settings::resolve(None, with(|_| ()), 16).unwrap();
    assert_eq!((s.format, s.station_id.as_str()), (Format::Jsonl, "local"));
    assert_eq!(s.engine.threads, 1);
    assert!(s.data_dir.is_none() && s.hop_s.is_none() && s.station.is_none());
}

#[test]
fn a_station_file_with_problems_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    std::fs::write(
        &path,
        format!(
            "[station]\nid = \"Bad Id\"\n[audio]\nsample_rate_hz = 1\n[model]\nbundle = \"{}\"\n\
             trusted_keys = [\"{}\"]\n[storage]\ndata_dir = \"relative\"\n",
            repo_file("models/demo/warble-demo-0.1.0.warble").display(),
            repo_file("models/demo/warble-demo.pub").display(),
        ),
    )
    .unwrap();
    let err = load_station(&path).unwrap_err();
    let SettingsError::Station { count, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*count, 3, "id, sample rate and a relative data_dir: {err}");
    let text = err.to_string();
    assert!(
        text.contains("station.id") && text.contains("warble-config validate"),
        "{text}"
    );
}

#[test]
fn a_model_is_loaded_only_verified_and_self_tested() {
    let model = LoadedModel::open(
        &repo_file("models/demo/warble-demo-0.1.0.warble"),
        &demo_keys(),
        &tract(),
    )
    .unwrap();
    assert_eq!(model.backend(), Backend::Tract);
    let m = model.bundle().manifest();
    assert!(model.selftest_diff() <= m.selftest_tolerance);
    assert_eq!(model.model_ref().id, "warble-demo");
    assert_eq!(model.describe(), "warble-demo 0.1.0, 25 classes");
    assert_eq!(model.rate_and_grid().0, 32_000);
}

#[test]
fn a_tampered_or_untrusted_bundle_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(repo_file("models/demo/warble-demo-0.1.0.warble")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let tampered = dir.path().join("tampered.warble");
    std::fs::write(&tampered, &bytes).unwrap();
    let err = LoadedModel::open(&tampered, &demo_keys(), &tract()).unwrap_err();
    assert!(matches!(err, ModelError::Verify { .. }), "{err}");
    assert!(err.to_string().contains("tampered.warble"), "{err}");

    let stranger: TrustedKeys = [SecretKey::from_seed([7; 32], "stranger").public().clone()]
        .into_iter()
        .collect();
    let err = LoadedModel::open(
        &repo_file("models/demo/warble-demo-0.1.0.warble"),
        &stranger,
        &tract(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Verify { .. }), "{err}");
    assert!(err.to_string().contains("refusing to run it"), "{err}");
}
