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
    // Per station: station.toml, its key, credentials, the model, the drop-in,
    // install.sh and install.txt; the broker's warble.conf, passwd, acl and install.txt.
    assert_eq!(
        files.len(),
        3 * 7 + 4,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let mode = |rel: &str| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(a.path().join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("grunewald-01/credentials"), 0o600);
    assert_eq!(mode("broker/passwd"), 0o600);
    assert_eq!(mode("grunewald-01/install.sh"), 0o755);
    for id in &r.stations {
        // validate(render(x)) holds for what was written, read back from disk.
        let dir = a.path().join(id);
        let cfg = warble_config::load(&dir.join("station.toml")).unwrap();
        assert_eq!(cfg.id.as_str(), id);
        let mqtt = cfg.mqtt.as_ref().unwrap();
        assert_eq!(
            mqtt.credentials_file.as_deref(),
            Some(Path::new("credentials"))
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("credentials")).unwrap(),
            format!("{id}:example-only-{id}\n")
        );
        assert_eq!(
            std::fs::read(dir.join("model.warble")).unwrap(),
            std::fs::read("../models/demo/warble-demo-0.1.0.warble").unwrap()
        );
        let dropin =
            std::fs::read_to_string(dir.join("warble-agent.service.d/station.conf")).unwrap();
        assert!(
            dropin.contains(&format!(
                "Description=Warble recorder agent (station {id})\n"
            )),
            "{dropin}"
        );
        // The fleet keeps the package's places: nothing else to override.
        assert!(!dropin.contains("[Service]"), "{dropin}");
        let manifest = std::fs::read_to_string(dir.join("install.txt")).unwrap();
        assert!(
            manifest.contains("/var/lib/warble/models/active.warble\t0640\twarble:warble\t"),
            "{manifest}"
        );
        assert!(
            manifest.contains("/etc/warble/credentials\t0640\troot:warble\t"),
            "{manifest}"
        );
    }
    let passwd = std::fs::read_to_string(a.path().join("broker/passwd")).unwrap();
    let users: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        users,
        [
            "collector",
            "grunewald-01",
            "grunewald-02",
            "homeassistant",
            "operator",
            "tegel-marsh-01"
        ]
    );
    let conf = std::fs::read_to_string(a.path().join("broker/warble.conf")).unwrap();
    for line in [
        "listener 8883 0.0.0.0\n",
        "certfile /etc/mosquitto/warble/broker.crt\n",
        "password_file /etc/mosquitto/warble/passwd\n",
        "acl_file /etc/mosquitto/warble/acl\n",
    ] {
        assert!(conf.contains(line), "{line:?} in {conf}");
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

/// A secrets folder in `dir` with a password for each of `users`, and `fleet_text`
/// pointed at it.
fn with_secrets(dir: &Path, fleet_text: &str, users: &[&str]) -> String {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for user in users {
        std::fs::write(
            secrets.join(format!("{user}.credentials")),
            format!("{user}:pw\n"),
        )
        .unwrap();
    }
    fleet_text.replace(
        "secrets = \"secrets\"",
        &format!("secrets = {:?}", secrets.display().to_string()),
    )
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
    let text = with_secrets(
        dir.path(),
        &text,
        &[
            "operator",
            "collector",
            "homeassistant",
            "ok-1",
            "bad-1",
            "BAD_ID",
        ],
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

/// The package installs the unit `packaged_unit` renders: the two are one.
#[test]
fn the_packaged_unit_is_the_rendered_one() {
    let path = Path::new("../agent/debian/warble-agent.service");
    let rendered = warble_config::fleet::packaged_unit();
    if std::env::var_os("WARBLE_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &rendered).unwrap();
    }
    let packaged = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        packaged, rendered,
        "agent/debian/warble-agent.service differs from fleet::packaged_unit(): \
         rerun with WARBLE_UPDATE_SNAPSHOTS=1"
    );
    for line in [
        "ProtectSystem=strict",
        "StateDirectory=warble",
        "ConfigurationDirectory=warble",
        "Restart=always",
        "User=warble",
        "NoNewPrivileges=true",
        "ExecStart=/usr/bin/warble-agent run --config /etc/warble/station.toml",
        // Unattended: never give up restarting, bounded memory, after the clock.
        "StartLimitIntervalSec=0",
        "MemoryMax=512M",
        "After=network-online.target sound.target time-sync.target",
    ] {
        assert!(rendered.contains(&format!("{line}\n")), "{line}");
    }
}

/// A station that departs from the package's places gets them in its drop-in.
#[test]
fn a_fleet_with_its_own_places_overrides_them_in_the_drop_in() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    let here = std::env::current_dir().unwrap();
    let text = std::fs::read_to_string("examples/fleet/fleet.toml")
        .unwrap()
        .replace("../../../models", &format!("{}/../models", here.display()))
        .replace("secrets = \"secrets\"", &format!("secrets = \"{}/examples/fleet/secrets\"", here.display()))
        .replace("name = \"berlin-forests\"", "name = \"berlin-forests\"\nagent_bin = \"/opt/warble/bin/warble-agent\"\nconfig_dir = \"/srv/warble/etc\"")
        .replace("data_dir = \"/var/lib/warble\"", "data_dir = \"/srv/warble/data\"")
        .replace("bundle = \"/var/lib/warble/models/active.warble\"", "bundle = \"/srv/warble/data/models/active.warble\"");
    std::fs::write(&fleet, text).unwrap();
    let inventory =
        warble_config::fleet::read_inventory(Path::new("examples/fleet/stations.csv")).unwrap();
    let out = dir.path().join("out");
    warble_config::fleet::render(&fleet, &inventory, &out).unwrap();
    let dropin =
        std::fs::read_to_string(out.join("grunewald-01/warble-agent.service.d/station.conf"))
            .unwrap();
    assert!(
        dropin.ends_with(
            "[Service]\nExecStart=\nExecStart=/opt/warble/bin/warble-agent run --config /srv/warble/etc/station.toml\nReadWritePaths=/srv/warble/data\n"
        ),
        "{dropin}"
    );
    assert!(
        dropin.contains("ConditionPathExists=\nConditionPathExists=/srv/warble/etc/station.toml\n"),
        "{dropin}"
    );
    let script = std::fs::read_to_string(out.join("grunewald-01/install.sh")).unwrap();
    assert!(
        script.contains(
            "install -D -m 0640 -o root -g warble station.toml '/srv/warble/etc/station.toml'\n"
        ),
        "{script}"
    );
    assert!(
        script.contains("install -d -m 0750 -o warble -g warble '/srv/warble/data/models'\n"),
        "{script}"
    );
}

/// A station folder is complete or not rendered: missing credentials, a fleet that sets
/// them itself, mutual TLS without a certificate, a model the station would refuse.
#[test]
fn a_station_without_its_secrets_or_a_model_it_trusts_is_not_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let here = std::env::current_dir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for user in [
        "operator",
        "collector",
        "homeassistant",
        "grunewald-01",
        "grunewald-02",
    ] {
        std::fs::write(
            secrets.join(format!("{user}.credentials")),
            format!("{user}:pw\n"),
        )
        .unwrap();
    }
    std::fs::write(
        secrets.join("tegel-marsh-01.credentials"),
        "someone-else:pw\n",
    )
    .unwrap();
    let base = std::fs::read_to_string("examples/fleet/fleet.toml")
        .unwrap()
        .replace("../../../models", &format!("{}/../models", here.display()));
    let renders = std::cell::Cell::new(0);
    let render = |text: String| {
        let fleet = dir.path().join("fleet.toml");
        std::fs::write(&fleet, text).unwrap();
        let inventory =
            warble_config::fleet::read_inventory(Path::new("examples/fleet/stations.csv")).unwrap();
        renders.set(renders.get() + 1);
        let out = dir.path().join(format!("out-{}", renders.get()));
        let r = warble_config::fleet::render(&fleet, &inventory, &out);
        assert!(
            r.is_ok() || std::fs::read_dir(&out).map_or(0, |d| d.count()) == 0,
            "nothing rendered on a problem"
        );
        r.map(|_| ()).map_err(|p| p.to_string())
    };
    let text = render(base.clone()).unwrap_err();
    assert!(
        text.contains("tegel-marsh-01.credentials names user `someone-else`, not `tegel-marsh-01`"),
        "{text}"
    );
    std::fs::remove_file(secrets.join("tegel-marsh-01.credentials")).unwrap();
    let text = render(base.clone()).unwrap_err();
    assert!(
        text.contains("station `tegel-marsh-01` delivers over MQTT: cannot read")
            && text.contains("tegel-marsh-01.credentials")
            && text.contains("`warble-config secrets` creates the missing credentials"),
        "{text}"
    );
    std::fs::write(
        secrets.join("tegel-marsh-01.credentials"),
        "tegel-marsh-01:pw\n",
    )
    .unwrap();
    render(base.clone()).unwrap();

    let text = render(base.replace(
        "name = \"berlin-forests\"",
        "name = \"berlin-forests\"\nmutual_tls = true",
    ))
    .unwrap_err();
    assert!(
        text.contains("the fleet uses mutual TLS (fleet.mutual_tls): cannot read")
            && text.contains("grunewald-01.crt"),
        "{text}"
    );
    let text = render(base.replace(
        "heartbeat_s = 60",
        "heartbeat_s = 60\ncredentials_file = \"shared.txt\"",
    ))
    .unwrap_err();
    assert!(
        text.contains("mqtt.credentials_file: each station's broker credentials"),
        "{text}"
    );
    let text = render(base.replace("secrets = \"secrets\"\n", "")).unwrap_err();
    assert!(
        text.contains("fleet.secrets: station `grunewald-01` delivers over MQTT: name the folder"),
        "{text}"
    );
    // Signed by the demo key, given to stations that trust another.
    let other = dir.path().join("other.pub");
    let key = warble_core::bundle::SecretKey::from_seed([7; 32], "another signer");
    std::fs::write(&other, key.public().to_text()).unwrap();
    let text = render(base.replace(
        &format!("{}/../models/demo/warble-demo.pub", here.display()),
        &other.display().to_string(),
    ))
    .unwrap_err();
    assert!(
        text.contains("fleet.bundle: station `grunewald-01` would refuse the fleet's bundle"),
        "{text}"
    );
    let text = render(base.replace(
        &format!(
            "bundle = \"{}/../models/demo/warble-demo-0.1.0.warble\"",
            here.display()
        ),
        "",
    ))
    .unwrap_err();
    assert!(
        text.contains("fleet.bundle: name the model bundle"),
        "{text}"
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
    let text = with_secrets(dir.path(), &text, &["operator", "homeassistant", "ok-1"]);
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

/// `warble-config secrets` gives every broker user that has none a random password
/// (0600), keeps the ones there, and the fleet then renders.
#[test]
fn secrets_are_created_for_the_users_without_and_kept_for_the_others() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let here = std::env::current_dir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    let text = std::fs::read_to_string("examples/fleet/fleet.toml")
        .unwrap()
        .replace("../../../models", &format!("{}/../models", here.display()));
    std::fs::write(&fleet, text).unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("operator.credentials"), "operator:mine\n").unwrap();
    let inventory =
        warble_config::fleet::read_inventory(Path::new("examples/fleet/stations.csv")).unwrap();
    let created = warble_config::fleet::create_secrets(&fleet, &inventory).unwrap();
    assert_eq!(
        created,
        [
            "collector",
            "homeassistant",
            "grunewald-01",
            "grunewald-02",
            "tegel-marsh-01"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(secrets.join("operator.credentials")).unwrap(),
        "operator:mine\n"
    );
    let station = std::fs::read_to_string(secrets.join("grunewald-01.credentials")).unwrap();
    let (user, password) = station.trim().split_once(':').unwrap();
    assert_eq!(user, "grunewald-01");
    assert!(password.len() >= 24, "{password}");
    let other = std::fs::read_to_string(secrets.join("grunewald-02.credentials")).unwrap();
    assert_ne!(other.split_once(':').unwrap().1, password.to_owned() + "\n");
    let mode = std::fs::metadata(secrets.join("grunewald-01.credentials"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        warble_config::fleet::create_secrets(&fleet, &inventory)
            .unwrap()
            .is_empty(),
        "a second run creates nothing"
    );
    warble_config::fleet::render(&fleet, &inventory, &dir.path().join("out")).unwrap();
}
