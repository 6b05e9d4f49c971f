//! The bundle manifest (`warble.bundle/1`) and the rules it must satisfy on its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BundleError;
use crate::frontend::FrontEndConfig;

/// Schema string of the manifest.
pub const BUNDLE_SCHEMA: &str = "warble.bundle/1";

/// Files every bundle carries besides the manifest and the signature.
pub const REQUIRED_FILES: [&str; 3] = ["model.onnx", "labels.csv", "selftest.bin"];

/// What the model takes as input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputSpec {
    /// Standardised log-mel `(batch, 1, n_mels, frames)` from Warble's front end.
    Logmel {
        /// The exact front end the model was trained with.
        frontend: FrontEndConfig,
        /// Window length in samples at the front end's rate.
        window_samples: usize,
    },
    /// Raw mono waveform `(batch, samples)`, for models with their own features
    /// (BirdNET- or Perch-style imports).
    Waveform {
        /// Sample rate the model expects, Hz.
        sample_rate_hz: u32,
        /// Window length in samples.
        window_samples: usize,
    },
}

/// How raw outputs become probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputActivation {
    /// Outputs are logits: apply a sigmoid (multi-label).
    Sigmoid,
    /// Outputs are already probabilities.
    None,
}

/// Decision thresholds on probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Threshold for classes without their own.
    pub default: f32,
    /// Per-class thresholds by species code (e.g. calibrated to a target precision).
    #[serde(default)]
    pub per_class: BTreeMap<String, f32>,
    /// How the per-class values were chosen (free text, shown by `inspect`).
    #[serde(default)]
    pub method: String,
}

/// The manifest of a model bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// Always [`BUNDLE_SCHEMA`].
    pub schema: String,
    /// Model id (stable across versions).
    pub model_id: String,
    /// Semantic version `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Model input.
    pub input: InputSpec,
    /// Input tensor shape with `-1` for the batch axis.
    pub input_shape: Vec<i64>,
    /// Output tensor shape with `-1` for the batch axis.
    pub output_shape: Vec<i64>,
    /// Output activation.
    pub output_activation: OutputActivation,
    /// Number of classes (rows of `labels.csv`).
    pub num_classes: usize,
    /// Decision thresholds.
    pub thresholds: Thresholds,
    /// Training recipe, including attack settings (as written by the trainer).
    #[serde(default)]
    pub recipe: serde_json::Value,
    /// Evaluation metrics (as written by the trainer).
    #[serde(default)]
    pub metrics: serde_json::Value,
    /// Maximum absolute difference allowed in the self-test.
    pub selftest_tolerance: f32,
    /// SHA-256 (lower-case hex) of every file in the bundle except manifest and signature.
    pub files: BTreeMap<String, String>,
}

