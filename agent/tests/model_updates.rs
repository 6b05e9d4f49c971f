//! Model updates on live stations: agent processes on paced file-backed microphones, a
//! real mosquitto, offers published (retained) as `warble-export push` publishes them,
//! and the stations' model reports read as an operator reads them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warble_core::bundle::SecretKey;
use warble_core::bundle::offer::Offer;
use warble_core::event::Detection;
use warble_core::wire::{ModelReport, ModelState};
use warble_tests::broker::Mosquitto;

/// Seconds of live audio a model runs on probation in these stations.
const PROBATION_S: u64 = 6;

/// One test at a time: each runs several agents on paced audio.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn operator() -> SecretKey {
    SecretKey::from_seed([7; 32], "operator")
}

/// Station `id` in its own folder under `dir`: the demo model, the operator's key trusted
/// beside the demo's, group `dawn`, delivering to the broker on `port`, probation
/// `probation_s`.
fn station_in(dir: &Path, id: &str, port: u16, probation_s: u64) -> PathBuf {
    let home = dir.join(id);
    std::fs::create_dir_all(&home).unwrap();
    let key = home.join("operator.pub");
    std::fs::write(&key, operator().public().to_text()).unwrap();
    let path = common::station(&home, id);
    common::deliver_to(&path, port, "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            &format!("id = \"{id}\"\n"),
            &format!("id = \"{id}\"\ngroup = \"dawn\"\n"),
        )
        .replace(
            "trusted_keys = [",
            &format!(
                "probation_s = {probation_s}\ntrusted_keys = [\"{}\", ",
                key.display()
            ),
        );
    std::fs::write(&path, text).unwrap();
    path
}

/// `warble-agent run` for `seconds` on a paced microphone playing the demo recording,
/// standard error in `<home>/agent-<n>.log`.
struct Live {
    agent: common::Running,
    log: PathBuf,
}

