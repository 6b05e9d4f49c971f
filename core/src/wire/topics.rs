//! The topic tree, spelt once. A station publishes and reads under
//! `<prefix>/<station>/<leaf>`; a fleet group's desired model lives at
//! `<prefix>/fleet/<group>/bundle`. Collectors subscribe with `<prefix>/+/<leaf>` and read
//! the station from the `+` level (the broker's ACL binds it to the station's login).

use std::fmt;

use super::{StationId, check_group, check_topic_prefix};

/// The last topic level: what a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leaf {
    /// Detection events (`warble.detection/1`), station → subscribers, QoS 1.
    Detections,
    /// The station's presence ([`super::Status`]), retained, with an `offline` last will.
    Status,
    /// The station's figures ([`super::Heartbeat`]), QoS 0, every `mqtt.heartbeat_s`.
    Heartbeat,
    /// Requests to send events again ([`super::ReplayRequest`]), collector → station.
    Replay,
    /// The desired model bundle, operator → station or group, retained.
    Bundle,
    /// The station's report on the model it runs, station → operator.
    Model,
}

impl Leaf {
    /// Every leaf.
    pub const ALL: [Self; 6] = [
        Self::Detections,
        Self::Status,
        Self::Heartbeat,
        Self::Replay,
        Self::Bundle,
        Self::Model,
    ];

    /// What a station publishes (and collectors read).
    pub const STATION_PUBLISHES: [Self; 4] =
        [Self::Detections, Self::Status, Self::Heartbeat, Self::Model];

    /// What a station reads on its own topics.
    pub const STATION_READS: [Self; 2] = [Self::Bundle, Self::Replay];

    /// The topic level.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Detections => "detections",
            Self::Status => "status",
            Self::Heartbeat => "heartbeat",
            Self::Replay => "replay",
            Self::Bundle => "bundle",
            Self::Model => "model",
        }
    }

    fn parse(level: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == level)
    }
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checked topic prefix: one or more levels of `A-Z a-z 0-9 _ - .` (see
/// [`check_topic_prefix`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPrefix(String);

impl TopicPrefix {
    /// Checks `prefix`.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn new(prefix: &str) -> Result<Self, String> {
        check_topic_prefix(prefix)?;
        Ok(Self(prefix.to_owned()))
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix>/+/<leaf>`: one leaf of every station (collectors, the ACL).
    pub fn filter(&self, leaf: Leaf) -> String {
        format!("{}/+/{leaf}", self.0)
    }

    /// `<prefix>/fleet/<group>/<leaf>`: what a fleet group shares (its desired bundle).
    ///
    /// # Errors
    /// `group` is not a group name.
    pub fn group_topic(&self, group: &str, leaf: Leaf) -> Result<String, String> {
        check_group(group)?;
        Ok(format!("{}/fleet/{group}/{leaf}", self.0))
    }

    /// The station and leaf of `<prefix>/<station>/<leaf>`, if `topic` is one (the station
    /// level is not checked as an id: a caller that stores it checks it).
    pub fn parse<'t>(&self, topic: &'t str) -> Option<(&'t str, Leaf)> {
        let rest = topic.strip_prefix(self.0.as_str())?.strip_prefix('/')?;
        let (station, leaf) = rest.split_once('/')?;
        if station.is_empty() || station.contains(['/', '+', '#']) {
            return None;
        }
        Some((station, Leaf::parse(leaf)?))
    }
}

impl fmt::Display for TopicPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Home Assistant's MQTT discovery prefix (its default).
pub const HA_DISCOVERY_PREFIX: &str = "homeassistant";

/// The node id of `station` in Home Assistant's discovery topics (`-` is not allowed in
/// one).
pub fn ha_node(station: &StationId) -> String {
    format!("warble_{}", station.as_str().replace('-', "_"))
}

/// `homeassistant/<platform>/<node>/<key>/config`: one discovery config of `station`.
pub fn ha_discovery_topic(station: &StationId, platform: &str, key: &str) -> String {
    format!(
        "{HA_DISCOVERY_PREFIX}/{platform}/{}/{key}/config",
        ha_node(station)
    )
}

/// `homeassistant/+/<node>/+/config`: every discovery config of `station` (what the
/// broker's ACL lets it publish there).
pub fn ha_discovery_filter(station: &StationId) -> String {
    format!("{HA_DISCOVERY_PREFIX}/+/{}/+/config", ha_node(station))
}

/// One station's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: TopicPrefix,
    station: StationId,
}

impl Topics {
    /// The topics of `station` under `prefix`.
    pub fn new(prefix: TopicPrefix, station: StationId) -> Self {
        Self { prefix, station }
    }

    /// `<prefix>/<station>/<leaf>`.
    pub fn topic(&self, leaf: Leaf) -> String {
        format!("{}/{}/{leaf}", self.prefix, self.station)
    }

    /// The prefix.
    pub fn prefix(&self) -> &TopicPrefix {
        &self.prefix
    }

    /// The station.
    pub fn station(&self) -> &StationId {
        &self.station
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_filters_and_parsing_agree() {
        let prefix = TopicPrefix::new("org/warble").unwrap();
        let topics = Topics::new(prefix.clone(), StationId::new("marsh-3").unwrap());
        for leaf in Leaf::ALL {
            let topic = topics.topic(leaf);
            assert_eq!(topic, format!("org/warble/marsh-3/{}", leaf.as_str()));
            assert_eq!(prefix.parse(&topic), Some(("marsh-3", leaf)));
        }
        assert_eq!(prefix.filter(Leaf::Heartbeat), "org/warble/+/heartbeat");
        assert_eq!(
            prefix.group_topic("reeds", Leaf::Bundle).unwrap(),
            "org/warble/fleet/reeds/bundle"
        );
        assert!(prefix.group_topic("a/b", Leaf::Bundle).is_err());
        for other in [
            "org/warble/marsh-3/unknown",
            "org/warble/marsh-3",
            "org/warble//detections",
            "org/warble/a/b/detections",
            "org/warblex/marsh-3/detections",
            "warble/marsh-3/detections",
            "org/warble/+/detections",
        ] {
            assert_eq!(prefix.parse(other), None, "{other}");
        }
        assert!(TopicPrefix::new("warble/#").is_err());
    }
}
