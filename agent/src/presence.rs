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

/// How Home Assistant should show a heartbeat figure: its state class and whether it is
/// a diagnostic (health, not birds).
fn sensor_kind(key: &str) -> (&'static str, Option<&'static str>, Option<&'static str>) {
    match key {
        // Counts since the agent started: they fall back to 0 at a restart.
        "detections" => ("total_increasing", None, None),
        "overruns" => ("total_increasing", Some("diagnostic"), None),
        "uptime_s" => ("total_increasing", Some("diagnostic"), Some("duration")),
        _ => ("measurement", Some("diagnostic"), None),
    }
}

/// Home Assistant MQTT discovery: retained config topics that make one device called
/// `device` of the station, with its connectivity (the status topic), a "Last species"
/// sensor and a "Detection" event entity (the detections topic: the sensor changes at
/// each report, the event fires `detected` at an event's first report and `revised` at its
/// final one, so an automation triggers once per call, at once), and a few heartbeat
/// figures (diagnostics but the detection count). Everything but connectivity is
/// available while the status says online. Field names and types follow Home Assistant's
/// MQTT discovery documentation (`origin`, `device`, `availability_*`, `state_class`,
/// `entity_category`, `event_types`); the templates read the station's own messages.
pub fn ha_discovery_configs(cfg: &BrokerConfig, device: &str) -> Vec<(String, String)> {
    let station = cfg.topics.station();
    let node = warble_core::wire::ha_node(station);
    let status = cfg.topics.topic(Leaf::Status);
    let detections = cfg.topics.topic(Leaf::Detections);
    let heartbeat = cfg.topics.topic(Leaf::Heartbeat);
    let device = serde_json::json!({
        "identifiers": [node],
        "name": device,
        "manufacturer": "Warble",
        "model": "Warble recorder",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let origin = serde_json::json!({
        "name": "warble-agent",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let available = serde_json::json!({
        "availability_topic": status,
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    });
    let entity = |platform: &str, key: &str, mut c: serde_json::Value| {
        c["unique_id"] = format!("{node}_{key}").into();
        c["device"] = device.clone();
        c["origin"] = origin.clone();
        if platform != "binary_sensor" {
            for (k, v) in available.as_object().into_iter().flatten() {
                c[k] = v.clone();
            }
        }
        (
            warble_core::wire::ha_discovery_topic(station, platform, key),
            c.to_string(),
        )
    };
    let mut out = vec![
        entity(
            "binary_sensor",
            "online",
            serde_json::json!({
                "name": "Online",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": status,
                "value_template": "{{ value_json.state }}",
                "payload_on": "online",
                "payload_off": "offline",
            }),
        ),
        entity(
            "sensor",
            "last_species",
            serde_json::json!({
                "name": "Last species",
                "icon": "mdi:bird",
                "state_topic": detections,
                "value_template": "{{ value_json.common }}",
                "json_attributes_topic": detections,
                "json_attributes_template": DETECTION_ATTRIBUTES,
            }),
        ),
        entity(
            "event",
            "detection",
            serde_json::json!({
                "name": "Detection",
                "icon": "mdi:bird",
                "state_topic": detections,
                "event_types": ["detected", "revised"],
                "value_template": DETECTION_EVENT,
            }),
        ),
    ];
    for &(key, name, unit) in Heartbeat::SENSORS {
        let (state_class, category, device_class) = sensor_kind(key);
        let mut c = serde_json::json!({
            "name": name,
            "state_topic": heartbeat,
            "value_template": format!("{{{{ value_json.{key} }}}}"),
            "state_class": state_class,
        });
        if let Some(u) = unit {
            c["unit_of_measurement"] = serde_json::Value::from(u);
        }
        if let Some(category) = category {
            c["entity_category"] = category.into();
        }
        if let Some(class) = device_class {
            c["device_class"] = class.into();
        }
        out.push(entity("sensor", key, c));
    }
    out
}

/// The "Last species" sensor's attributes, from a detection.
const DETECTION_ATTRIBUTES: &str = "{{ {'code': value_json.code, 'scientific': value_json.scientific, \
    'confidence': value_json.confidence, 'start': value_json.start, 'end': value_json.end, \
    'id': value_json.id, 'final': value_json.final | default(true)} | tojson }}";

/// The "Detection" event's payload, from a detection: `detected` at an event's first
/// report (revision 0), `revised` at later ones.
const DETECTION_EVENT: &str = "{{ {'event_type': 'detected' if (value_json.revision | default(0)) == 0 \
    else 'revised', 'code': value_json.code, 'common': value_json.common, \
    'scientific': value_json.scientific, 'confidence': value_json.confidence, \
    'start': value_json.start, 'id': value_json.id} | tojson }}";

#[cfg(test)]
mod tests {
    use super::*;
    use warble_core::wire::{StationId, TopicPrefix, Topics};

    fn configs() -> Vec<(String, serde_json::Value)> {
        let cfg = BrokerConfig {
            endpoint: warble_mqtt::Endpoint::new("127.0.0.1", 1883),
            client_id: "warble-marsh-5".into(),
            topics: Topics::new(
                TopicPrefix::new("warble").unwrap(),
                StationId::new("marsh-5").unwrap(),
            ),
            window: 32,
            ha_device: None,
        };
        ha_discovery_configs(&cfg, "Marsh five")
            .into_iter()
            .map(|(t, c)| (t, serde_json::from_str(&c).unwrap()))
            .collect()
    }

    /// The keys Home Assistant's MQTT discovery documents for each platform that these
    /// configs may use, and the ones it requires.
    fn documented(platform: &str) -> (Vec<&'static str>, Vec<&'static str>) {
        let common = [
            "name",
            "unique_id",
            "device",
            "origin",
            "availability_topic",
            "availability_template",
            "payload_available",
            "payload_not_available",
            "entity_category",
            "icon",
            "json_attributes_topic",
            "json_attributes_template",
            "state_topic",
            "value_template",
            "device_class",
        ];
        let (extra, required): (&[&str], &[&str]) = match platform {
            "sensor" => (&["unit_of_measurement", "state_class"], &["state_topic"]),
            "binary_sensor" => (&["payload_on", "payload_off"], &["state_topic"]),
            "event" => (&["event_types"], &["state_topic", "event_types"]),
            other => panic!("platform {other}"),
        };
        (
            common.iter().chain(extra).copied().collect(),
            required.to_vec(),
        )
    }

    #[test]
    fn discovery_follows_home_assistants_documented_fields() {
        let mut ids = std::collections::BTreeSet::new();
        for (topic, c) in configs() {
            let parts: Vec<&str> = topic.split('/').collect();
            assert_eq!(parts.len(), 5, "{topic}");
            assert_eq!(
                (parts[0], parts[2], parts[4]),
                ("homeassistant", "warble_marsh_5", "config")
            );
            let (allowed, required) = documented(parts[1]);
            let obj = c.as_object().unwrap();
            for key in obj.keys() {
                assert!(
                    allowed.contains(&key.as_str()),
                    "{topic}: {key} is not documented"
                );
            }
            for key in required {
                assert!(obj.contains_key(key), "{topic}: {key} is required");
            }
            for (key, v) in obj {
                let ok = match key.as_str() {
                    "device" => {
                        v["identifiers"].as_array().is_some_and(|a| !a.is_empty())
                            && v["name"].is_string()
                    }
                    "origin" => v["name"].is_string(),
                    "event_types" => v
                        .as_array()
                        .is_some_and(|a| a.iter().all(|t| t.is_string())),
                    "entity_category" => v == "diagnostic" || v == "config",
                    "state_class" => ["measurement", "total", "total_increasing"]
                        .contains(&v.as_str().unwrap_or_default()),
                    _ => v.is_string(),
                };
                assert!(ok, "{topic}: {key} = {v}");
            }
            if c["device_class"] == "duration" {
                assert_eq!(c["unit_of_measurement"], "s");
            }
            assert!(ids.insert(c["unique_id"].as_str().unwrap().to_owned()));
        }
        assert_eq!(ids.len(), 3 + Heartbeat::SENSORS.len());
    }

    /// Renders a discovery template as Home Assistant does (Jinja, the message parsed as
    /// `value_json`).
    fn render(template: &str, message: &serde_json::Value) -> String {
        let env = minijinja::Environment::new();
        env.render_str(template, minijinja::context! { value_json => message })
            .unwrap()
    }

    #[test]
    fn the_templates_read_the_stations_own_messages() {
        let mut first = serde_json::to_value(sample_detection()).unwrap();
        first["final"] = false.into();
        let mut last = serde_json::to_value(sample_detection()).unwrap();
        last["revision"] = 1.into();
        let online = serde_json::to_value(warble_core::wire::Status::online("0.1.0")).unwrap();
        let beat = serde_json::to_value(Heartbeat {
            uptime_s: 42,
            ..Heartbeat::default()
        })
        .unwrap();
        let configs = configs();
        let by_key = |key: &str| {
            configs
                .iter()
                .find(|(t, _)| t.ends_with(&format!("/{key}/config")))
                .map(|(_, c)| c.clone())
                .unwrap()
        };
        let online_sensor = by_key("online");
        assert_eq!(
            render(online_sensor["value_template"].as_str().unwrap(), &online),
            "online"
        );
        let species = by_key("last_species");
        assert_eq!(
            render(species["availability_template"].as_str().unwrap(), &online),
            "online"
        );
        assert_eq!(
            render(species["value_template"].as_str().unwrap(), &first),
            "European Robin"
        );
        let attrs: serde_json::Value = serde_json::from_str(&render(
            species["json_attributes_template"].as_str().unwrap(),
            &first,
        ))
        .unwrap();
        assert_eq!(
            (attrs["code"].as_str(), attrs["final"].as_bool()),
            (Some("eurrob1"), Some(false))
        );
        let attrs: serde_json::Value = serde_json::from_str(&render(
            species["json_attributes_template"].as_str().unwrap(),
            &last,
        ))
        .unwrap();
        assert_eq!(attrs["final"], true, "absent means final");
        let event = by_key("detection");
        let fired = |m: &serde_json::Value| -> serde_json::Value {
            serde_json::from_str(&render(event["value_template"].as_str().unwrap(), m)).unwrap()
        };
        assert_eq!(fired(&first)["event_type"], "detected");
        assert_eq!(fired(&last)["event_type"], "revised");
        assert_eq!(fired(&first)["code"], "eurrob1");
        let types = event["event_types"].as_array().unwrap();
        assert!(
            types.contains(&fired(&first)["event_type"])
                && types.contains(&fired(&last)["event_type"])
        );
        let uptime = by_key("uptime_s");
        assert_eq!(
            render(uptime["value_template"].as_str().unwrap(), &beat),
            "42"
        );
        for (key, _, _) in Heartbeat::SENSORS {
            let c = by_key(key);
            assert_ne!(
                render(c["value_template"].as_str().unwrap(), &beat),
                "",
                "{key}"
            );
        }
    }

    /// A closed event as a station reports it.
    fn sample_detection() -> warble_core::event::Detection {
        let start = chrono::DateTime::parse_from_rfc3339("2026-05-01T04:30:00Z")
            .unwrap()
            .to_utc();
        warble_core::event::Detection {
            schema: warble_core::event::DETECTION_SCHEMA.into(),
            id: warble_core::event::Detection::make_id("marsh-5", 1, 0),
            station: "marsh-5".into(),
            boot: 1,
            seq: 0,
            start,
            end: start + chrono::Duration::seconds(3),
            start_sample: 0,
            end_sample: 96_000,
            code: warble_core::SpeciesCode::new("eurrob1").unwrap(),
            scientific: "Erithacus rubecula".into(),
            common: "European Robin".into(),
            confidence: 0.9,
            model: warble_core::event::ModelRef::default(),
            location: None,
            clip: None,
            historical: false,
            revision: 0,
            is_final: true,
        }
    }
}