/// `MAJOR.MINOR.PATCH` as numbers.
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split('.').map(|p| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    });
    let triple = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(triple)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl BundleManifest {
    /// Parses and validates manifest bytes.
    ///
    /// # Errors
    /// [`BundleError::ManifestSyntax`] or the first rule broken (see [`Self::validate`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let manifest: Self = serde_json::from_slice(bytes)
            .map_err(|e| BundleError::ManifestSyntax(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The version as `(major, minor, patch)`, for ordering versions of one model (the
    /// version was checked when the manifest was read; an unchecked one orders first).
    pub fn version_triple(&self) -> (u64, u64, u64) {
        parse_version(&self.version).unwrap_or_default()
    }

    /// Checks the manifest's internal consistency: schema, semver, shapes against the input
    /// spec and class count, thresholds in `[0, 1]`, front end supported, required files
    /// listed with well-formed hashes.
    ///
    /// # Errors
    /// [`BundleError::ManifestInvalid`] naming the field, or [`BundleError::MissingFile`].
    pub fn validate(&self) -> Result<(), BundleError> {
        let bad = |field: &str, reason: String| {
            Err(BundleError::ManifestInvalid {
                field: field.to_owned(),
                reason,
            })
        };
        if self.schema != BUNDLE_SCHEMA {
            return bad(
                "schema",
                format!("`{}` is not `{BUNDLE_SCHEMA}`", self.schema),
            );
        }
        if self.model_id.is_empty() || self.model_id.contains(['/', '\\', ' ']) {
            return bad(
                "model_id",
                format!(
                    "`{}` must be non-empty without / \\ or spaces",
                    self.model_id
                ),
            );
        }
        if parse_version(&self.version).is_none() {
            return bad(
                "version",
                format!("`{}` is not MAJOR.MINOR.PATCH", self.version),
            );
        }
        let expected_input: Vec<i64> = match &self.input {
            InputSpec::Logmel {
                frontend,
                window_samples,
            } => {
                frontend
                    .validate()
                    .map_err(|e| BundleError::ManifestInvalid {
                        field: "input.frontend".to_owned(),
                        reason: e.to_string(),
                    })?;
                let frames = frontend.frames_for(*window_samples);
                vec![-1, 1, frontend.n_mels as i64, frames as i64]
            }
            InputSpec::Waveform {
                sample_rate_hz,
                window_samples,
            } => {
                if *sample_rate_hz == 0 || *window_samples == 0 {
                    return bad(
                        "input",
                        "waveform rate and window must be positive".to_owned(),
                    );
                }
                vec![-1, *window_samples as i64]
            }
        };
        if self.input_shape != expected_input {
            return bad(
                "input_shape",
                format!(
                    "{:?} does not match the input spec {:?}",
                    self.input_shape, expected_input
                ),
            );
        }
        if self.num_classes == 0 {
            return bad("num_classes", "must be positive".to_owned());
        }
        if self.output_shape != [-1, self.num_classes as i64] {
            return bad(
                "output_shape",
                format!(
                    "{:?} is not [-1, num_classes = {}]",
                    self.output_shape, self.num_classes
                ),
            );
        }
        let in_range = |t: f32| (0.0..=1.0).contains(&t);
        if !in_range(self.thresholds.default) {
            return bad(
                "thresholds.default",
                format!("{} outside [0, 1]", self.thresholds.default),
            );
        }
        if let Some((code, t)) = self
            .thresholds
            .per_class
            .iter()
            .find(|(_, t)| !in_range(**t))
        {
            return bad(
                &format!("thresholds.per_class.{code}"),
                format!("{t} outside [0, 1]"),
            );
        }
        if !(self.selftest_tolerance.is_finite() && self.selftest_tolerance > 0.0) {
            return bad(
                "selftest_tolerance",
                "must be finite and positive".to_owned(),
            );
        }
        for file in REQUIRED_FILES {
            if !self.files.contains_key(file) {
                return Err(BundleError::MissingFile(file.to_owned()));
            }
        }
        for (file, hash) in &self.files {
            if file.contains(['/', '\\']) || file.starts_with('.') || file == "manifest.json" {
                return bad(
                    &format!("files.{file}"),
                    "not a plain bundle file name".to_owned(),
                );
            }
            if hash.len() != 64
                || !hash
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return bad(
                    &format!("files.{file}"),
                    format!("`{hash}` is not a SHA-256 hex digest"),
                );
            }
        }
        Ok(())
    }

    /// Checks a file's bytes against the hash in the manifest.
    ///
    /// # Errors
    /// [`BundleError::MissingFile`] if the manifest does not list it;
    /// [`BundleError::HashMismatch`] if the bytes differ.
    pub fn verify_file(&self, name: &str, bytes: &[u8]) -> Result<(), BundleError> {
        let expected = self
            .files
            .get(name)
            .ok_or_else(|| BundleError::MissingFile(name.to_owned()))?;
        let actual = sha256_hex(bytes);
        if &actual != expected {
            return Err(BundleError::HashMismatch {
                file: name.to_owned(),
                expected: expected.clone(),
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> BundleManifest {
        let files = REQUIRED_FILES
            .iter()
            .map(|f| (f.to_string(), sha256_hex(f.as_bytes())))
            .collect();
        BundleManifest {
            schema: BUNDLE_SCHEMA.into(),
            model_id: "demo-convnext".into(),
            version: "1.2.0".into(),
            created: "2026-11-25T12:00:00Z".into(),
            input: InputSpec::Logmel {
                frontend: FrontEndConfig::birdset(),
                window_samples: 160_000,
            },
            input_shape: vec![-1, 1, 128, 501],
            output_shape: vec![-1, 10],
            output_activation: OutputActivation::Sigmoid,
            num_classes: 10,
            thresholds: Thresholds {
                default: 0.5,
                per_class: BTreeMap::new(),
                method: String::new(),
            },
            recipe: serde_json::Value::Null,
            metrics: serde_json::Value::Null,
            selftest_tolerance: 1e-4,
            files,
        }
    }

    #[test]
    fn a_consistent_manifest_round_trips() {
        let m = manifest();
        m.validate().unwrap();
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(BundleManifest::from_json(&bytes).unwrap(), m);
        m.verify_file("labels.csv", b"labels.csv").unwrap();
    }

    #[test]
    fn each_rule_has_its_own_error() {
        let mut m = manifest();
        m.input_shape = vec![-1, 1, 128, 500];
        assert!(
            matches!(m.validate(), Err(BundleError::ManifestInvalid { field, .. }) if field == "input_shape")
        );
        let mut m = manifest();
        m.output_shape = vec![-1, 11];
        assert!(
            matches!(m.validate(), Err(BundleError::ManifestInvalid { field, .. }) if field == "output_shape")
        );
        let mut m = manifest();
        m.version = "1.2".into();
        assert!(
            matches!(m.validate(), Err(BundleError::ManifestInvalid { field, .. }) if field == "version")
        );
        let mut m = manifest();
        m.thresholds.per_class.insert("eurrob1".into(), 1.5);
        assert!(
            matches!(m.validate(), Err(BundleError::ManifestInvalid { field, .. }) if field == "thresholds.per_class.eurrob1")
        );
        let mut m = manifest();
        m.files.remove("selftest.bin");
        assert_eq!(
            m.validate(),
            Err(BundleError::MissingFile("selftest.bin".into()))
        );
        let mut m = manifest();
        m.files.insert("../evil".into(), sha256_hex(b""));
        assert!(
            matches!(m.validate(), Err(BundleError::ManifestInvalid { field, .. }) if field == "files.../evil")
        );
        let m = manifest();
        assert!(matches!(
            m.verify_file("model.onnx", b"tampered"),
            Err(BundleError::HashMismatch { .. })
        ));
        assert!(matches!(
            BundleManifest::from_json(b"{\"schema\": 1}"),
            Err(BundleError::ManifestSyntax(_))
        ));
    }
}
