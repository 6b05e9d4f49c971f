//! A small ONNX graph builder over tract's prost types: initializers from burn tensors,
//! nodes with generated names, and the layer patterns Warble's models are made of.
//!
//! Opset 17: LayerNormalization exists; ReduceMean/ReduceMax/ReduceL2 still take `axes` as
//! an attribute while ReduceSum takes it as an input (opset 13 change).

use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{self, Tensor as TensorType};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::OnnxError;

/// The opset the graphs are written for.
pub const OPSET: i64 = 17;
/// ONNX IR version matching opset 17 (ONNX 1.12).
const IR_VERSION: i64 = 8;

/// An attribute value.
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(&'static str),
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_owned(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = AttributeType::Int as i32;
            a.i = i;
        }
        Attr::Ints(v) => {
            a.r#type = AttributeType::Ints as i32;
            a.ints = v;
        }
        Attr::Float(f) => {
            a.r#type = AttributeType::Float as i32;
            a.f = f;
        }
        Attr::Str(s) => {
            a.r#type = AttributeType::String as i32;
            a.s = s.as_bytes().to_vec();
        }
    }
    a
}

/// A graph under construction.
#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<f32>), OnnxError> {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| OnnxError::Weights(format!("{e:?}")))?;
    Ok((shape, data))
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// A float initializer.
    pub(crate) fn constant(&mut self, hint: &str, shape: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// A float scalar initializer.
    pub(crate) fn scalar(&mut self, hint: &str, value: f32) -> String {
        self.constant(hint, &[], vec![value])
    }

    /// An int64 initializer (shapes, axes).
    pub(crate) fn ints(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: DataType::Int64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// A burn tensor as an initializer.
    pub(crate) fn weight<const D: usize>(
        &mut self,
        hint: &str,
        t: Tensor<D>,
    ) -> Result<String, OnnxError> {
        let (shape, data) = to_vec(t)?;
        Ok(self.constant(hint, &shape, data))
    }

    /// A node with one output; returns the output's name.
    pub(crate) fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let output = self.fresh(&op.to_ascii_lowercase());
        self.op_named(op, inputs, attrs, &output);
        output
    }

    /// A node whose output has a given name (graph outputs).
    pub(crate) fn op_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
        output: &str,
    ) {
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            name,
            op_type: op.to_owned(),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.to_owned()],
            attribute: attrs.into_iter().map(|(n, v)| attribute(n, v)).collect(),
            ..Default::default()
        });
    }

    /// `Identity` to give an intermediate value a graph-output name.
    pub(crate) fn name_output(&mut self, value: &str, output: &str) {
        self.op_named("Identity", &[value], vec![], output);
    }

    /// 2-D convolution with burn's weights (`[out, in/groups, kh, kw]`, as ONNX).
    pub(crate) fn conv(&mut self, x: &str, conv: &Conv2d) -> Result<String, OnnxError> {
        let pads = match conv.padding {
            PaddingConfig2d::Valid => [0, 0, 0, 0],
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
            PaddingConfig2d::Same => {
                return Err(OnnxError::Unsupported("`Same` conv padding".into()));
            }
        };
        let w = self.weight("conv_w", conv.weight.val())?;
        let mut inputs = vec![x.to_owned(), w];
        if let Some(b) = &conv.bias {
            inputs.push(self.weight("conv_b", b.val())?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let as_i64 = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<_>>();
        Ok(self.op(
            "Conv",
            &refs,
            vec![
                ("kernel_shape", Attr::Ints(as_i64(&conv.kernel_size))),
                ("strides", Attr::Ints(as_i64(&conv.stride))),
                ("dilations", Attr::Ints(as_i64(&conv.dilation))),
                ("group", Attr::Int(conv.groups as i64)),
                (
                    "pads",
                    Attr::Ints(as_i64(&[pads[0], pads[1], pads[2], pads[3]])),
                ),
            ],
        ))
    }

    /// LayerNormalization over the last axis.
    pub(crate) fn layer_norm(
        &mut self,
        x: &str,
        norm: &LayerNorm,
        epsilon: f64,
    ) -> Result<String, OnnxError> {
        let gamma = self.weight("ln_g", norm.gamma.val())?;
        let mut inputs = vec![x.to_owned(), gamma];
        if let Some(b) = &norm.beta {
            inputs.push(self.weight("ln_b", b.val())?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op(
            "LayerNormalization",
            &refs,
            vec![
                ("axis", Attr::Int(-1)),
                ("epsilon", Attr::Float(epsilon as f32)),
            ],
        ))
    }

    /// LayerNorm over the channels of an NCHW tensor (transpose, normalise, transpose).
    pub(crate) fn layer_norm_channels_first(
        &mut self,
        x: &str,
        norm: &LayerNorm,
        epsilon: f64,
    ) -> Result<String, OnnxError> {
        let t = self.transpose(x, &[0, 2, 3, 1]);
        let n = self.layer_norm(&t, norm, epsilon)?;
        Ok(self.transpose(&n, &[0, 3, 1, 2]))
    }

    /// `x · W + b` over the last axis (burn's `[in, out]` weight layout is MatMul's).
    pub(crate) fn linear(&mut self, x: &str, linear: &Linear) -> Result<String, OnnxError> {
        let w = self.weight("fc_w", linear.weight.val())?;
        let y = self.op("MatMul", &[x, &w], vec![]);
        match &linear.bias {
            Some(b) => {
                let b = self.weight("fc_b", b.val())?;
                Ok(self.op("Add", &[&y, &b], vec![]))
            }
            None => Ok(y),
        }
    }

    /// Exact GELU: `0.5 · x · (1 + erf(x / √2))`, as burn's `Gelu::new()`.
    pub(crate) fn gelu(&mut self, x: &str) -> String {
        let sqrt2 = self.scalar("sqrt2", std::f32::consts::SQRT_2);
        let one = self.scalar("one", 1.0);
        let half = self.scalar("half", 0.5);
        let scaled = self.op("Div", &[x, &sqrt2], vec![]);
        let erf = self.op("Erf", &[&scaled], vec![]);
        let shifted = self.op("Add", &[&erf, &one], vec![]);
        let gated = self.op("Mul", &[x, &shifted], vec![]);
        self.op("Mul", &[&gated, &half], vec![])
    }

    /// Transpose with a permutation.
    pub(crate) fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![("perm", Attr::Ints(perm.to_vec()))])
    }

    /// Reshape to `shape` (`0` copies the input's dimension, `-1` infers one).
    pub(crate) fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints("shape", shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    /// Assembles the model with one float input and the named float outputs.
    pub(crate) fn into_model(
        self,
        input: (&str, &[Option<usize>]),
        outputs: &[(&str, &[Option<usize>])],
        doc: &str,
    ) -> ModelProto {
        let value_info = |name: &str, dims: &[Option<usize>]| ValueInfoProto {
            name: name.to_owned(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(TensorType {
                    elem_type: DataType::Float as i32,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| Dimension {
                                value: Some(match d {
                                    Some(n) => dimension::Value::DimValue(*n as i64),
                                    None => dimension::Value::DimParam("batch".into()),
                                }),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "warble-export".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.to_owned(),
            graph: Some(GraphProto {
                name: "warble".into(),
                node: self.nodes,
                initializer: self.initializers,
                input: vec![value_info(input.0, input.1)],
                output: outputs.iter().map(|(n, d)| value_info(n, d)).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
