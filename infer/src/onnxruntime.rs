//! ONNX Runtime through `ort`, loaded from a shared library found at run time.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use crate::{Backend, InferError, Output};

/// The process-wide ONNX Runtime environment (the library can be loaded only once).
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn environment(library: &Path) -> Result<&'static Environment, InferError> {
    ENVIRONMENT
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|e| e.to_string())?
                .with_name("warble")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| InferError::OrtLoad {
            path: library.to_path_buf(),
            reason: reason.clone(),
        })
}

pub(crate) struct OrtModel {
    session: Session,
    output: String,
}

fn model_err(e: impl std::fmt::Display) -> InferError {
    InferError::Model {
        engine: Backend::Ort,
        reason: e.to_string(),
    }
}

fn run_err(e: impl std::fmt::Display) -> InferError {
    InferError::Run {
        engine: Backend::Ort,
        reason: e.to_string(),
    }
}

impl OrtModel {
    pub(crate) fn load(library: &Path, model: &[u8], threads: usize) -> Result<Self, InferError> {
        let env = environment(library)?;
        let mut builder = Session::builder(env)
            .map_err(model_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(model_err)?
            .with_inter_threads(1)
            .map_err(model_err)?
            // A recorder's budget is tens of MB: no arena holding peak-sized blocks, no
            // memory pattern pre-planned per input shape; the models are small, so
            // allocating per run costs little. No spinning pool threads burning idle CPU.
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
            .map_err(model_err)?
            .with_memory_pattern(false)
            .map_err(model_err)?
            .with_intra_op_spinning(false)
            .map_err(model_err)?;
        if threads > 0 {
            builder = builder.with_intra_threads(threads).map_err(model_err)?;
        }
        let session = builder.commit_from_memory(model).map_err(model_err)?;
        if session.inputs().len() != 1 || session.outputs().is_empty() {
            return Err(model_err(format!(
                "expected one input and at least one output, found {} and {}",
                session.inputs().len(),
                session.outputs().len()
            )));
        }
        let output = session.outputs()[0].name().to_owned();
        Ok(Self { session, output })
    }

    pub(crate) fn run(&mut self, input: &[f32], shape: &[usize]) -> Result<Output, InferError> {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let tensor = TensorRef::from_array_view((dims, input)).map_err(run_err)?;
        let outputs = self.session.run(ort::inputs![tensor]).map_err(run_err)?;
        let (shape, data) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(run_err)?;
        Ok(Output {
            shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
            data: data.to_vec(),
        })
    }
}
