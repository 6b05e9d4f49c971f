//! The validated station configuration: units in the types, every value in range, and
//! the checks across fields (sun-relative windows need coordinates, windows must not
//! overlap, the clip quota must fit the disk quota, TLS and key files must exist and
//! parse). [`check`] gathers every problem with its field path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::raw::RawStationConfig;
use crate::schedule::{Schedule, TimeSpec, Window};

pub use warble_core::wire::StationId;

/// A probability threshold in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Threshold(f32);

impl Threshold {
    /// The value.
    pub fn get(self) -> f32 {
        self.0
    }
}

/// Where the station is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

/// Inference engine choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// ONNX Runtime when it loads, tract otherwise.
    Auto,
    /// ONNX Runtime only.
    Ort,
    /// tract only.
    Tract,
}

/// Detection file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `warble.detection/1` JSON lines.
    Jsonl,
    /// CSV.
    Csv,
    /// Raven selection table.
    Raven,
    /// BirdNET-Analyzer CSV.
    Birdnet,
}

/// Clip saving.
#[derive(Debug, Clone, PartialEq)]
pub struct Clips {
    /// Audio before a detection.
    pub pre_roll: Duration,
    /// Audio after a detection.
    pub post_roll: Duration,
    /// Disk space for clips.
    pub quota_bytes: u64,
    /// Age after which clips are deleted (`None`: only the quota deletes).
    pub retention: Option<Duration>,
}

/// MQTT delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Mqtt {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// Client id.
    pub client_id: String,
    /// Topic prefix.
    pub topic_prefix: warble_core::wire::TopicPrefix,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// `username:password` file.
    pub credentials_file: Option<PathBuf>,
    /// CA certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Home Assistant discovery.
    pub ha_discovery: bool,
}

/// How the station takes model updates.
#[derive(Debug, Clone, PartialEq)]
pub struct Updates {
    /// Folder of the A/B slots and the model ledger.
    pub slot_dir: PathBuf,
    /// Key ids refused even if trusted.
    pub revoked_keys: Vec<String>,
    /// Live audio a new model runs on probation (unless its offer asks for another).
    pub probation: Duration,
}

/// `[model]`'s update settings: on by default with `[mqtt]`; asked for without it, or
/// with a slot folder given while off, refused (a setting that would do nothing).
fn station_updates(f: &mut Findings, raw: &RawStationConfig) -> Option<Updates> {
    let m = &raw.model;
    let on = m.updates.unwrap_or(raw.mqtt.is_some());
    if on && raw.mqtt.is_none() {
        f.add(
            "model.updates",
            "model updates arrive over MQTT: add an [mqtt] section or remove this line",
        );
        return None;
    }
    if !on {
        if m.slot_dir.is_some() {
            f.add(
                "model.slot_dir",
                "model updates are off (model.updates = false): the slots would never be used; remove this line",
            );
        }
        if !m.revoked_keys.is_empty() {
            f.add(
                "model.revoked_keys",
                "model updates are off (model.updates = false): nothing would be checked against these keys; remove this line",
            );
        }
        return None;
    }
    f.range(
        "model.probation_s",
        m.probation_s,
        1.0,
        7.0 * 86_400.0,
        " s",
    );
    for (i, id) in m.revoked_keys.iter().enumerate() {
        if id.trim().is_empty() || id.chars().any(char::is_whitespace) {
            f.add(
                &format!("model.revoked_keys[{i}]"),
                format!("`{id}` is not a key id (the id a .pub file or a rejection names)"),
            );
        }
    }
    let slot_dir = m
        .slot_dir
        .clone()
        .unwrap_or_else(|| raw.storage.data_dir.join("models"));
    if !slot_dir.is_absolute() {
        f.add(
            "model.slot_dir",
            format!("`{}` must be an absolute path", slot_dir.display()),
        );
    }
    Some(Updates {
        slot_dir,
        revoked_keys: m.revoked_keys.clone(),
        probation: seconds(m.probation_s.clamp(0.0, 7.0 * 86_400.0)),
    })
}

