//! `warble-collect serve` exposes the fleet in the Prometheus text format: a collector fed
//! by a real mosquitto (status, heartbeats and detections of two stations) and the
//! metrics scraped over HTTP and parsed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{collector, get, json, publish, serve, wait_for_store};
use warble_core::wire::{Heartbeat, Status};
use warble_tests::broker::Mosquitto;

fn event(station: &str, seq: u64) -> Vec<u8> {
    json(&common::detection(station, seq))
}

/// One sample of the text format: name, labels and value; comments and `# EOF` apart.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses the OpenMetrics text format strictly enough to catch a broken exposition:
/// every sample line is `name{k="v",…} value` of a family a `# TYPE` line declared.
fn parse(body: &str) -> Samples {
    let mut types = BTreeMap::new();
    let mut samples = Samples::new();
    assert!(body.ends_with("# EOF\n"), "{body}");
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap();
                let labels = inner
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").unwrap();
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            types.contains_key(name) || types.contains_key(family),
            "{name} has no # TYPE"
        );
        samples.insert((name.to_owned(), labels), value.parse().unwrap());
    }
    samples
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let key = (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    samples.get(&key).copied()
}

#[test]
fn the_fleet_is_scraped_in_the_prometheus_text_format() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.sqlite");
    let collector = collector(&broker, &db);
    let beat = Heartbeat {
        uptime_s: 3600,
        overruns: 2,
        outbox_depth: Some(4),
        outbox_dropped: Some(1),
        inference_ms: Some(12.5),
        realtime_factor: Some(80.0),
        disk_free_bytes: Some(1 << 30),
        model: warble_core::event::ModelRef {
            id: "warble-demo".into(),
            version: "0.1.0".into(),
        },
        ..Heartbeat::default()
    };
    let mut messages = vec![
        (
            "warble/fen-1/status".to_owned(),
            json(&Status::online("0.9.0")),
            true,
        ),
        ("warble/fen-1/heartbeat".to_owned(), json(&beat), false),
        (
            "warble/fen-2/status".to_owned(),
            json(&Status::offline()),
            true,
        ),
    ];
    // fen-1: seqs 0, 1 and 3 (2 is missing); fen-2: one.
    for seq in [0, 1, 3] {
        messages.push(("warble/fen-1/detections".into(), event("fen-1", seq), false));
    }
    messages.push(("warble/fen-2/detections".into(), event("fen-2", 0), false));
    publish(broker.port(), messages);
    wait_for_store(&db, |store| {
        let fleet = store.fleet().unwrap();
        store.ids("fen-1").unwrap().len() == 3
            && store.ids("fen-2").unwrap().len() == 1
            && fleet
                .iter()
                .any(|s| s.station == "fen-1" && s.heartbeat.is_some())
            && fleet
                .iter()
                .any(|s| s.station == "fen-2" && s.online == Some(false))
    });
    drop(collector);

    let (_serve, port) = serve(&db);
    let (status, headers, body) = get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    let m = parse(&body);
    let fen1 = [("station", "fen-1")];
    let fen2 = [("station", "fen-2")];
    assert_eq!(sample(&m, "warble_station_up", &fen1), Some(1.0), "{body}");
    assert_eq!(sample(&m, "warble_station_up", &fen2), Some(0.0));
    assert_eq!(sample(&m, "warble_station_outbox_depth", &fen1), Some(4.0));
    assert_eq!(
        sample(&m, "warble_station_outbox_dropped_total", &fen1),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "warble_station_overruns_total", &fen1),
        Some(2.0)
    );
    assert_eq!(sample(&m, "warble_station_inference_ms", &fen1), Some(12.5));
    assert_eq!(
        sample(&m, "warble_station_realtime_factor", &fen1),
        Some(80.0)
    );
    assert_eq!(
        sample(&m, "warble_station_uptime_seconds", &fen1),
        Some(3600.0)
    );
    let age = sample(&m, "warble_station_heartbeat_age_seconds", &fen1).unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(
        sample(&m, "warble_station_heartbeat_age_seconds", &fen2),
        None,
        "no heartbeat, no series"
    );
    assert_eq!(
        sample(
            &m,
            "warble_station_detections_total",
            &[("station", "fen-1"), ("code", "eurrob1")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&m, "warble_station_missing_events", &fen1),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "warble_station_missing_events", &fen2),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "warble_station_info",
            &[
                ("station", "fen-1"),
                ("agent", "0.9.0"),
                ("model", "warble-demo"),
                ("model_version", "0.1.0"),
                ("engine", ""),
            ]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&m, "warble_invalid_messages_total", &[]), Some(0.0));
    let (status, _, _) = get(port, "/nothing-here");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}
