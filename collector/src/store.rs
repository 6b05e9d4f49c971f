//! The collector's store: detections from every station, de-duplicated by event id, with
//! what a subscriber needs to prove nothing was lost — per station and boot, the sequence
//! numbers seen, so gaps, duplicates and late (historical) arrivals can be reported.
//!
//! SQLite (a file, WAL, `synchronous = FULL`) for one collector, or PostgreSQL
//! (`postgres://…`) for a fleet whose collectors share one store (see [`sql`]). A message
//! is acknowledged to the broker only after its row is committed (see `warble-collect`), so
//! a collector crash loses nothing either: the broker sends the message again and the id
//! makes it a duplicate.

mod sql;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use warble_core::event::{Detection, MAX_COUNTER};
use warble_core::wire::{Heartbeat, Presence, Status};

pub use sql::DbError;
use sql::{Db, Val};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The database reported an error.
    #[error("collector store {store}: {source}")]
    Db {
        /// The store (file, or server address without password).
        store: String,
        /// The database's error.
        source: DbError,
    },
    /// A stored value or the metrics could not be encoded.
    #[error("encoding {what}: {reason}")]
    Encode {
        /// What was encoded.
        what: &'static str,
        /// The encoder's message.
        reason: String,
    },
    /// Writing the CSV export failed.
    #[error("exporting to {path}: {reason}")]
    Export {
        /// The CSV file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// The largest payload taken for an event. A `warble.detection/1` event is well under
/// 1 kB; anything this large is not one, and is ignored (and counted) without parsing.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

pub use warble_core::wire::MAX_HEARTBEAT_BOOTS;

/// Attempts at a batch that deadlocked with another collector's.
const BATCH_ATTEMPTS: usize = 6;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// A new event, stored.
    Stored,
    /// An event already stored (same id, same content but for `historical`), or an
    /// earlier revision of a stored one.
    Duplicate,
    /// A higher revision of a stored event (its final report after the first): it
    /// replaces the stored one.
    Revised,
    /// An event whose id is stored with different content in the same revision: counted,
    /// and kept in the `conflicts` table for inspection; the stored event stays.
    Conflict,
    /// Not a valid `warble.detection/1` event of the topic's station; the reason.
    Invalid(String),
}

/// Per station: counts and gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationReport {
    /// Station id.
    pub station: String,
    /// Distinct events stored.
    pub events: u64,
    /// Boots seen.
    pub boots: Vec<u64>,
    /// Messages that repeated a stored event (or an earlier revision of it).
    pub duplicates: u64,
    /// Revisions that replaced a stored event (final reports of events first reported
    /// open).
    pub revisions: u64,
    /// Events that arrived marked historical (late).
    pub late: u64,
    /// Missing sequence ranges `(boot, first, last)` the station can still send again:
    /// below each boot's highest stored seq, and up to what the station's heartbeats say
    /// its broker acknowledged.
    pub gaps: Vec<(u64, u64, u64)>,
    /// Missing ranges the station no longer holds (its heartbeat says so: below a boot's
    /// floor, or a boot it no longer names): lost for good, and not asked for.
    pub lost: Vec<(u64, u64, u64)>,
    /// Messages that repeated a stored event's id with different content.
    pub conflicts: u64,
    /// Messages that were not events (all stations).
    pub invalid: u64,
}

impl StationReport {
    /// How many sequence numbers [`StationReport::gaps`] spans.
    pub fn missing(&self) -> u64 {
        span(&self.gaps)
    }

    /// How many sequence numbers [`StationReport::lost`] spans.
    pub fn lost_events(&self) -> u64 {
        span(&self.lost)
    }
}

/// The sequence numbers that ranges `(boot, first, last)` cover.
fn span(ranges: &[(u64, u64, u64)]) -> u64 {
    ranges
        .iter()
        .map(|(_, first, last)| last.saturating_sub(*first).saturating_add(1))
        .fold(0, u64::saturating_add)
}

/// What the store holds of one boot of a station.
#[derive(Debug, Default)]
struct BootSummary {
    boot: u64,
    events: u64,
    /// Lowest and highest seq stored.
    held: Option<(u64, u64)>,
    /// One past the highest seq the station's broker acknowledged (0: not known).
    acknowledged: u64,
    /// The lowest seq the station still holds (`u64::MAX`: nothing); `None` while it has
    /// not said (an agent before 0.2).
    floor: Option<u64>,
}

/// Which missing ranges [`Store::ranges`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Those the station can still send again.
    Requestable,
    /// Those below the station's floor: lost.
    Lost,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Db,
    /// Counter increments of the batch being stored.
    tally: std::collections::BTreeMap<(String, String), i64>,
    /// How errors name it: the file, or the server without credentials.
    name: String,
}

/// One schema for both databases (portable types; integers are 64-bit in both).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    station TEXT NOT NULL,
    boot BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    start TEXT NOT NULL,
    code TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    historical BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_station ON events (station, boot, seq);
CREATE TABLE IF NOT EXISTS counters (station TEXT NOT NULL, name TEXT NOT NULL,
    value BIGINT NOT NULL, PRIMARY KEY (station, name));
CREATE TABLE IF NOT EXISTS delivered (station TEXT NOT NULL, boot BIGINT NOT NULL,
    next_seq BIGINT NOT NULL, PRIMARY KEY (station, boot));
