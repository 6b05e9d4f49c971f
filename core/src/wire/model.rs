//! The station's report on its model (`<prefix>/<station>/model`, retained, QoS 1): what
//! it runs, what it ran before, and where the last offered bundle stands. Published at
//! start and at every change, so an operator (and `warble-export rollout`) sees each
//! station's state without asking.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an offered bundle stands on a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// The bundle is arriving.
    Receiving,
    /// Checking its offer, signature, hashes and fit to the station.
    Verifying,
    /// Written to the inactive slot, self-testing in the engine.
    Testing,
    /// Running on live audio; the previous model runs beside it for comparison.
    Probation,
    /// The station runs it for good (also the state of a station's first model).
    Committed,
    /// It failed probation: the previous model runs again.
    RolledBack,
    /// Refused before it ran (see `reason`); the active model never stopped.
    Rejected,
}

/// A model as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelVersion {
    /// The bundle's model id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of the bundle file.
    pub sha256: String,
}

/// The bundle a report is about, as far as it is known (a corrupt one has no id).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Candidate {
    /// SHA-256 of the bundle, as its offer names it.
    pub sha256: String,
    /// Its model id, once its manifest was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its version, once its manifest was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The message on `<prefix>/<station>/model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelReport {
    /// Where the last offered bundle stands (`committed` with no `candidate`: the station
    /// runs its model and nothing was offered since it started).
    pub state: ModelState,
    /// The model producing detections now.
    pub active: ModelVersion,
    /// The model before it, kept for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ModelVersion>,
    /// The bundle the state is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Candidate>,
    /// Why: a rejection's or rollback's cause, or a note on the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the state began.
    pub since: DateTime<Utc>,
    /// When probation ends (in `probation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation_until: Option<DateTime<Utc>>,
}

impl ModelReport {
    /// The JSON payload.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_as_written() {
        let report = ModelReport {
            state: ModelState::RolledBack,
            active: ModelVersion {
                id: "warble-demo".into(),
                version: "0.1.0".into(),
                sha256: "ab".repeat(32),
            },
            previous: None,
            candidate: Some(Candidate {
                sha256: "cd".repeat(32),
                id: Some("warble-demo".into()),
                version: Some("0.2.0".into()),
            }),
            reason: Some("NaN scores on live audio".into()),
            since: "2026-12-02T15:00:00Z".parse().unwrap(),
            probation_until: None,
        };
        let json = report.to_json();
        assert!(json.contains(r#""state":"rolled_back""#), "{json}");
        assert!(!json.contains("previous"), "absent, not null: {json}");
        assert_eq!(serde_json::from_str::<ModelReport>(&json).unwrap(), report);
    }
}
