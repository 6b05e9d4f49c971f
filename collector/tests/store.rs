//! The collector's store behaves the same on SQLite (a file) and PostgreSQL (a real server,
//! Debian's package, started by the test harness): storing once by id, counting duplicates,
//! late, conflicting and invalid messages (hostile ones among them: forged stations, NUL
//! bytes, huge ids, absurd counters), gaps between and after the events held, and CSV
//! export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use warble_collect::store::{Ingest, Store};
use warble_core::event::Detection;

fn detection(station: &str, boot: u64, seq: u64, historical: bool) -> Detection {
    let mut e = warble_tests::events::sample_event(seq);
    e.station = station.into();
    e.boot = boot;
    e.id = Detection::make_id(station, boot, seq);
    e.historical = historical;
    e
}

fn event(station: &str, boot: u64, seq: u64, historical: bool) -> Vec<u8> {
    serde_json::to_vec(&detection(station, boot, seq, historical)).unwrap()
}

/// Messages a buggy or hostile station `a` might publish on its own topic.
fn hostile() -> Vec<(&'static str, Vec<u8>)> {
    let json = |e: &Detection| serde_json::to_vec(e).unwrap();
    let mut out = vec![("not json", b"{not json".to_vec())];
    // Speaking for another station (its ids, its gaps).
    out.push(("forged station", event("b", 7, 11, false)));
    let mut e = detection("a", 1, 3, false);
    e.common = "Robin\u{0}".into(); // PostgreSQL text cannot hold NUL
    out.push(("NUL", json(&e)));
    let mut e = detection("a", 1, 3, false);
    e.id = "x".repeat(3000); // over PostgreSQL's btree limit
    out.push(("long id", json(&e)));
    let mut e = detection("a", 1, 3, false);
    e.seq = u64::MAX;
    e.id = Detection::make_id("a", 1, u64::MAX);
    out.push(("seq u64::MAX", json(&e)));
    let mut e = detection("a", 1, 3, false);
    e.confidence = 7.0;
    out.push(("confidence", json(&e)));
    out.push((
        "oversized",
        vec![b' '; warble_collect::store::MAX_EVENT_BYTES + 1],
    ));
    out
}