fn start(station: &Path, seconds: f64, run: usize) -> Live {
    let home = station.parent().unwrap().join(format!("run-{run}"));
    std::fs::create_dir_all(&home).unwrap();
    let (alsa, _writer) = common::paced_microphone(&home, common::demo_excerpt(55), 120.0);
    let log = home.join("agent.log");
    let agent = common::Running::new(
        Command::new(env!("CARGO_BIN_EXE_warble-agent"))
            .env("ALSA_CONFIG_PATH", &alsa)
            .args(["run", "--config", station.to_str().unwrap()])
            .args(["--duration", &seconds.to_string()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    Live { agent, log }
}

impl Live {
    /// Waits for the agent to end; its detections.
    fn detections(self) -> Vec<Detection> {
        let out = self.agent.output();
        let log = std::fs::read_to_string(&self.log).unwrap();
        assert!(out.status.success(), "{log}");
        common::parse_detections(&out.stdout)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// The logs of several agents, for a failure message.
fn logs_of(live: &[Live]) -> String {
    live.iter()
        .map(Live::log)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The model reports on `warble/+/model`, by station.
struct Reports(std::sync::mpsc::Receiver<(String, Vec<u8>)>);

impl Reports {
    fn subscribe(broker: &Mosquitto, client_id: &str) -> Self {
        Self(common::subscribe(
            broker.port(),
            client_id,
            "warble/+/model",
        ))
    }

    /// Reads reports until `done` holds for one of each of `stations` (at most
    /// `within`); every report seen, with its station.
    fn until(
        &self,
        stations: &[&str],
        within: Duration,
        done: impl Fn(&ModelReport) -> bool,
        logs: impl Fn() -> String,
    ) -> Vec<(String, ModelReport)> {
        let mut seen = Vec::new();
        let mut waiting: std::collections::BTreeSet<&str> = stations.iter().copied().collect();
        let deadline = Instant::now() + within;
        while !waiting.is_empty() {
            assert!(
                Instant::now() < deadline,
                "no report for {waiting:?}: {seen:#?}\n{}",
                logs()
            );
            let Ok((topic, payload)) = self.0.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            let station = topic.split('/').nth(1).unwrap().to_owned();
            let report: ModelReport = serde_json::from_slice(&payload).unwrap();
            if done(&report) {
                waiting.remove(station.as_str());
            }
            seen.push((station, report));
        }
        seen
    }
}

/// Publishes `message` retained on `topic` (as `warble-export push` does).
fn publish(port: u16, topic: &str, dir: &Path, message: &[u8]) {
    let file = dir.join("offer.bin");
    std::fs::write(&file, message).unwrap();
    let status = Command::new("mosquitto_pub")
        .args(["-p", &port.to_string(), "-t", topic, "-r", "-q", "1", "-f"])
        .arg(&file)
        .status()
        .expect("mosquitto_pub (Debian's mosquitto-clients, from scripts/install-deps)");
    assert!(status.success());
}

/// One boot's seqs run from 0 with no hole, and its events name `versions` in that
/// order, each in one unbroken run.
fn assert_one_switch(station: &str, events: &[Detection], versions: &[&str]) {
    let mut events = events.to_vec();
    events.sort_by_key(|e| e.seq);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "{station}: no hole"
    );
    let mut runs: Vec<&str> = events.iter().map(|e| e.model.version.as_str()).collect();
    runs.dedup();
    assert_eq!(
        runs, versions,
        "{station}: the models of its events in seq order"
    );
}

#[test]
fn a_good_update_commits_on_every_station_and_their_events_switch_model_once() {
    let _serial = serial();
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ids = ["marsh-1", "marsh-2", "marsh-3"];
    let stations: Vec<PathBuf> = ids
        .iter()
        .map(|id| station_in(dir.path(), id, broker.port(), PROBATION_S))
        .collect();
    let reports = Reports::subscribe(&broker, "watcher");
    let live: Vec<Live> = stations.iter().map(|s| start(s, 32.0, 0)).collect();
    let logs = || logs_of(&live);
    // Each says what it runs when it connects.
    reports.until(
        &ids,
        Duration::from_secs(20),
        |r| r.state == ModelState::Committed && r.active.version == "0.1.0",
        logs,
    );
    // After some birds under 0.1.0, 0.2.0 is offered to the group.
    std::thread::sleep(Duration::from_secs(6));
    let newer = warble_tests::demo::resigned("0.2.0", &operator(), |_, _| {});
    let offer = Offer::encode(&newer, false, chrono::Utc::now(), &operator());
    publish(
        broker.port(),
        "warble/fleet/dawn/bundle",
        dir.path(),
        &offer,
    );
    let seen = reports.until(
        &ids,
        Duration::from_secs(30),
        |r| r.state == ModelState::Committed && r.active.version == "0.2.0",
        logs,
    );
    for id in ids {
        let states: Vec<ModelState> = seen
            .iter()
            .filter(|(s, _)| s == id)
            .map(|(_, r)| r.state)
            .collect();
        assert_eq!(
            states,
            [
                ModelState::Receiving,
                ModelState::Verifying,
                ModelState::Testing,
                ModelState::Probation,
                ModelState::Committed
            ],
            "{id}"
        );
        let (_, committed) = seen.iter().rfind(|(s, _)| s == id).unwrap();
        assert_eq!(committed.previous.as_ref().unwrap().version, "0.1.0");
    }
    for (id, run) in ids.iter().zip(live) {
        assert_one_switch(id, &run.detections(), &["0.1.0", "0.2.0"]);
    }
    // Restarted, a station runs the committed model from its first window.
    let again = start(&stations[0], 8.0, 1);
    let events = again.detections();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.model.version == "0.2.0"),
        "{events:?}"
    );
}

/// A SIGKILL as the station reports each install step: restarted, it starts on the model
/// it ran before (the new one never proved itself) and detects, and a model killed on
/// probation is reported rolled back and not taken again from its retained offer.
#[test]
fn an_agent_killed_during_an_install_step_restarts_on_a_working_model() {
    let _serial = serial();
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (n, step) in [
        ModelState::Verifying,
        ModelState::Testing,
        ModelState::Probation,
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("reed-{n}");
        // A probation longer than the run: the kill finds it still on trial.
        let station = station_in(dir.path(), &id, broker.port(), 600);
        let reports = Reports::subscribe(&broker, &format!("watcher-{n}"));
        let mut first = start(&station, 60.0, 0);
        reports.until(
            &[&id],
            Duration::from_secs(20),
            |r| r.state == ModelState::Committed,
            || first.log(),
        );
        let newer = warble_tests::demo::resigned("0.2.0", &operator(), |_, _| {});
        let offer = Offer::encode(&newer, false, chrono::Utc::now(), &operator());
        publish(
            broker.port(),
            &format!("warble/{id}/bundle"),
            dir.path(),
            &offer,
        );
        reports.until(
            &[&id],
            Duration::from_secs(20),
            |r| r.state == step,
            || first.log(),
        );
        first.agent.child().kill().unwrap();
        first.agent.child().wait().unwrap();

        let again = start(&station, 10.0, 1);
        let seen = reports.until(
            &[&id],
            Duration::from_secs(20),
            |r| r.active.version == "0.1.0" && r.state != ModelState::Receiving,
            || again.log(),
        );
        let log = again.log();
        let events = again.detections();
        // It detects: a working model from its first window (after a kill while testing,
        // the offer may be taken again at once: then 0.2.0 is on probation beside 0.1.0).
        assert!(!events.is_empty(), "{step:?}: {log}");
        assert!(log.contains("model warble-demo 0.1.0"), "{log}");
        if step == ModelState::Probation {
            let (_, report) = seen.last().unwrap();
            assert_eq!(report.state, ModelState::RolledBack, "{seen:#?}");
            assert!(
                report.reason.as_deref().unwrap().contains("on probation"),
                "{report:?}"
            );
            assert!(events.iter().all(|e| e.model.version == "0.1.0"), "{log}");
        }
    }
}

/// `warble-export rollout` (the workspace's binary, built by `cargo test --workspace`).
fn export_bin() -> PathBuf {
    warble_tests::bins::workspace_bin(
        "warble-export",
        &["export", "core", "mqtt", "firmware-config", "infer"],
    )
}

#[test]
fn a_rollout_whose_second_wave_fails_stops_restores_that_wave_and_reports() {
    let _serial = serial();
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ids = ["fen-1", "fen-2", "fen-3", "fen-4"];
    let stations: Vec<PathBuf> = ids
        .iter()
        .map(|id| station_in(dir.path(), id, broker.port(), PROBATION_S))
        .collect();
    // fen-3 and fen-4 name syn24, which the new model no longer has: they refuse it.
    for s in &stations[2..] {
        let text = std::fs::read_to_string(s).unwrap().replace(
            "trusted_keys = [",
            "exclude = [\"syn24\"]\ntrusted_keys = [",
        );
        std::fs::write(s, text).unwrap();
    }
    let newer = warble_tests::demo::resigned("0.2.0", &operator(), |_, rows| {
        let last = rows.last_mut().unwrap();
        last.0 = warble_core::labels::SpeciesCode::new("syn99").unwrap();
    });
    let bundle = dir.path().join("newer.warble");
    std::fs::write(&bundle, newer).unwrap();
    let key = dir.path().join("operator.key");
    std::fs::write(&key, operator().to_text()).unwrap();
    let inventory = dir.path().join("inventory.csv");
    let rows: String = ids.iter().map(|id| format!("{id},dawn\n")).collect();
    std::fs::write(&inventory, format!("id,group\n{rows}")).unwrap();

    let reports = Reports::subscribe(&broker, "watcher");
    let live: Vec<Live> = stations.iter().map(|s| start(s, 50.0, 0)).collect();
    let logs = || logs_of(&live);
    reports.until(
        &ids,
        Duration::from_secs(20),
        |r| r.state == ModelState::Committed,
        logs,
    );
    // Some birds under 0.1.0 first.
    std::thread::sleep(Duration::from_secs(6));
    let state = dir.path().join("rollout.json");
    let demo = common::repo_file("models/demo/warble-demo-0.1.0.warble");
    let demo_key = common::repo_file("models/demo/warble-demo.pub");
    let out = Command::new(export_bin())
        .arg("rollout")
        .arg(&bundle)
        .args(["--broker", &format!("mqtt://127.0.0.1:{}", broker.port())])
        .args(["--group", "dawn", "--inventory"])
        .arg(&inventory)
        .arg("--previous")
        .arg(&demo)
        .arg("--key")
        .arg(&key)
        .arg("--trusted")
        .arg(&demo_key)
        .args([
            "--waves",
            "25%,100%",
            "--abort-failed",
            "50%",
            "--min-stations",
            "3",
        ])
        .args([
            "--probation",
            &format!("{PROBATION_S}s"),
            "--wave-timeout",
            "40s",
        ])
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an aborted rollout fails: {stdout}{stderr}"
    );
    assert!(stderr.contains("rollout stopped in wave 2"), "{stderr}");
    // The table: wave 1 committed, the refusals with their reason, fen-2 restored.
    let row = |id: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}: {stdout}"))
            .to_owned()
    };
    assert!(row("fen-1").contains("committed"), "{stdout}");
    assert!(row("fen-2").contains("restored"), "{stdout}\n{}", logs());
    for id in ["fen-3", "fen-4"] {
        let r = row(id);
        assert!(r.contains("failed: rejected") && r.contains("syn24"), "{r}");
    }
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["status"]["state"], "aborted");
    assert_eq!(saved["status"]["wave"], 2);

    // What the stations did: fen-1 runs 0.2.0, fen-2 went there and back, the others never
    // left 0.1.0.
    let runs: Vec<Vec<Detection>> = live.into_iter().map(Live::detections).collect();
    assert_one_switch("fen-1", &runs[0], &["0.1.0", "0.2.0"]);
    assert_one_switch("fen-2", &runs[1], &["0.1.0", "0.2.0", "0.1.0"]);
    assert_one_switch("fen-3", &runs[2], &["0.1.0"]);
    assert_one_switch("fen-4", &runs[3], &["0.1.0"]);
}

