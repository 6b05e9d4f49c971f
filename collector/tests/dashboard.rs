//! The fleet dashboard in a real browser: a collector fed by a real mosquitto (status,
//! heartbeats and detections of two stations), `warble-collect serve` on its store, and
//! headless Chromium loading the page — what its scripts drew must show the stations,
//! models and detections the test sent, and nothing a station sent may run as markup.
//! The JSON documents behind the page are checked too.
//!
//! `WARBLE_DASHBOARD_SCREENSHOTS=DIR` keeps the screenshots (the docs' pictures).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{collector, detection, get, json, publish, serve, wait_for_store};
use warble_core::SpeciesCode;
use warble_core::wire::{Engine, Heartbeat, ModelState, Status};
use warble_tests::broker::Mosquitto;

/// Time enough for the page's fetches and first drawing.
const SETTLE: Duration = Duration::from_secs(3);

fn messages() -> Vec<(String, Vec<u8>, bool)> {
    let beat = Heartbeat {
        uptime_s: 7200,
        outbox_depth: Some(3),
        inference_ms: Some(11.5),
        realtime_factor: Some(92.0),
        disk_free_bytes: Some(12 << 30),
        audio_level_dbfs: Some(-42.0),
        model: warble_core::event::ModelRef {
            id: "warble-demo".into(),
            version: "0.1.0".into(),
        },
        model_state: Some(ModelState::Committed),
        engine: Some(Engine::Onnxruntime),
        ..Heartbeat::default()
    };
    let mut out = vec![
        (
            "warble/fen-1/status".to_owned(),
            json(&Status::online("0.9.0")),
            true,
        ),
        ("warble/fen-1/heartbeat".to_owned(), json(&beat), false),
        (
            "warble/reed-2/status".to_owned(),
            json(&Status::offline()),
            true,
        ),
    ];
    // fen-1: four robins and two blackcaps over nine minutes, seq 4 missing.
    for seq in [0, 1, 2, 3, 5, 6] {
        let mut e = detection("fen-1", seq);
        e.start += chrono::Duration::seconds(90 * seq as i64);
        e.end = e.start + chrono::Duration::seconds(3);
        if seq >= 5 {
            e.code = SpeciesCode::new("blackc1").unwrap();
            e.common = "Eurasian Blackcap".into();
            e.scientific = "Sylvia atricapilla".into();
            e.confidence = 0.64;
        }
        out.push(("warble/fen-1/detections".into(), json(&e), false));
    }
    // reed-2: a name with markup in it, which the page must show as text.
    let mut e = detection("reed-2", 0);
    e.code = SpeciesCode::new("wren1").unwrap();
    e.common = "Wren <img src=x onerror=alert(1)>".into();
    out.push(("warble/reed-2/detections".into(), json(&e), false));
    out
}

/// The element of `dom` that starts with `opening` (up to its closing `</tr>` or `</div>`).
fn element<'a>(dom: &'a str, opening: &str, closing: &str) -> &'a str {
    let at = dom
        .find(opening)
        .unwrap_or_else(|| panic!("no {opening} in the page:\n{dom}"));
    let end = dom[at..].find(closing).map_or(dom.len(), |e| at + e);
    &dom[at..end]
}

