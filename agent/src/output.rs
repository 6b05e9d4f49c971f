//! Detection files: JSON Lines of `warble.detection/1` events, a plain CSV, a Raven
//! selection table, and BirdNET-Analyzer's CSV, so existing tools read Warble's output.

use std::io::{self, Write};

use warble_core::LabelTable;
use warble_core::event::{DETECTION_SCHEMA, Detection, ModelRef};

use crate::detect::SpeciesEvent;
use crate::timeline::Timeline;

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One `warble.detection/1` JSON object per line.
    Jsonl,
    /// `file,start_s,end_s,code,scientific,common,confidence`.
    Csv,
    /// Raven Pro selection table (tab-separated).
    Raven,
    /// BirdNET-Analyzer CSV (`Start (s),End (s),Scientific name,Common name,Confidence,File`).
    Birdnet,
}

/// One event with everything a row needs.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    /// Source file as given.
    pub file: &'a str,
    /// The event.
    pub event: &'a SpeciesEvent,
    /// Sample rate of the offsets.
    pub rate_hz: u32,
    /// The clip planned for it (a file name in the station's clip folder).
    pub clip: Option<&'a str>,
}

/// Mints `warble.detection/1` events: ids `station:boot:seq` with `seq` from 0, so a
/// station's events never share an id within a boot.
#[derive(Debug)]
pub struct Minter {
    station: String,
    boot: u64,
    seq: u64,
    model: ModelRef,
}

impl Minter {
    /// Events of `station` in `boot`, made by `model`.
    pub fn new(station: &str, boot: u64, model: ModelRef) -> Self {
        Self {
            station: station.to_owned(),
            boot,
            seq: 0,
            model,
        }
    }

    /// Events from now on are made by `model` (a model update switched at a window
    /// boundary). The sequence goes on: a subscriber sees the switch as the first event
    /// with the new model, with no hole in the boot's seqs.
    pub fn switch_model(&mut self, model: ModelRef) {
        self.model = model;
    }

    /// The model events are minted with now.
    pub fn model(&self) -> &ModelRef {
        &self.model
    }

    /// The event of a row, with the next id; `timeline` gives the wall-clock times of the
    /// stream's samples. `None` for a class without a label (nothing to report).
    pub fn mint(
        &mut self,
        row: &Row<'_>,
        labels: &LabelTable,
        timeline: &Timeline,
    ) -> Option<Detection> {
        let e = row.event;
        let label = labels.get(e.class)?;
        let event = Detection {
            schema: DETECTION_SCHEMA.into(),
            id: Detection::make_id(&self.station, self.boot, self.seq),
            station: self.station.clone(),
            boot: self.boot,
            seq: self.seq,
            start: timeline.time_at(e.start_sample as f64),
            end: timeline.time_at(e.end_sample as f64),
            start_sample: e.start_sample,
            end_sample: e.end_sample,
            code: label.code.clone(),
            scientific: label.scientific.clone(),
            common: label.common.clone(),
            confidence: e.confidence.clamp(0.0, 1.0),
            model: self.model.clone(),
            location: None,
            clip: row.clip.map(str::to_owned),
            historical: false,
            revision: 0,
            is_final: e.closed,
        };
        self.seq += 1;
        Some(event)
    }

    /// The next revision of `reported`, an event reported before, from the row of its
    /// closing: its final span, peak confidence and clip, under the same id.
    pub fn revise(&self, reported: &Detection, row: &Row<'_>, timeline: &Timeline) -> Detection {
        let e = row.event;
        Detection {
            end: timeline.time_at(e.end_sample as f64).max(reported.start),
            end_sample: e.end_sample.max(reported.start_sample),
            confidence: e.confidence.clamp(0.0, 1.0),
            clip: row.clip.map(str::to_owned),
            historical: false,
            revision: reported.revision.saturating_add(1),
            is_final: e.closed,
            ..reported.clone()
        }
    }
}