fn exercise(target: &str, csv: &std::path::Path) {
    let mut store = Store::open(target).unwrap();
    for seq in [0, 1, 2, 5, 6, 9] {
        assert_eq!(
            store.ingest("a", &event("a", 1, seq, false)).unwrap(),
            Ingest::Stored
        );
    }
    assert_eq!(
        store.ingest("a", &event("a", 1, 5, false)).unwrap(),
        Ingest::Duplicate
    );
    assert_eq!(
        store.ingest("a", &event("a", 1, 5, true)).unwrap(),
        Ingest::Duplicate,
        "re-sent, marked historical: the same event"
    );
    assert_eq!(
        store.ingest("a", &event("a", 2, 0, true)).unwrap(),
        Ingest::Stored
    );
    let bad = hostile();
    for (what, payload) in &bad {
        assert!(
            matches!(store.ingest("a", payload).unwrap(), Ingest::Invalid(_)),
            "{what}"
        );
    }
    // The same id with other content (a station whose data folder was reset): a
    // conflict, kept for inspection once however often it comes; the stored one stays.
    let mut other = detection("a", 1, 5, false);
    other.code = warble_core::SpeciesCode::new("wren1").unwrap();
    let other = serde_json::to_vec(&other).unwrap();
    for _ in 0..2 {
        assert_eq!(store.ingest("a", &other).unwrap(), Ingest::Conflict);
    }
    let kept = store.conflicts().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].0.as_str(), kept[0].3.as_bytes()),
        ("a:1:5", &other[..])
    );
    let batch: Vec<Vec<u8>> = (10..13).map(|seq| event("b", 7, seq, false)).collect();
    assert_eq!(
        store
            .ingest_many(batch.iter().map(|p| ("b", p.as_slice())))
            .unwrap(),
        [Ingest::Stored, Ingest::Stored, Ingest::Stored]
    );
    assert_eq!(
        store
            .ingest_many([("b", event("b", 7, 10, false).as_slice())])
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
    assert_eq!(
        (a.events, a.duplicates, a.late, a.conflicts, a.invalid),
        (7, 2, 1, 2, bad.len() as u64)
    );
    assert_eq!(
        (b.events, b.duplicates),
        (3, 1),
        "the forged event was not b's"
    );
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

/// A first report (`final: false`) then its final revision: the store keeps the latest
/// once, whatever order and repetition they come in; the same revision with other content
/// is still a conflict.
fn revisions(target: &str, csv: &std::path::Path) {
    let mut store = Store::open(target).unwrap();
    let report = |revision: u32, end_sample: u64, confidence: f32| {
        let mut e = detection("r", 1, 0, false);
        e.revision = revision;
        e.is_final = revision > 0;
        e.end_sample = end_sample;
        e.confidence = confidence;
        serde_json::to_vec(&e).unwrap()
    };
    let (first, last) = (report(0, 96_000, 0.6), report(1, 192_000, 0.9));
    assert_eq!(store.ingest("r", &first).unwrap(), Ingest::Stored);
    assert_eq!(store.ingest("r", &last).unwrap(), Ingest::Revised);
    assert_eq!(store.ingest("r", &last).unwrap(), Ingest::Duplicate);
    assert_eq!(
        store.ingest("r", &first).unwrap(),
        Ingest::Duplicate,
        "an earlier revision arriving late changes nothing"
    );
    assert_eq!(
        store.ingest("r", &report(1, 192_000, 0.8)).unwrap(),
        Ingest::Conflict
    );
    // The final report first (the first was lost with a broker): stored as it is.
    let mut only_final = detection("r", 1, 1, false);
    only_final.revision = 1;
    let only_final = serde_json::to_vec(&only_final).unwrap();
    assert_eq!(store.ingest("r", &only_final).unwrap(), Ingest::Stored);
    let r = &store.report().unwrap()[0];
    assert_eq!(
        (r.events, r.revisions, r.duplicates, r.conflicts),
        (2, 1, 2, 1)
    );
    assert_eq!(store.export_csv(csv).unwrap(), 2);
    let text = std::fs::read_to_string(csv).unwrap();
    assert!(
        text.contains("r:1:0,r,1,0,2026-05-01T04:30:00+00:00,eurrob1,0.9000,0\n"),
        "{text}"
    );
    assert_eq!(
        store.events_of("r").unwrap()[0],
        serde_json::from_slice(&last).unwrap()
    );
}

/// The uptimes of the heartbeats of station `h` kept since `since`.
fn kept_uptimes(store: &mut Store, since: chrono::DateTime<chrono::Utc>) -> Vec<u64> {
    store
        .heartbeats("h", since)
        .unwrap()
        .iter()
        .map(|(_, b)| b.uptime_s)
        .collect()
}

/// What the dashboard reads: top species (per station and fleet-wide), detections per time
/// bucket, the latest detections, the span of what is stored.
fn views(target: &str) {
    use warble_collect::store::Bucket;
    let mut store = Store::open(target).unwrap();
    assert_eq!(store.detection_span().unwrap(), None);
    assert!(store.timeline(Bucket::Hour).unwrap().is_empty());
    let t0 = detection("a", 1, 0, false).start;
    // a: robins at 0, 20 and 70 min, a wren at 61 min; b: a robin two days later.
    for (station, seq, minutes, wren) in [
        ("a", 0, 0, false),
        ("a", 1, 20, false),
        ("a", 2, 61, true),
        ("a", 3, 70, false),
        ("b", 0, 2 * 24 * 60, false),
    ] {
        let mut e = detection(station, 1, seq, false);
        e.start = t0 + chrono::Duration::minutes(minutes);
        e.end = e.start + chrono::Duration::seconds(3);
        if wren {
            e.code = warble_core::SpeciesCode::new("wren1").unwrap();
            e.common = "Eurasian Wren".into();
            e.scientific = "Troglodytes troglodytes".into();
        }
        let stored = store.ingest(station, &serde_json::to_vec(&e).unwrap());
        assert_eq!(stored.unwrap(), Ingest::Stored);
    }
    let top = store.top_species(None, 10).unwrap();
    let codes: Vec<_> = top
        .iter()
        .map(|s| (s.code.as_str(), s.detections))
        .collect();
    assert_eq!(codes, [("eurrob1", 4), ("wren1", 1)]);
    assert_eq!(top[1].common, "Eurasian Wren");
    assert_eq!(top[0].last_start, t0 + chrono::Duration::days(2));
    let in_a: Vec<_> = store.top_species(Some("a"), 1).unwrap();
    assert_eq!((in_a.len(), in_a[0].detections), (1, 3), "limited to 1");
    assert!(store.top_species(Some("nowhere"), 5).unwrap().is_empty());

    let hours: Vec<_> = store
        .timeline(Bucket::Hour)
        .unwrap()
        .into_iter()
        .map(|c| (c.station, (c.bucket - t0).num_minutes(), c.detections))
        .collect();
    // t0 is 04:30: the hour from 04:00 holds 0 and 20 min, the one from 05:00 61 and 70.
    assert_eq!(
        hours,
        [
            ("a".to_owned(), -30, 2),
            ("a".to_owned(), 30, 2),
            ("b".to_owned(), 2 * 24 * 60 - 30, 1)
        ]
    );
    let days = store.timeline(Bucket::Day).unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0].bucket.to_rfc3339(), "2026-05-01T00:00:00+00:00");
    assert_eq!(store.timeline(Bucket::Minute).unwrap().len(), 5);
    assert_eq!(
        store.detection_span().unwrap(),
        Some((t0, t0 + chrono::Duration::days(2)))
    );
    assert_eq!(
        Bucket::fitting(t0, t0 + chrono::Duration::minutes(30)),
        Bucket::TenSeconds
    );
    assert_eq!(
        Bucket::fitting(t0, t0 + chrono::Duration::hours(3)),
        Bucket::Minute
    );
    let tens = store.timeline(Bucket::TenSeconds).unwrap();
    assert_eq!(tens.len(), 5);
    assert_eq!(tens[0].bucket, t0, "04:30:00 starts its 10 s");
    assert_eq!(
        Bucket::fitting(t0, t0 + chrono::Duration::days(2)),
        Bucket::Hour
    );
    assert_eq!(
        Bucket::fitting(t0, t0 + chrono::Duration::days(30)),
        Bucket::Day
    );

    let recent: Vec<_> = store
        .recent("a", 2)
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(recent, [3, 2], "newest first");
    assert!(store.recent("nowhere", 2).unwrap().is_empty());
}

