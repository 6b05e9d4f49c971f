//! What the collector's HTTP tests share: a collector fed by a real mosquitto, messages
//! published as a station would, and `warble-collect serve` on a free port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warble_collect::store::Store;
use warble_core::event::Detection;
use warble_tests::broker::Mosquitto;

/// Kills the child however the test ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `warble-collect run` on `broker` into `db`, once it has subscribed.
pub fn collector(broker: &Mosquitto, db: &Path) -> Killed {
    let child = Killed(
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
    while !broker
        .log()
        .contains("Received SUBSCRIBE from warble-collect")
    {
        assert!(Instant::now() < deadline, "{}", broker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Waits until `ready` holds of the store at `db` (the collector writes it meanwhile).
pub fn wait_for_store(db: &Path, mut ready: impl FnMut(&mut Store) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut store = Store::open(db).unwrap();
        if ready(&mut store) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the collector did not store it all: {:?}",
            store.fleet()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Publishes `(topic, payload, retained)` with QoS 1 and waits for every PUBACK.
pub fn publish(port: u16, messages: Vec<(String, Vec<u8>, bool)>) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new("http-test-station", "127.0.0.1", port);
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

pub fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// The sample event `seq` as station `station` sends it.
pub fn detection(station: &str, seq: u64) -> Detection {
    let mut e = warble_tests::events::sample_event(seq);
    e.station = station.into();
    e.id = Detection::make_id(station, e.boot, seq);
    e
}

/// `warble-collect serve` on `db` at a free port: the process and the port.
pub fn serve(db: &Path) -> (Killed, u16) {
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
    let port = loop {
        let line = lines.next().expect("serve says where it listens").unwrap();
        if let Some(at) = line.split("http://127.0.0.1:").nth(1) {
            break at.split('/').next().unwrap().parse().unwrap();
        }
    };
    (serve, port)
}

/// `GET path` on 127.0.0.1:`port`: the status line, the headers (lower case) and the body.
pub fn get(port: u16, path: &str) -> (String, String, String) {
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
