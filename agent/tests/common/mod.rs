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
