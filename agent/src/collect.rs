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

use warble_core::event::Detection;

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

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// A new event, stored.
    Stored,
    /// An event already stored (same id).
    Duplicate,
    /// Not a `warble.detection/1` event; the reason.
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
    /// Messages that repeated a stored event.
    pub duplicates: u64,
    /// Events that arrived marked historical (late).
    pub late: u64,
    /// Missing sequence ranges `(boot, first, last)`: below each boot's highest stored
    /// seq, and up to what the station's heartbeats say its broker acknowledged.
    pub gaps: Vec<(u64, u64, u64)>,
    /// Messages that were not events (all stations).
    pub invalid: u64,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Db,
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
";

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

impl Store {
    /// Opens (or creates) the store: an SQLite file, or a PostgreSQL database given as
    /// `postgres://user[:password]@host[:port]/database`.
    ///
    /// # Errors
    /// [`CollectError::Db`] naming the store (no password in the message).
    pub fn open(target: impl AsRef<Path>) -> Result<Self, CollectError> {
        let target = target.as_ref().to_string_lossy().into_owned();
        let name = display_name(&target);
        let db = Db::open(&target, SCHEMA).map_err(|source| CollectError::Db {
            store: name.clone(),
            source,
        })?;
        Ok(Self { db, name })
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

    fn count(&mut self, station: &str, name: &str) -> Result<(), CollectError> {
        self.execute(
            "INSERT INTO counters (station, name, value) VALUES ($1, $2, 1)
             ON CONFLICT (station, name) DO UPDATE SET value = counters.value + 1",
            &[Val::Text(station.into()), Val::Text(name.into())],
        )?;
        Ok(())
    }

    /// Stores several messages in one transaction (one sync): all are committed when this
    /// returns, or none is.
    ///
    /// # Errors
    /// [`CollectError::Db`]: then none may be acknowledged.
    pub fn ingest_many<'p>(
        &mut self,
        payloads: impl IntoIterator<Item = &'p [u8]>,
    ) -> Result<Vec<Ingest>, CollectError> {
        self.db.begin().map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for p in payloads {
            match self.ingest(p) {
                Ok(i) => out.push(i),
                Err(e) => {
                    let _ = self.db.batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
        self.db.batch("COMMIT").map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Stores one message's payload (committed when this returns, unless inside
    /// [`Store::ingest_many`]'s transaction).
    ///
    /// # Errors
    /// [`CollectError::Db`] (disk full…): the message must then not be acknowledged.
    pub fn ingest(&mut self, payload: &[u8]) -> Result<Ingest, CollectError> {
        if payload.len() > MAX_EVENT_BYTES {
            self.count("", "invalid")?;
            return Ok(Ingest::Invalid(format!(
                "{} bytes, larger than an event may be ({MAX_EVENT_BYTES})",
                payload.len()
            )));
        }
        let event: Detection = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                self.count("", "invalid")?;
                return Ok(Ingest::Invalid(e.to_string()));
            }
        };
        if event.schema != warble_core::event::DETECTION_SCHEMA {
            self.count("", "invalid")?;
            return Ok(Ingest::Invalid(format!("schema `{}`", event.schema)));
        }
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
        if inserted == 0 {
            self.count(&event.station, "duplicates")?;
            return Ok(Ingest::Duplicate);
        }
        if event.historical {
            self.count(&event.station, "late")?;
        }
        Ok(Ingest::Stored)
    }

    /// Notes what a station's heartbeat says the broker acknowledged: per boot, every
    /// sequence number below `next_seq` (its `delivered` list). Returns whether the
    /// heartbeat carried that list; other heartbeats are left alone.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn note_heartbeat(&mut self, station: &str, payload: &[u8]) -> Result<bool, CollectError> {
        #[derive(serde::Deserialize)]
        struct Through {
            boot: u64,
            next_seq: u64,
        }
        #[derive(serde::Deserialize)]
        struct Beat {
            delivered: Vec<Through>,
        }
        if payload.len() > MAX_EVENT_BYTES {
            return Ok(false);
        }
        let Ok(beat) = serde_json::from_slice::<Beat>(payload) else {
            return Ok(false);
        };
        for t in beat.delivered {
            self.execute(
                "INSERT INTO delivered (station, boot, next_seq) VALUES ($1, $2, $3)
                 ON CONFLICT (station, boot) DO UPDATE SET next_seq = CASE
                     WHEN excluded.next_seq > delivered.next_seq THEN excluded.next_seq
                     ELSE delivered.next_seq END",
                &[
                    Val::Text(station.into()),
                    Val::Int(t.boot as i64),
                    Val::Int(t.next_seq as i64),
                ],
            )?;
        }
        Ok(true)
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

    fn station_report(
        &mut self,
        station: &str,
        invalid: u64,
    ) -> Result<StationReport, CollectError> {
        Ok(StationReport {
            station: station.to_owned(),
            events: 0,
            boots: Vec::new(),
            duplicates: self.counter(station, "duplicates")?,
            late: self.counter(station, "late")?,
            gaps: Vec::new(),
            invalid,
        })
    }

    /// Per-station counts, boots and gaps, by station id.
    ///
    /// # Errors
    /// [`CollectError::Db`].
    pub fn report(&mut self) -> Result<Vec<StationReport>, CollectError> {
        let rows = self.query(
            "SELECT station, boot, seq FROM events ORDER BY station, boot, seq",
            &[],
        )?;
        let invalid = self.counter("", "invalid")?;
        let mut out: Vec<StationReport> = Vec::new();
        let mut expect: Option<(String, u64, u64)> = None; // station, boot, next seq
        for row in rows {
            let (Some(station), Some(boot), Some(seq)) = (
                row.first().and_then(Val::text),
                row.get(1).and_then(Val::int),
                row.get(2).and_then(Val::int),
            ) else {
                continue;
            };
            let (boot, seq) = (boot as u64, seq as u64);
            if out.last().is_none_or(|r| r.station != station) {
                let r = self.station_report(station, invalid)?;
                out.push(r);
            }
            let Some(r) = out.last_mut() else { continue };
            r.events += 1;
            if r.boots.last() != Some(&boot) {
                r.boots.push(boot);
            }
            let next = match &expect {
                Some((s, b, n)) if s == station && *b == boot => *n,
                _ => 0,
            };
            if seq > next {
                r.gaps.push((boot, next, seq - 1));
            }
            expect = Some((station.to_owned(), boot, seq + 1));
        }
        // Events lost at the end of a stream: no later seq reveals them, the heartbeats do.
        let tails = self.query(
            "SELECT d.station, d.boot, d.next_seq,
                    (SELECT MAX(seq) FROM events e WHERE e.station = d.station AND e.boot = d.boot)
             FROM delivered d ORDER BY d.station, d.boot",
            &[],
        )?;
        for row in tails {
            let (Some(station), Some(boot), Some(next_seq)) = (
                row.first().and_then(Val::text),
                row.get(1).and_then(Val::int),
                row.get(2).and_then(Val::int),
            ) else {
                continue;
            };
            let highest = row.get(3).and_then(Val::int);
            let (boot, next_seq) = (boot as u64, next_seq as u64);
            let from = highest.map_or(0, |h| h as u64 + 1);
            if next_seq <= from {
                continue;
            }
            let at = match out.iter().position(|r| r.station == station) {
                Some(i) => i,
                None => {
                    let pos = out.partition_point(|r| r.station.as_str() < station);
                    let r = self.station_report(station, invalid)?;
                    out.insert(pos, r);
                    pos
                }
            };
            out[at].gaps.push((boot, from, next_seq - 1));
            out[at].gaps.sort_unstable();
        }
        Ok(out)
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
        })
        .unwrap()
    }

    #[test]
    fn heartbeats_reveal_events_lost_at_the_end_of_a_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("c.sqlite")).unwrap();
        for seq in [0, 1, 3] {
            store.ingest(&event("a", 1, seq, false)).unwrap();
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
            store.ingest(&event("a", boot, seq, true)).unwrap();
        }
        assert!(store.report().unwrap()[0].gaps.is_empty());
    }
}
