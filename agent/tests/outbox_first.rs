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
    let made = common::count_before(&stderr, " detections,") as usize;
    assert!(made >= 20, "{stderr}");
    let outbox = Outbox::open(dir.path().join("data-full/outbox.sqlite"), 1 << 30).unwrap();
    // In the order they were last committed: an event's final report replaces its first
    // one, behind the events committed in between.
    let mut seqs: Vec<u64> = outbox
        .pending(10_000)
        .unwrap()
        .iter()
        .map(|p| p.event.seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..made as u64).collect::<Vec<_>>());
}

/// An error in the capture loop (here: the `--record` file failing mid-run) ends the run,
/// and the events open at that moment are closed as they stand and committed, not thrown
/// away with the loop.
#[test]
fn events_open_when_the_capture_loop_fails_reach_the_outbox() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    // 8 s of the demo; its first call (syn22, 1–5 s) is open from 4 s (its first 3-s
    // window complete) until the window after its last one, at 6 s.
    let wav = dir.path().join("excerpt.wav");
    let ints = common::write_wav_i16(&wav, &common::demo_excerpt(8));
    let whole_station = station(dir.path(), "whole");
    let reference = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args(["analyze", "--config", whole_station.to_str().unwrap()])
        .args(["--batch", "1", wav.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(reference.status.success());
    let whole = spans(&reference.stdout);
    assert!(
        whole.contains(&("syn22".to_owned(), 32_000, 160_000)),
        "{whole:?}"
    );
    // At real-time pace (small capture periods), the recording to a FIFO whose reader
    // leaves after 4.5 s of audio (32-bit float at 32 kHz): the next write fails with a
    // broken pipe while syn22 is open.
    let floats: Vec<f32> = ints.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let (alsa, _writer) = common::paced_microphone(dir.path(), floats, 9.0);
    let fifo = dir.path().join("record.fifo");
    common::mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&fifo).unwrap();
            let mut buf = vec![0u8; 44 + 4 * 144_000];
            f.read_exact(&mut buf).unwrap();
        })
    };
    let st = station(dir.path(), "broken");
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .env("ALSA_CONFIG_PATH", &alsa)
        .args(["run", "--config", st.to_str().unwrap()])
        .args(["--max-samples", &ints.len().to_string()])
        .args(["--record", fifo.to_str().unwrap()])
        .output()
        .unwrap();
    reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("writing the recording"), "{stderr}");
    let held = outbox_spans(&dir.path().join("data-broken"));
    // syn22 is committed, cut short at the last window classified before the failure.
    assert_eq!(held, [("syn22".to_owned(), 32_000, 128_000)], "{stderr}");
    // What the station printed is what it committed.
    assert_eq!(spans(&out.stdout), held);
}

/// An event lives only in memory until it is emitted: a call that never ends (a chorus, a
/// stuck model output) is emitted in parts of at most a minute as it goes, so a SIGKILL
/// loses at most the last part.
#[test]
fn a_call_that_never_ends_is_committed_in_parts_before_a_sigkill() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    // Every class above its threshold in every window: 25 calls that never end.
    let st = station(dir.path(), "stuck");
    let text = std::fs::read_to_string(&st)
        .unwrap()
        .replace("[model]\n", "[model]\nmin_confidence = 0.0\n");
    std::fs::write(&st, text).unwrap();
    // 75 s of audio at ten times real time (the ring buffer keeps up), then silence at
    // real time, so the station is still running when it is killed.
    let fifo = dir.path().join("mic.fifo");
    common::mkfifo(&fifo);
    let alsa = common::alsa_file_device(dir.path(), &fifo);
    let feeder = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let Ok(mut out) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
                return;
            };
            let period = vec![0u8; 800 * 4];
            let started = Instant::now();
            for i in 0..(120 * 40) {
                if out.write_all(&period).is_err() {
                    return;
                }
                let speed = if i < 75 * 40 { 10.0 } else { 1.0 };
                let due = if i < 75 * 40 {
                    Duration::from_secs_f64(i as f64 * 0.025 / speed)
                } else {
                    Duration::from_secs_f64(7.5 + (i - 75 * 40) as f64 * 0.025)
                };
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    let child = common::Running::new(
        Command::new(env!("CARGO_BIN_EXE_warble-agent"))
            .env("ALSA_CONFIG_PATH", &alsa)
            .args(["run", "--config", st.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let outbox_path = dir.path().join("data-stuck/outbox.sqlite");
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed = loop {
        let n = Outbox::open(&outbox_path, 1 << 30)
            .ok()
            .and_then(|o| o.stats().ok())
            .map_or(0, |s| s.depth);
        if n >= 25 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no part committed while the calls go on"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(child); // SIGKILL
    drop(feeder);
    let parts = Outbox::open(&outbox_path, 1 << 30)
        .unwrap()
        .pending(1000)
        .unwrap();
    assert!(parts.len() as u64 >= committed);
    for p in &parts {
        let seconds = (p.event.end_sample - p.event.start_sample) as f64 / 32_000.0;
        assert!(seconds <= 60.0, "{seconds} s: {:?}", p.event);
        assert_eq!(p.event.start_sample, 0, "the first part of each call");
    }
}
