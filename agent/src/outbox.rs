//! The durable outbox: every detection is committed to SQLite before anyone may publish it,
//! and leaves only when the broker has acknowledged it.
//!
//! - WAL journal with `synchronous = FULL`: a committed event survives SIGKILL and power
//!   loss (SQLite syncs the WAL on every commit).
//! - Events are sent oldest first; [`Outbox::ack`] deletes one after its PUBACK.
//! - Everything still pending when the outbox is opened (after a crash, restart or power
//!   cut) is re-sent with `historical: true`, as is everything queued during a broker outage
//!   once [`Outbox::mark_historical`] has been called.
//! - An acknowledged event moves to the `sent` archive for [`SENT_RETENTION_S`], so a
//!   subscriber that finds a gap (a broker that crashed after acknowledging, a collector
//!   that lost its disk) can ask for it again: [`Outbox::replay`] queues it once more.
//! - A byte quota bounds the file (pending events and the archive together): when a new
//!   event would exceed it, the oldest archived events go first, then the oldest pending
//!   ones, dropped and counted (persistently) — never the new one, so the newest knowledge
//!   survives a month-long outage.
//! - A revision of an event (the same id, a higher `revision`: the final report of an
//!   event first reported open) replaces a lower one still waiting, so an outage sends
//!   only the last; once acknowledged it replaces the lower one in the archive. The broker
//!   may have the first report in flight when it is replaced: its acknowledgement then
//!   finds nothing to remove, and the revision is sent after it.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use warble_core::event::{Detection, MAX_COUNTER};
use warble_core::wire::{BootHeld, MAX_HEARTBEAT_BOOTS};

/// The outbox's file in a station's data folder (the detection path, delivery, presence
/// and `warble-agent deliver` each open it there).
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("outbox.sqlite")
}

/// How long acknowledged events stay available for [`Outbox::replay`]: a week.
pub const SENT_RETENTION_S: i64 = 7 * 24 * 3600;

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// SQLite reported an error (disk full, corrupt file, permissions…).
    #[error("outbox {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored event no longer parses (should not happen: written by this code).
    #[error("outbox {path}: stored event {rowid} is not a detection: {reason}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Row.
        rowid: i64,
        /// Parser message.
        reason: String,
    },
    /// One event is larger than the whole quota.
    #[error("event of {size} bytes exceeds the outbox quota of {quota} bytes")]
    TooLarge {
        /// Event size.
        size: u64,
        /// Quota.
        quota: u64,
    },
}

impl OutboxError {
    /// The disk (or the database's page limit) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull))
    }
}

/// One event waiting for its PUBACK.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Outbox row (pass to [`Outbox::ack`]).
    pub rowid: i64,
    /// The event, with `historical` set when it is re-sent.
    pub event: Detection,
}

/// What the outbox holds, as the station's heartbeat reports it; read by delivery, the
/// outbox's one reader for the network side, and handed to presence.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxFacts {
    /// The counters.
    pub stats: OutboxStats,
    /// Per boot, how far it was delivered and from which seq it is still held.
    pub delivered: Vec<BootHeld>,
    /// The disk reserve was given up (the disk is full).
    pub reserve_released: bool,
}

/// Counters for heartbeats, read from the database: every connection sees the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events waiting.
    pub depth: u64,
    /// Bytes of the events waiting.
    pub bytes: u64,
    /// Bytes of the archive of acknowledged events.
    pub archived_bytes: u64,
    /// Events dropped by the quota policy since the outbox was created.
    pub dropped_total: u64,
    /// Acknowledged events deleted without archiving them (the disk was full): they
    /// cannot be replayed.
    pub unarchived_total: u64,
}

/// The outbox. Several handles may share one file (the detection path pushes while
/// delivery acknowledges): every decision is taken from the database inside the
/// transaction that acts on it, never from counters cached by one handle.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    quota_bytes: u64,
}

/// The `meta` counters are kept by triggers, so no code path (nor another connection)
/// can let them drift from the tables; [`Outbox::open`] recounts them once, which also
/// heals a file written before the triggers existed.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    historical INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES
    ('dropped_total', 0), ('sent_bytes', 0), ('pending_bytes', 0), ('pending_depth', 0),
    ('unarchived_total', 0);
