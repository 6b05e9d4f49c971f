//! A station's detection files (`output.dir`, `output.formats`): one file per day and
//! format, `<dir>/<YYYY-MM-DD>.<ext>` (`.jsonl`, `.csv`, `.raven.txt`, `.birdnet.csv`),
//! the day a detection started on in the station's time zone (`station.timezone`, else
//! the recorder's). A file a restart finds is continued, not overwritten, and gets no
//! second header. In the tables a detection's times are seconds since that day's local
//! midnight and the `file` column holds the date, so a day's table lines up with a day of
//! audio; the JSON Lines hold the events as published.
//!
//! The files are written after the outbox commit, like every other output: a failing
//! disk costs rows of a file, never a detection.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufWriter};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use warble_core::event::Detection;
use warble_core::labels::LabelTable;

use crate::detect::SpeciesEvent;
use crate::output::{Format, Row, Writer};

/// The zone whose days the files follow.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    /// An IANA zone.
    Named(chrono_tz::Tz),
    /// The recorder's own.
    Local,
}

impl Zone {
    /// The local date of `t`, and that date's first instant in UTC.
    fn day_of(self, t: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
        fn split<Z: TimeZone>(zone: &Z, t: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
            let day = t.with_timezone(zone).date_naive();
            // Midnight may not exist (a DST change at 00:00): the day's first instant.
            let start = day
                .and_hms_opt(0, 0, 0)
                .and_then(|m| zone.from_local_datetime(&m).earliest())
                .map_or(t, |m| m.with_timezone(&Utc));
            (day, start)
        }
        match self {
            Self::Named(tz) => split(&tz, t),
            Self::Local => split(&chrono::Local, t),
        }
    }
}

/// The file name's ending of each format.
pub fn extension(format: Format) -> &'static str {
    match format {
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
        Format::Raven => "raven.txt",
        Format::Birdnet => "birdnet.csv",
    }
}

/// The day files being written.
#[derive(Debug)]
pub struct DailyFiles {
    dir: PathBuf,
    formats: Vec<Format>,
    zone: Zone,
    rate_hz: u32,
    day: Option<(NaiveDate, DateTime<Utc>)>,
    open: Vec<Writer<BufWriter<File>>>,
}

impl DailyFiles {
    /// Files of `formats` in `dir` (created), days in `zone`; `rate_hz` is the model's rate
    /// (the tables' sample offsets and Raven's frequency range).
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn new(dir: &Path, formats: &[Format], zone: Zone, rate_hz: u32) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            formats: formats.to_vec(),
            zone,
            rate_hz,
            day: None,
            open: Vec::new(),
        })
    }

    /// The file of `format` for `day`.
    pub fn path(&self, day: NaiveDate, format: Format) -> PathBuf {
        self.dir
            .join(format!("{}.{}", day.format("%Y-%m-%d"), extension(format)))
    }

    fn open_day(&mut self, day: NaiveDate) -> io::Result<()> {
        self.flush()?;
        self.open.clear();
        for &format in &self.formats {
            let path = self.path(day, format);
            let rows = match File::open(&path) {
                Ok(f) => Some(io::BufReader::new(f).lines().count() as u64),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            let out = BufWriter::new(file);
            self.open.push(match rows {
                // A header line, then one row per selection.
                Some(lines) if lines > 0 => Writer::continuing(out, format, lines - 1),
                _ => Writer::new(out, format)?,
            });
        }
        Ok(())
    }

    /// Writes `event` (of output `class`) to every format's file of its day.
    ///
    /// # Errors
    /// Opening or writing a file.
    pub fn write(
        &mut self,
        event: &Detection,
        class: usize,
        labels: &LabelTable,
    ) -> io::Result<()> {
        let (day, midnight) = self.zone.day_of(event.start);
        if self.day.is_none_or(|(d, _)| d != day) {
            self.day = None;
            self.open_day(day)?;
            self.day = Some((day, midnight));
        }
        let offset = |t: DateTime<Utc>| {
            let s = (t - midnight).as_seconds_f64().max(0.0);
            (s * f64::from(self.rate_hz)).round() as u64
        };
        let span = SpeciesEvent {
            class,
            start_sample: offset(event.start),
            end_sample: offset(event.end),
            confidence: event.confidence,
            windows: 1,
            closed: true,
        };
        let date = day.format("%Y-%m-%d").to_string();
        let row = Row {
            file: &date,
            event: &span,
            rate_hz: self.rate_hz,
            clip: event.clip.as_deref(),
        };
        for w in &mut self.open {
            w.write(&row, labels, Some(event))?;
            w.flush()?;
        }
        Ok(())
    }

    /// Flushes the open files.
    ///
    /// # Errors
    /// Writing.
    pub fn flush(&mut self) -> io::Result<()> {
        self.open.iter_mut().try_for_each(Writer::flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use warble_tests::events::sample_labels as labels;

    /// A robin of 3 s from `start`.
    fn event(seq: u64, start: &str) -> Detection {
        let mut e = warble_tests::events::sample_event(seq);
        e.start = DateTime::parse_from_rfc3339(start).unwrap().to_utc();
        e.end = e.start + chrono::Duration::seconds(3);
        e
    }

    #[test]
    fn each_local_day_has_its_files_with_times_from_its_midnight() {
        let dir = tempfile::tempdir().unwrap();
        let zone = Zone::Named(chrono_tz::Europe::Berlin);
        let formats = [Format::Jsonl, Format::Csv, Format::Raven];
        let mut files = DailyFiles::new(dir.path(), &formats, zone, 32_000).unwrap();
        // 22:30 UTC is 23:30 in Berlin (winter); 23:30 UTC is already the next day there.
        files
            .write(&event(0, "2026-12-01T22:30:00Z"), 0, &labels())
            .unwrap();
        files
            .write(&event(1, "2026-12-01T23:30:00Z"), 0, &labels())
            .unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        let first = read("2026-12-01.csv");
        assert_eq!(first.lines().count(), 2, "{first}");
        assert!(
            first.contains("2026-12-01,84600.000,84603.000,eurrob1"),
            "{first}"
        );
        let second = read("2026-12-02.csv");
        assert!(
            second.contains("2026-12-02,1800.000,1803.000,eurrob1"),
            "{second}"
        );
        assert!(read("2026-12-02.jsonl").contains("\"id\":\"wetland-03:7:1\""));
        assert!(read("2026-12-02.raven.txt").starts_with("Selection\t"));

        // A restart the same day continues the files: one header, selections numbered on.
        drop(files);
        let mut files = DailyFiles::new(dir.path(), &formats, zone, 32_000).unwrap();
        files
            .write(&event(2, "2026-12-02T08:00:00Z"), 0, &labels())
            .unwrap();
        let csv = read("2026-12-02.csv");
        assert_eq!(csv.matches("file,start_s").count(), 1, "{csv}");
        assert_eq!(csv.lines().count(), 3, "{csv}");
        let raven = read("2026-12-02.raven.txt");
        let last = raven.lines().last().unwrap();
        assert!(last.starts_with("2\t"), "{raven}");
    }
}