CREATE TABLE IF NOT EXISTS archives (station TEXT PRIMARY KEY, reported_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS archived (station TEXT NOT NULL, boot BIGINT NOT NULL,
    archived_from BIGINT NOT NULL, PRIMARY KEY (station, boot));
CREATE TABLE IF NOT EXISTS conflicts (id TEXT NOT NULL, station TEXT NOT NULL,
    received_at TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS conflicts_id ON conflicts (id);
CREATE TABLE IF NOT EXISTS stations (station TEXT PRIMARY KEY, status TEXT, agent TEXT,
    status_at TEXT, beat_at TEXT, beat TEXT);
CREATE TABLE IF NOT EXISTS heartbeats (station TEXT NOT NULL, received_at TEXT NOT NULL,
    payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS heartbeats_station ON heartbeats (station, received_at);
";

/// Typed views of the tables for PostgreSQL users (SQL, Grafana): the tables keep portable
/// text, the views read times as `timestamptz` and payloads as `jsonb`.
const POSTGRES_VIEWS: &str = r#"
CREATE OR REPLACE VIEW detections AS
    SELECT id, station, boot, seq, start::timestamptz AS start,
        (payload::jsonb ->> 'end')::timestamptz AS "end", code, confidence,
        historical <> 0 AS historical, payload::jsonb AS payload
    FROM events;
CREATE OR REPLACE VIEW station_heartbeats AS
    SELECT station, received_at::timestamptz AS received_at, payload::jsonb AS payload
    FROM heartbeats;
CREATE OR REPLACE VIEW station_presence AS
    SELECT station, status, agent, status_at::timestamptz AS status_at,
        beat_at::timestamptz AS beat_at, beat::jsonb AS beat
    FROM stations
"#;

/// How long heartbeats are kept at full rate for plots: a week.
pub const HEARTBEAT_FULL_RATE_S: i64 = 7 * 24 * 3600;

/// How long heartbeats are kept at all: beyond [`HEARTBEAT_FULL_RATE_S`] only the first of
/// each hour stays, for 90 days.
pub const HEARTBEAT_RETENTION_S: i64 = 90 * 24 * 3600;

/// Heartbeats closer together than this are not all kept in the history (the last one is
/// always known): a station beating too fast cannot grow the store without bound.
pub const HEARTBEAT_HISTORY_MIN_GAP_S: i64 = 5;

/// What the collector knows of a station's presence and health.
#[derive(Debug, Clone, PartialEq)]
pub struct StationState {
    /// Station id.
    pub station: String,
    /// What its retained status says: online, offline (a clean stop or its last will);
    /// `None` while the collector has not heard it.
    pub online: Option<bool>,
    /// The agent version its status names.
    pub agent: Option<String>,
    /// When the status arrived.
    pub status_at: Option<DateTime<Utc>>,
    /// Its last heartbeat.
    pub heartbeat: Option<Heartbeat>,
    /// When that arrived.
    pub heartbeat_at: Option<DateTime<Utc>>,
}

/// A first and a last time.
pub type TimeSpan = (DateTime<Utc>, DateTime<Utc>);

/// How many detections of one species the store holds (see [`Store::top_species`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpeciesTally {
    /// Species code.
    pub code: String,
    /// Common name, as the station's model labels it.
    pub common: String,
    /// Scientific name.
    pub scientific: String,
    /// Detections stored.
    pub detections: u64,
    /// Start of the latest.
    pub last_start: DateTime<Utc>,
}

/// Detections of one station in one time bucket (see [`Store::timeline`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimelineCount {
    /// Station id.
    pub station: String,
    /// Start of the bucket (UTC).
    pub bucket: DateTime<Utc>,
    /// Detections whose start falls in it.
    pub detections: u64,
}

/// The width of a [`Store::timeline`] bucket: ten seconds, or a calendar minute, hour or
/// day in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// Ten seconds (`10s`).
    #[serde(rename = "10s")]
    TenSeconds,
    /// A minute.
    Minute,
    /// An hour.
    Hour,
    /// A day.
    Day,
}

impl Bucket {
    /// The most buckets [`Bucket::fitting`] makes of a span.
    pub const MAX_BUCKETS: u16 = 240;

    /// How much of an RFC 3339 time names its bucket: `2026-12-03T06:20:1`,
    /// `2026-12-03T06:20`, `…T06`, `…-03`.
    fn prefix_len(self) -> usize {
        match self {
            Self::TenSeconds => 18,
            Self::Minute => 16,
            Self::Hour => 13,
            Self::Day => 10,
        }
    }

    /// The finest bucket that splits `first..=last` into at most [`Bucket::MAX_BUCKETS`]
    /// (a plot's worth).
    pub fn fitting(first: DateTime<Utc>, last: DateTime<Utc>) -> Self {
        let span = (last - first).num_seconds().max(0);
        let most = i64::from(Self::MAX_BUCKETS);
        if span < most * 10 {
            Self::TenSeconds
        } else if span < most * 60 {
            Self::Minute
        } else if span < most * 3600 {
            Self::Hour
        } else {
            Self::Day
        }
    }

    /// The start of the bucket a prefix of [`Bucket::prefix_len`] names.
    fn start_of(self, prefix: &str) -> Option<DateTime<Utc>> {
        let padded = match self {
            Self::TenSeconds => format!("{prefix}0Z"),
            Self::Minute => format!("{prefix}:00Z"),
            Self::Hour => format!("{prefix}:00:00Z"),
            Self::Day => format!("{prefix}T00:00:00Z"),
        };
        DateTime::parse_from_rfc3339(&padded)
            .ok()
            .map(|t| t.to_utc())
    }
}

