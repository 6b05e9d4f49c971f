//! One bounded chaos run of the whole path, station to collector, against a real
//! mosquitto: a long-lived `warble-agent run` on a paced microphone, `analyze --config`
//! beside it filling the same outbox, an outbox quota crossed several times (the archive
//! of delivered events yields), the broker SIGKILLed and restarted twice, the station
//! SIGKILLed and restarted, and a hostile client publishing forged events and heartbeats
//! on the station's topics. At the end the collector holds every event the station made,
//! once, with no hole in any of the station's (boot, seq) ranges, nothing it did not
//! make, and every forged event counted invalid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;
use common::{Running, deliver_to, publish_all, repo_file, station, stored_ids, terminate};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use warble_core::event::Detection;
use warble_tests::broker::Mosquitto;

const ID: &str = "chaos-1";

/// `warble-agent run` on a paced microphone looping the demo excerpt for `seconds`, in
/// `dir` (see [`common::paced_station`]).
fn start_station(dir: &Path, config: &Path, seconds: u32) -> Running {
    let excerpt = common::demo_excerpt(30);
    let looped: Vec<f32> = excerpt
        .iter()
        .copied()
        .cycle()
        .take(seconds as usize * 32_000)
        .collect();
    common::paced_station(dir, config, looped, seconds)
}

