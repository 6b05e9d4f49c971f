//! The station file as written: serde structs that mirror the TOML one to one, unknown
//! keys refused. Nothing here is validated beyond types; [`crate::station`] turns a
//! [`RawStationConfig`] into the typed [`crate::StationConfig`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A station's configuration file (`station.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStationConfig {
    /// Who and where the station is.
    pub station: RawStation,
    /// The audio input.
    #[serde(default)]
    pub audio: RawAudio,
    /// When to listen.
    #[serde(default)]
    pub schedule: RawSchedule,
    /// The model bundle and what to report from it.
    pub model: RawModel,
    /// How windows become detections.
    #[serde(default)]
    pub detection: RawDetection,
    /// Local files of detections and clips.
    #[serde(default)]
    pub output: RawOutput,
    /// Delivery over MQTT; without this section detections stay local.
    #[serde(default)]
    pub mqtt: Option<RawMqtt>,
    /// Where the agent keeps its state.
    pub storage: RawStorage,
    /// Inference runtime.
    #[serde(default)]
    pub runtime: RawRuntime,
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
}

/// `[station]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStation {
    /// Station id: 1–32 characters of `a-z`, `0-9` and `-`, starting with a letter or
    /// digit; used in MQTT topics and detection ids.
    pub id: String,
    /// A human name.
    #[serde(default)]
    pub name: Option<String>,
    /// Latitude, degrees north (−90..90).
    #[serde(default)]
    pub latitude: Option<f64>,
    /// Longitude, degrees east (−180..180).
    #[serde(default)]
    pub longitude: Option<f64>,
    /// IANA time zone (e.g. `Europe/Berlin`) for fixed-time schedule windows.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Fleet group (a topic level): the station also takes model updates offered to
    /// `<prefix>/fleet/<group>/bundle`.
    #[serde(default)]
    pub group: Option<String>,
}

/// `[audio]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudio {
    /// Input device name (as `warble-agent devices` lists it), or `default`.
    pub device: String,
    /// Capture rate, Hz (8,000–384,000); the agent resamples to the model's rate.
    pub sample_rate_hz: u32,
    /// Channels to capture (1–8); they are mixed down to mono.
    pub channels: u16,
    /// Gain applied before analysis, dB (−40..40).
    pub gain_db: f64,
    /// Capture ring buffer, s (0.5–60).
    pub buffer_s: f64,
}

impl Default for RawAudio {
    fn default() -> Self {
        Self {
            device: "default".into(),
            sample_rate_hz: 48_000,
            channels: 1,
            gain_db: 0.0,
            buffer_s: 4.0,
        }
    }
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawSchedule {
    /// `always`, or `windows` to listen only within `[[schedule.window]]`s.
    pub mode: String,
    /// Listening windows (mode `windows`).
    pub window: Vec<RawWindow>,
}

impl Default for RawSchedule {
    fn default() -> Self {
        Self {
            mode: "always".into(),
            window: Vec::new(),
        }
    }
}

/// `[[schedule.window]]`: from `start` to `end`, each `sunrise`, `sunset` or a local
/// `HH:MM`, optionally shifted: `sunrise-30m`, `sunset+1h30m`, `05:00`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Start.
    pub start: String,
    /// End.
    pub end: String,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The bundle to run (`.warble`).
    pub bundle: PathBuf,
    /// Folder of the A/B model slots for updates (default: `<data_dir>/models`).
    #[serde(default)]
    pub slot_dir: Option<PathBuf>,
    /// Public keys (`.pub` files) whose signatures the agent trusts.
    pub trusted_keys: Vec<PathBuf>,
    /// Key ids (as a `.pub` file names them) refused even if trusted: a key retired or
    /// lost.
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    /// Take model updates offered over MQTT (default: yes when `[mqtt]` is set).
    #[serde(default)]
    pub updates: Option<bool>,
    /// Seconds of live audio a new model runs on probation beside the previous one
    /// before it is committed (an offer may ask for another length).
    #[serde(default = "default_probation_s")]
    pub probation_s: f64,
    /// One confidence threshold (0–1) for every species instead of the bundle's
    /// calibrated per-class thresholds (a global sensitivity knob).
    #[serde(default)]
    pub min_confidence: Option<f64>,
    /// Per-species thresholds (species code → 0–1), overriding everything else.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// Report only these species codes (empty: all).
    #[serde(default)]
    pub include: Vec<String>,
    /// Never report these species codes.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Classes (e.g. `human`) whose detection suppresses clip saving around it.
    #[serde(default)]
    pub privacy_classes: Vec<String>,
}

