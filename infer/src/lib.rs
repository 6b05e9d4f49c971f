//! One inference interface over two engines, for Warble's exported ONNX models.
//!
//! - **ONNX Runtime** through `ort`, loaded at run time from a shared library (the PyPI
//!   wheel's `libonnxruntime.so`): fastest, the default on recorders.
//! - **tract**, pure Rust (cargo feature `tract`, on by default): no shared library to
//!   install, used when ONNX Runtime cannot be found, and as the independent second engine
//!   in the exporter's parity check.
//!
//! Both take one `f32` input and return the model's first output. The caller picks an
//! engine with [`EngineChoice`]; [`Engine::load`] says which one actually runs.
#![deny(missing_docs)]

mod locate;
mod onnxruntime;
#[cfg(feature = "tract")]
mod tract;

use std::path::PathBuf;

pub use locate::{ORT_PATH_ENV, locate_onnxruntime};

/// Why a model cannot be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// ONNX Runtime's shared library was not found anywhere it was looked for.
    #[error(
        "ONNX Runtime library not found (looked in: {searched}); set `{ORT_PATH_ENV}` or the \
         config's onnxruntime path, or run scripts/install-deps"
    )]
    OrtNotFound {
        /// The places searched, in order.
        searched: String,
    },
    /// The library exists but cannot be loaded (wrong architecture, too old…).
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    OrtLoad {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The engine rejected the model.
    #[error("{engine}: cannot load the model: {reason}")]
    Model {
        /// Which engine.
        engine: Backend,
        /// The engine's message.
        reason: String,
    },
    /// Running the model failed.
    #[error("{engine}: inference failed: {reason}")]
    Run {
        /// Which engine.
        engine: Backend,
        /// The engine's message.
        reason: String,
    },
    /// The input does not fit its declared shape.
    #[error("input has {len} values but shape {shape:?} needs {needed}")]
    InputShape {
        /// Values given.
        len: usize,
        /// Shape given.
        shape: Vec<usize>,
        /// Values the shape needs.
        needed: usize,
    },
    /// The requested engine is not compiled in.
    #[error("{0} support is not compiled into this binary")]
    Unavailable(Backend),
}

/// An inference engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ONNX Runtime.
    Ort,
    /// tract.
    Tract,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ort => "onnxruntime",
            Self::Tract => "tract",
        })
    }
}

/// Which engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// ONNX Runtime if its library can be found and loaded, else tract (with a warning).
    #[default]
    Auto,
    /// ONNX Runtime or fail.
    Ort,
    /// tract or fail.
    Tract,
}

/// How to run a model.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Engine selection.
    pub choice: EngineChoice,
    /// ONNX Runtime library path (else [`locate_onnxruntime`]'s search).
    pub ort_library: Option<PathBuf>,
    /// Intra-op threads; 0 lets the engine decide.
    pub threads: usize,
}

/// A model's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Dimensions, batch first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

enum Inner {
    Ort(onnxruntime::OrtModel),
    #[cfg(feature = "tract")]
    Tract(tract::TractModel),
}

/// A loaded model, ready to run.
pub struct Engine {
    inner: Inner,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads ONNX model bytes with the configured engine.
    ///
    /// # Errors
    /// [`InferError`] saying which engine failed and why; with [`EngineChoice::Auto`] an
    /// ONNX Runtime failure falls back to tract (logged as a warning) when compiled in.
    pub fn load(model: &[u8], config: &EngineConfig) -> Result<Self, InferError> {
        match config.choice {
            EngineChoice::Ort => Self::load_ort(model, config),
            EngineChoice::Tract => Self::load_tract(model, config),
            EngineChoice::Auto => match Self::load_ort(model, config) {
                Ok(engine) => Ok(engine),
                Err(e @ (InferError::OrtNotFound { .. } | InferError::OrtLoad { .. }))
                    if cfg!(feature = "tract") =>
                {
                    tracing::warn!("{e}; falling back to tract (pure Rust, slower)");
                    Self::load_tract(model, config)
                }
                Err(e) => Err(e),
            },
        }
    }

    fn load_ort(model: &[u8], config: &EngineConfig) -> Result<Self, InferError> {
        let library = locate_onnxruntime(config.ort_library.as_deref())?;
        Ok(Self {
            inner: Inner::Ort(onnxruntime::OrtModel::load(
                &library,
                model,
                config.threads,
            )?),
        })
    }

    #[cfg(feature = "tract")]
    fn load_tract(model: &[u8], _config: &EngineConfig) -> Result<Self, InferError> {
        Ok(Self {
            inner: Inner::Tract(tract::TractModel::load(model)?),
        })
    }

    #[cfg(not(feature = "tract"))]
    fn load_tract(_model: &[u8], _config: &EngineConfig) -> Result<Self, InferError> {
        Err(InferError::Unavailable(Backend::Tract))
    }

    /// The engine that runs this model.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Ort(_) => Backend::Ort,
            #[cfg(feature = "tract")]
            Inner::Tract(_) => Backend::Tract,
        }
    }

    /// Runs the model on one input tensor and returns its first output.
    ///
    /// # Errors
    /// [`InferError::InputShape`] or the engine's failure.
    pub fn run(&mut self, input: &[f32], shape: &[usize]) -> Result<Output, InferError> {
        let needed: usize = shape.iter().product();
        if needed != input.len() {
            return Err(InferError::InputShape {
                len: input.len(),
                shape: shape.to_vec(),
                needed,
            });
        }
        match &mut self.inner {
            Inner::Ort(m) => m.run(input, shape),
            #[cfg(feature = "tract")]
            Inner::Tract(m) => m.run(input, shape),
        }
    }
}

/// Loads a verified bundle's model and runs its self-test: the bundle is usable only if
/// this succeeds. Returns the engine and the largest difference seen.
///
/// # Errors
/// [`SelfTestError`]: the engine cannot load or run the model, or the output differs from
/// the expected output by more than the manifest's tolerance.
pub fn load_bundle(
    bundle: &warble_core::bundle::Bundle,
    config: &EngineConfig,
) -> Result<(Engine, f32), SelfTestError> {
    let mut engine = Engine::load(bundle.model(), config)?;
    let st = bundle.selftest();
    let out = engine.run(&st.input.data, &st.input.shape)?;
    let max_diff = st
        .check(&out.data, bundle.manifest().selftest_tolerance)
        .map_err(SelfTestError::Failed)?;
    Ok((engine, max_diff))
}

/// Why a bundle's self-test did not pass.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] InferError),
    /// Outputs differ.
    #[error(transparent)]
    Failed(warble_core::bundle::BundleError),
}
