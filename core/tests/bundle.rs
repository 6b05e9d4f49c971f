//! Bundle verification: a well-formed bundle verifies; every kind of tampering is rejected
//! with its own error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;

use tar::{Builder, EntryType, Header};
use warble_core::bundle::{
    BUNDLE_SCHEMA, Bundle, BundleBuilder, BundleError, BundleManifest, InputSpec, Limits,
    OutputActivation, SecretKey, SelfTest, TensorF32, Thresholds, TrustedKeys,
};
use warble_core::{FrontEndConfig, LabelTable, SpeciesCode};

fn labels() -> LabelTable {
    LabelTable::new(
        ["amerob", "norcar", "blujay"]
            .iter()
            .map(|c| {
                (
                    SpeciesCode::new(*c).unwrap(),
                    format!("{c} sci"),
                    format!("{c} common"),
                )
            })
            .collect(),
    )
    .unwrap()
}

fn manifest() -> BundleManifest {
    let frontend = FrontEndConfig::birdset();
    let window = 32_000;
    let frames = frontend.frames_for(window) as i64;
    BundleManifest {
        schema: BUNDLE_SCHEMA.into(),
        model_id: "test-model".into(),
        version: "0.1.0".into(),
        created: "2026-11-25T12:00:00Z".into(),
        input_shape: vec![-1, 1, frontend.n_mels as i64, frames],
        input: InputSpec::Logmel {
            frontend,
            window_samples: window,
        },
        output_shape: vec![-1, 3],
        output_activation: OutputActivation::Sigmoid,
        num_classes: 3,
        thresholds: Thresholds {
            default: 0.5,
            per_class: BTreeMap::from([("norcar".to_owned(), 0.3)]),
            method: "test".into(),
        },
        recipe: serde_json::Value::Null,
        metrics: serde_json::Value::Null,
        selftest_tolerance: 1e-4,
        files: BTreeMap::new(),
    }
}

fn selftest(m: &BundleManifest) -> SelfTest {
    let shape: Vec<usize> = m.input_shape[1..].iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    SelfTest {
        input: TensorF32 {
            shape: [vec![1], shape].concat(),
            data: (0..n).map(|i| (i % 17) as f32 * 0.1).collect(),
        },
        expected: TensorF32 {
            shape: vec![1, 3],
            data: vec![0.25, -1.0, 2.0],
        },
    }
}

fn key() -> SecretKey {
    SecretKey::from_seed([42; 32], "test operator")
}

fn trusted() -> TrustedKeys {
    [key().public().clone()].into_iter().collect()
}

fn good_bundle() -> Vec<u8> {
    let m = manifest();
    let st = selftest(&m);
    BundleBuilder::new(m, b"not really onnx".to_vec(), labels(), st)
        .build(&key())
        .unwrap()
}

fn verify(bytes: &[u8]) -> Result<Bundle, BundleError> {
    Bundle::from_bytes(bytes, &trusted(), &Limits::default())
}

/// The bundle's entries, in order.
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// A tar with raw names and types, bypassing the `tar` crate's own path checks.
fn raw_tar(entries: &[(&[u8], EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut header = Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Rebuilds the tar from entries (names are plain, so the safe path setter is fine).
fn retar(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let list: Vec<(&[u8], EntryType, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_bytes(), EntryType::Regular, d.as_slice()))
        .collect();
    raw_tar(&list)
}

/// Replaces the manifest and signs it again with the trusted key, so that checks behind
/// the signature can be reached.
fn resigned(mut edit: impl FnMut(&mut serde_json::Value)) -> Vec<(String, Vec<u8>)> {
    let mut e = entries(&good_bundle());
    let mut json: serde_json::Value = serde_json::from_slice(&e[0].1).unwrap();
    edit(&mut json);
    let bytes = serde_json::to_vec_pretty(&json).unwrap();
    let sig = serde_json::json!({
        "algorithm": "ed25519",
        "key_id": key().public().id().to_string(),
        "signature": hex::encode(key().sign(&bytes)),
    });
    e[0].1 = bytes;
    e[1].1 = serde_json::to_vec(&sig).unwrap();
    e
}

#[test]
fn a_built_bundle_verifies() {
    let bytes = good_bundle();
    let names: Vec<String> = entries(&bytes).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "manifest.json",
            "signature",
            "model.onnx",
            "labels.csv",
            "selftest.bin"
        ]
    );
    let b = verify(&bytes).unwrap();
    assert_eq!(b.model(), b"not really onnx");
    assert_eq!(b.labels().len(), 3);
    assert_eq!(b.signed_by(), key().public().id());
    assert_eq!(b.threshold(0), 0.5);
    assert_eq!(b.threshold(1), 0.3);
    assert_eq!(b.selftest().check(&[0.25, -1.0, 2.0], 1e-4).unwrap(), 0.0);
    // Building is deterministic: the same inputs give the same bytes.
    assert_eq!(bytes, good_bundle());
}

