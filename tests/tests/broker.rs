//! The broker harness starts a real mosquitto that speaks MQTT on a free loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use warble_tests::broker::Mosquitto;

/// A minimal MQTT 3.1.1 CONNECT packet (clean session, keep-alive 60 s).
fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

#[test]
fn mosquitto_accepts_an_mqtt_connection() {
    let broker = Mosquitto::start().unwrap();
    let mut socket = TcpStream::connect(broker.addr()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
        .write_all(&connect_packet("warble-harness-check"))
        .unwrap();
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).unwrap();
    assert_eq!(
        connack,
        [0x20, 0x02, 0x00, 0x00],
        "CONNACK accepted; log:\n{}",
        broker.log()
    );
    assert!(
        broker.log().contains("warble-harness-check"),
        "log:\n{}",
        broker.log()
    );
}

#[test]
fn two_brokers_get_different_ports() {
    let a = Mosquitto::start().unwrap();
    let b = Mosquitto::start().unwrap();
    assert_ne!(a.port(), b.port());
}
