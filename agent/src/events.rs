//! Where a detection goes once the detector closes it: it gets its id, is committed to the
//! station's outbox, and only then reaches the detection file or standard output.
//!
//! A first report of an event still open (see
//! [`DetectorConfig::first_reports`](crate::detect::DetectorConfig::first_reports)) is
//! minted and committed too, so subscribers hear of it at once, but reaches no file: files
//! hold final events. Its closing becomes revision 1 of the same id. The outbox is written
//! twice per event at most: once at first sight, once at the close.
//!
//! The order is the promise: an event the outbox holds will reach the broker, so nothing
//! a file sink does (a full disk, a closed pipe, a restarted journal) may keep it from
//! the outbox. A sink failure is counted and reported at the end; it never stops the
//! events. An outbox that refuses a commit (a writer holding the lock past the busy
//! timeout, a full disk) keeps the events in memory and is retried with every new event
//! and on [`EventSink::retry`]; only when [`MAX_HELD`] events wait does the sink give up,
//! loudly, so the service restarts.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use warble_core::LabelTable;
use warble_core::event::Detection;

use crate::daily::DailyFiles;
use crate::outbox::{Outbox, OutboxError};
use crate::output::{Minter, Row, Writer};
use crate::timeline::Timeline;

/// Events held in memory while the outbox refuses commits, before the run fails.
pub const MAX_HELD: usize = 10_000;

/// How long [`EventSink::finish`] keeps retrying held events.
const FINAL_RETRY: Duration = Duration::from_secs(10);

/// Why the sink failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventSinkError {
    /// The outbox refused commits until too many events waited in memory, or until the
    /// end of the run.
    #[error("{held} detection(s) could not be committed to the outbox: {source}")]
    Outbox {
        /// Events not committed (they were still written to the detection output).
        held: usize,
        /// The outbox's last error.
        source: OutboxError,
    },
    /// The detection output failed; `committed` says whether every event is safe in the
    /// outbox anyway.
    #[error(
        "{failures} detection row(s) could not be written{}: {source}",
        if *committed { " (every detection is in the outbox)" } else { "" }
    )]
    Output {
        /// Rows not written.
        failures: u64,
        /// Whether an outbox holds every event.
        committed: bool,
        /// The first write error.
        source: io::Error,
    },
}

/// What the sink has done, for heartbeats and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Events minted.
    pub events: u64,
    /// Commits the outbox refused (each retried).
    pub outbox_failures: u64,
    /// Events waiting in memory for the outbox now.
    pub held: u64,
    /// Rows the detection output failed to write.
    pub output_failures: u64,
}

/// Mints, commits, then writes (see the module documentation).
#[derive(Debug)]
pub struct EventSink<W: Write> {
    minter: Minter,
    outbox: Option<Outbox>,
    writer: Writer<W>,
    files: Option<DailyFiles>,
    wake: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// First reports of events still open, by class and first sample (which an open event
    /// keeps): their closing revises them.
    open: std::collections::HashMap<(usize, u64), Detection>,
    held: Vec<Detection>,
    last_outbox_error: Option<OutboxError>,
    output_error: Option<io::Error>,
    stats: SinkStats,
}

impl<W: Write> EventSink<W> {
    /// A sink minting with `minter`, committing to `outbox` (if the run has one) and
    /// writing rows with `writer`.
    pub fn new(minter: Minter, outbox: Option<Outbox>, writer: Writer<W>) -> Self {
        Self {
            minter,
            outbox,
            writer,
            files: None,
            wake: None,
            open: std::collections::HashMap::new(),
            held: Vec::new(),
            last_outbox_error: None,
            output_error: None,
            stats: SinkStats::default(),
        }
    }

