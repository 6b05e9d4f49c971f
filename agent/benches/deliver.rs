//! Delivery throughput: events taken from the durable outbox, published with QoS 1 to a
//! real mosquitto on loopback and deleted on their PUBACK, per second — with one event in
//! flight at a time and with the delivery loop's window of 32, side by side in one run.
//! Run: `cargo bench -p warble-agent --bench deliver`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;
use common::sample_event;

use std::time::{Duration, Instant};

use warble_agent::outbox::Outbox;
use warble_agent::publish::{BrokerConfig, drain};
use warble_core::event::Detection;
use warble_core::wire::{StationId, TopicPrefix, Topics};
use warble_mqtt::Endpoint;
use warble_tests::broker::Mosquitto;

const EVENTS: u64 = 5_000;

fn main() {
    let broker = Mosquitto::start_with("allow_anonymous true\nset_tcp_nodelay true\n").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for window in [1usize, 32] {
        let dir = tempfile::tempdir_in(".").unwrap();
        let mut outbox = Outbox::open(dir.path().join("outbox.db"), 1 << 32).unwrap();
        let events: Vec<Detection> = (0..EVENTS).map(sample_event).collect();
        for chunk in events.chunks(500) {
            outbox.push(chunk).unwrap();
        }
        let cfg = BrokerConfig {
            endpoint: Endpoint::new("127.0.0.1", broker.port()),
            client_id: format!("bench-{window}"),
            topics: Topics::new(
                TopicPrefix::new("warble").unwrap(),
                StationId::new("wetland-03").unwrap(),
            ),
            window,
            ha_device: None,
        };
        let started = Instant::now();
        let report = runtime
            .block_on(drain(
                &mut outbox,
                &cfg,
                tokio::time::Instant::now() + Duration::from_secs(300),
            ))
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!((report.delivered, report.pending), (EVENTS, 0));
        println!(
            "window {window:>2}: {EVENTS} events delivered and deleted in {secs:.2} s = {:.0} events/s",
            EVENTS as f64 / secs
        );
    }
}