CREATE TABLE IF NOT EXISTS sent (
    id TEXT PRIMARY KEY,
    boot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sent_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sent_by_seq ON sent (boot, seq);
CREATE INDEX IF NOT EXISTS sent_by_time ON sent (sent_at);
CREATE TRIGGER IF NOT EXISTS events_added AFTER INSERT ON events BEGIN
    UPDATE meta SET value = value + NEW.bytes WHERE key = 'pending_bytes';
    UPDATE meta SET value = value + 1 WHERE key = 'pending_depth';
END;
CREATE TRIGGER IF NOT EXISTS events_removed AFTER DELETE ON events BEGIN
    UPDATE meta SET value = value - OLD.bytes WHERE key = 'pending_bytes';
    UPDATE meta SET value = value - 1 WHERE key = 'pending_depth';
END;
CREATE TRIGGER IF NOT EXISTS sent_added AFTER INSERT ON sent BEGIN
    UPDATE meta SET value = value + NEW.bytes WHERE key = 'sent_bytes';
END;
CREATE TRIGGER IF NOT EXISTS sent_removed AFTER DELETE ON sent BEGIN
    UPDATE meta SET value = value - OLD.bytes WHERE key = 'sent_bytes';
END;
";

/// Opens (or creates) an SQLite database that survives SIGKILL and power loss: WAL journal,
/// `synchronous = FULL` (every commit synced), a 5-s wait for a writer holding the lock
/// (another process or thread on the same file); then runs `schema`.
///
/// Writers must open their transactions with [`TransactionBehavior::Immediate`]: a
/// deferred transaction that reads first and then writes is refused at once with
/// `SQLITE_BUSY` when another connection writes, whatever the busy timeout.
pub(crate) fn open_durable(path: &Path, schema: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A write-ahead log checkpointed at 256 pages (1 MiB, not SQLite's 4) and cut back to
    // 2 MiB: it must fit in the reserve on a full disk.
    conn.pragma_update(None, "wal_autocheckpoint", 256)?;
    conn.pragma_update(None, "journal_size_limit", 2 << 20)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

/// Space kept beside the outbox for a full disk (see [`Outbox::release_reserve`]): weeks
/// of detections at the rates stations see, as the outbox reuses the pages that
/// acknowledgements free.
pub const RESERVE_BYTES: u64 = 4 << 20;

fn reserve_path(outbox: &Path) -> PathBuf {
    outbox.with_extension("reserve")
}

/// Writes the reserve with real blocks (zeros, synced; a sparse file would hold none),
/// under a temporary name of its own first (the handles of one station may write it at
/// once), so a reserve is whole or absent; a failed one leaves nothing behind.
fn write_reserve(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let block = vec![0u8; 64 << 10];
    for _ in 0..RESERVE_BYTES / block.len() as u64 {
        tmp.write_all(&block)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// An event ready to be stored.
struct Encoded<'e> {
    id: &'e str,
    json: String,
    size: u64,
    revision: u32,
}

/// How long a writer waits for another connection's write lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Outbox {
    /// Opens (or creates) the outbox at `path`, bounded by `quota_bytes` of event payload.
    /// Events left from a previous run are marked historical.
    ///
    /// # Errors
    /// [`OutboxError::Sqlite`] naming the file (unwritable directory, corrupt database…).
    pub fn open(path: impl AsRef<Path>, quota_bytes: u64) -> Result<Self, OutboxError> {
        let path = path.as_ref().to_path_buf();
        let fresh = !path.exists();
        let err = |source| OutboxError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = open_durable(&path, SCHEMA).map_err(err)?;
        let tx = begin_write(&mut conn, &path)?;
        tx.execute_batch(
            "UPDATE events SET historical = 1 WHERE historical = 0;
             UPDATE meta SET value = (SELECT COALESCE(SUM(bytes), 0) FROM events)
                 WHERE key = 'pending_bytes';
             UPDATE meta SET value = (SELECT COUNT(*) FROM events) WHERE key = 'pending_depth';
             UPDATE meta SET value = (SELECT COALESCE(SUM(bytes), 0) FROM sent)
                 WHERE key = 'sent_bytes';",
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        let outbox = Self {
            conn,
            path,
            quota_bytes,
        };
        // A new outbox gets its first reserve quietly; an old one without it lost it to a
        // full disk.
        outbox.keep_reserve(!fresh);
        Ok(outbox)
    }

    fn err(&self, source: rusqlite::Error) -> OutboxError {
        self_err(&self.path, source)
    }

    /// Commits events durably, in one transaction; returns how many old events the quota
    /// dropped to make room. An event whose id is already waiting is not stored twice,
    /// unless it is a higher revision: that replaces the waiting one. Waits up to 5 s for
    /// another connection's write.
    ///
    /// # Errors
    /// [`OutboxError`]; on error nothing of the batch is stored.
    pub fn push(&mut self, events: &[Detection]) -> Result<u64, OutboxError> {
        let encoded = self.encode(events)?;
        self.write_on_full_disk_too(|o| o.insert(&encoded))
    }

    /// Runs a write; if the disk is full, checkpoints the write-ahead log so that the next
    /// write reuses the log's space from its start instead of growing it, and tries once
    /// more. (A log grows until its checkpoint at 256 pages; on a full disk it cannot, and
    /// without this every write fails until space returns.)
    fn write_on_full_disk_too<T>(
        &mut self,
        mut write: impl FnMut(&mut Self) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        match write(self) {
            Err(e) if e.is_disk_full() => {
                // Its failure (readers that do not let go, a database that must grow)
                // shows in the next try.
                let _ = self
                    .conn
                    .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
                match write(self) {
                    Err(e) if e.is_disk_full() && self.release_reserve() => write(self),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// The reserve: a file of [`RESERVE_BYTES`] beside the outbox, given up when the disk
    /// is full so that detections keep flowing (acknowledgements free pages, new events
    /// reuse them) while someone makes room. Returns whether there was one to give up.
    fn release_reserve(&self) -> bool {
        let released = std::fs::remove_file(reserve_path(&self.path)).is_ok();
        if released {
            tracing::warn!(
                "outbox {}: the disk is full; released the {} MiB reserve beside it so that \
                 detections keep flowing. Make room on the disk: the reserve is taken back \
                 once it has",
                self.path.display(),
                RESERVE_BYTES >> 20
            );
        }
        released
    }

    /// Whether the reserve is given up (the disk was full, and has not had room since).
    pub fn reserve_released(&self) -> bool {
        !reserve_path(&self.path).exists()
    }

    /// Takes the reserve back when the disk has room for it and as much again (saying so
    /// if `announce`); does nothing if it is there. Called after acknowledgements, so a
    /// recorder that was full recovers its slack without a restart.
    fn keep_reserve(&self, announce: bool) {
        let reserve = reserve_path(&self.path);
        if reserve.exists() {
            return;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if crate::resources::disk_free_bytes(dir).is_some_and(|free| free >= 2 * RESERVE_BYTES)
            && write_reserve(&reserve).is_ok()
            && announce
        {
            tracing::info!(
                "outbox {}: the disk has room again; the {} MiB reserve is back",
                self.path.display(),
                RESERVE_BYTES >> 20
            );
        }
    }

    fn encode<'e>(&self, events: &'e [Detection]) -> Result<Vec<Encoded<'e>>, OutboxError> {
        let mut encoded = Vec::with_capacity(events.len());
        for e in events {
            let json = serde_json::to_string(e).map_err(|err| OutboxError::Corrupt {
                path: self.path.clone(),
                rowid: -1,
                reason: err.to_string(),
            })?;
            let size = json.len() as u64;
            if size > self.quota_bytes {
                return Err(OutboxError::TooLarge {
                    size,
                    quota: self.quota_bytes,
                });
            }
            encoded.push(Encoded {
                id: e.id.as_str(),
                json,
                size,
                revision: e.revision,
            });
        }
        Ok(encoded)
    }

    fn insert(&mut self, encoded: &[Encoded<'_>]) -> Result<u64, OutboxError> {
        let path = &self.path;
        let e = |source| self_err(path, source);
        let tx = begin_write(&mut self.conn, path)?;
        // The true state, read under the write lock (the triggers keep it).
        let mut pending_bytes = meta(&tx, "pending_bytes").map_err(e)?;
        let mut sent_bytes = meta(&tx, "sent_bytes").map_err(e)?;
        let mut dropped = 0u64;
        {
            let mut oldest_sent = tx
                .prepare_cached(
                    "DELETE FROM sent WHERE id = (SELECT id FROM sent ORDER BY sent_at, boot, seq LIMIT 1) RETURNING bytes",
                )
                .map_err(e)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (id, payload, bytes) VALUES (?1, ?2, ?3)",
                )
                .map_err(e)?;
            let mut oldest = tx
                .prepare_cached("DELETE FROM events WHERE rowid = (SELECT MIN(rowid) FROM events) RETURNING bytes")
                .map_err(e)?;
            let mut superseded = tx
                .prepare_cached(
                    "DELETE FROM events WHERE id = ?1
                     AND COALESCE(json_extract(payload, '$.revision'), 0) < ?2 RETURNING bytes",
                )
                .map_err(e)?;
            for Encoded {
                id,
                json,
                size,
                revision,
            } in encoded
            {
                let replaced: Option<i64> = superseded
                    .query_row(params![id, revision], |r| r.get(0))
                    .optional()
                    .map_err(e)?;
                pending_bytes = pending_bytes.saturating_sub(replaced.unwrap_or(0) as u64);
                // The archive yields first: it was delivered once already.
                while pending_bytes + sent_bytes + size > self.quota_bytes && sent_bytes > 0 {
                    let freed: Option<i64> = oldest_sent
                        .query_row([], |r| r.get(0))
                        .optional()
                        .map_err(e)?;
                    sent_bytes = freed.map_or(0, |b| sent_bytes.saturating_sub(b as u64));
                }
                while pending_bytes + size > self.quota_bytes {
                    let freed: Option<i64> =
                        oldest.query_row([], |r| r.get(0)).optional().map_err(e)?;
                    let Some(b) = freed else { break };
                    pending_bytes = pending_bytes.saturating_sub(b as u64);
                    dropped += 1;
                }
                if insert.execute(params![id, json, *size as i64]).map_err(e)? == 1 {
                    pending_bytes += size;
                }
            }
            if dropped > 0 {
                tx.execute(
                    "UPDATE meta SET value = value + ?1 WHERE key = 'dropped_total'",
                    [dropped as i64],
                )
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(dropped)
    }

    /// Up to `limit` pending events, oldest first.
    ///
    /// # Errors
    /// [`OutboxError`].
    pub fn pending(&self, limit: usize) -> Result<Vec<Pending>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT rowid, payload, historical FROM events ORDER BY rowid LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (rowid, payload, historical) = row.map_err(|e| self.err(e))?;
            let mut event: Detection =
                serde_json::from_str(&payload).map_err(|e| OutboxError::Corrupt {
                    path: self.path.clone(),
                    rowid,
                    reason: e.to_string(),
                })?;
            event.historical |= historical;
            out.push(Pending { rowid, event });
        }
        Ok(out)
    }

    /// Moves acknowledged events to the archive in one transaction (one sync for all), and
    /// forgets archived events older than [`SENT_RETENTION_S`]; returns how many were still
    /// pending. On a full disk (the archive cannot grow) they are deleted without being
    /// archived, and counted: an acknowledged event must leave, or the same events would
    /// be sent again and again while nothing new fits.
    ///
    /// # Errors
    /// [`OutboxError`]; then none is removed, and they are sent again later.
    pub fn ack_many(&mut self, rowids: &[i64]) -> Result<u64, OutboxError> {
        let acked = match self.write_on_full_disk_too(|o| o.ack_rows(rowids, true)) {
            Err(e) if e.is_disk_full() => {
                self.write_on_full_disk_too(|o| o.ack_rows(rowids, false))
            }
            other => other,
        }?;
        self.keep_reserve(true);
        Ok(acked)
    }

    /// Deletes acknowledged events, archiving them unless `archive` is false (then they
    /// are counted as unarchived).
    fn ack_rows(&mut self, rowids: &[i64], archive: bool) -> Result<u64, OutboxError> {
        let now = chrono::Utc::now().timestamp();
        let path = &self.path;
        let e = |source| self_err(path, source);
        let tx = begin_write(&mut self.conn, path)?;
        let mut removed = 0u64;
        {
            // A revision replaces the lower one archived when its first report was
            // acknowledged.
            let mut superseded = tx
                .prepare_cached(
                    "DELETE FROM sent WHERE id = (SELECT id FROM events WHERE rowid = ?1)
                     AND COALESCE(json_extract(payload, '$.revision'), 0)
                         < (SELECT COALESCE(json_extract(payload, '$.revision'), 0)
                            FROM events WHERE rowid = ?1)",
                )
                .map_err(e)?;
            let mut to_archive = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO sent (id, boot, seq, payload, bytes, sent_at)
                     SELECT id, json_extract(payload, '$.boot'), json_extract(payload, '$.seq'),
                            payload, bytes, ?2
                     FROM events WHERE rowid = ?1",
                )
                .map_err(e)?;
            let mut delete = tx
                .prepare_cached("DELETE FROM events WHERE rowid = ?1")
                .map_err(e)?;
            for &rowid in rowids {
                if archive {
                    superseded.execute([rowid]).map_err(e)?;
                    to_archive.execute(params![rowid, now]).map_err(e)?;
                }
                removed += delete.execute([rowid]).map_err(e)? as u64;
            }
        }
        if archive {
            tx.execute(
                "DELETE FROM sent WHERE sent_at < ?1",
                [now - SENT_RETENTION_S],
            )
            .map_err(e)?;
        } else {
            tx.execute(
                "UPDATE meta SET value = value + ?1 WHERE key = 'unarchived_total'",
                [removed as i64],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)?;
        Ok(removed)
    }

    /// Removes an acknowledged event; `false` if it was already gone (a duplicate ack).
    ///
    /// # Errors
    /// [`OutboxError`].
    pub fn ack(&mut self, rowid: i64) -> Result<bool, OutboxError> {
        Ok(self.ack_many(&[rowid])? == 1)
    }

    /// Queues the archived events of `boot` with sequence numbers `first..=last` again
    /// (marked historical), for a subscriber that reported them missing; returns how many
    /// were found. Events no longer archived (expired, or dropped by the quota) cannot be
    /// sent again: the subscriber's gap report keeps showing them.
    ///
    /// # Errors
    /// [`OutboxError`]; then nothing is queued.
    pub fn replay(&mut self, boot: u64, first: u64, last: u64) -> Result<u64, OutboxError> {
        self.write_on_full_disk_too(|o| o.replay_rows(boot, first, last))
    }

    fn replay_rows(&mut self, boot: u64, first: u64, last: u64) -> Result<u64, OutboxError> {
        let path = &self.path;
        let e = |source| self_err(path, source);
        let tx = begin_write(&mut self.conn, path)?;
        let range = params![boot as i64, first as i64, last as i64];
        let queued = tx
            .execute(
                "INSERT OR IGNORE INTO events (id, payload, bytes, historical)
                 SELECT id, payload, bytes, 1 FROM sent
                 WHERE boot = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq",
                range,
            )
            .map_err(e)?;
        tx.execute(
            "DELETE FROM sent WHERE boot = ?1 AND seq BETWEEN ?2 AND ?3",
            range,
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(queued as u64)
    }

    /// Closes the events of boots before `boot` that were reported at first sight and
    /// never closed (the station stopped or was killed while they were open): each gets a
    /// final revision as it was first reported, marked historical, so subscribers are not
    /// left waiting for a close that cannot come. Returns how many. Call it at a station's
    /// start, before it reports anything of its own boot.
    ///
    /// # Errors
    /// [`OutboxError`]; then nothing is closed.
    pub fn close_unfinished(&mut self, boot: u64) -> Result<u64, OutboxError> {
        let rows: Vec<(i64, String)> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT rowid, payload FROM events
                     WHERE json_extract(payload, '$.final') = 0
                       AND json_extract(payload, '$.boot') < ?1
                     UNION ALL
                     SELECT -1, payload FROM sent
                     WHERE json_extract(payload, '$.final') = 0 AND boot < ?1
                       AND id NOT IN (SELECT id FROM events)",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([boot.min(MAX_COUNTER) as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        let mut closed = Vec::with_capacity(rows.len());
        for (rowid, payload) in rows {
            let first: Detection =
                serde_json::from_str(&payload).map_err(|e| OutboxError::Corrupt {
                    path: self.path.clone(),
                    rowid,
                    reason: e.to_string(),
                })?;
            closed.push(Detection {
                revision: first.revision.saturating_add(1),
                is_final: true,
                historical: true,
                ..first
            });
        }
        self.push(&closed)?;
        Ok(closed.len() as u64)
    }

    /// The counters, what is held per boot and the reserve, together.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn facts(&self) -> Result<OutboxFacts, OutboxError> {
        Ok(OutboxFacts {
            stats: self.stats()?,
            delivered: self.delivered_through()?,
            reserve_released: self.reserve_released(),
        })
    }

    /// Per boot the station still holds events of (archived or waiting), oldest boot
    /// first, at most [`MAX_HEARTBEAT_BOOTS`] (the newest): how far the broker acknowledged,
    /// and the lowest sequence number still held. Subscribers compare the first with what
    /// they hold to find events lost at the end of a stream (which no later sequence
    /// number reveals), and stop asking for what lies below the second (or for a boot not
    /// listed at all): it expired or was given up to the quota and cannot be replayed.
    ///
    /// # Errors
    /// [`OutboxError`].
    pub fn delivered_through(&self) -> Result<Vec<BootHeld>, OutboxError> {
        // Waiting events carry their boot and seq only in the payload; there are few of
        // them but after an outage, and a heartbeat comes once a minute.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT boot, MAX(next_seq), MIN(low) FROM (
                     SELECT boot, MAX(seq) + 1 AS next_seq, MIN(seq) AS low FROM sent
                     GROUP BY boot
                     UNION ALL
                     SELECT json_extract(payload, '$.boot'), 0, MIN(json_extract(payload, '$.seq'))
                     FROM events GROUP BY 1
                 ) GROUP BY boot ORDER BY boot DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([MAX_HEARTBEAT_BOOTS as i64], |r| {
                Ok(BootHeld {
                    boot: r.get::<_, i64>(0)? as u64,
                    next_seq: r.get::<_, i64>(1)? as u64,
                    archived_from: Some(r.get::<_, i64>(2)? as u64),
                })
            })
            .map_err(|e| self.err(e))?;
        let mut out: Vec<BootHeld> = rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        out.reverse();
        Ok(out)
    }

    /// Marks everything pending as historical (call when a broker outage began: what is
    /// delivered after it is late).
    ///
    /// # Errors
    /// [`OutboxError`].
    pub fn mark_historical(&mut self) -> Result<(), OutboxError> {
        self.write_on_full_disk_too(|o| {
            o.conn
                .execute("UPDATE events SET historical = 1 WHERE historical = 0", [])
                .map_err(|e| o.err(e))
        })?;
        Ok(())
    }

    /// The counters as the database holds them now (whichever connection changed them).
    ///
    /// # Errors
    /// [`OutboxError`].
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let get = |key| meta(&self.conn, key).map_err(|e| self.err(e));
        Ok(OutboxStats {
            depth: get("pending_depth")?,
            bytes: get("pending_bytes")?,
            archived_bytes: get("sent_bytes")?,
            dropped_total: get("dropped_total")?,
            unarchived_total: get("unarchived_total")?,
        })
    }
}

/// One of the `meta` counters.
fn meta(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get::<_, i64>(0))
        .map(|v| v.max(0) as u64)
}

/// A transaction that takes the write lock at once (`BEGIN IMMEDIATE`, waiting up to the
/// busy timeout for another writer), so what it reads is what it acts on.
fn begin_write<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>, OutboxError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|source| self_err(path, source))
}

fn self_err(path: &Path, source: rusqlite::Error) -> OutboxError {
    OutboxError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warble_core::SpeciesCode;
    use warble_core::event::{DETECTION_SCHEMA, ModelRef};

    /// The rows of the first `limit` pending events.
    fn pending_rows(ob: &Outbox, limit: usize) -> Vec<i64> {
        ob.pending(limit).unwrap().iter().map(|p| p.rowid).collect()
    }

    /// The sequence numbers of the first `limit` pending events.
    fn pending_seqs(ob: &Outbox, limit: usize) -> Vec<u64> {
        ob.pending(limit)
            .unwrap()
            .iter()
            .map(|p| p.event.seq)
            .collect()
    }

    pub(crate) fn event(seq: u64) -> Detection {
        let start = chrono::DateTime::parse_from_rfc3339("2026-05-01T04:30:00Z")
            .unwrap()
            .to_utc();
        Detection {
            schema: DETECTION_SCHEMA.into(),
            id: Detection::make_id("st", 1, seq),
            station: "st".into(),
            boot: 1,
            seq,
            start,
            end: start + chrono::Duration::seconds(3),
            start_sample: 0,
            end_sample: 96_000,
            code: SpeciesCode::new("syn01").unwrap(),
            scientific: "Synthetica sp01".into(),
            common: "Triller B".into(),
            confidence: 0.9,
            model: ModelRef {
                id: "demo".into(),
                version: "0.1.0".into(),
            },
            location: None,
            clip: None,
            historical: false,
            revision: 0,
            is_final: true,
        }
    }

    #[test]
    fn events_leave_only_when_acknowledged_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path().join("o.db"), 1 << 20).unwrap();
        ob.push(&[event(0), event(1)]).unwrap();
        ob.push(&[event(2)]).unwrap();
        let p = ob.pending(10).unwrap();
        assert_eq!(p.iter().map(|p| p.event.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(p.iter().all(|p| !p.event.historical));
        assert!(ob.ack(p[1].rowid).unwrap());
        assert!(!ob.ack(p[1].rowid).unwrap(), "a second ack is a no-op");
        assert_eq!(ob.stats().unwrap().depth, 2);
        let p = ob.pending(1).unwrap();
        assert_eq!(p[0].event.seq, 0);
        // The same event id is stored once.
        ob.push(&[event(0)]).unwrap();
        assert_eq!(ob.stats().unwrap().depth, 2);
        // Several acks in one transaction; unknown rows are ignored.
        let p = ob.pending(10).unwrap();
        let bytes_before = ob.stats().unwrap().bytes;
        assert_eq!(ob.ack_many(&[p[0].rowid, 999_999, p[0].rowid]).unwrap(), 1);
        assert_eq!(ob.stats().unwrap().depth, 1);
        assert!(ob.stats().unwrap().bytes < bytes_before);
        assert_eq!(ob.pending(10).unwrap()[0].event.seq, 2);
    }

    fn revised(seq: u64, revision: u32) -> Detection {
        Detection {
            revision,
            is_final: revision > 0,
            end_sample: 96_000 * (1 + u64::from(revision)),
            ..event(seq)
        }
    }

    #[test]
    fn a_revision_replaces_its_first_report_waiting_or_archived() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path().join("o.db"), 1 << 20).unwrap();
        let revisions = |ob: &Outbox| -> Vec<(u64, u32)> {
            let p = ob.pending(10).unwrap();
            p.iter().map(|p| (p.event.seq, p.event.revision)).collect()
        };
        // Waiting: the revision takes the first report's place, counted once.
        ob.push(&[revised(0, 0), event(1)]).unwrap();
        let in_flight = ob.pending(1).unwrap()[0].rowid;
        ob.push(&[revised(0, 1)]).unwrap();
        assert_eq!(revisions(&ob), [(1, 0), (0, 1)]);
        assert_eq!(ob.stats().unwrap().depth, 2);
        let bytes: u64 = ob
            .pending(10)
            .unwrap()
            .iter()
            .map(|p| serde_json::to_string(&p.event).unwrap().len() as u64)
            .sum();
        assert_eq!(ob.stats().unwrap().bytes, bytes);
        // The first report's acknowledgement (it was in flight) removes nothing.
        assert!(!ob.ack(in_flight).unwrap());
        // Neither an older revision nor the same one again is stored.
        ob.push(&[revised(0, 0), revised(0, 1)]).unwrap();
        assert_eq!(revisions(&ob), [(1, 0), (0, 1)]);
        // Archived: the first report was acknowledged before its revision came.
        ob.push(&[revised(2, 0)]).unwrap();
        let first = ob.pending(10).unwrap()[2].rowid;
        ob.ack(first).unwrap();
        ob.push(&[revised(2, 1)]).unwrap();
        let all: Vec<i64> = ob.pending(10).unwrap().iter().map(|p| p.rowid).collect();
        assert_eq!(ob.ack_many(&all).unwrap(), 3);
        let archived_bytes = ob.stats().unwrap().archived_bytes;
        assert_eq!(
            archived_bytes,
            [event(1), revised(0, 1), revised(2, 1)]
                .iter()
                .map(|e| serde_json::to_string(e).unwrap().len() as u64)
                .sum::<u64>(),
            "one archived report per event, the last"
        );
        // A replay sends the last revision.
        assert_eq!(ob.replay(1, 0, 2).unwrap(), 3);
        let replayed = ob.pending(10).unwrap();
        let got: Vec<(u64, u32, bool)> = replayed
            .iter()
            .map(|p| (p.event.seq, p.event.revision, p.event.is_final))
            .collect();
        assert_eq!(got, [(0, 1, true), (1, 0, true), (2, 1, true)]);
    }

    #[test]
    fn first_reports_of_earlier_boots_left_open_are_closed_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path().join("o.db"), 1 << 20).unwrap();
        let in_boot = |boot: u64, seq: u64, revision: u32| Detection {
            boot,
            id: Detection::make_id("st", boot, seq),
            ..revised(seq, revision)
        };
        // Boot 1: seq 0 open and waiting, seq 1 open and delivered, seq 2 closed.
        // Boot 2 (the station running now) has an open one too.
        ob.push(&[in_boot(1, 0, 0), in_boot(1, 1, 0), in_boot(1, 2, 1)])
            .unwrap();
        let delivered = ob.pending(10).unwrap()[1].rowid;
        ob.ack(delivered).unwrap();
        ob.push(&[in_boot(2, 0, 0)]).unwrap();
        assert_eq!(ob.close_unfinished(2).unwrap(), 2);
        let got: Vec<(u64, u64, u32, bool, bool)> = ob
            .pending(10)
            .unwrap()
            .iter()
            .map(|p| {
                let e = &p.event;
                (e.boot, e.seq, e.revision, e.is_final, e.historical)
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, 2, 1, true, false),
                (2, 0, 0, false, false),
                (1, 0, 1, true, true),
                (1, 1, 1, true, true),
            ]
        );
        let closed = ob.pending(10).unwrap()[2].event.clone();
        assert_eq!(
            closed.end_sample,
            in_boot(1, 0, 0).end_sample,
            "as first reported"
        );
        assert_eq!(ob.close_unfinished(2).unwrap(), 0, "once");
    }

    #[test]
    fn a_reopened_outbox_resends_everything_as_historical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        {
            let mut ob = Outbox::open(&path, 1 << 20).unwrap();
            ob.push(&[event(0), event(1)]).unwrap();
            let first = ob.pending(1).unwrap()[0].rowid;
            ob.ack(first).unwrap();
        }
        let mut ob = Outbox::open(&path, 1 << 20).unwrap();
        assert_eq!(ob.stats().unwrap().depth, 1);
        let p = ob.pending(10).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].event.seq, 1);
        assert!(p[0].event.historical);
        // New events after the restart are live again.
        ob.push(&[event(2)]).unwrap();
        let p = ob.pending(10).unwrap();
        assert!(!p[1].event.historical);
        ob.mark_historical().unwrap();
        assert!(ob.pending(10).unwrap()[1].event.historical);
    }

    #[test]
    fn the_quota_drops_the_oldest_and_counts_them_persistently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let size = serde_json::to_string(&event(0)).unwrap().len() as u64;
        {
            let mut ob = Outbox::open(&path, 3 * size + size / 2).unwrap();
            assert_eq!(ob.push(&[event(0), event(1), event(2)]).unwrap(), 0);
            assert_eq!(ob.push(&[event(3), event(4)]).unwrap(), 2);
            let seqs = pending_seqs(&ob, 10);
            assert_eq!(seqs, [2, 3, 4]);
            assert_eq!(ob.stats().unwrap().dropped_total, 2);
            assert!(ob.stats().unwrap().bytes <= 3 * size + size / 2);
        }
        let ob = Outbox::open(&path, 3 * size + size / 2).unwrap();
        assert_eq!(ob.stats().unwrap().dropped_total, 2);
        assert_eq!(ob.stats().unwrap().depth, 3);
        let mut tiny = Outbox::open(dir.path().join("t.db"), 10).unwrap();
        assert!(matches!(
            tiny.push(&[event(0)]),
            Err(OutboxError::TooLarge { .. })
        ));
    }

    #[test]
    fn acks_of_events_another_connection_added_keep_the_counters_sane() {
        // The detection path pushes on its own connection; acking those events on the
        // delivery side must not underflow anything.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let mut detect = Outbox::open(&path, 1 << 20).unwrap();
        let mut deliver = Outbox::open(&path, 1 << 20).unwrap();
        detect.push(&[event(0), event(1), event(2)]).unwrap();
        assert_eq!(
            deliver.stats().unwrap().depth,
            3,
            "every handle sees the database"
        );
        let rows = pending_rows(&deliver, 10);
        assert_eq!(rows.len(), 3);
        assert_eq!(deliver.ack_many(&rows[..2]).unwrap(), 2);
        assert!(deliver.ack(rows[2]).unwrap());
        assert_eq!(deliver.stats().unwrap().depth, 0);
        detect.push(&[event(3)]).unwrap();
        assert_eq!(deliver.stats().unwrap().depth, 1);
        assert_eq!(detect.stats().unwrap(), deliver.stats().unwrap());
    }

    /// Delivery acknowledges on its own handle while the detection path pushes: the quota
    /// must see what delivery freed (it once counted from the pusher's stale counters and
    /// dropped undelivered events, then the whole archive, in normal operation).
    #[test]
    fn the_quota_sees_acks_made_on_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let size = serde_json::to_string(&event(0)).unwrap().len() as u64;
        let quota = 10 * size + size / 2;
        let mut detect = Outbox::open(&path, quota).unwrap();
        let mut deliver = Outbox::open(&path, quota).unwrap();
        // Many push + ack rounds, well past the quota in total.
        let mut seq = 0;
        for _ in 0..40 {
            detect.push(&[event(seq)]).unwrap();
            seq += 1;
            let rows = pending_rows(&deliver, 10);
            assert_eq!(rows.len(), 1, "nothing undelivered was dropped");
            deliver.ack_many(&rows).unwrap();
        }
        // A broker outage: nothing is acknowledged.
        for _ in 0..5 {
            detect.push(&[event(seq)]).unwrap();
            seq += 1;
        }
        let pending = pending_seqs(&deliver, 100);
        assert_eq!(pending, [40, 41, 42, 43, 44]);
        assert_eq!(deliver.stats().unwrap().dropped_total, 0);
        // The archive keeps what the quota allows beside them: the newest 5 of 40.
        assert_eq!(deliver.replay(1, 0, 39).unwrap(), 5);
        let stats = detect.stats().unwrap();
        assert!(stats.bytes + stats.archived_bytes <= quota, "{stats:?}");
    }

    /// A push while another connection holds the write lock waits for it (a deferred
    /// transaction that reads first was refused at once with SQLITE_BUSY, whatever the
    /// busy timeout, and the detection was lost).
    #[test]
    fn a_push_waits_for_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let mut detect = Outbox::open(&path, 1 << 20).unwrap();
        let mut other = Outbox::open(&path, 1 << 20).unwrap();
        other.push(&[event(0)]).unwrap();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let tx = other
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            tx.execute("UPDATE events SET historical = 1", []).unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            tx.commit().unwrap();
        });
        locked_rx.recv().unwrap();
        let started = std::time::Instant::now();
        detect.push(&[event(1)]).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
        holder.join().unwrap();
        assert_eq!(detect.stats().unwrap().depth, 2);
    }

    #[test]
    fn acknowledged_events_can_be_replayed_from_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path().join("o.db"), 1 << 20).unwrap();
        ob.push(&(0..6).map(event).collect::<Vec<_>>()).unwrap();
        let rows = pending_rows(&ob, 10);
        ob.ack_many(&rows[..5]).unwrap();
        assert_eq!(ob.stats().unwrap().depth, 1);
        // The broker acknowledged seq 0–4 of boot 1 (seq 5 is still pending).
        assert_eq!(
            ob.delivered_through().unwrap(),
            [BootHeld {
                boot: 1,
                next_seq: 5,
                archived_from: Some(0)
            }]
        );
        // A subscriber misses 1–2 (and asks for 9, which never existed).
        assert_eq!(ob.replay(1, 1, 2).unwrap(), 2);
        assert_eq!(ob.replay(1, 9, 9).unwrap(), 0);
        assert_eq!(ob.replay(2, 0, 100).unwrap(), 0, "another boot");
        let again: Vec<(u64, bool)> = ob
            .pending(10)
            .unwrap()
            .iter()
            .map(|p| (p.event.seq, p.event.historical))
            .collect();
        assert_eq!(again, [(5, false), (1, true), (2, true)]);
        assert_eq!(ob.stats().unwrap().depth, 3);
        // Sent once more, they return to the archive.
        let rows = pending_rows(&ob, 10);
        ob.ack_many(&rows).unwrap();
        assert_eq!(ob.delivered_through().unwrap()[0].next_seq, 6);
        assert_eq!(ob.replay(1, 0, 5).unwrap(), 6);
    }

    fn event_of(boot: u64, seq: u64) -> Detection {
        let mut e = event(seq);
        e.boot = boot;
        e.id = Detection::make_id("st", boot, seq);
        e
    }

    /// Heartbeats tell subscribers, per boot, how far the broker acknowledged and from
    /// where the station still holds the events (archived or waiting): below that floor
    /// nothing can be replayed any more, so it is not worth asking for.
    #[test]
    fn each_boot_reports_how_far_it_was_delivered_and_what_it_still_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path().join("o.db"), 1 << 20).unwrap();
        ob.push(&(0..10).map(|s| event_of(1, s)).collect::<Vec<_>>())
            .unwrap();
        ob.push(&(0..5).map(|s| event_of(2, s)).collect::<Vec<_>>())
            .unwrap();
        ob.push(&[event_of(3, 0), event_of(3, 1)]).unwrap();
        let rows = pending_rows(&ob, 100);
        ob.ack_many(&rows[..13]).unwrap(); // boot 1 whole, boot 2 seq 0–2
        // Boot 1's oldest four expire from the archive; then 4–5 are asked for again
        // (waiting once more, still held).
        ob.conn
            .execute("DELETE FROM sent WHERE boot = 1 AND seq < 4", [])
            .unwrap();
        assert_eq!(ob.replay(1, 4, 5).unwrap(), 2);
        let held = |b: u64, n: u64, f: u64| BootHeld {
            boot: b,
            next_seq: n,
            archived_from: Some(f),
        };
        assert_eq!(
            ob.delivered_through().unwrap(),
            [held(1, 10, 4), held(2, 3, 0), held(3, 0, 0)],
            "boot 3 is only waiting: nothing acknowledged yet"
        );
        // A wiped archive holds nothing: no boot is listed.
        ob.conn
            .execute_batch("DELETE FROM sent; DELETE FROM events;")
            .unwrap();
        assert_eq!(ob.delivered_through().unwrap(), []);
    }

    #[test]
    fn the_quota_gives_up_archived_events_before_pending_ones() {
        let dir = tempfile::tempdir().unwrap();
        let size = serde_json::to_string(&event(0)).unwrap().len() as u64;
        let mut ob = Outbox::open(dir.path().join("o.db"), 4 * size + size / 2).unwrap();
        ob.push(&[event(0), event(1), event(2)]).unwrap();
        let rows = pending_rows(&ob, 10);
        ob.ack_many(&rows).unwrap();
        // Three archived; four new ones need room for four: the archive shrinks to none.
        assert_eq!(
            ob.push(&[event(3), event(4), event(5), event(6)]).unwrap(),
            0
        );
        assert_eq!(ob.stats().unwrap().depth, 4);
        assert_eq!(
            ob.stats().unwrap().dropped_total,
            0,
            "nothing undelivered was dropped"
        );
        assert_eq!(ob.replay(1, 0, 2).unwrap(), 0);
        // Then pending events are dropped, oldest first, and counted.
        assert_eq!(ob.push(&[event(7)]).unwrap(), 1);
        assert_eq!(ob.pending(1).unwrap()[0].event.seq, 4);
    }

    /// A full disk: the archive cannot grow, so acknowledgements that moved events there
    /// failed, nothing left the outbox, and the same events were sent again forever.
    #[test]
    fn acknowledgements_drain_the_outbox_when_the_disk_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let mut ob = Outbox::open(&path, 1 << 30).unwrap();
        ob.push(&(0..50).map(event).collect::<Vec<_>>()).unwrap();
        // The file may not grow by a page (SQLite's page limit stands in for the disk).
        let pages: i64 = ob
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        ob.conn
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let rows = pending_rows(&ob, 100);
        assert_eq!(ob.ack_many(&rows).unwrap(), 50);
        let stats = ob.stats().unwrap();
        assert_eq!((stats.depth, stats.unarchived_total), (0, 50), "{stats:?}");
        assert_eq!(ob.replay(1, 0, 49).unwrap(), 0, "not archived, said so");
        // Room again: acknowledged events are archived as before.
        ob.conn
            .pragma_update(None, "max_page_count", 1 << 30)
            .unwrap();
        ob.push(&[event(50)]).unwrap();
        let rows = pending_rows(&ob, 10);
        ob.ack_many(&rows).unwrap();
        assert_eq!(ob.replay(1, 50, 50).unwrap(), 1);
    }

    #[test]
    fn a_corrupt_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        std::fs::write(&path, vec![0x42; 8192]).unwrap();
        let err = Outbox::open(&path, 1 << 20).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("o.db") && text.contains("not a database"),
            "{text}"
        );
    }
}
