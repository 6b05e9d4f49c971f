//! Helpers shared by the agent's integration tests.
#![allow(dead_code, reason = "each test binary uses some of the helpers")]

use std::path::PathBuf;
use std::process::Command;

/// A file of the repository, from its root.
pub fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// A detection of station `wetland-03`, boot 7, number `seq`: 3 s of robin song (for
/// outbox tests and benches).
pub fn sample_event(seq: u64) -> warble_core::event::Detection {
    use warble_core::event::{DETECTION_SCHEMA, Detection, ModelRef};
    let start = chrono::DateTime::parse_from_rfc3339("2026-05-01T04:30:00Z")
        .expect("a valid time")
        .to_utc();
    Detection {
        schema: DETECTION_SCHEMA.into(),
        id: Detection::make_id("wetland-03", 7, seq),
        station: "wetland-03".into(),
        boot: 7,
        seq,
        start,
        end: start + chrono::Duration::seconds(3),
        start_sample: seq * 96_000,
        end_sample: seq * 96_000 + 96_000,
        code: warble_core::SpeciesCode::new("eurrob1").expect("a valid code"),
        scientific: "Erithacus rubecula".into(),
        common: "European Robin".into(),
        confidence: 0.87,
        model: ModelRef {
            id: "warble-demo".into(),
            version: "0.1.0".into(),
        },
        location: None,
        clip: None,
        historical: false,
    }
}

/// Runs `warble-agent` with `args`: exit code, stdout, stderr.
pub fn agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args(args)
        .output()
        .expect("warble-agent runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A subscriber on `filter` at a broker on 127.0.0.1:`port`, ready (SUBACK received)
/// when returned; yields (topic, payload) for 60 s.
pub fn subscribe(
    port: u16,
    id: &str,
    filter: &str,
) -> std::sync::mpsc::Receiver<(String, Vec<u8>)> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    use std::time::{Duration, Instant};
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(opts, 64);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .expect("subscribe request");
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p))))
                    if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() =>
                {
                    return;
                }
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                _ => {}
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    rx
}