#[test]
fn a_flipped_byte_in_the_model_is_a_hash_mismatch() {
    let mut e = entries(&good_bundle());
    e[2].1[3] ^= 0x01;
    let err = verify(&retar(&e)).unwrap_err();
    assert!(
        matches!(&err, BundleError::HashMismatch { file, .. } if file == "model.onnx"),
        "{err}"
    );
}

#[test]
fn an_edited_manifest_breaks_the_signature() {
    let mut e = entries(&good_bundle());
    let text = String::from_utf8(e[0].1.clone()).unwrap();
    e[0].1 = text
        .replace("\"default\": 0.5", "\"default\": 0.1")
        .into_bytes();
    assert_ne!(
        e[0].1,
        entries(&good_bundle())[0].1,
        "edit must change the manifest"
    );
    let err = verify(&retar(&e)).unwrap_err();
    assert!(matches!(err, BundleError::BadSignature(_)), "{err}");
}

#[test]
fn a_bundle_signed_by_another_key_is_refused() {
    let m = manifest();
    let st = selftest(&m);
    let other = SecretKey::from_seed([9; 32], "stranger");
    let bytes = BundleBuilder::new(m, b"x".to_vec(), labels(), st)
        .build(&other)
        .unwrap();
    let err = verify(&bytes).unwrap_err();
    assert_eq!(
        err,
        BundleError::UnknownKey(other.public().id().to_string())
    );
    assert!(err.to_string().contains("not among the trusted keys"));
    // No trusted keys at all: nothing verifies.
    let none = Bundle::from_bytes(&good_bundle(), &TrustedKeys::new(), &Limits::default());
    assert!(matches!(none, Err(BundleError::UnknownKey(_))));
}

