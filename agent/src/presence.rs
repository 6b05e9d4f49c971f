//! The station's presence on the broker, on a connection of its own (client id
//! `<client id>-status`) so that it never delays detections: a retained `online` status
//! on every connection, `offline` as the last will (a crash or a lost link) and, on a
//! clean stop, published retained before disconnecting; a heartbeat every interval;
//! Home Assistant discovery; replay requests from subscribers (topic `replay`,
//! subscribed at QoS 0: a request missed while the station is away is asked again),
//! validated here and handed to delivery, which owns the outbox.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, LastWill, Packet};
use rumqttc::v5::mqttbytes::{self, QoS};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, StateError};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warble_core::wire::{Heartbeat, Leaf, ReplayRequest, Status};
use warble_mqtt::{puback_refusal, reconnect_backoff};

use crate::health::{Health, StationFacts};
use crate::publish::{BrokerConfig, MAX_INBOUND_PACKET};

/// How long a clean stop waits for the broker to take the `offline` status.
const GOODBYE: Duration = Duration::from_secs(2);

/// What arrived for the station on its presence connection.
#[derive(Debug, Clone, Copy)]
pub enum Inbound<'a> {
    /// A message on the replay topic (unvalidated).
    Replay(&'a [u8]),
    /// A message too large to read ([`MAX_INBOUND_PACKET`]); it cost the connection.
    Oversized(usize),
}

/// The presence of a running station (see the module documentation).
#[derive(Debug)]
pub struct Presence {
    cfg: BrokerConfig,
    interval: Duration,
    health: Arc<Health>,
    facts: StationFacts,
    wake_delivery: Arc<Notify>,
}

impl Presence {
    /// Presence on the broker of `cfg`, a heartbeat every `interval` built from `health`
    /// and `facts`; replay requests go to `health.delivery`, woken with `wake_delivery`.
    pub fn new(
        cfg: BrokerConfig,
        interval: Duration,
        health: Arc<Health>,
        facts: StationFacts,
        wake_delivery: Arc<Notify>,
    ) -> Self {
        Self {
            cfg,
            interval,
            health,
            facts,
            wake_delivery,
        }
    }

    /// The heartbeat now.
    pub fn heartbeat(&self) -> Heartbeat {
        let outbox = self.health.delivery.outbox();
        self.health.heartbeat(&self.facts, outbox.as_ref())
    }

    /// Takes one inbound message: a valid replay request goes to delivery; anything else
    /// is counted and said, and changes nothing.
    pub fn inbound(&self, msg: Inbound<'_>) {
        let parsed = match msg {
            Inbound::Replay(payload) => ReplayRequest::parse(payload).map_err(|e| e.to_string()),
            Inbound::Oversized(size) => Err(format!("{size} bytes, too large to read")),
        };
        let refused = match parsed {
            Ok(req) if self.health.delivery.request_replay(req) => {
                self.health.replay_requests.fetch_add(1, Ordering::Relaxed);
                self.wake_delivery.notify_one();
                return;
            }
            Ok(req) => format!(
                "replay of boot {} seq {}–{}: {} requests wait already; ask again later",
                req.boot,
                req.first,
                req.last,
                crate::delivery::MAX_WAITING_REPLAYS
            ),
            Err(reason) => reason,
        };
        self.health.inbound_rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("ignored an inbound message: {refused}");
    }

