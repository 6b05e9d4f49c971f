//! A live station reports each call at first sight and once more, final, when it closes:
//! a subscriber hears the first report long before the event ends, the collector keeps
//! the final one once, and a station killed between the two leaves the first report at
//! the collector (closed as it stood when the station starts again).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Running, deliver_to, station};
use warble_core::event::Detection;
use warble_tests::broker::Mosquitto;

/// `warble-agent run` on a paced microphone playing `seconds` of the demo recording (see
/// [`common::paced_station`]).
fn start_station(dir: &Path, config: &Path, seconds: u32) -> Running {
    common::paced_station(dir, config, common::demo_excerpt(seconds as usize), seconds)
}

/// A station `id` in `dir` delivering to `broker`, with a collector storing into the
/// returned database and a subscriber on the station's detections.
struct Setup {
    config: std::path::PathBuf,
    db: std::path::PathBuf,
    collector: Running,
    heard: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
}

fn setup(broker: &Mosquitto, dir: &Path, id: &str) -> Setup {
    let config = station(dir, id);
    deliver_to(&config, broker.port(), "");
    let db = dir.join("collected.sqlite");
    let collector = common::collector(broker.port(), &db, 120, &[], &dir.join("collector.log"));
    common::wait_for(broker, "Received SUBSCRIBE from warble-collect", 1);
    let heard = common::subscribe(
        broker.port(),
        &format!("watcher-{id}"),
        &format!("warble/{id}/detections"),
    );
    Setup {
        config,
        db,
        collector,
        heard,
    }
}

/// The reports of each event id in the order they arrived, with their arrival times.
type Heard = BTreeMap<String, Vec<(Instant, Detection)>>;

fn listen(heard: &std::sync::mpsc::Receiver<(String, Vec<u8>)>, into: &mut Heard, wait: Duration) {
    while let Ok((_, payload)) = heard.recv_timeout(wait) {
        let d: Detection = serde_json::from_slice(&payload).unwrap();
        into.entry(d.id.clone())
            .or_default()
            .push((Instant::now(), d));
    }
}