/// The validated configuration the agent runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct StationConfig {
    /// Station id.
    pub id: StationId,
    /// Human name.
    pub name: Option<String>,
    /// Coordinates.
    pub location: Option<Location>,
    /// The time zone of fixed schedule times (`None`: the recorder's own).
    pub timezone: Option<chrono_tz::Tz>,
    /// Fleet group, whose offered models the station also takes.
    pub group: Option<String>,
    /// Input device.
    pub device: String,
    /// Capture rate.
    pub sample_rate_hz: u32,
    /// Captured channels.
    pub channels: u16,
    /// Gain, dB.
    pub gain_db: f32,
    /// Capture buffer.
    pub buffer: Duration,
    /// When to listen.
    pub schedule: Schedule,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Trusted public keys.
    pub trusted_keys: Vec<PathBuf>,
    /// Model updates over MQTT, if taken.
    pub updates: Option<Updates>,
    /// Global confidence floor.
    pub min_confidence: Option<Threshold>,
    /// Per-species thresholds.
    pub thresholds: BTreeMap<String, Threshold>,
    /// Species to report (empty: all).
    pub include: Vec<String>,
    /// Species never reported.
    pub exclude: Vec<String>,
    /// Classes that suppress clips.
    pub privacy_classes: Vec<String>,
    /// Hop between windows.
    pub hop: Duration,
    /// Merge consecutive windows.
    pub merge: bool,
    /// Largest merged gap.
    pub merge_gap: Duration,
    /// Repeat confirmation count.
    pub confirm_count: u32,
    /// Repeat confirmation span.
    pub confirm_within: Duration,
    /// Detection files folder.
    pub output_dir: PathBuf,
    /// Detection file formats.
    pub formats: Vec<Format>,
    /// Clip saving.
    pub clips: Option<Clips>,
    /// MQTT delivery.
    pub mqtt: Option<Mqtt>,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Outbox quota.
    pub outbox_quota_bytes: u64,
    /// Inference engine.
    pub engine: Engine,
    /// ONNX Runtime library.
    pub onnxruntime: Option<PathBuf>,
    /// Inference threads.
    pub threads: usize,
    /// Log level.
    pub log_level: String,
    /// Log as JSON.
    pub log_json: bool,
}

const MB: u64 = 1 << 20;

/// Collects problems as (field path, message, suggestion).
#[derive(Debug, Default)]
pub struct Findings(pub Vec<(String, String, Option<String>)>);

impl Findings {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.0.push((path.to_owned(), message.into(), None));
    }

    fn range(&mut self, path: &str, value: f64, lo: f64, hi: f64, unit: &str) -> bool {
        if value.is_finite() && (lo..=hi).contains(&value) {
            return true;
        }
        self.add(
            path,
            format!("{value} is out of range (allowed: {lo}–{hi}{unit})"),
        );
        false
    }

    fn choice<T: Copy>(&mut self, path: &str, value: &str, options: &[(&str, T)]) -> Option<T> {
        if let Some((_, v)) = options.iter().find(|(n, _)| *n == value) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.0.push((
            path.to_owned(),
            format!("`{value}` is not allowed (allowed: {})", names.join(", ")),
            crate::problem::near_miss(value, names.iter().copied()),
        ));
        None
    }

    fn readable(&mut self, path: &str, file: &Path, base: &Path) {
        let full = base.join(file);
        if let Err(e) = std::fs::File::open(&full) {
            self.add(path, format!("cannot read {}: {e}", full.display()));
        }
    }
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn species_list(f: &mut Findings, path: &str, codes: &[String]) {
    for (i, code) in codes.iter().enumerate() {
        if code.trim().is_empty() || code.chars().any(char::is_whitespace) {
            f.add(
                &format!("{path}[{i}]"),
                format!("`{code}` is not a species code"),
            );
        }
    }
}

