//! The label table: which output index is which species.
//!
//! Stored as CSV with the header `index,code,scientific,common`, one row per model output,
//! indices `0..n` in order. The same file travels in checkpoints and bundles.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The longest species code, in bytes.
pub const MAX_CODE_BYTES: usize = 64;

/// A species code (e.g. eBird's `eurrob1`): 1–64 bytes, no whitespace or control
/// characters, and none of `,` `;` `"` `/` `\` so it can sit in CSV cells,
/// `;`-separated label lists and file names unquoted.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct SpeciesCode(String);

impl SpeciesCode {
    /// Validates a code.
    ///
    /// # Errors
    /// A message saying which character is not allowed.
    pub fn new(code: impl Into<String>) -> Result<Self, String> {
        let code = code.into();
        if code.is_empty() {
            return Err("species code is empty".to_owned());
        }
        if code.len() > MAX_CODE_BYTES {
            return Err(format!(
                "species code of {} bytes, longer than {MAX_CODE_BYTES}",
                code.len()
            ));
        }
        // Codes name clip files and travel in CSV rows: no separators, quotes, path
        // separators or control characters.
        if let Some(c) = code.chars().find(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, ',' | ';' | '"' | '/' | '\\')
        }) {
            return Err(format!(
                "species code `{}` contains {c:?}",
                code.escape_debug()
            ));
        }
        Ok(Self(code))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SpeciesCode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<SpeciesCode> for String {
    fn from(code: SpeciesCode) -> Self {
        code.0
    }
}

impl fmt::Display for SpeciesCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One row of the label table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Model output index.
    pub index: usize,
    /// Species code.
    pub code: SpeciesCode,
    /// Scientific name.
    pub scientific: String,
    /// Common name.
    pub common: String,
}

/// Problems reading or writing a label table.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file could not be read or written.
    #[error("labels {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A row could not be parsed.
    #[error("labels{}line {line}: {reason}", location(.path))]
    Row {
        /// The file, if reading from one.
        path: Option<PathBuf>,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The table is empty.
    #[error("labels{}no rows", location(.path))]
    Empty {
        /// The file, if reading from one.
        path: Option<PathBuf>,
    },
    /// CSV writing failed.
    #[error("writing labels: {0}")]
    Write(String),
}

fn location(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" {}: ", p.display()),
        None => ": ".to_owned(),
    }
}

/// All labels of a model, in output order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelTable {
    labels: Vec<Label>,
    by_code: HashMap<SpeciesCode, usize>,
}

impl LabelTable {
    /// Builds a table from `(code, scientific, common)` rows; indices follow the order.
    ///
    /// # Errors
    /// [`LabelsError::Row`] for a duplicate code; [`LabelsError::Empty`] for no rows.
    pub fn new(rows: Vec<(SpeciesCode, String, String)>) -> Result<Self, LabelsError> {
        let labels = rows
            .into_iter()
            .enumerate()
            .map(|(index, (code, scientific, common))| Label {
                index,
                code,
                scientific,
                common,
            })
            .collect();
        Self::from_labels(labels, None)
    }

    fn from_labels(labels: Vec<Label>, path: Option<PathBuf>) -> Result<Self, LabelsError> {
        if labels.is_empty() {
            return Err(LabelsError::Empty { path });
        }
        let mut by_code = HashMap::with_capacity(labels.len());
        for (i, label) in labels.iter().enumerate() {
            let line = i as u64 + 2;
            if label.index != i {
                return Err(LabelsError::Row {
                    path,
                    line,
                    reason: format!("index {} out of order (expected {i})", label.index),
                });
            }
            if let Some(first) = by_code.insert(label.code.clone(), i) {
                return Err(LabelsError::Row {
                    path,
                    line,
                    reason: format!("code `{}` repeats index {first}", label.code),
                });
            }
        }
        Ok(Self { labels, by_code })
    }

    /// Reads a table from CSV text.
    ///
    /// # Errors
    /// [`LabelsError::Row`] with the line of the first bad row.
    pub fn from_reader(reader: impl Read) -> Result<Self, LabelsError> {
        Self::read_csv(reader, None)
    }

