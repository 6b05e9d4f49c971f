//! tract: pure-Rust inference. Plans are optimised for a concrete batch size, so one plan
//! is kept per batch size seen (recorders use one or two sizes).

use std::collections::HashMap;

use tract_onnx::prelude::*;

use crate::{Backend, InferError, Output};

type Plan = Arc<TypedRunnableModel>;

pub(crate) struct TractModel {
    model: InferenceModel,
    plans: HashMap<Vec<usize>, Plan>,
}

fn model_err(e: impl std::fmt::Display) -> InferError {
    InferError::Model {
        engine: Backend::Tract,
        reason: format!("{e:#}"),
    }
}

fn run_err(e: impl std::fmt::Display) -> InferError {
    InferError::Run {
        engine: Backend::Tract,
        reason: format!("{e:#}"),
    }
}

impl TractModel {
    pub(crate) fn load(model: &[u8]) -> Result<Self, InferError> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut &model[..])
            .map_err(model_err)?;
        if model.input_outlets().map_err(model_err)?.len() != 1 {
            return Err(model_err("expected exactly one input"));
        }
        Ok(Self {
            model,
            plans: HashMap::new(),
        })
    }

    fn plan(&mut self, shape: &[usize]) -> Result<Plan, InferError> {
        if let Some(plan) = self.plans.get(shape) {
            return Ok(plan.clone());
        }
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(model_err)?;
        self.plans.insert(shape.to_vec(), plan.clone());
        Ok(plan)
    }

    pub(crate) fn run(&mut self, input: &[f32], shape: &[usize]) -> Result<Output, InferError> {
        let plan = self.plan(shape)?;
        let tensor = Tensor::from_shape(shape, input).map_err(run_err)?;
        let outputs = plan.run(tvec!(tensor.into())).map_err(run_err)?;
        let first = outputs
            .first()
            .ok_or_else(|| run_err("the model produced no output"))?;
        let view = first.to_plain_array_view::<f32>().map_err(run_err)?;
        Ok(Output {
            shape: view.shape().to_vec(),
            data: view.iter().copied().collect(),
        })
    }
}
