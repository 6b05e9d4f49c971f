//! What stations, collectors and the broker's ACL must agree on, typed once: the topic
//! tree ([`Topics`], [`Leaf`]), the messages besides detections ([`Status`],
//! [`Heartbeat`], [`ReplayRequest`], [`ModelReport`]), station ids and group names (they become MQTT topic levels, broker user names and ACL lines),
//! topic prefixes and broker user names. Each check refuses what would let a name reach
//! beyond its place: wildcards (`+`, `#`), level separators, whitespace and control
//! characters (a newline in an ACL name starts a new ACL line).

use std::fmt;

mod messages;
mod model;
mod replay;
mod topics;

pub use messages::{
    ClockState, DeliveryState, DeviceState, Engine, Heartbeat, Presence, ReserveState, Status,
};
pub use model::{Candidate, ModelReport, ModelState, ModelVersion};
pub use replay::{InboundError, MAX_RANGE, MAX_REQUEST_BYTES, ReplayRequest};
pub use topics::{
    HA_DISCOVERY_PREFIX, Leaf, TopicPrefix, Topics, ha_discovery_filter, ha_discovery_topic,
    ha_node,
};

/// The most boots one heartbeat lists (a collector ignores a heartbeat with more): a
/// station restarting every few minutes for a week holds more, and then lists the newest.
pub const MAX_HEARTBEAT_BOOTS: usize = 1024;

/// One entry of a heartbeat's `delivered` list: what the station holds of one boot. The
/// list names every boot the station still holds events of (archived after delivery, or
/// waiting), up to [`MAX_HEARTBEAT_BOOTS`]; a boot it does not name has nothing left to
/// replay.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct BootHeld {
    /// The boot.
    pub boot: u64,
    /// One past the highest seq the broker acknowledged (0: none yet). Subscribers compare
    /// it with what they hold to find events lost at the end of a stream, which no later
    /// seq reveals.
    pub next_seq: u64,
    /// The lowest seq the station still holds: what lies below expired from its archive
    /// or was given up to its quota, and cannot be replayed. Absent from agents before
    /// 0.2 (then nothing is known to be gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_from: Option<u64>,
}

/// Names that may not be station ids: the broker users of the fleet's other roles (a
/// station called `operator` would share the operator's ACL section and rights).
pub const RESERVED_IDS: [&str; 3] = ["operator", "collector", "fleet"];

/// The longest station id, in characters.
pub const MAX_STATION_ID: usize = 32;

/// A checked station id: 1–32 characters of `a-z`, `0-9` and `-`, not starting with `-`,
/// and none of [`RESERVED_IDS`]. Safe as one MQTT topic level, a broker user name and a
/// file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StationId(String);

impl StationId {
    /// Checks `id`.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn new(id: &str) -> Result<Self, String> {
        if !is_level_name(id) {
            return Err(format!(
                "`{}` is not a station id (1–{MAX_STATION_ID} characters of a-z, 0-9 and -, not starting with -)",
                id.escape_debug()
            ));
        }
        if RESERVED_IDS.contains(&id) {
            return Err(format!(
                "`{id}` is reserved for the fleet's broker users ({}), not a station id",
                RESERVED_IDS.join(", ")
            ));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 1–[`MAX_STATION_ID`] characters of `a-z`, `0-9` and `-`, not starting with `-`: the
/// names that become one topic level (station ids, group names).
fn is_level_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STATION_ID
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks a fleet group name: it becomes the topic level of `<prefix>/fleet/<group>/…`,
/// with the same rules as a station id (reserved names apart).
///
/// # Errors
/// What is wrong with it.
pub fn check_group(group: &str) -> Result<(), String> {
    if !is_level_name(group) {
        return Err(format!(
            "`{}` is not a group name (1–{MAX_STATION_ID} characters of a-z, 0-9 and -, not starting with -)",
            group.escape_debug()
        ));
    }
    Ok(())
}

/// Checks a topic prefix: one or more levels of `A-Z a-z 0-9 _ - .`, separated by `/`.
///
/// # Errors
/// What is wrong with it.
pub fn check_topic_prefix(prefix: &str) -> Result<(), String> {
    let level_ok = |l: &str| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if prefix.len() > 128 || !prefix.split('/').all(level_ok) || prefix.starts_with('$') {
        return Err(format!(
            "`{}` is not a topic prefix (levels of A-Z, a-z, 0-9, _ - . separated by /; no wildcards # +, no empty levels, no whitespace)",
            prefix.escape_debug()
        ));
    }
    Ok(())
}

/// Checks a broker user name (the operator's, the collectors'): 1–64 characters of
/// `A-Z a-z 0-9 _ - .`.
///
/// # Errors
/// What is wrong with it.
pub fn check_user_name(user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(format!(
            "`{}` is not a broker user name (1–64 characters of A-Z, a-z, 0-9, _ - .)",
            user.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn station_ids_are_topic_levels_and_user_names() {
        for ok in ["a", "wetland-03", "a1-b2", &"x".repeat(32)] {
            assert_eq!(StationId::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "-a",
            "Wetland",
            "a/b",
            "a+",
            "#",
            "a b",
            "a\n",
            "a\0",
            &"x".repeat(33),
        ] {
            assert!(StationId::new(bad).is_err(), "{bad:?}");
        }
        for reserved in RESERVED_IDS {
            assert!(StationId::new(reserved).unwrap_err().contains("reserved"));
        }
    }

    #[test]
    fn groups_prefixes_and_users_cannot_reach_beyond_their_place() {
        check_group("wetland-2").unwrap();
        for bad in ["", "x\ntopic readwrite #", "a/b", "+", "A"] {
            assert!(check_group(bad).is_err(), "{bad:?}");
        }
        for ok in ["warble", "org/warble", "a.b/c_d-1"] {
            check_topic_prefix(ok).unwrap();
        }
        for bad in [
            "", "warble/#", "a/+/b", "/a", "a/", "a//b", "a b", "a\nb", "$SYS",
        ] {
            assert!(check_topic_prefix(bad).is_err(), "{bad:?}");
        }
        check_user_name("operator").unwrap();
        for bad in ["", "a b", "a\nuser x", "a#"] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }
}
