//! The broker side of a rendered fleet, enforced by a real mosquitto: a station may
//! publish only as itself, read only its own and its group's bundles, and only the
//! operator may publish bundles; Home Assistant reads the stations' discovery configs and
//! what they point at, and publishes nothing of theirs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{Client, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use warble_tests::broker::Mosquitto;

struct Peer {
    client: Client,
    events: mpsc::Receiver<Event>,
    /// Topics of messages that arrived while waiting for something else.
    arrived: std::cell::RefCell<Vec<String>>,
}

impl Peer {
    /// Connects as `user`; returns the CONNACK code.
    fn connect(port: u16, user: &str, password: &str) -> (Self, ConnectReturnCode) {
        let mut opts = MqttOptions::new(format!("{user}-test"), "127.0.0.1", port);
        opts.set_credentials(user, password)
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(opts, 16);
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                match connection.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(e)) => {
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {}
                }
            }
        });
        let peer = Self {
            client,
            events,
            arrived: Default::default(),
        };
        let code = peer
            .wait(|e| match e {
                Event::Incoming(Packet::ConnAck(a)) => Some(a.code),
                _ => None,
            })
            .unwrap_or(ConnectReturnCode::ServiceUnavailable);
        (peer, code)
    }

    fn wait<T>(&self, mut pick: impl FnMut(&Event) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(e) = self.events.recv_timeout(Duration::from_millis(100)) {
                if let Some(t) = pick(&e) {
                    return Some(t);
                }
                if let Event::Incoming(Packet::Publish(p)) = e {
                    self.arrived.borrow_mut().push(p.topic);
                }
            }
        }
        None
    }

    fn subscribe(&self, filter: &str) {
        self.client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        self.wait(|e| matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(()))
            .expect("SUBACK");
    }

    fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
        self.wait(|e| matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(()))
            .expect("PUBACK");
    }

    /// Topics of the messages received since the last call, and within one second.
    fn received(&self) -> Vec<String> {
        let mut topics = std::mem::take(&mut *self.arrived.borrow_mut());
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Event::Incoming(Packet::Publish(p))) =
                self.events.recv_timeout(Duration::from_millis(50))
            {
                topics.push(p.topic.clone());
            }
        }
        topics
    }
}

#[test]
fn a_rendered_fleet_acl_lets_stations_speak_only_for_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-config/examples/fleet");
    let inventory = warble_config::fleet::read_inventory(&examples.join("stations.csv")).unwrap();
    let out = dir.path().join("deploy");
    warble_config::fleet::render(&examples.join("fleet.toml"), &inventory, &out).unwrap();
    // The rendered password file (hashed by warble-config as mosquitto_passwd does) from
    // the example fleet's secrets (`<user>:example-only-<user>`).
    let passwords = out.join("broker/passwd");
    let broker = Mosquitto::start_with(&format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\n",
        passwords.display(),
        out.join("broker/acl").display()
    ))
    .unwrap();
    let port = broker.port();

    let (_, code) = Peer::connect(port, "grunewald-01", "wrong");
    assert_ne!(
        code,
        ConnectReturnCode::Success,
        "a wrong password is refused"
    );
    let (operator, code) = Peer::connect(port, "operator", "example-only-operator");
    assert_eq!(code, ConnectReturnCode::Success, "{}", broker.log());
    operator.subscribe("warble/#");
    let (collector, _) = Peer::connect(port, "collector", "example-only-collector");
    collector.subscribe("warble/+/detections");
    let (station, code) = Peer::connect(port, "grunewald-01", "example-only-grunewald-01");
    assert_eq!(code, ConnectReturnCode::Success);
    station.subscribe("warble/fleet/+/bundle");
    station.subscribe("warble/grunewald-01/bundle");

    // Its own detections go through; posing as another station or as the operator does not.
    station.publish("warble/grunewald-01/detections", "own");
    station.publish("warble/grunewald-02/detections", "impostor");
    station.publish("warble/fleet/dawn/bundle", "forged bundle");
    assert_eq!(collector.received(), ["warble/grunewald-01/detections"]);
    assert_eq!(operator.received(), ["warble/grunewald-01/detections"]);

    // The operator's bundles reach the station only for its own group and itself.
    operator.publish("warble/fleet/dawn/bundle", "dawn model");
    operator.publish("warble/fleet/wetland/bundle", "wetland model");
    operator.publish("warble/grunewald-01/bundle", "its own model");
    operator.publish("warble/grunewald-02/bundle", "another station's model");
    let mut got = station.received();
    got.sort();
    assert_eq!(
        got,
        ["warble/fleet/dawn/bundle", "warble/grunewald-01/bundle"]
    );

    // Collectors may ask a station for missing events; stations may not ask each other,
    // nor read another station's requests.
    station.subscribe("warble/grunewald-01/replay");
    station.subscribe("warble/grunewald-02/replay");
    let (other, _) = Peer::connect(port, "grunewald-02", "example-only-grunewald-02");
    other.subscribe("warble/grunewald-02/replay");
    collector.publish("warble/grunewald-01/replay", "{}");
    other.publish("warble/grunewald-01/replay", "{}");
    collector.publish("warble/grunewald-02/replay", "{}");
    assert_eq!(station.received(), ["warble/grunewald-01/replay"]);
    assert_eq!(other.received(), ["warble/grunewald-02/replay"]);

    // Home Assistant reads what discovery points at: a station's discovery config, its
    // status, heartbeat and detections; it cannot read bundles or replay requests, nor
    // publish as a station; its birth message goes through, a station's forged config
    // for another does not.
    let (ha, code) = Peer::connect(port, "homeassistant", "example-only-homeassistant");
    assert_eq!(code, ConnectReturnCode::Success, "{}", broker.log());
    for filter in ["homeassistant/#", "warble/#"] {
        ha.subscribe(filter);
    }
    let config = "homeassistant/sensor/warble_grunewald_01/last_species/config";
    station.publish(config, "{}");
    station.publish(
        "homeassistant/sensor/warble_grunewald_02/last_species/config",
        "{}",
    );
    for leaf in ["status", "heartbeat", "detections"] {
        station.publish(&format!("warble/grunewald-01/{leaf}"), "{}");
    }
    operator.publish("warble/fleet/dawn/bundle", "dawn model");
    collector.publish("warble/grunewald-01/replay", "{}");
    ha.publish("warble/grunewald-01/detections", "forged by Home Assistant");
    ha.publish("homeassistant/status", "online");
    let mut got = ha.received();
    got.sort();
    assert_eq!(
        got,
        [
            config,
            "homeassistant/status",
            "warble/grunewald-01/detections",
            "warble/grunewald-01/heartbeat",
            "warble/grunewald-01/status",
        ]
    );
}
