//! Ground truth for a recording (`start_s,end_s,code` rows, seconds from its start), and
//! how detections score against it: a detection is true when it overlaps a call of its
//! species; a call is found when a detection overlaps it. One scoring for batch analysis
//! (`warble-agent analyze --truth`) and for a live subscriber (`warble-collect watch
//! --truth`).

use std::path::{Path, PathBuf};

/// Why a ground-truth file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    /// It could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A row is not `start_s,end_s,code` with `start_s <= end_s`.
    #[error("{path}:{line}: expected `start_s,end_s,code` with start_s <= end_s")]
    Row {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
    },
}

/// One call in the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Start, seconds from the recording's start.
    pub start_s: f64,
    /// End.
    pub end_s: f64,
    /// Species code.
    pub code: String,
    /// Whether a detection overlapped it.
    pub found: bool,
}

/// The calls of a recording and the detections scored against them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroundTruth {
    /// The calls, in file order.
    pub calls: Vec<Call>,
    /// Detections scored.
    pub detections: usize,
    /// Those that overlapped a call of their species.
    pub true_detections: usize,
}

impl GroundTruth {
    /// Reads a CSV file with a header line and `start_s,end_s,code` rows.
    ///
    /// # Errors
    /// [`TruthError`]: unreadable, or a row that is not one.
    pub fn read(path: &Path) -> Result<Self, TruthError> {
        let text = std::fs::read_to_string(path).map_err(|source| TruthError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut calls = Vec::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let parsed = (f.len() >= 3)
                .then(|| Some((f[0].parse().ok()?, f[1].parse().ok()?, f[2].to_owned())))
                .flatten()
                .filter(|(start_s, end_s, code): &(f64, f64, String)| {
                    start_s <= end_s && !code.is_empty()
                });
            let Some((start_s, end_s, code)) = parsed else {
                return Err(TruthError::Row {
                    path: path.to_owned(),
                    line: i + 1,
                });
            };
            calls.push(Call {
                start_s,
                end_s,
                code,
                found: false,
            });
        }
        Ok(Self {
            calls,
            ..Self::default()
        })
    }

    /// Scores one detection of `code` from `start_s` to `end_s`: marks the calls it
    /// overlaps and returns whether it overlapped one.
    pub fn score(&mut self, code: &str, start_s: f64, end_s: f64) -> bool {
        let mut hit = false;
        for call in &mut self.calls {
            if call.code == code && call.start_s < end_s && start_s < call.end_s {
                call.found = true;
                hit = true;
            }
        }
        self.detections += 1;
        self.true_detections += usize::from(hit);
        hit
    }

    /// Calls found.
    pub fn found(&self) -> usize {
        self.calls.iter().filter(|c| c.found).count()
    }

    /// True detections over detections scored (0 with none).
    pub fn precision(&self) -> f64 {
        self.true_detections as f64 / self.detections.max(1) as f64
    }

    /// Calls found over calls (0 with none).
    pub fn recall(&self) -> f64 {
        self.found() as f64 / self.calls.len().max(1) as f64
    }

    /// "precision 0.93 (14/15 detections match a call), recall 0.88 (15/17 calls found)".
    pub fn summary(&self) -> String {
        format!(
            "precision {:.2} ({}/{} detections match a call), recall {:.2} ({}/{} calls found)",
            self.precision(),
            self.true_detections,
            self.detections,
            self.recall(),
            self.found(),
            self.calls.len()
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn truth(text: &str) -> Result<GroundTruth, TruthError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        GroundTruth::read(&path)
    }

    #[test]
    fn detections_score_by_overlap_with_calls_of_their_species() {
        let mut t = truth("start_s,end_s,code\n3.0,6.0,a\n3.0,6.0,b\n10,12,a\n").unwrap();
        assert!(t.score("a", 5.0, 8.0), "overlaps a's first call");
        assert!(!t.score("b", 6.0, 9.0), "touching is not overlapping");
        assert!(!t.score("c", 3.0, 6.0), "no call of c");
        assert!(t.score("a", 4.0, 5.0), "the same call again");
        assert_eq!((t.detections, t.true_detections, t.found()), (4, 2, 1));
        assert_eq!(t.precision(), 0.5);
        assert!((t.recall() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            t.summary(),
            "precision 0.50 (2/4 detections match a call), recall 0.33 (1/3 calls found)"
        );
    }

    #[test]
    fn a_bad_row_is_named_by_its_line() {
        let err = truth("start_s,end_s,code\n1,2,a\n5,4,b\n").unwrap_err();
        assert!(
            err.to_string()
                .ends_with("t.csv:3: expected `start_s,end_s,code` with start_s <= end_s"),
            "{err}"
        );
        let err = truth("start_s,end_s,code\n1,x,a\n").unwrap_err();
        assert!(matches!(err, TruthError::Row { line: 2, .. }), "{err}");
        assert!(matches!(
            GroundTruth::read(Path::new("/nonexistent.csv")),
            Err(TruthError::Io { .. })
        ));
    }
}