/// Writes rows in one format; `header` once at the start.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    format: Format,
    selection: u64,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl<W: Write> Writer<W> {
    /// A writer of `format` rows.
    ///
    /// # Errors
    /// Writing the header.
    pub fn new(mut out: W, format: Format) -> io::Result<Self> {
        match format {
            Format::Jsonl => {}
            Format::Csv => writeln!(out, "file,start_s,end_s,code,scientific,common,confidence")?,
            Format::Raven => writeln!(
                out,
                "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t\
                 High Freq (Hz)\tSpecies Code\tCommon Name\tConfidence\tBegin Path"
            )?,
            Format::Birdnet => writeln!(
                out,
                "Start (s),End (s),Scientific name,Common name,Confidence,File"
            )?,
        }
        Ok(Self {
            out,
            format,
            selection: 0,
        })
    }

    /// A writer of `format` rows continuing a file that holds its header and `rows` rows
    /// (Raven's selection numbers go on from there).
    pub fn continuing(out: W, format: Format, rows: u64) -> Self {
        Self {
            out,
            format,
            selection: rows,
        }
    }

    /// Flushes what is written so far.
    ///
    /// # Errors
    /// Writing.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes one row; JSON Lines write `event` (the row's minted event, `None` for a
    /// class without a label, which writes nothing), the tables the row itself.
    ///
    /// # Errors
    /// Writing.
    pub fn write(
        &mut self,
        row: &Row<'_>,
        labels: &LabelTable,
        event: Option<&Detection>,
    ) -> io::Result<()> {
        let e = row.event;
        let rate = f64::from(row.rate_hz);
        let (start_s, end_s) = (e.start_sample as f64 / rate, e.end_sample as f64 / rate);
        let (code, scientific, common) = labels
            .get(e.class)
            .map(|l| (l.code.as_str(), l.scientific.as_str(), l.common.as_str()))
            .unwrap_or(("?", "?", "?"));
        match self.format {
            Format::Jsonl => {
                if let Some(event) = event {
                    serde_json::to_writer(&mut self.out, event)?;
                    writeln!(self.out)?;
                }
            }
            Format::Csv => writeln!(
                self.out,
                "{},{start_s:.3},{end_s:.3},{},{},{},{:.4}",
                csv_field(row.file),
                csv_field(code),
                csv_field(scientific),
                csv_field(common),
                e.confidence
            )?,
            Format::Raven => {
                self.selection += 1;
                writeln!(
                    self.out,
                    "{}\tSpectrogram 1\t1\t{start_s:.3}\t{end_s:.3}\t0\t{}\t{code}\t{common}\t{:.4}\t{}",
                    self.selection,
                    row.rate_hz / 2,
                    e.confidence,
                    row.file
                )?
            }
            Format::Birdnet => writeln!(
                self.out,
                "{start_s:.1},{end_s:.1},{},{},{:.4},{}",
                csv_field(scientific),
                csv_field(common),
                e.confidence,
                csv_field(row.file)
            )?,
        }
        Ok(())
    }

    /// Flushes and returns the sink.
    ///
    /// # Errors
    /// Flushing.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use warble_tests::events::sample_labels as labels;

    fn write(format: Format) -> String {
        let event = SpeciesEvent {
            class: 0,
            start_sample: 32_000,
            end_sample: 128_000,
            confidence: 0.875,
            windows: 2,
            closed: true,
        };
        let model = ModelRef {
            id: "demo".into(),
            version: "0.1.0".into(),
        };
        let mut w = Writer::new(Vec::new(), format).unwrap();
        let mut minter = Minter::new("st-1", 3, model);
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-05-01T04:00:00Z")
            .unwrap()
            .to_utc();
        let t0 = Timeline::starting_at(t0, 32_000);
        for _ in 0..2 {
            let row = Row {
                file: "a,b.flac",
                event: &event,
                rate_hz: 32_000,
                clip: None,
            };
            let event = minter.mint(&row, &labels(), &t0);
            w.write(&row, &labels(), event.as_ref()).unwrap();
        }
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    #[test]
    fn after_a_model_switch_events_name_the_new_model_and_seqs_go_on() {
        let event = SpeciesEvent {
            class: 0,
            start_sample: 0,
            end_sample: 96_000,
            confidence: 0.9,
            windows: 1,
            closed: true,
        };
        let row = Row {
            file: "live",
            event: &event,
            rate_hz: 32_000,
            clip: None,
        };
        let model = |version: &str| ModelRef {
            id: "demo".into(),
            version: version.into(),
        };
        let t0 = Timeline::starting_at(chrono::Utc::now(), 32_000);
        let mut minter = Minter::new("st-1", 3, model("0.1.0"));
        let before = minter.mint(&row, &labels(), &t0).unwrap();
        minter.switch_model(model("0.2.0"));
        let after = minter.mint(&row, &labels(), &t0).unwrap();
        assert_eq!((before.seq, before.model.version.as_str()), (0, "0.1.0"));
        assert_eq!((after.seq, after.model.version.as_str()), (1, "0.2.0"));
    }

    #[test]
    fn jsonl_events_are_valid_detections_with_consecutive_ids() {
        let text = write(Format::Jsonl);
        let events: Vec<Detection> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id, "st-1:3:0");
        assert_eq!(events[1].id, "st-1:3:1");
        events[0].validate().unwrap();
        assert!(
            text.contains("\"start\":\"2026-05-01T04:00:01.000Z\""),
            "{text}"
        );
        assert!(
            text.contains("\"end\":\"2026-05-01T04:00:04.000Z\""),
            "{text}"
        );
    }

    #[test]
    fn table_formats_have_their_headers_and_quoting() {
        let csv = write(Format::Csv);
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "\"a,b.flac\",1.000,4.000,eurrob1,Erithacus rubecula,European Robin,0.8750"
        );
        let raven = write(Format::Raven);
        assert!(raven.starts_with("Selection\tView\tChannel\tBegin Time (s)"));
        assert!(
            raven
                .lines()
                .nth(2)
                .unwrap()
                .starts_with("2\tSpectrogram 1\t1\t1.000\t4.000\t0\t16000\teurrob1")
        );
        let birdnet = write(Format::Birdnet);
        assert_eq!(
            birdnet.lines().nth(1).unwrap(),
            "1.0,4.0,Erithacus rubecula,European Robin,0.8750,\"a,b.flac\""
        );
    }
}
