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
