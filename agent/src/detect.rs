//! From per-window probabilities to species events: thresholds, species lists, merging of
//! consecutive windows and repeat-confirmation.
//!
//! Every window's probabilities go through [`Detector::push`] in stream order; an event is
//! emitted when it is closed (the species stops being detected, or the stream ends), so
//! one call that spans several overlapping windows is one event with a start and an end.
//! With [`DetectorConfig::first_reports`] it is also emitted once at first sight, open,
//! in the window that confirmed it: a live station tells its subscribers then, and sends
//! the final span when the event closes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use warble_core::LabelTable;

/// Post-processing settings (station config overrides on top of the bundle's thresholds).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Replaces every class's threshold when set (a global sensitivity knob).
    pub min_confidence: Option<f32>,
    /// Per-species threshold overrides by code; they win over everything else.
    pub per_species: BTreeMap<String, f32>,
    /// Only these species are reported, when non-empty.
    pub include: BTreeSet<String>,
    /// These species are never reported.
    pub exclude: BTreeSet<String>,
    /// Merge consecutive windows of a species into one event (else one event per window,
    /// as BirdNET-Analyzer lists them).
    pub merge: bool,
    /// Windows of the same species at most this many samples apart are merged.
    pub merge_gap_samples: u64,
    /// The longest event: a merged event that would grow past it is emitted as it stands
    /// and a continuation starts with the next window. An event lives only in memory until
    /// it is emitted, so a chorus or a stuck output must not keep it there for hours (see
    /// [`MAX_EVENT_S`]).
    pub max_event_samples: u64,
    /// A species must be seen in this many windows ...
    pub confirm_count: usize,
    /// ... within this many samples before its events are reported (1 window = off).
    pub confirm_within_samples: u64,
    /// Classes whose presence forbids keeping audio (e.g. human voice): every window in
    /// which one reaches its threshold is noted (reported as a species or not), so clips
    /// that overlap it are not saved.
    pub privacy: BTreeSet<String>,
    /// Also emit each event once the window it is first confirmed in, still open (see
    /// [`SpeciesEvent::closed`]), before it closes.
    pub first_reports: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            min_confidence: None,
            per_species: BTreeMap::new(),
            include: BTreeSet::new(),
            exclude: BTreeSet::new(),
            merge: true,
            merge_gap_samples: 0,
            max_event_samples: u64::MAX,
            confirm_count: 1,
            confirm_within_samples: 0,
            privacy: BTreeSet::new(),
            first_reports: false,
        }
    }
}

/// The longest event the agent emits, in seconds: a longer call becomes consecutive
/// events (a power cut loses at most this much of an open event).
pub const MAX_EVENT_S: f64 = 60.0;

/// One species event: merged windows of one class above its threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeciesEvent {
    /// Output index (row of the label table).
    pub class: usize,
    /// First sample of the first window.
    pub start_sample: u64,
    /// One past the last sample of the last window.
    pub end_sample: u64,
    /// Highest probability over the merged windows.
    pub confidence: f32,
    /// Windows merged.
    pub windows: u32,
    /// False for a first report: the event is still open, and is emitted again, closed,
    /// with its final span and confidence (same `class` and `start_sample`).
    pub closed: bool,
}

/// Counters a summary or heartbeat reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// Windows seen.
    pub windows: u64,
    /// Windows dropped because the model produced NaN or infinity.
    pub non_finite_windows: u64,
    /// Windows in which a reported species reached its threshold (before merging and
    /// confirmation: the model's detection rate, which a probation compares).
    pub detected_windows: u64,
    /// Events held back because repeat-confirmation never succeeded.
    pub unconfirmed_events: u64,
}

#[derive(Debug, Clone)]
struct Open {
    event: SpeciesEvent,
    confirmed: bool,
    /// Its first report was emitted.
    reported: bool,
}

impl Open {
    fn new(class: usize, start_sample: u64, end_sample: u64, p: f32, confirmed: bool) -> Self {
        Self {
            event: SpeciesEvent {
                class,
                start_sample,
                end_sample,
                confidence: p,
                windows: 1,
                closed: true,
            },
            confirmed,
            reported: false,
        }
    }
}

