//! The model a station runs, as one value: a bundle whose signature verified, whose
//! names fit what a collector accepts, and whose self-test passed in the engine that
//! will run it. It is the only way a model enters the agent — at start from a file, and
//! (for model updates) from bytes received over the network — so a model that has not
//! passed every check cannot reach the recorder.

use std::path::Path;

use warble_core::bundle::{Bundle, BundleError, InputSpec, Limits, TrustedKeys};
use warble_core::event::ModelRef;
use warble_infer::{Backend, Engine, EngineConfig, SelfTestError};

use crate::analyze::{AnalyzeConfig, AnalyzeError, Analyzer};

/// Why a bundle was not loaded. Each says which bundle (its file, or `model version`).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The bundle is unreadable, unsigned, signed by an untrusted key, or malformed.
    #[error("{bundle} failed verification; refusing to run it: {source}")]
    Verify {
        /// The bundle's file, or where it came from.
        bundle: String,
        /// What failed.
        source: BundleError,
    },
    /// The engine cannot load the model, or its outputs differ from the bundle's own.
    #[error("{bundle}: self-test: {source}")]
    SelfTest {
        /// The bundle.
        bundle: String,
        /// What failed.
        source: SelfTestError,
    },
    /// A name in the manifest or the labels that no collector would accept in an event.
    #[error("{bundle}: {what}")]
    Text {
        /// The bundle.
        bundle: String,
        /// Which field, and why.
        what: String,
    },
}

/// A verified, self-tested model with its engine.
pub struct LoadedModel {
    bundle: Bundle,
    engine: Engine,
    selftest_diff: f32,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("model", &self.describe())
            .field("sha256", &self.bundle.sha256())
            .field("backend", &self.backend())
            .field("selftest_diff", &self.selftest_diff)
            .finish()
    }
}

impl LoadedModel {
    /// Reads, verifies and self-tests the bundle at `path`.
    ///
    /// # Errors
    /// [`ModelError`] naming the file.
    pub fn open(
        path: &Path,
        keys: &TrustedKeys,
        engine: &EngineConfig,
    ) -> Result<Self, ModelError> {
        let name = path.display().to_string();
        let bundle =
            Bundle::open(path, keys, &Limits::default()).map_err(|source| ModelError::Verify {
                bundle: name.clone(),
                source,
            })?;
        Self::load(bundle, &name, engine)
    }

    /// Self-tests a verified `bundle` (called `name` in errors) in a new engine.
    ///
    /// # Errors
    /// [`ModelError::SelfTest`] or [`ModelError::Text`].
    pub fn load(bundle: Bundle, name: &str, engine: &EngineConfig) -> Result<Self, ModelError> {
        check_names(&bundle).map_err(|what| ModelError::Text {
            bundle: name.to_owned(),
            what,
        })?;
        let (engine_loaded, selftest_diff) =
            warble_infer::load_bundle(&bundle, engine).map_err(|source| ModelError::SelfTest {
                bundle: name.to_owned(),
                source,
            })?;
        if engine_loaded.backend() == Backend::Tract && engine.threads > 1 {
            // ONNX Runtime was not found (engine = "auto"): said, not silently ignored.
            tracing::warn!(
                "{} inference threads are not applied: the model runs on tract, which uses one",
                engine.threads
            );
        }
        Ok(Self {
            bundle,
            engine: engine_loaded,
            selftest_diff,
        })
    }

    /// The verified bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The model's id and version, as events carry them.
    pub fn model_ref(&self) -> ModelRef {
        let m = self.bundle.manifest();
        ModelRef {
            id: m.model_id.clone(),
            version: m.version.clone(),
        }
    }

    /// `id version, N classes`: how messages name the model.
    pub fn describe(&self) -> String {
        let m = self.bundle.manifest();
        format!("{} {}, {} classes", m.model_id, m.version, m.num_classes)
    }

    /// The engine the self-test passed in.
    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// The self-test's largest difference from the bundle's expected outputs.
    pub fn selftest_diff(&self) -> f32 {
        self.selftest_diff
    }

    /// The model's sample rate and the grid, in samples, window starts must lie on (the
    /// front end's frame hop; 1 for waveform models).
    pub fn rate_and_grid(&self) -> (u32, usize) {
        match &self.bundle.manifest().input {
            InputSpec::Logmel { frontend, .. } => (frontend.sample_rate_hz, frontend.hop_length),
            InputSpec::Waveform { sample_rate_hz, .. } => (*sample_rate_hz, 1),
        }
    }

    /// The model made ready to analyse audio with `cfg`.
    ///
    /// # Errors
    /// [`AnalyzeError`] if the bundle's front end or window does not work with `cfg`.
    pub fn into_analyzer(self, cfg: AnalyzeConfig) -> Result<Analyzer, AnalyzeError> {
        Analyzer::new(&self.bundle, self.engine, cfg)
    }
}

/// Every event must pass a collector's checks: names and ids of bounded length.
fn check_names(bundle: &Bundle) -> Result<(), String> {
    let m = bundle.manifest();
    for (field, text) in [("model_id", &m.model_id), ("version", &m.version)] {
        warble_core::event::check_text(field, text).map_err(|e| format!("the manifest's {e}"))?;
    }
    for l in bundle.labels().iter() {
        for (field, text) in [("scientific", &l.scientific), ("common", &l.common)] {
            warble_core::event::check_text(field, text)
                .map_err(|e| format!("label {} ({}): {e}", l.index, l.code))?;
        }
    }
    Ok(())
}
