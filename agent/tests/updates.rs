//! Which offered bundles a station takes (in-process): every rejection with its reason,
//! the downgrade rules with and without `--force`, the fit to the station, and the ledger
//! that remembers installed versions across restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use warble_agent::updates::{Ledger, Policy, Rejection, assess, version_of};
use warble_config::StationConfig;
use warble_core::bundle::offer::{MAX_OFFER_BYTES, Offer, OfferError};
use warble_core::bundle::{BundleError, PublicKey, SecretKey, TrustedKeys};
use warble_core::wire::ModelVersion;
use warble_tests::demo::{self, repo_file};

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32], "operator")
}

fn trusting(keys: &[&SecretKey]) -> TrustedKeys {
    let mut trusted: TrustedKeys = keys.iter().map(|k| k.public().clone()).collect();
    trusted.insert(PublicKey::read(repo_file("models/demo/warble-demo.pub")).unwrap());
    trusted
}

fn station(extra: &str, rate: u32) -> StationConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    std::fs::write(
        &path,
        format!(
            "[station]\nid = \"fen-1\"\n\n[audio]\nsample_rate_hz = {rate}\n\n[model]\n\
             bundle = \"{}\"\ntrusted_keys = [\"{}\"]\n{extra}\n[storage]\ndata_dir = \"{}\"\n",
            repo_file("models/demo/warble-demo-0.1.0.warble").display(),
            repo_file("models/demo/warble-demo.pub").display(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    warble_agent::settings::load_station(&path).unwrap()
}

/// What a station with `st` and `ledger`, trusting `trusted` and revoking nothing,
/// checks offers against.
fn policy<'a>(trusted: &'a TrustedKeys, st: &'a StationConfig, ledger: &'a Ledger) -> Policy<'a> {
    Policy {
        trusted,
        revoked: &[],
        station: st,
        ledger,
    }
}

fn running() -> ModelVersion {
    version_of(&demo::bundle())
}

fn at(minutes: i64) -> DateTime<Utc> {
    "2026-12-02T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(minutes)
}

fn rejection(message: &[u8], policy: &Policy<'_>) -> Rejection {
    match assess(message, policy, &running()) {
        Err(refused) => refused.rejection,
        Ok(taken) => panic!("taken: {:?}", taken.map(|a| version_of(&a.bundle))),
    }
}

#[test]
fn a_newer_signed_bundle_is_taken_and_the_running_one_is_no_change() {
    let op = key(1);
    let trusted = trusting(&[&op]);
    let st = station("", 32_000);
    let ledger = Ledger::default();
    let policy = policy(&trusted, &st, &ledger);
    let newer = demo::resigned("0.2.0", &op, |_, _| {});
    let taken = assess(
        &Offer::encode(&newer, false, at(0), &op),
        &policy,
        &running(),
    )
    .unwrap()
    .expect("taken");
    assert_eq!(taken.bundle.manifest().version, "0.2.0");
    assert_eq!(taken.bytes, newer);
    // The running bundle offered again (a retained offer on reconnecting): nothing to do.
    let same = std::fs::read(repo_file("models/demo/warble-demo-0.1.0.warble")).unwrap();
    let again = assess(
        &Offer::encode(&same, false, at(1), &op),
        &policy,
        &running(),
    )
    .unwrap();
    assert!(again.is_none());
}