/// The last RolledBack report of `station` in `seen`.
fn rolled_back<'a>(seen: &'a [(String, ModelReport)], station: &str) -> &'a ModelReport {
    seen.iter()
        .rev()
        .find(|(s, r)| s == station && r.state == ModelState::RolledBack)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("{station} did not roll back: {seen:#?}"))
}

#[test]
fn a_model_that_gives_nan_or_hears_nothing_on_live_audio_is_rolled_back_and_the_old_one_detects_on()
{
    let _serial = serial();
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nan_station = station_in(dir.path(), "pool-1", broker.port(), PROBATION_S);
    // Long enough for the previous model to detect in several windows.
    let deaf_station = station_in(dir.path(), "pool-2", broker.port(), 12);
    let reports = Reports::subscribe(&broker, "watcher");
    let live = [start(&nan_station, 40.0, 0), start(&deaf_station, 40.0, 0)];
    let logs = || logs_of(&live);
    let ids = ["pool-1", "pool-2"];
    reports.until(
        &ids,
        Duration::from_secs(20),
        |r| r.state == ModelState::Committed,
        logs,
    );
    std::thread::sleep(Duration::from_secs(4));
    // A front end that overflows to infinity on real audio: its self-test (on features)
    // passes, live audio gives NaN scores.
    let nan = warble_tests::demo::resigned("0.2.0", &operator(), |m, _| {
        if let warble_core::bundle::InputSpec::Logmel { frontend, .. } = &mut m.input {
            frontend.std = 1e-300;
        }
    });
    // Thresholds no score reaches: it hears nothing.
    let deaf = warble_tests::demo::resigned("0.2.0", &operator(), |m, _| {
        m.thresholds.default = 1.0;
        m.thresholds.per_class.clear();
    });
    for (id, bundle) in [("pool-1", nan), ("pool-2", deaf)] {
        let offer = Offer::encode(&bundle, false, chrono::Utc::now(), &operator());
        publish(
            broker.port(),
            &format!("warble/{id}/bundle"),
            dir.path(),
            &offer,
        );
    }
    let seen = reports.until(
        &ids,
        Duration::from_secs(40),
        |r| r.state == ModelState::RolledBack,
        logs,
    );
    let nan_report = rolled_back(&seen, "pool-1");
    assert!(
        nan_report
            .reason
            .as_deref()
            .unwrap()
            .contains("NaN or infinite scores"),
        "{nan_report:?}"
    );
    let deaf_report = rolled_back(&seen, "pool-2");
    assert!(
        deaf_report
            .reason
            .as_deref()
            .unwrap()
            .contains("detected in 0 windows where the previous model detected in"),
        "{deaf_report:?}"
    );
    let [nan_run, deaf_run] = live;
    for (id, run, report) in [
        ("pool-1", nan_run, nan_report),
        ("pool-2", deaf_run, deaf_report),
    ] {
        assert_eq!(report.active.version, "0.1.0");
        let events = run.detections();
        // Neither bad model reported a detection; the old one detected on after the
        // rollback.
        assert_one_switch(id, &events, &["0.1.0"]);
        assert!(
            events.iter().any(|e| e.start > report.since),
            "{id}: detections after the rollback at {}: {events:?}",
            report.since
        );
    }
}

