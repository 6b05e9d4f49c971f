//! A station whose data disk fills to the brim while it runs: a small tmpfs (mounted in a
//! private mount namespace, `unshare -Urm`, so no privileges are needed) holds its data
//! folder; a filler file takes every free block for a while, then is removed. Detections
//! made meanwhile wait (in the outbox's free pages, or in memory while it refuses
//! commits) and the broker's acknowledgements still drain it; at the end the collector
//! holds every event the station made, and what could not be kept is counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;
use common::{Running, deliver_to, station, stored_ids};

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use warble_tests::broker::Mosquitto;

const ID: &str = "full-1";

/// The shell run inside the namespace: mount, start the station, fill the disk while it
/// runs (and run `analyze --config` beside it, full and not), free it, let the station
/// finish, deliver what is left, and keep copies of what the tmpfs held (it vanishes
/// with the namespace).
const SCRIPT: &str = r#"
set -u
mount -t tmpfs -o size=16m warble-full "$DATA" || { echo "mount failed" >&2; exit 97; }
"$AGENT" run --config "$ST" --duration 45 --out "$KEEP/run.jsonl" 2> "$KEEP/agent.log" &
pid=$!
sleep 6
"$AGENT" analyze --config "$ST" "$DEMO" > "$KEEP/analyze-1.jsonl" 2> "$KEEP/analyze-1.log"
dd if=/dev/zero of="$DATA/filler" bs=4k 2> /dev/null
df -k "$DATA" > "$KEEP/df-full"
echo full > "$KEEP/phase"
"$AGENT" analyze --config "$ST" "$DEMO" > "$KEEP/analyze-2.jsonl" 2> "$KEEP/analyze-2.log"
echo $? > "$KEEP/analyze-2.rc"
sleep 16
echo freed > "$KEEP/phase"
rm "$DATA/filler"
"$AGENT" analyze --config "$ST" "$DEMO" > "$KEEP/analyze-3.jsonl" 2> "$KEEP/analyze-3.log"
wait $pid
echo $? > "$KEEP/agent.rc"
"$AGENT" deliver --config "$ST" --timeout 20 > "$KEEP/deliver.out" 2>&1
cp "$DATA"/outbox.sqlite "$KEEP/"
"#;

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_disk_full_to_the_brim_loses_no_detection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let config = station(dir.path(), ID);
    deliver_to(&config, broker.port(), "heartbeat_s = 5\n");
    let data = dir.path().join(format!("data-{ID}"));
    std::fs::create_dir_all(&data).unwrap();
    let keep = dir.path().join("keep");
    std::fs::create_dir_all(&keep).unwrap();
    let db = dir.path().join("collected.sqlite");
    let mut collector = common::collector(
        broker.port(),
        &db,
        120,
        &[],
        &dir.path().join("collector.log"),
    );
    common::wait_for(&broker, "Received SUBSCRIBE from warble-collect", 1);
    let excerpt = common::demo_excerpt(30);
    let looped: Vec<f32> = excerpt.iter().copied().cycle().take(45 * 32_000).collect();
    let (alsa, _writer) = common::paced_microphone(dir.path(), looped, 75.0);
    let mut script = Running::new(
        Command::new("unshare")
            .args(["-Urm", "sh", "-c", SCRIPT])
            .env("DATA", &data)
            .env("AGENT", env!("CARGO_BIN_EXE_warble-agent"))
            .env("ST", &config)
            .env("KEEP", &keep)
            .env("DEMO", common::repo_file("demo/soundscape.flac"))
            .env("ALSA_CONFIG_PATH", &alsa)
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) runs"),
    );
    // While the disk is full: how many of the station's events the collector holds, a
    // few seconds in and at the end.
    let phase = || read(&keep.join("phase")).trim().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while phase() != "full" {
        assert!(
            std::time::Instant::now() < deadline,
            "the disk never filled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let early = stored_ids(&db, ID).len();
    let mut late = early;
    while phase() == "full" {
        late = stored_ids(&db, ID).len();
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = script.child().wait().unwrap();
    let agent_log = read(&keep.join("agent.log"));
    let mut stderr = String::new();
    use std::io::Read;
    script
        .child()
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        out.success(),
        "the namespace script failed ({out:?}): {stderr}\n{agent_log}"
    );
    assert_eq!(read(&keep.join("agent.rc")).trim(), "0", "{agent_log}");
    // The disk was full to the brim: not a block left.
    let df = read(&keep.join("df-full"));
    let available: u64 = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("df output: {df}"));
    assert_eq!(available, 0, "{df}");
    // A command started on the full disk either says why it cannot run (no room for its
    // boot counter) or, once the station gave up the reserve, runs: then its events
    // count like the others.
    let beside_ran = read(&keep.join("analyze-2.rc")).trim() == "0";
    assert!(
        beside_ran || read(&keep.join("analyze-2.log")).contains("No space left on device"),
        "{}",
        read(&keep.join("analyze-2.log"))
    );
    // Detections kept flowing while it was full: the reserve was given up, no event had
    // to wait in memory, and the collector received the station's events meanwhile.
    // (Whichever process on the data folder meets the full disk, or the room, first says
    // so: the station, or `analyze` beside it.)
    let logs: String = ["agent.log", "analyze-2.log", "analyze-3.log"]
        .iter()
        .map(|f| read(&keep.join(f)))
        .collect();
    assert!(logs.contains("released the 4 MiB reserve"), "{logs}");
    assert!(!logs.contains("in memory"), "{logs}");
    assert!(logs.contains("the 4 MiB reserve is back"), "{logs}");
    assert!(
        late > early,
        "nothing arrived while the disk was full ({early} → {late})\n{agent_log}"
    );
    // Every event made reached the collector; the outbox dropped nothing.
    let made = common::count_before(&agent_log, " detections,") as usize;
    let ids = |file: &str| -> Vec<String> {
        read(&keep.join(file))
            .lines()
            .map(|l| {
                serde_json::from_str::<warble_core::event::Detection>(l)
                    .unwrap()
                    .id
            })
            .collect()
    };
    let live = ids("run.jsonl");
    assert!(live.len() == made && made >= 15, "{made} {live:?}");
    let mut produced: BTreeSet<String> = live.into_iter().collect();
    produced.extend(ids("analyze-1.jsonl"));
    produced.extend(ids("analyze-3.jsonl"));
    if beside_ran {
        produced.extend(ids("analyze-2.jsonl"));
    }
    let analyzed = produced.len() - made;
    assert_eq!(analyzed, if beside_ran { 84 } else { 56 });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut stored = stored_ids(&db, ID);
    while stored.len() < produced.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        stored = stored_ids(&db, ID);
    }
    assert_eq!(stored, produced);
    let outbox = warble_agent::outbox::Outbox::open(keep.join("outbox.sqlite"), 1 << 30)
        .unwrap()
        .stats()
        .unwrap();
    assert_eq!(
        (stored.len(), outbox.depth, outbox.dropped_total),
        (made + analyzed, 0, 0),
        "{outbox:?}\n{agent_log}\ndeliver: {}",
        read(&keep.join("deliver.out"))
    );
    drop(collector.child().kill());
    common::report_reliability("data disk full to the brim for 16 s", &db, ID, &produced);
    eprintln!(
        "full disk: {made} + {analyzed} events, {} stored ({} while full), {} acknowledged without archiving",
        stored.len(),
        late - early,
        outbox.unarchived_total
    );
}
