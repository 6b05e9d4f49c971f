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