#[test]
fn each_bad_offer_is_refused_with_its_reason() {
    let (op, stranger) = (key(1), key(2));
    let trusted = trusting(&[&op]);
    let st = station("", 32_000);
    let ledger = Ledger::default();
    let policy = policy(&trusted, &st, &ledger);
    let newer = demo::resigned("0.2.0", &op, |_, _| {});
    // Offer signed by a key the station does not trust.
    let r = rejection(&Offer::encode(&newer, false, at(0), &stranger), &policy);
    assert!(
        matches!(r, Rejection::Offer(OfferError::UnknownKey(_))),
        "{r}"
    );
    // A trusted offer of a bundle signed by an untrusted key.
    let foreign = demo::resigned("0.2.0", &stranger, |_, _| {});
    let r = rejection(&Offer::encode(&foreign, false, at(0), &op), &policy);
    assert!(
        matches!(r, Rejection::Bundle(BundleError::UnknownKey(_))),
        "{r}"
    );
    assert!(r.to_string().contains("the bundle does not verify"), "{r}");
    // Corrupt on the operator's side (signed as it is): the bundle's own hashes catch it.
    let mut corrupt = newer.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x40;
    let r = rejection(&Offer::encode(&corrupt, false, at(0), &op), &policy);
    assert!(matches!(r, Rejection::Bundle(_)), "{r}");
    // Corrupt in transit: the offer's hash catches it.
    let mut message = Offer::encode(&newer, false, at(0), &op);
    *message.last_mut().unwrap() ^= 1;
    let r = rejection(&message, &policy);
    assert!(
        matches!(r, Rejection::Offer(OfferError::HashMismatch { .. })),
        "{r}"
    );
    // Too large to read.
    let r = rejection(&vec![b'{'; MAX_OFFER_BYTES + 1], &policy);
    assert!(
        matches!(r, Rejection::Offer(OfferError::TooLarge(_))),
        "{r}"
    );
    // A revoked key, trusted or not.
    let revoked = [op.public().id().to_string()];
    let strict = Policy {
        revoked: &revoked,
        ..policy
    };
    let r = rejection(&Offer::encode(&newer, false, at(0), &op), &strict);
    assert!(matches!(r, Rejection::RevokedKey(_)), "{r}");
}

#[test]
fn downgrades_need_force_and_an_old_offer_published_again_is_refused() {
    let op = key(1);
    let trusted = trusting(&[&op]);
    let st = station("", 32_000);
    let mut ledger = Ledger::default();
    ledger.note(
        &warble_core::bundle::Bundle::from_bytes(
            &demo::resigned("0.3.0", &op, |_, _| {}),
            &trusted,
            &Default::default(),
        )
        .unwrap(),
        Some(
            &Offer::open(&Offer::encode(b"x", false, at(10), &op), &trusted)
                .unwrap()
                .0,
        ),
    );
    assert_eq!(ledger.highest["warble-demo"], [0, 3, 0]);
    assert_eq!(ledger.last_offer, Some(at(10)));
    let policy = policy(&trusted, &st, &ledger);
    let older = demo::resigned("0.2.0", &op, |_, _| {});
    let r = rejection(&Offer::encode(&older, false, at(20), &op), &policy);
    assert!(
        r.to_string()
            .contains("warble-demo 0.2.0 is not newer than 0.3.0"),
        "{r}"
    );
    // The operator's rollback by hand: forced, and issued now.
    let forced = assess(
        &Offer::encode(&older, true, at(20), &op),
        &policy,
        &running(),
    );
    assert!(forced.unwrap().is_some());
    // The same forced offer, had it been issued before the last one taken, is a replay.
    let r = rejection(&Offer::encode(&older, true, at(5), &op), &policy);
    assert!(matches!(r, Rejection::StaleOffer { .. }), "{r}");

    // The ledger survives a restart, and a damaged one is an error, not a fresh start.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert_eq!(Ledger::read(&path).unwrap(), Ledger::default());
    ledger.write(&path).unwrap();
    assert_eq!(Ledger::read(&path).unwrap(), ledger);
    std::fs::write(&path, "{\"highest\": 3").unwrap();
    assert!(
        Ledger::read(&path)
            .unwrap_err()
            .contains("not a model ledger")
    );
}

#[test]
fn a_bundle_that_does_not_fit_the_station_is_refused() {
    let op = key(1);
    let trusted = trusting(&[&op]);
    let ledger = Ledger::default();
    let newer = demo::resigned("0.2.0", &op, |_, _| {});
    let offer = Offer::encode(&newer, false, at(0), &op);
    let refused_on =
        |st: &StationConfig| rejection(&offer, &policy(&trusted, st, &ledger)).to_string();
    // The demo model needs 32 kHz; a 16-kHz station cannot feed it.
    let r = refused_on(&station("", 16_000));
    assert!(
        r.contains("needs audio at 32000 Hz; this station captures at 16000 Hz"),
        "{r}"
    );
    // A station that withholds clips of `syn03` and sets a threshold for `syn07` takes
    // the model (it has both) …
    let st = station(
        "privacy_classes = [\"syn03\"]\nthresholds = { \"syn07\" = 0.9 }\n",
        32_000,
    );
    let policy = policy(&trusted, &st, &ledger);
    assert!(assess(&offer, &policy, &running()).unwrap().is_some());
    // … but not one whose classes lack `syn03`: its clips would no longer be withheld.
    let without = demo::resigned("0.2.0", &op, |m, rows| {
        let code = warble_core::labels::SpeciesCode::new("syn03x").unwrap();
        rows[3].0 = code.clone();
        if let Some(t) = m.thresholds.per_class.remove("syn03") {
            m.thresholds.per_class.insert(code.as_str().to_owned(), t);
        }
    });
    let r = rejection(&Offer::encode(&without, false, at(0), &op), &policy).to_string();
    assert!(r.contains("incompatible with this station"), "{r}");
    assert!(r.contains("model.privacy_classes: `syn03`"), "{r}");
}