    /// Reads a table from a CSV file.
    ///
    /// # Errors
    /// [`LabelsError::Io`] if the file cannot be opened; otherwise as [`Self::from_reader`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self, LabelsError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| LabelsError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::read_csv(file, Some(path.to_owned()))
    }

    fn read_csv(reader: impl Read, path: Option<PathBuf>) -> Result<Self, LabelsError> {
        let mut csv = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(reader);
        let mut labels = Vec::new();
        for row in csv.deserialize::<Label>() {
            let row = row.map_err(|e| LabelsError::Row {
                path: path.clone(),
                line: e.position().map_or(0, |p| p.line()),
                reason: match e.kind() {
                    csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
                    _ => e.to_string(),
                },
            })?;
            labels.push(row);
        }
        Self::from_labels(labels, path)
    }

    /// Writes the table as CSV.
    ///
    /// # Errors
    /// [`LabelsError::Write`] if the writer fails.
    pub fn write_to(&self, writer: impl Write) -> Result<(), LabelsError> {
        let mut csv = csv::Writer::from_writer(writer);
        for label in &self.labels {
            csv.serialize(label)
                .map_err(|e| LabelsError::Write(e.to_string()))?;
        }
        csv.flush().map_err(|e| LabelsError::Write(e.to_string()))
    }

    /// Writes the table to a CSV file.
    ///
    /// # Errors
    /// [`LabelsError::Io`] if the file cannot be created; [`LabelsError::Write`] otherwise.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), LabelsError> {
        let path = path.as_ref();
        let file = std::fs::File::create(path).map_err(|source| LabelsError::Io {
            path: path.to_owned(),
            source,
        })?;
        self.write_to(file)
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false for a constructed table (empty tables are rejected).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label at an output index.
    pub fn get(&self, index: usize) -> Option<&Label> {
        self.labels.get(index)
    }

    /// The output index of a species code.
    pub fn index_of(&self, code: &SpeciesCode) -> Option<usize> {
        self.by_code.get(code).copied()
    }

    /// All labels in output order.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.labels.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "index,code,scientific,common\n\
        0,eurrob1,Erithacus rubecula,European Robin\n\
        1,comchi1,Fringilla coelebs,\"Chaffinch, Common\"\n";

    #[test]
    fn reads_and_round_trips() {
        let table = LabelTable::from_reader(CSV.as_bytes()).unwrap();
        assert_eq!(table.len(), 2);
        let code = SpeciesCode::new("comchi1").unwrap();
        assert_eq!(table.index_of(&code), Some(1));
        assert_eq!(table.get(1).unwrap().common, "Chaffinch, Common");
        let mut out = Vec::new();
        table.write_to(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), CSV);
    }

    #[test]
    fn bad_rows_name_their_line() {
        let dup = "index,code,scientific,common\n0,a,A,a\n1,a,B,b\n";
        let err = LabelTable::from_reader(dup.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("repeats"), "{err}");
        let gap = "index,code,scientific,common\n0,a,A,a\n2,b,B,b\n";
        let err = LabelTable::from_reader(gap.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("out of order"),
            "{err}"
        );
        let bad_code = "index,code,scientific,common\n0,a b,A,a\n";
        let err = LabelTable::from_reader(bad_code.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("contains"), "{err}");
        let empty = "index,code,scientific,common\n";
        assert!(matches!(
            LabelTable::from_reader(empty.as_bytes()),
            Err(LabelsError::Empty { .. })
        ));
    }

    #[test]
    fn codes_reject_separators() {
        assert!(SpeciesCode::new("a;b").is_err());
        assert!(SpeciesCode::new("").is_err());
        assert!(SpeciesCode::new("greti1").is_ok());
        for bad in ["../x", "a/b", "a\\b", "a\0b", "a\u{1b}b", &"c".repeat(65)] {
            assert!(SpeciesCode::new(bad).is_err(), "{bad:?}");
        }
        assert!(SpeciesCode::new("c".repeat(64)).is_ok());
    }
}
