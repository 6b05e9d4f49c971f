//! `warble-collect watch` on a real mosquitto: a station's status, the first and final
//! reports of an event in the ground truth, an event that is not, a forged message and a
//! heartbeat — each detection printed as it arrives with its report kind, its delay after
//! the sound and its verdict, and the figures at the end; it stops when the station says it
//! went offline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, detection, json, publish};
use warble_core::SpeciesCode;
use warble_core::wire::{Heartbeat, Status};
use warble_tests::broker::Mosquitto;

#[test]
fn watch_prints_detections_as_they_arrive_and_the_figures_at_the_end() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.csv");
    std::fs::write(
        &truth,
        "start_s,end_s,code\n3.0,6.0,eurrob1\n20,23,eurrob1\n",
    )
    .unwrap();
    let mut watch = Killed(
        Command::new(env!("CARGO_BIN_EXE_warble-collect"))
            .args([
                "watch",
                "--broker",
                &format!("mqtt://127.0.0.1:{}", broker.port()),
            ])
            .args(["--truth", truth.to_str().unwrap(), "--sample-rate", "32000"])
            .args(["--until-offline", "--duration", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker
        .log()
        .matches("Received SUBSCRIBE from warble-watch")
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "{}", broker.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    let now = chrono::Utc::now();
    // A robin at 3–6 s of the recording, heard 0.2 s ago: first sight, then final.
    let mut first = detection("fen-1", 0);
    (first.start_sample, first.end_sample) = (96_000, 192_000);
    first.end = now - chrono::Duration::milliseconds(200);
    first.start = first.end - chrono::Duration::seconds(3);
    first.is_final = false;
    let mut last = first.clone();
    last.is_final = true;
    last.revision = 1;
    // A blackcap at 40–43 s, closed when first reported: not in the ground truth.
    let mut other = detection("fen-1", 1);
    (other.start_sample, other.end_sample) = (1_280_000, 1_376_000);
    other.code = SpeciesCode::new("blackc1").unwrap();
    other.common = "Eurasian Blackcap".into();
    other.end = now;
    let beat = Heartbeat {
        uptime_s: 60,
        audio_s: 60.0,
        cpu_s: Some(1.5),
        realtime_factor: Some(85.0),
        inference_ms: Some(3.25),
        peak_rss_bytes: Some(48_000_000),
        ..Heartbeat::default()
    };
    let topic = |leaf: &str| format!("warble/fen-1/{leaf}");
    publish(
        broker.port(),
        vec![
            (topic("status"), json(&Status::online("0.9.0")), true),
            (topic("detections"), json(&first), false),
            (topic("detections"), json(&last), false),
            (topic("detections"), json(&detection("fen-2", 0)), false),
            (topic("detections"), json(&other), false),
            (topic("heartbeat"), json(&beat), false),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    publish(
        broker.port(),
        vec![(topic("status"), json(&Status::offline()), true)],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = watch.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "watch did not stop when the station went offline"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    watch
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{status}: {out}");
    let lines: Vec<&str> = out.lines().collect();
    let line = |i: usize| *lines.get(i).unwrap_or_else(|| panic!("line {i}:\n{out}"));
    assert!(line(0).contains("fen-1  eurrob1 European Robin"), "{out}");
    assert!(line(0).contains("0.87  first sight"), "{out}");
    assert!(line(0).contains("3.0–  6.0 s  ✓ in ground truth"), "{out}");
    let after = |l: &str| -> f64 {
        let (_, rest) = l.split_once("  +").unwrap();
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let heard = after(line(0));
    assert!((0.15..5.0).contains(&heard), "{heard}: {out}");
    assert!(line(1).contains("0.87  final "), "{out}");
    assert!(line(1).contains("✓ in ground truth"), "{out}");
    assert!(
        line(2).contains("(not a valid detection: ignored)"),
        "fen-2's event on fen-1's topic: {out}"
    );
    assert!(line(3).contains("blackc1 Eurasian Blackcap"), "{out}");
    assert!(line(3).contains("final "), "{out}");
    assert!(
        line(3).contains("40.0– 43.0 s  ✗ not in ground truth"),
        "{out}"
    );
    for summary in [
        "2 detection(s), 2 final; 0 late, 1 invalid message(s)",
        "against the ground truth: precision 0.50 (1/2 detections match a call), recall 0.50 (1/2 calls found)",
        "first report, after the sound that raised it: p50",
        "fen-1: 60 s of audio, 85× real time, 1.5 CPU-s (40 audio-s per CPU-s, 2.5 % of a core), 3.2 ms inference per window, peak RSS 48 MB (its last heartbeat)",
    ] {
        assert!(out.contains(summary), "no {summary:?} in:\n{out}");
    }
}
