//! A detection is committed to the station's outbox before any output sees it: a failing
//! output (a full disk, standard output on a full device) fails the command loudly, and
//! every detection is in the outbox all the same.
//!
//! `/dev/full` answers every write with ENOSPC, exactly as a full filesystem does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;
use common::{file_microphone, station};

use std::path::Path;
use std::process::{Command, Stdio};

use warble_agent::outbox::Outbox;

/// The codes and sample spans of the events in a station's outbox, in order.
fn outbox_spans(data_dir: &Path) -> Vec<(String, u64, u64)> {
    let outbox = Outbox::open(data_dir.join("outbox.sqlite"), 1 << 30).unwrap();
    outbox
        .pending(10_000)
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p.event.code.to_string(),
                p.event.start_sample,
                p.event.end_sample,
            )
        })
        .collect()
}

fn spans(stdout: &[u8]) -> Vec<(String, u64, u64)> {
    common::detection_spans(&String::from_utf8_lossy(stdout))
        .into_iter()
        .map(|(code, start, end, _)| (code, start, end))
        .collect()
}

#[test]
fn analysis_with_a_full_output_fails_and_keeps_every_detection_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let demo = common::repo_file("demo/soundscape.flac");
    let analyze = |id: &str, out: &[&str], stdout: Stdio| {
        let st = station(dir.path(), id);
        Command::new(env!("CARGO_BIN_EXE_warble-agent"))
            .args(["analyze", "--config", st.to_str().unwrap()])
            .args(out)
            .arg(&demo)
            .stdout(stdout)
            .output()
            .unwrap()
    };
    let reference = analyze("ok", &[], Stdio::piped());
    assert!(reference.status.success());
    let expected = spans(&reference.stdout);
    assert!(expected.len() >= 5, "{expected:?}");
    assert_eq!(outbox_spans(&dir.path().join("data-ok")), expected);

    // Standard output on a full device: every line fails.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = analyze("stdout-full", &[], Stdio::from(full));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("every detection is in the outbox"),
        "{stderr}"
    );
    assert_eq!(outbox_spans(&dir.path().join("data-stdout-full")), expected);

    // An output file on a full filesystem: its buffer fails when flushed.
    let out = analyze("file-full", &["--out", "/dev/full"], Stdio::piped());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(outbox_spans(&dir.path().join("data-file-full")), expected);
}

#[test]
fn a_station_whose_output_file_is_full_keeps_every_detection_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    // Three times the demo: more detections than the file's 8-KiB buffer holds, so writes
    // fail while the station runs, not only at its end. (Read unpaced, faster than the
    // ring buffer holds: which detections there are varies from run to run, so the check
    // is that every one the station made is in the outbox.)
    let audio = common::demo_excerpt(60).repeat(3);
    let alsa = file_microphone(dir.path(), &audio);
    let st = station(dir.path(), "full");
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .env("ALSA_CONFIG_PATH", &alsa)
        .args(["run", "--config", st.to_str().unwrap()])
        .args(["--max-samples", &audio.len().to_string()])
        .args(["--out", "/dev/full"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("every detection is in the outbox"),
        "{stderr}"
    );
    let made: usize = stderr
        .split(" detections,")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a run summary: {stderr}"));
    assert!(made >= 20, "{stderr}");
    let outbox = Outbox::open(dir.path().join("data-full/outbox.sqlite"), 1 << 30).unwrap();
    let seqs: Vec<u64> = outbox
        .pending(10_000)
        .unwrap()
        .iter()
        .map(|p| p.event.seq)
        .collect();
    assert_eq!(seqs, (0..made as u64).collect::<Vec<_>>());
}