/// Waits (at most 20 s) until the collector's store holds `want` for `station`.
fn stored_when(db: &Path, station: &str, want: impl Fn(&[Detection]) -> bool) -> Vec<Detection> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = warble_collect::store::Store::open(db)
            .unwrap()
            .events_of(station)
            .unwrap();
        if want(&stored) || Instant::now() > deadline {
            return stored;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_subscriber_hears_a_call_at_first_sight_then_its_final_report() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(&broker, dir.path(), "heron-1");
    let run = dir.path().join("run");
    let station_run = start_station(&run, &s.config, 30);
    let mut heard = Heard::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut station_run = Some(station_run);
    while let Some(mut r) = station_run.take() {
        listen(&s.heard, &mut heard, Duration::from_millis(100));
        if r.child().try_wait().unwrap().is_none() && Instant::now() < deadline {
            station_run = Some(r);
        } else {
            let out = r.output();
            let log = std::fs::read_to_string(run.join("agent.log")).unwrap();
            assert!(out.status.success(), "{log}");
        }
    }
    listen(&s.heard, &mut heard, Duration::from_secs(2));
    let finals: Vec<Detection> = std::fs::read_to_string(run.join("detections.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(finals.len() >= 3, "{finals:?}");
    assert!(
        finals.iter().all(|d| d.is_final && d.revision == 1),
        "files hold final reports: {finals:?}"
    );
    let (mut longest, mut early) = (0, 0);
    for last in &finals {
        let reports = &heard[&last.id];
        let (first_at, first) = &reports[0];
        assert!(!first.is_final && first.revision == 0, "{reports:?}");
        assert!(first.clip.is_none());
        let (last_at, heard_last) = reports
            .iter()
            .find(|(_, d)| d.revision == 1)
            .unwrap_or_else(|| panic!("no final report of {}: {reports:?}", last.id));
        assert!(heard_last.same_report(last), "{heard_last:?} / {last:?}");
        assert!(
            reports.iter().all(|(_, d)| d.revision <= 1),
            "two reports per event at most"
        );
        // The event stays open at least until a window starts past it (one hop after
        // the window that first heard it ends): the first report came that much earlier,
        // unless the end of the run closed it.
        early += usize::from(*last_at > *first_at + Duration::from_secs(2));
        assert_eq!(
            (first.start, first.start_sample),
            (last.start, last.start_sample)
        );
        assert!(last.end_sample >= first.end_sample && last.confidence >= first.confidence);
        longest = longest.max(last.end_sample - first.end_sample);
    }
    assert!(
        longest > 0,
        "a call longer than its first window was revised: {finals:?}"
    );
    assert!(
        2 * early >= finals.len(),
        "{early} of {} heard 2 s early",
        finals.len()
    );
    assert_eq!(
        heard.len(),
        finals.len(),
        "nothing reported that did not end as a final event"
    );
    // The collector keeps the final report of each, once.
    let stored = stored_when(&s.db, "heron-1", |st| {
        st.len() == finals.len() && st.iter().all(|d| d.is_final)
    });
    assert_eq!(stored.len(), finals.len());
    // Files list events in the order they closed; the store in seq order.
    let mut by_seq = finals.clone();
    by_seq.sort_by_key(|d| d.seq);
    for (kept, last) in stored.iter().zip(&by_seq) {
        assert!(kept.same_report(last), "{kept:?} / {last:?}");
    }
    common::terminate(s.collector.child());
    let report = warble_collect::store::Store::open(&s.db)
        .unwrap()
        .report()
        .unwrap();
    assert_eq!(
        (report[0].revisions, report[0].conflicts),
        (finals.len() as u64, 0)
    );
}

#[test]
fn a_station_killed_between_first_report_and_final_leaves_the_first_at_the_collector() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(&broker, dir.path(), "heron-2");
    let mut station_run = start_station(&dir.path().join("run-1"), &s.config, 40);
    let mut heard = Heard::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let open = loop {
        assert!(Instant::now() < deadline, "no first report: {heard:?}");
        if let Ok((_, payload)) = s.heard.recv_timeout(Duration::from_millis(20)) {
            let d: Detection = serde_json::from_slice(&payload).unwrap();
            if !d.is_final {
                // An event stays open for at least a hop after its first report.
                station_run.child().kill().unwrap();
                let _ = station_run.child().wait();
                break d;
            }
        }
    };
    listen(&s.heard, &mut heard, Duration::from_secs(1));
    assert!(
        heard
            .get(&open.id)
            .is_none_or(|r| r.iter().all(|(_, d)| d.same_report(&open))),
        "the killed station sent nothing more of {}: {heard:?}",
        open.id
    );
    let stored = stored_when(&s.db, "heron-2", |st| st.iter().any(|d| d.id == open.id));
    let kept = stored
        .iter()
        .find(|d| d.id == open.id)
        .expect("the first report is stored");
    assert!(kept.same_report(&open), "{kept:?}");
    // Started again, the station closes it as it stood (the audio after it was lost with
    // the process).
    let run = dir.path().join("run-2");
    let mut again = start_station(&run, &s.config, 5);
    let stored = stored_when(&s.db, "heron-2", |st| {
        st.iter().any(|d| d.id == open.id && d.is_final)
    });
    let closed = stored.iter().find(|d| d.id == open.id).unwrap();
    assert!(closed.is_final && closed.historical, "{closed:?}");
    assert_eq!(closed.revision, 1);
    assert_eq!(
        (closed.end_sample, closed.confidence),
        (open.end_sample, open.confidence)
    );
    let log = std::fs::read_to_string(run.join("agent.log")).unwrap();
    assert!(
        log.contains("still open then, sent again as final"),
        "{log}"
    );
    common::terminate(again.child());
    common::terminate(s.collector.child());
}
