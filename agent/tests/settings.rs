//! Station-file settings shown to have their effect, each against the same station with
//! the setting changed: the detection settings through `analyze --config` (the path
//! `run` loads the model and detector by), the capture buffer and clip retention on a
//! running station with a file-backed microphone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use warble_core::event::Detection;

/// The station file of `id` in `dir` with `replace` applied to its text (pairs of what
/// and by what; each must be found).
fn edited_station(dir: &Path, id: &str, replace: &[(&str, &str)]) -> PathBuf {
    let path = common::station(dir, id);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (what, by) in replace {
        assert!(text.contains(what), "`{what}` in {text}");
        text = text.replacen(what, by, 1);
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The demo recording analysed with a station whose `[detection]` section is `section`.
fn detections_with(dir: &Path, id: &str, section: &str) -> Vec<Detection> {
    let station = edited_station(dir, id, &[("[storage]", &format!("{section}\n[storage]"))]);
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args(["analyze", "--config", station.to_str().unwrap()])
        .arg(common::repo_file("demo/soundscape.flac"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    common::parse_detections(&out.stdout)
}

/// Events of one species that follow each other within `gap` seconds.
fn close_pairs(events: &[Detection], gap: f64) -> usize {
    let mut by_species: std::collections::BTreeMap<&str, Vec<&Detection>> = Default::default();
    for e in events {
        by_species.entry(e.code.as_str()).or_default().push(e);
    }
    by_species
        .values_mut()
        .map(|es| {
            es.sort_by_key(|e| e.start_sample);
            es.windows(2)
                .filter(|w| {
                    let between = (w[1].start_sample as f64 - w[0].end_sample as f64) / 32_000.0;
                    between <= gap
                })
                .count()
        })
        .sum()
}

#[test]
fn the_detection_settings_shape_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let merged = detections_with(dir.path(), "merged", "[detection]\nmerge = true\n");
    let unmerged = detections_with(dir.path(), "unmerged", "[detection]\nmerge = false\n");
    assert!(merged.len() >= 5, "{merged:?}");
    // detection.merge: consecutive windows of a species are one event, or one each.
    assert!(
        unmerged.len() > merged.len(),
        "{} vs {}",
        unmerged.len(),
        merged.len()
    );
    let longest = |es: &[Detection]| es.iter().map(|e| e.end_sample - e.start_sample).max();
    assert!(longest(&merged) > longest(&unmerged));

    // detection.merge_gap_s: events of a species a short gap apart become one.
    let gap = 4.0;
    let pairs = close_pairs(&merged, gap);
    assert!(
        pairs > 0,
        "the demo has a species calling twice within {gap} s"
    );
    let bridged = detections_with(
        dir.path(),
        "bridged",
        &format!("[detection]\nmerge_gap_s = {gap}\n"),
    );
    assert_eq!(close_pairs(&bridged, gap), 0, "{bridged:?}");
    assert_eq!(bridged.len(), merged.len() - pairs);

    // detection.hop_s: windows start every hop (here 2 s = 64,000 samples, a multiple of
    // the front end's frame hop), so every one-window detection starts on that grid.
    let sparse = detections_with(
        dir.path(),
        "sparse",
        "[detection]\nmerge = false\nhop_s = 2.0\n",
    );
    assert!(!sparse.is_empty());
    assert!(
        sparse.iter().all(|e| e.start_sample % 64_000 == 0),
        "{sparse:?}"
    );
    assert!(
        unmerged.iter().any(|e| e.start_sample % 64_000 != 0),
        "the default 1-s hop starts windows between"
    );
    assert!(sparse.len() < unmerged.len());

    // detection.confirm_count / confirm_within_s: a species must be seen N times within
    // T s; a lone window of a species is not reported.
    let confirmed = detections_with(
        dir.path(),
        "confirmed",
        "[detection]\nconfirm_count = 3\nconfirm_within_s = 3.0\n",
    );
    assert!(
        !confirmed.is_empty() && confirmed.len() < merged.len(),
        "{} of {}",
        confirmed.len(),
        merged.len()
    );
}

/// Runs station `station` on `pcm` through a fast (unpaced) file microphone; returns
/// its detections and standard error.
fn run_on(dir: &Path, station: &Path, pcm: &[f32]) -> (Vec<Detection>, String) {
    let mic = dir.join(format!(
        "mic-{}",
        station.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&mic).unwrap();
    let alsa = common::file_microphone(&mic, pcm);
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .env("ALSA_CONFIG_PATH", alsa)
        .args(["run", "--config", station.to_str().unwrap()])
        .args(["--max-samples", &pcm.len().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (common::parse_detections(&out.stdout), stderr)
}

/// The samples the station's summary says were lost to overruns.
fn overruns(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("samples lost to overruns"))
        .unwrap_or_else(|| panic!("a summary in {stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "samples").unwrap();
    words[at - 1].parse().unwrap()
}

#[test]
fn the_capture_buffer_is_as_long_as_audio_buffer_s() {
    // A microphone faster than any pipeline (the file device is not paced, and goes on
    // with silence after the recording): a buffer that holds the whole recording keeps
    // every call; one of half a second loses most of them, and says so.
    let dir = tempfile::tempdir().unwrap();
    let pcm = common::demo_excerpt(20);
    let roomy = common::station(dir.path(), "roomy");
    let (heard, _) = run_on(dir.path(), &roomy, &pcm);
    let tight = edited_station(
        dir.path(),
        "tight",
        &[("buffer_s = 40.0", "buffer_s = 0.5")],
    );
    let (missed, stderr) = run_on(dir.path(), &tight, &pcm);
    assert!(heard.len() >= 3, "{heard:?}");
    assert!(
        missed.len() < heard.len(),
        "{} of {}",
        missed.len(),
        heard.len()
    );
    assert!(overruns(&stderr) > 0, "{stderr}");
}

#[test]
fn clips_older_than_the_retention_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let station = edited_station(
        dir.path(),
        "kept",
        &[(
            "[storage]",
            "[output.clips]\nquota_mb = 50\nretention_days = 7\n\n[storage]",
        )],
    );
    let clips = dir.path().join("data-kept").join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    let aged = |name: &str, days: u64| {
        let path = clips.join(name);
        std::fs::write(&path, b"RIFF").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
            .unwrap();
        path
    };
    let old = aged("20200101T000000.000Z_syn01.wav", 8);
    let recent = aged("20200102T000000.000Z_syn01.wav", 6);
    let (_, stderr) = run_on(dir.path(), &station, &common::demo_excerpt(10));
    assert!(stderr.contains("clips: "), "{stderr}");
    assert!(!old.exists(), "8 days old, retention 7: {stderr}");
    assert!(recent.exists(), "6 days old, retention 7");
}