    /// Notifies `wake` whenever events are committed (delivery sends them at once).
    #[must_use]
    pub fn with_wake(mut self, wake: std::sync::Arc<tokio::sync::Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Also writes every event to the station's detection files.
    #[must_use]
    pub fn with_files(mut self, files: DailyFiles) -> Self {
        self.files = Some(files);
        self
    }

    /// Events minted from now on are made by `model` (see [`Minter::switch_model`]).
    pub fn switch_model(&mut self, model: warble_core::event::ModelRef) {
        self.minter.switch_model(model);
    }

    /// The model events are minted with now.
    pub fn model(&self) -> &warble_core::event::ModelRef {
        self.minter.model()
    }

    /// Takes one event; returns the minted event (`None` for a class without a label).
    /// It is committed to the outbox before the output sees it; a first report (an event
    /// still open) reaches only the outbox, and its closing is minted as its revision.
    ///
    /// # Errors
    /// [`EventSinkError::Outbox`] once [`MAX_HELD`] events wait for a refusing outbox.
    /// Output failures are not errors here (see [`EventSink::finish`]).
    pub fn emit(
        &mut self,
        row: &Row<'_>,
        labels: &LabelTable,
        timeline: &Timeline,
    ) -> Result<Option<Detection>, EventSinkError> {
        let key = (row.event.class, row.event.start_sample);
        let event = match self.open.remove(&key) {
            Some(first) => Some(self.minter.revise(&first, row, timeline)),
            None => {
                let minted = self.minter.mint(row, labels, timeline);
                self.stats.events += u64::from(minted.is_some());
                minted
            }
        };
        if let Some(e) = &event {
            if self.outbox.is_some() {
                self.held.push(e.clone());
            }
            if !e.is_final {
                self.open.insert(key, e.clone());
            }
        }
        let committed = self.commit_held();
        if !row.event.closed {
            return committed.map(|()| event);
        }
        if let Err(err) = self.writer.write(row, labels, event.as_ref()) {
            self.output_failed(err);
        }
        if let (Some(files), Some(e)) = (self.files.as_mut(), event.as_ref())
            && let Err(err) = files.write(e, row.event.class, labels)
        {
            self.output_failed(err);
        }
        committed.map(|()| event)
    }

    /// Commits events held after a refused commit (call now and then: a quiet station
    /// emits nothing that would retry them).
    ///
    /// # Errors
    /// As [`EventSink::emit`].
    pub fn retry(&mut self) -> Result<(), EventSinkError> {
        self.commit_held()
    }

    /// Counters so far.
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            held: self.held.len() as u64,
            ..self.stats
        }
    }

    /// Retries held events for a few seconds, flushes the output and returns the counters.
    ///
    /// # Errors
    /// [`EventSinkError::Outbox`] if events are still held; else
    /// [`EventSinkError::Output`] if any row failed to be written.
    pub fn finish(mut self) -> Result<SinkStats, EventSinkError> {
        let give_up = Instant::now() + FINAL_RETRY;
        let mut wait = Duration::from_millis(50);
        while !self.held.is_empty() && Instant::now() < give_up {
            if self.commit_held().is_ok() && self.held.is_empty() {
                break;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(1));
        }
        if let Some(source) = self.last_outbox_error.take()
            && !self.held.is_empty()
        {
            return Err(EventSinkError::Outbox {
                held: self.held.len(),
                source,
            });
        }
        let stats = self.stats();
        let committed = self.outbox.is_some();
        let (mut failures, mut first_error) = (self.stats.output_failures, self.output_error);
        if let Err(err) = self.writer.finish() {
            failures += 1;
            first_error.get_or_insert(err);
        }
        if let Some(Err(err)) = self.files.as_mut().map(DailyFiles::flush) {
            failures += 1;
            first_error.get_or_insert(err);
        }
        match first_error {
            Some(source) => Err(EventSinkError::Output {
                failures,
                committed,
                source,
            }),
            None => Ok(stats),
        }
    }

    fn commit_held(&mut self) -> Result<(), EventSinkError> {
        let Some(outbox) = self.outbox.as_mut() else {
            return Ok(());
        };
        if self.held.is_empty() {
            return Ok(());
        }
        match outbox.push(&self.held) {
            Ok(_) => {
                if let Some(wake) = &self.wake {
                    wake.notify_one();
                }
                if self.last_outbox_error.take().is_some() {
                    tracing::info!(
                        "outbox: {} held detection(s) committed after all",
                        self.held.len()
                    );
                }
                self.held.clear();
                Ok(())
            }
            // An event larger than the whole quota can never be stored: holding it would
            // block every later one.
            Err(OutboxError::TooLarge { quota, .. }) => {
                self.stats.outbox_failures += 1;
                self.held.retain(|e| {
                    let size = serde_json::to_vec(e).map_or(u64::MAX, |j| j.len() as u64);
                    if size > quota {
                        tracing::error!(
                            "outbox: detection {} of {size} bytes exceeds the quota of {quota} bytes; not stored",
                            e.id
                        );
                    }
                    size <= quota
                });
                self.commit_held()
            }
            Err(err) => {
                self.stats.outbox_failures += 1;
                if self.last_outbox_error.is_none() {
                    tracing::warn!(
                        "outbox: {err}; holding {} detection(s) in memory and retrying",
                        self.held.len()
                    );
                }
                if self.held.len() >= MAX_HELD {
                    return Err(EventSinkError::Outbox {
                        held: self.held.len(),
                        source: err,
                    });
                }
                self.last_outbox_error = Some(err);
                Ok(())
            }
        }
    }

    fn output_failed(&mut self, err: io::Error) {
        self.stats.output_failures += 1;
        if self.output_error.is_none() {
            tracing::warn!(
                "detection output: {err}{}",
                if self.outbox.is_some() {
                    " (detections still go to the outbox)"
                } else {
                    ""
                }
            );
            self.output_error = Some(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::SpeciesEvent;
    use crate::output::Format;
    use warble_core::SpeciesCode;
    use warble_core::event::ModelRef;

    fn event(start: u64, end: u64, confidence: f32, closed: bool) -> SpeciesEvent {
        SpeciesEvent {
            class: 0,
            start_sample: start,
            end_sample: end,
            confidence,
            windows: 1,
            closed,
        }
    }

    #[test]
    fn a_first_report_goes_to_the_outbox_only_and_its_close_revises_it() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().join("o.db"), 1 << 20).unwrap();
        let model = ModelRef {
            id: "m".into(),
            version: "1.0.0".into(),
        };
        let mut rows = Vec::new();
        let writer = Writer::new(&mut rows, Format::Csv).unwrap();
        let mut sink = EventSink::new(Minter::new("st", 3, model), Some(outbox), writer);
        let labels = LabelTable::new(vec![(
            SpeciesCode::new("eurrob1").unwrap(),
            "Erithacus rubecula".into(),
            "European Robin".into(),
        )])
        .unwrap();
        let timeline = Timeline::starting_at(chrono::Utc::now(), 100);
        let emit = |sink: &mut EventSink<_>, e: &SpeciesEvent| {
            let row = Row {
                file: "live",
                event: e,
                rate_hz: 100,
                clip: e.closed.then_some("c.wav"),
            };
            sink.emit(&row, &labels, &timeline).unwrap().unwrap()
        };
        let first = emit(&mut sink, &event(100, 400, 0.6, false));
        assert!(!first.is_final && first.revision == 0 && first.clip.is_none());
        let last = emit(&mut sink, &event(100, 900, 0.9, true));
        assert_eq!((last.id.as_str(), last.revision), ("st:3:0", 1));
        assert!(last.is_final);
        assert_eq!((last.end_sample, last.confidence), (900, 0.9));
        assert_eq!(last.clip.as_deref(), Some("c.wav"));
        assert_eq!(last.start, first.start);
        // A later event gets the next seq; one never reported open is minted final.
        let next = emit(&mut sink, &event(1000, 1300, 0.7, true));
        assert_eq!((next.id.as_str(), next.revision), ("st:3:1", 0));
        assert!(next.is_final);
        assert_eq!(sink.stats().events, 2, "two events, three reports");
        sink.finish().unwrap();
        let csv = String::from_utf8(rows).unwrap();
        assert_eq!(
            csv.lines().count(),
            3,
            "the header and the two final events: {csv}"
        );
        let outbox = Outbox::open(dir.path().join("o.db"), 1 << 20).unwrap();
        let pending: Vec<_> = outbox
            .pending(10)
            .unwrap()
            .into_iter()
            .map(|p| (p.event.id, p.event.revision))
            .collect();
        assert_eq!(
            pending,
            [("st:3:0".to_owned(), 1), ("st:3:1".to_owned(), 0)],
            "the revision replaced the first report, which was not delivered yet"
        );
    }
}