/// Waits until the station in `run_dir` captures; its boot (the boot file it wrote at
/// start, before anything else ran on the data folder).
fn boot_of_started_station(run_dir: &Path, data: &Path) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(run_dir.join("agent.log")).unwrap_or_default();
        if log.contains("capturing from") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the station never captured:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(data.join("boot"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `analyze --config` on the whole demo recording (28 events, 10 kB): its events go to
/// the station's outbox (delivered by the running station) and to standard output, which
/// is returned.
fn analyze_beside(config: &Path) -> Vec<Detection> {
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args(["analyze", "--config", config.to_str().unwrap()])
        .arg(repo_file("demo/soundscape.flac"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_lines(&String::from_utf8_lossy(&out.stdout))
}

fn parse_lines(text: &str) -> Vec<Detection> {
    // A station killed mid-write may leave a torn last line; what it wrote whole counts.
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Forged messages on the station's topics: events another station made, events no
/// collector may store, garbage; and heartbeats claiming absurd ranges for a boot the
/// station never had. Returns how many event messages were sent.
fn forge(port: u16) -> usize {
    let mut template = common::sample_event(0);
    template.station = ID.into();
    template.boot = 7;
    template.id = Detection::make_id(ID, 7, 0);
    let json = |e: &Detection| serde_json::to_vec(e).unwrap();
    let mut events = Vec::new();
    // Another station's event on this station's topic.
    let mut other = common::sample_event(1);
    other.station = "wetland-03".into();
    events.push(json(&other));
    // An id that is not `station:boot:seq` of its fields.
    let mut wrong_id = template.clone();
    wrong_id.id = format!("{ID}:8:0");
    events.push(json(&wrong_id));
    // A 3,000-character id, a NUL in a name, confidence 7, seq beyond 2^63.
    let mut long = template.clone();
    long.id = "x".repeat(3000);
    events.push(json(&long));
    let mut nul = template.clone();
    nul.common = "Robin\0".into();
    events.push(json(&nul));
    let mut sure = template.clone();
    sure.confidence = 7.0;
    events.push(json(&sure));
    let mut far = template.clone();
    far.seq = u64::MAX;
    far.id = Detection::make_id(ID, 7, u64::MAX);
    events.push(json(&far));
    events.push(b"{\"schema\":\"warble.detection/1\"".to_vec());
    events.push(vec![0xff; 100]);
    let forged = events.len();
    publish_all(port, "hostile", &format!("warble/{ID}/detections"), events);
    let beats = vec![
        br#"{"delivered":[{"boot":7,"next_seq":9223372036854775807}]}"#.to_vec(),
        br#"{"delivered":[{"boot":18446744073709551615,"next_seq":1}]}"#.to_vec(),
        b"not a heartbeat".to_vec(),
    ];
    publish_all(
        port,
        "hostile-beat",
        &format!("warble/{ID}/heartbeat"),
        beats,
    );
    forged
}

#[test]
fn a_station_under_chaos_loses_forges_and_duplicates_nothing() {
    let started = Instant::now();
    let mut broker =
        Mosquitto::start_with("allow_anonymous true\nmax_queued_messages 1000000\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = station(dir.path(), ID);
    deliver_to(&config, broker.port(), "heartbeat_s = 5\n");
    // 20 kB: about 45 events, pending and archived together.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}outbox_quota_mb = 0.02\n")).unwrap();
    let db = dir.path().join("collected.sqlite");
    let mut collector = common::collector(
        broker.port(),
        &db,
        100,
        &["--request-replays", "1"],
        &dir.path().join("collector.log"),
    );
    common::wait_for(&broker, "Received SUBSCRIBE from warble-collect", 1);

    let mut made: Vec<Detection> = Vec::new();
    let first = dir.path().join("run-1");
    let data = dir.path().join(format!("data-{ID}"));
    let mut agent = start_station(&first, &config, 120);
    let mut boots = BTreeSet::from([boot_of_started_station(&first, &data)]);
    std::thread::sleep(Duration::from_secs(6));
    let forged = forge(broker.port());
    for _ in 0..3 {
        made.extend(analyze_beside(&config));
        std::thread::sleep(Duration::from_secs(1));
    }
    broker.kill().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart().unwrap();
    std::thread::sleep(Duration::from_secs(6));
    // The station is killed mid-stream and starts again (a watchdog, a power cut).
    agent.child().kill().unwrap();
    let _ = agent.child().wait();
    made.extend(parse_lines(
        &std::fs::read_to_string(first.join("detections.jsonl")).unwrap_or_default(),
    ));
    let second = dir.path().join("run-2");
    let mut agent = start_station(&second, &config, 30);
    boots.insert(boot_of_started_station(&second, &data));
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        made.extend(analyze_beside(&config));
    }
    broker.kill().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart().unwrap();
    let out = agent.child().wait().unwrap();
    let agent_log = std::fs::read_to_string(second.join("agent.log")).unwrap();
    assert!(out.success(), "{agent_log}");
    made.extend(parse_lines(
        &std::fs::read_to_string(second.join("detections.jsonl")).unwrap(),
    ));
    // The last events reach the collector after the station stopped: `deliver` sends
    // what is still pending (and the collector asks for what it missed from the archive).
    let (code, delivered, err) = common::agent(&[
        "deliver",
        "--config",
        config.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    assert_eq!(code, 0, "{delivered}{err}");

    let made_ids: BTreeSet<String> = made.iter().map(|e| e.id.clone()).collect();
    boots.extend(made.iter().map(|e| e.boot));
    let deadline = Instant::now() + Duration::from_secs(20);
    let complete = |held: &BTreeSet<String>, gaps: &[(u64, u64, u64)]| {
        made_ids.is_subset(held) && !gaps.iter().any(|g| boots.contains(&g.0))
    };
    let (held, report) = loop {
        let report = warble_collect::store::Store::open(&db)
            .unwrap()
            .report()
            .unwrap()
            .into_iter()
            .find(|r| r.station == ID)
            .unwrap();
        let held = stored_ids(&db, ID);
        if complete(&held, &report.gaps) || Instant::now() > deadline {
            break (held, report);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    terminate(collector.child());
    let collector_log = std::fs::read_to_string(dir.path().join("collector.log")).unwrap();
    let outbox = warble_agent::outbox::Outbox::open(data.join("outbox.sqlite"), 1 << 30)
        .unwrap()
        .stats()
        .unwrap();

    // Every event the station made is stored, and nothing it did not make.
    let missing: Vec<&String> = made_ids.difference(&held).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events missing: {missing:?}\ncollector:\n{collector_log}",
        missing.len(),
        made_ids.len()
    );
    let mut by_boot: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for id in &held {
        let mut parts = id.rsplitn(3, ':');
        let seq: u64 = parts.next().unwrap().parse().unwrap();
        let boot: u64 = parts.next().unwrap().parse().unwrap();
        assert!(
            boots.contains(&boot),
            "{id} is not of a boot the station had"
        );
        by_boot.entry(boot).or_default().insert(seq);
    }
    // No hole in any boot: 0..=highest, each once (events minted but not yet written to
    // a detections file when the station was killed are here too).
    for (boot, seqs) in &by_boot {
        let top = *seqs.last().unwrap();
        assert_eq!(
            seqs.len() as u64,
            top + 1,
            "boot {boot} has holes: {seqs:?}"
        );
    }
    assert!(
        !report.gaps.iter().any(|g| boots.contains(&g.0)),
        "{:?}",
        report.gaps
    );
    // (The forged heartbeats' boots show as lost: the station's own heartbeats do not
    // name them.)
    assert!(
        !report.lost.iter().any(|g| boots.contains(&g.0)),
        "{:?}",
        report.lost
    );
    assert_eq!(report.events, held.len() as u64);
    assert_eq!(
        report.invalid, forged as u64,
        "every forged event counted invalid"
    );
    assert_eq!(report.conflicts, 0);
    assert_eq!(
        outbox.dropped_total, 0,
        "the quota never dropped an undelivered event"
    );
    assert_eq!(outbox.depth, 0, "nothing left undelivered");
    // The quota was crossed several times: the archive holds at most 20 kB of the events.
    let bytes: usize = made
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap().len())
        .sum();
    assert!(
        bytes > 3 * 20_971,
        "only {bytes} bytes of events: the quota was not crossed 3 times"
    );
    assert!(outbox.archived_bytes <= 20_971, "{outbox:?}");
    eprintln!(
        "chaos: {:.0} s, outbox quota crossed {:.1} times, {} boots",
        started.elapsed().as_secs_f64(),
        bytes as f64 / 20_971.0,
        by_boot.len()
    );
    common::report_reliability(
        "chaos: quota crossed, broker SIGKILLed twice, station once, forged messages",
        &db,
        ID,
        &made_ids.union(&held).cloned().collect(),
    );
}
