//! A configuration problem: where it is (file, line, column, field path), what is wrong,
//! what is allowed, and a suggestion when a name is a near miss.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column of the offending key or value, when known.
    pub at: Option<(usize, usize)>,
    /// Dotted field path, e.g. `mqtt.heartbeat_s` (empty for the whole file).
    pub path: String,
    /// What is wrong, with the bad value.
    pub message: String,
    /// A near-miss suggestion, e.g. "did you mean `threshold`?".
    pub suggestion: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": {}: {}", self.path, self.message)?;
        }
        if let Some(s) = &self.suggestion {
            write!(f, " ({s})")?;
        }
        Ok(())
    }
}

/// Every problem found in one file, in the order of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// 1-based line and column of byte `offset` in `text` (columns count characters).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The closest of `known` to `name`, if close enough to be a typo.
pub fn near_miss<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|&(d, k)| {
            let typo = d <= (k.len().max(name.len()) / 3).max(1) + 1 && d < k.len();
            // `loging` for `log`, `heartbeat` for `heartbeat_s`.
            let stem =
                k.len() >= 3 && (name.starts_with(k) || k.starts_with(name)) && name.len() >= 3;
            d > 0 && (typo || stem)
        })
        .min()
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

pub(crate) fn problem(
    file: &Path,
    at: Option<(usize, usize)>,
    path: &str,
    message: impl Into<String>,
) -> Problem {
    Problem {
        file: file.to_owned(),
        at,
        path: path.to_owned(),
        message: message.into(),
        suggestion: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, text.find('=').unwrap()), (1, 3));
        assert_eq!(line_col(text, text.rfind('=').unwrap()), (2, 4));
    }

    #[test]
    fn near_misses_are_suggested_and_strangers_are_not() {
        let known = ["threshold", "thresholds", "sensitivity", "include"];
        assert_eq!(
            near_miss("treshold", known).as_deref(),
            Some("did you mean `threshold`?")
        );
        assert_eq!(
            near_miss("sensitivty", known).as_deref(),
            Some("did you mean `sensitivity`?")
        );
        assert_eq!(near_miss("colour", known), None);
        assert_eq!(near_miss("x", ["y"]), None);
        assert_eq!(
            near_miss("loging", ["log", "mqtt"]).as_deref(),
            Some("did you mean `log`?")
        );
    }
}
