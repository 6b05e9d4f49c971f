//! The detection event (`warble.detection/1`): what a recorder publishes and stores.
//!
//! Its `id` is `station:boot:seq`, unique forever for a station because the boot counter
//! is persisted and `seq` restarts at each boot; subscribers de-duplicate on it and detect
//! gaps from (`boot`, `seq`).
//!
//! A live station reports an event twice: at first sight (`final: false`), the moment a
//! species crosses its threshold, and once more when the event closes (`revision: 1`,
//! the final span and peak confidence). Both carry the same id; a subscriber keeps the
//! highest revision. An event reported once, already closed (batch analysis, a station
//! without first reports), carries neither field: absent means revision 0, final.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::labels::SpeciesCode;

/// Schema string carried in every event.
pub const DETECTION_SCHEMA: &str = "warble.detection/1";

/// The longest event id: a [`crate::wire::MAX_STATION_ID`]-character station and two
/// 19-digit numbers fit.
pub const MAX_ID_BYTES: usize = 80;

/// The longest text field (names, model id and version, clip path), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;

/// The largest `boot` or `seq`: stores keep them as signed 64-bit integers.
pub const MAX_COUNTER: u64 = i64::MAX as u64;

/// The highest `revision`: an event is revised a few times at most (a station sends two
/// reports of each), and stores keep it as a signed 32-bit integer.
pub const MAX_REVISION: u32 = i32::MAX as u32;

/// The model that produced a detection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelRef {
    /// Model id from the bundle manifest.
    pub id: String,
    /// Model version (semver).
    pub version: String,
}

/// Where the station is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Location {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// One detection of one species in one stretch of audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detection {
    /// Always [`DETECTION_SCHEMA`].
    pub schema: String,
    /// `station:boot:seq`.
    pub id: String,
    /// Station id.
    pub station: String,
    /// Boot counter of the station (persisted, incremented at each start).
    pub boot: u64,
    /// Sequence number within the boot, from 0 without gaps.
    pub seq: u64,
    /// Start of the detected stretch (UTC, millisecond precision).
    #[serde(serialize_with = "rfc3339_ms")]
    pub start: DateTime<Utc>,
    /// End of the detected stretch.
    #[serde(serialize_with = "rfc3339_ms")]
    pub end: DateTime<Utc>,
    /// Stream sample offset of the start (at the front end's rate).
    pub start_sample: u64,
    /// Stream sample offset of the end.
    pub end_sample: u64,
    /// Species code.
    pub code: SpeciesCode,
    /// Scientific name.
    pub scientific: String,
    /// Common name.
    pub common: String,
    /// Model confidence in `[0, 1]`.
    pub confidence: f32,
    /// The model that made the call.
    pub model: ModelRef,
    /// Station location, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Saved audio clip (path relative to the station's clip directory), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<String>,
    /// True when re-sent from the outbox after an outage or restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub historical: bool,
    /// Which report of this event it is: 0 the first, higher ones revise it (same id,
    /// later span or higher confidence). Subscribers keep the highest they received.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u32,
    /// False for a first report of an event still open: a revision with its final span
    /// follows. Absent means true.
    #[serde(rename = "final", default = "yes", skip_serializing_if = "is_true")]
    pub is_final: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Detection {
    /// The event id for a station, boot and sequence number.
    pub fn make_id(station: &str, boot: u64, seq: u64) -> String {
        format!("{station}:{boot}:{seq}")
    }

    /// Whether two reports describe the same revision of the same event identically
    /// (`historical` aside: a re-sent event is marked so, and is otherwise the same).
    pub fn same_report(&self, other: &Self) -> bool {
        let mut other = other.clone();
        other.historical = self.historical;
        *self == other
    }

    /// Checks the invariants a subscriber relies on: the schema, a valid station id, the
    /// id made of station, boot and seq, counters a database holds, times and samples in
    /// order, a confidence in `[0, 1]`, and text fields of bounded length without control
    /// characters (a NUL is not storable in PostgreSQL, and a newline breaks CSV readers).
    ///
    /// # Errors
    /// A message naming the first field that breaks them.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != DETECTION_SCHEMA {
            return Err(format!(
                "schema `{}` is not `{DETECTION_SCHEMA}`",
                self.schema.escape_debug()
            ));
        }
        crate::wire::StationId::new(&self.station).map_err(|e| format!("station: {e}"))?;
        if self.boot > MAX_COUNTER || self.seq > MAX_COUNTER {
            return Err(format!(
                "boot {} / seq {} beyond {MAX_COUNTER}",
                self.boot, self.seq
            ));
        }
        if self.id.len() > MAX_ID_BYTES
            || self.id != Self::make_id(&self.station, self.boot, self.seq)
        {
            return Err(format!(
                "id `{}` does not match station:boot:seq",
                truncated(&self.id)
            ));
        }
        let texts = [
            ("scientific", self.scientific.as_str()),
            ("common", self.common.as_str()),
            ("model.id", self.model.id.as_str()),
            ("model.version", self.model.version.as_str()),
            ("clip", self.clip.as_deref().unwrap_or_default()),
        ];
        for (field, text) in texts {
            check_text(field, text)?;
        }
        if self.end < self.start || self.end_sample < self.start_sample {
            return Err("end precedes start".to_owned());
        }
        if !(0.0..=1.0).contains(&self.confidence) {
            return Err(format!("confidence {} outside [0, 1]", self.confidence));
        }
        if self.revision > MAX_REVISION {
            return Err(format!("revision {} beyond {MAX_REVISION}", self.revision));
        }
        Ok(())
    }
}

