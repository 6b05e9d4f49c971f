//! The documented examples validate; a corpus of broken files gives the expected messages
//! (snapshots in `tests/broken/*.expected`; run with `WARBLE_UPDATE_SNAPSHOTS=1` to
//! rewrite them after a deliberate change, then review the diff).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_validates() {
    let examples = files("examples");
    assert!(examples.len() >= 2, "{examples:?}");
    for file in examples {
        let cfg = warble_config::load(&file).unwrap_or_else(|p| panic!("{}:\n{p}", file.display()));
        assert!(!cfg.id.as_str().is_empty());
    }
    let forest = warble_config::load(Path::new("examples/forest-station.toml")).unwrap();
    assert_eq!(forest.confirm_count, 2);
    assert_eq!(forest.clips.as_ref().unwrap().quota_bytes, 2048 << 20);
    let mqtt = forest.mqtt.unwrap();
    assert_eq!(
        (mqtt.host.as_str(), mqtt.port, mqtt.tls),
        ("broker.example.org", 8883, true)
    );
    assert_eq!(mqtt.client_id, "warble-forest-edge-01");
    assert!(
        matches!(forest.schedule, warble_config::schedule::Schedule::Windows(ref w) if w.len() == 2)
    );
}

#[test]
fn broken_files_give_the_expected_messages() {
    let update = std::env::var_os("WARBLE_UPDATE_SNAPSHOTS").is_some();
    let mut mismatches = Vec::new();
    for file in files("tests/broken") {
        let problems = warble_config::load(&file).expect_err("a broken file must not validate");
        let text = format!("{problems}\n");
        let expected = file.with_extension("expected");
        if update {
            std::fs::write(&expected, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run with WARBLE_UPDATE_SNAPSHOTS=1",
                expected.display()
            )
        });
        if want != text {
            mismatches.push(format!(
                "{}:\n--- expected\n{want}--- got\n{text}",
                file.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_cli_reports_every_file_and_exits_by_the_documented_codes() {
    let bin = env!("CARGO_BIN_EXE_warble-config");
    let ok = Command::new(bin)
        .args(["validate", "examples/demo.toml"])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = Command::new(bin)
        .args([
            "validate",
            "examples/demo.toml",
            "tests/broken/typos.toml",
            "tests/broken/ranges.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("tests/broken/typos.toml:9:1: model.treshold"),
        "{err}"
    );
    assert!(err.contains("tests/broken/ranges.toml"), "{err}");
    let usage = Command::new(bin).arg("validate").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let schema = Command::new(bin).arg("schema").output().unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert!(schema["properties"]["mqtt"].is_object(), "{schema}");
}

fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_example_fleet_renders_deterministically_into_valid_stations() {
    let fleet = Path::new("examples/fleet/fleet.toml");
    let inventory =
        warble_config::fleet::read_inventory(Path::new("examples/fleet/stations.csv")).unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = warble_config::fleet::render(fleet, &inventory, a.path()).unwrap();
    assert_eq!(
        r.stations,
        ["grunewald-01", "grunewald-02", "tegel-marsh-01"]
    );
    warble_config::fleet::render(fleet, &inventory, b.path()).unwrap();
    let files = tree(a.path());
    assert_eq!(files, tree(b.path()), "rendering is deterministic");
    let acl = std::fs::read_to_string(a.path().join("broker/acl")).unwrap();
    assert!(
        acl.contains("user grunewald-01\ntopic write warble/grunewald-01/detections\n"),
        "{acl}"
    );
    assert!(acl.contains("topic read warble/fleet/dawn/bundle"), "{acl}");
    // Its Home Assistant discovery configs, and only its own.
    assert!(
        acl.contains("topic write homeassistant/+/warble_grunewald_01/+/config\n"),
        "{acl}"
    );
    assert!(!acl.contains("topic write homeassistant/#"), "{acl}");
    // Home Assistant's user reads the discovery configs and what they point at, no more.
    let ha = acl
        .split("\n\n")
        .find(|section| section.starts_with("user homeassistant\n"))
        .unwrap_or_else(|| panic!("no Home Assistant user: {acl}"));
    assert_eq!(
        ha,
        "user homeassistant\ntopic read homeassistant/#\ntopic write homeassistant/status\n\
         topic read warble/+/status\ntopic read warble/+/heartbeat\ntopic read warble/+/detections"
    );
    assert!(!acl.contains("topic write warble/#"), "{acl}");
    assert_eq!(
        files.len(),
        3 * 4 + 2,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for id in &r.stations {
        // validate(render(x)) holds for what was written, read back from disk.
        let cfg = warble_config::load(&a.path().join(id).join("station.toml")).unwrap();
        assert_eq!(cfg.id.as_str(), id);
        let unit = std::fs::read_to_string(a.path().join(id).join("warble-agent.service")).unwrap();
        for line in [
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/warble",
            "Restart=always",
            "User=warble",
            "NoNewPrivileges=true",
            // Unattended: never give up restarting, bounded memory, after the clock.
            "StartLimitIntervalSec=0",
            "MemoryMax=512M",
            "After=network-online.target sound.target time-sync.target",
        ] {
            assert!(unit.contains(line), "{line}");
        }
    }
    let dawn = warble_config::load(&a.path().join("grunewald-01/station.toml")).unwrap();
    assert!(
        matches!(dawn.schedule, warble_config::schedule::Schedule::Windows(_)),
        "group settings apply"
    );
    assert!(dawn.clips.is_none());
    let marsh = warble_config::load(&a.path().join("tegel-marsh-01/station.toml")).unwrap();
    assert_eq!(marsh.clips.unwrap().quota_bytes, 4096 << 20);
    assert_eq!(marsh.location.unwrap().latitude, 52.5871);
}

#[test]
fn a_bad_fleet_renders_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    std::fs::copy("examples/fleet/fleet.toml", &fleet).unwrap();
    let text = std::fs::read_to_string(&fleet).unwrap().replace(
        "../../../models",
        &format!("{}/../models", std::env::current_dir().unwrap().display()),
    );
    std::fs::write(&fleet, text).unwrap();
    let stations = dir.path().join("stations.csv");
    std::fs::write(
        &stations,
        "id,group,latitude,longitude\nok-1,dawn,52.4,13.2\nbad-1,dwan,52.4,13.2\nok-1,dawn,52.4,13.2\nBAD_ID,wetland,95,13\n",
    )
    .unwrap();
    let inventory = warble_config::fleet::read_inventory(&stations).unwrap();
    let out = dir.path().join("out");
    let problems = warble_config::fleet::render(&fleet, &inventory, &out).unwrap_err();
    let text = problems.to_string();
    assert!(
        text.contains("no group `dwan`") && text.contains("did you mean `dawn`?"),
        "{text}"
    );
    assert!(text.contains("`ok-1` is listed twice"), "{text}");
    assert!(text.contains("`BAD_ID` is not a station id"), "{text}");
    assert!(
        text.contains("station.latitude: station `BAD_ID` (rendered): 95 is out of range"),
        "{text}"
    );
    assert!(
        std::fs::read_dir(&out).map_or(0, |d| d.count()) == 0,
        "nothing rendered"
    );

    std::fs::write(&stations, "id,group,latitude\nx-1,dawn,north\n").unwrap();
    let err = warble_config::fleet::read_inventory(&stations)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":2:1: latitude: `north` is not a number"),
        "{err}"
    );
}

/// Names become broker users, topic levels and ACL lines: a station named like the
/// operator would share its ACL section (and could push bundles); a group name with a
/// newline would write ACL lines of its own.
#[test]
fn names_that_would_reach_beyond_their_place_in_the_acl_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    let text = std::fs::read_to_string("examples/fleet/fleet.toml")
        .unwrap()
        .replace(
            "../../../models",
            &format!("{}/../models", std::env::current_dir().unwrap().display()),
        )
        .replace(
            "[groups.dawn.schedule]",
            "[groups.\"x\\ntopic readwrite #\"]\nschedule = { mode = \"always\" }\n\n[groups.dawn.schedule]",
        )
        .replace(
            "name = \"berlin-forests\"",
            "name = \"berlin-forests\"\ncollector_user = \"col lector\"",
        );
    std::fs::write(&fleet, text).unwrap();
    let stations = dir.path().join("stations.csv");
    std::fs::write(
        &stations,
        "id,group,latitude,longitude\noperator,dawn,52.4,13.2\nok-1,dawn,52.4,13.2\n",
    )
    .unwrap();
    let inventory = warble_config::fleet::read_inventory(&stations).unwrap();
    let out = dir.path().join("out");
    let text = warble_config::fleet::render(&fleet, &inventory, &out)
        .unwrap_err()
        .to_string();
    for expected in [
        "`x\\ntopic readwrite #` is not a group name",
        "`col lector` is not a broker user name",
        "station `operator` has the broker user name of the fleet's operator",
        "`operator` is reserved",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(std::fs::read_dir(&out).map_or(0, |d| d.count()) == 0);
}

#[test]
fn station_files_round_trip_through_their_raw_form() {
    for file in files("examples") {
        let text = std::fs::read_to_string(&file).unwrap();
        let doc = warble_config::document::Document::parse(&file, &text).unwrap();
        let (raw, problems) = doc.deserialize::<warble_config::RawStationConfig>(&file);
        assert!(problems.is_empty(), "{problems:?}");
        let raw = raw.unwrap();
        let again_text = toml::to_string_pretty(&raw).unwrap();
        let again = warble_config::document::Document::parse(&file, &again_text).unwrap();
        let (raw2, problems) = again.deserialize::<warble_config::RawStationConfig>(&file);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(raw2.unwrap(), raw, "{}", file.display());
        // And the typed config is the same from both texts.
        assert_eq!(
            warble_config::load_str(&file, &again_text).unwrap(),
            warble_config::load_str(&file, &text).unwrap()
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Damaged station files give problems (or a config), never a panic: bytes of a valid
    /// file replaced, cut or duplicated.
    #[test]
    fn damaged_station_files_never_panic(
        cut in 0usize..2000,
        at in 0usize..2000,
        junk in "[\\[\\]=\"#a-z0-9_.\\n ]{0,12}",
    ) {
        let text = std::fs::read_to_string("examples/forest-station.toml").unwrap();
        let cut = cut.min(text.len());
        let at = at.min(text.len());
        let mut damaged: String = text.chars().take(at).collect();
        damaged.push_str(&junk);
        damaged.extend(text.chars().skip(cut));
        let _ = warble_config::load_str(Path::new("examples/x.toml"), &damaged);
    }
}

/// `mqtt.allow_plaintext`: plaintext MQTT to a broker on another machine is refused
/// unless the station file says it is meant.
#[test]
fn plaintext_to_another_machine_needs_allow_plaintext() {
    let path = Path::new("examples/forest-station.toml");
    let text = std::fs::read_to_string(path).unwrap().replace(
        "broker = \"mqtts://broker.example.org\"",
        "broker = \"mqtt://broker.example.org\"",
    );
    let refused = warble_config::load_str(path, &text).unwrap_err();
    assert!(
        refused.to_string().contains("allow_plaintext = true"),
        "{refused}"
    );
    let allowed = text.replace("[storage]", "allow_plaintext = true\n\n[storage]");
    let cfg = warble_config::load_str(path, &allowed).unwrap();
    let mqtt = cfg.mqtt.unwrap();
    assert_eq!((mqtt.port, mqtt.tls), (1883, false));
}
