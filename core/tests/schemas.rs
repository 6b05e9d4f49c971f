//! The JSON Schemas of the wire messages, published in `docs/schemas/`, are the ones the
//! types generate: a change to a message that the docs do not show fails here. Run with
//! `WARBLE_BLESS=1` to write them anew (and review the diff).

use std::path::PathBuf;

use warble_core::bundle::offer::Offer;
use warble_core::event::Detection;
use warble_core::wire::{Heartbeat, ModelReport, ReplayRequest, Status};

fn schemas() -> Vec<(&'static str, schemars::Schema)> {
    vec![
        ("detection.json", schemars::schema_for!(Detection)),
        ("heartbeat.json", schemars::schema_for!(Heartbeat)),
        ("status.json", schemars::schema_for!(Status)),
        ("replay.json", schemars::schema_for!(ReplayRequest)),
        ("model.json", schemars::schema_for!(ModelReport)),
        ("offer.json", schemars::schema_for!(Offer)),
    ]
}

#[test]
fn published_schemas_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas");
    let bless = std::env::var_os("WARBLE_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, schema) in schemas() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date (WARBLE_BLESS=1 cargo test -p warble-core --test schemas): {stale:?}"
    );
}

#[test]
fn the_heartbeat_schema_names_every_field_sent() {
    // Every field of the schema is a field the type sends, and no other.
    let schema = serde_json::to_value(schemars::schema_for!(Heartbeat)).unwrap();
    let props: std::collections::BTreeSet<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let sent = serde_json::to_value(Heartbeat::default()).unwrap();
    let fields: std::collections::BTreeSet<String> =
        sent.as_object().unwrap().keys().cloned().collect();
    assert_eq!(props, fields);
}

/// Every example in `docs/subscribers.md` (a ```json block under `<!-- example: KIND -->`)
/// reads as its message type and writes back unchanged: no field is misspelt, missing
/// or stale.
#[test]
fn the_subscribers_guide_shows_real_messages() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/subscribers.md");
    let text = std::fs::read_to_string(&path).unwrap();
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
        json: &str,
    ) -> serde_json::Value {
        let message: T = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
        // Through text: an f32 written as text is its shortest form, as a station sends it.
        serde_json::from_str(&serde_json::to_string(&message).unwrap()).unwrap()
    }
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("<!-- example: ") {
        rest = &rest[at + "<!-- example: ".len()..];
        let (kind, after) = rest.split_once(" -->").unwrap();
        let block = after.trim_start().strip_prefix("```json\n").unwrap();
        let json = &block[..block.find("```").unwrap()];
        let written = match kind {
            "detection" => round_trip::<Detection>(json),
            "status" => round_trip::<Status>(json),
            "heartbeat" => round_trip::<Heartbeat>(json),
            "model" => round_trip::<ModelReport>(json),
            "replay" => round_trip::<ReplayRequest>(json),
            other => panic!("no message type for example kind {other}"),
        };
        let read: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            read, written,
            "the {kind} example is not what the type writes"
        );
        *seen.entry(kind.to_owned()).or_default() += 1;
    }
    let kinds: Vec<_> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["detection", "heartbeat", "model", "replay", "status"]
    );
}
