//! Manifests: which stretch of which recording carries which species.
//!
//! CSV with the header `path,start_s,end_s,labels`: `labels` is a `;`-separated list of
//! species codes (empty = no call). Relative paths resolve against the manifest's folder,
//! so a dataset folder can be moved as a whole. The same format carries synthetic data,
//! BirdSet exports and a user's own recordings.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use warble_core::labels::{LabelTable, SpeciesCode};

/// One row.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// The recording (as written, or resolved against the manifest's folder when read).
    pub path: PathBuf,
    /// Start of the stretch, s.
    pub start_s: f64,
    /// End of the stretch, s.
    pub end_s: f64,
    /// Species codes present (empty = no call).
    pub labels: Vec<String>,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    /// Rows in file order.
    pub rows: Vec<ManifestRow>,
}

/// What is wrong with one row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowProblem {
    /// The row is not `path,start_s,end_s,labels`.
    #[error("malformed row: {0}")]
    Malformed(String),
    /// Start or end is negative, not a number, or end ≤ start.
    #[error("bad time span {start_s}..{end_s}: need 0 <= start < end")]
    BadSpan {
        /// Start as given.
        start_s: f64,
        /// End as given.
        end_s: f64,
    },
    /// A label code not in the label table.
    #[error("unknown label `{0}` (not in labels.csv)")]
    UnknownLabel(String),
    /// The recording does not exist.
    #[error("missing file {}", .0.display())]
    MissingFile(PathBuf),
}

/// A problem with its location.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}: {problem}", manifest.display())]
pub struct ManifestError {
    /// The manifest file.
    pub manifest: PathBuf,
    /// 1-based line number (1 is the header).
    pub line: u64,
    /// What is wrong.
    pub problem: RowProblem,
}

/// Rows skipped with `skip_bad`, each with its reason, so nothing is dropped silently.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Skipped {
    /// The skipped rows' problems.
    pub problems: Vec<ManifestError>,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct CsvRow {
    path: String,
    start_s: f64,
    end_s: f64,
    labels: String,
}

impl Manifest {
    /// Reads and checks a manifest: every row must parse, have `0 <= start < end`, name
    /// only labels of `labels`, and point to an existing file. With `skip_bad`, bad rows
    /// are left out and reported in [`Skipped`]; without, the first one is an error.
    ///
    /// # Errors
    /// The first bad row (or an unreadable manifest, reported as line 0).
    pub fn read(
        path: &Path,
        labels: &LabelTable,
        skip_bad: bool,
    ) -> Result<(Manifest, Skipped), ManifestError> {
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let fail = |line: u64, problem: RowProblem| ManifestError {
            manifest: path.to_owned(),
            line,
            problem,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| fail(0, RowProblem::Malformed(e.to_string())))?;
        let known: HashSet<&str> = labels.iter().map(|l| l.code.as_str()).collect();
        let (mut rows, mut skipped) = (Vec::new(), Skipped::default());
        for (i, record) in reader.deserialize::<CsvRow>().enumerate() {
            let line = i as u64 + 2;
            let checked = record
                .map_err(|e| RowProblem::Malformed(e.to_string()))
                .and_then(|row| check_row(row, &base, &known));
            match checked {
                Ok(row) => rows.push(row),
                Err(problem) if skip_bad => skipped.problems.push(fail(line, problem)),
                Err(problem) => return Err(fail(line, problem)),
            }
        }
        Ok((Manifest { rows }, skipped))
    }

    /// Writes the manifest (paths as stored in the rows).
    ///
    /// # Errors
    /// The CSV writer's error.
    pub fn write(&self, path: &Path) -> Result<(), csv::Error> {
        let mut writer = csv::Writer::from_path(path)?;
        for row in &self.rows {
            writer.serialize(CsvRow {
                path: row.path.to_string_lossy().replace('\\', "/"),
                start_s: (row.start_s * 1000.0).round() / 1000.0,
                end_s: (row.end_s * 1000.0).round() / 1000.0,
                labels: row.labels.join(";"),
            })?;
        }
        writer.flush()?;
        Ok(())
    }

