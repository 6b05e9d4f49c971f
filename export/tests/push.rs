//! `warble-export push` against a real mosquitto: the signed offer lands retained on the
//! station's or the group's bundle topic (a subscriber that comes later still gets it), a
//! bundle that does not verify or would not fit is refused before anything is sent, and
//! `--clear` removes the offer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warble_core::bundle::offer::Offer;
use warble_core::bundle::{PublicKey, TrustedKeys};
use warble_tests::broker::Mosquitto;
use warble_tests::demo::repo_file;

fn export(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warble-export"))
        .args(args)
        .output()
        .unwrap()
}

fn operator_key(dir: &Path) -> (PathBuf, TrustedKeys) {
    let prefix = dir.join("operator");
    let out = export(&["keygen", prefix.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let public = PublicKey::read(dir.join("operator.pub")).unwrap();
    (dir.join("operator.key"), [public].into_iter().collect())
}

/// The retained message on `topic`, if any (a subscriber that connects now).
fn retained(port: u16, topic: &str) -> Option<Vec<u8>> {
    let out = Command::new("mosquitto_sub")
        .args([
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "3",
            "-N",
        ])
        .output()
        .expect("mosquitto_sub (Debian's mosquitto-clients, from scripts/install-deps)");
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

fn push(port: u16, bundle: &Path, key: &Path, target: &[&str], extra: &[&str]) -> Output {
    let broker = format!("mqtt://127.0.0.1:{port}");
    let demo_pub = repo_file("models/demo/warble-demo.pub");
    let mut args = vec![
        "push",
        bundle.to_str().unwrap(),
        "--broker",
        &broker,
        "--key",
        key.to_str().unwrap(),
        "--trusted",
        demo_pub.to_str().unwrap(),
    ];
    args.extend_from_slice(target);
    args.extend_from_slice(extra);
    export(&args)
}

#[test]
fn a_pushed_bundle_waits_retained_for_its_station_and_group() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (key, trusted) = operator_key(dir.path());
    let bundle = repo_file("models/demo/warble-demo-0.1.0.warble");
    let out = push(broker.port(), &bundle, &key, &["--station", "fen-1"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("offering warble-demo 0.1.0 (25 classes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("published on warble/fen-1/bundle (retained)"),
        "{stdout}"
    );
    // A station connecting later gets the signed offer and, after it, the bundle itself.
    let message = retained(broker.port(), "warble/fen-1/bundle").expect("a retained offer");
    let (offer, sent) = Offer::open(&message, &trusted).unwrap();
    assert_eq!(sent, std::fs::read(&bundle).unwrap().as_slice());
    assert!(!offer.force);
    assert!((chrono::Utc::now() - offer.issued).num_seconds() < 60);

    // To a group, forced.
    let out = push(
        broker.port(),
        &bundle,
        &key,
        &["--group", "dawn"],
        &["--force"],
    );
    assert!(out.status.success(), "{out:?}");
    let message = retained(broker.port(), "warble/fleet/dawn/bundle").expect("a group offer");
    assert!(Offer::open(&message, &trusted).unwrap().0.force);

    // --clear removes the station's offer; the group's stays.
    let out = export(&[
        "push",
        "--clear",
        "--station",
        "fen-1",
        "--broker",
        &format!("mqtt://127.0.0.1:{}", broker.port()),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(retained(broker.port(), "warble/fen-1/bundle"), None);
    assert!(retained(broker.port(), "warble/fleet/dawn/bundle").is_some());
}

#[test]
fn what_no_station_would_take_is_not_sent() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = operator_key(dir.path());
    let refused = |bundle: &Path, needle: &str| {
        let out = push(broker.port(), bundle, &key, &["--station", "fen-2"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert_eq!(retained(broker.port(), "warble/fen-2/bundle"), None);
    };
    // A bundle damaged on the operator's disk.
    let mut bytes = std::fs::read(repo_file("models/demo/warble-demo-0.1.0.warble")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let corrupt = dir.path().join("corrupt.warble");
    std::fs::write(&corrupt, bytes).unwrap();
    refused(&corrupt, "does not verify, so no station would take it");
    // Larger than a station reads (a sparse file: nothing is written).
    let huge = dir.path().join("huge.warble");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(129 << 20)
        .unwrap();
    refused(&huge, "more than a station reads on its bundle topic");
    // A station id that cannot be one.
    let out = push(
        broker.port(),
        &repo_file("models/demo/warble-demo-0.1.0.warble"),
        &key,
        &["--station", "fen/#"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--station"));
}