    /// Keeps the station present until `cancel`, then says `offline` and leaves.
    /// Connection problems are retried with the one backoff.
    pub async fn run(self, cancel: CancellationToken) {
        let status = self.cfg.topics.topic(Leaf::Status);
        let offline = Status::offline().to_json();
        let mut backoff = reconnect_backoff();
        let mut status_refused = false;
        while !cancel.is_cancelled() {
            let mut opts = self
                .cfg
                .endpoint
                .options(&format!("{}-status", self.cfg.client_id));
            opts.set_clean_start(true)
                .set_max_packet_size(Some(MAX_INBOUND_PACKET as u32))
                .set_last_will(LastWill::new(
                    status.clone(),
                    offline.clone(),
                    QoS::AtLeastOnce,
                    true,
                    None,
                ));
            let replay = self.cfg.topics.topic(Leaf::Replay);
            let (client, mut eventloop) = AsyncClient::new(opts, 16);
            let mut next_beat = Instant::now();
            // The timer only joins the race once connected: cancelling `poll` while it is
            // still connecting drops a socket that has sent CONNECT, and the broker then
            // publishes the will (`offline`) before the station was ever online.
            let mut connected = false;
            loop {
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    () = tokio::time::sleep_until(next_beat), if connected => {
                        let beat = self.heartbeat().to_json();
                        let _ = client.try_publish(self.cfg.topics.topic(Leaf::Heartbeat), QoS::AtMostOnce, false, beat);
                        next_beat = Instant::now() + self.interval;
                        continue;
                    }
                    () = cancel.cancelled() => {
                        // A clean stop says so (the will is only for unclean ones), then
                        // leaves.
                        let _ = client.try_publish(&status, QoS::AtLeastOnce, true, offline.clone());
                        let flush = Instant::now() + GOODBYE;
                        while let Ok(Ok(event)) = tokio::time::timeout_at(flush, eventloop.poll()).await {
                            if matches!(event, Event::Incoming(Packet::PubAck(_))) {
                                break;
                            }
                        }
                        let _ = client.try_disconnect();
                        let _ = tokio::time::timeout_at(flush, eventloop.poll()).await;
                        return;
                    }
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack)))
                        if ack.code == ConnectReturnCode::Success =>
                    {
                        connected = true;
                        backoff.reset();
                        let birth = Status::online(env!("CARGO_PKG_VERSION")).to_json();
                        let _ = client.try_publish(&status, QoS::AtLeastOnce, true, birth);
                        if let Some(device) = &self.cfg.ha_device {
                            for (topic, config) in ha_discovery_configs(&self.cfg, device) {
                                let _ = client.try_publish(topic, QoS::AtLeastOnce, true, config);
                            }
                        }
                        let _ = client.try_subscribe(&replay, QoS::AtMostOnce);
                        next_beat = Instant::now();
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == replay.as_bytes() => {
                        self.inbound(Inbound::Replay(&p.payload));
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some((reason, _)) = puback_refusal(ack.reason)
                            && !status_refused
                        {
                            // Said once: the broker will refuse every status alike.
                            tracing::warn!(
                                "presence: the broker refused the station's status on `{status}` ({reason}): check mqtt.topic_prefix and the broker's ACL"
                            );
                            status_refused = true;
                        }
                    }
                    Ok(_) => {}
                    Err(ConnectionError::MqttState(StateError::Deserialization(
                        mqttbytes::Error::PayloadSizeLimitExceeded { pkt_size, .. },
                    ))) => {
                        self.inbound(Inbound::Oversized(pkt_size));
                        break;
                    }
                    Err(_) => break,
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.take()) => {}
                () = cancel.cancelled() => return,
            }
        }
    }
}

/// Home Assistant MQTT discovery: retained config topics that turn the station's status
/// and heartbeat into entities (a connectivity sensor and a few figures) of one device
/// called `device`.
pub fn ha_discovery_configs(cfg: &BrokerConfig, device: &str) -> Vec<(String, String)> {
    let station = cfg.topics.station().as_str();
    let node = format!("warble_{}", station.replace('-', "_"));
    let status = cfg.topics.topic(Leaf::Status);
    let device = serde_json::json!({
        "identifiers": [node],
        "name": device,
        "manufacturer": "Warble",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let heartbeat = cfg.topics.topic(Leaf::Heartbeat);
    let mut out = vec![(
        format!("homeassistant/binary_sensor/{node}/online/config"),
        serde_json::json!({
            "name": "Online",
            "unique_id": format!("{node}_online"),
            "device_class": "connectivity",
            "state_topic": status,
            "value_template": "{{ value_json.state }}",
            "payload_on": "online",
            "payload_off": "offline",
            "device": device,
        })
        .to_string(),
    )];
    for &(key, name, unit) in Heartbeat::SENSORS {
        let mut c = serde_json::json!({
            "name": name,
            "unique_id": format!("{node}_{key}"),
            "state_topic": heartbeat,
            "value_template": format!("{{{{ value_json.{key} }}}}"),
            "availability_topic": status,
            "availability_template": "{{ value_json.state }}",
            "device": device,
        });
        if let Some(u) = unit {
            c["unit_of_measurement"] = serde_json::Value::from(u);
        }
        out.push((
            format!("homeassistant/sensor/{node}/{key}/config"),
            c.to_string(),
        ));
    }
    out
}