#[test]
fn bad_offers_are_rejected_with_their_reason_while_the_old_model_keeps_detecting() {
    let _serial = serial();
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = station_in(dir.path(), "bog-1", broker.port(), PROBATION_S);
    // A key still trusted but listed as revoked.
    let retired = SecretKey::from_seed([9; 32], "retired");
    let retired_pub = dir.path().join("retired.pub");
    std::fs::write(&retired_pub, retired.public().to_text()).unwrap();
    let text = std::fs::read_to_string(&station).unwrap().replace(
        "trusted_keys = [",
        &format!(
            "revoked_keys = [\"{}\"]\ntrusted_keys = [\"{}\", ",
            retired.public().id(),
            retired_pub.display()
        ),
    );
    std::fs::write(&station, text).unwrap();
    let reports = Reports::subscribe(&broker, "watcher");
    let run = start(&station, 45.0, 0);
    reports.until(
        &["bog-1"],
        Duration::from_secs(20),
        |r| r.state == ModelState::Committed,
        || run.log(),
    );
    let op = operator();
    let stranger = SecretKey::from_seed([8; 32], "stranger");
    let good = warble_tests::demo::resigned("0.2.0", &op, |_, _| {});
    let mut corrupt = Offer::encode(&good, false, chrono::Utc::now(), &op);
    *corrupt.last_mut().unwrap() ^= 1;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown key",
            Offer::encode(&good, false, chrono::Utc::now(), &stranger),
            "which is not among the trusted keys",
        ),
        (
            "revoked key",
            Offer::encode(&good, false, chrono::Utc::now(), &retired),
            "lists as revoked",
        ),
        ("hash mismatch", corrupt, "corrupt in transit"),
        (
            "incompatible front end",
            Offer::encode(
                &warble_tests::demo::resigned("0.2.0", &op, |m, _| {
                    if let warble_core::bundle::InputSpec::Logmel { frontend, .. } = &mut m.input {
                        frontend.sample_rate_hz = 48_000;
                    }
                }),
                false,
                chrono::Utc::now(),
                &op,
            ),
            "needs audio at 48000 Hz",
        ),
        (
            "failing self-test",
            Offer::encode(
                &warble_tests::demo::resigned("0.2.0", &op, |m, _| {
                    m.selftest_tolerance = 1e-12;
                }),
                false,
                chrono::Utc::now(),
                &op,
            ),
            "self-test",
        ),
        (
            "downgrade below the model it runs",
            Offer::encode(
                &warble_tests::demo::resigned("0.0.9", &op, |_, _| {}),
                false,
                chrono::Utc::now(),
                &op,
            ),
            "is not newer than 0.1.0",
        ),
    ];
    for (what, message, reason) in cases {
        // Offers are issued to the second: each after the one before.
        std::thread::sleep(Duration::from_millis(1100));
        publish(broker.port(), "warble/bog-1/bundle", dir.path(), &message);
        let seen = reports.until(
            &["bog-1"],
            Duration::from_secs(20),
            |r| r.state == ModelState::Rejected,
            || run.log(),
        );
        let (_, report) = seen.last().unwrap();
        assert!(
            report
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains(reason),
            "{what}: {report:?}"
        );
        assert_eq!(report.active.version, "0.1.0", "{what}");
    }
    // Larger than a station reads: the broker does not deliver it to the station (MQTT 5
    // maximum packet size), which goes on as it was.
    let huge = vec![b'x'; warble_core::bundle::offer::MAX_OFFER_BYTES + 4096];
    publish(broker.port(), "warble/bog-1/bundle", dir.path(), &huge);
    std::thread::sleep(Duration::from_secs(3));
    let log = run.log();
    let events = run.detections();
    assert_one_switch("bog-1", &events, &["0.1.0"]);
    assert!(events.len() >= 5, "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains("reconnecting"),
        "not delivered, no error: {log}"
    );
}
