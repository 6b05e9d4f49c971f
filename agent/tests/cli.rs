//! The `warble-agent` binary on the bundled demo recording (the README's main job) and on
//! bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;
use common::{agent, repo_file};

const BUNDLE: &str = "models/demo/warble-demo-0.1.0.warble";
const KEY: &str = "models/demo/warble-demo.pub";

fn analyze(extra: &[&str]) -> (i32, String, String) {
    let bundle = repo_file(BUNDLE);
    let key = repo_file(KEY);
    let mut args = vec![
        "analyze",
        "--bundle",
        bundle.to_str().unwrap(),
        "--trusted",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = agent(&args);
    (code, out, err)
}

#[test]
fn demo_windows_cover_the_recording() {
    let demo = repo_file("demo/soundscape.flac");
    let (code, stdout, stderr) = agent(&["features", demo.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stdout.contains("12 windows from 60.0 s of audio"),
        "{stdout}"
    );
    let rows = stdout
        .lines()
        .filter(|l| l.ends_with('%') && l.contains(" s "))
        .count();
    assert_eq!(rows, 12, "{stdout}");
}

#[test]
fn the_demo_model_finds_the_demo_calls() {
    let demo = repo_file("demo/soundscape.flac");
    let truth = repo_file("demo/soundscape.truth.csv");
    let (code, stdout, stderr) =
        analyze(&[demo.to_str().unwrap(), "--truth", truth.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // JSON Lines on stdout: valid detection events with consecutive ids.
    let events: Vec<warble_core::event::Detection> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() >= 10, "{stdout}\n{stderr}");
    for (i, e) in events.iter().enumerate() {
        e.validate().unwrap();
        assert_eq!(e.seq, i as u64);
        assert_eq!(e.model.id, "warble-demo");
    }
    let line = stderr
        .lines()
        .find(|l| l.starts_with("against the ground truth"))
        .expect("a ground-truth summary");
    let number = |key: &str| -> f64 {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (precision, recall) = (number("precision "), number("recall "));
    assert!(precision >= 0.8 && recall >= 0.5, "{line}");
}

#[test]
fn analysis_of_a_long_file_equals_analysis_of_its_windows() {
    // The streaming path must hand the model exactly what a window cut out of the file
    // gives: analyse 0–6 s as one file and the two 3-s halves as separate files.
    let dir = tempfile::tempdir().unwrap();
    let decoded = warble_core::audio::decode_file(
        repo_file("demo/soundscape.flac"),
        warble_core::SampleRate::HZ_32000,
    )
    .unwrap();
    let write = |name: &str, samples: &[f32]| {
        let path = dir.path().join(name);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 32_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        path
    };
    let whole = write("whole.wav", &decoded.samples[..192_000]);
    let first = write("a.wav", &decoded.samples[..96_000]);
    let second = write("b.wav", &decoded.samples[96_000..192_000]);
    let csv = |paths: &[&std::path::Path]| {
        let mut args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
        args.extend(["--format", "csv", "--min-confidence", "0.2", "--no-merge"]);
        let (code, out, err) = analyze(&args);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    f[1].parse::<f64>().unwrap(),
                    f[3].to_owned(),
                    f[6].to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut long = csv(&[&whole]);
    let mut parts: Vec<_> = csv(&[&first]);
    parts.extend(csv(&[&second]).into_iter().map(|(t, c, p)| (t + 3.0, c, p)));
    long.sort_by(|a, b| a.partial_cmp(b).unwrap());
    parts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(!long.is_empty());
    assert_eq!(long, parts);
}

#[test]
fn a_corrupt_file_in_a_directory_is_reported_and_the_rest_analysed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo_file("demo/soundscape.flac"), dir.path().join("a.flac")).unwrap();
    std::fs::write(dir.path().join("b.wav"), b"RIFF\x10\x00\x00\x00WAVEjunk").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not audio, not picked up").unwrap();
    let (code, stdout, stderr) = analyze(&[dir.path().to_str().unwrap()]);
    assert_ne!(code, 0, "a failed file makes the run fail at the end");
    assert!(stderr.contains("b.wav"), "{stderr}");
    assert!(
        stderr.contains("1 of 2 file(s) could not be analysed"),
        "{stderr}"
    );
    assert!(
        stdout.lines().count() >= 10,
        "a.flac was still analysed: {stdout}"
    );
}

#[test]
fn a_tampered_or_untrusted_bundle_is_refused_before_any_audio() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(repo_file(BUNDLE)).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    let tampered = dir.path().join("t.warble");
    std::fs::write(&tampered, &bytes).unwrap();
    let demo = repo_file("demo/soundscape.flac");
    let key = repo_file(KEY);
    let (code, stdout, stderr) = agent(&[
        "analyze",
        demo.to_str().unwrap(),
        "--bundle",
        tampered.to_str().unwrap(),
        "--trusted",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("refusing to run it"), "{stderr}");
    let other = dir.path().join("other.pub");
    std::fs::write(
        &other,
        warble_core::bundle::SecretKey::from_seed([1; 32], "")
            .public()
            .to_text(),
    )
    .unwrap();
    let bundle = repo_file(BUNDLE);
    let (code, _, stderr) = agent(&[
        "analyze",
        demo.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        "--trusted",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not among the trusted keys"), "{stderr}");
}

#[test]
fn unreadable_audio_fails_with_one_clear_message() {
    let not_audio = repo_file("Cargo.toml");
    let (code, _, stderr) = agent(&["features", not_audio.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Cargo.toml") && stderr.contains("unsupported format"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("unsupported format").count(),
        1,
        "said once: {stderr}"
    );
}

#[test]
fn bad_window_arguments_are_refused() {
    let demo = repo_file("demo/soundscape.flac");
    let (code, _, stderr) = agent(&["features", demo.to_str().unwrap(), "--window", "0.01"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("must exceed n_fft / 2"), "{stderr}");
}

#[test]
fn a_waveform_bundle_runs_on_raw_audio_windows() {
    // An imported raw-audio model (16 kHz, 1-s windows; `loud` vs `quiet`) on a 48-kHz
    // stereo file: tone, silence, tone. The agent resamples and windows the waveform.
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone-gap-tone.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for i in 0..3 * 48_000 {
        let second = i / 48_000;
        let t = i as f64 / 48_000.0;
        let v = if second == 1 {
            0.0
        } else {
            0.5 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
        };
        let s = (v * 32767.0) as i16;
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let bundle = repo_file("agent/tests/fixtures/loudness-1.0.0.warble");
    let key = repo_file("agent/tests/fixtures/fixture.pub");
    let (code, stdout, stderr) = agent(&[
        "analyze",
        wav.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        "--trusted",
        key.to_str().unwrap(),
        "--format",
        "csv",
        "--no-merge",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<(String, String)> = stdout
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_owned(), f[3].to_owned())
        })
        .collect();
    let expected = [("0.000", "loud"), ("1.000", "quiet"), ("2.000", "loud")];
    assert_eq!(
        rows,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())),
        "{stdout}"
    );
}

#[test]
fn each_run_with_a_data_dir_takes_a_new_boot_even_after_the_folder_is_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let demo = repo_file("demo/soundscape.flac");
    let data = dir.path().join("data");
    let mut runs: Vec<Vec<warble_core::event::Detection>> = Vec::new();
    for wipe in [false, false, true] {
        if wipe {
            // A replaced SD card: the boot file is gone.
            std::fs::remove_dir_all(&data).unwrap();
        }
        let (code, stdout, stderr) = analyze(&[
            demo.to_str().unwrap(),
            "--station",
            "marsh-7",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        let events: Vec<warble_core::event::Detection> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!events.is_empty());
        assert_eq!(events[0].id, format!("marsh-7:{}:0", events[0].boot));
        if let Some(previous) = runs.last() {
            assert!(events[0].boot > previous[0].boot, "boots increase");
        }
        runs.push(events);
    }
    // A collector stores every run's events: none is taken for an earlier one.
    let mut store = warble_collect::store::Store::open(dir.path().join("c.sqlite")).unwrap();
    for event in runs.iter().flatten() {
        let payload = serde_json::to_vec(event).unwrap();
        assert_eq!(
            store.ingest("marsh-7", &payload).unwrap(),
            warble_collect::store::Ingest::Stored
        );
    }
}

/// The fleet's ACL lets a station publish only under its own id, and the broker
/// acknowledges a denied publish all the same: delivering as another user would empty the
/// outbox into the void, so it is refused before anything is sent.
#[test]
fn credentials_of_another_user_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let station = common::station(dir.path(), "marsh-4");
    let credentials = dir.path().join("mqtt.credentials");
    std::fs::write(&credentials, "wrong-id:s3cret\n").unwrap();
    let text = std::fs::read_to_string(&station).unwrap().replace(
        "[storage]",
        &format!(
            "[mqtt]\nbroker = \"mqtt://127.0.0.1:1\"\ncredentials_file = \"{}\"\n\n[storage]",
            credentials.display()
        ),
    );
    std::fs::write(&station, text).unwrap();
    let demo = repo_file("demo/soundscape.flac");
    let config = station.to_str().unwrap();
    let (code, _, stderr) = agent(&["analyze", "--config", config, demo.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let pending = || {
        warble_agent::outbox::Outbox::open(dir.path().join("data-marsh-4/outbox.sqlite"), 1 << 30)
            .unwrap()
            .stats()
            .unwrap()
            .depth
    };
    let queued = pending();
    assert!(queued > 0);
    let (code, _, stderr) = agent(&["deliver", "--config", config, "--timeout", "2"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the user `wrong-id` is not the station id `marsh-4`"),
        "{stderr}"
    );
    assert_eq!(pending(), queued, "nothing sent, nothing deleted");
}

/// A bundle or key path naming a device or FIFO is refused at once, never read until
/// memory runs out (or forever).
#[test]
fn devices_as_bundle_or_key_are_refused_clearly() {
    let demo = repo_file("demo/soundscape.flac");
    let (bundle, key) = (repo_file(BUNDLE), repo_file(KEY));
    for (b, k) in [
        (std::path::Path::new("/dev/zero"), key.as_path()),
        (bundle.as_path(), std::path::Path::new("/dev/zero")),
    ] {
        let (code, _, stderr) = agent(&[
            "analyze",
            "--bundle",
            b.to_str().unwrap(),
            "--trusted",
            k.to_str().unwrap(),
            demo.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("/dev/zero") && stderr.contains("not a regular file"),
            "{stderr}"
        );
    }
}

#[test]
fn bad_analyze_arguments_say_what_is_wrong() {
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = analyze(&[empty.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no audio files"), "{stderr}");
    let demo = repo_file("demo/soundscape.flac");
    let (code, _, stderr) = analyze(&[demo.to_str().unwrap(), "--min-confidence", "1.5"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("must lie in [0, 1]"), "{stderr}");
    // A hop off the frame grid is rounded to it and said so.
    let (code, _, stderr) = analyze(&[demo.to_str().unwrap(), "--hop", "1.234"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("hop 1.230 s (39360 samples"), "{stderr}");
}

#[test]
fn a_station_file_configures_analysis_and_a_broken_one_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let demo = repo_file("demo/soundscape.flac");
    let data = dir.path().join("data");
    let station = dir.path().join("station.toml");
    std::fs::copy(repo_file(KEY), dir.path().join("fleet.pub")).unwrap();
    let write = |exclude: &str| {
        std::fs::write(
            &station,
            format!(
                "[station]\nid = \"marsh-9\"\n\n[model]\nbundle = \"{}\"\ntrusted_keys = [\"fleet.pub\"]\nexclude = [{exclude}]\n\n\
                 [output]\nformats = [\"jsonl\"]\n\n[storage]\ndata_dir = \"{}\"\n",
                repo_file(BUNDLE).display(),
                data.display()
            ),
        )
        .unwrap();
    };
    write("");
    let (code, all, stderr) = agent(&[
        "analyze",
        "--config",
        station.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<warble_core::event::Detection> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty());
    // Station id and boot come from the file's station and data_dir.
    let boot = std::fs::read_to_string(data.join("boot")).unwrap();
    assert_eq!(events[0].id, format!("marsh-9:{}:0", boot.trim()));
    // The file's species list applies: excluding the most frequent species removes it.
    let mut counts = std::collections::BTreeMap::new();
    for e in &events {
        *counts.entry(e.code.clone()).or_insert(0) += 1;
    }
    let (top, _) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
    write(&format!("\"{top}\""));
    let (code, some, stderr) = agent(&[
        "analyze",
        "--config",
        station.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !some.contains(&format!("\"code\":\"{top}\"")),
        "{top} excluded"
    );
    assert!(some.lines().count() < all.lines().count());
    // And `include` keeps only what it names.
    std::fs::write(
        &station,
        std::fs::read_to_string(&station).unwrap().replace(
            &format!("exclude = [\"{top}\"]"),
            &format!("include = [\"{top}\"]"),
        ),
    )
    .unwrap();
    let (code, only, stderr) = agent(&[
        "analyze",
        "--config",
        station.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let codes: std::collections::BTreeSet<String> = only
        .lines()
        .map(|l| {
            serde_json::from_str::<warble_core::event::Detection>(l)
                .unwrap()
                .code
                .to_string()
        })
        .collect();
    assert_eq!(codes, std::collections::BTreeSet::from([top.to_string()]));

    // A broken file: every problem, then refusal, before any audio is read.
    std::fs::write(
        &station,
        "[station]\nid = \"Marsh 9\"\n\n[model]\nbundle = \"x.warble\"\ntrusted_keys = [\"fleet.pub\"]\ntreshold = 0.5\n\n[storage]\ndata_dir = \"data\"\n",
    )
    .unwrap();
    let (code, _, stderr) = agent(&[
        "analyze",
        "--config",
        station.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("station.toml:7:1: model.treshold: unknown key"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `thresholds`?"), "{stderr}");
}

/// A species code the model does not have would do nothing — a privacy class that never
/// withholds a clip, an exclusion that excludes nothing — so the agent refuses to start,
/// naming each code, its setting and the near-miss. (Before: accepted and ignored.)
#[test]
fn species_codes_the_model_lacks_are_refused_before_any_audio() {
    let dir = tempfile::tempdir().unwrap();
    let station = dir.path().join("station.toml");
    std::fs::copy(repo_file(KEY), dir.path().join("fleet.pub")).unwrap();
    let write = |model: &str| {
        std::fs::write(
            &station,
            format!(
                "[station]\nid = \"marsh-9\"\n\n[model]\nbundle = \"{}\"\ntrusted_keys = [\"fleet.pub\"]\n{model}\n\n\
                 [storage]\ndata_dir = \"{}\"\n",
                repo_file(BUNDLE).display(),
                dir.path().join("data").display()
            ),
        )
        .unwrap();
    };
    let run = || {
        agent(&[
            "analyze",
            "--config",
            station.to_str().unwrap(),
            repo_file("demo/soundscape.flac").to_str().unwrap(),
        ])
    };
    write(
        "privacy_classes = [\"human\"]\nexclude = [\"syn3\"]\n[model.thresholds]\nsyn04 = 0.6\nsyn99 = 0.6",
    );
    let (code, stdout, stderr) = run();
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "nothing analysed: {stdout}");
    for needle in [
        "model.privacy_classes: `human` is not one of its classes (no clip would ever be withheld for it)",
        "model.exclude: `syn3` is not one of its classes (it would exclude nothing); did you mean `syn03`",
        "model.thresholds.syn99: `syn99`",
        "warble-demo 0.1.0, 25 classes",
    ] {
        assert!(stderr.contains(needle), "{needle}\n{stderr}");
    }
    assert!(
        !stderr.contains("`syn04`"),
        "a known code is not named: {stderr}"
    );
    // With the model's own codes it runs.
    write("privacy_classes = [\"syn01\"]\nexclude = [\"syn03\"]\n[model.thresholds]\nsyn04 = 0.6");
    let (code, _, stderr) = run();
    assert_eq!(code, 0, "{stderr}");
}

/// `[log]` does what it says (before: no logger was installed, the level and the format
/// were ignored, and the inference crate's warnings — falling back from ONNX Runtime to
/// tract — were never seen): `level = "warn"` keeps the info lines out and the warning in;
/// `format = "json"` makes every line of standard error a JSON object with its level and
/// message.
#[test]
fn the_log_section_sets_the_level_and_the_format_of_what_the_agent_says() {
    let dir = tempfile::tempdir().unwrap();
    let station = dir.path().join("station.toml");
    std::fs::copy(repo_file(KEY), dir.path().join("fleet.pub")).unwrap();
    let audio = dir.path().join("excerpt.wav");
    common::write_wav_i16(&audio, &common::demo_excerpt(6));
    let run = |log: &str| {
        std::fs::write(
            &station,
            format!(
                "[station]\nid = \"marsh-9\"\n\n[model]\nbundle = \"{}\"\ntrusted_keys = [\"fleet.pub\"]\n\n\
                 [storage]\ndata_dir = \"{}\"\n\n[runtime]\nengine = \"auto\"\nonnxruntime = \"/nonexistent/libonnxruntime.so\"\n\n[log]\n{log}\n",
                repo_file(BUNDLE).display(),
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let (code, _, stderr) = agent(&[
            "analyze",
            "--config",
            station.to_str().unwrap(),
            audio.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        stderr
    };
    let model_line = "model warble-demo 0.1.0 (25 classes)";
    let fallback = "falling back to tract";

    let info = run("level = \"info\"");
    assert!(info.contains(model_line), "{info}");
    assert!(info.contains(fallback), "{info}");

    let warn = run("level = \"warn\"");
    assert!(!warn.contains(model_line), "{warn}");
    assert!(warn.contains(fallback), "{warn}");

    let json = run("level = \"info\"\nformat = \"json\"");
    let lines: Vec<serde_json::Value> = json
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |level: &str, text: &str| {
        lines.iter().any(|l| {
            l["level"] == level
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
        })
    };
    assert!(said("INFO", model_line), "{json}");
    assert!(said("WARN", fallback), "{json}");
}

/// `analyze -` with raw PCM piped in; returns (exit code, stdout, stderr).
fn analyze_stdin(pcm: Vec<u8>, extra: &[&str]) -> (i32, String, String) {
    use std::io::Write;
    let bundle = repo_file(BUNDLE);
    let key = repo_file(KEY);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args([
            "analyze",
            "-",
            "--bundle",
            bundle.to_str().unwrap(),
            "--trusted",
            key.to_str().unwrap(),
            "--recorded-at",
            "2026-05-01T04:30:00Z",
        ])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&pcm);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn raw_pcm_on_standard_input_gives_the_detections_of_the_same_audio_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("excerpt.wav");
    let ints = common::write_wav_i16(&wav, &common::demo_excerpt(20));
    let (code, from_file, err) = analyze(&[wav.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let from_file = common::detection_spans(&from_file);
    assert!(!from_file.is_empty());

    let mono: Vec<u8> = ints.iter().flat_map(|s| s.to_le_bytes()).collect();
    let (code, out, err) = analyze_stdin(mono, &["--pcm-rate", "32000"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(common::detection_spans(&out), from_file, "mono s16le");

    // Stereo with the same audio in both channels, plus half a frame at the end.
    let mut stereo: Vec<u8> = ints
        .iter()
        .flat_map(|s| [s.to_le_bytes(), s.to_le_bytes()].concat())
        .collect();
    stereo.extend_from_slice(&[1, 2]);
    let (code, out, err) = analyze_stdin(stereo, &["--pcm-rate", "32000", "--pcm-channels", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(common::detection_spans(&out), from_file, "stereo s16le");
    assert!(err.contains("ignored 2 trailing byte(s)"), "{err}");

    // Without its rate, raw PCM cannot be read: said before reading anything.
    let (code, _, err) = analyze_stdin(Vec::new(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--pcm-rate"), "{err}");
}