/// `[detection]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetection {
    /// Hop between analysis windows, s (> 0, at most the window length).
    pub hop_s: f64,
    /// Merge consecutive windows of a species into one event.
    pub merge: bool,
    /// Largest gap bridged when merging, s.
    pub merge_gap_s: f64,
    /// A species must be seen this many times (1 = at once) …
    pub confirm_count: u32,
    /// … within this many seconds.
    pub confirm_within_s: f64,
}

impl Default for RawDetection {
    fn default() -> Self {
        Self {
            hop_s: 1.0,
            merge: true,
            merge_gap_s: 0.0,
            confirm_count: 1,
            confirm_within_s: 0.0,
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutput {
    /// Folder for detection files (default: `<data_dir>/detections`).
    pub dir: Option<PathBuf>,
    /// File formats: `jsonl`, `csv`, `raven`, `birdnet`.
    pub formats: Vec<String>,
    /// WAV clips of detections.
    pub clips: Option<RawClips>,
}

impl Default for RawOutput {
    fn default() -> Self {
        Self {
            dir: None,
            formats: vec!["jsonl".into()],
            clips: None,
        }
    }
}

/// `[output.clips]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClips {
    /// Audio kept before a detection, s (0–30).
    #[serde(default = "default_roll")]
    pub pre_roll_s: f64,
    /// Audio kept after a detection, s (0–30).
    #[serde(default = "default_roll")]
    pub post_roll_s: f64,
    /// Disk space for clips, MB; the oldest go first.
    pub quota_mb: u64,
    /// Delete clips older than this many days (0: keep until the quota needs room).
    #[serde(default)]
    pub retention_days: u32,
}

fn default_roll() -> f64 {
    1.0
}

/// `[mqtt]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// `mqtt://host[:port]` or `mqtts://host[:port]` (TLS).
    pub broker: String,
    /// Client id (default: `warble-<station id>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic prefix (default `warble`): no wildcards, no leading or trailing `/`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Heartbeat interval, s (5–3600).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_s: u64,
    /// File with `username:password` on one line.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the broker (`mqtts`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Allow `mqtt://` (plaintext) to a broker that is not on this machine.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Publish Home Assistant discovery configs.
    #[serde(default)]
    pub ha_discovery: bool,
}

fn default_prefix() -> String {
    "warble".into()
}

fn default_heartbeat() -> u64 {
    60
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// The agent's data folder (outbox, boot counter, model slots, detections).
    pub data_dir: PathBuf,
    /// Disk space for undelivered detections, MB; beyond it the oldest are dropped and
    /// counted.
    /// Fractions are allowed (0.05 is 50 kB), from 0.01.
    #[serde(default = "default_outbox_quota")]
    pub outbox_quota_mb: f64,
    /// Removed (each store keeps to its own quota); accepted by the parser only to be
    /// refused with an explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub disk_quota_mb: Option<u64>,
}

fn default_outbox_quota() -> f64 {
    256.0
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawRuntime {
    /// `auto` (ONNX Runtime if it loads, else tract), `ort` or `tract`.
    pub engine: String,
    /// ONNX Runtime shared library (default: found as `warble-agent` documents).
    pub onnxruntime: Option<PathBuf>,
    /// Inference threads (1–64).
    pub threads: usize,
}

impl Default for RawRuntime {
    fn default() -> Self {
        Self {
            engine: "auto".into(),
            onnxruntime: None,
            threads: 1,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

fn default_probation_s() -> f64 {
    600.0
}
