//! The station's updater against a real mosquitto (in-process): retained offers on the
//! station's and its group's bundle topics are checked, written to the inactive slot and
//! self-tested, and each step is reported, retained, on the station's model topic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use warble_agent::updater::{Installed, LEDGER_FILE, Updater, UpdaterConfig};
use warble_agent::updates::{Ledger, version_of};
use warble_core::bundle::offer::Offer;
use warble_core::bundle::{PublicKey, SecretKey, TrustedKeys};
use warble_core::wire::{ModelReport, ModelState};
use warble_infer::{EngineChoice, EngineConfig};
use warble_tests::broker::Mosquitto;
use warble_tests::demo::{self, repo_file};

const STATION: &str = "wetland-03";

fn publish_retained(port: u16, topic: &str, dir: &Path, message: &[u8]) {
    let file = dir.join("offer.bin");
    std::fs::write(&file, message).unwrap();
    let status = std::process::Command::new("mosquitto_pub")
        .args(["-p", &port.to_string(), "-t", topic, "-r", "-q", "1", "-f"])
        .arg(&file)
        .status()
        .expect("mosquitto_pub (Debian's mosquitto-clients, from scripts/install-deps)");
    assert!(status.success());
}

struct Station {
    reports: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    installed: std::sync::mpsc::Receiver<Installed>,
    cancel: tokio_util::sync::CancellationToken,
    runtime: tokio::runtime::Runtime,
}

impl Station {
    fn start(broker: &Mosquitto, dir: &Path, trusted: TrustedKeys) -> Self {
        let station_file = common::station(dir, STATION);
        let station = warble_agent::settings::load_station(&station_file).unwrap();
        let reports = common::subscribe(broker.port(), "operator", "warble/wetland-03/model");
        let cfg = UpdaterConfig {
            broker: common::broker_config(broker.port()),
            group: Some("dawn".into()),
            trusted,
            revoked: Vec::new(),
            station: Arc::new(station),
            slot_dir: dir.join("slots"),
            engine: EngineConfig {
                choice: EngineChoice::Tract,
                ort_library: None,
                threads: 1,
            },
            probation: Duration::from_secs(60),
            health: Arc::default(),
        };
        let (tx, installed) = std::sync::mpsc::channel();
        let updater = Updater::new(cfg, version_of(&demo::bundle()), None, tx).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        runtime.spawn(updater.run(cancel.clone()));
        Self {
            reports,
            installed,
            cancel,
            runtime,
        }
    }

    /// Reports until one in `state` (at most 20 s).
    fn until(&self, state: ModelState) -> Vec<ModelReport> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok((_, payload)) = self.reports.recv_timeout(Duration::from_millis(100)) {
                let report: ModelReport = serde_json::from_slice(&payload).unwrap();
                let done = report.state == state;
                seen.push(report);
                if done {
                    return seen;
                }
            }
        }
        panic!("no {state:?} report: {seen:#?}");
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        self.cancel.cancel();
        std::thread::sleep(Duration::from_millis(200));
        let _ = &self.runtime;
    }
}

fn keys(operator: &SecretKey) -> TrustedKeys {
    let mut trusted: TrustedKeys = [operator.public().clone()].into_iter().collect();
    trusted.insert(PublicKey::read(repo_file("models/demo/warble-demo.pub")).unwrap());
    trusted
}