/// Checks one text field of an event: at most [`MAX_TEXT_BYTES`], no control characters.
///
/// # Errors
/// A message naming `field`.
pub fn check_text(field: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{field} of {} bytes, longer than {MAX_TEXT_BYTES}",
            text.len()
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "{field} `{}` holds a control character",
            truncated(text)
        ));
    }
    Ok(())
}

/// At most 40 characters of `text`, escaped, for messages about hostile input.
fn truncated(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

fn rfc3339_ms<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Detection {
        let start = DateTime::parse_from_rfc3339("2026-05-01T04:30:00.250Z")
            .unwrap()
            .to_utc();
        Detection {
            schema: DETECTION_SCHEMA.into(),
            id: Detection::make_id("wetland-03", 7, 42),
            station: "wetland-03".into(),
            boot: 7,
            seq: 42,
            start,
            end: start + chrono::Duration::seconds(5),
            start_sample: 0,
            end_sample: 160_000,
            code: SpeciesCode::new("eurrob1").unwrap(),
            scientific: "Erithacus rubecula".into(),
            common: "European Robin".into(),
            confidence: 0.91,
            model: ModelRef {
                id: "demo".into(),
                version: "1.0.0".into(),
            },
            location: None,
            clip: None,
            historical: false,
            revision: 0,
            is_final: true,
        }
    }

    #[test]
    fn serialises_with_millisecond_utc_times_and_round_trips() {
        let d = sample();
        d.validate().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            json.contains("\"start\":\"2026-05-01T04:30:00.250Z\""),
            "{json}"
        );
        assert!(json.contains("\"id\":\"wetland-03:7:42\""));
        assert!(!json.contains("historical"), "false is omitted: {json}");
        assert_eq!(serde_json::from_str::<Detection>(&json).unwrap(), d);
    }

    #[test]
    fn first_reports_and_revisions_say_so_and_closed_events_look_as_before() {
        let closed = serde_json::to_string(&sample()).unwrap();
        assert!(
            !closed.contains("revision") && !closed.contains("final"),
            "{closed}"
        );
        let mut first = sample();
        first.is_final = false;
        let json = serde_json::to_string(&first).unwrap();
        assert!(
            json.contains("\"final\":false") && !json.contains("revision"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Detection>(&json).unwrap(), first);
        let mut last = sample();
        last.revision = 1;
        let json = serde_json::to_string(&last).unwrap();
        assert!(
            json.contains("\"revision\":1") && !json.contains("final"),
            "{json}"
        );
        let back: Detection = serde_json::from_str(&json).unwrap();
        assert!(back.is_final && back.revision == 1);
        // An event of an agent before revisions reads as a final first report.
        let old: Detection = serde_json::from_str(&closed).unwrap();
        assert!(old.is_final && old.revision == 0);
        let mut resent = last.clone();
        resent.historical = true;
        assert!(last.same_report(&resent));
        assert!(!last.same_report(&sample()));
    }

    #[test]
    fn validation_catches_inconsistent_events() {
        let mut d = sample();
        d.id = "wetland-03:7:43".into();
        assert!(d.validate().unwrap_err().contains("id"));
        let mut d = sample();
        d.confidence = 1.5;
        assert!(d.validate().unwrap_err().contains("confidence"));
        let mut d = sample();
        d.schema = "warble.detection/2".into();
        assert!(d.validate().unwrap_err().contains("schema"));
    }

    #[test]
    fn validation_refuses_what_stores_cannot_hold() {
        let check = |change: &dyn Fn(&mut Detection), expect: &str| {
            let mut d = sample();
            change(&mut d);
            let err = d.validate().unwrap_err();
            assert!(err.contains(expect), "{expect}: {err}");
        };
        check(
            &|d| {
                d.station = "Other/Station".into();
                d.id = Detection::make_id(&d.station, d.boot, d.seq);
            },
            "station",
        );
        check(
            &|d| {
                d.seq = u64::MAX;
                d.id = Detection::make_id(&d.station, d.boot, d.seq);
            },
            "beyond",
        );
        check(
            &|d| d.id = format!("{}x", "y".repeat(3000)),
            "does not match",
        );
        check(&|d| d.common = "Robin\0".into(), "control character");
        check(&|d| d.scientific = "a\nb".into(), "control character");
        check(
            &|d| d.model.id = "m".repeat(MAX_TEXT_BYTES + 1),
            "longer than",
        );
        check(&|d| d.clip = Some("c\u{7}.wav".into()), "control character");
        check(&|d| d.confidence = f32::NAN, "confidence");
        let mut d = sample();
        d.seq = MAX_COUNTER;
        d.id = Detection::make_id(&d.station, d.boot, d.seq);
        assert!(d.id.len() <= MAX_ID_BYTES);
        d.validate().unwrap();
    }
}
