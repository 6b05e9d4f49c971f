//! Sample detection events for tests and benches.

use warble_core::event::{DETECTION_SCHEMA, Detection, ModelRef};
use warble_core::labels::LabelTable;

/// Event `seq` of station `wetland-03`, boot 7: a European Robin, 3 s, confidence 0.87.
///
/// # Panics
/// Never (its constants are valid).
#[allow(clippy::expect_used, reason = "constants")]
pub fn sample_event(seq: u64) -> Detection {
    let start = chrono::DateTime::parse_from_rfc3339("2026-05-01T04:30:00Z")
        .expect("a valid time")
        .to_utc();
    Detection {
        schema: DETECTION_SCHEMA.into(),
        id: Detection::make_id("wetland-03", 7, seq),
        station: "wetland-03".into(),
        boot: 7,
        seq,
        start,
        end: start + chrono::Duration::seconds(3),
        start_sample: seq * 96_000,
        end_sample: seq * 96_000 + 96_000,
        code: warble_core::SpeciesCode::new("eurrob1").expect("a valid code"),
        scientific: "Erithacus rubecula".into(),
        common: "European Robin".into(),
        confidence: 0.87,
        model: ModelRef {
            id: "warble-demo".into(),
            version: "0.1.0".into(),
        },
        location: None,
        clip: None,
        historical: false,
        revision: 0,
        is_final: true,
    }
}

/// The label table of [`sample_event`]: one class, the European Robin (`eurrob1`).
///
/// # Panics
/// Never (its constants are valid).
#[allow(clippy::expect_used, reason = "constants")]
pub fn sample_labels() -> LabelTable {
    LabelTable::new(vec![(
        warble_core::SpeciesCode::new("eurrob1").expect("a valid code"),
        "Erithacus rubecula".into(),
        "European Robin".into(),
    )])
    .expect("a valid table")
}
