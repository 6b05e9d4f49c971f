//! Model bundles (`.warble`): the only form in which a model reaches a recorder.
//!
//! A bundle is a plain tar of flat files: `manifest.json`, `signature` (ed25519 over the
//! exact manifest bytes), `model.onnx`, `labels.csv` and `selftest.bin`. The manifest holds
//! the SHA-256 of every other file, so one signature covers the whole bundle. Writing
//! ([`BundleBuilder`]) and verifying ([`Bundle::from_bytes`]) live here together, so the
//! exporter and the recorder cannot disagree about the format.
//!
//! Verification checks everything that can be checked without running the model; the
//! caller that owns an inference engine runs the self-test with [`SelfTest::check`].

mod archive;
mod keys;
mod manifest;
pub mod offer;
mod selftest;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use archive::Limits;
pub use keys::{KeyError, KeyId, PublicKey, SecretKey, TrustedKeys};
pub use manifest::{
    BUNDLE_SCHEMA, BundleManifest, InputSpec, OutputActivation, REQUIRED_FILES, Thresholds,
    sha256_hex,
};
pub use selftest::{SelfTest, TensorF32};

use crate::labels::{LabelTable, SpeciesCode};

/// Name of the manifest inside the tar.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Name of the signature inside the tar.
pub const SIGNATURE_FILE: &str = "signature";
/// Signature algorithm written into and accepted from `signature`.
pub const SIGNATURE_ALGORITHM: &str = "ed25519";

/// Why a bundle is rejected. Each failure has its own variant so operators, logs and tests
/// can tell them apart.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum BundleError {
    /// The bundle could not be read from disk.
    #[error("cannot read bundle {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The bytes are not a well-formed tar (truncated, corrupt header, short entry).
    #[error("bundle archive is malformed: {0}")]
    Archive(String),
    /// A tar entry that is not a plain, flat regular file (path traversal, absolute path,
    /// directory, link, device, FIFO…).
    #[error("bundle entry `{name}` rejected: {reason}")]
    UnsafeEntry {
        /// The entry name as stored.
        name: String,
        /// Why it is unsafe.
        reason: String,
    },
    /// The same name appears twice in the tar.
    #[error("bundle entry `{0}` appears more than once")]
    DuplicateEntry(String),
    /// A file the manifest does not list.
    #[error("bundle contains `{0}`, which the manifest does not list")]
    UnexpectedFile(String),
    /// Something exceeds [`Limits`].
    #[error("bundle too large: {what} is {size} bytes, limit {limit}")]
    Oversize {
        /// What is too large.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Manifest JSON does not parse or has unknown fields.
    #[error("manifest.json: {0}")]
    ManifestSyntax(String),
    /// A manifest field breaks a rule.
    #[error("manifest.json: {field}: {reason}")]
    ManifestInvalid {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A required file is not listed or not present.
    #[error("bundle is missing {0}")]
    MissingFile(String),
    /// A file's SHA-256 differs from the manifest.
    #[error("{file}: SHA-256 mismatch (manifest {expected}, file {actual})")]
    HashMismatch {
        /// The file.
        file: String,
        /// Hash listed in the manifest.
        expected: String,
        /// Hash of the bytes found.
        actual: String,
    },
    /// `signature` does not parse.
    #[error("signature: {0}")]
    SignatureSyntax(String),
    /// The bundle is signed by a key that is not trusted here.
    #[error("bundle is signed by key {0}, which is not among the trusted keys")]
    UnknownKey(String),
    /// The signature does not match the manifest under the named key.
    #[error("signature by key {0} does not match the manifest (tampered or corrupt)")]
    BadSignature(String),
    /// `labels.csv` does not parse or disagrees with the manifest.
    #[error("labels.csv: {0}")]
    Labels(String),
    /// `selftest.bin` does not parse or its shapes disagree with the manifest.
    #[error("selftest.bin: {0}")]
    SelfTestSyntax(String),
    /// The model's output on the self-test input differs from the expected output.
    #[error(
        "self-test failed: max |difference| {max_diff:e} exceeds tolerance {tolerance:e} \
         (worst at output {worst_index})"
    )]
    SelfTestFailed {
        /// Largest absolute difference (infinite for NaN/Inf outputs).
        max_diff: f32,
        /// The manifest's tolerance.
        tolerance: f32,
        /// Flat index of the worst element.
        worst_index: usize,
    },
    /// The bundle cannot be written.
    #[error("cannot write bundle: {0}")]
    Write(String),
}