/// A station's own message (a status or heartbeat) read as `T`; `None` when it is larger
/// than [`MAX_EVENT_BYTES`], not on a station's topic, or not a `T`.
fn station_message<T: serde::de::DeserializeOwned>(station: &str, payload: &[u8]) -> Option<T> {
    if payload.len() > MAX_EVENT_BYTES || warble_core::wire::StationId::new(station).is_err() {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

/// A time as the store keeps it: RFC 3339 in UTC with milliseconds, so text order is time
/// order in both databases.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_stamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
}

/// The events of rows whose first column is a stored payload; one that no longer parses
/// is left out.
fn detections(rows: &[Vec<Val>]) -> Vec<Detection> {
    rows.iter()
        .filter_map(|r| r.first().and_then(Val::text))
        .filter_map(|p| serde_json::from_str(p).ok())
        .collect()
}

/// Whether `target` names a store several collectors can share (a PostgreSQL server).
pub fn is_shared_store(target: impl AsRef<Path>) -> bool {
    sql::is_postgres(&target.as_ref().to_string_lossy())
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`, for messages.
fn display_name(target: &str) -> String {
    if !sql::is_postgres(target) {
        return target.to_owned();
    }
    match (target.find("://"), target.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_info = &target[scheme + 3..at];
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &target[..scheme + 3], &target[at..])
        }
        _ => target.to_owned(),
    }
}

/// Column `i` of a row as a count (negative values, which the store never writes, as 0).
fn count_at(row: &[Val], i: usize) -> Option<u64> {
    row.get(i).and_then(Val::int).map(|v| v.max(0) as u64)
}

/// A message on `topic_station`'s detections topic as an event, or why it is none.
fn parse_event(topic_station: &str, payload: &[u8]) -> Result<Detection, String> {
    if payload.len() > MAX_EVENT_BYTES {
        return Err(format!(
            "{} bytes, larger than an event may be ({MAX_EVENT_BYTES})",
            payload.len()
        ));
    }
    let event: Detection = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    event.validate()?;
    if event.station != topic_station {
        return Err(format!(
            "an event of station `{}` on the topic of station `{}`",
            event.station,
            topic_station.escape_debug()
        ));
    }
    Ok(event)
}

impl Store {
    /// Opens (or creates) the store: an SQLite file, or a PostgreSQL database given as
    /// `postgres://user[:password]@host[:port]/database`.
    ///
    /// # Errors
    /// [`CollectError::Db`] naming the store (no password in the message).
    pub fn open(target: impl AsRef<Path>) -> Result<Self, CollectError> {
        let target = target.as_ref().to_string_lossy().into_owned();
        let name = display_name(&target);
        let schema = if sql::is_postgres(&target) {
            format!("{SCHEMA};{POSTGRES_VIEWS}")
        } else {
            SCHEMA.to_owned()
        };
        let db = Db::open(&target, &schema).map_err(|source| CollectError::Db {
            store: name.clone(),
            source,
        })?;
        Ok(Self {
            db,
            name,
            tally: Default::default(),
        })
    }

    fn err(&self, source: DbError) -> CollectError {
        CollectError::Db {
            store: self.name.clone(),
            source,
        }
    }

    fn execute(&mut self, sql: &str, args: &[Val]) -> Result<u64, CollectError> {
        self.db.execute(sql, args).map_err(|e| self.err(e))
    }

    fn query(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Vec<Val>>, CollectError> {
        self.db.query(sql, args).map_err(|e| self.err(e))
    }

    /// Counts one message under `name` for `station`; written with the batch, in a fixed
    /// order (collectors updating the same counters in different orders deadlocked).
    fn count(&mut self, station: &str, name: &str) {
        *self
            .tally
            .entry((station.to_owned(), name.to_owned()))
            .or_default() += 1;
    }

    fn write_tally(&mut self) -> Result<(), CollectError> {
        for ((station, name), n) in std::mem::take(&mut self.tally) {
            self.execute(
                "INSERT INTO counters (station, name, value) VALUES ($1, $2, $3)
                 ON CONFLICT (station, name) DO UPDATE SET value = counters.value + $3",
                &[Val::Text(station), Val::Text(name), Val::Int(n)],
            )?;
        }
        Ok(())
    }

    /// Stores several messages in one transaction (one sync): all are committed when this
    /// returns, or none is. A message the database refuses (a value it cannot hold) is
    /// rolled back alone and counted invalid, never failing the batch: it would be sent
    /// again and again to every collector. A deadlock or serialization failure between
    /// collectors sharing a PostgreSQL store retries the batch.
    ///
    /// # Errors
    /// [`CollectError::Db`]: then none may be acknowledged.
    pub fn ingest_many<'p>(
        &mut self,
        messages: impl IntoIterator<Item = (&'p str, &'p [u8])>,
    ) -> Result<Vec<Ingest>, CollectError> {
        let messages: Vec<(&str, &[u8])> = messages.into_iter().collect();
        self.transaction(|store| store.batch_in_transaction(&messages))
    }

    /// Runs `work` in one write transaction, committed when this returns; a deadlock or
    /// serialization failure between collectors sharing a PostgreSQL store rolls it back
    /// and runs it again (up to [`BATCH_ATTEMPTS`] times, backing off).
    fn transaction<T>(
        &mut self,
        mut work: impl FnMut(&mut Self) -> Result<T, CollectError>,
    ) -> Result<T, CollectError> {
        // Jittered, so that two collectors that deadlocked do not collide again in step.
        let mut backoff = warble_core::backoff::Backoff::new(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_secs(1),
        )
        .with_jitter();
        let mut attempt = 1;
        loop {
            self.tally.clear();
            self.db.begin().map_err(|e| self.err(e))?;
            let result = work(self).and_then(|out| {
                self.db.batch("COMMIT").map_err(|e| self.err(e))?;
                Ok(out)
            });
            if result.is_err() {
                let _ = self.db.batch("ROLLBACK");
            }
            match result {
                Err(CollectError::Db { source, .. })
                    if source.is_transient() && attempt < BATCH_ATTEMPTS =>
                {
                    std::thread::sleep(backoff.take());
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn batch_in_transaction(
        &mut self,
        messages: &[(&str, &[u8])],
    ) -> Result<Vec<Ingest>, CollectError> {
        let mut out = Vec::with_capacity(messages.len());
        for &(station, payload) in messages {
            self.db
                .batch("SAVEPOINT message")
                .map_err(|e| self.err(e))?;
            let tally = self.tally.clone();
            match self.ingest_one(station, payload) {
                Ok(i) => {
                    self.db
                        .batch("RELEASE SAVEPOINT message")
                        .map_err(|e| self.err(e))?;
                    out.push(i);
                }
                Err(CollectError::Db { source, .. }) if source.is_refused_value() => {
                    self.db
                        .batch("ROLLBACK TO SAVEPOINT message; RELEASE SAVEPOINT message")
                        .map_err(|e| self.err(e))?;
                    self.tally = tally;
                    self.count("", "invalid");
                    out.push(Ingest::Invalid(format!(
                        "refused by the database: {source}"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        self.write_tally()?;
        Ok(out)
    }

    /// Stores one message's payload, received on the detections topic of station
    /// `topic_station`, committed when this returns. The broker's ACL binds a topic to
    /// its station's credentials, so the topic says who sent the message: an event
    /// claiming another station is refused.
    ///
    /// # Errors
    /// [`CollectError::Db`] (disk full…): the message must then not be acknowledged.
    pub fn ingest(&mut self, topic_station: &str, payload: &[u8]) -> Result<Ingest, CollectError> {
        let mut out = self.ingest_many([(topic_station, payload)])?;
        Ok(out.pop().unwrap_or(Ingest::Duplicate))
    }

    fn ingest_one(&mut self, topic_station: &str, payload: &[u8]) -> Result<Ingest, CollectError> {
        let event = match parse_event(topic_station, payload) {
            Ok(e) => e,
            Err(reason) => {
                self.count("", "invalid");
                return Ok(Ingest::Invalid(reason));
            }
        };
        let inserted = self.execute(
            "INSERT INTO events (id, station, boot, seq, start, code, confidence, historical, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            &[
                Val::Text(event.id.clone()),
                Val::Text(event.station.clone()),
                Val::Int(event.boot as i64),
                Val::Int(event.seq as i64),
                Val::Text(event.start.to_rfc3339()),
                Val::Text(event.code.as_str().to_owned()),
                Val::Real(f64::from(event.confidence)),
                Val::Int(i64::from(event.historical)),
                Val::Text(String::from_utf8_lossy(payload).into_owned()),
            ],
        )?;
        if inserted == 1 {
            if event.historical {
                self.count(&event.station, "late");
            }
            return Ok(Ingest::Stored);
        }
        // Another collector of a shared store may revise the event meanwhile: the update
        // below only takes the payload it read, and reads again when it lost.
        for _ in 0..BATCH_ATTEMPTS {
            let rows = self.query(
                "SELECT payload FROM events WHERE id = $1",
                &[Val::Text(event.id.clone())],
            )?;
            let Some(text) = rows
                .first()
                .and_then(|r| r.first())
                .and_then(Val::text)
                .map(str::to_owned)
            else {
                break;
            };
            let stored = serde_json::from_str::<Detection>(&text).ok();
            let earlier = stored.as_ref().is_some_and(|s| s.revision < event.revision);
            if stored
                .as_ref()
                .is_some_and(|s| s.same_report(&event) || s.revision > event.revision)
            {
                self.count(&event.station, "duplicates");
                return Ok(Ingest::Duplicate);
            }
            if !earlier {
                break;
            }
            let revised = self.execute(
                "UPDATE events SET start = $2, code = $3, confidence = $4, payload = $5
                 WHERE id = $1 AND payload = $6",
                &[
                    Val::Text(event.id.clone()),
                    Val::Text(event.start.to_rfc3339()),
                    Val::Text(event.code.as_str().to_owned()),
                    Val::Real(f64::from(event.confidence)),
                    Val::Text(String::from_utf8_lossy(payload).into_owned()),
                    Val::Text(text),
                ],
            )?;
            if revised == 1 {
                self.count(&event.station, "revisions");
                return Ok(Ingest::Revised);
            }
        }
        self.count(&event.station, "conflicts");
        let text = String::from_utf8_lossy(payload).into_owned();
        self.execute(
            "INSERT INTO conflicts (id, station, received_at, payload)
             SELECT $1, $2, $3, $4
             WHERE NOT EXISTS (SELECT 1 FROM conflicts WHERE id = $1 AND payload = $4)",
            &[
                Val::Text(event.id.clone()),
                Val::Text(event.station.clone()),
                Val::Text(chrono::Utc::now().to_rfc3339()),
                Val::Text(text),
            ],
        )?;
        Ok(Ingest::Conflict)
    }

    /// Notes what a station's heartbeat says of its boots (its `delivered` list, see
    /// [`warble_core::wire::BootHeld`]): per boot, that every seq below `next_seq` was
    /// acknowledged by the broker (this only grows), and what the station still holds —
    /// the floor of each boot it names, nothing of a boot it does not (this is replaced by
    /// each heartbeat: it is the station's state now). Returns whether the heartbeat
    /// carried a valid list; other heartbeats are left alone.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn note_heartbeat(&mut self, station: &str, payload: &[u8]) -> Result<bool, CollectError> {
        self.note_heartbeat_at(station, payload, Utc::now())
    }

    /// [`Store::note_heartbeat`] for a heartbeat that arrived at `now`. Every heartbeat
    /// that reads as one is also kept: the last per station, and a history of
    /// [`HEARTBEAT_FULL_RATE_S`] (at most one per [`HEARTBEAT_HISTORY_MIN_GAP_S`]), then one
    /// per hour up to [`HEARTBEAT_RETENTION_S`].
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn note_heartbeat_at(
        &mut self,
        station: &str,
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, CollectError> {
        let Some(beat) = station_message::<Heartbeat>(station, payload) else {
            return Ok(false);
        };
        self.keep_heartbeat(station, &beat, now)?;
        // A heartbeat that cannot say what the station holds says nothing more here.
        let Some(delivered) = beat.delivered else {
            return Ok(false);
        };
        // Counters a database holds; a few boots (the archive keeps a week).
        if delivered.len() > MAX_HEARTBEAT_BOOTS
            || delivered.iter().any(|t| {
                t.boot > MAX_COUNTER
                    || t.next_seq > MAX_COUNTER
                    || t.archived_from.is_some_and(|f| f > MAX_COUNTER)
            })
        {
            return Ok(false);
        }
        // Agents before 0.2 do not say what they hold: then nothing is known to be gone.
        let says_what_it_holds = delivered.iter().all(|t| t.archived_from.is_some());
        let station = Val::Text(station.into());
        self.transaction(|store| {
            for t in &delivered {
                store.execute(
                    "INSERT INTO delivered (station, boot, next_seq) VALUES ($1, $2, $3)
                     ON CONFLICT (station, boot) DO UPDATE SET next_seq = CASE
                         WHEN excluded.next_seq > delivered.next_seq THEN excluded.next_seq
                         ELSE delivered.next_seq END",
                    &[station.clone(), Val::Int(t.boot as i64), Val::Int(t.next_seq as i64)],
                )?;
            }
            if says_what_it_holds {
                store.execute(
                    "INSERT INTO archives (station, reported_at) VALUES ($1, $2)
                     ON CONFLICT (station) DO UPDATE SET reported_at = excluded.reported_at",
                    &[station.clone(), Val::Text(chrono::Utc::now().to_rfc3339())],
                )?;
                store.execute("DELETE FROM archived WHERE station = $1", std::slice::from_ref(&station))?;
                for t in &delivered {
                    store.execute(
                        "INSERT INTO archived (station, boot, archived_from) VALUES ($1, $2, $3)
                         ON CONFLICT (station, boot) DO UPDATE SET archived_from = excluded.archived_from",
                        &[
                            station.clone(),
                            Val::Int(t.boot as i64),
                            Val::Int(t.archived_from.unwrap_or(0) as i64),
                        ],
                    )?;
                }
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// Keeps `beat` as `station`'s last heartbeat and in its history.
    fn keep_heartbeat(
        &mut self,
        station: &str,
        beat: &Heartbeat,
        now: DateTime<Utc>,
    ) -> Result<(), CollectError> {
        // Stored as the typed message reads it: a field that is not one is not kept.
        let text = serde_json::to_string(beat).map_err(|e| CollectError::Encode {
            what: "a heartbeat",
            reason: e.to_string(),
        })?;
        let at = stamp(now);
        let station = Val::Text(station.into());
        self.transaction(|store| {
            let recent = store.query(
                "SELECT 1 FROM heartbeats WHERE station = $1 AND received_at > $2",
                &[
                    station.clone(),
                    Val::Text(stamp(now - chrono::Duration::seconds(HEARTBEAT_HISTORY_MIN_GAP_S))),
                ],
            )?;
            if recent.is_empty() {
                store.execute(
                    "INSERT INTO heartbeats (station, received_at, payload) VALUES ($1, $2, $3)",
                    &[station.clone(), Val::Text(at.clone()), Val::Text(text.clone())],
                )?;
                let before = |s: i64| Val::Text(stamp(now - chrono::Duration::seconds(s)));
                store.execute(
                    "DELETE FROM heartbeats WHERE station = $1 AND received_at < $2",
                    &[station.clone(), before(HEARTBEAT_RETENTION_S)],
                )?;
                // Older than a week: the first of each hour (stamps are RFC 3339 in UTC,
                // so the first 13 characters name the hour).
                store.execute(
                    "DELETE FROM heartbeats WHERE station = $1 AND received_at < $2
                     AND received_at NOT IN (
                         SELECT MIN(received_at) FROM heartbeats
                         WHERE station = $1 AND received_at < $2
                         GROUP BY substr(received_at, 1, 13))",
                    &[station.clone(), before(HEARTBEAT_FULL_RATE_S)],
                )?;
            }
            store.execute(
                "INSERT INTO stations (station, beat_at, beat) VALUES ($1, $2, $3)
                 ON CONFLICT (station) DO UPDATE SET beat_at = excluded.beat_at, beat = excluded.beat",
                &[station.clone(), Val::Text(at.clone()), Val::Text(text.clone())],
            )?;
            Ok(())
        })
    }

    /// Notes a station's status message (`<prefix>/<station>/status`, retained: online at
    /// its start, offline at a clean stop or as its last will); returns whether it was
    /// one.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn note_status(&mut self, station: &str, payload: &[u8]) -> Result<bool, CollectError> {
        self.note_status_at(station, payload, Utc::now())
    }

    /// [`Store::note_status`] for a status that arrived at `now`.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn note_status_at(
        &mut self,
        station: &str,
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, CollectError> {
        let Some(status) = station_message::<Status>(station, payload) else {
            return Ok(false);
        };
        if status
            .agent
            .as_deref()
            .is_some_and(|a| warble_core::event::check_text("agent", a).is_err())
        {
            return Ok(false);
        }
        let state = match status.state {
            Presence::Online => "online",
            Presence::Offline => "offline",
        };
        self.transaction(|store| {
            store.execute(
                "INSERT INTO stations (station, status, agent, status_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (station) DO UPDATE SET status = excluded.status,
                     agent = CASE WHEN excluded.agent = '' THEN stations.agent ELSE excluded.agent END,
                     status_at = excluded.status_at",
                &[
                    Val::Text(station.into()),
                    Val::Text(state.into()),
                    // (An offline status names no agent: the one named before stays.)
                    Val::Text(status.agent.clone().unwrap_or_default()),
                    Val::Text(stamp(now)),
                ],
            )?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Every station the store knows (from its events, heartbeats or status), with its
    /// presence and last heartbeat, in station order.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn fleet(&mut self) -> Result<Vec<StationState>, CollectError> {
        let mut out = Vec::new();
        let known: std::collections::BTreeMap<String, Vec<Val>> = self
            .query(
                "SELECT station, status, agent, status_at, beat_at, beat FROM stations",
                &[],
            )?
            .into_iter()
            .filter_map(|r| Some((r.first()?.text()?.to_owned(), r)))
            .collect();
        let mut names: std::collections::BTreeSet<String> = self.stations()?.into_iter().collect();
        names.extend(known.keys().cloned());
        for station in names {
            let row = known.get(&station);
            let text = |i: usize| row.and_then(|r| r.get(i)).and_then(Val::text);
            out.push(StationState {
                online: text(1).map(|s| s == "online"),
                agent: text(2).filter(|a| !a.is_empty()).map(str::to_owned),
                status_at: text(3).and_then(parse_stamp),
                heartbeat_at: text(4).and_then(parse_stamp),
                heartbeat: text(5).and_then(|b| serde_json::from_str(b).ok()),
                station,
            });
        }
        Ok(out)
    }

    /// The heartbeats of `station` kept since `since`, oldest first (for plots).
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn heartbeats(
        &mut self,
        station: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Heartbeat)>, CollectError> {
        let rows = self.query(
            "SELECT received_at, payload FROM heartbeats WHERE station = $1 AND received_at >= $2
             ORDER BY received_at",
            &[Val::Text(station.into()), Val::Text(stamp(since))],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let at = parse_stamp(r.first()?.text()?)?;
                let beat = serde_json::from_str(r.get(1)?.text()?).ok()?;
                Some((at, beat))
            })
            .collect())
    }

    /// Detections stored per station and species: `(station, code, count)`.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn species_counts(&mut self) -> Result<Vec<(String, String, u64)>, CollectError> {
        let rows = self.query(
            "SELECT station, code, COUNT(*) FROM events GROUP BY station, code ORDER BY station, code",
            &[],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.first()?.text()?.to_owned(),
                    r.get(1)?.text()?.to_owned(),
                    r.get(2)?.int()?.max(0) as u64,
                ))
            })
            .collect())
    }

    /// The most heard species, by detections stored: of `station`, or of the fleet when
    /// `None`; at most `limit`, most detections first (ties by code).
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn top_species(
        &mut self,
        station: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SpeciesTally>, CollectError> {
        let (filter, mut args) = match station {
            Some(s) => ("WHERE station = $2", vec![Val::Text(s.into())]),
            None => ("", Vec::new()),
        };
        args.insert(0, Val::Int(limit.min(i64::MAX as usize) as i64));
        // Any one payload of the code names the species (the model's label table does).
        let rows = self.query(
            &format!(
                "SELECT code, COUNT(*), MAX(start), MAX(payload) FROM events {filter}
                 GROUP BY code ORDER BY COUNT(*) DESC, code LIMIT $1"
            ),
            &args,
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let named: Detection = serde_json::from_str(r.get(3)?.text()?).ok()?;
                Some(SpeciesTally {
                    code: r.first()?.text()?.to_owned(),
                    common: named.common,
                    scientific: named.scientific,
                    detections: count_at(r, 1)?,
                    last_start: DateTime::parse_from_rfc3339(r.get(2)?.text()?)
                        .ok()?
                        .to_utc(),
                })
            })
            .collect())
    }

    /// Detections stored per station and `bucket` of their start time (UTC), oldest
    /// bucket first.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn timeline(&mut self, bucket: Bucket) -> Result<Vec<TimelineCount>, CollectError> {
        // Starts are RFC 3339 in UTC: a prefix of the text is a calendar bucket.
        let len = bucket.prefix_len();
        let rows = self.query(
            &format!(
                "SELECT station, substr(start, 1, {len}), COUNT(*) FROM events
                 GROUP BY station, substr(start, 1, {len}) ORDER BY 2, 1"
            ),
            &[],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(TimelineCount {
                    station: r.first()?.text()?.to_owned(),
                    bucket: bucket.start_of(r.get(1)?.text()?)?,
                    detections: count_at(r, 2)?,
                })
            })
            .collect())
    }

    /// The start times of the first and the last detection stored (`None`: none is).
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn detection_span(&mut self) -> Result<Option<TimeSpan>, CollectError> {
        let rows = self.query("SELECT MIN(start), MAX(start) FROM events", &[])?;
        let at = |i: usize| {
            rows.first()
                .and_then(|r| r.get(i))
                .and_then(Val::text)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc())
        };
        Ok(at(0).zip(at(1)))
    }

    /// The latest `limit` detections of `station` (by start time, newest first), as
    /// stored (the latest revision of each).
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn recent(&mut self, station: &str, limit: usize) -> Result<Vec<Detection>, CollectError> {
        let rows = self.query(
            "SELECT payload FROM events WHERE station = $1 ORDER BY start DESC, id DESC LIMIT $2",
            &[
                Val::Text(station.into()),
                Val::Int(limit.min(i64::MAX as usize) as i64),
            ],
        )?;
        Ok(detections(&rows))
    }

    /// The conflicting messages kept: `(id, station, received_at, payload)`, oldest first.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn conflicts(&mut self) -> Result<Vec<(String, String, String, String)>, CollectError> {
        let rows = self.query(
            "SELECT id, station, received_at, payload FROM conflicts ORDER BY received_at, id",
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let text = |i: usize| r.get(i).and_then(Val::text).unwrap_or_default().to_owned();
                (text(0), text(1), text(2), text(3))
            })
            .collect())
    }

    fn counter(&mut self, station: &str, name: &str) -> Result<u64, CollectError> {
        let rows = self.query(
            "SELECT value FROM counters WHERE station = $1 AND name = $2",
            &[Val::Text(station.into()), Val::Text(name.into())],
        )?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(Val::int)
            .unwrap_or(0) as u64)
    }

    /// Every station the store knows of (by its events or its heartbeats), sorted.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn stations(&mut self) -> Result<Vec<String>, CollectError> {
        let rows = self.query(
            "SELECT station FROM events GROUP BY station
             UNION SELECT station FROM delivered ORDER BY station",
            &[],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| r.first().and_then(Val::text).map(str::to_owned))
            .collect())
    }

    /// The ids of the events stored from `station`, in id order.
    ///
    /// # Errors
    /// The store failed.
    pub fn ids(&mut self, station: &str) -> Result<Vec<String>, CollectError> {
        let rows = self.query(
            "SELECT id FROM events WHERE station = $1 ORDER BY id",
            &[Val::Text(station.into())],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| r.first().and_then(Val::text).map(str::to_owned))
            .collect())
    }

    /// The events stored from `station` as stored (the latest revision of each), in boot
    /// and seq order; a payload that no longer parses is left out.
    ///
    /// # Errors
    /// The store failed.
    pub fn events_of(&mut self, station: &str) -> Result<Vec<Detection>, CollectError> {
        let rows = self.query(
            "SELECT payload FROM events WHERE station = $1 ORDER BY boot, seq",
            &[Val::Text(station.into())],
        )?;
        Ok(detections(&rows))
    }

    /// Per boot of `station`: events stored, lowest and highest seq stored, one past what
    /// its heartbeats say the broker acknowledged, and the floor of what it still holds.
    fn boots(&mut self, station: &str) -> Result<Vec<BootSummary>, CollectError> {
        let mut boots: std::collections::BTreeMap<u64, BootSummary> = Default::default();
        let arg = [Val::Text(station.into())];
        let held = self.query(
            "SELECT boot, COUNT(*), MIN(seq), MAX(seq) FROM events WHERE station = $1
             GROUP BY boot",
            &arg,
        )?;
        for r in held {
            let int = |i: usize| count_at(&r, i);
            if let (Some(boot), Some(events), Some(lowest), Some(highest)) =
                (int(0), int(1), int(2), int(3))
            {
                let b = boots.entry(boot).or_default();
                (b.boot, b.events, b.held) = (boot, events, Some((lowest, highest)));
            }
        }
        for r in self.query(
            "SELECT boot, next_seq FROM delivered WHERE station = $1",
            &arg,
        )? {
            let int = |i: usize| count_at(&r, i);
            if let (Some(boot), Some(next_seq)) = (int(0), int(1)) {
                let b = boots.entry(boot).or_default();
                (b.boot, b.acknowledged) = (boot, next_seq);
            }
        }
        let reported = !self
            .query("SELECT 1 FROM archives WHERE station = $1", &arg)?
            .is_empty();
        if reported {
            let mut floors = std::collections::BTreeMap::new();
            for r in self.query(
                "SELECT boot, archived_from FROM archived WHERE station = $1",
                &arg,
            )? {
                let int = |i: usize| count_at(&r, i);
                if let (Some(boot), Some(from)) = (int(0), int(1)) {
                    floors.insert(boot, from);
                }
            }
            for b in boots.values_mut() {
                b.floor = Some(floors.get(&b.boot).copied().unwrap_or(u64::MAX));
            }
        }
        Ok(boots.into_values().collect())
    }

    /// Up to `limit` missing ranges `(boot, first, last)` of `station` that the station
    /// can still send again and that end at or after `from` (a boot and a seq; a range
    /// that starts before it is cut there), in order: before each boot's lowest stored
    /// seq, between stored seqs, and after the highest up to what the heartbeats say was
    /// acknowledged — each cut at the floor of what the station still holds. The database
    /// finds the gaps between stored seqs (a window query), so the work is bounded by what
    /// is returned, not by the number of events held.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn gaps(
        &mut self,
        station: &str,
        from: (u64, u64),
        limit: usize,
    ) -> Result<Vec<(u64, u64, u64)>, CollectError> {
        let boots = self.boots(station)?;
        self.ranges(station, &boots, from, limit, Missing::Requestable)
    }

    /// [`Store::gaps`] of the boots `boots` (of [`Store::boots`]), or those below their
    /// floors.
    fn ranges(
        &mut self,
        station: &str,
        boots: &[BootSummary],
        from: (u64, u64),
        limit: usize,
        which: Missing,
    ) -> Result<Vec<(u64, u64, u64)>, CollectError> {
        let mut out = Vec::new();
        for b in boots {
            if b.boot < from.0 {
                continue;
            }
            let after = if b.boot == from.0 { from.1 } else { 0 };
            // The seqs of this boot wanted: [lower, upper].
            let (lower, upper) = match (which, b.floor) {
                (Missing::Requestable, None) => (after, u64::MAX),
                (Missing::Requestable, Some(u64::MAX)) | (Missing::Lost, None | Some(0)) => {
                    continue;
                }
                (Missing::Requestable, Some(floor)) => (after.max(floor), u64::MAX),
                (Missing::Lost, Some(floor)) => (after, floor.saturating_sub(1)),
            };
            if lower > upper {
                continue;
            }
            let push = |first: u64, last: u64, out: &mut Vec<_>| {
                if last >= lower && first <= upper && out.len() < limit {
                    out.push((b.boot, first.max(lower), last.min(upper)));
                }
            };
            match b.held {
                None if b.acknowledged > 0 => push(0, b.acknowledged - 1, &mut out),
                None => {}
                Some((lowest, highest)) => {
                    if lowest > 0 {
                        push(0, lowest - 1, &mut out);
                    }
                    let room = limit.saturating_sub(out.len());
                    if room > 0 && highest > lowest {
                        let inside = self.query(
                            "SELECT seq + 1, nxt - 1 FROM (
                                 SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt
                                 FROM events WHERE station = $1 AND boot = $2
                             ) AS s
                             WHERE nxt > seq + 1 AND nxt - 1 >= $3 AND seq + 1 <= $4
                             ORDER BY seq LIMIT $5",
                            &[
                                Val::Text(station.into()),
                                Val::Int(b.boot as i64),
                                Val::Int(lower.min(MAX_COUNTER) as i64),
                                Val::Int(upper.min(MAX_COUNTER) as i64),
                                Val::Int(room.min(i64::MAX as usize) as i64),
                            ],
                        )?;
                        for r in inside {
                            let int = |i: usize| r.get(i).and_then(Val::int).map(|v| v as u64);
                            if let (Some(first), Some(last)) = (int(0), int(1)) {
                                push(first, last, &mut out);
                            }
                        }
                    }
                    if b.acknowledged > highest.saturating_add(1) {
                        push(highest + 1, b.acknowledged - 1, &mut out);
                    }
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Per-station counts, boots and gaps, by station id.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn report(&mut self) -> Result<Vec<StationReport>, CollectError> {
        let mut out = Vec::new();
        for station in self.stations()? {
            out.push(self.station_report(&station)?);
        }
        Ok(out)
    }

    /// [`Store::report`] of one station (all zero for a station the store does not know).
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn station_report(&mut self, station: &str) -> Result<StationReport, CollectError> {
        let boots = self.boots(station)?;
        Ok(StationReport {
            events: boots.iter().map(|b| b.events).sum(),
            boots: boots
                .iter()
                .filter(|b| b.held.is_some())
                .map(|b| b.boot)
                .collect(),
            duplicates: self.counter(station, "duplicates")?,
            revisions: self.counter(station, "revisions")?,
            conflicts: self.counter(station, "conflicts")?,
            late: self.counter(station, "late")?,
            gaps: self.ranges(station, &boots, (0, 0), usize::MAX, Missing::Requestable)?,
            lost: self.ranges(station, &boots, (0, 0), usize::MAX, Missing::Lost)?,
            invalid: self.counter("", "invalid")?,
            station: station.to_owned(),
        })
    }

    /// Writes every stored event as CSV (id, station, boot, seq, start, code, confidence,
    /// historical), ordered by station, boot and seq.
    ///
    /// # Errors
    /// [`CollectError`].
    pub fn export_csv(&mut self, path: &Path) -> Result<u64, CollectError> {
        let export = |reason: String| CollectError::Export {
            path: path.to_owned(),
            reason,
        };
        let columns = [
            "id",
            "station",
            "boot",
            "seq",
            "start",
            "code",
            "confidence",
            "historical",
        ];
        let rows = self.query(
            &format!(
                "SELECT {} FROM events ORDER BY station, boot, seq",
                columns.join(", ")
            ),
            &[],
        )?;
        let mut w = csv::Writer::from_path(path).map_err(|e| export(e.to_string()))?;
        w.write_record(columns).map_err(|e| export(e.to_string()))?;
        for row in &rows {
            w.write_record(row.iter().map(Val::field))
                .map_err(|e| export(e.to_string()))?;
        }
        w.flush().map_err(|e| export(e.to_string()))?;
        Ok(rows.len() as u64)
    }
}

/// Decides which replay requests a collector sends each round: at most
/// [`ReplayPlanner::PER_ROUND`] in all and [`ReplayPlanner::PER_STATION`] per station,
/// stations in turn, and within a station each round continuing after the ranges asked
/// last time (starting over at the end). Gaps that can never be filled (events the
/// station no longer archives, a hostile heartbeat's claim) thus cannot starve the others.
#[derive(Debug, Default)]
pub struct ReplayPlanner {
    /// Per station: where the next round continues (boot, seq).
    cursors: std::collections::HashMap<String, (u64, u64)>,
    /// Which station goes first next round.
    turn: usize,
}

impl ReplayPlanner {
    /// Requests per round, all stations together.
    pub const PER_ROUND: usize = 64;
    /// Requests per round for one station.
    pub const PER_STATION: usize = 16;

    /// This round's requests, as (station, request).
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn plan(
        &mut self,
        store: &mut Store,
    ) -> Result<Vec<(String, warble_core::wire::ReplayRequest)>, CollectError> {
        let stations = store.stations()?;
        let mut out = Vec::new();
        let n = stations.len();
        for k in 0..n {
            let room = Self::PER_STATION.min(Self::PER_ROUND - out.len());
            if room == 0 {
                break;
            }
            let station = &stations[(self.turn + k) % n];
            let cursor = self.cursors.get(station).copied().unwrap_or((0, 0));
            let mut reqs = Self::requests(store, station, cursor, room)?;
            if reqs.is_empty() && cursor != (0, 0) {
                reqs = Self::requests(store, station, (0, 0), room)?;
            }
            if let Some(last) = reqs.last() {
                let next = match last.last.checked_add(1) {
                    Some(seq) => (last.boot, seq),
                    None => (last.boot.saturating_add(1), 0),
                };
                self.cursors.insert(station.clone(), next);
            }
            out.extend(reqs.into_iter().map(|r| (station.clone(), r)));
        }
        self.turn = (self.turn + 1) % n.max(1);
        Ok(out)
    }

    fn requests(
        store: &mut Store,
        station: &str,
        from: (u64, u64),
        room: usize,
    ) -> Result<Vec<warble_core::wire::ReplayRequest>, CollectError> {
        Ok(store
            .gaps(station, from, room)?
            .into_iter()
            .flat_map(|(boot, first, last)| {
                warble_core::wire::ReplayRequest::covering(boot, first, last)
            })
            .take(room)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warble_core::event::ModelRef;

    fn event(station: &str, boot: u64, seq: u64, historical: bool) -> Vec<u8> {
        let t = chrono::DateTime::parse_from_rfc3339("2026-05-01T05:00:00Z")
            .unwrap()
            .to_utc();
        serde_json::to_vec(&Detection {
            schema: warble_core::event::DETECTION_SCHEMA.into(),
            id: Detection::make_id(station, boot, seq),
            station: station.into(),
            boot,
            seq,
            start: t,
            end: t,
            start_sample: 0,
            end_sample: 1,
            code: warble_core::SpeciesCode::new("turmer").unwrap(),
            scientific: "Turdus merula".into(),
            common: "Blackbird".into(),
            confidence: 0.9,
            model: ModelRef {
                id: "m".into(),
                version: "1".into(),
            },
            location: None,
            clip: None,
            historical,
            revision: 0,
            is_final: true,
        })
        .unwrap()
    }

    #[test]
    fn heartbeats_reveal_events_lost_at_the_end_of_a_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("c.sqlite")).unwrap();
        for seq in [0, 1, 3] {
            store.ingest("a", &event("a", 1, seq, false)).unwrap();
        }
        // Station a's broker acknowledged boot 1 up to seq 5 and boot 2 up to seq 1;
        // station c delivered boot 4 entirely to someone else's store.
        let beat = br#"{"uptime_s": 9, "delivered": [{"boot": 1, "next_seq": 6}, {"boot": 2, "next_seq": 2}]}"#;
        assert!(store.note_heartbeat("a", beat).unwrap());
        assert!(
            store
                .note_heartbeat("c", br#"{"delivered": [{"boot": 4, "next_seq": 1}]}"#)
                .unwrap()
        );
        // An older heartbeat never shrinks what is known; one without the list is ignored.
        let older = br#"{"delivered": [{"boot": 1, "next_seq": 3}]}"#;
        assert!(store.note_heartbeat("a", older).unwrap());
        assert!(!store.note_heartbeat("a", br#"{"uptime_s": 1}"#).unwrap());
        assert!(!store.note_heartbeat("a", b"garbage").unwrap());
        let report = store.report().unwrap();
        let stations: Vec<&str> = report.iter().map(|r| r.station.as_str()).collect();
        assert_eq!(stations, ["a", "c"]);
        assert_eq!(report[0].gaps, [(1, 2, 2), (1, 4, 5), (2, 0, 1)]);
        assert_eq!(
            (report[1].events, report[1].gaps.clone()),
            (0, vec![(4, 0, 0)])
        );
        // Once they arrive, the gaps close.
        for (boot, seq) in [(1, 2), (1, 4), (1, 5), (2, 0), (2, 1)] {
            store.ingest("a", &event("a", boot, seq, true)).unwrap();
        }
        assert!(store.report().unwrap()[0].gaps.is_empty());
    }

    /// A station's heartbeat names the boots it still holds and, per boot, the lowest seq
    /// it holds: gaps below that floor (or in a boot it no longer names) can never be
    /// replayed. They are reported as lost, and not asked for round after round.
    #[test]
    fn what_a_station_no_longer_holds_is_reported_lost_and_not_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("c.sqlite")).unwrap();
        for (boot, seq) in [(1, 0), (1, 5), (1, 9), (2, 3)] {
            store.ingest("a", &event("a", boot, seq, false)).unwrap();
            store.ingest("b", &event("b", boot, seq, false)).unwrap();
        }
        // a holds boot 1 from seq 6 (its broker acknowledged up to 11) and nothing of
        // boot 2; b is an older agent that does not say what it holds.
        let beat = br#"{"delivered": [{"boot": 1, "next_seq": 12, "archived_from": 6}]}"#;
        assert!(store.note_heartbeat("a", beat).unwrap());
        let old = br#"{"delivered": [{"boot": 1, "next_seq": 12}]}"#;
        assert!(store.note_heartbeat("b", old).unwrap());
        let report = store.report().unwrap();
        assert_eq!(report[0].gaps, [(1, 6, 8), (1, 10, 11)]);
        assert_eq!(report[0].lost, [(1, 1, 4), (2, 0, 2)]);
        assert_eq!(
            report[1].gaps,
            [(1, 1, 4), (1, 6, 8), (1, 10, 11), (2, 0, 2)]
        );
        assert!(report[1].lost.is_empty());
        let asked: Vec<(String, u64, u64, u64)> = ReplayPlanner::default()
            .plan(&mut store)
            .unwrap()
            .into_iter()
            .map(|(st, r)| (st, r.boot, r.first, r.last))
            .collect();
        let of_a: Vec<_> = asked.iter().filter(|r| r.0 == "a").collect();
        assert_eq!(
            of_a,
            [&("a".into(), 1, 6, 8), &("a".into(), 1, 10, 11)],
            "{asked:?}"
        );
        // The latest heartbeat is what the station holds now (here: boot 2 restored).
        let beat = br#"{"delivered": [{"boot": 1, "next_seq": 12, "archived_from": 6},
                                       {"boot": 2, "next_seq": 4, "archived_from": 0}]}"#;
        assert!(store.note_heartbeat("a", beat).unwrap());
        let report = store.report().unwrap();
        assert_eq!(report[0].gaps, [(1, 6, 8), (1, 10, 11), (2, 0, 2)]);
        assert_eq!(report[0].lost, [(1, 1, 4)]);
        // A floor beyond what a database column holds is refused like any counter.
        let bomb = br#"{"delivered": [{"boot": 1, "next_seq": 1, "archived_from": 18446744073709551615}]}"#;
        assert!(!store.note_heartbeat("a", bomb).unwrap());
    }

    #[test]
    fn a_hostile_heartbeat_costs_one_bounded_round() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("c.sqlite")).unwrap();
        store.ingest("a", &event("a", 1, 0, false)).unwrap();
        let bomb = br#"{"delivered": [{"boot": 1, "next_seq": 9223372036854775807}]}"#;
        assert!(store.note_heartbeat("a", bomb).unwrap());
        // Beyond what a database column holds, or not a station: refused.
        let beyond = br#"{"delivered": [{"boot": 1, "next_seq": 18446744073709551615}]}"#;
        assert!(!store.note_heartbeat("a", beyond).unwrap());
        assert!(!store.note_heartbeat("a/b", bomb).unwrap());
        let started = std::time::Instant::now();
        let round = ReplayPlanner::default().plan(&mut store).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(round.len(), ReplayPlanner::PER_STATION);
        assert_eq!(round[0].1.first, 1);
        assert_eq!(
            store.report().unwrap()[0].gaps,
            [(1, 1, 9_223_372_036_854_775_806)]
        );
    }

    #[test]
    fn gaps_that_cannot_be_filled_do_not_starve_other_stations() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("c.sqlite")).unwrap();
        // Station a: 100 one-seq gaps (its archive expired); b: one gap, behind them in
        // station order.
        for seq in (0..=200).step_by(2) {
            store.ingest("a", &event("a", 1, seq, false)).unwrap();
        }
        for seq in [0, 2] {
            store.ingest("b", &event("b", 1, seq, false)).unwrap();
        }
        let mut planner = ReplayPlanner::default();
        let mut asked_a = std::collections::BTreeSet::new();
        let mut b_asked = false;
        for _ in 0..7 {
            for (station, req) in planner.plan(&mut store).unwrap() {
                if station == "b" {
                    assert_eq!((req.boot, req.first, req.last), (1, 1, 1));
                    b_asked = true;
                } else {
                    asked_a.insert(req.first);
                }
            }
        }
        assert!(b_asked);
        // Every one of a's gaps was asked for in 7 rounds of 16, none skipped.
        assert_eq!(asked_a.len(), 100);
        assert_eq!(asked_a.first(), Some(&1));
        assert_eq!(asked_a.last(), Some(&199));
    }
}