/// The post-processor for one stream.
#[derive(Debug)]
pub struct Detector {
    thresholds: Vec<f32>,
    reported: Vec<bool>,
    cfg: DetectorConfig,
    open: Vec<Option<Open>>,
    hits: Vec<VecDeque<u64>>,
    stats: DetectorStats,
    privacy: Vec<bool>,
    /// Sample spans of windows in which a privacy class was present, not yet taken.
    privacy_spans: Vec<(u64, u64)>,
}

impl Detector {
    /// A detector for `labels` with the bundle's per-class `thresholds` (one per label).
    pub fn new(labels: &LabelTable, thresholds: Vec<f32>, cfg: DetectorConfig) -> Self {
        let n = labels.len();
        let mut effective = thresholds;
        effective.resize(n, 0.5);
        let mut reported = vec![true; n];
        let mut privacy = vec![false; n];
        for (i, label) in labels.iter().enumerate() {
            privacy[i] = cfg.privacy.contains(label.code.as_str());
            let code = label.code.as_str();
            if let Some(t) = cfg.min_confidence {
                effective[i] = t;
            }
            if let Some(&t) = cfg.per_species.get(code) {
                effective[i] = t;
            }
            reported[i] = (cfg.include.is_empty() || cfg.include.contains(code))
                && !cfg.exclude.contains(code);
        }
        Self {
            thresholds: effective,
            reported,
            cfg,
            open: vec![None; n],
            hits: vec![VecDeque::new(); n],
            stats: DetectorStats::default(),
            privacy,
            privacy_spans: Vec::new(),
        }
    }