    /// A row's multi-hot target over the classes of `labels`.
    pub fn multi_hot(row: &ManifestRow, labels: &LabelTable) -> Vec<f32> {
        let mut y = vec![0.0; labels.len()];
        for i in Self::label_indices(row, labels) {
            y[i] = 1.0;
        }
        y
    }

    /// Label indices of a row, in `labels` order.
    pub fn label_indices(row: &ManifestRow, labels: &LabelTable) -> Vec<usize> {
        row.labels
            .iter()
            .filter_map(|c| SpeciesCode::new(c.clone()).ok())
            .filter_map(|c| labels.index_of(&c))
            .collect()
    }
}

fn check_row(row: CsvRow, base: &Path, known: &HashSet<&str>) -> Result<ManifestRow, RowProblem> {
    let (start_s, end_s) = (row.start_s, row.end_s);
    if !(start_s.is_finite() && end_s.is_finite() && start_s >= 0.0 && end_s > start_s) {
        return Err(RowProblem::BadSpan { start_s, end_s });
    }
    let labels: Vec<String> = row
        .labels
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(unknown) = labels.iter().find(|c| !known.contains(c.as_str())) {
        return Err(RowProblem::UnknownLabel(unknown.clone()));
    }
    let path = base.join(&row.path);
    if !path.is_file() {
        return Err(RowProblem::MissingFile(path));
    }
    Ok(ManifestRow {
        path,
        start_s,
        end_s,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> LabelTable {
        LabelTable::from_reader("index,code,scientific,common\n0,a,A a,Aa\n1,b,B b,Bb\n".as_bytes())
            .unwrap()
    }

    fn setup(body: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.wav"), b"not checked here").unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(&path, format!("path,start_s,end_s,labels\n{body}")).unwrap();
        (dir, path)
    }

    #[test]
    fn good_rows_resolve_relative_paths() {
        let (dir, path) = setup("x.wav,0,5,a;b\nx.wav,5,10,\n");
        let (m, skipped) = Manifest::read(&path, &labels(), false).unwrap();
        assert!(skipped.problems.is_empty());
        assert_eq!(m.rows.len(), 2);
        assert_eq!(m.rows[0].path, dir.path().join("x.wav"));
        assert_eq!(m.rows[0].labels, vec!["a", "b"]);
        assert!(m.rows[1].labels.is_empty());
        assert_eq!(Manifest::label_indices(&m.rows[0], &labels()), vec![0, 1]);
    }

    #[test]
    fn each_bad_row_is_reported_with_file_and_line() {
        let cases = [
            ("x.wav,5,3,a\n", "m.csv:2: bad time span 5..3"),
            ("x.wav,-1,3,a\n", "m.csv:2: bad time span -1..3"),
            ("x.wav,0,5,zz\n", "m.csv:2: unknown label `zz`"),
            ("gone.wav,0,5,a\n", "m.csv:2: missing file"),
            ("x.wav,zero,5,a\n", "m.csv:2: malformed row"),
            ("x.wav,0,5,a\nx.wav,0,5\n", "m.csv:3: malformed row"),
        ];
        for (body, expected) in cases {
            let (_dir, path) = setup(body);
            let err = Manifest::read(&path, &labels(), false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{body:?}: {err}");
        }
    }

    #[test]
    fn skip_bad_counts_and_reports_every_skipped_row() {
        let (_dir, path) = setup("x.wav,0,5,a\nx.wav,5,3,a\ngone.wav,0,1,b\nx.wav,1,2,b\n");
        let (m, skipped) = Manifest::read(&path, &labels(), true).unwrap();
        assert_eq!(m.rows.len(), 2);
        let lines: Vec<u64> = skipped.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4]);
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.wav"), b"").unwrap();
        let m = Manifest {
            rows: vec![ManifestRow {
                path: PathBuf::from("x.wav"),
                start_s: 1.25,
                end_s: 2.5,
                labels: vec!["a".into(), "b".into()],
            }],
        };
        let path = dir.path().join("m.csv");
        m.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "path,start_s,end_s,labels\nx.wav,1.25,2.5,a;b\n");
        let (back, _) = Manifest::read(&path, &labels(), false).unwrap();
        assert_eq!(back.rows[0].labels, m.rows[0].labels);
    }
}
