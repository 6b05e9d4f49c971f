//! The `warble-agent` binary on the bundled demo recording (the README's main job) and on
//! bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Command;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Calls in the demo recording's ground truth that overlap `[start, end)`.
fn calls_between(start: f64, end: f64) -> usize {
    let truth = std::fs::read_to_string(repo_file("demo/soundscape.calls.csv")).unwrap();
    truth
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<f64> = line
                .split(',')
                .skip(1)
                .take(2)
                .map(|v| v.parse().unwrap())
                .collect();
            cols[0] < end && cols[1] > start
        })
        .count()
}

#[test]
fn demo_windows_show_events_where_the_ground_truth_has_calls() {
    let demo = repo_file("demo/soundscape.flac");
    let (code, stdout, stderr) = agent(&["features", demo.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stdout.contains("12 windows from 60.0 s of audio"),
        "{stdout}"
    );
    let rows: Vec<(f64, f64, f64)> = stdout
        .lines()
        .filter(|l| l.ends_with('%') && l.contains(" s "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // index, start, –, end, s, band, Hz, rise, dB, active%
            (
                f[1].parse().unwrap(),
                f[3].parse().unwrap(),
                f[7].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 12, "{stdout}");
    for (start, end, rise_db) in rows {
        if calls_between(start, end) > 0 {
            assert!(
                rise_db > 30.0,
                "{start}–{end} s has calls but rises only {rise_db} dB"
            );
        } else {
            assert!(
                rise_db < 25.0,
                "{start}–{end} s has no call but rises {rise_db} dB"
            );
        }
    }
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