#[test]
fn offers_are_checked_installed_in_a_slot_and_reported() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let op = SecretKey::from_seed([7; 32], "operator");
    let station = Station::start(&broker, dir.path(), keys(&op));
    let first = station.until(ModelState::Committed);
    assert_eq!(first[0].active.version, "0.1.0");
    assert_eq!(first[0].candidate, None);

    // Corrupt in transit: rejected, with the reason; the station runs what it ran.
    let newer = demo::resigned("0.2.0", &op, |_, _| {});
    let mut damaged = Offer::encode(&newer, false, chrono::Utc::now(), &op);
    *damaged.last_mut().unwrap() ^= 1;
    publish_retained(
        broker.port(),
        "warble/wetland-03/bundle",
        dir.path(),
        &damaged,
    );
    let seen = station.until(ModelState::Rejected);
    let rejected = seen.last().unwrap();
    assert!(
        rejected
            .reason
            .as_deref()
            .unwrap()
            .contains("corrupt in transit"),
        "{rejected:?}"
    );
    assert_eq!(rejected.active.version, "0.1.0");
    assert!(station.installed.try_recv().is_err());

    // A model whose self-test fails in this engine: rejected after testing.
    let untestable = demo::resigned("0.2.0", &op, |m, _| m.selftest_tolerance = 1e-12);
    let offer = Offer::encode(&untestable, false, chrono::Utc::now(), &op);
    publish_retained(
        broker.port(),
        "warble/wetland-03/bundle",
        dir.path(),
        &offer,
    );
    let seen = station.until(ModelState::Rejected);
    assert!(
        seen.iter().any(|r| r.state == ModelState::Testing),
        "{seen:#?}"
    );
    let rejected = seen.last().unwrap();
    assert!(
        rejected.reason.as_deref().unwrap().contains("self-test"),
        "{rejected:?}"
    );
    assert_eq!(
        rejected.candidate.as_ref().unwrap().version.as_deref(),
        Some("0.2.0")
    );

    // A good one: written to a slot, self-tested, handed to the recorder, remembered.
    std::thread::sleep(Duration::from_millis(1100));
    let offer = Offer::encode(&newer, false, chrono::Utc::now(), &op);
    publish_retained(
        broker.port(),
        "warble/wetland-03/bundle",
        dir.path(),
        &offer,
    );
    let installed = station
        .installed
        .recv_timeout(Duration::from_secs(20))
        .expect("the model handed to the recorder");
    assert_eq!(installed.model.describe(), "warble-demo 0.2.0, 25 classes");
    assert_eq!(std::fs::read(&installed.slot).unwrap(), newer);
    let ledger = Ledger::read(&dir.path().join("slots").join(LEDGER_FILE)).unwrap();
    assert_eq!(ledger.highest["warble-demo"], [0, 2, 0]);

    // A group offer while the station has one of its own is not taken.
    let group = demo::resigned("0.3.0", &op, |_, _| {});
    let offer = Offer::encode(&group, false, chrono::Utc::now(), &op);
    publish_retained(
        broker.port(),
        "warble/fleet/dawn/bundle",
        dir.path(),
        &offer,
    );
    assert!(
        station
            .installed
            .recv_timeout(Duration::from_secs(3))
            .is_err(),
        "the station's own offer beats its group's"
    );
}

#[test]
fn a_probation_verdict_commits_or_rolls_back_in_the_ledger_and_the_report() {
    use warble_agent::probation::{Figures, Outcome, Verdict};
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let op = SecretKey::from_seed([7; 32], "operator");
    let station = Station::start(&broker, dir.path(), keys(&op));
    station.until(ModelState::Committed);
    let ledger_at = dir.path().join("slots").join(LEDGER_FILE);
    let offer = |version: &str| {
        let bundle = demo::resigned(version, &op, |_, _| {});
        publish_retained(
            broker.port(),
            "warble/wetland-03/bundle",
            dir.path(),
            &Offer::encode(&bundle, false, chrono::Utc::now(), &op),
        );
        let installed = station
            .installed
            .recv_timeout(Duration::from_secs(20))
            .expect("installed");
        let probation = station.until(ModelState::Probation);
        let report = probation.last().unwrap();
        assert!(report.probation_until.unwrap() > report.since, "{report:?}");
        // On probation: in the ledger's trial, not yet the model the station starts on.
        let ledger = Ledger::read(&ledger_at).unwrap();
        assert_eq!(ledger.trial.as_ref().unwrap().model.version, version);
        installed
    };
    let verdict = |installed: &Installed, outcome: Outcome| {
        installed
            .trial
            .verdicts
            .send(Verdict {
                candidate: installed.model.model_ref(),
                outcome,
                candidate_figures: Figures::default(),
                previous_figures: Figures::default(),
            })
            .unwrap();
    };

    let first = offer("0.2.0");
    verdict(&first, Outcome::Commit);
    let committed = station.until(ModelState::Committed);
    let committed = committed.last().unwrap();
    assert_eq!(committed.active.version, "0.2.0");
    assert_eq!(committed.previous.as_ref().unwrap().version, "0.1.0");
    let ledger = Ledger::read(&ledger_at).unwrap();
    assert_eq!(ledger.trial, None);
    let active = ledger.active.unwrap();
    assert_eq!(active.model.version, "0.2.0");
    assert_eq!(dir.path().join("slots").join(&active.slot), first.slot);

    // The next goes to the other slot; rolled back, it is forgotten.
    std::thread::sleep(Duration::from_millis(1100));
    let second = offer("0.3.0");
    assert_ne!(second.slot, first.slot);
    verdict(&second, Outcome::RollBack("NaN scores".into()));
    let rolled = station.until(ModelState::RolledBack);
    let rolled = rolled.last().unwrap();
    assert_eq!(rolled.active.version, "0.2.0");
    assert!(
        rolled.reason.as_deref().unwrap().contains("NaN scores"),
        "{rolled:?}"
    );
    let ledger = Ledger::read(&ledger_at).unwrap();
    assert_eq!(ledger.trial, None);
    assert_eq!(ledger.active.unwrap().model.version, "0.2.0");
    // Not taken again, even pushed anew: 0.3.0 was installed once.
    assert_eq!(ledger.highest["warble-demo"], [0, 3, 0]);
}