/// PostgreSQL's typed views of a store [`views`] filled: times as `timestamptz`, payloads
/// as `jsonb`, so SQL and Grafana need no casts.
fn typed_views(url: &str) {
    let mut store = Store::open(url).unwrap();
    store
        .note_heartbeat("a", br#"{"uptime_s": 5, "outbox_depth": 2}"#)
        .unwrap();
    store
        .note_status("a", br#"{"state":"online","agent":"0.9.0"}"#)
        .unwrap();
    drop(store);
    let mut pg = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let rows = pg
        .query(
            "SELECT to_char(date_trunc('hour', start) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                 extract(epoch FROM \"end\" - start)::float8, payload->>'common', historical
             FROM detections WHERE station = 'a' ORDER BY start",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 4);
    // The first starts at 04:30 (the sample event's start), 3 s long.
    assert_eq!(rows[0].get::<_, String>(0), "2026-05-01 04:00");
    assert_eq!(rows[0].get::<_, f64>(1), 3.0);
    assert_eq!(rows[2].get::<_, String>(2), "Eurasian Wren");
    assert!(!rows[0].get::<_, bool>(3));
    let row = pg
        .query_one(
            "SELECT (payload->>'outbox_depth')::int, received_at <= now() FROM station_heartbeats",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, bool>(1)), (2, true));
    let row = pg
        .query_one(
            "SELECT status, agent, beat->>'uptime_s', beat_at <= now() FROM station_presence",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "online");
    assert_eq!(row.get::<_, String>(1), "0.9.0");
    assert_eq!(row.get::<_, String>(2), "5");
    assert!(row.get::<_, bool>(3));
}

/// Status and heartbeats: the last of each per station, a week of heartbeats at most one
/// per 5 s and one per hour for 90 days, hostile ones ignored.
fn presence(target: &str) {
    use chrono::{Duration, TimeZone, Utc};
    let mut store = Store::open(target).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    let beat = |uptime: u64| format!(r#"{{"uptime_s": {uptime}, "outbox_depth": 3}}"#);
    for (i, dt) in [0, 2, 6, 60].into_iter().enumerate() {
        assert!(
            !store
                .note_heartbeat_at("h", beat(i as u64).as_bytes(), t0 + Duration::seconds(dt))
                .unwrap(),
            "no delivered list"
        );
    }
    let kept: Vec<u64> = kept_uptimes(&mut store, t0);
    assert_eq!(
        kept,
        [0, 2, 3],
        "the one 2 s after another is not kept in the history"
    );
    // A week on, the first ones are gone.
    store
        .note_heartbeat_at(
            "h",
            beat(9).as_bytes(),
            t0 + Duration::days(7) + Duration::seconds(30),
        )
        .unwrap();
    let kept: Vec<u64> = kept_uptimes(&mut store, t0);
    // Older than a week (the ones at 0 and 6 s): the first of their hour stays; the one at
    // 60 s is younger than that.
    assert_eq!(kept, [0, 3, 9], "older than a week: the first of each hour");
    assert!(
        store
            .note_status_at("h", br#"{"state":"online","agent":"0.9.0"}"#, t0)
            .unwrap()
    );
    assert!(
        store
            .note_status_at("h", br#"{"state":"offline"}"#, t0)
            .unwrap()
    );
    for (station, hostile) in [
        ("h", &br#"{"state":"sleeping"}"#[..]),
        ("h", br#"{"state":"online","agent":"a\u0000b"}"#),
        ("Not/A/Station", br#"{"state":"online"}"#),
    ] {
        assert!(!store.note_status_at(station, hostile, t0).unwrap());
    }
    assert!(!store.note_heartbeat_at("h", b"{not json", t0).unwrap());
    let fleet = store.fleet().unwrap();
    assert_eq!(fleet.len(), 1, "{fleet:?}");
    let h = &fleet[0];
    assert_eq!((h.online, h.agent.as_deref()), (Some(false), Some("0.9.0")));
    assert_eq!(h.heartbeat.as_ref().map(|b| b.uptime_s), Some(9));
    assert_eq!(
        h.heartbeat_at,
        Some(t0 + Duration::days(7) + Duration::seconds(30))
    );
    let text = warble_collect::metrics::render(&mut store, t0 + Duration::days(8)).unwrap();
    assert!(
        text.contains("warble_station_up{station=\"h\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("warble_station_heartbeat_age_seconds{station=\"h\"} 86370.0\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE warble_station_outbox_depth gauge\n"),
        "{text}"
    );
    // 90 days on, the oldest hour is gone; the later one stays, thinned.
    store
        .note_heartbeat_at("h", beat(10).as_bytes(), t0 + Duration::days(91))
        .unwrap();
    assert_eq!(kept_uptimes(&mut store, t0), [9, 10]);
}

#[test]
fn the_sqlite_store_keeps_events_once_and_reports_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.sqlite");
    exercise(db.to_str().unwrap(), &dir.path().join("events.csv"));
    let db = dir.path().join("r.sqlite");
    revisions(db.to_str().unwrap(), &dir.path().join("r.csv"));
    presence(dir.path().join("p.sqlite").to_str().unwrap());
    views(dir.path().join("v.sqlite").to_str().unwrap());
}

#[test]
fn the_postgres_store_keeps_events_once_and_reports_gaps() {
    let pg = warble_tests::postgres::Postgres::start()
        .expect("PostgreSQL (Debian package postgresql) is installed by scripts/install-deps");
    let dir = tempfile::tempdir().unwrap();
    exercise(&pg.url(), &dir.path().join("events.csv"));
    let pg = warble_tests::postgres::Postgres::start().unwrap();
    revisions(&pg.url(), &dir.path().join("r.csv"));
    let pg = warble_tests::postgres::Postgres::start().unwrap();
    presence(&pg.url());
    let pg = warble_tests::postgres::Postgres::start().unwrap();
    views(&pg.url());
    typed_views(&pg.url());
}

/// Two collectors sharing one PostgreSQL store take late events of stations a and b in
/// opposite orders at the same moment (after an outage every event is late, and each
/// updates its station's counter): neither may fail on a deadlock, and every event is
/// stored once.
#[test]
fn collectors_sharing_a_postgres_store_do_not_deadlock() {
    let pg = warble_tests::postgres::Postgres::start()
        .expect("PostgreSQL (Debian package postgresql) is installed by scripts/install-deps");
    let url = pg.url();
    Store::open(&url).unwrap();
    const ROUNDS: u64 = 60;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let workers: Vec<_> = [(0, ["a", "b"]), (1, ["b", "a"])]
        .into_iter()
        .map(|(k, order)| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut store = Store::open(&url).unwrap();
                for round in 0..ROUNDS {
                    let batch: Vec<(&str, Vec<u8>)> = order
                        .iter()
                        .flat_map(|&st| (0..4).map(move |i| (st, 8 * round + 4 * k + i)))
                        .map(|(st, seq)| (st, event(st, 1, seq, true)))
                        .collect();
                    barrier.wait();
                    let results = store
                        .ingest_many(batch.iter().map(|(st, p)| (*st, p.as_slice())))
                        .unwrap();
                    assert!(results.iter().all(|r| *r == Ingest::Stored), "{results:?}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let report = Store::open(&url).unwrap().report().unwrap();
    for r in &report {
        assert_eq!(
            (r.events, r.late, r.duplicates),
            (8 * ROUNDS, 8 * ROUNDS, 0)
        );
        assert!(r.gaps.is_empty(), "{:?}", r.gaps);
    }
    assert_eq!(report.len(), 2);
}