/// Validates a raw config. Relative file paths (keys, TLS files) are checked against
/// `base`, the folder of the configuration file.
///
/// # Errors
/// Every problem found, each with its field path.
pub fn check(raw: &RawStationConfig, base: &Path) -> Result<StationConfig, Findings> {
    let mut f = Findings::default();
    let id = StationId::new(&raw.station.id)
        .map_err(|e| f.add("station.id", e))
        .ok();
    let location = match (raw.station.latitude, raw.station.longitude) {
        (Some(lat), Some(lon)) => {
            let ok = f.range("station.latitude", lat, -90.0, 90.0, "°")
                & f.range("station.longitude", lon, -180.0, 180.0, "°");
            ok.then_some(Location {
                latitude: lat,
                longitude: lon,
            })
        }
        (None, None) => None,
        (Some(_), None) => {
            f.add(
                "station.longitude",
                "latitude is set but longitude is missing",
            );
            None
        }
        (None, Some(_)) => {
            f.add(
                "station.latitude",
                "longitude is set but latitude is missing",
            );
            None
        }
    };
    let timezone = raw.station.timezone.as_deref().and_then(|tz| {
        let zone = tz.parse::<chrono_tz::Tz>().ok();
        if zone.is_none() {
            f.add(
                "station.timezone",
                format!("`{tz}` is not an IANA time zone (e.g. Europe/Berlin, UTC)"),
            );
        }
        zone
    });

    let group = raw.station.group.clone();
    if let Some(g) = &group
        && let Err(e) = warble_core::wire::check_group(g)
    {
        f.add("station.group", e);
    }

    let a = &raw.audio;
    f.range(
        "audio.sample_rate_hz",
        f64::from(a.sample_rate_hz),
        8_000.0,
        384_000.0,
        " Hz",
    );
    f.range("audio.channels", f64::from(a.channels), 1.0, 8.0, "");
    f.range("audio.gain_db", a.gain_db, -40.0, 40.0, " dB");
    f.range("audio.buffer_s", a.buffer_s, 0.5, 60.0, " s");
    if a.device.trim().is_empty() {
        f.add(
            "audio.device",
            "empty device name (use `default` for the system's default input)",
        );
    }

    let mode = f.choice(
        "schedule.mode",
        &raw.schedule.mode,
        &[("always", true), ("windows", false)],
    );
    let mut windows = Vec::new();
    for (i, w) in raw.schedule.window.iter().enumerate() {
        let spec = |f: &mut Findings, key: &str, text: &str| {
            TimeSpec::parse(text)
                .map_err(|e| f.add(&format!("schedule.window[{i}].{key}"), e))
                .ok()
        };
        let (start, end) = (spec(&mut f, "start", &w.start), spec(&mut f, "end", &w.end));
        if let (Some(start), Some(end)) = (start, end) {
            if (start.is_solar() || end.is_solar()) && location.is_none() {
                f.add(
                    &format!("schedule.window[{i}]"),
                    "sunrise/sunset windows need station.latitude and station.longitude",
                );
            }
            windows.push(Window { start, end });
        }
    }
    let schedule = match mode {
        Some(true) => {
            if !raw.schedule.window.is_empty() {
                f.add(
                    "schedule.window",
                    "windows are given but schedule.mode is `always` (set mode = \"windows\")",
                );
            }
            Schedule::Always
        }
        _ => {
            if mode == Some(false) && raw.schedule.window.is_empty() {
                f.add(
                    "schedule.window",
                    "mode `windows` needs at least one [[schedule.window]]",
                );
            }
            for (i, j) in crate::schedule::overlaps(&windows, location) {
                f.add(
                    &format!("schedule.window[{j}]"),
                    format!("overlaps schedule.window[{i}]"),
                );
            }
            Schedule::Windows(windows)
        }
    };

    let m = &raw.model;
    let threshold = |f: &mut Findings, path: &str, v: f64| {
        f.range(path, v, 0.0, 1.0, "")
            .then_some(Threshold(v as f32))
    };
    let min_confidence = m
        .min_confidence
        .and_then(|v| threshold(&mut f, "model.min_confidence", v));
    let mut thresholds = BTreeMap::new();
    for (code, &v) in &m.thresholds {
        if let Some(t) = threshold(&mut f, &format!("model.thresholds.{code}"), v) {
            thresholds.insert(code.clone(), t);
        }
    }
    species_list(&mut f, "model.include", &m.include);
    species_list(&mut f, "model.exclude", &m.exclude);
    species_list(&mut f, "model.privacy_classes", &m.privacy_classes);
    for code in m.include.iter().filter(|c| m.exclude.contains(c)) {
        f.add(
            "model.exclude",
            format!("`{code}` is both included and excluded"),
        );
    }
    if m.trusted_keys.is_empty() {
        f.add(
            "model.trusted_keys",
            "no trusted key: the agent would accept no bundle",
        );
    }
    for (i, key) in m.trusted_keys.iter().enumerate() {
        let path = format!("model.trusted_keys[{i}]");
        if let Err(e) = warble_core::bundle::PublicKey::read(base.join(key)) {
            f.add(&path, format!("not a usable public key: {e}"));
        }
    }

    let d = &raw.detection;
    f.range("detection.hop_s", d.hop_s, 0.01, 60.0, " s");
    f.range("detection.merge_gap_s", d.merge_gap_s, 0.0, 600.0, " s");
    f.range(
        "detection.confirm_count",
        f64::from(d.confirm_count),
        1.0,
        100.0,
        "",
    );
    f.range(
        "detection.confirm_within_s",
        d.confirm_within_s,
        0.0,
        3600.0,
        " s",
    );
    if d.confirm_count > 1 && d.confirm_within_s <= 0.0 {
        f.add(
            "detection.confirm_within_s",
            format!(
                "confirm_count = {} needs a positive confirm_within_s",
                d.confirm_count
            ),
        );
    }

    let o = &raw.output;
    let formats: Vec<Format> = o
        .formats
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            f.choice(
                &format!("output.formats[{i}]"),
                name,
                &[
                    ("jsonl", Format::Jsonl),
                    ("csv", Format::Csv),
                    ("raven", Format::Raven),
                    ("birdnet", Format::Birdnet),
                ],
            )
        })
        .collect();
    let clips = o.clips.as_ref().map(|c| {
        f.range("output.clips.pre_roll_s", c.pre_roll_s, 0.0, 30.0, " s");
        f.range("output.clips.post_roll_s", c.post_roll_s, 0.0, 30.0, " s");
        if c.quota_mb == 0 {
            f.add(
                "output.clips.quota_mb",
                "a clip quota of 0 MB keeps no clip (remove [output.clips] to turn clips off)",
            );
        }
        Clips {
            pre_roll: seconds(c.pre_roll_s),
            post_roll: seconds(c.post_roll_s),
            quota_bytes: c.quota_mb.saturating_mul(MB),
            retention: (c.retention_days > 0)
                .then(|| Duration::from_secs(u64::from(c.retention_days) * 86_400)),
        }
    });

    let s = &raw.storage;
    // 10 kB holds a couple of dozen detections: less could hold too few to deliver.
    f.range(
        "storage.outbox_quota_mb",
        s.outbox_quota_mb,
        0.01,
        1_000_000.0,
        " MB",
    );
    let updates = station_updates(&mut f, raw);
    if s.disk_quota_mb.is_some() {
        f.add(
            "storage.disk_quota_mb",
            "is no longer a setting (it was never enforced): the outbox keeps to \
             storage.outbox_quota_mb (its file takes about 1.3 times that, plus the \
             write-ahead log) and clips to output.clips.quota_mb; remove this line",
        );
    }
    if !s.data_dir.is_absolute() {
        f.add(
            "storage.data_dir",
            format!("`{}` must be an absolute path", s.data_dir.display()),
        );
    }

    let mqtt = raw.mqtt.as_ref().and_then(|q| {
        let broker = crate::broker::BrokerUrl::parse(&q.broker).map_err(|e| f.add("mqtt.broker", e)).ok();
        let prefix = warble_core::wire::TopicPrefix::new(&q.topic_prefix).map_err(|e| f.add("mqtt.topic_prefix", e)).ok();
        f.range("mqtt.heartbeat_s", q.heartbeat_s as f64, 5.0, 3600.0, " s");
        for (key, file) in [("credentials_file", &q.credentials_file), ("ca_file", &q.ca_file), ("client_cert", &q.client_cert), ("client_key", &q.client_key)] {
            if let Some(file) = file {
                f.readable(&format!("mqtt.{key}"), file, base);
            }
        }
        let identity = match (&q.client_cert, &q.client_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                f.add("mqtt.client_key", "client_cert and client_key go together (mutual TLS needs both)");
                None
            }
        };
        let (broker, topic_prefix) = (broker?, prefix?);
        if !broker.tls && (q.ca_file.is_some() || identity.is_some()) {
            f.add("mqtt.broker", "TLS files are set but the broker URL is mqtt:// (use mqtts://)");
        }
        if !broker.tls && !broker.is_loopback() && !q.allow_plaintext {
            f.add(
                "mqtt.broker",
                format!("plaintext MQTT to `{}` would send credentials and detections unencrypted (use mqtts://, or set allow_plaintext = true)", broker.host),
            );
        }
        Some(Mqtt {
            host: broker.host,
            port: broker.port,
            tls: broker.tls,
            client_id: q.client_id.clone().unwrap_or_else(|| format!("warble-{}", raw.station.id)),
            topic_prefix,
            heartbeat: Duration::from_secs(q.heartbeat_s),
            credentials_file: q.credentials_file.clone(),
            ca_file: q.ca_file.clone(),
            client_identity: identity,
            ha_discovery: q.ha_discovery,
        })
    });

    let r = &raw.runtime;
    let engine = f.choice(
        "runtime.engine",
        &r.engine,
        &[
            ("auto", Engine::Auto),
            ("ort", Engine::Ort),
            ("tract", Engine::Tract),
        ],
    );
    f.range("runtime.threads", r.threads as f64, 1.0, 64.0, "");
    if r.engine == "tract" && r.threads > 1 {
        // A setting that would do nothing is refused rather than ignored.
        f.add(
            "runtime.threads",
            format!(
                "{} threads with engine = \"tract\": tract runs a model on one thread; threads apply to ONNX Runtime (engine = \"ort\" or \"auto\"), or set threads = 1",
                r.threads
            ),
        );
    }
    let level = f.choice(
        "log.level",
        &raw.log.level,
        &[
            ("error", ()),
            ("warn", ()),
            ("info", ()),
            ("debug", ()),
            ("trace", ()),
        ],
    );
    let log_json = f.choice(
        "log.format",
        &raw.log.format,
        &[("text", false), ("json", true)],
    );

    let (Some(id), Some(engine), Some(_), Some(log_json)) = (id, engine, level, log_json) else {
        return Err(f);
    };
    if !f.0.is_empty() {
        return Err(f);
    }
    Ok(StationConfig {
        id,
        name: raw.station.name.clone(),
        location,
        timezone,
        group,
        device: a.device.clone(),
        sample_rate_hz: a.sample_rate_hz,
        channels: a.channels,
        gain_db: a.gain_db as f32,
        buffer: seconds(a.buffer_s),
        schedule,
        bundle: m.bundle.clone(),
        trusted_keys: m.trusted_keys.clone(),
        updates,
        min_confidence,
        thresholds,
        include: m.include.clone(),
        exclude: m.exclude.clone(),
        privacy_classes: m.privacy_classes.clone(),
        hop: seconds(d.hop_s),
        merge: d.merge,
        merge_gap: seconds(d.merge_gap_s),
        confirm_count: d.confirm_count,
        confirm_within: seconds(d.confirm_within_s),
        output_dir: o
            .dir
            .clone()
            .unwrap_or_else(|| s.data_dir.join("detections")),
        formats,
        clips,
        mqtt,
        data_dir: s.data_dir.clone(),
        outbox_quota_bytes: (s.outbox_quota_mb.clamp(0.0, 1e6) * MB as f64) as u64,
        engine,
        onnxruntime: r.onnxruntime.clone(),
        threads: r.threads,
        log_level: raw.log.level.clone(),
        log_json,
    })
}
