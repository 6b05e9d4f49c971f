//! `warble-collect watch`: a subscriber that prints each detection as it arrives — species,
//! confidence, which report it is (first sight, final, revised, late), how long after the
//! sound it arrived, and, given the recording's ground truth, whether the call is in it —
//! and at the end the figures of the run: precision and recall, latency percentiles, and
//! what the stations' last heartbeats say they cost (real-time factor, CPU, memory).
//!
//! It stores nothing and acknowledges as it reads (a clean session): it is a window onto
//! the stream, not a collector.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use warble_core::event::Detection;
use warble_core::truth::GroundTruth;
use warble_core::wire::{Heartbeat, Presence, Status};

use crate::store::MAX_EVENT_BYTES;

/// Where detections sit in the recording the ground truth describes: sample positions
/// (`start_sample`, `end_sample`) over the station's sample rate.
#[derive(Debug)]
pub struct Truth {
    /// The calls.
    pub truth: GroundTruth,
    /// The station's sample rate, Hz.
    pub sample_rate_hz: u32,
}

/// What the watcher has seen.
#[derive(Debug, Default)]
pub struct Watch {
    truth: Option<Truth>,
    /// Ids whose first report arrived.
    seen: HashSet<String>,
    /// Ids whose final report was scored.
    scored: HashSet<String>,
    /// Seconds from the end of the sound that raised it to each first report's arrival.
    first_latency_s: Vec<f64>,
    /// Seconds from the end of each event to its final report's arrival.
    final_latency_s: Vec<f64>,
    /// Late (replayed) events.
    late: usize,
    /// Messages that were not detections.
    invalid: usize,
    /// The last heartbeat per station.
    beats: BTreeMap<String, Heartbeat>,
    /// Stations seen online during the watch, and whether they still are.
    online: BTreeMap<String, bool>,
}

impl Watch {
    /// A watcher scoring against `truth`, if given.
    pub fn new(truth: Option<Truth>) -> Self {
        Self {
            truth,
            ..Self::default()
        }
    }

    /// A message on `station`'s detections topic that arrived at `arrived`: the line to
    /// print.
    pub fn detection(&mut self, station: &str, payload: &[u8], arrived: DateTime<Utc>) -> String {
        let parsed = (payload.len() <= MAX_EVENT_BYTES)
            .then(|| serde_json::from_slice::<Detection>(payload).ok())
            .flatten()
            .filter(|e| e.station == station && e.validate().is_ok());
        let Some(e) = parsed else {
            self.invalid += 1;
            return format!(
                "{}  {station}  (not a valid detection: ignored)",
                clock(arrived)
            );
        };
        let first = self.seen.insert(e.id.clone());
        // The first report's `end` is the end of the sound heard so far; a final report's is
        // the event's end. Both are station time (the same clock on one machine).
        let latency = (arrived - e.end).as_seconds_f64();
        let kind = if e.historical {
            self.late += 1;
            "late (replayed)"
        } else if !e.is_final {
            self.first_latency_s.push(latency);
            "first sight"
        } else {
            if first {
                // Closed when first reported: its first and final report at once.
                self.first_latency_s.push(latency);
            }
            self.final_latency_s.push(latency);
            "final"
        };
        let mut line = format!(
            "{}  {station}  {:<28} {:.2}  {kind:<15}",
            clock(arrived),
            format!("{} {}", e.code.as_str(), e.common),
            e.confidence,
        );
        if !e.historical {
            line += &format!("  +{:.2} s after the sound", latency.max(0.0));
        }
        if let Some(t) = &mut self.truth {
            let rate = f64::from(t.sample_rate_hz);
            let (start_s, end_s) = (e.start_sample as f64 / rate, e.end_sample as f64 / rate);
            line += &format!("  {start_s:5.1}–{end_s:5.1} s");
            // Scored once per event, at its final report; a first report only looks.
            let hit = if e.is_final && self.scored.insert(e.id.clone()) {
                t.truth.score(e.code.as_str(), start_s, end_s)
            } else {
                t.truth
                    .calls
                    .iter()
                    .any(|c| c.code == e.code.as_str() && c.start_s < end_s && start_s < c.end_s)
            };
            line += if hit {
                "  ✓ in ground truth"
            } else {
                "  ✗ not in ground truth"
            };
        }
        line
    }

    /// A message on `station`'s heartbeat topic.
    pub fn heartbeat(&mut self, station: &str, payload: &[u8]) {
        if let Ok(beat) = serde_json::from_slice::<Heartbeat>(payload) {
            self.beats.insert(station.to_owned(), beat);
        }
    }

    /// A message on `station`'s status topic; returns whether it changed the station's
    /// presence.
    pub fn status(&mut self, station: &str, payload: &[u8]) -> bool {
        let Ok(status) = serde_json::from_slice::<Status>(payload) else {
            return false;
        };
        let online = status.state == Presence::Online;
        // (A station offline since before the watch, its retained status, is not awaited.)
        if !online && !self.online.contains_key(station) {
            return false;
        }
        self.online.insert(station.to_owned(), online) != Some(online)
    }

    /// Whether some station was online during the watch and none is now.
    pub fn all_offline(&self) -> bool {
        !self.online.is_empty() && self.online.values().all(|online| !online)
    }

    /// The closing figures, one line each.
    pub fn summary(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{} detection(s), {} final; {} late, {} invalid message(s)",
            self.seen.len(),
            self.final_latency_s.len(),
            self.late,
            self.invalid
        )];
        if let Some(t) = &self.truth {
            out.push(format!("against the ground truth: {}", t.truth.summary()));
        }
        for (name, xs) in [
            (
                "first report, after the sound that raised it",
                &self.first_latency_s,
            ),
            ("final report, after the event's end", &self.final_latency_s),
        ] {
            if let (Some(p50), Some(p99)) = (quantile(xs, 0.5), quantile(xs, 0.99)) {
                out.push(format!(
                    "{name}: p50 {:.0} ms, p99 {:.0} ms",
                    p50 * 1e3,
                    p99 * 1e3
                ));
            }
        }
        for (station, b) in &self.beats {
            let mut line = format!("{station}: {:.0} s of audio", b.audio_s);
            if let Some(f) = b.realtime_factor {
                line += &format!(", {f:.0}× real time");
            }
            if let Some(cpu) = b.cpu_s.filter(|&c| c > 0.0) {
                line += &format!(
                    ", {cpu:.1} CPU-s ({:.0} audio-s per CPU-s, {:.1} % of a core)",
                    b.audio_s / cpu,
                    100.0 * cpu / (b.uptime_s.max(1) as f64)
                );
            }
            if let Some(ms) = b.inference_ms {
                line += &format!(", {ms:.1} ms inference per window");
            }
            if let Some(rss) = b.peak_rss_bytes {
                line += &format!(", peak RSS {:.0} MB", rss as f64 / 1e6);
            }
            out.push(line + " (its last heartbeat)");
        }
        out
    }
}

/// `q`-quantile of `xs` (nearest rank); `None` when empty.
fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    sorted
        .get(((q * last as f64).round() as usize).min(last))
        .copied()
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), Some(3.0));
        assert_eq!(quantile(&[5.0], 0.0), Some(5.0));
    }
}
