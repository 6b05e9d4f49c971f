//! `warble-collect serve` exposes the fleet in the Prometheus text format: a collector fed
//! by a real mosquitto (status, heartbeats and detections of two stations) and the
//! metrics scraped over HTTP and parsed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warble_core::event::Detection;
use warble_core::wire::{Heartbeat, Status};
use warble_tests::broker::Mosquitto;

/// Kills the child however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Publishes `(topic, payload, retained)` with QoS 1 and waits for every PUBACK.
fn publish(port: u16, messages: Vec<(String, Vec<u8>, bool)>) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new("metrics-test-station", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(opts, messages.len() + 1);
    let want = messages.len();
    for (topic, payload, retain) in messages {
        client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .unwrap();
    }
    let (mut acked, deadline) = (0, Instant::now() + Duration::from_secs(10));
    while acked < want {
        assert!(Instant::now() < deadline, "{acked} of {want} acknowledged");
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            connection.recv_timeout(Duration::from_millis(200))
        {
            acked += 1;
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn event(station: &str, seq: u64) -> Vec<u8> {
    let mut e = warble_tests::events::sample_event(seq);
    e.station = station.into();
    e.id = Detection::make_id(station, e.boot, seq);
    serde_json::to_vec(&e).unwrap()
}

/// `GET path` on 127.0.0.1:`port`: the status line, the headers and the body.
fn get(port: u16, path: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    (status.to_owned(), headers.to_lowercase(), body.to_owned())
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
    let collector = Killed(
        Command::new(env!("CARGO_BIN_EXE_warble-collect"))
            .args([
                "run",
                "--broker",
                &format!("mqtt://127.0.0.1:{}", broker.port()),
            ])
            .args(["--db", db.to_str().unwrap(), "--duration", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker
        .log()
        .matches("Received SUBSCRIBE from warble-collect")
        .count()
        < 1
    {
        assert!(Instant::now() < deadline, "{}", broker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut store = warble_collect::store::Store::open(&db).unwrap();
        let fleet = store.fleet().unwrap();
        let ready = store.ids("fen-1").unwrap().len() == 3
            && store.ids("fen-2").unwrap().len() == 1
            && fleet
                .iter()
                .any(|s| s.station == "fen-1" && s.heartbeat.is_some())
            && fleet
                .iter()
                .any(|s| s.station == "fen-2" && s.online == Some(false));
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the collector did not store it all: {fleet:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(collector);

    let mut serve = Killed(
        Command::new(env!("CARGO_BIN_EXE_warble-collect"))
            .args([
                "serve",
                "--db",
                db.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(serve.0.stderr.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("serve says where it listens").unwrap();
        if let Some(at) = line.split("http://127.0.0.1:").nth(1) {
            break at.split('/').next().unwrap().parse().unwrap();
        }
    };
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