/// The `signature` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    algorithm: String,
    key_id: String,
    /// Hex of the 64-byte ed25519 signature over the manifest bytes.
    signature: String,
}

/// A bundle whose signature, hashes, labels and self-test vectors have all been checked.
#[derive(Debug, Clone)]
pub struct Bundle {
    manifest: BundleManifest,
    model: Vec<u8>,
    labels: LabelTable,
    selftest: SelfTest,
    signed_by: KeyId,
    sha256: String,
}

impl Bundle {
    /// Reads and verifies a bundle file (size checked before reading).
    ///
    /// # Errors
    /// [`BundleError::Io`], or any verification failure of [`Self::from_bytes`].
    pub fn open(
        path: impl AsRef<Path>,
        trusted: &TrustedKeys,
        limits: &Limits,
    ) -> Result<Self, BundleError> {
        let path = path.as_ref();
        let io = |e: std::io::Error| BundleError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        limits.check_bundle_size(size)?;
        let bytes = crate::files::read_limited(path, limits.max_bundle_bytes).map_err(io)?;
        Self::from_bytes(&bytes, trusted, limits)
    }

    /// Verifies a bundle held in memory (e.g. received over MQTT): limits, tar safety,
    /// signature by a trusted key, manifest rules, file hashes, labels and self-test shapes.
    ///
    /// # Errors
    /// The first failure found, as its own [`BundleError`] variant.
    pub fn from_bytes(
        bytes: &[u8],
        trusted: &TrustedKeys,
        limits: &Limits,
    ) -> Result<Self, BundleError> {
        limits.check_bundle_size(bytes.len() as u64)?;
        let mut files = archive::read_entries(bytes, limits)?;
        let manifest_bytes = files
            .remove(MANIFEST_FILE)
            .ok_or_else(|| BundleError::MissingFile(MANIFEST_FILE.to_owned()))?;
        let signature_bytes = files
            .remove(SIGNATURE_FILE)
            .ok_or_else(|| BundleError::MissingFile(SIGNATURE_FILE.to_owned()))?;
        let signed_by = verify_signature(&manifest_bytes, &signature_bytes, trusted)?;
        let manifest = BundleManifest::from_json(&manifest_bytes)?;

        if let Some(name) = files.keys().find(|n| !manifest.files.contains_key(*n)) {
            return Err(BundleError::UnexpectedFile(name.clone()));
        }
        for name in manifest.files.keys() {
            let bytes = files
                .get(name)
                .ok_or_else(|| BundleError::MissingFile(name.clone()))?;
            manifest.verify_file(name, bytes)?;
        }
        let take = |files: &mut BTreeMap<String, Vec<u8>>, name: &str| {
            files
                .remove(name)
                .ok_or_else(|| BundleError::MissingFile(name.to_owned()))
        };
        let model = take(&mut files, "model.onnx")?;
        let labels = LabelTable::from_reader(take(&mut files, "labels.csv")?.as_slice())
            .map_err(|e| BundleError::Labels(e.to_string()))?;
        check_labels(&manifest, &labels)?;
        let selftest = SelfTest::decode(&take(&mut files, "selftest.bin")?)?;
        selftest.check_shapes(&manifest)?;
        Ok(Self {
            manifest,
            model,
            labels,
            selftest,
            signed_by,
            sha256: sha256_hex(bytes),
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// The ONNX model bytes.
    pub fn model(&self) -> &[u8] {
        &self.model
    }

    /// The label table (row `i` is output `i`).
    pub fn labels(&self) -> &LabelTable {
        &self.labels
    }

    /// The self-test vectors; run the model on `selftest().input` and call
    /// [`SelfTest::check`] before trusting the bundle.
    pub fn selftest(&self) -> &SelfTest {
        &self.selftest
    }

    /// The key that signed the bundle.
    pub fn signed_by(&self) -> &KeyId {
        &self.signed_by
    }

    /// SHA-256 of the whole bundle file (identifies exactly what a station runs).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The decision threshold of output `index` (per-class value, else the default).
    pub fn threshold(&self, index: usize) -> f32 {
        self.labels
            .get(index)
            .and_then(|l| self.manifest.thresholds.per_class.get(l.code.as_str()))
            .copied()
            .unwrap_or(self.manifest.thresholds.default)
    }
}

fn verify_signature(
    manifest: &[u8],
    signature: &[u8],
    trusted: &TrustedKeys,
) -> Result<KeyId, BundleError> {
    let file: SignatureFile = serde_json::from_slice(signature)
        .map_err(|e| BundleError::SignatureSyntax(e.to_string()))?;
    if file.algorithm != SIGNATURE_ALGORITHM {
        return Err(BundleError::SignatureSyntax(format!(
            "algorithm `{}` is not `{SIGNATURE_ALGORITHM}`",
            file.algorithm
        )));
    }
    let sig = keys::parse_signature(&file.signature).map_err(BundleError::SignatureSyntax)?;
    let key = trusted
        .get(&file.key_id)
        .ok_or_else(|| BundleError::UnknownKey(file.key_id.clone()))?;
    key.verify(manifest, &sig)
        .map_err(|()| BundleError::BadSignature(file.key_id.clone()))?;
    Ok(key.id().clone())
}

fn check_labels(manifest: &BundleManifest, labels: &LabelTable) -> Result<(), BundleError> {
    if labels.len() != manifest.num_classes {
        return Err(BundleError::Labels(format!(
            "{} rows, but the manifest declares {} classes",
            labels.len(),
            manifest.num_classes
        )));
    }
    for code in manifest.thresholds.per_class.keys() {
        let known = SpeciesCode::new(code.clone())
            .ok()
            .and_then(|c| labels.index_of(&c))
            .is_some();
        if !known {
            return Err(BundleError::Labels(format!(
                "thresholds.per_class names `{code}`, which is not a label"
            )));
        }
    }
    Ok(())
}

/// Assembles and signs a bundle. The manifest's `files` map is filled in here.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    manifest: BundleManifest,
    model: Vec<u8>,
    labels: LabelTable,
    selftest: SelfTest,
}

impl BundleBuilder {
    /// A builder from its parts; `manifest.files` is overwritten.
    pub fn new(
        manifest: BundleManifest,
        model: Vec<u8>,
        labels: LabelTable,
        selftest: SelfTest,
    ) -> Self {
        Self {
            manifest,
            model,
            labels,
            selftest,
        }
    }

    /// Hashes the files, validates the result exactly as a recorder would (except running
    /// the model), signs the manifest with `key` and writes the tar.
    ///
    /// # Errors
    /// Any rule the bundle would break on the recorder, or [`BundleError::Write`].
    pub fn build(mut self, key: &SecretKey) -> Result<Vec<u8>, BundleError> {
        let mut labels_csv = Vec::new();
        self.labels
            .write_to(&mut labels_csv)
            .map_err(|e| BundleError::Write(e.to_string()))?;
        let selftest = self.selftest.encode();
        let payload: [(&str, &[u8]); 3] = [
            ("model.onnx", &self.model),
            ("labels.csv", &labels_csv),
            ("selftest.bin", &selftest),
        ];
        self.manifest.files = payload
            .iter()
            .map(|(name, bytes)| ((*name).to_owned(), sha256_hex(bytes)))
            .collect();
        self.manifest.validate()?;
        check_labels(&self.manifest, &self.labels)?;
        self.selftest.check_shapes(&self.manifest)?;
        let mut manifest_bytes = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| BundleError::Write(e.to_string()))?;
        manifest_bytes.push(b'\n');
        let signature = SignatureFile {
            algorithm: SIGNATURE_ALGORITHM.to_owned(),
            key_id: key.public().id().to_string(),
            signature: hex::encode(key.sign(&manifest_bytes)),
        };
        let signature_bytes =
            serde_json::to_vec(&signature).map_err(|e| BundleError::Write(e.to_string()))?;
        let mut entries: Vec<(&str, &[u8])> = vec![
            (MANIFEST_FILE, &manifest_bytes),
            (SIGNATURE_FILE, &signature_bytes),
        ];
        entries.extend(payload);
        archive::write_entries(&entries).map_err(|e| BundleError::Write(e.to_string()))
    }
}