#[test]
fn the_ledger_picks_the_model_a_station_starts_on() {
    use warble_agent::updates::SlotModel;
    use warble_core::wire::ModelState;
    let dir = tempfile::tempdir().unwrap();
    let slots = dir.path();
    let ledger_at = slots.join(warble_agent::updater::LEDGER_FILE);
    let configured = dir.path().join("station-model.warble");
    std::fs::copy(
        repo_file("models/demo/warble-demo-0.1.0.warble"),
        &configured,
    )
    .unwrap();
    let newer = demo::resigned("0.2.0", &key(1), |_, _| {});
    std::fs::write(slots.join("b.warble"), &newer).unwrap();
    let in_b = SlotModel {
        slot: "b.warble".into(),
        model: ModelVersion {
            id: "warble-demo".into(),
            version: "0.2.0".into(),
            sha256: warble_core::bundle::sha256_hex(&newer),
        },
    };

    // No ledger yet: the station file's model; the ledger remembers which that was.
    let start = Ledger::start(slots, &configured).unwrap();
    assert_eq!(
        (start.bundle.as_path(), start.note),
        (configured.as_path(), None)
    );
    assert!(Ledger::read(&ledger_at).unwrap().configured.is_some());

    // A committed slot: started on it. The next update goes to the other slot.
    let mut ledger = Ledger::read(&ledger_at).unwrap();
    ledger.active = Some(in_b.clone());
    ledger.write(&ledger_at).unwrap();
    assert_eq!(
        Ledger::start(slots, &configured).unwrap().bundle,
        slots.join("b.warble")
    );
    assert_eq!(Ledger::read(&ledger_at).unwrap().free_slot(), "a.warble");

    // A model left on probation (a crash): abandoned, said, not taken again.
    let mut ledger = Ledger::read(&ledger_at).unwrap();
    ledger.trial = Some(SlotModel {
        slot: "a.warble".into(),
        model: ModelVersion {
            id: "warble-demo".into(),
            version: "0.3.0".into(),
            sha256: "ab".repeat(32),
        },
    });
    ledger.write(&ledger_at).unwrap();
    let start = Ledger::start(slots, &configured).unwrap();
    assert_eq!(start.bundle, slots.join("b.warble"));
    let note = start.note.unwrap();
    assert_eq!(note.state, ModelState::RolledBack);
    assert!(
        note.reason.contains("0.3.0 was on probation"),
        "{}",
        note.reason
    );
    let ledger = Ledger::read(&ledger_at).unwrap();
    assert_eq!(ledger.trial, None);
    assert_eq!(
        ledger.rolled_back.as_deref(),
        Some("ab".repeat(32).as_str())
    );

    // A damaged slot: the station file's model, said.
    std::fs::write(slots.join("b.warble"), b"not the bundle").unwrap();
    let start = Ledger::start(slots, &configured).unwrap();
    assert_eq!(start.bundle, configured);
    assert!(start.note.unwrap().reason.contains("missing or damaged"));
    assert_eq!(Ledger::read(&ledger_at).unwrap().active, None);

    // A technician put another model into model.bundle: the station runs it.
    std::fs::write(slots.join("b.warble"), &newer).unwrap();
    let mut ledger = Ledger::read(&ledger_at).unwrap();
    ledger.active = Some(in_b);
    ledger.write(&ledger_at).unwrap();
    std::fs::write(&configured, demo::resigned("0.4.0", &key(1), |_, _| {})).unwrap();
    let start = Ledger::start(slots, &configured).unwrap();
    assert_eq!(start.bundle, configured);
    assert!(
        start.note.unwrap().reason.contains("model.bundle"),
        "the change is said"
    );
    // ... and a corrupt ledger stops the start, named: forgetting it would let old
    // bundles back in.
    std::fs::write(&ledger_at, b"{ not json").unwrap();
    let err = Ledger::start(slots, &configured).unwrap_err();
    assert!(err.contains("not a model ledger"), "{err}");
}
