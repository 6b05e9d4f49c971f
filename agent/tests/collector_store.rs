//! The collector's store behaves the same on SQLite (a file) and PostgreSQL (a real server,
//! Debian's package, started by the test harness): storing once by id, counting duplicates,
//! late and invalid messages, gaps between and after the events held, and CSV export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use warble_agent::collect::{Ingest, Store};
use warble_core::event::Detection;

fn event(station: &str, boot: u64, seq: u64, historical: bool) -> Vec<u8> {
    let mut e = common::sample_event(seq);
    e.station = station.into();
    e.boot = boot;
    e.id = Detection::make_id(station, boot, seq);
    e.historical = historical;
    serde_json::to_vec(&e).unwrap()
}

fn exercise(target: &str, csv: &std::path::Path) {
    let mut store = Store::open(target).unwrap();
    for seq in [0, 1, 2, 5, 6, 9] {
        assert_eq!(
            store.ingest(&event("a", 1, seq, false)).unwrap(),
            Ingest::Stored
        );
    }
    assert_eq!(
        store.ingest(&event("a", 1, 5, false)).unwrap(),
        Ingest::Duplicate
    );
    assert_eq!(
        store.ingest(&event("a", 2, 0, true)).unwrap(),
        Ingest::Stored
    );
    assert!(matches!(
        store.ingest(b"{not json").unwrap(),
        Ingest::Invalid(_)
    ));
    let batch: Vec<Vec<u8>> = (10..13).map(|seq| event("b", 7, seq, false)).collect();
    assert_eq!(
        store.ingest_many(batch.iter().map(Vec::as_slice)).unwrap(),
        [Ingest::Stored, Ingest::Stored, Ingest::Stored]
    );
    assert_eq!(
        store
            .ingest_many([event("b", 7, 10, false).as_slice()])
            .unwrap(),
        [Ingest::Duplicate],
        "a batch is de-duplicated too"
    );
    assert!(
        store
            .note_heartbeat("b", br#"{"delivered": [{"boot": 7, "next_seq": 15}]}"#)
            .unwrap()
    );
    let report = store.report().unwrap();
    assert_eq!(report.len(), 2);
    let (a, b) = (&report[0], &report[1]);
    assert_eq!((a.events, a.duplicates, a.late, a.invalid), (7, 1, 1, 1));
    assert_eq!(b.duplicates, 1);
    assert_eq!(a.boots, [1, 2]);
    assert_eq!(a.gaps, [(1, 3, 4), (1, 7, 8)]);
    assert_eq!(
        b.gaps,
        [(7, 0, 9), (7, 13, 14)],
        "before the first and after the last"
    );
    // Reopened (a new connection), the store still knows everything.
    drop(store);
    let mut store = Store::open(target).unwrap();
    assert_eq!(store.report().unwrap(), report);
    assert_eq!(store.export_csv(csv).unwrap(), 10);
    let text = std::fs::read_to_string(csv).unwrap();
    assert!(
        text.starts_with(
            "id,station,boot,seq,start,code,confidence,historical\na:1:0,a,1,0,2026-05-01T04:30:00+00:00,eurrob1,0.8700,0\n"
        ),
        "{text}"
    );
}

#[test]
fn the_sqlite_store_keeps_events_once_and_reports_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.sqlite");
    exercise(db.to_str().unwrap(), &dir.path().join("events.csv"));
}

#[test]
fn the_postgres_store_keeps_events_once_and_reports_gaps() {
    let pg = warble_tests::postgres::Postgres::start()
        .expect("PostgreSQL (Debian package postgresql) is installed by scripts/install-deps");
    let dir = tempfile::tempdir().unwrap();
    exercise(&pg.url(), &dir.path().join("events.csv"));
}
