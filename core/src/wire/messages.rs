//! What a station says about itself: its presence on `status` and its figures on
//! `heartbeat`. Readers are tolerant (a field an older agent does not send reads as its
//! default, `null` where it is unknown); writers send every field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::BootHeld;
use crate::event::ModelRef;

/// Online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// The agent runs and is connected.
    Online,
    /// A clean stop, or (the last will) a crash or a lost link.
    Offline,
}

/// The retained message on `<prefix>/<station>/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// Online or offline.
    pub state: Presence,
    /// The agent's version (online only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl Status {
    /// The birth message of agent `version`.
    pub fn online(version: &str) -> Self {
        Self {
            state: Presence::Online,
            agent: Some(version.to_owned()),
        }
    }

    /// The last will and the clean-stop message.
    pub fn offline() -> Self {
        Self {
            state: Presence::Offline,
            agent: None,
        }
    }

    /// As sent.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Whether the audio device is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Capturing.
    #[default]
    Open,
    /// The device could not be opened (yet): retried with backoff.
    Waiting,
}

/// Whether the station's clock can be trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClockState {
    /// After the agent's build time.
    #[default]
    Set,
    /// Before it: nothing is captured until it is set.
    Waiting,
}

/// Whether the broker takes the station's detections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Accepted (or not yet tried).
    #[default]
    Accepted,
    /// Refused by the broker's ACL: the events wait in the outbox.
    Refused,
}

/// The inference engine a station runs its model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// ONNX Runtime.
    Onnxruntime,
    /// tract (pure Rust): chosen, or the fallback when ONNX Runtime's library is missing.
    Tract,
}

/// The outbox's disk reserve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReserveState {
    /// Held.
    #[default]
    Kept,
    /// Given up to a full disk; retaken when there is room.
    Released,
}

/// The message on `<prefix>/<station>/heartbeat`, every `mqtt.heartbeat_s` (QoS 0).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Heartbeat {
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// CPU seconds used by the agent.
    pub cpu_s: Option<f64>,
    /// Peak resident memory.
    pub peak_rss_bytes: Option<u64>,
    /// Seconds of audio captured.
    pub audio_s: f64,
    /// RMS level of the last captured chunk, dBFS (null before the first, or silence).
    pub audio_level_dbfs: Option<f32>,
    /// Samples lost to ring-buffer overruns.
    pub overruns: u64,
    /// Detections made.
    pub detections: u64,
    /// Events waiting in the outbox (null when the outbox could not be read: 0 would say
    /// nothing waits).
    pub outbox_depth: Option<u64>,
    /// Free space on the data directory's filesystem.
    pub disk_free_bytes: Option<u64>,
    /// Windows classified.
    pub windows: u64,
    /// Mean inference time per window.
    pub inference_ms: Option<f64>,
    /// 99th percentile of the window latency (front end, model, detector).
    pub latency_p99_ms: Option<f64>,
    /// Audio seconds processed per second of processing: the headroom.
    pub realtime_factor: Option<f64>,
    /// What the station holds of each boot (null when it cannot tell: an empty list would
    /// say it holds nothing).
    pub delivered: Option<Vec<BootHeld>>,
    /// Undelivered events given up to the outbox quota.
    pub outbox_dropped: Option<u64>,
    /// Acknowledged events deleted without archiving on a full disk.
    pub outbox_unarchived: Option<u64>,
    /// The outbox's disk reserve.
    pub outbox_reserve: Option<ReserveState>,
    /// Valid replay requests received.
    pub replay_requests: u64,
    /// Events queued again for them.
    pub replayed: u64,
    /// Inbound messages ignored (malformed, oversized, bad range).
    pub inbound_rejected: u64,
    /// Times the audio device failed or could not be reopened.
    pub device_failures: u64,
    /// The audio device.
    pub audio_device: DeviceState,
    /// Whether the broker takes the station's detections.
    pub delivery: DeliveryState,
    /// The clock.
    pub clock: ClockState,
    /// Outbox commits refused (the events wait in memory and are retried).
    pub outbox_failures: u64,
    /// Events waiting in memory for the outbox.
    pub held_events: u64,
    /// Detection rows the output file failed to write (they are in the outbox).
    pub output_failures: u64,
    /// The model the station runs.
    pub model: ModelRef,
    /// Where its model updates stand (as on `<prefix>/<station>/model`); null when the
    /// station takes no updates.
    #[serde(default)]
    pub model_state: Option<crate::wire::ModelState>,
    /// The engine it runs on (`tract` with `runtime.engine = "auto"`: ONNX Runtime could
    /// not be loaded).
    pub engine: Option<Engine>,
    /// The station's boot counter.
    pub boot: u64,
}

impl Heartbeat {
    /// The fields a dashboard shows as sensors (Home Assistant discovery): field, name,
    /// unit.
    pub const SENSORS: &[(&str, &str, Option<&str>)] = &[
        ("detections", "Detections", None),
        ("outbox_depth", "Outbox depth", None),
        ("overruns", "Audio overruns", None),
        ("audio_level_dbfs", "Audio level", Some("dBFS")),
        ("uptime_s", "Uptime", Some("s")),
    ];

    /// As sent.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_read_as_subscribers_expect() {
        assert_eq!(
            Status::online("0.1.0").to_json(),
            r#"{"state":"online","agent":"0.1.0"}"#
        );
        assert_eq!(Status::offline().to_json(), r#"{"state":"offline"}"#);
    }

    #[test]
    fn the_sensors_are_heartbeat_fields() {
        let beat = serde_json::to_value(Heartbeat::default()).unwrap();
        for (key, _, _) in Heartbeat::SENSORS {
            assert!(beat.get(key).is_some(), "{key} is not a heartbeat field");
        }
    }

    #[test]
    fn a_heartbeat_missing_fields_still_reads() {
        // An older agent's heartbeat: only what it knew.
        let beat: Heartbeat = serde_json::from_str(
            r#"{"uptime_s": 5, "delivered": [{"boot": 1, "next_seq": 3}], "clock": "waiting"}"#,
        )
        .unwrap();
        assert_eq!(beat.uptime_s, 5);
        assert_eq!(beat.clock, ClockState::Waiting);
        assert_eq!(beat.delivered.unwrap()[0].next_seq, 3);
        let round: Heartbeat = serde_json::from_str(&Heartbeat::default().to_json()).unwrap();
        assert_eq!(round, Heartbeat::default());
        assert!(serde_json::from_str::<Heartbeat>(r#"{"clock": "maybe"}"#).is_err());
    }
}
