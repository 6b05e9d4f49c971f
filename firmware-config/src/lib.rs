//! Warble station configuration: the TOML file a field technician writes, checked at the
//! desk with every problem reported at once (file, line, column, field path, what is
//! allowed, near-miss suggestions), and turned into the typed [`StationConfig`] that the
//! agent runs on.
//!
//! - [`raw`]: serde structs that mirror the file (also the JSON Schema's source);
//! - [`document`]: reading TOML while collecting every problem;
//! - [`station`]: validation into [`StationConfig`] (units in types, cross-field checks);
//! - [`schedule`], [`broker`]: listening windows (sunrise/sunset) and broker URLs;
//! - [`fleet`]: fleet defaults, groups and an inventory rendered per station, with
//!   [`install`] (where each file goes, `install.sh`) and [`mosquitto`] (the broker side).
#![deny(missing_docs)]

pub mod broker;
pub mod document;
pub mod fleet;
pub mod install;
pub mod logging;
pub mod mosquitto;
pub mod problem;
pub mod raw;
pub mod schedule;
pub mod station;

use std::path::Path;

pub use problem::{Problem, Problems};
pub use raw::RawStationConfig;
pub use station::StationConfig;

/// Reads and validates a station file.
///
/// # Errors
/// Every problem in the file (an unreadable file is one problem).
pub fn load(file: &Path) -> Result<StationConfig, Problems> {
    let text = warble_core::files::read_small_text(file).map_err(|e| {
        Problems(vec![problem::problem(
            file,
            None,
            "",
            format!("cannot read the file: {e}"),
        )])
    })?;
    load_str(file, &text)
}

/// Validates station-file `text` that came from `file` (relative paths inside it are
/// resolved against the file's folder).
///
/// # Errors
/// Every problem, ordered by position.
pub fn load_str(file: &Path, text: &str) -> Result<StationConfig, Problems> {
    let doc = document::Document::parse(file, text).map_err(Problems)?;
    let mut problems = doc.missing_required(file, &schema());
    let (raw, found) = doc.deserialize::<RawStationConfig>(file);
    for f in found {
        if !problems.iter().any(|p| p.path == f.path) {
            problems.push(f);
        }
    }
    if let Some(raw) = raw {
        let base = file.parent().unwrap_or(Path::new("."));
        match station::check(&raw, base) {
            Ok(config) => return Ok(config),
            Err(findings) => problems.extend(findings.0.into_iter().map(
                |(path, message, suggestion)| Problem {
                    file: file.to_owned(),
                    at: doc.position(&path),
                    path,
                    message,
                    suggestion,
                },
            )),
        }
    }
    problems.sort_by_key(|p| p.at.unwrap_or((usize::MAX, 0)));
    Err(Problems(problems))
}

/// The JSON Schema of the station file, for editors.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawStationConfig)).unwrap_or_default()
}
