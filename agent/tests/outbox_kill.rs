//! The outbox survives SIGKILL at an arbitrary instant: every event a writer had committed
//! before it was killed is there after reopening, in order, and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warble_agent::outbox::Outbox;
use warble_core::SpeciesCode;
use warble_core::event::{DETECTION_SCHEMA, Detection, ModelRef};

const CHILD_ENV: &str = "WARBLE_OUTBOX_KILL_CHILD";

fn event(seq: u64) -> Detection {
    let start = chrono::DateTime::parse_from_rfc3339("2026-05-01T04:30:00Z")
        .unwrap()
        .to_utc();
    Detection {
        schema: DETECTION_SCHEMA.into(),
        id: Detection::make_id("st", 1, seq),
        station: "st".into(),
        boot: 1,
        seq,
        start,
        end: start,
        start_sample: 0,
        end_sample: 0,
        code: SpeciesCode::new("syn01").unwrap(),
        scientific: "S".into(),
        common: "C".into(),
        confidence: 0.5,
        model: ModelRef {
            id: "m".into(),
            version: "1.0.0".into(),
        },
        location: None,
        clip: None,
        historical: false,
        revision: 0,
        is_final: true,
    }
}

/// Runs only inside the child process: commits events one at a time and reports each
/// commit on stdout, until it is killed (or a bound is reached).
#[test]
fn child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut outbox = Outbox::open(&path, 1 << 30).unwrap();
    let mut out = std::io::stdout().lock();
    for seq in 0..100_000 {
        outbox.push(&[event(seq)]).unwrap();
        writeln!(out, "committed {seq}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn committed_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    for round in 0..3u64 {
        let _ = std::fs::remove_file(&path);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_writer",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = 50 + 70 * round;
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < Duration::from_secs(60) {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(n) = line.strip_prefix("committed ") {
                last = Some(n.parse::<u64>().unwrap());
                if last >= Some(target) {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // What it reported before it died, read or not yet read when it was killed.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("committed ") {
                last = Some(n.parse::<u64>().unwrap());
            }
        }
        let last = last.expect("the child committed events");
        let outbox = Outbox::open(&path, 1 << 30).unwrap();
        let pending = outbox.pending(1_000_000).unwrap();
        let seqs: Vec<u64> = pending.iter().map(|p| p.event.seq).collect();
        // Every reported commit is there, in order; at most the one in flight beyond it.
        assert!(
            seqs.len() as u64 > last,
            "round {round}: {} < {}",
            seqs.len(),
            last + 1
        );
        assert!(
            seqs.len() as u64 <= last + 2,
            "round {round}: {} events",
            seqs.len()
        );
        assert!(seqs.iter().enumerate().all(|(i, &s)| s == i as u64));
        assert!(
            pending.iter().all(|p| p.event.historical),
            "re-sent as historical"
        );
    }
}