    /// The windows, as sample spans, in which a privacy class reached its threshold since
    /// the last call.
    pub fn take_privacy_spans(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.privacy_spans)
    }

    /// The effective threshold of each class.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// Counters so far.
    pub fn stats(&self) -> DetectorStats {
        self.stats
    }

    /// Feeds one window's probabilities (one per class); closed events go to `out`.
    pub fn push(
        &mut self,
        start_sample: u64,
        end_sample: u64,
        probs: &[f32],
        out: &mut Vec<SpeciesEvent>,
    ) {
        self.stats.windows += 1;
        if probs.len() != self.thresholds.len() || probs.iter().any(|p| !p.is_finite()) {
            self.stats.non_finite_windows += 1;
            return;
        }
        if probs
            .iter()
            .zip(&self.privacy)
            .zip(&self.thresholds)
            .any(|((&p, &private), &t)| private && p >= t)
        {
            self.privacy_spans.push((start_sample, end_sample));
        }
        let mut detected = false;
        for (class, &p) in probs.iter().enumerate() {
            let hit = self.reported[class] && p >= self.thresholds[class];
            if hit {
                detected = true;
                self.record_hit(class, end_sample);
            }
            let confirmed = hit && self.is_confirmed(class);
            let gap = self.cfg.merge_gap_samples;
            let merge = self.cfg.merge;
            let longest = self.cfg.max_event_samples;
            let slot = &mut self.open[class];
            match slot {
                Some(open)
                    if merge
                        && hit
                        && start_sample <= open.event.end_sample + gap
                        && end_sample.saturating_sub(open.event.start_sample) > longest =>
                {
                    let was_confirmed = open.confirmed;
                    if let Some(done) = slot.take() {
                        Self::close(done, &mut self.stats, out);
                    }
                    *slot = Some(Open::new(
                        class,
                        start_sample,
                        end_sample,
                        p,
                        confirmed || was_confirmed,
                    ));
                }
                Some(open) if merge && hit && start_sample <= open.event.end_sample + gap => {
                    open.event.end_sample = open.event.end_sample.max(end_sample);
                    open.event.confidence = open.event.confidence.max(p);
                    open.event.windows += 1;
                    open.confirmed |= confirmed;
                }
                Some(open) if hit || !merge || start_sample > open.event.end_sample + gap => {
                    if let Some(done) = slot.take() {
                        Self::close(done, &mut self.stats, out);
                    }
                    if hit {
                        *slot = Some(Open::new(class, start_sample, end_sample, p, confirmed));
                    }
                }
                Some(_) => {}
                None if hit => {
                    *slot = Some(Open::new(class, start_sample, end_sample, p, confirmed));
                }
                None => {}
            }
            if self.cfg.first_reports
                && let Some(open) = slot
                && open.confirmed
                && !open.reported
            {
                open.reported = true;
                out.push(SpeciesEvent {
                    closed: false,
                    ..open.event.clone()
                });
            }
        }
        self.stats.detected_windows += u64::from(detected);
    }

    /// Ends the stream: closes every open event (in class order).
    pub fn finish(&mut self, out: &mut Vec<SpeciesEvent>) {
        for slot in &mut self.open {
            if let Some(done) = slot.take() {
                Self::close(done, &mut self.stats, out);
            }
        }
        for h in &mut self.hits {
            h.clear();
        }
    }

    fn record_hit(&mut self, class: usize, at: u64) {
        let hits = &mut self.hits[class];
        hits.push_back(at);
        let within = self.cfg.confirm_within_samples;
        while hits.front().is_some_and(|&t| at.saturating_sub(t) > within) {
            hits.pop_front();
        }
        // Only the last `confirm_count` hits can matter.
        while hits.len() > self.cfg.confirm_count.max(1) {
            hits.pop_front();
        }
    }

    fn is_confirmed(&self, class: usize) -> bool {
        self.hits[class].len() >= self.cfg.confirm_count.max(1)
    }

    fn close(open: Open, stats: &mut DetectorStats, out: &mut Vec<SpeciesEvent>) {
        if open.confirmed {
            out.push(open.event);
        } else {
            stats.unconfirmed_events += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warble_core::SpeciesCode;

    fn labels() -> LabelTable {
        LabelTable::new(
            ["aaa", "bbb", "ccc"]
                .iter()
                .map(|c| (SpeciesCode::new(*c).unwrap(), String::new(), String::new()))
                .collect(),
        )
        .unwrap()
    }

    /// Runs windows of 100 samples with hop `hop` and returns the events.
    fn run(cfg: DetectorConfig, hop: u64, windows: &[[f32; 3]]) -> Vec<SpeciesEvent> {
        let mut d = Detector::new(&labels(), vec![0.5, 0.5, 0.8], cfg);
        let mut out = Vec::new();
        for (i, p) in windows.iter().enumerate() {
            let start = i as u64 * hop;
            d.push(start, start + 100, p, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn per_class_thresholds_apply() {
        let ev = run(DetectorConfig::default(), 100, &[[0.6, 0.4, 0.7]]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].class, 0);
        let ev = run(DetectorConfig::default(), 100, &[[0.1, 0.1, 0.85]]);
        assert_eq!(ev.iter().map(|e| e.class).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn privacy_classes_mark_their_windows_even_when_not_reported() {
        let cfg = DetectorConfig {
            privacy: ["ccc".to_owned()].into(),
            exclude: ["ccc".to_owned()].into(),
            ..DetectorConfig::default()
        };
        let mut d = Detector::new(&labels(), vec![0.5, 0.5, 0.8], cfg);
        let mut out = Vec::new();
        // ccc's threshold is 0.8: the second window is below it, the third above.
        for (i, p) in [[0.9, 0.0, 0.0], [0.0, 0.0, 0.7], [0.9, 0.0, 0.85]]
            .iter()
            .enumerate()
        {
            let start = i as u64 * 100;
            d.push(start, start + 100, p, &mut out);
        }
        assert_eq!(d.take_privacy_spans(), [(200, 300)]);
        assert!(d.take_privacy_spans().is_empty(), "taken once");
        d.finish(&mut out);
        assert!(
            out.iter().all(|e| e.class != 2),
            "an excluded class is not reported"
        );
    }

    #[test]
    fn consecutive_windows_merge_into_one_event() {
        let w = [
            [0.6, 0.0, 0.0],
            [0.9, 0.0, 0.0],
            [0.7, 0.0, 0.0],
            [0.1, 0.0, 0.0],
            [0.6, 0.0, 0.0],
        ];
        let ev = run(DetectorConfig::default(), 100, &w);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!((ev[0].start_sample, ev[0].end_sample), (0, 300));
        assert_eq!(ev[0].confidence, 0.9);
        assert_eq!(ev[0].windows, 3);
        assert_eq!((ev[1].start_sample, ev[1].end_sample), (400, 500));
    }

    #[test]
    fn overlapping_windows_merge_and_a_gap_setting_bridges_misses() {
        // Hop 50, windows of 100: a miss in between still overlaps the open event.
        let w = [[0.6, 0.0, 0.0], [0.1, 0.0, 0.0], [0.6, 0.0, 0.0]];
        let ev = run(DetectorConfig::default(), 50, &w);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!((ev[0].start_sample, ev[0].end_sample), (0, 200));
        // Hop 100 with one missed window: two events, or one with a 100-sample gap.
        let w = [[0.6, 0.0, 0.0], [0.1, 0.0, 0.0], [0.6, 0.0, 0.0]];
        assert_eq!(run(DetectorConfig::default(), 100, &w).len(), 2);
        let bridged = DetectorConfig {
            merge_gap_samples: 100,
            ..DetectorConfig::default()
        };
        assert_eq!(run(bridged, 100, &w).len(), 1);
    }

    #[test]
    fn a_call_longer_than_the_cap_is_emitted_in_parts_as_it_goes() {
        let mut d = Detector::new(
            &labels(),
            vec![0.5; 3],
            DetectorConfig {
                max_event_samples: 10,
                ..DetectorConfig::default()
            },
        );
        let mut out = Vec::new();
        // 3-sample windows back to back, class 0 always above its threshold.
        for w in 0..9 {
            d.push(3 * w, 3 * w + 3, &[0.9, 0.0, 0.0], &mut out);
        }
        // The first part was emitted while the call went on, not at its end.
        let spans: Vec<(u64, u64)> = out.iter().map(|e| (e.start_sample, e.end_sample)).collect();
        assert_eq!(spans, [(0, 9), (9, 18)]);
        d.finish(&mut out);
        let spans: Vec<(u64, u64)> = out.iter().map(|e| (e.start_sample, e.end_sample)).collect();
        assert_eq!(
            spans,
            [(0, 9), (9, 18), (18, 27)],
            "nothing lost between parts"
        );
    }

    /// `(closed, start, end, confidence)` of each event emitted, in order.
    fn reports(cfg: DetectorConfig, windows: &[f32]) -> Vec<(bool, u64, u64, f32)> {
        let mut d = Detector::new(&labels(), vec![0.5; 3], cfg);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (i, &p) in windows.iter().enumerate() {
            let start = i as u64 * 100;
            d.push(start, start + 100, &[p, 0.0, 0.0], &mut out);
            // Each report appears in the window that makes it, not later.
            seen.extend(
                out.drain(..)
                    .map(|e| (e.closed, e.start_sample, e.end_sample, e.confidence)),
            );
            seen.push((true, u64::MAX, start, 0.0));
        }
        d.finish(&mut out);
        seen.extend(
            out.drain(..)
                .map(|e| (e.closed, e.start_sample, e.end_sample, e.confidence)),
        );
        seen
    }

    #[test]
    fn first_reports_come_in_the_window_that_confirms_and_the_close_follows() {
        let first = DetectorConfig {
            first_reports: true,
            ..DetectorConfig::default()
        };
        let window = |at: u64| (true, u64::MAX, at, 0.0);
        assert_eq!(
            reports(first.clone(), &[0.0, 0.6, 0.9, 0.7, 0.1]),
            [
                window(0),
                (false, 100, 200, 0.6),
                window(100),
                window(200),
                window(300),
                // A miss that starts where the event ends still touches it: the event
                // closes when a window starts past it, or at the end of the stream.
                window(400),
                (true, 100, 400, 0.9),
            ]
        );
        // Without them only the close is emitted, as before.
        assert_eq!(
            reports(DetectorConfig::default(), &[0.6, 0.9, 0.1]),
            [window(0), window(100), window(200), (true, 0, 200, 0.9)]
        );
        // Repeat-confirmation: the first report waits for the second hit.
        let confirmed = DetectorConfig {
            confirm_count: 2,
            confirm_within_samples: 300,
            ..first.clone()
        };
        assert_eq!(
            reports(confirmed, &[0.9, 0.8, 0.0]),
            [
                window(0),
                (false, 0, 200, 0.9),
                window(100),
                window(200),
                (true, 0, 200, 0.9),
            ]
        );
        // The stream's end closes what is open; a split's continuation is reported anew.
        let capped = DetectorConfig {
            max_event_samples: 200,
            ..first
        };
        assert_eq!(
            reports(capped, &[0.9, 0.9, 0.9]),
            [
                (false, 0, 100, 0.9),
                window(0),
                window(100),
                (true, 0, 200, 0.9),
                (false, 200, 300, 0.9),
                window(200),
                (true, 200, 300, 0.9),
            ]
        );
    }

    #[test]
    fn without_merging_each_window_is_an_event() {
        let w = [[0.6, 0.0, 0.0], [0.9, 0.0, 0.0]];
        let cfg = DetectorConfig {
            merge: false,
            ..DetectorConfig::default()
        };
        let ev = run(cfg, 100, &w);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!((ev[1].start_sample, ev[1].confidence), (100, 0.9));
    }

    #[test]
    fn overrides_and_species_lists() {
        let p = [[0.45, 0.6, 0.9]];
        let global = DetectorConfig {
            min_confidence: Some(0.4),
            ..DetectorConfig::default()
        };
        assert_eq!(run(global, 100, &p).len(), 3);
        let per = DetectorConfig {
            min_confidence: Some(0.4),
            per_species: BTreeMap::from([("bbb".to_owned(), 0.7)]),
            ..DetectorConfig::default()
        };
        let classes: Vec<usize> = run(per, 100, &p).iter().map(|e| e.class).collect();
        assert_eq!(classes, [0, 2]);
        let include = DetectorConfig {
            include: BTreeSet::from(["ccc".to_owned()]),
            ..DetectorConfig::default()
        };
        let classes: Vec<usize> = run(include, 100, &p).iter().map(|e| e.class).collect();
        assert_eq!(classes, [2]);
        let exclude = DetectorConfig {
            exclude: BTreeSet::from(["ccc".to_owned()]),
            ..DetectorConfig::default()
        };
        let classes: Vec<usize> = run(exclude, 100, &p).iter().map(|e| e.class).collect();
        assert_eq!(classes, [1]);
    }

    #[test]
    fn repeat_confirmation_holds_back_single_windows() {
        let cfg = DetectorConfig {
            confirm_count: 2,
            confirm_within_samples: 300,
            ..DetectorConfig::default()
        };
        // A lone hit is held back; two hits within 300 samples (with a gap) are reported.
        let lone = [[0.9, 0.0, 0.0], [0.0; 3], [0.0; 3], [0.0; 3], [0.0; 3]];
        let mut d = Detector::new(&labels(), vec![0.5; 3], cfg.clone());
        let mut out = Vec::new();
        for (i, p) in lone.iter().enumerate() {
            d.push(i as u64 * 100, i as u64 * 100 + 100, p, &mut out);
        }
        d.finish(&mut out);
        assert!(out.is_empty());
        assert_eq!(d.stats().unconfirmed_events, 1);
        let pair = [[0.9, 0.0, 0.0], [0.0; 3], [0.8, 0.0, 0.0]];
        let ev = run(cfg, 100, &pair);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].start_sample, 200);
    }

    #[test]
    fn non_finite_windows_are_dropped_and_counted() {
        let mut d = Detector::new(&labels(), vec![0.5; 3], DetectorConfig::default());
        let mut out = Vec::new();
        d.push(0, 100, &[f32::NAN, 0.9, 0.9], &mut out);
        d.push(100, 200, &[0.1, f32::INFINITY, 0.1], &mut out);
        d.finish(&mut out);
        assert!(out.is_empty());
        assert_eq!(d.stats().non_finite_windows, 2);
        assert_eq!(d.stats().windows, 2);
        assert_eq!(d.stats().detected_windows, 0);
    }

    #[test]
    fn windows_with_a_reported_species_over_its_threshold_are_counted() {
        let cfg = DetectorConfig {
            exclude: ["ccc".to_owned()].into(),
            ..DetectorConfig::default()
        };
        let mut d = Detector::new(&labels(), vec![0.5; 3], cfg);
        let mut out = Vec::new();
        // Two species in one window count once; an excluded one not at all.
        for (i, p) in [
            [0.9, 0.8, 0.0],
            [0.1, 0.1, 0.1],
            [0.0, 0.0, 0.9],
            [0.6, 0.0, 0.0],
        ]
        .iter()
        .enumerate()
        {
            d.push(i as u64 * 100, i as u64 * 100 + 100, p, &mut out);
        }
        assert_eq!(d.stats().detected_windows, 2);
    }
}
