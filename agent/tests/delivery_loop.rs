//! A running station's delivery, in process (`warble_agent::delivery::Delivery`) against
//! a real mosquitto: one connection carries every burst, an event leaves the outbox when
//! the sink that committed it wakes delivery (there is no polling timer to fall back on:
//! without the wake nothing is sent), a clean stop leaves nothing behind, replay requests
//! handed over by presence are served, and while the broker is away the heartbeat's
//! view of the outbox keeps up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use warble_agent::delivery::{Delivery, DeliveryHealth};
use warble_agent::outbox::Outbox;
use warble_core::wire::ReplayRequest;
use warble_tests::broker::Mosquitto;

/// Runs `delivery` on a thread of its own until `shutdown`.
fn spawn(
    delivery: Delivery,
    shutdown: &CancellationToken,
) -> std::thread::JoinHandle<Result<(), warble_agent::publish::DeliveryError>> {
    let shutdown = shutdown.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(delivery.run(shutdown))
    })
}

#[test]
fn one_connection_carries_every_burst_and_a_commit_wakes_delivery() {
    let broker = Mosquitto::start_with("allow_anonymous true\nset_tcp_nodelay true\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    // Delivery's handle and the recorder's, as in the agent.
    let outbox = Outbox::open(&path, 1 << 30).unwrap();
    let mut recorder = Outbox::open(&path, 1 << 30).unwrap();
    let cfg = common::broker_config(broker.port());
    let messages = common::subscribe(broker.port(), "watcher", "warble/wetland-03/detections");
    let (wake, health) = (Arc::new(Notify::new()), Arc::new(DeliveryHealth::default()));
    let shutdown = CancellationToken::new();
    // No idle look at the outbox during the test: a commit must wake delivery.
    let delivery = Delivery::new(outbox, cfg.clone(), wake.clone(), health.clone())
        .with_recheck(Duration::from_secs(3600));
    let running = spawn(delivery, &shutdown);
    common::wait_for(&broker, "as warble-wetland-03", 1);

    let receive = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let (_, payload) = messages.recv_timeout(Duration::from_secs(10)).unwrap();
                serde_json::from_slice::<warble_core::event::Detection>(&payload)
                    .unwrap()
                    .id
            })
            .collect()
    };
    // Committed without a wake: nothing goes (no timer on the path)...
    recorder.push(&[common::sample_event(0)]).unwrap();
    assert!(messages.recv_timeout(Duration::from_secs(2)).is_err());
    // ... until the sink wakes delivery.
    wake.notify_one();
    assert_eq!(receive(1), ["wetland-03:7:0"]);
    for burst in 0..3u64 {
        let events: Vec<_> = (1 + burst * 5..6 + burst * 5)
            .map(common::sample_event)
            .collect();
        recorder.push(&events).unwrap();
        wake.notify_one();
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(receive(5), ids, "burst {burst}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // One event committed just before the stop still goes.
    recorder.push(&[common::sample_event(99)]).unwrap();
    shutdown.cancel();
    running.join().unwrap().unwrap();
    assert_eq!(receive(1), ["wetland-03:7:99"]);
    assert_eq!(recorder.stats().unwrap().depth, 0);
    assert_eq!(health.outbox().unwrap().stats.depth, 0);
    // Every burst on one connection (the old loop connected once per burst).
    let log = broker.log();
    assert_eq!(log.matches("as warble-wetland-03").count(), 1, "{log}");

    // What another writer commits (no wake) is found by the idle look at the outbox.
    let outbox = Outbox::open(&path, 1 << 30).unwrap();
    let shutdown = CancellationToken::new();
    let other_wake = Arc::new(Notify::new());
    let delivery = Delivery::new(outbox, cfg, other_wake.clone(), health.clone())
        .with_recheck(Duration::from_millis(200));
    let running = spawn(delivery, &shutdown);
    recorder.push(&[common::sample_event(100)]).unwrap();
    assert_eq!(receive(1), ["wetland-03:7:100"]);

    // A replay request handed over by presence: delivery queues the archived events
    // again and sends them at once, marked historical.
    let replay = ReplayRequest {
        boot: 7,
        first: 1,
        last: 5,
    };
    assert!(health.request_replay(replay));
    other_wake.notify_one();
    let again: Vec<_> = (0..5)
        .map(|_| {
            let (_, payload) = messages.recv_timeout(Duration::from_secs(10)).unwrap();
            serde_json::from_slice::<warble_core::event::Detection>(&payload).unwrap()
        })
        .collect();
    let seqs: Vec<u64> = again.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(again.iter().all(|e| e.historical));
    assert_eq!(health.replayed.load(Ordering::Relaxed), 5);
    shutdown.cancel();
    running.join().unwrap().unwrap();
}

#[test]
fn while_the_broker_is_away_the_heartbeat_sees_the_outbox_fill() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    let mut recorder = Outbox::open(&path, 1 << 30).unwrap();
    let cfg = common::broker_config(port);
    let (wake, health) = (Arc::new(Notify::new()), Arc::new(DeliveryHealth::default()));
    let shutdown = CancellationToken::new();
    let delivery = Delivery::new(
        Outbox::open(&path, 1 << 30).unwrap(),
        cfg,
        wake.clone(),
        health.clone(),
    )
    .with_recheck(Duration::from_secs(3600));
    let running = spawn(delivery, &shutdown);
    let depth = || health.outbox().map(|f| f.stats.depth);
    let settle = |want: u64| {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while depth() != Some(want) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(depth(), Some(want));
    };
    settle(0);
    for n in 1..=3 {
        recorder.push(&[common::sample_event(n)]).unwrap();
        wake.notify_one();
        settle(n);
    }
    shutdown.cancel();
    running.join().unwrap().unwrap();
    assert_eq!(depth(), Some(3), "kept for the next connection");
}
