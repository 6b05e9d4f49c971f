//! Delivery's backoff and presence's heartbeats in tokio's paused time: minutes of the
//! station's schedule pass in a moment, and what they do is counted. (Connecting itself
//! runs in real time: with the clock paused, tokio would move time past the connect
//! timeout while the broker's CONNACK is still on the wire.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use warble_agent::delivery::{Delivery, DeliveryHealth};
use warble_agent::health::{Health, StationFacts};
use warble_agent::outbox::Outbox;
use warble_agent::presence::Presence;
use warble_agent::publish::BrokerConfig;
use warble_core::event::ModelRef;
use warble_core::wire::Heartbeat;
use warble_tests::broker::Mosquitto;

fn broker_config(port: u16, keep_alive: Duration) -> BrokerConfig {
    let mut cfg = common::broker_config(port);
    cfg.endpoint.keep_alive = keep_alive;
    cfg
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn delivery_backs_off_between_attempts_and_keeps_trying() {
    // A "broker" that takes each connection and closes it at once: every attempt is
    // counted, and fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path().join("outbox.sqlite"), 1 << 30).unwrap();
    outbox.push(&[common::sample_event(0)]).unwrap();
    let health = Arc::new(DeliveryHealth::default());
    let shutdown = CancellationToken::new();
    let delivery = Delivery::new(
        outbox,
        broker_config(port, Duration::from_secs(30)),
        Arc::new(Notify::new()),
        health.clone(),
    );
    let real = std::time::Instant::now();
    let running = tokio::spawn(delivery.run(shutdown.clone()));
    // Ten minutes of an outage. Backoff 0.5 s doubling to 30 s, each wait shortened by
    // up to half: 0.5 + 1 + … + 16 ≤ 31.5 s, then one attempt per 15–30 s, plus at most
    // the 5 s connect timeout when the closed connection loses the race to the clock.
    // Without the cap: about 11 attempts; without backoff: thousands.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let n = attempts.load(Ordering::SeqCst);
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert!((20..=50).contains(&n), "{n} attempts in 10 minutes");
    assert!(
        real.elapsed() < Duration::from_secs(60),
        "{:?}",
        real.elapsed()
    );
    assert_eq!(
        health.outbox().unwrap().stats.depth,
        1,
        "kept for the broker's return"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn presence_beats_once_per_interval() {
    let broker = Mosquitto::start_with("allow_anonymous true\n").unwrap();
    let beats = common::subscribe(broker.port(), "watcher", "warble/wetland-03/heartbeat");
    let health = Arc::new(Health::default());
    let facts = StationFacts {
        started: std::time::Instant::now(),
        capture_rate_hz: 32_000,
        data_dir: std::env::temp_dir(),
        model: ModelRef {
            id: "m".into(),
            version: "1".into(),
        },
        engine: warble_core::wire::Engine::Tract,
        boot: 7,
    };
    let interval = Duration::from_secs(60);
    // No keep-alive pings within the test's hour: only heartbeats travel.
    let presence = Presence::new(
        broker_config(broker.port(), Duration::from_secs(7200)),
        interval,
        health,
        facts,
        Arc::new(Notify::new()),
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(presence.run(shutdown.clone()));
    // Connected, in real time: the first heartbeat comes at once.
    let first = tokio::task::spawn_blocking({
        let beats = beats;
        move || {
            let got = beats.recv_timeout(Duration::from_secs(10)).map(|(_, p)| p);
            (beats, got)
        }
    })
    .await
    .unwrap();
    let (beats, got) = first;
    let beat: Heartbeat = serde_json::from_slice(&got.unwrap()).unwrap();
    assert_eq!(beat.boot, 7);
    // An hour of the station's life.
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(3600) + Duration::from_millis(500)).await;
    tokio::time::resume();
    shutdown.cancel();
    running.await.unwrap();
    let mut later = 0;
    while beats.recv_timeout(Duration::from_secs(2)).is_ok() {
        later += 1;
    }
    assert_eq!(later, 60, "one heartbeat a minute");
}