#[test]
fn the_dashboard_shows_the_fleet_in_a_real_browser() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.sqlite");
    let run = collector(&broker, &db);
    publish(broker.port(), messages());
    wait_for_store(&db, |store| {
        let fleet = store.fleet().unwrap();
        store.ids("fen-1").unwrap().len() == 6
            && store.ids("reed-2").unwrap().len() == 1
            && fleet
                .iter()
                .any(|s| s.station == "fen-1" && s.heartbeat.is_some())
            && fleet
                .iter()
                .any(|s| s.station == "reed-2" && s.online == Some(false))
    });
    drop(run);
    let (_serve, port) = serve(&db);
    let base = format!("http://127.0.0.1:{port}");

    // The documents behind the page.
    let (status, headers, body) = get(port, "/api/fleet");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );
    let fleet: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stations = fleet["stations"].as_array().unwrap();
    assert_eq!(stations.len(), 2, "{body}");
    let fen = &stations[0];
    assert_eq!(fen["station"], "fen-1");
    assert_eq!(fen["online"], true);
    assert_eq!(fen["detections"], 6);
    assert_eq!(fen["missing"], 1, "seq 4 is missing");
    assert_eq!(fen["heartbeat"]["outbox_depth"], 3);
    assert_eq!(fen["heartbeat"]["model_state"], "committed");
    assert_eq!(stations[1]["online"], false);
    let (_, _, body) = get(port, "/api/timeline");
    let timeline: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        timeline["bucket"], "10s",
        "nine minutes in 10-s bars: {body}"
    );
    let fen_total: u64 = timeline["counts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["station"] == "fen-1")
        .map(|c| c["detections"].as_u64().unwrap())
        .sum();
    assert_eq!(fen_total, 6, "{body}");
    let (_, _, body) = get(port, "/api/species?station=fen-1");
    let species: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(species[0]["code"], "eurrob1", "{body}");
    assert_eq!(species[0]["detections"], 4);
    assert_eq!(species[1]["code"], "blackc1");
    let (status, _, body) = get(port, "/api/stations/nowhere");
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{body}");

    // The fleet page, as the browser drew it.
    let dom = warble_tests::browser::dom(&format!("{base}/"), SETTLE).unwrap();
    assert!(dom.contains(r#"data-state="ready""#), "{dom}");
    let fen = element(&dom, r#"<tr data-station="fen-1">"#, "</tr>");
    for shown in [
        ">online<",
        "warble-demo 0.1.0",
        "onnxruntime",
        ">3<",
        "12.0 GB",
        "92.0×",
    ] {
        assert!(fen.contains(shown), "fen-1's row lacks {shown}: {fen}");
    }
    assert!(
        fen.contains(r#"<td class="num detections">6</td>"#),
        "{fen}"
    );
    assert!(fen.contains(r#"href="/station/fen-1""#), "{fen}");
    let reed = element(&dom, r#"<tr data-station="reed-2">"#, "</tr>");
    assert!(reed.contains(">offline<"), "{reed}");
    let stations_online = element(&dom, r#"id="stations-online""#, "</div></div>");
    assert!(stations_online.contains("1 / 2"), "{stations_online}");
    let species = element(&dom, r#"id="species""#, "</div></div></div>");
    for code in ["eurrob1", "blackc1", "wren1"] {
        assert!(
            species.contains(&format!(r#"data-code="{code}""#)),
            "{species}"
        );
    }
    let timeline = element(&dom, r#"id="timeline""#, "</svg>");
    assert!(timeline.matches("<rect").count() >= 6, "{timeline}");
    // A station's text is text: the markup shows escaped, no element was made of it.
    assert!(
        dom.contains("Wren &lt;img src=x onerror=alert(1)&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<img"), "{dom}");

    // A station's page.
    let dom = warble_tests::browser::dom(&format!("{base}/station/fen-1"), SETTLE).unwrap();
    assert!(dom.contains(r#"data-state="ready""#), "{dom}");
    let recent = element(&dom, r#"<table id="recent">"#, "</table>");
    assert_eq!(recent.matches("<tr data-id=").count(), 6, "{recent}");
    // Newest first: seq 6 (a blackcap, 9 minutes in) leads.
    let first = element(recent, "<tr data-id=", "</tr>");
    assert!(first.contains("Eurasian Blackcap"), "{first}");
    assert!(first.contains("0.64"), "{first}");
    assert!(
        first.contains("2026-05-01 04:39:00 UTC"),
        "the newest detection first: {first}"
    );
    assert!(!dom.contains("wren1"), "another station's species: {dom}");

    // Pictures, for the docs when asked.
    let shots = std::env::var_os("WARBLE_DASHBOARD_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().to_owned());
    std::fs::create_dir_all(&shots).unwrap();
    for (page, name) in [
        ("/", "dashboard.png"),
        ("/station/fen-1", "dashboard-station.png"),
    ] {
        warble_tests::browser::screenshot(
            &format!("{base}{page}"),
            &shots.join(name),
            (1280, 860),
            SETTLE,
        )
        .unwrap();
    }
}
