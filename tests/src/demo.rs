//! The repository's demo model: the signed synthetic-bird bundle and its key, for tests
//! that need a real model without training one.

use std::path::PathBuf;

use warble_core::bundle::{Bundle, Limits, PublicKey, TrustedKeys};

/// A file of the repository, from its root.
pub fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The demo bundle (`models/demo/warble-demo-0.1.0.warble`), verified with its key.
///
/// # Panics
/// When the committed bundle or key does not verify: every test using it would fail.
#[allow(clippy::expect_used, reason = "a test fixture")]
pub fn bundle() -> Bundle {
    let key = PublicKey::read(repo_file("models/demo/warble-demo.pub")).expect("the demo key");
    let keys: TrustedKeys = [key].into_iter().collect();
    Bundle::open(
        repo_file("models/demo/warble-demo-0.1.0.warble"),
        &keys,
        &Limits::default(),
    )
    .expect("the demo bundle verifies")
}

/// The demo model signed anew by `key` as version `version`, after `edit` changed its
/// manifest and label rows `(code, scientific, common)` (a model made different, or
/// broken, for update tests). The bundle's bytes.
///
/// # Panics
/// When the edited bundle breaks a rule a recorder checks (the builder validates).
#[allow(clippy::expect_used, reason = "a test fixture")]
pub fn resigned(
    version: &str,
    key: &warble_core::bundle::SecretKey,
    edit: impl FnOnce(&mut warble_core::bundle::BundleManifest, &mut Vec<LabelRow>),
) -> Vec<u8> {
    let demo = bundle();
    let mut manifest = demo.manifest().clone();
    manifest.version = version.to_owned();
    let mut rows: Vec<LabelRow> = demo
        .labels()
        .iter()
        .map(|l| (l.code.clone(), l.scientific.clone(), l.common.clone()))
        .collect();
    edit(&mut manifest, &mut rows);
    let labels = warble_core::labels::LabelTable::new(rows).expect("edited labels");
    warble_core::bundle::BundleBuilder::new(
        manifest,
        demo.model().to_vec(),
        labels,
        demo.selftest().clone(),
    )
    .build(key)
    .expect("the edited demo bundle builds")
}

/// A label row: code, scientific name, common name.
pub type LabelRow = (warble_core::labels::SpeciesCode, String, String);