#[test]
fn unsafe_entries_are_rejected() {
    let cases: [(&[u8], EntryType, &str); 6] = [
        (b"../evil.sh", EntryType::Regular, "traversal"),
        (b"/etc/cron.d/x", EntryType::Regular, "absolute"),
        (b"dir/model.onnx", EntryType::Regular, "directories"),
        (b"model.onnx", EntryType::Symlink, "symbolic link"),
        (b"model.onnx", EntryType::Char, "device"),
        (b"model.onnx", EntryType::Fifo, "FIFO"),
    ];
    for (name, kind, reason) in cases {
        let tar = raw_tar(&[
            (b"manifest.json", EntryType::Regular, b"{}"),
            (name, kind, b""),
        ]);
        let err = verify(&tar).unwrap_err();
        assert!(
            matches!(&err, BundleError::UnsafeEntry { reason: r, .. } if r.contains(reason)),
            "{}: {err}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn a_truncated_bundle_is_malformed() {
    let bytes = good_bundle();
    // Cut inside the data of model.onnx (the third entry: 3 headers + 2 data blocks in).
    let cut = 512 * 5 + 4;
    let err = verify(&bytes[..cut]).unwrap_err();
    assert!(
        matches!(err, BundleError::Archive(_)),
        "cut at {cut}: {err}"
    );
    // Cut at an entry boundary: the archive ends early and files are missing.
    let err = verify(&bytes[..512 * 4]).unwrap_err();
    assert!(matches!(err, BundleError::MissingFile(_)), "{err}");
    assert!(verify(b"").is_err());
    assert!(verify(&[0x55; 700]).is_err());
}

#[test]
fn a_wrong_shape_is_refused() {
    // Input shape that does not match the front end and window.
    let e = resigned(|m| m["input_shape"] = serde_json::json!([-1, 1, 128, 99]));
    let err = verify(&retar(&e)).unwrap_err();
    assert!(
        matches!(&err, BundleError::ManifestInvalid { field, .. } if field == "input_shape"),
        "{err}"
    );
    // More classes than labels.
    let e = resigned(|m| {
        m["num_classes"] = serde_json::json!(4);
        m["output_shape"] = serde_json::json!([-1, 4]);
    });
    let err = verify(&retar(&e)).unwrap_err();
    assert!(
        matches!(&err, BundleError::Labels(r) if r.contains("3 rows")),
        "{err}"
    );
}

#[test]
fn self_test_vectors_must_fit_the_manifest() {
    let m = manifest();
    let mut st = selftest(&m);
    st.expected = TensorF32 {
        shape: vec![1, 4],
        data: vec![0.0; 4],
    };
    let err = BundleBuilder::new(m, b"x".to_vec(), labels(), st)
        .build(&key())
        .unwrap_err();
    assert!(matches!(err, BundleError::SelfTestSyntax(_)), "{err}");
}

#[test]
fn extra_duplicate_and_missing_files_are_named() {
    let mut e = entries(&good_bundle());
    e.push(("notes.txt".into(), b"hello".to_vec()));
    assert_eq!(
        verify(&retar(&e)).unwrap_err(),
        BundleError::UnexpectedFile("notes.txt".into())
    );
    let mut e = entries(&good_bundle());
    e.push(e[2].clone());
    assert_eq!(
        verify(&retar(&e)).unwrap_err(),
        BundleError::DuplicateEntry("model.onnx".into())
    );
    let mut e = entries(&good_bundle());
    e.remove(1);
    assert_eq!(
        verify(&retar(&e)).unwrap_err(),
        BundleError::MissingFile("signature".into())
    );
    let mut e = entries(&good_bundle());
    e.remove(4);
    assert_eq!(
        verify(&retar(&e)).unwrap_err(),
        BundleError::MissingFile("selftest.bin".into())
    );
}

#[test]
fn limits_are_enforced_before_reading() {
    let bytes = good_bundle();
    let small = Limits {
        max_bundle_bytes: 1024,
        ..Limits::default()
    };
    assert!(matches!(
        Bundle::from_bytes(&bytes, &trusted(), &small),
        Err(BundleError::Oversize { .. })
    ));
    let small_entries = Limits {
        max_entry_bytes: 64,
        ..Limits::default()
    };
    let err = Bundle::from_bytes(&bytes, &trusted(), &small_entries).unwrap_err();
    assert!(
        matches!(&err, BundleError::Oversize { what, .. } if what == "manifest.json"),
        "{err}"
    );
}

#[test]
fn per_class_thresholds_must_name_labels() {
    let e = resigned(|m| m["thresholds"]["per_class"] = serde_json::json!({"dodo": 0.2}));
    let err = verify(&retar(&e)).unwrap_err();
    assert!(
        matches!(&err, BundleError::Labels(r) if r.contains("dodo")),
        "{err}"
    );
}

#[test]
fn bundle_files_are_read_with_a_size_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.warble");
    std::fs::write(&path, good_bundle()).unwrap();
    Bundle::open(&path, &trusted(), &Limits::default()).unwrap();
    let err = Bundle::open(
        dir.path().join("nope.warble"),
        &trusted(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::Io { .. }), "{err}");
}

mod fuzz {
    //! Random damage to a valid bundle: the reader never panics, never accepts a changed
    //! bundle, and always names what is wrong. (A cargo-fuzz target over the same entry point
    //! lives in `fuzz/` for longer runs on a nightly toolchain.)
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn damaged_bundles_are_rejected_without_panics(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let original = good_bundle();
            let mut bytes = original.clone();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            match verify(&bytes) {
                // Only changes the format ignores (tar padding, unused header fields)
                // may leave the bundle valid; its content must then be the original's.
                Ok(b) => {
                    prop_assert_eq!(b.model(), b"not really onnx".as_slice());
                    prop_assert_eq!(b.labels().len(), 3);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert!(verify(&bytes).is_err());
        }
    }
}

#[test]
fn a_file_that_is_not_a_tar_is_named_as_such() {
    let err =
        verify(b"# README\nnot a bundle at all, but long enough to be read as one").unwrap_err();
    assert!(err.to_string().contains("not a Warble bundle"), "{err}");
}
